//! `bench`: the hypercall benchmark guest. Times xen_version(XENVER_version), EVTCHNOP_send to
//! an unbound port, sched_op(SCHEDOP_yield), GNTTABOP_copy of a whole page (a grant to
//! itself into one of its frames) and mmu_update with a batch of 64 validated L1 entry
//! updates (`mmu_update64`) in batches with `rdtsc` around each batch, and
//! prints one machine-parseable line per hypercall (`BENCH <name> cycles_per_call=<median> ...`,
//! see `test_guests::bench_stats::BenchLine`) for `scripts/bench.sh`. Every call's result is
//! checked, so the run ends `Test result: SUCCESS` only if all of them answered as Xen does.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt;

use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{cpu, evtchn, println, sched, version, XenResult};
use test_guests::bench_stats::{per_call, summarize, tsc_khz, BenchLine};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// Timed batches per hypercall (one more, untimed, warms up first).
const BATCHES: usize = 32;
/// Calls per batch.
const CALLS: u32 = 256;

fn main(si: &StartInfo) {
    println!(
        "bench: DualVisor hypercall benchmark, {} batches x {} calls, cycles per call (median of batches)",
        BATCHES, CALLS
    );

    let probe = version::scalar(version::XENVER_VERSION);
    let (major, minor) = probe.map_or((0, 0), version::split_version);
    if check(
        "xen_version(XENVER_version) answers a version",
        matches!(probe, Ok(v) if major >= 3 && v > 0),
    ) {
        info(format_args!("hypervisor reports Xen {}.{}", major, minor));
        bench(
            "xen_version",
            "xen_version: every timed call answered the same version",
            || version::scalar(version::XENVER_VERSION),
            probe,
        );
    } else {
        unavailable("xen_version", format_args!("answered {:?}", probe));
    }

    match evtchn::alloc_unbound(evtchn::DOMID_SELF, evtchn::DOMID_SELF) {
        Ok(port) => {
            check("EVTCHNOP_alloc_unbound gives a port > 0", port > 0);
            let first = evtchn::send(port);
            if check_eq("EVTCHNOP_send to an unbound port", first, Ok(0)) {
                bench(
                    "evtchn_send",
                    "evtchn_send: every timed call returned 0",
                    || evtchn::send(port),
                    Ok(0),
                );
            } else {
                unavailable("evtchn_send", format_args!("answered {:?}", first));
            }
            check_eq("EVTCHNOP_close of the port", evtchn::close(port), Ok(0));
        }
        Err(e) => {
            check(
                "EVTCHNOP_alloc_unbound(DOMID_SELF, DOMID_SELF) succeeds",
                false,
            );
            unavailable(
                "evtchn_send",
                format_args!("alloc_unbound answered {:?}", e),
            );
        }
    }

    let first = sched::yield_now();
    if check_eq("sched_op(SCHEDOP_yield)", first, Ok(0)) {
        bench(
            "sched_yield",
            "sched_yield: every timed call returned 0",
            sched::yield_now,
            Ok(0),
        );
    } else {
        unavailable("sched_yield", format_args!("answered {:?}", first));
    }

    grant_copy(si);

    mmu_update_batch(si);

    report_tsc(si);
}

/// Sets up a grant of one of its pages to itself and times whole-page GNTTABOP_copy from the
/// grant into another page (`scripts/bench.sh` turns the cycles into MB/s).
fn grant_copy(si: &StartInfo) {
    use guest_rt::gnttab::{self as g, CopySide, Window, GTF_PERMIT_ACCESS};
    let (Some(tw), Some(src), Some(dst)) =
        (Window::new(si, 8), Window::new(si, 9), Window::new(si, 10))
    else {
        unavailable("gnttab_copy", format_args!("no windows"));
        return;
    };
    let mut frames = [0u64; 1];
    let setup = g::setup_table(0x7FF0, &mut frames);
    if !check_eq("gnttab setup_table(1)", setup, Ok(0)) {
        unavailable(
            "gnttab_copy",
            format_args!("setup_table answered {:?}", setup),
        );
        return;
    }
    let gt = match tw.into_grant_frame(frames[0]) {
        Ok(gt) => gt,
        Err((e, _)) => {
            unavailable(
                "gnttab_copy",
                format_args!("grant frame not mapped: {:?}", e),
            );
            return;
        }
    };
    check("source page filled", src.fill(|i| i as u8));
    check(
        "grant of the source page to ourselves",
        gt.set(20, GTF_PERMIT_ACCESS, 0, src.home() as u32),
    );
    let once = || {
        let (r, s) = g::copy(
            CopySide::Gref {
                dom: 0,
                gref: 20,
                offset: 0,
            },
            CopySide::Frame {
                win: &dst,
                dom: 0x7FF0,
                offset: 0,
            },
            4096,
        );
        if s == 0 {
            r
        } else {
            Err(guest_rt::Errno::EINVAL)
        }
    };
    if check_eq("GNTTABOP_copy of a page", once(), Ok(0)) {
        check("the copy arrived", dst.holds(|i| i as u8));
        bench(
            "gnttab_copy",
            "gnttab_copy: every timed copy succeeded",
            once,
            Ok(0),
        );
    } else {
        unavailable("gnttab_copy", format_args!("copy failed"));
    }
    check("revoke the grant", gt.revoke(20).is_ok());
}

/// Updates per timed `mmu_update` call.
const MMU_BATCH: usize = 64;

/// Times `mmu_update` calls of [`MMU_BATCH`] `MMU_NORMAL_PT_UPDATE`s of one L1 entry, each
/// validated in full, that leave the mapping as it was (`scripts/bench.sh` turns the cycles
/// into updates per second).
fn mmu_update_batch(si: &StartInfo) {
    use guest_rt::pvmm::{self, Scratch};
    let (Some(mut s), Some(maddr)) = (
        Scratch::new(si),
        Scratch::new(si).and_then(|s| pvmm::l1e_maddr(si, s.va())),
    ) else {
        unavailable("mmu_update64", format_args!("no scratch page L1 entry"));
        return;
    };
    if !check("the scratch page maps its own frame", s.maps_home()) {
        unavailable("mmu_update64", format_args!("scratch page not at home"));
        return;
    }
    let first = s.rewrite_batch::<MMU_BATCH>(maddr);
    if !check_eq(
        "mmu_update of 64 L1 entry updates",
        first,
        (Ok(0), MMU_BATCH as u32),
    ) {
        unavailable("mmu_update64", format_args!("answered {:?}", first));
        return;
    }
    let cell = core::cell::RefCell::new(s);
    bench(
        "mmu_update64",
        "mmu_update64: every timed batch did all 64 updates",
        || match cell.borrow_mut().rewrite_batch::<MMU_BATCH>(maddr) {
            (Ok(0), n) if n == MMU_BATCH as u32 => Ok(0),
            (Ok(_), _) => Err(guest_rt::Errno::EINVAL),
            (Err(e), _) => Err(e),
        },
        Ok(0),
    );
    check("the scratch page still works", cell.borrow().write(0, 7));
}

/// Times `CALLS` calls of `call` per batch, `BATCHES` times after one warm-up batch; checks
/// (as `every_call`) that every call returned `want`; prints the `BENCH` line.
fn bench(name: &str, every_call: &str, call: impl Fn() -> XenResult, want: XenResult) {
    let mut wrong = 0u32;
    let mut first_wrong: Option<XenResult> = None;
    let mut batch = || {
        let t0 = cpu::rdtsc();
        for _ in 0..CALLS {
            let r = call();
            if r != want {
                wrong += 1;
                first_wrong.get_or_insert(r);
            }
        }
        let t1 = cpu::rdtsc();
        per_call(t0, t1, CALLS)
    };
    let _warm_up = batch();
    let mut per_batch = [0u64; BATCHES];
    let mut bad_batch = None;
    for slot in per_batch.iter_mut() {
        match batch() {
            Ok(c) => *slot = c,
            Err(e) => {
                bad_batch.get_or_insert(e);
            }
        }
    }
    if !check(every_call, wrong == 0) {
        info(format_args!(
            "{}: {} of {} calls answered otherwise, first {:?}, want {:?}",
            name,
            wrong,
            (BATCHES as u32 + 1) * CALLS,
            first_wrong,
            want
        ));
    }
    let summary = match bad_batch {
        Some(e) => Err(e),
        None => summarize(&mut per_batch),
    };
    match summary {
        Ok(summary) => println!(
            "{}",
            BenchLine {
                name,
                summary,
                batches: BATCHES as u32,
                calls: CALLS,
            }
        ),
        Err(e) => {
            check("every batch timed with a monotonic TSC", false);
            unavailable(name, format_args!("{}", e));
        }
    }
}

/// Prints the line the runner reads when a hypercall could not be timed, with the reason.
fn unavailable(name: &str, why: fmt::Arguments<'_>) {
    println!("BENCH {} unavailable: {}", name, why);
}

/// Prints the TSC frequency from this vCPU's `vcpu_time_info` (`BENCH tsc_khz=<n>`), so the
/// runner can show times as well as cycles; a note only, not a check.
fn report_tsc(si: &StartInfo) {
    let scale = SharedInfo::map(si)
        .map_err(|e| {
            info(format_args!(
                "no TSC frequency: mapping shared_info: {:?}",
                e
            ))
        })
        .ok()
        .and_then(|s| s.vcpu_time(0));
    if let Some(t) = scale {
        match tsc_khz(t.tsc_to_system_mul, t.tsc_shift) {
            Ok(khz) => println!("BENCH tsc_khz={}", khz),
            Err(e) => info(format_args!(
                "no TSC frequency: {} (mul {:#x} shift {})",
                e, t.tsc_to_system_mul, t.tsc_shift
            )),
        }
    }
}
