//! Host tests of CR4.TSD for a PV guest: with TSD in its virtual CR4 the kernel's
//! `rdtsc`/`rdtscp` (which then trap) are emulated and guest user mode's raise #GP(0), as
//! x86_emulate does for Xen 4.17; CR4.FSGSBASE kept only when the CPUID policy has FSGSBASE.

use crate::hv::value_kind;
use crate::hypercall::testing::Harness;
use crate::pv::tests::{
    exit, kregs, map_stack, set_regs, stack_words, to_user, trap_table, HANDLER, KSTACK, STACK,
};
use crate::request::{ExitKind, GuestRegs};

#[test]
fn cr4_tsd_emulates_the_kernels_rdtsc_and_refuses_the_users() {
    let mut h = Harness::dom0();
    let rip = 0xffff_ffff_8000_5000;
    assert_eq!(trap_table(&mut h, 0x1000, &[(13, 0, HANDLER)]), 0);
    map_stack(&mut h, STACK & !0xf);
    map_stack(&mut h, KSTACK);
    let run = |h: &mut Harness, code: &[u8], regs: GuestRegs| {
        h.mem.map(rip, code);
        h.mem
            .values
            .entry(value_kind::TSC)
            .or_default()
            .push_back(0x1234_5678_9abc);
        set_regs(&exit(h, ExitKind::Exception, regs, 13, 0, 0)).expect("handled")
    };
    // mov %rax, %cr4 with TSD: kept in the virtual CR4, read back by mov %cr4, %rbx.
    let r = run(
        &mut h,
        &[0x0f, 0x22, 0xe0],
        GuestRegs {
            rax: 0x664,
            ..kregs()
        },
    );
    assert_eq!(r.rip, rip + 3);
    assert_eq!(run(&mut h, &[0x0f, 0x20, 0xe3], kregs()).rbx, 0x664);
    // The kernel's rdtsc and rdtscp are emulated (TSC_AUX 7 in ECX).
    let r = run(&mut h, &[0x0f, 0x31], kregs());
    assert_eq!((r.rax, r.rdx, r.rip), (0x5678_9abc, 0x1234, rip + 2));
    let wr = GuestRegs {
        rcx: 0xc000_0103,
        rax: 7,
        ..kregs()
    };
    assert_eq!(run(&mut h, &[0x0f, 0x30], wr).rip, rip + 2);
    let r = run(&mut h, &[0x0f, 0x01, 0xf9], kregs());
    assert_eq!((r.rax, r.rcx, r.rip), (0x5678_9abc, 7, rip + 3));
    // Guest user mode: #GP(0) at the instruction, nothing changed.
    for code in [&[0x0f, 0x31][..], &[0x0f, 0x01, 0xf9]] {
        to_user(&mut h);
        let r = run(&mut h, code, kregs());
        assert_eq!((r.rip, r.rcx), (HANDLER, 11), "{code:x?} from user mode");
        let w = stack_words(&h, KSTACK - 64, 8);
        assert_eq!((w[2], w[3]), (0, rip), "{code:x?}: #GP(0) frame");
    }
    // Without TSD a trapping rdtscp (none does natively) would be emulated for the user too.
    let j = &mut lockstep::Journal::new();
    j.begin(99);
    crate::pv::state::update(&mut h.state, j, (0, 0), |p| p.cr4 = 0x660);
    lockstep::replica::forget(&mut h.state);
    to_user(&mut h);
    let r = run(&mut h, &[0x0f, 0x01, 0xf9], kregs());
    assert_eq!((r.rcx, r.rip), (7, rip + 3));
}

/// `mov %rax, %cr4` with every bit, then `mov %cr4, %rbx`: what the kernel reads back, with
/// the host's CPUID leaf 7 EBX `leaf7_ebx` (max basic leaf 0xd).
fn cr4_after_asking_for_everything(leaf7_ebx: u64) -> u64 {
    let mut h = Harness::dom0();
    let rip = 0xffff_ffff_8000_5000;
    for (kind, v) in [
        (value_kind::host_cpuid_raw(0, 0, 0), 0xd),
        (value_kind::host_cpuid_raw(7, 0, 1), leaf7_ebx),
    ] {
        h.mem.values.entry(kind).or_default().push_back(v);
    }
    h.mem.map(rip, &[0x0f, 0x22, 0xe0]);
    let regs = GuestRegs {
        rax: 0xffff_ffff,
        ..kregs()
    };
    let r = set_regs(&exit(&mut h, ExitKind::Exception, regs, 13, 0, 0)).expect("emulated");
    assert_eq!(r.rip, rip + 3);
    h.mem.map(rip, &[0x0f, 0x20, 0xe3]);
    set_regs(&exit(&mut h, ExitKind::Exception, kregs(), 13, 0, 0))
        .expect("emulated")
        .rbx
}

#[test]
fn cr4_fsgsbase_follows_the_cpuid_policy() {
    // Xen 4.17 under QEMU's EPYC model (FSGSBASE in leaf 7) answered 0x5066c.
    assert_eq!(cr4_after_asking_for_everything(0x219c_91a9), 0x5066c);
    assert_eq!(cr4_after_asking_for_everything(0x219c_91a8), 0x4066c);
}
