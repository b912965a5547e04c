//! The leader core of a pair: `LeaderCore::leader_run` on the core that runs the guest,
//! paired with [`FollowerCore`](crate::follower::FollowerCore) on its shadow and either a
//! dedicated [`Coordinator`](crate::coordinator::Coordinator) core or the leader coordinating
//! inline. Cross-core traffic is the [`Pair`] mailbox only (atomics); each core owns its replica.

use crate::config::{Config, EffectSink, EngineError, Outcome, TxResult};
use crate::coordinator::{decide_round, judge, Verdict};
use crate::digest::TxDigest;
use crate::effects::Effects;
use crate::engine::{faulty_request, replay_exec};
use crate::inject::{Fault, FaultKind, InjectionOutcome, Injector};
use crate::input::{record_request, Env, Input, InputLog, MemoEnv, WordSink};
use crate::journal::Journal;
use crate::machine::{execute, execute_once, result_digest, ExecReport, ExecStatus, Machine};
use crate::mailbox::{ChannelWriter, Decision, Pair, Post};
use crate::policy::{Health, RetryPolicy};
use crate::replica;
use crate::role::{wait_until, Clock, Idle, Role};
use crate::shared::Sequence;
use crate::stats::Stats;
use alloc::vec::Vec;

mod resync;

/// How many transaction deadlines `LeaderCore::switch_on` waits for the follower's
/// acknowledgement (it copies and digests a whole replica).
pub const RESYNC_DEADLINES: u64 = 100;

/// Records into the leader's local log and streams to the follower, optionally flipping one
/// streamed word (a `mailbox` fault in flight).
struct Tee<'a> {
    local: &'a mut InputLog,
    remote: ChannelWriter<'a>,
    flip: Option<(usize, u64)>,
    n: usize,
}

impl WordSink for Tee<'_> {
    fn push_word(&mut self, w: u64) -> bool {
        let sent = match self.flip {
            Some((i, b)) if i == self.n => w ^ (1 << (b % 64)),
            _ => w,
        };
        self.n += 1;
        self.local.push_word(w) & self.remote.push_word(sent)
    }

    fn push_words(&mut self, ws: &[u64]) -> bool {
        let start = self.n;
        self.n += ws.len();
        let local = self.local.push_words(ws);
        let remote = match self.flip {
            Some((i, b)) if (start..self.n).contains(&i) => {
                // The in-flight flip lands on one word of this batch.
                let mut sent: Vec<u64> = ws.to_vec();
                sent[i - start] ^= 1 << (b % 64);
                self.remote.push_words(&sent)
            }
            _ => self.remote.push_words(ws),
        };
        local & remote
    }
}

/// The leader of a pair: runs the first execution, streams its input log, posts its digest,
/// obtains the decision (from the coordinator core, or by coordinating inline) and applies
/// effects exactly once on commit.
pub struct LeaderCore<'p, M: Machine> {
    pair: &'p Pair,
    cfg: Config,
    replica: M::State,
    journal: Journal,
    effects: Effects<M::Effect>,
    log: InputLog,
    first_log: InputLog,
    req: Vec<u64>,
    round: u64,
    inline: bool,
    policy: RetryPolicy,
    health: Health,
    stats: Stats,
    injector: Injector,
    /// Fault-injection identities of the cores serving as leader and follower (a persistent
    /// fault is bound to a core: a spare that replaces it gets a fresh identity).
    cores: [u32; 2],
    next_core: u32,
    /// Where the incremental scrub of this replica stands.
    scrub_at: replica::ScrubCursor,
    /// Scrub steps in a row given up before their end (see `leader_run`).
    scrub_skipped: u32,
    /// A follower core can take over as leader (the embedder moves the guests to it): an
    /// escalation with this core as the suspect makes it step down instead of finishing the
    /// transaction unprotected.
    promotable: bool,
    /// This core was escalated as the suspect while promotable: it runs nothing more.
    stepped_down: bool,
    /// This core was promoted from follower (a spare may then replace the follower it was).
    promoted: bool,
    /// Round numbers come from this sequence, shared by the leaders of every pair over one
    /// replica (see [`crate::shared`]); `None`: this core numbers its rounds itself.
    seq: Option<&'p Sequence>,
    /// An escalation ends the transaction uncommitted ([`EngineError::Rerouted`]) instead of
    /// finishing it once here: the embedder runs it again through another pair.
    reroutable: bool,
}

impl<'p, M: Machine> LeaderCore<'p, M> {
    /// The leader of `pair` over its replica; `coordinate` makes it decide rounds itself
    /// (two-CPU setups) instead of waiting for a coordinator core.
    pub fn new(pair: &'p Pair, cfg: Config, replica: M::State, coordinate: bool) -> Self {
        if coordinate {
            pair.set_leader_decides();
        }
        Self {
            pair,
            health: if cfg.lockstep {
                Health::Protected
            } else {
                Health::Off
            },
            replica,
            journal: Journal::new(),
            effects: Effects::new(),
            log: InputLog::new(cfg.input_capacity),
            first_log: InputLog::new(cfg.input_capacity),
            req: Vec::new(),
            round: 0,
            inline: coordinate,
            policy: RetryPolicy::new(cfg.max_retries),
            stats: Stats::default(),
            injector: Injector::new(0x1EAD),
            cores: [0, 1],
            next_core: 2,
            scrub_at: replica::ScrubCursor::default(),
            scrub_skipped: 0,
            promotable: false,
            stepped_down: false,
            promoted: false,
            seq: None,
            reroutable: false,
            cfg,
        }
    }

    /// One of several pairs over one replica: rounds are numbered from `seq`, shared by
    /// every pair's leader (unique epochs across the pairs, see [`crate::shared`]).
    pub fn share_rounds(&mut self, seq: &'p Sequence) {
        self.seq = Some(seq);
    }

    /// With several pairs: an escalation of this pair leaves the transaction uncommitted
    /// (the replica rolled back, [`EngineError::Rerouted`], this core unprotected) for the
    /// embedder to run again through another pair, instead of finishing it once here (a
    /// single execution would leave the shared follower replica behind).
    pub fn set_reroutable(&mut self, on: bool) {
        self.reroutable = on;
    }

    /// The mailbox of this core's pair.
    pub fn pair(&self) -> &'p Pair {
        self.pair
    }

    /// Swaps this core's replica with `r` (between transactions): the leaders of several
    /// pairs take turns with the one leader replica.
    pub fn exchange_replica(&mut self, r: M::State) -> M::State {
        core::mem::replace(&mut self.replica, r)
    }

    fn next_round(&mut self) -> u64 {
        self.round = match self.seq {
            Some(s) => s.next(),
            None => self.round + 1,
        };
        self.round
    }

    /// Leader promotion: the follower core of `pair`, which left `FollowerCore::follower_serve`
    /// with `FollowerExit::Promote(after_round)`, becomes the leader over its own `replica`
    /// (`FollowerCore::into_replica`: the replica whose execution the escalation did not
    /// suspect, rolled back to the state after `after_round`, as the old leader's was).
    /// The counters continue from the old leader's `stats`; the round numbers continue after
    /// `after_round`. It runs unprotected ([`Health::Unprotected`], the leader retired) until a
    /// spare is brought in with [`LeaderCore::replace_follower`]. The escalated transaction,
    /// which nothing committed, is the embedder's to run again on this core, once.
    pub fn promoted(
        pair: &'p Pair,
        cfg: Config,
        replica: M::State,
        after_round: u64,
        coordinate: bool,
        stats: Stats,
    ) -> Self {
        pair.ack_promotion(after_round);
        let mut l = Self::new(pair, cfg, replica, coordinate);
        l.round = after_round;
        l.stats = stats;
        l.stats.promotions += 1;
        // Fresh fault-injection identities: a persistent fault stays with the retired core.
        l.cores = [2, 3];
        l.next_core = 4;
        l.promoted = true;
        l.health = if cfg.lockstep {
            Health::Unprotected {
                suspect: Some(Role::Leader),
            }
        } else {
            Health::Off
        };
        l
    }

    /// Lets this leader step down when escalated as the suspect (a follower core can take
    /// over: see [`LeaderCore::step_down`]); off by default, when an escalated leader finishes
    /// the transaction itself and continues unprotected.
    pub fn set_promotable(&mut self, on: bool) {
        self.promotable = on;
    }

    /// True once an escalation with this core as the suspect made it stop running
    /// transactions (the embedder hands the guests over, then calls [`LeaderCore::step_down`]).
    pub fn is_stepping_down(&self) -> bool {
        self.stepped_down
    }

    /// The old leader's last step: after the embedder moved everything the guests need out
    /// of this core's hands, tells the follower to take over after the escalated round. This
    /// core must not touch the pair afterwards (every later `leader_run` is refused).
    pub fn step_down(&mut self) {
        self.stepped_down = true;
        self.pair.step_down_leader(self.round);
    }

    /// Fault injection of a permanent hardware fault: from now on the core serving `role`
    /// hangs in every transaction (it stops responding), until it is taken out of service.
    pub fn fail_core(&mut self, role: Role) {
        let core = match role {
            Role::Follower => self.cores[1],
            _ => self.cores[0],
        };
        self.injector.arm_persistent(FaultKind::Hang, core);
    }

    /// Protection state.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Statistics (replica memory: this core's replica).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.replica_bytes = replica::memory_bytes(&self.replica) as u64;
        s
    }

    /// This core's replica (clone it to start a spare follower).
    pub fn replica(&self) -> &M::State {
        &self.replica
    }

    /// The fault injector.
    pub fn injector(&mut self) -> &mut Injector {
        &mut self.injector
    }

    /// Corrects single-bit errors in this core's replica from its per-object checksums
    /// (each core scrubs its own replica; no cross-core memory access). Returns how many
    /// objects were corrected.
    pub fn scrub(&mut self) -> usize {
        let n = replica::self_repair(&mut self.replica);
        self.stats.repaired_objects += n as u64;
        n
    }

    /// The last round this leader opened (a spare follower starts after it).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// True once the leader coordinates itself (configured, or the coordinator core missed
    /// its deadlines).
    pub fn coordinates_inline(&self) -> bool {
        self.inline
    }

    /// After an escalation, the embedder started a follower (on a spare core, with a copy of
    /// [`LeaderCore::replica`]): execute every transaction twice again. The next round
    /// number continues where it was, so the new follower must start with `FollowerCore::new`.
    pub fn resume_protection(&mut self, retired: Role) {
        self.health = Health::SpareInUse { retired };
        self.policy.reset();
    }

    /// Runtime `lockstep off`, between two transactions: the following ones run once on
    /// this core (the follower and a coordinator core stay parked, waiting for a round).
    pub fn switch_off(&mut self) {
        self.health = Health::Off;
        self.policy.reset();
    }

    /// Waits (at most one deadline) until the follower has finished the previous round, so
    /// its pre-retry scrub does not eat into the next round's deadline. A follower that does
    /// not get there is left to the coordinator's deadline. A follower that has not started
    /// yet is still copying its replica (the first transactions at boot): it gets
    /// `Config::follower_start_grace` deadlines, instead of timing out the first rounds and
    /// being escalated for its start-up.
    ///
    /// After a commit the leader does not wait: the follower has posted its digest (a commit
    /// needs it), so it reads nothing more of that round's input, and what it has left to do
    /// (drop its journal, one incremental scrub step) is short. Waiting for it cost one more
    /// cross-CPU wake-up per transaction: under TCG the follower has often halted for the
    /// decision and needs an IPI before it can say it is done.
    fn await_follower(&self, clock: &dyn Clock, idle: &dyn Idle) {
        let (pair, prev) = (self.pair, self.round);
        if pair.follower_done(prev) || pair.decision.read(prev) == Some(Decision::Commit) {
            return;
        }
        let budget = if pair.follower_started() {
            self.cfg.deadline_cycles
        } else {
            self.cfg
                .deadline_cycles
                .saturating_mul(u64::from(self.cfg.follower_start_grace.max(1)))
        };
        let deadline = clock.now().saturating_add(budget);
        let _ = wait_until(self.cfg.wait, clock, idle, Some(deadline), || {
            pair.follower_done(prev).then_some(())
        });
    }

    fn count(&mut self, v: &Verdict, out: &mut Outcome<M::Error>) {
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

    /// Runs one transaction in lockstep with the follower (once, if not protected).
    pub fn leader_run(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        clock: &dyn Clock,
        idle: &dyn Idle,
        sink: &mut dyn EffectSink<M::Effect>,
    ) -> Outcome<M::Error> {
        if self.stepped_down {
            // Out of service: touches neither the pair nor the replica.
            return Outcome::new(TxResult::Aborted(EngineError::LeaderRetired));
        }
        self.stats.transactions += 1;
        let oneshot = self.injector.take_oneshot();
        let mut out = Outcome::new(TxResult::Committed);
        out.injected = oneshot.map(|f| f.kind);
        if !self.health.is_protected() {
            self.stats.single += 1;
            let fault = oneshot.or_else(|| self.injector.persistent_for(self.cores[0], u32::MAX));
            out.result = self.single(request, env, sink, fault.as_ref(), None);
            return self.classify(out);
        }
        let mut attempt = 0;
        let mut detected_at = None;
        let mut scrubbed = false;
        let mut first_effect_bits = u64::MAX;
        loop {
            attempt += 1;
            out.attempts = attempt;
            self.await_follower(clock, idle);
            let round = self.next_round();
            let fault = if attempt == 1 { oneshot } else { None }
                .or_else(|| self.injector.persistent_for(self.cores[0], self.cores[1]));
            let theirs =
                fault.filter(|f| f.target == Role::Follower && f.kind != FaultKind::Mailbox);
            if let Some(f) = theirs {
                self.pair.order_fault(round, &f);
            }
            let mine = fault.filter(|f| f.target == Role::Leader);
            let flight =
                fault.filter(|f| f.target == Role::Follower && f.kind == FaultKind::Mailbox);
            if attempt == 2 {
                // Keep the first attempt's log (the inputs as captured) for re-executions.
                core::mem::swap(&mut self.log, &mut self.first_log);
            }
            let rep = if attempt == 1 {
                self.execute(request, env, round, mine.as_ref(), flight.as_ref(), idle)
            } else {
                let first = core::mem::replace(&mut self.first_log, InputLog::new(0));
                let mut memo = MemoEnv::new(first.words(), env);
                let r = self.execute(
                    request,
                    &mut memo,
                    round,
                    mine.as_ref(),
                    flight.as_ref(),
                    idle,
                );
                self.first_log = first;
                r
            };
            if attempt == 1 && rep.is_some() {
                first_effect_bits = self.effects.bit_len();
            }
            if let Some(r) = &rep {
                self.pair.leader.post(
                    round,
                    Post {
                        digest: r.digest,
                        status: r.status,
                    },
                );
                if let Some(f) = mine.filter(|f| f.kind == FaultKind::Mailbox) {
                    self.pair.leader.flip_digest_bit(f.bit as u32);
                }
            }
            idle.kick(Role::Follower);
            // Only the second of the two posts wakes the coordinator (`Pair::other_posted`); a
            // coordinator that no post wakes (a core hung) finds the open round at its next
            // timer tick and enforces the deadline from there.
            if rep.is_some() && self.pair.other_posted(Role::Leader, round) {
                idle.kick(Role::Coordinator);
            }
            if attempt == 1
                && out.injected.is_none()
                && self.cfg.scrub_step > 0
                && self.pair.decision.read(round).is_none()
            {
                // This core's incremental scrub step, while the follower (and a coordinator
                // core) finish the round, instead of after the commit on the guest's path.
                // Objects keep their checksums through journaled writes, so a step in the
                // middle of a transaction checks them as well as one after it. (Not with an
                // injected fault: a latent replica flip is for the follow-up scrub to find.)
                // Given up once the round can be decided (the decision is there, or this
                // core decides and the follower has posted), but whole at least every
                // `MAX_SCRUB_SKIPS + 1`-th time, so the sweep goes on under any load.
                scrubbed = true;
                let pair = self.pair;
                let forced = self.scrub_skipped >= replica::MAX_SCRUB_SKIPS;
                let (n, whole) = replica::scrub_step_until(
                    &mut self.replica,
                    &mut self.scrub_at,
                    self.cfg.scrub_step,
                    || {
                        !forced
                            && (pair.decision.read(round).is_some()
                                || (pair.leader_decides() && pair.follower.read(round).is_some()))
                    },
                );
                self.scrub_skipped = if whole { 0 } else { self.scrub_skipped + 1 };
                self.stats.repaired_objects += n as u64;
                out.repaired += n;
            }
            let (verdict, decision) = self.await_decision(round, clock, idle);
            self.count(&verdict, &mut out);
            if verdict.is_detection() && detected_at.is_none() {
                detected_at = Some(clock.now());
            }
            match decision {
                Decision::Commit => {
                    let Some(r) = rep else {
                        // A commit needs our post: a coordinator that commits without it is
                        // broken; keep nothing.
                        replica::rollback(&mut self.replica, round);
                        out.result = TxResult::Aborted(EngineError::Protocol);
                        break;
                    };
                    if let Some(t) = detected_at {
                        self.stats
                            .recovery
                            .record(clock.now().saturating_sub(t), &self.cfg.latency_bounds);
                        self.stats.recovered += 1;
                    }
                    out.result =
                        self.commit(request, env, round, r, sink, clock, &mut out.detections);
                    break;
                }
                Decision::Retry => {
                    replica::rollback(&mut self.replica, round);
                    self.stats.rollbacks += 1;
                    self.stats.retries += 1;
                    if self.cfg.scrub_on_retry && attempt >= 2 {
                        // See `Config::scrub_on_retry`: only a fault that survived one
                        // re-execution pays for a whole-replica scrub.
                        self.scrub();
                    }
                }
                Decision::Abort => {
                    replica::rollback(&mut self.replica, round);
                    self.stats.rollbacks += 1;
                    self.stats.aborted += 1;
                    out.result = TxResult::Aborted(EngineError::InputOverflow);
                    break;
                }
                Decision::Escalate(s) => {
                    replica::rollback(&mut self.replica, round);
                    self.stats.rollbacks += 1;
                    self.stats.escalated += 1;
                    let theirs = self.pair.follower.read(round);
                    let suspect = s.or_else(|| {
                        if replica::verify(&self.replica) > 0 {
                            Some(Role::Leader)
                        } else {
                            self.vote(round, rep.as_ref(), theirs)
                        }
                    });
                    out.escalation = Some(suspect);
                    self.health = Health::Unprotected { suspect };
                    if self.reroutable {
                        // Nothing of it was committed or applied: another pair runs it.
                        out.result = TxResult::Aborted(EngineError::Rerouted);
                        break;
                    }
                    if suspect == Some(Role::Leader) && self.promotable {
                        // This core is out of service: the follower, promoted, runs the
                        // transaction (nothing of it was committed or applied) once.
                        self.stepped_down = true;
                        out.result = TxResult::Aborted(EngineError::LeaderRetired);
                        break;
                    }
                    self.stats.single += 1;
                    // Finish the transaction once, with the inputs as first captured.
                    if attempt == 1 {
                        self.first_log.clone_from(&self.log);
                    }
                    let first = core::mem::replace(&mut self.first_log, InputLog::new(0));
                    let mut memo = MemoEnv::new(first.words(), env);
                    out.result = self.single(request, &mut memo, sink, None, Some(round));
                    self.first_log = first;
                    break;
                }
            }
        }
        if out.injected == Some(FaultKind::Effects) && first_effect_bits == 0 && out.detections == 0
        {
            // The transaction produced no effect bits to flip (the injection point does not
            // exist here): the injection moves on to the next transaction instead of being
            // counted as masked.
            self.injector.rearm_one(FaultKind::Effects);
            out.injected = None;
        }
        if out.injected == Some(FaultKind::ReplicaState) && out.detections == 0 {
            // A latent flip in this core's replica that the transaction did not read: the
            // follow-up scrub finds and corrects it.
            let n = self.scrub();
            if n > 0 {
                out.detections += 1;
                self.stats.detected += 1;
                out.repaired += n;
            }
        } else if self.cfg.scrub_interval > 0
            && self
                .stats
                .transactions
                .is_multiple_of(self.cfg.scrub_interval)
        {
            self.scrub();
        }
        if self.cfg.scrub_step > 0 && !scrubbed && matches!(out.result, TxResult::Committed) {
            let n = replica::scrub_step(&mut self.replica, &mut self.scrub_at, self.cfg.scrub_step);
            self.stats.repaired_objects += n as u64;
            out.repaired += n;
        }
        self.classify(out)
    }

    fn classify(&mut self, mut out: Outcome<M::Error>) -> Outcome<M::Error> {
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

    /// The leader's execution of one round (None: the leader "hangs" and posts nothing).
    fn execute(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        round: u64,
        mine: Option<&Fault>,
        flight: Option<&Fault>,
        idle: &dyn Idle,
    ) -> Option<ExecReport<M::Error>> {
        let hit = |k: FaultKind| mine.filter(|f| f.kind == k);
        if let Some(f) = hit(FaultKind::ReplicaState) {
            replica::flip_bit(&mut self.replica, f.bit);
        }
        let writer = self.pair.input.begin(round);
        // Wake the follower now, so both executions overlap. The coordinator has nothing to
        // do until both have posted: the second poster wakes it.
        idle.kick(Role::Follower);
        if hit(FaultKind::Hang).is_some() {
            return None;
        }
        self.log.clear();
        let mut tee = Tee {
            local: &mut self.log,
            remote: writer,
            flip: flight.map(|f| ((f.value_index % 4) as usize, f.bit)),
            n: 0,
        };
        let mut rep = if record_request(&mut tee, request).is_err() {
            self.journal.begin(round);
            crate::engine::broken(ExecStatus::Overflow)
        } else {
            let (own, later) = faulty_request(&mut self.req, request, hit(FaultKind::LeaderReg));
            let mut input = Input::record(own, env, &mut tee);
            if let Some((i, b)) = later {
                input.inject_flip(i, b);
            }
            execute::<M>(
                &mut self.replica,
                &mut self.journal,
                round,
                &mut self.effects,
                &mut input,
            )
        };
        if let Some(f) = hit(FaultKind::Effects) {
            self.effects.flip_bit(f.bit);
            if !f.late {
                rep.digest.effects = result_digest(rep.error.as_ref(), &self.effects);
            }
        }
        if let Some(f) = hit(FaultKind::Digest) {
            rep.digest = TxDigest::unpack(rep.digest.pack() ^ (1 << (f.bit % 64)));
        }
        Some(rep)
    }

    fn decide_inline(
        &mut self,
        round: u64,
        clock: &dyn Clock,
        idle: &dyn Idle,
    ) -> (Verdict, Decision) {
        let deadline = clock.now().saturating_add(self.cfg.deadline_cycles);
        let (v, d, _, _) = decide_round(
            self.pair,
            &mut self.policy,
            round,
            deadline,
            clock,
            idle,
            self.cfg.wait,
        );
        (v, d)
    }

    fn await_decision(
        &mut self,
        round: u64,
        clock: &dyn Clock,
        idle: &dyn Idle,
    ) -> (Verdict, Decision) {
        if self.inline {
            return self.decide_inline(round, clock, idle);
        }
        let grace = self
            .cfg
            .deadline_cycles
            .saturating_mul(self.cfg.coordinator_grace.max(2) as u64);
        let deadline = clock.now().saturating_add(grace);
        let pair = self.pair;
        match wait_until(self.cfg.wait, clock, idle, Some(deadline), || {
            pair.decision.read(round)
        }) {
            Some(d) => (judge(pair.leader.read(round), pair.follower.read(round)), d),
            None => {
                // The coordinator core missed its deadline: coordinate from now on.
                self.inline = true;
                self.pair.set_leader_decides();
                self.stats.timeouts += 1;
                self.decide_inline(round, clock, idle)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Applies the agreed effects once; if this core's buffer no longer matches the agreed
    /// digest, the effects are re-derived by re-executing locally from the same inputs.
    fn commit(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        round: u64,
        agreed: ExecReport<M::Error>,
        sink: &mut dyn EffectSink<M::Effect>,
        clock: &dyn Clock,
        detections: &mut u32,
    ) -> TxResult<M::Error> {
        if result_digest(agreed.error.as_ref(), &self.effects) != agreed.digest.effects {
            let detected_at = clock.now();
            self.stats.effects_rejected += 1;
            self.stats.detected += 1;
            *detections += 1;
            replica::rollback(&mut self.replica, round);
            self.stats.rollbacks += 1;
            let log = core::mem::replace(&mut self.log, InputLog::new(0));
            let mut memo = MemoEnv::new(log.words(), env);
            let mut input = Input::direct(request, &mut memo);
            let again = execute::<M>(
                &mut self.replica,
                &mut self.journal,
                round,
                &mut self.effects,
                &mut input,
            );
            self.log = log;
            if again.digest != agreed.digest || again.status != agreed.status {
                replica::rollback(&mut self.replica, round);
                self.health = Health::Unprotected {
                    suspect: Some(Role::Leader),
                };
                self.stats.escalated += 1;
                return TxResult::Aborted(EngineError::Escalated);
            }
            self.stats.recovered += 1;
            self.stats.recovery.record(
                clock.now().saturating_sub(detected_at),
                &self.cfg.latency_bounds,
            );
        }
        match agreed.error {
            Some(e) => {
                replica::rollback(&mut self.replica, round);
                self.stats.rollbacks += 1;
                self.stats.failed += 1;
                TxResult::Failed(e)
            }
            None => {
                sink.apply(self.effects.as_slice());
                self.stats.commits += 1;
                TxResult::Committed
            }
        }
    }

    /// Third execution on a fresh copy of the rolled-back replica, replaying this core's log.
    fn vote(
        &mut self,
        round: u64,
        mine: Option<&ExecReport<M::Error>>,
        theirs: Option<Post>,
    ) -> Option<Role> {
        let (mine, theirs) = (mine?, theirs?);
        let mut fresh = self.replica.clone();
        let (mut j, mut e, mut buf) = (Journal::new(), Effects::new(), Vec::new());
        let mut rd = self.log.reader();
        let third = replay_exec::<M>(
            &mut rd,
            &mut buf,
            self.cfg.input_capacity,
            None,
            &mut fresh,
            &mut j,
            round,
            &mut e,
        );
        let l = mine.digest == third.digest && mine.status == third.status;
        let f = theirs.digest == third.digest && theirs.status == third.status;
        match (l, f) {
            (true, false) => Some(Role::Follower),
            (false, true) => Some(Role::Leader),
            _ => None,
        }
    }

    /// One execution on this core's replica, no comparison.
    fn single(
        &mut self,
        request: &[u64],
        env: &mut dyn Env,
        sink: &mut dyn EffectSink<M::Effect>,
        fault: Option<&Fault>,
        epoch: Option<u64>,
    ) -> TxResult<M::Error> {
        let epoch = epoch.unwrap_or_else(|| self.next_round());
        let hit = |k: FaultKind| fault.filter(|f| f.kind == k);
        if let Some(f) = hit(FaultKind::ReplicaState) {
            replica::flip_bit(&mut self.replica, f.bit);
        }
        let (own, later) = faulty_request(&mut self.req, request, hit(FaultKind::LeaderReg));
        let mut input = Input::direct(own, env);
        if let Some((i, b)) = later {
            input.inject_flip(i, b);
        }
        let rep = execute_once::<M>(
            &mut self.replica,
            &mut self.journal,
            epoch,
            &mut self.effects,
            &mut input,
        );
        if let Some(f) = hit(FaultKind::Effects) {
            self.effects.flip_bit(f.bit);
        }
        match rep.error {
            Some(e) => {
                replica::rollback(&mut self.replica, epoch);
                self.stats.rollbacks += 1;
                self.stats.failed += 1;
                TxResult::Failed(e)
            }
            None => {
                sink.apply_buffer(self.effects.buffer_mut());
                self.stats.commits += 1;
                TxResult::Committed
            }
        }
    }
}
