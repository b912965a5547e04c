//! FIFO-based event channels, the replica's side (Xen 4.17's `common/event_fifo.c`):
//! `EVTCHNOP_init_control`, `EVTCHNOP_expand_array`, `EVTCHNOP_set_priority`, the switch from
//! the 2-level ABI (`setup_ports`) and back (`EVTCHNOP_reset`), and the decision of what a
//! raised, unmasked or freed port does.
//!
//! Design. The replica holds what only the hypervisor changes: per domain the machine frames
//! of the event array and each vCPU's control block address ([`FifoDomain`], with a writable
//! type reference on every frame, as Xen's `map_guest_page` takes), and per port its priority
//! and Xen's `evtchn->pending` (an event raised before its event array page existed)
//! ([`FifoPort`]). The event words, the queue heads and the READY bits live in guest memory
//! and change under the guest, so the queue work (PENDING/MASKED/LINKED/BUSY, the LINK field
//! written with Xen's guarded cmpxchg loop, head, READY, upcall) is done at commit on the
//! leader by [`super::fifo_deliver`] from the `Fifo*` effects. The queue tails and each port's
//! last queue (Xen's `q->tail` and `evtchn->fifo_lastq`) are hypervisor data that only that
//! commit-time work reads and writes, in commit order: they are kept by the applying side
//! ([`super::fifo_deliver::FifoQueues`]), outside the replicas, in memory every leader shares,
//! so a promoted leader carries them on as they are. Keeping them in the replica would need
//! the handler to know whether the guest had consumed the tail (a guest-memory read at commit
//! time, not at execution time), which it cannot.

use super::table::{self, Slot};
use super::{EvtchnEffect, PortKey};
use crate::effect::DomId;
use crate::hv::{Ctx, HvError, HvState};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::event_channel::{
    EvtchnFifoControlBlock, EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PRIORITY_DEFAULT,
    EVTCHN_FIFO_PRIORITY_MIN,
};

/// Event words (`event_word_t`, 4 bytes) in one event array page.
pub const WORDS_PER_PAGE: u32 = 1024;
/// Most event array pages (`EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`).
pub const MAX_ARRAY_PAGES: usize = (EVTCHN_FIFO_NR_CHANNELS / WORDS_PER_PAGE) as usize;
/// Size of `struct evtchn_fifo_control_block`.
pub const CONTROL_BLOCK_SIZE: u32 = core::mem::size_of::<EvtchnFifoControlBlock>() as u32;
/// Offset of `head[0]` in the control block.
pub const HEAD_OFFSET: u64 = 8;

/// A domain using the FIFO ABI (Xen's `struct evtchn_fifo_domain` plus each vCPU's control
/// block).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FifoDomain {
    /// Machine frames of the event array pages, in port order.
    pub array: Vec<u64>,
    /// Machine address of each vCPU's control block (index: vCPU id; 0: none yet).
    pub control: Vec<u64>,
}
lockstep::impl_value!(FifoDomain { array, control });

impl FifoDomain {
    /// Ports the event array covers (`num_evtchns`).
    pub fn num_evtchns(&self) -> u32 {
        self.array.len() as u32 * WORDS_PER_PAGE
    }

    /// Machine address of `port`'s event word (`evtchn_fifo_word_from_port`); `None` beyond
    /// the event array.
    pub fn word_maddr(&self, port: u32) -> Option<u64> {
        let page = self.array.get((port / WORDS_PER_PAGE) as usize)?;
        Some(page * 4096 + u64::from(port % WORDS_PER_PAGE) * 4)
    }

    /// Machine address of `vcpu`'s control block, if it has one.
    pub fn control_maddr(&self, vcpu: u32) -> Option<u64> {
        self.control.get(vcpu as usize).copied().filter(|m| *m != 0)
    }
}

/// A port's FIFO attributes (absent: default priority, nothing saved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FifoPort {
    /// Its queue priority (0 highest … 15 lowest).
    pub priority: u8,
    /// Raised while its event array page did not exist (Xen's `evtchn->pending`); re-raised
    /// when the page is added. Xen never clears it, and neither does this.
    pub saved_pending: bool,
}
lockstep::impl_value!(FifoPort {
    priority,
    saved_pending
});

impl Default for FifoPort {
    fn default() -> Self {
        FifoPort {
            priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
            saved_pending: false,
        }
    }
}

/// Whether `dom` uses the FIFO ABI.
pub fn is_fifo(state: &HvState, dom: DomId) -> bool {
    state.evtchn_fifo.contains_key(&dom)
}

/// `port`'s FIFO attributes.
pub fn port(state: &HvState, key: PortKey) -> FifoPort {
    state
        .evtchn_fifo_ports
        .get(&key)
        .copied()
        .unwrap_or_default()
}

fn set_port(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, key: PortKey, p: FifoPort) {
    if p == FifoPort::default() {
        if state.evtchn_fifo_ports.contains_key(&key) {
            state.evtchn_fifo_ports.remove(ctx.journal(), &key);
        }
    } else if state.evtchn_fifo_ports.get(&key) != Some(&p) {
        state.evtchn_fifo_ports.insert(ctx.journal(), key, p);
    }
}

/// `map_guest_page` for a PV domain (its "gfn" is a machine frame): a general and a writable
/// type reference on a frame `dom` owns, held until [`destroy`]; any refusal is -EINVAL, as in
/// Xen ([`crate::mm::frame::map_guest_page`]).
fn map_guest_page(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    gfn: u64,
) -> Result<(), HvError> {
    let mut env = crate::mm::CtxEnv::new(ctx);
    crate::mm::frame::map_guest_page(state, &mut env, gfn, dom)
}

fn unmap_guest_page(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, mfn: u64) {
    let mut env = crate::mm::CtxEnv::new(ctx);
    crate::mm::frame::unmap_guest_page(state, &mut env, mfn);
}

/// `EVTCHNOP_init_control` for the caller (Xen's `evtchn_fifo_init_control`, in its order of
/// checks). The first call switches the domain to FIFO: its bound ports keep their pending
/// state (as saved events, raised when their event array page is added) and get the default
/// priority.
pub fn init_control(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    gfn: u64,
    offset: u32,
    vcpu: u32,
) -> Result<(), HvError> {
    let d = ctx.dom();
    if !state.vcpus.contains_key(&(d, vcpu)) {
        return Err(XenErrno::ENOENT.into());
    }
    if offset > 4096 - CONTROL_BLOCK_SIZE || !offset.is_multiple_of(8) {
        return Err(XenErrno::EINVAL.into());
    }
    let mut fd = state.evtchn_fifo.get(&d).cloned();
    let first = fd.is_none();
    if fd.as_ref().is_some_and(|f| f.control_maddr(vcpu).is_some()) {
        return Err(XenErrno::EINVAL.into());
    }
    map_guest_page(state, ctx, d, gfn)?;
    let f = fd.get_or_insert_with(FifoDomain::default);
    if f.control.len() <= vcpu as usize {
        f.control.resize(vcpu as usize + 1, 0);
    }
    f.control[vcpu as usize] = gfn * 4096 + u64::from(offset);
    let f = f.clone();
    state.evtchn_fifo.insert(ctx.journal(), d, f);
    if first {
        super::emit(ctx, EvtchnEffect::FifoReset { dom: d });
        setup_ports(state, ctx, d)?;
    }
    Ok(())
}

/// `setup_ports`: every valid port gets the default priority, and those pending in the
/// 2-level bitmap (read through the input: the guest changes it) are saved as pending.
fn setup_ports(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, d: DomId) -> Result<(), HvError> {
    let valid = table::with_table(state, d, |t| t.valid).min(super::NR_PORTS);
    let keys: Vec<PortKey> = state
        .evtchn_fifo_ports
        .iter()
        .filter(|(k, _)| k.0 == d)
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        let p = FifoPort {
            priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
            ..port(state, k)
        };
        set_port(state, ctx, k, p);
    }
    let base = state.dom_time.get(&d).map_or(0, |t| t.shared_info_maddr);
    if base == 0 {
        return Ok(());
    }
    let mut bits = alloc::vec![0u8; (valid / 8) as usize];
    let at = base + super::deliver::PENDING_OFFSET as u64;
    match ctx.read_machine(at, &mut bits) {
        Ok(()) => {}
        Err(HvError::Errno(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    for p in 1..valid {
        if bits[(p / 8) as usize] & (1 << (p % 8)) != 0 {
            let k = (d, p);
            let fp = FifoPort {
                saved_pending: true,
                ..port(state, k)
            };
            set_port(state, ctx, k, fp);
        }
    }
    Ok(())
}

/// `EVTCHNOP_expand_array` for the caller: adds one event array page and re-raises the
/// saved events of the ports it covers.
pub fn expand_array(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    gfn: u64,
) -> Result<(), HvError> {
    let d = ctx.dom();
    let Some(mut f) = state.evtchn_fifo.get(&d).cloned() else {
        return Err(XenErrno::EOPNOTSUPP.into());
    };
    if f.array.len() >= MAX_ARRAY_PAGES {
        return Err(XenErrno::ENOSPC.into());
    }
    map_guest_page(state, ctx, d, gfn)?;
    let first = f.num_evtchns();
    f.array.push(gfn);
    let end = f.num_evtchns();
    state.evtchn_fifo.insert(ctx.journal(), d, f);
    let valid = table::with_table(state, d, |t| t.valid);
    for p in first..end.min(valid) {
        if port(state, (d, p)).saved_pending {
            let vcpu = state.evtchns.get(&(d, p)).map_or(0, |c| c.notify_vcpu);
            super::notify(state, ctx, d, p, vcpu)?;
        }
    }
    Ok(())
}

/// `EVTCHNOP_set_priority` of the caller's `port`, in Xen 4.17's order: -EINVAL for an
/// invalid port, -ENOSYS on a 2-level domain, -EACCES for a free or reserved port, -EINVAL
/// beyond the lowest priority.
pub fn set_priority(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    p: u32,
    priority: u32,
) -> Result<(), HvError> {
    let d = ctx.dom();
    let slot = table::slot(state, d, p)?;
    if !is_fifo(state, d) {
        return Err(XenErrno::ENOSYS.into());
    }
    if !matches!(slot, Slot::Bound(_)) {
        // `evtchn_usable`: free and reserved ports have no queue to change.
        return Err(XenErrno::EACCES.into());
    }
    if priority > EVTCHN_FIFO_PRIORITY_MIN {
        return Err(XenErrno::EINVAL.into());
    }
    let fp = FifoPort {
        priority: priority as u8,
        ..port(state, (d, p))
    };
    set_port(state, ctx, (d, p), fp);
    Ok(())
}

/// `evtchn_fifo_init` of a port being bound or freed: back to the default priority.
pub fn reset_priority(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, key: PortKey) {
    let fp = FifoPort {
        priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
        ..port(state, key)
    };
    set_port(state, ctx, key, fp);
}

/// `evtchn_fifo_destroy`: drops the control blocks and the event array of `dom` (the domain
/// is back on the 2-level ABI). `forget_ports` also drops the per-port attributes (the domain
/// is going away).
pub fn destroy(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, dom: DomId, forget_ports: bool) {
    if let Some(f) = state.evtchn_fifo.get(&dom).cloned() {
        for m in f.control.iter().filter(|m| **m != 0) {
            unmap_guest_page(state, ctx, m / 4096);
        }
        for mfn in &f.array {
            unmap_guest_page(state, ctx, *mfn);
        }
        state.evtchn_fifo.remove(ctx.journal(), &dom);
        super::emit(ctx, EvtchnEffect::FifoReset { dom });
    }
    if forget_ports {
        let keys: Vec<PortKey> = state
            .evtchn_fifo_ports
            .iter()
            .filter(|(k, _)| k.0 == dom)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            state.evtchn_fifo_ports.remove(ctx.journal(), &k);
        }
    }
}

/// Ports `dom`'s event array covers now (0 for a 2-level domain).
fn num_evtchns(state: &HvState, dom: DomId) -> u32 {
    state
        .evtchn_fifo
        .get(&dom)
        .map_or(0, FifoDomain::num_evtchns)
}

/// What raising `port` of FIFO domain `dom` for `vcpu` does: the delivery effect, or, beyond
/// the event array, the saved event (`None`: nothing to deliver, no one to wake).
pub(crate) fn raise(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    port_: u32,
    vcpu: u32,
) -> Option<EvtchnEffect> {
    let num = num_evtchns(state, dom);
    let fp = port(state, (dom, port_));
    if port_ >= num {
        set_port(
            state,
            ctx,
            (dom, port_),
            FifoPort {
                saved_pending: true,
                ..fp
            },
        );
        return None;
    }
    Some(EvtchnEffect::FifoSet {
        dom,
        port: port_,
        vcpu,
        priority: fp.priority,
    })
}

/// The effect unmasking bound `port` of FIFO domain `dom` has (`None` beyond the event
/// array, where Xen does nothing).
pub(crate) fn unmask_effect(
    state: &HvState,
    dom: DomId,
    port_: u32,
    vcpu: u32,
) -> Option<EvtchnEffect> {
    let num = num_evtchns(state, dom);
    (port_ < num).then(|| EvtchnEffect::FifoUnmask {
        dom,
        port: port_,
        vcpu,
        priority: port(state, (dom, port_)).priority,
    })
}

/// Machine address of `port`'s event word in FIFO domain `dom` (`None`: 2-level, or beyond
/// the event array).
pub fn word_maddr(state: &HvState, dom: DomId, port_: u32) -> Option<u64> {
    state.evtchn_fifo.get(&dom)?.word_maddr(port_)
}
