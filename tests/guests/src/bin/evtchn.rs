//! `evtchn`: event channels with the 2-level ABI on one domain: alloc_unbound, interdomain
//! loopback, send and the pending bits in shared_info, status, close, IPIs, VIRQ_TIMER with a
//! timer and SCHEDOP_poll, unmask, bind_vcpu, and the errors Xen 4.17 gives for bad arguments.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::evtchn::{self, Status, DOMID_SELF, VIRQ_TIMER};
use guest_rt::hypercall::BadPtr;
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, sched, vcpu, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// Our domain id: the test runs as dom0.
const DOM0: u16 = 0;

fn main(si: &StartInfo) {
    println!("evtchn: DualVisor PV test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    check_eq(
        "vCPU 0 upcalls masked at boot",
        shared.upcall_mask(0),
        Some(true),
    );

    loopback(&shared);
    ipi(&shared);
    virq_timer(&shared);
    bad_arguments();
}

/// alloc_unbound + bind_interdomain to ourselves, send both ways, close both ends.
fn loopback(shared: &SharedInfo) {
    let a = match evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF) {
        Ok(p) => p,
        Err(e) => {
            check_eq(
                "alloc_unbound(DOMID_SELF, DOMID_SELF)",
                Err::<u32, _>(e),
                Ok(0),
            );
            return;
        }
    };
    check("alloc_unbound gives a port > 0", a > 0);
    check_eq(
        "status(unbound port)",
        evtchn::status(a),
        Ok((Status::Unbound { dom: DOM0 }, 0)),
    );
    check_eq(
        "send on an unbound port is dropped, returns 0",
        evtchn::send(a),
        Ok(0),
    );
    check("  ... and sets nothing pending", !shared.evtchn_pending(a));

    let b = match evtchn::bind_interdomain(DOMID_SELF, a) {
        Ok(p) => p,
        Err(e) => {
            check_eq("bind_interdomain(DOMID_SELF, a)", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    check("bind_interdomain gives a new port", b != a && b > 0);
    check_eq(
        "status(a) after bind",
        evtchn::status(a),
        Ok((Status::Interdomain { dom: DOM0, port: b }, 0)),
    );
    check_eq(
        "status(b) after bind",
        evtchn::status(b),
        Ok((Status::Interdomain { dom: DOM0, port: a }, 0)),
    );
    check_eq(
        "bind_interdomain to an already bound port -> -EINVAL",
        evtchn::bind_interdomain(DOMID_SELF, a),
        Err(Errno::EINVAL),
    );

    shared.clear_evtchn_pending(a);
    shared.clear_evtchn_pending(b);
    check_eq("send(b)", evtchn::send(b), Ok(0));
    check("send(b) makes a pending", shared.evtchn_pending(a));
    check("send(b) leaves b clear", !shared.evtchn_pending(b));
    check(
        "pending_sel has a's word",
        shared
            .pending_sel(0)
            .is_some_and(|s| s & (1 << (a / 64)) != 0),
    );
    check(
        "upcall_pending set on vCPU 0",
        shared.upcall_pending(0) == Some(true),
    );
    check("clearing a's pending bit", shared.clear_evtchn_pending(a));
    check_eq("send(a)", evtchn::send(a), Ok(0));
    check("send(a) makes b pending", shared.evtchn_pending(b));
    shared.clear_evtchn_pending(b);

    check_eq("unmask(a)", evtchn::unmask(a), Ok(0));
    check("a not masked", !shared.evtchn_masked(a));
    check_eq("bind_vcpu(a, 0)", evtchn::bind_vcpu(a, 0), Ok(0));

    check_eq("close(b)", evtchn::close(b), Ok(0));
    check_eq(
        "status(b) after close",
        evtchn::status(b),
        Ok((Status::Closed, 0)),
    );
    check_eq(
        "status(a) reverts to unbound for us",
        evtchn::status(a),
        Ok((Status::Unbound { dom: DOM0 }, 0)),
    );
    check_eq("close(a)", evtchn::close(a), Ok(0));
    check_eq(
        "status(a) after close",
        evtchn::status(a),
        Ok((Status::Closed, 0)),
    );
    check_eq(
        "send on a closed port -> -EINVAL",
        evtchn::send(a),
        Err(Errno::EINVAL),
    );
    check_eq(
        "close of a closed port -> -EINVAL",
        evtchn::close(a),
        Err(Errno::EINVAL),
    );
    shared.clear_upcall_pending(0);
    shared.take_pending_sel(0);
}

/// bind_ipi on vCPU 0, send to it.
fn ipi(shared: &SharedInfo) {
    let p = match evtchn::bind_ipi(0) {
        Ok(p) => p,
        Err(e) => {
            check_eq("bind_ipi(0)", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    check_eq("status(ipi port)", evtchn::status(p), Ok((Status::Ipi, 0)));
    shared.clear_evtchn_pending(p);
    check_eq("send(ipi port)", evtchn::send(p), Ok(0));
    check("ipi port pending", shared.evtchn_pending(p));
    check_eq(
        "SCHEDOP_poll returns at once on a pending port",
        sched::poll(&[p], 0),
        Ok(0),
    );
    shared.clear_evtchn_pending(p);
    check_eq("close(ipi port)", evtchn::close(p), Ok(0));
    check_eq(
        "bind_ipi on a vCPU that does not exist -> -ENOENT",
        evtchn::bind_ipi(4096),
        Err(Errno::ENOENT),
    );
}

/// VIRQ_TIMER: bind, double bind, a one-shot timer via set_timer_op, SCHEDOP_poll, close.
fn virq_timer(shared: &SharedInfo) {
    let p = match evtchn::bind_virq(VIRQ_TIMER, 0) {
        Ok(p) => p,
        Err(e) => {
            check_eq("bind_virq(VIRQ_TIMER, 0)", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    check_eq(
        "status(VIRQ_TIMER port)",
        evtchn::status(p),
        Ok((Status::Virq(VIRQ_TIMER), 0)),
    );
    check_eq(
        "bind_virq(VIRQ_TIMER) twice -> -EEXIST",
        evtchn::bind_virq(VIRQ_TIMER, 0),
        Err(Errno::EEXIST),
    );

    let now = shared.system_time_now(0).unwrap_or(0);
    info(format_args!("vCPU 0 system time {} ns", now));
    check("vcpu_time_info system time is running", now > 0);
    shared.clear_evtchn_pending(p);
    let deadline = now + 1_000_000;
    check_eq(
        "set_timer_op(now + 1 ms)",
        vcpu::set_timer_op(deadline),
        Ok(0),
    );
    // Poll with a generous timeout; the timer fires long before it.
    let r = sched::poll(&[p], deadline + 5_000_000_000);
    check_eq("SCHEDOP_poll on the timer port returns 0", r, Ok(0));
    check(
        "VIRQ_TIMER port pending after the deadline",
        shared.evtchn_pending(p),
    );
    let after = shared.system_time_now(0).unwrap_or(0);
    check("system time advanced past the deadline", after >= deadline);
    shared.clear_evtchn_pending(p);
    check_eq("close(VIRQ_TIMER port)", evtchn::close(p), Ok(0));
    check_eq(
        "status after close",
        evtchn::status(p),
        Ok((Status::Closed, 0)),
    );
}

/// Bad ports, virqs and pointers.
fn bad_arguments() {
    for (name, port) in [
        ("send(4095), never allocated -> -EINVAL", 4095u32),
        ("send(0x10000), beyond 2-level -> -EINVAL", 0x1_0000),
    ] {
        check_eq(name, evtchn::send(port), Err(Errno::EINVAL));
    }
    check_eq(
        "close(4095) -> -EINVAL",
        evtchn::close(4095),
        Err(Errno::EINVAL),
    );
    check_eq(
        "status(4095) -> -EINVAL",
        evtchn::status(4095).map(|_| ()),
        Err(Errno::EINVAL),
    );
    check_eq(
        "unmask(4095) -> -EINVAL",
        evtchn::unmask(4095),
        Err(Errno::EINVAL),
    );
    check_eq(
        "bind_vcpu(4095, 0) -> -EINVAL",
        evtchn::bind_vcpu(4095, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "bind_virq(NR_VIRQS) -> -EINVAL",
        evtchn::bind_virq(evtchn::NR_VIRQS, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "bind_virq(VIRQ_TIMER, vCPU 4096) -> -ENOENT",
        evtchn::bind_virq(VIRQ_TIMER, 4096),
        Err(Errno::ENOENT),
    );
    check_eq(
        "bind_interdomain to port 4095 -> -EINVAL",
        evtchn::bind_interdomain(DOMID_SELF, 4095),
        Err(Errno::EINVAL),
    );
    check_eq(
        "EVTCHNOP_send with a NULL argument -> -EFAULT",
        evtchn::op_with_bad_ptr(evtchn::EVTCHNOP_SEND, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
    check_eq(
        "EVTCHNOP_alloc_unbound with Xen's range as argument -> -EFAULT",
        evtchn::op_with_bad_ptr(evtchn::EVTCHNOP_ALLOC_UNBOUND, BadPtr::HYPERVISOR),
        Err(Errno::EFAULT),
    );
}
