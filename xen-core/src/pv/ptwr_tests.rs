//! Host tests of writable page-table emulation: the instruction decoder, the `cmp` flags, and
//! #PF exits through the real state machine over the mm fixture (its L1 table is mapped
//! read-only at `VA_BASE + L1_PFN * 4K`), with the answers Xen 4.17 gave the `ptwr` guest.

use super::ptwr::{cmp_flags, decode_write, Op, Write};
use crate::effect::Effect;
use crate::hypercall::testing::Harness;
use crate::mm::fixture::{audit, harness, l1_slot, mfn, L1_PFN, VA_BASE};
use crate::mm::pt::{GUEST_KERNEL, NX, P, RW, US};
use crate::request::{ExitKind, GuestRegs, Request};
use alloc::vec::Vec;
use dom0_interface::xen::{HYPERVISOR_VM_ASSIST, VMASST_TYPE_WRITABLE_PAGETABLES};

const CODE: u64 = 0xffff_ffff_8000_5000;
const RAX: u64 = 0x0102_0304_0506_0788;

fn regs() -> GuestRegs {
    GuestRegs {
        rip: CODE,
        cs: 0xe033,
        rflags: 0x202,
        rsp: 0xffff_ffff_8002_0000,
        ss: 0xe02b,
        rdi: 0x1000,
        rax: RAX,
        rcx: 2,
        r8: 0x8888,
        rbx: 0xffff_0000_0000_0000,
        r13: 0x2000,
        ..Default::default()
    }
}

fn dec(bytes: &[u8]) -> Option<Write> {
    decode_write(|i| bytes.get(i).copied(), &regs())
}

fn w(op: Op, size: u8, ea: u64, len: u8) -> Option<Write> {
    Some(Write { op, size, ea, len })
}

#[test]
fn decodes_the_writes_a_pv_kernel_makes_to_its_entries() {
    assert_eq!(dec(&[0x48, 0x89, 0x07]), w(Op::Mov(RAX), 8, 0x1000, 3));
    assert_eq!(dec(&[0x89, 0x07]), w(Op::Mov(0x0506_0788), 4, 0x1000, 2));
    assert_eq!(dec(&[0x66, 0x89, 0x07]), w(Op::Mov(0x0788), 2, 0x1000, 3));
    assert_eq!(dec(&[0x88, 0x07]), w(Op::Mov(0x88), 1, 0x1000, 2));
    assert_eq!(dec(&[0x88, 0x27]), w(Op::Mov(0x07), 1, 0x1000, 2), "%ah");
    assert_eq!(
        dec(&[0x40, 0x88, 0x27]),
        w(Op::Mov(0), 1, 0x1000, 3),
        "%spl"
    );
    assert_eq!(
        dec(&[0x48, 0x89, 0x47, 0x08]),
        w(Op::Mov(RAX), 8, 0x1008, 4)
    );
    assert_eq!(
        dec(&[0x48, 0x89, 0x47, 0xf8]),
        w(Op::Mov(RAX), 8, 0x0ff8, 4)
    );
    assert_eq!(
        dec(&[0x48, 0x89, 0x87, 0x00, 0x01, 0x00, 0x00]),
        w(Op::Mov(RAX), 8, 0x1100, 7)
    );
    // SIB: rdi + rcx*8; rsp as base; no base with an index-less SIB.
    assert_eq!(
        dec(&[0x48, 0x89, 0x04, 0xcf]),
        w(Op::Mov(RAX), 8, 0x1010, 4)
    );
    assert_eq!(
        dec(&[0x4c, 0x89, 0x04, 0x24]),
        w(Op::Mov(0x8888), 8, 0xffff_ffff_8002_0000, 4)
    );
    assert_eq!(
        dec(&[0x48, 0x89, 0x04, 0x25, 0x00, 0x30, 0x00, 0x00]),
        w(Op::Mov(RAX), 8, 0x3000, 8)
    );
    // REX.B with rm 5 and a displacement is r13, not RIP-relative.
    assert_eq!(
        dec(&[0x41, 0x89, 0x45, 0x10]),
        w(Op::Mov(0x0506_0788), 4, 0x2010, 4)
    );
    // RIP-relative: from the end of the instruction (immediate included).
    assert_eq!(
        dec(&[0x48, 0x89, 0x05, 0x10, 0x00, 0x00, 0x00]),
        w(Op::Mov(RAX), 8, CODE + 7 + 0x10, 7)
    );
    assert_eq!(
        dec(&[0x80, 0x25, 0x10, 0x00, 0x00, 0x00, 0xfd]),
        w(Op::And(0xfd), 1, CODE + 7 + 0x10, 7)
    );
    assert_eq!(
        dec(&[0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff]),
        w(Op::Mov(u64::MAX), 8, 0x1000, 7)
    );
    assert_eq!(
        dec(&[0xc7, 0x07, 0x00, 0x00, 0x00, 0x80]),
        w(Op::Mov(0x8000_0000), 4, 0x1000, 6)
    );
    assert_eq!(
        dec(&[0x66, 0xc7, 0x07, 0x34, 0x12]),
        w(Op::Mov(0x1234), 2, 0x1000, 5)
    );
    assert_eq!(dec(&[0xc6, 0x07, 0x63]), w(Op::Mov(0x63), 1, 0x1000, 3));
    assert_eq!(dec(&[0x48, 0x87, 0x07]), w(Op::Xchg(0), 8, 0x1000, 3));
    assert_eq!(
        dec(&[0xf0, 0x48, 0x0f, 0xb1, 0x37]),
        w(Op::Cmpxchg(6), 8, 0x1000, 5)
    );
    assert_eq!(
        dec(&[0x3e, 0xf0, 0x4c, 0x0f, 0xb1, 0x0f]),
        w(Op::Cmpxchg(9), 8, 0x1000, 6)
    );
}

#[test]
fn decodes_the_bit_operations_linux_uses_on_entries() {
    // clear_bit/set_bit with a constant: lock andb/orb $imm8 on the byte holding the bit.
    assert_eq!(
        dec(&[0xf0, 0x80, 0x27, 0xfd]),
        w(Op::And(0xfd), 1, 0x1000, 4)
    );
    assert_eq!(
        dec(&[0xf0, 0x80, 0x0f, 0x02]),
        w(Op::Or(0x02), 1, 0x1000, 4)
    );
    assert_eq!(
        dec(&[0x48, 0x83, 0x27, 0xfd]),
        w(Op::And(0xffff_ffff_ffff_fffd), 8, 0x1000, 4)
    );
    assert_eq!(
        dec(&[0x48, 0x81, 0x0f, 0x00, 0x00, 0x00, 0x80]),
        w(Op::Or(0xffff_ffff_8000_0000), 8, 0x1000, 7)
    );
    assert_eq!(dec(&[0x48, 0x21, 0x07]), w(Op::And(RAX), 8, 0x1000, 3));
    assert_eq!(dec(&[0x09, 0x07]), w(Op::Or(0x0506_0788), 4, 0x1000, 2));
    assert_eq!(dec(&[0x08, 0x07]), w(Op::Or(0x88), 1, 0x1000, 2));
    // test_and_clear_bit: lock btr %reg, mem; the offset may reach other words.
    assert_eq!(
        dec(&[0xf0, 0x48, 0x0f, 0xb3, 0x0f]),
        w(Op::Btr(2), 8, 0x1000, 5)
    );
    let far = GuestRegs {
        rcx: 64 * 3 + 5,
        ..regs()
    };
    assert_eq!(
        decode_write(|i| [0x48, 0x0f, 0xab, 0x0f].get(i).copied(), &far),
        w(Op::Bts(5), 8, 0x1018, 4)
    );
    let back = GuestRegs {
        rcx: (-1i64) as u64,
        ..regs()
    };
    assert_eq!(
        decode_write(|i| [0x48, 0x0f, 0xb3, 0x0f].get(i).copied(), &back),
        w(Op::Btr(63), 8, 0x0ff8, 4)
    );
    assert_eq!(
        dec(&[0xf0, 0x48, 0x0f, 0xba, 0x37, 0x41]),
        w(Op::Btr(1), 8, 0x1000, 6)
    );
    assert_eq!(dec(&[0x0f, 0xba, 0x2f, 0x3f]), w(Op::Bts(31), 4, 0x1000, 4));
}

#[test]
fn refuses_what_it_does_not_emulate() {
    for bytes in [
        &[0x64, 0x48, 0x89, 0x07][..],   // FS override
        &[0x67, 0x48, 0x89, 0x07],       // 32-bit addressing
        &[0xf3, 0x48, 0x89, 0x07],       // REP
        &[0x48, 0x89, 0xc7],             // register destination
        &[0x86, 0x07],                   // byte xchg
        &[0x48, 0xc7, 0x0f, 0, 0, 0, 0], // C7 /1
        &[0x48, 0x01, 0x07],             // add
        &[0x80, 0x07, 0x01],             // add $1 (80 /0)
        &[0x0f, 0xba, 0x27, 0x01],       // bt (0F BA /4): no write
        &[0x0f, 0xb0, 0x07],             // byte cmpxchg
        &[0x48, 0x89],                   // truncated
        &[0x48, 0x89, 0x47],             // truncated displacement
        &[0x66; 16],                     // prefixes only
    ] {
        assert_eq!(dec(bytes), None, "{bytes:x?}");
    }
}

#[test]
fn cmp_sets_the_arithmetic_flags() {
    let (cf, pf, af, zf, sf, of) = (1, 4, 0x10, 0x40, 0x80, 0x800);
    assert_eq!(cmp_flags(5, 5, 8), zf | pf);
    assert_eq!(cmp_flags(1, 2, 8), cf | pf | af | sf);
    assert_eq!(cmp_flags(0x8000_0000, 1, 4), pf | af | of);
    assert_eq!(
        cmp_flags(0x1_0000_0005, 5, 4),
        zf | pf,
        "upper bits ignored"
    );
    assert_eq!(cmp_flags(0, 0x8000, 2), cf | pf | sf | of);
}

/// The L1 entry slot `i`'s virtual address in the read-only mapping of the L1 table.
fn slot_va(i: u64) -> u64 {
    VA_BASE + L1_PFN * 4096 + i * 8
}

/// A kernel write fault at `cr2` by the instruction `code` with `r`.
fn fault(h: &mut Harness, code: &[u8], r: GuestRegs, cr2: u64, ec: u64) -> Vec<Effect> {
    h.mem.map(r.rip, code);
    h.run(Request::exit(ExitKind::Exception, h.dom, 0, r, 14, ec, cr2))
        .effects
}

fn emulated(e: &[Effect]) -> Option<GuestRegs> {
    e.iter().rev().find_map(|e| match e {
        Effect::SetRegs(r) if r.rip != 0 => Some(*r),
        _ => None,
    })
}

fn assist(h: &mut Harness, on: bool) {
    let cmd = if on { 0 } else { 1 };
    let r = h.hypercall(
        u64::from(HYPERVISOR_VM_ASSIST),
        [cmd, u64::from(VMASST_TYPE_WRITABLE_PAGETABLES), 0, 0, 0],
    );
    assert_eq!(r.ret, 0);
}

const MOV: [u8; 3] = [0x48, 0x89, 0x07];

fn mov(h: &mut Harness, i: u64, val: u64) -> Option<GuestRegs> {
    let r = GuestRegs {
        rdi: slot_va(i),
        rax: val,
        ..regs()
    };
    emulated(&fault(h, &MOV, r, slot_va(i), 3))
}

#[test]
fn a_domu_needs_the_assist_and_then_its_writes_are_validated() {
    let mut h = harness(false);
    let before = h.mem.word(l1_slot(20));
    assert_eq!(mov(&mut h, 20, (mfn(21) << 12) | P | RW), None, "no assist");
    assert_eq!(h.mem.word(l1_slot(20)), before);
    assist(&mut h, true);
    let r = mov(&mut h, 20, (mfn(21) << 12) | P | RW).expect("emulated");
    assert_eq!(r.rip, CODE + 3);
    assert_eq!(
        h.mem.word(l1_slot(20)),
        (mfn(21) << 12) | P | RW | US | GUEST_KERNEL
    );
    audit(&h).unwrap();
    // A page table mapped writable, a frame beyond the domain, an L2 entry: #PF.
    let cur = h.mem.word(l1_slot(20));
    assert_eq!(mov(&mut h, 20, (mfn(L1_PFN) << 12) | P | RW), None);
    assert_eq!(mov(&mut h, 20, (mfn(200) << 12) | P), None);
    assert_eq!(h.mem.word(l1_slot(20)), cur);
    let l2 = VA_BASE + 2 * 4096 + 16;
    let r = GuestRegs {
        rdi: l2,
        rax: 0,
        ..regs()
    };
    assert_eq!(emulated(&fault(&mut h, &MOV, r, l2, 3)), None, "L2");
    // Not a kernel write to a present page: not for the emulator.
    for ec in [1, 2, 3 | 8, 3 | 16] {
        let r = GuestRegs {
            rdi: slot_va(20),
            rax: 0,
            ..regs()
        };
        assert_eq!(emulated(&fault(&mut h, &MOV, r, slot_va(20), ec)), None);
    }
    // Misaligned, or outside the faulting page.
    let r = GuestRegs {
        rdi: slot_va(20) + 4,
        rax: 0,
        ..regs()
    };
    assert_eq!(emulated(&fault(&mut h, &MOV, r, slot_va(20) + 4, 3)), None);
    let r = GuestRegs {
        rdi: slot_va(20) + 4096,
        rax: 0,
        ..regs()
    };
    assert_eq!(emulated(&fault(&mut h, &MOV, r, slot_va(20), 3)), None);
    assert_eq!(h.mem.word(l1_slot(20)), cur);
    // Back to its own frame: the reference on frame 21 goes.
    assert!(mov(&mut h, 20, (mfn(20) << 12) | P | RW).is_some());
    audit(&h).unwrap();
    assist(&mut h, false);
    assert_eq!(mov(&mut h, 20, 0), None, "assist off again");
}

#[test]
fn dom0_writes_are_emulated_without_the_assist() {
    let mut h = harness(true);
    assert!(mov(&mut h, 20, 0).is_some());
    assert_eq!(h.mem.word(l1_slot(20)), 0);
    audit(&h).unwrap();
}

#[test]
fn xchg_cmpxchg_and_half_entries() {
    let mut h = harness(false);
    assist(&mut h, true);
    let own = h.mem.word(l1_slot(20));
    let other = (mfn(21) << 12) | P | RW;
    // xchg: the old entry comes back in the register.
    let r = GuestRegs {
        rdi: slot_va(20),
        rax: other,
        ..regs()
    };
    let out = emulated(&fault(&mut h, &[0x48, 0x87, 0x07], r, slot_va(20), 3)).expect("xchg");
    assert_eq!(out.rax, own);
    let now = h.mem.word(l1_slot(20));
    assert_eq!(now, other | US | GUEST_KERNEL);
    // cmpxchg with a stale value: no write, %rax = the entry, ZF clear.
    let cx = [0xf0, 0x48, 0x0f, 0xb1, 0x37];
    let r = GuestRegs {
        rdi: slot_va(20),
        rax: own,
        rsi: own,
        ..regs()
    };
    let out = emulated(&fault(&mut h, &cx, r, slot_va(20), 3)).expect("cmpxchg");
    assert_eq!((out.rax, out.rflags & 0x40, out.rip), (now, 0, CODE + 5));
    assert_eq!(h.mem.word(l1_slot(20)), now);
    // An invalid new entry faults even though the compare fails (Xen validates first).
    let r = GuestRegs {
        rdi: slot_va(20),
        rax: own,
        rsi: (mfn(L1_PFN) << 12) | P | RW,
        ..regs()
    };
    assert_eq!(emulated(&fault(&mut h, &cx, r, slot_va(20), 3)), None);
    // With the current value: written, ZF set.
    let r = GuestRegs {
        rdi: slot_va(20),
        rax: now,
        rsi: own,
        ..regs()
    };
    let out = emulated(&fault(&mut h, &cx, r, slot_va(20), 3)).expect("cmpxchg");
    assert_eq!((out.rax, out.rflags & 0x40), (now, 0x40));
    assert_eq!(h.mem.word(l1_slot(20)), own);
    audit(&h).unwrap();
    // The high half alone: NX.
    let r = GuestRegs {
        rdi: slot_va(20),
        rax: (own >> 32) | (1 << 31),
        ..regs()
    };
    let out = emulated(&fault(&mut h, &[0x89, 0x47, 0x04], r, slot_va(20) + 4, 3));
    assert_eq!(out.map(|o| o.rip), Some(CODE + 3));
    assert_eq!(h.mem.word(l1_slot(20)), own | NX);
    // The low half alone: read-only.
    let r = GuestRegs {
        rdi: slot_va(20),
        rax: (own & 0xffff_ffff) & !RW,
        ..regs()
    };
    assert!(emulated(&fault(&mut h, &[0x89, 0x07], r, slot_va(20), 3)).is_some());
    assert_eq!(h.mem.word(l1_slot(20)), (own | NX) & !RW);
    audit(&h).unwrap();
}

#[test]
fn bit_operations_on_an_entry() {
    let mut h = harness(false);
    assist(&mut h, true);
    let own = h.mem.word(l1_slot(20));
    let at = |rcx: u64| GuestRegs {
        rdi: slot_va(20),
        rcx,
        ..regs()
    };
    let cf = |r: &GuestRegs| r.rflags & 1;
    // lock andb $~RW: read-only; ZF clear (the byte is not 0), CF cleared.
    let r = emulated(&fault(
        &mut h,
        &[0xf0, 0x80, 0x27, 0xfd],
        at(0),
        slot_va(20),
        3,
    ))
    .expect("andb");
    assert_eq!((r.rip, r.rflags & 0x41), (CODE + 4, 0));
    assert_eq!(h.mem.word(l1_slot(20)), own & !RW);
    // lock orb $RW: writable again.
    assert!(emulated(&fault(
        &mut h,
        &[0xf0, 0x80, 0x0f, 0x02],
        at(0),
        slot_va(20),
        3
    ))
    .is_some());
    assert_eq!(h.mem.word(l1_slot(20)), own);
    // lock btrq $1: CF is the old bit.
    let btr = [0xf0, 0x48, 0x0f, 0xba, 0x37, 0x01];
    let r = emulated(&fault(&mut h, &btr, at(0), slot_va(20), 3)).expect("btr");
    assert_eq!((cf(&r), h.mem.word(l1_slot(20))), (1, own & !RW));
    let r = emulated(&fault(&mut h, &btr, at(0), slot_va(20), 3)).expect("btr");
    assert_eq!((cf(&r), h.mem.word(l1_slot(20))), (0, own & !RW));
    // lock btsq %rcx with rcx = 1: set again.
    let bts = [0xf0, 0x48, 0x0f, 0xab, 0x0f];
    let r = emulated(&fault(&mut h, &bts, at(1), slot_va(20), 3)).expect("bts");
    assert_eq!((cf(&r), h.mem.word(l1_slot(20))), (0, own));
    // A bit offset reaching the next entry writes that one (cr2 names it).
    let r = emulated(&fault(&mut h, &bts, at(64 + 11), slot_va(21), 3)).expect("bts next");
    assert_eq!(cf(&r), 0);
    assert_eq!(h.mem.word(l1_slot(21)) & (1 << 11), 1 << 11);
    // orb making a table entry writable is validated like any write: mapping the L1 table.
    let to_l1 = GuestRegs {
        rdi: slot_va(22),
        rax: (mfn(L1_PFN) << 12) | P,
        ..regs()
    };
    assert!(emulated(&fault(&mut h, &MOV, to_l1, slot_va(22), 3)).is_some());
    let before = h.mem.word(l1_slot(22));
    let r = GuestRegs {
        rdi: slot_va(22),
        ..regs()
    };
    assert_eq!(
        emulated(&fault(&mut h, &[0xf0, 0x80, 0x0f, 0x02], r, slot_va(22), 3)),
        None,
        "a page table mapped writable"
    );
    assert_eq!(h.mem.word(l1_slot(22)), before);
    audit(&h).unwrap();
}
