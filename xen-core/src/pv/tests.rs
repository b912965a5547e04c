//! Host tests of the PV trap and CPU-state paths through the real state machine, with the
//! answers Xen 4.17 gave the `traps` test guest.

use crate::effect::Effect;
use crate::hv::value_kind;
use crate::hypercall::testing::{Harness, CONTINUED};
use crate::pv::effect::PvEffect;
use crate::request::{ExitKind, GuestRegs, Request};
use dom0_interface::xen as x;

pub(super) const HANDLER: u64 = 0xffff_ffff_8000_1000;
pub(super) const STACK: u64 = 0xffff_ffff_8002_0008;
pub(super) const KSTACK: u64 = 0xffff_ffff_8003_0000;

pub(super) fn trap_table(h: &mut Harness, at: u64, entries: &[(u8, u8, u64)]) -> i64 {
    let mut bytes = alloc::vec::Vec::new();
    for &(v, flags, addr) in entries.iter().chain([(0u8, 0u8, 0u64)].iter()) {
        bytes.push(v);
        bytes.push(flags);
        bytes.extend_from_slice(&0xe030u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&addr.to_le_bytes());
    }
    h.mem.map(at, &bytes);
    h.hypercall(u64::from(x::HYPERVISOR_SET_TRAP_TABLE), [at, 0, 0, 0, 0])
        .ret
}

pub(super) fn kregs() -> GuestRegs {
    GuestRegs {
        rip: 0xffff_ffff_8000_5000,
        cs: 0xe033,
        rflags: 0x246,
        rsp: STACK,
        ss: 0xe02b,
        rcx: 11,
        r11: 22,
        ..Default::default()
    }
}

pub(super) fn exit(
    h: &mut Harness,
    kind: ExitKind,
    regs: GuestRegs,
    vector: u64,
    ec: u64,
    cr2: u64,
) -> alloc::vec::Vec<Effect> {
    h.run(Request::exit(kind, h.dom, 0, regs, vector, ec, cr2))
        .effects
}

pub(super) fn set_regs(e: &[Effect]) -> Option<GuestRegs> {
    e.iter().rev().find_map(|e| {
        if let Effect::SetRegs(r) = e {
            Some(*r)
        } else {
            None
        }
    })
}

pub(super) fn stack_words(h: &Harness, at: u64, n: usize) -> alloc::vec::Vec<u64> {
    (0..n)
        .map(|i| {
            let mut w = [0u8; 8];
            for (j, b) in w.iter_mut().enumerate() {
                *b = h
                    .mem
                    .bytes
                    .get(&(at + 8 * i as u64 + j as u64))
                    .copied()
                    .unwrap_or(0xee);
            }
            u64::from_le_bytes(w)
        })
        .collect()
}

pub(super) fn map_stack(h: &mut Harness, top: u64) {
    h.mem.map(top - 0x200, &[0u8; 0x200]);
}

#[test]
fn trap_table_entries_errors_and_continuation() {
    let mut h = Harness::dom0();
    assert_eq!(
        trap_table(&mut h, 0x1000, &[(3, 3, HANDLER), (14, 4, HANDLER + 16)]),
        0
    );
    let t = crate::pv::state::trap(&h.state, (0, 0), 14);
    assert_eq!(
        (t.cs, t.address, t.masks_events()),
        (0xe033, HANDLER + 16, true)
    );
    assert_eq!(
        trap_table(&mut h, 0x2000, &[(0x81, 0, 0x8000_0000_0000_1000)]),
        -22
    );
    assert_eq!(h.hypercall(0, [0xffff_8000_0000_0000, 0, 0, 0, 0]).ret, -14);
    // A long table continues itself with the handle advanced.
    let many: alloc::vec::Vec<(u8, u8, u64)> = (0..40u8).map(|v| (v, 0, HANDLER)).collect();
    let r = {
        let _ = trap_table(&mut h, 0x3000, &many);
        h.hypercall(0, [0x3000, 0, 0, 0, 0])
    };
    assert_eq!(r.ret, CONTINUED);
    assert!(r
        .effects
        .contains(&Effect::Continue([0x3000 + 32 * 16, 0, 0, 0, 0])));
    assert_eq!(h.hypercall(0, [0x3000 + 32 * 16, 0, 0, 0, 0]).ret, 0);
    assert_eq!(
        crate::pv::state::trap(&h.state, (0, 0), 39).address,
        HANDLER
    );
    // NULL clears everything.
    assert_eq!(h.hypercall(0, [0, 0, 0, 0, 0]).ret, 0);
    assert_eq!(crate::pv::state::trap(&h.state, (0, 0), 3).address, 0);
}

#[test]
fn callback_op_answers_as_xen() {
    let mut h = Harness::dom0();
    let reg = |kind: u16, flags: u16, addr: u64| {
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&addr.to_le_bytes());
        b
    };
    let nr = u64::from(x::HYPERVISOR_CALLBACK_OP);
    for (kind, want) in [
        (0u16, 0i64),
        (1, 0),
        (2, 0),
        (4, 0),
        (5, 0),
        (7, 0),
        (3, -38),
        (99, -38),
    ] {
        h.mem.map(0x100, &reg(kind, 1, HANDLER));
        assert_eq!(
            h.hypercall(nr, [0, 0x100, 0, 0, 0]).ret,
            want,
            "type {kind}"
        );
    }
    h.mem.map(0x100, &reg(0, 0, 0x8000_0000_0000_0000));
    assert_eq!(h.hypercall(nr, [0, 0x100, 0, 0, 0]).ret, -22);
    assert_eq!(h.hypercall(nr, [0, 0, 0, 0, 0]).ret, -14);
    assert_eq!(h.hypercall(nr, [2, 0, 0, 0, 0]).ret, -38);
    for (kind, want) in [(0u32, -22i64), (4, 0), (99, -38)] {
        h.mem.map(0x200, &kind.to_le_bytes());
        assert_eq!(
            h.hypercall(nr, [1, 0x200, 0, 0, 0]).ret,
            want,
            "unregister {kind}"
        );
    }
    let v = h.state.vcpus.get(&(0, 0)).cloned().unwrap_or_default();
    assert_eq!((v.event_callback, v.syscall_callback), (HANDLER, HANDLER));
    assert!(crate::pv::state::get(&h.state, (0, 0)).failsafe_disables_events);
    assert_eq!(
        h.hypercall(u64::from(x::HYPERVISOR_SET_CALLBACKS), [1, 2, 3, 0, 0])
            .ret,
        0
    );
    assert_eq!(
        h.state.vcpus.get(&(0, 0)).map(|v| v.failsafe_callback),
        Some(2)
    );
}

#[test]
fn kernel_exception_bounce_frame() {
    let mut h = Harness::dom0();
    assert_eq!(
        trap_table(&mut h, 0x1000, &[(3, 3, HANDLER), (13, 0, HANDLER + 0x10)]),
        0
    );
    map_stack(&mut h, STACK & !0xf);
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(0x100);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 3, 0, 0);
    let r = set_regs(&e).expect("bounced");
    let top = STACK & !0xf;
    assert_eq!(
        (r.rip, r.cs, r.ss, r.rsp),
        (HANDLER, 0xe033, 0xe02b, top - 56)
    );
    // RCX, R11, RIP, CS (RPL 0, saved mask 1 in bits 32+), RFLAGS (IF clear), RSP, SS.
    let w = stack_words(&h, top - 56, 7);
    assert_eq!(
        w,
        [
            11,
            22,
            0xffff_ffff_8000_5000,
            0x1_0000_e030,
            0x046,
            STACK,
            0xe02b
        ]
    );
    // #GP with an error code: 8 words, no event masking requested by a gate without TI_IF.
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(0);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 13, 0x18, 0);
    let r = set_regs(&e).expect("bounced");
    assert_eq!(r.rsp, top - 64);
    assert_eq!(stack_words(&h, top - 64, 3)[2], 0x18);
    assert!(!e
        .iter()
        .any(|x| matches!(x, Effect::Pv(PvEffect::UpcallMask { .. }))));
}

#[test]
fn unhandled_exception_crashes_the_domain() {
    let mut h = Harness::domu(3);
    map_stack(&mut h, STACK & !0xf);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 0, 0, 0);
    assert!(e.contains(&Effect::DomainCrash { dom: 3 }));
    assert_eq!(h.state.domains.get(&3).and_then(|d| d.shutdown), Some(3));
}

pub(super) fn to_user(h: &mut Harness) {
    let j = &mut lockstep::Journal::new();
    j.begin(99);
    h.state.vcpus.update(j, &(h.dom, 0), |v| {
        v.kernel_mode = false;
        v.cr3 = 0x1000;
        v.user_cr3 = 0x2000;
        v.kernel_sp = KSTACK;
    });
    lockstep::replica::forget(&mut h.state);
}

#[test]
fn user_page_fault_switches_stack_and_sets_cr2() {
    let mut h = Harness::dom0();
    assert_eq!(trap_table(&mut h, 0x1000, &[(14, 4, HANDLER)]), 0);
    to_user(&mut h);
    map_stack(&mut h, KSTACK);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 14, 0, 0x10_000);
    assert!(e.contains(&Effect::Pv(PvEffect::GuestMode {
        kernel: true,
        cr3: 0x1000
    })));
    assert!(e.contains(&Effect::Pv(PvEffect::GuestCr2 {
        dom: 0,
        vcpu: 0,
        cr2: 0x10_000
    })));
    assert!(e.contains(&Effect::Pv(PvEffect::UpcallMask {
        dom: 0,
        vcpu: 0,
        masked: true
    })));
    let r = set_regs(&e).expect("bounced");
    assert_eq!(r.rsp, KSTACK - 64);
    let w = stack_words(&h, KSTACK - 64, 8);
    assert_eq!(w[2], 4, "user bit set in the error code");
    assert_eq!(w[4], 0xe033, "user CS keeps RPL 3");
    assert!(h.state.vcpus.get(&(0, 0)).is_some_and(|v| v.kernel_mode));
}

#[test]
fn user_syscall_enters_the_callback() {
    let mut h = Harness::dom0();
    to_user(&mut h);
    map_stack(&mut h, KSTACK);
    let regs = GuestRegs {
        rflags: 0x602,
        rcx: 0x40_1000,
        r11: 0x202,
        ..kregs()
    };
    // No callback, no #UD handler: crash.
    let e = exit(&mut h, ExitKind::UserSyscall, regs, 0, 0, 0);
    assert!(e.contains(&Effect::DomainCrash { dom: 0 }));
    let mut h = Harness::dom0();
    h.mem.map(0x100, &[2, 0, 0, 0, 0, 0, 0, 0]);
    h.mem.map(0x108, &HANDLER.to_le_bytes());
    assert_eq!(h.hypercall(30, [0, 0x100, 0, 0, 0]).ret, 0);
    to_user(&mut h);
    map_stack(&mut h, KSTACK);
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(0x100);
    let e = exit(&mut h, ExitKind::UserSyscall, regs, 0, 0, 0);
    let r = set_regs(&e).expect("bounced");
    assert_eq!((r.rip, r.rsp), (HANDLER, KSTACK - 56));
    assert_eq!(r.rflags & (1 << 10), 0, "DF cleared");
    let w = stack_words(&h, KSTACK - 56, 7);
    assert_eq!((w[0], w[1], w[3]), (0x40_1000, 0x202, 0x1_0000_e033));
}

#[test]
fn iret_returns_to_user_or_crashes_without_user_tables() {
    let mut h = Harness::dom0();
    let frame: [u64; 9] = [
        7,
        0x11,
        0x22,
        0,
        0x40_0000,
        0xe033,
        0x202,
        0x7fff_0000,
        0xe02b,
    ];
    let bytes: alloc::vec::Vec<u8> = frame.iter().flat_map(|w| w.to_le_bytes()).collect();
    h.mem.map(STACK, &bytes);
    let regs = GuestRegs {
        rax: 23,
        rsp: STACK,
        ..kregs()
    };
    let e = h.run(Request::hypercall(0, 0, regs)).effects;
    assert!(
        e.contains(&Effect::DomainCrash { dom: 0 }),
        "no user page tables"
    );
    let mut h = Harness::dom0();
    h.mem.map(STACK, &bytes);
    let j = &mut lockstep::Journal::new();
    j.begin(99);
    h.state.vcpus.update(j, &(0, 0), |v| v.user_cr3 = 0x2000);
    lockstep::replica::forget(&mut h.state);
    let out = h.run(Request::hypercall(0, 0, regs));
    assert_eq!(out.ret, 7);
    let r = set_regs(&out.effects).expect("iret");
    assert_eq!(
        (r.rip, r.cs, r.rsp, r.ss, r.rcx, r.r11, r.rax),
        (0x40_0000, 0xe033, 0x7fff_0000, 0xe02b, 0x22, 0x11, 7)
    );
    assert!(out.effects.contains(&Effect::Pv(PvEffect::GuestMode {
        kernel: false,
        cr3: 0x2000
    })));
    assert!(out.effects.contains(&Effect::Pv(PvEffect::UpcallMask {
        dom: 0,
        vcpu: 0,
        masked: false
    })));
    assert!(!h.state.vcpus.get(&(0, 0)).is_some_and(|v| v.kernel_mode));
}

#[test]
fn int80_paths() {
    let mut h = Harness::dom0();
    map_stack(&mut h, STACK & !0xf);
    assert_eq!(trap_table(&mut h, 0x1000, &[(13, 0, HANDLER + 0x10)]), 0);
    // #GP from `int $0x80` (QEMU's error code 0x802) with no 0x80 handler: #GP(0x402) at the int.
    h.mem.map(0xffff_ffff_8000_5000, &[0xcd, 0x80]);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 13, 0x80 * 16 + 2, 0);
    let r = set_regs(&e).expect("bounced");
    assert_eq!(r.rip, HANDLER + 0x10);
    let top = STACK & !0xf;
    assert_eq!(
        stack_words(&h, top - 64, 4)[2..],
        [0x402, 0xffff_ffff_8000_5000]
    );
    // With a DPL-0 handler Xen 4.17 still delivers it (past the instruction).
    assert_eq!(trap_table(&mut h, 0x1000, &[(0x80, 0, HANDLER + 0x80)]), 0);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 13, 0x80 * 16 + 2, 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER + 0x80));
    assert_eq!(stack_words(&h, top - 56, 3)[2], 0xffff_ffff_8000_5002);
    // Another vector through a DPL-0 gate from the kernel: #GP (permit_softint needs DPL >= 1).
    assert_eq!(trap_table(&mut h, 0x1000, &[(0x81, 0, HANDLER + 0x81)]), 0);
    h.mem.map(0xffff_ffff_8000_5000, &[0xcd, 0x81]);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 13, 0x81 * 8 + 2, 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER + 0x10));
    assert_eq!(trap_table(&mut h, 0x1000, &[(0x81, 1, HANDLER + 0x81)]), 0);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 13, 0x81 * 8 + 2, 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER + 0x81));
}

#[test]
fn forced_cpuid_cr_reads_and_iopl() {
    let mut h = Harness::dom0();
    let rip = 0xffff_ffff_8000_5000;
    h.mem.map(rip, &[0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2]);
    let regs = GuestRegs {
        rax: 0x4000_0000,
        ..kregs()
    };
    let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 6, 0, 0)).expect("emulated");
    assert_eq!(
        (r.rax, r.rbx as u32, r.rip),
        (0x4000_0005, u32::from_le_bytes(*b"XenV"), rip + 7)
    );
    // mov %cr4, %rbx (0f 20 e3) and mov %cr0, %rax
    h.mem.map(rip, &[0x0f, 0x20, 0xe3]);
    let r = set_regs(&exit(&mut h, ExitKind::Exception, kregs(), 13, 0, 0)).expect("emulated");
    assert_eq!((r.rbx, r.rip), (0x660, rip + 3));
    h.mem.map(rip, &[0x0f, 0x20, 0xc0]);
    let r = set_regs(&exit(&mut h, ExitKind::Exception, kregs(), 13, 0, 0)).expect("emulated");
    assert_eq!(r.rax, 0x8005_0033);
    // cli with IOPL 0: #GP to the guest; with set_iopl(1): skipped.
    assert_eq!(trap_table(&mut h, 0x1000, &[(13, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    h.mem.map(rip, &[0xfa]);
    let r = set_regs(&exit(&mut h, ExitKind::Exception, kregs(), 13, 0, 0)).expect("bounced");
    assert_eq!(r.rip, HANDLER);
    h.mem.map(0x300, &1u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0);
    let r = set_regs(&exit(&mut h, ExitKind::Exception, kregs(), 13, 0, 0)).expect("emulated");
    assert_eq!(r.rip, rip + 1);
    // hlt is never emulated.
    h.mem.map(rip, &[0xf4]);
    let r = set_regs(&exit(&mut h, ExitKind::Exception, kregs(), 13, 0, 0)).expect("bounced");
    assert_eq!(r.rip, HANDLER);
}

#[test]
fn fpu_taskswitch_and_nm() {
    let mut h = Harness::dom0();
    assert_eq!(trap_table(&mut h, 0x1000, &[(7, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    let out = h.hypercall(5, [1, 0, 0, 0, 0]);
    assert_eq!(out.ret, 0);
    assert!(out.effects.contains(&Effect::Pv(PvEffect::FpuTs(true))));
    let e = exit(&mut h, ExitKind::Exception, kregs(), 7, 0, 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER));
    assert!(!crate::pv::state::get(&h.state, (0, 0)).cr0_ts);
    // Without the virtual TS the #NM only makes the FPU usable again.
    let e = exit(&mut h, ExitKind::Exception, kregs(), 7, 0, 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(kregs().rip));
}

#[test]
fn debug_registers_as_xen() {
    let mut h = Harness::dom0();
    let set = |h: &mut Harness, r: u64, v: u64| h.hypercall(8, [r, v, 0, 0, 0]).ret;
    let get = |h: &mut Harness, r: u64| h.hypercall(9, [r, 0, 0, 0, 0]).ret;
    assert_eq!((get(&mut h, 7), get(&mut h, 6)), (0x400, 0xffff_0ff0));
    assert_eq!(set(&mut h, 0, 0x1000), 0);
    assert_eq!(get(&mut h, 0), 0x1000);
    assert_eq!(set(&mut h, 0, 0xffff_8000_0000_0000), -1);
    assert_eq!(set(&mut h, 7, 1 << 32), -22);
    assert_eq!(set(&mut h, 7, 1 << 13), -1);
    assert_eq!(set(&mut h, 6, 0), 0);
    assert_eq!((get(&mut h, 6), get(&mut h, 4)), (0xffff_0ff0, 0xffff_0ff0));
    assert_eq!((set(&mut h, 8, 0), get(&mut h, 8)), (-19, -19));
    // An I/O breakpoint needs CR4.DE.
    assert_eq!(set(&mut h, 7, 0x2_0001), -1);
    // A data breakpoint that fired: the hardware DR6 (B0) reaches the virtual DR6 and #DB is
    // bounced to the guest's handler.
    assert_eq!(trap_table(&mut h, 0x1000, &[(1, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(0x100);
    let e = exit(&mut h, ExitKind::Exception, kregs(), 1, 0, 0xffff_4ff1);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER));
    assert_eq!(get(&mut h, 6), 0xffff_4ff1);
}

#[test]
fn vm_assist_and_segment_bases() {
    let mut h = Harness::dom0();
    for (cmd, kind, want) in [
        (0u64, 2u64, 0i64),
        (0, 0, 0),
        (1, 0, 0),
        (0, 6, -22),
        (0, 64, -22),
        (7, 32, -38),
    ] {
        assert_eq!(
            h.hypercall(21, [cmd, kind, 0, 0, 0]).ret,
            want,
            "{cmd} {kind}"
        );
    }
    assert_eq!(h.state.domains.get(&0).map(|d| d.vm_assist), Some(1 << 2));
    let out = h.hypercall(25, [0, 0x1234, 0, 0, 0]);
    assert_eq!(out.ret, 0);
    assert!(out.effects.contains(&Effect::Pv(PvEffect::SegmentBase {
        which: 0,
        value: 0x1234
    })));
    assert_eq!(
        h.hypercall(25, [0, 0x8000_0000_0000_0000, 0, 0, 0]).ret,
        -22
    );
    assert_eq!(h.hypercall(25, [4, 0, 0, 0, 0]).ret, -22);
    let out = h.hypercall(25, [3, 0x10, 0, 0, 0]);
    assert!(out.effects.contains(&Effect::Pv(PvEffect::SegmentBase {
        which: 3,
        value: 0x13
    })));
    assert_eq!(h.hypercall(3, [0xe028, KSTACK, 0, 0, 0]).ret, 0);
    assert_eq!(
        h.state
            .vcpus
            .get(&(0, 0))
            .map(|v| (v.kernel_ss, v.kernel_sp)),
        Some((0xe02b, KSTACK))
    );
    // set_gdt: too many entries, bad list, unowned frames; no frames at all is accepted.
    assert_eq!(h.hypercall(2, [0x100, 7169, 0, 0, 0]).ret, -22);
    assert_eq!(h.hypercall(2, [0, 1, 0, 0, 0]).ret, -14);
    h.mem.map(0x500, &5u64.to_le_bytes());
    assert_eq!(h.hypercall(2, [0x500, 1, 0, 0, 0]).ret, -22);
    assert_eq!(h.hypercall(2, [0, 0, 0, 0, 0]).ret, 0);
    assert_eq!(h.hypercall(10, [0x1004, 0, 0, 0, 0]).ret, -22);
}

#[test]
fn physdev_answers() {
    let mut h = Harness::dom0();
    h.mem.map(0x300, &4u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, -22);
    assert_eq!(h.hypercall(33, [6, 0, 0, 0, 0]).ret, -14);
    h.mem.map(0x400, &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(h.hypercall(33, [5, 0x400, 0, 0, 0]).ret, 0);
    assert_eq!(h.mem.bytes[&0x404], 1);
    h.mem.map(0x400, &[0, 0, 0x10, 0, 0, 0, 0, 0]);
    assert_eq!(h.hypercall(33, [5, 0x400, 0, 0, 0]).ret, -22);
    assert_eq!(h.hypercall(33, [0, 0, 0, 0, 0]).ret, -38);
}

#[test]
fn multicall_results_nesting_and_errors() {
    let mut h = Harness::dom0();
    let entries: [(u64, [u64; 6]); 5] = [
        (17, [0; 6]),
        (5, [0; 6]),
        (13, [0; 6]),
        (99, [0; 6]),
        (21, [0, 64, 0, 0, 0, 0]),
    ];
    let mut bytes = alloc::vec::Vec::new();
    for (op, args) in entries {
        bytes.extend_from_slice(&op.to_le_bytes());
        bytes.extend_from_slice(&0xdeadu64.to_le_bytes());
        for a in args {
            bytes.extend_from_slice(&a.to_le_bytes());
        }
    }
    h.mem.map(0x8000, &bytes);
    assert_eq!(h.hypercall(13, [0x8000, 5, 0, 0, 0]).ret, 0);
    let results: alloc::vec::Vec<i64> = (0..5)
        .map(|i| stack_words(&h, 0x8000 + 64 * i + 8, 1)[0] as i64)
        .collect();
    assert_eq!(results, [0x4_0011, 0, -22, -38, -22]);
    assert!(h.state.in_multicall.is_empty());
    assert_eq!(
        h.hypercall(13, [0xffff_8000_0000_0000, 0, 0, 0, 0]).ret,
        -14
    );
    assert_eq!(h.hypercall(13, [0x9000, 1, 0, 0, 0]).ret, -14);
}

#[test]
fn event_upcall_delivery() {
    let mut h = Harness::dom0();
    map_stack(&mut h, STACK & !0xf);
    // Masked: nothing happens.
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(0x101);
    assert!(exit(&mut h, ExitKind::Interrupt, kregs(), 0, 0, 0).is_empty());
    // Pending and unmasked with a callback: bounce with events masked.
    h.mem.map(0x100, &[0, 0, 0, 0, 0, 0, 0, 0]);
    h.mem.map(0x108, &HANDLER.to_le_bytes());
    assert_eq!(h.hypercall(30, [0, 0x100, 0, 0, 0]).ret, 0);
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(0x001);
    let e = exit(&mut h, ExitKind::Interrupt, kregs(), 0, 0, 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(HANDLER));
    assert!(e.contains(&Effect::Pv(PvEffect::UpcallMask {
        dom: 0,
        vcpu: 0,
        masked: true
    })));
    let top = STACK & !0xf;
    assert_eq!(
        stack_words(&h, top - 56, 5)[4] & (1 << 9),
        1 << 9,
        "IF from the clear mask"
    );
}

#[test]
fn msr_reads_and_writes_as_xen() {
    let mut h = Harness::dom0();
    let rip = 0xffff_ffff_8000_5000;
    let rdmsr = |h: &mut Harness, msr: u64| {
        h.mem.map(rip, &[0x0f, 0x32]);
        let regs = GuestRegs {
            rcx: msr,
            ..kregs()
        };
        set_regs(&exit(h, ExitKind::Exception, regs, 13, 0, 0))
            .filter(|r| r.rip == rip + 2)
            .map(|r| (r.rdx << 32) | r.rax)
    };
    let wrmsr = |h: &mut Harness, msr: u64, v: u64| {
        h.mem.map(rip, &[0x0f, 0x30]);
        let regs = GuestRegs {
            rcx: msr,
            rax: v & 0xffff_ffff,
            rdx: v >> 32,
            ..kregs()
        };
        set_regs(&exit(h, ExitKind::Exception, regs, 13, 0, 0)).is_some_and(|r| r.rip == rip + 2)
    };
    assert_eq!(rdmsr(&mut h, 0x1b), Some(0xfee0_0900));
    assert_eq!(rdmsr(&mut h, 0x277), Some(0x0000_0501_0007_0406));
    assert_eq!(rdmsr(&mut h, 0xc000_0080), Some(0xd01));
    h.mem
        .values
        .entry(value_kind::host_rdmsr(0x1a0).unwrap())
        .or_default()
        .push_back(0x81);
    assert_eq!(rdmsr(&mut h, 0x1a0), Some(0x80_1801));
    // Unknown MSRs: #GP to the guest's handler (no handler and a host MSR: read as 0).
    h.mem
        .values
        .entry(value_kind::host_rdmsr(0x174).unwrap())
        .or_default()
        .push_back(0);
    assert_eq!(rdmsr(&mut h, 0x174), Some(0), "faked without a #GP handler");
    assert_eq!(trap_table(&mut h, 0x1000, &[(13, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    assert_eq!(rdmsr(&mut h, 0x174), None);
    assert!(wrmsr(&mut h, 0xc000_0100, 0x1000));
    assert_eq!(rdmsr(&mut h, 0xc000_0100), Some(0x1000));
    assert!(!wrmsr(&mut h, 0xc000_0100, 0x8000_0000_0000_0000));
    assert!(wrmsr(&mut h, 0xc000_0080, 0xd01));
    assert!(!wrmsr(&mut h, 0xc000_0080, 0x501));
    assert!(wrmsr(&mut h, 0xc000_0103, 5));
    assert_eq!(rdmsr(&mut h, 0xc000_0103), Some(5));
    assert!(!wrmsr(&mut h, 0xc000_0103, 1 << 32));
    assert!(!wrmsr(&mut h, 0x277, 0));
}

#[test]
fn privileged_instructions_from_guest_user_mode_raise_gp() {
    let mut h = Harness::dom0();
    let rip = 0xffff_ffff_8000_5000;
    assert_eq!(trap_table(&mut h, 0x1000, &[(13, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    map_stack(&mut h, KSTACK);
    // Each instruction Xen emulates for the guest kernel only (x86_emulate's mode_ring0()).
    let ring0: [&[u8]; 10] = [
        &[0x0f, 0x20, 0xc0], // mov %cr0, %rax
        &[0x0f, 0x20, 0xd8], // mov %cr3, %rax
        &[0x0f, 0x20, 0xe0], // mov %cr4, %rax
        &[0x0f, 0x22, 0xd0], // mov %rax, %cr2
        &[0x0f, 0x21, 0xf8], // mov %dr7, %rax
        &[0x0f, 0x23, 0xc0], // mov %rax, %dr0
        &[0x0f, 0x06],       // clts
        &[0x0f, 0x09],       // wbinvd
        &[0x0f, 0x32],       // rdmsr
        &[0x0f, 0x30],       // wrmsr
    ];
    let regs = GuestRegs {
        rax: 0x1000,
        rcx: 0xc000_0100,
        ..kregs()
    };
    for insn in ring0 {
        h.mem.map(rip, insn);
        let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0));
        assert_eq!(
            r.map(|r| r.rip),
            Some(rip + insn.len() as u64),
            "{insn:x?} emulated in guest kernel mode"
        );
        let before = crate::pv::state::get(&h.state, (0, 0));
        to_user(&mut h);
        let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0));
        assert_eq!(r.map(|r| r.rip), Some(HANDLER), "{insn:x?} from user mode");
        let w = stack_words(&h, KSTACK - 64, 8);
        assert_eq!(
            (w[2], w[3], w[4]),
            (0, rip, 0xe033),
            "{insn:x?}: #GP(0) frame"
        );
        assert_eq!(
            crate::pv::state::get(&h.state, (0, 0)),
            before,
            "{insn:x?} changed nothing"
        );
    }
    // With the virtual IOPL at 1, cli and in are the kernel's but not the user's; at 3 both.
    h.mem.map(0x300, &1u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0);
    for insn in [&[0xfa][..], &[0xe4, 0x80]] {
        h.mem.map(rip, insn);
        h.mem
            .values
            .entry(value_kind::port_in(0x80, 1))
            .or_default()
            .push_back(0);
        let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0));
        assert_eq!(r.map(|r| r.rip), Some(rip + insn.len() as u64));
        to_user(&mut h);
        let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0));
        assert_eq!(
            r.map(|r| r.rip),
            Some(HANDLER),
            "{insn:x?} from user, IOPL 1"
        );
    }
    h.mem.map(0x300, &3u32.to_le_bytes());
    assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0);
    h.mem.map(rip, &[0xfa]);
    to_user(&mut h);
    let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0));
    assert_eq!(r.map(|r| r.rip), Some(rip + 1), "cli from user, IOPL 3");
}
