//! `fifo`: the FIFO-based event channel ABI as Xen 4.17 implements it, on one domain with two
//! vCPUs: `EVTCHNOP_init_control` and its errors, the switch from 2-level (a port pending
//! before the switch is raised when its event array page is added), `EVTCHNOP_expand_array`,
//! events consumed from the queues as Linux does (READY, head, LINK, LINKED), masked events
//! linked only on unmask, priorities, `EVTCHNOP_set_priority` errors, a second vCPU's queue
//! with `bind_vcpu`, close, and `EVTCHNOP_reset` back to 2-level. Run with 2 vCPUs.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::evtchn::{self, DOMID_SELF, VIRQ_DEBUG, VIRQ_TIMER};
use guest_rt::pvmm::{self, pte, Scratch};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info, skip};
use guest_rt::{println, sched, vcpu, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// `event_word_t` bits (`public/event_channel.h`).
const PENDING: u32 = 1 << 31;
const MASKED: u32 = 1 << 30;
const LINKED: u32 = 1 << 29;
const LINK_MASK: u32 = (1 << 17) - 1;
/// `sizeof(struct evtchn_fifo_control_block)`.
const CONTROL_BLOCK_SIZE: u32 = 72;
/// Offset of vCPU 1's control block in the control frame (vCPU 0's is at 0).
const CB1_OFFSET: u32 = 128;
/// The default priority.
const DEFAULT_PRIO: u32 = 7;
/// How long to wait for a 1 ms timer (generous: TCG under load), in ns.
const FIRE_WAIT: u64 = 2_000_000_000;

/// The control block frame and the event array frame, reached through the one scratch page
/// (remapped as needed).
struct Fifo {
    scratch: Scratch,
    control: u64,
    array: u64,
}

impl Fifo {
    fn frame(&mut self, mfn: u64) {
        if self.scratch.mapped_mfn() != Some(mfn) {
            let flags = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
            if self.scratch.map(mfn, flags).is_err() {
                guest_rt::test::error(format_args!("mapping frame {:#x} failed", mfn));
            }
        }
    }

    fn read32(&mut self, mfn: u64, off: u32) -> u32 {
        self.frame(mfn);
        let w = self.scratch.read((off / 8) as usize).unwrap_or(0);
        (w >> ((off % 8) * 8)) as u32
    }

    fn write32(&mut self, mfn: u64, off: u32, v: u32) {
        self.frame(mfn);
        let i = (off / 8) as usize;
        let shift = (off % 8) * 8;
        let w = self.scratch.read(i).unwrap_or(0);
        let w = (w & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
        self.scratch.write(i, w);
    }

    fn word(&mut self, port: u32) -> u32 {
        let a = self.array;
        self.read32(a, port * 4)
    }

    fn set_word(&mut self, port: u32, v: u32) {
        let a = self.array;
        self.write32(a, port * 4, v)
    }

    fn cb_off(vcpu: u32) -> u32 {
        if vcpu == 0 {
            0
        } else {
            CB1_OFFSET
        }
    }

    fn ready(&mut self, vcpu: u32) -> u32 {
        let c = self.control;
        self.read32(c, Self::cb_off(vcpu))
    }

    /// `xchg(&control_block->ready, 0)`.
    fn take_ready(&mut self, vcpu: u32) -> u32 {
        let r = self.ready(vcpu);
        let c = self.control;
        self.write32(c, Self::cb_off(vcpu), 0);
        r
    }

    fn head(&mut self, vcpu: u32, prio: u32) -> u32 {
        let c = self.control;
        self.read32(c, Self::cb_off(vcpu) + 8 + 4 * prio)
    }

    /// Linux's `__evtchn_fifo_handle_events` for `vcpu`: take READY, then repeatedly consume
    /// one event of the highest-priority ready queue (read the head from the control block
    /// when the local head is 0, clear LINKED and LINK, follow LINK; an empty LINK clears the
    /// queue's ready bit), handling (here: recording, and clearing PENDING of) pending
    /// unmasked events. Returns the ports handled, in order.
    fn consume(&mut self, vcpu: u32, out: &mut [u32; 16]) -> usize {
        let mut local = [0u32; 16];
        let mut n = 0;
        let mut ready = self.take_ready(vcpu);
        let mut rounds = 0;
        while ready != 0 && rounds < 64 {
            rounds += 1;
            let q = ready.trailing_zeros();
            let mut head = local[q as usize];
            if head == 0 {
                head = self.head(vcpu, q);
            }
            let port = head;
            let w = self.word(port);
            self.set_word(port, w & !(LINKED | LINK_MASK));
            let next = w & LINK_MASK;
            if next == 0 {
                ready &= !(1 << q);
            }
            if w & PENDING != 0 && w & MASKED == 0 && port != 0 {
                let w2 = self.word(port);
                self.set_word(port, w2 & !PENDING);
                if n < out.len() {
                    out[n] = port;
                    n += 1;
                }
            }
            local[q as usize] = next;
            ready |= self.take_ready(vcpu);
        }
        n
    }
}

fn consumed(f: &mut Fifo, vcpu: u32) -> ([u32; 16], usize) {
    let mut out = [0u32; 16];
    let n = f.consume(vcpu, &mut out);
    (out, n)
}

fn main(si: &StartInfo) {
    println!("fifo: DualVisor PV test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    let frames = (0..3).map(|k| pvmm::spare_pfn(si, k).and_then(|p| pvmm::pfn_to_mfn(si, p)));
    let mut mfns = [0u64; 3];
    for (i, m) in frames.enumerate() {
        match m {
            Some(m) => mfns[i] = m,
            None => guest_rt::test::error(format_args!("no spare frame {}", i)),
        }
    }
    let Some(scratch) = Scratch::new(si) else {
        guest_rt::test::error(format_args!("no scratch page"));
    };
    let mut f = Fifo {
        scratch,
        control: mfns[0],
        array: mfns[1],
    };
    // Both frames start zeroed, the event array with every event masked (as Linux's
    // init_array_page).
    let c = f.control;
    f.frame(c);
    f.scratch.fill(0);
    let a = f.array;
    f.frame(a);
    f.scratch
        .fill(u64::from(MASKED) | (u64::from(MASKED) << 32));

    // A port bound and raised under the 2-level ABI, before the switch.
    let early = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    let early_peer = evtchn::bind_interdomain(DOMID_SELF, early).unwrap_or(0);
    check(
        "2-level: bind_interdomain marks the new port pending in shared_info",
        shared.evtchn_pending(early_peer),
    );
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);

    init_control_errors(si, &mut f);
    switch(&shared, &mut f, early_peer);
    queue_order(&shared, &mut f);
    masking(&mut f);
    priorities(&mut f);
    let two_vcpus = evtchn::bind_ipi(1).and_then(|p| evtchn::close(p).map(|_| ()));
    if two_vcpus.is_ok() {
        second_vcpu(&shared, &mut f);
    } else {
        skip(format_args!(
            "vCPU 1 missing ({:?}): run with 2 vCPUs",
            two_vcpus
        ));
    }
    close_and_virq(&mut f);
    busy_port(&mut f);
    timer_virq(&shared, &mut f);
    reset(&shared, &mut f, mfns[2]);
    let _ = f.scratch.restore();
    guest_rt::test::finish();
}

/// `EVTCHNOP_init_control`'s checks, in Xen's order, then success on vCPU 0.
fn init_control_errors(si: &StartInfo, f: &mut Fifo) {
    let c = f.control;
    check_eq(
        "init_control on a vCPU that does not exist -> -ENOENT",
        evtchn::init_control(c, 0, 2).map(|_| ()),
        Err(Errno::ENOENT),
    );
    check_eq(
        "init_control with the block crossing the page -> -EINVAL",
        evtchn::init_control(c, 4096 - CONTROL_BLOCK_SIZE + 8, 0).map(|_| ()),
        Err(Errno::EINVAL),
    );
    check_eq(
        "init_control at an offset not 8-byte aligned -> -EINVAL",
        evtchn::init_control(c, 4, 0).map(|_| ()),
        Err(Errno::EINVAL),
    );
    check_eq(
        "init_control on a frame that does not exist -> -EINVAL",
        evtchn::init_control(1 << 40, 0, 0).map(|_| ()),
        Err(Errno::EINVAL),
    );
    if let Some(root) = pvmm::root_mfn(si) {
        check_eq(
            "init_control on our L4 page table (not writable) -> -EINVAL",
            evtchn::init_control(root, 0, 0).map(|_| ()),
            Err(Errno::EINVAL),
        );
    }
    let not_ours = pvmm::low_frame_not_ours(si);
    check(
        "a RAM frame below 640 KiB that is not ours",
        not_ours.is_some(),
    );
    if let Some(m) = not_ours {
        check_eq(
            "init_control on a RAM frame that is not ours -> -EINVAL",
            evtchn::init_control(m, 0, 0).map(|_| ()),
            Err(Errno::EINVAL),
        );
    }
    check_eq(
        "expand_array before init_control -> -EOPNOTSUPP",
        evtchn::expand_array(f.array),
        Err(Errno::EOPNOTSUPP),
    );
    check_eq(
        "set_priority before init_control -> -ENOSYS",
        evtchn::set_priority(1, 3),
        Err(Errno::ENOSYS),
    );
    let r = evtchn::init_control(c, 0, 0);
    check_eq(
        "init_control(vCPU 0) -> link_bits 17, padding as it went in",
        r.map(|c| (c.link_bits, c._pad)),
        Ok((17, [0x5a; 7])),
    );
    check_eq(
        "init_control(vCPU 0) again -> -EINVAL",
        evtchn::init_control(c, 0, 0).map(|_| ()),
        Err(Errno::EINVAL),
    );
    if let Some(root) = pvmm::root_mfn(si) {
        check_eq(
            "expand_array with our L4 page table (not writable) -> -EINVAL",
            evtchn::expand_array(root),
            Err(Errno::EINVAL),
        );
    }
    if let Some(m) = not_ours {
        check_eq(
            "expand_array with a RAM frame that is not ours -> -EINVAL",
            evtchn::expand_array(m),
            Err(Errno::EINVAL),
        );
    }
}

/// The switch: a port pending under 2-level is saved and raised (masked, so not linked)
/// when the event array page is added; unmask links it.
fn switch(shared: &SharedInfo, f: &mut Fifo, early: u32) {
    check_eq(
        "expand_array with a frame that does not exist -> -EINVAL",
        evtchn::expand_array(1 << 40),
        Err(Errno::EINVAL),
    );
    check_eq("expand_array", evtchn::expand_array(f.array), Ok(0));
    check_eq(
        "the port pending before the switch is pending (and still masked)",
        f.word(early),
        PENDING | MASKED,
    );
    check_eq("  ... not linked: no queue is ready", f.ready(0), 0);
    check_eq(
        "  ... and the head of the default queue is empty",
        f.head(0, DEFAULT_PRIO),
        0,
    );
    check(
        "  ... and no upcall yet",
        shared.upcall_pending(0) == Some(false),
    );
    check_eq("unmask(early) re-raises it", evtchn::unmask(early), Ok(0));
    check_eq(
        "  ... now pending, unmasked, linked",
        f.word(early),
        PENDING | LINKED,
    );
    check_eq(
        "  ... at the head of queue 7",
        f.head(0, DEFAULT_PRIO),
        early,
    );
    check_eq("  ... READY bit 7", f.ready(0), 1 << DEFAULT_PRIO);
    check(
        "  ... and the upcall flag",
        shared.upcall_pending(0) == Some(true),
    );
    let (out, n) = consumed(f, 0);
    check_eq("consumed: the early port", &out[..n], &[early][..]);
    check_eq("  ... its word is clear", f.word(early), 0);
    shared.clear_upcall_pending(0);
}

/// Unmasked ports of the default priority: consumed in the order sent; a port already
/// pending is not queued twice.
fn queue_order(shared: &SharedInfo, f: &mut Fifo) {
    let mut ports = [0u32; 3];
    for p in ports.iter_mut() {
        *p = evtchn::bind_ipi(0).unwrap_or(0);
        f.set_word(*p, 0);
    }
    let [a, b, c] = ports;
    for p in [b, c, a] {
        check_eq("send", evtchn::send(p), Ok(0));
    }
    check_eq("send(b) again: already pending", evtchn::send(b), Ok(0));
    check_eq("queue 7 head is b", f.head(0, DEFAULT_PRIO), b);
    check_eq("b links to c", f.word(b), PENDING | LINKED | c);
    check_eq("c links to a", f.word(c), PENDING | LINKED | a);
    check_eq("a ends the queue", f.word(a), PENDING | LINKED);
    check(
        "the upcall flag is set",
        shared.upcall_pending(0) == Some(true),
    );
    let (out, n) = consumed(f, 0);
    check_eq("consumed in the order sent", &out[..n], &[b, c, a][..]);
    shared.clear_upcall_pending(0);
    // The old tail (a) is no longer linked: the next event starts a new queue at the head.
    check_eq("send(c) after consuming", evtchn::send(c), Ok(0));
    check_eq("  ... is the new head", f.head(0, DEFAULT_PRIO), c);
    check_eq("  ... a was not linked to it", f.word(a), 0);
    check_eq("  ... READY again", f.ready(0), 1 << DEFAULT_PRIO);
    let (out, n) = consumed(f, 0);
    check_eq("consumed", &out[..n], &[c][..]);
    shared.clear_upcall_pending(0);
    for p in ports {
        let _ = evtchn::close(p);
    }
}

/// A masked event is pending but not linked until EVTCHNOP_unmask.
fn masking(f: &mut Fifo) {
    let p = evtchn::bind_ipi(0).unwrap_or(0);
    f.set_word(p, MASKED);
    check_eq("send to a masked port", evtchn::send(p), Ok(0));
    check_eq("  ... pending and masked only", f.word(p), PENDING | MASKED);
    check_eq("  ... nothing ready", f.ready(0), 0);
    check_eq("unmask", evtchn::unmask(p), Ok(0));
    check_eq("  ... linked now", f.word(p), PENDING | LINKED);
    check_eq("  ... at the head", f.head(0, DEFAULT_PRIO), p);
    let (out, n) = consumed(f, 0);
    check_eq("consumed", &out[..n], &[p][..]);
    f.set_word(p, MASKED);
    check_eq("unmask of a quiet masked port", evtchn::unmask(p), Ok(0));
    check_eq("  ... only clears MASKED", f.word(p), 0);
    check_eq("  ... nothing ready", f.ready(0), 0);
    let _ = evtchn::close(p);
}

/// Each priority has its queue and READY bit; the highest (lowest number) is consumed first.
fn priorities(f: &mut Fifo) {
    let mut ports = [0u32; 3];
    for p in ports.iter_mut() {
        *p = evtchn::bind_ipi(0).unwrap_or(0);
        f.set_word(*p, 0);
    }
    let [lo, mid, hi] = ports;
    check_eq("set_priority(lo, 10)", evtchn::set_priority(lo, 10), Ok(0));
    check_eq("set_priority(hi, 3)", evtchn::set_priority(hi, 3), Ok(0));
    check_eq(
        "set_priority beyond the lowest (16) -> -EINVAL",
        evtchn::set_priority(mid, 16),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_priority of an invalid port -> -EINVAL",
        evtchn::set_priority(1 << 16, 3),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_priority of a free port -> -EACCES",
        evtchn::set_priority(60, 3),
        Err(Errno::EACCES),
    );
    check_eq(
        "set_priority of port 0 -> -EACCES",
        evtchn::set_priority(0, 3),
        Err(Errno::EACCES),
    );
    for p in [lo, mid, hi] {
        let _ = evtchn::send(p);
    }
    check_eq(
        "READY bits 3, 7 and 10",
        f.ready(0),
        (1 << 3) | (1 << 7) | (1 << 10),
    );
    check_eq("queue 3 head", f.head(0, 3), hi);
    check_eq("queue 10 head", f.head(0, 10), lo);
    let (out, n) = consumed(f, 0);
    check_eq(
        "consumed by priority: 3, then 7, then 10",
        &out[..n],
        &[hi, mid, lo][..],
    );
    for p in ports {
        let _ = evtchn::close(p);
    }
    // A re-bound port is back at the default priority.
    let again = evtchn::bind_ipi(0).unwrap_or(0);
    check_eq("the lowest port is reused", again, lo);
    f.set_word(again, 0);
    let _ = evtchn::send(again);
    check_eq(
        "  ... and queued at the default priority",
        f.ready(0),
        1 << DEFAULT_PRIO,
    );
    let _ = consumed(f, 0);
    let _ = evtchn::close(again);
}

/// vCPU 1's own control block and queues; bind_vcpu moves a port's events there.
fn second_vcpu(shared: &SharedInfo, f: &mut Fifo) {
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    f.set_word(a, 0);
    let b = evtchn::bind_interdomain(DOMID_SELF, a).unwrap_or(0);
    // bind_interdomain raises b on vCPU 0 (linked if its word was unmasked): drain it.
    let _ = consumed(f, 0);
    f.set_word(b, 0);
    check_eq("bind_vcpu(a, 1)", evtchn::bind_vcpu(a, 1), Ok(0));
    shared.clear_upcall_pending(1);
    check_eq("send(b) -> a on vCPU 1", evtchn::send(b), Ok(0));
    check_eq(
        "  ... vCPU 1 has no control block: dropped, not even pending",
        f.word(a),
        0,
    );
    check(
        "  ... no upcall on vCPU 1",
        shared.upcall_pending(1) == Some(false),
    );
    let c = f.control;
    check_eq(
        "init_control(vCPU 1) in the same frame",
        evtchn::init_control(c, CB1_OFFSET, 1).map(|c| c.link_bits),
        Ok(17),
    );
    check_eq("send(b) again", evtchn::send(b), Ok(0));
    check_eq(
        "  ... linked on vCPU 1's queue 7",
        f.head(1, DEFAULT_PRIO),
        a,
    );
    check_eq("  ... its READY bit", f.ready(1), 1 << DEFAULT_PRIO);
    check_eq("  ... vCPU 0's untouched", f.ready(0), 0);
    check(
        "  ... vCPU 1's upcall flag",
        shared.upcall_pending(1) == Some(true),
    );
    let (out, n) = consumed(f, 1);
    check_eq("consumed on vCPU 1", &out[..n], &[a][..]);
    check_eq("bind_vcpu(a, 0)", evtchn::bind_vcpu(a, 0), Ok(0));
    check_eq("send(b)", evtchn::send(b), Ok(0));
    check_eq("  ... back on vCPU 0's queue", f.head(0, DEFAULT_PRIO), a);
    let (out, n) = consumed(f, 0);
    check_eq("consumed on vCPU 0", &out[..n], &[a][..]);
    shared.clear_upcall_pending(0);
    shared.clear_upcall_pending(1);
    let _ = evtchn::close(b);
    let _ = evtchn::close(a);
}

/// Close clears PENDING only; a VIRQ port is a FIFO port like the others.
fn close_and_virq(f: &mut Fifo) {
    let p = evtchn::bind_ipi(0).unwrap_or(0);
    f.set_word(p, MASKED);
    let _ = evtchn::send(p);
    check_eq("masked port pending", f.word(p), PENDING | MASKED);
    check_eq("close", evtchn::close(p), Ok(0));
    check_eq("  ... cleared PENDING, kept MASKED", f.word(p), MASKED);
    let v = evtchn::bind_virq(VIRQ_DEBUG, 0);
    check("bind_virq(VIRQ_DEBUG, 0) on FIFO", v.is_ok());
    if let Ok(v) = v {
        check_eq(
            "set_priority(virq port, 0)",
            evtchn::set_priority(v, 0),
            Ok(0),
        );
        check_eq("unmask of the quiet VIRQ port", evtchn::unmask(v), Ok(0));
        check_eq("  ... leaves its word alone", f.word(v) & !MASKED, 0);
        let _ = evtchn::close(v);
    }
}

/// A closed port whose event is still LINKED (not consumed yet) is not handed out again
/// until the guest unlinks it (Xen's `evtchn_is_busy`).
fn busy_port(f: &mut Fifo) {
    let p = evtchn::bind_ipi(0).unwrap_or(0);
    f.set_word(p, 0);
    let _ = evtchn::send(p);
    check_eq("closed while queued", evtchn::close(p), Ok(0));
    check_eq("  ... its word stays LINKED", f.word(p), LINKED);
    let q = evtchn::bind_ipi(0).unwrap_or(0);
    check(
        "the linked port is skipped by the next bind",
        q != p && q != 0,
    );
    let (_, n) = consumed(f, 0);
    check_eq("consuming unlinks it, handling nothing", n, 0);
    let _ = evtchn::close(q);
    check_eq(
        "then it is the lowest free port again",
        evtchn::bind_ipi(0),
        Ok(p),
    );
    let _ = evtchn::close(p);
}

/// VIRQ_TIMER, raised by the hypervisor's timer (not by a hypercall of ours), arrives on the
/// FIFO queue, and SCHEDOP_poll on its port wakes when its event word becomes pending.
fn timer_virq(shared: &SharedInfo, f: &mut Fifo) {
    let t = match evtchn::bind_virq(VIRQ_TIMER, 0) {
        Ok(t) => t,
        Err(e) => {
            check_eq("bind_virq(VIRQ_TIMER, 0)", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    f.set_word(t, 0);
    let now = shared.system_time_now(0).unwrap_or(0);
    check_eq(
        "set_timer_op(now + 1 ms)",
        vcpu::set_timer_op(now + 1_000_000),
        Ok(0),
    );
    let _ = sched::poll(&[t], now + FIRE_WAIT);
    check_eq(
        "  ... VIRQ_TIMER's word is pending and linked after the poll",
        f.word(t) & (PENDING | LINKED | MASKED),
        PENDING | LINKED,
    );
    let (out, n) = consumed(f, 0);
    check("  ... and consumed from the queue", out[..n].contains(&t));
    let _ = vcpu::stop_periodic_timer(0);
    let _ = vcpu::set_timer_op(0);
    let _ = evtchn::close(t);
    let _ = consumed(f, 0);
    shared.clear_upcall_pending(0);
}

/// EVTCHNOP_reset closes every port and returns the domain to 2-level; FIFO can be set up
/// again afterwards.
fn reset(shared: &SharedInfo, f: &mut Fifo, spare: u64) {
    let p = evtchn::bind_ipi(0).unwrap_or(0);
    check_eq("reset(DOMID_SELF)", evtchn::reset(DOMID_SELF), Ok(0));
    check_eq(
        "  ... the port is closed",
        evtchn::status(p).map(|s| s.0),
        Ok(evtchn::Status::Closed),
    );
    check_eq(
        "  ... set_priority is 2-level's -ENOSYS again",
        evtchn::set_priority(1, 3),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "  ... expand_array is -EOPNOTSUPP",
        evtchn::expand_array(spare),
        Err(Errno::EOPNOTSUPP),
    );
    let q = evtchn::bind_ipi(0).unwrap_or(0);
    shared.clear_evtchn_pending(q);
    check_eq("send on 2-level", evtchn::send(q), Ok(0));
    check(
        "  ... sets the shared_info pending bit",
        shared.evtchn_pending(q),
    );
    check_eq("  ... not the event word", f.word(q) & PENDING, 0);
    let _ = evtchn::close(q);
    shared.take_pending_sel(0);
    shared.clear_upcall_pending(0);
    let c = f.control;
    check_eq(
        "init_control again after reset",
        evtchn::init_control(c, 0, 0).map(|c| c.link_bits),
        Ok(17),
    );
    info(format_args!("left on FIFO with no event array"));
    check_eq("final reset", evtchn::reset(DOMID_SELF), Ok(0));
}
