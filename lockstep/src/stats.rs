//! Engine statistics: transaction counters, detections and their resolution, per-kind
//! injection outcomes, recovery latency (caller's clock) and replica memory.

use crate::inject::{FaultKind, InjectionOutcome};

/// Recovery latency: from the first detection to the commit of the re-execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Recoveries measured.
    pub count: u64,
    /// Sum of their latencies (clock units).
    pub total: u64,
    /// Largest one.
    pub max: u64,
    /// Smallest one (0 until one is measured).
    pub min: u64,
}

impl Latency {
    /// Adds one measurement.
    pub fn record(&mut self, cycles: u64) {
        self.min = if self.count == 0 {
            cycles
        } else {
            self.min.min(cycles)
        };
        self.count += 1;
        self.total = self.total.saturating_add(cycles);
        self.max = self.max.max(cycles);
    }

    /// Mean latency (0 when none was measured).
    pub fn mean(&self) -> u64 {
        self.total.checked_div(self.count).unwrap_or(0)
    }
}

/// Counters of one engine (or one leader core).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions started.
    pub transactions: u64,
    /// Transactions committed (effects applied).
    pub commits: u64,
    /// Transactions that ran once (lockstep off or unprotected).
    pub single: u64,
    /// Transactions whose handler failed (agreed); rolled back, nothing applied.
    pub failed: u64,
    /// Transactions aborted (e.g. input log overflow).
    pub aborted: u64,
    /// Replica rollbacks (per replica pair).
    pub rollbacks: u64,
    /// Re-executions after a failed comparison.
    pub retries: u64,
    /// Attempts whose comparison failed (mismatch, divergence, timeout, bad effects).
    pub detected: u64,
    /// Transactions that committed after at least one detection.
    pub recovered: u64,
    /// Escalations.
    pub escalated: u64,
    /// Digest mismatches.
    pub mismatches: u64,
    /// Missed deadlines.
    pub timeouts: u64,
    /// Diverged or incomplete executions.
    pub broken: u64,
    /// Effects buffers that no longer matched the agreed digest right before applying.
    pub effects_rejected: u64,
    /// Objects repaired from the other replica after a per-object checksum failure.
    pub repaired_objects: u64,
    /// Outcomes per injected kind: `injections[kind.index()][outcome.index()]`.
    pub injections: [[u64; 5]; 7],
    /// Recovery latency.
    pub recovery: Latency,
    /// Bytes held by both replicas (data and undo records), as last measured.
    pub replica_bytes: u64,
    /// Runtime `lockstep on` switches that re-synchronised the follower's replica.
    pub resyncs: u64,
    /// Followers promoted to leader after the leader was escalated as the suspect.
    pub promotions: u64,
}

impl Stats {
    /// Counts one classified injection.
    pub fn record_injection(&mut self, kind: FaultKind, outcome: InjectionOutcome) {
        self.injections[kind.index()][outcome.index()] += 1;
    }

    /// How many injections of `kind` ended as `outcome`.
    pub fn injected(&self, kind: FaultKind, outcome: InjectionOutcome) -> u64 {
        self.injections[kind.index()][outcome.index()]
    }
}

impl core::fmt::Display for Stats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "transactions {} commits {} single {} failed {} aborted {}",
            self.transactions, self.commits, self.single, self.failed, self.aborted
        )?;
        writeln!(
            f,
            "detected {} (mismatch {} timeout {} broken {} effects {}) rollbacks {} retries {} recovered {} escalated {} promotions {} repaired-objects {}",
            self.detected,
            self.mismatches,
            self.timeouts,
            self.broken,
            self.effects_rejected,
            self.rollbacks,
            self.retries,
            self.recovered,
            self.escalated,
            self.promotions,
            self.repaired_objects
        )?;
        writeln!(
            f,
            "recovery latency: n {} mean {} max {}; replica memory {} bytes",
            self.recovery.count,
            self.recovery.mean(),
            self.recovery.max,
            self.replica_bytes
        )?;
        for k in FaultKind::ALL {
            let row = &self.injections[k.index()];
            if row.iter().all(|&n| n == 0) {
                continue;
            }
            write!(f, "inject {:<13}", k.name())?;
            for o in InjectionOutcome::ALL {
                write!(f, " {} {}", o.name(), row[o.index()])?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn latency_and_injection_table() {
        let mut s = Stats::default();
        s.recovery.record(10);
        s.recovery.record(30);
        assert_eq!(s.recovery.mean(), 20);
        assert_eq!(s.recovery.max, 30);
        assert_eq!(s.recovery.min, 10);
        s.record_injection(FaultKind::Digest, InjectionOutcome::DetectedRecovered);
        assert_eq!(
            s.injected(FaultKind::Digest, InjectionOutcome::DetectedRecovered),
            1
        );
        assert_eq!(s.injected(FaultKind::Digest, InjectionOutcome::Masked), 0);
        let text = s.to_string();
        assert!(text.contains("inject digest"));
        assert!(!text.contains("inject hang"));
        assert_eq!(Latency::default().mean(), 0);
    }
}
