//! Spare CPUs: when a transaction escalates with the follower as the suspect, the follower
//! core is retired and the first spare CPU (`Topology::Pair::spares`) becomes the follower,
//! starting from a bit-identical copy of the leader's replica in its own heap arena, as a
//! runtime `lockstep on` re-synchronises a follower. With no spare left the pair runs
//! unprotected and says so.
//!
//! Leader promotion: when the leader is escalated as the suspect, it steps down (see
//! `pv::promote`), the follower CPU becomes the leader and the spare, if any, follows it.
//! Identity: the replica's scheduler keys run queues and timers by the boot leader's CPU
//! number, the *logical* leader CPU; it never changes. The runtime's per-CPU slots are
//! indexed by the logical CPU ([`logical_cpu`]), which maps to whichever physical CPU leads
//! now ([`physical_cpu`]): no transaction has to rewrite the replica when the leader moves.

use crate::lockstep_hw::{cpu_of, serve_as_follower, HwIdle, Tsc, CONFIG, PAIR, TEMPLATE};
use arch::xprintln;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use lockstep::follower::FollowerCore;
use lockstep::leader::LeaderCore;
use lockstep::role::{wait_until, Role};
use lockstep::topology::Topology;
use xen_core::hv::{HvState, Xen};

const NONE: usize = usize::MAX;
/// `FOLLOWER_CPU` when no CPU follows (the follower was promoted, no spare came in).
const VACANT: usize = usize::MAX - 1;

/// The CPU serving as follower once a spare replaced the boot follower.
static FOLLOWER_CPU: AtomicUsize = AtomicUsize::new(NONE);
/// Heap arena reserved at boot for a spare follower's replica.
static SPARE_ARENA: AtomicUsize = AtomicUsize::new(NONE);
/// CPUs taken out of service (bit per CPU).
static RETIRED: AtomicU64 = AtomicU64::new(0);
/// The spare CPUs, in order (bit per CPU); a used spare is cleared.
static SPARES: AtomicU64 = AtomicU64::new(0);
/// The CPU serving as leader once a follower was promoted (NONE: the boot leader).
static LEADER_CPU: AtomicUsize = AtomicUsize::new(NONE);
/// Leaders that stepped down and parked: each adds one once it touches nothing shared any
/// more (the last step of the hand-over; the promoted CPU waits for it).
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Followers promoted to leader so far.
static PROMOTIONS: AtomicUsize = AtomicUsize::new(0);

/// The leader CPU if a follower was promoted, else `None` (the topology's leader leads).
pub fn leader_cpu() -> Option<usize> {
    let c = LEADER_CPU.load(Ordering::Acquire);
    (c != NONE).then_some(c)
}

/// The logical CPU the running CPU serves as: the boot leader's number on the promoted
/// leader, its own number anywhere else.
pub fn logical_cpu() -> usize {
    let me = arch::percpu::cpu_index();
    match (leader_cpu(), crate::lockstep_hw::topology()) {
        (Some(l), Some(t)) if l == me => t.guest_cpu(),
        _ => me,
    }
}

/// The physical CPU serving logical CPU `cpu` (see [`logical_cpu`]).
pub fn physical_cpu(cpu: usize) -> usize {
    match (leader_cpu(), crate::lockstep_hw::topology()) {
        (Some(l), Some(t)) if t.guest_cpu() == cpu => l,
        _ => cpu,
    }
}

/// The stepped-down leader's last act: it is retired, says so, tells the promoted CPU it
/// touches nothing shared any more, and halts for good with interrupts off.
pub fn park_old_leader() -> ! {
    let me = arch::percpu::cpu_index();
    retire(me);
    xprintln!(
        "lockstep: leader CPU{} out of service (suspect): parked for good; the follower takes over",
        me
    );
    arch::cpu::disable_interrupts();
    PARKED.fetch_add(1, Ordering::AcqRel);
    arch::cpu::halt_forever()
}

/// Whether the leader stepping down now has parked (one more parked leader than
/// promotions so far).
pub fn old_leader_parked() -> bool {
    PARKED.load(Ordering::Acquire) > PROMOTIONS.load(Ordering::Acquire)
}

/// The running CPU, the follower until now, leads from now on; the follower slot is empty
/// until a spare fills it.
pub fn become_leader() {
    let me = arch::percpu::cpu_index();
    LEADER_CPU.store(me, Ordering::Release);
    FOLLOWER_CPU.store(VACANT, Ordering::Release);
    PROMOTIONS.fetch_add(1, Ordering::AcqRel);
}

/// Reserves an arena for one spare follower if the topology has spares; call at boot.
pub fn setup(topo: &Topology, arena_bytes: usize) {
    let Topology::Pair { spares, .. } = topo else {
        return;
    };
    let mask = spares
        .iter()
        .filter(|&&c| c < 64)
        .fold(0u64, |m, &c| m | 1 << c);
    if mask == 0 {
        return;
    }
    match arch::heap::add_arena(arena_bytes) {
        Some(a) => {
            SPARE_ARENA.store(a, Ordering::Relaxed);
            SPARES.store(mask, Ordering::Release);
        }
        None => {
            xprintln!("lockstep: WARNING: no memory for a spare follower's arena; spares unused")
        }
    }
}

/// The follower CPU if a spare took over, else `None` (the topology's follower serves).
pub fn follower_cpu() -> Option<usize> {
    let c = FOLLOWER_CPU.load(Ordering::Acquire);
    (c != NONE && c != VACANT).then_some(c)
}

/// True when no CPU follows the leader (its follower was promoted and no spare replaced it).
pub fn follower_vacant() -> bool {
    FOLLOWER_CPU.load(Ordering::Acquire) == VACANT
}

/// Takes `cpu` out of service for good (it is shown retired).
pub fn retire(cpu: usize) {
    if cpu < 64 {
        RETIRED.fetch_or(1 << cpu, Ordering::AcqRel);
    }
}

/// Whether `cpu` was taken out of service.
pub fn is_retired(cpu: usize) -> bool {
    cpu < 64 && RETIRED.load(Ordering::Acquire) & (1 << cpu) != 0
}

/// After an escalation with the follower as the suspect (on the leader, between two
/// transactions): retires the follower and brings the next spare in; without one, leaves
/// the pair unprotected.
pub fn replace_follower(l: &mut LeaderCore<'static, Xen>) {
    let (Some(pair), Some(old)) = (PAIR.get(), cpu_of(Role::Follower)) else {
        return;
    };
    // The suspect stops serving for good, even if it comes back.
    pair.retire_follower();
    retire(old);
    bring_in_spare(l, &alloc::format!("follower CPU{old} (out of service)"));
}

/// After a promotion (on the new leader, before it runs anything): the next spare follows
/// it from a copy of its replica; without one it runs unprotected and says so.
pub fn follow_promoted_leader(l: &mut LeaderCore<'static, Xen>, promoted: usize) {
    bring_in_spare(
        l,
        &alloc::format!("follower CPU{promoted} (promoted to leader)"),
    );
}

fn bring_in_spare(l: &mut LeaderCore<'static, Xen>, replaced: &str) {
    let spares = SPARES.load(Ordering::Acquire);
    let arena = SPARE_ARENA.load(Ordering::Relaxed);
    if spares == 0 || arena == NONE {
        xprintln!("lockstep: {}", l.health());
        return;
    }
    let spare = spares.trailing_zeros() as usize;
    // One arena is reserved: the first replacement uses every spare's share.
    SPARES.store(0, Ordering::Release);
    FOLLOWER_CPU.store(spare, Ordering::Release);
    if !arch::smp::assign(spare, spare_follower_task) {
        xprintln!(
            "lockstep: spare CPU{} is not online: running WITHOUT redundancy",
            spare
        );
        return;
    }
    let mut hand_over = |r: &HvState| {
        let copy = arch::heap::with_arena(arch::heap::BOOT_ARENA, || r.clone());
        *TEMPLATE.lock() = Some(copy);
    };
    match l.replace_follower(&Tsc, &HwIdle, &mut hand_over) {
        Ok(d) => xprintln!(
            "lockstep: spare CPU{} replaced {}; replicas bit-identical (digest {:#010x}); {}",
            spare,
            replaced,
            d,
            l.health()
        ),
        Err(e) => {
            TEMPLATE.lock().take();
            xprintln!(
                "lockstep: spare CPU{} could not take over: {}; {}",
                spare,
                e,
                l.health()
            )
        }
    }
}

/// A spare CPU's task once it replaces the follower: waits for the leader's hand-over,
/// copies the replica into the spare's own arena, acknowledges with its digest and serves.
fn spare_follower_task() -> ! {
    let cpu = arch::percpu::cpu_index();
    arch::heap::set_current_arena(SPARE_ARENA.load(Ordering::Relaxed));
    let (Some(pair), Some(cfg)) = (PAIR.get(), CONFIG.get()) else {
        crate::boot::idle(cpu)
    };
    let Some(after) = wait_until(cfg.wait, &Tsc, &HwIdle, None, || {
        pair.resync_request()
            .map(Some)
            .or_else(|| pair.is_shut_down().then_some(None))
    })
    .flatten() else {
        crate::boot::idle(cpu)
    };
    let Some(template) = TEMPLATE.lock().take() else {
        xprintln!("lockstep: spare CPU{}: no replica was handed over", cpu);
        crate::boot::idle(cpu)
    };
    let fresh = template.clone();
    drop(template);
    let core = FollowerCore::new(pair, *cfg, fresh, after);
    pair.ack_resync(after, lockstep::replica::full_digest(core.replica()));
    arch::smp::kick(cpu_of(Role::Leader).unwrap_or(0));
    serve_as_follower(pair, cfg, core)
}
