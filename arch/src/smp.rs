//! CPU set-up shared by the boot CPU and application processors, and AP bring-up
//! (INIT-SIPI-SIPI through the real-mode trampoline in boot.rs).

use crate::boot::AP_TRAMPOLINE_PADDR;
use crate::gdt::IST_STACK_SIZE;
use crate::layout::phys_to_virt;
use crate::percpu::{self, MAX_CPUS};
use crate::stacks::{self, StackKind};
use alloc::alloc::{alloc_zeroed, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Bytes of each AP's main stack.
pub const AP_STACK_SIZE: usize = 256 * 1024;

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_tramp_cr3: u8;
    static ap_tramp_efer: u8;
    static ap_tramp_stack: u8;
    static ap_tramp_entry: u8;
    static ap_tramp_arg: u8;
    static boot_efer: u32;
}

/// Allocates a `size`-byte stack for CPU `cpu`'s `kind` stack and returns its top as
/// allocated and its top in the guarded stack area (the same as allocated before the
/// hypervisor page tables exist; [`guard_boot_cpu_stacks`] moves the boot CPU's later).
pub fn alloc_stack(cpu: usize, kind: StackKind, size: usize) -> (u64, u64) {
    let layout = Layout::from_size_align(size, 4096).expect("stack layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        panic!("out of memory allocating a {size}-byte CPU stack");
    }
    let top = p as u64 + size as u64;
    match stacks::guard(cpu, kind, p as u64, size) {
        Some(guarded) => (top, guarded),
        None => {
            stacks::record(cpu, kind, p as u64, size);
            (top, top)
        }
    }
}

/// Loads this CPU's GDT/TSS (with fresh IST stacks), the IDT and its per-CPU slot.
pub fn setup_cpu(index: usize, apic_id: u32) {
    percpu::install(index, apic_id);
    let mut ist = [0u64; 7];
    for (i, slot) in ist.iter_mut().take(5).enumerate() {
        *slot = alloc_stack(index, StackKind::Ist(i as u8 + 1), IST_STACK_SIZE).1;
    }
    crate::gdt::load(index, ist);
    crate::idt::load();
    crate::guest::init_cpu();
    crate::xstate::init_cpu();
}

/// The function each AP runs once it is set up (its logical index as argument).
pub type ApMain = fn(usize) -> !;

static AP_MAIN: AtomicUsize = AtomicUsize::new(0);

/// Entry of an AP from the trampoline (64-bit, boot page tables, SSE on, own stack): switches
/// to the hypervisor tables and moves to the guarded alias of its stack, which the boot
/// tables do not map.
#[no_mangle]
extern "C" fn ap_entry(index: u64) -> ! {
    crate::paging::switch_to_hypervisor_tables();
    let top = percpu::get(index as usize).map_or(0, |pc| pc.stack_hi.load(Ordering::Relaxed));
    if top == 0 {
        ap_main_entry(index)
    }
    // SAFETY: `top` is the top of the guarded alias of the stack we run on (set by
    // `boot_aps`, mapped in the tables just loaded); nothing on the current stack is used
    // again, and a zero return address ends call traces.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "push 0",
            "jmp {f}",
            top = in(reg) top,
            f = sym ap_main_entry,
            in("rdi") index,
            options(noreturn)
        )
    }
}

/// The rest of an AP's start on its guarded main stack.
extern "C" fn ap_main_entry(index: u64) -> ! {
    let index = index as usize;
    setup_cpu(index, crate::lapic::id());
    crate::lapic::init_cpu();
    percpu::mark_online();
    let f = AP_MAIN.load(Ordering::Acquire);
    // SAFETY: `boot_aps` stores an `ApMain` before starting any AP.
    let ap_main: ApMain = unsafe { core::mem::transmute::<usize, ApMain>(f) };
    ap_main(index)
}

fn trampoline_symbol_offset(sym: *const u8) -> usize {
    sym as usize - core::ptr::addr_of!(ap_trampoline_start) as usize
}

/// Starts every AP in `apic_ids` (the boot CPU's id excluded), at most `MAX_CPUS` in all,
/// one at a time; returns how many CPUs are online afterwards (boot CPU included).
pub fn boot_aps(apic_ids: &[u32], ap_main: ApMain) -> usize {
    AP_MAIN.store(ap_main as usize, Ordering::Release);
    let start = core::ptr::addr_of!(ap_trampoline_start) as usize;
    let end = core::ptr::addr_of!(ap_trampoline_end) as usize;
    let len = end - start;
    let dst = phys_to_virt(AP_TRAMPOLINE_PADDR) as *mut u8;
    // SAFETY: the trampoline page (0x8000) is reserved for this purpose and mapped by the
    // direct map; the source is the image's read-only copy of the trampoline.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst, len) };
    let put = |sym: *const u8, value: u64| {
        let off = trampoline_symbol_offset(sym);
        // SAFETY: `off` is the offset of an 8-byte parameter slot inside the copied trampoline.
        unsafe { core::ptr::write_volatile(dst.add(off) as *mut u64, value) };
    };
    // SAFETY: reading a 32-bit value the boot assembly stored before entering Rust.
    let efer = u64::from(unsafe { core::ptr::read_volatile(core::ptr::addr_of!(boot_efer)) });
    put(
        core::ptr::addr_of!(ap_tramp_cr3),
        crate::paging::ap_boot_cr3(),
    );
    put(core::ptr::addr_of!(ap_tramp_efer), efer);
    put(
        core::ptr::addr_of!(ap_tramp_entry),
        ap_entry as *const () as u64,
    );

    let bsp = crate::lapic::id();
    let mut next_index = 1;
    for &apic in apic_ids {
        if apic == bsp {
            continue;
        }
        if next_index >= MAX_CPUS {
            log::warn!("Warning: more than {MAX_CPUS} CPUs; the rest stay offline");
            break;
        }
        let (stack_top, guarded_top) = alloc_stack(next_index, StackKind::Main, AP_STACK_SIZE);
        if let Some(pc) = percpu::get(next_index) {
            pc.stack_lo
                .store(guarded_top - AP_STACK_SIZE as u64, Ordering::Relaxed);
            pc.stack_hi.store(guarded_top, Ordering::Relaxed);
        }
        put(core::ptr::addr_of!(ap_tramp_stack), stack_top);
        put(core::ptr::addr_of!(ap_tramp_arg), next_index as u64);
        let before = percpu::nr_online();
        crate::lapic::start_ap(apic, AP_TRAMPOLINE_PADDR);
        // Wait up to ~1 s (TSC-timed) for the AP to report in.
        let mut waited = 0;
        while percpu::nr_online() == before && waited < 100_000 {
            crate::lapic::udelay(10);
            waited += 1;
        }
        if percpu::nr_online() == before {
            log::warn!("Warning: CPU with APIC id {apic} did not respond to INIT-SIPI-SIPI");
            continue;
        }
        next_index += 1;
    }
    percpu::nr_online()
}

/// A task a CPU runs from its idle loop (it never returns to idle).
pub type Task = fn() -> !;

static TASKS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Hands `task` to CPU `index` and wakes it; false if that CPU is not online.
pub fn assign(index: usize, task: Task) -> bool {
    let Some(pc) = percpu::get(index) else {
        return false;
    };
    if !pc.online.load(Ordering::Acquire) {
        return false;
    }
    TASKS[index].store(task as usize, Ordering::Release);
    if index != percpu::cpu_index() {
        crate::lapic::send_ipi(
            pc.apic_id.load(Ordering::Relaxed),
            crate::lapic::WAKE_VECTOR,
        );
    }
    true
}

/// The task assigned to the running CPU, if any (taken: it runs once).
pub fn take_assignment() -> Option<Task> {
    let t = TASKS[percpu::cpu_index()].swap(0, Ordering::AcqRel);
    if t == 0 {
        return None;
    }
    // SAFETY: only `assign` stores non-zero values, and it stores `Task`s.
    Some(unsafe { core::mem::transmute::<usize, Task>(t) })
}

/// Interrupts CPU `index` (a no-op interrupt): wakes it from any `hlt`, and makes a CPU
/// running a guest enter the hypervisor. Also records the kick for [`halt_until_kicked`].
pub fn kick(index: usize) {
    if let Some(flag) = KICKED.get(index) {
        flag.store(true, Ordering::SeqCst);
    }
    send_wake(index);
}

/// Wakes CPU `index` if it waits in [`halt_until_kicked`]: the kick is recorded, and the IPI
/// is sent only if that CPU is halting (or about to). Under QEMU TCG an IPI costs the
/// sender an emulated LAPIC write and the receiver an interrupt and an EOI, all under
/// QEMU's global lock; a CPU that is busy or still spinning on its condition needs none.
pub fn wake_waiter(index: usize) {
    let (Some(flag), Some(sleeping)) = (KICKED.get(index), SLEEPING.get(index)) else {
        return;
    };
    if flag.swap(true, Ordering::SeqCst) {
        // A kick is pending already: the waiter has not looked since, so it either sees the
        // flag before it halts or is being woken by the IPI whoever set it sent. A second
        // IPI would only make QEMU take its global lock again (the leader kicked each waiter
        // twice per round, before either had woken).
        return;
    }
    // Pairs with the fence in `halt_until_kicked` (Dekker): either the waiter sees `KICKED`
    // and does not halt, or this sees `SLEEPING` and sends the IPI.
    core::sync::atomic::fence(Ordering::SeqCst);
    if sleeping.load(Ordering::SeqCst) {
        send_wake(index);
    }
}

/// Sends the wake IPI to CPU `index` whether it halts or not (see `tlb`).
pub fn send_wake_ipi(index: usize) {
    send_wake(index);
}

fn send_wake(index: usize) {
    if let Some(pc) = percpu::get(index) {
        let me = percpu::cpu_index();
        if index != me && pc.online.load(Ordering::Acquire) {
            WAKE_IPIS[me].fetch_add(1, Ordering::Relaxed);
            crate::lapic::send_ipi(
                pc.apic_id.load(Ordering::Relaxed),
                crate::lapic::WAKE_VECTOR,
            );
        }
    }
}

/// Per CPU: `hlt`s waiting for a kick ([`halt_until_kicked`]), for [`report_wakeups`].
static HALTS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: wake IPIs it sent ([`wake_waiter`], [`send_wake_ipi`]).
static WAKE_IPIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Prints, per online CPU, how often it halted waiting for a kick and how many wake IPIs it
/// sent: under TCG each wake of a halted CPU costs tens of microseconds, so these counts per
/// lockstep transaction are what its round trip costs.
pub fn report_wakeups() {
    let mut line = alloc::string::String::from("wake-ups:");
    for (i, (h, w)) in HALTS.iter().zip(WAKE_IPIS.iter()).enumerate() {
        let online = percpu::get(i).is_some_and(|pc| pc.online.load(Ordering::Acquire));
        if online {
            use core::fmt::Write;
            let _ = write!(
                line,
                " CPU{} halts {} IPIs sent {};",
                i,
                h.load(Ordering::Relaxed),
                w.load(Ordering::Relaxed)
            );
        }
    }
    crate::xprintln!("{}", line.trim_end_matches(';'));
}

/// Per CPU: a [`kick`] arrived since the CPU last looked ([`halt_until_kicked`]).
static KICKED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Per CPU: inside [`halt_until_kicked`], between announcing the halt and waking.
static SLEEPING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Halts this CPU until an interrupt, unless it was kicked since it last looked: the waiter
/// checks its condition, then calls this. A kick that lands between that check and the `hlt`
/// is not lost (it would otherwise be handled with interrupts on and the `hlt` would wait
/// for the next timer tick — 10 ms, measured as a 500x slower lockstep round trip): a kick
/// before the `cli` leaves the flag set, one after it stays pending until `sti`, whose
/// one-instruction shadow lets the `hlt` see it. Returns with interrupts enabled.
pub fn halt_until_kicked() {
    halt_unless_kicked(false);
}

/// As [`halt_until_kicked`], for a waiter inside a handler that runs with interrupts off
/// (the lockstep leader in a guest exit): interrupts are enabled only for the `hlt` and are
/// off again on return. Returns `false` without waiting when this CPU is on its interrupt
/// stack (an interrupt would overwrite the waiter's frames): the caller keeps polling.
pub fn halt_in_handler_until_kicked() -> bool {
    if crate::gdt::on_irq_stack() {
        return false;
    }
    halt_unless_kicked(true);
    true
}

fn halt_unless_kicked(in_handler: bool) {
    let me = percpu::cpu_index();
    let (Some(kicked), Some(sleeping)) = (KICKED.get(me), SLEEPING.get(me)) else {
        return;
    };
    crate::cpu::disable_interrupts();
    sleeping.store(true, Ordering::SeqCst);
    core::sync::atomic::fence(Ordering::SeqCst);
    if !kicked.swap(false, Ordering::SeqCst) {
        HALTS[me].fetch_add(1, Ordering::Relaxed);
        if in_handler {
            crate::cpu::halt_with_interrupts_window();
        } else {
            crate::cpu::enable_and_halt();
        }
    }
    sleeping.store(false, Ordering::SeqCst);
    // A swap, not a store: it reads the last kicker's write, so whatever that kicker did
    // before kicking (and a later kicker that found the flag set and sent nothing) is
    // visible to the caller's next look at its condition.
    kicked.swap(false, Ordering::SeqCst);
    if !in_handler {
        crate::cpu::enable_interrupts();
    }
}

/// Abandons the current stack (a trap frame, say) and runs `f` on the top of this CPU's own
/// main stack: how a CPU goes idle from a guest exit.
pub fn reset_stack_and_jump(f: fn() -> !) -> ! {
    let top = percpu::this().stack_hi.load(Ordering::Relaxed);
    if top == 0 {
        f()
    }
    // SAFETY: `top` is the top of this CPU's main stack, which nothing below us uses any more
    // (every caller is abandoning its context); a zero return address ends call traces.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "push 0",
            "jmp {f}",
            top = in(reg) top,
            f = in(reg) f,
            options(noreturn)
        )
    }
}

/// Records the boot CPU's main stack (the boot stack) for `reset_stack_and_jump`.
pub fn record_boot_stack() {
    extern "C" {
        static boot_stack_top: u8;
    }
    let top = core::ptr::addr_of!(boot_stack_top) as u64;
    let pc = percpu::this();
    pc.stack_hi.store(top, Ordering::Relaxed);
    let size = crate::boot::BOOT_STACK_SIZE;
    pc.stack_lo.store(top - size as u64, Ordering::Relaxed);
    stacks::record(0, StackKind::Main, top - size as u64, size);
}

/// Moves the boot CPU's IST and SYSCALL stacks, allocated before the hypervisor page tables
/// existed, to their guarded aliases (its main stack, the boot stack, has its guard page in
/// the image). Runs once, on the boot CPU, after the tables are built and outside any trap.
pub fn guard_boot_cpu_stacks() {
    for slot in 1..=5u8 {
        let top = crate::gdt::ist_top(0, slot);
        let lo = top - IST_STACK_SIZE as u64;
        if let Some(g) = stacks::guard(0, StackKind::Ist(slot), lo, IST_STACK_SIZE) {
            crate::gdt::set_ist_top(0, slot, g);
        }
    }
    let pc = percpu::this();
    let top = pc.syscall_stack_top.load(Ordering::Relaxed);
    let size = crate::guest::SYSCALL_STACK_SIZE;
    if let Some(g) = stacks::guard(0, StackKind::Syscall, top - size as u64, size) {
        pc.syscall_stack_top.store(g, Ordering::Relaxed);
    }
}
