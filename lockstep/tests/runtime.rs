//! Runtime control of a pair on real threads: `lockstep off` / `on` at transaction
//! boundaries (the follower re-synchronised bit for bit), and armed injections of every
//! detectable kind all detected and recovered while transactions keep committing.

mod common;
use common::Host;
use lockstep::config::{Config, ResyncError, TxResult};
use lockstep::coordinator::Coordinator;
use lockstep::follower::{FollowerCore, FollowerExit};
use lockstep::inject::{FaultKind, InjectionOutcome, Prng};
use lockstep::leader::LeaderCore;
use lockstep::mailbox::Pair;
use lockstep::model::{random_request, Effect, Model, ModelEnv, ModelState};
use lockstep::policy::Health;
use lockstep::replica::full_digest;
use lockstep::role::Role;
use std::sync::Mutex;
use std::time::Instant;

fn cfg() -> Config {
    common::cfg(2000)
}

type Applied = Vec<Vec<Effect>>;

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

/// A follower core that restarts from the handed-over replica whenever the leader asks,
/// as the bare-metal follower task does. Returns its last exit, final digest and resyncs.
fn follower_loop(pair: &Pair, c: Config, template: &Mutex<Option<ModelState>>) -> (u32, u32) {
    let h = Host(Instant::now());
    let mut f = FollowerCore::<Model>::new(pair, c, ModelState::new(), 0);
    let mut resyncs = 0;
    loop {
        match f.follower_serve(&h, &h) {
            FollowerExit::Resync(after) => {
                let copy = template.lock().unwrap().take().expect("handed over");
                f = FollowerCore::new(pair, c, copy, after);
                resyncs += 1;
                pair.ack_resync(after, full_digest(f.replica()));
            }
            FollowerExit::Shutdown => return (full_digest(f.replica()), resyncs),
            FollowerExit::Escalated(s) => panic!("escalated: {s:?}"),
            FollowerExit::Retired => panic!("retired"),
            FollowerExit::Promote(r) => panic!("promoted after round {r}"),
        }
    }
}

/// A spare core's thread: waits for the leader's resync request, starts from the replica
/// handed over in `template`, acknowledges with its digest and serves until it leaves;
/// returns how it left and its replica's final digest.
fn serve_as_spare(
    pair: &Pair,
    c: Config,
    template: &Mutex<Option<ModelState>>,
) -> (FollowerExit, u32) {
    let h = Host(Instant::now());
    let after = loop {
        if let Some(a) = pair.resync_request() {
            break a;
        }
        std::thread::yield_now();
    };
    let copy = template.lock().unwrap().take().expect("handed over");
    let mut f = FollowerCore::<Model>::new(pair, c, copy, after);
    pair.ack_resync(after, full_digest(f.replica()));
    let exit = f.follower_serve(&h, &h);
    (exit, full_digest(f.replica()))
}

#[test]
fn off_and_on_at_transaction_boundaries_resynchronise_the_follower() {
    let n = 150;
    let (want, digest) = golden(21, n);
    for coord in [false, true] {
        let pair = Pair::new(1024);
        let c = cfg();
        let template = Mutex::new(None);
        std::thread::scope(|s| {
            let f = s.spawn(|| follower_loop(&pair, c, &template));
            let k = coord.then(|| {
                s.spawn(|| {
                    let h = Host(Instant::now());
                    Coordinator::new(&pair, c.max_retries, c.deadline_cycles, c.wait)
                        .coordinator_serve(&h, &h)
                })
            });
            let h = Host(Instant::now());
            let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), !coord);
            let mut p = Prng::new(21);
            let mut got = Applied::new();
            for tx in 0..n {
                match tx {
                    40 | 100 => {
                        l.switch_off();
                        assert_eq!(l.health(), Health::Off);
                    }
                    70 | 120 => {
                        let d = l
                            .switch_on(&h, &h, &mut |r: &ModelState| {
                                *template.lock().unwrap() = Some(r.clone())
                            })
                            .expect("resync");
                        assert_eq!(d, full_digest(l.replica()));
                        assert_eq!(l.health(), Health::Protected);
                        // Already on: nothing to do.
                        assert!(l.switch_on(&h, &h, &mut |_: &ModelState| panic!()).is_ok());
                    }
                    _ => {}
                }
                let req = random_request(&mut p);
                let out = l.leader_run(
                    &req,
                    &mut ModelEnv::new(21, tx),
                    &h,
                    &h,
                    &mut |x: &[Effect]| got.push(x.to_vec()),
                );
                assert!(matches!(
                    out.result,
                    TxResult::Committed | TxResult::Failed(_)
                ));
            }
            pair.shut_down();
            let (fd, resyncs) = f.join().unwrap();
            if let Some(k) = k {
                k.join().unwrap();
            }
            assert_eq!(got, want, "on/off changes nothing a guest sees");
            assert_eq!(full_digest(l.replica()), digest);
            assert_eq!(fd, digest, "follower replica bit-identical at the end");
            assert_eq!(resyncs, 2);
            let st = l.stats();
            assert_eq!(st.resyncs, 2);
            assert_eq!(st.single, 50, "30 + 20 transactions ran once");
        });
    }
}

#[test]
fn switching_on_without_a_follower_fails_cleanly() {
    let pair = Pair::new(64);
    let c = Config {
        deadline_cycles: 2_000_000, // 2 ms
        ..cfg()
    };
    let h = Host(Instant::now());
    let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), true);
    l.switch_off();
    let mut handed = false;
    let r = l.switch_on(&h, &h, &mut |_: &ModelState| handed = true);
    assert_eq!(r, Err(ResyncError::NoFollower));
    assert!(handed);
    assert_eq!(l.health(), Health::Off);
    assert_eq!(pair.resync_request(), None, "the request was withdrawn");
}

#[test]
fn every_detectable_injection_is_detected_and_recovered() {
    // `effects`: leader flips before or after its digest (the late ones are caught by the
    // pre-apply check), follower flips always before; `digest` and `hang` always change
    // what the coordinator sees.
    for (kind, count) in [
        (FaultKind::Effects, 100),
        (FaultKind::Digest, 40),
        (FaultKind::Hang, 6),
    ] {
        let n = u64::from(count) + 30;
        let (want, digest) = golden(31, n);
        let pair = Pair::new(1024);
        let c = Config {
            // 300 ms: an injected hang costs one deadline, and a shorter one was missed by
            // fault-free rounds when the test threads were preempted on a loaded host.
            deadline_cycles: 300_000_000,
            ..cfg()
        };
        let template = Mutex::new(None);
        std::thread::scope(|s| {
            let f = s.spawn(|| follower_loop(&pair, c, &template));
            let h = Host(Instant::now());
            let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), true);
            l.injector().arm(kind, count);
            let mut p = Prng::new(31);
            let mut got = Applied::new();
            for tx in 0..n {
                let req = random_request(&mut p);
                l.leader_run(
                    &req,
                    &mut ModelEnv::new(31, tx),
                    &h,
                    &h,
                    &mut |x: &[Effect]| got.push(x.to_vec()),
                );
            }
            pair.shut_down();
            let (fd, _) = f.join().unwrap();
            let st = l.stats();
            assert_eq!(got, want, "{kind}");
            assert_eq!(fd, digest);
            assert_eq!(l.injector().remaining(), 0, "{kind}: all consumed");
            let recovered = st.injected(kind, InjectionOutcome::DetectedRecovered);
            let all: u64 = st.injections[kind.index()].iter().sum();
            assert_eq!(all, u64::from(count), "{kind}: {st}");
            assert_eq!(recovered, u64::from(count), "{kind}: {st}");
            assert!(st.detected >= u64::from(count), "{kind}: {st}");
            assert!(st.recovered >= u64::from(count), "{kind}: {st}");
            assert_eq!(
                st.recovery.count, st.recovered,
                "{kind}: every recovery timed"
            );
            assert_eq!(
                st.recovery.hist.iter().sum::<u64>(),
                st.recovered,
                "{kind}: every recovery in the histogram"
            );
        });
    }
}

#[test]
fn a_spare_replaces_a_follower_that_fails_for_good() {
    // The follower core hangs in every transaction from tx 20 on: the coordinator's deadline
    // catches it each time, the retries run out, the pair escalates with the follower as the
    // suspect, and a spare core (here a thread started then) takes over with a bit-identical
    // copy of the leader's replica: protected again, nothing a guest sees changes.
    let n = 60;
    let (want, digest) = golden(41, n);
    let pair = Pair::new(1024);
    let c = Config {
        deadline_cycles: 200_000_000, // 200 ms: fault-free rounds must not miss it on a busy host
        ..cfg()
    };
    let template = Mutex::new(None::<ModelState>);
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            let h = Host(Instant::now());
            let mut f = FollowerCore::<Model>::new(&pair, c, ModelState::new(), 0);
            f.follower_serve(&h, &h)
        });
        let h = Host(Instant::now());
        let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), true);
        let mut p = Prng::new(41);
        let mut got = Applied::new();
        let mut spare = None;
        for tx in 0..n {
            if tx == 20 {
                l.fail_core(Role::Follower);
            }
            let req = random_request(&mut p);
            let out = l.leader_run(
                &req,
                &mut ModelEnv::new(41, tx),
                &h,
                &h,
                &mut |x: &[Effect]| got.push(x.to_vec()),
            );
            if out.escalation == Some(Some(Role::Follower)) {
                assert_eq!(tx, 20, "escalated on the first failing transaction");
                assert_eq!(
                    l.health(),
                    Health::Unprotected {
                        suspect: Some(Role::Follower)
                    }
                );
                pair.retire_follower();
                let t = &template;
                let pr = &pair;
                spare = Some(s.spawn(move || serve_as_spare(pr, c, t)));
                let d = l
                    .replace_follower(&h, &h, &mut |r: &ModelState| {
                        *template.lock().unwrap() = Some(r.clone())
                    })
                    .expect("spare in service");
                assert_eq!(d, full_digest(l.replica()));
                assert_eq!(
                    l.health(),
                    Health::SpareInUse {
                        retired: Role::Follower
                    }
                );
                // Only once.
                assert_eq!(
                    l.replace_follower(&h, &h, &mut |_: &ModelState| panic!()),
                    Err(ResyncError::NotReplaceable)
                );
            }
        }
        pair.shut_down();
        // The failed core leaves on whatever it sees first: the escalation (if it looks
        // before later rounds' decisions replace it), its retirement, or the shutdown (seen
        // once in `make test` on a loaded host). It never serves again: the spare's replica
        // and everything the guest saw are checked below.
        let old = first.join().unwrap();
        assert!(
            matches!(
                old,
                FollowerExit::Escalated(Some(Role::Follower))
                    | FollowerExit::Retired
                    | FollowerExit::Shutdown
            ),
            "{old:?}"
        );
        let (exit, fd) = spare.expect("a spare was started").join().unwrap();
        assert_eq!(exit, FollowerExit::Shutdown);
        assert_eq!(got, want, "nothing a guest sees changes");
        assert_eq!(full_digest(l.replica()), digest);
        assert_eq!(
            fd, digest,
            "the spare's replica is bit-identical at the end"
        );
        let st = l.stats();
        assert_eq!(st.escalated, 1, "{st}");
        assert_eq!(
            st.single, 1,
            "only the escalated transaction ran once: {st}"
        );
        assert_eq!(st.resyncs, 1, "{st}");
    });
}

#[test]
fn a_retired_follower_stops_serving() {
    let pair = Pair::new(64);
    let c = cfg();
    let h = Host(Instant::now());
    let mut f = FollowerCore::<Model>::new(&pair, c, ModelState::new(), 0);
    pair.retire_follower();
    assert_eq!(f.follower_serve(&h, &h), FollowerExit::Retired);
    // A follower created afterwards serves this generation.
    let mut g = FollowerCore::<Model>::new(&pair, c, ModelState::new(), 0);
    pair.shut_down();
    assert_eq!(g.follower_serve(&h, &h), FollowerExit::Shutdown);
}

/// The follower core of `a_suspect_leader_steps_down_and_the_follower_takes_over`: serves
/// until the old leader steps down, then leads from its own replica — the escalated
/// transaction `from` again, then the rest — with a spare brought in from a copy of its
/// replica if `spare` (a thread started then), else unprotected. Returns the effects it
/// applied, its leader core and the spare's exit and final digest.
fn promoted_follower<'p>(
    s: &'p std::thread::Scope<'p, '_>,
    pair: &'p Pair,
    c: Config,
    (seed, from, n): (u64, u64, u64),
    spare: bool,
) -> (Applied, LeaderCore<'p, Model>, Option<(FollowerExit, u32)>) {
    let h = Host(Instant::now());
    let mut f = FollowerCore::<Model>::new(pair, c, ModelState::new(), 0);
    let after = loop {
        match f.follower_serve(&h, &h) {
            FollowerExit::Promote(after) => break after,
            // The leader was the suspect: stay, it steps down next.
            FollowerExit::Escalated(Some(Role::Leader)) => continue,
            other => panic!("follower left with {other:?}"),
        }
    };
    assert_eq!(after, f.last_round(), "promoted after the escalated round");
    let stats = lockstep::stats::Stats {
        transactions: 1,
        ..Default::default()
    };
    let mut l = LeaderCore::<Model>::promoted(pair, c, f.into_replica(), after, true, stats);
    assert_eq!(
        l.health(),
        Health::Unprotected {
            suspect: Some(Role::Leader)
        }
    );
    assert_eq!(pair.promotion_request(), None, "the request is consumed");
    let mut spare_thread = None;
    if spare {
        let template = std::sync::Arc::new(Mutex::new(None::<ModelState>));
        let t = template.clone();
        spare_thread = Some(s.spawn(move || serve_as_spare(pair, c, &t)));
        let d = l
            .replace_follower(&h, &h, &mut |r: &ModelState| {
                *template.lock().unwrap() = Some(r.clone())
            })
            .expect("spare in service");
        assert_eq!(d, full_digest(l.replica()));
        assert_eq!(
            l.health(),
            Health::SpareInUse {
                retired: Role::Leader
            }
        );
    }
    let mut p = Prng::new(seed);
    let mut got = Applied::new();
    for tx in 0..n {
        let req = random_request(&mut p);
        if tx < from {
            continue;
        }
        let out = l.leader_run(
            &req,
            &mut ModelEnv::new(seed, tx),
            &h,
            &h,
            &mut |x: &[Effect]| got.push(x.to_vec()),
        );
        assert!(!matches!(out.result, TxResult::Aborted(_)), "tx {tx}");
        assert_eq!(out.escalation, None, "tx {tx}");
    }
    pair.shut_down();
    let spare = spare_thread.map(|t| t.join().unwrap());
    (got, l, spare)
}

/// Leader promotion with and without a spare: the leader core hangs in every transaction
/// from tx 20 on, the deadline catches it, the pair escalates with the leader as the
/// suspect; the leader steps down without finishing the transaction, the follower becomes
/// the leader from its own replica and runs it once, then the rest. The guest-visible
/// effects equal a fault-free run: nothing lost, nothing duplicated.
fn leader_promotion(spare: bool) {
    let (seed, n, fail_at) = (43, 50, 20);
    let (want, digest) = golden(seed, n);
    let pair = Pair::new(1024);
    let c = Config {
        deadline_cycles: 200_000_000, // 200 ms: fault-free rounds must not miss it on a busy host
        ..cfg()
    };
    std::thread::scope(|s| {
        let pr = &pair;
        let new_leader = s.spawn(move || promoted_follower(s, pr, c, (seed, fail_at, n), spare));
        let h = Host(Instant::now());
        let mut l = LeaderCore::<Model>::new(&pair, c, ModelState::new(), true);
        l.set_promotable(true);
        let mut p = Prng::new(seed);
        let mut got = Applied::new();
        let mut before = 0;
        for tx in 0..=fail_at {
            if tx == fail_at {
                l.fail_core(Role::Leader);
                before = got.len();
            }
            let req = random_request(&mut p);
            let out = l.leader_run(
                &req,
                &mut ModelEnv::new(seed, tx),
                &h,
                &h,
                &mut |x: &[Effect]| got.push(x.to_vec()),
            );
            if tx < fail_at {
                assert!(!matches!(out.result, TxResult::Aborted(_)), "tx {tx}");
                continue;
            }
            assert_eq!(out.escalation, Some(Some(Role::Leader)));
            assert_eq!(
                out.result,
                TxResult::Aborted(lockstep::config::EngineError::LeaderRetired)
            );
            assert!(l.is_stepping_down());
        }
        assert_eq!(got.len(), before, "the escalated tx applied nothing");
        l.step_down();
        // Out of service for good: nothing runs on the old leader any more.
        let req = random_request(&mut Prng::new(1));
        let again = l.leader_run(
            &req,
            &mut ModelEnv::new(1, 0),
            &h,
            &h,
            &mut |_: &[Effect]| panic!("a retired leader applied effects"),
        );
        assert_eq!(
            again.result,
            TxResult::Aborted(lockstep::config::EngineError::LeaderRetired)
        );
        let (rest, nl, spare_end) = new_leader.join().unwrap();
        got.extend(rest);
        assert_eq!(got, want, "nothing a guest sees is lost or duplicated");
        assert_eq!(full_digest(nl.replica()), digest);
        let st = nl.stats();
        assert_eq!(st.promotions, 1, "{st}");
        match spare_end {
            Some((exit, fd)) => {
                assert_eq!(exit, FollowerExit::Shutdown);
                assert_eq!(fd, digest, "the spare's replica is bit-identical");
                assert_eq!(st.single, 0, "protected again: {st}");
                assert_eq!(st.resyncs, 1, "{st}");
            }
            None => {
                assert_eq!(st.single, n - fail_at, "unprotected: {st}");
                assert!(nl.health().to_string().contains("UNPROTECTED"));
            }
        }
    });
}

#[test]
fn a_suspect_leader_steps_down_and_the_follower_takes_over_with_a_spare() {
    leader_promotion(true);
}

#[test]
fn a_suspect_leader_steps_down_and_the_follower_takes_over_unprotected() {
    leader_promotion(false);
}
