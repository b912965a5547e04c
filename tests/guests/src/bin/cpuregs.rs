//! `cpuregs`: a PV kernel's debug registers and MSRs. Breakpoints set with set_debugreg fire
//! (#DB bounced with DR6 readable through get_debugreg), a watchpoint on a buffer the
//! hypervisor writes for a hypercall is ignored, DR7/DR0-3 validation; rdmsr/wrmsr from the
//! ring-3 kernel emulated for the MSRs Xen emulates and #GP for the others; `rdtscp` reports
//! the TSC_AUX the kernel wrote; with CR4.TSD the kernel's time-stamp reads are emulated and
//! guest user mode's raise #GP. Segment bases the kernel changes without a hypercall (loading
//! a selector into FS or GS, `wrfsbase`/`wrgsbase` with CR4.FSGSBASE) are what `rdmsr` reports
//! after later exits.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::cpu;
use guest_rt::msr;
use guest_rt::pvcpu;
use guest_rt::pvcpu::{user_time_instruction, user_time_instruction_address, USER_TIME_INSNS};
use guest_rt::sched;
use guest_rt::segs;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::traps;
use guest_rt::version;
use guest_rt::{println, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

static WATCHED: AtomicU64 = AtomicU64::new(0);

fn main(_si: &StartInfo) {
    println!("cpuregs: debug registers and MSRs test guest");
    breakpoints();
    msrs();
    live_bases();
    fsgsbase();
    time_stamp_disable();
}

/// CR4.FSGSBASE: kept in the virtual CR4 when the CPUID has FSGSBASE (Xen 4.17 here reads
/// back 0x5066c when asked for every bit); with it the kernel's `wr{fs,gs}base` run natively
/// and the bases they set are what `rdmsr` reports and what survives exits; without it the
/// instructions raise #UD.
fn fsgsbase() {
    use guest_rt::fsgsbase::{self as fsgs, CR4_FSGSBASE};
    check_eq(
        "rdfsbase without CR4.FSGSBASE -> #UD",
        fsgs::rdfsbase(),
        None,
    );
    check_eq(
        "wrgsbase without CR4.FSGSBASE -> #UD",
        fsgs::wrgsbase(0x5000),
        false,
    );
    if !fsgs::supported() {
        info(format_args!(
            "no FSGSBASE in CPUID: the instructions not checked"
        ));
        check_eq(
            "CR4.FSGSBASE refused",
            fsgs::set_cr4_fsgsbase(true) & CR4_FSGSBASE,
            0,
        );
        return;
    }
    let before = guest_rt::cpu::read_cr4();
    check_eq(
        "CR4 asked for every bit: Xen's 0x5066c",
        fsgs::write_cr4(u64::from(u32::MAX)),
        0x5066c,
    );
    check_eq("CR4 restored", fsgs::write_cr4(before), before);
    let cr4 = fsgs::set_cr4_fsgsbase(true);
    check_eq("CR4.FSGSBASE kept", cr4 & CR4_FSGSBASE, CR4_FSGSBASE);
    check("wrfsbase 0x7f00_1000", fsgs::wrfsbase(0x7f00_1000));
    check("wrgsbase 0x7f00_3000", fsgs::wrgsbase(0x7f00_3000));
    check_eq("rdfsbase", fsgs::rdfsbase(), Some(0x7f00_1000));
    check_eq("rdmsr FS_BASE", msr::rdmsr(0xc000_0100), Ok(0x7f00_1000));
    check_eq("rdmsr GS_BASE", msr::rdmsr(0xc000_0101), Ok(0x7f00_3000));
    check_eq("sched_op yield", sched::yield_now(), Ok(0));
    check_eq("rdfsbase after it", fsgs::rdfsbase(), Some(0x7f00_1000));
    check_eq("rdgsbase after it", fsgs::rdgsbase(), Some(0x7f00_3000));
    check_eq(
        "set_segment_base(FS) 0x2000",
        cpu::set_segment_base(cpu::SEGBASE_FS, 0x2000),
        Ok(0),
    );
    check_eq("rdfsbase sees it", fsgs::rdfsbase(), Some(0x2000));
    check("wrfsbase 0", fsgs::wrfsbase(0));
    check("wrgsbase 0", fsgs::wrgsbase(0));
    let cr4 = fsgs::set_cr4_fsgsbase(false);
    check_eq("CR4.FSGSBASE cleared", cr4 & CR4_FSGSBASE, 0);
    check_eq("rdfsbase -> #UD again", fsgs::rdfsbase(), None);
}

/// The bases a selector load into FS/GS gives the hardware (the flat selector's base, 0) are
/// the vCPU's from then on: exits (a hypercall, the `rdmsr` itself) do not bring back the bases
/// set earlier with set_segment_base, as Xen keeps what the hardware holds.
fn live_bases() {
    let saved = segs::read_selectors();
    check_eq(
        "set_segment_base(FS) 0x1000",
        cpu::set_segment_base(cpu::SEGBASE_FS, 0x1000),
        Ok(0),
    );
    check_eq(
        "set_segment_base(GS_KERNEL) 0x3000",
        cpu::set_segment_base(cpu::SEGBASE_GS_KERNEL, 0x3000),
        Ok(0),
    );
    check_eq("rdmsr FS_BASE: 0x1000", msr::rdmsr(0xc000_0100), Ok(0x1000));
    let [ds, es, _, _] = saved;
    check(
        "load the flat data selector into FS and GS",
        segs::load_selectors([ds, es, cpu::FLAT_RING3_SS64, cpu::FLAT_RING3_SS64]).is_some(),
    );
    check("xen_version after it", version::version().is_ok());
    check_eq(
        "rdmsr FS_BASE: the selector's base",
        msr::rdmsr(0xc000_0100),
        Ok(0),
    );
    check_eq(
        "rdmsr GS_BASE: the selector's base",
        msr::rdmsr(0xc000_0101),
        Ok(0),
    );
    check_eq("sched_op yield", sched::yield_now(), Ok(0));
    check_eq("FS_BASE still 0 after it", msr::rdmsr(0xc000_0100), Ok(0));
    check(
        "restore the selectors",
        segs::load_selectors(saved).is_some(),
    );
    check_eq(
        "restore FS_BASE",
        cpu::set_segment_base(cpu::SEGBASE_FS, 0),
        Ok(0),
    );
    check_eq(
        "restore GS_BASE",
        cpu::set_segment_base(cpu::SEGBASE_GS_KERNEL, 0),
        Ok(0),
    );
}

/// DR7: L0, write-only, 8 bytes.
const DR7_L0_W8: u64 = 1 | (1 << 16) | (3 << 18);

fn breakpoints() {
    let addr = WATCHED.as_ptr() as u64;
    check_eq(
        "set_debugreg(0, &WATCHED)",
        pvcpu::set_debugreg(0, addr),
        Ok(0),
    );
    check_eq(
        "set_debugreg(7, L0 write 8 bytes)",
        pvcpu::set_debugreg(7, DR7_L0_W8),
        Ok(0),
    );
    check_eq(
        "get_debugreg(7) with the fixed bit 10",
        pvcpu::get_debugreg(7),
        Ok((DR7_L0_W8 | 0x400) as i64),
    );
    let before = traps::taken(1);
    traps::expect(1, 0);
    WATCHED.store(7, Ordering::SeqCst);
    check_eq(
        "a write to the watched word raises #DB",
        traps::taken(1),
        before + 1,
    );
    check_eq("#DB vector", traps::last_trap().vector, 1);
    check_eq(
        "get_debugreg(6) shows B0",
        pvcpu::get_debugreg(6).map(|v| v & 0xf),
        Ok(1),
    );
    check_eq(
        "reading it does not trap",
        WATCHED.load(Ordering::SeqCst),
        7,
    );
    check_eq("no further #DB", traps::taken(1), before + 1);
    traps::unexpect(1);
    check_eq("clear DR6", pvcpu::set_debugreg(6, 0), Ok(0));
    let mut buf = [0u8; 16];
    check_eq(
        "watch a buffer the hypervisor fills",
        pvcpu::set_debugreg(0, buf.as_ptr() as u64),
        Ok(0),
    );
    let r = guest_rt::version::into_buffer(guest_rt::version::XENVER_EXTRAVERSION, &mut buf);
    check("xen_version(extraversion) into it", r.is_ok());
    check_eq(
        "the hypervisor's write raised no #DB",
        traps::taken(1),
        before + 1,
    );
    check_eq(
        "... and left DR6 clear",
        pvcpu::get_debugreg(6).map(|v| v & 0xf),
        Ok(0),
    );
    check_eq(
        "set_debugreg(1, non-canonical) -> -EPERM",
        pvcpu::set_debugreg(1, 0x8000_0000_0000_0000),
        Err(Errno::EPERM),
    );
    check_eq(
        "DR7 I/O breakpoint without CR4.DE -> -EPERM",
        pvcpu::set_debugreg(7, 1 | (2 << 16)),
        Err(Errno::EPERM),
    );
    check_eq(
        "DR7 reserved bits 11/12/14/15 are dropped",
        pvcpu::set_debugreg(7, DR7_L0_W8 | (1 << 11) | (1 << 12) | (1 << 14) | (1 << 15))
            .and_then(|_| pvcpu::get_debugreg(7)),
        Ok((DR7_L0_W8 | 0x400) as i64),
    );
    check_eq("disable the breakpoint", pvcpu::set_debugreg(7, 0), Ok(0));
    check_eq(
        "DR7 reads back its default",
        pvcpu::get_debugreg(7),
        Ok(0x400),
    );
    WATCHED.store(8, Ordering::SeqCst);
    check_eq("no #DB once disabled", traps::taken(1), before + 1);
    check_eq("set_debugreg(0, 0)", pvcpu::set_debugreg(0, 0), Ok(0));
}

/// #GP with error code 0, as `msr::rdmsr`/`wrmsr` report it.
const GP0: u64 = 0;

fn msrs() {
    let tsc = msr::rdmsr(0x10);
    check("rdmsr TSC", tsc.is_ok_and(|t| t != 0));
    check_eq(
        "rdmsr APIC_BASE (enabled, BSP on vCPU 0)",
        msr::rdmsr(0x1b),
        Ok(0xfee0_0900),
    );
    check_eq(
        "rdmsr PAT: Xen's",
        msr::rdmsr(0x277),
        Ok(0x0000_0501_0007_0406),
    );
    check_eq(
        "rdmsr EFER: SCE LME LMA NXE",
        msr::rdmsr(0xc000_0080),
        Ok(0xd01),
    );
    let misc = msr::rdmsr(0x1a0);
    info(format_args!(
        "MISC_ENABLE {:x?}, ucode {:x?}",
        misc,
        msr::rdmsr(0x8b)
    ));
    check(
        "rdmsr MISC_ENABLE: BTS/PEBS/xTPR off, no perfmon or MONITOR",
        misc.is_ok_and(|m| m & 0x80_1800 == 0x80_1800 && m & 0x4_0080 == 0),
    );
    check("rdmsr UCODE_REV (the host's)", msr::rdmsr(0x8b).is_ok());
    // The virtual machine-check MSRs (Linux reads them at boot and panics on a #GP).
    check_eq("rdmsr MCG_CAP: 2 banks", msr::rdmsr(0x179), Ok(2));
    check_eq("rdmsr MCG_STATUS", msr::rdmsr(0x17a), Ok(0));
    check_eq("rdmsr MCG_CTL (no MCG_CTL_P)", msr::rdmsr(0x17b), Ok(0));
    check_eq("rdmsr MC0_CTL: all ones", msr::rdmsr(0x400), Ok(u64::MAX));
    check_eq("rdmsr MC1_STATUS", msr::rdmsr(0x405), Ok(0));
    check_eq("rdmsr MC2_CTL (past the banks)", msr::rdmsr(0x408), Ok(0));
    check_eq("rdmsr MCG_EXT_CTL -> #GP", msr::rdmsr(0x4d0), Err(GP0));
    check_eq("wrmsr MCG_STATUS 0", msr::wrmsr(0x17a, 0), Ok(()));
    check_eq("wrmsr MC0_CTL (ignored)", msr::wrmsr(0x400, 0), Ok(()));
    check_eq("  MC0_CTL still all ones", msr::rdmsr(0x400), Ok(u64::MAX));
    check_eq("wrmsr MC0_STATUS 0", msr::wrmsr(0x401, 0), Ok(()));
    check_eq("rdmsr TSC_AUX", msr::rdmsr(0xc000_0103), Ok(0));
    check_eq(
        "rdmsr AMD64_DE_CFG (LFENCE serialising)",
        msr::rdmsr(0xc001_1029),
        Ok(2),
    );
    for (m, name) in [
        (0x17u32, "rdmsr PLATFORM_ID (Intel's) -> #GP"),
        (0x48, "rdmsr SPEC_CTRL (no IBRS on this CPU) -> #GP"),
        (0xfe, "rdmsr MTRRcap -> #GP"),
        (0x174, "rdmsr SYSENTER_CS -> #GP"),
        (0xc000_0081, "rdmsr STAR -> #GP"),
        (0xc000_0082, "rdmsr LSTAR -> #GP"),
        (0x1234_5678, "rdmsr of an MSR that does not exist -> #GP"),
    ] {
        check_eq(name, msr::rdmsr(m), Err(GP0));
    }
    check_eq("wrmsr FS_BASE", msr::wrmsr(0xc000_0100, 0x1000), Ok(()));
    check_eq("rdmsr FS_BASE", msr::rdmsr(0xc000_0100), Ok(0x1000));
    check_eq(
        "wrmsr FS_BASE non-canonical -> #GP",
        msr::wrmsr(0xc000_0100, 0x8000_0000_0000_0000),
        Err(GP0),
    );
    check_eq("FS_BASE kept", msr::rdmsr(0xc000_0100), Ok(0x1000));
    check_eq(
        "wrmsr GS_BASE (the kernel's)",
        msr::wrmsr(0xc000_0101, 0x3000),
        Ok(()),
    );
    check_eq("rdmsr GS_BASE", msr::rdmsr(0xc000_0101), Ok(0x3000));
    check_eq(
        "wrmsr SHADOW_GS_BASE",
        msr::wrmsr(0xc000_0102, 0x2000),
        Ok(()),
    );
    check_eq("rdmsr SHADOW_GS_BASE", msr::rdmsr(0xc000_0102), Ok(0x2000));
    check_eq(
        "GS_BASE unchanged by it",
        msr::rdmsr(0xc000_0101),
        Ok(0x3000),
    );
    check_eq(
        "wrmsr EFER with its value",
        msr::wrmsr(0xc000_0080, 0xd01),
        Ok(()),
    );
    check_eq(
        "wrmsr EFER without NXE -> #GP",
        msr::wrmsr(0xc000_0080, 0x501),
        Err(GP0),
    );
    let rdtscp = pvcpu::xen_cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0;
    if rdtscp {
        check_eq("rdtscp: TSC_AUX 0 at start", cpu::rdtscp().1, 0);
    }
    check_eq("wrmsr TSC_AUX", msr::wrmsr(0xc000_0103, 5), Ok(()));
    check_eq("rdmsr TSC_AUX", msr::rdmsr(0xc000_0103), Ok(5));
    if rdtscp {
        check_eq("rdtscp reports the written TSC_AUX", cpu::rdtscp().1, 5);
        check_eq("sched_op yield", sched::yield_now(), Ok(0));
        check_eq("  and still does after it", cpu::rdtscp().1, 5);
    } else {
        info(format_args!("no RDTSCP in CPUID: rdtscp not checked"));
    }
    check_eq(
        "wrmsr TSC_AUX above 32 bits -> #GP",
        msr::wrmsr(0xc000_0103, 1 << 32),
        Err(GP0),
    );
    if let Ok(m) = misc {
        check_eq(
            "wrmsr MISC_ENABLE, same value",
            msr::wrmsr(0x1a0, m),
            Ok(()),
        );
        check_eq(
            "wrmsr MISC_ENABLE, another value: ignored",
            msr::wrmsr(0x1a0, m ^ 1),
            Ok(()),
        );
        check_eq("MISC_ENABLE unchanged", msr::rdmsr(0x1a0), Ok(m));
    }
    check_eq("wrmsr STAR -> #GP", msr::wrmsr(0xc000_0081, 0), Err(GP0));
    check_eq(
        "wrmsr PAT -> #GP",
        msr::wrmsr(0x277, 0x0007_0406_0007_0406),
        Err(GP0),
    );
    check_eq(
        "wrmsr of an MSR that does not exist -> #GP",
        msr::wrmsr(0x1234_5678, 0),
        Err(GP0),
    );
    check_eq("restore TSC_AUX", msr::wrmsr(0xc000_0103, 0), Ok(()));
    if rdtscp {
        check_eq("rdtscp: TSC_AUX 0 again", cpu::rdtscp().1, 0);
    }
    check_eq("restore FS_BASE", msr::wrmsr(0xc000_0100, 0), Ok(()));
    check_eq("restore GS_BASE", msr::wrmsr(0xc000_0101, 0), Ok(()));
    check_eq("restore SHADOW_GS_BASE", msr::wrmsr(0xc000_0102, 0), Ok(()));
}

/// CR4.TSD set by the kernel in its virtual CR4: the kernel's own `rdtsc`/`rdtscp` keep
/// working (emulated), guest user mode's raise #GP(0); cleared, user mode reads the TSC again.
fn time_stamp_disable() {
    let u = pvcpu::user_roundtrip();
    if !check("guest user mode set up", u.user_rax.is_some()) {
        return;
    }
    let rdtscp = pvcpu::xen_cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0;
    let slots = if rdtscp { 2 } else { 1 };
    let before = traps::taken(13);
    check_eq(
        "user rdtsc without CR4.TSD: no #GP",
        (user_time_instruction(0).is_some(), traps::taken(13)),
        (true, before),
    );
    cpu::set_cr4_tsd(true);
    check_eq("mov to %cr4 sets TSD: 0x664", cpu::read_cr4(), 0x664);
    let (t0, t1) = (cpu::rdtsc(), cpu::rdtsc());
    check("kernel rdtsc with TSD is emulated", t1 > t0 && t0 != 0);
    if rdtscp {
        check_eq("wrmsr TSC_AUX 9", msr::wrmsr(0xc000_0103, 9), Ok(()));
        check_eq("kernel rdtscp with TSD: TSC_AUX in ECX", cpu::rdtscp().1, 9);
    }
    for (i, &(name, len)) in USER_TIME_INSNS.iter().enumerate().take(slots) {
        let before = traps::taken(13);
        traps::expect(13, len);
        let r = user_time_instruction(i);
        traps::unexpect(13);
        let t = traps::last_trap();
        check_eq(name, r.is_some(), true);
        check_eq(
            "  from guest user mode with TSD: #GP(0) at it (CS RPL 3)",
            (traps::taken(13), t.error_code, t.rip, t.cs & 0xffff),
            (before + 1, 0, user_time_instruction_address(i), 0xe033),
        );
    }
    cpu::set_cr4_tsd(false);
    check_eq("mov to %cr4 clears TSD: 0x660", cpu::read_cr4(), 0x660);
    let before = traps::taken(13);
    check_eq(
        "user rdtsc after: no #GP",
        (user_time_instruction(0).is_some(), traps::taken(13)),
        (true, before),
    );
    if rdtscp {
        check_eq("restore TSC_AUX", msr::wrmsr(0xc000_0103, 0), Ok(()));
    }
}
