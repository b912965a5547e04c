//! Lockstep on real CPUs: roles from the CPU count, the pair's mailbox, the follower and
//! coordinator loops on their own CPUs (each replica allocated from its own heap arena), and
//! the backend the guest exit path runs every transaction through, and runtime control from
//! dom0 (status, on/off with the follower re-synchronised, fault injection).

use arch::xprintln;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use dom0_interface::lockstep_ctl as ctl;
use lockstep::config::{Config, EffectSink, Outcome};
use lockstep::coordinator::Coordinator;
use lockstep::engine::Engine;
use lockstep::follower::{FollowerCore, FollowerExit};
use lockstep::inject::{FaultKind, InjectionOutcome, Injector};
use lockstep::input::Env;
use lockstep::leader::LeaderCore;
use lockstep::mailbox::Pair;
use lockstep::policy::Health;
use lockstep::role::{Clock, Idle, Role, SpinAdapt, WaitReport};
use lockstep::stats::Stats;
use lockstep::topology::Topology;
use spin::{Mutex, Once};
use xen_core::effect::Effect;
use xen_core::hv::{Abort, HvState, Xen};
use xen_core::request::Request;

/// The TSC as the engine's clock.
pub struct Tsc;

impl Clock for Tsc {
    fn now(&self) -> u64 {
        arch::cpu::rdtsc()
    }
}

/// Waiting cores poll `lockstep_spin=` times, then `hlt` until a kick or the next tick —
/// the leader too, inside a guest exit, when it is not on the interrupt stack (interrupts
/// are enabled just for the `hlt`). Kicks send an IPI only to a core that is halting.
///
/// Measured with the bench guest (`make bench`, idle 2-core host, `-smp 3`, xen_version
/// cycles per call; single execution, `lockstep=off`: 73k): a leader that polled with
/// interrupts off and 20,000 polls before a halt: 3.6M (three vCPU threads spinning on two
/// host cores, each poll a TCG `pause` exit); 2,000 polls: 4.1M; 200: 0.88M; 30: 0.31M;
/// with the leader halting too: 300 polls 0.77M, 100: 0.55M, 10: 0.36M, 0: 0.30M. About
/// 50 µs of each round trip is QEMU waking a halted vCPU. On dedicated cores a longer spin
/// would win; under TCG the cores should get off the host CPUs at once. (Since the heap's
/// small-block free lists: single 14k, pair with 10 polls 0.25M; 50: 0.36M, 200: 0.73M.)
/// Polling longer only between a rollback and the re-execution (2,000 polls, all three
/// cores) made the mean recovery latency 1.5 ms instead of 0.11 ms: tried and dropped.
///
/// The exit path itself (issue 4; bench guest, min of 256-call batches, medians of three to
/// five interleaved runs on a busy shared host; Xen 4.17 per the issue: 772 / 983 / 5689):
/// lockstep off, xen_version / evtchn_send / sched_yield 14.5k / 18.1k / 15.9k cycles, then
/// 12.0k / 15.3k / 13.1k with a `memcpy` that does not copy byte by byte (`arch::rt`),
/// 11.3k / 14.6k / 12.2k without digests or an effects vector per single execution and with
/// the PV CPU state loaded as one unit (`arch::guest_context`), 10.4k / 13.7k / 11.5k
/// without LDT work for a vCPU without an LDT. Lockstep on went from ~350k to ~205k per
/// call. Taking a single execution's effects instead of cloning them (a sink that swaps the
/// engine's vector) measured 9.7k / 13.0k / 10.7k, but that build overflowed the follower's
/// 64 KiB main stack in the `domrun` scenario, every time, though no follower code changed:
/// the follower's path there must run close to the end of that stack.
///
/// Round 2 (same bench, three interleaved runs each, rdtsc checkpoints on a scratch copy,
/// means over 8,192 calls, ~170 cycles per checkpoint taken off): with 256 KiB stacks and
/// the effects-taking sink, 9.4k / 12.6k / 10.6k. Not writing FS/GS bases the registers
/// hold already: 9.4k / 12.5k / 10.3k. The PV CPU state neither built (~800 cycles) nor
/// compared (~800) while the replica maps it is read from keep their change stamps
/// (`JMap::stamp`, `arch::guest_context::load_from`): 8.2k / 11.6k / 9.4k. One lock of
/// the frame allocator per guest-memory frame check instead of two: 8.1k / 10.7k / 9.3k.
/// Lockstep on, four interleaved runs, medians: 259k / 284k / 306k before, 243k / 274k /
/// 288k after (its noise is ±20%: no slowdown). Tried and dropped: the handler context
/// borrowing the request instead of holding a copy (~380 cycles in the profile) measured
/// 600-1,000 cycles slower per call; encoding and decoding the request field by field
/// without intermediate copies measured no faster (8.3k / 11.2k / 9.3k against 8.6k / 11.7k
/// / 9.6k).
///
/// Round 3 (the `hcloop` guest, xen_version in a loop, -smp 3, idle host; each
/// halt and each wake IPI counted and printed at dom0's shutdown, `wake-ups:`): 7.9 IPIs
/// and 4.7 halts per transaction at first. A second IPI to a core whose kick was still
/// pending (the leader kicked follower and coordinator when opening a round and again after
/// its post, before either woke) and a coordinator woken at round start and again per post
/// were the waste: with no IPI while a kick is pending and only the second post waking the
/// coordinator, 3.4 IPIs and 3.0 halts, and xen_version went from 375k-571k to 172k-249k
/// cycles (three interleaved runs each). Why spinning loses under MTTCG: every `pause` (and
/// every other exit from the TCG loop) retakes QEMU's global lock, which each APIC access
/// and each halt and wake-up also takes. Tried and dropped: the follower's post also waking
/// the leader, which then spins 2,000 polls for the decision while the coordinator wakes
/// (the two wake-ups in parallel instead of one after the other): 15% slower (209k-243k
/// against 243k-273k, three interleaved runs).
///
/// Round 4: polling without `pause` ([`HwIdle::relax`]). A raw cross-CPU round trip (two
/// atomics, 20,000 bounces) costs 164-556 cycles that way and 1,573-2,944 with `pause`, so
/// the polls themselves were what made spinning lose. Still, three spinning vCPU threads on
/// two host cores lose to the host's time slicing (hcloop xen_version, polls without `pause`
/// for every role: 10 polls 230k, 3,000 295k, 30,000 1.7M, 300,000 12.3M cycles per call).
/// With the coordinator halting at once and leader and follower polling (leader / follower
/// polls: 3,000 / 3,000 53k-77k, 10,000 / 3,000 58k, 3,000 / 10,000 53k, 1,000 / 3,000 71k,
/// 0 / 3,000 110k; a coordinator polling 30,000 with a follower that halts at once: 169k),
/// one halt per transaction is left, the coordinator's. With the default 5,000, two
/// interleaved runs each: -smp 3 191k / 169k before, 46k / 47k after (wake-ups per 20,000
/// calls: 20,079 halts and 559 IPIs on CPU0, 265 halts on CPU1); -smp 2 (the leader
/// decides, nothing halts) 155k / 155k before, 23k / 24k after.
///
/// But two QEMUs on the two host cores (as `make test` runs them) made those polls cost:
/// two hcloop runs side by side took 595k-707k cycles per call against 97k-330k polling
/// with `pause`. Each CPU's budget therefore adapts ([`lockstep::role::SpinAdapt`], KVM's
/// halt-polling rule): side by side 240k-600k (four pairs of runs; the host noise is large),
/// alone unchanged (62k at -smp 3, 30k at -smp 2). Growing only on waits shorter than half
/// the full budget's time was tried: alone 107k at -smp 3 (the budget shrank too often).
///
/// A follower that has posted and waits for the coordinator core's decision halts at once
/// (`Config::decision_wait`): its host CPU goes to the coordinator its post woke. hcloop
/// (-smp 3, 20,000 xen_version calls, 2,000 of them recovered), seven interleaved pairs of
/// runs on a noisy host, cycles per call before / after: 133.8k / 130.4k, 101.3k / 84.5k,
/// 115.1k / 89.4k, 117.7k / 107.7k, 153.9k / 124.4k, 129.6k / 74.7k, 130.4k / 105.8k; the
/// mean recovery latency did not change beyond the noise (24-48 us / 21-40 us). Kicking
/// the coordinator core at round start as well (its wake-up overlapping the executions,
/// it polling for the posts) measured 353k: tried and dropped, as was the coordinator
/// polling between a retry and the re-execution's decision (recovery 147-195 us instead
/// of 16-21 us). Also tried, without a change beyond the noise (hcloop with 2,000 faults,
/// -smp 3, three or four interleaved pairs of runs): the leader opening a first retry
/// without waiting for the follower's rollback (30-36 us / 17-34 us recovery), and the
/// follower polling for the decision only when its post disagreed with the leader's (a
/// retry coming) and halting otherwise (22-45 us / 16-50 us). The leader halting at once
/// while it waits for a re-execution's decision (leaving the host CPUs to the follower and
/// the coordinator) made it worse: mean recovery 56-71 us in four runs against 11-30 us,
/// median 50-100 us against 10-20 us (hcloop with 2,000 faults, -smp 3): tried and dropped.
pub struct HwIdle;

impl Idle for HwIdle {
    fn idle(&self) {
        // A core waiting inside a trap handler (the leader during a guest exit) has
        // interrupts off; it may take one during the `hlt` unless it runs on the interrupt
        // stack itself (an interrupt exit's transaction), where it keeps polling.
        if arch::cpu::interrupts_enabled() {
            arch::smp::halt_until_kicked();
        } else if !arch::smp::halt_in_handler_until_kicked() {
            core::hint::spin_loop();
        }
    }
    fn kick(&self, role: Role) {
        if let Some(cpu) = cpu_of(role) {
            arch::smp::wake_waiter(cpu);
        }
    }
    /// Polls without `pause`. Under TCG `pause` ends the translated-code loop and the vCPU
    /// thread takes QEMU's global lock before it goes on; polling without it stays in
    /// translated code and sees the other thread's store as soon as it is made. Measured
    /// (two CPUs bouncing a counter through two atomics, 20,000 round trips, MTTCG on the
    /// 2-core host): 164-556 cycles per round trip without `pause`, 1,573-2,944 with it.
    /// The spin is bounded by `lockstep_spin=` polls, so a core without TCG's cost only
    /// spins that much longer before its `hlt`.
    fn relax(&self) {
        core::hint::black_box(());
    }
    fn spin_budget(&self, spins: u32) -> Option<u32> {
        Some(
            SPIN.get(arch::percpu::cpu_index())
                .map_or(spins, |a| a.budget(spins)),
        )
    }
    fn waited(&self, report: &WaitReport) {
        if let Some(a) = SPIN.get(arch::percpu::cpu_index()) {
            a.update(report);
        }
    }
}

/// Each CPU's adaptive spin budget (see [`HwIdle`]).
static SPIN: [SpinAdapt; arch::percpu::MAX_CPUS] =
    [const { SpinAdapt::new() }; arch::percpu::MAX_CPUS];

static TOPOLOGY: Once<Topology> = Once::new();
pub(crate) static PAIR: Once<Pair> = Once::new();
pub(crate) static CONFIG: Once<Config> = Once::new();
pub(crate) static TEMPLATE: Mutex<Option<HvState>> = Mutex::new(None);
pub(crate) static FOLLOWER_ARENA: AtomicUsize = AtomicUsize::new(0);
static NCPUS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static LEADER_ARENA: AtomicUsize = AtomicUsize::new(0);
/// Set by the follower when it leaves its loop, with its replica's full digest.
pub static FOLLOWER_DONE: AtomicBool = AtomicBool::new(false);
/// The follower's final replica digest (valid once `FOLLOWER_DONE`).
pub static FOLLOWER_DIGEST: AtomicU32 = AtomicU32::new(0);

/// The recovery-latency histogram's bounds as the engines' clock (the TSC) reads them.
pub fn latency_bounds() -> [u64; lockstep::stats::LATENCY_BUCKETS - 1] {
    lockstep::stats::bounds_in_cycles(
        &lockstep::stats::LATENCY_BOUNDS_NS,
        arch::lapic::tsc_khz().max(1),
    )
}

// The engines' histogram is the one `xl lockstep status` reports, bucket for bucket.
const _: () = {
    let (a, b) = (
        lockstep::stats::LATENCY_BOUNDS_NS,
        ctl::LOCKSTEP_LATENCY_BOUNDS_NS,
    );
    assert!(
        a.len() == b.len() && lockstep::stats::LATENCY_BUCKETS == ctl::LOCKSTEP_LATENCY_BUCKETS
    );
    let mut i = 0;
    while i < a.len() {
        assert!(a[i] == b[i]);
        i += 1;
    }
};

/// Smallest replica arena.
const ARENA_MIN_BYTES: usize = 64 << 20;

/// Replica bytes per page of dom0 (its frame-table and p2m entries with their checksums and
/// map nodes, plus the domain's share of everything else), with a margin: a 256 MiB dom0
/// (65536 pages) built in the 32 MiB boot arena fit, a 512 MiB one did not.
const REPLICA_BYTES_PER_PAGE: usize = 320;

/// Bytes of each replica arena for a dom0 of `dom0_pages`: room for the replica and, while
/// it is handed to the follower at boot, one copy of it, plus room to grow (domUs).
pub fn replica_arena_bytes(dom0_pages: u64) -> usize {
    let per = usize::try_from(dom0_pages)
        .unwrap_or(usize::MAX)
        .saturating_mul(REPLICA_BYTES_PER_PAGE);
    per.saturating_mul(2)
        .saturating_add(32 << 20)
        .max(ARENA_MIN_BYTES)
        .next_multiple_of(1 << 20)
}

/// The arena dom0's initial replica is built in: the leader's (or, with one CPU, the one
/// both replicas share), so the biggest object of the boot never goes through the boot
/// arena.
pub fn build_arena() -> usize {
    LEADER_ARENA.load(Ordering::Relaxed)
}

/// The CPU serving `role`, if any.
pub fn cpu_of(role: Role) -> Option<usize> {
    match TOPOLOGY.get()? {
        Topology::Single { cpu, .. } => (role == Role::Leader).then_some(*cpu),
        Topology::Pair {
            leader,
            follower,
            coordinator,
            ..
        } => match role {
            Role::Leader => Some(crate::lockstep_spare::leader_cpu().unwrap_or(*leader)),
            Role::Follower if crate::lockstep_spare::follower_vacant() => None,
            Role::Follower => Some(crate::lockstep_spare::follower_cpu().unwrap_or(*follower)),
            Role::Coordinator => Some(coordinator.unwrap_or(*leader)),
        },
    }
}

/// The shortest transaction deadline on this hardware, in ms of TSC time. A deadline
/// catches a hung or dead core; it must not fire because a healthy core was slow. Under
/// QEMU TCG on a shared, loaded host a vCPU thread can be descheduled for tens of ms (at a
/// load average of 10 on two host cores, 20 ms deadlines fired on healthy cores often enough
/// to escalate pairs), so the floor is generous; on dedicated hardware it could be µs.
const DEADLINE_FLOOR_MS: u64 = 250;

/// Decides the roles for the online CPUs and prints them, and carves the replicas' heap
/// arenas, sized for a dom0 of at most `dom0_pages`; call once, on the boot CPU. `None` if
/// there is not enough memory for them (the caller stops with a clear message).
pub fn setup(ncpus: usize, mut cfg: Config, dom0_pages: u64) -> Option<&'static Topology> {
    let arena_bytes = replica_arena_bytes(dom0_pages);
    let floor = arch::lapic::tsc_khz().saturating_mul(DEADLINE_FLOOR_MS);
    cfg.deadline_cycles = cfg.deadline_cycles.max(floor);
    let topo = TOPOLOGY.call_once(|| Topology::assign(ncpus, cfg.lockstep));
    CONFIG.call_once(|| cfg);
    NCPUS.store(ncpus, Ordering::Relaxed);
    xprintln!("lockstep: {}", topo);
    if let Topology::Pair { .. } = topo {
        PAIR.call_once(|| Pair::new(cfg.input_capacity));
        let (l, f) = (
            arch::heap::add_arena(arena_bytes)?,
            arch::heap::add_arena(arena_bytes)?,
        );
        LEADER_ARENA.store(l, Ordering::Relaxed);
        FOLLOWER_ARENA.store(f, Ordering::Relaxed);
        xprintln!(
            "lockstep: replicas in separate heap arenas of {} MiB each",
            arena_bytes >> 20
        );
        if crate::lockstep_pairs::several() {
            crate::lockstep_pairs::setup(cfg.input_capacity);
        } else {
            crate::lockstep_spare::setup(topo, arena_bytes);
        }
    } else {
        // One CPU (or lockstep off): both replicas in one arena of their own.
        LEADER_ARENA.store(arch::heap::add_arena(arena_bytes)?, Ordering::Relaxed);
    }
    Some(topo)
}

/// Objects the followers have corrected in their replica by scrubbing (0 without a pair).
pub fn follower_repairs() -> u64 {
    PAIR.get()
        .map_or(0, |p| p.follower_repairs.load(Ordering::Acquire))
        + crate::lockstep_pairs::more_follower_repairs()
}

/// The topology decided at boot.
pub fn topology() -> Option<&'static Topology> {
    TOPOLOGY.get()
}

fn follower_task() -> ! {
    arch::heap::set_current_arena(FOLLOWER_ARENA.load(Ordering::Relaxed));
    let (Some(pair), Some(cfg)) = (PAIR.get(), CONFIG.get()) else {
        crate::boot::idle(arch::percpu::cpu_index())
    };
    // Cloned on this CPU, so the follower's replica lives in the follower's arena (the
    // template, in the boot arena, is freed).
    let template = TEMPLATE.lock().take();
    let replica = template.clone().unwrap_or_default();
    drop(template);
    serve_as_follower(pair, cfg, FollowerCore::new(pair, *cfg, replica, 0))
}

/// The follower loop of whichever CPU serves the pair as follower (the boot follower, or a
/// spare that replaced it): serves rounds, restarts from the leader's replica on a runtime
/// `lockstep on`, and leaves service when escalated as the suspect or retired.
pub(crate) fn serve_as_follower(
    pair: &'static Pair,
    cfg: &Config,
    mut core: FollowerCore<'static, Xen>,
) -> ! {
    let exit = loop {
        match core.follower_serve(&Tsc, &HwIdle) {
            FollowerExit::Resync(after) => {
                // Runtime `lockstep on`: restart from the leader's replica as handed over.
                let Some(template) = TEMPLATE.lock().take() else {
                    continue;
                };
                drop(core);
                let fresh = template.clone();
                drop(template);
                core = FollowerCore::new(pair, *cfg, fresh, after);
                let digest = lockstep::replica::full_digest(core.replica());
                pair.ack_resync(after, digest);
                arch::smp::kick(cpu_of(Role::Leader).unwrap_or(0));
            }
            FollowerExit::Escalated(s) if s != Some(Role::Follower) => {
                // The leader is the suspect (or none was identified): this core is promoted
                // if the leader steps down, else stays available for a runtime `lockstep on`.
                xprintln!(
                    "lockstep: follower CPU{} waits after escalation (suspect {:?})",
                    arch::percpu::cpu_index(),
                    s
                );
            }
            FollowerExit::Promote(after) => {
                // The leader stepped down as the suspect: this core leads from its replica.
                crate::pv::take_over(core, after)
            }
            exit => break exit,
        }
    };
    FOLLOWER_DIGEST.store(
        lockstep::replica::full_digest(core.replica()),
        Ordering::SeqCst,
    );
    FOLLOWER_DONE.store(true, Ordering::SeqCst);
    match exit {
        FollowerExit::Shutdown | FollowerExit::Resync(_) | FollowerExit::Promote(_) => {}
        FollowerExit::Escalated(s) => {
            xprintln!(
                "lockstep: follower CPU{} out of service (suspect {:?})",
                arch::percpu::cpu_index(),
                s
            )
        }
        FollowerExit::Retired => xprintln!(
            "lockstep: CPU{} retired: another CPU serves as follower",
            arch::percpu::cpu_index()
        ),
    }
    arch::heap::set_current_arena(arch::heap::BOOT_ARENA);
    crate::boot::idle(arch::percpu::cpu_index())
}

fn coordinator_task() -> ! {
    if let (Some(pair), Some(cfg)) = (PAIR.get(), CONFIG.get()) {
        let mut c = Coordinator::new(
            pair,
            cfg.max_retries,
            cfg.deadline_cycles,
            cfg.coordinator_wait,
        );
        c.coordinator_serve(&Tsc, &HwIdle);
    }
    crate::boot::idle(arch::percpu::cpu_index())
}

/// ` of pair N` after a control message when there are several pairs (nothing otherwise).
struct PairNote<'a>(&'a Backend, usize);

impl core::fmt::Display for PairNote<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Backend::Pairs(_) => write!(f, " of pair {}", self.1),
            _ => Ok(()),
        }
    }
}

/// How the guest exit path runs transactions: one core with both replicas (or once), or the
/// leader of a pair on separate CPUs.
pub enum Backend {
    /// Both executions (or the single one) on this CPU.
    Local(alloc::boxed::Box<Engine<Xen>>),
    /// The leader of a pair.
    Leader(alloc::boxed::Box<LeaderCore<'static, Xen>>),
    /// The leaders of several pairs (`-smp 5` and up).
    Pairs(crate::lockstep_pairs::Boxed),
}

impl Backend {
    /// A backend over `state` for the topology decided at boot; starts the follower and the
    /// coordinator on their CPUs.
    pub fn new(state: HvState) -> Backend {
        let cfg = CONFIG.get().copied().unwrap_or_default();
        if crate::lockstep_pairs::several() && PAIR.get().is_some() {
            return Backend::Pairs(crate::lockstep_pairs::Pairs::new(state));
        }
        match (TOPOLOGY.get(), PAIR.get()) {
            (
                Some(Topology::Pair {
                    follower,
                    coordinator,
                    ..
                }),
                Some(pair),
            ) => {
                // `state` was built in the leader's arena (`build_arena`); the follower's copy
                // passes through it too until the follower has cloned it into its own.
                let template = arch::heap::with_arena(build_arena(), || state.clone());
                *TEMPLATE.lock() = Some(template);
                arch::smp::assign(*follower, follower_task);
                if let Some(c) = coordinator {
                    arch::smp::assign(*c, coordinator_task);
                }
                Backend::Leader(alloc::boxed::Box::new(LeaderCore::new(
                    pair,
                    cfg,
                    state,
                    coordinator.is_none(),
                )))
            }
            _ => {
                let single = Config {
                    lockstep: false,
                    ..cfg
                };
                let copy = arch::heap::with_arena(build_arena(), || state.clone());
                match Engine::new(single, copy, state) {
                    Ok(e) => Backend::Local(alloc::boxed::Box::new(e)),
                    Err(e) => {
                        xprintln!("lockstep: cannot start the engine: {:?}", e);
                        arch::cpu::halt_forever()
                    }
                }
            }
        }
    }

    /// Runs one transaction (the leader's replica is in its own arena while it executes).
    /// Run once (lockstep off), the request goes to the machine as it is, never encoded.
    pub fn run(
        &mut self,
        request: &Request,
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<Effect>,
    ) -> Outcome<Abort> {
        match self {
            Backend::Local(e) => e.run_local_typed(request, env, &Tsc, sink),
            b => b.run_words(&request.to_words(), env, sink),
        }
    }

    /// [`Backend::run`] for a request in words.
    fn run_words(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<Effect>,
    ) -> Outcome<Abort> {
        match self {
            Backend::Local(e) => e.run_local(request, env, &Tsc, sink),
            Backend::Leader(l) => {
                let arena = LEADER_ARENA.load(Ordering::Relaxed);
                arch::heap::with_arena(arena, || l.leader_run(request, env, &Tsc, &HwIdle, sink))
            }
            Backend::Pairs(p) => p.run(request, env, sink),
        }
    }

    /// Runs one transaction of pair `pair` from this CPU (the self-test drives every pair's
    /// mailbox from one CPU); with one pair, as [`Backend::run`].
    pub fn run_for_pair(
        &mut self,
        pair: usize,
        request: &[u64],
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<Effect>,
    ) -> Outcome<Abort> {
        match self {
            Backend::Pairs(p) => p.run_for_pair(pair, request, env, sink),
            b => b.run_words(request, env, sink),
        }
    }

    /// The leader's replica.
    pub fn replica(&self) -> &HvState {
        match self {
            Backend::Local(e) => e.replica(Role::Leader),
            Backend::Leader(l) => l.replica(),
            Backend::Pairs(p) => p.replica(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        match self {
            Backend::Local(e) => e.stats(),
            Backend::Leader(l) => l.stats(),
            Backend::Pairs(p) => p.stats(),
        }
    }

    /// Protection state.
    pub fn health(&self) -> Health {
        match self {
            Backend::Local(e) => e.health(),
            Backend::Leader(l) => l.health(),
            Backend::Pairs(p) => p.health(),
        }
    }

    /// The fault injector.
    pub fn injector(&mut self) -> &mut Injector {
        match self {
            Backend::Local(e) => e.injector(),
            Backend::Leader(l) => l.injector(),
            Backend::Pairs(p) => p.injector(),
        }
    }

    /// The fault injector of the pair that pair `pair`'s transactions go through (with one
    /// pair, [`Backend::injector`]).
    pub fn injector_of(&mut self, pair: usize) -> &mut Injector {
        match self {
            Backend::Pairs(p) => p.injector_of(pair),
            b => b.injector(),
        }
    }

    /// Applies a committed lockstep control action (dom0's lockstep sysctl). Runs after the
    /// commit of the transaction that asked, so the engine changes between transactions.
    pub fn control(&mut self, op: &xen_core::hypercall::lockstep_ctl::LockstepOp) {
        match op.cmd {
            ctl::LOCKSTEP_CMD_ON => self.switch_on(),
            ctl::LOCKSTEP_CMD_OFF => self.switch_off(),
            ctl::LOCKSTEP_CMD_INJECT => {
                let Some(kind) = ctl::LockstepKind::from_u32(op.kind)
                    .and_then(|k| FaultKind::parse(k.name()).ok())
                else {
                    return;
                };
                let pair = op.pair as usize;
                self.injector_of(pair).arm(kind, op.count);
                xprintln!(
                    "lockstep: {} {} fault(s) armed for the next transactions{}",
                    op.count,
                    kind,
                    PairNote(self, pair)
                );
            }
            ctl::LOCKSTEP_CMD_FAIL => {
                let role = if op.kind == ctl::LOCKSTEP_CORE_LEADER {
                    Role::Leader
                } else {
                    Role::Follower
                };
                let pair = op.pair as usize;
                let cpu = match self {
                    Backend::Pairs(p) => p.fail_core(pair, role),
                    Backend::Leader(l) => {
                        l.fail_core(role);
                        cpu_of(role)
                    }
                    Backend::Local(e) => {
                        let core = e.cores()[role.code() as usize & 1];
                        e.injector().arm_persistent(FaultKind::Hang, core);
                        cpu_of(role)
                    }
                };
                xprintln!(
                    "lockstep: fault injection: {} CPU{} fails for good from the next transaction{}",
                    role,
                    cpu.unwrap_or(0),
                    PairNote(self, pair)
                );
            }
            _ => {}
        }
    }

    /// After a transaction escalated with `suspect`: a follower taken out of service is
    /// replaced by a spare CPU if one is left (see `lockstep_spare`), else the pair stays
    /// unprotected; either way the outcome is printed.
    pub fn after_escalation(&mut self, suspect: Option<Role>) {
        match (self, suspect) {
            (Backend::Leader(l), Some(Role::Follower)) => {
                crate::lockstep_spare::replace_follower(l)
            }
            (b, _) => xprintln!("lockstep: {}", b.health()),
        }
    }

    /// Lets the leader step down when escalated as the suspect, its follower CPU taking over
    /// (`pv::promote`); only the PV runtime, which can move the guests, turns it on.
    pub fn enable_promotion(&mut self) {
        if let Backend::Leader(l) = self {
            l.set_promotable(true);
        }
    }

    /// The promoted follower's side of a leader promotion, on its CPU with the runtime
    /// locked and the old leader parked: leads from `core`'s replica after round `after`
    /// (the counters continue), in that replica's heap arena `arena`; the old leader's
    /// engine is leaked with its arena (its replica is suspect: not even walked to be
    /// freed). The new leader may itself step down later, if a spare follows it. Returns
    /// the new leader's replica digest.
    pub fn promote(
        &mut self,
        core: FollowerCore<'static, Xen>,
        after: u64,
        arena: usize,
    ) -> Option<u32> {
        let (Some(pair), Some(cfg), Some(Topology::Pair { coordinator, .. })) =
            (PAIR.get(), CONFIG.get(), TOPOLOGY.get())
        else {
            return None;
        };
        let stats = self.stats();
        let replica = core.into_replica();
        let mut l = LeaderCore::promoted(pair, *cfg, replica, after, coordinator.is_none(), stats);
        l.set_promotable(true);
        let digest = lockstep::replica::full_digest(l.replica());
        let old = core::mem::replace(self, Backend::Leader(alloc::boxed::Box::new(l)));
        core::mem::forget(old);
        LEADER_ARENA.store(arena, Ordering::Relaxed);
        crate::lockstep_spare::become_leader();
        Some(digest)
    }

    /// After a promotion: a spare follows the new leader, else it runs unprotected, loudly.
    pub fn follow_promoted(&mut self, promoted: usize) {
        if let Backend::Leader(l) = self {
            crate::lockstep_spare::follow_promoted_leader(l, promoted);
        }
    }

    fn switch_off(&mut self) {
        match self {
            Backend::Local(e) => e.set_lockstep(false),
            Backend::Leader(l) => l.switch_off(),
            Backend::Pairs(p) => {
                p.switch_off();
                xprintln!(
                    "lockstep: off (runtime): transactions run once on every leader CPU, without redundancy"
                );
                return;
            }
        }
        let cpu = cpu_of(Role::Leader).unwrap_or(0);
        xprintln!(
            "lockstep: off (runtime): transactions run once on CPU{}, without redundancy",
            cpu
        );
    }

    fn switch_on(&mut self) {
        match self {
            Backend::Local(e) => {
                e.set_lockstep(true);
                match topology().map(|t| t.guest_cpus()) {
                    Some(cpus) if cpus.len() > 1 => xprintln!(
                        "lockstep: on (runtime): both replicas on the CPU of each transaction (CPU{}-CPU{}, no partner CPU), replicas re-synchronised",
                        cpus[0],
                        cpus[cpus.len() - 1]
                    ),
                    _ => xprintln!(
                        "lockstep: on (runtime): both replicas on CPU{} (no partner CPU), replicas re-synchronised",
                        cpu_of(Role::Leader).unwrap_or(0)
                    ),
                }
            }
            Backend::Pairs(p) => match p.switch_on() {
                Ok(d) => xprintln!(
                    "lockstep: on (runtime): every pair's follower re-synchronised from the leader's replica at a transaction boundary, replicas bit-identical (digest {:#010x})",
                    d
                ),
                Err(e) => xprintln!("lockstep: cannot turn on: {}; still {}", e, p.health()),
            },
            Backend::Leader(l) if l.health().is_protected() => {
                xprintln!("lockstep: already on ({})", l.health());
            }
            Backend::Leader(l) => {
                let mut hand_over = |r: &HvState| {
                    let copy = arch::heap::with_arena(arch::heap::BOOT_ARENA, || r.clone());
                    *TEMPLATE.lock() = Some(copy);
                };
                match l.switch_on(&Tsc, &HwIdle, &mut hand_over) {
                    Ok(d) => xprintln!(
                        "lockstep: on (runtime): follower CPU{} re-synchronised from the leader's replica at a transaction boundary, replicas bit-identical (digest {:#010x})",
                        cpu_of(Role::Follower).unwrap_or(0),
                        d
                    ),
                    Err(e) => {
                        // The copy nobody took is freed.
                        TEMPLATE.lock().take();
                        xprintln!("lockstep: cannot turn on: {}; still {}", e, l.health())
                    }
                }
            }
        }
    }

    /// The status dom0's `xl lockstep status` reads: mode, roles, every counter, per-kind
    /// injection outcomes, recovery latency (ns, from TSC cycles) and replica bytes.
    pub fn status(&self) -> ctl::LockstepStatus {
        let st = self.stats();
        let health = self.health();
        let khz = arch::lapic::tsc_khz().max(1);
        let ns = |cycles: u64| (u128::from(cycles) * 1_000_000 / u128::from(khz)) as u64;
        let mut s = ctl::LockstepStatus {
            version: ctl::LOCKSTEP_CTL_VERSION,
            enabled: match health {
                Health::Off => ctl::LOCKSTEP_MODE_OFF,
                Health::Unprotected { .. } => ctl::LOCKSTEP_MODE_UNPROTECTED,
                _ => ctl::LOCKSTEP_MODE_ON,
            },
            nr_cpus: NCPUS.load(Ordering::Relaxed).min(ctl::LOCKSTEP_MAX_CPUS) as u32,
            nr_pairs: match self {
                Backend::Pairs(p) => p.nr_pairs() as u32,
                _ => 1,
            },
            transactions: st.transactions,
            commits: st.commits,
            rollbacks: st.rollbacks,
            retries: st.retries,
            detected: st.detected,
            recovered: st.recovered,
            escalated: st.escalated,
            recovery_latency_ns_min: ns(st.recovery.min),
            recovery_latency_ns_max: ns(st.recovery.max),
            recovery_latency_ns_total: ns(st.recovery.total),
            replica_bytes: st.replica_bytes,
            recovery_latency_hist: st.recovery.hist,
            ..ctl::LockstepStatus::default()
        };
        for k in FaultKind::ALL {
            let row = &st.injections[k.index()];
            let c = &mut s.kinds[k.index()];
            c.injected = row.iter().sum();
            c.masked = row[InjectionOutcome::Masked.index()];
            c.recovered = row[InjectionOutcome::DetectedRecovered.index()];
            c.escalated = row[InjectionOutcome::DetectedEscalated.index()];
            c.silent = row[InjectionOutcome::SilentCorruption.index()];
            c.crashed = row[InjectionOutcome::Crash.index()];
        }
        let mut role = |cpu: usize, bit: u8| {
            if let Some(r) = s.roles.get_mut(cpu) {
                *r |= bit;
            }
        };
        if let Backend::Pairs(p) = self {
            p.mark_roles(&mut s.roles);
            return s;
        }
        match TOPOLOGY.get() {
            Some(t @ Topology::Single { .. }) => {
                for cpu in t.guest_cpus() {
                    role(cpu, ctl::LOCKSTEP_ROLE_LEADER);
                }
            }
            Some(Topology::Pair {
                leader,
                follower,
                coordinator,
                spares,
                ..
            }) => {
                // The leader and follower now serving (a promoted follower, a spare).
                let leader = &cpu_of(Role::Leader).unwrap_or(*leader);
                let current = cpu_of(Role::Follower).unwrap_or(*follower);
                role(*leader, ctl::LOCKSTEP_ROLE_LEADER);
                if !crate::lockstep_spare::follower_vacant() {
                    role(current, ctl::LOCKSTEP_ROLE_FOLLOWER);
                }
                role(
                    coordinator.unwrap_or(*leader),
                    ctl::LOCKSTEP_ROLE_COORDINATOR,
                );
                for c in spares {
                    if *c != current && c != leader && !crate::lockstep_spare::is_retired(*c) {
                        role(*c, ctl::LOCKSTEP_ROLE_SPARE);
                    }
                }
                for c in 0..ctl::LOCKSTEP_MAX_CPUS {
                    if crate::lockstep_spare::is_retired(c) {
                        role(c, ctl::LOCKSTEP_ROLE_RETIRED);
                    }
                }
                let promoted = crate::lockstep_spare::leader_cpu().is_some();
                if let (Health::Unprotected { suspect: Some(r) }, false) = (health, promoted) {
                    let cpu = if r == Role::Follower {
                        current
                    } else {
                        *leader
                    };
                    role(cpu, ctl::LOCKSTEP_ROLE_RETIRED);
                }
            }
            None => {}
        }
        s
    }

    /// Stops the follower and coordinator (they report and idle).
    pub fn shut_down_pair(&self) {
        if let Backend::Pairs(p) = self {
            p.shut_down();
            return;
        }
        if let Some(p) = PAIR.get() {
            p.shut_down();
            for role in [Role::Follower, Role::Coordinator] {
                if let Some(c) = cpu_of(role) {
                    arch::smp::kick(c);
                }
            }
        }
    }
}
