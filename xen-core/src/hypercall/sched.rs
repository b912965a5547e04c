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
        SCHEDOP_REMOTE_SHUTDOWN => remote_shutdown(state, ctx, arg),
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

/// SCHEDOP_remote_shutdown: `sched_remote_shutdown { domid_t domain_id; unsigned int
/// reason; }` (8 bytes, reason at offset 4). As Xen 4.17's `do_sched_op`: -EFAULT for a bad
/// pointer, -ESRCH for no such domain, -EPERM unless the caller is privileged (XSM_DM_PRIV
/// with no device-model domains), then `domain_shutdown(d, (u8)reason)` on the target.
fn remote_shutdown(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut b = [0u8; 8];
    ctx.copy_from_guest(arg, &mut b)
        .map_err(|_| crate::hv::HvError::Errno(XenErrno::EFAULT))?;
    let target = u16::from_le_bytes([b[0], b[1]]);
    let reason = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) & 0xff;
    if state.domains.get(&target).is_none() {
        return Err(crate::hv::HvError::Errno(XenErrno::ESRCH));
    }
    if !super::is_privileged(state, ctx.dom()) {
        return Err(crate::hv::HvError::Errno(XenErrno::EPERM));
    }
    shutdown_domain_of(state, ctx, target, reason)?;
    Ok(0)
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
    shutdown_domain_of(state, ctx, dom, reason)
}

/// Marks domain `dom` shut down with `reason` (a recorded shutdown code wins, as in Xen).
fn shutdown_domain_of(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: crate::effect::DomId,
    reason: u32,
) -> Result<(), crate::hv::HvError> {
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

    fn with_domu(id: crate::effect::DomId, mut h: Harness) -> Harness {
        let mut j = lockstep::Journal::new();
        j.begin(1);
        crate::hv::create_domain(&mut h.state, &mut j, id, false, 1, 1024).expect("domU");
        lockstep::replica::forget(&mut h.state);
        h
    }

    fn remote(dom: u16, reason: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&dom.to_le_bytes());
        b[4..].copy_from_slice(&reason.to_le_bytes());
        b
    }

    #[test]
    fn dom0_shuts_a_domu_down_remotely() {
        let mut h = with_domu(3, Harness::dom0());
        h.mem.map(0x100, &remote(3, 0x100 | SHUTDOWN_REBOOT));
        let r = h.hypercall(
            u64::from(NR),
            [u64::from(SCHEDOP_REMOTE_SHUTDOWN), 0x100, 0, 0, 0],
        );
        assert_eq!(r.ret, 0);
        // The reason is truncated to 8 bits as Xen's `domain_shutdown(d, (u8)reason)`.
        assert!(r.effects.contains(&Effect::DomainShutdown {
            dom: 3,
            reason: SHUTDOWN_REBOOT
        }));
        assert_eq!(
            h.state.domains.get(&3).and_then(|d| d.shutdown),
            Some(SHUTDOWN_REBOOT)
        );
        assert_eq!(h.state.domains.get(&0).and_then(|d| d.shutdown), None);
    }

    #[test]
    fn remote_shutdown_errors_are_xens() {
        let mut h = with_domu(3, Harness::dom0());
        h.mem.map(0x100, &remote(9, SHUTDOWN_POWEROFF));
        let op = [u64::from(SCHEDOP_REMOTE_SHUTDOWN), 0x100, 0, 0, 0];
        assert_eq!(h.hypercall(u64::from(NR), op).ret, -3, "ESRCH");
        let bad = [u64::from(SCHEDOP_REMOTE_SHUTDOWN), 0x9000, 0, 0, 0];
        assert_eq!(h.hypercall(u64::from(NR), bad).ret, -14, "EFAULT");
        // An unprivileged domain may not shut down another, nor itself this way.
        let mut h = with_domu(4, Harness::domu(3));
        for target in [4u16, 3] {
            h.mem.map(0x100, &remote(target, SHUTDOWN_POWEROFF));
            let r = h.hypercall(u64::from(NR), op);
            assert_eq!(r.ret, -1, "EPERM");
            assert!(!r
                .effects
                .iter()
                .any(|e| matches!(e, Effect::DomainShutdown { .. })));
        }
        assert!(h.state.domains.iter().all(|(_, d)| d.shutdown.is_none()));
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
