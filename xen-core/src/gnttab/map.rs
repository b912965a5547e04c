//! `GNTTABOP_map_grant_ref`, `unmap_grant_ref` and `unmap_and_replace` for 64-bit PV
//! domains (`map_grant_ref`, `unmap_common`, `create_grant_pv_mapping`,
//! `replace_grant_pv_mapping`): host mappings by linear address or by PTE machine address
//! (`GNTMAP_contains_pte`), device mappings (the frame's bus address), read-only or writable.

use super::{check_pin, commit_pin, unpin, Gntst, MapTrack, PinReq, MAPTRACK_PER_PAGE};
use super::{MAX_MAPTRACK_FRAMES, PIN_DEVR, PIN_DEVW, PIN_HSTR, PIN_HSTW};
use crate::effect::DomId;
use crate::hv::{HvError, HvState};
use crate::mm::env::MmEnv;
use crate::mm::frame::{get_page, get_page_type, put_page, put_page_type};
use crate::mm::pt::{self, entry_mfn, note_foreign, A, D, G, NX, P, RW, US};
use crate::mm::PageType;
use dom0_interface::grant_table as gt;

/// What a map request returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapResult {
    /// `GNTST_*`.
    pub status: Gntst,
    /// The maptrack handle (valid with `GNTST_okay`).
    pub handle: u32,
    /// The frame's bus address (valid with `GNTST_okay`).
    pub dev_bus_addr: u64,
}

fn fail(status: Gntst) -> MapResult {
    MapResult {
        status,
        handle: 0,
        dev_bus_addr: 0,
    }
}

/// `grant_to_pte_flags` + the 64-bit PV part of `adjust_guest_l1e`.
pub fn grant_pte_flags(flags: u32) -> u64 {
    let mut f = P | A | D | NX;
    if flags & gt::GNTMAP_APPLICATION_MAP != 0 {
        f |= US | G;
    } else {
        f |= US | pt::GUEST_KERNEL;
    }
    if flags & gt::GNTMAP_READONLY == 0 {
        f |= RW;
    }
    f
}

/// The next maptrack handle of `ld` (`get_maptrack_handle`), not yet taken.
fn next_handle(st: &HvState, ld: DomId) -> Option<u32> {
    let t = st
        .gnttab
        .get(&ld)
        .cloned()
        .unwrap_or_else(super::GrantTable::new);
    if t.maptrack_fresh < t.maptrack_limit {
        return Some(t.maptrack_fresh);
    }
    if let Some(h) = t.maptrack_free.front() {
        return Some(*h);
    }
    (t.maptrack_limit < MAX_MAPTRACK_FRAMES * MAPTRACK_PER_PAGE).then_some(t.maptrack_limit)
}

/// Takes handle `h` (as [`next_handle`] chose it).
fn take_handle(st: &mut HvState, env: &mut dyn MmEnv, ld: DomId, h: u32) {
    let mut t = st
        .gnttab
        .get(&ld)
        .cloned()
        .unwrap_or_else(super::GrantTable::new);
    if t.maptrack_fresh < t.maptrack_limit {
        t.maptrack_fresh += 1;
    } else if t.maptrack_free.front() == Some(&h) {
        t.maptrack_free.pop_front();
    } else {
        t.maptrack_limit += MAPTRACK_PER_PAGE;
        t.maptrack_fresh = h + 1;
    }
    st.gnttab.insert(env.journal(), ld, t);
}

/// Releases handle `h` of `ld` (`put_maptrack_handle`: to the tail of the free list).
fn put_handle(st: &mut HvState, env: &mut dyn MmEnv, ld: DomId, h: u32) {
    st.gnttab_maptrack.remove(env.journal(), &(ld, h));
    if let Some(mut t) = st.gnttab.get(&ld).cloned() {
        t.maptrack_free.push_back(h);
        st.gnttab.insert(env.journal(), ld, t);
    }
}

/// The L1 entry a host mapping at `addr` goes into: `(L1 frame, entry machine address)` if it
/// is an L1 table of `ld`'s own, validated and in use (Xen's `page_lock` of it; a frame merely
/// left with an L1 type but no type reference is not one).
fn host_slot(
    st: &HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    cr3: u64,
    addr: u64,
    contains_pte: bool,
) -> Result<Option<u64>, HvError> {
    let (l1, maddr) = if contains_pte {
        if addr & 7 != 0 {
            return Ok(None);
        }
        (addr >> 12, addr)
    } else {
        match pt::walk_to_l1e(env, cr3, addr)? {
            Some(x) => x,
            None => return Ok(None),
        }
    };
    let ok = st.frames.get(&l1).is_some_and(|p| {
        p.owner == ld && p.count > 0 && p.ty == PageType::L1 && p.validated && p.type_count > 0
    });
    Ok(ok.then_some(maddr))
}

/// Takes the references a mapping of `mfn` (owned by `rd`) by `ld` holds: a general one, a
/// writable type one if `rw`, recorded as foreign when `rd != ld`. None if the frame cannot
/// be had (a writable mapping of a page table or descriptor page).
fn get_refs(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    rd: DomId,
    ld: DomId,
    rw: bool,
) -> Result<bool, HvError> {
    if get_page(st, env, mfn, rd).is_err() {
        return Ok(false);
    }
    if rw {
        match get_page_type(st, env, mfn, PageType::Writable) {
            Ok(()) => {}
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
            Err(_) => {
                put_page(st, env, mfn);
                return Ok(false);
            }
        }
    }
    if rd != ld {
        note_foreign(st, env, ld, mfn, rw, true);
    }
    Ok(true)
}

/// Drops the references a device mapping of `mfn` by `ld` held.
pub fn put_device_refs(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    mfn: u64,
    readonly: bool,
) -> Result<(), HvError> {
    let Some(owner) = st.frames.get(&mfn).map(|p| p.owner) else {
        return Ok(());
    };
    if owner != ld {
        note_foreign(st, env, ld, mfn, !readonly, false);
    }
    if !readonly {
        put_page_type(st, env, mfn)?;
    }
    put_page(st, env, mfn);
    Ok(())
}

/// Whether a writable type reference on `mfn` could be taken (no page table, no descriptor
/// page in use).
fn can_write(st: &HvState, mfn: u64) -> bool {
    st.frames
        .get(&mfn)
        .is_some_and(|p| p.type_count == 0 || p.ty == PageType::Writable)
}

/// One `gnttab_map_grant_ref` by `ld` (whose current page tables are at `cr3`).
pub fn map_one(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    cr3: u64,
    op: &gt::GnttabMapGrantRef,
) -> Result<MapResult, HvError> {
    let flags = op.flags;
    let dev = flags & gt::GNTMAP_DEVICE_MAP != 0;
    let host = flags & gt::GNTMAP_HOST_MAP != 0;
    let ro = flags & gt::GNTMAP_READONLY != 0;
    if !dev && !host {
        return Ok(fail(gt::GNTST_BAD_GNTREF));
    }
    let rd = op.dom;
    if !st.domains.contains_key(&rd) {
        return Ok(fail(gt::GNTST_BAD_DOMAIN));
    }
    let Some(handle) = next_handle(st, ld) else {
        return Ok(fail(gt::GNTST_NO_DEVICE_SPACE));
    };
    let nr = st
        .gnttab
        .get(&rd)
        .cloned()
        .unwrap_or_else(super::GrantTable::new)
        .nr_entries();
    if op.r#ref >= nr {
        return Ok(fail(gt::GNTST_BAD_GNTREF));
    }
    let mut add = 0;
    if dev {
        add += if ro { PIN_DEVR } else { PIN_DEVW };
    }
    if host {
        add += if ro { PIN_HSTR } else { PIN_HSTW };
    }
    let req = PinReq {
        rd,
        gref: op.r#ref,
        ld,
        readonly: ro,
        mapflag: true,
        add,
    };
    let pinned = match check_pin(st, env, req)? {
        Ok(p) => p,
        Err(s) => return Ok(fail(s)),
    };
    let mfn = pinned.act.mfn;
    let owned = st
        .frames
        .get(&mfn)
        .is_some_and(|p| p.owner == rd && p.count > 0);
    if !owned || (!ro && !can_write(st, mfn)) {
        // could_not_pin.
        return Ok(fail(gt::GNTST_GENERAL_ERROR));
    }
    let slot = if host {
        match host_slot(
            st,
            env,
            ld,
            cr3,
            op.host_addr,
            flags & gt::GNTMAP_CONTAINS_PTE != 0,
        )? {
            Some(s) => Some(s),
            None => return Ok(fail(gt::GNTST_GENERAL_ERROR)),
        }
    } else {
        None
    };
    // Everything is checked: take the references, install the mapping, record it.
    if dev && !get_refs(st, env, mfn, rd, ld, !ro)? {
        return Ok(fail(gt::GNTST_GENERAL_ERROR));
    }
    if let Some(maddr) = slot {
        if !get_refs(st, env, mfn, rd, ld, !ro)? {
            if dev {
                put_device_refs(st, env, ld, mfn, ro)?;
            }
            return Ok(fail(gt::GNTST_GENERAL_ERROR));
        }
        let old = env.read_word(maddr)?;
        env.write_word(maddr, (mfn << 12) | grant_pte_flags(flags));
        pt::put_page_from_l1e(st, env, old, ld)?;
    }
    commit_pin(st, env, req, pinned);
    take_handle(st, env, ld, handle);
    st.gnttab_maptrack.insert(
        env.journal(),
        (ld, handle),
        MapTrack {
            gref: op.r#ref,
            flags: flags & 0xffff,
            domid: rd,
            mfn,
        },
    );
    Ok(MapResult {
        status: gt::GNTST_OKAY,
        handle,
        dev_bus_addr: mfn << 12,
    })
}

/// What an unmap asks for (`struct gnttab_unmap_common`'s inputs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnmapReq {
    /// Host mapping to remove (linear address or PTE machine address), 0: none.
    pub host_addr: u64,
    /// Device mapping to remove (its bus address), 0: none.
    pub dev_bus_addr: u64,
    /// The maptrack handle.
    pub handle: u32,
    /// unmap_and_replace: the linear address whose mapping moves into `host_addr`'s slot.
    pub new_addr: u64,
}

/// `replace_grant_pv_mapping`: replaces the grant PTE for `mfn` at `addr` with nothing or
/// with the PTE taken from `new_addr` (`steal_linear_address`), dropping the references the
/// grant PTE held.
fn replace_mapping(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    cr3: u64,
    r: &UnmapReq,
    mfn: u64,
    flags: u32,
) -> Result<bool, HvError> {
    let contains_pte = flags & gt::GNTMAP_CONTAINS_PTE != 0;
    if contains_pte && r.new_addr != 0 {
        return Ok(false);
    }
    let Some(maddr) = host_slot(st, env, ld, cr3, r.host_addr, contains_pte)? else {
        return Ok(false);
    };
    let old = env.read_word(maddr)?;
    let want = grant_pte_flags(flags);
    if entry_mfn(old) != mfn || (old ^ want) & (P | RW) != 0 {
        return Ok(false);
    }
    let mut new = 0;
    if r.new_addr != 0 {
        let Some(steal) = host_slot(st, env, ld, cr3, r.new_addr, false)? else {
            return Ok(false);
        };
        if steal == maddr {
            return Ok(false);
        }
        new = env.read_word(steal)?;
        env.write_word(steal, 0);
    }
    env.write_word(maddr, new);
    pt::put_page_from_l1e(st, env, old, ld)?;
    Ok(true)
}

/// One unmap (`unmap_common` + `unmap_common_complete`) by `ld`.
pub fn unmap_one(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    cr3: u64,
    r: &UnmapReq,
) -> Result<Gntst, HvError> {
    let Some(mut m) = st.gnttab_maptrack.get(&(ld, r.handle)).cloned() else {
        return Ok(gt::GNTST_BAD_HANDLE);
    };
    if r.dev_bus_addr != 0 && m.flags & gt::GNTMAP_DEVICE_MAP != 0 && r.dev_bus_addr != m.mfn << 12
    {
        return Ok(gt::GNTST_GENERAL_ERROR);
    }
    let ro = m.flags & gt::GNTMAP_READONLY != 0;
    let mut sub = 0;
    if r.host_addr != 0 && m.flags & gt::GNTMAP_HOST_MAP != 0 {
        if !replace_mapping(st, env, ld, cr3, r, m.mfn, m.flags)? {
            return Ok(gt::GNTST_GENERAL_ERROR);
        }
        m.flags &= !gt::GNTMAP_HOST_MAP;
        sub += if ro { PIN_HSTR } else { PIN_HSTW };
    }
    if r.dev_bus_addr != 0 && m.flags & gt::GNTMAP_DEVICE_MAP != 0 {
        m.flags &= !gt::GNTMAP_DEVICE_MAP;
        sub += if ro { PIN_DEVR } else { PIN_DEVW };
        put_device_refs(st, env, ld, m.mfn, ro)?;
    }
    if m.flags & (gt::GNTMAP_HOST_MAP | gt::GNTMAP_DEVICE_MAP) == 0 {
        put_handle(st, env, ld, r.handle);
    } else {
        st.gnttab_maptrack
            .insert(env.journal(), (ld, r.handle), m.clone());
    }
    if sub != 0 {
        unpin(st, env, m.domid, m.gref, sub, ro);
    }
    Ok(gt::GNTST_OKAY)
}
