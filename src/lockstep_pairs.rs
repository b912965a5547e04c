//! Several lockstep pairs (`-smp 5` and up): every pair's leader runs guest vCPUs and leads
//! its transactions through its own mailbox; all leaders take turns with the one leader
//! replica under the runtime lock (the one logical lock), all followers with the one follower
//! replica ([`lockstep::shared`]), and rounds are numbered from one [`Sequence`]. The
//! coordinator CPU serves every mailbox.
//!
//! Escalation with several pairs: the escalated transaction committed nothing. If the
//! follower is the suspect and a spare CPU is left (`-smp 6`: CPU5), the follower is retired
//! and the spare joins that pair: it places a bit-identical copy of the leader replica as
//! the follower replica (`FollowerCore::join_shared`, digests compared as the one-pair spare
//! does), and the transaction runs again through the same pair, protected again. Otherwise
//! the pair's follower leaves service and the transaction runs again through another pair
//! that is still protected (its follower shadows the escalated pair's leader from then on:
//! nothing runs unprotected while one pair is left). With no protected pair left,
//! transactions run once, UNPROTECTED, and the log says so. Leader promotion is not used
//! with several pairs: a promoted follower would lead from the shared follower replica while
//! the other pairs' followers still use it.
//!
//! A leader escalated as the suspect leaves service instead, while another leader CPU is in
//! service and leads through a protected pair (see `pv::promote` for the hand-over): it
//! parks for good, that leader runs its escalated transaction once more and moves its vCPUs
//! to the leader CPUs left (`ExitKind::RetireCpu`), and its pair's follower, not suspected,
//! stands by as a spare. If this CPU led through another pair whose own leader is in
//! service, that pair takes a spare follower (its own follower, freed by the escalation, at
//! worst) before its next transaction, and goes on protected. Without either it goes on as
//! described above. `xl lockstep fail leader pair=P` fails pair P's leader CPU wherever its
//! transactions go (the persistent fault is armed on the engine of the pair it leads through,
//! for its own transactions only).

use crate::lockstep_hw::{Tsc, CONFIG, FOLLOWER_ARENA, LEADER_ARENA, PAIR, TEMPLATE};
use alloc::boxed::Box;
use alloc::vec::Vec;
use arch::xprintln;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use dom0_interface::lockstep_ctl as ctl;
use lockstep::config::{EffectSink, EngineError, Outcome, TxResult};
use lockstep::coordinator::{coordinator_serve_all, Coordinator};
use lockstep::follower::{FollowerCore, FollowerExit};
use lockstep::inject::Injector;
use lockstep::input::Env;
use lockstep::leader::LeaderCore;
use lockstep::mailbox::Pair;
use lockstep::policy::Health;
use lockstep::role::{Idle, Role};
use lockstep::shared::{Sequence, SharedReplica};
use lockstep::stats::Stats;
use spin::Once;
use xen_core::effect::Effect;
use xen_core::hv::{Abort, HvState, Xen};

/// The mailboxes of pairs 1, 2, ... (pair 0's is `lockstep_hw::PAIR`).
static MORE_PAIRS: Once<Vec<Pair>> = Once::new();
/// The round numbers of every pair.
static SEQ: Sequence = Sequence::new(0);
/// The follower replica every pair's follower executes on.
static FOLLOWER_REPLICA: SharedReplica<HvState> = SharedReplica::new();
/// The CPU running a transaction now (the leader a decision wakes).
static TRANSACTING: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Spare CPUs not used yet (bit per CPU).
static SPARES: AtomicU64 = AtomicU64::new(0);
/// The pair the spare CPU starting now joins.
static SPARE_JOINS: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Most pairs (CPUs are numbered below 64).
const MAX_PAIRS: usize = 32;
/// Per pair, the CPU that replaced its boot follower (`usize::MAX`: the boot follower).
static FOLLOWER_NOW: [AtomicUsize; MAX_PAIRS] = [const { AtomicUsize::new(usize::MAX) }; MAX_PAIRS];
/// Leader CPUs taken out of service as the suspect (bit per CPU): they run nothing more.
static LEADERS_OUT: AtomicU64 = AtomicU64::new(0);
/// Leader CPUs out of service that have parked: each sets its bit as its last write, once it
/// touches nothing shared any more (the leader taking its vCPUs over waits for it).
static PARKED_LEADERS: AtomicU64 = AtomicU64::new(0);

/// The CPU serving pair `i` as follower now: the boot follower, or the spare that replaced
/// it.
pub fn follower_of(i: usize) -> Option<usize> {
    match FOLLOWER_NOW.get(i).map(|c| c.load(Ordering::Acquire)) {
        Some(usize::MAX) | None => cpus().get(i).map(|p| p.1),
        c => c,
    }
}

/// The pairs as (leader, follower) CPUs, pair 0 first.
fn cpus() -> Vec<(usize, usize)> {
    crate::lockstep_hw::topology().map_or_else(Vec::new, |t| t.pairs())
}

/// The leader CPUs in service (the CPUs that run guest vCPUs: every pair's leader, or
/// every CPU with lockstep off).
pub fn leader_cpus() -> Vec<usize> {
    crate::lockstep_hw::topology()
        .map_or_else(Vec::new, |t| t.guest_cpus())
        .into_iter()
        .filter(|&l| !leader_out(l))
        .collect()
}

/// Whether more than one CPU runs guest vCPUs (several pairs, or lockstep off on several
/// CPUs): vCPUs are then placed on CPUs, and other CPUs are kicked, flushed and waited for.
pub fn several_leaders() -> bool {
    crate::lockstep_hw::topology().is_some_and(|t| t.guest_cpus().len() > 1)
}

/// Whether leader CPU `cpu` was taken out of service as the suspect.
pub fn leader_out(cpu: usize) -> bool {
    cpu < 64 && LEADERS_OUT.load(Ordering::Acquire) & (1 << cpu) != 0
}

/// Whether leader CPU `cpu`, out of service, has parked (touches nothing shared any more).
pub fn leader_parked(cpu: usize) -> bool {
    cpu < 64 && PARKED_LEADERS.load(Ordering::Acquire) & (1 << cpu) != 0
}

/// The last act of a leader out of service: says so, counts itself parked, wakes the
/// leaders in service (the first to see the hand-over takes its vCPUs over) and halts for
/// good with interrupts off.
pub fn park_leader() -> ! {
    let me = arch::percpu::cpu_index();
    crate::lockstep_spare::retire(me);
    xprintln!(
        "lockstep: leader CPU{} out of service (suspect): parked for good; the other leaders take its vCPUs over",
        me
    );
    arch::cpu::disable_interrupts();
    PARKED_LEADERS.fetch_or(1 << (me % 64), Ordering::AcqRel);
    for l in leader_cpus() {
        if l != me {
            arch::smp::kick(l);
        }
    }
    arch::cpu::halt_forever()
}

/// Whether the topology has more than one pair.
pub fn several() -> bool {
    cpus().len() > 1
}

/// Pair `i`'s mailbox.
fn pair(i: usize) -> Option<&'static Pair> {
    match i {
        0 => PAIR.get(),
        i => MORE_PAIRS.get()?.get(i - 1),
    }
}

/// Objects the followers of pairs 1, 2, ... corrected in the follower replica by scrubbing.
pub fn more_follower_repairs() -> u64 {
    MORE_PAIRS.get().map_or(0, |v| {
        v.iter()
            .map(|p| p.follower_repairs.load(Ordering::Acquire))
            .sum()
    })
}

/// Creates the mailboxes of pairs 1, 2, ... (pair 0's is created by `lockstep_hw::setup`).
pub fn setup(input_capacity: usize) {
    let n = cpus().len();
    MORE_PAIRS.call_once(|| (1..n).map(|_| Pair::new(input_capacity)).collect());
    if let Some(lockstep::topology::Topology::Pair { spares, .. }) = crate::lockstep_hw::topology()
    {
        for &s in spares.iter().filter(|&&s| s < 64) {
            SPARES.fetch_or(1 << s, Ordering::AcqRel);
            xprintln!(
                "lockstep: spare CPU{} stands by to replace the follower of any of the {} pairs that fails for good",
                s,
                n
            );
        }
    }
}

/// Waiting and waking for the cores of pair `i` (as `lockstep_hw::HwIdle` for one pair): the
/// leader woken is the CPU running the transaction, which may lead through this pair's
/// mailbox after its own pair escalated.
pub struct PairIdle(pub usize);

impl Idle for PairIdle {
    fn idle(&self) {
        crate::lockstep_hw::HwIdle.idle()
    }
    fn relax(&self) {
        crate::lockstep_hw::HwIdle.relax()
    }
    fn spin_budget(&self, spins: u32) -> Option<u32> {
        crate::lockstep_hw::HwIdle.spin_budget(spins)
    }
    fn waited(&self, report: &lockstep::role::WaitReport) {
        crate::lockstep_hw::HwIdle.waited(report)
    }
    fn kick(&self, role: Role) {
        let pairs = cpus();
        let cpu = match role {
            Role::Leader => match TRANSACTING.load(Ordering::Acquire) {
                usize::MAX => pairs.get(self.0).map(|p| p.0),
                c => Some(c),
            },
            Role::Follower => follower_of(self.0),
            Role::Coordinator => crate::lockstep_hw::cpu_of(Role::Coordinator),
        };
        if let Some(c) = cpu {
            arch::smp::wake_waiter(c);
        }
    }
}

/// With several pairs: says once per leader CPU which vCPU it runs first (the boot log
/// shows every leader ran guest vCPUs).
pub fn announce_first_entry(cpu: usize, key: Option<xen_core::domain::VcpuKey>) {
    static SEEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    let (Some((dom, vcpu)), true) = (key, cpu < 64) else {
        return;
    };
    if SEEN.fetch_or(1 << cpu, core::sync::atomic::Ordering::Relaxed) & (1 << cpu) != 0 {
        return;
    }
    let pair = crate::lockstep_hw::topology().and_then(|t| t.pair_led_by(cpu));
    match pair {
        Some(p) => xprintln!(
            "lockstep: CPU{} (leader of pair {}) enters d{}v{}",
            cpu,
            p,
            dom,
            vcpu
        ),
        None => xprintln!("lockstep: CPU{} enters d{}v{}", cpu, dom, vcpu),
    }
}

/// The follower loop of every pair's follower CPU: pair 0's places the follower replica
/// (cloned in the follower arena from the template), every one serves its mailbox on it.
fn follower_task() -> ! {
    let me = arch::percpu::cpu_index();
    arch::heap::set_current_arena(FOLLOWER_ARENA.load(Ordering::Relaxed));
    let (Some(i), Some(cfg)) = (cpus().iter().position(|p| p.1 == me), CONFIG.get()) else {
        crate::boot::idle(me)
    };
    let Some(pair) = pair(i) else {
        crate::boot::idle(me)
    };
    if i == 0 {
        let template = TEMPLATE.lock().take();
        if let Some(t) = template.as_ref() {
            FOLLOWER_REPLICA.put(t.clone());
        }
        drop(template);
    }
    let core = FollowerCore::<Xen>::shared(pair, *cfg, &FOLLOWER_REPLICA, HvState::default(), 0);
    serve(i, pair, cfg, core)
}

/// A spare CPU joining the pair in `SPARE_JOINS` after its follower was retired: places a
/// copy of the leader replica, handed over in `TEMPLATE`, as the follower replica (in the
/// follower arena) and serves the pair.
fn spare_task() -> ! {
    let me = arch::percpu::cpu_index();
    arch::heap::set_current_arena(FOLLOWER_ARENA.load(Ordering::Relaxed));
    let i = SPARE_JOINS.load(Ordering::Acquire);
    let (Some(pair), Some(cfg)) = (pair(i), CONFIG.get()) else {
        crate::boot::idle(me)
    };
    let fresh = || {
        let template = TEMPLATE.lock().take()?;
        Some(template.clone())
    };
    let idle = PairIdle(i);
    let Some(core) = FollowerCore::<Xen>::join_shared(
        pair,
        *cfg,
        &FOLLOWER_REPLICA,
        HvState::default(),
        fresh,
        &Tsc,
        &idle,
    ) else {
        xprintln!("lockstep: spare CPU{}: no replica was handed over", me);
        arch::heap::set_current_arena(arch::heap::BOOT_ARENA);
        crate::boot::idle(me)
    };
    serve(i, pair, cfg, core)
}

/// Serves pair `i` as its follower with `core` until shutdown or escalation.
fn serve(
    i: usize,
    pair: &'static Pair,
    cfg: &lockstep::config::Config,
    mut core: FollowerCore<'static, Xen>,
) -> ! {
    let me = arch::percpu::cpu_index();
    let idle = PairIdle(i);
    let exit = loop {
        match core.follower_serve(&Tsc, &idle) {
            FollowerExit::Resync(after) => {
                // Runtime `lockstep on`: the follower replica restarts from the leader's.
                let Some(template) = TEMPLATE.lock().take() else {
                    continue;
                };
                let fresh = template.clone();
                drop(template);
                let digest = lockstep::replica::full_digest(&fresh);
                FOLLOWER_REPLICA.put(fresh);
                core =
                    FollowerCore::shared(pair, *cfg, &FOLLOWER_REPLICA, HvState::default(), after);
                pair.ack_resync(after, digest);
                idle.kick(Role::Leader);
            }
            exit => break exit,
        }
    };
    match exit {
        FollowerExit::Escalated(Some(Role::Leader)) => xprintln!(
            "lockstep: pair {} escalated with its leader as the suspect: follower CPU{} leaves the pair",
            i,
            me
        ),
        FollowerExit::Escalated(s) => xprintln!(
            "lockstep: pair {} follower CPU{} out of service (suspect {:?})",
            i,
            me,
            s
        ),
        FollowerExit::Shutdown if i == 0 => {
            // The other followers let go of the replica once they see the shutdown.
            let digest = loop {
                if let Some(d) = FOLLOWER_REPLICA.with(lockstep::replica::full_digest) {
                    break d;
                }
                core::hint::spin_loop();
            };
            crate::lockstep_hw::FOLLOWER_DIGEST.store(digest, Ordering::SeqCst);
            crate::lockstep_hw::FOLLOWER_DONE.store(true, Ordering::SeqCst);
        }
        _ => {}
    }
    arch::heap::set_current_arena(arch::heap::BOOT_ARENA);
    crate::boot::idle(me)
}

/// The coordinator CPU: decides the rounds of every pair.
fn coordinator_task() -> ! {
    if let Some(cfg) = CONFIG.get() {
        let n = cpus().len();
        let mut coords: Vec<Coordinator<'static>> = (0..n)
            .filter_map(pair)
            .map(|p| {
                Coordinator::new(
                    p,
                    cfg.max_retries,
                    cfg.deadline_cycles,
                    cfg.coordinator_wait,
                )
            })
            .collect();
        let idles: Vec<PairIdle> = (0..n).map(PairIdle).collect();
        let refs: Vec<&dyn Idle> = idles.iter().map(|i| i as &dyn Idle).collect();
        coordinator_serve_all(&mut coords, &Tsc, &refs);
    }
    crate::boot::idle(arch::percpu::cpu_index())
}

/// The leader side of several pairs: one leader core per pair (its mailbox, rounds, retry
/// policy and health), the one leader replica they take turns with, and the pair each
/// pair's transactions go through (itself, or another one after it escalated).
pub struct Pairs {
    replica: Option<HvState>,
    cores: Vec<LeaderCore<'static, Xen>>,
    route: Vec<usize>,
    /// Leader CPUs made to fail for good (`xl lockstep fail leader pair=P`, bit per CPU):
    /// the fault goes with the CPU into whichever pair its transactions go through.
    failing_leaders: u64,
    /// A pair that lost its follower when another pair's leader, leading through it, left
    /// service: the next leader to transact through it first brings a spare in (the freed
    /// follower itself, if no other spare is left).
    rejoin: Option<usize>,
}

impl Pairs {
    /// The leader cores over `state`; starts every follower and the coordinator. Not
    /// inlined, and each core made in place in its vector: this runs on the boot CPU's stack, deep
    /// in the boot (64 KiB, and `boot::start`, `start_dom0` and `Backend::new` take ~50).
    #[inline(never)]
    pub fn new(state: HvState) -> Box<Pairs> {
        let cfg = CONFIG.get().copied().unwrap_or_default();
        let template = arch::heap::with_arena(crate::lockstep_hw::build_arena(), || state.clone());
        *TEMPLATE.lock() = Some(template);
        let pairs = cpus();
        for &(_, f) in &pairs {
            arch::smp::assign(f, follower_task);
        }
        if let Some(c) = crate::lockstep_hw::cpu_of(Role::Coordinator) {
            arch::smp::assign(c, coordinator_task);
        }
        let mut cores = Vec::with_capacity(pairs.len());
        for p in (0..pairs.len()).filter_map(pair) {
            cores.push(LeaderCore::new(p, cfg, HvState::default(), false));
            if let Some(l) = cores.last_mut() {
                l.share_rounds(&SEQ);
                l.set_reroutable(true);
            }
        }
        Box::new(Pairs {
            replica: Some(state),
            route: (0..cores.len()).collect(),
            cores,
            failing_leaders: 0,
            rejoin: None,
        })
    }

    /// Runs one transaction of the leader CPU calling (pair 0's for any other CPU).
    pub fn run(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<Effect>,
    ) -> Outcome<Abort> {
        let cpu = arch::percpu::cpu_index();
        let p = cpus().iter().position(|c| c.0 == cpu).unwrap_or(0);
        self.run_for_pair(p, request, env, sink)
    }

    /// Runs one transaction of pair `p` on this CPU, through the pair it is routed to.
    pub fn run_for_pair(
        &mut self,
        p: usize,
        request: &[u64],
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<Effect>,
    ) -> Outcome<Abort> {
        let mut escalation = None;
        let mut detections = 0;
        let me = arch::percpu::cpu_index();
        loop {
            let k = self.route.get(p).copied().unwrap_or(0);
            if self.rejoin == Some(k) {
                self.rejoin = None;
                if !self.join_spare(k, None) {
                    self.reroute(k);
                    continue;
                }
            }
            let Some(replica) = self.replica.take() else {
                return Outcome::new(TxResult::Aborted(EngineError::Protocol));
            };
            let core = &mut self.cores[k];
            let placeholder = core.exchange_replica(replica);
            TRANSACTING.store(me, Ordering::Release);
            // A leader CPU that fails for good fails in whichever pair it leads through.
            let failing = me < 64 && self.failing_leaders & (1 << me) != 0;
            let displaced = failing.then(|| core.injector().persistent());
            if failing {
                core.fail_core(Role::Leader);
            }
            let arena = LEADER_ARENA.load(Ordering::Relaxed);
            let mut out = arch::heap::with_arena(arena, || {
                core.leader_run(request, env, &Tsc, &PairIdle(k), sink)
            });
            if let Some(d) = displaced {
                core.injector().set_persistent(d);
            }
            self.replica = Some(core.exchange_replica(placeholder));
            out.detections += detections;
            escalation = escalation.or(out.escalation);
            if out.result != TxResult::Aborted(EngineError::Rerouted) {
                out.escalation = escalation;
                return out;
            }
            detections = out.detections;
            if self.retire_leader(k) {
                // Nothing of it was committed: another leader runs it (`pv::promote`).
                out.result = TxResult::Aborted(EngineError::LeaderRetired);
                out.escalation = escalation;
                return out;
            }
            if !self.bring_in_spare(k) {
                self.reroute(k);
            }
        }
    }

    /// Pair `k` escalated with its follower as the suspect: the follower is retired and the
    /// first spare CPU left joins pair `k` from a bit-identical copy of the leader replica.
    /// Whether pair `k` is protected again (its transactions keep going through it).
    fn bring_in_spare(&mut self, k: usize) -> bool {
        let follower_failed = self.cores[k].health()
            == Health::Unprotected {
                suspect: Some(Role::Follower),
            };
        match (follower_failed, follower_of(k)) {
            (true, Some(old)) => self.join_spare(k, Some(old)),
            _ => false,
        }
    }

    /// The first spare CPU left joins pair `k` as its follower, from a bit-identical copy of
    /// the leader replica; `retired`: the follower it replaces, taken out of service for good
    /// (`None`: pair `k`'s follower left with another pair's suspect leader, and may be the
    /// spare that joins). Whether pair `k` is protected again.
    fn join_spare(&mut self, k: usize, retired: Option<usize>) -> bool {
        let spares = SPARES.load(Ordering::Acquire);
        let (true, Some(mailbox)) = (spares != 0, pair(k)) else {
            return false;
        };
        let spare = spares.trailing_zeros() as usize;
        SPARES.fetch_and(!(1 << spare), Ordering::AcqRel);
        // The follower core serving now, if any, stops for good, even if it comes back.
        mailbox.retire_follower();
        if let Some(old) = retired {
            crate::lockstep_spare::retire(old);
        }
        SPARE_JOINS.store(k, Ordering::Release);
        if !arch::smp::assign(spare, spare_task) {
            xprintln!("lockstep: spare CPU{} is not online", spare);
            return false;
        }
        if let Some(slot) = FOLLOWER_NOW.get(k) {
            slot.store(spare, Ordering::Release);
        }
        let Some(replica) = self.replica.take() else {
            return false;
        };
        let core = &mut self.cores[k];
        let placeholder = core.exchange_replica(replica);
        let mut hand_over = |r: &HvState| {
            let copy = arch::heap::with_arena(arch::heap::BOOT_ARENA, || r.clone());
            *TEMPLATE.lock() = Some(copy);
        };
        let r = match retired {
            Some(_) => core.replace_follower(&Tsc, &PairIdle(k), &mut hand_over),
            None => core.switch_on(&Tsc, &PairIdle(k), &mut hand_over),
        };
        self.replica = Some(core.exchange_replica(placeholder));
        match (r, retired) {
            (Ok(d), Some(old)) => {
                xprintln!(
                    "lockstep: spare CPU{} replaced follower CPU{} (out of service) in pair {}; replicas bit-identical (digest {:#010x}); pair {} {}",
                    spare,
                    old,
                    k,
                    d,
                    k,
                    self.cores[k].health()
                );
                true
            }
            (Ok(d), None) => {
                xprintln!(
                    "lockstep: spare CPU{} follows in pair {} (its follower left with another pair's suspect leader); replicas bit-identical (digest {:#010x}); pair {} {}",
                    spare,
                    k,
                    d,
                    k,
                    self.cores[k].health()
                );
                true
            }
            (Err(e), _) => {
                TEMPLATE.lock().take();
                xprintln!(
                    "lockstep: spare CPU{} could not join pair {}: {}",
                    spare,
                    k,
                    e
                );
                false
            }
        }
    }

    /// Pair `k` escalated with its leader as the suspect, in a transaction of this CPU (the
    /// leader of pair `k`, or of a pair whose transactions went through `k`): this CPU
    /// leaves service if another leader CPU in service leads through a protected pair. What
    /// went through pair `k` or this CPU's route goes through that pair from now on; pair
    /// `k`'s follower, not suspected, stands by as a spare. Whether this CPU leaves (the
    /// caller hands its vCPUs over and parks it).
    fn retire_leader(&mut self, k: usize) -> bool {
        let suspect = Health::Unprotected {
            suspect: Some(Role::Leader),
        };
        let me = arch::percpu::cpu_index();
        let pairs = cpus();
        let (true, Some(p)) = (
            self.cores[k].health() == suspect,
            pairs.iter().position(|c| c.0 == me),
        ) else {
            return false;
        };
        let heir = (0..pairs.len()).find(|&q| {
            q != p
                && !leader_out(pairs[q].0)
                && self
                    .route
                    .get(q)
                    .is_some_and(|&r| r != k && self.cores[r].health().is_protected())
        });
        let follower = follower_of(k).filter(|&f| f < 64 && !crate::lockstep_spare::is_retired(f));
        // Else, if this CPU led through another pair whose own leader is in service, that
        // pair goes on with a spare follower (its own, freed by the escalation, at worst).
        let rejoin = (k != p && follower.is_some() && !leader_out(pairs[k].0)).then_some(k);
        let Some(q) = heir.or(rejoin) else {
            return false;
        };
        let j = match heir {
            Some(q) => self.route[q],
            None => {
                self.rejoin = Some(k);
                k
            }
        };
        let mine = self.route[p];
        LEADERS_OUT.fetch_or(1 << (me % 64), Ordering::AcqRel);
        for r in self.route.iter_mut().filter(|r| **r == k || **r == mine) {
            *r = j;
        }
        if let Some(f) = follower {
            SPARES.fetch_or(1 << f, Ordering::AcqRel);
        }
        xprintln!(
            "lockstep: leader CPU{} (pair {}) escalated as the suspect in pair {}: it leaves service and parks; leader CPU{} takes its vCPUs over, the leaders left run them{}",
            me,
            p,
            k,
            pairs[q].0,
            SpareNote(follower)
        );
        true
    }

    /// Pair `k` escalated: its transactions (and those routed to it) go through the first
    /// pair still protected, or, with none left, run once on it, unprotected.
    fn reroute(&mut self, k: usize) {
        let suspect = match self.cores[k].health() {
            Health::Unprotected { suspect: Some(r) } => r.name(),
            _ => "not identified",
        };
        let follower = cpus().get(k).map_or(0, |p| p.1);
        match (0..self.cores.len()).find(|&j| self.cores[j].health().is_protected()) {
            Some(j) => {
                for r in self.route.iter_mut().filter(|r| **r == k) {
                    *r = j;
                }
                let f = cpus().get(j).map_or(0, |p| p.1);
                xprintln!(
                    "lockstep: pair {} escalated (suspect {}): follower CPU{} out of service; its transactions run through pair {} from now on (follower CPU{}), still protected",
                    k,
                    suspect,
                    follower,
                    j,
                    f
                );
            }
            None => {
                self.cores[k].set_reroutable(false);
                xprintln!(
                    "lockstep: pair {} escalated (suspect {}) and no pair is protected any more: transactions run once, UNPROTECTED, without redundancy",
                    k,
                    suspect
                );
            }
        }
    }

    /// The leader replica.
    pub fn replica(&self) -> &HvState {
        static EMPTY: Once<HvState> = Once::new();
        self.replica
            .as_ref()
            .unwrap_or_else(|| EMPTY.call_once(HvState::default))
    }

    /// Every pair's counters added up.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for c in &self.cores {
            s.add(&c.stats());
        }
        if let Some(r) = &self.replica {
            s.replica_bytes = lockstep::replica::memory_bytes(r) as u64;
        }
        s
    }

    /// Protected while any pair is (the others' transactions go through it).
    pub fn health(&self) -> Health {
        self.cores
            .iter()
            .map(|c| c.health())
            .find(|h| h.is_protected())
            .or_else(|| self.cores.first().map(|c| c.health()))
            .unwrap_or(Health::Off)
    }

    /// The fault injector of the pair pair 0's transactions go through.
    pub fn injector(&mut self) -> &mut Injector {
        self.injector_of(0)
    }

    /// The fault injector of the pair that pair `p`'s transactions go through (`xl lockstep
    /// inject KIND COUNT pair=P`: the faults land in the transactions of pair `p`'s leader).
    pub fn injector_of(&mut self, p: usize) -> &mut Injector {
        let k = self.route.get(p).copied().unwrap_or(0);
        self.cores[k].injector()
    }

    /// How many pairs there are.
    pub fn nr_pairs(&self) -> usize {
        self.cores.len()
    }

    /// `xl lockstep fail leader|follower pair=P`: the core serving `role` for pair `p`'s
    /// transactions (pair `p`'s own, or those of the pair they go through after `p`
    /// escalated) fails for good. Returns that core's CPU.
    pub fn fail_core(&mut self, p: usize, role: Role) -> Option<usize> {
        let k = self.route.get(p).copied()?;
        match role {
            Role::Follower => {
                self.cores[k].fail_core(role);
                follower_of(k)
            }
            _ => {
                // With the CPU: into whichever pair its transactions go through.
                let cpu = cpus().get(p)?.0;
                self.failing_leaders |= 1 << (cpu % 64);
                Some(cpu)
            }
        }
    }

    /// Runtime `lockstep off` for every pair.
    pub fn switch_off(&mut self) {
        for c in &mut self.cores {
            c.switch_off();
        }
    }

    /// Runtime `lockstep on`: every pair's follower, in turn, restarts the follower replica
    /// from a copy of the leader replica (the last copy stays). Returns the digest of the
    /// replicas or the first error.
    pub fn switch_on(&mut self) -> Result<u32, lockstep::config::ResyncError> {
        let mut digest = 0;
        for k in 0..self.cores.len() {
            let Some(replica) = self.replica.take() else {
                return Err(lockstep::config::ResyncError::NoFollower);
            };
            let core = &mut self.cores[k];
            let placeholder = core.exchange_replica(replica);
            let mut hand_over = |r: &HvState| {
                let copy = arch::heap::with_arena(arch::heap::BOOT_ARENA, || r.clone());
                *TEMPLATE.lock() = Some(copy);
            };
            TRANSACTING.store(arch::percpu::cpu_index(), Ordering::Release);
            let r = core.switch_on(&Tsc, &PairIdle(k), &mut hand_over);
            self.replica = Some(core.exchange_replica(placeholder));
            match r {
                Ok(d) => digest = d,
                Err(e) => {
                    TEMPLATE.lock().take();
                    return Err(e);
                }
            }
        }
        Ok(digest)
    }

    /// Marks every pair's CPUs in `roles` (`xl lockstep status`): leaders, the followers
    /// serving now (a spare that joined a pair among them), retired CPUs (a follower taken
    /// out of service, or an escalated pair's), the coordinator and the spares left.
    pub fn mark_roles(&self, roles: &mut [u8]) {
        let mut mark = |cpu: usize, bit: u8| {
            if let Some(r) = roles.get_mut(cpu) {
                *r |= bit;
            }
        };
        let spares = SPARES.load(Ordering::Acquire);
        for (i, (l, boot_follower)) in cpus().into_iter().enumerate() {
            if leader_out(l) {
                mark(l, ctl::LOCKSTEP_ROLE_RETIRED);
            } else {
                mark(l, ctl::LOCKSTEP_ROLE_LEADER);
            }
            let f = follower_of(i).unwrap_or(boot_follower);
            let out = self
                .cores
                .get(i)
                .is_some_and(|c| matches!(c.health(), Health::Unprotected { .. }));
            let elsewhere = FOLLOWER_NOW
                .iter()
                .enumerate()
                .any(|(x, c)| x != i && c.load(Ordering::Acquire) == f);
            if (f < 64 && spares & (1 << f) != 0) || elsewhere {
                // Its leader left service: it stands by as a spare (marked below), or it
                // joined another pair as a spare since (marked there).
            } else if out || crate::lockstep_spare::is_retired(f) {
                mark(f, ctl::LOCKSTEP_ROLE_RETIRED);
            } else {
                mark(f, ctl::LOCKSTEP_ROLE_FOLLOWER);
            }
            if f != boot_follower && crate::lockstep_spare::is_retired(boot_follower) {
                mark(boot_follower, ctl::LOCKSTEP_ROLE_RETIRED);
            }
        }
        if let Some(c) = crate::lockstep_hw::cpu_of(Role::Coordinator) {
            mark(c, ctl::LOCKSTEP_ROLE_COORDINATOR);
        }
        for c in (0..64).filter(|c| spares & (1 << c) != 0) {
            mark(c, ctl::LOCKSTEP_ROLE_SPARE);
        }
    }

    /// Stops every follower and the coordinator (they report and idle).
    pub fn shut_down(&self) {
        for (i, (_, f)) in cpus().into_iter().enumerate() {
            if let Some(p) = pair(i) {
                p.shut_down();
            }
            arch::smp::kick(f);
        }
        if let Some(c) = crate::lockstep_hw::cpu_of(Role::Coordinator) {
            arch::smp::kick(c);
        }
    }
}

/// ", follower CPUn stands by as a spare" when a follower was freed.
struct SpareNote(Option<usize>);

impl core::fmt::Display for SpareNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(c) => write!(f, "; follower CPU{c} stands by as a spare"),
            None => Ok(()),
        }
    }
}

/// Boxed, for `lockstep_hw::Backend`.
pub type Boxed = Box<Pairs>;
