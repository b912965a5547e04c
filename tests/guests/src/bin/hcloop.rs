//! `hcloop`: calls one hypercall in a loop for `scripts/profile.sh`, which samples where the
//! CPUs spend that time. The dom0 command line names the call and the count: `call=version`
//! (xen_version(XENVER_version), the default), `call=send` (EVTCHNOP_send to an unbound
//! port) or `call=yield` (SCHEDOP_yield), and `count=N` (default 10,000). Every result is
//! checked; the run prints the mean cycles per call and ends `Test result: SUCCESS` only if
//! all of them answered as Xen does.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{cpu, evtchn, println, sched, version, XenResult};

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
    for word in cmdline.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix("call=") {
            call = v;
        } else if let Some(v) = word.strip_prefix("count=") {
            match v.parse() {
                Ok(n) => count = n,
                Err(_) => info(format_args!("hcloop: ignoring bad count '{}'", v)),
            }
        }
    }
    println!("hcloop: {} x {}", count, call);
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
