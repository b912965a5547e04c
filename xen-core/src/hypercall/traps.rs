//! `set_trap_table` (0), `set_callbacks` (4) and `callback_op` (30): the virtual IDT and the
//! event/failsafe/SYSCALL/NMI entry points, as Xen 4.17's `pv/callback.c`.

use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use crate::pv::state::{self, TrapEntry};
use dom0_interface::arch_x86::{TrapInfo, FLAT_KERNEL_CS, TI_IF};
use dom0_interface::callback::*;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;

/// Entries one `set_trap_table` transaction installs before it continues itself (Xen
/// continues whenever preemption is pending; the guest cannot tell the difference).
pub const TRAP_TABLE_BATCH: usize = 32;
/// `TRAP_nmi`.
const TRAP_NMI: u8 = 2;

/// `fixup_guest_code_selector` for a 64-bit PV guest: a selector with RPL 0 gets RPL 3.
pub fn fixup_selector(sel: u16) -> u16 {
    if sel & 3 == 0 {
        sel | 3
    } else {
        sel
    }
}

/// `set_trap_table(traps)`: installs entries up to the one with address 0; NULL clears the
/// whole table.
pub fn set_trap_table(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let mut handle = ctx.req.args[0];
    let k = state::key(ctx);
    if handle == 0 {
        let j = ctx.journal();
        state::clear_traps(state, j, k);
        return Ok(0);
    }
    let may_continue = !state::in_multicall(state, k);
    let mut done = 0usize;
    loop {
        let mut raw = [0u8; TrapInfo::SIZE];
        ctx.copy_from_guest(handle, &mut raw)?;
        let t = TrapInfo::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
        if t.address == 0 {
            return Ok(0);
        }
        if !state::is_canonical(t.address) {
            return Err(XenErrno::EINVAL.into());
        }
        let e = TrapEntry {
            flags: t.flags,
            cs: fixup_selector(t.cs),
            address: t.address,
        };
        let j = ctx.journal();
        state::set_trap(state, j, k, t.vector, e);
        handle = handle.wrapping_add(TrapInfo::SIZE as u64);
        done += 1;
        if may_continue && done == TRAP_TABLE_BATCH {
            let mut args = ctx.req.args;
            args[0] = handle;
            ctx.emit(Effect::Continue(args));
            return Ok(0);
        }
    }
}

/// `register_guest_callback`.
pub fn register(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    kind: u16,
    flags: u16,
    address: u64,
) -> Result<(), XenErrno> {
    if !state::is_canonical(address) {
        return Err(XenErrno::EINVAL);
    }
    let k = state::key(ctx);
    let mask = flags & CALLBACKF_MASK_EVENTS != 0;
    let j = ctx.journal();
    match kind {
        CALLBACKTYPE_EVENT => {
            state.vcpus.update(j, &k, |v| v.event_callback = address);
        }
        CALLBACKTYPE_FAILSAFE => {
            state.vcpus.update(j, &k, |v| v.failsafe_callback = address);
            state::update(state, j, k, |p| p.failsafe_disables_events = mask);
        }
        CALLBACKTYPE_SYSCALL => {
            state.vcpus.update(j, &k, |v| v.syscall_callback = address);
            state::update(state, j, k, |p| p.syscall_disables_events = mask);
        }
        CALLBACKTYPE_SYSCALL32 => state::update(state, j, k, |p| {
            p.syscall32_callback = address;
            p.syscall32_disables_events = mask;
        }),
        CALLBACKTYPE_SYSENTER => state::update(state, j, k, |p| {
            p.sysenter_callback = address;
            p.sysenter_disables_events = mask;
        }),
        CALLBACKTYPE_NMI => {
            let e = TrapEntry {
                flags: TI_IF,
                cs: FLAT_KERNEL_CS,
                address,
            };
            state::set_trap(state, j, k, TRAP_NMI, e);
        }
        _ => return Err(XenErrno::ENOSYS),
    }
    Ok(())
}

/// `callback_op(cmd, arg)`.
pub fn callback_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    match cmd as u32 {
        CALLBACKOP_REGISTER => {
            let mut raw = [0u8; CallbackRegister::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let r = CallbackRegister::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            register(state, ctx, r.r#type, r.flags, r.address)?;
            Ok(0)
        }
        CALLBACKOP_UNREGISTER => {
            let mut raw = [0u8; CallbackUnregister::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let u = CallbackUnregister::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            match u.r#type {
                CALLBACKTYPE_EVENT
                | CALLBACKTYPE_FAILSAFE
                | CALLBACKTYPE_SYSCALL
                | CALLBACKTYPE_SYSCALL32
                | CALLBACKTYPE_SYSENTER => Err(XenErrno::EINVAL.into()),
                CALLBACKTYPE_NMI => {
                    let k = state::key(ctx);
                    let j = ctx.journal();
                    state::set_trap(state, j, k, TRAP_NMI, TrapEntry::default());
                    Ok(0)
                }
                _ => Err(XenErrno::ENOSYS.into()),
            }
        }
        // Xen answers unknown sub-ops -ENOSYS.
        _ => super::unknown_subop(state, ctx, "callback_op", cmd),
    }
}

/// `set_callbacks(event, failsafe, syscall)`: registers all three, ignoring errors, returns 0.
pub fn set_callbacks(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [event, failsafe, syscall, ..] = ctx.req.args;
    let _ = register(state, ctx, CALLBACKTYPE_EVENT, 0, event);
    let _ = register(state, ctx, CALLBACKTYPE_FAILSAFE, 0, failsafe);
    let _ = register(state, ctx, CALLBACKTYPE_SYSCALL, 0, syscall);
    Ok(0)
}
