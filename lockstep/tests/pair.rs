//! The engine on real threads as cores: leader + follower (leader coordinating), leader +
//! follower + coordinator, injected faults, hung and dead cores.

mod common;
use common::Host;
use lockstep::config::{Config, TxResult};
use lockstep::coordinator::Coordinator;
use lockstep::follower::{FollowerCore, FollowerExit};
use lockstep::inject::{FaultKind, Prng};
use lockstep::leader::LeaderCore;
use lockstep::mailbox::Pair;
use lockstep::model::{random_request, Effect, Model, ModelEnv, ModelState};
use lockstep::policy::Health;
use lockstep::replica::full_digest;
use lockstep::role::{Role, WaitStrategy};
use std::time::Instant;

fn cfg() -> Config {
    Config {
        // Several tests run without a follower on purpose: don't wait for one to start.
        follower_start_grace: 1,
        ..common::cfg(2000)
    }
}

type Applied = Vec<Vec<Effect>>;

/// Golden effects and final digest of a workload run once, lockstep off.
fn golden(seed: u64, n: u64) -> (Applied, u32) {
    let mut e = common::single_engine(cfg());
    let mut p = Prng::new(seed);
    let mut applied = Applied::new();
    for tx in 0..n {
        let req = random_request(&mut p);
        e.run_single(&req, &mut ModelEnv::new(seed, tx), &mut |x: &[Effect]| {
            applied.push(x.to_vec())
        });
    }
    (applied, full_digest(e.replica(Role::Leader)))
}

/// What [`run_pair_with`] returns: the applied effects, the leader's replica digest, the
/// follower's exit and digest, the leader's health and statistics.
type PairRun = (
    Applied,
    u32,
    Option<(FollowerExit, u32)>,
    Health,
    lockstep::stats::Stats,
);

/// Runs `n` transactions with configuration `c` and a follower thread (and a coordinator
/// thread if `coord`); `prepare` may arm the leader's injector.
fn run_pair_with(
    c: Config,
    seed: u64,
    n: u64,
    coord: bool,
    spawn_follower: bool,
    prepare: impl FnOnce(&mut LeaderCore<'_, Model>),
) -> PairRun {
    let pair = Pair::new(1024);
    std::thread::scope(|s| {
        let f = spawn_follower.then(|| {
            s.spawn(|| {
                let h = Host(Instant::now());
                let mut f = FollowerCore::<Model>::new(&pair, c, ModelState::new(), 0);
                let exit = f.follower_serve(&h, &h);
                f.scrub();
                (exit, full_digest(f.replica()))
            })
        });
        let k = coord.then(|| {
            s.spawn(|| {
                let h = Host(Instant::now());
                let mut k =
                    Coordinator::new(&pair, c.max_retries, c.deadline_cycles, c.coordinator_wait);
                k.coordinator_serve(&h, &h);
                k.stats()
            })
        });
        let h = Host(Instant::now());
        let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), !coord);
        prepare(&mut l);
        let mut p = Prng::new(seed);
        let mut applied = Applied::new();
        for tx in 0..n {
            let req = random_request(&mut p);
            let out = l.leader_run(
                &req,
                &mut ModelEnv::new(seed, tx),
                &h,
                &h,
                &mut |x: &[Effect]| applied.push(x.to_vec()),
            );
            if out.detections > 0 && std::env::var("DBG").is_ok() {
                eprintln!("tx {tx} {req:?} {out:?} {}", l.stats());
            }
            assert!(
                matches!(out.result, TxResult::Committed | TxResult::Failed(_)),
                "{out:?}"
            );
        }
        pair.shut_down();
        l.scrub();
        let fr = f.map(|j| j.join().unwrap());
        if let Some(k) = k {
            let ks = k.join().unwrap();
            assert!(ks.rounds >= n || !l.health().is_protected() || l.coordinates_inline());
        }
        (applied, full_digest(l.replica()), fr, l.health(), l.stats())
    })
}

#[test]
fn two_cores_agree_with_a_single_execution() {
    let (want, digest) = golden(11, 300);
    let (got, ld, fr, health, stats) = run_pair_with(cfg(), 11, 300, false, true, |_| {});
    assert_eq!(got, want);
    assert_eq!(ld, digest);
    let (exit, fd) = fr.unwrap();
    assert_eq!(exit, FollowerExit::Shutdown);
    assert_eq!(
        fd, digest,
        "the follower's replica, in its own thread, is equal"
    );
    assert_eq!(health, Health::Protected);
    assert_eq!(stats.commits + stats.failed, 300);
}

#[test]
fn three_cores_with_a_coordinator() {
    let (want, digest) = golden(12, 200);
    let (got, ld, fr, _, stats) = run_pair_with(cfg(), 12, 200, true, true, |_| {});
    assert_eq!(got, want);
    assert_eq!(ld, digest);
    assert_eq!(fr.unwrap().1, digest);
    assert_eq!(stats.detected, 0);
}

#[test]
fn three_cores_waiting_as_on_bare_metal() {
    // The hypervisor's waits: a coordinator core and a follower waiting for its decision
    // idle at once (`coordinator_wait`, `decision_wait`), leader and follower otherwise spin.
    let c = Config {
        coordinator_wait: WaitStrategy { spins: 0 },
        decision_wait: WaitStrategy { spins: 0 },
        ..cfg()
    };
    let (want, digest) = golden(14, 200);
    let (got, ld, fr, health, stats) = run_pair_with(c, 14, 200, true, true, |l| {
        l.injector().arm(FaultKind::Effects, 20);
    });
    assert_eq!(got, want);
    assert_eq!(ld, digest);
    assert_eq!(fr.unwrap().1, digest);
    assert_eq!(health, Health::Protected);
    assert!(stats.recovered >= 20, "{stats}");
}

#[test]
fn the_incremental_scrub_repairs_a_latent_flip_while_rounds_run() {
    // The leader's scrub step runs while it waits for the round's decision, in the middle of
    // the transaction (steps here cover the whole replica). A bit flipped in the leader's
    // replica beforehand is corrected (by that step, or by the scrub before a second retry
    // when the round wrote the object from its flipped value), nothing is escalated, and
    // every result and both replicas end as the golden run's.
    let c = Config {
        scrub_interval: 0,
        scrub_step: 1_000_000,
        ..cfg()
    };
    let (want, digest) = golden(15, 100);
    let (got, ld, fr, health, stats) = run_pair_with(c, 15, 100, true, true, |l| {
        let mut r = l.exchange_replica(ModelState::new());
        let bits = lockstep::replica::bit_len(&r);
        // A bit a scrub can see and correct (under a per-object checksum, in a value).
        let seen = (bits / 2..bits).step_by(7).any(|b| {
            lockstep::replica::flip_bit(&mut r, b);
            let mut t = r.clone();
            let found = lockstep::replica::verify(&r) > 0
                && lockstep::replica::self_repair(&mut t) == 1
                && lockstep::replica::verify(&t) == 0;
            if !found {
                lockstep::replica::flip_bit(&mut r, b);
            }
            found
        });
        assert!(seen, "no checksummed bit found");
        l.exchange_replica(r);
    });
    assert_eq!(got, want);
    assert_eq!(ld, digest);
    assert_eq!(fr.unwrap().1, digest);
    assert_eq!(health, Health::Protected);
    assert!(stats.repaired_objects >= 1, "{stats:?}");
    assert_eq!(stats.escalated, 0);
}

#[test]
fn injected_faults_never_commit_a_wrong_result() {
    let (want, digest) = golden(13, 120);
    for kind in FaultKind::ALL {
        // Each hang costs a full deadline: fewer of them keep the test short.
        let count = if kind == FaultKind::Hang { 8 } else { 120 };
        let (got, ld, fr, health, stats) = run_pair_with(cfg(), 13, 120, false, true, |l| {
            l.injector().arm(kind, count);
        });
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(got.len(), want.len(), "{kind}: {stats}");
        assert_eq!(first_diff, None, "{kind}: {stats}");
        assert_eq!(ld, digest, "{kind}");
        assert_eq!(
            health,
            Health::Protected,
            "{kind}: transient faults are recovered"
        );
        assert_eq!(fr.unwrap().1, digest, "{kind}: the follower's replica too");
        let detected = stats.injections[kind.index()][1];
        assert!(detected > 0, "{kind}: {stats}");
        if matches!(kind, FaultKind::Digest | FaultKind::Hang) {
            assert_eq!(detected, count as u64, "{kind}: {stats}");
        }
    }
}

#[test]
fn a_hung_follower_is_caught_by_the_deadline_and_escalated() {
    let (want, digest) = golden(14, 20);
    let (got, ld, fr, health, stats) = run_pair_with(cfg(), 14, 20, false, false, |_| {});
    assert!(fr.is_none());
    assert_eq!(got, want, "unprotected, but still correct");
    assert_eq!(ld, digest);
    assert_eq!(
        health,
        Health::Unprotected {
            suspect: Some(Role::Follower)
        }
    );
    assert!(health.to_string().contains("UNPROTECTED"));
    assert_eq!(stats.timeouts, 3, "K+1 missed deadlines");
    assert_eq!(stats.escalated, 1);
}

#[test]
fn a_follower_that_keeps_failing_is_escalated_and_told_so() {
    let (want, _) = golden(15, 40);
    let (got, _, fr, health, stats) = run_pair_with(cfg(), 15, 40, false, true, |l| {
        l.injector().arm_persistent(FaultKind::FollowerReg, 1);
    });
    assert_eq!(got, want);
    assert_eq!(fr.unwrap().0, FollowerExit::Escalated(None));
    assert_eq!(
        health,
        Health::Unprotected {
            suspect: Some(Role::Follower)
        },
        "the third execution names it"
    );
    assert_eq!(stats.escalated, 1);
}

#[test]
fn a_dead_coordinator_is_replaced_by_the_leader() {
    let pair = Pair::new(256);
    let c = Config {
        coordinator_grace: 2,
        deadline_cycles: 100_000_000,
        ..cfg()
    };
    let (want, _) = golden(16, 10);
    std::thread::scope(|s| {
        let f = s.spawn(|| {
            let h = Host(Instant::now());
            FollowerCore::<Model>::new(&pair, c, ModelState::new(), 0).follower_serve(&h, &h)
        });
        let h = Host(Instant::now());
        let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), false);
        let mut p = Prng::new(16);
        let mut got = Applied::new();
        for tx in 0..10 {
            let req = random_request(&mut p);
            l.leader_run(
                &req,
                &mut ModelEnv::new(16, tx),
                &h,
                &h,
                &mut |x: &[Effect]| got.push(x.to_vec()),
            );
        }
        assert!(l.coordinates_inline());
        assert_eq!(got, want);
        pair.shut_down();
        assert_eq!(f.join().unwrap(), FollowerExit::Shutdown);
    });
}

#[test]
fn three_cores_recover_injected_digest_and_effects_faults() {
    let (want, digest) = golden(17, 80);
    for kind in [
        FaultKind::Digest,
        FaultKind::Effects,
        FaultKind::FollowerReg,
    ] {
        let (got, ld, fr, health, stats) = run_pair_with(cfg(), 17, 80, true, true, |l| {
            l.injector().arm(kind, 80);
        });
        assert_eq!(got, want, "{kind}");
        assert_eq!(ld, digest);
        assert_eq!(fr.unwrap().1, digest);
        assert_eq!(health, Health::Protected);
        assert!(stats.injections[kind.index()][1] > 0, "{kind}: {stats}");
    }
}

#[test]
fn a_spare_follower_restores_protection() {
    let pair = Pair::new(256);
    let c = Config {
        deadline_cycles: 100_000_000,
        ..cfg()
    };
    let (want, digest) = golden(18, 40);
    std::thread::scope(|s| {
        let h = Host(Instant::now());
        let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), true);
        let mut p = Prng::new(18);
        let mut got = Applied::new();
        let mut spare = None;
        for tx in 0..40 {
            if tx == 20 {
                // No follower so far: the pair escalated. Start one on a spare core from a
                // copy of the leader's replica and resume protection.
                assert_eq!(
                    l.health(),
                    Health::Unprotected {
                        suspect: Some(Role::Follower)
                    }
                );
                let copy = l.replica().clone();
                let after = l.round();
                let pair = &pair;
                spare = Some(s.spawn(move || {
                    let h = Host(Instant::now());
                    let mut f = FollowerCore::<Model>::new(pair, c, copy, after);
                    let exit = f.follower_serve(&h, &h);
                    (exit, full_digest(f.replica()), f.stats())
                }));
                l.resume_protection(Role::Follower);
            }
            let req = random_request(&mut p);
            l.leader_run(
                &req,
                &mut ModelEnv::new(18, tx),
                &h,
                &h,
                &mut |x: &[Effect]| got.push(x.to_vec()),
            );
        }
        assert_eq!(got, want);
        assert_eq!(
            l.health(),
            Health::SpareInUse {
                retired: Role::Follower
            }
        );
        pair.shut_down();
        let (exit, fd, fs) = spare.unwrap().join().unwrap();
        assert_eq!(exit, FollowerExit::Shutdown);
        assert_eq!(fd, digest);
        assert_eq!(full_digest(l.replica()), digest);
        assert!(fs.rounds >= 20, "the spare served the last 20 transactions");
    });
}
