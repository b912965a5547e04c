//! The scheduler: per-leader-CPU run queues of vCPUs with a fixed round-robin time slice,
//! block / yield / wake-up, vCPU on-/off-lining, runstate accounting, and the vCPU timers
//! (single-shot, periodic, poll timeouts). Everything here is a deterministic function of the
//! replica and the time the input supplies; decisions leave as [`SchedEffect`]s.
//!
//! Policy (documented choice, not Xen's credit2): round robin with a fixed [`SLICE_NS`]
//! slice; a woken vCPU goes to the back of its CPU's queue and does not preempt; a vCPU stays
//! on the leader CPU it was first placed on (the least loaded one, lowest id on ties).

mod effect;
mod retire;
mod runq;
mod state;
mod timer;

pub use effect::SchedEffect;
pub use retire::{retire_pcpu, RetireError};
pub use runq::{
    add_pcpu, block, dispatch_idle, offline, online_and_wake, pause_off, wake, yield_now,
};
pub use state::{vcpu_info_maddr, vcpu_sched};
pub use state::{DomTime, RunQueue, Runstate, VcpuSched, UNPLACED};
pub use timer::{
    configure_time, fire_timer, periodic_work, publish_time, rearm, set_periodic, set_shared_info,
    set_singleshot, tick, update_time, DEFAULT_PERIOD_NS, MIN_PERIOD_NS, STIME_DELTA_MAX,
};

use crate::domain::VcpuKey;
use crate::effect::Effect;
use crate::hv::{value_kind, Ctx, HvError, HvState};
use alloc::vec::Vec;
use dom0_interface::xen::DOMID_IDLE;
use lockstep::Journal;

/// The `XEN_SCHEDULER_*` id DualVisor reports (`XEN_SYSCTL_sched_id`, so `xl info` names a
/// scheduler): credit2, Xen 4.17's default. No Xen scheduler is this round robin, and
/// credit2 is the closest: with every domain at its default weight and no cap, which is
/// all DualVisor offers (`XEN_DOMCTL_scheduler_op` answers -ENOSYS), credit2 too gives each
/// runnable vCPU an equal share, and toolstacks written for a default Xen 4.17 host see the
/// scheduler they expect.
pub const XEN_SCHED_ID: u32 = dom0_interface::domctl::XEN_SCHEDULER_CREDIT2;

/// The round-robin time slice (ns).
pub const SLICE_NS: u64 = 10_000_000;

/// What scheduler operations work on: the replica, its journal, the effects produced and the
/// current system time.
pub struct Sched<'a> {
    /// The replica.
    pub state: &'a mut HvState,
    /// Its journal.
    pub j: &'a mut Journal,
    /// Effects, in order.
    pub out: Vec<Effect>,
    /// System time (ns) of this transaction.
    pub now: u64,
    /// The TSC `now` was computed from, when the time base is configured (needed to publish
    /// `vcpu_time_info`).
    pub tsc: Option<u64>,
}

impl<'a> Sched<'a> {
    /// A scheduler context at system time `now`.
    pub fn new(state: &'a mut HvState, j: &'a mut Journal, now: u64) -> Self {
        Sched {
            state,
            j,
            out: Vec::new(),
            now,
            tsc: None,
        }
    }

    /// A scheduler context at the time of `tsc` (system time from the configured time base).
    pub fn at_tsc(state: &'a mut HvState, j: &'a mut Journal, tsc: u64) -> Self {
        let now = state.time.get().system_time(tsc);
        let mut s = Sched::new(state, j, now);
        s.tsc = Some(tsc);
        s
    }

    /// Emits a scheduling effect.
    pub fn emit(&mut self, e: SchedEffect) {
        self.out.push(Effect::Sched(e));
    }

    /// `key`'s scheduling state (a fresh one, derived from the vCPU, if none is stored yet).
    pub fn vcpu(&self, key: VcpuKey) -> VcpuSched {
        state::vcpu_sched(self.state, key)
    }

    /// Stores `key`'s scheduling state.
    pub fn put(&mut self, key: VcpuKey, v: VcpuSched) {
        if self.state.vsched.get(&key) != Some(&v) {
            self.state.vsched.insert(self.j, key, v);
        }
    }

    /// Whether any leader CPU has a run queue (the scheduler is in charge of dispatch).
    pub fn active(&self) -> bool {
        !self.state.runqs.is_empty()
    }
}

/// Runs `f` on a scheduler context at the input's current time and emits its effects. With a
/// configured time base the input supplies the TSC (`value_kind::TSC`) and system time is
/// computed from it; otherwise it supplies the system time (`value_kind::SYSTEM_TIME`).
pub fn with_sched<R>(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    f: impl FnOnce(&mut Sched<'_>) -> R,
) -> Result<R, HvError> {
    let mut s = if state.time.get().is_configured() {
        let tsc = ctx.value(value_kind::TSC)?;
        Sched::at_tsc(state, ctx.journal(), tsc)
    } else {
        let now = ctx.value(value_kind::SYSTEM_TIME)?;
        Sched::new(state, ctx.journal(), now)
    };
    let r = f(&mut s);
    let out = core::mem::take(&mut s.out);
    for e in out {
        match e {
            // A timer VIRQ goes through the event-channel code in this same transaction: it
            // sets the bound port pending (an effect) and wakes the vCPU if it is blocked. The
            // SendVirq effect stays as the record that the timer fired (nothing to apply).
            Effect::Sched(SchedEffect::SendVirq { dom, vcpu, virq }) => {
                ctx.emit(e);
                crate::evtchn::virq::send_virq(state, ctx, dom, vcpu, virq)?;
            }
            e => ctx.emit(e),
        }
    }
    Ok(r)
}

/// An `ExitKind::Interrupt` transaction: the leader CPU's timer (or another interrupt) at the
/// input's time. The CPU is the interrupted vCPU's, or `ctx.req.vcpu` when the request comes
/// from an idle CPU (`dom == DOMID_IDLE`). Fires expired timers, rotates an expired slice,
/// dispatches an idle CPU and re-arms its timer.
pub fn interrupt(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let pcpu = if ctx.req.dom == DOMID_IDLE {
        Some(ctx.req.vcpu)
    } else {
        let p = state::vcpu_sched(state, (ctx.req.dom, ctx.req.vcpu)).pcpu;
        (p != UNPLACED).then_some(p)
    };
    let Some(pcpu) = pcpu else {
        return Ok(());
    };
    if !state.runqs.contains_key(&pcpu) {
        return Ok(());
    }
    with_sched(state, ctx, |s| tick(s, pcpu))
}

/// An `ExitKind::RetireCpu` transaction (from `DOMID_IDLE`, the leader CPU as `ctx.req.vcpu`):
/// the CPU leaves service and every vCPU placed there moves to the other leader CPUs
/// ([`retire_pcpu`]); each move is logged. A CPU that cannot be retired (none such, or the
/// last one) is logged and nothing changes.
pub fn retire(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let pcpu = ctx.req.vcpu;
    let moved = with_sched(state, ctx, |s| retire_pcpu(s, pcpu))?;
    let line = match moved {
        Ok(moves) => {
            for ((dom, vcpu), to) in moves {
                ctx.emit(Effect::Log(
                    alloc::format!("sched: d{dom}v{vcpu} moves from CPU{pcpu} to CPU{to}")
                        .into_bytes(),
                ));
            }
            alloc::format!("sched: CPU{pcpu} retired: it runs no vCPU any more")
        }
        Err(e) => alloc::format!("sched: CPU{pcpu} not retired: {e}"),
    };
    ctx.emit(Effect::Log(line.into_bytes()));
    Ok(())
}

#[cfg(test)]
mod retire_tests;
#[cfg(test)]
pub(crate) mod tests;
