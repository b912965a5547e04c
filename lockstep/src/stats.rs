//! Engine statistics: transaction counters, detections and their resolution, per-kind
//! injection outcomes, recovery latency (caller's clock) and replica memory.

use crate::inject::{FaultKind, InjectionOutcome};

/// Upper bounds (exclusive), in nanoseconds, of the recovery-latency histogram's buckets: a
/// 1-2-5 series from 1 µs to 50 ms, so that a target such as "recovery ≤ 20 µs" is a bucket
/// boundary and the share of recoveries that met it is counted exactly. Bucket `i` holds the
/// latencies below `LATENCY_BOUNDS_NS[i]` and at or above the bound before it; the last
/// bucket holds those of 50 ms and more.
pub const LATENCY_BOUNDS_NS: [u64; LATENCY_BUCKETS - 1] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000, 20_000_000, 50_000_000,
];

/// Buckets of the recovery-latency histogram ([`LATENCY_BOUNDS_NS`] and one open-ended).
pub const LATENCY_BUCKETS: usize = 16;

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
    /// How many fell in each bucket of the bounds they were recorded with
    /// ([`crate::config::Config::latency_bounds`]): a mean is moved by a few outliers (a
    /// vCPU thread the host descheduled), the histogram shows the typical recovery too.
    pub hist: [u64; LATENCY_BUCKETS],
}

impl Latency {
    /// Adds one measurement; `bounds` are the histogram's bucket bounds in the same clock
    /// units, ascending.
    pub fn record(&mut self, cycles: u64, bounds: &[u64; LATENCY_BUCKETS - 1]) {
        self.min = if self.count == 0 {
            cycles
        } else {
            self.min.min(cycles)
        };
        self.count += 1;
        self.total = self.total.saturating_add(cycles);
        self.max = self.max.max(cycles);
        self.hist[bucket(cycles, bounds)] += 1;
    }

    /// Merges another core's measurements into these (recorded with the same bounds).
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
        for (a, b) in self.hist.iter_mut().zip(o.hist) {
            *a += b;
        }
    }

    /// Mean latency (0 when none was measured).
    pub fn mean(&self) -> u64 {
        self.total.checked_div(self.count).unwrap_or(0)
    }
}

/// The bucket of `value`: the first whose bound is above it, else the last.
pub fn bucket(value: u64, bounds: &[u64; LATENCY_BUCKETS - 1]) -> usize {
    bounds.partition_point(|&b| b <= value)
}

/// `bounds` (ascending, in ns) converted to a clock of `khz` kHz (TSC cycles): each bound
/// rounded up, so that a latency counted below a bound took less than that many ns.
pub fn bounds_in_cycles(
    bounds_ns: &[u64; LATENCY_BUCKETS - 1],
    khz: u64,
) -> [u64; LATENCY_BUCKETS - 1] {
    bounds_ns.map(|ns| {
        let c = u128::from(ns) * u128::from(khz);
        u64::try_from(c.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    })
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
        if self.recovery.count > 0 {
            write!(f, "recovery latency histogram (buckets by ns bound):")?;
            for (i, n) in self.recovery.hist.iter().enumerate() {
                if *n > 0 {
                    match LATENCY_BOUNDS_NS.get(i) {
                        Some(b) => write!(f, " <{}:{}", b, n)?,
                        None => write!(f, " >={}:{}", LATENCY_BOUNDS_NS[i - 1], n)?,
                    }
                }
            }
            writeln!(f)?;
        }
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
        s.recovery.record(10, &LATENCY_BOUNDS_NS);
        s.recovery.record(30, &LATENCY_BOUNDS_NS);
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
        a.recovery.record(50, &LATENCY_BOUNDS_NS);
        let mut b = Stats {
            transactions: 4,
            detected: 1,
            replica_bytes: 120,
            ..Stats::default()
        };
        b.recovery.record(10, &LATENCY_BOUNDS_NS);
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
        assert_eq!(a.recovery.hist[0], 2, "both below 1 us");
        let mut empty = Stats::default();
        empty.add(&Stats::default());
        assert_eq!(empty, Stats::default());
    }

    #[test]
    fn histogram_buckets_by_bound() {
        let b = &LATENCY_BOUNDS_NS;
        assert_eq!(bucket(0, b), 0);
        assert_eq!(bucket(999, b), 0);
        assert_eq!(
            bucket(1_000, b),
            1,
            "a bound belongs to the bucket above it"
        );
        assert_eq!(bucket(19_999, b), 4);
        assert_eq!(bucket(20_000, b), 5);
        assert_eq!(bucket(49_999_999, b), 14);
        assert_eq!(bucket(50_000_000, b), 15);
        assert_eq!(bucket(u64::MAX, b), 15);
        let mut l = Latency::default();
        for v in [500, 4_000, 4_500, 19_000, 30_000, 60_000_000] {
            l.record(v, b);
        }
        assert_eq!(l.hist.iter().sum::<u64>(), l.count);
        assert_eq!(
            (l.hist[0], l.hist[2], l.hist[4], l.hist[5], l.hist[15]),
            (1, 2, 1, 1, 1)
        );
        let text = Stats {
            recovery: l,
            ..Stats::default()
        }
        .to_string();
        assert!(
            text.contains("<1000:1 <5000:2 <20000:1 <50000:1 >=50000000:1"),
            "{text}"
        );
    }

    #[test]
    fn bounds_convert_to_cycles_rounding_up() {
        // 2.6 GHz: 1 us is 2,600 cycles.
        let c = bounds_in_cycles(&LATENCY_BOUNDS_NS, 2_600_000);
        assert_eq!((c[0], c[4]), (2_600, 52_000));
        // 1 kHz: every bound below a millisecond rounds up to one cycle, never to zero.
        let slow = bounds_in_cycles(&LATENCY_BOUNDS_NS, 1);
        assert_eq!((slow[0], slow[9], slow[14]), (1, 1, 50));
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        let huge = bounds_in_cycles(&LATENCY_BOUNDS_NS, u64::MAX);
        assert_eq!(huge[14], u64::MAX, "saturates");
    }
}
