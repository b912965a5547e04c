//! `xsave`: XSAVE for a 64-bit PV kernel, as Xen 4.17 gives it. The enlightened CPUID shows
//! the kernel OSXSAVE (Xen's de-facto PV ABI: its own CR4.OSXSAVE) while the kernel's
//! virtual CR4 starts without it; `xgetbv` runs natively; `xsetbv` raises #UD until the
//! kernel sets CR4.OSXSAVE, then is emulated with Xen's checks (#GP(0) for a value or
//! register it refuses); CPUID 0xd.0 EBX follows the vCPU's XCR0. The AVX state XCR0
//! enables is each vCPU's own: it survives hypercalls and the other vCPU's use of AVX, and a
//! vCPU that enables AVX starts from the initial (zero) state, never another vCPU's values.
//! The same for the x87 control word and register stack, MXCSR and XMM registers: each
//! vCPU's survive hypercalls and the other vCPU running, and vCPU 1 starts with FNINIT's
//! x87 state and the default MXCSR.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::pvcpu;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::xsave::{self as xs, CR4_OSXSAVE, GP, UD};
use guest_rt::{cpu, fpu, fsgsbase, println, sched, smp, vcpu};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// CPUID.1:ECX.OSXSAVE.
const OSXSAVE: u32 = 1 << 27;
/// CPUID.1:ECX.AVX.
const AVX: u32 = 1 << 28;
/// vCPU 0's and vCPU 1's values in the upper half of YMM0.
const MINE: [u64; 2] = [0x1111_2222_3333_4444, 0x5555_6666_7777_8888];
const THEIRS: [u64; 2] = [0x9999_aaaa_bbbb_cccc, 0xdddd_eeee_ffff_0123];

/// vCPU 0's and vCPU 1's x87 control words, x87 top of stack and MXCSR (rounding down and
/// up instead of to nearest).
const MY_FPU: (u16, i64, u32) = (0x027F, 0x1234_5678_9abc_def0, 0x3F80);
const THEIR_FPU: (u16, i64, u32) = (0x007F, -0x0fed_cba9_8765_4321, 0x5F80);
/// vCPU 1's x87 control word, top of stack, MXCSR and XMM15 across a hypercall: at its start
/// (FCW and MXCSR only) and at its last check.
static SEEN_FPU: [AtomicU64; 6] = [const { AtomicU64::new(u64::MAX) }; 6];

/// vCPU 1's progress: 1 after its first checks, 2 after its last.
static STAGE: AtomicU64 = AtomicU64::new(0);
/// Set by vCPU 0 when vCPU 1 may do its last check.
static GO: AtomicU64 = AtomicU64::new(0);
/// What vCPU 1 saw: XCR0 at its start, YMM0's upper half right after enabling AVX and at
/// its last check (each word pair), and whether its own `xsetbv` worked.
static SEEN: [AtomicU64; 6] = [const { AtomicU64::new(u64::MAX) }; 6];

fn main(si: &StartInfo) {
    println!("xsave: XCR0 and AVX state test guest");
    fpu::fninit();
    fpu::set_fcw(MY_FPU.0);
    fpu::x87_push(MY_FPU.1);
    fpu::set_mxcsr(MY_FPU.2);
    check_eq(
        "XMM15 across a hypercall",
        fpu::xmm15_across_hypercall(0x0bad_cafe_f00d_0001),
        Some(0x0bad_cafe_f00d_0001),
    );
    check_eq("sched_op yield", sched::yield_now(), Ok(0));
    check_eq(
        "x87 control word, top of stack and MXCSR after hypercalls",
        (fpu::fcw(), fpu::x87_top(), fpu::mxcsr()),
        MY_FPU,
    );
    let l1 = pvcpu::xen_cpuid(1, 0);
    if l1[2] & (1 << 26) == 0 {
        info(format_args!("no XSAVE in CPUID: nothing to check"));
        return;
    }
    check_eq(
        "enlightened CPUID shows the kernel OSXSAVE",
        l1[2] & OSXSAVE,
        OSXSAVE,
    );
    check_eq(
        "virtual CR4 starts without OSXSAVE: 0x660",
        cpu::read_cr4(),
        0x660,
    );
    check_eq("xgetbv(0) runs natively: x87|SSE", xs::xgetbv(0), Ok(3));
    check_eq(
        "xsetbv before CR4.OSXSAVE -> #UD",
        xs::xsetbv(0, 3),
        Err(UD),
    );
    check_eq(
        "mov to %cr4 keeps OSXSAVE: 0x40660",
        fsgsbase::write_cr4(cpu::read_cr4() | CR4_OSXSAVE),
        0x40660,
    );
    check_eq(
        "CPUID 0xd.0 EBX: the x87|SSE area, 0x240",
        pvcpu::xen_cpuid(0xd, 0)[1],
        0x240,
    );
    if l1[2] & AVX == 0 {
        info(format_args!("no AVX in CPUID: XCR0 values not checked"));
        return;
    }
    for (value, want) in [(3u64, Ok(())), (7, Ok(())), (1, Ok(()))] {
        check_eq(
            "xsetbv(XCR0) of a valid value",
            (value, xs::xsetbv(0, value)),
            (value, want),
        );
        check_eq("  ... xgetbv reads it back", xs::xgetbv(0), Ok(value));
    }
    for bad in [2u64, 5, 0, 7 | xs::XCR0_PKRU, 0xe7, (1 << 63) | 7] {
        check_eq(
            "xsetbv(XCR0) of a value Xen refuses -> #GP",
            (bad, xs::xsetbv(0, bad)),
            (bad, Err(GP)),
        );
    }
    check_eq("  ... XCR0 unchanged", xs::xgetbv(0), Ok(1));
    for index in [1u32, 2] {
        check_eq(
            "xsetbv of another XCR -> #GP",
            (index, xs::xsetbv(index, 3)),
            (index, Err(GP)),
        );
    }
    check_eq("xsetbv(XCR0, x87|SSE|AVX)", xs::xsetbv(0, 7), Ok(()));
    check_eq(
        "CPUID 0xd.0 EBX follows XCR0: 0x340",
        pvcpu::xen_cpuid(0xd, 0)[1],
        0x340,
    );
    check(
        "AVX usable: YMM0's upper half written",
        xs::set_ymm0_high(MINE),
    );
    check_eq("sched_op yield", sched::yield_now(), Ok(0));
    check_eq(
        "YMM0's upper half after a hypercall",
        xs::ymm0_high(),
        Some(MINE),
    );
    check_eq("xsetbv(XCR0, x87|SSE)", xs::xsetbv(0, 3), Ok(()));
    check_eq("AVX off: vextractf128 -> #UD", xs::ymm0_high(), None);
    check_eq("xsetbv(XCR0, x87|SSE|AVX) again", xs::xsetbv(0, 7), Ok(()));
    second_vcpu(si);
}

/// vCPU 1 enables AVX for itself and uses it while vCPU 0 keeps its own value.
fn second_vcpu(si: &StartInfo) {
    // Set again after the last xsetbv: on Xen 4.17 the x87 registers do not survive a PV
    // guest's xsetbv that enables AVX (ST0 reads 895 after it; the control word and MXCSR
    // do), so each vCPU sets its x87 state after its xsetbv calls.
    fpu::fninit();
    fpu::set_fcw(MY_FPU.0);
    fpu::x87_push(MY_FPU.1);
    check("YMM0's upper half set again", xs::set_ymm0_high(MINE));
    let ctx = match smp::build_context(si, 1, ap_main) {
        Ok(c) => c,
        Err(e) => {
            check_eq("building vCPU 1's context", Err::<(), _>(e), Ok(()));
            return;
        }
    };
    check_eq("VCPUOP_initialise(1)", smp::initialise(1, &ctx), Ok(0));
    check_eq("VCPUOP_up(1)", vcpu::up(1), Ok(0));
    check(
        "vCPU 1 did its first checks",
        sched::wait_for(|| STAGE.load(Ordering::SeqCst) >= 1),
    );
    let seen = |i: usize| SEEN[i].load(Ordering::SeqCst);
    check_eq("vCPU 1 starts with its own XCR0: 3", seen(0), 3);
    check_eq("vCPU 1's xsetbv(XCR0, 7)", seen(1), 0);
    check_eq(
        "vCPU 1's YMM0 upper half starts in the initial state (not vCPU 0's)",
        [seen(2), seen(3)],
        [0, 0],
    );
    check_eq(
        "vCPU 0's YMM0 upper half after vCPU 1 used AVX",
        xs::ymm0_high(),
        Some(MINE),
    );
    check_eq("vCPU 0's XCR0 still 7", xs::xgetbv(0), Ok(7));
    let seen_fpu = |i: usize| SEEN_FPU[i].load(Ordering::SeqCst);
    check_eq(
        "vCPU 1 starts with FNINIT's control word and the default MXCSR",
        (seen_fpu(0), seen_fpu(1)),
        (0x037F, 0x1F80),
    );
    check_eq(
        "vCPU 0's x87 control word, top of stack and MXCSR after vCPU 1 set its own",
        (fpu::fcw(), fpu::x87_top(), fpu::mxcsr()),
        MY_FPU,
    );
    GO.store(1, Ordering::SeqCst);
    check(
        "vCPU 1 did its last check",
        sched::wait_for(|| STAGE.load(Ordering::SeqCst) >= 2),
    );
    check_eq(
        "vCPU 1's YMM0 upper half kept while vCPU 0 ran",
        [seen(4), seen(5)],
        THEIRS,
    );
    check_eq(
        "vCPU 0's YMM0 upper half at the end",
        xs::ymm0_high(),
        Some(MINE),
    );
    check_eq(
        "vCPU 1's x87 control word, top of stack and MXCSR kept while vCPU 0 ran",
        (seen_fpu(2) as u16, seen_fpu(3) as i64, seen_fpu(4) as u32),
        THEIR_FPU,
    );
    check_eq(
        "vCPU 1's XMM15 across a hypercall",
        seen_fpu(5),
        0x0bad_cafe_f00d_0002,
    );
    check_eq(
        "vCPU 0's x87 control word, top of stack and MXCSR at the end",
        (fpu::fcw(), fpu::x87_top(), fpu::mxcsr()),
        MY_FPU,
    );
}

fn ap_main(vcpu: u32) -> ! {
    SEEN_FPU[0].store(u64::from(fpu::fcw()), Ordering::SeqCst);
    SEEN_FPU[1].store(u64::from(fpu::mxcsr()), Ordering::SeqCst);
    SEEN[0].store(xs::xgetbv(0).map_or(u64::MAX - 1, |v| v), Ordering::SeqCst);
    fsgsbase::write_cr4(cpu::read_cr4() | CR4_OSXSAVE);
    SEEN[1].store(u64::from(xs::xsetbv(0, 7).is_err()), Ordering::SeqCst);
    let first = xs::ymm0_high().unwrap_or([u64::MAX - 1; 2]);
    SEEN[2].store(first[0], Ordering::SeqCst);
    SEEN[3].store(first[1], Ordering::SeqCst);
    xs::set_ymm0_high(THEIRS);
    fpu::fninit();
    fpu::set_fcw(THEIR_FPU.0);
    fpu::x87_push(THEIR_FPU.1);
    fpu::set_mxcsr(THEIR_FPU.2);
    STAGE.store(1, Ordering::SeqCst);
    while GO.load(Ordering::SeqCst) == 0 {
        let _ = sched::yield_now();
    }
    let last = xs::ymm0_high().unwrap_or([u64::MAX - 1; 2]);
    SEEN[4].store(last[0], Ordering::SeqCst);
    SEEN[5].store(last[1], Ordering::SeqCst);
    SEEN_FPU[2].store(u64::from(fpu::fcw()), Ordering::SeqCst);
    SEEN_FPU[3].store(fpu::x87_top() as u64, Ordering::SeqCst);
    SEEN_FPU[4].store(u64::from(fpu::mxcsr()), Ordering::SeqCst);
    let xmm = fpu::xmm15_across_hypercall(0x0bad_cafe_f00d_0002);
    SEEN_FPU[5].store(xmm.unwrap_or(u64::MAX), Ordering::SeqCst);
    STAGE.store(2, Ordering::SeqCst);
    loop {
        let _ = vcpu::down(vcpu);
    }
}
