//! The coordinator: compares the two executions' posts, enforces the deadline (a hung or
//! fail-stopped core is detected, not waited for), and posts commit / retry / escalate.
//! The same `decide_round` runs on a dedicated coordinator core or inline on the leader.

use crate::machine::ExecStatus;
use crate::mailbox::{Decision, Pair, Post};
use crate::policy::RetryPolicy;
use crate::role::{wait_until, Clock, Idle, Role, WaitStrategy};

/// The comparison of one round's two posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Same status, same digests: safe to commit.
    Agree,
    /// Both completed but the digests differ.
    Mismatch {
        /// The write digests differ.
        writes: bool,
        /// The effects digests differ.
        effects: bool,
    },
    /// One execution could not complete (diverged input, overflow, missing input).
    Broken {
        /// Which execution.
        role: Role,
        /// Its status.
        status: ExecStatus,
    },
    /// A post did not arrive before the deadline (`None`: neither did).
    Timeout(Option<Role>),
}

impl Verdict {
    /// True unless the executions agreed.
    pub fn is_detection(&self) -> bool {
        *self != Verdict::Agree
    }
}

/// Compares the leader's and the follower's posts.
pub fn judge(leader: Option<Post>, follower: Option<Post>) -> Verdict {
    let (l, f) = match (leader, follower) {
        (None, None) => return Verdict::Timeout(None),
        (None, Some(_)) => return Verdict::Timeout(Some(Role::Leader)),
        (Some(_), None) => return Verdict::Timeout(Some(Role::Follower)),
        (Some(l), Some(f)) => (l, f),
    };
    if !l.status.is_complete() {
        return Verdict::Broken {
            role: Role::Leader,
            status: l.status,
        };
    }
    if !f.status.is_complete() {
        return Verdict::Broken {
            role: Role::Follower,
            status: f.status,
        };
    }
    let writes = l.digest.writes != f.digest.writes;
    let effects = l.digest.effects != f.digest.effects || l.status != f.status;
    if writes || effects {
        Verdict::Mismatch { writes, effects }
    } else {
        Verdict::Agree
    }
}

/// Waits (until `deadline`) for both posts of `round`, judges them, applies the policy and
/// posts the decision. Returns the verdict, the decision and both posts as read.
#[allow(clippy::too_many_arguments)]
pub fn decide_round<C: Clock + ?Sized, I: Idle + ?Sized>(
    pair: &Pair,
    policy: &mut RetryPolicy,
    round: u64,
    deadline: u64,
    clock: &C,
    idle: &I,
    wait: WaitStrategy,
) -> (Verdict, Decision, Option<Post>, Option<Post>) {
    let both = wait_until(wait, clock, idle, Some(deadline), || {
        match (pair.leader.read(round), pair.follower.read(round)) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        }
    });
    let (l, f) = match both {
        Some((a, b)) => (Some(a), Some(b)),
        None => (pair.leader.read(round), pair.follower.read(round)),
    };
    let mut verdict = judge(l, f);
    if verdict == Verdict::Timeout(None) && pair.input.published() == (round, 0) {
        // Neither posted, and the leader opened the round but streamed no input word (every
        // execution records its request first): the follower was starved waiting for the
        // input; the leader is the core that did not respond.
        verdict = Verdict::Timeout(Some(Role::Leader));
    }
    let decision = policy.on_verdict(&verdict, clock.now());
    let decision = pair.decision.post(round, decision);
    idle.kick(Role::Leader);
    idle.kick(Role::Follower);
    (verdict, decision, l, f)
}

/// Counters kept by a dedicated coordinator core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorStats {
    /// Rounds decided.
    pub rounds: u64,
    /// Commits posted.
    pub commits: u64,
    /// Rounds whose verdict was not `Agree`.
    pub detections: u64,
    /// Rounds decided by a missed deadline.
    pub timeouts: u64,
    /// Escalations posted.
    pub escalations: u64,
}

/// A dedicated coordinator core for one pair.
pub struct Coordinator<'p> {
    pair: &'p Pair,
    policy: RetryPolicy,
    last_round: u64,
    deadline_cycles: u64,
    wait: WaitStrategy,
    stats: CoordinatorStats,
}

impl<'p> Coordinator<'p> {
    /// A coordinator for `pair` giving each execution `deadline_cycles` from the moment it
    /// sees a round open, escalating after `max_retries` failed retries.
    pub fn new(pair: &'p Pair, max_retries: u32, deadline_cycles: u64, wait: WaitStrategy) -> Self {
        Self {
            pair,
            policy: RetryPolicy::new(max_retries),
            last_round: 0,
            deadline_cycles,
            wait,
            stats: CoordinatorStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CoordinatorStats {
        self.stats
    }

    fn decide(&mut self, round: u64, clock: &dyn Clock, idle: &dyn Idle) -> (Verdict, Decision) {
        let deadline = clock.now().saturating_add(self.deadline_cycles);
        let (v, d, _, _) = decide_round(
            self.pair,
            &mut self.policy,
            round,
            deadline,
            clock,
            idle,
            self.wait,
        );
        self.last_round = round;
        self.stats.rounds += 1;
        match d {
            Decision::Commit => self.stats.commits += 1,
            Decision::Escalate(_) => self.stats.escalations += 1,
            _ => {}
        }
        if v.is_detection() {
            self.stats.detections += 1;
        }
        if matches!(v, Verdict::Timeout(_)) {
            self.stats.timeouts += 1;
        }
        (v, d)
    }

    /// If a new round is open, decides it (waiting at most the deadline) and returns it.
    pub fn coordinator_poll(
        &mut self,
        clock: &dyn Clock,
        idle: &dyn Idle,
    ) -> Option<(u64, Verdict, Decision)> {
        let (round, _) = self.pair.input.published();
        if round <= self.last_round {
            return None;
        }
        let (v, d) = self.decide(round, clock, idle);
        Some((round, v, d))
    }

    /// Decides rounds until the pair is shut down.
    pub fn coordinator_serve(&mut self, clock: &dyn Clock, idle: &dyn Idle) {
        loop {
            let last = self.last_round;
            let pair = self.pair;
            let next = wait_until(self.wait, clock, idle, None, || {
                if pair.is_shut_down() {
                    return Some(None);
                }
                let (r, _) = pair.input.published();
                (r > last).then_some(Some(r))
            });
            match next.flatten() {
                Some(r) => {
                    self.decide(r, clock, idle);
                }
                None => return,
            }
        }
    }
}

/// One coordinator core serving several pairs (one [`Coordinator`] each): decides every
/// round any of them opens, until all are shut down. `idles[i]` wakes pair `i`'s cores (and
/// `idles[0]` idles this one). With shared replicas ([`crate::shared`]) at most one pair has
/// an open round at a time, so deciding one round at a time delays no other pair.
pub fn coordinator_serve_all(
    coords: &mut [Coordinator<'_>],
    clock: &dyn Clock,
    idles: &[&dyn Idle],
) {
    let (Some(&here), Some(wait)) = (idles.first(), coords.first().map(|c| c.wait)) else {
        return;
    };
    loop {
        let next = wait_until(wait, clock, here, None, || {
            if coords.iter().all(|c| c.pair.is_shut_down()) {
                return Some(None);
            }
            coords
                .iter()
                .position(|c| !c.pair.is_shut_down() && c.pair.input.published().0 > c.last_round)
                .map(Some)
        });
        match next.flatten() {
            Some(i) => {
                let idle = idles.get(i).copied().unwrap_or(here);
                let _ = coords[i].coordinator_poll(clock, idle);
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::TxDigest;

    fn post(w: u32, e: u32, s: ExecStatus) -> Option<Post> {
        Some(Post {
            digest: TxDigest {
                writes: w,
                effects: e,
            },
            status: s,
        })
    }

    #[test]
    fn judge_cases() {
        use ExecStatus::*;
        assert_eq!(judge(post(1, 2, Ok), post(1, 2, Ok)), Verdict::Agree);
        assert_eq!(
            judge(post(1, 2, Failed), post(1, 2, Failed)),
            Verdict::Agree
        );
        assert_eq!(
            judge(post(1, 2, Ok), post(1, 3, Ok)),
            Verdict::Mismatch {
                writes: false,
                effects: true
            }
        );
        assert_eq!(
            judge(post(1, 2, Ok), post(1, 2, Failed)),
            Verdict::Mismatch {
                writes: false,
                effects: true
            }
        );
        assert_eq!(
            judge(post(1, 2, Ok), post(1, 2, Diverged)),
            Verdict::Broken {
                role: Role::Follower,
                status: Diverged
            }
        );
        assert_eq!(
            judge(None, post(1, 2, Ok)),
            Verdict::Timeout(Some(Role::Leader))
        );
        assert_eq!(
            judge(post(1, 2, Ok), None),
            Verdict::Timeout(Some(Role::Follower))
        );
        assert_eq!(judge(None, None), Verdict::Timeout(None));
    }

    struct Tick(core::cell::Cell<u64>);
    impl Clock for Tick {
        fn now(&self) -> u64 {
            let t = self.0.get() + 1;
            self.0.set(t);
            t
        }
    }
    impl Idle for Tick {
        fn idle(&self) {}
    }

    #[test]
    fn coordinator_times_out_a_silent_follower() {
        let pair = Pair::new(16);
        let clk = Tick(core::cell::Cell::new(0));
        let mut c = Coordinator::new(&pair, 0, 500, WaitStrategy { spins: 4 });
        assert!(c.coordinator_poll(&clk, &clk).is_none());
        let _w = pair.input.begin(1);
        pair.leader.post(1, post(1, 1, ExecStatus::Ok).unwrap());
        let (r, v, d) = c.coordinator_poll(&clk, &clk).unwrap();
        assert_eq!((r, v), (1, Verdict::Timeout(Some(Role::Follower))));
        assert_eq!(d, Decision::Escalate(Some(Role::Follower)));
        assert_eq!(pair.decision.read(1), Some(d));
        let _w = pair.input.begin(2);
        pair.leader.post(2, post(5, 5, ExecStatus::Ok).unwrap());
        pair.follower.post(2, post(5, 5, ExecStatus::Ok).unwrap());
        assert_eq!(c.coordinator_poll(&clk, &clk).unwrap().2, Decision::Commit);
        assert_eq!(c.stats().commits, 1);
        assert_eq!(c.stats().timeouts, 1);
    }
}
