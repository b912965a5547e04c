//! Host tests of `xsetbv` from a PV guest, as Xen 4.17 answered the `xsave` test guest:
//! #UD until the kernel sets CR4.OSXSAVE in its virtual CR4, #GP(0) from guest user mode
//! and for a register other than XCR0 or a value Xen's `valid_xcr0` / host mask / PV rules
//! refuse; otherwise the vCPU's XCR0 (and its accumulated bits) change.

use crate::hv::value_kind;
use crate::hypercall::testing::Harness;
use crate::pv::tests::{
    exit, kregs, map_stack, set_regs, to_user, trap_table, HANDLER, KSTACK, STACK,
};
use crate::request::{ExitKind, GuestRegs};

const RIP: u64 = 0xffff_ffff_8000_5000;
const UD_HANDLER: u64 = HANDLER + 0x100;

fn harness() -> Harness {
    let mut h = Harness::dom0();
    assert_eq!(
        trap_table(&mut h, 0x1000, &[(6, 0, UD_HANDLER), (13, 0, HANDLER)]),
        0
    );
    map_stack(&mut h, STACK & !0xf);
    map_stack(&mut h, KSTACK);
    h
}

/// The host: XSAVE with CR4.OSXSAVE, XCR0 bits x87 | SSE | AVX (QEMU's EPYC).
fn host_values(h: &mut Harness) {
    for (kind, v) in [
        (value_kind::host_cpuid_raw(1, 0, 2), 0xfed8_3203),
        (value_kind::host_cpuid_raw(0xd, 0, 0), 7),
        (value_kind::host_cpuid_raw(0xd, 0, 3), 0),
    ] {
        h.mem.values.entry(kind).or_default().push_back(v);
    }
}

/// `xsetbv` with ECX `index` and EDX:EAX `value`: the RIP the guest continues at.
fn xsetbv(h: &mut Harness, index: u64, value: u64) -> u64 {
    h.mem.map(RIP, &[0x0f, 0x01, 0xd1]);
    let regs = GuestRegs {
        rcx: index,
        rax: value & 0xffff_ffff,
        rdx: value >> 32,
        ..kregs()
    };
    set_regs(&exit(h, ExitKind::Exception, regs, 13, 0, 0))
        .expect("handled")
        .rip
}

fn xcr0(h: &Harness) -> (u64, u64) {
    let p = crate::pv::state::get(&h.state, (0, 0));
    (p.xcr0, p.xcr0_accum)
}

#[test]
fn xsetbv_needs_the_kernels_cr4_osxsave_first() {
    let mut h = harness();
    assert_eq!(xcr0(&h), (3, 3));
    assert_eq!(xsetbv(&mut h, 0, 3), UD_HANDLER);
    // mov %rax, %cr4 with OSXSAVE: kept, as on Xen (0x40660 read back).
    h.mem.map(RIP, &[0x0f, 0x22, 0xe0]);
    let regs = GuestRegs {
        rax: 0x40660,
        ..kregs()
    };
    let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0)).expect("emulated");
    assert_eq!(r.rip, RIP + 3);
    host_values(&mut h);
    assert_eq!(xsetbv(&mut h, 0, 7), RIP + 3);
    assert_eq!(xcr0(&h), (7, 7));
    host_values(&mut h);
    assert_eq!(xsetbv(&mut h, 0, 3), RIP + 3);
    assert_eq!(xcr0(&h), (3, 7), "the accumulated bits stay");
    host_values(&mut h);
    assert_eq!(xsetbv(&mut h, 0, 1), RIP + 3);
    assert_eq!(xcr0(&h), (1, 7));
    for bad in [2u64, 5, 0, 0x207, 0xe7, (1 << 63) | 7] {
        host_values(&mut h);
        assert_eq!(xsetbv(&mut h, 0, bad), HANDLER, "{bad:#x}: #GP");
        assert_eq!(xcr0(&h), (1, 7), "{bad:#x} changed nothing");
    }
    for index in [1u64, 2, 0xffff_ffff] {
        assert_eq!(xsetbv(&mut h, index, 3), HANDLER, "XCR{index:#x}: #GP");
    }
    // Only ECX counts: RCX's upper half is ignored.
    host_values(&mut h);
    assert_eq!(xsetbv(&mut h, 1 << 32, 3), RIP + 3);
    assert_eq!(xcr0(&h), (3, 7));
    // Guest user mode: #GP(0) (CR4.OSXSAVE is set, so not #UD).
    to_user(&mut h);
    assert_eq!(xsetbv(&mut h, 0, 1), HANDLER);
    assert_eq!(xcr0(&h), (3, 7));
}

#[test]
fn a_host_without_osxsave_takes_no_xcr0() {
    let mut h = harness();
    h.mem.map(RIP, &[0x0f, 0x22, 0xe0]);
    let regs = GuestRegs {
        rax: 0x40660,
        ..kregs()
    };
    set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0)).expect("emulated");
    h.mem
        .values
        .entry(value_kind::host_cpuid_raw(1, 0, 2))
        .or_default()
        .push_back(0xf6d8_3203);
    assert_eq!(xsetbv(&mut h, 0, 3), HANDLER);
    assert_eq!(xcr0(&h), (3, 3));
}
