//! `domu`: the domain builder end to end, run as dom0. Boot module 2 (dom0's initrd) is the
//! `demo` guest's ELF; the test builds it as a PV domU with xenguest (as `xl create` would),
//! reads its console ring until it prints its lines and powers off (VIRQ_DOM_EXC and
//! getdomaininfo's shutdown reason), destroys it and checks that the free memory is back
//! exactly. Builds that must fail — a corrupt kernel, more memory than is free — leave no
//! domain and no frame behind.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use dom0_interface::domctl::{XenDomctlGetdomaininfo, XEN_DOMINF_SHUTDOWN};
use domu_guest::console::{drain, take_lines};
use guest_rt::evtchn::{self, VIRQ_DOM_EXC};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::{boot_module, StartInfo};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, sched};
use tools::builder_plan::Step;
use tools::xlcfg::DomainConfig;
use xenguest::build::StepError;
use xenguest::{
    create_pv, destroy_domain, domain_info, domain_list, map_foreign, physinfo, BuildRequest,
};

guest_rt::entry!(main);

/// The domain builder's heap.
#[global_allocator]
static HEAP: guest_rt::block_heap::BlockHeap<{ 16 << 20 }> = guest_rt::block_heap::BlockHeap::new();

/// Lines the demo prints before powering off.
const LINES: u64 = 3;
/// How long (system time) the domU may take to print its lines and power off.
const RUN_LIMIT_NS: u64 = 120_000_000_000;
/// How long destroyed domains may take to disappear and give their memory back.
const SETTLE_NS: u64 = 10_000_000_000;
/// `-ESRCH`.
const ESRCH: i32 = -3;

fn config(name: &str, memory_mib: u64, extra: &str) -> DomainConfig {
    let text = format!(
        "name = \"{name}\"\ntype = \"pv\"\nkernel = \"/boot/demo.elf\"\nmemory = {memory_mib}\n\
         vcpus = 1\non_poweroff = \"destroy\"\nextra = \"{extra}\"\n"
    );
    match DomainConfig::parse("domu.cfg", &text) {
        Ok(p) => p.config,
        Err(e) => guest_rt::test::error(format_args!("config: {e:?}")),
    }
}

fn free_pages() -> u64 {
    match physinfo() {
        Ok(p) => p.free_pages,
        Err(e) => guest_rt::test::error(format_args!("physinfo: {e}")),
    }
}

fn domains() -> Vec<XenDomctlGetdomaininfo> {
    domain_list(0, 16).unwrap_or_default()
}

fn main(si: &StartInfo) {
    println!("domu: the PV domain builder, run as dom0");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("map shared_info: {e}")),
    };
    let now = || shared.system_time_now(0).unwrap_or(0);
    let Some(kernel) = boot_module() else {
        guest_rt::test::error(format_args!(
            "no boot module 2: pass the demo guest's ELF as dom0's initrd"
        ));
    };
    info(format_args!("domU kernel: {} bytes", kernel.len()));
    let free0 = free_pages();
    info(format_args!("free pages before: {free0}"));
    check_eq("only dom0 exists", domains().len(), 1);

    // Wait until memory settles back to `want` (destroyed domains are reclaimed by Xen,
    // possibly a little after the domctl returned).
    let settle = |want: u64| {
        let t0 = now();
        let mut f = free_pages();
        while f != want && now() < t0 + SETTLE_NS {
            // Block a little: destroyed domains are freed once every CPU has been idle.
            let _ = sched::poll(&[], now() + 10_000_000);
            f = free_pages();
        }
        if f != want {
            for d in domains() {
                info(format_args!(
                    "domain {} flags {:#x} tot_pages {}",
                    d.domain, d.flags, d.tot_pages
                ));
            }
        }
        f
    };

    // A corrupt kernel: the build fails loading it and rolls back.
    let mut bad = kernel.to_vec();
    bad[..4].copy_from_slice(b"\x7fELG");
    let cfg = config("domu-bad-elf", 8, "");
    let r = create_pv(&BuildRequest {
        config: &cfg,
        kernel: &bad,
        ramdisk: None,
        paused: false,
    });
    match &r {
        Err(e) => {
            info(format_args!("corrupt kernel: {e}"));
            check_eq(
                "corrupt kernel: fails loading the kernel",
                e.step,
                Step::LoadKernel,
            );
            check(
                "corrupt kernel: an ELF error",
                matches!(e.error, StepError::Image(_)),
            );
            check(
                "corrupt kernel: rollback complete",
                e.undo_errors.is_empty(),
            );
        }
        Ok(b) => {
            check("corrupt kernel: build refused", false);
            let _ = destroy_domain(b.domid);
        }
    }
    check_eq("corrupt kernel: no domain left", domains().len(), 1);
    check_eq("corrupt kernel: no frame leaked", settle(free0), free0);

    // More memory than is free: populate_physmap fails, everything is given back.
    let too_big = ((free0 * 4096) >> 20) + 16;
    let cfg = config("domu-too-big", too_big, "");
    let r = create_pv(&BuildRequest {
        config: &cfg,
        kernel,
        ramdisk: None,
        paused: false,
    });
    match &r {
        Err(e) => {
            info(format_args!("{too_big} MiB: {e}"));
            check_eq("too big: fails populating", e.step, Step::PopulateMemory);
            check("too big: rollback complete", e.undo_errors.is_empty());
        }
        Ok(b) => {
            check("too big: build refused", false);
            let _ = destroy_domain(b.domid);
        }
    }
    check_eq("too big: no domain left", domains().len(), 1);
    check_eq("too big: no frame leaked", settle(free0), free0);

    // The first domain that runs makes Xen allocate what it keeps for later domains
    // (observed on Xen 4.17: one page); from then on every build, run and destroy gives
    // back exactly what it took.
    run_demo(&shared, &now, kernel, 1);
    check_eq("after destroy: only dom0", domains().len(), 1);
    let free1 = settle(free0);
    info(format_args!(
        "free pages after the first domU: {free1} (before: {free0})"
    ));
    check(
        "the first domU gave back all but Xen's own allocations",
        free1 + 8 >= free0,
    );
    run_demo(&shared, &now, kernel, 2);
    check_eq("after destroy: only dom0", domains().len(), 1);
    check_eq(
        "after the second domU: free pages back exactly",
        settle(free1),
        free1,
    );
}

fn run_demo(shared: &SharedInfo, now: &dyn Fn() -> u64, kernel: &[u8], round: u32) {
    let Ok(exc) = evtchn::bind_virq(VIRQ_DOM_EXC, 0) else {
        check("bind_virq(VIRQ_DOM_EXC)", false);
        return;
    };
    shared.clear_evtchn_pending(exc);
    let extra = format!("count={LINES} period_ms=100");
    let cfg = config(&format!("domu-demo{round}"), 8, &extra);
    let built = match create_pv(&BuildRequest {
        config: &cfg,
        kernel,
        ramdisk: None,
        paused: false,
    }) {
        Ok(b) => b,
        Err(e) => {
            info(format_args!("build: {e}"));
            check("demo domU built", false);
            return;
        }
    };
    info(format_args!(
        "built domain {} console mfn {:#x} port {}",
        built.domid, built.console_mfn, built.console_port
    ));
    check("demo domU built", built.domid != 0);
    info(format_args!("free after build: {}", free_pages()));
    check_eq("two domains", domains().len(), 2);
    let con = evtchn::bind_interdomain(built.domid, built.console_port);
    check("bind_interdomain to the console port", con.is_ok());
    let con = con.unwrap_or(0);

    let mut ring = match map_foreign(built.domid, built.console_mfn) {
        Ok(p) => p,
        Err(e) => {
            check_eq("map the console ring", Err::<(), i32>(e), Ok(()));
            let _ = destroy_domain(built.domid);
            return;
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut all = String::new();
    let mut exc_seen = false;
    let mut shutdown = None;
    let t0 = now();
    while now() < t0 + RUN_LIMIT_NS {
        let _ = sched::poll(&[con, exc], now() + 50_000_000);
        shared.clear_evtchn_pending(con);
        exc_seen |= shared.clear_evtchn_pending(exc);
        drain(ring.as_mut_slice(), &mut pending);
        for line in take_lines(&mut pending) {
            // Echo without the guest's own verdict wording (this test prints its own).
            println!(
                "domu: [dom{}] {}",
                built.domid,
                line.replace("Test result:", "verdict:")
            );
            all.push_str(&line);
            all.push('\n');
        }
        if let Ok(i) = domain_info(built.domid) {
            if i.flags & XEN_DOMINF_SHUTDOWN != 0 {
                shutdown = Some(i.shutdown_code());
                // One more pass empties the ring of anything written just before.
                drain(ring.as_mut_slice(), &mut pending);
                for line in take_lines(&mut pending) {
                    all.push_str(&line);
                    all.push('\n');
                }
                break;
            }
        }
    }
    exc_seen = exc_seen || domu_guest::peer::event_arrives(shared, now, exc);
    drop(ring);
    let want = format!("demo: domain {} line {LINES} time ", built.domid);
    check(
        "the domU printed its lines on its console ring",
        all.contains(&want),
    );
    check(
        "the domU's own checks passed",
        all.contains("Test result: SUCCESS"),
    );
    check_eq("shutdown reason poweroff", shutdown, Some(0));
    check("VIRQ_DOM_EXC fired", exc_seen);
    info(format_args!("free after run: {}", free_pages()));
    let _ = evtchn::close(con);
    let _ = evtchn::close(exc);
    check_eq("destroydomain", destroy_domain(built.domid), Ok(()));
    let t1 = now();
    let mut gone = domain_info(built.domid).err();
    while gone != Some(ESRCH) && now() < t1 + SETTLE_NS {
        let _ = sched::yield_now();
        gone = domain_info(built.domid).err();
    }
    check_eq("destroyed domain is gone", gone, Some(ESRCH));
    info(format_args!("free after destroy: {}", free_pages()));
}
