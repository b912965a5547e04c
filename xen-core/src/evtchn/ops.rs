//! The event channel operations on the replica, in Xen 4.17's order of checks: allocation,
//! interdomain/VIRQ/IPI binding, close, send, status, notify-vCPU changes, unmask, reset
//! (which also returns a FIFO domain to the 2-level ABI).
//! Each changes the port tables through the journal and emits the delivery effects; none
//! touches guest memory.

use super::table::{self, Slot};
use super::{notify, virq_is_global, ChanState, Channel, EvtchnEffect};
use crate::effect::DomId;
use crate::hv::{Ctx, HvError, HvState};
use dom0_interface::errno::XenErrno;
use dom0_interface::xen::{DOMID_SELF, NR_VIRQS};

/// `rcu_lock_domain_by_any_id`: `DOMID_SELF` is the caller; any other id must exist.
pub fn resolve_dom(state: &HvState, caller: DomId, dom: DomId) -> Result<DomId, XenErrno> {
    let d = if dom == DOMID_SELF { caller } else { dom };
    if state.domains.contains_key(&d) {
        Ok(d)
    } else {
        Err(XenErrno::ESRCH)
    }
}

/// XSM's default `XSM_TARGET` check: the caller acts on itself or is privileged.
fn xsm_target(state: &HvState, caller: DomId, target: DomId) -> Result<(), XenErrno> {
    if caller == target || crate::hypercall::is_privileged(state, caller) {
        Ok(())
    } else {
        Err(XenErrno::EPERM)
    }
}

/// `domain_vcpu`: whether `dom` has vCPU `vcpu` (online or not).
fn has_vcpu(state: &HvState, dom: DomId, vcpu: u32) -> bool {
    state.vcpus.contains_key(&(dom, vcpu))
}

/// `EVTCHNOP_alloc_unbound`: a port in `dom` that `remote_dom` may bind to.
pub fn alloc_unbound(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    remote_dom: DomId,
) -> Result<u32, HvError> {
    let caller = ctx.dom();
    let d = resolve_dom(state, caller, dom)?;
    let port = table::get_free_port(state, ctx, d)?;
    xsm_target(state, caller, d)?;
    let remote_dom = if remote_dom == DOMID_SELF {
        caller
    } else {
        remote_dom
    };
    let chan = Channel {
        state: ChanState::Unbound { remote_dom },
        notify_vcpu: 0,
    };
    table::occupy(state, ctx.journal(), d, port, chan);
    Ok(port)
}

/// `EVTCHNOP_bind_interdomain`: connects a new port of the caller to `remote_dom`'s unbound
/// `remote_port`, and marks the new port pending (Xen's fix-up for notifications lost while
/// the remote end was unbound).
pub fn bind_interdomain(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    remote_dom: DomId,
    remote_port: u32,
) -> Result<u32, HvError> {
    let ld = ctx.dom();
    let rd = resolve_dom(state, ld, remote_dom)?;
    let lport = table::get_free_port(state, ctx, ld)?;
    let rchn = match table::slot(state, rd, remote_port)? {
        Slot::Bound(
            c @ Channel {
                state: ChanState::Unbound { remote_dom },
                ..
            },
        ) if remote_dom == ld => c,
        _ => return Err(XenErrno::EINVAL.into()),
    };
    let lchn = Channel {
        state: ChanState::Interdomain {
            remote_dom: rd,
            remote_port,
        },
        notify_vcpu: 0,
    };
    table::occupy(state, ctx.journal(), ld, lport, lchn);
    let rchn = Channel {
        state: ChanState::Interdomain {
            remote_dom: ld,
            remote_port: lport,
        },
        ..rchn
    };
    table::rebind(state, ctx.journal(), rd, remote_port, rchn);
    notify(state, ctx, ld, lport, lchn.notify_vcpu)?;
    Ok(lport)
}

/// `EVTCHNOP_bind_virq`: binds `virq` of the caller's `vcpu` to a new port.
pub fn bind_virq(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    virq: u32,
    vcpu: u32,
) -> Result<u32, HvError> {
    let d = ctx.dom();
    if virq >= NR_VIRQS {
        return Err(XenErrno::EINVAL.into());
    }
    if virq_is_global(virq) && vcpu != 0 {
        return Err(XenErrno::EINVAL.into());
    }
    if !has_vcpu(state, d, vcpu) {
        return Err(XenErrno::ENOENT.into());
    }
    if state.virqs.contains_key(&(d, vcpu, virq)) {
        return Err(XenErrno::EEXIST.into());
    }
    let port = table::get_free_port(state, ctx, d)?;
    let chan = Channel {
        state: ChanState::Virq(virq),
        notify_vcpu: vcpu,
    };
    table::occupy(state, ctx.journal(), d, port, chan);
    state.virqs.insert(ctx.journal(), (d, vcpu, virq), port);
    Ok(port)
}

/// `EVTCHNOP_bind_ipi`: a new port that notifies the caller's `vcpu`.
pub fn bind_ipi(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, vcpu: u32) -> Result<u32, HvError> {
    let d = ctx.dom();
    if !has_vcpu(state, d, vcpu) {
        return Err(XenErrno::ENOENT.into());
    }
    let port = table::get_free_port(state, ctx, d)?;
    let chan = Channel {
        state: ChanState::Ipi,
        notify_vcpu: vcpu,
    };
    table::occupy(state, ctx.journal(), d, port, chan);
    Ok(port)
}

/// `evtchn_close`: frees `port` of `dom`. The other end of an interdomain channel goes back
/// to unbound (for `dom`), keeping its notify vCPU; a VIRQ binding is dropped; the freed
/// port's pending bit is cleared.
pub fn close(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    port: u32,
) -> Result<(), XenErrno> {
    let chan = match table::slot(state, dom, port)? {
        Slot::Free | Slot::Reserved => return Err(XenErrno::EINVAL),
        Slot::Bound(c) => c,
    };
    match chan.state {
        ChanState::Unbound { .. } | ChanState::Ipi => {}
        ChanState::Pirq(pirq) => crate::pirq::ops::close_port(state, ctx, dom, pirq),
        ChanState::Virq(virq) => {
            let vcpu = if virq_is_global(virq) {
                0
            } else {
                chan.notify_vcpu
            };
            state.virqs.remove(ctx.journal(), &(dom, vcpu, virq));
        }
        ChanState::Interdomain {
            remote_dom,
            remote_port,
        } => {
            if let Some(other) = state.evtchns.get(&(remote_dom, remote_port)).copied() {
                let back = Channel {
                    state: ChanState::Unbound { remote_dom: dom },
                    ..other
                };
                table::rebind(state, ctx.journal(), remote_dom, remote_port, back);
            }
        }
    }
    if super::fifo::is_fifo(state, dom) {
        if let Some(word) = super::fifo::word_maddr(state, dom, port) {
            super::emit(ctx, EvtchnEffect::FifoClear { dom, word });
        }
        super::fifo::reset_priority(state, ctx, (dom, port));
    } else {
        super::emit(ctx, EvtchnEffect::Clear { dom, port });
    }
    table::release(state, ctx.journal(), dom, port);
    Ok(())
}

/// `EVTCHNOP_send` on the caller's `port`: interdomain → the remote port's notify vCPU,
/// IPI → its own vCPU, unbound → dropped; anything else is -EINVAL.
pub fn send(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, port: u32) -> Result<(), HvError> {
    let d = ctx.dom();
    let chan = match table::slot(state, d, port)? {
        Slot::Bound(c) => c,
        Slot::Free | Slot::Reserved => return Err(XenErrno::EINVAL.into()),
    };
    match chan.state {
        ChanState::Interdomain {
            remote_dom,
            remote_port,
        } => {
            // Both ends are always bound together: a missing other end cannot be notified.
            let rchn = state
                .evtchns
                .get(&(remote_dom, remote_port))
                .copied()
                .ok_or(XenErrno::EINVAL)?;
            notify(state, ctx, remote_dom, remote_port, rchn.notify_vcpu)
        }
        ChanState::Ipi => notify(state, ctx, d, port, chan.notify_vcpu),
        ChanState::Unbound { .. } => Ok(()),
        ChanState::Virq(_) | ChanState::Pirq(_) => Err(XenErrno::EINVAL.into()),
    }
}

/// What `EVTCHNOP_status` reports for a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// The port's state (`None`: free or reserved, `EVTCHNSTAT_closed`).
    pub state: Option<ChanState>,
    /// Its notify vCPU.
    pub vcpu: u32,
}

/// `EVTCHNOP_status` of `port` in `dom` (`DOMID_SELF` allowed; others' ports only for a
/// privileged caller).
pub fn status(
    state: &HvState,
    caller: DomId,
    dom: DomId,
    port: u32,
) -> Result<PortStatus, XenErrno> {
    let d = resolve_dom(state, caller, dom)?;
    let slot = table::slot(state, d, port)?;
    xsm_target(state, caller, d)?;
    Ok(match slot {
        Slot::Free | Slot::Reserved => PortStatus {
            state: None,
            vcpu: 0,
        },
        Slot::Bound(c) => PortStatus {
            state: Some(c.state),
            vcpu: c.notify_vcpu,
        },
    })
}

/// `EVTCHNOP_bind_vcpu`: routes the caller's `port` to `vcpu` (unbound, interdomain and
/// global-VIRQ ports only).
pub fn bind_vcpu(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    port: u32,
    vcpu: u32,
) -> Result<(), XenErrno> {
    let d = ctx.dom();
    if !has_vcpu(state, d, vcpu) {
        return Err(XenErrno::ENOENT);
    }
    let chan = match table::slot(state, d, port)? {
        Slot::Bound(c) => c,
        Slot::Free | Slot::Reserved => return Err(XenErrno::EINVAL),
    };
    match chan.state {
        ChanState::Virq(virq) if !virq_is_global(virq) => Err(XenErrno::EINVAL),
        ChanState::Virq(_)
        | ChanState::Unbound { .. }
        | ChanState::Interdomain { .. }
        | ChanState::Pirq(_) => {
            let moved = Channel {
                notify_vcpu: vcpu,
                ..chan
            };
            if moved != chan {
                table::rebind(state, ctx.journal(), d, port, moved);
            }
            Ok(())
        }
        ChanState::Ipi => Err(XenErrno::EINVAL),
    }
}

/// `EVTCHNOP_unmask` of the caller's `port`: a bound port is unmasked (and re-delivered to
/// its notify vCPU if pending); a free one is accepted and left alone.
pub fn unmask(state: &HvState, ctx: &mut Ctx<'_, '_, '_>, port: u32) -> Result<(), XenErrno> {
    let d = ctx.dom();
    if let Slot::Bound(c) = table::slot(state, d, port)? {
        let e = if super::fifo::is_fifo(state, d) {
            super::fifo::unmask_effect(state, d, port, c.notify_vcpu)
        } else {
            Some(EvtchnEffect::Unmask {
                dom: d,
                port,
                vcpu: c.notify_vcpu,
            })
        };
        if let Some(e) = e {
            super::emit(ctx, e);
        }
    }
    Ok(())
}

/// How far one `EVTCHNOP_reset` got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetProgress {
    /// Every port is closed.
    Done,
    /// Preempted: the caller continues with `EVTCHNOP_reset_cont` (Xen's -ERESTART).
    Preempted,
}

/// Ports closed per transaction before a reset continues itself (Xen checks for preemption
/// every 64 ports; here the decision is deterministic).
pub const RESET_BATCH: u32 = 256;

/// `evtchn_reset` of `dom` (`DOMID_SELF` allowed): closes every port, in batches of
/// [`RESET_BATCH`]. `resuming` is `EVTCHNOP_reset_cont`.
pub fn reset(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    resuming: bool,
) -> Result<ResetProgress, XenErrno> {
    let caller = ctx.dom();
    let d = resolve_dom(state, caller, dom)?;
    xsm_target(state, caller, d)?;
    let paused = state.domains.get(&d).is_some_and(|x| x.flags.paused);
    if d != caller && !paused {
        return Err(XenErrno::EINVAL);
    }
    let next = table::with_table(state, d, |t| t.next_reset);
    let start = if resuming { next } else { u32::from(next == 0) };
    if start > next {
        table::set_next_reset(state, ctx.journal(), d, start);
    }
    if start == 0 {
        return Err(XenErrno::EBUSY);
    }
    let mut port = start;
    loop {
        if table::with_table(state, d, |t| !t.is_valid(port) || t.active() == 0) {
            break;
        }
        // Free and reserved ports answer -EINVAL here, as in Xen; nothing to undo.
        let _ = close(state, ctx, d, port);
        if port % 64 == 0 && port - start >= RESET_BATCH {
            table::set_next_reset(state, ctx.journal(), d, port);
            return Ok(ResetProgress::Preempted);
        }
        port += 1;
    }
    table::set_next_reset(state, ctx.journal(), d, 0);
    if table::with_table(state, d, |t| t.active()) > 0 {
        return Err(XenErrno::EAGAIN);
    }
    // Every port closed: a FIFO domain is switched back to the 2-level ABI.
    super::fifo::destroy(state, ctx, d, false);
    Ok(ResetProgress::Done)
}

/// `evtchn_destroy`: closes every port of a dying domain (no guest checks, no preemption).
/// The domain-destruction path calls this before it forgets the domain.
pub fn destroy_domain(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, dom: DomId) {
    let valid = table::with_table(state, dom, |t| t.valid);
    for port in (1..valid).rev() {
        let _ = close(state, ctx, dom, port);
    }
    state.evtchn_tables.remove(ctx.journal(), &dom);
    super::fifo::destroy(state, ctx, dom, true);
    let handlers: alloc::vec::Vec<u32> = state
        .global_virq_handlers
        .iter()
        .filter(|(_, d)| **d == dom)
        .map(|(v, _)| *v)
        .collect();
    for v in handlers {
        state.global_virq_handlers.remove(ctx.journal(), &v);
    }
}
