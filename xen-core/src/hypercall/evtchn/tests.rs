//! `event_channel_op` through the real state machine: every sub-op and error path, with the
//! answers Xen 4.17 gave the `evtchn2` test guest.

use crate::effect::{DomId, Effect};
use crate::evtchn::{EvtchnEffect, NR_PORTS, PORTS_PER_BUCKET};
use crate::hv::{create_domain, Ctx, HvState};
use crate::hypercall::testing::Harness;
use crate::request::{ExitKind, GuestRegs, Request};
use alloc::vec;
use alloc::vec::Vec;
use dom0_interface::event_channel::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::{
    DOMID_SELF, HYPERVISOR_EVENT_CHANNEL_OP as NR, NR_VIRQS, VIRQ_DEBUG, VIRQ_DEBUGGER,
    VIRQ_DOM_EXC, VIRQ_TIMER,
};
use lockstep::effects::Effects;
use lockstep::input::{Env, Input};
use lockstep::machine::TxCtx;
use lockstep::Journal;

const ARG: u64 = 0x4000;
const EINVAL: i64 = -22;
const ENOENT: i64 = -2;
const ESRCH: i64 = -3;
const EEXIST: i64 = -17;
const EPERM: i64 = -1;
const EFAULT: i64 = -14;
const ENOSPC: i64 = -28;
const ENOSYS: i64 = -38;
const EBUSY: i64 = -16;
const EOPNOTSUPP: i64 = -95;
/// A domain id nobody has.
const NO_DOM: DomId = 5;

/// Runs `cmd` with `arg` bytes at [`ARG`]; returns RAX, the struct as the guest sees it
/// afterwards, and the event-channel effects.
fn op(h: &mut Harness, cmd: u32, arg: &[u8]) -> (i64, Vec<u8>, Vec<EvtchnEffect>) {
    h.mem.map(ARG, arg);
    let r = h.hypercall(u64::from(NR), [u64::from(cmd), ARG, 0, 0, 0]);
    let mut out = vec![0u8; arg.len()];
    assert!(h.mem.read_guest(ARG, &mut out));
    (r.ret, out, evtchn_effects(&r.effects))
}

fn evtchn_effects(effects: &[Effect]) -> Vec<EvtchnEffect> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Evtchn(x) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

fn port_result(ret: i64, port: u32) -> Result<u32, i64> {
    if ret == 0 {
        Ok(port)
    } else {
        Err(ret)
    }
}

fn alloc_unbound(h: &mut Harness, dom: DomId, remote_dom: DomId) -> Result<u32, i64> {
    let a = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0xffff,
    };
    let (ret, out, _) = op(h, EVTCHNOP_ALLOC_UNBOUND, &a.to_vec());
    port_result(ret, EvtchnAllocUnbound::read_from(&out).unwrap().port)
}

fn bind_interdomain(h: &mut Harness, remote_dom: DomId, remote_port: u32) -> Result<u32, i64> {
    let b = EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    let (ret, out, _) = op(h, EVTCHNOP_BIND_INTERDOMAIN, &b.to_vec());
    port_result(
        ret,
        EvtchnBindInterdomain::read_from(&out).unwrap().local_port,
    )
}

fn bind_virq(h: &mut Harness, virq: u32, vcpu: u32) -> Result<u32, i64> {
    let b = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    let (ret, out, _) = op(h, EVTCHNOP_BIND_VIRQ, &b.to_vec());
    port_result(ret, EvtchnBindVirq::read_from(&out).unwrap().port)
}

fn bind_ipi(h: &mut Harness, vcpu: u32) -> Result<u32, i64> {
    let b = EvtchnBindIpi { vcpu, port: 0 };
    let (ret, out, _) = op(h, EVTCHNOP_BIND_IPI, &b.to_vec());
    port_result(ret, EvtchnBindIpi::read_from(&out).unwrap().port)
}

fn port_op(h: &mut Harness, cmd: u32, port: u32) -> (i64, Vec<EvtchnEffect>) {
    let (ret, _, fx) = op(h, cmd, &port.to_le_bytes());
    (ret, fx)
}

fn close(h: &mut Harness, port: u32) -> i64 {
    port_op(h, EVTCHNOP_CLOSE, port).0
}

fn send(h: &mut Harness, port: u32) -> (i64, Vec<EvtchnEffect>) {
    port_op(h, EVTCHNOP_SEND, port)
}

fn bind_vcpu(h: &mut Harness, port: u32, vcpu: u32) -> i64 {
    let b = EvtchnBindVcpu { port, vcpu };
    op(h, EVTCHNOP_BIND_VCPU, &b.to_vec()).0
}

fn reset(h: &mut Harness, cmd: u32, dom: DomId) -> i64 {
    op(h, cmd, &EvtchnReset { dom }.to_vec()).0
}

/// `EVTCHNOP_status` decoded as (status, vcpu, u), or the error.
fn status_of(h: &mut Harness, dom: DomId, port: u32) -> Result<(u32, u32, [u32; 2]), i64> {
    let s = EvtchnStatus {
        dom,
        port,
        ..EvtchnStatus::default()
    };
    let (ret, out, _) = op(h, EVTCHNOP_STATUS, &s.to_vec());
    let s = EvtchnStatus::read_from(&out).unwrap();
    if ret == 0 {
        Ok((s.status, s.vcpu, s.u))
    } else {
        Err(ret)
    }
}

fn status(h: &mut Harness, port: u32) -> Result<(u32, u32, [u32; 2]), i64> {
    status_of(h, DOMID_SELF, port)
}

fn unbound(dom: DomId, vcpu: u32) -> Result<(u32, u32, [u32; 2]), i64> {
    Ok((EVTCHNSTAT_UNBOUND, vcpu, [u32::from(dom), 0]))
}

fn closed() -> Result<(u32, u32, [u32; 2]), i64> {
    Ok((EVTCHNSTAT_CLOSED, 0, [0, 0]))
}

fn set(dom: DomId, port: u32, vcpu: u32) -> EvtchnEffect {
    EvtchnEffect::Set { dom, port, vcpu }
}

/// Adds domain `id` (2 vCPUs) to the harness's state.
fn add_domain(h: &mut Harness, id: DomId, privileged: bool) {
    let mut j = Journal::new();
    j.begin(1);
    create_domain(&mut h.state, &mut j, id, privileged, 2, 1024).unwrap();
    lockstep::replica::forget(&mut h.state);
}

/// Runs `f` with a context of an interrupt transaction of `dom` (for the APIs other
/// transactions call); returns its result and the event-channel effects.
pub(crate) fn with_ctx<R>(
    h: &mut Harness,
    dom: DomId,
    f: impl FnOnce(&mut HvState, &mut Ctx<'_, '_, '_>) -> R,
) -> (R, Vec<EvtchnEffect>) {
    let mut j = Journal::new();
    j.begin(1_000_000);
    let mut effects = Effects::new();
    let req = Request::exit(ExitKind::Interrupt, dom, 0, GuestRegs::default(), 0, 0, 0);
    let words = req.to_words();
    let r = {
        let mut input = Input::direct(&words, &mut h.mem);
        let mut tx = TxCtx::new(&mut j, &mut effects);
        let mut ctx = Ctx::new(&mut input, &mut tx, &req);
        f(&mut h.state, &mut ctx)
    };
    lockstep::replica::forget(&mut h.state);
    (r, evtchn_effects(effects.as_slice()))
}

#[test]
fn fresh_table_port_zero_and_the_first_bucket() {
    let mut h = Harness::dom0();
    assert_eq!(status(&mut h, 0), closed(), "port 0 is reserved: closed");
    assert_eq!(close(&mut h, 0), EINVAL);
    assert_eq!(send(&mut h, 0).0, EINVAL);
    assert_eq!(port_op(&mut h, EVTCHNOP_UNMASK, 0), (0, vec![]));
    assert_eq!(bind_vcpu(&mut h, 0, 0), EINVAL);
    // Xen 4.17 allocates ports in buckets of 64; one bucket exists from the start.
    assert_eq!(PORTS_PER_BUCKET, 64);
    assert_eq!(status(&mut h, 63), closed());
    assert_eq!(status(&mut h, 64), Err(EINVAL));
    assert_eq!(
        port_op(&mut h, EVTCHNOP_UNMASK, PORTS_PER_BUCKET - 1),
        (0, vec![])
    );
    assert_eq!(port_op(&mut h, EVTCHNOP_UNMASK, PORTS_PER_BUCKET).0, EINVAL);
    assert_eq!(send(&mut h, 4095).0, EINVAL);
    assert_eq!(send(&mut h, 0x1_0000).0, EINVAL);
    assert_eq!(close(&mut h, 4095), EINVAL);
    assert_eq!(bind_vcpu(&mut h, 4095, 0), EINVAL);
    assert_eq!(bind_interdomain(&mut h, DOMID_SELF, 4095), Err(EINVAL));
}

#[test]
fn fifo_only_ops_on_a_two_level_domain_and_unknown_commands() {
    let mut h = Harness::dom0();
    let prio = |port| EvtchnSetPriority { port, priority: 7 }.to_vec();
    assert_eq!(op(&mut h, EVTCHNOP_SET_PRIORITY, &prio(1)).0, ENOSYS);
    let beyond = prio(PORTS_PER_BUCKET);
    assert_eq!(op(&mut h, EVTCHNOP_SET_PRIORITY, &beyond).0, EINVAL);
    let ex = EvtchnExpandArray { array_gfn: 0x1234 }.to_vec();
    assert_eq!(op(&mut h, EVTCHNOP_EXPAND_ARRAY, &ex).0, EOPNOTSUPP);
    assert_eq!(
        reset(&mut h, super::EVTCHNOP_RESET_CONT, DOMID_SELF),
        EBUSY,
        "no reset in progress"
    );
    let pirq = EvtchnBindPirq {
        pirq: 1,
        flags: 0,
        port: 0,
    };
    assert_eq!(op(&mut h, EVTCHNOP_BIND_PIRQ, &pirq.to_vec()).0, EPERM);
    let r = h.hypercall(u64::from(NR), [15, ARG, 0, 0, 0]);
    assert_eq!(r.ret, ENOSYS);
    assert_eq!(r.logs.len(), 1);
    let again = h.hypercall(u64::from(NR), [15, ARG, 0, 0, 0]);
    assert!(again.logs.is_empty(), "logged once");
    // The command is an int: the upper half of RDI is ignored.
    let p = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    h.mem.map(ARG, &p.to_le_bytes());
    let r = h.hypercall(
        u64::from(NR),
        [(1 << 32) | u64::from(EVTCHNOP_SEND), ARG, 0, 0, 0],
    );
    assert_eq!(r.ret, 0, "send on an unbound port is dropped");
    h.mem.map(ARG, &0x7777u32.to_le_bytes());
    let r = h.hypercall(
        u64::from(NR),
        [(1 << 32) | u64::from(EVTCHNOP_SEND), ARG, 0, 0, 0],
    );
    assert_eq!(r.ret, EINVAL);
}

#[test]
fn every_command_faults_on_a_bad_pointer() {
    let mut h = Harness::dom0();
    for cmd in 0..=14u32 {
        let r = h.hypercall(u64::from(NR), [u64::from(cmd), 0, 0, 0, 0]);
        assert_eq!(r.ret, EFAULT, "cmd {cmd}");
        assert!(evtchn_effects(&r.effects).is_empty());
    }
}

#[test]
fn allocation_is_lowest_free_first_and_checks_domains() {
    let mut h = Harness::dom0();
    assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Ok(1));
    assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Ok(2));
    assert_eq!(close(&mut h, 1), 0);
    assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Ok(1));
    assert_eq!(alloc_unbound(&mut h, 0, NO_DOM), Ok(3), "dom 0 by id");
    assert_eq!(status(&mut h, 3), unbound(NO_DOM, 0));
    assert_eq!(status(&mut h, 1), unbound(0, 0), "DOMID_SELF is the caller");
    assert_eq!(bind_interdomain(&mut h, DOMID_SELF, 3), Err(EINVAL));
    assert_eq!(bind_interdomain(&mut h, NO_DOM, 3), Err(ESRCH));
    assert_eq!(alloc_unbound(&mut h, NO_DOM, DOMID_SELF), Err(ESRCH));
    assert_eq!(status_of(&mut h, NO_DOM, 1), Err(ESRCH));
    assert_eq!(status_of(&mut h, 0, 3), unbound(NO_DOM, 0));
    for p in 1..=3 {
        assert_eq!(close(&mut h, p), 0);
        assert_eq!(close(&mut h, p), EINVAL, "close of a closed port");
        assert_eq!(send(&mut h, p).0, EINVAL, "send on a closed port");
    }
}

#[test]
fn status_writes_only_the_union_members_it_uses() {
    let mut h = Harness::dom0();
    let fill = [0xaaaa_bbbb_u32, 0xcccc_dddd];
    let query = |h: &mut Harness, port: u32| {
        let mut raw = EvtchnStatus {
            dom: DOMID_SELF,
            port,
            status: 0xdead,
            vcpu: 0xbeef,
            u: fill,
        }
        .to_vec();
        raw[2] = 0x5a; // padding after `dom`
        raw[3] = 0xa5;
        let (ret, out, _) = op(h, EVTCHNOP_STATUS, &raw);
        assert_eq!(ret, 0);
        assert_eq!(
            &out[2..4],
            &[0x5a, 0xa5],
            "padding comes back as it went in"
        );
        let s = EvtchnStatus::read_from(&out).unwrap();
        (s.status, s.vcpu, s.u)
    };
    let p = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(query(&mut h, p), (1, 0, [0xaaaa_0000, 0xcccc_dddd]));
    let q = bind_interdomain(&mut h, DOMID_SELF, p).unwrap();
    assert_eq!(query(&mut h, q).0, 2);
    assert_eq!(query(&mut h, q).2, [0xaaaa_0000, p]);
    close(&mut h, q);
    close(&mut h, p);
    assert_eq!(query(&mut h, p), (0, 0, fill), "closed");
    let i = bind_ipi(&mut h, 0).unwrap();
    assert_eq!(query(&mut h, i), (5, 0, fill), "ipi");
    close(&mut h, i);
    let v = bind_virq(&mut h, VIRQ_TIMER, 0).unwrap();
    assert_eq!(query(&mut h, v), (4, 0, [VIRQ_TIMER, 0xcccc_dddd]), "virq");
}

#[test]
fn outputs_keep_padding_and_a_readonly_struct_faults_after_the_change() {
    let mut h = Harness::dom0();
    let mut raw = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: 0,
        local_port: 0,
    }
    .to_vec();
    let a = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    raw[2] = 0x11;
    raw[4..8].copy_from_slice(&a.to_le_bytes());
    let (ret, out, fx) = op(&mut h, EVTCHNOP_BIND_INTERDOMAIN, &raw);
    assert_eq!(ret, 0);
    assert_eq!(out[2], 0x11);
    assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), 2);
    assert_eq!(fx, vec![set(0, 2, 0)]);

    // Read-only argument: Xen answers -EFAULT and keeps the port ("cleaning up would be a
    // mess").
    let arg = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    h.mem.map(ARG, &arg.to_vec());
    for i in 0..8 {
        h.mem.readonly.insert(ARG + i, ());
    }
    let r = h.hypercall(
        u64::from(NR),
        [u64::from(EVTCHNOP_ALLOC_UNBOUND), ARG, 0, 0, 0],
    );
    assert_eq!(r.ret, EFAULT);
    h.mem.readonly.clear();
    assert_eq!(status(&mut h, 3), unbound(0, 0), "port 3 was allocated");
}

#[test]
fn loopback_delivers_both_ways_and_close_reverts_the_other_end() {
    let mut h = Harness::dom0();
    let a = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(send(&mut h, a), (0, vec![]), "unbound: dropped");
    let b = alloc_port_pair(&mut h, a);
    assert_eq!(status(&mut h, a), Ok((EVTCHNSTAT_INTERDOMAIN, 0, [0, b])));
    assert_eq!(status(&mut h, b), Ok((EVTCHNSTAT_INTERDOMAIN, 0, [0, a])));
    assert_eq!(
        bind_interdomain(&mut h, DOMID_SELF, a),
        Err(EINVAL),
        "already bound"
    );
    assert_eq!(send(&mut h, b), (0, vec![set(0, a, 0)]));
    assert_eq!(send(&mut h, a), (0, vec![set(0, b, 0)]));
    assert_eq!(
        port_op(&mut h, EVTCHNOP_UNMASK, a),
        (0, vec![unmask(0, a, 0)])
    );
    let (ret, fx) = port_op(&mut h, EVTCHNOP_CLOSE, b);
    assert_eq!(
        (ret, fx),
        (0, vec![EvtchnEffect::Clear { dom: 0, port: b }])
    );
    assert_eq!(status(&mut h, b), closed());
    assert_eq!(
        status(&mut h, a),
        unbound(0, 0),
        "other end back to unbound for us"
    );
    assert_eq!(send(&mut h, a), (0, vec![]));
    assert_eq!(close(&mut h, a), 0);
}

fn alloc_port_pair(h: &mut Harness, a: u32) -> u32 {
    let b = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
    };
    let (ret, out, fx) = op(h, EVTCHNOP_BIND_INTERDOMAIN, &b.to_vec());
    assert_eq!(ret, 0);
    let b = EvtchnBindInterdomain::read_from(&out).unwrap().local_port;
    assert!(b != a && b > 0);
    assert_eq!(
        fx,
        vec![set(0, b, 0)],
        "the new local port is marked pending"
    );
    b
}

fn unmask(dom: DomId, port: u32, vcpu: u32) -> EvtchnEffect {
    EvtchnEffect::Unmask { dom, port, vcpu }
}

#[test]
fn interdomain_between_two_domains_and_notify_vcpus() {
    let mut h = Harness::dom0();
    add_domain(&mut h, 2, false);
    let p0 = alloc_unbound(&mut h, DOMID_SELF, 2).unwrap();
    assert_eq!(bind_vcpu(&mut h, p0, 1), 0, "an unbound port can be routed");
    h.dom = 2;
    assert_eq!(
        alloc_unbound(&mut h, 0, 2),
        Err(EPERM),
        "a domU allocates only in itself"
    );
    assert_eq!(status_of(&mut h, 0, p0), Err(EPERM));
    assert_eq!(status_of(&mut h, 0, 4095), Err(EINVAL), "validity first");
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, 0), EPERM);
    let p2 = EvtchnBindInterdomain {
        remote_dom: 0,
        remote_port: p0,
        local_port: 0,
    };
    let (ret, out, fx) = op(&mut h, EVTCHNOP_BIND_INTERDOMAIN, &p2.to_vec());
    assert_eq!(ret, 0);
    let p2 = EvtchnBindInterdomain::read_from(&out).unwrap().local_port;
    assert_eq!(p2, 1);
    assert_eq!(fx, vec![set(2, 1, 0)]);
    assert_eq!(
        send(&mut h, p2),
        (0, vec![set(0, p0, 1)]),
        "to dom0's vCPU 1"
    );
    assert_eq!(status(&mut h, p2), Ok((EVTCHNSTAT_INTERDOMAIN, 0, [0, p0])));
    h.dom = 0;
    assert_eq!(send(&mut h, p0), (0, vec![set(2, p2, 0)]));
    assert_eq!(
        status_of(&mut h, 2, p2),
        Ok((EVTCHNSTAT_INTERDOMAIN, 0, [0, p0])),
        "dom0 may look at others' ports"
    );
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, 2), EINVAL, "not paused");
    h.dom = 2;
    assert_eq!(close(&mut h, p2), 0);
    h.dom = 0;
    assert_eq!(status(&mut h, p0), unbound(2, 1), "keeps vCPU 1");
    // A port offered to dom0 itself cannot be taken by dom 2.
    let own = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    h.dom = 2;
    assert_eq!(bind_interdomain(&mut h, 0, own), Err(EINVAL));
}

#[test]
fn ipis_notify_their_vcpu_and_cannot_move() {
    let mut h = Harness::dom0();
    let p = bind_ipi(&mut h, 1).unwrap();
    assert_eq!(status(&mut h, p), Ok((EVTCHNSTAT_IPI, 1, [0, 0])));
    assert_eq!(send(&mut h, p), (0, vec![set(0, p, 1)]));
    assert_eq!(bind_vcpu(&mut h, p, 0), EINVAL);
    assert_eq!(bind_ipi(&mut h, 2), Err(ENOENT));
    assert_eq!(bind_ipi(&mut h, 4096), Err(ENOENT));
    assert_eq!(
        port_op(&mut h, EVTCHNOP_CLOSE, p),
        (0, vec![EvtchnEffect::Clear { dom: 0, port: p }])
    );
}

#[test]
fn per_vcpu_and_global_virqs() {
    let mut h = Harness::dom0();
    let t0 = bind_virq(&mut h, VIRQ_TIMER, 0).unwrap();
    let t1 = bind_virq(&mut h, VIRQ_TIMER, 1).unwrap();
    assert_ne!(t0, t1);
    assert_eq!(
        status(&mut h, t1),
        Ok((EVTCHNSTAT_VIRQ, 1, [VIRQ_TIMER, 0]))
    );
    assert_eq!(bind_virq(&mut h, VIRQ_TIMER, 1), Err(EEXIST));
    assert_eq!(bind_vcpu(&mut h, t1, 0), EINVAL, "per-vCPU VIRQs stay put");
    assert_eq!(send(&mut h, t1).0, EINVAL);
    assert_eq!(close(&mut h, t1), 0);
    assert_eq!(
        bind_virq(&mut h, VIRQ_TIMER, 1),
        Ok(t1),
        "rebinds after close"
    );
    assert!(
        bind_virq(&mut h, VIRQ_DEBUG, 1).is_ok(),
        "VIRQ_DEBUG is per-vCPU"
    );
    assert_eq!(bind_virq(&mut h, VIRQ_DEBUGGER, 1), Err(EINVAL), "global");
    assert_eq!(
        bind_virq(&mut h, VIRQ_DEBUGGER, 4096),
        Err(EINVAL),
        "before ENOENT"
    );
    assert_eq!(bind_virq(&mut h, VIRQ_TIMER, 2), Err(ENOENT));
    assert_eq!(bind_virq(&mut h, VIRQ_TIMER, 4096), Err(ENOENT));
    assert_eq!(bind_virq(&mut h, NR_VIRQS, 0), Err(EINVAL));
    assert_eq!(bind_virq(&mut h, u32::MAX, 0), Err(EINVAL));
    let g = bind_virq(&mut h, VIRQ_DEBUGGER, 0).unwrap();
    assert_eq!(bind_virq(&mut h, VIRQ_DEBUGGER, 0), Err(EEXIST));
    assert_eq!(bind_vcpu(&mut h, g, 1), 0);
    assert_eq!(
        status(&mut h, g),
        Ok((EVTCHNSTAT_VIRQ, 1, [VIRQ_DEBUGGER, 0]))
    );
    assert_eq!(
        bind_virq(&mut h, VIRQ_DEBUGGER, 0),
        Err(EEXIST),
        "still on vCPU 0's list"
    );
    assert_eq!(bind_vcpu(&mut h, g, 4096), ENOENT);
    assert_eq!(close(&mut h, g), 0);
    let g = bind_virq(&mut h, VIRQ_DEBUGGER, 0);
    assert!(g.is_ok(), "the binding went with the close");
    for virq in [5, 23] {
        let p = bind_virq(&mut h, virq, 0).unwrap();
        assert_eq!(status(&mut h, p), Ok((EVTCHNSTAT_VIRQ, 0, [virq, 0])));
        assert_eq!(
            bind_virq(&mut h, virq, 1),
            Err(EINVAL),
            "unnamed VIRQs are global"
        );
    }
}

#[test]
fn send_virq_raises_bound_virqs_only() {
    let mut h = Harness::dom0();
    add_domain(&mut h, 3, false);
    use crate::evtchn::virq::{send_global_virq, send_virq, set_global_virq_handler};
    let (sent, fx) = with_ctx(&mut h, 0, |s, c| send_virq(s, c, 0, 1, VIRQ_TIMER).unwrap());
    assert!(!sent && fx.is_empty(), "unbound VIRQ dropped");
    let t1 = bind_virq(&mut h, VIRQ_TIMER, 1).unwrap();
    let (sent, fx) = with_ctx(&mut h, 0, |s, c| send_virq(s, c, 0, 1, VIRQ_TIMER).unwrap());
    assert!(sent);
    assert_eq!(fx, vec![set(0, t1, 1)]);
    let (sent, _) = with_ctx(&mut h, 0, |s, c| send_virq(s, c, 0, 0, VIRQ_TIMER).unwrap());
    assert!(!sent, "bound on vCPU 1 only");

    let exc = bind_virq(&mut h, VIRQ_DOM_EXC, 0).unwrap();
    assert_eq!(bind_vcpu(&mut h, exc, 1), 0);
    let (sent, fx) = with_ctx(&mut h, 3, |s, c| {
        send_global_virq(s, c, VIRQ_DOM_EXC).unwrap()
    });
    assert!(sent);
    assert_eq!(
        fx,
        vec![set(0, exc, 1)],
        "to dom0, on the vCPU it was routed to"
    );
    let (sent, _) = with_ctx(&mut h, 0, |s, c| {
        send_global_virq(s, c, VIRQ_TIMER).unwrap()
    });
    assert!(!sent, "per-vCPU VIRQs are not global");

    let (r, _) = with_ctx(&mut h, 0, |s, c| {
        set_global_virq_handler(s, c, 3, VIRQ_DOM_EXC)
    });
    assert_eq!(r, Ok(()));
    let (sent, _) = with_ctx(&mut h, 0, |s, c| {
        send_global_virq(s, c, VIRQ_DOM_EXC).unwrap()
    });
    assert!(!sent, "dom 3 has not bound it");
    h.dom = 3;
    let p3 = bind_virq(&mut h, VIRQ_DOM_EXC, 0).unwrap();
    let (_, fx) = with_ctx(&mut h, 0, |s, c| {
        send_global_virq(s, c, VIRQ_DOM_EXC).unwrap()
    });
    assert_eq!(fx, vec![set(3, p3, 0)]);
    let (r, _) = with_ctx(&mut h, 0, |s, c| {
        set_global_virq_handler(s, c, 3, VIRQ_TIMER)
    });
    assert_eq!(r, Err(dom0_interface::errno::XenErrno::EINVAL));
    let (r, _) = with_ctx(&mut h, 0, |s, c| {
        set_global_virq_handler(s, c, 9, VIRQ_DOM_EXC)
    });
    assert_eq!(r, Err(dom0_interface::errno::XenErrno::EINVAL));
}

#[test]
fn reset_closes_everything_and_frees_virqs() {
    let mut h = Harness::dom0();
    let a = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    let b = bind_interdomain(&mut h, DOMID_SELF, a).unwrap();
    let t = bind_virq(&mut h, VIRQ_TIMER, 0).unwrap();
    let i = bind_ipi(&mut h, 0).unwrap();
    let (ret, _, fx) = op(
        &mut h,
        EVTCHNOP_RESET,
        &EvtchnReset { dom: DOMID_SELF }.to_vec(),
    );
    assert_eq!(ret, 0);
    let cleared: Vec<u32> = fx
        .iter()
        .filter_map(|e| match e {
            EvtchnEffect::Clear { dom: 0, port } => Some(*port),
            _ => None,
        })
        .collect();
    assert_eq!(cleared, vec![a, b, t, i]);
    for p in [a, b, t, i] {
        assert_eq!(status(&mut h, p), closed());
    }
    assert_eq!(bind_virq(&mut h, VIRQ_TIMER, 0), Ok(1));
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, NO_DOM), ESRCH);
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, 0), 0, "by id, ourselves");
    assert_eq!(
        reset(&mut h, EVTCHNOP_RESET, DOMID_SELF),
        0,
        "nothing to close"
    );
}

#[test]
fn reset_of_a_paused_domain_by_its_controller() {
    let mut h = Harness::dom0();
    add_domain(&mut h, 2, false);
    h.dom = 2;
    bind_ipi(&mut h, 1).unwrap();
    h.dom = 0;
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, 2), EINVAL);
    let mut j = Journal::new();
    j.begin(1);
    h.state
        .domains
        .update(&mut j, &2, |d| d.flags.paused = true);
    lockstep::replica::forget(&mut h.state);
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, 2), 0);
    assert_eq!(status_of(&mut h, 2, 1), closed());
}

#[test]
fn buckets_grow_on_demand_up_to_4095_ports_then_enospc() {
    let mut h = Harness::dom0();
    for p in 1..PORTS_PER_BUCKET {
        assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Ok(p));
    }
    assert_eq!(status(&mut h, PORTS_PER_BUCKET), Err(EINVAL));
    assert_eq!(bind_interdomain(&mut h, DOMID_SELF, 4095), Err(EINVAL));
    assert_eq!(
        status(&mut h, PORTS_PER_BUCKET),
        closed(),
        "the failed bind left the next bucket valid"
    );
    assert_eq!(status(&mut h, 2 * PORTS_PER_BUCKET), Err(EINVAL));
    for p in PORTS_PER_BUCKET..NR_PORTS {
        assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Ok(p));
    }
    assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Err(ENOSPC));
    assert_eq!(bind_ipi(&mut h, 0), Err(ENOSPC));
    assert_eq!(bind_virq(&mut h, VIRQ_TIMER, 0), Err(ENOSPC));
    assert_eq!(bind_interdomain(&mut h, DOMID_SELF, 1), Err(ENOSPC));

    // Reset of 4095 ports continues itself in batches.
    let mut cmd = EVTCHNOP_RESET;
    let mut rounds = 0;
    loop {
        h.mem.map(ARG, &EvtchnReset { dom: DOMID_SELF }.to_vec());
        let r = h.hypercall(u64::from(NR), [u64::from(cmd), ARG, 0, 0, 0]);
        rounds += 1;
        match r.effects.iter().find_map(|e| match e {
            Effect::Continue(a) => Some(*a),
            _ => None,
        }) {
            Some(a) => {
                assert_eq!(a[0], u64::from(super::EVTCHNOP_RESET_CONT));
                assert_eq!(a[1], ARG);
                cmd = super::EVTCHNOP_RESET_CONT;
                // A fresh reset while one is in progress is refused.
                assert_eq!(reset(&mut h, EVTCHNOP_RESET, DOMID_SELF), EBUSY);
            }
            None => {
                assert_eq!(r.ret, 0);
                break;
            }
        }
        assert!(rounds < 100);
    }
    assert!(rounds > 1, "4095 ports take more than one batch");
    assert_eq!(status(&mut h, NR_PORTS - 1), closed(), "still valid");
    assert_eq!(alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF), Ok(1));
    assert_eq!(reset(&mut h, super::EVTCHNOP_RESET_CONT, DOMID_SELF), EBUSY);
}

#[test]
fn a_port_limit_below_the_abi_gives_enospc_earlier() {
    let mut h = Harness::dom0();
    add_domain(&mut h, 4, false);
    let mut j = Journal::new();
    j.begin(1);
    crate::evtchn::table::set_max_port(&mut h.state, &mut j, 4, 2);
    lockstep::replica::forget(&mut h.state);
    h.dom = 4;
    assert_eq!(bind_ipi(&mut h, 0), Ok(1));
    assert_eq!(bind_ipi(&mut h, 0), Ok(2));
    assert_eq!(bind_ipi(&mut h, 0), Err(ENOSPC));
}

#[test]
fn dying_domains_allocate_nothing_and_destroy_closes_both_ends() {
    let mut h = Harness::dom0();
    add_domain(&mut h, 2, false);
    let p0 = alloc_unbound(&mut h, DOMID_SELF, 2).unwrap();
    h.dom = 2;
    let p2 = bind_interdomain(&mut h, 0, p0).unwrap();
    bind_virq(&mut h, VIRQ_TIMER, 1).unwrap();
    let mut j = Journal::new();
    j.begin(1);
    h.state.domains.update(&mut j, &2, |d| d.flags.dying = true);
    lockstep::replica::forget(&mut h.state);
    assert_eq!(
        bind_ipi(&mut h, 0),
        Err(EINVAL),
        "get_free_port of a dying domain"
    );
    let (_, fx) = with_ctx(&mut h, 0, |s, c| {
        crate::evtchn::ops::destroy_domain(s, c, 2)
    });
    assert!(fx.contains(&EvtchnEffect::Clear { dom: 2, port: p2 }));
    h.dom = 0;
    assert_eq!(
        status(&mut h, p0),
        unbound(2, 0),
        "dom0's end is unbound again"
    );
    assert!(h.state.evtchns.iter().all(|((d, _), _)| *d != 2));
    assert!(h.state.virqs.iter().all(|((d, _, _), _)| *d != 2));
}

#[test]
fn rollback_restores_the_port_tables_bit_for_bit() {
    let mut h = Harness::dom0();
    let a = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    bind_interdomain(&mut h, DOMID_SELF, a).unwrap();
    let before = lockstep::replica::full_digest(&h.state);
    let mut j = Journal::new();
    j.begin(7_777);
    let mut effects = Effects::new();
    let req = Request::exit(ExitKind::Interrupt, 0, 0, GuestRegs::default(), 0, 0, 0);
    let words = req.to_words();
    {
        let mut input = Input::direct(&words, &mut h.mem);
        let mut tx = TxCtx::new(&mut j, &mut effects);
        let mut ctx = Ctx::new(&mut input, &mut tx, &req);
        for _ in 0..70 {
            crate::evtchn::ops::bind_ipi(&mut h.state, &mut ctx, 0).unwrap();
        }
        crate::evtchn::ops::close(&mut h.state, &mut ctx, 0, a).unwrap();
        crate::evtchn::ops::reset(&mut h.state, &mut ctx, DOMID_SELF, false).unwrap();
    }
    assert_ne!(lockstep::replica::full_digest(&h.state), before);
    lockstep::replica::rollback(&mut h.state, 7_777);
    assert_eq!(lockstep::replica::full_digest(&h.state), before);
    assert_eq!(status(&mut h, a).map(|s| s.0), Ok(EVTCHNSTAT_INTERDOMAIN));
}

mod fifo;
