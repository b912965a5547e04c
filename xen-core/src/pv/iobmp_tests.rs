//! Host tests of PHYSDEVOP_set_iobitmap and `guest_io_okay`: without IOPL, a port access is
//! allowed by the registered I/O bitmap (a clear bit per port, read from guest memory at the
//! access; unreadable bytes count as all ones) within its `nr_ports`, as Xen 4.17 checks it;
//! the ports dom0 may not use ([`crate::pv::ioports`]) read all ones, writes dropped; the RTC
//! index is latched per domain and 0x71 reaches the register it selects (dom0 only); PIT
//! channel 2 and the speaker gate reach the hardware as Xen's `hwdom_pit_access` lets them.

use crate::effect::Effect;
use crate::hv::value_kind;
use crate::hypercall::testing::Harness;
use crate::pv::effect::PvEffect;
use crate::pv::tests::{kregs, map_stack, set_regs, trap_table, HANDLER, STACK};
use crate::request::{ExitKind, GuestRegs, Request};
use alloc::vec::Vec;

const RIP: u64 = 0xffff_ffff_8000_5000;
const BITMAP: u64 = 0x40_0000;
const ARG: u64 = 0x500;

/// physdev_op(set_iobitmap, {bitmap, nr_ports}).
fn set_iobitmap(h: &mut Harness, bitmap: u64, nr_ports: u32) -> i64 {
    let mut a = bitmap.to_le_bytes().to_vec();
    a.extend_from_slice(&nr_ports.to_le_bytes());
    a.extend_from_slice(&[0; 4]);
    h.mem.map(ARG, &a);
    h.hypercall(33, [7, ARG, 0, 0, 0]).ret
}

/// Dom0 without IOPL, a #GP handler, and a bitmap denying every port but 0xcf8-0xcff.
fn setup() -> Harness {
    let mut h = Harness::dom0();
    assert_eq!(trap_table(&mut h, 0x1000, &[(13, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    let mut bm = [0xffu8; 8192];
    bm[0xcf8 >> 3] = 0;
    h.mem.map(BITMAP, &bm);
    h
}

/// The effects of the #GP exit of `code` (mapped at RIP) with RDX `port` and RAX `rax`.
fn gp_exit(h: &mut Harness, code: &[u8], port: u16, rax: u64) -> Vec<Effect> {
    h.mem.map(RIP, code);
    let regs = GuestRegs {
        rip: RIP,
        rdx: u64::from(port),
        rax,
        ..kregs()
    };
    h.run(Request::exit(ExitKind::Exception, h.dom, 0, regs, 13, 0, 0))
        .effects
}

/// Runs the #GP exit of `code` with RDX `port` and RAX `rax`: emulated (the registers after
/// it and whether a port write was emitted), or None if the #GP was bounced.
fn run(h: &mut Harness, code: &[u8], port: u16, rax: u64) -> Option<(GuestRegs, bool)> {
    let e = gp_exit(h, code, port, rax);
    let r = set_regs(&e).expect("registers set");
    let wrote = e
        .iter()
        .any(|x| matches!(x, Effect::Pv(PvEffect::PortOut { .. })));
    (r.rip != HANDLER).then_some((r, wrote))
}

fn queue_in(h: &mut Harness, port: u16, size: u8, v: u64) {
    h.mem
        .values
        .entry(value_kind::port_in(port, size))
        .or_default()
        .push_back(v);
}

#[test]
fn set_iobitmap_checks_as_xen() {
    let mut h = Harness::dom0();
    assert_eq!(h.hypercall(33, [7, 0, 0, 0, 0]).ret, -14, "bad argument");
    assert_eq!(set_iobitmap(&mut h, BITMAP, 65537), -22);
    assert_eq!(set_iobitmap(&mut h, 0xffff_8000_0000_0000, 16), -22);
    assert_eq!(set_iobitmap(&mut h, 0x0000_8000_0000_0000, 16), -22);
    // Only the start of the handle is checked; the bitmap need not be mapped.
    assert_eq!(set_iobitmap(&mut h, 0x7fff_ffff_f000, 65536), 0);
    let p = crate::pv::state::get(&h.state, (0, 0));
    assert_eq!((p.iobmp, p.iobmp_limit), (0x7fff_ffff_f000, 65536));
}

#[test]
fn the_bitmap_allows_ports_without_iopl() {
    let mut h = setup();
    let inb = [0xec];
    let inl = [0xed];
    let outb = [0xee];
    assert!(run(&mut h, &inb, 0xcfc, 0).is_none(), "no bitmap: #GP");
    assert_eq!(set_iobitmap(&mut h, BITMAP, 0x1000), 0);
    queue_in(&mut h, 0xcfc, 4, 0x1234_8086);
    let (r, _) = run(&mut h, &inl, 0xcfc, 0).expect("allowed");
    assert_eq!((r.rax, r.rip), (0x1234_8086, RIP + 1));
    let (_, wrote) = run(&mut h, &outb, 0xcf9, 6).expect("allowed");
    assert!(wrote);
    assert!(run(&mut h, &inb, 0xcf7, 0).is_none(), "bit set: #GP");
    assert!(
        run(&mut h, &inl, 0xcfe, 0).is_none(),
        "0xd00 and on are denied"
    );
    // Read at each access: setting the bit takes effect without registering again.
    h.mem.map(BITMAP + (0xcf8 >> 3), &[0x10]);
    assert!(run(&mut h, &inb, 0xcfc, 0).is_none());
    assert!(run(&mut h, &inb, 0xcfb, 0).is_some());
    // nr_ports bounds the ports covered: port + size must not exceed it.
    assert_eq!(set_iobitmap(&mut h, BITMAP, 0xcfc), 0);
    assert!(run(&mut h, &inb, 0xcfb, 0).is_some());
    assert!(run(&mut h, &[0x66, 0xed], 0xcfb, 0).is_none());
    assert_eq!(set_iobitmap(&mut h, BITMAP, 0), 0);
    assert!(run(&mut h, &inb, 0xcfb, 0).is_none());
}

#[test]
fn unreadable_bitmap_bytes_deny() {
    let mut h = setup();
    // The bitmap's byte for 0xcf8-0xcff is the last mapped one: 0xcff's word reads past it.
    let at = 0x60_0000 - (0xcf8 >> 3) - 1;
    h.mem.map(at, &[0u8; (0xcf8 >> 3) + 1]);
    assert_eq!(set_iobitmap(&mut h, at, 0x1000), 0);
    assert!(run(&mut h, &[0xec], 0xcfc, 0).is_some());
    assert!(
        run(&mut h, &[0xed], 0xcfe, 0).is_none(),
        "the next byte is unreadable"
    );
    assert_eq!(set_iobitmap(&mut h, 0x7fff_0000_0000, 0x1000), 0);
    assert!(run(&mut h, &[0xec], 0xcfc, 0).is_none());
}

#[test]
fn string_io_honours_the_bitmap() {
    let mut h = setup();
    assert_eq!(set_iobitmap(&mut h, BITMAP, 0x1000), 0);
    let buf = 0x70_0000;
    h.mem.map(buf, &[0u8; 8]);
    queue_in(&mut h, 0xcfc, 4, 0xabcd_ef01);
    h.mem.map(RIP, &[0x6d]); // insl
    let regs = GuestRegs {
        rip: RIP,
        rdx: 0xcfc,
        rdi: buf,
        ..kregs()
    };
    let e = h
        .run(Request::exit(ExitKind::Exception, 0, 0, regs, 13, 0, 0))
        .effects;
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(RIP + 1));
    assert_eq!(h.mem.bytes[&buf], 0x01);
    let regs = GuestRegs { rdx: 0x80, ..regs };
    let e = h
        .run(Request::exit(ExitKind::Exception, 0, 0, regs, 13, 0, 0))
        .effects;
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER));
}

#[test]
fn ports_dom0_is_denied_read_ones_and_drop_writes() {
    let mut h = setup();
    h.mem.map(0x300, &1u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0, "set_iopl(1)");
    // No port input is queued: a denied port is never read.
    let (r, _) = run(&mut h, &[0xec], 0x3fd, 0x1234).expect("emulated");
    assert_eq!(r.rax, 0x12ff, "COM1's LSR reads all ones");
    let (r, _) = run(&mut h, &[0x66, 0xed], 0x3f7, 0).expect("emulated");
    assert_eq!(r.rax, 0xffff, "a word touching COM1 too");
    let (_, wrote) = run(&mut h, &[0xee], 0x21, 0xff).expect("emulated");
    assert!(!wrote, "the PIC's mask is not written");
    queue_in(&mut h, 0x92, 1, 2);
    let (r, _) = run(&mut h, &[0xec], 0x92, 0).expect("emulated");
    assert_eq!(r.rax, 2, "other ports reach the hardware");
}

/// The CMOS effects `e` asks for: (index, value) of each CmosWrite.
fn cmos_writes(h: &mut Harness, code: &[u8], port: u16, rax: u64) -> Vec<(u8, u8)> {
    gp_exit(h, code, port, rax)
        .iter()
        .filter_map(|x| match x {
            Effect::Pv(PvEffect::CmosWrite { index, value }) => Some((*index, *value)),
            Effect::Pv(PvEffect::PortOut { .. }) => panic!("the RTC is never reached directly"),
            _ => None,
        })
        .collect()
}

#[test]
fn the_rtc_index_is_latched_and_0x71_reaches_the_register_it_selects() {
    let mut h = setup();
    h.mem.map(0x300, &1u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0, "set_iopl(1)");
    assert!(cmos_writes(&mut h, &[0xee], 0x70, 0x8a).is_empty());
    let (r, _) = run(&mut h, &[0xec], 0x70, 0).expect("emulated");
    assert_eq!(r.rax, 0x8a, "the index reads back as written");
    h.mem
        .values
        .entry(value_kind::cmos_read(0x0a))
        .or_default()
        .extend([0x26, 0x26]);
    let (r, _) = run(&mut h, &[0xec], 0x71, 0).expect("emulated");
    assert_eq!(r.rax, 0x26, "register 0x0a (NMI bit cleared)");
    let (r, _) = run(&mut h, &[0x66, 0xed], 0x70, 0).expect("emulated");
    assert_eq!(r.rax, 0x268a, "a word: index, then data");
    assert_eq!(
        cmos_writes(&mut h, &[0xee], 0x71, 0x55),
        alloc::vec![(0x0a, 0x55)]
    );
    // A domain other than the hardware domain latches its index but reaches no register.
    let mut u = Harness::domu(1);
    assert_eq!(trap_table(&mut u, 0x1000, &[(13, 0, HANDLER)]), 0);
    map_stack(&mut u, STACK & !0xf);
    u.mem.map(0x300, &1u32.to_le_bytes());
    assert_eq!(u.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0);
    assert!(cmos_writes(&mut u, &[0xee], 0x70, 0x0b).is_empty());
    assert!(cmos_writes(&mut u, &[0xee], 0x71, 0x55).is_empty());
    let (r, _) = run(&mut u, &[0x66, 0xed], 0x70, 0).expect("emulated");
    assert_eq!(r.rax, 0xff0b);
}

/// The port writes (port, value) `out` of `rax` at `port` (code `code`) makes reach the
/// hardware.
fn port_outs(h: &mut Harness, code: &[u8], port: u16, rax: u64) -> Vec<(u16, u32)> {
    gp_exit(h, code, port, rax)
        .iter()
        .filter_map(|e| match e {
            Effect::Pv(PvEffect::PortOut { port, value, .. }) => Some((*port, *value)),
            _ => None,
        })
        .collect()
}

#[test]
fn pit_channel_2_and_the_speaker_gate_reach_the_hardware_as_xen_lets_them() {
    let mut h = setup();
    h.mem.map(0x300, &1u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0, "set_iopl(1)");
    let outb = [0xee];
    // Channel 2's counter, both ways (Linux's quick_pit_calibrate loads 0xffff, reads MSBs).
    assert_eq!(port_outs(&mut h, &outb, 0x42, 0xff), [(0x42, 0xff)]);
    queue_in(&mut h, 0x42, 1, 0xfe);
    let (r, _) = run(&mut h, &[0xec], 0x42, 0).expect("emulated");
    assert_eq!(r.rax, 0xfe);
    // The mode port: a channel-2 control word passes, channel 0 and 1 ones do not; of a
    // read-back only its channel-2 part passes.
    assert_eq!(port_outs(&mut h, &outb, 0x43, 0xb0), [(0x43, 0xb0)]);
    assert_eq!(port_outs(&mut h, &outb, 0x43, 0x34), []);
    assert_eq!(port_outs(&mut h, &outb, 0x43, 0x74), []);
    assert_eq!(port_outs(&mut h, &outb, 0x43, 0xca), [(0x43, 0xc8)]);
    assert_eq!(port_outs(&mut h, &outb, 0x43, 0xc2), []);
    // The speaker gate: the two low bits written, the others as the hardware holds them.
    queue_in(&mut h, 0x61, 1, 0x30);
    assert_eq!(port_outs(&mut h, &outb, 0x61, 0xf1), [(0x61, 0x31)]);
    queue_in(&mut h, 0x61, 1, 0x23);
    let (r, _) = run(&mut h, &[0xec], 0x61, 0).expect("emulated");
    assert_eq!(r.rax, 0x23);
    // Channels 0 and 1 stay the hypervisor's: all ones, writes dropped.
    let (r, _) = run(&mut h, &[0xec], 0x40, 0).expect("emulated");
    assert_eq!(r.rax, 0xff);
    assert_eq!(port_outs(&mut h, &outb, 0x41, 0x12), []);
}
