//! `traps`: the PV trap and CPU-state ABI as Xen 4.17 answers it — exception bounces (int3,
//! ud2, #PF with CR2, #NM after fpu_taskswitch), `int $0x80` through DPL-3 and DPL-0 gates,
//! guest user mode entered with iret and left with SYSCALL (stack_switch, user GS base),
//! privileged instructions from guest user mode (#GP(0) even where the kernel's are emulated),
//! callbacks, forced-emulation CPUID, emulated CR reads, cli/hlt with and without IOPL,
//! debug registers, vm_assist, physdev probes, set_trap_table and multicall errors.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::cpu::{self, CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_NMI};
use guest_rt::hypercall::{self, BadPtr};
use guest_rt::pvcpu::{self, xen_cpuid};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, traps, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// An address no PV guest maps (below the kernel image, page 0x10).
const UNMAPPED: u64 = 0x10_000;

fn main(si: &StartInfo) {
    println!("traps: DualVisor PV test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    exceptions(&shared);
    software_interrupts();
    emulation();
    fpu();
    callbacks();
    segment_bases();
    debug_registers();
    vm_assist();
    physdev();
    settime(&shared);
    trap_table_errors();
    multicall();
    user_mode();
    user_privileged();
}

fn exceptions(shared: &SharedInfo) {
    traps::expect(3, 0);
    traps::int3();
    check_eq("int3 bounced to the #BP handler", traps::taken(3), 1);
    let t = traps::last_trap();
    check_eq(
        "#BP frame CS has RPL 0 (kernel context)",
        t.cs & 0xffff,
        0xe030,
    );
    check_eq("#BP frame SS", t.ss, 0xe02b);

    traps::expect(6, 2);
    traps::ud2();
    check_eq("ud2 bounced to the #UD handler", traps::taken(6), 1);

    traps::expect(14, 3);
    pvcpu::touch(UNMAPPED);
    check_eq("read of an unmapped page -> #PF", traps::taken(14), 1);
    let t = traps::last_trap();
    check_eq("#PF error code: kernel read, not present", t.error_code, 0);
    check_eq(
        "vcpu_info.arch.cr2 holds the address",
        shared.cr2(0),
        Some(UNMAPPED),
    );
}

fn software_interrupts() {
    check_eq(
        "set_trap_table(int $0x80, DPL 3)",
        pvcpu::install_int80(3),
        Ok(0),
    );
    traps::expect(0x80, 0);
    pvcpu::int80();
    check_eq(
        "int $0x80 with a DPL-3 gate reaches its handler",
        traps::taken(0x80),
        1,
    );

    // Xen 4.17's int $0x80 fast path bounces to any registered handler: it does not check
    // the gate's DPL (a DPL-0 gate does not turn into #GP).
    check_eq(
        "set_trap_table(int $0x80, DPL 0)",
        pvcpu::install_int80(0),
        Ok(0),
    );
    traps::expect(0x80, 0);
    pvcpu::int80();
    check_eq(
        "int $0x80 with a DPL-0 gate also reaches its handler",
        traps::taken(0x80),
        2,
    );
    check_eq("  no #GP", traps::taken(13), 0);
    check_eq(
        "set_trap_table(int $0x80, DPL 3)",
        pvcpu::install_int80(3),
        Ok(0),
    );
}

fn emulation() {
    let base = xen_cpuid(0x4000_0000, 0);
    let mut sig = [0u8; 12];
    for (i, w) in base[1..].iter().enumerate() {
        sig[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    info(format_args!("cpuid 0x40000000 eax {:#x}", base[0]));
    check_eq("cpuid 0x40000000 signature", &sig, b"XenVMMXenVMM");
    check(
        "cpuid 0x40000000 max leaf >= 0x40000002",
        base[0] >= 0x4000_0002,
    );
    check_eq("cpuid 0x40000000 max leaf", base[0], 0x4000_0005);
    let ver = xen_cpuid(0x4000_0001, 0);
    check_eq("cpuid 0x40000001: version 4.17", ver[0], 0x0004_0011);
    let hc = xen_cpuid(0x4000_0002, 0);
    check_eq(
        "cpuid 0x40000002: 1 hypercall page, MSR 0x40000000",
        (hc[0], hc[1]),
        (1, 0x4000_0000),
    );
    let l1 = xen_cpuid(1, 0);
    check("cpuid 1 ecx: hypervisor bit", l1[2] & (1 << 31) != 0);
    // Machine address width: the highest RAM frame's bits plus 12 (the runner's 1 GiB
    // machine: 30), not the host's physical address width.
    let width = xen_cpuid(0x4000_0005, 0)[1];
    info(format_args!(
        "cpuid 0x40000005 ebx (machine address bits) {width}"
    ));
    check_eq("cpuid 0x40000005 ebx: 1 GiB of RAM -> 30 bits", width, 30);
    // Xen's PV policy: no superpages, no global pages (a PV page table may hold neither).
    check_eq("cpuid 1 edx: no PSE, PGE, PSE36", l1[3] & 0x2_2008, 0);
    let e1 = xen_cpuid(0x8000_0001, 0);
    check_eq("cpuid 0x80000001 edx: no PAGE1GB", e1[3] & (1 << 26), 0);
    check_eq("cpuid 6 (thermal/power) hidden", xen_cpuid(6, 0), [0; 4]);
    let max_extd = xen_cpuid(0x8000_0000, 0)[0];
    check_eq(
        "cpuid past the last extended leaf: zeros",
        xen_cpuid(max_extd.wrapping_add(1), 0),
        [0; 4],
    );
    let cr4 = cpu::read_cr4();
    check_eq("mov %cr4 emulated: 0x660", cr4, 0x660);
    let cr0 = pvcpu::read_cr0();
    info(format_args!("cr0 {:#x} cr3 {:#x}", cr0, pvcpu::read_cr3()));
    check_eq("mov %cr0: TS clear", cr0 & 8, 0);
    check_eq("mov %cr0 emulated", cr0, 0x8005_003b & !8);
    check(
        "mov %cr3: page aligned, non-zero",
        pvcpu::read_cr3() & 0xfff == 0 && pvcpu::read_cr3() != 0,
    );

    traps::expect(13, 1);
    pvcpu::cli();
    check_eq("cli with IOPL 0 -> #GP", traps::taken(13), 1);
    check_eq("  error code 0", traps::last_trap().error_code, 0);
    traps::expect(13, 1);
    pvcpu::hlt();
    check_eq("hlt -> #GP", traps::taken(13), 2);
    check_eq("physdev set_iopl(1)", pvcpu::set_iopl(1), Ok(0));
    pvcpu::cli();
    check(
        "cli with virtual IOPL 1 is emulated (no #GP)",
        traps::taken(13) == 2,
    );
    check_eq("physdev set_iopl(0)", pvcpu::set_iopl(0), Ok(0));
}

fn fpu() {
    // Nothing between fpu_taskswitch(1) and the #NM may use SSE: no formatting, no checks.
    let set = cpu::fpu_taskswitch(true);
    let cr0_ts = pvcpu::read_cr0();
    traps::expect(7, 0);
    pvcpu::sse_nop();
    let cr0_after = pvcpu::read_cr0();
    check_eq("fpu_taskswitch(1)", set, Ok(0));
    check_eq("mov %cr0: virtual TS set", cr0_ts & 8, 8);
    check_eq("SSE with virtual TS -> #NM", traps::taken(7), 1);
    check_eq("#NM bounce clears the virtual TS", cr0_after & 8, 0);
    check_eq("fpu_taskswitch(0)", cpu::fpu_taskswitch(false), Ok(0));
}

fn callbacks() {
    check_eq(
        "register event callback",
        pvcpu::register_unexpected_callback(CALLBACKTYPE_EVENT, 0),
        Ok(0),
    );
    check_eq(
        "register failsafe callback (mask events)",
        pvcpu::register_unexpected_callback(CALLBACKTYPE_FAILSAFE, cpu::CALLBACKF_MASK_EVENTS),
        Ok(0),
    );
    check_eq(
        "register NMI callback",
        pvcpu::register_unexpected_callback(CALLBACKTYPE_NMI, 0),
        Ok(0),
    );
    check_eq(
        "register syscall32 callback",
        pvcpu::register_unexpected_callback(cpu::CALLBACKTYPE_SYSCALL32, 0),
        Ok(0),
    );
    check_eq(
        "register sysenter callback",
        pvcpu::register_unexpected_callback(cpu::CALLBACKTYPE_SYSENTER, 0),
        Ok(0),
    );
    check_eq(
        "register callback type 3 (sysenter_deprecated) -> -ENOSYS",
        pvcpu::register_unexpected_callback(3, 0),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "register callback type 99 -> -ENOSYS",
        pvcpu::register_unexpected_callback(99, 0),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "register event callback at a non-canonical address -> -EINVAL",
        pvcpu::register_callback_noncanonical(CALLBACKTYPE_EVENT, 0x8000_0000_0000_0000),
        Err(Errno::EINVAL),
    );
    check_eq(
        "unregister event callback -> -EINVAL",
        cpu::unregister_callback(CALLBACKTYPE_EVENT),
        Err(Errno::EINVAL),
    );
    check_eq(
        "unregister NMI callback",
        cpu::unregister_callback(CALLBACKTYPE_NMI),
        Ok(0),
    );
    check_eq(
        "unregister callback type 99 -> -ENOSYS",
        cpu::unregister_callback(99),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "callback_op register with a NULL argument -> -EFAULT",
        hypercall::call_with_bad_ptr(hypercall::CALLBACK_OP, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
    check_eq(
        "callback_op sub-op 2 -> -ENOSYS",
        hypercall::call_with_bad_ptr(hypercall::CALLBACK_OP, 2, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "set_callbacks(event, failsafe, syscall)",
        pvcpu::set_unexpected_callbacks(),
        Ok(0),
    );
}

/// Targets for the FS/GS reads.
static FS_TARGET: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0x4653_3030);
static GS_TARGET: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0x4753_4b30);

fn segment_bases() {
    check_eq(
        "set_segment_base(SEGBASE_FS)",
        cpu::set_segment_base(cpu::SEGBASE_FS, FS_TARGET.as_ptr() as u64),
        Ok(0),
    );
    check_eq("read through %fs", pvcpu::read_fs0(), 0x4653_3030);
    check_eq(
        "set_segment_base(SEGBASE_GS_KERNEL)",
        cpu::set_segment_base(cpu::SEGBASE_GS_KERNEL, GS_TARGET.as_ptr() as u64),
        Ok(0),
    );
    check_eq("read through kernel %gs", pvcpu::read_gs0(), 0x4753_4b30);
    check_eq(
        "set_segment_base(SEGBASE_FS, non-canonical) -> -EINVAL",
        cpu::set_segment_base(cpu::SEGBASE_FS, 0x8000_0000_0000_0000),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_segment_base(4) -> -EINVAL",
        cpu::set_segment_base(4, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_segment_base(FS, 0)",
        cpu::set_segment_base(cpu::SEGBASE_FS, 0),
        Ok(0),
    );
}

fn debug_registers() {
    check_eq(
        "get_debugreg(7) initially",
        pvcpu::get_debugreg(7),
        Ok(0x400),
    );
    check_eq(
        "get_debugreg(6) initially",
        pvcpu::get_debugreg(6),
        Ok(0xffff_0ff0),
    );
    check_eq(
        "set_debugreg(0, 0x1000)",
        pvcpu::set_debugreg(0, 0x1000),
        Ok(0),
    );
    check_eq("get_debugreg(0)", pvcpu::get_debugreg(0), Ok(0x1000));
    check_eq(
        "set_debugreg(0, Xen's range) -> -EPERM",
        pvcpu::set_debugreg(0, hypercall::HYPERVISOR_VIRT_START),
        Err(Errno::EPERM),
    );
    check_eq(
        "set_debugreg(7, 1 << 32) -> -EINVAL",
        pvcpu::set_debugreg(7, 1 << 32),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_debugreg(7, GD) -> -EPERM",
        pvcpu::set_debugreg(7, 1 << 13),
        Err(Errno::EPERM),
    );
    check_eq("set_debugreg(6, 0)", pvcpu::set_debugreg(6, 0), Ok(0));
    check_eq(
        "get_debugreg(6) keeps the fixed ones",
        pvcpu::get_debugreg(6),
        Ok(0xffff_0ff0),
    );
    check_eq(
        "get_debugreg(4) aliases DR6",
        pvcpu::get_debugreg(4),
        Ok(0xffff_0ff0),
    );
    check_eq(
        "set_debugreg(8) -> -ENODEV",
        pvcpu::set_debugreg(8, 0),
        Err(Errno::ENODEV),
    );
    check_eq(
        "get_debugreg(8) -> -ENODEV",
        pvcpu::get_debugreg(8),
        Err(Errno::ENODEV),
    );
    check_eq("set_debugreg(0, 0)", pvcpu::set_debugreg(0, 0), Ok(0));
}

fn vm_assist() {
    check_eq(
        "vm_assist(enable, writable_pagetables)",
        cpu::vm_assist(cpu::VMASST_CMD_ENABLE, cpu::VMASST_TYPE_WRITABLE_PAGETABLES),
        Ok(0),
    );
    check_eq(
        "vm_assist(enable, 4gb_segments) is accepted on 64-bit",
        cpu::vm_assist(cpu::VMASST_CMD_ENABLE, cpu::VMASST_TYPE_4GB_SEGMENTS),
        Ok(0),
    );
    check_eq(
        "vm_assist(disable, 4gb_segments)",
        cpu::vm_assist(cpu::VMASST_CMD_DISABLE, cpu::VMASST_TYPE_4GB_SEGMENTS),
        Ok(0),
    );
    check_eq(
        "vm_assist(enable, 6) -> -EINVAL",
        cpu::vm_assist(cpu::VMASST_CMD_ENABLE, 6),
        Err(Errno::EINVAL),
    );
    check_eq(
        "vm_assist(enable, 64) -> -EINVAL",
        cpu::vm_assist(cpu::VMASST_CMD_ENABLE, 64),
        Err(Errno::EINVAL),
    );
    check_eq(
        "vm_assist(cmd 7, m2p_strict) -> -ENOSYS",
        cpu::vm_assist(7, cpu::VMASST_TYPE_M2P_STRICT),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "vm_assist(disable, writable_pagetables)",
        cpu::vm_assist(
            cpu::VMASST_CMD_DISABLE,
            cpu::VMASST_TYPE_WRITABLE_PAGETABLES,
        ),
        Ok(0),
    );
}

fn physdev() {
    check_eq(
        "set_iopl(4) -> -EINVAL",
        pvcpu::set_iopl(4),
        Err(Errno::EINVAL),
    );
    let q = pvcpu::irq_status_query(1);
    info(format_args!("irq_status_query(1) = {:?}", q));
    check_eq("irq_status_query(1): needs EOI", q, Ok(1));
    check_eq(
        "irq_status_query(1 << 20) -> -EINVAL",
        pvcpu::irq_status_query(1 << 20),
        Err(Errno::EINVAL),
    );
    check_eq(
        "physdev set_iopl with a NULL argument -> -EFAULT",
        pvcpu::physdev_raw(pvcpu::PHYSDEVOP_SET_IOPL, 0),
        Err(Errno::EFAULT),
    );
    check_eq(
        "physdev sub-op 0 -> -ENOSYS",
        pvcpu::physdev_raw(0, 0),
        Err(Errno::ENOSYS),
    );
    let id = pvcpu::apic_read(0xfec0_0000, 0);
    info(format_args!("apic_read(IOAPIC 0xfec00000, ID) = {:x?}", id));
    check_eq(
        "physdev apic_read(IOAPIC 0xfec00000, version): 24 pins, version 0x20",
        pvcpu::apic_read(0xfec0_0000, 1),
        Ok(0x0017_0020),
    );
    check_eq(
        "physdev apic_read of a base no I/O APIC has -> -EINVAL",
        pvcpu::apic_read(0xfec0_1000, 1),
        Err(Errno::EINVAL),
    );
    platform();
}

/// `XENPF_settime64`/`settime32`: dom0 sets the wall clock; shared_info shows it (as of
/// system time 0) under a new even `wc_version`.
fn settime(shared: &SharedInfo) {
    let settime64 = |secs: u64, mbz: u32, system_time: u64| {
        let mut op = [0u8; 136];
        op[0..4].copy_from_slice(&62u32.to_le_bytes());
        op[4..8].copy_from_slice(&0x0300_0001u32.to_le_bytes());
        op[8..16].copy_from_slice(&secs.to_le_bytes());
        op[16..20].copy_from_slice(&250u32.to_le_bytes());
        op[20..24].copy_from_slice(&mbz.to_le_bytes());
        op[24..32].copy_from_slice(&system_time.to_le_bytes());
        pvcpu::platform_op(&mut op)
    };
    let (v0, sec0, _) = shared.wallclock();
    info(format_args!("wall clock before: version {v0} {sec0} s"));
    check_eq(
        "platform_op settime64 with mbz set -> -EINVAL",
        settime64(1_900_000_000, 1, 0),
        Err(Errno::EINVAL),
    );
    check_eq("  wall clock unchanged", shared.wallclock().1, sec0);
    // 1.9e9 s at system time 3 s: 1.9e9 - 3 s at system time 0.
    check_eq(
        "platform_op settime64",
        settime64(1_900_000_000, 0, 3_000_000_000),
        Ok(0),
    );
    let (v1, sec1, nsec1) = shared.wallclock();
    check_eq(
        "  shared_info wall clock: the time at system time 0",
        (sec1, nsec1),
        (1_899_999_997, 250),
    );
    check("  wc_version moved on, even", v1 != v0 && v1 % 2 == 0);
    let mut op = [0u8; 136];
    op[0..4].copy_from_slice(&17u32.to_le_bytes());
    op[4..8].copy_from_slice(&0x0300_0001u32.to_le_bytes());
    op[8..12].copy_from_slice(&(sec0 as u32).to_le_bytes());
    check_eq(
        "platform_op settime32 (back)",
        pvcpu::platform_op(&mut op),
        Ok(0),
    );
    check_eq(
        "  wall clock back",
        shared.wallclock().1,
        sec0 & 0xffff_ffff,
    );
}

/// `platform_op` as a dom0 kernel uses it at boot (firmware queries) and `xenpmu_op`.
fn platform() {
    let firmware_info = |ty: u32, index: u32| {
        let mut op = [0u8; 136];
        op[0..4].copy_from_slice(&50u32.to_le_bytes());
        op[4..8].copy_from_slice(&0x0300_0001u32.to_le_bytes());
        op[8..12].copy_from_slice(&ty.to_le_bytes());
        op[12..16].copy_from_slice(&index.to_le_bytes());
        op[16] = 0xee;
        let r = pvcpu::platform_op(&mut op);
        (r, op[16])
    };
    check_eq(
        "platform_op firmware_info DISK_INFO 0 (no EDD) -> -ESRCH",
        firmware_info(1, 0).0,
        Err(Errno::ESRCH),
    );
    check_eq(
        "platform_op firmware_info DISK_MBR_SIGNATURE 0 -> -ESRCH",
        firmware_info(2, 0).0,
        Err(Errno::ESRCH),
    );
    check_eq(
        "platform_op firmware_info EFI_INFO (not booted by EFI) -> -ENOSYS",
        firmware_info(4, 1).0,
        Err(Errno::ENOSYS),
    );
    let (r, flags) = firmware_info(5, 0);
    info(format_args!("kbd shift flags {:?} {:#x}", r, flags));
    check_eq("platform_op firmware_info KBD_SHIFT_FLAGS", r, Ok(0));
    check("  the flags byte is written", flags != 0xee);
    check_eq(
        "platform_op firmware_info KBD_SHIFT_FLAGS index 1 -> -ESRCH",
        firmware_info(5, 1).0,
        Err(Errno::ESRCH),
    );
    check_eq(
        "platform_op firmware_info type 99 -> -EINVAL",
        firmware_info(99, 0).0,
        Err(Errno::EINVAL),
    );
    // (result, max_present, flags, apic_id, acpi_id)
    let cpuinfo = |cpu: u32| match pvcpu::pcpu_info(cpu) {
        Ok(i) => (Ok(0), i.max_present, i.flags, i.apic_id, i.acpi_id),
        Err(e) => (Err(e), 0, 0, 0, 0),
    };
    let boot = cpuinfo(0);
    info(format_args!("get_cpuinfo(0) {:?}", boot));
    check_eq(
        "platform_op get_cpuinfo(0): online, APIC id 0, ACPI id 0",
        (boot.0, boot.2, boot.3, boot.4),
        (Ok(0), 1, 0, 0),
    );
    check("  max_present: at least 1 (2 CPUs or more)", boot.1 >= 1);
    let past = cpuinfo(boot.1 + 1);
    check_eq(
        "platform_op get_cpuinfo(max_present + 1): invalid",
        (past.0, past.1, past.2),
        (Ok(0), boot.1, 2),
    );
    check_eq(
        "platform_op get_cpuinfo(1): online",
        (cpuinfo(1).0, cpuinfo(1).2),
        (Ok(0), 1),
    );
    let mut op = [0u8; 136];
    op[0..4].copy_from_slice(&50u32.to_le_bytes());
    op[4..8].copy_from_slice(&0x0300_0000u32.to_le_bytes());
    check_eq(
        "platform_op with another interface version -> -EACCES",
        pvcpu::platform_op(&mut op),
        Err(Errno::EACCES),
    );
    op[0..4].copy_from_slice(&1000u32.to_le_bytes());
    op[4..8].copy_from_slice(&0x0300_0001u32.to_le_bytes());
    check_eq(
        "platform_op command 1000 -> -ENOSYS",
        pvcpu::platform_op(&mut op),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "platform_op with a NULL argument -> -EFAULT",
        hypercall::call_with_bad_ptr(hypercall::PLATFORM_OP, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
    for cmd in [0u64, 4, 5] {
        check_eq(
            "xenpmu_op (no vpmu=) -> -EOPNOTSUPP",
            hypercall::call_with_bad_ptr(hypercall::XENPMU_OP, cmd, BadPtr::NULL),
            Err(Errno::EOPNOTSUPP),
        );
    }
}

fn trap_table_errors() {
    check_eq(
        "set_trap_table with an entry at a non-canonical address -> -EINVAL",
        pvcpu::set_trap_table_noncanonical(0x81, 0x8000_0000_0000_1000),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_trap_table with Xen's range as the table -> -EFAULT",
        hypercall::call_with_bad_ptr(
            hypercall::SET_TRAP_TABLE,
            hypercall::HYPERVISOR_VIRT_START,
            BadPtr::NULL,
        ),
        Err(Errno::EFAULT),
    );
}

fn multicall() {
    let (r, e) = pvcpu::multicall_mixed();
    check_eq("multicall returns 0", r, Ok(0));
    check_eq("  [0] xen_version", e[0].result, 0x4_0011);
    check_eq("  [1] fpu_taskswitch(0)", e[1].result, 0);
    check_eq("  [2] nested multicall -> -EINVAL", e[2].result as i64, -22);
    check_eq("  [3] hypercall 99 -> -ENOSYS", e[3].result as i64, -38);
    check_eq(
        "  [4] vm_assist(enable, 64) -> -EINVAL",
        e[4].result as i64,
        -22,
    );
    check_eq(
        "multicall with Xen's range as the list and count 0 -> -EFAULT",
        hypercall::call_with_bad_ptr(
            hypercall::MULTICALL,
            hypercall::HYPERVISOR_VIRT_START,
            BadPtr::NULL,
        ),
        Err(Errno::EFAULT),
    );
}

fn user_mode() {
    let before = traps::taken(3);
    let r = pvcpu::user_roundtrip();
    info(format_args!("user mode: {:?}", r));
    check_eq("NEW_USER_BASEPTR = kernel L4", r.user_baseptr, Some(Ok(1)));
    check_eq("stack_switch", r.stack_switch, Some(Ok(0)));
    check_eq("register syscall callback", r.syscall_callback, Some(Ok(0)));
    check_eq("set_segment_base(SEGBASE_GS_USER)", r.gs_user, Some(Ok(0)));
    check_eq(
        "user code read its GS base and returned through SYSCALL",
        r.user_rax,
        Some(pvcpu::user_gs_value()),
    );
    check_eq("int3 from user mode bounced", traps::taken(3), before + 1);
    let t = traps::last_trap();
    check_eq("user #BP frame CS has RPL 3", t.cs & 0xffff, 0xe033);
    check_eq("user #BP frame SS", t.ss & 0xffff, 0xe02b);
    let top = pvcpu::kernel_stack_top();
    check(
        "user #BP handled on the stack_switch stack",
        t.frame < top && t.frame > top - 4096,
    );
    check(
        "user #BP frame RSP is the user stack",
        t.rsp <= pvcpu::user_stack_top() && t.rsp > pvcpu::user_stack_top() - 4096,
    );
    let f = pvcpu::last_syscall_frame();
    info(format_args!("syscall frame {:x?}", f));
    check_eq("syscall frame at kernel_sp - 7 words", f.at, top - 7 * 8);
    check_eq("syscall frame CS (user, RPL 3)", f.cs & 0xffff, 0xe033);
    check_eq(
        "syscall frame saved upcall mask (events were masked)",
        f.cs >> 32,
        1,
    );
    check_eq("syscall frame RCX = user RIP", f.rcx, f.rip);
    check_eq("syscall frame SS", f.ss, 0xe02b);
    check(
        "syscall frame RSP on the user stack",
        f.rsp == pvcpu::user_stack_top(),
    );
}

/// The privileged instructions Xen emulates for the guest kernel (CR/DR moves, clts, wbinvd,
/// rdmsr) raise #GP(0) in guest user mode, as do hlt and, with the virtual IOPL below 3,
/// cli and in; with IOPL 3 user cli is emulated.
fn user_privileged() {
    check_eq("physdev set_iopl(1)", pvcpu::set_iopl(1), Ok(0));
    for (i, &(name, len)) in pvcpu::USER_INSNS.iter().enumerate() {
        let before = traps::taken(13);
        traps::expect(13, len);
        let r = pvcpu::user_instruction(i);
        traps::unexpect(13);
        check(name, r.is_some());
        let t = traps::last_trap();
        check_eq(
            "  from guest user mode (IOPL 1): #GP",
            traps::taken(13),
            before + 1,
        );
        check_eq(
            "  #GP error code, RIP, CS (RPL 3)",
            (t.error_code, t.rip, t.cs & 0xffff),
            (0, pvcpu::user_instruction_address(i), 0xe033),
        );
    }
    check_eq("physdev set_iopl(3)", pvcpu::set_iopl(3), Ok(0));
    let cli = pvcpu::USER_INSNS
        .iter()
        .position(|&(n, _)| n == "cli")
        .unwrap_or(0);
    let before = traps::taken(13);
    let r = pvcpu::user_instruction(cli);
    check_eq(
        "cli from guest user mode with IOPL 3 is emulated (no #GP)",
        (r.is_some(), traps::taken(13)),
        (true, before),
    );
    check_eq("physdev set_iopl(0)", pvcpu::set_iopl(0), Ok(0));
}
