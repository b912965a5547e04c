//! Raising VIRQs from any transaction (a timer interrupt, a domain dying): Xen's
//! `send_guest_vcpu_virq`, `send_guest_global_virq`, `send_global_virq` and
//! `set_global_virq_handler`. A VIRQ nobody bound is dropped, as in Xen.

use super::virq_is_global;
use crate::effect::DomId;
use crate::hv::{Ctx, HvError, HvState};
use dom0_interface::errno::XenErrno;
use dom0_interface::xen::NR_VIRQS;

/// The port `virq` of `dom`'s `vcpu` is bound to, if any (global VIRQs live on vCPU 0).
pub fn virq_port(state: &HvState, dom: DomId, vcpu: u32, virq: u32) -> Option<u32> {
    let vcpu = if virq_is_global(virq) { 0 } else { vcpu };
    state.virqs.get(&(dom, vcpu, virq)).copied()
}

/// Raises `virq` for `dom`: a per-vCPU VIRQ on `vcpu` (delivered to `vcpu`), a global one
/// on the vCPU its port is routed to (`vcpu` is then ignored). Emits the delivery effect and
/// returns whether the VIRQ was bound.
pub fn send_virq(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    vcpu: u32,
    virq: u32,
) -> Result<bool, HvError> {
    let Some(port) = virq_port(state, dom, vcpu, virq) else {
        return Ok(false);
    };
    let target = if virq_is_global(virq) {
        match state.evtchns.get(&(dom, port)) {
            Some(c) => c.notify_vcpu,
            None => return Ok(false),
        }
    } else {
        vcpu
    };
    super::notify(state, ctx, dom, port, target)?;
    Ok(true)
}

/// The domain a global VIRQ goes to: the handler the toolstack set, else the hardware
/// domain (dom0).
pub fn global_virq_target(state: &HvState, virq: u32) -> DomId {
    state.global_virq_handlers.get(&virq).copied().unwrap_or(0)
}

/// `send_global_virq`: raises global `virq` (VIRQ_DOM_EXC, VIRQ_CON_RING, ...) on its
/// handler domain. Returns whether it was bound there; per-vCPU VIRQs are refused (false).
pub fn send_global_virq(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    virq: u32,
) -> Result<bool, HvError> {
    if virq >= NR_VIRQS || !virq_is_global(virq) {
        return Ok(false);
    }
    let dom = global_virq_target(state, virq);
    send_virq(state, ctx, dom, 0, virq)
}

/// `set_global_virq_handler` (XEN_DOMCTL_set_virq_handler): routes global `virq` to `dom`.
pub fn set_global_virq_handler(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    virq: u32,
) -> Result<(), XenErrno> {
    if virq >= NR_VIRQS || !virq_is_global(virq) {
        return Err(XenErrno::EINVAL);
    }
    if !state.domains.contains_key(&dom) {
        return Err(XenErrno::EINVAL);
    }
    if state.global_virq_handlers.get(&virq) != Some(&dom) {
        state.global_virq_handlers.insert(ctx.journal(), virq, dom);
    }
    Ok(())
}
