//! `demo`: the demo PV guest dom0 starts from its initrd (`/boot/demo.elf`). Every period it
//! prints a line with its domain id, a counter and the system time, and keeps the
//! hypervisor busy: xen_version, an event sent to itself (an IPI port), sched_op yield, and
//! set_timer_op for the next line (waited for with sched_op poll). `count=N` on its command
//! line powers it off after N lines with the usual `Test result:` line (each of those
//! hypercalls is checked); `count=0` runs until the domain is destroyed; `crash=1` ends the
//! counted run with `SHUTDOWN_crash` instead (for xl.cfg's `on_crash`).
//!
//! As a domU its console is the ring from start_info (guest-rt); booted as dom0 it runs 3
//! lines 100 ms apart as a self-test, so the oracle checks it on Xen 4.17 as well.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::evtchn::{self, Status, DOMID_SELF, VIRQ_TIMER};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::check;
use guest_rt::{println, sched, vcpu, version};
use test_guests::demo_args::DemoArgs;

guest_rt::entry!(main);
guest_rt::no_heap!();

/// This domain's id: the remote end Xen records for an unbound port offered to DOMID_SELF.
fn own_domid() -> Option<u16> {
    let port = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).ok()?;
    let st = evtchn::status(port);
    let _ = evtchn::close(port);
    match st {
        Ok((Status::Unbound { dom }, _)) => Some(dom),
        _ => None,
    }
}

fn main(si: &StartInfo) {
    let dom0 = si.is_initdomain();
    let args = DemoArgs::parse(
        si.cmd_line_str().unwrap_or(""),
        if dom0 { 3 } else { 0 },
        if dom0 { 100 } else { 1000 },
    );
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("map shared_info: {e}")),
    };
    let domid = own_domid();
    check(
        "own domain id from an unbound port's status",
        domid.is_some(),
    );
    let domid = domid.unwrap_or(u16::MAX);
    println!(
        "demo: domain {} up ({} pages, {} lines every {} ms)",
        domid, si.nr_pages, args.count, args.period_ms
    );
    let timer = evtchn::bind_virq(VIRQ_TIMER, 0);
    let ipi = evtchn::bind_ipi(0);
    check("bind_virq(VIRQ_TIMER)", timer.is_ok());
    check("bind_ipi(0)", ipi.is_ok());
    let (Ok(timer), Ok(ipi)) = (timer, ipi) else {
        return;
    };
    let now = || shared.system_time_now(0).unwrap_or(0);
    let mut n: u64 = 0;
    loop {
        n += 1;
        let t = now();
        println!("demo: domain {} line {} time {} ns", domid, n, t);
        let busy = version::version().is_ok()
            && {
                shared.clear_evtchn_pending(ipi);
                evtchn::send(ipi).is_ok() && shared.evtchn_pending(ipi)
            }
            && sched::yield_now().is_ok();
        let deadline = t + args.period_ms * 1_000_000;
        shared.clear_evtchn_pending(timer);
        let armed = vcpu::set_timer_op(deadline).is_ok();
        let mut fired = false;
        while armed && !fired {
            let _ = sched::poll(&[timer], 0);
            fired = shared.clear_evtchn_pending(timer);
        }
        if args.count != 0 {
            // Checked only in counted runs, whose verdict line is printed.
            check("xen_version, evtchn send to self, yield", busy);
            check("set_timer_op fires", armed && fired);
            if n >= args.count {
                break;
            }
        }
    }
    println!("demo: domain {} done after {} lines", domid, n);
    if args.crash {
        println!("demo: domain {} crashing on purpose (crash=1)", domid);
        guest_rt::sched::stop(guest_rt::sched::SHUTDOWN_CRASH);
    }
}
