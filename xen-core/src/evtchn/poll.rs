//! SCHEDOP_poll (Xen 4.17's `do_poll`): wait until one of a set of ports is pending.
//!
//! Design. Whether a port is pending is a bit in the domain's shared_info page, which the
//! guest and other CPUs change at any time, so the handler reads it through the input log
//! (`Ctx::read_machine` at the page's machine address, recorded by the leader and replayed
//! to the follower): both executions see the same bits and take the same decision. The ports
//! are checked in Xen's order, one at a time — read the port (-EFAULT), check it is a bound
//! port (-EINVAL), return 0 at once if it is pending — so errors after a pending port are
//! never reported, exactly as in Xen.
//!
//! If nothing is pending the vCPU waits. With the scheduler in the replica it blocks there,
//! with the timeout as its wake-up deadline, and is recorded in `HvState::evtchn_pollers`;
//! a later transaction raising one of its ports ([`super::notify`]) wakes it. This relies on
//! the commit rule that a transaction's effects (the `Set` that makes a port pending) are
//! applied under the domain's lock before a later transaction of that domain reads the page,
//! so a poll never misses a port raised before it. Without a scheduler in the replica the
//! handler emits [`EvtchnEffect::Poll`] and the embedder waits: it marks the vCPU polling,
//! checks the bits again with [`super::deliver::is_pending`] (as Xen re-checks after setting
//! `_VPF_blocked`), and sleeps until a `Set` for one of the ports, any event (several
//! ports), or the timeout.

use super::deliver::PENDING_OFFSET;
use super::table::{self, Slot};
use super::{EvtchnEffect, BITS_PER_WORD, NR_PORTS, POLL_ANY};
use crate::domain::VcpuKey;
use crate::effect::DomId;
use crate::hv::{Abort, Ctx, HvError, HvResult, HvState};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::sched::SchedPoll;

/// Most ports one poll may name (Xen's "fairly arbitrary limit").
pub const MAX_POLL_PORTS: u32 = 128;

/// End of the range Xen reserves in every 64-bit PV guest.
const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;

/// `__addr_ok` for a 64-bit PV guest: a lower-half address or one above Xen's range.
fn pv_addr_ok(addr: u64) -> bool {
    !((1 << 47)..HYPERVISOR_VIRT_END).contains(&addr)
}

/// Reads `buf.len()` bytes at machine address `maddr` (0: unknown) through the input;
/// `false` if unknown or not readable (then nothing counts as pending and the vCPU waits: a
/// spurious-free but possibly late answer, never a wrong one).
fn read_at(ctx: &mut Ctx<'_, '_, '_>, maddr: u64, buf: &mut [u8]) -> Result<bool, HvError> {
    if maddr == 0 {
        return Ok(false);
    }
    match ctx.read_machine(maddr, buf) {
        Ok(()) => Ok(true),
        Err(HvError::Errno(_)) => Ok(false),
        Err(e @ HvError::Abort(_)) => Err(e),
    }
}

/// `evtchn_2l_is_pending` on the page, or `evtchn_fifo_is_pending` on the event word,
/// through the input.
fn port_pending(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    port: u32,
) -> Result<bool, HvError> {
    if super::fifo::is_fifo(state, dom) {
        // `evtchn_fifo_is_pending`: PENDING of its event word (none beyond the array).
        let Some(at) = super::fifo::word_maddr(state, dom, port) else {
            return Ok(false);
        };
        let mut w = [0u8; 4];
        if !read_at(ctx, at, &mut w)? {
            return Ok(false);
        }
        let pending = dom0_interface::event_channel::EVTCHN_FIFO_PENDING;
        return Ok(u32::from_le_bytes(w) & (1 << pending) != 0);
    }
    if port >= NR_PORTS {
        return Ok(false);
    }
    let Some(base) = state
        .dom_time
        .get(&dom)
        .map(|t| t.shared_info_maddr)
        .filter(|m| *m != 0)
    else {
        return Ok(false);
    };
    let mut w = [0u8; 8];
    let off = PENDING_OFFSET as u64 + u64::from(port / BITS_PER_WORD) * 8;
    if !read_at(ctx, base + off, &mut w)? {
        return Ok(false);
    }
    Ok(u64::from_le_bytes(w) & (1 << (port % BITS_PER_WORD)) != 0)
}

/// `local_events_need_delivery`: the calling vCPU has an upcall pending and not masked (its
/// vcpu_info: the registered one or its shared_info slot).
fn events_need_delivery(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
) -> Result<bool, HvError> {
    let Some(info) = crate::sched::vcpu_info_maddr(state, key) else {
        return Ok(false);
    };
    let mut b = [0u8; 2];
    if !read_at(ctx, info, &mut b)? {
        return Ok(false);
    }
    Ok(b[0] != 0 && b[1] == 0)
}

/// `sched_op(SCHEDOP_poll, arg)`: `arg` points to a `struct sched_poll`.
pub fn sched_poll(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut raw = [0u8; SchedPoll::SIZE];
    ctx.copy_from_guest(arg, &mut raw)?;
    let poll = SchedPoll::read_from(&raw).map_err(|_| HvError::Abort(Abort::BadRequest))?;
    if poll.nr_ports > MAX_POLL_PORTS {
        return Err(XenErrno::EINVAL.into());
    }
    if !pv_addr_ok(poll.ports) {
        return Err(XenErrno::EFAULT.into());
    }
    let key = (ctx.dom(), ctx.req.vcpu);
    let dom = key.0;
    if events_need_delivery(state, ctx, key)? {
        return Ok(0);
    }
    let mut ports = Vec::with_capacity(poll.nr_ports as usize);
    for i in 0..u64::from(poll.nr_ports) {
        let mut b = [0u8; 4];
        ctx.copy_from_guest(poll.ports.wrapping_add(i * 4), &mut b)?;
        let port = u32::from_le_bytes(b);
        // `evtchn_port_poll`: invalid, free and reserved ports are refused.
        if !matches!(table::slot(state, dom, port)?, Slot::Bound(_)) {
            return Err(XenErrno::EINVAL.into());
        }
        if port_pending(state, ctx, dom, port)? {
            return Ok(0);
        }
        ports.push(port);
    }
    block(state, ctx, key, ports, poll.timeout)?;
    Ok(0)
}

/// Nothing pending: the vCPU waits. With the scheduler in the replica it blocks there (with
/// the timeout as its wake-up deadline) and is recorded as polling, so that [`super::notify`]
/// wakes it; without one the embedder is asked to wait ([`EvtchnEffect::Poll`]).
fn block(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
    ports: Vec<u32>,
    timeout: u64,
) -> Result<(), HvError> {
    if state.runqs.is_empty() {
        super::emit(ctx, EvtchnEffect::Poll { ports, timeout });
        return Ok(());
    }
    let wait = match ports.as_slice() {
        [one] => *one,
        _ => POLL_ANY,
    };
    state.evtchn_pollers.insert(ctx.journal(), key, wait);
    let deadline = (timeout != 0).then_some(timeout);
    crate::sched::with_sched(state, ctx, |s| crate::sched::block(s, key, deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::Effect;
    use crate::hv::Xen;
    use crate::hypercall::testing::Harness;
    use crate::request::{GuestRegs, Request};
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use dom0_interface::sched::SCHEDOP_POLL;
    use dom0_interface::xen::HYPERVISOR_SCHED_OP;
    use lockstep::effects::Effects;
    use lockstep::input::{Env, Input};
    use lockstep::machine::execute;
    use lockstep::Journal;

    /// Machine address of dom0's shared_info page in these tests.
    const SI: u64 = 0x7_7000;
    const POLL_ARG: u64 = 0x1000;
    const PORTS: u64 = 0x2000;

    /// Guest memory plus one machine page (the shared_info).
    struct PollEnv {
        guest: BTreeMap<u64, u8>,
        page: Vec<u8>,
    }

    impl Env for PollEnv {
        fn value(&mut self, _kind: u32) -> u64 {
            0
        }
        fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
            for (i, b) in buf.iter_mut().enumerate() {
                match self.guest.get(&addr.wrapping_add(i as u64)) {
                    Some(v) => *b = *v,
                    None => return false,
                }
            }
            true
        }
        fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = maddr.checked_sub(SI) else {
                return false;
            };
            match self.page.get(off as usize..off as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    struct Setup {
        state: HvState,
        env: PollEnv,
        epoch: u64,
    }

    impl Setup {
        /// dom0 with an IPI port 1 and a loopback pair 2/3 (3 pending from the bind, cleared
        /// here), shared_info at [`SI`] when `known`.
        fn new(known: bool) -> Self {
            let mut h = Harness::dom0();
            for p in [1u32, 2] {
                let (cmd, arg): (u32, Vec<u8>) = if p == 1 {
                    (7, vec![0, 0, 0, 0, 0, 0, 0, 0])
                } else {
                    (6, vec![0xf0, 0x7f, 0xf0, 0x7f, 0, 0, 0, 0])
                };
                h.mem.map(0x3000, &arg);
                let r = h.hypercall(32, [u64::from(cmd), 0x3000, 0, 0, 0]);
                assert_eq!(r.ret, 0);
            }
            h.mem
                .map(0x3000, &[0xf0, 0x7f, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(h.hypercall(32, [0, 0x3000, 0, 0, 0]).ret, 0);
            let mut state = h.state;
            if known {
                let mut j = Journal::new();
                j.begin(1);
                let t = crate::sched::DomTime {
                    shared_info_maddr: SI,
                    wc_version: 0,
                };
                state.dom_time.insert(&mut j, 0, t);
                lockstep::replica::forget(&mut state);
            }
            Setup {
                state,
                env: PollEnv {
                    guest: BTreeMap::new(),
                    page: vec![0; 4096],
                },
                epoch: 100,
            }
        }

        fn set_pending(&mut self, port: u32) {
            let off = PENDING_OFFSET + (port / 8) as usize;
            self.env.page[off] |= 1 << (port % 8);
        }

        fn map(&mut self, addr: u64, bytes: &[u8]) {
            for (i, b) in bytes.iter().enumerate() {
                self.env.guest.insert(addr + i as u64, *b);
            }
        }

        /// SCHEDOP_poll on `ports` (written at [`PORTS`]); returns RAX and the Poll effect.
        fn poll_at(
            &mut self,
            ports_addr: u64,
            nr: u32,
            timeout: u64,
        ) -> (i64, Option<EvtchnEffect>) {
            let arg = SchedPoll {
                ports: ports_addr,
                nr_ports: nr,
                timeout,
            };
            self.map(POLL_ARG, &arg.to_vec());
            self.run(POLL_ARG)
        }

        fn poll(&mut self, ports: &[u32], timeout: u64) -> (i64, Option<EvtchnEffect>) {
            let bytes: Vec<u8> = ports.iter().flat_map(|p| p.to_le_bytes()).collect();
            self.map(PORTS, &bytes);
            self.poll_at(PORTS, ports.len() as u32, timeout)
        }

        fn run(&mut self, arg: u64) -> (i64, Option<EvtchnEffect>) {
            self.epoch += 1;
            let regs = GuestRegs {
                rax: u64::from(HYPERVISOR_SCHED_OP),
                rdi: u64::from(SCHEDOP_POLL),
                rsi: arg,
                ..Default::default()
            };
            let words = Request::hypercall(0, 0, regs).to_words();
            let mut effects = Effects::new();
            let mut journal = Journal::new();
            let mut input = Input::direct(&words, &mut self.env);
            let report = execute::<Xen>(
                &mut self.state,
                &mut journal,
                self.epoch,
                &mut effects,
                &mut input,
            );
            assert!(report.error.is_none());
            let mut ret = None;
            let mut poll = None;
            for e in effects.as_slice() {
                match e {
                    Effect::Return(v) => ret = Some(*v),
                    Effect::Evtchn(p @ EvtchnEffect::Poll { .. }) => poll = Some(p.clone()),
                    _ => {}
                }
            }
            (ret.unwrap_or(i64::MIN), poll)
        }
    }

    fn blocked(ports: &[u32], timeout: u64) -> (i64, Option<EvtchnEffect>) {
        (
            0,
            Some(EvtchnEffect::Poll {
                ports: ports.to_vec(),
                timeout,
            }),
        )
    }

    #[test]
    fn nothing_pending_blocks_with_the_ports_and_timeout() {
        let mut s = Setup::new(true);
        assert_eq!(s.poll(&[1], 5_000), blocked(&[1], 5_000));
        assert_eq!(s.poll(&[1, 2, 3], 0), blocked(&[1, 2, 3], 0));
        assert_eq!(s.poll(&[], 0), blocked(&[], 0), "no ports: any event");
    }

    #[test]
    fn a_pending_port_returns_at_once_and_ends_the_scan() {
        let mut s = Setup::new(true);
        s.set_pending(2);
        assert_eq!(s.poll(&[2], 0), (0, None));
        assert_eq!(s.poll(&[1, 2], 0), (0, None));
        assert_eq!(
            s.poll(&[2, 4095], 0),
            (0, None),
            "the bad port after it is never read"
        );
        assert_eq!(s.poll(&[4095, 2], 0), (-22, None), "in order");
        // A pending port before an unreadable entry: 0; after it: -EFAULT.
        s.map(PORTS, &2u32.to_le_bytes());
        assert_eq!(s.poll_at(PORTS, 2, 0), (0, None));
        s.map(PORTS + 0x100, &1u32.to_le_bytes());
        assert_eq!(s.poll_at(PORTS + 0x100, 2, 0), (-14, None));
    }

    #[test]
    fn unusable_ports_and_limits() {
        let mut s = Setup::new(true);
        assert_eq!(s.poll(&[0], 0), (-22, None), "reserved");
        assert_eq!(s.poll(&[63], 0), (-22, None), "free");
        assert_eq!(s.poll(&[64], 0), (-22, None), "not valid");
        assert_eq!(s.poll(&[1; 129], 0), (-22, None));
        assert_eq!(s.poll(&[1; 128], 0), blocked(&[1; 128], 0));
        assert_eq!(s.poll_at(0, 1, 0), (-14, None), "unmapped port array");
        assert_eq!(s.poll_at(0, 0, 0), blocked(&[], 0), "nothing to read");
        let xen_range = 0xFFFF_8000_0000_0000;
        assert_eq!(
            s.poll_at(xen_range, 0, 0),
            (-14, None),
            "Xen's range: -EFAULT"
        );
        assert_eq!(s.run(0xdead_0000), (-14, None), "unreadable sched_poll");
    }

    #[test]
    fn pending_upcall_returns_before_looking_at_ports() {
        let mut s = Setup::new(true);
        s.env.page[0] = 1; // vcpu_info[0].evtchn_upcall_pending
        assert_eq!(s.poll(&[4095], 0), (0, None));
        s.env.page[1] = 1; // ... but masked
        assert_eq!(s.poll(&[4095], 0), (-22, None));
        assert_eq!(
            s.poll_at(0xFFFF_8000_0000_0000, 1, 0),
            (-14, None),
            "handle check first"
        );
    }

    #[test]
    fn with_the_scheduler_a_poll_blocks_in_the_replica_until_a_send_wakes_it() {
        use crate::sched::tests::{Rig, SHARED_INFO};
        let mut r = Rig::new(2, 1);
        r.map(0x3000, &[0; 8]);
        assert_eq!(r.call(0, 32, [7, 0x3000, 0, 0, 0]).0, 0, "bind_ipi(0) -> 1");
        r.map(0x4000, &1u32.to_le_bytes());
        let arg = SchedPoll {
            ports: 0x4000,
            nr_ports: 1,
            timeout: 50_000_000,
        };
        r.map(0x5000, &arg.to_vec());
        let poll = [u64::from(SCHEDOP_POLL), 0x5000, 0, 0, 0];

        // Pending already: no wait.
        r.world
            .machine
            .insert(SHARED_INFO + PENDING_OFFSET as u64, 1 << 1);
        assert_eq!(r.call(0, HYPERVISOR_SCHED_OP, poll).0, 0);
        assert!(!r.vcpu(0).blocked);
        r.world
            .machine
            .insert(SHARED_INFO + PENDING_OFFSET as u64, 0);

        let (ret, fx) = r.call(0, HYPERVISOR_SCHED_OP, poll);
        assert_eq!(ret, 0);
        assert!(r.vcpu(0).blocked, "blocked in the replica");
        assert_eq!(r.state.evtchn_pollers.get(&(0, 0)), Some(&1));
        assert!(!fx
            .iter()
            .any(|e| matches!(e, Effect::Evtchn(EvtchnEffect::Poll { .. }))));

        // An event on another port for vCPU 1 does not wake vCPU 0.
        r.map(0x3000, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.call(1, 32, [7, 0x3000, 0, 0, 0]).0, 0, "bind_ipi(1) -> 2");
        r.map(0x6000, &2u32.to_le_bytes());
        assert_eq!(r.call(1, 32, [4, 0x6000, 0, 0, 0]).0, 0);
        assert!(r.vcpu(0).blocked);

        // vCPU 1 sends on port 1 (an IPI to vCPU 0): vCPU 0 wakes.
        r.map(0x6000, &1u32.to_le_bytes());
        let (ret, fx) = r.call(1, 32, [4, 0x6000, 0, 0, 0]);
        assert_eq!(ret, 0);
        assert!(fx.contains(&Effect::Evtchn(EvtchnEffect::Set {
            dom: 0,
            port: 1,
            vcpu: 0
        })));
        assert!(!r.vcpu(0).blocked, "woken");
        assert!(r.state.evtchn_pollers.is_empty());
    }

    #[test]
    fn unknown_shared_info_leaves_the_check_to_the_bare_metal_side() {
        let mut s = Setup::new(false);
        s.set_pending(2);
        s.env.page[0] = 1;
        assert_eq!(s.poll(&[2], 7), blocked(&[2], 7));
        assert_eq!(s.poll(&[4095], 7), (-22, None), "validity is still checked");
    }
}
