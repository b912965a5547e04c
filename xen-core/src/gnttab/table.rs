//! The table-level grant operations: setup_table, query_size, set_version, get_version,
//! get_status_frames, and growing a table with frames from the host allocator.

use super::{domain_by_any_id, status_frames_for, GrantTable, INITIAL_FRAMES};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{value_kind, HvError, HvResult, HvState};
use crate::hypercall::mmu::xsm_target;
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::{PageInfo, NO_FRAME};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::grant_table as gt;
use dom0_interface::guest_abi::GuestAbi;

/// Reserved entries kept across a version change (`GNTTAB_NR_RESERVED_ENTRIES`).
const RESERVED: u32 = gt::GNTTAB_NR_RESERVED_ENTRIES;

fn alloc_frames(env: &mut CtxEnv<'_, '_, '_, '_>, n: usize) -> Result<Option<Vec<u64>>, HvError> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = env.ctx.value(value_kind::ALLOC_FRAME)?;
        if m == NO_FRAME {
            return Ok(None);
        }
        out.push(m);
    }
    Ok(Some(out))
}

/// Registers freshly allocated frames as `dom`'s shared hypervisor pages.
fn share_frames(st: &mut HvState, env: &mut CtxEnv<'_, '_, '_, '_>, dom: DomId, mfns: &[u64]) {
    for &m in mfns {
        st.frames
            .insert(env.journal(), m, PageInfo::shared_with(dom));
    }
    if !mfns.is_empty() {
        env.emit(Effect::Mm(MmEffect::FramesAllocated {
            dom,
            mfns: mfns.to_vec(),
        }));
    }
}

/// `gnttab_grow_table`: gives `dom`'s table at least `want` shared frames (and the status
/// frames its version needs). False (nothing changed) when the host is out of frames.
pub fn grow(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    dom: DomId,
    want: u32,
) -> Result<bool, HvError> {
    let mut t = st.gnttab.get(&dom).cloned().unwrap_or_else(GrantTable::new);
    let want = want.max(INITIAL_FRAMES);
    let have = t.frames.len() as u32;
    let shared_n = want.saturating_sub(have) as usize;
    let status_n = if t.version == 2 {
        status_frames_for(want.max(have)).saturating_sub(t.status_frames.len() as u32) as usize
    } else {
        0
    };
    if shared_n == 0 && status_n == 0 && st.gnttab.contains_key(&dom) {
        return Ok(true);
    }
    let Some(mut new) = alloc_frames(env, shared_n + status_n)? else {
        return Ok(false);
    };
    share_frames(st, env, dom, &new);
    let status = new.split_off(shared_n);
    t.frames.extend(new);
    t.status_frames.extend(status);
    st.gnttab.insert(env.journal(), dom, t);
    Ok(true)
}

/// The caller's table (a default one if it has none yet).
fn table_of(st: &HvState, dom: DomId) -> GrantTable {
    st.gnttab.get(&dom).cloned().unwrap_or_else(GrantTable::new)
}

/// Whether `frame_list` can hold `n` xen_pfn_t (`guest_handle_okay`).
fn handle_okay(addr: u64, n: u64, size: u64) -> bool {
    let Some(bytes) = n.checked_mul(size) else {
        return false;
    };
    n == 0
        || (crate::mm::pt::addr_ok(addr)
            && addr
                .checked_add(bytes - 1)
                .is_some_and(crate::mm::pt::addr_ok))
}

/// `GNTTABOP_setup_table`.
pub fn setup_table(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    uop: u64,
    count: u32,
) -> HvResult {
    if count != 1 {
        return Err(XenErrno::EINVAL.into());
    }
    let caller = env.ctx.dom();
    let mut b = [0u8; gt::GnttabSetupTable::SIZE];
    env.ctx.copy_from_guest(uop, &mut b)?;
    let op = gt::GnttabSetupTable::read_from(&b).map_err(|_| XenErrno::EFAULT)?;
    if !handle_okay(op.frame_list, u64::from(op.nr_frames), 8) {
        return Err(XenErrno::EFAULT.into());
    }
    let status = match domain_by_any_id(st, caller, op.dom) {
        None => gt::GNTST_BAD_DOMAIN,
        Some(d) if xsm_target(st, caller, d).is_err() => gt::GNTST_PERMISSION_DENIED,
        Some(d) if op.nr_frames > table_of(st, d).max_frames => gt::GNTST_GENERAL_ERROR,
        Some(d) => {
            if grow(st, env, d, op.nr_frames)? {
                let frames = table_of(st, d).frames;
                let mut s = gt::GNTST_OKAY;
                for (i, m) in frames.iter().take(op.nr_frames as usize).enumerate() {
                    let at = op.frame_list.wrapping_add(i as u64 * 8);
                    match env.ctx.copy_to_guest(at, &m.to_le_bytes()) {
                        Ok(()) => {}
                        Err(HvError::Errno(_)) => s = gt::GNTST_BAD_VIRT_ADDR,
                        Err(a) => return Err(a),
                    }
                }
                s
            } else {
                gt::GNTST_GENERAL_ERROR
            }
        }
    };
    env.ctx.copy_to_guest(uop + 8, &status.to_le_bytes())?;
    Ok(0)
}

/// `GNTTABOP_query_size`.
pub fn query_size(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    uop: u64,
    count: u32,
) -> HvResult {
    if count != 1 {
        return Err(XenErrno::EINVAL.into());
    }
    let caller = env.ctx.dom();
    let mut b = [0u8; gt::GnttabQuerySize::SIZE];
    env.ctx.copy_from_guest(uop, &mut b)?;
    let mut op = gt::GnttabQuerySize::read_from(&b).map_err(|_| XenErrno::EFAULT)?;
    match domain_by_any_id(st, caller, op.dom) {
        None => op.status = gt::GNTST_BAD_DOMAIN,
        Some(d) if xsm_target(st, caller, d).is_err() => op.status = gt::GNTST_PERMISSION_DENIED,
        Some(d) => {
            let t = table_of(st, d);
            op.nr_frames = t.nr_frames();
            op.max_nr_frames = t.max_frames;
            op.status = gt::GNTST_OKAY;
        }
    }
    env.ctx.copy_to_guest(uop, &op.to_vec())?;
    Ok(0)
}

/// `GNTTABOP_get_version`.
pub fn get_version(st: &mut HvState, env: &mut CtxEnv<'_, '_, '_, '_>, uop: u64) -> HvResult {
    let caller = env.ctx.dom();
    let mut b = [0u8; gt::GnttabGetVersion::SIZE];
    env.ctx.copy_from_guest(uop, &mut b)?;
    let op = gt::GnttabGetVersion::read_from(&b).map_err(|_| XenErrno::EFAULT)?;
    let Some(d) = domain_by_any_id(st, caller, op.dom) else {
        return Err(XenErrno::ESRCH.into());
    };
    xsm_target(st, caller, d)?;
    let v = table_of(st, d).version;
    env.ctx.copy_to_guest(uop + 4, &v.to_le_bytes())?;
    Ok(0)
}

/// `GNTTABOP_get_status_frames`.
pub fn get_status_frames(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    uop: u64,
    count: u32,
) -> HvResult {
    if count != 1 {
        return Err(XenErrno::EINVAL.into());
    }
    let caller = env.ctx.dom();
    let mut b = [0u8; gt::GnttabGetStatusFrames::SIZE];
    env.ctx.copy_from_guest(uop, &mut b)?;
    let op = gt::GnttabGetStatusFrames::read_from(&b).map_err(|_| XenErrno::EFAULT)?;
    let status = match domain_by_any_id(st, caller, op.dom) {
        None => gt::GNTST_BAD_DOMAIN,
        Some(d) if xsm_target(st, caller, d).is_err() => gt::GNTST_PERMISSION_DENIED,
        Some(d) => {
            let t = table_of(st, d);
            if op.nr_frames as usize > t.status_frames.len() {
                gt::GNTST_GENERAL_ERROR
            } else {
                let mut s = gt::GNTST_OKAY;
                for (i, m) in t
                    .status_frames
                    .iter()
                    .take(op.nr_frames as usize)
                    .enumerate()
                {
                    let at = op.frame_list.wrapping_add(i as u64 * 8);
                    match env.ctx.copy_to_guest(at, &m.to_le_bytes()) {
                        Ok(()) => {}
                        Err(HvError::Errno(_)) => s = gt::GNTST_BAD_VIRT_ADDR,
                        Err(a) => return Err(a),
                    }
                }
                s
            }
        }
    };
    env.ctx.copy_to_guest(uop + 6, &status.to_le_bytes())?;
    Ok(0)
}

/// One reserved entry in version-neutral form: flags (with the in-use bits), domid, frame.
type Reserved = (u16, DomId, u64);

/// `GNTTABOP_set_version` (the caller's own table): 1 or 2, as Xen 4.17 with its default
/// `gnttab=max-ver:2`; -EBUSY while an entry beyond the reserved ones is pinned; the first
/// eight entries survive the change, everything else is cleared.
pub fn set_version(st: &mut HvState, env: &mut CtxEnv<'_, '_, '_, '_>, uop: u64) -> HvResult {
    let dom = env.ctx.dom();
    let mut b = [0u8; 4];
    env.ctx.copy_from_guest(uop, &mut b)?;
    let want = u32::from_le_bytes(b);
    let res = change_version(st, env, dom, want);
    if let Err(HvError::Abort(a)) = res {
        return Err(HvError::Abort(a));
    }
    let v = table_of(st, dom).version;
    env.ctx.copy_to_guest(uop, &v.to_le_bytes())?;
    res
}

fn change_version(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    dom: DomId,
    want: u32,
) -> HvResult {
    if want != 1 && want != 2 {
        return Err(XenErrno::EINVAL.into());
    }
    let cur = table_of(st, dom).version;
    if cur == want {
        return Ok(0);
    }
    let busy = st
        .gnttab_active
        .iter()
        .any(|((d, g), a)| *d == dom && *g >= RESERVED && a.pin != 0);
    if busy {
        return Err(XenErrno::EBUSY.into());
    }
    let nr = table_of(st, dom).nr_frames();
    if !grow(st, env, dom, nr)? {
        return Err(XenErrno::ENOMEM.into());
    }
    let mut t = table_of(st, dom);
    let mut reserved: Vec<Reserved> = Vec::new();
    for g in 0..RESERVED {
        let e = super::read_entry(st, env, dom, g)?;
        let status = super::read_status(st, env, dom, g)?;
        if cur == 2 {
            match e.flags & gt::GTF_TYPE_MASK {
                gt::GTF_PERMIT_ACCESS if e.frame >> 32 != 0 => return Err(XenErrno::ERANGE.into()),
                gt::GTF_TRANSITIVE => return Err(XenErrno::ERANGE.into()),
                gt::GTF_PERMIT_ACCESS => reserved.push((e.flags | status, e.domid, e.frame)),
                _ => reserved.push((0, 0, 0)),
            }
        } else {
            reserved.push((e.flags, e.domid, e.frame));
        }
    }
    let mut new_status: Vec<u64> = Vec::new();
    if want == 2 {
        let Some(s) = alloc_frames(env, status_frames_for(t.nr_frames()) as usize)? else {
            return Err(XenErrno::ENOMEM.into());
        };
        share_frames(st, env, dom, &s);
        new_status = s;
    } else {
        // gnttab_unpopulate_status_frames: the guest must have unmapped them.
        if t.status_frames
            .iter()
            .any(|m| st.frames.get(m).is_some_and(|p| p.count > 1))
        {
            return Err(XenErrno::EBUSY.into());
        }
        for m in core::mem::take(&mut t.status_frames) {
            crate::mm::put_page(st, env, m);
        }
    }
    for &m in &t.frames {
        env.emit(Effect::Mm(MmEffect::ClearPage { mfn: m }));
    }
    t.version = want;
    t.status_frames.extend(new_status);
    let first = t.frames[0] << 12;
    if want == 1 {
        for (i, (f, d, fr)) in reserved.iter().enumerate() {
            let w = u64::from(*f) | (u64::from(*d) << 16) | ((*fr & 0xffff_ffff) << 32);
            if w != 0 {
                env.write_word(first + i as u64 * 8, w);
            }
        }
    } else {
        let inuse = gt::GTF_READING | gt::GTF_WRITING;
        let mut status_words = [0u64; 2];
        for (i, (f, d, fr)) in reserved.iter().enumerate() {
            let hdr = u64::from(*f & !inuse) | (u64::from(*d) << 16);
            if hdr != 0 || *fr != 0 {
                env.write_word(first + i as u64 * 16, hdr);
                env.write_word(first + i as u64 * 16 + 8, *fr);
            }
            status_words[i / 4] |= u64::from(*f & inuse) << ((i % 4) * 16);
        }
        for (k, w) in status_words.iter().enumerate() {
            if *w != 0 {
                env.write_word((t.status_frames[0] << 12) + k as u64 * 8, *w);
            }
        }
    }
    st.gnttab.insert(env.journal(), dom, t);
    Ok(0)
}
