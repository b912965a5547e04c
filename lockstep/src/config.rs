//! Engine configuration and the per-transaction outcome reported to the embedder.

use crate::inject::{FaultKind, InjectionOutcome};
use crate::role::{Role, WaitStrategy};
use crate::stats::{LATENCY_BOUNDS_NS, LATENCY_BUCKETS};

/// Engine configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lockstep on (two executions per transaction) or off (one).
    pub lockstep: bool,
    /// Re-executions of a failing transaction before escalating (K).
    pub max_retries: u32,
    /// How long (caller's clock units) a core may take for one execution.
    pub deadline_cycles: u64,
    /// Spin-then-idle wait strategy of the leader and the follower.
    pub wait: WaitStrategy,
    /// How a follower that has posted waits for a coordinator core's decision (the leader
    /// deciding inline: `wait`). Nothing waits on the follower meanwhile: the next round needs
    /// the decision first, and the coordinator core, woken by the second post, needs a CPU.
    pub decision_wait: WaitStrategy,
    /// Spin-then-idle wait strategy of a coordinator core (the leader deciding inline uses
    /// `wait`).
    pub coordinator_wait: WaitStrategy,
    /// Input log capacity in words.
    pub input_capacity: usize,
    /// Spare cores the embedder offers to replace a core taken out of service.
    pub spares: u32,
    /// Verify per-object checksums (and repair) of both replicas before a retry. The first
    /// re-execution of a transaction runs without it (on a pair and on one core alike): a transient fault (register,
    /// effects, digest, mailbox, hang) is gone after one rollback, and a whole-replica scrub
    /// (milliseconds for a replica of megabytes) would dominate the recovery latency and, run
    /// concurrently on two cores, eat into the next round's deadline. A fault that survives
    /// that re-execution (a flipped replica object) is scrubbed before the next one.
    pub scrub_on_retry: bool,
    /// Scrub both replicas whole every N transactions (0: never).
    pub scrub_interval: u64,
    /// Incremental scrubbing: in every protected transaction each core checks (and
    /// corrects) this many more objects of its replica, sweeping it over and over
    /// (`replica::scrub_step`; 0: never). The leader takes its step while it waits for the
    /// round's decision, the follower after the commit (skipping it while the next round is
    /// open already, at most 7 commits in a row).
    pub scrub_step: usize,
    /// With a separate coordinator core, the leader gives up waiting for a decision after
    /// this many deadlines and coordinates itself.
    pub coordinator_grace: u32,
    /// Deadlines the leader waits, before its first round, for a follower that has not
    /// started yet (it is still building its replica copy); afterwards one deadline.
    pub follower_start_grace: u32,
    /// Bucket bounds of the recovery-latency histogram in the caller's clock units
    /// ([`crate::stats::Latency::hist`]): [`LATENCY_BOUNDS_NS`] as they read on that clock
    /// (`stats::bounds_in_cycles` for a TSC); the default takes the clock to count ns.
    pub latency_bounds: [u64; LATENCY_BUCKETS - 1],
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lockstep: true,
            max_retries: 3,
            deadline_cycles: 50_000_000,
            wait: WaitStrategy::default(),
            decision_wait: WaitStrategy::default(),
            coordinator_wait: WaitStrategy::default(),
            input_capacity: 4096,
            spares: 0,
            scrub_on_retry: true,
            scrub_interval: 0,
            scrub_step: 0,
            coordinator_grace: 3,
            follower_start_grace: 100,
            latency_bounds: LATENCY_BOUNDS_NS,
        }
    }
}

/// Engine-level failures (never panics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// The two replicas handed to the engine are not equal.
    ReplicasDiffer,
    /// The transaction needs more input words than the log holds.
    InputOverflow,
    /// The pair's follower has been taken out of service; run unprotected or resync.
    FollowerRetired,
    /// The configuration is unusable (e.g. an input capacity of zero).
    BadConfig,
    /// The pair was escalated and this transaction could not be completed safely.
    Escalated,
    /// A mailbox protocol rule was broken (e.g. a commit without this core's post).
    Protocol,
    /// This leader core was escalated as the suspect and stepped down: the promoted follower
    /// runs the transaction (nothing of it was committed here).
    LeaderRetired,
    /// One of several pairs was escalated: the transaction (nothing of it committed) runs
    /// again through another pair.
    Rerouted,
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            EngineError::ReplicasDiffer => "replicas differ",
            EngineError::InputOverflow => "input log overflow",
            EngineError::FollowerRetired => "follower taken out of service",
            EngineError::BadConfig => "bad lockstep configuration",
            EngineError::Escalated => "pair escalated, transaction not committed",
            EngineError::Protocol => "lockstep mailbox protocol violation",
            EngineError::LeaderRetired => {
                "leader taken out of service, transaction handed to the promoted follower"
            }
            EngineError::Rerouted => "pair escalated, transaction runs again through another pair",
        })
    }
}

/// Why runtime `lockstep on` could not restore protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncError {
    /// No follower acknowledged the re-synchronisation request in time (none running, or
    /// taken out of service).
    NoFollower,
    /// A spare may replace only a follower taken out of service.
    NotReplaceable,
    /// The follower's copy does not digest like the leader's replica.
    Differ {
        /// The leader's full replica digest.
        leader: u32,
        /// The follower's.
        follower: u32,
    },
}

impl core::fmt::Display for ResyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResyncError::NoFollower => f.write_str("no follower answered the re-synchronisation"),
            ResyncError::NotReplaceable => {
                f.write_str("only a follower taken out of service can be replaced")
            }
            ResyncError::Differ { leader, follower } => write!(
                f,
                "replicas differ after re-synchronisation (leader {leader:#010x}, follower {follower:#010x})"
            ),
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxResult<Err> {
    /// Writes kept, effects applied once.
    Committed,
    /// The handler failed (agreed by both executions): nothing kept, nothing applied.
    Failed(Err),
    /// The engine could not run it: nothing kept, nothing applied.
    Aborted(EngineError),
}

/// What the embedder learns about one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<Err> {
    /// The result.
    pub result: TxResult<Err>,
    /// Execution attempts (1 without faults).
    pub attempts: u32,
    /// Attempts whose comparison failed (or latent corruption found by the follow-up scrub).
    pub detections: u32,
    /// `Some(suspect)` if the pair was escalated during this transaction.
    pub escalation: Option<Option<Role>>,
    /// Objects repaired from the other replica.
    pub repaired: usize,
    /// The fault injected into this transaction, if any.
    pub injected: Option<FaultKind>,
    /// Its live classification (a wrong commit cannot be seen live; see the campaign).
    pub classification: Option<InjectionOutcome>,
}

impl<Err> Outcome<Err> {
    /// An outcome with no retries and no injection.
    pub fn new(result: TxResult<Err>) -> Self {
        Self {
            result,
            attempts: 1,
            detections: 0,
            escalation: None,
            repaired: 0,
            injected: None,
            classification: None,
        }
    }

    /// True if committed.
    pub fn is_committed(&self) -> bool {
        matches!(self.result, TxResult::Committed)
    }
}

/// Receives committed effects (exactly once per committed transaction).
pub trait EffectSink<E> {
    /// Applies the effects of one committed transaction, in order.
    fn apply(&mut self, effects: &[E]);

    /// Applies the effects of one committed single execution (lockstep off, or an
    /// unprotected pair), given in the engine's own buffer, which the next execution empties
    /// anyway: a sink may take them (swap the vector with an empty one of its own) instead of
    /// copying them. The default applies the slice.
    fn apply_buffer(&mut self, effects: &mut alloc::vec::Vec<E>) {
        self.apply(effects)
    }
}

impl<E, F: FnMut(&[E])> EffectSink<E> for F {
    fn apply(&mut self, effects: &[E]) {
        self(effects)
    }
}
