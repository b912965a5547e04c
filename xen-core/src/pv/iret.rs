//! `HYPERVISOR_iret`: return from a bounced handler using the `struct iret_context` the
//! guest pushed (the hypercall page's iret stub pushes RCX, R11, RAX and enters Xen with RSP
//! pointing at it). Returns to guest user mode when the frame's CS has RPL 3, switching to the
//! user page tables; the upcall mask becomes !RFLAGS.IF.

use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use crate::pv::bounce::{crash, set_guest_mode, EFLAGS_IF};
use crate::pv::effect::PvEffect;
use crate::pv::state;
use crate::request::GuestRegs;
use dom0_interface::arch_x86::{IretContext, VGCF_IN_SYSCALL};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::VMASST_TYPE_ARCHITECTURAL_IOPL;

/// `X86_EFLAGS_VM`.
const EFLAGS_VM: u64 = 1 << 17;

/// `do_iret` for the calling vCPU; the value is the guest's new RAX.
pub fn iret(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let regs = ctx.req.regs;
    let mut raw = [0u8; IretContext::SIZE];
    let frame = match ctx.copy_from_guest(regs.rsp, &mut raw) {
        Ok(()) => IretContext::read_from(&raw).ok(),
        Err(crate::hv::HvError::Abort(a)) => return Err(crate::hv::HvError::Abort(a)),
        Err(_) => None,
    };
    let Some(f) = frame else {
        crash(
            state,
            ctx,
            "fault while reading the IRET context from the guest stack",
        )?;
        return Ok(0);
    };
    let k = state::key(ctx);
    if f.cs & 3 == 3 {
        let user_cr3 = state.vcpus.get(&k).map_or(0, |v| v.user_cr3);
        if user_cr3 == 0 {
            crash(
                state,
                ctx,
                "guest switching to user mode with no user page tables",
            )?;
            return Ok(0);
        }
        set_guest_mode(state, ctx, false);
    }
    let vm_assist = state.domains.get(&k.0).map_or(0, |d| d.vm_assist);
    if vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0 {
        let j = ctx.journal();
        state::update(state, j, k, |p| p.iopl = f.rflags & state::EFLAGS_IOPL);
    }
    let rflags = (f.rflags & !(state::EFLAGS_IOPL | EFLAGS_VM)) | EFLAGS_IF;
    let rip = f.rip;
    let (rcx, r11) = if f.flags & VGCF_IN_SYSCALL != 0 {
        // Returned with SYSRET: the CPU loads RCX/R11 from RIP/RFLAGS.
        (rip, rflags)
    } else {
        (f.rcx, f.r11)
    };
    let new = GuestRegs {
        rax: f.rax,
        rip,
        cs: f.cs | 3,
        rflags,
        rsp: f.rsp,
        ss: f.ss | 3,
        rcx,
        r11,
        ..regs
    };
    ctx.emit(Effect::Pv(PvEffect::UpcallMask {
        dom: k.0,
        vcpu: k.1,
        masked: f.rflags & EFLAGS_IF == 0,
    }));
    ctx.emit(Effect::SetRegs(new));
    Ok(f.rax as i64)
}
