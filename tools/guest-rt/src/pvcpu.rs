//! PV CPU-state probes for the `traps` test guest: guest user mode entered through
//! `HYPERVISOR_iret` and left through the SYSCALL callback, forced-emulation CPUID, privileged
//! register reads Xen emulates, segment-base reads, and single instructions that trap.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::errno::XenResult;
use crate::hypercall::{self, GET_DEBUGREG, IRET, PHYSDEV_OP, SET_CALLBACKS, SET_DEBUGREG};

/// The kernel RSP saved by [`enter_user`], restored by the SYSCALL callback.
static SAVED_RSP: AtomicU64 = AtomicU64::new(0);
/// The frame Xen bounced to the SYSCALL callback: RCX, R11, RIP, CS, RFLAGS, RSP, SS.
static SYSCALL_FRAME: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
/// RSP at entry to the SYSCALL callback (the address of the bounced frame).
static SYSCALL_RSP: AtomicU64 = AtomicU64::new(0);
/// Set once [`user_roundtrip`] has entered user mode and come back (everything
/// [`user_instruction`] needs is in place).
static USER_READY: AtomicBool = AtomicBool::new(false);

/// `PHYSDEVOP_set_iopl`.
pub const PHYSDEVOP_SET_IOPL: u64 = 6;
/// `PHYSDEVOP_set_iobitmap`.
pub const PHYSDEVOP_SET_IOBITMAP: u64 = 7;
/// `PHYSDEVOP_irq_status_query`.
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u64 = 5;

/// The frame Xen pushed for the last guest-user SYSCALL, and where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallFrame {
    /// Saved RCX (the user RIP after `syscall`).
    pub rcx: u64,
    /// Saved R11 (the user RFLAGS).
    pub r11: u64,
    /// RIP.
    pub rip: u64,
    /// CS (with the saved upcall mask in bits 32+).
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// User RSP.
    pub rsp: u64,
    /// User SS.
    pub ss: u64,
    /// Address of the frame on the kernel stack.
    pub at: u64,
}

/// The frame of the last SYSCALL from user mode.
pub fn last_syscall_frame() -> SyscallFrame {
    let w = |i: usize| SYSCALL_FRAME[i].load(Ordering::SeqCst);
    SyscallFrame {
        rcx: w(0),
        r11: w(1),
        rip: w(2),
        cs: w(3),
        rflags: w(4),
        rsp: w(5),
        ss: w(6),
        at: SYSCALL_RSP.load(Ordering::SeqCst),
    }
}

extern "C" fn unexpected_callback() -> ! {
    crate::test::error(format_args!(
        "an event/failsafe/NMI callback ran unexpectedly"
    ))
}

extern "C" {
    fn guest_rt_unexpected_callback();
    fn guest_rt_pv_kstack_top();
    fn guest_rt_pv_ustack_top();
    fn guest_rt_enter_user(rip: u64, rsp: u64, rflags: u64, iret_stub: u64) -> u64;
    fn guest_rt_syscall_callback();
    fn guest_rt_user_code();
    fn guest_rt_user_insns();
}

/// The privileged instructions [`user_instruction`] runs in guest user mode, in slot order,
/// with their lengths in bytes.
pub const USER_INSNS: [(&str, u8); 11] = [
    ("mov %cr0, %rax", 3),
    ("mov %cr3, %rax", 3),
    ("mov %cr4, %rax", 3),
    ("mov %rax, %cr2", 3),
    ("mov %dr7, %rax", 3),
    ("clts", 2),
    ("wbinvd", 2),
    ("rdmsr", 2),
    ("hlt", 1),
    ("cli", 1),
    ("in $0x80, %al", 2),
];

// One 16-byte slot per entry of `USER_INSNS`: the instruction, then SYSCALL back to the
// kernel (`ud2` if SYSCALL ever returned); the SYSCALL reports whatever RAX then holds.
core::arch::global_asm!(
    ".pushsection .text.guest_rt_pvcpu_insns,\"ax\",@progbits",
    ".balign 16",
    ".globl guest_rt_user_insns",
    "guest_rt_user_insns:",
    "mov %cr0, %rax",
    "syscall",
    "ud2",
    ".balign 16",
    "mov %cr3, %rax",
    "syscall",
    "ud2",
    ".balign 16",
    "mov %cr4, %rax",
    "syscall",
    "ud2",
    ".balign 16",
    "mov %rax, %cr2",
    "syscall",
    "ud2",
    ".balign 16",
    "mov %dr7, %rax",
    "syscall",
    "ud2",
    ".balign 16",
    "clts",
    "syscall",
    "ud2",
    ".balign 16",
    "wbinvd",
    "syscall",
    "ud2",
    ".balign 16",
    "rdmsr",
    "syscall",
    "ud2",
    ".balign 16",
    "hlt",
    "syscall",
    "ud2",
    ".balign 16",
    "cli",
    "syscall",
    "ud2",
    ".balign 16",
    "in $0x80, %al",
    "syscall",
    "ud2",
    ".balign 16",
    "rdtsc",
    "syscall",
    "ud2",
    ".balign 16",
    "rdtscp",
    "syscall",
    "ud2",
    ".popsection",
    options(att_syntax)
);

/// The time-stamp reads [`user_time_instruction`] runs in guest user mode (slots after
/// [`USER_INSNS`]'s), with their lengths: native in ring 3 unless the kernel set CR4.TSD.
pub const USER_TIME_INSNS: [(&str, u8); 2] = [("rdtsc", 2), ("rdtscp", 3)];

/// Address of [`USER_INSNS`] entry `i` (its instruction's first byte).
pub fn user_instruction_address(i: usize) -> u64 {
    guest_rt_user_insns as *const () as u64 + 16 * i as u64
}

/// Runs [`USER_INSNS`] entry `i` in guest user mode (RFLAGS 0x2) and returns the RAX its SYSCALL brought back, or `None` if `i` is out of range or
/// [`user_roundtrip`] has not succeeded yet (it sets up the user page tables, kernel stack
/// and SYSCALL callback this relies on). A fault the instruction raises goes to the trap
/// table: arm [`crate::traps::expect`] with the instruction's length to resume after it.
pub fn user_instruction(i: usize) -> Option<u64> {
    if i >= USER_INSNS.len() {
        return None;
    }
    run_user_slot(i)
}

/// Runs [`USER_TIME_INSNS`] entry `i` in guest user mode, as [`user_instruction`] does: the
/// RAX it brought back (the TSC's low half), `None` if out of range or not set up.
pub fn user_time_instruction(i: usize) -> Option<u64> {
    if i >= USER_TIME_INSNS.len() {
        return None;
    }
    run_user_slot(USER_INSNS.len() + i)
}

/// Address of [`USER_TIME_INSNS`] entry `i`.
pub fn user_time_instruction_address(i: usize) -> u64 {
    user_instruction_address(USER_INSNS.len() + i)
}

fn run_user_slot(i: usize) -> Option<u64> {
    if !USER_READY.load(Ordering::SeqCst) {
        return None;
    }
    let iret = hypercall::stub_address(IRET)?;
    // SAFETY: `user_roundtrip` succeeded, so the user page tables, the stack_switch kernel
    // stack and the SYSCALL callback (which restores the registers and stack saved by
    // `guest_rt_enter_user` and returns here) are in place; the slot ends in SYSCALL.
    Some(unsafe { guest_rt_enter_user(user_instruction_address(i), user_stack_top(), 0x2, iret) })
}

core::arch::global_asm!(
    ".pushsection .text.guest_rt_pvcpu,\"ax\",@progbits",
    // enter_user(rip, rsp, rflags, iret_stub): save the callee-saved registers and RSP, then
    // HYPERVISOR_iret to user mode (CS RPL 3) with the given RIP/RSP/RFLAGS.
    ".globl guest_rt_enter_user",
    "guest_rt_enter_user:",
    "push %rbx",
    "push %rbp",
    "push %r12",
    "push %r13",
    "push %r14",
    "push %r15",
    "mov %rsp, {saved}(%rip)",
    "push $0xe02b",
    "push %rsi",
    "push %rdx",
    "push $0xe033",
    "push %rdi",
    "push $0",
    "jmp *%rcx",
    // The SYSCALL callback: record Xen's frame, go back to enter_user's caller with the user's
    // RAX as the return value.
    ".balign 16",
    ".globl guest_rt_syscall_callback",
    "guest_rt_syscall_callback:",
    "mov %rsp, {frame_at}(%rip)",
    "mov 0(%rsp), %r11",
    "mov %r11, {frame}+0(%rip)",
    "mov 8(%rsp), %r11",
    "mov %r11, {frame}+8(%rip)",
    "mov 16(%rsp), %r11",
    "mov %r11, {frame}+16(%rip)",
    "mov 24(%rsp), %r11",
    "mov %r11, {frame}+24(%rip)",
    "mov 32(%rsp), %r11",
    "mov %r11, {frame}+32(%rip)",
    "mov 40(%rsp), %r11",
    "mov %r11, {frame}+40(%rip)",
    "mov 48(%rsp), %r11",
    "mov %r11, {frame}+48(%rip)",
    "mov {saved}(%rip), %rsp",
    "pop %r15",
    "pop %r14",
    "pop %r13",
    "pop %r12",
    "pop %rbp",
    "pop %rbx",
    "ret",
    // User code: a breakpoint (bounced to the kernel and back), a read through the user GS
    // base, then SYSCALL with that value in RAX.
    ".balign 16",
    ".globl guest_rt_user_code",
    "guest_rt_user_code:",
    "int3",
    "mov %gs:0, %rax",
    "syscall",
    "ud2",
    // A callback that must never run: reports and ends the test.
    ".balign 16",
    ".globl guest_rt_unexpected_callback",
    "guest_rt_unexpected_callback:",
    "and $-16, %rsp",
    "call {unexpected}",
    "ud2",
    ".popsection",
    // Stacks for user mode (16 KiB each, 16-byte aligned tops).
    ".pushsection .bss.guest_rt_pvcpu_stacks,\"aw\",@nobits",
    ".balign 16",
    "guest_rt_pv_kstack:",
    ".skip 16384",
    ".globl guest_rt_pv_kstack_top",
    "guest_rt_pv_kstack_top:",
    "guest_rt_pv_ustack:",
    ".skip 16384",
    ".globl guest_rt_pv_ustack_top",
    "guest_rt_pv_ustack_top:",
    ".popsection",
    unexpected = sym unexpected_callback,
    saved = sym SAVED_RSP,
    frame = sym SYSCALL_FRAME,
    frame_at = sym SYSCALL_RSP,
    options(att_syntax)
);

/// Entry point to register as `CALLBACKTYPE_syscall` for [`enter_user`].
pub fn syscall_callback_address() -> u64 {
    guest_rt_syscall_callback as *const () as u64
}

/// Address of the user-mode code [`enter_user`] runs: `int3; mov %gs:0,%rax; syscall`.
pub fn user_code_address() -> u64 {
    guest_rt_user_code as *const () as u64
}

/// Runs [`user_code_address`] in guest user mode on `user_stack_top` with `rflags`, and
/// returns the RAX of its SYSCALL (the value at user `%gs:0`).
///
/// # Safety
/// The SYSCALL callback must be [`syscall_callback_address`], a kernel stack must be set with
/// `stack_switch`, user page tables with `MMUEXT_NEW_USER_BASEPTR`, a `#BP` handler expecting
/// the `int3` must be installed, and the user GS base must point at readable memory.
pub unsafe fn enter_user(user_stack_top: u64, rflags: u64) -> Option<u64> {
    let iret = hypercall::stub_address(IRET)?;
    // SAFETY: the caller set up everything the user code and the SYSCALL callback need; the
    // callback restores the callee-saved registers and stack saved here and returns to us.
    Some(unsafe { guest_rt_enter_user(user_code_address(), user_stack_top, rflags, iret) })
}

/// CPUID through Xen's forced-emulation prefix (`ud2; .ascii "xen"; cpuid`): Xen's PV view.
pub fn xen_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u64, u32, u32);
    // SAFETY: under Xen PV the prefixed CPUID is emulated and execution continues after it;
    // RBX (reserved by the compiler) is preserved through a scratch register.
    unsafe {
        core::arch::asm!(
            "mov %rbx, {t}",
            "ud2",
            ".ascii \"xen\"",
            "cpuid",
            "xchg %rbx, {t}",
            t = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(att_syntax, nostack)
        );
    }
    [a, b as u32, c, d]
}

/// Reads `%cr0` (emulated by Xen for a ring-3 PV kernel).
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: a privileged register read Xen emulates; no memory is touched.
    unsafe { core::arch::asm!("mov %cr0, {}", out(reg) v, options(att_syntax, nomem, nostack)) };
    v
}

/// Reads `%cr3` (emulated: the machine address of the current top-level page table).
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: as for `read_cr0`.
    unsafe { core::arch::asm!("mov %cr3, {}", out(reg) v, options(att_syntax, nomem, nostack)) };
    v
}

/// Reads the 8 bytes at `%fs:0`.
pub fn read_fs0() -> u64 {
    let v: u64;
    // SAFETY: reads memory at the FS base, which the caller pointed at a readable u64.
    unsafe {
        core::arch::asm!("mov %fs:0, {}", out(reg) v, options(att_syntax, nostack, readonly))
    };
    v
}

/// Reads the 8 bytes at `%gs:0`.
pub fn read_gs0() -> u64 {
    let v: u64;
    // SAFETY: reads memory at the active GS base, which the caller pointed at a readable u64.
    unsafe {
        core::arch::asm!("mov %gs:0, {}", out(reg) v, options(att_syntax, nostack, readonly))
    };
    v
}

/// `mov (%rdi), %rax` (3 bytes: 48 8b 07) at `addr`: a page fault for an unmapped address,
/// handled with [`crate::traps::expect`]`(14, 3)`.
pub fn touch(addr: u64) {
    // SAFETY: either reads a mapped address or raises #PF, which the trap table handles (an
    // expected #PF resumes after the 3-byte instruction); C ABI clobbers for the handler.
    unsafe {
        core::arch::asm!(".byte 0x48, 0x8b, 0x07", in("rdi") addr, out("rax") _,
            clobber_abi("C"), options(att_syntax))
    };
}

/// `int $0x80` (2 bytes).
pub fn int80() {
    // SAFETY: the trap table handles vector 0x80 (or #GP) and resumes; C ABI clobbers.
    unsafe { core::arch::asm!("int $0x80", clobber_abi("C"), options(att_syntax)) };
}

/// `movaps %xmm0, %xmm0`: faults with #NM while the virtual CR0.TS is set.
pub fn sse_nop() {
    // SAFETY: a register-to-register SSE move; a #NM is handled by the trap table.
    unsafe { core::arch::asm!("movaps %xmm0, %xmm0", clobber_abi("C"), options(att_syntax)) };
}

/// `cli` (1 byte): emulated as a no-op with sufficient virtual IOPL, else #GP.
pub fn cli() {
    // SAFETY: never changes the real interrupt flag of a PV guest; #GP is handled.
    unsafe { core::arch::asm!("cli", clobber_abi("C"), options(att_syntax)) };
}

/// `hlt` (1 byte): #GP for a PV guest.
pub fn hlt() {
    // SAFETY: a ring-3 `hlt` raises #GP, which the trap table handles.
    unsafe { core::arch::asm!("hlt", clobber_abi("C"), options(att_syntax)) };
}

/// `set_debugreg(reg, value)`.
pub fn set_debugreg(reg: u64, value: u64) -> XenResult {
    // SAFETY: scalars; the debug registers only raise #DB in this vCPU, which the trap table
    // handles (an unexpected one ends the program with an error line).
    unsafe { hypercall::call(SET_DEBUGREG, [reg, value, 0, 0, 0]) }
}

/// `get_debugreg(reg)`.
pub fn get_debugreg(reg: u64) -> XenResult {
    // SAFETY: scalars, read-only.
    unsafe { hypercall::call(GET_DEBUGREG, [reg, 0, 0, 0, 0]) }
}

/// `set_callbacks(event, failsafe, syscall)`.
///
/// # Safety
/// As for [`crate::cpu::register_callback`] for each address.
pub unsafe fn set_callbacks(event: u64, failsafe: u64, syscall: u64) -> XenResult {
    // SAFETY: the caller vouches for the entry points.
    unsafe { hypercall::call(SET_CALLBACKS, [event, failsafe, syscall, 0, 0]) }
}

/// `physdev_op(PHYSDEVOP_set_iopl, {iopl})`.
pub fn set_iopl(iopl: u32) -> XenResult {
    let arg = iopl;
    // SAFETY: Xen reads the 4-byte `struct physdev_set_iopl`; a virtual IOPL only changes which
    // port and cli/sti instructions Xen emulates.
    unsafe {
        hypercall::call(
            PHYSDEV_OP,
            [PHYSDEVOP_SET_IOPL, &arg as *const u32 as u64, 0, 0, 0],
        )
    }
}

/// `physdev_op(PHYSDEVOP_set_iobitmap, {bitmap, nr_ports})`: without IOPL, a port access is
/// allowed if its bits in the bitmap at `bitmap` (read at each access) are clear and it lies
/// below `nr_ports`.
pub fn set_iobitmap(bitmap: u64, nr_ports: u32) -> XenResult {
    let arg: [u64; 2] = [bitmap, u64::from(nr_ports)];
    // SAFETY: Xen reads the 16-byte `struct physdev_set_iobitmap`; the bitmap is only read by
    // the hypervisor when it emulates a port access.
    unsafe {
        hypercall::call(
            PHYSDEV_OP,
            [PHYSDEVOP_SET_IOBITMAP, arg.as_ptr() as u64, 0, 0, 0],
        )
    }
}

/// `physdev_op(PHYSDEVOP_irq_status_query, {irq})`: the returned flags.
pub fn irq_status_query(irq: u32) -> Result<u32, crate::Errno> {
    let mut arg = [irq, 0u32];
    // SAFETY: Xen reads and writes the 8-byte `struct physdev_irq_status_query` in `arg`.
    unsafe {
        hypercall::call(
            PHYSDEV_OP,
            [PHYSDEVOP_IRQ_STATUS_QUERY, arg.as_mut_ptr() as u64, 0, 0, 0],
        )
    }?;
    Ok(arg[1])
}

/// `physdev_op(cmd, arg)` with raw arguments (for error paths: bad pointers, unknown ops).
pub fn physdev_raw(cmd: u64, arg: u64) -> XenResult {
    // SAFETY: used only with pointers Xen cannot write through (NULL, Xen's range) or with
    // read-only sub-ops; Xen validates them.
    unsafe { hypercall::call(PHYSDEV_OP, [cmd, arg, 0, 0, 0]) }
}

/// `physdev_op(PHYSDEVOP_apic_read)`: register `reg` of the I/O APIC at `base`.
pub fn apic_read(base: u64, reg: u32) -> Result<u32, crate::Errno> {
    let mut a = [0u64; 2];
    a[0] = base;
    a[1] = u64::from(reg);
    // SAFETY: the argument is this 16-byte `struct physdev_apic`, all Xen reads or writes.
    unsafe { hypercall::call(PHYSDEV_OP, [8, a.as_mut_ptr() as u64, 0, 0, 0]) }?;
    Ok((a[1] >> 32) as u32)
}

/// `platform_op(op)` on a whole `struct xen_platform_op` (136 bytes) held by the caller;
/// Xen writes its answer into the same buffer.
pub fn platform_op(op: &mut [u8; 136]) -> XenResult {
    // SAFETY: the argument is this 136-byte buffer, the size of `xen_platform_op`, which is
    // all Xen reads or writes.
    unsafe { hypercall::call(hypercall::PLATFORM_OP, [op.as_mut_ptr() as u64, 0, 0, 0, 0]) }
}

/// What `XENPF_get_cpuinfo` reports for one physical CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcpuInfo {
    /// The highest CPU number present.
    pub max_present: u32,
    /// `XEN_PCPU_FLAGS_*` (1 online, 2 invalid).
    pub flags: u32,
    /// Its local APIC id.
    pub apic_id: u32,
    /// Its ACPI processor id.
    pub acpi_id: u32,
}

/// `platform_op(XENPF_get_cpuinfo)` for physical CPU `cpu`.
pub fn pcpu_info(cpu: u32) -> Result<PcpuInfo, crate::errno::Errno> {
    let mut op = [0u8; 136];
    op[0..4].copy_from_slice(&55u32.to_le_bytes());
    op[4..8].copy_from_slice(&0x0300_0001u32.to_le_bytes());
    op[8..12].copy_from_slice(&cpu.to_le_bytes());
    platform_op(&mut op)?;
    let w = |i: usize| u32::from_le_bytes([op[i], op[i + 1], op[i + 2], op[i + 3]]);
    Ok(PcpuInfo {
        max_present: w(12),
        flags: w(16),
        apic_id: w(20),
        acpi_id: w(24),
    })
}

/// Address of a callback entry point that ends the test with an error if Xen ever enters it.
pub fn unexpected_callback_address() -> u64 {
    guest_rt_unexpected_callback as *const () as u64
}

/// Top of the kernel stack [`user_roundtrip`] gives Xen with `stack_switch`.
pub fn kernel_stack_top() -> u64 {
    guest_rt_pv_kstack_top as *const () as u64
}

/// Top of the user stack [`user_roundtrip`] runs the user code on.
pub fn user_stack_top() -> u64 {
    guest_rt_pv_ustack_top as *const () as u64
}

/// Registers [`unexpected_callback_address`] as callback `kind` (event, failsafe, NMI, ...).
pub fn register_unexpected_callback(kind: u16, flags: u16) -> XenResult {
    // SAFETY: the entry point only reports an error and stops: entering it cannot corrupt
    // anything.
    unsafe { crate::cpu::register_callback(kind, flags, unexpected_callback_address()) }
}

/// `CALLBACKOP_register` with a raw `address` that is not canonical (Xen refuses it); other
/// addresses are refused here with `-EINVAL` without calling Xen.
pub fn register_callback_noncanonical(kind: u16, address: u64) -> XenResult {
    let canonical = ((address as i64) << 16 >> 16) as u64 == address;
    if canonical {
        return Err(crate::Errno::EINVAL);
    }
    // SAFETY: a non-canonical entry point can never be registered, so Xen cannot enter it.
    unsafe { crate::cpu::register_callback(kind, 0, address) }
}

/// `set_trap_table` with one entry `{vector, flags, cs, address}` where `address` is not
/// canonical (Xen refuses the table); canonical addresses are refused here with `-EINVAL`.
pub fn set_trap_table_noncanonical(vector: u8, address: u64) -> XenResult {
    let canonical = ((address as i64) << 16 >> 16) as u64 == address;
    if canonical {
        return Err(crate::Errno::EINVAL);
    }
    let t = [
        crate::traps::TrapInfo {
            vector,
            flags: 0,
            cs: crate::cpu::FLAT_RING3_CS64,
            address,
        },
        crate::traps::TrapInfo::default(),
    ];
    // SAFETY: the only entry has a non-canonical address, which Xen refuses before installing.
    unsafe { crate::traps::set_trap_table(&t) }
}

/// Installs the runtime's `int $0x80` stub with `dpl` (0-3) in the virtual IDT.
pub fn install_int80(dpl: u8) -> XenResult {
    let t = [
        crate::traps::TrapInfo {
            vector: crate::traps::INT80_STUB,
            flags: (dpl & 3) | crate::traps::TI_MASK_EVENTS,
            cs: crate::cpu::FLAT_RING3_CS64,
            address: crate::traps::int80_stub_address(),
        },
        crate::traps::TrapInfo::default(),
    ];
    // SAFETY: the stub implements the PV bounce-frame protocol like the exception stubs.
    unsafe { crate::traps::set_trap_table(&t) }
}

/// What [`user_roundtrip`] observed, step by step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserReport {
    /// `%cr3` as Xen emulates it (machine address of the kernel L4).
    pub cr3: u64,
    /// `MMUEXT_NEW_USER_BASEPTR` with that L4.
    pub user_baseptr: Option<Result<u32, crate::Errno>>,
    /// `stack_switch(FLAT_KERNEL_SS, kernel_stack_top())`.
    pub stack_switch: Option<XenResult>,
    /// `CALLBACKOP_register(CALLBACKTYPE_syscall)`.
    pub syscall_callback: Option<XenResult>,
    /// `set_segment_base(SEGBASE_GS_USER, &value)`.
    pub gs_user: Option<XenResult>,
    /// RAX of the user code's SYSCALL (the user `%gs:0`), if user mode was entered.
    pub user_rax: Option<u64>,
}

/// The u64 the user code reads through its GS base.
static USER_GS_TARGET: AtomicU64 = AtomicU64::new(0x5553_4552_4753_3031);

/// The value [`user_roundtrip`]'s user code should read at `%gs:0`.
pub fn user_gs_value() -> u64 {
    USER_GS_TARGET.load(Ordering::SeqCst)
}

/// Enters guest user mode and comes back: user page tables = the kernel's L4, the kernel
/// stack from [`kernel_stack_top`], the SYSCALL callback, user GS base, then `HYPERVISOR_iret`
/// to [`user_code_address`] (which takes a `#BP` to the kernel and back, reads `%gs:0` and
/// SYSCALLs). Stops at the first failing step.
pub fn user_roundtrip() -> UserReport {
    let mut r = UserReport {
        cr3: read_cr3(),
        ..UserReport::default()
    };
    let op = crate::mm::MmuextOp {
        cmd: crate::mm::MMUEXT_NEW_USER_BASEPTR,
        arg1: r.cr3 >> 12,
        arg2: 0,
    };
    // SAFETY: the user page tables are the kernel's own (already validated) L4; nothing runs
    // in user mode except `user_code_address`.
    let ub = unsafe { crate::mm::mmuext_op(&[op], crate::mm::DOMID_SELF) };
    r.user_baseptr = Some(ub);
    if ub.is_err() {
        return r;
    }
    // SAFETY: the kernel stack is a static buffer used only by Xen's bounce frames while the
    // user code runs.
    let ss = unsafe { crate::cpu::stack_switch(crate::cpu::FLAT_RING3_SS64, kernel_stack_top()) };
    r.stack_switch = Some(ss);
    if ss.is_err() {
        return r;
    }
    // SAFETY: the callback implements the SYSCALL frame protocol and returns to `enter_user`.
    let sc = unsafe {
        crate::cpu::register_callback(
            crate::cpu::CALLBACKTYPE_SYSCALL,
            crate::cpu::CALLBACKF_MASK_EVENTS,
            syscall_callback_address(),
        )
    };
    r.syscall_callback = Some(sc);
    if sc.is_err() {
        return r;
    }
    let gs =
        crate::cpu::set_segment_base(crate::cpu::SEGBASE_GS_USER, USER_GS_TARGET.as_ptr() as u64);
    r.gs_user = Some(gs);
    if gs.is_err() {
        return r;
    }
    crate::traps::expect(3, 0);
    // SAFETY: every precondition of `enter_user` was established above; RFLAGS 0x2 keeps
    // events masked in user mode.
    r.user_rax = unsafe { enter_user(user_stack_top(), 0x2) };
    USER_READY.store(r.user_rax.is_some(), Ordering::SeqCst);
    r
}

/// `multicall` of a fixed, memory-safe list: `xen_version(XENVER_version)`,
/// `fpu_taskswitch(0)`, a nested `multicall(NULL, 0)`, unknown hypercall 99, and
/// `vm_assist(VMASST_CMD_enable, 64)`. Returns the call's result and the entries.
pub fn multicall_mixed() -> (XenResult, [crate::multicall::MulticallEntry; 5]) {
    use crate::multicall::{MulticallEntry, MulticallEntryExt};
    let mut e = [
        MulticallEntry::new(hypercall::XEN_VERSION, [0; 6]),
        MulticallEntry::new(hypercall::FPU_TASKSWITCH, [0; 6]),
        MulticallEntry::new(hypercall::MULTICALL, [0; 6]),
        MulticallEntry::new(99, [0; 6]),
        MulticallEntry::new(hypercall::VM_ASSIST, [0, 64, 0, 0, 0, 0]),
    ];
    for x in e.iter_mut() {
        x.result = 0xdead;
    }
    // SAFETY: none of the entries takes a pointer Xen would write through (the nested
    // multicall has a NULL list and count 0).
    let r = unsafe { crate::multicall::multicall(&mut e) };
    (r, e)
}

/// `set_callbacks` with [`unexpected_callback_address`] for the event, failsafe and syscall
/// entry points.
pub fn set_unexpected_callbacks() -> XenResult {
    let cb = unexpected_callback_address();
    // SAFETY: the entry point only reports an error and stops.
    unsafe { set_callbacks(cb, cb, cb) }
}
