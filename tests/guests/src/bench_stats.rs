//! Statistics for the `bench` guest: cycles per call from a batch's TSC delta, the median and
//! spread over batches, the TSC frequency from a `vcpu_time_info` scale, and the
//! machine-parseable `BENCH` line that `scripts/bench.sh` reads.

use core::fmt;

/// Why a batch measurement cannot be summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsError {
    /// A batch of zero calls has no per-call cost.
    NoCalls,
    /// No batch was measured.
    NoBatches,
    /// The TSC went backwards across a batch (the end reading is below the start).
    TscBackwards,
    /// The `vcpu_time_info` scale is unusable (zero multiplier, or out of range).
    BadScale,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatsError::NoCalls => "a batch of zero calls",
            StatsError::NoBatches => "no batches measured",
            StatsError::TscBackwards => "the TSC went backwards across a batch",
            StatsError::BadScale => "unusable tsc_to_system_mul/tsc_shift",
        })
    }
}

/// Cycles per call of one batch of `calls` calls timed from TSC `start` to `end`, rounded to
/// the nearest cycle.
pub fn per_call(start: u64, end: u64, calls: u32) -> Result<u64, StatsError> {
    if calls == 0 {
        return Err(StatsError::NoCalls);
    }
    let delta = end.checked_sub(start).ok_or(StatsError::TscBackwards)?;
    let calls = u64::from(calls);
    Ok(delta / calls + u64::from(delta % calls >= calls.div_ceil(2)))
}

/// The summary of a set of batches, in cycles per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Median over batches (the mean of the two middle batches for an even count, rounded down).
    pub median: u64,
    /// Cheapest batch.
    pub min: u64,
    /// Dearest batch.
    pub max: u64,
}

/// Summarises the per-call costs of a set of batches; sorts `per_batch` in place.
pub fn summarize(per_batch: &mut [u64]) -> Result<Summary, StatsError> {
    let n = per_batch.len();
    if n == 0 {
        return Err(StatsError::NoBatches);
    }
    per_batch.sort_unstable();
    let median = if n % 2 == 1 {
        per_batch[n / 2]
    } else {
        let (a, b) = (per_batch[n / 2 - 1], per_batch[n / 2]);
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    };
    Ok(Summary {
        median,
        min: per_batch[0],
        max: per_batch[n - 1],
    })
}

/// TSC frequency in kHz, rounded to the nearest kHz, from a `vcpu_time_info` scale, where
/// `ns = ((tsc << shift) * mul) >> 32` (negative `shift` shifts right).
pub fn tsc_khz(mul: u32, shift: i8) -> Result<u64, StatsError> {
    if mul == 0 || !(-31..=31).contains(&shift) {
        return Err(StatsError::BadScale);
    }
    // cycles per ms = 10^6 ns * 2^32 / (mul * 2^shift).
    let num: u128 = 1_000_000u128 << 32;
    let den = u128::from(mul);
    let (num, den) = if shift >= 0 {
        (num, den << shift)
    } else {
        (num << shift.unsigned_abs(), den)
    };
    let khz = (num + den / 2) / den;
    u64::try_from(khz).map_err(|_| StatsError::BadScale)
}

/// One result line: `BENCH <name> cycles_per_call=<median> batches=<b> calls=<c> min=<m>
/// max=<M>`. The runner keys on `BENCH`, the name and `cycles_per_call=`.
#[derive(Clone, Copy, Debug)]
pub struct BenchLine<'a> {
    /// What was timed, one word (e.g. `xen_version`).
    pub name: &'a str,
    /// The batches' summary.
    pub summary: Summary,
    /// Number of batches.
    pub batches: u32,
    /// Calls per batch.
    pub calls: u32,
}

impl fmt::Display for BenchLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BENCH {} cycles_per_call={} batches={} calls={} min={} max={}",
            self.name,
            self.summary.median,
            self.batches,
            self.calls,
            self.summary.min,
            self.summary.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_rounds_to_nearest() {
        assert_eq!(per_call(100, 100 + 256 * 670, 256), Ok(670));
        assert_eq!(per_call(0, 1000, 3), Ok(333));
        assert_eq!(per_call(0, 1001, 2), Ok(501));
        assert_eq!(per_call(0, 1000, 6), Ok(167));
        assert_eq!(per_call(5, 5, 256), Ok(0));
    }

    #[test]
    fn per_call_rejects_bad_input() {
        assert_eq!(per_call(0, 10, 0), Err(StatsError::NoCalls));
        assert_eq!(per_call(10, 9, 4), Err(StatsError::TscBackwards));
        assert_eq!(per_call(0, u64::MAX, 1), Ok(u64::MAX));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let mut odd = [9, 1, 5];
        assert_eq!(
            summarize(&mut odd),
            Ok(Summary {
                median: 5,
                min: 1,
                max: 9
            })
        );
        let mut even = [40, 10, 31, 20];
        assert_eq!(summarize(&mut even).map(|s| s.median), Ok(25));
        let mut big = [u64::MAX, u64::MAX];
        assert_eq!(summarize(&mut big).map(|s| s.median), Ok(u64::MAX));
        let mut one = [7];
        assert_eq!(
            summarize(&mut one),
            Ok(Summary {
                median: 7,
                min: 7,
                max: 7
            })
        );
    }

    #[test]
    fn median_ignores_outlier_batches() {
        // A timer interrupt or a host hiccup inflates a few batches; the median stays put.
        let mut b = [700u64; 32];
        b[3] = 90_000;
        b[17] = 45_000;
        b[30] = 1;
        let s = summarize(&mut b).unwrap();
        assert_eq!(s.median, 700);
        assert_eq!((s.min, s.max), (1, 90_000));
    }

    #[test]
    fn no_batches_is_an_error() {
        assert_eq!(summarize(&mut []), Err(StatsError::NoBatches));
    }

    #[test]
    fn tsc_khz_inverts_the_scale() {
        // 2 GHz: 0.5 ns per cycle -> mul = 2^31 with shift 0.
        assert_eq!(tsc_khz(1 << 31, 0), Ok(2_000_000));
        // 1 GHz: shift 1 doubles the delta, mul 2^31 -> 1 ns per cycle.
        assert_eq!(tsc_khz(1 << 31, 1), Ok(1_000_000));
        // 4 GHz: shift -1 halves the delta, mul 2^31 -> 0.25 ns per cycle.
        assert_eq!(tsc_khz(1 << 31, -1), Ok(4_000_000));
        // A scale Xen computes for a 2.5 GHz TSC: shift 0, mul = 2^32 * 0.4.
        assert_eq!(tsc_khz(1_717_986_918, 0), Ok(2_500_000));
    }

    #[test]
    fn tsc_khz_rejects_bad_scales() {
        assert_eq!(tsc_khz(0, 0), Err(StatsError::BadScale));
        assert_eq!(tsc_khz(1, 40), Err(StatsError::BadScale));
        assert_eq!(tsc_khz(1, -32), Err(StatsError::BadScale));
    }

    #[test]
    fn bench_line_format_is_what_the_runner_parses() {
        let line = BenchLine {
            name: "xen_version",
            summary: Summary {
                median: 671,
                min: 650,
                max: 9000,
            },
            batches: 32,
            calls: 256,
        };
        assert_eq!(
            format!("{line}"),
            "BENCH xen_version cycles_per_call=671 batches=32 calls=256 min=650 max=9000"
        );
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            format!("{}", StatsError::TscBackwards),
            "the TSC went backwards across a batch"
        );
    }
}
