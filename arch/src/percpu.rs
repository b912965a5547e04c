//! Per-CPU data: one slot per logical CPU, found through the GS base on the running CPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// The most CPUs DualVisor brings up.
pub const MAX_CPUS: usize = 64;

/// State owned by one CPU (mostly written by that CPU only).
#[repr(C, align(64))]
pub struct PerCpu {
    /// Address of this structure (read through `gs:[0]`).
    self_ptr: AtomicU64,
    /// `gs:[8]`: the guest RSP saved by the SYSCALL entry.
    syscall_scratch: AtomicU64,
    /// `gs:[16]`: top of the stack the SYSCALL entry switches to.
    pub syscall_stack_top: AtomicU64,
    /// `gs:[24]`: non-zero while the running vCPU has its virtual CR0.TS set (the exit path
    /// sets the hardware TS just before returning to it; every entry clears it).
    pub guest_ts: AtomicU64,
    /// Logical CPU index (0 = boot CPU).
    pub index: AtomicU32,
    /// Local APIC id.
    pub apic_id: AtomicU32,
    /// Set by the CPU itself once it runs its idle loop.
    pub online: AtomicBool,
    /// LAPIC timer interrupts taken.
    pub timer_ticks: AtomicU64,
    /// Interrupts taken (all vectors ≥ 32).
    pub irqs: AtomicU64,
    /// Call-function IPIs taken.
    pub ipis: AtomicU64,
    /// Heap arena this CPU allocates from (see `heap`).
    pub arena: core::sync::atomic::AtomicUsize,
    /// The frame `guest::enter_guest` returns to a guest from.
    entry_frame: core::cell::UnsafeCell<crate::trap::TrapFrame>,
    /// RIP, CS, RFLAGS, RSP, SS of the guest frame this CPU last started to return to (see
    /// `guest_return`): what a fault on that return reports as the guest's.
    pub(crate) guest_return: [AtomicU64; 5],
    /// Lowest and highest address of this CPU's main stack (for stack traces).
    pub stack_lo: AtomicU64,
    /// See `stack_lo`.
    pub stack_hi: AtomicU64,
    /// The XCR0 this CPU holds (see `xstate`; 0 before XSAVE is set up on it).
    pub xcr0: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            self_ptr: AtomicU64::new(0),
            syscall_scratch: AtomicU64::new(0),
            syscall_stack_top: AtomicU64::new(0),
            guest_ts: AtomicU64::new(0),
            index: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            timer_ticks: AtomicU64::new(0),
            irqs: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            arena: core::sync::atomic::AtomicUsize::new(0),
            entry_frame: core::cell::UnsafeCell::new(crate::trap::TrapFrame::ZERO),
            guest_return: [const { AtomicU64::new(0) }; 5],
            stack_lo: AtomicU64::new(0),
            stack_hi: AtomicU64::new(0),
            xcr0: AtomicU64::new(0),
        }
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const PERCPU_INIT: PerCpu = PerCpu::new();
static PERCPU: [PerCpu; MAX_CPUS] = [PERCPU_INIT; MAX_CPUS];
static NR_ONLINE: AtomicU32 = AtomicU32::new(0);

const IA32_GS_BASE: u32 = 0xC000_0101;
const _: () = assert!(core::mem::offset_of!(PerCpu, syscall_scratch) == 8);
const _: () = assert!(core::mem::offset_of!(PerCpu, syscall_stack_top) == 16);
const _: () = assert!(core::mem::offset_of!(PerCpu, guest_ts) == 24);
const _: () = assert!(core::mem::offset_of!(PerCpu, index) == 32);

/// Points this CPU's GS base at slot `index` and records its identity.
pub fn install(index: usize, apic_id: u32) {
    let pc = &PERCPU[index];
    let addr = pc as *const PerCpu as u64;
    pc.self_ptr.store(addr, Ordering::Relaxed);
    pc.index.store(index as u32, Ordering::Relaxed);
    pc.apic_id.store(apic_id, Ordering::Relaxed);
    // SAFETY: the GS base is reserved for the per-CPU pointer; `addr` is a static slot.
    unsafe { crate::cpu::wrmsr(IA32_GS_BASE, addr) }
}

// SAFETY: every field but `entry_frame` is atomic; `entry_frame` is only touched by its own
// CPU with interrupts disabled (see `guest_entry_frame`).
unsafe impl Sync for PerCpu {}

impl PerCpu {
    /// This CPU's guest-entry frame buffer. Only the owning CPU may use it, with interrupts off.
    pub(crate) fn guest_entry_frame(&self) -> *mut crate::trap::TrapFrame {
        self.entry_frame.get()
    }
}

/// The running CPU's slot.
pub fn this() -> &'static PerCpu {
    let addr: u64;
    // SAFETY: `install` ran on every CPU before any code that calls `this`; gs:[0] holds the
    // slot's own address, which is a `&'static PerCpu`.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) addr, options(nostack, readonly, preserves_flags))
    };
    let base = PERCPU.as_ptr() as u64;
    let i = addr.wrapping_sub(base) / core::mem::size_of::<PerCpu>() as u64;
    PERCPU.get(i as usize).unwrap_or(&PERCPU[0])
}

/// The installed slot of the CPU with local APIC id `id`, found without the GS base.
fn slot_of_apic(id: u32) -> Option<&'static PerCpu> {
    PERCPU.iter().find(|pc| {
        pc.self_ptr.load(Ordering::Relaxed) != 0 && pc.apic_id.load(Ordering::Relaxed) == id
    })
}

/// The running CPU's logical index found by its local APIC id, not through the GS base: for
/// paths that may run while GS holds a guest's base (an NMI between an exit's `swapgs` and
/// its `iretq`). None before the CPU installed its slot.
pub fn cpu_index_by_apic() -> Option<usize> {
    index_of_apic(crate::lapic::id())
}

fn index_of_apic(id: u32) -> Option<usize> {
    slot_of_apic(id).map(|pc| pc.index.load(Ordering::Relaxed) as usize)
}

/// Makes the GS base point at this CPU's slot again if it does not (found by the local APIC
/// id, which needs no per-CPU data): the first thing a crash report does, so that a fault
/// taken while the GS base held something else (a guest's) is reported instead of faulting
/// again on every per-CPU access. Returns whether it had to repair it.
pub fn repair_gs_base() -> bool {
    let held = crate::cpu::rdmsr(IA32_GS_BASE);
    if PERCPU
        .iter()
        .any(|pc| pc.self_ptr.load(Ordering::Relaxed) == held && held != 0)
    {
        return false;
    }
    let Some(pc) = slot_of_apic(crate::lapic::id()) else {
        return false;
    };
    // SAFETY: the GS base is reserved for the per-CPU pointer, and `pc` is the slot `install`
    // set up for the CPU with this local APIC id.
    unsafe { crate::cpu::wrmsr(IA32_GS_BASE, pc as *const PerCpu as u64) };
    true
}

/// The running CPU's logical index: one load through the GS base (it is asked several
/// times on every guest exit; finding the slot first, as [`this`] does, took ~10
/// instructions each time).
pub fn cpu_index() -> usize {
    let index: u32;
    // SAFETY: as in `this`: the GS base is the running CPU's slot once `install` ran, and
    // `index` lies at INDEX_OFFSET in it (repr(C), checked below); a plain read.
    unsafe {
        core::arch::asm!(
            "mov {:e}, gs:[{off}]",
            out(reg) index,
            off = const INDEX_OFFSET,
            options(nostack, readonly, preserves_flags)
        )
    };
    // Never past the slots, whatever the GS base holds.
    (index as usize).min(MAX_CPUS - 1)
}

/// Where `index` lies in a slot (read by [`cpu_index`] through the GS base).
const INDEX_OFFSET: usize = core::mem::offset_of!(PerCpu, index);

/// Slot `index` (any CPU's).
pub fn get(index: usize) -> Option<&'static PerCpu> {
    PERCPU.get(index)
}

/// Marks the running CPU online.
pub fn mark_online() {
    this().online.store(true, Ordering::Release);
    NR_ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// How many CPUs are online.
pub fn nr_online() -> usize {
    NR_ONLINE.load(Ordering::Acquire) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_is_found_by_its_apic_id_among_installed_slots() {
        let pc = &PERCPU[9];
        pc.apic_id.store(77, Ordering::Relaxed);
        pc.index.store(9, Ordering::Relaxed);
        assert_eq!(index_of_apic(77), None, "not installed yet");
        pc.self_ptr
            .store(pc as *const PerCpu as u64, Ordering::Relaxed);
        assert_eq!(index_of_apic(77), Some(9));
        assert_eq!(index_of_apic(78), None);
    }
}
