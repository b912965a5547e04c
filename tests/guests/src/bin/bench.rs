//! `bench`: the hypercall benchmark guest. Times xen_version(XENVER_version), EVTCHNOP_send to
//! an unbound port, sched_op(SCHEDOP_yield), GNTTABOP_copy of a whole page (a grant to
//! itself into one of its frames) and mmu_update with a batch of 64 validated L1 entry
//! updates (`mmu_update64`) in batches with `rdtsc` around each batch, and
//! prints one machine-parseable line per hypercall (`BENCH <name> cycles_per_call=<median> ...`,
//! see `test_guests::bench_stats::BenchLine`) for `scripts/bench.sh`. Every call's result is
//! checked, so the run ends `Test result: SUCCESS` only if all of them answered as Xen does.
//!
//! Then, if the domain has a second vCPU (`dom0_max_vcpus=2`), the cross-CPU floor: vCPU 1,
//! down until now (so the hypercalls above were timed with one vCPU), is started and bounces
//! one cache-line-aligned atomic with vCPU 0 (`test_guests::pingpong`: no hypercall in a
//! round trip), timed the same way and printed as `BENCH pingpong cycles_per_call=<median>
//! ...`, one call being one round trip. Short untimed probes (up to three of 16 round trips,
//! as host load can keep a QEMU vCPU thread off its host CPU for a while) first check that
//! the two vCPUs run at the same time: when they share a physical CPU (DualVisor with
//! lockstep on places a domain's vCPUs on the leader CPUs, one per pair) every round trip
//! waits for a yield, which times the scheduler, not a cache line, so the line says
//! `BENCH pingpong unavailable: ...` instead, with the runstates' reason. With one vCPU an
//! `INFO` line says the ping-pong is skipped. vCPU 1 then takes itself down (`VCPUOP_down`)
//! and the run ends as before.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt;

use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{cpu, evtchn, println, sched, smp, vcpu, version, Errno, XenResult};
use test_guests::bench_stats::{per_call, summarize, tsc_khz, BenchLine, StatsError, Summary};
use test_guests::pingpong::{NoAnswer, PingPong, Pinger};

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

    pingpong(si);
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
    time_batches(name, || {
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
    });
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
}

/// Runs `batch` (which times `CALLS` calls and returns cycles per call) once to warm up and
/// then `BATCHES` times, and prints the median as the `BENCH` line of `name` (or why there is
/// none).
fn time_batches(name: &str, batch: impl FnMut() -> Result<u64, StatsError>) {
    print_line(name, median_of_batches(batch));
}

/// The summary of `BATCHES` runs of `batch` after one warm-up run.
fn median_of_batches(
    mut batch: impl FnMut() -> Result<u64, StatsError>,
) -> Result<Summary, StatsError> {
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
    match bad_batch {
        Some(e) => Err(e),
        None => summarize(&mut per_batch),
    }
}

/// Prints the `BENCH` line of `name` for `summary`, or why there is none.
fn print_line(name: &str, summary: Result<Summary, StatsError>) {
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

/// The ping-pong vCPU 0 and vCPU 1 share.
static PP: PingPong = PingPong::new();

/// Polls of the bounced line before a waiting vCPU yields (a few ms under TCG: far above a
/// cross-CPU round trip, so two vCPUs that run at the same time never yield, while two that
/// share a CPU still get to run).
const SPIN: u32 = 1 << 20;
/// Yields one round trip may take before vCPU 0 gives up on vCPU 1.
const MAX_YIELDS: u32 = 100_000;
/// Untimed round trips that decide whether vCPU 0 and vCPU 1 run at the same time.
const PROBE: usize = 16;
/// Probes before vCPU 0 concludes that they do not.
const PROBES: usize = 3;

/// Yields this vCPU (a waiting side's relax when its spin budget ran out).
fn yield_vcpu() {
    let _ = sched::yield_now();
}

/// vCPU 1: serves the ping-pong until vCPU 0 stops it, then takes itself down.
fn responder(vcpu: u32) -> ! {
    PP.serve(SPIN, yield_vcpu);
    loop {
        let _ = vcpu::down(vcpu);
    }
}

/// The cross-vCPU cache-line ping-pong (see the module documentation), with vCPU 1 started
/// only now; prints `BENCH pingpong ...`, or an `INFO` line when there is one vCPU.
fn pingpong(si: &StartInfo) {
    match vcpu::is_up(1) {
        Ok(0) => {}
        Err(Errno::ENOENT) => {
            info(format_args!(
                "pingpong skipped: one vCPU (dom0_max_vcpus=1), no second vCPU to bounce a cache line with"
            ));
            return;
        }
        other => {
            check_eq("VCPUOP_is_up(1): down until the ping-pong", other, Ok(0));
            unavailable("pingpong", format_args!("vCPU 1 answered {:?}", other));
            return;
        }
    }
    let ctx = match smp::build_context(si, 1, responder) {
        Ok(c) => c,
        Err(e) => {
            check_eq("vCPU 1's context", Err::<(), Errno>(e), Ok(()));
            unavailable("pingpong", format_args!("no context for vCPU 1"));
            return;
        }
    };
    if !check_eq("VCPUOP_initialise(1)", smp::initialise(1, &ctx), Ok(0))
        || !check_eq("VCPUOP_up(1)", vcpu::up(1), Ok(0))
    {
        unavailable("pingpong", format_args!("vCPU 1 did not come up"));
        return;
    }
    if check(
        "vCPU 1 starts serving the ping-pong",
        sched::wait_for(|| PP.ready()),
    ) {
        bounce();
    } else {
        unavailable("pingpong", format_args!("vCPU 1 never started"));
    }
    PP.stop();
    check(
        "vCPU 1 leaves the ping-pong and takes itself down (VCPUOP_down)",
        sched::wait_for(|| PP.stopped() && vcpu::is_up(1) == Ok(0)),
    );
    check_eq("vCPU 1 saw every value in order", PP.out_of_order(), 0);
}

/// What one probe (`PROBE` untimed round trips) saw.
struct Probe {
    /// Round trips that had to yield.
    yielded: usize,
    /// Median cycles of a round trip.
    median: u64,
    /// Microseconds vCPU 1 spent runnable (waiting for a physical CPU) during the probe, when
    /// the runstate answers.
    waiting_us: Option<u64>,
    /// Microseconds the probe took (system time of vCPU 0's runstate), when it answers.
    elapsed_us: Option<u64>,
}

impl Probe {
    /// Whether vCPU 1 spent a quarter of the probe or more runnable, waiting for a CPU (the
    /// hypervisor runs both vCPUs on one); `None` without runstates.
    fn vcpu1_waited(&self) -> Option<bool> {
        Some(self.waiting_us? * 4 >= self.elapsed_us?)
    }
}

/// Runs one probe and prints what it saw (each vCPU's runstate over it, the yields).
fn probe(p: &mut Pinger<'_>, relax: &mut impl FnMut()) -> Result<Probe, NoAnswer> {
    let mut cycles = [0u64; PROBE];
    let mut yielded = 0usize;
    let before = [vcpu::runstate_info(0), vcpu::runstate_info(1)];
    for slot in cycles.iter_mut() {
        let t0 = cpu::rdtsc();
        let y = p.round_trip(SPIN, relax, MAX_YIELDS)?;
        *slot = cpu::rdtsc().wrapping_sub(t0);
        yielded += usize::from(y > 0);
    }
    let after = [vcpu::runstate_info(0), vcpu::runstate_info(1)];
    let median = summarize(&mut cycles).map_or(0, |s| s.median);
    let mut waiting_us = None;
    let mut elapsed_us = None;
    for v in 0..2 {
        if let (Ok(b), Ok(a)) = (&before[v], &after[v]) {
            let d = |i: usize| a.time[i].saturating_sub(b.time[i]) / 1000;
            info(format_args!(
                "pingpong probe: vCPU {} ran {} us, runnable {} us, blocked {} us",
                v,
                d(0),
                d(1),
                d(2)
            ));
            if v == 0 {
                elapsed_us = Some(
                    a.time
                        .iter()
                        .sum::<u64>()
                        .saturating_sub(b.time.iter().sum())
                        / 1000,
                );
            } else {
                waiting_us = Some(d(1));
            }
        }
    }
    info(format_args!(
        "pingpong probe: {} of {} round trips had to yield (spin budget {} polls), median {} cycles",
        yielded, PROBE, SPIN, median
    ));
    Ok(Probe {
        yielded,
        median,
        waiting_us,
        elapsed_us,
    })
}

/// Probes (up to `PROBES` times, as host load can keep a vCPU thread off its host CPU for a
/// while) whether vCPU 0 and vCPU 1 run at the same time and, if they do, times the round
/// trips; otherwise says why there is no number.
fn bounce() {
    let mut p = Pinger::new(&PP);
    let mut relax = yield_vcpu;
    let mut last = None;
    for _ in 0..PROBES {
        match probe(&mut p, &mut relax) {
            Ok(pr) if pr.yielded * 4 <= PROBE => {
                last = None;
                break;
            }
            Ok(pr) => {
                // The hypervisor keeps vCPU 1 waiting for vCPU 0's CPU: probing again
                // cannot change that.
                let shared = pr.vcpu1_waited() == Some(true);
                last = Some(pr);
                if shared {
                    break;
                }
            }
            Err(e) => {
                check("vCPU 1 answers every probe round trip", false);
                unavailable(
                    "pingpong",
                    format_args!("vCPU 1 stopped answering: {:?}", e),
                );
                return;
            }
        }
    }
    if let Some(pr) = last {
        let why = match pr.vcpu1_waited() {
            Some(true) => "the hypervisor runs both on one physical CPU (vCPU 1 waited runnable)",
            Some(false) => {
                "the host did not run their QEMU threads at the same time (neither waited \
                 runnable in the hypervisor: host load?)"
            }
            None => "the runstates do not say why",
        };
        unavailable(
            "pingpong",
            format_args!(
                "vCPU 0 and vCPU 1 do not run at the same time: {}; {} of {} probe round trips \
                 had to yield, median {} cycles each",
                why, pr.yielded, PROBE, pr.median
            ),
        );
        return;
    }
    let mut yields = 0u64;
    let mut lost = None;
    let served_before = PP.responder_relaxes();
    let summary = median_of_batches(|| {
        let t0 = cpu::rdtsc();
        for _ in 0..CALLS {
            if lost.is_some() {
                break;
            }
            match p.round_trip(SPIN, &mut relax, MAX_YIELDS) {
                Ok(y) => yields += u64::from(y),
                Err(e) => lost = Some(e),
            }
        }
        let t1 = cpu::rdtsc();
        per_call(t0, t1, CALLS)
    });
    let served = PP.responder_relaxes() - served_before;
    if check_eq("vCPU 1 answers every timed round trip", lost, None) {
        print_line("pingpong", summary);
    } else {
        unavailable(
            "pingpong",
            format_args!("vCPU 1 stopped answering: {:?}", lost),
        );
    }
    if yields > 0 || served > 0 {
        info(format_args!(
            "pingpong: vCPU 0 yielded {} times, vCPU 1 {} times in {} round trips (a vCPU \
             thread the host kept off its CPU for longer than the spin budget)",
            yields,
            served,
            (BATCHES as u32 + 1) * CALLS
        ));
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
