//! The injection campaign runner: runs a workload on a lockstep engine with one fault per
//! transaction and on a golden engine (lockstep off, no faults) fed the same inputs, and
//! classifies every injection — including silent corruption, which only a golden run shows.

use crate::config::{EngineError, TxResult};
use crate::digest::Hasher;
use crate::engine::Engine;
use crate::inject::{FaultKind, InjectionOutcome};
use crate::input::Env;
use crate::machine::Machine;
use crate::replica;
use crate::role::{Clock, Role};
use crate::value::Value;
use alloc::vec::Vec;

/// Outcomes of one campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CampaignReport {
    /// The kind injected.
    pub kind: FaultKind,
    /// Count per [`InjectionOutcome`] (indexed by `InjectionOutcome::index`).
    pub outcomes: [u64; 5],
}

impl CampaignReport {
    /// Injections that ended as `o`.
    pub fn count(&self, o: InjectionOutcome) -> u64 {
        self.outcomes[o.index()]
    }

    /// Injections performed.
    pub fn total(&self) -> u64 {
        self.outcomes.iter().sum()
    }
}

impl core::fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:<13}", self.kind.name())?;
        for o in InjectionOutcome::ALL {
            write!(f, " {} {}", o.name(), self.outcomes[o.index()])?;
        }
        Ok(())
    }
}

fn effects_digest<E: Value>(effects: &[E]) -> u32 {
    let mut h = Hasher::new();
    h.write_u64(effects.len() as u64);
    for e in effects {
        e.digest(&mut h);
    }
    h.finish()
}

/// Runs `count` transactions from `workload` (transaction number → request and an
/// environment; the environment is cloned so both engines see the same values), injecting
/// one `kind` fault into each on `engine` and none on `golden` (lockstep off). After a
/// wrong commit both engines are reset to the golden state; after an escalation
/// protection is restored, so every injection starts from a protected, correct pair.
pub fn run_campaign<M, E, W>(
    engine: &mut Engine<M>,
    golden: &mut Engine<M>,
    kind: FaultKind,
    count: u32,
    clock: &dyn Clock,
    mut workload: W,
) -> Result<CampaignReport, EngineError>
where
    M: Machine,
    E: Env + Clone,
    W: FnMut(u64) -> (Vec<u64>, E),
{
    if replica::full_digest(engine.replica(Role::Leader))
        != replica::full_digest(golden.replica(Role::Leader))
    {
        return Err(EngineError::ReplicasDiffer);
    }
    let mut report = CampaignReport {
        kind,
        outcomes: [0; 5],
    };
    for i in 0..count as u64 {
        let (req, env) = workload(i);
        let mut got: Vec<u32> = Vec::new();
        let mut want: Vec<u32> = Vec::new();
        engine.injector().arm(kind, 1);
        let out = engine.run_local(&req, &mut env.clone(), clock, &mut |e: &[M::Effect]| {
            got.push(effects_digest(e))
        });
        engine.injector().disarm();
        let gold = golden.run_single(&req, &mut env.clone(), &mut |e: &[M::Effect]| {
            want.push(effects_digest(e))
        });
        let same_result = matches!(
            (&out.result, &gold.result),
            (TxResult::Committed, TxResult::Committed) | (TxResult::Failed(_), TxResult::Failed(_))
        );
        let crashed = !same_result && !matches!(gold.result, TxResult::Aborted(_));
        let state_ok = replica::full_digest(engine.replica(Role::Leader))
            == replica::full_digest(golden.replica(Role::Leader));
        let correct = same_result && got == want && state_ok;
        let o = InjectionOutcome::classify(
            out.detections > 0,
            out.escalation.is_some(),
            crashed,
            Some(correct),
        );
        report.outcomes[o.index()] += 1;
        if !correct {
            engine.reset(golden.replica(Role::Leader).clone())?;
        } else if out.escalation.is_some() {
            engine.set_lockstep(false);
            engine.set_lockstep(true);
        }
    }
    Ok(report)
}
