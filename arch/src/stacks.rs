//! Guarded per-CPU stacks: every CPU's main (AP), SYSCALL and IST stacks are mapped page by
//! page into its block of the stack area (`paging::STACK_AREA_BASE`) with an unmapped guard
//! page below each, and the boot CPU's main stack has the unmapped `boot_stack_guard` page
//! under it. An overflow then takes a #PF (on an IST stack) that [`overflow_at`] names,
//! instead of silently corrupting the neighbouring stack.
//!
//! Every stack starts zeroed (heap stacks are allocated zeroed, the boot stack is in .bss),
//! so the lowest non-zero word tells how deep it has ever been used: [`high_water`], printed
//! for every CPU when the hardware domain goes down ([`report`]), with a warning for a stack
//! more than three quarters used.

use crate::gdt::{IST_DOUBLE_FAULT, IST_EXCEPTION, IST_IRQ, IST_MCE, IST_NMI};
use crate::paging::{set_stack_area_page, STACK_AREA_BASE, STACK_AREA_CPU_PAGES};
use crate::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};

/// Which of a CPU's stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKind {
    /// The main stack (the boot stack on CPU0, the AP stack elsewhere).
    Main,
    /// The SYSCALL/hypercall entry stack.
    Syscall,
    /// IST slot `n` (1-based, see `gdt::IST_*`).
    Ist(u8),
}

/// Stack pages each kind may have: 256 KiB for the main and SYSCALL stacks, 128 KiB for each
/// IST stack (the sizes in use are `smp::AP_STACK_SIZE`, `guest::SYSCALL_STACK_SIZE` and
/// `gdt::IST_STACK_SIZE`).
const MAIN_PAGES: usize = 64;
const SYSCALL_PAGES: usize = 64;
const IST_PAGES: usize = 32;
const IST_SLOTS: usize = 5;

const _: () =
    assert!(2 + MAIN_PAGES + SYSCALL_PAGES + IST_SLOTS * (IST_PAGES + 1) <= STACK_AREA_CPU_PAGES);

impl StackKind {
    /// The guard page's index in a CPU's block and how many stack pages follow it.
    fn slot(self) -> Option<(usize, usize)> {
        match self {
            StackKind::Main => Some((0, MAIN_PAGES)),
            StackKind::Syscall => Some((1 + MAIN_PAGES, SYSCALL_PAGES)),
            StackKind::Ist(n) if (1..=IST_SLOTS as u8).contains(&n) => Some((
                2 + MAIN_PAGES + SYSCALL_PAGES + (usize::from(n) - 1) * (IST_PAGES + 1),
                IST_PAGES,
            )),
            StackKind::Ist(_) => None,
        }
    }

    /// What the fatal message calls this stack.
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Main => "main stack",
            StackKind::Syscall => "SYSCALL stack",
            StackKind::Ist(IST_EXCEPTION) => "exception IST stack",
            StackKind::Ist(IST_DOUBLE_FAULT) => "double-fault IST stack",
            StackKind::Ist(IST_NMI) => "NMI IST stack",
            StackKind::Ist(IST_MCE) => "machine-check IST stack",
            StackKind::Ist(IST_IRQ) => "interrupt IST stack",
            StackKind::Ist(_) => "IST stack",
        }
    }

    /// Short name for the stack-use line.
    fn short(self) -> &'static str {
        match self {
            StackKind::Main => "main",
            StackKind::Syscall => "SYSCALL",
            StackKind::Ist(IST_EXCEPTION) => "exception",
            StackKind::Ist(IST_DOUBLE_FAULT) => "double-fault",
            StackKind::Ist(IST_NMI) => "NMI",
            StackKind::Ist(IST_MCE) => "MCE",
            StackKind::Ist(IST_IRQ) => "IRQ",
            StackKind::Ist(_) => "IST",
        }
    }

    /// Index into a CPU's row of [`EXTENTS`].
    fn index(self) -> usize {
        match self {
            StackKind::Main => 0,
            StackKind::Syscall => 1,
            StackKind::Ist(n) => 1 + usize::from(n).min(IST_SLOTS),
        }
    }

    fn all() -> [StackKind; 2 + IST_SLOTS] {
        [
            StackKind::Main,
            StackKind::Syscall,
            StackKind::Ist(1),
            StackKind::Ist(2),
            StackKind::Ist(3),
            StackKind::Ist(4),
            StackKind::Ist(5),
        ]
    }
}

/// Each CPU's stacks as last placed: lowest address (0: none recorded) and size in bytes,
/// indexed by [`StackKind::index`].
static EXTENTS: [[(AtomicU64, AtomicU64); 2 + IST_SLOTS]; MAX_CPUS] =
    [const { [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 2 + IST_SLOTS] }; MAX_CPUS];

/// Records that CPU `cpu`'s `kind` stack is the `bytes` of zeroed, mapped memory from `lo`
/// (the address it is used at), for [`high_water`]. The memory must stay mapped for good.
pub fn record(cpu: usize, kind: StackKind, lo: u64, bytes: usize) {
    if let Some(row) = EXTENTS.get(cpu) {
        let (l, n) = &row[kind.index()];
        l.store(lo, Ordering::Relaxed);
        n.store(bytes as u64, Ordering::Release);
    }
}

/// Leading zero words of a stack read from its lowest address up: the part never used.
fn untouched_words(words: impl Iterator<Item = u64>) -> usize {
    words.take_while(|&w| w == 0).count()
}

/// How many bytes of CPU `cpu`'s `kind` stack have ever been used, and its size (None: no
/// such stack recorded).
pub fn high_water(cpu: usize, kind: StackKind) -> Option<(usize, usize)> {
    let (l, n) = &EXTENTS.get(cpu)?[kind.index()];
    let bytes = n.load(Ordering::Acquire) as usize;
    let lo = l.load(Ordering::Relaxed);
    if lo == 0 || bytes == 0 {
        return None;
    }
    let words = (0..bytes / 8).map(|i| {
        let p = (lo + 8 * i as u64) as *const u64;
        // SAFETY: [lo, lo + bytes) was recorded as a stack that stays mapped for the
        // hypervisor's lifetime; the read is volatile because the owning CPU may be writing
        // its stack right now (a stale value only moves the mark by a word).
        unsafe { core::ptr::read_volatile(p) }
    });
    Some((bytes - 8 * untouched_words(words), bytes))
}

/// Whether `used` of `size` bytes is over the warning line (three quarters).
fn over_warning(used: usize, size: usize) -> bool {
    used > size / 4 * 3
}

/// Prints every recorded stack's high-water mark, one line a CPU that has stacks
/// (`stack use: CPU1 main 12/256 KiB, SYSCALL 40/256, ...`), and a warning line for each
/// stack more than three quarters used.
pub fn report() {
    use core::fmt::Write;
    for cpu in 0..MAX_CPUS {
        let mut line = heapless::String::<256>::new();
        let mut warn = None;
        for kind in StackKind::all() {
            let Some((used, size)) = high_water(cpu, kind) else {
                continue;
            };
            let sep = if line.is_empty() { "" } else { "," };
            let _ = write!(
                line,
                "{sep} {} {}/{}",
                kind.short(),
                used.div_ceil(1024),
                size / 1024
            );
            if over_warning(used, size) {
                warn = Some((kind, used, size));
            }
        }
        if !line.is_empty() {
            crate::xprintln!("stack use (KiB): CPU{cpu}{line}");
        }
        if let Some((kind, used, size)) = warn {
            crate::xprintln!(
                "Warning: stack nearly full: CPU{cpu} {} used {used} of {size} bytes",
                kind.name()
            );
        }
    }
}

/// Maps the `bytes`-long stack whose lowest byte is at `lo` (page aligned, in the direct map
/// or the image) as CPU `cpu`'s `kind` stack in the guarded stack area and returns the top
/// of that alias, or None (no hypervisor tables yet, bad CPU, stack too big or unaligned).
/// The memory stays the caller's; only its stack-area alias is guarded.
pub fn guard(cpu: usize, kind: StackKind, lo: u64, bytes: usize) -> Option<u64> {
    let (guard, max) = kind.slot()?;
    let pages = bytes / 4096;
    if cpu >= crate::percpu::MAX_CPUS
        || !lo.is_multiple_of(4096)
        || !bytes.is_multiple_of(4096)
        || pages == 0
        || pages > max
    {
        return None;
    }
    let first = cpu * STACK_AREA_CPU_PAGES + guard;
    // The stack's pages end at the top of its slot; the guard page and any unused pages of
    // the slot below them stay unmapped.
    let start = first + 1 + (max - pages);
    for page in first..start {
        if !set_stack_area_page(page, None) {
            return None;
        }
    }
    for i in 0..pages {
        let phys = crate::layout::virt_to_phys(lo + (i * 4096) as u64)?;
        if !set_stack_area_page(start + i, Some(phys)) {
            return None;
        }
    }
    let alias = STACK_AREA_BASE + (start * 4096) as u64;
    record(cpu, kind, alias, bytes);
    Some(STACK_AREA_BASE + ((first + 1 + max) * 4096) as u64)
}

/// The CPU and stack whose guard page (or unused slot pages under the stack) holds `addr`,
/// if any: a not-present fault there is an overflow.
pub fn overflow_at(addr: u64) -> Option<(usize, StackKind)> {
    let boot = crate::paging::boot_stack_guard_page();
    if (boot..boot + 4096).contains(&addr) {
        return Some((0, StackKind::Main));
    }
    let off = addr.checked_sub(STACK_AREA_BASE)? / 4096;
    let cpu = (off / STACK_AREA_CPU_PAGES as u64) as usize;
    if cpu >= crate::percpu::MAX_CPUS {
        return None;
    }
    let page = (off % STACK_AREA_CPU_PAGES as u64) as usize;
    StackKind::all()
        .into_iter()
        .find(|k| {
            k.slot()
                .is_some_and(|(g, max)| (g..=g + max).contains(&page))
        })
        .map(|k| (cpu, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_and_fit_a_cpu_block() {
        let mut used = [false; STACK_AREA_CPU_PAGES];
        for k in StackKind::all() {
            let (g, n) = k.slot().expect("every kind has a slot");
            for (p, u) in used.iter_mut().enumerate().skip(g).take(n + 1) {
                assert!(!*u, "{k:?} overlaps at page {p}");
                *u = true;
            }
        }
        assert_eq!(StackKind::Ist(0).slot(), None);
        assert_eq!(StackKind::Ist(6).slot(), None);
        assert_eq!(StackKind::Ist(IST_IRQ).name(), "interrupt IST stack");
    }

    #[test]
    fn every_kind_has_its_own_extent_slot() {
        let mut seen = [false; 2 + IST_SLOTS];
        for k in StackKind::all() {
            assert!(!seen[k.index()], "{k:?} shares a slot");
            seen[k.index()] = true;
        }
    }

    #[test]
    fn high_water_counts_from_the_lowest_written_word() {
        // A stack grows down: the words at its low end stay zero until it gets that deep.
        assert_eq!(untouched_words([0u64, 0, 0, 5, 0, 7].into_iter()), 3);
        assert_eq!(untouched_words([1u64, 0].into_iter()), 0);
        assert_eq!(untouched_words([0u64; 4].into_iter()), 4);
        assert!(!over_warning(192 * 1024, 256 * 1024));
        assert!(over_warning(192 * 1024 + 8, 256 * 1024));
    }

    #[test]
    fn unrecorded_stacks_have_no_mark() {
        assert_eq!(high_water(MAX_CPUS - 1, StackKind::Ist(IST_NMI)), None);
        assert_eq!(high_water(MAX_CPUS, StackKind::Main), None);
    }
}
