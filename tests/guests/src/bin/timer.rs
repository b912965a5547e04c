//! `timer`: time and timers on one domain. vcpu_time_info (version seqlock, scale, monotonic
//! system time), the shared_info wall clock, the default 100 Hz periodic timer of a PV vCPU,
//! set_timer_op (arm, cancel, past and huge deadlines), VCPUOP single-shot and periodic timers
//! with their errors, runstate info and the runstate area, the secondary time area
//! (VCPUOP_register_vcpu_time_memory_area: the copy, its updates, unregistering, errors),
//! vcpu_op errors, and — with two or more vCPUs — vCPU 1: is_up/up/down before and after
//! VCPUOP_initialise, register_vcpu_info on it (and its refusal of frames not ours or not
//! writable), its time area, and a start, stop and restart of vCPU 1 running its own code.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_rt::evtchn::{self, VIRQ_TIMER};
use guest_rt::hypercall::BadPtr;
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::vcpu::{self, VCPU_SSHOTTMR_FUTURE};
use guest_rt::{println, pvmm, sched, smp, time_area, Errno};

#[path = "timer/time_areas.rs"]
mod time_areas;

guest_rt::entry!(main);
guest_rt::no_heap!();

/// 1 ms in ns.
const MS: u64 = 1_000_000;
/// How long a poll waits for a timer that should fire (generous: TCG can be slow).
const FIRE_WAIT: u64 = 2_000 * MS;
/// How long a poll waits to show a timer does not fire.
const QUIET_WAIT: u64 = 30 * MS;
/// How far ahead the deadline that is cancelled again lies.
const CANCEL_WINDOW: u64 = 200 * MS;
/// `RUNSTATE_running`.
const RUNNING: i32 = 0;
/// `RUNSTATE_offline`.
const OFFLINE: i32 = 3;

fn main(si: &StartInfo) {
    println!("timer: DualVisor PV test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    time_info(&shared);
    wallclock(&shared);
    let port = match evtchn::bind_virq(VIRQ_TIMER, 0) {
        Ok(p) => p,
        Err(e) => guest_rt::test::error(format_args!("bind_virq(VIRQ_TIMER, 0): {}", e)),
    };
    default_periodic(&shared, port);
    set_timer_op(&shared, port);
    singleshot(&shared, port);
    periodic(&shared, port);
    runstate(&shared);
    time_areas::vcpu0(&shared, port);
    vcpu_op_errors();
    match vcpu::is_up(1) {
        Ok(0) => secondary(si, &shared),
        Err(Errno::ENOENT) => info(format_args!("one vCPU: vCPU 1 checks skipped")),
        other => {
            check_eq("VCPUOP_is_up(1) before any start", other, Ok(0));
        }
    }
    let _ = vcpu::set_timer_op(0);
    let _ = evtchn::close(port);
}

/// Current system time of vCPU 0, or 0 if unreadable.
fn now(shared: &SharedInfo) -> u64 {
    shared.system_time_now(0).unwrap_or(0)
}

/// Clears `port`, runs `arm`, polls until `port` is pending or `wait` ns passed; returns
/// whether it fired.
fn fires(shared: &SharedInfo, port: u32, wait: u64, arm: impl FnOnce(u64)) -> bool {
    shared.clear_evtchn_pending(port);
    let t = now(shared);
    arm(t);
    let _ = sched::poll(&[port], now(shared) + wait);
    shared.clear_evtchn_pending(port)
}

fn time_info(shared: &SharedInfo) {
    let Some(t) = shared.vcpu_time(0) else {
        check("vcpu_info[0].time readable", false);
        return;
    };
    info(format_args!(
        "vcpu_time_info: version {} tsc {} system {} mul {:#x} shift {} flags {:#x}",
        t.version, t.tsc_timestamp, t.system_time, t.tsc_to_system_mul, t.tsc_shift, t.flags
    ));
    check(
        "vcpu_time_info version is even",
        t.version.is_multiple_of(2),
    );
    check("vcpu_time_info version was updated", t.version > 0);
    check(
        "tsc_to_system_mul is a 32.32 fraction >= 0.5",
        t.tsc_to_system_mul >= 1 << 31,
    );
    check(
        "tsc_shift is in -32..=32",
        (-32..=32).contains(&t.tsc_shift),
    );
    let mut prev = now(shared);
    let mut mono = prev > 0;
    for _ in 0..2000 {
        let n = now(shared);
        mono &= n >= prev;
        prev = n;
    }
    check("system time is > 0 and never goes backwards", mono);
}

fn wallclock(shared: &SharedInfo) {
    let (version, sec, nsec) = shared.wallclock();
    info(format_args!(
        "wallclock: version {version} sec {sec} nsec {nsec}"
    ));
    check("wc_version is even", version.is_multiple_of(2));
    check("wc_nsec < 1e9", nsec < 1_000_000_000);
    check("wallclock is after 2020", sec > 1_577_836_800);
}

fn default_periodic(shared: &SharedInfo, port: u32) {
    check(
        "a PV vCPU has a periodic timer by default (VIRQ_TIMER fires unarmed)",
        fires(shared, port, FIRE_WAIT, |_| {}),
    );
    check_eq(
        "VCPUOP_stop_periodic_timer(0)",
        vcpu::stop_periodic_timer(0),
        Ok(0),
    );
    check(
        "  ... and then nothing fires",
        !fires(shared, port, QUIET_WAIT, |_| {}),
    );
}

fn set_timer_op(shared: &SharedInfo, port: u32) {
    let mut deadline = 0;
    let fired = fires(shared, port, FIRE_WAIT, |t| {
        deadline = t + MS;
        check_eq(
            "set_timer_op(now + 1 ms)",
            vcpu::set_timer_op(deadline),
            Ok(0),
        );
    });
    check("  ... fires VIRQ_TIMER", fired);
    check("  ... not before its deadline", now(shared) >= deadline);
    check(
        "set_timer_op(now + 200 ms) then set_timer_op(0): cancelled",
        // The window is wide so the cancel surely lands first however slow the two calls
        // are (no timing assumption); the wait outlasts the cancelled deadline.
        !fires(shared, port, 2 * CANCEL_WINDOW, |t| {
            let _ = vcpu::set_timer_op(t + CANCEL_WINDOW);
            let _ = vcpu::set_timer_op(0);
        }),
    );
    check(
        "set_timer_op(a past deadline) fires at once",
        fires(shared, port, FIRE_WAIT, |t| {
            check_eq("set_timer_op(now / 2)", vcpu::set_timer_op(t / 2), Ok(0));
        }),
    );
    check(
        "set_timer_op(now + 2^51 ns) is clamped and still fires (Xen: in 100 ms)",
        fires(shared, port, FIRE_WAIT, |t| {
            check_eq(
                "set_timer_op(huge)",
                vcpu::set_timer_op(t + (1 << 51)),
                Ok(0),
            );
        }),
    );
    check(
        "a fired single-shot timer does not fire again",
        !fires(shared, port, QUIET_WAIT, |_| {}),
    );
}

fn singleshot(shared: &SharedInfo, port: u32) {
    // Xen 4.17 ignores VCPU_SSHOTTMR_future (older Xen answered -ETIME): the past deadline is
    // accepted and fires at once.
    check(
        "set_singleshot_timer(past, VCPU_SSHOTTMR_future): accepted, fires at once",
        fires(shared, port, FIRE_WAIT, |t| {
            let r = vcpu::set_singleshot_timer(0, t / 2, VCPU_SSHOTTMR_FUTURE);
            check_eq("  ... returns 0, not -ETIME", r, Ok(0));
        }),
    );
    check(
        "set_singleshot_timer(now + 1 ms, future) fires",
        fires(shared, port, FIRE_WAIT, |t| {
            let r = vcpu::set_singleshot_timer(0, t + MS, VCPU_SSHOTTMR_FUTURE);
            check_eq("  ... returns 0", r, Ok(0));
        }),
    );
    check(
        "set_singleshot_timer(past, no flags) fires at once",
        fires(shared, port, FIRE_WAIT, |t| {
            let r = vcpu::set_singleshot_timer(0, t / 2, 0);
            check_eq("  ... returns 0", r, Ok(0));
        }),
    );
    check(
        "set_singleshot_timer(now + 200 ms) then stop_singleshot_timer: cancelled",
        !fires(shared, port, 2 * CANCEL_WINDOW, |t| {
            let _ = vcpu::set_singleshot_timer(0, t + CANCEL_WINDOW, 0);
            check_eq(
                "stop_singleshot_timer(0)",
                vcpu::stop_singleshot_timer(0),
                Ok(0),
            );
        }),
    );
    check_eq(
        "set_singleshot_timer with a NULL argument -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_SET_SINGLESHOT_TIMER, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
}

fn periodic(shared: &SharedInfo, port: u32) {
    check_eq(
        "set_periodic_timer(999999 ns) -> -EINVAL (minimum 1 ms)",
        vcpu::set_periodic_timer(0, MS - 1),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_periodic_timer(2^62 ns) -> -EINVAL (above STIME_DELTA_MAX)",
        vcpu::set_periodic_timer(0, 1 << 62),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_periodic_timer(2^62 - 1 ns) is accepted",
        vcpu::set_periodic_timer(0, (1 << 62) - 1),
        Ok(0),
    );
    check(
        "set_periodic_timer(1 ms) fires",
        fires(shared, port, FIRE_WAIT, |_| {
            check_eq("  ... returns 0", vcpu::set_periodic_timer(0, MS), Ok(0));
        }),
    );
    check(
        "  ... and fires again",
        fires(shared, port, FIRE_WAIT, |_| {}),
    );
    check_eq(
        "stop_periodic_timer(0)",
        vcpu::stop_periodic_timer(0),
        Ok(0),
    );
    check(
        "  ... then stays quiet",
        !fires(shared, port, QUIET_WAIT, |_| {}),
    );
    check_eq(
        "set_periodic_timer with a NULL argument -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_SET_PERIODIC_TIMER, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
}

fn runstate(shared: &SharedInfo) {
    match vcpu::runstate_info(0) {
        Ok(r) => {
            info(format_args!(
                "runstate(0): state {} entry {} time {:?}",
                r.state, r.state_entry_time, r.time
            ));
            check_eq("runstate(0).state is running", r.state, RUNNING);
            check("runstate(0): time running > 0", r.time[0] > 0);
            check(
                "runstate(0): entered no later than now",
                r.state_entry_time <= now(shared),
            );
            check(
                "runstate(0): state times add up to no more than now",
                r.time.iter().sum::<u64>() <= now(shared),
            );
        }
        Err(e) => {
            check_eq("VCPUOP_get_runstate_info(0)", Err::<(), _>(e), Ok(()));
        }
    }
    check_eq(
        "get_runstate_info with a NULL argument -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_GET_RUNSTATE_INFO, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
    check_eq(
        "register_runstate_memory_area(0)",
        smp::register_runstate_area(0),
        Ok(0),
    );
    let a = smp::runstate_area(0).unwrap_or_default();
    check_eq("  ... area written: state running", a.state, RUNNING);
    check("  ... area written: time running > 0", a.time[0] > 0);
    check_eq(
        "register_runstate_memory_area with a NULL argument -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
    check_eq(
        "register_runstate_memory_area at Xen's range -> -EFAULT",
        smp::register_runstate_area_at(0, BadPtr::HYPERVISOR),
        Err(Errno::EFAULT),
    );
    check_eq(
        "register_runstate_memory_area starting below the canonical hole, ending in it -> 0",
        smp::register_runstate_area_straddling(0),
        Ok(0),
    );
    // Put the area back where it can be written.
    check_eq(
        "register_runstate_memory_area(0) again",
        smp::register_runstate_area(0),
        Ok(0),
    );
}

fn vcpu_op_errors() {
    check_eq("VCPUOP_is_up(0)", vcpu::is_up(0), Ok(1));
    check_eq("VCPUOP_up(0) on a running vCPU", vcpu::up(0), Ok(0));
    for (name, id) in [
        ("VCPUOP_is_up(4096) -> -ENOENT", 4096u32),
        ("VCPUOP_is_up(u32::MAX) -> -ENOENT", u32::MAX),
    ] {
        check_eq(name, vcpu::is_up(id), Err(Errno::ENOENT));
    }
    check_eq(
        "VCPUOP_stop_periodic_timer(4096) -> -ENOENT",
        vcpu::stop_periodic_timer(4096),
        Err(Errno::ENOENT),
    );
    check_eq(
        "unknown VCPUOP 99 -> -ENOSYS",
        vcpu::op_with_bad_ptr(99, 0, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "VCPUOP_get_physid on an unpinned vCPU -> -EINVAL",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_GET_PHYSID, 0, BadPtr::NULL),
        Err(Errno::EINVAL),
    );
    check_eq(
        "VCPUOP_initialise(0) with a NULL context -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_INITIALISE, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
}

/// How far vCPU 1 got: incremented before each of its VCPUOP_down calls.
static AP_STAGE: AtomicU32 = AtomicU32::new(0);
/// vCPU 1's system time as it saw it (from its relocated vcpu_info).
static AP_TIME: AtomicU64 = AtomicU64::new(0);
/// Offset of vCPU 1's relocated vcpu_info in guest-rt's page.
const INFO_OFFSET: u32 = 64;

/// vCPU 1's code: report, go down, and report again when brought back up.
fn ap_main(vcpu: u32) -> ! {
    if let Some(t) = smp::relocated_vcpu_time(INFO_OFFSET) {
        AP_TIME.store(t.system_time, Ordering::SeqCst);
    }
    loop {
        AP_STAGE.fetch_add(1, Ordering::SeqCst);
        let _ = vcpu::down(vcpu);
    }
}

fn secondary(si: &StartInfo, shared: &SharedInfo) {
    match vcpu::runstate_info(1) {
        Ok(r) => check_eq("runstate(1).state before start: offline", r.state, OFFLINE),
        Err(e) => check_eq("get_runstate_info(1)", Err::<i32, _>(e), Ok(OFFLINE)),
    };
    check_eq(
        "set_singleshot_timer on another vCPU -> -EINVAL",
        vcpu::set_singleshot_timer(1, now(shared) + MS, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "stop_singleshot_timer on another vCPU -> -EINVAL",
        vcpu::stop_singleshot_timer(1),
        Err(Errno::EINVAL),
    );
    check_eq(
        "VCPUOP_up(1) before VCPUOP_initialise -> -EINVAL",
        vcpu::up(1),
        Err(Errno::EINVAL),
    );
    check_eq("VCPUOP_down(1) while down", vcpu::down(1), Ok(0));
    check_eq("VCPUOP_is_up(1) still 0", vcpu::is_up(1), Ok(0));
    check_eq(
        "VCPUOP_initialise(1) with a NULL context -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_INITIALISE, 1, BadPtr::NULL),
        Err(Errno::EFAULT),
    );

    let Some(area) = smp::vcpu_info_page(si) else {
        check("frame of guest-rt's vcpu_info page", false);
        return;
    };
    check_eq(
        "register_vcpu_info(1, offset 4033: crosses the page) -> -ENXIO",
        smp::register_vcpu_info(1, area.mfn, 4096 - 63),
        Err(Errno::ENXIO),
    );
    check_eq(
        "register_vcpu_info(1, offset 4: misaligned) -> -ENXIO",
        smp::register_vcpu_info(1, area.mfn, 4),
        Err(Errno::ENXIO),
    );
    foreign_vcpu_info(si);
    check_eq(
        "register_vcpu_info(1, offset 64)",
        smp::register_vcpu_info(1, area.mfn, INFO_OFFSET),
        Ok(0),
    );
    check_eq(
        "  ... a second registration -> -EINVAL",
        smp::register_vcpu_info(1, area.mfn, 128),
        Err(Errno::EINVAL),
    );
    check_eq(
        "  ... Xen marks every event selector pending in the new place",
        smp::relocated_pending_sel(INFO_OFFSET),
        Some(u64::MAX),
    );
    check_eq(
        "  ... and copies the old upcall mask",
        smp::relocated_upcall_mask(INFO_OFFSET),
        shared.upcall_mask(1),
    );
    check_eq(
        "register_runstate_memory_area(1)",
        smp::register_runstate_area(1),
        Ok(0),
    );
    check_eq(
        "  ... area says offline",
        smp::runstate_area(1).map(|r| r.state),
        Some(OFFLINE),
    );
    check_eq(
        "register_vcpu_time_memory_area(1) before vCPU 1 is initialised",
        time_area::register(1, 1),
        Ok(0),
    );
    check(
        "  ... the area holds vCPU 1's time (version > 0) as its vcpu_info does",
        time_area::read(1)
            .is_some_and(|a| a.version > 0 && Some(a) == smp::relocated_vcpu_time(INFO_OFFSET)),
    );

    let ctx = match smp::build_context(si, 1, ap_main) {
        Ok(c) => c,
        Err(e) => {
            check_eq("building vCPU 1's context", Err::<(), _>(e), Ok(()));
            return;
        }
    };
    initialise_refusals(si, &ctx);
    check_eq("VCPUOP_initialise(1)", smp::initialise(1, &ctx), Ok(0));
    check_eq(
        "  ... a second VCPUOP_initialise(1) -> -EEXIST",
        smp::initialise(1, &ctx),
        Err(Errno::EEXIST),
    );
    check_eq("VCPUOP_is_up(1) after initialise", vcpu::is_up(1), Ok(0));
    check_eq("VCPUOP_up(1)", vcpu::up(1), Ok(0));
    check(
        "vCPU 1 runs its code",
        sched::wait_for(|| AP_STAGE.load(Ordering::SeqCst) >= 1),
    );
    check(
        "vCPU 1 takes itself down (VCPUOP_down on itself)",
        sched::wait_for(|| vcpu::is_up(1) == Ok(0)),
    );
    let t = smp::relocated_vcpu_time(INFO_OFFSET).unwrap_or_default();
    check(
        "vCPU 1's relocated vcpu_info carries its time (even version, system time > 0)",
        t.version.is_multiple_of(2) && t.system_time > 0,
    );
    check(
        "vCPU 1 read a running system time there",
        AP_TIME.load(Ordering::SeqCst) > 0,
    );
    // is_up drops when vCPU 1 asks to go down; its runstate turns offline only once it is
    // descheduled, a moment later (on Xen as on DualVisor): wait for that, bounded.
    check(
        "vCPU 1 is descheduled after VCPUOP_down",
        sched::wait_for(|| vcpu::runstate_info(1).is_ok_and(|g| g.state == OFFLINE)),
    );
    let t1 = time_area::read(1);
    info(format_args!("time area(1) after vCPU 1 ran: {:?}", t1));
    check(
        "vCPU 1's time area holds its vcpu_info's time after it ran",
        t1.is_some() && t1 == smp::relocated_vcpu_time(INFO_OFFSET),
    );
    // The registered area is written at the same deschedule; wait for it the same way.
    check(
        "vCPU 1's runstate area shows it offline",
        sched::wait_for(|| smp::runstate_area(1).is_some_and(|r| r.state == OFFLINE)),
    );
    let r = smp::runstate_area(1).unwrap_or_default();
    info(format_args!(
        "runstate area(1): state {} entry {} time {:?}",
        r.state, r.state_entry_time, r.time
    ));
    check_eq("runstate area(1) after down: offline", r.state, OFFLINE);
    match vcpu::runstate_info(1) {
        Ok(g) => {
            info(format_args!(
                "runstate(1): state {} entry {} time {:?}",
                g.state, g.state_entry_time, g.time
            ));
            check_eq("runstate(1) after down: offline", g.state, OFFLINE);
            // Xen 4.17 under QEMU TCG reports no running time for this short run (the pCPU
            // clocks differ): only the total is checked.
            check(
                "runstate(1): state times add up to no more than now",
                g.time.iter().sum::<u64>() <= now(shared),
            );
        }
        Err(e) => {
            check_eq("get_runstate_info(1)", Err::<(), _>(e), Ok(()));
        }
    }
    check_eq("VCPUOP_up(1) again", vcpu::up(1), Ok(0));
    check(
        "vCPU 1 resumes after its VCPUOP_down and runs on",
        sched::wait_for(|| AP_STAGE.load(Ordering::SeqCst) >= 2),
    );
    check(
        "  ... and goes down again",
        sched::wait_for(|| vcpu::is_up(1) == Ok(0)),
    );
}

/// register_vcpu_info(1) refuses frames the hypervisor must not write into for us, with
/// -EINVAL (Xen's `get_page_from_gfn` and `get_page_type(PGT_writable_page)`): one that does
/// not exist, a RAM frame we do not own, our own L4 page table; vCPU 1 keeps none.
fn foreign_vcpu_info(si: &StartInfo) {
    check_eq(
        "register_vcpu_info(1, a frame that does not exist) -> -EINVAL",
        smp::register_vcpu_info(1, 1 << 40, INFO_OFFSET),
        Err(Errno::EINVAL),
    );
    let not_ours = pvmm::low_frame_not_ours(si);
    check(
        "a RAM frame below 640 KiB that is not ours",
        not_ours.is_some(),
    );
    if let Some(m) = not_ours {
        check_eq(
            "register_vcpu_info(1, a RAM frame that is not ours) -> -EINVAL",
            smp::register_vcpu_info(1, m, INFO_OFFSET),
            Err(Errno::EINVAL),
        );
    }
    let root = pvmm::root_mfn(si);
    check("our L4's frame", root.is_some());
    if let Some(root) = root {
        check_eq(
            "register_vcpu_info(1, our L4 page table) -> -EINVAL",
            smp::register_vcpu_info(1, root, INFO_OFFSET),
            Err(Errno::EINVAL),
        );
    }
}

/// VCPUOP_initialise(1) with `ctx` changed as each case says is refused with -EINVAL and
/// leaves vCPU 1 uninitialised: a GDT frame that is mapped writable (the context's own
/// stack page), too many GDT entries, an LDT base in the non-canonical hole (even with no
/// entries), user mode without a user page table.
fn initialise_refusals(si: &StartInfo, ctx: &[u8; smp::VCPU_GUEST_CONTEXT_SIZE]) {
    use smp::ctx_off::{FLAGS, GDT_ENTS, GDT_FRAMES, LDT_BASE};
    let stack_frame = smp::virt_to_mfn(si, ctx.as_ptr() as u64).unwrap_or(0);
    let cases: [(&str, &[(usize, u64)]); 4] = [
        (
            "a writable GDT frame",
            &[(GDT_FRAMES, stack_frame), (GDT_ENTS, 16)],
        ),
        ("too many GDT entries", &[(GDT_ENTS, 14 * 512 + 1)]),
        ("LDT base in the hole", &[(LDT_BASE, 0x0000_8000_0000_0000)]),
        ("user mode, no user page table", &[(FLAGS, 0)]),
    ];
    for (what, changes) in cases {
        let mut bad = *ctx;
        for &(at, v) in changes {
            bad[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        check_eq(what, smp::initialise(1, &bad), Err(Errno::EINVAL));
        check_eq(
            "  ... vCPU 1 still not initialised (up -> -EINVAL)",
            vcpu::up(1),
            Err(Errno::EINVAL),
        );
    }
}
