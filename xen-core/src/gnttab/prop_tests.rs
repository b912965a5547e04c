//! Randomized grant, map, unmap, copy and revoke sequences: after every step the pins equal
//! what the maptrack holds, the in-use bits follow the pins, read-only grants are never
//! pinned writable, revocation succeeds exactly when the entry is idle, the recomputed
//! reference counts match; at the end nothing is pinned and no frame gained a reference.

use super::testkit::*;
use super::PIN_WRITERS;
use crate::mm::fixture::{audit, mfn};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use dom0_interface::grant_table::*;
use dom0_interface::guest_abi::GuestAbi;

fn pins_of(t: &T, g: u32) -> u32 {
    t.h.state.gnttab_active.get(&(0, g)).map_or(0, |a| a.pin)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Checks pins against the maptrack, in-use bits against pins, and read-only grants against
/// the PTEs.
fn invariants(t: &T, table: u64) {
    let mut pins: BTreeMap<u32, u32> = BTreeMap::new();
    for ((_, _), m) in t.h.state.gnttab_maptrack.iter() {
        let ro = m.flags & GNTMAP_READONLY != 0;
        let mut p = 0;
        if m.flags & GNTMAP_HOST_MAP != 0 {
            p += if ro { super::PIN_HSTR } else { super::PIN_HSTW };
        }
        if m.flags & GNTMAP_DEVICE_MAP != 0 {
            p += if ro { super::PIN_DEVR } else { super::PIN_DEVW };
        }
        *pins.entry(m.gref).or_default() += p;
    }
    for g in 0..24u32 {
        let pin = pins.get(&g).copied().unwrap_or(0);
        let act = t.h.state.gnttab_active.get(&(0, g)).map_or(0, |a| a.pin);
        assert_eq!(pin, act, "gref {g}: pins");
        let f = t.flags(table, g);
        assert_eq!(f & GTF_READING != 0, pin != 0, "gref {g}: reading {f:#x}");
        assert_eq!(
            f & GTF_WRITING != 0,
            pin & PIN_WRITERS != 0,
            "gref {g}: writing"
        );
        if f & GTF_READONLY != 0 {
            assert_eq!(pin & PIN_WRITERS, 0, "read-only grant pinned writable");
        }
    }
    audit(&t.h).expect("audit");
}

#[test]
fn random_grant_sequences_keep_the_invariants() {
    for seed in [1u64, 7, 99, 1234] {
        let (mut t, table) = ready();
        let start = t.counts();
        let mut rng = Rng(seed * 0x9e37_79b9 + 1);
        let mut maps: Vec<(u32, u64)> = Vec::new(); // (handle, address)
        let (mut mapped, mut copied, mut refused_revokes) = (0, 0, 0);
        for _ in 0..300 {
            let g = rng.below(12) as u32;
            match rng.below(6) {
                0 => {
                    let flags = match rng.below(5) {
                        0 => 0,
                        1 | 2 => GTF_PERMIT_ACCESS,
                        _ => GTF_PERMIT_ACCESS | GTF_READONLY,
                    };
                    let a = (t.h.mem.word((table << 12) + u64::from(g) * 8) as u16)
                        & (GTF_READING | GTF_WRITING);
                    if a == 0 {
                        t.grant(table, g, flags, mfn(16 + rng.below(8)));
                    }
                }
                1 | 2 => {
                    let slot = 12 + rng.below(12);
                    let ro = if rng.below(2) == 0 {
                        GNTMAP_READONLY
                    } else {
                        0
                    };
                    if maps.iter().all(|m| m.1 != va(slot)) {
                        let m = t.map(g, GNTMAP_HOST_MAP | ro, va(slot));
                        if m.status == GNTST_OKAY {
                            mapped += 1;
                            maps.push((m.handle, va(slot)));
                        }
                    }
                }
                3 if !maps.is_empty() => {
                    let (h, a) = maps.remove(rng.below(maps.len() as u64) as usize);
                    let dev =
                        t.h.state
                            .gnttab_maptrack
                            .get(&(0, h))
                            .map_or(0, |m| m.mfn << 12);
                    let op = GnttabUnmapGrantRef {
                        host_addr: a,
                        dev_bus_addr: dev,
                        handle: h,
                        status: 0x55,
                    };
                    t.h.mem.map(UOP, &op.to_vec());
                    t.op(GNTTABOP_UNMAP_GRANT_REF, UOP, 1);
                    assert_eq!(t.read::<GnttabUnmapGrantRef>(UOP).status, GNTST_OKAY);
                }
                4 => {
                    let src = GnttabCopyPtr {
                        u: u64::from(g),
                        domid: 0,
                        offset: 0,
                    };
                    let dst = GnttabCopyPtr {
                        u: rng.below(12),
                        domid: 0,
                        offset: 64,
                    };
                    let s = t.copy(src, dst, 64, GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF);
                    copied += u32::from(s == GNTST_OKAY);
                }
                _ => {
                    let in_use = pins_of(&t, g) != 0;
                    let ok = t.revoke(table, g);
                    assert_eq!(ok, !in_use, "revocation of gref {g} (in use: {in_use})");
                    refused_revokes += u32::from(!ok);
                }
            }
            invariants(&t, table);
        }
        for (h, a) in maps.drain(..) {
            let dev =
                t.h.state
                    .gnttab_maptrack
                    .get(&(0, h))
                    .map_or(0, |m| m.mfn << 12);
            let op = GnttabUnmapGrantRef {
                host_addr: a,
                dev_bus_addr: dev,
                handle: h,
                status: 0x55,
            };
            t.h.mem.map(UOP, &op.to_vec());
            t.op(GNTTABOP_UNMAP_GRANT_REF, UOP, 1);
            assert_eq!(t.read::<GnttabUnmapGrantRef>(UOP).status, GNTST_OKAY);
        }
        invariants(&t, table);
        assert!(
            mapped > 5 && copied > 0 && refused_revokes > 0,
            "seed {seed}: {mapped} {copied} {refused_revokes}"
        );
        assert!(t.h.state.gnttab_active.is_empty());
        // Every frame is back to its starting counts, except the pages whose own mappings
        // the grant mappings replaced (one mapping each fewer).
        let end = t.counts();
        for (m, (c, tc)) in &start {
            let (c2, tc2) = end.get(m).copied().unwrap_or((0, 0));
            let replaced = (12..24).map(mfn).any(|x| x == *m);
            if replaced && (c2, tc2) != (*c, *tc) {
                assert!(c2 <= *c && tc2 <= *tc, "{m:#x} gained references");
                assert!(c2 >= 1, "{m:#x} lost its allocation reference");
            } else {
                assert_eq!((c2, tc2), (*c, *tc), "frame {m:#x}");
            }
        }
    }
}
