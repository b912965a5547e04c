//! Trap dispatch: the Rust side of every exception and interrupt, and the fatal-trap report
//! (vector, error code, all registers, a call trace; then every CPU stops).

use crate::percpu;
use crate::xprintln;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Registers saved by `trap_common` plus the hardware exception frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Vector number pushed by the stub.
    pub vector: u64,
    /// Hardware error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// All-zero frame.
    pub const ZERO: TrapFrame = TrapFrame {
        rax: 0,
        rbx: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        rbp: 0,
        r8: 0,
        r9: 0,
        r10: 0,
        r11: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        vector: 0,
        error_code: 0,
        rip: 0,
        cs: 0,
        rflags: 0,
        rsp: 0,
        ss: 0,
    };

    /// Whether the frame was interrupted in ring 3 (guest code).
    pub fn from_guest(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// The software-interrupt vector PV guests use for system calls (`int $0x80`).
pub const SOFT_INT80: u64 = 0x80;

/// A handler for one interrupt vector (≥ 32). Runs with interrupts disabled.
pub type IrqHandler = fn(vector: u8, frame: &mut TrapFrame);

const NO_HANDLER: usize = 0;
static IRQ_HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(NO_HANDLER) }; 256];
static STOPPING: AtomicBool = AtomicBool::new(false);

/// A hook offered every exception (vector < 32) first; returns true if it handled it.
pub type ExceptionHook = fn(frame: &mut TrapFrame) -> bool;
static EXCEPTION_HOOK: AtomicUsize = AtomicUsize::new(NO_HANDLER);

/// Installs (or with `None` removes) the exception hook.
pub fn set_exception_hook(hook: Option<ExceptionHook>) {
    EXCEPTION_HOOK.store(hook.map_or(NO_HANDLER, |h| h as usize), Ordering::Release);
}

/// What happens after a fatal trap has been reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalAction {
    /// Reset the machine (the default).
    Reset,
    /// Halt every CPU (`noreboot`).
    Halt,
    /// Exit QEMU through isa-debug-exit with this value (self-test mode).
    DebugExit(u32),
}

static FATAL_ACTION: AtomicUsize = AtomicUsize::new(0);

/// Chooses what a fatal trap or panic does after the report.
pub fn set_fatal_action(action: FatalAction) {
    let v = match action {
        FatalAction::Reset => 0,
        FatalAction::Halt => 1,
        FatalAction::DebugExit(code) => 0x1_0000_0000usize | code as usize,
    };
    FATAL_ACTION.store(v, Ordering::SeqCst);
}

fn fatal_action() -> FatalAction {
    match FATAL_ACTION.load(Ordering::SeqCst) {
        0 => FatalAction::Reset,
        1 => FatalAction::Halt,
        v => FatalAction::DebugExit(v as u32),
    }
}

/// Installs `handler` for interrupt `vector` (≥ 32).
pub fn register_irq(vector: u8, handler: IrqHandler) {
    assert!(vector >= 32, "vectors below 32 are exceptions");
    IRQ_HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Exception names as Xen prints them.
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "nmi",
        3 => "int3",
        4 => "overflow",
        5 => "bounds",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        9 => "coprocessor segment",
        10 => "invalid TSS",
        11 => "segment not found",
        12 => "stack error",
        13 => "general protection fault",
        14 => "page fault",
        16 => "fpu error",
        17 => "alignment check",
        18 => "machine check",
        19 => "simd error",
        20 => "virtualisation exception",
        21 => "control protection",
        _ => "reserved",
    }
}

/// Entry from `trap_common` (idt.rs) for every vector. A trap at one of the `iretq`s that
/// return to a guest is the guest's ([`crate::guest_return`]); whatever frame is returned to
/// in ring 3 afterwards is recorded for the next one.
#[no_mangle]
pub(crate) extern "C" fn trap_dispatch(frame: &mut TrapFrame, fx: &mut crate::guest::FxArea) {
    use crate::guest::{call_exit_hook, GuestExit, SYSCALL_VECTOR};
    use crate::guest_return as ret;
    if frame.vector == SYSCALL_VECTOR {
        // A 64-bit SYSCALL from ring 3 (every hypercall): straight to the hook, then back
        // to the guest as below.
        if !call_exit_hook(GuestExit::Syscall, frame, fx) {
            fatal_trap(frame);
        }
        back_to_guest(frame);
        return;
    }
    let at_guest_iret = !frame.from_guest() && ret::is_guest_iret(frame.rip);
    let to_guest = frame.from_guest() || at_guest_iret;
    if at_guest_iret {
        let at_iret = *frame;
        ret::take_guest_frame(frame);
        if ret::is_return_fault(frame.vector) {
            if !call_exit_hook(GuestExit::ReturnFault(frame.vector as u8), frame, fx) {
                fatal_trap(&at_iret);
            }
        } else {
            // An NMI or machine check just before the guest resumed: handled as interrupting
            // the guest, which is then returned to from here.
            dispatch(frame, fx);
        }
    } else {
        dispatch(frame, fx);
    }
    if to_guest {
        back_to_guest(frame);
    }
}

/// Back to a guest, through the exit path's guest `iretq`: RPL 3 selectors, so that whatever
/// the exit hook left in the frame it can only be ring 3; the frame recorded as the one being
/// returned to.
fn back_to_guest(frame: &mut TrapFrame) {
    frame.cs |= 3;
    frame.ss |= 3;
    crate::guest_return::record(frame);
}

/// Handles one trap or interrupt (see [`trap_dispatch`]).
fn dispatch(frame: &mut TrapFrame, fx: &mut crate::guest::FxArea) {
    use crate::guest::{call_exit_hook, GuestExit, SYSCALL_VECTOR};
    let vector = frame.vector;
    if vector >= SYSCALL_VECTOR {
        if !call_exit_hook(GuestExit::Syscall, frame, fx) {
            fatal_trap(frame);
        }
        return;
    }
    if vector == 2 {
        if STOPPING.load(Ordering::SeqCst) {
            crate::cpu::halt_forever();
        }
        // Not through the GS base: the NMI may have come between an exit's `swapgs` and
        // its `iretq`, with the guest's base in GS.
        match percpu::cpu_index_by_apic() {
            Some(cpu) => xprintln!("NMI received on CPU{} (ignored)", cpu),
            None => xprintln!("NMI received (ignored)"),
        }
        return;
    }
    // `int $0x80` from a guest (a DPL-3 gate) is a software trap, not an interrupt.
    if (vector < 32 || vector == SOFT_INT80) && frame.from_guest() {
        if !call_exit_hook(GuestExit::Exception(vector as u8), frame, fx) {
            fatal_trap(frame);
        }
        return;
    }
    if matches!(vector, 11..=14) {
        // A guest data selector that no longer loads (`segments::load_data_selectors`).
        if let Some(fixup) = crate::segments::load_fixup(frame.rip) {
            frame.rip = fixup;
            return;
        }
    }
    if vector == 13 {
        if let Some(fixup) = crate::cpu::rdmsr_fixup(frame.rip) {
            frame.rip = fixup;
            return;
        }
    }
    if vector == 1 {
        // A guest's data breakpoint on a buffer the hypervisor accessed for it (Xen's
        // `do_debug` ignores watchpoints that trigger within Xen): a trap, RIP is already
        // past the access; DR6 is reset for the guest's next one.
        crate::cpu::take_dr6();
        return;
    }
    if vector < 32 {
        let h = EXCEPTION_HOOK.load(Ordering::Acquire);
        if h != NO_HANDLER {
            // SAFETY: only `set_exception_hook` stores non-zero values, and it stores
            // `ExceptionHook`s.
            let hook: ExceptionHook = unsafe { core::mem::transmute::<usize, ExceptionHook>(h) };
            if hook(frame) {
                return;
            }
        }
        fatal_trap(frame);
    }
    percpu::this().irqs.fetch_add(1, Ordering::Relaxed);
    let h = IRQ_HANDLERS[vector as usize].load(Ordering::Acquire);
    if h == NO_HANDLER {
        if vector != u64::from(crate::lapic::SPURIOUS_VECTOR) {
            crate::lapic::eoi();
        }
        if frame.from_guest() {
            call_exit_hook(GuestExit::Interrupt(vector as u8), frame, fx);
        }
        return;
    }
    // SAFETY: only `register_irq` stores non-zero values, and it stores `IrqHandler`s.
    let handler: IrqHandler = unsafe { core::mem::transmute::<usize, IrqHandler>(h) };
    handler(vector as u8, frame);
    if frame.from_guest() {
        call_exit_hook(GuestExit::Interrupt(vector as u8), frame, fx);
    }
}

/// The stack whose guard page a hypervisor #PF (not present, at CR2) or #DF (the
/// interrupted RSP just below a stack) hit: an overflow.
fn stack_overflow(frame: &TrapFrame) -> Option<(usize, crate::stacks::StackKind)> {
    match frame.vector {
        14 if frame.error_code & 1 == 0 => crate::stacks::overflow_at(crate::cpu::read_cr2()),
        8 => crate::stacks::overflow_at(frame.rsp.wrapping_sub(8)),
        _ => None,
    }
}

fn fatal_trap(frame: &TrapFrame) -> ! {
    let repaired = percpu::repair_gs_base();
    begin_fatal();
    let cpu = percpu::cpu_index();
    if repaired {
        xprintln!(
            "CPU{}: the GS base did not point at this CPU's per-CPU data when it trapped",
            cpu
        );
    }
    let name = exception_name(frame.vector);
    let overflow = stack_overflow(frame);
    if let Some((owner, kind)) = overflow {
        xprintln!("stack overflow on CPU{} ({})", owner, kind.name());
    }
    xprintln!(
        "----[ DualVisor-{}  x86_64  debug=n ]----",
        env!("CARGO_PKG_VERSION")
    );
    xprintln!(
        "FATAL TRAP: vector {} ({}), error code {:#06x}, on CPU{}",
        frame.vector,
        name,
        frame.error_code,
        cpu
    );
    dump_registers(frame);
    dump_call_trace(frame.rip, frame.rbp);
    xprintln!("****************************************");
    xprintln!("Panic on CPU {}:", cpu);
    xprintln!("FATAL TRAP: vector = {} ({})", frame.vector, name);
    if let Some((owner, kind)) = overflow {
        xprintln!("stack overflow on CPU{} ({})", owner, kind.name());
    }
    if frame.vector == 14 {
        xprintln!(
            "[error_code={:04x}] faulting linear address: {:016x}",
            frame.error_code,
            crate::cpu::read_cr2()
        );
    }
    xprintln!("****************************************");
    finish_fatal()
}

fn dump_registers(f: &TrapFrame) {
    let ctx = if f.cs & 3 == 0 { "hypervisor" } else { "guest" };
    xprintln!("CPU:    {}", percpu::cpu_index());
    xprintln!("RIP:    {:04x}:[<{:016x}>]", f.cs, f.rip);
    xprintln!("RFLAGS: {:016x}   CONTEXT: {}", f.rflags, ctx);
    xprintln!(
        "rax: {:016x}   rbx: {:016x}   rcx: {:016x}",
        f.rax,
        f.rbx,
        f.rcx
    );
    xprintln!(
        "rdx: {:016x}   rsi: {:016x}   rdi: {:016x}",
        f.rdx,
        f.rsi,
        f.rdi
    );
    xprintln!(
        "rbp: {:016x}   rsp: {:016x}   r8:  {:016x}",
        f.rbp,
        f.rsp,
        f.r8
    );
    xprintln!(
        "r9:  {:016x}   r10: {:016x}   r11: {:016x}",
        f.r9,
        f.r10,
        f.r11
    );
    xprintln!(
        "r12: {:016x}   r13: {:016x}   r14: {:016x}",
        f.r12,
        f.r13,
        f.r14
    );
    xprintln!(
        "r15: {:016x}   cr0: {:016x}   cr4: {:016x}",
        f.r15,
        crate::cpu::read_cr0(),
        crate::cpu::read_cr4()
    );
    xprintln!(
        "cr3: {:016x}   cr2: {:016x}",
        crate::cpu::read_cr3(),
        crate::cpu::read_cr2()
    );
    xprintln!(
        "ds: 0010   es: 0010   fs: 0000   gs: 0000   ss: {:04x}   cs: {:04x}",
        f.ss,
        f.cs
    );
}

/// Prints `Xen call trace:` by walking the frame-pointer chain from `rbp`.
pub fn dump_call_trace(rip: u64, mut rbp: u64) {
    xprintln!("Xen call trace:");
    xprintln!("   [<{:016x}>] (faulting address)", rip);
    for _ in 0..32 {
        if rbp == 0
            || !rbp.is_multiple_of(8)
            || !crate::layout::in_image(rbp)
            || !crate::layout::in_image(rbp + 15)
        {
            break;
        }
        // SAFETY: `rbp` is 8-aligned and [rbp, rbp+16) lies inside the mapped image (boot
        // stack, BSS heap stacks), so both words are readable.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        xprintln!("   [<{:016x}>]", ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

/// Starts a crash: the console stops waiting for locks and the other CPUs are stopped.
pub fn begin_fatal() {
    crate::console::set_panicking();
    if !STOPPING.swap(true, Ordering::SeqCst) {
        crate::lapic::stop_other_cpus();
    }
}

/// Ends a crash report with the configured action; never returns.
pub fn finish_fatal() -> ! {
    match fatal_action() {
        FatalAction::Halt => {
            xprintln!("Manual reset required ('noreboot' specified)");
            crate::cpu::halt_forever()
        }
        FatalAction::DebugExit(code) => crate::platform::debug_exit(code),
        FatalAction::Reset => {
            xprintln!("Resetting");
            crate::platform::reset()
        }
    }
}
