//! `xl lockstep status`: DualVisor's own verb (Xen has none), in `xl info`'s
//! `key                    : value` style followed by a table of injection outcomes.
//!
//! ```text
//! lockstep               : on
//! nr_cpus                : 4
//! cpu0                   : coordinator
//! cpu1                   : leader
//! ...
//! transactions           : 1000
//! commits                : 998
//! rollbacks              : 3
//! retries                : 3
//! detected               : 3
//! recovered              : 2
//! escalated              : 1
//! recovery_latency_ns    : min 900 mean 1200 max 1500
//! recovery_latency_hist  : <1us 1, 1-2us 1 (median 1-2us)
//! injection outcomes     :
//! kind            injected    masked recovered escalated    silent   crashed
//! leader-reg             0         0         0         0         0         0
//! ...
//! ```
//! The histogram lists the non-empty buckets of [`LOCKSTEP_LATENCY_BOUNDS_NS`] and the bucket
//! holding the median. Roles of a CPU with several role bits are joined with `+` (`leader+coordinator`); a CPU
//! with none is `idle`. Lockstep off reads `off (unprotected)`; on but escalated without a
//! spare (a core taken out of service) reads `on, UNPROTECTED (no spare: running without
//! redundancy)`.

use alloc::string::String;
use core::fmt::Write;
use dom0_interface::lockstep_ctl::{
    latency_quantile_ns, LockstepKind, LockstepStatus, LOCKSTEP_LATENCY_BOUNDS_NS,
    LOCKSTEP_MODE_OFF, LOCKSTEP_MODE_UNPROTECTED, LOCKSTEP_ROLE_NAMES,
};

/// A latency bound in ns as `us` below a millisecond, else `ms` (the bounds are whole).
fn time_unit(ns: u64) -> String {
    if ns >= 1_000_000 {
        alloc::format!("{}ms", ns / 1_000_000)
    } else {
        alloc::format!("{}us", ns / 1_000)
    }
}

/// A latency bucket `[lo, hi)` in ns as `<1us`, `2-5us`, `500us-1ms` or `>=50ms`.
pub fn latency_bucket(lo: u64, hi: Option<u64>) -> String {
    match hi {
        None => alloc::format!(">={}", time_unit(lo)),
        Some(hi) if lo == 0 => alloc::format!("<{}", time_unit(hi)),
        Some(hi) => {
            let (a, b) = (time_unit(lo), time_unit(hi));
            // One unit for both where they share it: `2-5us`, not `2us-5us`.
            match (a.strip_suffix("us"), b.ends_with("us")) {
                (Some(n), true) => alloc::format!("{n}-{b}"),
                _ => match (a.strip_suffix("ms"), b.ends_with("ms")) {
                    (Some(n), true) => alloc::format!("{n}-{b}"),
                    _ => alloc::format!("{a}-{b}"),
                },
            }
        }
    }
}

/// The role bits of a CPU as words, e.g. `leader+coordinator`; `idle` when none.
pub fn role_names(bits: u8) -> String {
    let mut out = String::new();
    // Most significant role first: leader/follower before coordinator.
    for (bit, name) in LOCKSTEP_ROLE_NAMES.iter().rev() {
        if bits & bit != 0 {
            if !out.is_empty() {
                out.push('+');
            }
            out.push_str(name);
        }
    }
    let unknown = bits & !LOCKSTEP_ROLE_NAMES.iter().fold(0, |m, (b, _)| m | b);
    if unknown != 0 {
        if !out.is_empty() {
            out.push('+');
        }
        let _ = write!(out, "0x{unknown:02x}");
    }
    if out.is_empty() {
        out.push_str("idle");
    }
    out
}

/// `xl lockstep status`.
pub fn lockstep_status(s: &LockstepStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: core::fmt::Arguments<'_>| {
        let _ = writeln!(out, "{k:<23}: {v}");
    };
    let state = match s.enabled {
        LOCKSTEP_MODE_OFF => "off (unprotected)",
        LOCKSTEP_MODE_UNPROTECTED => "on, UNPROTECTED (no spare: running without redundancy)",
        _ => "on",
    };
    line("lockstep", format_args!("{state}"));
    line("nr_cpus", format_args!("{}", s.nr_cpus));
    for cpu in 0..s.nr_cpus as usize {
        if let Some(bits) = s.role(cpu) {
            line(
                &alloc::format!("cpu{cpu}"),
                format_args!("{}", role_names(bits)),
            );
        }
    }
    line("transactions", format_args!("{}", s.transactions));
    line("commits", format_args!("{}", s.commits));
    line("rollbacks", format_args!("{}", s.rollbacks));
    line("retries", format_args!("{}", s.retries));
    line("detected", format_args!("{}", s.detected));
    line("recovered", format_args!("{}", s.recovered));
    line("escalated", format_args!("{}", s.escalated));
    match s.recovery_latency_ns_mean() {
        Some(mean) => line(
            "recovery_latency_ns",
            format_args!(
                "min {} mean {} max {}",
                s.recovery_latency_ns_min, mean, s.recovery_latency_ns_max
            ),
        ),
        None => line("recovery_latency_ns", format_args!("none")),
    }
    let hist = &s.recovery_latency_hist;
    if let Some((lo, hi)) = latency_quantile_ns(hist, 1, 2) {
        let mut buckets = String::new();
        for (i, n) in hist.iter().enumerate().filter(|(_, n)| **n > 0) {
            let lo = i
                .checked_sub(1)
                .map_or(0, |j| LOCKSTEP_LATENCY_BOUNDS_NS[j]);
            let hi = LOCKSTEP_LATENCY_BOUNDS_NS.get(i).copied();
            if !buckets.is_empty() {
                buckets.push_str(", ");
            }
            let _ = write!(buckets, "{} {}", latency_bucket(lo, hi), n);
        }
        line(
            "recovery_latency_hist",
            format_args!("{} (median {})", buckets, latency_bucket(lo, hi)),
        );
    }
    let _ = writeln!(out, "{:<23}:", "injection outcomes");
    let _ = writeln!(
        out,
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "kind", "injected", "masked", "recovered", "escalated", "silent", "crashed"
    );
    for kind in LockstepKind::ALL {
        let k = s.kind(kind);
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            kind.name(),
            k.injected,
            k.masked,
            k.recovered,
            k.escalated,
            k.silent,
            k.crashed
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom0_interface::lockstep_ctl::{
        LockstepKindCounts, LOCKSTEP_CTL_VERSION, LOCKSTEP_ROLE_COORDINATOR,
        LOCKSTEP_ROLE_FOLLOWER, LOCKSTEP_ROLE_LEADER, LOCKSTEP_ROLE_RETIRED, LOCKSTEP_ROLE_SPARE,
    };

    #[test]
    fn roles() {
        assert_eq!(role_names(0), "idle");
        assert_eq!(role_names(LOCKSTEP_ROLE_LEADER), "leader");
        assert_eq!(
            role_names(LOCKSTEP_ROLE_LEADER | LOCKSTEP_ROLE_COORDINATOR),
            "leader+coordinator"
        );
        assert_eq!(role_names(LOCKSTEP_ROLE_RETIRED | 0x80), "retired+0x80");
    }

    #[test]
    fn golden_status() {
        let mut st = LockstepStatus {
            version: LOCKSTEP_CTL_VERSION,
            enabled: 1,
            nr_cpus: 4,
            transactions: 123_456,
            commits: 123_356,
            rollbacks: 100,
            retries: 100,
            detected: 100,
            recovered: 100,
            escalated: 0,
            recovery_latency_ns_min: 800,
            recovery_latency_ns_max: 5000,
            recovery_latency_ns_total: 150_000,
            ..LockstepStatus::default()
        };
        st.recovery_latency_hist[0] = 10;
        st.recovery_latency_hist[1] = 60;
        st.recovery_latency_hist[3] = 30;
        st.roles[0] = LOCKSTEP_ROLE_COORDINATOR;
        st.roles[1] = LOCKSTEP_ROLE_LEADER;
        st.roles[2] = LOCKSTEP_ROLE_FOLLOWER;
        st.roles[3] = LOCKSTEP_ROLE_SPARE;
        st.roles[4] = LOCKSTEP_ROLE_LEADER; // beyond nr_cpus: not shown
        st.kinds[LockstepKind::Effects.index()] = LockstepKindCounts {
            injected: 100,
            masked: 0,
            recovered: 100,
            escalated: 0,
            silent: 0,
            crashed: 0,
        };
        let expected = "\
lockstep               : on
nr_cpus                : 4
cpu0                   : coordinator
cpu1                   : leader
cpu2                   : follower
cpu3                   : spare
transactions           : 123456
commits                : 123356
rollbacks              : 100
retries                : 100
detected               : 100
recovered              : 100
escalated              : 0
recovery_latency_ns    : min 800 mean 1500 max 5000
recovery_latency_hist  : <1us 10, 1-2us 60, 5-10us 30 (median 1-2us)
injection outcomes     :
kind            injected    masked recovered escalated    silent   crashed
leader-reg             0         0         0         0         0         0
follower-reg           0         0         0         0         0         0
replica-state          0         0         0         0         0         0
effects              100         0       100         0         0         0
digest                 0         0         0         0         0         0
mailbox                0         0         0         0         0         0
hang                   0         0         0         0         0         0
";
        assert_eq!(lockstep_status(&st), expected);
    }

    #[test]
    fn off_and_nothing_recovered() {
        let st = LockstepStatus {
            nr_cpus: 200,
            ..LockstepStatus::default()
        };
        let out = lockstep_status(&st);
        assert!(out.starts_with(
            "lockstep               : off (unprotected)\nnr_cpus                : 200\ncpu0 "
        ));
        let escalated = LockstepStatus {
            enabled: LOCKSTEP_MODE_UNPROTECTED,
            ..st
        };
        assert!(lockstep_status(&escalated).starts_with(
            "lockstep               : on, UNPROTECTED (no spare: running without redundancy)\n"
        ));
        // Only the 32 reported CPUs are listed.
        assert!(out.contains("\ncpu31                  : idle\n"));
        assert!(!out.contains("cpu32"));
        assert!(out.contains("recovery_latency_ns    : none\n"));
        assert!(!out.contains("recovery_latency_hist"), "nothing recovered");
    }

    #[test]
    fn latency_buckets_read_as_times() {
        let name = |i: usize| {
            let lo = i
                .checked_sub(1)
                .map_or(0, |j| LOCKSTEP_LATENCY_BOUNDS_NS[j]);
            latency_bucket(lo, LOCKSTEP_LATENCY_BOUNDS_NS.get(i).copied())
        };
        let all: alloc::vec::Vec<String> = (0..16).map(name).collect();
        assert_eq!(
            all.join(" "),
            "<1us 1-2us 2-5us 5-10us 10-20us 20-50us 50-100us 100-200us 200-500us \
             500us-1ms 1-2ms 2-5ms 5-10ms 10-20ms 20-50ms >=50ms"
        );
    }
}
