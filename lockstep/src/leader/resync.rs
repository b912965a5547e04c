//! Bringing a follower (back) in: runtime `lockstep on` and a spare replacing a follower
//! taken out of service, both from a bit-identical copy of the leader's replica.

use super::{LeaderCore, RESYNC_DEADLINES};
use crate::config::ResyncError;
use crate::machine::Machine;
use crate::policy::Health;
use crate::replica;
use crate::role::{wait_until, Clock, Idle, Role};

impl<M: Machine> LeaderCore<'_, M> {
    /// Runtime `lockstep on`, between two transactions: the follower's replica is stale after
    /// single executions, so `hand_over` gets this core's replica to pass to the follower's
    /// core (the embedder copies it into the follower's memory), the follower is asked to
    /// restart from that copy after the current round, and its acknowledgement carries the
    /// full digest of the replica it now holds. Protection resumes only if that digest equals
    /// this replica's (bit-identical replicas); the digest is returned. Already protected:
    /// nothing to do. No answer within [`RESYNC_DEADLINES`] deadlines: the request is withdrawn and the
    /// health is left as it was.
    pub fn switch_on(
        &mut self,
        clock: &dyn Clock,
        idle: &dyn Idle,
        hand_over: &mut dyn FnMut(&M::State),
    ) -> Result<u32, ResyncError> {
        if self.health.is_protected() {
            return Ok(replica::full_digest(&self.replica));
        }
        let d = self.resync(clock, idle, hand_over)?;
        self.health = Health::Protected;
        Ok(d)
    }

    /// After an escalation that took the follower out of service: the embedder has started
    /// a new follower on a spare core (serving `Role::Follower` from now on), which is brought
    /// in as runtime `lockstep on` does — a bit-identical copy of this replica, digests
    /// compared — and protection resumes ([`Health::SpareInUse`]). Any other health:
    /// [`ResyncError::NotReplaceable`], nothing done.
    pub fn replace_follower(
        &mut self,
        clock: &dyn Clock,
        idle: &dyn Idle,
        hand_over: &mut dyn FnMut(&M::State),
    ) -> Result<u32, ResyncError> {
        let retired = match self.health {
            Health::Unprotected {
                suspect: Some(Role::Follower),
            } => Role::Follower,
            // A promoted leader: the follower it was is the leader now.
            Health::Unprotected {
                suspect: Some(Role::Leader),
            } if self.promoted => Role::Leader,
            _ => return Err(ResyncError::NotReplaceable),
        };
        let d = self.resync(clock, idle, hand_over)?;
        self.cores[1] = self.next_core;
        self.next_core += 1;
        self.health = Health::SpareInUse { retired };
        Ok(d)
    }

    fn resync(
        &mut self,
        clock: &dyn Clock,
        idle: &dyn Idle,
        hand_over: &mut dyn FnMut(&M::State),
    ) -> Result<u32, ResyncError> {
        let mine = replica::full_digest(&self.replica);
        hand_over(&self.replica);
        let after = self.round;
        let pair = self.pair;
        pair.request_resync(after);
        idle.kick(Role::Follower);
        // The follower frees its stale replica, copies and digests the new one: whole-replica
        // work, far longer than one transaction's deadline.
        let deadline = clock
            .now()
            .saturating_add(self.cfg.deadline_cycles.saturating_mul(RESYNC_DEADLINES));
        let Some(theirs) = wait_until(self.cfg.wait, clock, idle, Some(deadline), || {
            pair.resync_acked(after)
        }) else {
            pair.cancel_resync(after);
            return Err(ResyncError::NoFollower);
        };
        if theirs != mine {
            return Err(ResyncError::Differ {
                leader: mine,
                follower: theirs,
            });
        }
        self.policy.reset();
        self.stats.resyncs += 1;
        Ok(mine)
    }
}
