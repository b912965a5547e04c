//! `mmuext_op` (26): pin/unpin page tables, new kernel/user base pointers, TLB flushes and
//! INVLPG (local, multi, all), SET_LDT, CLEAR_PAGE, COPY_PAGE, cache flushes — x86/mm.c's
//! `do_mmuext_op`.

use super::mmu::{
    get_pg_owner, read_vcpumask, report_done, resume_done, xsm_target, MMU_UPDATE_PREEMPTED,
    OPS_PER_CALL,
};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{Ctx, HvError, HvResult, HvState};
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::frame::{get_page, get_page_and_type, get_page_type, put_page, put_page_and_type};
use crate::mm::pt::addr_ok;
use crate::mm::PageType;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::*;

fn errno(e: XenErrno) -> HvError {
    HvError::Errno(e)
}

/// Whether VMASST_TYPE_m2p_strict is on.
fn m2p_strict(st: &HvState, dom: DomId) -> bool {
    st.domains
        .get(&dom)
        .is_some_and(|d| d.vm_assist & (1 << VMASST_TYPE_M2P_STRICT) != 0)
}

fn emit_cr3(st: &HvState, env: &mut CtxEnv<'_, '_, '_, '_>) {
    let key = (env.ctx.req.dom, env.ctx.req.vcpu);
    if let Some(v) = st.vcpus.get(&key) {
        let (kernel, user) = (v.cr3, v.user_cr3);
        env.emit(Effect::Mm(MmEffect::SetCr3 { kernel, user }));
    }
}

/// `MMUEXT_SET_LDT` for the calling vCPU: a new base or size drops the LDT pages mapped so
/// far and records the new ones; nothing is mapped until the guest uses a selector in a page
/// ([`crate::pv::ldt`]). The embedder loads the LDT ([`MmEffect::LoadLdt`]) from the vCPU's
/// [`crate::pv::PvVcpu::ldt_frames`].
fn set_ldt(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    key: (DomId, u32),
    base: u64,
    ents: u32,
) -> Result<(), HvError> {
    let same = st
        .vcpus
        .get(&key)
        .is_some_and(|v| v.ldt_base == base && v.ldt_ents == ents);
    if same {
        return Ok(());
    }
    crate::pv::ldt::destroy(st, env, key)?;
    let j = env.journal();
    st.vcpus.update(j, &key, |v| {
        v.ldt_base = base;
        v.ldt_ents = ents;
    });
    env.emit(Effect::Mm(MmEffect::LoadLdt { base, ents }));
    Ok(())
}

/// `new_guest_cr3`: makes `mfn` the caller's kernel root (an L4 it owns), dropping the old
/// root and the LDT pages mapped so far.
fn new_baseptr(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    mfn: u64,
) -> Result<(), HvError> {
    let key = (env.ctx.req.dom, env.ctx.req.vcpu);
    let d = key.0;
    let old = st.vcpus.get(&key).map_or(0, |v| v.cr3 >> 12);
    if old != mfn {
        get_page_and_type(st, env, mfn, d, PageType::L4)?;
        if !m2p_strict(st, d) {
            env.emit(Effect::Mm(MmEffect::XenL4Slots { mfn, ro_m2p: true }));
        }
        let j = env.journal();
        st.vcpus.update(j, &key, |v| v.cr3 = mfn << 12);
        if old != 0 {
            put_page_and_type(st, env, old)?;
        }
        // The LDT pages were mapped from the old tables: they are paged in again from the
        // new ones on use (Xen's `pv_destroy_ldt` in `new_guest_cr3`).
        crate::pv::ldt::destroy(st, env, key)?;
    }
    emit_cr3(st, env);
    Ok(())
}

/// MMUEXT_NEW_USER_BASEPTR: `mfn` (an L4, or 0 for none) becomes the user root.
fn new_user_baseptr(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    mfn: u64,
) -> Result<(), HvError> {
    let key = (env.ctx.req.dom, env.ctx.req.vcpu);
    let d = key.0;
    let old = st.vcpus.get(&key).map_or(0, |v| v.user_cr3 >> 12);
    if old == mfn {
        return Ok(());
    }
    if mfn != 0 {
        get_page_and_type(st, env, mfn, d, PageType::L4)?;
        if m2p_strict(st, d) {
            env.emit(Effect::Mm(MmEffect::XenL4Slots { mfn, ro_m2p: false }));
        }
    }
    let j = env.journal();
    st.vcpus.update(j, &key, |v| v.user_cr3 = mfn << 12);
    if old != 0 {
        put_page_and_type(st, env, old)?;
    }
    emit_cr3(st, env);
    Ok(())
}

/// Pins `mfn` (owned by `pg_owner`) as `ty`.
fn pin(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    mfn: u64,
    pg_owner: DomId,
    ty: PageType,
) -> Result<(), HvError> {
    get_page(st, env, mfn, pg_owner)?;
    if let Err(e) = get_page_type(st, env, mfn, ty) {
        put_page(st, env, mfn);
        return Err(e);
    }
    if st.frames.get(&mfn).is_some_and(|p| p.pinned) {
        put_page_and_type(st, env, mfn)?;
        return Err(errno(XenErrno::EINVAL));
    }
    let j = env.journal();
    st.frames.update(j, &mfn, |p| p.pinned = true);
    Ok(())
}

/// MMUEXT_UNPIN_TABLE.
fn unpin(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    mfn: u64,
    pg_owner: DomId,
) -> Result<(), HvError> {
    get_page(st, env, mfn, pg_owner)?;
    if !st.frames.get(&mfn).is_some_and(|p| p.pinned) {
        put_page(st, env, mfn);
        return Err(errno(XenErrno::EINVAL));
    }
    let j = env.journal();
    st.frames.update(j, &mfn, |p| p.pinned = false);
    put_page_and_type(st, env, mfn)?;
    put_page(st, env, mfn);
    Ok(())
}

/// A frame of `pg_owner` taken writable for CLEAR_PAGE / COPY_PAGE's destination.
fn get_writable(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    mfn: u64,
    pg_owner: DomId,
) -> Result<(), HvError> {
    get_page(st, env, mfn, pg_owner)?;
    match get_page_type(st, env, mfn, PageType::Writable) {
        Ok(()) => Ok(()),
        Err(HvError::Abort(a)) => Err(HvError::Abort(a)),
        Err(_) => {
            put_page(st, env, mfn);
            Err(errno(XenErrno::EINVAL))
        }
    }
}

/// One operation.
fn mmuext_one(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    op: MmuextOp,
    pg_owner: DomId,
) -> Result<(), HvError> {
    let d = env.ctx.req.dom;
    let vcpu = env.ctx.req.vcpu;
    let own = d == pg_owner;
    let privileged = super::is_privileged(st, d);
    let flush = |env: &mut CtxEnv<'_, '_, '_, '_>, vcpus: Option<alloc::vec::Vec<u32>>, va| {
        env.emit(Effect::Mm(MmEffect::FlushTlb { dom: d, vcpus, va }));
    };
    match op.cmd {
        MMUEXT_PIN_L1_TABLE | MMUEXT_PIN_L2_TABLE | MMUEXT_PIN_L3_TABLE | MMUEXT_PIN_L4_TABLE => {
            let ty =
                PageType::table((op.cmd - MMUEXT_PIN_L1_TABLE + 1) as u8).unwrap_or(PageType::L1);
            pin(st, env, op.arg1, pg_owner, ty)
        }
        MMUEXT_UNPIN_TABLE => unpin(st, env, op.arg1, pg_owner),
        MMUEXT_NEW_BASEPTR if !own => Err(errno(XenErrno::EPERM)),
        MMUEXT_NEW_BASEPTR => new_baseptr(st, env, op.arg1),
        MMUEXT_NEW_USER_BASEPTR if !own => Err(errno(XenErrno::EPERM)),
        MMUEXT_NEW_USER_BASEPTR => new_user_baseptr(st, env, op.arg1),
        MMUEXT_TLB_FLUSH_LOCAL
        | MMUEXT_INVLPG_LOCAL
        | MMUEXT_TLB_FLUSH_MULTI
        | MMUEXT_INVLPG_MULTI
        | MMUEXT_TLB_FLUSH_ALL
        | MMUEXT_INVLPG_ALL
        | MMUEXT_FLUSH_CACHE
        | MMUEXT_FLUSH_CACHE_GLOBAL
        | MMUEXT_SET_LDT
            if !own =>
        {
            Err(errno(XenErrno::EPERM))
        }
        MMUEXT_TLB_FLUSH_LOCAL => {
            flush(env, Some(alloc::vec![vcpu]), None);
            Ok(())
        }
        MMUEXT_INVLPG_LOCAL => {
            if addr_ok(op.arg1) {
                flush(env, Some(alloc::vec![vcpu]), Some(op.arg1));
            }
            Ok(())
        }
        MMUEXT_TLB_FLUSH_MULTI | MMUEXT_INVLPG_MULTI => {
            let mask = match read_vcpumask(st, env.ctx, op.arg2) {
                Ok(m) => m,
                Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
                Err(_) => return Err(errno(XenErrno::EINVAL)),
            };
            if op.cmd == MMUEXT_TLB_FLUSH_MULTI {
                flush(env, Some(mask), None);
            } else if addr_ok(op.arg1) {
                flush(env, Some(mask), Some(op.arg1));
            }
            Ok(())
        }
        MMUEXT_TLB_FLUSH_ALL => {
            flush(env, None, None);
            Ok(())
        }
        MMUEXT_INVLPG_ALL => {
            if addr_ok(op.arg1) {
                flush(env, None, Some(op.arg1));
            }
            Ok(())
        }
        MMUEXT_FLUSH_CACHE | MMUEXT_FLUSH_CACHE_GLOBAL => {
            if !privileged {
                return Err(errno(if op.cmd == MMUEXT_FLUSH_CACHE {
                    XenErrno::EACCES
                } else {
                    XenErrno::EINVAL
                }));
            }
            env.emit(Effect::Mm(MmEffect::FlushCache));
            Ok(())
        }
        MMUEXT_SET_LDT => {
            let ents = op.nr_ents();
            let base = if ents != 0 { op.arg1 } else { 0 };
            if ents > 8192 || (ents != 0 && (base & 0xfff != 0 || !addr_ok(base))) {
                return Err(errno(XenErrno::EINVAL));
            }
            set_ldt(st, env, (d, vcpu), base, ents)?;
            Ok(())
        }
        MMUEXT_CLEAR_PAGE => {
            get_writable(st, env, op.arg1, pg_owner)?;
            env.emit(Effect::Mm(MmEffect::ClearPage { mfn: op.arg1 }));
            put_page_and_type(st, env, op.arg1)
        }
        MMUEXT_COPY_PAGE => {
            let src = op.arg2;
            get_page(st, env, src, pg_owner)?;
            if let Err(e) = get_writable(st, env, op.arg1, pg_owner) {
                put_page(st, env, src);
                return Err(e);
            }
            env.emit(Effect::Mm(MmEffect::CopyPage { dst: op.arg1, src }));
            put_page_and_type(st, env, op.arg1)?;
            put_page(st, env, src);
            Ok(())
        }
        MMUEXT_MARK_SUPER | MMUEXT_UNMARK_SUPER => Err(errno(XenErrno::EOPNOTSUPP)),
        _ => Err(errno(XenErrno::ENOSYS)),
    }
}

/// `mmuext_op(ops, count, pdone, foreigndom)`.
pub fn mmuext_op(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [uops, count, pdone, foreigndom, a4] = ctx.req.args;
    let d = ctx.dom();
    let mut count = count & 0xffff_ffff;
    let foreigndom = foreigndom & 0xffff_ffff;
    let mut done = 0u64;
    if count == MMU_UPDATE_PREEMPTED && uops == 0 {
        return Ok(i64::from(foreigndom as i32));
    }
    if count & MMU_UPDATE_PREEMPTED != 0 {
        count &= !MMU_UPDATE_PREEMPTED;
        done = resume_done(ctx, pdone)?;
    }
    if count > 0 && !addr_ok(uops) {
        return Err(errno(XenErrno::EFAULT));
    }
    let pg_owner = get_pg_owner(st, d, foreigndom as u16)?;
    xsm_target(st, d, pg_owner)?;
    let mut rc: Result<(), XenErrno> = Ok(());
    let mut i = 0u64;
    let mut preempted = false;
    {
        let mut env = CtxEnv::new(ctx);
        while i < count {
            if i >= OPS_PER_CALL {
                preempted = true;
                break;
            }
            let mut b = [0u8; 24];
            match env.ctx.copy_from_guest(uops.wrapping_add(i * 24), &mut b) {
                Ok(()) => {}
                Err(HvError::Errno(e)) => {
                    rc = Err(e);
                    break;
                }
                Err(a) => return Err(a),
            }
            let op = MmuextOp::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
            match mmuext_one(st, &mut env, op, pg_owner) {
                Ok(()) => i += 1,
                Err(HvError::Errno(e)) => {
                    rc = Err(e);
                    break;
                }
                Err(a) => return Err(a),
            }
        }
        env.finish();
    }
    if preempted {
        ctx.emit(Effect::Continue([
            uops.wrapping_add(i * 24),
            (count - i) | MMU_UPDATE_PREEMPTED,
            pdone,
            foreigndom,
            a4,
        ]));
        report_done(ctx, pdone, done + i)?;
        return Ok(0);
    }
    report_done(ctx, pdone, done + i)?;
    rc.map(|()| 0).map_err(errno)
}
