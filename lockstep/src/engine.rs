//! The engine for one core: `run_local` executes the leader's and the follower's replica
//! one after the other on the calling core (early boot, a single CPU, the injection
//! campaign), `run_single` executes once (lockstep off, or unprotected after escalation).
//! Both run the same handler through the same [`execute`] with the same effects.
//!
//! On one core the two executions cannot run concurrently, so a `hang` injection is modelled
//! as an execution that posts nothing (the verdict a missed deadline produces); real hangs
//! and deadlines are exercised by the multi-core roles in [`leader`](crate::leader) and
//! [`follower`](crate::follower). Replica repair here may copy objects across replicas
//! (both are at hand); the multi-core roles only self-correct from per-object checksums.

use crate::config::{Config, EffectSink, EngineError, Outcome, TxResult};
use crate::coordinator::{judge, Verdict};
use crate::digest::TxDigest;
use crate::effects::Effects;
use crate::inject::{Fault, FaultKind, InjectionOutcome, Injector};
use crate::input::{
    record_request, replay_request, Env, Input, InputLog, LogReader, MemoEnv, WordSource,
};
use crate::journal::Journal;
use crate::machine::{execute, execute_once, result_digest, ExecReport, ExecStatus, Machine};
use crate::mailbox::{Decision, Post};
use crate::policy::{Health, RetryPolicy};
use crate::replica;
use crate::role::{Clock, Role};
use crate::stats::Stats;
use alloc::vec::Vec;
use core::any::Any;

/// One execution's report, or `None` if that core posted nothing (hung).
type Reported<M> = Option<ExecReport<<M as Machine>::Error>>;

/// Result of a scrub of both replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScrubReport {
    /// Objects failing their checksum in the leader's replica.
    pub leader_bad: usize,
    /// Objects failing their checksum in the follower's replica.
    pub follower_bad: usize,
    /// Objects repaired.
    pub repaired: usize,
    /// Whole-replica digests equal after repair.
    pub equal: bool,
}

/// One pair of replicas driven from one core.
pub struct Engine<M: Machine> {
    cfg: Config,
    replicas: [M::State; 2],
    journals: [Journal; 2],
    effects: [Effects<M::Effect>; 2],
    log: InputLog,
    first_log: InputLog,
    req: [Vec<u64>; 2],
    /// The words of a typed request that had to be encoded ([`Engine::run_local_typed`]).
    typed_words: Vec<u64>,
    epoch: u64,
    policy: RetryPolicy,
    health: Health,
    cores: [u32; 2],
    next_core: u32,
    spares_left: u32,
    stats: Stats,
    injector: Injector,
    /// Where each replica's incremental scrub stands.
    scrub_at: [replica::ScrubCursor; 2],
}

pub(crate) fn idx(r: Role) -> usize {
    (r == Role::Follower) as usize
}

pub(crate) fn broken<Err>(status: ExecStatus) -> ExecReport<Err> {
    ExecReport {
        digest: TxDigest::default(),
        status,
        error: None,
    }
}

fn post_of<Err>(r: &Option<ExecReport<Err>>) -> Option<Post> {
    r.as_ref().map(|r| Post {
        digest: r.digest,
        status: r.status,
    })
}

/// Applies a register fault to one core's copy of its inputs: an index below the request
/// length flips a request word (a guest register), a higher one a value read later.
pub(crate) fn faulty_request<'a>(
    buf: &'a mut Vec<u64>,
    request: &'a [u64],
    fault: Option<&Fault>,
) -> (&'a [u64], Option<(u32, u32)>) {
    match fault {
        Some(f) if (f.value_index as usize) < request.len() => {
            buf.clear();
            buf.extend_from_slice(request);
            buf[f.value_index as usize] ^= 1 << (f.bit % 64);
            (&buf[..], None)
        }
        Some(f) => (
            request,
            Some((f.value_index - request.len() as u32, (f.bit % 64) as u32)),
        ),
        None => (request, None),
    }
}

/// A request the embedder hands the engine in its own type, encoded to words only where
/// words are needed. A single execution (lockstep off, or unprotected) gives it to the
/// machine as it is ([`Input::typed`]): the words would only be made to be decoded again.
/// A paired execution logs and compares the words; a register fault flips one of them.
pub trait TypedRequest: Any {
    /// Appends the request's words (what [`Engine::run_local`] takes) to `out`.
    fn encode(&self, out: &mut Vec<u64>);
}

/// A request as the single-execution path takes it.
#[derive(Clone, Copy)]
enum Req<'a> {
    Words(&'a [u64]),
    Typed(&'a dyn TypedRequest),
}

impl<M: Machine> Engine<M> {
    /// An engine over two equal replicas built by the embedder (each may live in its own
    /// heap). Physical cores are numbered 0 (leader), 1 (follower), 2.. (spares).
    pub fn new(cfg: Config, leader: M::State, follower: M::State) -> Result<Self, EngineError> {
        if cfg.input_capacity == 0 {
            return Err(EngineError::BadConfig);
        }
        if replica::full_digest(&leader) != replica::full_digest(&follower) {
            return Err(EngineError::ReplicasDiffer);
        }
        Ok(Self {
            health: if cfg.lockstep {
                Health::Protected
            } else {
                Health::Off
            },
            replicas: [leader, follower],
            journals: [Journal::new(), Journal::new()],
            effects: [Effects::new(), Effects::new()],
            log: InputLog::new(cfg.input_capacity),
            first_log: InputLog::new(cfg.input_capacity),
            req: [Vec::new(), Vec::new()],
            typed_words: Vec::new(),
            epoch: 1,
            policy: RetryPolicy::new(cfg.max_retries),
            cores: [0, 1],
            next_core: 2,
            spares_left: cfg.spares,
            stats: Stats::default(),
            injector: Injector::new(0x5EED),
            scrub_at: Default::default(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Protection state (print it: it is loud when unprotected).
    pub fn health(&self) -> Health {
        self.health
    }

    /// Physical cores currently serving as leader and follower.
    pub fn cores(&self) -> [u32; 2] {
        self.cores
    }

    /// Statistics, with the replica memory measured now.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.replica_bytes = (replica::memory_bytes(&self.replicas[0])
            + replica::memory_bytes(&self.replicas[1])) as u64;
        s
    }

    /// The fault injector (`xl lockstep inject KIND COUNT` arms it).
    pub fn injector(&mut self) -> &mut Injector {
        &mut self.injector
    }

    /// The replica of `role` (the coordinator has none: the leader's is returned).
    pub fn replica(&self, role: Role) -> &M::State {
        &self.replicas[idx(role)]
    }

    /// Whole-replica digests (leader, follower).
    pub fn full_digests(&self) -> [u32; 2] {
        [
            replica::full_digest(&self.replicas[0]),
            replica::full_digest(&self.replicas[1]),
        ]
    }

    /// Turns lockstep on or off. Turning it on copies the leader's replica to the follower
    /// (the follower may be stale after single executions) and restores protection.
    pub fn set_lockstep(&mut self, on: bool) {
        self.cfg.lockstep = on;
        if on {
            if !self.health.is_protected() {
                self.replicas[1] = self.replicas[0].clone();
                replica::forget(&mut self.replicas[1]);
                if self.cores[0] == self.cores[1] {
                    self.cores[1] = self.next_core;
                    self.next_core += 1;
                }
                self.health = Health::Protected;
            }
        } else {
            self.health = Health::Off;
        }
    }

    /// Replaces both replicas with copies of `state` (e.g. after a repair or to restart a
    /// campaign) and restores the configured protection.
    pub fn reset(&mut self, state: M::State) -> Result<(), EngineError> {
        let mut a = state;
        replica::forget(&mut a);
        if replica::verify(&a) != 0 {
            return Err(EngineError::ReplicasDiffer);
        }
        self.replicas = [a.clone(), a];
        self.policy.reset();
        self.health = Health::Off;
        self.set_lockstep(self.cfg.lockstep);
        Ok(())
    }

    /// Verifies both replicas' per-object checksums, corrects single-bit errors from the
    /// checksums, repairs what remains from the other replica, and compares the digests.
    pub fn scrub(&mut self) -> ScrubReport {
        let [a, b] = &mut self.replicas;
        let leader_bad = replica::verify(a);
        let follower_bad = replica::verify(b);
        let mut repaired = 0;
        if leader_bad > 0 {
            repaired += replica::self_repair(a);
        }
        if follower_bad > 0 {
            repaired += replica::self_repair(b);
        }
        if self.health.is_protected() {
            if replica::verify(a) > 0 {
                repaired += replica::repair(a, b);
            }
            if replica::verify(b) > 0 {
                repaired += replica::repair(b, a);
            }
        }
        self.stats.repaired_objects += repaired as u64;
        ScrubReport {
            leader_bad,
            follower_bad,
            repaired,
            equal: replica::full_digest(a) == replica::full_digest(b),
        }
    }

    fn rollback_both(&mut self, epoch: u64) {
        for r in &mut self.replicas {
            replica::rollback(r, epoch);
        }
        self.stats.rollbacks += 1;
    }

    /// [`Engine::run_local`] for a request held typed: a single execution never encodes it
    /// (unless a register fault is injected into it); a paired one runs on its words.
    pub fn run_local_typed(
        &mut self,
        request: &dyn TypedRequest,
        env: &mut dyn Env,
        clock: &dyn Clock,
        sink: &mut dyn EffectSink<M::Effect>,
    ) -> Outcome<M::Error> {
        if !self.health.is_protected() {
            return self.run_single_req(Req::Typed(request), env, sink);
        }
        let mut words = core::mem::take(&mut self.typed_words);
        words.clear();
        request.encode(&mut words);
        let out = self.run_local(&words, env, clock, sink);
        self.typed_words = words;
        out
    }

    /// Runs one transaction: twice (lockstep) while protected, once otherwise.
    pub fn run_local(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        clock: &dyn Clock,
        sink: &mut dyn EffectSink<M::Effect>,
    ) -> Outcome<M::Error> {
        if !self.health.is_protected() {
            return self.run_single(request, env, sink);
        }
        self.stats.transactions += 1;
        let oneshot = self.injector.take_oneshot();
        let mut out = Outcome::new(TxResult::Committed);
        out.injected = oneshot.map(|f| f.kind);
        let mut attempt = 0;
        loop {
            attempt += 1;
            out.attempts = attempt;
            let fault = if attempt == 1 { oneshot } else { None }
                .or_else(|| self.injector.persistent_for(self.cores[0], self.cores[1]));
            self.epoch += 1;
            let epoch = self.epoch;
            if attempt == 2 {
                // Keep the first attempt's log (the inputs as captured) for re-executions.
                core::mem::swap(&mut self.log, &mut self.first_log);
            }
            let (l, f) = if attempt == 1 {
                self.execute_pair(request, env, epoch, fault.as_ref())
            } else {
                let first = core::mem::replace(&mut self.first_log, InputLog::new(0));
                let mut memo = MemoEnv::new(first.words(), env);
                let r = self.execute_pair(request, &mut memo, epoch, fault.as_ref());
                self.first_log = first;
                r
            };
            let mut verdict = judge(post_of(&l), post_of(&f));
            if verdict == Verdict::Agree && !self.effects_intact(&l, &f) {
                self.stats.effects_rejected += 1;
                verdict = Verdict::Mismatch {
                    writes: false,
                    effects: true,
                };
            }
            self.count_verdict(&verdict, &mut out);
            match self.policy.on_verdict(&verdict, clock.now()) {
                Decision::Commit => {
                    if let Some(lat) = self.policy.take_latency() {
                        self.stats.recovery.record(lat, &self.cfg.latency_bounds);
                        self.stats.recovered += 1;
                    }
                    let err = l.and_then(|r| r.error);
                    out.result = self.finish(err, epoch, sink);
                    break;
                }
                Decision::Retry => {
                    self.rollback_both(epoch);
                    self.stats.retries += 1;
                    if self.cfg.scrub_on_retry && attempt >= 2 {
                        // As on a pair (`Config::scrub_on_retry`): only a fault that survived
                        // one re-execution pays for a whole-replica scrub (100 ms under TCG
                        // with dom0's replica: it was every recovery's latency here).
                        out.repaired += self.scrub().repaired;
                    }
                }
                Decision::Abort => {
                    self.rollback_both(epoch);
                    self.stats.aborted += 1;
                    out.result = TxResult::Aborted(EngineError::InputOverflow);
                    break;
                }
                Decision::Escalate(s) => {
                    self.rollback_both(epoch);
                    self.stats.escalated += 1;
                    out.repaired += self.scrub().repaired;
                    let suspect = s.or_else(|| self.vote(epoch, &l, &f));
                    out.escalation = Some(suspect);
                    self.retire(suspect);
                    if attempt == 1 {
                        self.first_log.clone_from(&self.log);
                    }
                    if !self.health.is_protected() {
                        // Finish the transaction once, with the inputs as first captured.
                        let fault = self.injector.persistent_for(self.cores[0], u32::MAX);
                        self.stats.single += 1;
                        let first = core::mem::replace(&mut self.first_log, InputLog::new(0));
                        let mut memo = MemoEnv::new(first.words(), env);
                        out.result =
                            self.single_inner(Req::Words(request), &mut memo, sink, fault.as_ref());
                        self.first_log = first;
                        break;
                    }
                }
            }
        }
        if out.injected == Some(FaultKind::ReplicaState) && out.detections == 0 {
            // A latent flip the transaction did not read: the follow-up scrub finds it.
            let s = self.scrub();
            if s.leader_bad + s.follower_bad > 0 {
                out.detections += 1;
                self.stats.detected += 1;
                out.repaired += s.repaired;
            }
        } else if self.cfg.scrub_interval > 0
            && self
                .stats
                .transactions
                .is_multiple_of(self.cfg.scrub_interval)
        {
            out.repaired += self.scrub().repaired;
        }
        if self.cfg.scrub_step > 0 {
            let [a, b] = &mut self.replicas;
            let n = replica::scrub_step(a, &mut self.scrub_at[0], self.cfg.scrub_step)
                + replica::scrub_step(b, &mut self.scrub_at[1], self.cfg.scrub_step);
            self.stats.repaired_objects += n as u64;
            out.repaired += n;
        }
        if let Some(kind) = out.injected {
            let crashed = matches!(out.result, TxResult::Aborted(_));
            let c = InjectionOutcome::classify(
                out.detections > 0,
                out.escalation.is_some(),
                crashed,
                None,
            );
            out.classification = Some(c);
            self.stats.record_injection(kind, c);
        }
        out
    }

    /// Re-checks both effects buffers against their posted digests right before commit (a
    /// flip after digesting would otherwise be applied, or hide in the follower).
    fn effects_intact(
        &self,
        l: &Option<ExecReport<M::Error>>,
        f: &Option<ExecReport<M::Error>>,
    ) -> bool {
        [l, f].iter().enumerate().all(|(i, r)| {
            r.as_ref().is_none_or(|r| {
                result_digest(r.error.as_ref(), &self.effects[i]) == r.digest.effects
            })
        })
    }

    fn count_verdict(&mut self, v: &Verdict, out: &mut Outcome<M::Error>) {
        if !v.is_detection() {
            return;
        }
        out.detections += 1;
        self.stats.detected += 1;
        match v {
            Verdict::Mismatch { .. } => self.stats.mismatches += 1,
            Verdict::Timeout(_) => self.stats.timeouts += 1,
            _ => self.stats.broken += 1,
        }
    }

    /// Commits (or, for an agreed handler failure, rolls back) the current epoch.
    fn finish(
        &mut self,
        err: Option<M::Error>,
        epoch: u64,
        sink: &mut dyn EffectSink<M::Effect>,
    ) -> TxResult<M::Error> {
        match err {
            Some(e) => {
                self.rollback_both(epoch);
                self.stats.failed += 1;
                TxResult::Failed(e)
            }
            None => {
                sink.apply(self.effects[0].as_slice());
                self.stats.commits += 1;
                TxResult::Committed
            }
        }
    }

    /// Leader then follower execution of one attempt, with `fault` applied.
    fn execute_pair(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        epoch: u64,
        fault: Option<&Fault>,
    ) -> (Reported<M>, Reported<M>) {
        let hit = |k: FaultKind, r: Role| fault.filter(|f| f.kind == k && f.target == r);
        for r in [Role::Leader, Role::Follower] {
            if let Some(f) = hit(FaultKind::ReplicaState, r) {
                replica::flip_bit(&mut self.replicas[idx(r)], f.bit);
            }
        }
        let Self {
            replicas,
            journals,
            effects,
            log,
            req,
            cfg,
            ..
        } = self;
        log.clear();
        let lrep = if hit(FaultKind::Hang, Role::Leader).is_some() {
            None
        } else if record_request(log, request).is_err() {
            Some(broken(ExecStatus::Overflow))
        } else {
            let lf = fault.filter(|f| f.kind == FaultKind::LeaderReg);
            let (own, later) = faulty_request(&mut req[0], request, lf);
            let mut input = Input::record(own, env, log);
            if let Some((i, b)) = later {
                input.inject_flip(i, b);
            }
            Some(execute::<M>(
                &mut replicas[0],
                &mut journals[0],
                epoch,
                &mut effects[0],
                &mut input,
            ))
        };
        let frep = if hit(FaultKind::Hang, Role::Follower).is_some() {
            None
        } else {
            let flipped;
            let mut words: &[u64] = log.words();
            if let Some(f) = hit(FaultKind::Mailbox, Role::Follower) {
                let mut copy = log.clone();
                copy.flip_bit(f.bit);
                flipped = copy;
                words = flipped.words();
            }
            let mut rd = LogReader::from_words(words);
            Some(replay_exec::<M>(
                &mut rd,
                &mut req[1],
                cfg.input_capacity,
                fault.filter(|f| f.kind == FaultKind::FollowerReg),
                &mut replicas[1],
                &mut journals[1],
                epoch,
                &mut effects[1],
            ))
        };
        let mut reps = [lrep, frep];
        for r in [Role::Leader, Role::Follower] {
            let Some(rep) = reps[idx(r)].as_mut() else {
                continue;
            };
            if let Some(f) = hit(FaultKind::Effects, r) {
                self.effects[idx(r)].flip_bit(f.bit);
                if !f.late {
                    rep.digest.effects = result_digest(rep.error.as_ref(), &self.effects[idx(r)]);
                }
            }
            let in_flight = r == Role::Leader && hit(FaultKind::Mailbox, r).is_some();
            if hit(FaultKind::Digest, r).is_some() || in_flight {
                let bit = fault.map_or(0, |f| f.bit);
                rep.digest = TxDigest::unpack(rep.digest.pack() ^ (1 << (bit % 64)));
            }
        }
        let [l, f] = reps;
        (l, f)
    }

    /// Third execution on a fresh copy of the (rolled back) leader replica, replaying the
    /// leader's log: the execution it agrees with wins, the other core is the suspect.
    fn vote(
        &mut self,
        epoch: u64,
        l: &Option<ExecReport<M::Error>>,
        f: &Option<ExecReport<M::Error>>,
    ) -> Option<Role> {
        let (l, f) = (l.as_ref()?, f.as_ref()?);
        let mut fresh = self.replicas[0].clone();
        let mut j = Journal::new();
        let mut e = Effects::new();
        let mut buf = Vec::new();
        let mut rd = self.log.reader();
        let third = replay_exec::<M>(
            &mut rd,
            &mut buf,
            self.cfg.input_capacity,
            None,
            &mut fresh,
            &mut j,
            epoch,
            &mut e,
        );
        let same = |a: &ExecReport<M::Error>| a.status == third.status && a.digest == third.digest;
        match (same(l), same(f)) {
            (true, false) => Some(Role::Follower),
            (false, true) => Some(Role::Leader),
            _ => None,
        }
    }

    /// Takes `suspect` out of service: a spare replaces it if one is left, otherwise the
    /// pair continues unprotected on the remaining core.
    fn retire(&mut self, suspect: Option<Role>) {
        self.health = Health::after_escalation(suspect, self.spares_left);
        match suspect {
            Some(r) if self.spares_left > 0 => {
                self.spares_left -= 1;
                self.cores[idx(r)] = self.next_core;
                self.next_core += 1;
                let good = self.replicas[1 - idx(r)].clone();
                self.replicas[idx(r)] = good;
            }
            Some(Role::Leader) => {
                self.cores[0] = self.cores[1];
                self.replicas[0] = self.replicas[1].clone();
            }
            _ => self.cores[1] = self.cores[0],
        }
        self.policy.reset();
    }

    /// Runs one transaction once, on the leader's replica (lockstep off or unprotected).
    pub fn run_single(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<M::Effect>,
    ) -> Outcome<M::Error> {
        self.run_single_req(Req::Words(request), env, sink)
    }

    fn run_single_req(
        &mut self,
        request: Req<'_>,
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<M::Effect>,
    ) -> Outcome<M::Error> {
        self.stats.transactions += 1;
        self.stats.single += 1;
        let fault = self
            .injector
            .take_oneshot()
            .or_else(|| self.injector.persistent_for(self.cores[0], u32::MAX));
        let mut out = Outcome::new(TxResult::Committed);
        out.injected = fault.map(|f| f.kind);
        out.result = self.single_inner(request, env, sink, fault.as_ref());
        if let Some(kind) = out.injected {
            // Nothing compares a single execution: an injected fault is never detected.
            let c = InjectionOutcome::classify(false, false, false, None);
            out.classification = Some(c);
            self.stats.record_injection(kind, c);
        }
        out
    }

    /// One execution on the leader's replica; a fault that has a meaning for a lone core
    /// (register, replica state, effects) is applied, the others cannot happen.
    fn single_inner(
        &mut self,
        request: Req<'_>,
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<M::Effect>,
        fault: Option<&Fault>,
    ) -> TxResult<M::Error> {
        self.epoch += 1;
        let epoch = self.epoch;
        let hit = |k: FaultKind| fault.filter(|f| f.kind == k);
        if let Some(f) = hit(FaultKind::ReplicaState) {
            replica::flip_bit(&mut self.replicas[0], f.bit);
        }
        let reg_fault = hit(FaultKind::LeaderReg);
        let encoded;
        let mut input = match (request, reg_fault) {
            (Req::Typed(t), None) => Input::direct_typed(t, env),
            (r, _) => {
                let words = match r {
                    Req::Words(w) => w,
                    Req::Typed(t) => {
                        let mut w = Vec::new();
                        t.encode(&mut w);
                        encoded = w;
                        &encoded[..]
                    }
                };
                let (own, later) = faulty_request(&mut self.req[0], words, reg_fault);
                let mut input = Input::direct(own, env);
                if let Some((i, b)) = later {
                    input.inject_flip(i, b);
                }
                input
            }
        };
        let rep = execute_once::<M>(
            &mut self.replicas[0],
            &mut self.journals[0],
            epoch,
            &mut self.effects[0],
            &mut input,
        );
        if let Some(f) = hit(FaultKind::Effects) {
            self.effects[0].flip_bit(f.bit);
        }
        match rep.error {
            Some(e) => {
                replica::rollback(&mut self.replicas[0], epoch);
                self.stats.rollbacks += 1;
                self.stats.failed += 1;
                TxResult::Failed(e)
            }
            None => {
                sink.apply_buffer(self.effects[0].buffer_mut());
                self.stats.commits += 1;
                TxResult::Committed
            }
        }
    }
}

/// Follower-side execution: reads the request from the log, replays the handler.
#[allow(clippy::too_many_arguments)]
pub(crate) fn replay_exec<M: Machine>(
    src: &mut dyn WordSource,
    req: &mut Vec<u64>,
    max_request: usize,
    fault: Option<&Fault>,
    state: &mut M::State,
    journal: &mut Journal,
    epoch: u64,
    effects: &mut Effects<M::Effect>,
) -> ExecReport<M::Error> {
    if let Err(e) = replay_request(src, req, max_request) {
        journal.begin(epoch);
        return broken(match e {
            crate::input::InputError::Unavailable => ExecStatus::Unavailable,
            _ => ExecStatus::Diverged,
        });
    }
    let mut later = None;
    if let Some(f) = fault {
        match req.get_mut(f.value_index as usize) {
            Some(w) => *w ^= 1 << (f.bit % 64),
            None => later = Some((f.value_index - req.len() as u32, (f.bit % 64) as u32)),
        }
    }
    let mut input = Input::replay(req, src);
    if let Some((i, b)) = later {
        input.inject_flip(i, b);
    }
    execute::<M>(state, journal, epoch, effects, &mut input)
}
