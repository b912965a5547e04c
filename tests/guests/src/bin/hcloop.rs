//! `hcloop`: calls one hypercall in a loop for `scripts/profile.sh`, which samples where the
//! CPUs spend that time. The dom0 command line names the call and the count: `call=version`
//! (xen_version(XENVER_version), the default), `call=send` (EVTCHNOP_send to an unbound
//! port) or `call=yield` (SCHEDOP_yield), and `count=N` (default 10,000). Every result is
//! checked; the run prints the mean cycles per call and ends `Test result: SUCCESS` only if
//! all of them answered as Xen does.
//!
//! `inject=N` (DualVisor, `make bench`): first arms N `effects` faults through the lockstep
//! control sysctl, so the first N calls are each detected, rolled back and re-executed, and
//! prints the recoveries, their mean latency and latency buckets (median, p90, p99, how many
//! below 20 us) from the lockstep status afterwards (every result is still checked). On Xen
//! 4.17 the sysctl sub-op does not exist (`-ENOSYS`): the loop runs without faults and says
//! so.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt;

use guest_rt::lockstep_ctl::{self as ls, LockstepKind, LockstepStatus};
use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{cpu, evtchn, println, sched, version, Errno, XenResult};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// Calls when the command line names no `count=` (the runner boots every guest on Xen and
/// on DualVisor with lockstep on, where a call costs ~0.1 ms under TCG; `make profile`
/// asks for millions).
const DEFAULT_COUNT: u64 = 10_000;

fn main(si: &StartInfo) {
    let cmdline = si.cmd_line_str().unwrap_or("");
    let mut call = "version";
    let mut count = DEFAULT_COUNT;
    let mut inject = 0u32;
    for word in cmdline.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix("call=") {
            call = v;
        } else if let Some(v) = word.strip_prefix("inject=") {
            match v.parse() {
                Ok(n) => inject = n,
                Err(_) => info(format_args!("hcloop: ignoring bad inject '{}'", v)),
            }
        } else if let Some(v) = word.strip_prefix("count=") {
            match v.parse() {
                Ok(n) => count = n,
                Err(_) => info(format_args!("hcloop: ignoring bad count '{}'", v)),
            }
        }
    }
    println!("hcloop: {} x {}", count, call);
    let before = if inject > 0 { arm(inject) } else { None };
    match call {
        "version" => {
            let want = version::scalar(version::XENVER_VERSION);
            check("xen_version(XENVER_version) answers", want.is_ok());
            run(count, || version::scalar(version::XENVER_VERSION), want);
        }
        "send" => match evtchn::alloc_unbound(evtchn::DOMID_SELF, evtchn::DOMID_SELF) {
            Ok(port) => {
                run(count, || evtchn::send(port), Ok(0));
                check_eq("EVTCHNOP_close of the port", evtchn::close(port), Ok(0));
            }
            Err(e) => {
                check_eq("EVTCHNOP_alloc_unbound", Err(e), Ok(0));
            }
        },
        "yield" => run(count, sched::yield_now, Ok(0)),
        other => {
            check(
                "call= names version, send or yield",
                matches!(other, "version" | "send" | "yield"),
            );
        }
    }
    if let Some(st0) = before {
        recoveries(&st0, inject);
    }
}

/// Arms `n` effects faults; returns the lockstep status before them (`None`: not DualVisor,
/// or lockstep is not on).
fn arm(n: u32) -> Option<LockstepStatus> {
    let st = match ls::status() {
        Ok((st, _)) => st,
        Err(Errno::ENOSYS) => {
            info(format_args!(
                "hcloop: no lockstep sysctl (-ENOSYS: not DualVisor): no faults injected"
            ));
            return None;
        }
        Err(e) => {
            check_eq("lockstep status", Err::<(), Errno>(e), Ok(()));
            return None;
        }
    };
    if st.enabled != ls::LOCKSTEP_MODE_ON {
        info(format_args!(
            "hcloop: lockstep is not on (mode {}): no faults injected",
            st.enabled
        ));
        return None;
    }
    check_eq(
        "inject effects",
        ls::inject(LockstepKind::Effects, n),
        Ok(0),
    );
    Some(st)
}

/// Prints the recoveries since `st0` and checks that each of the `n` faults was recovered.
fn recoveries(st0: &LockstepStatus, n: u32) {
    let Ok((st, _)) = ls::status() else {
        check("lockstep status after the loop", false);
        return;
    };
    let (k0, k) = (
        st0.kind(LockstepKind::Effects),
        st.kind(LockstepKind::Effects),
    );
    let recovered = st.recovered - st0.recovered;
    let total_ns = st.recovery_latency_ns_total - st0.recovery_latency_ns_total;
    check_eq(
        "effects faults injected",
        k.injected - k0.injected,
        u64::from(n),
    );
    check_eq(
        "effects faults recovered",
        k.recovered - k0.recovered,
        u64::from(n),
    );
    if let Some(mean) = total_ns.checked_div(recovered) {
        println!(
            "hcloop: {} recoveries, mean recovery latency {} ns",
            recovered, mean
        );
    }
    // The loop's own recoveries: the histogram since `st0`.
    let mut hist = st.recovery_latency_hist;
    for (h, h0) in hist.iter_mut().zip(st0.recovery_latency_hist) {
        *h = h.wrapping_sub(h0);
    }
    check_eq(
        "recoveries in the latency histogram",
        hist.iter().sum::<u64>(),
        recovered,
    );
    let bucket = |num, den| Bucket(ls::latency_quantile_ns(&hist, num, den));
    if let Some(below) = ls::latency_below_ns(&hist, 20_000) {
        println!(
            "hcloop: recovery latency median {}, p90 {}, p99 {}, {} of {} below 20000 ns",
            bucket(1, 2),
            bucket(9, 10),
            bucket(99, 100),
            below,
            recovered
        );
    }
}

/// A latency bucket as hcloop prints it: `5000-10000 ns`, `>=50000000 ns` or `none`.
struct Bucket(Option<(u64, Option<u64>)>);

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((lo, Some(hi))) => write!(f, "{}-{} ns", lo, hi),
            Some((lo, None)) => write!(f, ">={} ns", lo),
            None => f.write_str("none"),
        }
    }
}

/// Makes `count` calls of `call`, checks each answered `want`, prints cycles per call.
fn run(count: u64, call: impl Fn() -> XenResult, want: XenResult) {
    let mut wrong = 0u64;
    let t0 = cpu::rdtsc();
    for _ in 0..count {
        if call() != want {
            wrong += 1;
        }
    }
    let t1 = cpu::rdtsc();
    check_eq("calls answered otherwise", wrong, 0);
    if let Some(per_call) = t1.wrapping_sub(t0).checked_div(count) {
        println!("hcloop: {} cycles per call", per_call);
    }
}
