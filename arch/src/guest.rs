//! Running 64-bit PV guest code in ring 3: SYSCALL entry, the exit hook the hypervisor core
//! installs, and the one way into a guest ([`enter_guest`]).
//!
//! Entries from ring 3 (SYSCALL, exceptions, interrupts) build a [`TrapFrame`] exactly like
//! hypervisor traps do; `trap_common` switches GS on the way in and out. SYSCALL frames carry
//! vector [`SYSCALL_VECTOR`].

use crate::gdt::{HYPERVISOR_CS, RING3_CS32};
use crate::trap::TrapFrame;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Pseudo-vector of a SYSCALL from ring 3.
pub const SYSCALL_VECTOR: u64 = 0x100;
/// Pseudo-vector of a 32-bit (compatibility mode) SYSCALL, which PV guests may not use.
pub const SYSCALL32_VECTOR: u64 = 0x101;

/// FXSAVE image of the FPU/SSE state.
///
/// The area `trap_common` passes to the exit hook is *partial*: it holds MXCSR and XMM0-15
/// (the state hypervisor code overwrites), while the x87 state stays in the hardware, which
/// no hypervisor code touches; the marker [`FX_PARTIAL`] at [`FX_MARKER_AT`] (bytes FXSAVE
/// and FXRSTOR leave alone) says so, and the exit restores just that part. [`FxArea::complete`]
/// fills in the x87 part and drops the marker: call it before copying a live area anywhere.
/// An area without the marker is restored whole with FXRSTOR.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; 512]);

/// Offset of the partial-image marker: the first of the FXSAVE image's bytes available to
/// software (464..512).
pub const FX_MARKER_AT: usize = 464;
/// The marker of a partial image ("FXPARTL1").
pub const FX_PARTIAL: u64 = u64::from_le_bytes(*b"FXPARTL1");

impl Default for FxArea {
    fn default() -> Self {
        let mut a = FxArea([0; 512]);
        // FCW = 0x37f, MXCSR = 0x1f80: the state after FNINIT / reset.
        a.0[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
        a.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        a
    }
}

impl FxArea {
    /// Whether this is a partial image whose x87 part is still in the hardware.
    pub fn is_partial(&self) -> bool {
        self.0[FX_MARKER_AT..FX_MARKER_AT + 8] == FX_PARTIAL.to_le_bytes()
    }

    /// Makes a partial image whole: the x87 environment and registers from the hardware
    /// (the vCPU's, as long as no other image has been loaded since the exit), MXCSR and the
    /// XMM registers as saved. Does nothing to a whole image.
    pub fn complete(&mut self) {
        if !self.is_partial() {
            return;
        }
        let mut hw = FxArea([0; 512]);
        // SAFETY: FXSAVE writes the 512 bytes of `hw`, which is 64-byte aligned and ours;
        // CR0.TS is clear in hypervisor code (`trap_common` cleared it), so it cannot fault.
        unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) hw.0.as_mut_ptr(), options(nostack));
        }
        self.0[0..24].copy_from_slice(&hw.0[0..24]);
        self.0[28..160].copy_from_slice(&hw.0[28..160]);
        self.0[FX_MARKER_AT..FX_MARKER_AT + 8].fill(0);
    }

    /// A whole image from 512 bytes someone else provides (a toolstack's vCPU context): the
    /// software bytes are cleared, so that it can never pass for a partial one.
    pub fn set_image(&mut self, bytes: &[u8; 512]) {
        self.0 = *bytes;
        self.0[FX_MARKER_AT..].fill(0);
    }
}

/// Why a guest left ring 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// SYSCALL (a hypercall from the guest kernel, or a system call from guest user space).
    Syscall,
    /// A CPU exception (vector < 32).
    Exception(u8),
    /// An interrupt was handled while the guest ran; the guest is about to be resumed.
    Interrupt(u8),
    /// The `iretq` returning to the guest raised this exception (#GP, #NP, #SS, #PF): the
    /// frame holds the guest's registers and the frame it was being returned to, the error
    /// code the CPU pushed, as if the guest had raised it there (Xen's `iret_exit_to_guest`
    /// fixup).
    ReturnFault(u8),
}

/// The hypervisor core's handler of guest exits: it may change the frame (registers, RIP),
/// the FPU image, or not return at all (switching to another vCPU with [`enter_guest`]).
pub type GuestExitHook = fn(exit: GuestExit, frame: &mut TrapFrame, fx: &mut FxArea);

static GUEST_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs the guest exit handler.
pub fn set_exit_hook(hook: GuestExitHook) {
    GUEST_HOOK.store(hook as usize, Ordering::Release);
}

/// Calls the installed exit hook; false if none is installed.
pub(crate) fn call_exit_hook(exit: GuestExit, frame: &mut TrapFrame, fx: &mut FxArea) -> bool {
    let h = GUEST_HOOK.load(Ordering::Acquire);
    if h == 0 {
        return false;
    }
    // SAFETY: only `set_exit_hook` stores non-zero values, and it stores `GuestExitHook`s.
    let hook: GuestExitHook = unsafe { core::mem::transmute::<usize, GuestExitHook>(h) };
    hook(exit, frame, fx);
    true
}

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
    .section .text.syscall_entry, "ax"
    .global syscall_entry64
syscall_entry64:
    swapgs
    movq %rsp, %gs:8
    movq %gs:16, %rsp
    pushq ${ds}
    pushq %gs:8
    pushq %r11
    pushq ${cs64}
    pushq %rcx
    pushq $0
    pushq ${vec64}
    swapgs
    jmp trap_common

    .global syscall_entry32
syscall_entry32:
    swapgs
    movq %rsp, %gs:8
    movq %gs:16, %rsp
    pushq ${ds}
    pushq %gs:8
    pushq %r11
    pushq ${cs32}
    pushq %rcx
    pushq $0
    pushq ${vec32}
    swapgs
    jmp trap_common

    .global enter_guest_asm
enter_guest_asm:
    /* rdi = frame (TrapFrame), rsi = FXSAVE image; interrupts are off. */
    clts
    fxrstor64 (%rsi)
    cmpq $0, %gs:24
    je 1f
    movq %cr0, %rax
    orq $8, %rax
    movq %rax, %cr0
1:  movq %rdi, %rsp
    popq %rax
    popq %rbx
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    popq %rbp
    popq %r8
    popq %r9
    popq %r10
    popq %r11
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    addq $16, %rsp
    swapgs
    /* A fault here is the guest's (`guest_return`); `trap_common` swaps GS back. */
    .global dv_guest_iret_enter
dv_guest_iret_enter:
    iretq
    .text
"#,
    ds = const crate::gdt::RING3_DS as u64,
    cs64 = const crate::gdt::RING3_CS64 as u64,
    cs32 = const RING3_CS32 as u64,
    vec64 = const SYSCALL_VECTOR,
    vec32 = const SYSCALL32_VECTOR,
    options(att_syntax)
);

extern "C" {
    fn syscall_entry64();
    fn syscall_entry32();
    fn enter_guest_asm(frame: *const TrapFrame, fx: *const FxArea) -> !;
}

const IA32_EFER: u32 = 0xC000_0080;
const IA32_STAR: u32 = 0xC000_0081;
const IA32_LSTAR: u32 = 0xC000_0082;
const IA32_CSTAR: u32 = 0xC000_0083;
const IA32_FMASK: u32 = 0xC000_0084;
const IA32_FS_BASE: u32 = 0xC000_0100;
const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Bytes of each CPU's SYSCALL stack.
pub const SYSCALL_STACK_SIZE: usize = 256 * 1024;

/// Enables SYSCALL on the running CPU with its own entry stack.
pub fn init_cpu() {
    let cpu = crate::percpu::cpu_index();
    let (_, top) =
        crate::smp::alloc_stack(cpu, crate::stacks::StackKind::Syscall, SYSCALL_STACK_SIZE);
    crate::percpu::this()
        .syscall_stack_top
        .store(top, Ordering::Relaxed);
    // TF, IF, DF, IOPL, NT, AC cleared on entry (as Xen's).
    let fmask = (1 << 8) | (1 << 9) | (1 << 10) | (3 << 12) | (1 << 14) | (1 << 18);
    // SAFETY: these MSRs configure SYSCALL to enter at the stubs above on the hypervisor's
    // selectors; SYSRET is never used (guests return through iretq), but STAR still names the
    // ring-3 selectors Xen uses.
    unsafe {
        crate::cpu::wrmsr(
            IA32_STAR,
            (u64::from(RING3_CS32) << 48) | (u64::from(HYPERVISOR_CS) << 32),
        );
        crate::cpu::wrmsr(IA32_LSTAR, syscall_entry64 as *const () as u64);
        crate::cpu::wrmsr(IA32_CSTAR, syscall_entry32 as *const () as u64);
        crate::cpu::wrmsr(IA32_FMASK, fmask);
        crate::cpu::wrmsr(IA32_EFER, crate::cpu::rdmsr(IA32_EFER) | 1);
    }
}

/// Guest-visible state a guest is entered with, besides the registers in the frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestBases {
    /// Page-table base (CR3) of the guest context being entered.
    pub cr3: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base in effect in the guest (the "user" or "kernel" one, as the mode requires).
    pub gs_base: u64,
}

/// Loads the bases a guest context resumes with (CR3 if it differs, FS base, and the GS base
/// `swapgs` will install on the way out). Call on the exit path, before returning to it.
///
/// `held` is what the FS base and KERNEL_GS_BASE registers hold now, when the caller knows
/// it: the values [`live_bases`] read at the start of this exit, if nothing has written
/// those registers or loaded an FS or GS selector on this CPU since. A base equal to the one
/// held is not written again (each `wrmsr` ends a translated block under QEMU TCG: the two
/// cost a lockstep-off `xen_version` from the `bench` guest ~400 of its ~9,400 cycles).
pub fn load_bases(bases: GuestBases, held: Option<(u64, u64)>) {
    let (fs, gs) = base_writes(&bases, held);
    // SAFETY: CR3 is a guest L4 validated by the hypervisor that carries the hypervisor's
    // slots (so this code stays mapped); the MSRs only hold the guest's segment bases, and
    // KERNEL_GS_BASE is swapped in only when returning to ring 3.
    unsafe {
        if bases.cr3 != 0 && bases.cr3 != crate::cpu::read_cr3() {
            crate::cpu::write_cr3(bases.cr3);
        }
        if let Some(fs) = fs {
            crate::cpu::wrmsr(IA32_FS_BASE, fs);
        }
        if let Some(gs) = gs {
            crate::cpu::wrmsr(IA32_KERNEL_GS_BASE, gs);
        }
    }
}

/// The FS base and KERNEL_GS_BASE values [`load_bases`] must write for `bases` when the
/// registers hold `held` (unknown: both).
fn base_writes(bases: &GuestBases, held: Option<(u64, u64)>) -> (Option<u64>, Option<u64>) {
    match held {
        Some((fs, gs)) => (
            (fs != bases.fs_base).then_some(bases.fs_base),
            (gs != bases.gs_base).then_some(bases.gs_base),
        ),
        None => (Some(bases.fs_base), Some(bases.gs_base)),
    }
}

/// The segment bases the guest that just left ring 3 on this CPU left in the hardware: its FS
/// base and (swapped out of GS by the entry's `swapgs`) its GS base, which it may have changed
/// without an exit (a selector load into FS/GS, `wrfsbase`/`wrgsbase`). Call on the exit path
/// before anything loads other bases.
pub fn live_bases() -> (u64, u64) {
    // The hypervisor does not use FS, and its own GS base is in GS_BASE while it runs, so
    // KERNEL_GS_BASE holds the guest's.
    (
        crate::cpu::rdmsr(IA32_FS_BASE),
        crate::cpu::rdmsr(IA32_KERNEL_GS_BASE),
    )
}

/// DR0-DR3 and DR7 each CPU last loaded (DR7 = 0: not loaded since boot).
static DEBUG_REGS: [[AtomicU64; 5]; crate::percpu::MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 5] }; crate::percpu::MAX_CPUS];

/// Loads the breakpoints of the guest context this CPU resumes: DR0-DR3 and DR7 as the
/// hypervisor validated them (Xen's `activate_debugregs`); written only when they change.
pub fn load_debug_registers(dr: [u64; 4], dr7: u64) {
    crate::guest_context::invalidate();
    let cache = &DEBUG_REGS[crate::percpu::cpu_index()];
    let want = [dr[0], dr[1], dr[2], dr[3], dr7];
    if cache
        .iter()
        .zip(want)
        .all(|(c, w)| c.load(Ordering::Relaxed) == w)
    {
        return;
    }
    crate::cpu::load_debug_registers(dr, dr7);
    for (c, w) in cache.iter().zip(want) {
        c.store(w, Ordering::Relaxed);
    }
}

/// `MSR_TSC_AUX`: what `rdtscp` returns in ECX.
const IA32_TSC_AUX: u32 = 0xC000_0103;

/// TSC_AUX each CPU last loaded, plus one (0: not loaded since boot).
static TSC_AUX: [AtomicU64; crate::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::percpu::MAX_CPUS];

/// Whether the CPU has RDTSCP (CPUID 0x8000_0001 EDX bit 27), and so the TSC_AUX MSR.
fn has_rdtscp() -> bool {
    let (max, _, _, _) = crate::cpu::cpuid(0x8000_0000, 0);
    max >= 0x8000_0001 && crate::cpu::cpuid(0x8000_0001, 0).3 & (1 << 27) != 0
}

/// Loads the TSC_AUX of the guest context this CPU resumes, so that its `rdtscp` (which
/// does not trap) reports it, as Xen's context switch does (`wrmsr_tsc_aux`). Written only
/// when it changes; nothing on a CPU without RDTSCP.
pub fn load_tsc_aux(value: u32) {
    crate::guest_context::invalidate();
    let cache = &TSC_AUX[crate::percpu::cpu_index()];
    let want = u64::from(value) + 1;
    if cache.load(Ordering::Relaxed) == want || !has_rdtscp() {
        return;
    }
    // SAFETY: TSC_AUX exists (RDTSCP is present) and the hypervisor does not use it: it only
    // changes what the guest's `rdtscp` reports.
    unsafe { crate::cpu::wrmsr(IA32_TSC_AUX, u64::from(value)) };
    cache.store(want, Ordering::Relaxed);
}

/// `X86_CR4_TSD`.
const CR4_TSD: u64 = 1 << 2;

/// Sets or clears CR4.TSD for the guest context this CPU resumes (Xen's `pv_make_cr4` for a
/// PV kernel that set TSD in its virtual CR4): with it, `rdtsc`/`rdtscp` in ring 3 raise #GP,
/// which the hypervisor emulates for the guest kernel and bounces for guest user mode. Ring 0
/// is unaffected. Written only when it changes.
pub fn set_guest_tsd(on: bool) {
    crate::guest_context::invalidate();
    let cr4 = crate::cpu::read_cr4();
    let want = if on { cr4 | CR4_TSD } else { cr4 & !CR4_TSD };
    if want != cr4 {
        // SAFETY: only TSD changes, which affects nothing but ring-3 time-stamp reads.
        unsafe { crate::cpu::write_cr4(want) };
    }
}

/// `X86_CR4_FSGSBASE`.
const CR4_FSGSBASE: u64 = 1 << 16;

/// Sets or clears CR4.FSGSBASE for the guest context this CPU resumes (Xen's `pv_make_cr4`: a
/// 64-bit PV kernel that set it in its virtual CR4 runs with it, so its `rd/wr{fs,gs}base`
/// work in ring 3; otherwise they raise #UD). The hypervisor's own code uses neither the
/// instructions nor the guest's bases (its entries `swapgs` to its per-CPU GS base, and the
/// guest cannot `swapgs` in ring 3). Written only when it changes; never set on a CPU
/// without FSGSBASE (CPUID 7.EBX bit 0).
pub fn set_guest_fsgsbase(on: bool) {
    crate::guest_context::invalidate();
    let cr4 = crate::cpu::read_cr4();
    if (cr4 & CR4_FSGSBASE != 0) == on {
        return;
    }
    if on && (crate::cpu::cpuid(0, 0).0 < 7 || crate::cpu::cpuid(7, 0).1 & 1 == 0) {
        return;
    }
    // SAFETY: only FSGSBASE changes (the CPU has it), which affects nothing but whether the
    // base instructions may run.
    unsafe { crate::cpu::write_cr4(cr4 ^ CR4_FSGSBASE) };
}

/// Sets the virtual CR0.TS of the vCPU this CPU resumes next (the hardware TS is set only
/// while it runs).
pub fn set_guest_ts(on: bool) {
    crate::guest_context::invalidate();
    crate::percpu::this()
        .guest_ts
        .store(u64::from(on), Ordering::Relaxed);
}

/// Sanitises `frame` for ring 3: RPL 3 selectors (so the `iretq` can only reach ring 3), IF
/// set, IOPL 0, no NT/RF/VM. Selectors or addresses the CPU refuses make the `iretq` fault,
/// which is the guest's fault ([`crate::guest_return`]).
pub fn sanitize_frame(frame: &mut TrapFrame) {
    frame.cs |= 3;
    frame.ss |= 3;
    const KEEP: u64 = 0x0000_0000_0024_0CD5; // CF PF AF ZF SF TF DF OF AC ID
    frame.rflags = (frame.rflags & KEEP) | (1 << 9) | (1 << 1);
}

/// Leaves the hypervisor and runs guest code from `frame` with FPU state `fx`.
///
/// The frame and FPU image must live in memory that stays mapped in the guest's tables (the
/// heap or image: both sit in the hypervisor slots every guest L4 carries). Never returns: the
/// next guest exit enters through `trap_common` on a fresh stack.
///
/// A frame the CPU refuses to return to (a selector not present or not usable, a
/// non-canonical RIP) faults on the `iretq`: that fault reaches the exit hook as
/// [`GuestExit::ReturnFault`], as if the guest had raised it.
pub fn enter_guest(frame: &TrapFrame, fx: &FxArea, bases: GuestBases) -> ! {
    let mut f = *frame;
    sanitize_frame(&mut f);
    crate::cpu::disable_interrupts();
    crate::guest_return::record(&f);
    // The frame must outlive this function: copy it to this CPU's entry slot.
    let slot = crate::percpu::this().guest_entry_frame();
    // SAFETY: `slot` is this CPU's private, static, properly aligned frame buffer; interrupts
    // are off, so nothing else on this CPU uses it until the guest is entered.
    unsafe { *slot = f };
    // SAFETY: the MSRs hold the guest's FS base and (swapped in by `swapgs` on entry) its GS
    // base; CR3 is a guest L4 that the hypervisor validated and that maps the hypervisor's
    // slots; `slot` and `fx` stay valid; the frame was sanitised for ring 3 above.
    unsafe {
        crate::cpu::wrmsr(IA32_FS_BASE, bases.fs_base);
        crate::cpu::wrmsr(IA32_KERNEL_GS_BASE, bases.gs_base);
        if bases.cr3 != 0 && bases.cr3 != crate::cpu::read_cr3() {
            crate::cpu::write_cr3(bases.cr3);
        }
        enter_guest_asm(slot, fx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(fs_base: u64, gs_base: u64) -> GuestBases {
        GuestBases {
            cr3: 0x1000,
            fs_base,
            gs_base,
        }
    }

    #[test]
    fn unknown_registers_get_both_bases() {
        assert_eq!(base_writes(&bases(0, 0), None), (Some(0), Some(0)));
        assert_eq!(base_writes(&bases(7, 9), None), (Some(7), Some(9)));
    }

    #[test]
    fn held_bases_are_written_only_where_they_differ() {
        assert_eq!(base_writes(&bases(7, 9), Some((7, 9))), (None, None));
        assert_eq!(base_writes(&bases(7, 9), Some((8, 9))), (Some(7), None));
        assert_eq!(base_writes(&bases(7, 9), Some((7, 0))), (None, Some(9)));
        assert_eq!(base_writes(&bases(0, 0), Some((7, 9))), (Some(0), Some(0)));
    }
}
