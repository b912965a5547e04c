//! The follower core of a pair: replays each round the leader opens on its own replica,
//! streams the input log from the mailbox, posts its digest and obeys the decision.

use crate::config::Config;
use crate::digest::TxDigest;
use crate::effects::Effects;
use crate::engine::replay_exec;
use crate::inject::FaultKind;
use crate::journal::Journal;
use crate::machine::{result_digest, Machine};
use crate::mailbox::{ChannelReader, Decision, Pair, Post};
use crate::replica;
use crate::role::{wait_until, Clock, Idle, Role};
use crate::shared::SharedReplica;
use alloc::vec::Vec;

/// Why `follower_serve` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerExit {
    /// The pair was shut down.
    Shutdown,
    /// The pair was escalated (suspect core, if identified); this follower is out of service
    /// (if the suspect is the leader, the embedder may promote this core).
    Escalated(Option<Role>),
    /// Runtime `lockstep on`: the leader asked this follower to restart from a copy of its
    /// replica, serving the rounds after the given one (see `Pair::request_resync`).
    Resync(u64),
    /// This follower was taken out of service ([`Pair::retire_follower`]); another core
    /// serves the pair now.
    Retired,
    /// The leader, escalated as the suspect, stepped down after the given round
    /// ([`Pair::step_down_leader`]): this core becomes the leader from its own replica
    /// (`FollowerCore::into_replica`, `LeaderCore::promoted`).
    Promote(u64),
}

/// Counters of a follower core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowerStats {
    /// Rounds executed.
    pub rounds: u64,
    /// Rounds committed.
    pub commits: u64,
    /// Rounds rolled back.
    pub rollbacks: u64,
    /// Rounds skipped (hang injected) or superseded.
    pub skipped: u64,
    /// Objects corrected by scrubbing.
    pub repaired: u64,
}

/// The follower of a pair: replays every round on its own replica and posts its digest.
pub struct FollowerCore<'p, M: Machine> {
    pair: &'p Pair,
    cfg: Config,
    replica: M::State,
    journal: Journal,
    effects: Effects<M::Effect>,
    req: Vec<u64>,
    last_round: u64,
    retries_in_row: u32,
    generation: u64,
    stats: FollowerStats,
    /// Where the incremental scrub of this replica stands.
    scrub_at: replica::ScrubCursor,
    /// Commits in a row whose scrub step was skipped (the next round was open already).
    scrub_skipped: u32,
    /// The follower replica shared with the other pairs' followers (`replica` holds it only
    /// while this core serves a round; see [`crate::shared`]).
    shared: Option<&'p SharedReplica<M::State>>,
}

impl<'p, M: Machine> FollowerCore<'p, M> {
    /// The follower of `pair`, one of several pairs whose followers execute on the one
    /// replica in `slot` (placed there by the embedder, equal to the leader replica after
    /// round `after_round`): it holds the replica from the start of each round of its pair
    /// until that round's decision is applied. `placeholder` (e.g. an empty state) stands
    /// in for it between rounds.
    pub fn shared(
        pair: &'p Pair,
        cfg: Config,
        slot: &'p SharedReplica<M::State>,
        placeholder: M::State,
        after_round: u64,
    ) -> Self {
        let mut f = Self::new(pair, cfg, placeholder, after_round);
        f.shared = Some(slot);
        f
    }

    /// A spare core joining `pair`, one of several pairs whose followers execute on the
    /// replica in `slot`, after the pair's follower was retired ([`Pair::retire_follower`]):
    /// waits until the leader asks for a re-synchronisation (`LeaderCore::replace_follower`),
    /// places `fresh()` — the embedder's copy, in this core's memory, of the leader replica
    /// handed over — in `slot` instead of the follower replica the retired core served on,
    /// acknowledges with its full digest (the leader resumes protection only if it equals
    /// the leader replica's) and returns the follower core serving the rounds after the
    /// leader's. The other pairs' followers hold the slot only while they serve a round, and
    /// the leaders wait for the replacement, so none sees it change under it. `None`: the
    /// pair was shut down first, or `fresh` found nothing handed over.
    #[allow(clippy::too_many_arguments)]
    pub fn join_shared(
        pair: &'p Pair,
        cfg: Config,
        slot: &'p SharedReplica<M::State>,
        placeholder: M::State,
        fresh: impl FnOnce() -> Option<M::State>,
        clock: &dyn Clock,
        idle: &dyn Idle,
    ) -> Option<Self> {
        let after = wait_until(cfg.wait, clock, idle, None, || {
            pair.resync_request()
                .map(Some)
                .or_else(|| pair.is_shut_down().then_some(None))
        })
        .flatten()?;
        let replica = fresh()?;
        let digest = replica::full_digest(&replica);
        // Waits for a follower still applying its last decision to let go of the slot.
        slot.put(replica);
        let f = Self::shared(pair, cfg, slot, placeholder, after);
        pair.ack_resync(after, digest);
        idle.kick(Role::Leader);
        Some(f)
    }

    /// The follower of `pair` over its own replica (equal to the leader's after round
    /// `after_round`): it serves the rounds after it. At boot `after_round` is 0; a spare
    /// that starts from a copy of the leader's replica passes the leader's last round.
    pub fn new(pair: &'p Pair, cfg: Config, replica: M::State, after_round: u64) -> Self {
        let last_round = after_round;
        pair.mark_follower_done(after_round);
        Self {
            pair,
            cfg,
            replica,
            journal: Journal::new(),
            effects: Effects::new(),
            req: Vec::new(),
            last_round,
            retries_in_row: 0,
            generation: pair.follower_generation(),
            stats: FollowerStats::default(),
            scrub_at: replica::ScrubCursor::default(),
            scrub_skipped: 0,
            shared: None,
        }
    }

    /// Counters.
    pub fn stats(&self) -> FollowerStats {
        self.stats
    }

    /// This core's replica.
    pub fn replica(&self) -> &M::State {
        &self.replica
    }

    /// Corrects single-bit errors in this core's replica from its per-object checksums.
    pub fn scrub(&mut self) -> usize {
        let n = replica::self_repair(&mut self.replica);
        self.stats.repaired += n as u64;
        if n > 0 {
            self.pair
                .follower_repairs
                .fetch_add(n as u64, core::sync::atomic::Ordering::Release);
        }
        n
    }

    /// One step of the incremental scrub (`Config::scrub_step` objects), after a commit.
    /// This core's incremental scrub step, a [`replica::SCRUB_CHUNK`] of objects at a time,
    /// given up between two chunks once `stop` says so. Returns whether the whole step ran.
    fn scrub_step_until(&mut self, stop: impl Fn() -> bool) -> bool {
        let (n, whole) = replica::scrub_step_until(
            &mut self.replica,
            &mut self.scrub_at,
            self.cfg.scrub_step,
            stop,
        );
        self.stats.repaired += n as u64;
        if n > 0 {
            self.pair
                .follower_repairs
                .fetch_add(n as u64, core::sync::atomic::Ordering::Release);
        }
        whole
    }

    /// The last round this follower served (a promoted leader continues after it).
    pub fn last_round(&self) -> u64 {
        self.last_round
    }

    /// Gives the replica back (e.g. to promote this core to leader).
    pub fn into_replica(self) -> M::State {
        self.replica
    }

    /// Serves rounds until shutdown or escalation.
    pub fn follower_serve(&mut self, clock: &dyn Clock, idle: &dyn Idle) -> FollowerExit {
        loop {
            let pair = self.pair;
            let last = self.last_round;
            let generation = self.generation;
            let next = wait_until(self.cfg.wait, clock, idle, None, || {
                if pair.is_shut_down() {
                    return Some(Err(FollowerExit::Shutdown));
                }
                if pair.follower_generation() != generation {
                    return Some(Err(FollowerExit::Retired));
                }
                if let Some(after) = pair.resync_request() {
                    return Some(Err(FollowerExit::Resync(after)));
                }
                if let Some(after) = pair.promotion_request() {
                    return Some(Err(FollowerExit::Promote(after)));
                }
                let (r, _) = pair.input.published();
                (r > last).then_some(Ok(r))
            });
            let round = match next {
                Some(Ok(r)) => r,
                Some(Err(exit)) => return exit,
                None => return FollowerExit::Shutdown,
            };
            let exit = self.serve_round(round, clock, idle);
            if exit == Some(FollowerExit::Retired) {
                return FollowerExit::Retired;
            }
            self.pair.mark_follower_done(round);
            // The leader may be waiting for this before it opens the next round.
            idle.kick(Role::Leader);
            if let Some(exit) = exit {
                return exit;
            }
        }
    }

    fn serve_round(
        &mut self,
        round: u64,
        clock: &dyn Clock,
        idle: &dyn Idle,
    ) -> Option<FollowerExit> {
        let Some(slot) = self.shared else {
            return self.serve_round_on_own(round, clock, idle);
        };
        // The previous transaction's follower (of any pair) may still apply its decision:
        // wait until it lets go of the shared replica.
        let pair = self.pair;
        let held = wait_until(self.cfg.wait, clock, idle, None, || {
            if pair.is_shut_down() {
                return Some(None);
            }
            slot.try_hold().map(Some)
        })
        .flatten();
        let Some(mut guard) = held else {
            return Some(FollowerExit::Shutdown);
        };
        let Some(shared) = guard.take() else {
            return Some(FollowerExit::Shutdown);
        };
        let placeholder = core::mem::replace(&mut self.replica, shared);
        let exit = self.serve_round_on_own(round, clock, idle);
        *guard = Some(core::mem::replace(&mut self.replica, placeholder));
        exit
    }

    fn serve_round_on_own(
        &mut self,
        round: u64,
        clock: &dyn Clock,
        idle: &dyn Idle,
    ) -> Option<FollowerExit> {
        self.last_round = round;
        let fault = self.pair.ordered_fault(round);
        let hit = |k: FaultKind| fault.filter(|f| f.kind == k);
        if let Some(f) = hit(FaultKind::ReplicaState) {
            replica::flip_bit(&mut self.replica, f.bit);
        }
        let executed = if hit(FaultKind::Hang).is_some() {
            self.stats.skipped += 1;
            None
        } else {
            let deadline = clock.now().saturating_add(self.cfg.deadline_cycles);
            let mut rd = ChannelReader::new(
                &self.pair.input,
                round,
                deadline,
                clock,
                idle,
                self.cfg.wait,
            )
            .until_decided(&self.pair.decision);
            let mut rep = replay_exec::<M>(
                &mut rd,
                &mut self.req,
                self.cfg.input_capacity,
                hit(FaultKind::FollowerReg).as_ref(),
                &mut self.replica,
                &mut self.journal,
                round,
                &mut self.effects,
            );
            if let Some(f) = hit(FaultKind::Effects) {
                // The follower's effects are never applied: they exist only to be digested.
                // A flip after the digest was taken (`late`) would reach no output at all and
                // could only ever be "masked", so on this core the upset always lands before
                // the digest — the one moment the buffer influences anything — and every
                // injected effects fault is detected by the comparison. (On the leader a late
                // flip is real: it is caught by the pre-apply check in `LeaderCore::commit`.)
                self.effects.flip_bit(f.bit);
                rep.digest.effects = result_digest(rep.error.as_ref(), &self.effects);
            }
            if let Some(f) = hit(FaultKind::Digest) {
                rep.digest = TxDigest::unpack(rep.digest.pack() ^ (1 << (f.bit % 64)));
            }
            self.stats.rounds += 1;
            let retired = self.pair.follower_generation() != self.generation;
            if retired {
                return Some(FollowerExit::Retired);
            }
            if self.pair.input.is_current(round) {
                self.pair.follower.post(
                    round,
                    Post {
                        digest: rep.digest,
                        status: rep.status,
                    },
                );
                // Only the second of the two posts wakes the coordinator; the leader waits
                // for the decision, not for this post, unless it decides itself.
                if self.pair.other_posted(Role::Follower, round) {
                    idle.kick(Role::Coordinator);
                }
                if self.pair.leader_decides() {
                    idle.kick(Role::Leader);
                }
            } else {
                self.stats.skipped += 1;
            }
            Some(rep.error.is_some())
        };
        let pair = self.pair;
        let wait = if pair.leader_decides() {
            self.cfg.wait
        } else {
            self.cfg.decision_wait
        };
        let d = wait_until(wait, clock, idle, None, || {
            if let Some(d) = pair.decision.read(round) {
                return Some(Some(d));
            }
            pair.is_shut_down().then_some(None)
        })
        .flatten();
        let failed = executed == Some(true);
        let executed = executed.is_some();
        match d {
            Some(Decision::Commit) => {
                self.retries_in_row = 0;
                if failed {
                    // An agreed handler failure keeps nothing, on both replicas.
                    replica::rollback(&mut self.replica, round);
                }
                self.stats.commits += 1;
                if self.cfg.scrub_interval > 0
                    && self.stats.commits.is_multiple_of(self.cfg.scrub_interval)
                {
                    self.scrub();
                }
                // Given up as soon as the leader opens the next round: this core would be
                // behind, and the rest of the step would delay its post. But whole at least
                // every `MAX_SCRUB_SKIPS + 1`-th commit, so a steady load cannot stop the
                // sweep.
                let forced = self.scrub_skipped >= replica::MAX_SCRUB_SKIPS;
                let input = &self.pair.input;
                if self.scrub_step_until(|| !forced && input.published().0 > round) {
                    self.scrub_skipped = 0;
                } else {
                    self.scrub_skipped += 1;
                }
                None
            }
            Some(Decision::Escalate(s)) => {
                self.retries_in_row = 0;
                if executed {
                    replica::rollback(&mut self.replica, round);
                }
                Some(FollowerExit::Escalated(s))
            }
            Some(_) => {
                if executed {
                    replica::rollback(&mut self.replica, round);
                    self.stats.rollbacks += 1;
                }
                self.retries_in_row += 1;
                // As the leader: the first re-execution runs without a whole-replica scrub
                // (see `Config::scrub_on_retry`).
                if self.cfg.scrub_on_retry && self.retries_in_row >= 2 {
                    self.scrub();
                }
                None
            }
            None => {
                if executed {
                    replica::rollback(&mut self.replica, round);
                }
                Some(FollowerExit::Shutdown)
            }
        }
    }
}
