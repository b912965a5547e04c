//! Grant tables as Xen 4.17's `common/grant_table.c` keeps them for 64-bit PV domains: the
//! per-domain table (version, shared frames, v2 status frames, limits), the active entries
//! (pin counts of granted refs) and the maptrack (the mappings a domain made), plus the
//! helpers every grant operation shares: where an entry lives, reading it, pinning and
//! unpinning it with Xen's `GTF_reading`/`GTF_writing` rules.
//!
//! Grant entries live in guest-shared frames: they are read through the input log (as every
//! machine-memory read), and the hypervisor's changes to them are effects, applied after
//! commit: the in-use bits with [`crate::effect::MmEffect::AtomicBits`] (one atomic bit
//! operation each, so a grantor's concurrent cmpxchg sees the bits and cannot revoke an entry
//! in use), whole entries (set_version, swap) with `WriteMachine`. Grant frames come from the
//! host allocator ([`crate::hv::value_kind::ALLOC_FRAME`]) and are owned by the domain as
//! permanently writable hypervisor pages (Xen's `share_xen_page_with_guest`), so the domain
//! maps them with `update_va_mapping`; they are freed with the domain's memory
//! ([`crate::mm::destroy_domain_memory`]) after [`release_domain`].
//!
//! A table a domain never set up is "version 1, one frame of invalid entries" without any
//! frame behind it; its first frame is allocated when setup_table, set_version or
//! get_status_frames needs one.
//!
//! References: a host mapping's PTE holds the granted frame's references exactly as an
//! ordinary L1 entry does (a general one, a writable type one when writable, recorded in
//! `mm_foreign` when the frame is another domain's), so `put_page_from_l1e` balances them
//! whoever clears the PTE; a device mapping's references are held by its maptrack entry.
//!
//! Where this differs from Xen (none of it visible to a well-behaved guest):
//! - the in-use bits are set after commit, not with a cmpxchg on the live entry: a grantor
//!   vCPU running on another leader could clear the entry between the transaction's read and
//!   the commit (on one lockstep pair every vCPU of the pair's domains is stopped meanwhile);
//! - the pins a copy takes last only for the copy, so its in-use bits are never seen set;
//! - v2 transitive grants are refused (`GNTST_general_error`) instead of followed;
//! - maptrack handles come from one free list per domain, not per vCPU;
//! - cache_flush searches a granter's whole table at once (no continuation inside one op).

pub mod cache;
pub mod copy;
pub mod map;
#[cfg(test)]
mod prop_tests;
pub mod swap;
pub mod table;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
pub mod transfer;

use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{HvError, HvState};
use crate::mm::env::MmEnv;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use dom0_interface::grant_table as gt;
use lockstep::{Hasher, Value};

/// `INITIAL_NR_GRANT_FRAMES`.
pub const INITIAL_FRAMES: u32 = 1;
/// `gnttab_max_frames` default (`opt_max_grant_frames`).
pub const MAX_GRANT_FRAMES: u32 = 64;
/// `gnttab_max_maptrack_frames` default.
pub const MAX_MAPTRACK_FRAMES: u32 = 1024;
/// Maptrack entries per maptrack frame (`MAPTRACK_PER_PAGE`).
pub const MAPTRACK_PER_PAGE: u32 = 256;
/// v1 entries per frame.
pub const V1_PER_FRAME: u32 = 512;
/// v2 entries per frame.
pub const V2_PER_FRAME: u32 = 256;
/// v2 status entries (`grant_status_t`) per frame.
pub const STATUS_PER_FRAME: u32 = 2048;

/// Pin count of writable host mappings (`GNTPIN_hstw_inc`).
pub const PIN_HSTW: u32 = 1;
/// Pin count of read-only host mappings.
pub const PIN_HSTR: u32 = 1 << 8;
/// Pin count of writable device mappings.
pub const PIN_DEVW: u32 = 1 << 16;
/// Pin count of read-only device mappings.
pub const PIN_DEVR: u32 = 1 << 24;
/// Writable pins (host or device).
pub const PIN_WRITERS: u32 = 0xff | (0xff << 16);
/// Pin counts about to overflow (Xen refuses further pins).
const PIN_OVERFLOW: u32 = 0x8080_8080;

/// One domain's grant table (`struct grant_table`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantTable {
    /// `gt_version` (1 or 2).
    pub version: u32,
    /// The shared frames (mfns); empty until first needed (then at least one).
    pub frames: Vec<u64>,
    /// v2 status frames (mfns).
    pub status_frames: Vec<u64>,
    /// `max_grant_frames`.
    pub max_frames: u32,
    /// `maptrack_limit`: handles below it exist (free or used).
    pub maptrack_limit: u32,
    /// Next never-used handle below `maptrack_limit`.
    pub maptrack_fresh: u32,
    /// Handles released, reused in release order (Xen's per-vCPU free list, tail-appended).
    pub maptrack_free: VecDeque<u32>,
}

impl GrantTable {
    /// A new table: version 1, no frame yet, Xen's default limits.
    pub fn new() -> Self {
        GrantTable {
            version: 1,
            max_frames: MAX_GRANT_FRAMES,
            ..Default::default()
        }
    }

    /// `nr_grant_frames` (a table without frames has its initial one).
    pub fn nr_frames(&self) -> u32 {
        (self.frames.len() as u32).max(INITIAL_FRAMES)
    }

    /// `nr_grant_entries`.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * self.per_frame()
    }

    /// Entries per shared frame for the table's version.
    pub fn per_frame(&self) -> u32 {
        if self.version == 2 {
            V2_PER_FRAME
        } else {
            V1_PER_FRAME
        }
    }
}

/// `grant_to_status_frames`: status frames a v2 table of `frames` shared frames needs.
pub fn status_frames_for(frames: u32) -> u32 {
    (frames * V2_PER_FRAME).div_ceil(STATUS_PER_FRAME)
}

impl Value for GrantTable {
    fn digest(&self, h: &mut Hasher) {
        self.version.digest(h);
        self.frames.digest(h);
        self.status_frames.digest(h);
        self.max_frames.digest(h);
        self.maptrack_limit.digest(h);
        self.maptrack_fresh.digest(h);
        h.write_u64(self.maptrack_free.len() as u64);
        for x in &self.maptrack_free {
            x.digest(h);
        }
    }
    fn bit_len(&self) -> u64 {
        32 * 5
            + self.frames.bit_len()
            + self.status_frames.bit_len()
            + 32 * self.maptrack_free.len() as u64
    }
    fn flip_bit(&mut self, bit: u64) {
        let mut b = bit;
        for f in [&mut self.version, &mut self.max_frames] {
            if b < 32 {
                *f ^= 1 << b;
                return;
            }
            b -= 32;
        }
        for v in [&mut self.frames, &mut self.status_frames] {
            if b < v.bit_len() {
                v.flip_bit(b);
                return;
            }
            b -= v.bit_len();
        }
        for f in [&mut self.maptrack_limit, &mut self.maptrack_fresh] {
            if b < 32 {
                *f ^= 1 << b;
                return;
            }
            b -= 32;
        }
        if let Some(x) = self.maptrack_free.get_mut((b / 32) as usize) {
            *x ^= 1 << (b % 32);
        }
    }
}

/// An active (pinned) grant entry (`struct active_grant_entry`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveEntry {
    /// Pin counts (`GNTPIN_*`).
    pub pin: u32,
    /// The domain the entry is pinned for.
    pub domid: DomId,
    /// The granted frame.
    pub mfn: u64,
    /// Sub-page grant (v2): first byte.
    pub start: u16,
    /// Sub-page grant (v2): length (4096 for a full page).
    pub length: u16,
    /// A v2 sub-page grant (cannot be mapped).
    pub sub_page: bool,
}
lockstep::impl_value!(ActiveEntry {
    pin,
    domid,
    mfn,
    start,
    length,
    sub_page
});

/// A mapping a domain made (`struct grant_mapping`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapTrack {
    /// The grant reference.
    pub gref: u32,
    /// `GNTMAP_*` parts still mapped (device_map, host_map) and readonly etc.
    pub flags: u32,
    /// The granting domain.
    pub domid: DomId,
    /// The frame mapped (as the active entry had it).
    pub mfn: u64,
}
lockstep::impl_value!(MapTrack {
    gref,
    flags,
    domid,
    mfn
});

/// Where a grant entry lives in machine memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLoc {
    /// The 8-aligned word holding `flags` (bits 0-15) and `domid` (bits 16-31).
    pub hdr: u64,
    /// The 8-aligned word holding the entry's in-use bits (v1: the header itself).
    pub status_word: u64,
    /// Bit position of the 16-bit status (v1: the flags) in `status_word`.
    pub status_shift: u32,
    /// Table version.
    pub version: u32,
}

/// What a grant entry says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryView {
    /// `GTF_*` flags of the header.
    pub flags: u16,
    /// Grantee.
    pub domid: DomId,
    /// Granted frame.
    pub frame: u64,
    /// v2 sub-page offset.
    pub page_off: u16,
    /// v2 sub-page length.
    pub length: u16,
}

/// A grant status (`GNTST_*`) as a failure.
pub type Gntst = i16;

/// Machine location of entry `gref` of `t` (which must have its frames).
pub fn entry_loc(t: &GrantTable, gref: u32) -> Option<EntryLoc> {
    let per = t.per_frame();
    let frame = *t.frames.get((gref / per) as usize)?;
    let size = if t.version == 2 { 16 } else { 8 };
    let hdr = (frame << 12) + u64::from(gref % per) * size;
    if t.version == 2 {
        let sf = *t.status_frames.get((gref / STATUS_PER_FRAME) as usize)?;
        let addr = (sf << 12) + u64::from(gref % STATUS_PER_FRAME) * 2;
        Some(EntryLoc {
            hdr,
            status_word: addr & !7,
            status_shift: ((addr & 7) * 8) as u32,
            version: 2,
        })
    } else {
        Some(EntryLoc {
            hdr,
            status_word: hdr,
            status_shift: 0,
            version: 1,
        })
    }
}

/// Reads the entry `gref` of domain `dom` (an entry of a table without frames is invalid).
pub fn read_entry(
    st: &HvState,
    env: &mut dyn MmEnv,
    dom: DomId,
    gref: u32,
) -> Result<EntryView, HvError> {
    let Some(loc) = st.gnttab.get(&dom).and_then(|t| entry_loc(t, gref)) else {
        return Ok(EntryView::default());
    };
    let w = env.read_word(loc.hdr)?;
    let mut v = EntryView {
        flags: w as u16,
        domid: (w >> 16) as u16,
        ..EntryView::default()
    };
    if loc.version == 2 {
        v.page_off = (w >> 32) as u16;
        v.length = (w >> 48) as u16;
        v.frame = env.read_word(loc.hdr + 8)?;
    } else {
        v.frame = w >> 32;
    }
    Ok(v)
}

/// The in-use bits (`GTF_reading`/`GTF_writing`) of entry `gref` of `dom` as they are now.
pub fn read_status(
    st: &HvState,
    env: &mut dyn MmEnv,
    dom: DomId,
    gref: u32,
) -> Result<u16, HvError> {
    let Some(loc) = st.gnttab.get(&dom).and_then(|t| entry_loc(t, gref)) else {
        return Ok(0);
    };
    let w = env.read_word(loc.status_word)?;
    Ok((w >> loc.status_shift) as u16 & (gt::GTF_READING | gt::GTF_WRITING))
}

/// Sets and clears in-use bits of entry `gref` of `dom` (an effect).
pub fn change_status(
    st: &HvState,
    env: &mut dyn MmEnv,
    dom: DomId,
    gref: u32,
    set: u16,
    clear: u16,
) {
    if set == 0 && clear == 0 {
        return;
    }
    if let Some(loc) = st.gnttab.get(&dom).and_then(|t| entry_loc(t, gref)) {
        env.emit(Effect::Mm(MmEffect::AtomicBits {
            maddr: loc.status_word,
            set: u64::from(set) << loc.status_shift,
            clear: u64::from(clear) << loc.status_shift,
        }));
    }
}

/// What a pin request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinReq {
    /// The granting domain.
    pub rd: DomId,
    /// The grant reference (already bounds-checked).
    pub gref: u32,
    /// The domain acting on the grant.
    pub ld: DomId,
    /// Read-only access.
    pub readonly: bool,
    /// A mapping (sub-page grants refused) rather than a copy.
    pub mapflag: bool,
    /// Pin counts to add (`GNTPIN_*_inc` sums).
    pub add: u32,
}

/// The outcome of a successful pin check: the new active entry and the in-use bits to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The active entry with the pin added.
    pub act: ActiveEntry,
    /// In-use bits to set in the shared entry.
    pub set: u16,
}

/// The checks of `map_grant_ref` / `acquire_grant_for_copy` up to the pin (`_set_status`,
/// `get_paged_frame`), without changing anything: the active entry after the pin and the
/// in-use bits to set, or the `GNTST_*` status.
pub fn check_pin(
    st: &HvState,
    env: &mut dyn MmEnv,
    r: PinReq,
) -> Result<Result<Pinned, Gntst>, HvError> {
    let mut act = st
        .gnttab_active
        .get(&(r.rd, r.gref))
        .cloned()
        .unwrap_or_default();
    if act.pin != 0
        && (act.domid != r.ld || act.pin & PIN_OVERFLOW != 0 || (r.mapflag && act.sub_page))
    {
        return Ok(Err(gt::GNTST_GENERAL_ERROR));
    }
    let mut set = 0;
    if act.pin == 0 || (!r.readonly && act.pin & PIN_WRITERS == 0) {
        let e = read_entry(st, env, r.rd, r.gref)?;
        let mut mask = gt::GTF_TYPE_MASK;
        if r.mapflag {
            mask |= gt::GTF_SUB_PAGE;
        }
        let permit = e.flags & mask == gt::GTF_PERMIT_ACCESS;
        if act.pin == 0 && (!permit || e.domid != r.ld) {
            return Ok(Err(gt::GNTST_GENERAL_ERROR));
        }
        set |= gt::GTF_READING;
        if !r.readonly {
            if e.flags & gt::GTF_READONLY != 0 {
                return Ok(Err(gt::GNTST_GENERAL_ERROR));
            }
            set |= gt::GTF_WRITING;
        }
        if act.pin == 0 {
            // get_paged_frame: a PV frame number is the mfn; it must be the granter's.
            let owned = st
                .frames
                .get(&e.frame)
                .is_some_and(|p| p.owner == r.rd && p.count > 0);
            if !owned {
                return Ok(Err(gt::GNTST_BAD_PAGE));
            }
            let sub = e.version_sub_page(st, r.rd);
            act = ActiveEntry {
                pin: 0,
                domid: r.ld,
                mfn: e.frame,
                start: if sub { e.page_off } else { 0 },
                length: if sub { e.length } else { 4096 },
                sub_page: sub,
            };
        }
    }
    act.pin += r.add;
    Ok(Ok(Pinned { act, set }))
}

impl EntryView {
    /// Whether this is a v2 sub-page grant (v1 entries never are).
    fn version_sub_page(&self, st: &HvState, dom: DomId) -> bool {
        st.gnttab.get(&dom).is_some_and(|t| t.version == 2) && self.flags & gt::GTF_SUB_PAGE != 0
    }
}

/// Commits a pin [`check_pin`] allowed: stores the active entry and sets the in-use bits.
pub fn commit_pin(st: &mut HvState, env: &mut dyn MmEnv, r: PinReq, p: Pinned) {
    change_status(st, env, r.rd, r.gref, p.set, 0);
    st.gnttab_active
        .insert(env.journal(), (r.rd, r.gref), p.act);
}

/// Drops pin counts `sub` of entry `gref` of `rd` (a `readonly` use or not) and clears the
/// in-use bits no pin needs any more (`unmap_common_complete`, `release_grant_for_copy`).
pub fn unpin(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    rd: DomId,
    gref: u32,
    sub: u32,
    readonly: bool,
) {
    let Some(mut act) = st.gnttab_active.get(&(rd, gref)).cloned() else {
        return;
    };
    act.pin = act.pin.saturating_sub(sub);
    let mut clear = 0;
    if !readonly && act.pin & PIN_WRITERS == 0 {
        clear |= gt::GTF_WRITING;
    }
    if act.pin == 0 {
        clear |= gt::GTF_READING;
    }
    change_status(st, env, rd, gref, 0, clear);
    if act.pin == 0 {
        st.gnttab_active.remove(env.journal(), &(rd, gref));
    } else {
        st.gnttab_active.insert(env.journal(), (rd, gref), act);
    }
}

/// `rcu_lock_domain_by_any_id`: DOMID_SELF is the caller; otherwise an existing domain.
pub fn domain_by_any_id(st: &HvState, caller: DomId, dom: DomId) -> Option<DomId> {
    let d = if dom == dom0_interface::xen::DOMID_SELF {
        caller
    } else {
        dom
    };
    st.domains.contains_key(&d).then_some(d)
}

/// Drops what domain `dom`'s grant-table use holds, before its memory is destroyed
/// (`gnttab_release_mappings` + `grant_table_destroy`): every mapping it made is unpinned in
/// the granter's table (in-use bits cleared) and its device-mapping references dropped (its
/// host mappings' references belong to its page tables, which
/// [`crate::mm::destroy_domain_memory`] tears down); its own table and active entries go.
/// Its grant frames stay owned by it until its memory is destroyed.
pub fn release_domain(st: &mut HvState, env: &mut dyn MmEnv, dom: DomId) -> Result<(), HvError> {
    let maps: Vec<(u32, MapTrack)> = st
        .gnttab_maptrack
        .iter()
        .filter(|((d, _), _)| *d == dom)
        .map(|((_, h), m)| (*h, m.clone()))
        .collect();
    for (h, m) in maps {
        let ro = m.flags & gt::GNTMAP_READONLY != 0;
        let mut sub = 0;
        if m.flags & gt::GNTMAP_DEVICE_MAP != 0 {
            sub += if ro { PIN_DEVR } else { PIN_DEVW };
            map::put_device_refs(st, env, dom, m.mfn, ro)?;
        }
        if m.flags & gt::GNTMAP_HOST_MAP != 0 {
            sub += if ro { PIN_HSTR } else { PIN_HSTW };
        }
        if m.domid != dom {
            unpin(st, env, m.domid, m.gref, sub, ro);
        }
        st.gnttab_maptrack.remove(env.journal(), &(dom, h));
    }
    let active: Vec<u32> = st
        .gnttab_active
        .iter()
        .filter(|((d, _), _)| *d == dom)
        .map(|((_, g), _)| *g)
        .collect();
    for g in active {
        st.gnttab_active.remove(env.journal(), &(dom, g));
    }
    st.gnttab.remove(env.journal(), &dom);
    Ok(())
}
