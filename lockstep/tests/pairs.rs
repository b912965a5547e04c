//! Two lockstep pairs over one logical state, on real threads as cores: two leaders take
//! turns with the one leader replica under one lock (in random interleavings), two followers
//! take turns with the one follower replica, one coordinator serves both mailboxes. No fault:
//! the same effects, in the same order, and the same final state as lockstep off. A fault
//! injected in pair 1 is detected and recovered while pair 0 keeps committing.

mod common;
use common::Host;
use lockstep::config::{Config, EngineError, Outcome, TxResult};
use lockstep::coordinator::{coordinator_serve_all, Coordinator};
use lockstep::follower::{FollowerCore, FollowerExit};
use lockstep::inject::{FaultKind, Prng};
use lockstep::leader::LeaderCore;
use lockstep::mailbox::Pair;
use lockstep::model::{random_request, Effect, Model, ModelEnv, ModelError, ModelState};
use lockstep::policy::Health;
use lockstep::replica::full_digest;
use lockstep::role::Role;
use lockstep::shared::{Sequence, SharedReplica};
use lockstep::stats::Stats;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

fn cfg() -> Config {
    Config {
        // One test runs without pair 1's follower: don't wait long for it to start.
        follower_start_grace: 1,
        ..common::cfg(200)
    }
}

/// What both leaders did, in the order of the one lock: (request, pair) per transaction,
/// and the effects each committed.
#[derive(Default)]
struct Log {
    /// (request, pair, detections) per transaction.
    order: Vec<([u64; 3], usize, u32)>,
    applied: Vec<Vec<Effect>>,
}

/// The state the leaders share under the one logical lock: the leader replica, one leader
/// core per pair (its mailbox, rounds, policy and health) and the pair each pair's
/// transactions go through (itself, or another after it escalated).
struct LeaderSide<'p> {
    replica: Option<ModelState>,
    cores: Vec<LeaderCore<'p, Model>>,
    route: [usize; 2],
    log: Log,
    /// While a spare is left: where the leader hands its replica over to the spare thread,
    /// and the pair it joins (`usize::MAX` until then).
    spare: Option<(&'p Mutex<Option<ModelState>>, &'p AtomicUsize)>,
    /// Pairs whose follower the spare replaced.
    replaced: Vec<usize>,
}

impl LeaderSide<'_> {
    /// Runs `req` for pair `i` through the pair it is routed to; an escalated pair hands its
    /// transactions (the escalated one uncommitted) to the other pair while that one is
    /// protected (as the hypervisor's `lockstep_pairs` does). `env` makes the environment of
    /// each attempt.
    fn run(
        &mut self,
        i: usize,
        req: &[u64],
        env: impl Fn() -> ModelEnv,
        h: &Host,
    ) -> (Outcome<ModelError>, Vec<Effect>) {
        let mut applied = Vec::new();
        let mut detections = 0;
        loop {
            let k = self.route[i];
            let core = &mut self.cores[k];
            let placeholder =
                core.exchange_replica(self.replica.take().expect("the leader replica"));
            // Each attempt through a pair sees the environment afresh (as the hardware's
            // values for a transaction that committed nothing), here the same values, so
            // the committed result compares with lockstep off's.
            let mut out = core.leader_run(req, &mut env(), h, h, &mut |x: &[Effect]| {
                applied = x.to_vec()
            });
            self.replica = Some(core.exchange_replica(placeholder));
            out.detections += detections;
            if out.result != TxResult::Aborted(EngineError::Rerouted) {
                return (out, applied);
            }
            detections = out.detections;
            if self.bring_in_spare(k, h) {
                // Pair k is protected again: the transaction runs again through it.
                continue;
            }
            let other = 1 - k;
            if self.cores[other].health().is_protected() {
                for r in self.route.iter_mut().filter(|r| **r == k) {
                    *r = other;
                }
            } else {
                self.cores[k].set_reroutable(false);
            }
        }
    }
}

/// Effects faults injected in a pair right after a spare replaced its follower.
const SPARE_FAULTS: u32 = 20;

impl LeaderSide<'_> {
    /// After pair `k` escalated with its follower as the suspect: the follower is retired
    /// and the spare thread joins pair `k` from a copy of the leader replica (as the
    /// hypervisor's `lockstep_pairs` does). Whether pair `k` is protected again.
    fn bring_in_spare(&mut self, k: usize, h: &Host) -> bool {
        let follower_failed = self.cores[k].health()
            == Health::Unprotected {
                suspect: Some(Role::Follower),
            };
        let Some((handover, joins)) = self.spare.filter(|_| follower_failed) else {
            return false;
        };
        self.spare = None;
        let core = &mut self.cores[k];
        core.pair().retire_follower();
        joins.store(k, Ordering::Release);
        let placeholder = core.exchange_replica(self.replica.take().expect("the leader replica"));
        let r = core.replace_follower(h, h, &mut |r: &ModelState| {
            *handover.lock().unwrap() = Some(r.clone())
        });
        self.replica = Some(core.exchange_replica(placeholder));
        r.expect("the spare joined with a bit-identical replica");
        // The pair is protected again: faults injected in it now are recovered.
        self.cores[k]
            .injector()
            .arm(FaultKind::Effects, SPARE_FAULTS);
        self.replaced.push(k);
        true
    }
}

struct Run {
    log: Log,
    leader_digest: u32,
    follower_digest: u32,
    exits: Vec<FollowerExit>,
    stats: Vec<Stats>,
    health: Vec<Health>,
    /// The pair the spare joined and how its follower loop ended.
    spare: Option<(usize, FollowerExit)>,
    /// Pairs whose follower the spare replaced.
    replaced: Vec<usize>,
}

/// Runs `per_leader` transactions on each of two leader threads (seeded requests, random
/// pauses between transactions, so the two leaders interleave differently every run, or
/// strictly in turns if `alternate`); `prepare` may arm pair `i`'s injector; pair `i`'s
/// follower thread runs if `followers[i]`. The deadline is the short one of [`cfg`] only
/// with a `spare` or an absent follower: arm a hang only then.
fn run_two_pairs(
    seed: u64,
    per_leader: u64,
    alternate: bool,
    followers: [bool; 2],
    spare: bool,
    prepare: impl Fn(usize, &mut LeaderCore<'_, Model>),
) -> Run {
    let pairs = [Pair::new(1024), Pair::new(1024)];
    let seq = Sequence::new(0);
    let follower_slot = SharedReplica::new();
    follower_slot.put(ModelState::new());
    // A run where every follower serves and none hangs waits for no deadline: a long one,
    // so that a thread the host deschedules for a while (a loaded 2-core host; one run saw
    // 0.3 s) is not taken for a hung core.
    let hangs_or_absent = spare || followers.contains(&false);
    let c = if hangs_or_absent {
        cfg()
    } else {
        Config {
            deadline_cycles: 5_000_000_000,
            ..cfg()
        }
    };
    let cores = (0..2)
        .map(|i| {
            let mut l = LeaderCore::<Model>::new(&pairs[i], c, ModelState::new(), false);
            l.share_rounds(&seq);
            l.set_reroutable(true);
            prepare(i, &mut l);
            l
        })
        .collect();
    let handover = Mutex::new(None);
    let spare_joins = AtomicUsize::new(usize::MAX);
    let side = Mutex::new(LeaderSide {
        replica: Some(ModelState::new()),
        cores,
        route: [0, 1],
        log: Log::default(),
        spare: spare.then_some((&handover, &spare_joins)),
        replaced: Vec::new(),
    });
    // Whose turn it is (`alternate`), and how many leaders are done.
    let turn = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let followers: Vec<_> = pairs
            .iter()
            .zip(followers)
            .filter(|(_, up)| *up)
            .map(|(pair, _)| {
                let slot = &follower_slot;
                s.spawn(move || {
                    let h = Host(Instant::now());
                    let mut f = FollowerCore::<Model>::shared(pair, c, slot, ModelState::new(), 0);
                    f.follower_serve(&h, &h)
                })
            })
            .collect();
        // The spare thread: joins the pair whose follower was retired, when the leader asks.
        let spare = spare.then(|| {
            let (pairs, slot, handover, joins) = (&pairs, &follower_slot, &handover, &spare_joins);
            s.spawn(move || {
                let h = Host(Instant::now());
                let k = loop {
                    match joins.load(Ordering::Acquire) {
                        usize::MAX if pairs.iter().all(|p| p.is_shut_down()) => return None,
                        usize::MAX => std::thread::yield_now(),
                        k => break k,
                    }
                };
                let fresh = || handover.lock().unwrap().take();
                let mut f = FollowerCore::<Model>::join_shared(
                    &pairs[k],
                    c,
                    slot,
                    ModelState::new(),
                    fresh,
                    &h,
                    &h,
                )?;
                Some((k, f.follower_serve(&h, &h)))
            })
        });
        let coord = s.spawn(|| {
            let h = Host(Instant::now());
            let mut cs: Vec<_> = pairs
                .iter()
                .map(|p| Coordinator::new(p, c.max_retries, c.deadline_cycles, c.wait))
                .collect();
            coordinator_serve_all(&mut cs, &h, &[&h, &h]);
            cs.iter().map(|c| c.stats().rounds).sum::<u64>()
        });
        let leaders: Vec<_> = (0..2)
            .map(|i| {
                let side = &side;
                let (turn, finished) = (&turn, &finished);
                s.spawn(move || {
                    let h = Host(Instant::now());
                    let mut p = Prng::new(seed ^ ((i as u64 + 1) * 0x9E37));
                    let mut pause = Prng::new(std::process::id() as u64 ^ i as u64 ^ seed);
                    for _ in 0..per_leader {
                        let req = random_request(&mut p);
                        while alternate
                            && turn.load(Ordering::Acquire) != i
                            && finished.load(Ordering::Acquire) == 0
                        {
                            std::thread::yield_now();
                        }
                        let mut g = side.lock().unwrap();
                        let tx = g.log.order.len() as u64;
                        let (out, applied) = g.run(i, &req, || ModelEnv::new(seed, tx), &h);
                        assert!(
                            matches!(out.result, TxResult::Committed | TxResult::Failed(_)),
                            "pair {i}: {out:?}"
                        );
                        g.log.order.push((req, i, out.detections));
                        g.log.applied.push(applied);
                        drop(g);
                        turn.store(1 - i, Ordering::Release);
                        for _ in 0..pause.below(4) {
                            std::thread::yield_now();
                        }
                    }
                    finished.fetch_add(1, Ordering::AcqRel);
                })
            })
            .collect();
        for j in leaders {
            j.join().unwrap();
        }
        for p in &pairs {
            p.shut_down();
        }
        let exits: Vec<_> = followers.into_iter().map(|j| j.join().unwrap()).collect();
        let spare = spare.and_then(|j| j.join().unwrap());
        let rounds = coord.join().unwrap();
        assert!(
            rounds >= 2 * per_leader,
            "the coordinator decided {rounds} rounds"
        );
        let mut g = side.lock().unwrap();
        let leader_digest = full_digest(g.replica.as_ref().unwrap());
        let follower_digest = full_digest(&follower_slot.take().unwrap());
        Run {
            log: std::mem::take(&mut g.log),
            leader_digest,
            follower_digest,
            exits,
            stats: g.cores.iter().map(|c| c.stats()).collect(),
            health: g.cores.iter().map(|c| c.health()).collect(),
            spare,
            replaced: std::mem::take(&mut g.replaced),
        }
    })
}

/// The same transactions, in the order the lock gave them, run once with lockstep off.
fn golden(seed: u64, order: &[([u64; 3], usize, u32)]) -> (Vec<Vec<Effect>>, u32) {
    let mut e = common::single_engine(cfg());
    let mut applied = Vec::new();
    for (tx, (req, _, _)) in order.iter().enumerate() {
        let mut one = Vec::new();
        e.run_single(
            req,
            &mut ModelEnv::new(seed, tx as u64),
            &mut |x: &[Effect]| one = x.to_vec(),
        );
        applied.push(one);
    }
    (applied, full_digest(e.replica(Role::Leader)))
}

#[test]
fn two_pairs_over_one_state_agree_with_lockstep_off() {
    for seed in [21, 22, 23] {
        let r = run_two_pairs(seed, 150, false, [true, true], false, |_, _| {});
        assert_eq!(r.log.order.len(), 300);
        let (want, digest) = golden(seed, &r.log.order);
        assert_eq!(r.log.applied, want, "seed {seed}");
        assert_eq!(r.leader_digest, digest, "seed {seed}: leader replica");
        assert_eq!(r.follower_digest, digest, "seed {seed}: follower replica");
        assert_eq!(r.exits, [FollowerExit::Shutdown, FollowerExit::Shutdown]);
        for (i, st) in r.stats.iter().enumerate() {
            assert_eq!(st.detected, 0, "pair {i}: {st}");
            assert_eq!(st.commits + st.failed, 150, "pair {i}: {st}");
            assert_eq!(r.health[i], Health::Protected);
        }
        // The interleaving is real: both pairs ran in turns, not one after the other.
        let switches = r.log.order.windows(2).filter(|w| w[0].1 != w[1].1).count();
        assert!(
            switches > 1,
            "seed {seed}: {switches} switches between the pairs"
        );
    }
}

#[test]
fn a_fault_in_pair_1_is_recovered_while_pair_0_keeps_committing() {
    for kind in [
        FaultKind::Effects,
        FaultKind::FollowerReg,
        FaultKind::ReplicaState,
        FaultKind::Digest,
    ] {
        // In turns, so pair 0's transactions fall between pair 1's faulty ones.
        let r = run_two_pairs(31, 120, true, [true, true], false, |i, l| {
            if i == 1 {
                l.injector().arm(kind, 40);
            }
        });
        let (want, digest) = golden(31, &r.log.order);
        assert_eq!(r.log.applied, want, "{kind}");
        assert_eq!(r.leader_digest, digest, "{kind}");
        assert_eq!(r.follower_digest, digest, "{kind}: follower replica");
        let (p0, p1) = (&r.stats[0], &r.stats[1]);
        assert_eq!(p0.detected, 0, "{kind}: pair 0 {p0}");
        assert_eq!(p0.commits + p0.failed, 120, "{kind}: pair 0 {p0}");
        assert!(p1.recovered > 0, "{kind}: pair 1 {p1}");
        assert_eq!(p1.escalated, 0, "{kind}: pair 1 {p1}");
        assert_eq!(r.health, [Health::Protected, Health::Protected], "{kind}");
        // Between pair 1's first and last detection, pair 0 committed without one.
        let det = |t: &&([u64; 3], usize, u32)| t.1 == 1 && t.2 > 0;
        let first = r
            .log
            .order
            .iter()
            .position(|t| det(&t))
            .expect("detections");
        let last = r.log.order.iter().rposition(|t| det(&t)).unwrap();
        let between = r.log.order[first..last].iter().filter(|t| t.1 == 0).count();
        assert!(
            between >= 10,
            "{kind}: pair 0 ran {between} transactions meanwhile"
        );
    }
}

#[test]
fn an_escalated_pair_runs_through_the_other_pair_still_protected() {
    // Pair 1's follower never answers: its first transaction times out until the retries
    // run out, the pair escalates with the follower as the suspect, and from then on pair
    // 1's transactions (the escalated one first, uncommitted until then) go through pair 0,
    // whose follower shadows them on the one follower replica.
    let r = run_two_pairs(41, 40, false, [true, false], false, |_, _| {});
    let (want, digest) = golden(41, &r.log.order);
    assert_eq!(r.log.applied, want);
    assert_eq!(r.leader_digest, digest);
    assert_eq!(
        r.follower_digest, digest,
        "pair 0's follower ran every transaction"
    );
    assert_eq!(r.exits, [FollowerExit::Shutdown]);
    assert_eq!(r.health[0], Health::Protected);
    assert_eq!(
        r.health[1],
        Health::Unprotected {
            suspect: Some(Role::Follower)
        }
    );
    assert_eq!(r.stats[1].escalated, 1, "{}", r.stats[1]);
    assert_eq!(
        r.stats[1].single, 0,
        "nothing ran unprotected: {}",
        r.stats[1]
    );
    // Pair 1's core committed nothing (its first transaction escalated): pair 0's core ran
    // all 80.
    assert_eq!(r.stats[1].commits + r.stats[1].failed, 0, "{}", r.stats[1]);
    assert_eq!(r.stats[0].commits + r.stats[0].failed, 80, "{}", r.stats[0]);
}

#[test]
fn a_spare_replaces_a_failed_follower_of_either_pair_which_is_protected_again() {
    for failing in [0, 1] {
        // The failing pair's follower hangs in every transaction from the start: the pair
        // escalates with its follower as the suspect, the follower is retired and the spare
        // joins the pair from a copy of the leader replica; the escalated transaction, which
        // nothing committed, runs again through the same pair, protected again. Then
        // `SPARE_FAULTS` effects faults in that pair are recovered with the spare.
        let r = run_two_pairs(
            51 + failing as u64,
            60,
            false,
            [true, true],
            true,
            |i, l| {
                if i == failing {
                    l.fail_core(Role::Follower);
                }
            },
        );
        let (want, digest) = golden(51 + failing as u64, &r.log.order);
        assert_eq!(r.log.applied, want, "pair {failing}");
        assert_eq!(r.leader_digest, digest, "pair {failing}");
        assert_eq!(
            r.follower_digest, digest,
            "pair {failing}: follower replica"
        );
        assert_eq!(
            r.replaced,
            [failing],
            "{:?} {:?}",
            r.health,
            r.stats[failing]
        );
        assert_eq!(r.spare, Some((failing, FollowerExit::Shutdown)));
        let mut exits = [FollowerExit::Shutdown, FollowerExit::Shutdown];
        exits[failing] = FollowerExit::Escalated(Some(Role::Follower));
        assert_eq!(r.exits, exits);
        let st = &r.stats[failing];
        assert_eq!(st.escalated, 1, "{st}");
        assert_eq!(st.resyncs, 1, "{st}");
        assert_eq!(st.single, 0, "nothing ran unprotected: {st}");
        assert_eq!(
            st.commits + st.failed,
            60,
            "the pair ran its own transactions: {st}"
        );
        assert_eq!(st.recovered, u64::from(SPARE_FAULTS), "{st}");
        assert_eq!(
            r.health[failing],
            Health::SpareInUse {
                retired: Role::Follower
            }
        );
        assert_eq!(r.health[1 - failing], Health::Protected);
        let other = &r.stats[1 - failing];
        assert_eq!(other.commits + other.failed, 60, "{other}");
    }
}

#[test]
fn with_the_spare_used_a_second_failed_follower_reroutes_through_the_spares_pair() {
    // Both followers fail for good: the first pair to escalate gets the spare, the second
    // finds none left and its transactions go through the first pair, protected by the
    // spare. Nothing runs unprotected.
    let r = run_two_pairs(61, 40, false, [true, true], true, |_, l| {
        l.fail_core(Role::Follower);
    });
    let (want, digest) = golden(61, &r.log.order);
    assert_eq!(r.log.applied, want);
    assert_eq!(r.leader_digest, digest);
    assert_eq!(
        r.follower_digest, digest,
        "the spare ran every transaction after"
    );
    let [first] = r.replaced[..] else {
        panic!("one replacement: {:?}", r.replaced)
    };
    let second = 1 - first;
    assert_eq!(r.spare, Some((first, FollowerExit::Shutdown)));
    assert_eq!(
        r.exits,
        [FollowerExit::Escalated(Some(Role::Follower)); 2],
        "both boot followers left service"
    );
    assert_eq!(
        r.health[first],
        Health::SpareInUse {
            retired: Role::Follower
        }
    );
    assert_eq!(
        r.health[second],
        Health::Unprotected {
            suspect: Some(Role::Follower)
        }
    );
    let (a, b) = (&r.stats[first], &r.stats[second]);
    assert_eq!((a.escalated, b.escalated), (1, 1), "{a} / {b}");
    assert_eq!(a.single + b.single, 0, "nothing ran unprotected: {a} / {b}");
    assert_eq!(
        a.commits + a.failed,
        80,
        "the spare's pair ran them all: {a}"
    );
    assert_eq!(b.commits + b.failed, 0, "{b}");
}
