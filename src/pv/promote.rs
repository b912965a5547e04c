//! Leader promotion in the PV runtime: a leader escalated as the suspect steps down in the
//! middle of its exit path and parks; the follower CPU takes the guests over and runs the
//! escalated transaction once, from its own replica.
//!
//! The hand-over, in order:
//! 1. Old leader, in `transact`, RUNTIME locked: the engine refused the escalated transaction
//!    (`EngineError::LeaderRetired`, nothing of it committed or applied on either replica);
//!    the live registers of the vCPU that exited are saved in its `VcpuRt`, and the request
//!    is kept in `Runtime::handover`. The rest of the exit path runs no transaction.
//! 2. Old leader, end of its exit path ([`step_down`]): the data selectors this CPU holds
//!    are saved, the aftermath is kept, the engine steps down (`Pair::step_down_leader`), the
//!    lock is released and the CPU parks for good with interrupts off, counting itself
//!    parked as its last write (`lockstep_spare::park_old_leader`).
//! 3. Follower CPU ([`take_over`]): sees `FollowerExit::Promote`, waits until the old
//!    leader counted itself parked, locks RUNTIME, becomes the leader over its own replica (the counters continue), maps
//!    the logical leader CPU to itself (run queues, timer deadline and `running` stay keyed
//!    by the boot leader's number), routes the console interrupt to itself, brings a spare
//!    in (or says loudly that it runs unprotected), runs the kept request once with the
//!    inputs captured now (the suspect's captured inputs are not trusted), delivers pending
//!    events and enters the guest.
//!
//! A spare that follows the promoted leader can be promoted in turn (the leader's CPU,
//! its arena and the parked count all move on); with no spare left it runs unprotected.
//!
//! A leader that dies outright (no step-down) cannot be replaced this way: its exit path
//! holds the vCPU's registers and the runtime lock; that is outside this fault model.

use super::{transact, After, Runtime, RUNTIME};
use crate::lockstep_hw::HwIdle;
use arch::guest::FxArea;
use arch::trap::TrapFrame;
use arch::xprintln;
use dom0_interface::xen::DOMID_IDLE;
use lockstep::follower::FollowerCore;
use lockstep::role::Idle;
use xen_core::domain::VcpuKey;
use xen_core::hv::Xen;
use xen_core::request::{ExitKind, Request};

/// What a stepped-down leader leaves for the promoted CPU.
pub(crate) struct Handover {
    req: Request,
    cr3: u64,
    after: After,
}

/// Step 1 (old leader): keeps the escalated request and the exited vCPU's live registers.
pub(super) fn begin_handover(
    rt: &mut Runtime,
    req: &Request,
    cr3: u64,
    live: Option<(&mut TrapFrame, &mut FxArea)>,
) {
    if let (Some((f, x)), Some(v)) = (live, rt.vcpus.get_mut(&(req.dom, req.vcpu))) {
        x.complete();
        v.frame = *f;
        v.fx = *x;
    }
    xprintln!(
        "lockstep: leader CPU{} escalated as the suspect: stepping down, d{}v{}'s exit is handed to the follower",
        arch::percpu::cpu_index(),
        req.dom,
        req.vcpu
    );
    rt.handover = Some(Handover {
        req: *req,
        cr3,
        after: After::default(),
    });
}

/// Step 2 (old leader): saves what this CPU still holds, steps the engine down, releases
/// the runtime and parks for good.
pub(super) fn step_down(mut guard: spin::MutexGuard<'static, Option<Runtime>>, after: After) -> ! {
    if let Some(rt) = guard.as_mut() {
        let cpu = crate::lockstep_spare::logical_cpu();
        if let Some(k) = rt.selectors_of[cpu] {
            rt.save_selectors(k);
        }
        if let Some(k) = rt.running[cpu] {
            rt.save_xstate(cpu, k);
        }
        // The promoted CPU's extended registers are in their initial state.
        rt.xstate_dirty[cpu] = false;
        // The promoted CPU's segment registers hold nobody's selectors yet.
        rt.selectors_of[cpu] = None;
        if let Some(h) = rt.handover.as_mut() {
            h.after.merge(after);
        }
        if let crate::lockstep_hw::Backend::Leader(l) = &mut rt.backend {
            l.step_down();
        }
    }
    drop(guard);
    HwIdle.kick(lockstep::role::Role::Follower);
    crate::lockstep_spare::park_old_leader()
}

/// Step 3 (follower CPU): becomes the leader and runs the guests from here on.
pub(crate) fn take_over(core: FollowerCore<'static, Xen>, after: u64) -> ! {
    let me = arch::percpu::cpu_index();
    while !crate::lockstep_spare::old_leader_parked() {
        core::hint::spin_loop();
    }
    // Allocations outside the replica (runtime maps, frames) come from the boot arena, as on
    // the boot leader; the replica's own arena is selected around each transaction.
    let replica_arena = arch::heap::set_current_arena(arch::heap::BOOT_ARENA);
    let mut guard = RUNTIME.lock();
    let Some(rt) = guard.as_mut() else {
        drop(guard);
        crate::boot::idle(me)
    };
    let old = crate::lockstep_hw::cpu_of(lockstep::role::Role::Leader).unwrap_or(0);
    let Some(digest) = rt.backend.promote(core, after, replica_arena) else {
        drop(guard);
        crate::boot::idle(me)
    };
    xprintln!(
        "lockstep: follower CPU{} promoted to leader from its own replica (digest {:#010x}); leader CPU{} retired",
        me,
        digest,
        old
    );
    super::console::route_input(me);
    rt.backend.follow_promoted(me);
    let mut after = After::default();
    if let Some(h) = rt.handover.take() {
        let key = (h.req.dom, h.req.vcpu);
        after.merge(run_with_saved(rt, &h.req, h.cr3, key));
        after.merge(h.after);
    }
    // Events that became pending for the vCPU this CPU resumes are delivered first, as the
    // old leader's exit path would have.
    let cpu = crate::lockstep_spare::logical_cpu();
    for _ in 0..4 {
        let Some(k) = rt.running[cpu] else { break };
        if !rt.event_pending(k) {
            break;
        }
        let Some(regs) = rt.vcpus.get(&k).map(|v| super::regs_of(&v.frame)) else {
            break;
        };
        let req = Request::exit(ExitKind::Interrupt, k.0, k.1, regs, 0, 0, 0);
        let cr3 = rt.kernel_cr3(k);
        after.merge(run_with_saved(rt, &req, cr3, k));
    }
    let noreboot = rt.noreboot;
    drop(guard);
    super::apply::finish(after, noreboot);
    super::enter_current()
}

/// Runs `req` with `key`'s saved registers as the live ones (written back afterwards), or
/// without live registers for the idle domain's requests.
fn run_with_saved(rt: &mut Runtime, req: &Request, cr3: u64, key: VcpuKey) -> After {
    let saved = (req.dom != DOMID_IDLE)
        .then(|| rt.vcpus.get(&key).map(|v| (v.frame, v.fx)))
        .flatten();
    match saved {
        Some((mut f, mut x)) => {
            let a = transact(rt, req, cr3, Some((&mut f, &mut x)));
            if let Some(v) = rt.vcpus.get_mut(&key) {
                v.frame = f;
                v.fx = x;
            }
            a
        }
        None => transact(rt, req, cr3, None),
    }
}
