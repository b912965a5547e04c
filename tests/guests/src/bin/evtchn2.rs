//! `evtchn2`: the finer points of the 2-level event channel ABI as Xen 4.17 implements them,
//! on one domain with two vCPUs: port 0 and the bucket-granular port table, lowest-free port
//! allocation, the status union, masking and unmask re-delivery, notify-vCPU routing with
//! bind_vcpu, per-vCPU and global VIRQs, SCHEDOP_poll's argument checks, FIFO-only sub-ops,
//! EVTCHNOP_reset, and port exhaustion. Run with 2 vCPUs (`run-on-xen.sh evtchn2.elf 2`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::evtchn::{self, Status, DOMID_SELF, VIRQ_DEBUG, VIRQ_DEBUGGER, VIRQ_TIMER};
use guest_rt::hypercall::BadPtr;
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info, skip};
use guest_rt::{println, sched, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// Our domain id: the test runs as dom0.
const DOM0: u16 = 0;
/// A domain id that does not exist.
const NO_DOM: u16 = 5;
/// Ports per bucket of Xen's port table: ports are valid up to the end of the last bucket
/// allocated (the first at domain creation).
const BUCKET: u32 = 64;
/// Ports of the 2-level ABI on 64-bit guests.
const NR_PORTS: u32 = 4096;
/// An undefined VIRQ number below NR_VIRQS (Xen treats it as global).
const VIRQ_UNDEFINED: u32 = 5;
/// `VIRQ_ARCH_7`.
const VIRQ_ARCH_7: u32 = 23;

fn main(si: &StartInfo) {
    println!("evtchn2: DualVisor PV test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    fresh_table(&shared);
    allocation();
    status_union();
    loopback(&shared);
    let two_vcpus = evtchn::bind_ipi(1).and_then(|p| evtchn::close(p).map(|_| ()));
    if two_vcpus.is_ok() {
        routing(&shared);
        ipi_on_vcpu1(&shared);
        virqs();
    } else {
        skip(format_args!(
            "vCPU 1 missing ({:?}): run with 2 vCPUs for the routing checks",
            two_vcpus
        ));
    }
    poll(&shared);
    reset(&shared);
    exhaustion();
    guest_rt::test::finish();
}

/// The untouched table: port 0 is reserved, one bucket is valid, FIFO-only ops refuse.
fn fresh_table(shared: &SharedInfo) {
    check_eq(
        "status(0): reserved port reads as closed on vCPU 0",
        evtchn::status(0),
        Ok((Status::Closed, 0)),
    );
    check_eq("close(0) -> -EINVAL", evtchn::close(0), Err(Errno::EINVAL));
    check_eq("send(0) -> -EINVAL", evtchn::send(0), Err(Errno::EINVAL));
    check_eq(
        "unmask(0) is accepted and does nothing",
        evtchn::unmask(0),
        Ok(0),
    );
    check_eq(
        "bind_vcpu(0, 0) -> -EINVAL",
        evtchn::bind_vcpu(0, 0),
        Err(Errno::EINVAL),
    );
    let first_invalid = (1..NR_PORTS)
        .find(|&p| evtchn::status(p).is_err())
        .unwrap_or(NR_PORTS);
    info(format_args!("first port status refuses: {}", first_invalid));
    check_eq(
        "status of a never-used port in the first bucket: closed",
        evtchn::status(BUCKET - 1),
        Ok((Status::Closed, 0)),
    );
    check_eq(
        "status beyond the first bucket -> -EINVAL",
        evtchn::status(BUCKET).map(|_| ()),
        Err(Errno::EINVAL),
    );
    check_eq(
        "unmask of a free port in the bucket -> 0",
        evtchn::unmask(BUCKET - 1),
        Ok(0),
    );
    check_eq(
        "unmask beyond the bucket -> -EINVAL",
        evtchn::unmask(BUCKET),
        Err(Errno::EINVAL),
    );
    check(
        "unmask of a free port delivered nothing",
        shared.pending_sel(0) == Some(0),
    );
    check_eq(
        "set_priority on a valid port, 2-level -> -ENOSYS",
        evtchn::set_priority(1, 7),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "set_priority beyond the bucket -> -EINVAL",
        evtchn::set_priority(BUCKET, 7),
        Err(Errno::EINVAL),
    );
    check_eq(
        "expand_array without FIFO -> -EOPNOTSUPP",
        evtchn::expand_array(0x1234),
        Err(Errno::EOPNOTSUPP),
    );
    check_eq(
        "reset_cont with no reset in progress -> -EBUSY",
        evtchn::reset_cont(DOMID_SELF),
        Err(Errno::EBUSY),
    );
    check_eq(
        "event_channel_op(15) -> -ENOSYS",
        evtchn::op_with_bad_ptr(15, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "EVTCHNOP_status with a NULL argument -> -EFAULT",
        evtchn::op_with_bad_ptr(evtchn::EVTCHNOP_STATUS, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
}

/// Lowest free port first, reuse after close, foreign and missing domains.
fn allocation() {
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF);
    let b = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF);
    check_eq("first alloc_unbound -> port 1", a, Ok(1));
    check_eq("second alloc_unbound -> port 2", b, Ok(2));
    check_eq("close(1)", evtchn::close(1), Ok(0));
    check_eq(
        "alloc_unbound reuses the lowest free port",
        evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF),
        Ok(1),
    );
    check_eq(
        "alloc_unbound(dom 0 by id) -> port 3",
        evtchn::alloc_unbound(DOM0, NO_DOM),
        Ok(3),
    );
    check_eq(
        "status(3): unbound for a domain that does not exist",
        evtchn::status(3),
        Ok((Status::Unbound { dom: NO_DOM }, 0)),
    );
    check_eq(
        "bind_interdomain to a port offered to another domain -> -EINVAL",
        evtchn::bind_interdomain(DOMID_SELF, 3),
        Err(Errno::EINVAL),
    );
    check_eq(
        "bind_interdomain to a missing domain -> -ESRCH",
        evtchn::bind_interdomain(NO_DOM, 3),
        Err(Errno::ESRCH),
    );
    check_eq(
        "alloc_unbound in a missing domain -> -ESRCH",
        evtchn::alloc_unbound(NO_DOM, DOMID_SELF),
        Err(Errno::ESRCH),
    );
    check_eq(
        "status in a missing domain -> -ESRCH",
        evtchn::status_raw(NO_DOM, 1).map(|s| s.status),
        Err(Errno::ESRCH),
    );
    check_eq(
        "status of dom 0 by id",
        evtchn::status_raw(DOM0, 3).map(|s| evtchn::Status::decode(&s)),
        Ok(Status::Unbound { dom: NO_DOM }),
    );
    for p in 1..=3 {
        check_eq("close", evtchn::close(p), Ok(0));
    }
}

/// Xen writes only the union members a status uses; the rest keeps what the guest put there.
fn status_union() {
    let fill = [0xaaaa_bbbb, 0xcccc_dddd];
    let p = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    let s = evtchn::status_prefilled(DOMID_SELF, p, fill);
    check_eq(
        "status(unbound) writes only u.unbound.dom",
        s.map(|s| (s.status, s.vcpu, s.u)),
        Ok((1, 0, [0xaaaa_0000, 0xcccc_dddd])),
    );
    let q = evtchn::bind_interdomain(DOMID_SELF, p).unwrap_or(0);
    let s = evtchn::status_prefilled(DOMID_SELF, q, fill);
    check_eq(
        "status(interdomain) writes dom and port, not the padding",
        s.map(|s| (s.status, s.u)),
        Ok((2, [0xaaaa_0000, p])),
    );
    let _ = evtchn::close(q);
    let _ = evtchn::close(p);
    let s = evtchn::status_prefilled(DOMID_SELF, p, fill);
    check_eq(
        "status(closed) leaves the union alone",
        s.map(|s| (s.status, s.vcpu, s.u)),
        Ok((0, 0, fill)),
    );
    let i = evtchn::bind_ipi(0).unwrap_or(0);
    let s = evtchn::status_prefilled(DOMID_SELF, i, fill);
    check_eq(
        "status(ipi) leaves the union alone",
        s.map(|s| (s.status, s.u)),
        Ok((5, fill)),
    );
    let _ = evtchn::close(i);
    let v = evtchn::bind_virq(VIRQ_TIMER, 0).unwrap_or(0);
    let s = evtchn::status_prefilled(DOMID_SELF, v, fill);
    check_eq(
        "status(virq) writes u.virq only",
        s.map(|s| (s.status, s.u)),
        Ok((4, [VIRQ_TIMER, 0xcccc_dddd])),
    );
    let _ = evtchn::close(v);
}

/// Loopback: bind marks the new port pending, masking holds back the selector, unmask
/// re-delivers, close clears the pending bit.
fn loopback(shared: &SharedInfo) {
    let a = match evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF) {
        Ok(p) => p,
        Err(e) => {
            check_eq("alloc_unbound", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
    let b = match evtchn::bind_interdomain(DOMID_SELF, a) {
        Ok(p) => p,
        Err(e) => {
            check_eq("bind_interdomain", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    check(
        "bind_interdomain marks the new local port pending",
        shared.evtchn_pending(b),
    );
    check("  ... not the remote one", !shared.evtchn_pending(a));
    check(
        "  ... and sets its selector bit on vCPU 0",
        shared.pending_sel(0) == Some(1 << (b / 64)),
    );
    check(
        "  ... and upcall_pending",
        shared.upcall_pending(0) == Some(true),
    );

    // A second send to a port already pending changes nothing else.
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
    check_eq("send(a) with b already pending", evtchn::send(a), Ok(0));
    check(
        "already-pending port: no selector, no upcall",
        shared.pending_sel(0) == Some(0) && shared.upcall_pending(0) == Some(false),
    );
    shared.clear_evtchn_pending(b);

    // Masked: the pending bit is set, the selector and upcall are not.
    shared.set_evtchn_mask(a, true);
    check_eq("send(b) to masked a", evtchn::send(b), Ok(0));
    check("masked a becomes pending", shared.evtchn_pending(a));
    check(
        "masked a: no selector bit, no upcall",
        shared.pending_sel(0) == Some(0) && shared.upcall_pending(0) == Some(false),
    );
    check_eq("unmask(a)", evtchn::unmask(a), Ok(0));
    check("unmask clears the mask bit", !shared.evtchn_masked(a));
    check(
        "unmask of a pending port sets the selector bit",
        shared.pending_sel(0) == Some(1 << (a / 64)),
    );
    check(
        "  ... and upcall_pending",
        shared.upcall_pending(0) == Some(true),
    );
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
    check_eq("unmask(a) again", evtchn::unmask(a), Ok(0));
    check(
        "unmask of an unmasked port delivers nothing",
        shared.pending_sel(0) == Some(0) && shared.upcall_pending(0) == Some(false),
    );

    // Close of a pending port clears its pending bit.
    check("a still pending before close", shared.evtchn_pending(a));
    check_eq("close(a)", evtchn::close(a), Ok(0));
    check("close clears a's pending bit", !shared.evtchn_pending(a));
    check_eq(
        "b reverts to unbound for us",
        evtchn::status(b),
        Ok((Status::Unbound { dom: DOM0 }, 0)),
    );
    check_eq("send on the reverted b is dropped", evtchn::send(b), Ok(0));
    check("  ... nothing pending", !shared.evtchn_pending(a));
    check_eq("close(b)", evtchn::close(b), Ok(0));
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
}

/// bind_vcpu moves an interdomain port's notifications to vCPU 1 and survives the other end
/// closing.
fn routing(shared: &SharedInfo) {
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    check_eq("bind_vcpu(unbound a, 1)", evtchn::bind_vcpu(a, 1), Ok(0));
    check_eq(
        "status(a) reports vCPU 1",
        evtchn::status(a),
        Ok((Status::Unbound { dom: DOM0 }, 1)),
    );
    let b = evtchn::bind_interdomain(DOMID_SELF, a).unwrap_or(0);
    check_eq(
        "a keeps vCPU 1 when bound",
        evtchn::status(a),
        Ok((Status::Interdomain { dom: DOM0, port: b }, 1)),
    );
    shared.clear_evtchn_pending(b);
    shared.take_pending_sel(0);
    shared.take_pending_sel(1);
    shared.clear_upcall_pending(0);
    shared.clear_upcall_pending(1);
    check_eq("send(b)", evtchn::send(b), Ok(0));
    check("a pending", shared.evtchn_pending(a));
    check(
        "selector bit on vCPU 1, not vCPU 0",
        shared.pending_sel(1) == Some(1 << (a / 64)) && shared.pending_sel(0) == Some(0),
    );
    check(
        "upcall_pending on vCPU 1 only",
        shared.upcall_pending(1) == Some(true) && shared.upcall_pending(0) == Some(false),
    );
    check_eq(
        "bind_vcpu to vCPU 4096 -> -ENOENT",
        evtchn::bind_vcpu(a, 4096),
        Err(Errno::ENOENT),
    );
    check_eq(
        "bind_vcpu checks the vCPU before the port",
        evtchn::bind_vcpu(4095, 4096),
        Err(Errno::ENOENT),
    );
    check_eq("close(b)", evtchn::close(b), Ok(0));
    check_eq(
        "a reverts to unbound and keeps vCPU 1",
        evtchn::status(a),
        Ok((Status::Unbound { dom: DOM0 }, 1)),
    );
    check_eq("close(a)", evtchn::close(a), Ok(0));
    check_eq(
        "a freed port is back on vCPU 0",
        evtchn::status(a),
        Ok((Status::Closed, 0)),
    );
    shared.take_pending_sel(1);
    shared.clear_upcall_pending(1);
}

/// An IPI port bound to vCPU 1 notifies vCPU 1; IPI ports cannot be re-routed.
fn ipi_on_vcpu1(shared: &SharedInfo) {
    let p = evtchn::bind_ipi(1).unwrap_or(0);
    check_eq(
        "status(ipi on vCPU 1)",
        evtchn::status(p),
        Ok((Status::Ipi, 1)),
    );
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
    check_eq("send(ipi)", evtchn::send(p), Ok(0));
    check("ipi port pending", shared.evtchn_pending(p));
    check(
        "selector and upcall on vCPU 1",
        shared.pending_sel(1) == Some(1 << (p / 64)) && shared.upcall_pending(1) == Some(true),
    );
    check(
        "nothing on vCPU 0",
        shared.pending_sel(0) == Some(0) && shared.upcall_pending(0) == Some(false),
    );
    check_eq(
        "bind_vcpu of an IPI port -> -EINVAL",
        evtchn::bind_vcpu(p, 0),
        Err(Errno::EINVAL),
    );
    check_eq("close(ipi)", evtchn::close(p), Ok(0));
    check(
        "close cleared the ipi's pending bit",
        !shared.evtchn_pending(p),
    );
    check_eq(
        "bind_ipi on vCPU 2 of 2 -> -ENOENT",
        evtchn::bind_ipi(2),
        Err(Errno::ENOENT),
    );
    shared.take_pending_sel(1);
    shared.clear_upcall_pending(1);
}

/// Per-vCPU VIRQs bind once per vCPU and stay put; global VIRQs bind on vCPU 0 only and
/// follow bind_vcpu.
fn virqs() {
    let t0 = evtchn::bind_virq(VIRQ_TIMER, 0);
    let t1 = evtchn::bind_virq(VIRQ_TIMER, 1);
    check(
        "VIRQ_TIMER binds on both vCPUs to different ports",
        t0.is_ok() && t1.is_ok() && t0 != t1,
    );
    let t1 = t1.unwrap_or(0);
    check_eq(
        "status(VIRQ_TIMER on vCPU 1)",
        evtchn::status(t1),
        Ok((Status::Virq(VIRQ_TIMER), 1)),
    );
    check_eq(
        "VIRQ_TIMER twice on vCPU 1 -> -EEXIST",
        evtchn::bind_virq(VIRQ_TIMER, 1),
        Err(Errno::EEXIST),
    );
    check_eq(
        "bind_vcpu of a per-vCPU VIRQ -> -EINVAL",
        evtchn::bind_vcpu(t1, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "send on a VIRQ port -> -EINVAL",
        evtchn::send(t1),
        Err(Errno::EINVAL),
    );
    check_eq("close(t1)", evtchn::close(t1), Ok(0));
    check_eq(
        "VIRQ_TIMER rebinds on vCPU 1 at the lowest free port",
        evtchn::bind_virq(VIRQ_TIMER, 1),
        Ok(t1),
    );
    let _ = evtchn::close(t1);
    let _ = t0.map(evtchn::close);
    let d1 = evtchn::bind_virq(VIRQ_DEBUG, 1);
    check("VIRQ_DEBUG is per-vCPU: binds on vCPU 1", d1.is_ok());
    let _ = d1.map(evtchn::close);

    check_eq(
        "global VIRQ on vCPU 1 -> -EINVAL",
        evtchn::bind_virq(VIRQ_DEBUGGER, 1),
        Err(Errno::EINVAL),
    );
    check_eq(
        "global VIRQ on vCPU 4096: -EINVAL before -ENOENT",
        evtchn::bind_virq(VIRQ_DEBUGGER, 4096),
        Err(Errno::EINVAL),
    );
    check_eq(
        "per-vCPU VIRQ on vCPU 2 of 2 -> -ENOENT",
        evtchn::bind_virq(VIRQ_TIMER, 2),
        Err(Errno::ENOENT),
    );
    let g = evtchn::bind_virq(VIRQ_DEBUGGER, 0).unwrap_or(0);
    check_eq(
        "status(global VIRQ)",
        evtchn::status(g),
        Ok((Status::Virq(VIRQ_DEBUGGER), 0)),
    );
    check_eq(
        "global VIRQ twice -> -EEXIST",
        evtchn::bind_virq(VIRQ_DEBUGGER, 0),
        Err(Errno::EEXIST),
    );
    check_eq("bind_vcpu(global VIRQ, 1)", evtchn::bind_vcpu(g, 1), Ok(0));
    check_eq(
        "global VIRQ now notifies vCPU 1",
        evtchn::status(g),
        Ok((Status::Virq(VIRQ_DEBUGGER), 1)),
    );
    check_eq(
        "still bound: -EEXIST",
        evtchn::bind_virq(VIRQ_DEBUGGER, 0),
        Err(Errno::EEXIST),
    );
    check_eq("close(global VIRQ)", evtchn::close(g), Ok(0));
    let again = evtchn::bind_virq(VIRQ_DEBUGGER, 0);
    check("global VIRQ binds again after close", again.is_ok());
    let _ = again.map(evtchn::close);

    for virq in [VIRQ_UNDEFINED, VIRQ_ARCH_7] {
        let p = evtchn::bind_virq(virq, 0);
        check_eq(
            "an unnamed VIRQ below NR_VIRQS binds (global)",
            p.and_then(evtchn::status),
            Ok((Status::Virq(virq), 0)),
        );
        check_eq(
            "  ... not on vCPU 1",
            evtchn::bind_virq(virq, 1),
            Err(Errno::EINVAL),
        );
        let _ = p.map(evtchn::close);
    }
    check_eq(
        "bind_virq(u32::MAX) -> -EINVAL",
        evtchn::bind_virq(u32::MAX, 0),
        Err(Errno::EINVAL),
    );
}

/// SCHEDOP_poll: checks ports in order, returns at once on a pending one.
fn poll(shared: &SharedInfo) {
    let p = evtchn::bind_ipi(0).unwrap_or(0);
    shared.clear_evtchn_pending(p);
    let soon = shared.system_time_now(0).unwrap_or(0) + 1_000_000;
    check_eq(
        "poll on the reserved port 0 -> -EINVAL",
        sched::poll(&[0], soon),
        Err(Errno::EINVAL),
    );
    check_eq(
        "poll on a free port -> -EINVAL",
        sched::poll(&[BUCKET - 1], soon),
        Err(Errno::EINVAL),
    );
    check_eq(
        "poll on a port beyond the table -> -EINVAL",
        sched::poll(&[4095], soon),
        Err(Errno::EINVAL),
    );
    let many = [p; 129];
    check_eq(
        "poll on 129 ports -> -EINVAL",
        sched::poll(&many, soon),
        Err(Errno::EINVAL),
    );
    check_eq(
        "poll with an unreadable port array -> -EFAULT",
        sched::poll_bad_ports(1, BadPtr::NULL, soon),
        Err(Errno::EFAULT),
    );
    check_eq("send(ipi)", evtchn::send(p), Ok(0));
    check_eq(
        "poll returns at once on a pending port",
        sched::poll(&[p], 0),
        Ok(0),
    );
    check_eq(
        "poll stops at the first pending port (a bad one after it is not looked at)",
        sched::poll(&[p, 4095], 0),
        Ok(0),
    );
    check_eq(
        "poll checks ports in order (a bad one before the pending one)",
        sched::poll(&[4095, p], 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "poll on all 128 allowed ports",
        sched::poll(&many[..128], 0),
        Ok(0),
    );
    shared.clear_evtchn_pending(p);
    check_eq(
        "poll on a quiet port returns after its timeout",
        sched::poll(&[p], soon),
        Ok(0),
    );
    let _ = evtchn::close(p);
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
}

/// EVTCHNOP_reset closes every port (and clears their pending bits) and frees the VIRQs.
fn reset(shared: &SharedInfo) {
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    let b = evtchn::bind_interdomain(DOMID_SELF, a).unwrap_or(0);
    let t = evtchn::bind_virq(VIRQ_TIMER, 0).unwrap_or(0);
    let i = evtchn::bind_ipi(0).unwrap_or(0);
    check_eq("send(i)", evtchn::send(i), Ok(0));
    check(
        "b and i pending",
        shared.evtchn_pending(b) && shared.evtchn_pending(i),
    );
    check_eq("reset(DOMID_SELF)", evtchn::reset(DOMID_SELF), Ok(0));
    for (name, p) in [("a", a), ("b", b), ("VIRQ_TIMER", t), ("ipi", i)] {
        check_eq(name, evtchn::status(p), Ok((Status::Closed, 0)));
    }
    check(
        "reset cleared the pending bits",
        !shared.evtchn_pending(b) && !shared.evtchn_pending(i),
    );
    let t = evtchn::bind_virq(VIRQ_TIMER, 0);
    check_eq("VIRQ_TIMER binds again after reset", t, Ok(1));
    let _ = t.map(evtchn::close);
    check_eq(
        "reset of a missing domain -> -ESRCH",
        evtchn::reset(NO_DOM),
        Err(Errno::ESRCH),
    );
    check_eq("reset by id of ourselves", evtchn::reset(DOM0), Ok(0));
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
}

/// Buckets grow on demand (even for an allocation that then fails); 4095 ports; reset.
fn exhaustion() {
    for p in 1..BUCKET {
        if evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF) != Ok(p) {
            check_eq("filling the first bucket", Err::<u32, u32>(p), Ok(p));
            return;
        }
    }
    check_eq(
        "first bucket full, next is not valid yet",
        evtchn::status(BUCKET).map(|_| ()),
        Err(Errno::EINVAL),
    );
    check_eq(
        "bind_interdomain to port 4095 -> -EINVAL",
        evtchn::bind_interdomain(DOMID_SELF, 4095),
        Err(Errno::EINVAL),
    );
    check_eq(
        "  ... after allocating the next bucket for its local port",
        evtchn::status(BUCKET),
        Ok((Status::Closed, 0)),
    );
    check_eq(
        "  ... but nothing beyond it",
        evtchn::status(2 * BUCKET).map(|_| ()),
        Err(Errno::EINVAL),
    );
    let mut last = BUCKET - 1;
    let end = loop {
        match evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF) {
            Ok(p) if p == last + 1 => last = p,
            other => break other,
        }
    };
    check_eq("ports run up to 4095", last, NR_PORTS - 1);
    check_eq("then -ENOSPC", end, Err(Errno::ENOSPC));
    check_eq(
        "bind_ipi when full -> -ENOSPC",
        evtchn::bind_ipi(0),
        Err(Errno::ENOSPC),
    );
    check_eq(
        "bind_virq when full -> -ENOSPC",
        evtchn::bind_virq(VIRQ_TIMER, 0),
        Err(Errno::ENOSPC),
    );
    check_eq(
        "reset(DOMID_SELF) of 4095 ports",
        evtchn::reset(DOMID_SELF),
        Ok(0),
    );
    check_eq(
        "status(4095) after reset: closed, still valid",
        evtchn::status(NR_PORTS - 1),
        Ok((Status::Closed, 0)),
    );
    check_eq(
        "allocation starts over at 1",
        evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF),
        Ok(1),
    );
    let _ = evtchn::close(1);
}
