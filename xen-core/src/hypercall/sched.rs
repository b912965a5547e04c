//! `sched_op`: yield and block (through the scheduler, `crate::sched`), shutdown and the
//! shutdown code; poll is the event-channel code's.

use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use dom0_interface::errno::XenErrno;
use dom0_interface::sched::*;

/// `sched_op(cmd, arg)`.
pub fn sched_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    match cmd as u32 {
        SCHEDOP_YIELD => {
            let key = (ctx.dom(), ctx.req.vcpu);
            if state.runqs.is_empty() {
                // No scheduler configured: the embedder decides.
                ctx.emit(Effect::Yield);
            } else {
                crate::sched::with_sched(state, ctx, |s| crate::sched::yield_now(s, key))?;
            }
            Ok(0)
        }
        SCHEDOP_BLOCK => {
            block(state, ctx)?;
            Ok(0)
        }
        SCHEDOP_SHUTDOWN => {
            let reason = read_reason(ctx, arg)?;
            shutdown_domain(state, ctx, reason)?;
            Ok(0)
        }
        SCHEDOP_POLL => crate::evtchn::poll::sched_poll(state, ctx, arg),
        SCHEDOP_SHUTDOWN_CODE => {
            let reason = read_reason(ctx, arg)?;
            let dom = ctx.dom();
            let j = ctx.journal();
            state
                .domains
                .update(j, &dom, |d| d.shutdown_code = Some(reason));
            Ok(0)
        }
        _ => super::unknown_subop(state, ctx, "sched_op", cmd),
    }
}

/// `sched_shutdown.reason`, truncated to 8 bits as Xen's `domain_shutdown(d, (u8)reason)`.
fn read_reason(ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> Result<u32, crate::hv::HvError> {
    let mut b = [0u8; 4];
    ctx.copy_from_guest(arg, &mut b)
        .map_err(|_| crate::hv::HvError::Errno(XenErrno::EFAULT))?;
    Ok(u32::from_le_bytes(b) & 0xff)
}

/// SCHEDOP_block: enables event delivery (clears the vCPU's `evtchn_upcall_mask`) and blocks
/// unless an upcall is already pending (read from its vcpu_info through the input, so both
/// executions agree).
fn block(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), crate::hv::HvError> {
    use crate::sched::{self, SchedEffect};
    let key = (ctx.dom(), ctx.req.vcpu);
    let mut pending = false;
    if let Some(info) = sched::vcpu_info_maddr(state, key) {
        ctx.emit(Effect::Sched(SchedEffect::WriteMachineByte {
            maddr: info + 1,
            value: 0,
        }));
        let mut b = [0u8; 1];
        ctx.read_machine(info, &mut b)?;
        pending = b[0] != 0;
    }
    if pending {
        return Ok(());
    }
    if state.runqs.is_empty() {
        // No scheduler configured: record it and let the embedder wait for an event.
        let j = ctx.journal();
        state.vcpus.update(j, &key, |v| v.blocked = true);
        ctx.emit(Effect::Block);
        return Ok(());
    }
    sched::with_sched(state, ctx, |s| sched::block(s, key, None))
}

/// Marks the caller's domain shut down (a recorded shutdown code wins, as in Xen).
pub(super) fn shutdown_domain(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    reason: u32,
) -> Result<(), crate::hv::HvError> {
    let dom = ctx.dom();
    let j = ctx.journal();
    let final_reason = state
        .domains
        .update(j, &dom, |d| {
            if d.shutdown.is_none() {
                d.shutdown = Some(d.shutdown_code.unwrap_or(reason));
            }
            d.shutdown.unwrap_or(reason)
        })
        .unwrap_or(reason);
    ctx.emit(Effect::DomainShutdown {
        dom,
        reason: final_reason,
    });
    super::domctl::domain_shut_down(state, ctx, dom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::testing::Harness;
    use dom0_interface::xen::HYPERVISOR_SCHED_OP as NR;

    #[test]
    fn yield_returns_zero_and_yields() {
        let mut h = Harness::dom0();
        let r = h.hypercall(u64::from(NR), [u64::from(SCHEDOP_YIELD), 0, 0, 0, 0]);
        assert_eq!(r.ret, 0);
        assert!(r.effects.contains(&Effect::Yield));
    }

    #[test]
    fn shutdown_records_reason_and_code_wins() {
        let mut h = Harness::domu(2);
        h.mem.map(0x100, &SHUTDOWN_CRASH.to_le_bytes());
        h.mem.map(0x200, &SHUTDOWN_POWEROFF.to_le_bytes());
        assert_eq!(
            h.hypercall(
                u64::from(NR),
                [u64::from(SCHEDOP_SHUTDOWN_CODE), 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        let r = h.hypercall(u64::from(NR), [u64::from(SCHEDOP_SHUTDOWN), 0x200, 0, 0, 0]);
        assert_eq!(r.ret, 0);
        assert!(r.effects.contains(&Effect::DomainShutdown {
            dom: 2,
            reason: SHUTDOWN_CRASH
        }));
        assert_eq!(
            h.state.domains.get(&2).and_then(|d| d.shutdown),
            Some(SHUTDOWN_CRASH)
        );
    }

    #[test]
    fn bad_pointer_and_unknown_op() {
        let mut h = Harness::dom0();
        assert_eq!(
            h.hypercall(u64::from(NR), [u64::from(SCHEDOP_SHUTDOWN), 0, 0, 0, 0])
                .ret,
            -14
        );
        assert_eq!(h.hypercall(u64::from(NR), [0x7fff, 0, 0, 0, 0]).ret, -38);
    }
}
