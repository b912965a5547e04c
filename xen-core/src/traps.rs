//! Guest exits other than hypercalls: exceptions, user-space SYSCALLs and interrupts, bounced
//! to the guest kernel through its virtual IDT and callbacks as Xen's PV entry code does
//! (`do_trap`, `do_general_protection`, `do_device_not_available`, `pv_emulate_*`, the
//! `int $0x80` and SYSCALL entry paths, event upcalls).
//!
//! Contract with the bare-metal side: an exception exit carries the vector, the error code and
//! (for #PF) CR2, with RIP at the faulting instruction. A ring-3 `int $n` that fails the
//! hardware gate check arrives as #GP; its vector is decoded from the `cd nn` bytes at RIP
//! (QEMU reports a wrong error code). An `int $n` through a DPL-3 hardware gate arrives with
//! vector n and RIP after the instruction. An `Interrupt` exit delivers a pending event upcall;
//! the bare-metal side issues one whenever it finds `evtchn_upcall_pending` set and the mask
//! clear before resuming a vCPU. Guest-virtual reads and probes of a transaction resolve
//! through the vCPU's kernel page tables. A #DB exit carries the hardware DR6 in place of CR2.
//! A #PF on the vCPU's LDT window is flagged as [`crate::pv::ldt`] describes. A
//! `ReturnFault` exit is an exception the return to the guest raised (the frame it was being
//! returned to in `regs`), handled as the guest's own ([`return_fault`]).

use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvState};
use crate::pv::bounce::{
    self, create_bounce_frame, inject, inject_hw, upcall_state, Extra, TrapBounce,
};
use crate::pv::effect::PvEffect;
use crate::pv::{emulate, state};
use crate::request::{ExitKind, GuestRegs};
use dom0_interface::arch_x86::FLAT_RING3_CS32;

/// The `int $0x80` vector Xen's entry code delivers directly.
pub const INT80_VECTOR: u8 = 0x80;

/// Handles a non-hypercall exit of the calling vCPU.
pub fn guest_exit(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    match ctx.req.kind {
        ExitKind::Hypercall | ExitKind::SwitchOut | ExitKind::RetireCpu => Ok(()),
        ExitKind::Interrupt => deliver_events(state, ctx),
        ExitKind::UserSyscall => user_syscall(state, ctx),
        ExitKind::Exception => exception(state, ctx),
        ExitKind::Failsafe => {
            let segs = crate::pv::segments::unpack(ctx.req.error_code);
            failsafe(state, ctx, segs)
        }
        ExitKind::ReturnFault => return_fault(state, ctx),
    }
}

/// Consecutive faults returning one vCPU to its guest, without the guest running in
/// between, after which its domain is crashed rather than the return tried again. The
/// frames the hypervisor builds (bounce frames on Xen's flat selectors) always return, so a
/// guest needs at most two (an LDT page mapped on the fault, then a selector refused).
pub const RETURN_FAULT_LIMIT: u64 = 4;

/// The `vector` word of an [`ExitKind::ReturnFault`] request: the exception in the low byte,
/// above it how many faults returning this vCPU came right before this one (the bare-metal
/// side counts them; any other exit of the vCPU resets the count).
pub fn return_fault_word(vector: u8, repeats: u64) -> u64 {
    u64::from(vector) | (repeats.min(u64::MAX >> 8) << 8)
}

/// The return to the guest faulted: Xen's `iret_exit_to_guest` fixup re-enters
/// `handle_exception` with the guest frame, so the exception is handled exactly as one the
/// guest raised at the frame it was being returned to (#GP/#NP/#SS with the selector as error
/// code bounced through its trap table, an LDT page mapped, #GP(0) emulated or bounced). A
/// vCPU whose returns keep faulting ([`RETURN_FAULT_LIMIT`]) gets its domain crashed.
pub fn return_fault(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let repeats = ctx.req.vector >> 8;
    if repeats >= RETURN_FAULT_LIMIT {
        return bounce::crash(state, ctx, "cannot return to the guest (repeated faults)");
    }
    let req = crate::request::Request {
        vector: ctx.req.vector & 0xff,
        kind: ExitKind::Exception,
        ..*ctx.req
    };
    exception(state, &mut ctx.with_req(&req))
}

/// `permit_softint`: a guest kernel may `int` into gates of DPL >= 1, user space only DPL 3.
pub fn permit_softint(dpl: u8, kernel_mode: bool) -> bool {
    dpl >= if kernel_mode { 1 } else { 3 }
}

fn kernel_mode(state: &HvState, ctx: &Ctx<'_, '_, '_>) -> bool {
    state
        .vcpus
        .get(&state::key(ctx))
        .is_some_and(|v| v.kernel_mode)
}

/// Delivers a pending, unmasked event upcall through the event callback (events masked).
pub fn deliver_events(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let (pending, mask) = upcall_state(ctx)?;
    if !pending || mask != 0 {
        return Ok(());
    }
    let eip = state
        .vcpus
        .get(&state::key(ctx))
        .map_or(0, |v| v.event_callback);
    let regs = ctx.req.regs;
    create_bounce_frame(
        state,
        ctx,
        &regs,
        TrapBounce {
            eip,
            mask_events: true,
            extra: Extra::None,
            clear_df: false,
        },
    )?;
    Ok(())
}

/// SYSCALL from guest user space: enter the registered syscall (or syscall32) callback; with
/// none registered the guest gets #UD from its virtual IDT.
pub fn user_syscall(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let k = state::key(ctx);
    let regs = ctx.req.regs;
    let pv = state::get(state, k);
    let (mut eip, mut mask) = if regs.cs & 0xffff == u64::from(FLAT_RING3_CS32) {
        (pv.syscall32_callback, pv.syscall32_disables_events)
    } else {
        let cb = state.vcpus.get(&k).map_or(0, |v| v.syscall_callback);
        (cb, pv.syscall_disables_events)
    };
    if eip == 0 {
        let ud = state::trap(state, k, 6);
        eip = ud.address;
        mask = ud.masks_events();
    }
    create_bounce_frame(
        state,
        ctx,
        &regs,
        TrapBounce {
            eip,
            mask_events: mask,
            extra: Extra::None,
            clear_df: true,
        },
    )?;
    Ok(())
}

/// A CPU exception in guest context.
pub fn exception(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let regs = ctx.req.regs;
    let ec = ctx.req.error_code;
    let Ok(vector) = u8::try_from(ctx.req.vector) else {
        bounce::crash(state, ctx, "exit with an impossible vector")?;
        return Ok(());
    };
    match vector {
        13 => general_protection(state, ctx),
        6 => {
            let o = emulate::invalid_op(state, ctx)?;
            emulate::finish(state, ctx, o, (6, 0))
        }
        7 => device_not_available(state, ctx),
        14 if ec & crate::pv::ldt::PF_LDT_WINDOW != 0 => crate::pv::ldt::fault(state, ctx),
        14 if crate::pv::ptwr::page_fault(state, ctx)? => Ok(()),
        1 => debug(state, ctx),
        0..=31 => inject_hw(state, ctx, &regs, vector, ec).map(|_| ()),
        INT80_VECTOR => int80(state, ctx, regs),
        _ => {
            // `int $n` through a DPL-3 hardware gate: RIP is past the instruction.
            let ti = state::trap(state, state::key(ctx), vector);
            if permit_softint(ti.dpl(), kernel_mode(state, ctx)) {
                inject(state, ctx, &regs, vector, None).map(|_| ())
            } else {
                let at_insn = GuestRegs {
                    rip: regs.rip.wrapping_sub(2),
                    ..regs
                };
                inject_hw(state, ctx, &at_insn, 13, (u64::from(vector) << 3) | 2).map(|_| ())
            }
        }
    }
}

/// Xen's `int $0x80` entry: bounce to the registered handler whatever its DPL (as Xen 4.17
/// does, measured); with none, #GP with the IDT error code at the `int` instruction. `regs`
/// has RIP past the instruction.
fn int80(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, regs: GuestRegs) -> Result<(), HvError> {
    let ti = state::trap(state, state::key(ctx), INT80_VECTOR);
    if ti.address != 0 {
        return inject(state, ctx, &regs, INT80_VECTOR, None).map(|_| ());
    }
    let at_insn = GuestRegs {
        rip: regs.rip.wrapping_sub(2),
        ..regs
    };
    inject_hw(state, ctx, &at_insn, 13, (u64::from(INT80_VECTOR) << 3) | 2).map(|_| ())
}

/// `do_general_protection` for a PV guest: software interrupts through DPL-0 hardware
/// gates, privileged-instruction emulation, or the #GP bounced as is.
fn general_protection(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let regs = ctx.req.regs;
    let ec = ctx.req.error_code;
    if ec & 3 == 2 {
        let mut insn = [0u8; 2];
        let vector = match ctx.copy_from_guest(regs.rip, &mut insn) {
            Ok(()) if insn[0] == 0xcd => insn[1],
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
            _ => (ec >> 3) as u8,
        };
        let after = GuestRegs {
            rip: regs.rip.wrapping_add(2),
            ..regs
        };
        if vector == INT80_VECTOR {
            return int80(state, ctx, after);
        }
        let ti = state::trap(state, state::key(ctx), vector);
        if permit_softint(ti.dpl(), kernel_mode(state, ctx)) {
            return inject(state, ctx, &after, vector, None).map(|_| ());
        }
        return inject_hw(state, ctx, &regs, 13, (u64::from(vector) << 3) | 2).map(|_| ());
    }
    if ec == 0 {
        let o = emulate::privileged_op(state, ctx)?;
        return emulate::finish(state, ctx, o, (13, 0));
    }
    inject_hw(state, ctx, &regs, 13, ec).map(|_| ())
}

/// #DB in guest context (`do_debug`): the hardware DR6 (carried in the exit's `cr2` word)
/// is merged into the vCPU's virtual DR6, where `get_debugreg(6)` shows it, and #DB is
/// bounced to the guest.
fn debug(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let k = state::key(ctx);
    let regs = ctx.req.regs;
    let hw = ctx.req.cr2 & 0xffff_ffff;
    let j = ctx.journal();
    state::update(state, j, k, |p| {
        p.dr6 |= hw & !state::DR6_DEFAULT;
        p.dr6 &= hw | !state::DR6_DEFAULT;
    });
    inject_hw(state, ctx, &regs, 1, 0).map(|_| ())
}

/// #NM: with the virtual CR0.TS set, bounce #NM to the guest and clear it; otherwise the
/// FPU only has to be made usable again (hardware TS cleared).
fn device_not_available(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let k = state::key(ctx);
    let regs = ctx.req.regs;
    ctx.emit(Effect::Pv(PvEffect::FpuTs(false)));
    if state::get(state, k).cr0_ts {
        let j = ctx.journal();
        state::update(state, j, k, |p| p.cr0_ts = false);
        inject_hw(state, ctx, &regs, 7, 0)?;
    } else {
        ctx.emit(Effect::SetRegs(regs));
    }
    Ok(())
}

/// Enters the failsafe callback after the bare-metal side failed to load the guest's data
/// selectors on the way back to the guest (Xen 4.17's `load_segments`): the frame holds RCX,
/// R11, the selectors `segs` (DS, ES, FS, GS) as they were saved, not as loaded, then the
/// usual RIP, CS, RFLAGS, RSP, SS; it goes on the kernel stack (switching to kernel mode
/// first); events are masked only with `VGCF_failsafe_disables_events` (or a failsafe
/// callback registered with `CALLBACKF_mask_events`). A failsafe address of 0 is entered as
/// is, as Xen does; a frame that cannot be written crashes the domain.
pub fn failsafe(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    segs: [u16; 4],
) -> Result<(), HvError> {
    let k = state::key(ctx);
    let regs = ctx.req.regs;
    let eip = state.vcpus.get(&k).map_or(0, |v| v.failsafe_callback);
    let mask = state::get(state, k).failsafe_disables_events;
    crate::pv::bounce::create_failsafe_frame(
        state,
        ctx,
        &regs,
        TrapBounce {
            eip,
            mask_events: mask,
            extra: Extra::Segments(segs),
            clear_df: false,
        },
    )?;
    Ok(())
}
