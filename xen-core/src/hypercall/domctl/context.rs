//! `XEN_DOMCTL_getvcpucontext` (Xen 4.17): another vCPU's `vcpu_guest_context` as
//! `arch_get_info_guest` fills it for a 64-bit PV vCPU. What the replica holds (callbacks,
//! stacks, segment bases, page-table roots, virtual IDT, control and debug registers, flags)
//! comes from the replica; the registers and FXSAVE image the runtime saved when the vCPU
//! last left its CPU come in as input ([`value_kind::vcpu_saved`]), so leader and follower
//! copy out the same bytes.
//!
//! The data selectors DS, ES, FS, GS are those the runtime saved with the registers.
//! Not modelled (reported as 0): `error_code`, `entry_vector` and `saved_upcall_mask`
//! (DualVisor keeps none of them per vCPU). A vCPU running on another leader CPU is not
//! paused as Xen's `vcpu_pause` does: its registers are those saved when it last left a CPU.

use super::Done;
use crate::domain::VcpuKey;
use crate::hv::{value_kind, Ctx, HvError, HvState};
use crate::pv::state::{CR0_TS, HOST_CR0};
use alloc::boxed::Box;
use dom0_interface::arch_x86::{
    TrapInfo, VcpuGuestContext, VGCF_FAILSAFE_DISABLES_EVENTS, VGCF_IN_KERNEL, VGCF_ONLINE,
    VGCF_SYSCALL_DISABLES_EVENTS,
};
use dom0_interface::domctl::{XenDomctl, XenDomctlVcpucontext};
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;

/// `XEN_DOMCTL_getvcpucontext`: -EINVAL for a vCPU at or above `max_vcpus`, not created, or
/// the caller itself (Xen cannot pause it); -ENODATA if it was never initialised (or was
/// reset); otherwise the context is copied to `ctxt` (-EFAULT) and the struct copied back.
pub(super) fn getvcpucontext(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &XenDomctl,
) -> Result<Done, HvError> {
    let c: XenDomctlVcpucontext = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let d = op.domain;
    let key = (d, c.vcpu);
    let max = state.domains.get(&d).map_or(0, |x| x.max_vcpus);
    let own = d == ctx.dom() && c.vcpu == ctx.req.vcpu;
    if c.vcpu >= max || !state.vcpus.contains_key(&key) || own {
        return Err(XenErrno::EINVAL.into());
    }
    if !crate::sched::vcpu_sched(state, key).initialised {
        return Err(XenErrno::ENODATA.into());
    }
    // Boxed: the context is 5 KiB.
    let vc = Box::new(context_of(state, ctx, key)?);
    ctx.copy_to_guest(c.ctxt, &vc.to_vec())?;
    Done::copyback()
}

/// `arch_get_info_guest` for the 64-bit PV vCPU `key`.
pub(crate) fn context_of(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
) -> Result<VcpuGuestContext, HvError> {
    // The vCPU ids the input encoding holds cover every vCPU DualVisor creates.
    if key.1 >= value_kind::VCPU_SAVED_MAX_VCPUS {
        return Err(XenErrno::EINVAL.into());
    }
    let mut w = [0u64; value_kind::VCPU_SAVED_WORDS as usize];
    for (i, x) in w.iter_mut().enumerate() {
        *x = ctx.value(value_kind::vcpu_saved(key.0, key.1, i as u32))?;
    }
    let v = state.vcpus.get(&key).cloned().unwrap_or_default();
    let pv = crate::pv::state::get(state, key);
    let mut c = VcpuGuestContext::default();
    let fx = &w[value_kind::VCPU_SAVED_FX as usize..value_kind::VCPU_SAVED_SEGS as usize];
    for (dst, word) in c.fpu_ctxt.chunks_exact_mut(8).zip(fx) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    // Xen: vgc_flags without i387_valid and in_kernel, i387_valid if the FPU was
    // initialised (here: if the context said so), online unless down, in_kernel by mode.
    c.flags = (pv.vgc_flags
        & !(VGCF_IN_KERNEL | VGCF_FAILSAFE_DISABLES_EVENTS | VGCF_SYSCALL_DISABLES_EVENTS))
        | bit(pv.failsafe_disables_events, VGCF_FAILSAFE_DISABLES_EVENTS)
        | bit(pv.syscall_disables_events, VGCF_SYSCALL_DISABLES_EVENTS)
        | bit(v.online, VGCF_ONLINE)
        | bit(v.kernel_mode, VGCF_IN_KERNEL);
    let u = &mut c.user_regs;
    [
        u.rax, u.rbx, u.rcx, u.rdx, u.rsi, u.rdi, u.rbp, u.r8, u.r9, u.r10, u.r11, u.r12, u.r13,
        u.r14, u.r15, u.rip,
    ] = [
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12], w[13],
        w[14], w[15],
    ];
    u.cs = w[16] as u16;
    // IOPL is virtualised: merged back into the saved flags.
    u.rflags = w[17] | pv.iopl;
    u.rsp = w[18];
    u.ss = w[19] as u16;
    [u.ds, u.es, u.fs, u.gs] = crate::pv::segments::unpack(w[value_kind::VCPU_SAVED_SEGS as usize]);
    for (vector, t) in c.trap_ctxt.iter_mut().enumerate() {
        let e = crate::pv::state::trap(state, key, vector as u8);
        if e != crate::pv::TrapEntry::default() {
            *t = TrapInfo {
                vector: vector as u8,
                flags: e.flags,
                cs: e.cs,
                address: e.address,
            };
        }
    }
    // Xen copies its `gdt_frames` (FIRST_RESERVED_GDT_PAGE of them; the rest stay 0).
    c.gdt_frames[..pv.gdt_frames.len()].copy_from_slice(&pv.gdt_frames);
    c.gdt_ents = u64::from(pv.gdt_ents);
    c.ldt_base = v.ldt_base;
    c.ldt_ents = u64::from(v.ldt_ents);
    c.kernel_ss = v.kernel_ss;
    c.kernel_sp = v.kernel_sp;
    c.ctrlreg[0] = (HOST_CR0 & !CR0_TS) | bit(pv.cr0_ts, CR0_TS);
    c.ctrlreg[1] = v.user_cr3;
    c.ctrlreg[2] = pv.cr2;
    c.ctrlreg[3] = v.cr3;
    c.ctrlreg[4] = pv.cr4;
    c.ctrlreg[5..8].copy_from_slice(&pv.ctrlreg_high);
    c.debugreg[..4].copy_from_slice(&pv.dr);
    c.debugreg[6] = pv.dr6;
    c.debugreg[7] = pv.dr7 | pv.dr7_emul;
    c.event_callback_eip = v.event_callback;
    c.failsafe_callback_eip = v.failsafe_callback;
    c.syscall_callback_eip = v.syscall_callback;
    c.vm_assist = state.domains.get(&key.0).map_or(0, |d| d.vm_assist);
    c.fs_base = v.fs_base;
    c.gs_base_kernel = v.gs_base_kernel;
    c.gs_base_user = v.gs_base_user;
    Ok(c)
}

/// `flag` if `on`, else 0.
fn bit(on: bool, flag: u64) -> u64 {
    if on {
        flag
    } else {
        0
    }
}
