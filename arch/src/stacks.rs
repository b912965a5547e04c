//! Guarded per-CPU stacks: every CPU's main (AP), SYSCALL and IST stacks are mapped page by
//! page into its block of the stack area (`paging::STACK_AREA_BASE`) with an unmapped guard
//! page below each, and the boot CPU's main stack has the unmapped `boot_stack_guard` page
//! under it. An overflow then takes a #PF (on an IST stack) that [`overflow_at`] names,
//! instead of silently corrupting the neighbouring stack.

use crate::gdt::{IST_DOUBLE_FAULT, IST_EXCEPTION, IST_IRQ, IST_MCE, IST_NMI};
use crate::paging::{set_stack_area_page, STACK_AREA_BASE, STACK_AREA_CPU_PAGES};

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
}
