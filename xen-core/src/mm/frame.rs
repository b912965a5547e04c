//! The reference-count and type machine of `struct page_info` (x86/mm.c `get_page`,
//! `put_page`, `_get_page_type`, `_put_page_type`), without Xen's preemption: a type change of a
//! page table validates (or devalidates) it completely inside the transaction.

use super::env::MmEnv;
use super::{pt, PageInfo, PageType};
use crate::effect::DomId;
use crate::hv::{HvError, HvState};
use dom0_interface::errno::XenErrno;

/// Largest general or type count (Xen refuses to overflow its count fields).
const MAX_COUNT: u32 = u32::MAX - 2;

/// The frame `mfn`, if it belongs to anyone.
pub fn frame(st: &HvState, mfn: u64) -> Option<&PageInfo> {
    st.frames.get(&mfn)
}

/// Updates frame `mfn` (which must exist).
pub(crate) fn with_frame<R>(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    f: impl FnOnce(&mut PageInfo) -> R,
) -> Option<R> {
    st.frames.update(env.journal(), &mfn, f)
}

/// `get_page`: takes a general reference on `mfn` if `dom` owns it and it is live; -EINVAL
/// otherwise (as `get_page_from_mfn` callers answer).
pub fn get_page(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    dom: DomId,
) -> Result<(), HvError> {
    get_page_info(st, env, mfn, dom).map(|_| ())
}

/// [`get_page`], answering the frame's record as the reference left it (one lookup of the
/// frame table for the check, the change and the answer).
pub fn get_page_info(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    dom: DomId,
) -> Result<PageInfo, HvError> {
    st.frames
        .update_if(
            env.journal(),
            &mfn,
            |p| p.owner == dom && p.count > 0 && p.count < MAX_COUNT,
            |p| {
                p.count += 1;
                p.clone()
            },
        )
        .ok_or(XenErrno::EINVAL.into())
}

/// `put_page`: drops a general reference; the last one frees the frame.
pub fn put_page(st: &mut HvState, env: &mut dyn MmEnv, mfn: u64) {
    let Some(left) = with_frame(st, env, mfn, |p| {
        p.count = p.count.saturating_sub(1);
        p.count
    }) else {
        return;
    };
    if left == 0 {
        if let Some(p) = st.frames.remove(env.journal(), &mfn) {
            frame_gone(st, env.journal(), &p);
        }
        env.freed(mfn);
    }
}

/// Frame `p` (already out of the frame table) is gone for good: a non-special one leaves its
/// owner's `tot_pages`, and a destroyed domain kept alive only by frames other domains still
/// map (a "zombie": dying, as Xen keeps a domain until its `tot_pages` reach 0) goes with its
/// last one.
pub(crate) fn frame_gone(st: &mut HvState, j: &mut lockstep::Journal, p: &PageInfo) {
    if p.special {
        return;
    }
    let left = st.domains.update(j, &p.owner, |d| {
        d.tot_pages = d.tot_pages.saturating_sub(1);
        (d.flags.dying, d.tot_pages)
    });
    if left == Some((true, 0)) {
        st.domains.remove(j, &p.owner);
    }
}

/// `get_page_type`: takes a type reference of type `ty` on `mfn` (the caller holds a general
/// reference). A type change needs a zero type count and validates page tables; a different
/// type in use is -EINVAL; a validation failure returns its errno and leaves the type unset.
/// A page becoming a segment-descriptor page has its descriptors checked (and fixed up) first.
pub fn get_page_type(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    ty: PageType,
) -> Result<(), HvError> {
    let Some(p) = st.frames.get(&mfn).cloned() else {
        return Err(XenErrno::EINVAL.into());
    };
    if p.type_count >= MAX_COUNT {
        return Err(XenErrno::EINVAL.into());
    }
    if p.type_count > 0 {
        if p.ty != ty || !p.validated {
            return Err(XenErrno::EINVAL.into());
        }
        with_frame(st, env, mfn, |q| q.type_count += 1);
        return Ok(());
    }
    let needs_validation = p.ty != ty || !p.validated;
    if p.ty != ty && p.ty != PageType::None {
        // A type change: no vCPU of the owner may keep a stale TLB entry from the old use
        // (above all a writable mapping of a frame about to become a page table).
        env.emit(crate::effect::Effect::Mm(
            crate::effect::MmEffect::FlushTlb {
                dom: p.owner,
                vcpus: None,
                va: None,
            },
        ));
    }
    if needs_validation && ty == PageType::SegDesc {
        validate_segdesc_page(env, mfn)?;
    }
    with_frame(st, env, mfn, |q| {
        if q.ty != ty {
            q.ty = ty;
            q.validated = false;
        }
        q.type_count = 1;
        if !ty.is_page_table() {
            q.validated = true;
        }
    });
    if needs_validation && ty.is_page_table() {
        with_frame(st, env, mfn, |q| q.linear = 0);
        match pt::promote(st, env, mfn, ty) {
            Ok(()) => {
                with_frame(st, env, mfn, |q| q.validated = true);
            }
            Err(e) => {
                with_frame(st, env, mfn, |q| {
                    q.ty = PageType::None;
                    q.type_count = 0;
                    q.validated = false;
                });
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `validate_segdesc_page`: every descriptor of `mfn` checked, Xen's fix-ups written back;
/// -EINVAL (nothing written) if one is refused. Kept out of line: [`get_page_type`] recurses
/// through page-table validation, so its own frame must stay small (a table copy in it
/// overflowed a CPU stack during page-table promotion).
#[inline(never)]
fn validate_segdesc_page(env: &mut dyn MmEnv, mfn: u64) -> Result<(), HvError> {
    let mut fixups = alloc::vec::Vec::new();
    for (i, &old) in env.read_table(mfn)?.iter().enumerate() {
        match crate::pv::desc::check_descriptor(old) {
            None => return Err(XenErrno::EINVAL.into()),
            Some(new) if new != old => fixups.push(((mfn << 12) + i as u64 * 8, new)),
            Some(_) => {}
        }
    }
    for (maddr, new) in fixups {
        env.write_word(maddr, new);
    }
    Ok(())
}

/// `put_page_type`: drops a type reference; the last one of a validated page table
/// devalidates it (drops every reference its entries hold). `container` is the table whose
/// entry held the reference (for linear page-table accounting).
pub fn put_page_type_from(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    container: Option<u64>,
) -> Result<(), HvError> {
    let Some(p) = st.frames.get(&mfn).cloned() else {
        return Ok(());
    };
    if p.type_count == 0 {
        return Ok(());
    }
    if let Some(c) = container {
        let same_type = st.frames.get(&c).is_some_and(|t| t.ty == p.ty);
        if same_type && p.ty.is_page_table() {
            // A linear mapping goes away: one use of `mfn`, one entry of `c`.
            with_frame(st, env, mfn, |q| q.linear += 1);
            with_frame(st, env, c, |q| q.linear -= 1);
        }
    }
    let last = p.type_count == 1;
    if last && p.validated && p.ty.is_page_table() {
        with_frame(st, env, mfn, |q| q.validated = false);
        pt::demote(st, env, mfn, p.ty)?;
    }
    with_frame(st, env, mfn, |q| {
        q.type_count = q.type_count.saturating_sub(1)
    });
    Ok(())
}

/// `put_page_type` of a reference not held by a table entry.
pub fn put_page_type(st: &mut HvState, env: &mut dyn MmEnv, mfn: u64) -> Result<(), HvError> {
    put_page_type_from(st, env, mfn, None)
}

/// `get_page_and_type_from_mfn`: a general and a type reference; -EINVAL if `dom` does not own
/// the frame; the general reference is dropped again if the type cannot be had.
pub fn get_page_and_type(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    dom: DomId,
    ty: PageType,
) -> Result<(), HvError> {
    get_page(st, env, mfn, dom)?;
    if let Err(e) = get_page_type(st, env, mfn, ty) {
        put_page(st, env, mfn);
        return Err(e);
    }
    Ok(())
}

/// `put_page_and_type`.
pub fn put_page_and_type(st: &mut HvState, env: &mut dyn MmEnv, mfn: u64) -> Result<(), HvError> {
    put_page_type(st, env, mfn)?;
    put_page(st, env, mfn);
    Ok(())
}

/// `get_page_from_gfn` + `get_page_type(PGT_writable_page)` for a page a PV domain hands the
/// hypervisor to write into later (its "gfn" is a machine frame): a vcpu_info, a FIFO control
/// block or event array page. `dom` must own `mfn` (a live frame) and its type must be able to
/// be writable (no page table, no descriptor page); every refusal is -EINVAL, as Xen answers.
/// The general and the writable type reference are held until [`unmap_guest_page`]: while
/// they are, the frame cannot become a page table and is not freed (a release of it by its
/// domain only drops the allocation reference).
pub fn map_guest_page(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    dom: DomId,
) -> Result<(), HvError> {
    match get_page_and_type(st, env, mfn, dom, PageType::Writable) {
        Ok(()) => Ok(()),
        Err(HvError::Errno(_)) => Err(XenErrno::EINVAL.into()),
        Err(e) => Err(e),
    }
}

/// Drops the references [`map_guest_page`] took (`put_page_and_type`); the last one frees the
/// frame (a writable page has nothing to devalidate, so this cannot fail).
pub fn unmap_guest_page(st: &mut HvState, env: &mut dyn MmEnv, mfn: u64) {
    // A frame already gone with its domain has nothing left to drop.
    if st.frames.contains_key(&mfn) {
        let _ = put_page_and_type(st, env, mfn);
    }
}

/// Sets the M2P entry of `mfn` (which must exist) to `pfn` and has the embedder write the
/// guest-visible table.
pub fn set_m2p(st: &mut HvState, env: &mut dyn MmEnv, mfn: u64, pfn: u64) {
    if with_frame(st, env, mfn, |p| p.m2p = pfn).is_some() {
        env.emit(crate::effect::Effect::Mm(crate::effect::MmEffect::SetM2p {
            mfn,
            pfn,
        }));
    }
}
