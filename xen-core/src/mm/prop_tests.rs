//! Randomized sequences of pin, unpin, update (update_va_mapping and mmu_update at every
//! level), base-pointer switches, reservation changes and guest writes to non-table frames:
//! after every step the recomputed reference counts match and no page table is writable;
//! destroying the domain returns every frame exactly once.

use super::build::destroy_domain_memory;
use super::fixture::{audit, call, harness, l1_slot, mfn, PAGES, SHARED_INFO, VA_BASE};
use super::pt::{P, RW};
use super::PageType;
use crate::effect::{Effect, MmEffect};
use crate::hypercall::testing::{Harness, Outcome};
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::*;
use lockstep::Journal;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mmuext1(h: &mut Harness, cmd: u32, arg1: u64) -> Outcome {
    h.mem.map(0x9000, &MmuextOp { cmd, arg1, arg2: 0 }.to_vec());
    call(h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 0x7ff0, 0])
}

fn mmu1(h: &mut Harness, ptr: u64, val: u64) -> Outcome {
    h.mem.map(0xa000, &MmuUpdate { ptr, val }.to_vec());
    call(h, HYPERVISOR_MMU_UPDATE, [0xa000, 1, 0, 0x7ff0, 0])
}

/// Collects the frames freed by effects.
fn freed(effects: &[Effect], into: &mut Vec<u64>) {
    for e in effects {
        if let Effect::Mm(MmEffect::FreeFrames(m)) = e {
            into.extend_from_slice(m);
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut h = harness(false);
    let mut rng = Rng(seed | 1);
    let mut gone: Vec<u64> = Vec::new();
    let mut all: BTreeSet<u64> = (0..PAGES).map(mfn).collect();
    all.insert(SHARED_INFO);
    let mut next_alloc = 0x2000u64;
    let pick = |rng: &mut Rng| mfn(rng.below(PAGES + 2)); // includes two frames not ours
    for step in 0..steps {
        let flags = match rng.below(4) {
            0 => 0,
            1 => P,
            _ => P | RW,
        };
        let r = match rng.below(10) {
            0 | 1 => {
                let slot = 32 + rng.below(32);
                let t = pick(&mut rng);
                call(
                    &mut h,
                    HYPERVISOR_UPDATE_VA_MAPPING,
                    [VA_BASE + slot * 4096, (t << 12) | flags, 0, 0, 0],
                )
            }
            2 => {
                let level = 1 + rng.below(4) as u32;
                let t = pick(&mut rng);
                mmuext1(&mut h, MMUEXT_PIN_L1_TABLE + level - 1, t)
            }
            3 => {
                let t = pick(&mut rng);
                mmuext1(&mut h, MMUEXT_UNPIN_TABLE, t)
            }
            4 => {
                // An entry of some frame that may be a table of any level.
                let table = pick(&mut rng);
                let idx = rng.below(8);
                let t = pick(&mut rng);
                mmu1(&mut h, (table << 12) + idx * 8, (t << 12) | flags)
            }
            5 => {
                let t = if rng.below(3) == 0 { 0 } else { pick(&mut rng) };
                mmuext1(&mut h, MMUEXT_NEW_USER_BASEPTR, t)
            }
            6 => {
                // The guest writes a frame it may write (not a page table): random entries.
                let t = pick(&mut rng);
                let writable = h
                    .state
                    .frames
                    .get(&t)
                    .is_some_and(|p| !p.ty.is_page_table() || p.type_count == 0);
                if writable && h.mem.machine_frames.contains(&t) {
                    let idx = rng.below(8);
                    let target = pick(&mut rng);
                    h.mem
                        .machine
                        .insert((t << 12) + idx * 8, (target << 12) | flags);
                }
                continue;
            }
            7 => {
                // Give a frame back, or populate a new one.
                if rng.below(2) == 0 {
                    let t = pick(&mut rng);
                    h.mem.map(0xb000, &t.to_le_bytes());
                } else {
                    h.mem.map(0xb000, &(100 + rng.below(50)).to_le_bytes());
                    h.mem.add_frame(next_alloc);
                    h.mem
                        .values
                        .entry(crate::hv::value_kind::ALLOC_FRAME)
                        .or_default()
                        .push_back(next_alloc);
                    all.insert(next_alloc);
                    next_alloc += 1;
                }
                let cmd = if h
                    .mem
                    .values
                    .get(&crate::hv::value_kind::ALLOC_FRAME)
                    .is_some_and(|q| !q.is_empty())
                {
                    XENMEM_POPULATE_PHYSMAP_CMD
                } else {
                    1
                };
                let res = dom0_interface::memory::XenMemoryReservation {
                    extent_start: 0xb000,
                    nr_extents: 1,
                    extent_order: 0,
                    mem_flags: 0,
                    domid: 0x7ff0,
                };
                h.mem.map(0xc000, &res.to_vec());
                call(&mut h, HYPERVISOR_MEMORY_OP, [cmd, 0xc000, 0, 0, 0])
            }
            8 => mmu1(&mut h, l1_slot(32 + rng.below(32)), 0),
            _ => {
                let root = mfn(0) << 12;
                let slot = 1 + rng.below(4);
                let t = if rng.below(2) == 0 {
                    mfn(0)
                } else {
                    pick(&mut rng)
                };
                mmu1(&mut h, root + slot * 8, (t << 12) | flags)
            }
        };
        freed(&r.effects, &mut gone);
        if let Err(e) = audit(&h) {
            panic!("seed {seed} step {step}: {e}");
        }
        for (m, p) in h.state.frames.iter() {
            assert!(
                !(p.ty.is_page_table() && p.type_count > 0 && p.ty == PageType::Writable),
                "{m:#x}"
            );
        }
    }
    let mut j = Journal::new();
    j.begin(1_000_000);
    let dom = h.dom;
    gone.extend(destroy_domain_memory(&mut h.state, &mut j, dom));
    let returned: BTreeSet<u64> = gone.iter().copied().collect();
    assert_eq!(
        returned.len(),
        gone.len(),
        "seed {seed}: a frame returned twice"
    );
    assert_eq!(returned, all, "seed {seed}: frames not returned");
    assert!(h.state.frames.is_empty(), "seed {seed}: frames left");
}

const XENMEM_POPULATE_PHYSMAP_CMD: u64 = 6;

#[test]
fn random_operation_sequences_keep_the_invariants() {
    for seed in 1..=40u64 {
        run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 250);
    }
}

/// A hostile guest: random hypercall numbers among the MMU ones, random arguments and random
/// argument structures. Nothing may abort the transaction or panic, and the reference counts
/// must stay exact.
#[test]
fn hostile_arguments_leave_the_state_consistent() {
    for seed in 1..=8u64 {
        let mut h = harness(seed % 2 == 0);
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        for _ in 0..400 {
            let interesting = |rng: &mut Rng| match rng.below(9) {
                0 => 0,
                1 => rng.next(),
                2 => 0x9000 + rng.below(4) * 0x1000,
                3 => mfn(rng.below(PAGES + 4)),
                4 => (mfn(rng.below(PAGES)) << 12) | rng.below(8),
                5 => 0x7ff0 + rng.below(4),
                6 => rng.below(600) | (rng.below(2) << 31),
                7 => VA_BASE + rng.below(64) * 4096,
                _ => 0xffff_8000_0000_0000 + rng.below(1 << 20),
            };
            let nr = [
                HYPERVISOR_MMU_UPDATE,
                HYPERVISOR_MEMORY_OP,
                HYPERVISOR_UPDATE_VA_MAPPING,
                HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
                HYPERVISOR_MMUEXT_OP,
            ][rng.below(5) as usize];
            let args = [
                interesting(&mut rng),
                interesting(&mut rng),
                interesting(&mut rng),
                interesting(&mut rng),
                interesting(&mut rng),
            ];
            for page in 0..4u64 {
                let mut bytes = [0u8; 256];
                for chunk in bytes.chunks_mut(8) {
                    chunk.copy_from_slice(&interesting(&mut rng).to_le_bytes());
                }
                h.mem.map(0x9000 + page * 0x1000, &bytes);
            }
            let r = call(&mut h, nr, args);
            assert!(
                r.ret <= 0 || nr == HYPERVISOR_MEMORY_OP,
                "{nr} {args:x?} -> {}",
                r.ret
            );
            if let Err(e) = audit(&h) {
                panic!("seed {seed}: {nr} {args:x?}: {e}");
            }
        }
    }
}
