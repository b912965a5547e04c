//! Guest exits other than hypercalls: exceptions, user-space SYSCALLs and interrupts, bounced
//! to the guest kernel through its trap table and callbacks as Xen's PV ABI defines.
//!
//! Until a guest registers handlers, an exception it cannot take crashes the domain (as Xen
//! crashes a PV guest with no trap handler); a pending-work interrupt needs nothing.

use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvState};
use crate::request::ExitKind;

/// Handles a non-hypercall exit of the calling vCPU.
pub fn guest_exit(_state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    match ctx.req.kind {
        ExitKind::Interrupt | ExitKind::Hypercall => Ok(()),
        ExitKind::Exception | ExitKind::UserSyscall => {
            let dom = ctx.dom();
            let msg = alloc::format!(
                "d{}v{}: unhandled guest {} {} (error {:#x}) at {:#x}; crashing the domain",
                dom,
                ctx.req.vcpu,
                if ctx.req.kind == ExitKind::Exception {
                    "exception"
                } else {
                    "syscall"
                },
                ctx.req.vector,
                ctx.req.error_code,
                ctx.req.regs.rip
            );
            ctx.emit(Effect::Log(msg.into_bytes()));
            ctx.emit(Effect::DomainCrash { dom });
            Ok(())
        }
    }
}
