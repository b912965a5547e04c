//! Property tests of the single-core engine on the model machine: lockstep on vs off,
//! rollback exactness, injection detection, escalation.

use lockstep::campaign::run_campaign;
use lockstep::config::{Config, TxResult};
use lockstep::engine::Engine;
use lockstep::inject::{FaultKind, InjectionOutcome, Prng};
use lockstep::model::{
    ops, random_request, Effect, Model, ModelEnv, ModelRequest, ModelState, TickClock,
};
use lockstep::policy::Health;
use lockstep::replica::full_digest;
use lockstep::role::Role;

fn engine(lockstep: bool) -> Engine<Model> {
    let cfg = Config {
        lockstep,
        ..Config::default()
    };
    Engine::new(cfg, ModelState::new(), ModelState::new()).unwrap()
}

type Applied = Vec<Vec<Effect>>;

fn run(
    e: &mut Engine<Model>,
    seed: u64,
    tx: u64,
    req: &[u64],
    applied: &mut Applied,
) -> TxResult<lockstep::model::ModelError> {
    let clk = TickClock::new();
    let mut env = ModelEnv::new(seed, tx);
    e.run_local(req, &mut env, &clk, &mut |fx: &[Effect]| {
        applied.push(fx.to_vec())
    })
    .result
}

#[test]
fn a_lockstep_on_and_off_give_identical_results() {
    for seed in 1..6u64 {
        let mut on = engine(true);
        let mut off = engine(false);
        let mut p = Prng::new(seed);
        let (mut a1, mut a2) = (Applied::new(), Applied::new());
        for tx in 0..400 {
            let req = random_request(&mut p);
            let r1 = run(&mut on, seed, tx, &req, &mut a1);
            let r2 = run(&mut off, seed, tx, &req, &mut a2);
            assert_eq!(r1, r2, "seed {seed} tx {tx}");
            assert_eq!(a1, a2);
            let [l, f] = on.full_digests();
            assert_eq!(l, f, "replicas equal by construction");
            assert_eq!(l, full_digest(off.replica(Role::Leader)));
        }
        let s = on.stats();
        assert_eq!(s.detected, 0);
        assert_eq!(s.transactions, 400);
        assert_eq!(s.commits + s.failed, 400);
        assert_eq!(off.stats().single, 400);
        assert!(
            s.failed > 0,
            "the workload exercises agreed handler failures"
        );
        assert!(s.replica_bytes > 0);
    }
}

fn run_typed(
    e: &mut Engine<Model>,
    seed: u64,
    tx: u64,
    req: [u64; 3],
    applied: &mut Applied,
) -> TxResult<lockstep::model::ModelError> {
    let clk = TickClock::new();
    let mut env = ModelEnv::new(seed, tx);
    e.run_local_typed(
        &ModelRequest(req),
        &mut env,
        &clk,
        &mut |fx: &[Effect]| applied.push(fx.to_vec()),
    )
    .result
}

/// A request handed over typed gives what its words give: run once (the machine takes it
/// as it is), run in lockstep (the engine encodes it), and with a register fault injected
/// into it (encoded to be flipped: the same bit as in the words).
#[test]
fn a_typed_requests_run_as_their_words() {
    for (lockstep, fault) in [
        (false, None),
        (true, None),
        (false, Some(FaultKind::LeaderReg)),
    ] {
        let mut words = engine(lockstep);
        let mut typed = engine(lockstep);
        let mut p = Prng::new(11);
        let (mut a1, mut a2) = (Applied::new(), Applied::new());
        if let Some(k) = fault {
            words.injector().arm(k, 150);
            typed.injector().arm(k, 150);
        }
        for tx in 0..300 {
            let req = random_request(&mut p);
            let r1 = run(&mut words, 3, tx, &req, &mut a1);
            let r2 = run_typed(&mut typed, 3, tx, req, &mut a2);
            assert_eq!(r1, r2, "lockstep {lockstep} fault {fault:?} tx {tx}");
            assert_eq!(a1, a2);
            assert_eq!(
                full_digest(words.replica(Role::Leader)),
                full_digest(typed.replica(Role::Leader))
            );
        }
        let (s1, s2) = (words.stats(), typed.stats());
        assert_eq!(s1.transactions, 300);
        assert_eq!(
            (s1.single, s1.commits, s1.failed),
            (s2.single, s2.commits, s2.failed)
        );
        assert_eq!(s2.single, if lockstep { 0 } else { 300 });
        if fault.is_some() {
            let gold = {
                let mut g = engine(false);
                let mut p = Prng::new(11);
                let mut a = Applied::new();
                for tx in 0..300 {
                    run(&mut g, 3, tx, &random_request(&mut p), &mut a);
                }
                a
            };
            assert_ne!(a2, gold, "the flips changed what the typed run did");
        }
    }
}

#[test]
fn b_no_disagreeing_result_is_ever_committed() {
    for kind in FaultKind::ALL {
        let mut eng = engine(true);
        let mut gold = engine(false);
        let clk = TickClock::new();
        let mut p = Prng::new(kind.index() as u64 + 100);
        let rep = run_campaign(&mut eng, &mut gold, kind, 300, &clk, |tx| {
            (random_request(&mut p).to_vec(), ModelEnv::new(7, tx))
        })
        .unwrap();
        assert_eq!(rep.total(), 300);
        assert_eq!(rep.count(InjectionOutcome::SilentCorruption), 0, "{rep}");
        assert_eq!(rep.count(InjectionOutcome::Crash), 0, "{rep}");
    }
}

#[test]
fn c_rollback_restores_the_whole_replica_bit_for_bit() {
    let mut e = engine(true);
    let mut p = Prng::new(77);
    let mut applied = Applied::new();
    for tx in 0..300 {
        let req = random_request(&mut p);
        run(&mut e, 1, tx, &req, &mut applied);
    }
    // Forced disagreement (a digest flip) on every transaction: each is rolled back once.
    for tx in 300..500 {
        let req = random_request(&mut p);
        let before = e.full_digests();
        let mut shadow = engine(false);
        shadow.reset(e.replica(Role::Leader).clone()).unwrap();
        e.injector().arm(FaultKind::Digest, 1);
        let mut fx = Applied::new();
        let out = e.run_local(
            &req,
            &mut ModelEnv::new(1, tx),
            &TickClock::new(),
            &mut |x: &[Effect]| fx.push(x.to_vec()),
        );
        assert_eq!(out.attempts, 2, "one rollback, one re-execution");
        assert_eq!(out.detections, 1);
        let mut sfx = Applied::new();
        let sout = shadow.run_single(&req, &mut ModelEnv::new(1, tx), &mut |x: &[Effect]| {
            sfx.push(x.to_vec())
        });
        assert_eq!(out.result, sout.result);
        assert_eq!(
            fx, sfx,
            "effects applied exactly once, equal to one clean execution"
        );
        let after = e.full_digests();
        assert_eq!(after[0], after[1]);
        assert_eq!(after[0], full_digest(shadow.replica(Role::Leader)));
        if let TxResult::Failed(_) = out.result {
            assert_eq!(
                after, before,
                "a failed transaction leaves the replica untouched"
            );
        }
    }
    let s = e.stats();
    assert!(s.rollbacks >= 200);
    assert_eq!(s.recovered, 200);
    assert_eq!(s.recovery.count, 200);
    assert_eq!(
        s.recovery.hist.iter().sum::<u64>(),
        200,
        "every recovery in the histogram"
    );
}

#[test]
fn d_each_kind_is_detected_where_it_changes_an_output() {
    let expect_always = [
        FaultKind::Effects,
        FaultKind::Digest,
        FaultKind::ReplicaState,
        FaultKind::Hang,
    ];
    for kind in FaultKind::ALL {
        let mut eng = engine(true);
        let mut gold = engine(false);
        let clk = TickClock::new();
        let mut p = Prng::new(kind.index() as u64 + 900);
        // Warm up a populated state first so replica flips have targets.
        let mut w = Applied::new();
        for tx in 0..50 {
            let req = [0, tx % 8, 100 + tx];
            run(&mut eng, 3, tx, &req, &mut w);
            run(&mut gold, 3, tx, &req, &mut w);
        }
        let always = expect_always.contains(&kind);
        let rep = run_campaign(&mut eng, &mut gold, kind, 400, &clk, |tx| {
            let mut req = random_request(&mut p);
            if always && req[0] == ops::FATAL {
                // FATAL is the only op that can end with no effect to flip; every other
                // op emits at least one, so an effects flip always has a target.
                req[0] = ops::SUM;
            }
            (req.to_vec(), ModelEnv::new(3, tx + 50))
        })
        .unwrap();
        let detected = rep.count(InjectionOutcome::DetectedRecovered)
            + rep.count(InjectionOutcome::DetectedEscalated);
        assert!(detected > 0, "{rep}");
        assert_eq!(rep.count(InjectionOutcome::SilentCorruption), 0, "{rep}");
        if always {
            let masked = rep.count(InjectionOutcome::Masked);
            if kind == FaultKind::ReplicaState {
                // Masked only when the transaction overwrote the flipped bits before any
                // read: then the corruption no longer exists anywhere (checked: no SDC).
                assert!(masked < 400 / 4, "{rep}");
            } else {
                assert_eq!(masked, 0, "{rep}");
            }
        }
        println!("{rep}");
    }
}

#[test]
fn d_lockstep_off_lets_corruption_through() {
    // The same campaign with lockstep off shows what the engine prevents.
    let mut off = engine(false);
    let mut gold = engine(false);
    let mut p = Prng::new(5);
    let rep = run_campaign(
        &mut off,
        &mut gold,
        FaultKind::Effects,
        200,
        &TickClock::new(),
        |tx| (random_request(&mut p).to_vec(), ModelEnv::new(5, tx)),
    )
    .unwrap();
    assert!(rep.count(InjectionOutcome::SilentCorruption) > 100, "{rep}");
}

#[test]
fn e_a_hung_execution_is_a_timeout_not_a_wait() {
    let mut e = engine(true);
    e.injector().arm(FaultKind::Hang, 50);
    let mut p = Prng::new(8);
    let mut applied = Applied::new();
    for tx in 0..50 {
        let req = random_request(&mut p);
        run(&mut e, 2, tx, &req, &mut applied);
    }
    let s = e.stats();
    assert_eq!(s.timeouts, 50);
    assert_eq!(
        s.injected(FaultKind::Hang, InjectionOutcome::DetectedRecovered),
        50
    );
}

#[test]
fn f_a_core_that_keeps_failing_is_escalated() {
    for (spares, role, max_retries) in [
        (0, Role::Follower, 2),
        (1, Role::Follower, 2),
        (0, Role::Leader, 2),
        (1, Role::Leader, 2),
        (0, Role::Leader, 0),
        (1, Role::Follower, 0),
    ] {
        let cfg = Config {
            spares,
            max_retries,
            ..Config::default()
        };
        let mut e = Engine::<Model>::new(cfg, ModelState::new(), ModelState::new()).unwrap();
        let mut gold = engine(false);
        let core = if role == Role::Leader { 0 } else { 1 };
        // Register upsets on every execution of that core, on the first value it reads.
        e.injector().arm_persistent(FaultKind::FollowerReg, core);
        let mut p = Prng::new(4);
        let (mut a1, mut a2) = (Applied::new(), Applied::new());
        let mut escalations = 0;
        for tx in 0..200 {
            let req = random_request(&mut p);
            let clk = TickClock::new();
            let out = e.run_local(
                &req,
                &mut ModelEnv::new(9, tx),
                &clk,
                &mut |x: &[Effect]| a1.push(x.to_vec()),
            );
            run(&mut gold, 9, tx, &req, &mut a2);
            if let Some(s) = out.escalation {
                escalations += 1;
                assert_eq!(
                    s,
                    Some(role),
                    "the third execution identifies the failing core"
                );
            }
            assert_eq!(a1, a2, "never a wrong commit (tx {tx})");
        }
        assert_eq!(escalations, 1);
        assert!(
            !e.cores().contains(&core),
            "core {core} taken out of service"
        );
        match e.health() {
            Health::SpareInUse { retired } => {
                assert_eq!((spares, retired), (1, role));
                let [l, f] = e.full_digests();
                assert_eq!(l, f);
            }
            h @ Health::Unprotected { suspect } => {
                assert_eq!((spares, suspect), (0, Some(role)));
                assert!(h.to_string().contains("UNPROTECTED"));
            }
            h => panic!("unexpected health {h}"),
        }
        assert_eq!(e.stats().escalated, 1);
    }
}

#[test]
fn bad_input_gets_errors_not_panics() {
    assert!(Engine::<Model>::new(
        Config {
            input_capacity: 0,
            ..Config::default()
        },
        ModelState::new(),
        ModelState::new()
    )
    .is_err());
    let mut other = ModelState::new();
    let mut j = lockstep::Journal::new();
    other.globals.set(&mut j, (1, 1));
    assert_eq!(
        Engine::<Model>::new(Config::default(), ModelState::new(), other).err(),
        Some(lockstep::config::EngineError::ReplicasDiffer)
    );
    let mut e = Engine::<Model>::new(
        Config {
            input_capacity: 3,
            ..Config::default()
        },
        ModelState::new(),
        ModelState::new(),
    )
    .unwrap();
    let mut applied = Applied::new();
    let r = run(&mut e, 1, 0, &[0, 1, 2], &mut applied);
    assert_eq!(
        r,
        TxResult::Aborted(lockstep::config::EngineError::InputOverflow)
    );
    assert!(applied.is_empty());
    let r = run(&mut e, 1, 0, &[], &mut applied);
    assert!(matches!(r, TxResult::Committed | TxResult::Aborted(_)));
    let [l, f] = e.full_digests();
    assert_eq!(l, f);
}

/// A sink that takes the engine's buffer of a single execution (swapping in its own).
struct Taking(Vec<Effect>, Applied);

impl lockstep::EffectSink<Effect> for Taking {
    fn apply(&mut self, effects: &[Effect]) {
        self.1.push(effects.to_vec());
    }
    fn apply_buffer(&mut self, effects: &mut Vec<Effect>) {
        core::mem::swap(&mut self.0, effects);
        self.1.push(core::mem::take(&mut self.0));
    }
}

#[test]
fn a_sink_that_takes_single_executions_effects_gets_the_same_ones() {
    let mut p = Prng::new(23);
    let (mut taken, mut copied) = (engine(false), engine(false));
    let mut sink = Taking(Vec::with_capacity(8), Applied::new());
    let mut want = Applied::new();
    for tx in 0..300 {
        let req = random_request(&mut p);
        let clk = TickClock::new();
        let a = taken
            .run_local(&req, &mut ModelEnv::new(5, tx), &clk, &mut sink)
            .result;
        let b = run(&mut copied, 5, tx, &req, &mut want);
        assert_eq!(a, b, "tx {tx}");
        assert_eq!(sink.1, want, "tx {tx}");
    }
    assert!(want.iter().any(|e| !e.is_empty()));
    assert_eq!(
        full_digest(taken.replica(Role::Leader)),
        full_digest(copied.replica(Role::Leader))
    );
}
