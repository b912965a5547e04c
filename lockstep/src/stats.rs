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

    /// Merges another core's measurements into these.
    pub fn merge(&mut self, o: &Latency) {
        if o.count == 0 {
            return;
        }
        self.min = if self.count == 0 {
            o.min
        } else {
            self.min.min(o.min)
        };
        self.count += o.count;
        self.total = self.total.saturating_add(o.total);
        self.max = self.max.max(o.max);
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
    /// Adds another leader core's counters (several pairs: the system's totals). The
    /// replica bytes are not added (the pairs share their replicas): the larger is kept.
    pub fn add(&mut self, o: &Stats) {
        let Stats {
            transactions,
            commits,
            single,
            failed,
            aborted,
            rollbacks,
            retries,
            detected,
            recovered,
            escalated,
            mismatches,
            timeouts,
            broken,
            effects_rejected,
            repaired_objects,
            injections,
            recovery,
            replica_bytes,
            resyncs,
            promotions,
        } = o;
        self.transactions += transactions;
        self.commits += commits;
        self.single += single;
        self.failed += failed;
        self.aborted += aborted;
        self.rollbacks += rollbacks;
        self.retries += retries;
        self.detected += detected;
        self.recovered += recovered;
        self.escalated += escalated;
        self.mismatches += mismatches;
        self.timeouts += timeouts;
        self.broken += broken;
        self.effects_rejected += effects_rejected;
        self.repaired_objects += repaired_objects;
        for (mine, theirs) in self.injections.iter_mut().zip(injections) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        self.recovery.merge(recovery);
        self.replica_bytes = self.replica_bytes.max(*replica_bytes);
        self.resyncs += resyncs;
        self.promotions += promotions;
    }

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

    #[test]
    fn counters_of_two_cores_add_up() {
        let mut a = Stats {
            transactions: 3,
            commits: 2,
            replica_bytes: 100,
            ..Stats::default()
        };
        a.recovery.record(50);
        let mut b = Stats {
            transactions: 4,
            detected: 1,
            replica_bytes: 120,
            ..Stats::default()
        };
        b.recovery.record(10);
        b.record_injection(FaultKind::Effects, InjectionOutcome::DetectedRecovered);
        a.add(&b);
        assert_eq!((a.transactions, a.commits, a.detected), (7, 2, 1));
        assert_eq!(a.replica_bytes, 120, "shared replicas: not added");
        assert_eq!(
            (a.recovery.count, a.recovery.min, a.recovery.max),
            (2, 10, 50)
        );
        assert_eq!(
            a.injected(FaultKind::Effects, InjectionOutcome::DetectedRecovered),
            1
        );
        let mut empty = Stats::default();
        empty.add(&Stats::default());
        assert_eq!(empty, Stats::default());
    }
}
