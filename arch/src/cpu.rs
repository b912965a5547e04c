//! Thin wrappers over single x86-64 instructions: port I/O, MSRs, control registers, halting.

use core::arch::asm;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust; callers pass ports of devices
    // the hypervisor owns (UART, PIT, PIC, debug-exit, reset control).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`: device register access only, no Rust-visible memory.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 16-bit value to an I/O port.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 16-bit value from an I/O port.
pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as for `inb`.
    unsafe {
        asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a 32-bit value from an I/O port.
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `inb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 32-bit value to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// `X86_DR6_DEFAULT`: DR6 with no status bit set.
pub const DR6_DEFAULT: u64 = 0xffff_0ff0;
/// `X86_DR7_DEFAULT`: DR7 with every breakpoint disabled.
pub const DR7_DEFAULT: u64 = 0x400;

/// Reads DR6 and resets it to [`DR6_DEFAULT`] (the CPU never clears its status bits).
pub fn take_dr6() -> u64 {
    let v: u64;
    // SAFETY: reading and resetting DR6 only affects the debug status the caller consumes.
    unsafe {
        asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags));
        asm!("mov dr6, {}", in(reg) DR6_DEFAULT, options(nomem, nostack, preserves_flags));
    }
    v
}

/// Loads guest breakpoints: DR0-DR3 then DR7 (`dr7` validated by the hypervisor: no general
/// detect, no I/O breakpoints, addresses below the hypervisor's range).
pub fn load_debug_registers(dr: [u64; 4], dr7: u64) {
    // SAFETY: the values were validated by xen-core's set_debugreg (guest addresses only); a
    // breakpoint that fires in hypervisor code is ignored by the #DB handler, as Xen does.
    unsafe {
        asm!("mov dr0, {}", in(reg) dr[0], options(nomem, nostack, preserves_flags));
        asm!("mov dr1, {}", in(reg) dr[1], options(nomem, nostack, preserves_flags));
        asm!("mov dr2, {}", in(reg) dr[2], options(nomem, nostack, preserves_flags));
        asm!("mov dr3, {}", in(reg) dr[3], options(nomem, nostack, preserves_flags));
        asm!("mov dr7, {}", in(reg) dr7, options(nomem, nostack, preserves_flags));
    }
}

core::arch::global_asm!(
    ".pushsection .text.dv_rdmsr_safe,\"ax\",@progbits",
    ".globl dv_rdmsr_safe",
    "dv_rdmsr_safe:",
    "mov ecx, edi",
    ".globl dv_rdmsr_safe_insn",
    "dv_rdmsr_safe_insn:",
    "rdmsr",
    "shl rdx, 32",
    "mov eax, eax",
    "or rax, rdx",
    "mov [rsi], rax",
    "xor eax, eax",
    "ret",
    ".globl dv_rdmsr_safe_fixup",
    "dv_rdmsr_safe_fixup:",
    "mov eax, 1",
    "ret",
    ".popsection",
);

extern "C" {
    /// `rdmsr` of MSR `msr` into `*out`: 0, or 1 if it raised #GP (see [`rdmsr_fixup`]).
    fn dv_rdmsr_safe(msr: u32, out: *mut u64) -> u32;
    fn dv_rdmsr_safe_insn();
    fn dv_rdmsr_safe_fixup();
}

/// Reads MSR `msr` if the CPU has it (Xen's `rdmsr_safe`): None if the read raised #GP.
pub fn rdmsr_safe(msr: u32) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: `dv_rdmsr_safe` only reads the MSR into `v`; a #GP at its `rdmsr` resumes at
    // its fixup (trap.rs), which returns 1 without touching `v`.
    let r = unsafe { dv_rdmsr_safe(msr, &mut v) };
    (r == 0).then_some(v)
}

/// The exception fixup for [`rdmsr_safe`]: where a #GP at `rip` in hypervisor code resumes.
pub fn rdmsr_fixup(rip: u64) -> Option<u64> {
    (rip == dv_rdmsr_safe_insn as *const () as u64)
        .then_some(dv_rdmsr_safe_fixup as *const () as u64)
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: callers read architectural MSRs that exist on every x86-64 CPU DualVisor runs on.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR and value must be valid and must not break invariants the hypervisor relies on
/// (e.g. EFER.LME, the GS base of per-CPU data).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR write is valid (function contract).
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Executes CPUID for `leaf`/`subleaf`, returning (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // CPUID is always available in long mode and has no memory effects.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Whether the CPU has AMD SVM (CPUID 0x8000_0001 ECX bit 2).
pub fn has_svm() -> bool {
    cpuid(0x8000_0000, 0).0 >= 0x8000_0001 && cpuid(0x8000_0001, 0).2 & (1 << 2) != 0
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; CR4.TSD is clear in the hypervisor.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Loads CR4.
///
/// # Safety
/// `value` must keep every feature the running code relies on (PAE, SSE enables, ...); only
/// bits that change guest-visible behaviour (such as TSD) may differ from the current value.
pub unsafe fn write_cr4(value: u64) {
    // SAFETY: the caller keeps the features in use (function contract).
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// Loads CR3, switching address space.
///
/// # Safety
/// `value` must point at a valid PML4 that maps the running code, its stack and all data in use.
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: the caller guarantees the new tables map everything in use (function contract).
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// Enables interrupts and halts until the next one arrives, atomically (no lost wake-up).
pub fn enable_and_halt() {
    // SAFETY: `sti; hlt` only waits for an interrupt; handlers are installed before IF is set.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
}

/// With interrupts off: enables them, halts until the next one, and disables them again
/// once it has been handled (a wait inside a handler that must not be interrupted elsewhere).
pub fn halt_with_interrupts_window() {
    // SAFETY: `sti; hlt; cli` only waits for an interrupt and lets exactly that window take
    // it; handlers are installed before any CPU enables interrupts, and they run on IST
    // stacks (the caller is not on the interrupt stack: `gdt::on_irq_stack`).
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Disables interrupts on this CPU.
pub fn disable_interrupts() {
    // SAFETY: clearing IF has no memory effects.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Enables interrupts on this CPU.
pub fn enable_interrupts() {
    // SAFETY: handlers for every vector are installed before any CPU enables interrupts.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Whether interrupts are enabled on this CPU (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reading RFLAGS through the stack has no other effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Stops this CPU for good: interrupts off, halt forever (NMIs return into the loop).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` stops the CPU; nothing is expected to run on it again.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// A spin-wait hint.
pub fn pause() {
    core::hint::spin_loop();
}

/// Runs `f` with interrupts disabled, restoring the previous state afterwards.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was = interrupts_enabled();
    if was {
        disable_interrupts();
    }
    let r = f();
    if was {
        enable_interrupts();
    }
    r
}

/// Invalidates the TLB entry of one virtual address on this CPU.
pub fn invlpg(va: u64) {
    // SAFETY: invlpg only drops a cached translation; it never changes memory.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) }
}

/// Flushes this CPU's non-global TLB entries (reloads CR3).
pub fn flush_tlb_local() {
    // SAFETY: reloading the current CR3 keeps the same address space.
    unsafe { write_cr3(read_cr3()) }
}

/// Writes back and invalidates the caches.
pub fn wbinvd() {
    // SAFETY: cache maintenance only; memory contents are unchanged.
    unsafe { asm!("wbinvd", options(nostack, preserves_flags)) }
}
