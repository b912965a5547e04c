//! Two lockstep pairs over one logical state, on real threads as cores: two leaders take
//! turns with the one leader replica under one lock (in random interleavings), two followers
//! take turns with the one follower replica, one coordinator serves both mailboxes. No fault:
//! the same effects, in the same order, and the same final state as lockstep off. A fault
//! injected in pair 1 is detected and recovered while pair 0 keeps committing.

use lockstep::config::{Config, Outcome, TxResult};
use lockstep::coordinator::{coordinator_serve_all, Coordinator};
use lockstep::engine::Engine;
use lockstep::follower::{FollowerCore, FollowerExit};
use lockstep::inject::{FaultKind, Prng};
use lockstep::leader::LeaderCore;
use lockstep::mailbox::Pair;
use lockstep::model::{random_request, Effect, Model, ModelEnv, ModelError, ModelState};
use lockstep::policy::Health;
use lockstep::replica::full_digest;
use lockstep::role::{Clock, Idle, Role, WaitStrategy};
use lockstep::shared::{Sequence, SharedReplica};
use lockstep::stats::Stats;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

struct Host(Instant);
impl Clock for Host {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}
impl Idle for Host {
    fn idle(&self) {
        std::thread::yield_now();
    }
}

fn cfg() -> Config {
    Config {
        deadline_cycles: 300_000_000, // 300 ms: generous on a loaded 2-core host
        wait: WaitStrategy { spins: 200 },
        max_retries: 2,
        scrub_interval: 1,
        ..Config::default()
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

/// The state the leaders share under the one logical lock.
struct LeaderSide {
    replica: Option<ModelState>,
    log: Log,
}

struct Run {
    log: Log,
    leader_digest: u32,
    follower_digest: u32,
    exits: Vec<FollowerExit>,
    stats: Vec<Stats>,
    health: Vec<Health>,
}

/// Runs `per_leader` transactions on each of two leader threads (seeded requests, random
/// pauses between transactions, so the two leaders interleave differently every run, or
/// strictly in turns if `alternate`); `prepare` may arm pair `i`'s injector.
fn run_two_pairs(
    seed: u64,
    per_leader: u64,
    alternate: bool,
    prepare: impl Fn(usize, &mut LeaderCore<'_, Model>) + Sync,
) -> Run {
    let pairs = [Pair::new(1024), Pair::new(1024)];
    let seq = Sequence::new(0);
    let follower_slot = SharedReplica::new();
    follower_slot.put(ModelState::new());
    let side = Mutex::new(LeaderSide {
        replica: Some(ModelState::new()),
        log: Log::default(),
    });
    let c = cfg();
    // Whose turn it is (`alternate`), and how many leaders are done.
    let turn = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let followers: Vec<_> = pairs
            .iter()
            .map(|pair| {
                let slot = &follower_slot;
                s.spawn(move || {
                    let h = Host(Instant::now());
                    let mut f = FollowerCore::<Model>::shared(pair, c, slot, ModelState::new(), 0);
                    f.follower_serve(&h, &h)
                })
            })
            .collect();
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
                let (pair, seq, side, prepare) = (&pairs[i], &seq, &side, &prepare);
                let (turn, finished) = (&turn, &finished);
                s.spawn(move || {
                    let h = Host(Instant::now());
                    let mut l = LeaderCore::<Model>::new(pair, c, ModelState::new(), false);
                    l.share_rounds(seq);
                    l.set_reroutable(true);
                    prepare(i, &mut l);
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
                        let mine = g.replica.take().expect("the leader replica");
                        let placeholder = l.exchange_replica(mine);
                        let mut applied = Vec::new();
                        let out: Outcome<ModelError> = l.leader_run(
                            &req,
                            &mut ModelEnv::new(seed, tx),
                            &h,
                            &h,
                            &mut |x: &[Effect]| applied = x.to_vec(),
                        );
                        g.replica = Some(l.exchange_replica(placeholder));
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
                    (l.stats(), l.health())
                })
            })
            .collect();
        let done: Vec<_> = leaders.into_iter().map(|j| j.join().unwrap()).collect();
        for p in &pairs {
            p.shut_down();
        }
        let exits: Vec<_> = followers.into_iter().map(|j| j.join().unwrap()).collect();
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
            stats: done.iter().map(|d| d.0.clone()).collect(),
            health: done.iter().map(|d| d.1).collect(),
        }
    })
}

/// The same transactions, in the order the lock gave them, run once with lockstep off.
fn golden(seed: u64, order: &[([u64; 3], usize, u32)]) -> (Vec<Vec<Effect>>, u32) {
    let mut e = Engine::<Model>::new(
        Config {
            lockstep: false,
            ..cfg()
        },
        ModelState::new(),
        ModelState::new(),
    )
    .unwrap();
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
        let r = run_two_pairs(seed, 150, false, |_, _| {});
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
        let r = run_two_pairs(31, 120, true, |i, l| {
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
