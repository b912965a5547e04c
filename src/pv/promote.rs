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
//! With several pairs no follower is promoted: the suspect leader leaves service
//! (`lockstep_pairs`), steps 1 and 2 are the same (the exit path ends in
//! `lockstep_pairs::park_leader`), and step 3 is another leader's ([`take_over_into`]):
//! the first leader in service that finds the hand-over of a parked leader, in its exit path
//! or its idle loop, runs the kept request once through its own pair, then moves every vCPU
//! placed on the parked CPU to the leaders left (`ExitKind::RetireCpu`), and takes the
//! console's interrupts. The moved vCPUs resume wherever they land from their saved
//! registers, as any vCPU switched in does.
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

/// What a stepped-down leader leaves for the CPU that takes over.
pub(crate) struct Handover {
    /// The (logical) CPU that stepped down.
    pub(super) cpu: usize,
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
        "lockstep: leader CPU{} escalated as the suspect: stepping down, d{}v{}'s exit is handed to {}",
        arch::percpu::cpu_index(),
        req.dom,
        req.vcpu,
        if rt.cross_cpu {
            "another leader"
        } else {
            "the follower"
        }
    );
    rt.handover = Some(Handover {
        cpu: crate::lockstep_spare::logical_cpu(),
        req: *req,
        cr3,
        after: After::default(),
    });
}

/// Step 2 (old leader): saves what this CPU still holds (`live`: the registers of the vCPU
/// it runs, if its exit path holds them), steps the engine down, releases the runtime and
/// parks for good.
pub(super) fn step_down(
    mut guard: spin::MutexGuard<'static, Option<Runtime>>,
    after: After,
    live: Option<(&TrapFrame, &mut FxArea)>,
) -> ! {
    let mut several = false;
    if let Some(rt) = guard.as_mut() {
        let cpu = crate::lockstep_spare::logical_cpu();
        several = rt.cross_cpu;
        if let (Some(k), Some((f, x))) = (rt.running[cpu], live) {
            // The vCPU resumes elsewhere from these (a transaction that escalated without
            // them live, an interrupt's console transaction say, did not save them).
            x.complete();
            if let Some(v) = rt.vcpus.get_mut(&k) {
                v.frame = *f;
                v.fx = *x;
            }
        }
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
        if let (crate::lockstep_hw::Backend::Leader(l), false) = (&mut rt.backend, several) {
            l.step_down();
        }
    }
    drop(guard);
    if several {
        crate::lockstep_pairs::park_leader()
    }
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

/// Step 3 with several pairs, on leader CPU `me` in service (runtime locked): if a leader out
/// of service left its hand-over and has parked, runs the kept request once more through
/// this CPU's pair (with the inputs captured now), moves every vCPU placed on the parked CPU
/// to the leaders left, and routes the console's interrupts here. Adds the aftermath to
/// `after`; whether it took anything over.
#[cold]
#[inline(never)]
pub(super) fn take_over_into(rt: &mut Runtime, me: usize, after: &mut After) -> bool {
    let Some(cpu) = rt.handover.as_ref().map(|h| h.cpu) else {
        return false;
    };
    if !rt.cross_cpu || cpu == me || !crate::lockstep_pairs::leader_parked(cpu) {
        return false;
    }
    let Some(h) = rt.handover.take() else {
        return false;
    };
    // Nothing of the parked CPU's is held anywhere any more: the registers, selectors and
    // extended state of the vCPU it ran were saved as it stepped down.
    rt.on_cpu[cpu] = None;
    rt.unsettled = true;
    rt.resumed[cpu] = None;
    rt.selectors_of[cpu] = None;
    rt.xstate_dirty[cpu] = false;
    rt.return_faults[cpu] = (None, 0);
    arch::desched::left(cpu);
    after.merge(run_with_saved(rt, &h.req, h.cr3, (h.req.dom, h.req.vcpu)));
    after.merge(h.after);
    let retire = Request::exit(
        ExitKind::RetireCpu,
        DOMID_IDLE,
        cpu as u32,
        xen_core::request::GuestRegs::default(),
        0,
        0,
        0,
    );
    after.merge(transact(rt, &retire, 0, None));
    rt.running[cpu] = None;
    rt.unsettled = true;
    rt.deadline[cpu] = None;
    // Those effects may have loaded another vCPU's state into this CPU (a GDT, CR0.TS): the
    // vCPU this CPU runs is loaded again in full before it resumes.
    arch::guest_context::invalidate();
    rt.resumed[me] = None;
    xprintln!(
        "lockstep: leader CPU{} took over from leader CPU{} (out of service): its handed-over exit ran once more here",
        arch::percpu::cpu_index(),
        cpu
    );
    super::console::route_input(arch::percpu::cpu_index());
    true
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
