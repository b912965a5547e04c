//! The state-machine interface the hypervisor implements, the per-execution transaction
//! context handed to its handler, and the one function that runs a handler (used by every
//! mode, so lockstep on and off run exactly the same code).

use crate::digest::{Hasher, TxDigest};
use crate::effects::Effects;
use crate::input::{Input, InputError};
use crate::journal::Journal;
use crate::replica::ReplicaState;
use crate::value::Value;

/// A deterministic state machine: the hypervisor's state and its transaction handler.
pub trait Machine: 'static {
    /// Replica state (journaled containers).
    type State: ReplicaState;
    /// One effect to apply outside the replica after commit.
    type Effect: Value;
    /// A handler failure (a hypervisor-internal error: a failed handler changes nothing).
    /// Guest-visible errors such as -EINVAL are effects, not `Error`s.
    type Error: Value + core::fmt::Debug;

    /// Runs one transaction: a deterministic function of `state` and `input`. It must read
    /// nondeterministic values only through `input`, write `state` only through its
    /// containers with `tx.journal`, and emit effects with [`TxCtx::emit`] instead of applying them.
    fn step(
        state: &mut Self::State,
        input: &mut Input<'_>,
        tx: &mut TxCtx<'_, Self::Effect>,
    ) -> Result<(), Self::Error>;
}

/// What a handler writes through: the journal of its replica and its effects buffer.
pub struct TxCtx<'a, E: Value> {
    /// The execution's journal; pass it to every container mutation.
    pub journal: &'a mut Journal,
    effects: &'a mut Effects<E>,
}

impl<'a, E: Value> TxCtx<'a, E> {
    /// A context over a journal and an effects buffer (the engine builds these).
    pub fn new(journal: &'a mut Journal, effects: &'a mut Effects<E>) -> Self {
        Self { journal, effects }
    }

    /// Emits one effect (applied only after commit).
    pub fn emit(&mut self, e: E) {
        self.effects.push(e);
    }

    /// The effects emitted so far.
    pub fn effects(&self) -> &[E] {
        self.effects.as_slice()
    }
}

/// How one execution ended, as posted to the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExecStatus {
    /// The handler returned `Ok`.
    Ok = 0,
    /// The handler returned `Err` (deterministic: both executions should agree on it).
    Failed = 1,
    /// The replayed input diverged from the leader's log.
    Diverged = 2,
    /// The input log overflowed (not retriable).
    Overflow = 3,
    /// Input words did not arrive (peer hung or round superseded).
    Unavailable = 4,
}

impl ExecStatus {
    /// Decodes a status word; unknown values read as `Diverged` (a corrupted post).
    pub fn from_word(w: u64) -> Self {
        match w {
            0 => Self::Ok,
            1 => Self::Failed,
            3 => Self::Overflow,
            4 => Self::Unavailable,
            _ => Self::Diverged,
        }
    }

    /// True for the two statuses whose digests are meaningful to compare.
    pub fn is_complete(self) -> bool {
        matches!(self, Self::Ok | Self::Failed)
    }
}

/// The result of one execution.
#[derive(Clone, Debug)]
pub struct ExecReport<Err> {
    /// Write and effects digests.
    pub digest: TxDigest,
    /// How it ended.
    pub status: ExecStatus,
    /// The handler's error, if it failed.
    pub error: Option<Err>,
}

/// Digest of a handler's result together with its effects.
pub fn result_digest<E: Value, Err: Value>(error: Option<&Err>, effects: &Effects<E>) -> u32 {
    let mut h = Hasher::new();
    match error {
        None => h.write_u8(0),
        Some(e) => {
            h.write_u8(1);
            e.digest(&mut h);
        }
    }
    effects.digest(&mut h);
    h.finish()
}

/// How a single execution ended: [`execute_once`]'s report, without digests.
#[derive(Clone, Debug)]
pub struct SingleReport<Err> {
    /// How it ended.
    pub status: ExecStatus,
    /// The handler's error, if it failed.
    pub error: Option<Err>,
}

/// Runs `M::step` once against `state` with a fresh `epoch`: the handler and its journal and
/// effects exactly as [`execute`] runs them, without the digests, which only a comparison
/// with another execution reads. Lockstep off and an unprotected pair run transactions
/// through this; computing the two digests cost a lockstep-off `xen_version` ~500 of its
/// ~12,000 TCG cycles.
pub fn execute_once<M: Machine>(
    state: &mut M::State,
    journal: &mut Journal,
    epoch: u64,
    effects: &mut Effects<M::Effect>,
    input: &mut Input<'_>,
) -> SingleReport<M::Error> {
    journal.begin(epoch);
    effects.clear();
    let r = M::step(state, input, &mut TxCtx::new(journal, effects));
    let error = r.err();
    let status = match (input.poisoned(), &error) {
        (Some(InputError::Overflow), _) => ExecStatus::Overflow,
        (Some(InputError::Unavailable), _) => ExecStatus::Unavailable,
        (Some(_), _) => ExecStatus::Diverged,
        (None, Some(_)) => ExecStatus::Failed,
        (None, None) => ExecStatus::Ok,
    };
    SingleReport { status, error }
}

/// Runs `M::step` once against `state` with a fresh `epoch` and reports its digests.
pub fn execute<M: Machine>(
    state: &mut M::State,
    journal: &mut Journal,
    epoch: u64,
    effects: &mut Effects<M::Effect>,
    input: &mut Input<'_>,
) -> ExecReport<M::Error> {
    let SingleReport { status, error } = execute_once::<M>(state, journal, epoch, effects, input);
    let digest = TxDigest {
        writes: journal.write_digest(),
        effects: result_digest(error.as_ref(), effects),
    };
    ExecReport {
        digest,
        status,
        error,
    }
}
