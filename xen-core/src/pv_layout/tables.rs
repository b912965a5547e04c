//! The bootstrap page tables and the separately mapped p2m, built the way Xen's dom0
//! builder allocates them (`dom0_construct_pv` and `setup_pv_physmap`).
//!
//! Tables are identified by pfn; entries name target pfns. The real builder translates pfns
//! to machine frames with the domain's p2m and writes `(mfn << 12) | flags`.

use super::error::LayoutError;
use super::PAGE_SIZE;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// PTE bit: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// PTE bit: writable.
pub const PTE_RW: u64 = 1 << 1;
/// PTE bit: user-accessible (a 64-bit PV kernel runs in ring 3).
pub const PTE_USER: u64 = 1 << 2;
/// PTE bit: accessed.
pub const PTE_ACCESSED: u64 = 1 << 5;
/// PTE bit: dirty.
pub const PTE_DIRTY: u64 = 1 << 6;
/// PTE bit: page size (superpage in an L2 or L3 entry).
pub const PTE_PSE: u64 = 1 << 7;
/// Xen's `_PAGE_GUEST_KERNEL` (flag bit 12 = PTE bit 52): a guest-kernel mapping.
pub const PTE_GUEST_KERNEL: u64 = 1 << 52;
/// Flags of bootstrap L1 entries (Xen's `L1_PROT`).
pub const L1_PROT: u64 = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_USER | PTE_GUEST_KERNEL;
/// Flags of entries pointing at lower tables (Xen's `L2_PROT` = `L3_PROT` = `L4_PROT`).
pub const TABLE_PROT: u64 = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_USER | PTE_DIRTY;
/// First L4 slot the hypervisor owns in every PV guest (0xffff800000000000).
pub const XEN_L4_FIRST_SLOT: usize = 256;
/// One past the last L4 slot the hypervisor owns (0xffff880000000000).
pub const XEN_L4_END_SLOT: usize = 272;

/// A page-table level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PtLevel {
    /// Maps 4 KiB pages.
    L1 = 1,
    /// Maps L1 tables or 2 MiB pages.
    L2 = 2,
    /// Maps L2 tables or 1 GiB pages.
    L3 = 3,
    /// The root.
    L4 = 4,
}

impl PtLevel {
    /// Bytes of address space one entry of a table at this level covers.
    pub fn entry_span(self) -> u64 {
        1 << (12 + 9 * (self as u32 - 1))
    }

    /// Index of `va`'s entry in a table at this level.
    pub fn index(self, va: u64) -> u16 {
        ((va >> (12 + 9 * (self as u32 - 1))) & 511) as u16
    }

    /// The level below (None for L1).
    pub fn below(self) -> Option<PtLevel> {
        match self {
            PtLevel::L4 => Some(PtLevel::L3),
            PtLevel::L3 => Some(PtLevel::L2),
            PtLevel::L2 => Some(PtLevel::L1),
            PtLevel::L1 => None,
        }
    }
}

/// A frame that holds a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtFrame {
    /// The pfn of the frame.
    pub pfn: u64,
    /// Its level (Xen types it `PGT_l<level>_page_table`; the root is also pinned).
    pub level: PtLevel,
    /// Whether it is one of the `nr_pt_frames` bootstrap frames (mapped read-only at
    /// `pt_base`), rather than a table of the separately mapped p2m (not mapped at all).
    pub bootstrap: bool,
}

/// One entry to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtEntry {
    /// pfn of the table the entry is written in.
    pub table_pfn: u64,
    /// Level of that table.
    pub table_level: PtLevel,
    /// Index in that table.
    pub index: u16,
    /// pfn the entry points at (a lower table, a page, or the first page of a superpage).
    pub target_pfn: u64,
    /// PTE flag bits.
    pub flags: u64,
    /// First virtual address the entry covers.
    pub vaddr: u64,
}

impl PtEntry {
    /// Whether the entry maps memory (an L1 entry or a superpage) rather than a table.
    pub fn is_leaf(&self) -> bool {
        self.table_level == PtLevel::L1 || self.flags & PTE_PSE != 0
    }

    /// Bytes of memory the entry maps if it is a leaf.
    pub fn leaf_span(&self) -> u64 {
        self.table_level.entry_span()
    }

    /// The 64-bit entry value once `target_pfn` has been translated to `mfn`.
    pub fn pte(&self, mfn: u64) -> u64 {
        (mfn << 12) | self.flags
    }
}

/// Everything the builder writes into the guest's initial page tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageTablePlan {
    /// pfn of the L4 (the initial CR3, pinned).
    pub root_pfn: u64,
    /// Every page-table frame, in Xen's allocation order.
    pub frames: Vec<PtFrame>,
    /// Every entry, tables first as they are linked, then leaves in address order.
    pub entries: Vec<PtEntry>,
}

impl PageTablePlan {
    /// Walks the plan like the MMU would: the pfn and flags mapping `va`, if any.
    pub fn translate(&self, va: u64) -> Option<(u64, u64)> {
        let mut table = self.root_pfn;
        let mut level = PtLevel::L4;
        loop {
            let idx = level.index(va);
            let e = self
                .entries
                .iter()
                .find(|e| e.table_pfn == table && e.table_level == level && e.index == idx)?;
            if e.is_leaf() {
                let offset_pages = (va & (level.entry_span() - 1)) / PAGE_SIZE;
                return Some((e.target_pfn + offset_pages, e.flags));
            }
            table = e.target_pfn;
            level = level.below()?;
        }
    }
}

/// Tables by (level, base of the region they cover), as the builder allocates them.
pub(crate) struct Tree {
    tables: BTreeMap<(PtLevel, u64), u64>,
    pub(crate) frames: Vec<PtFrame>,
    pub(crate) entries: Option<Vec<PtEntry>>,
}

/// Base of the region a table at `level` covering `va` maps (the root covers everything).
fn region_base(level: PtLevel, va: u64) -> u64 {
    if level == PtLevel::L4 {
        return 0;
    }
    let span = level.entry_span() * 512;
    va & !(span - 1)
}

impl Tree {
    /// An empty tree; `emit` chooses whether entries are recorded (counting only if not).
    pub(crate) fn new(emit: bool) -> Self {
        Self {
            tables: BTreeMap::new(),
            frames: Vec::new(),
            entries: emit.then(Vec::new),
        }
    }

    /// The table at `level` covering `va`, if allocated.
    fn table(&self, level: PtLevel, va: u64) -> Option<u64> {
        self.tables.get(&(level, region_base(level, va))).copied()
    }

    /// Records a new table frame.
    fn add_table(&mut self, level: PtLevel, va: u64, pfn: u64, bootstrap: bool) {
        self.tables.insert((level, region_base(level, va)), pfn);
        self.frames.push(PtFrame {
            pfn,
            level,
            bootstrap,
        });
    }

    /// Records an entry in the `level` table covering `va` (which must exist).
    fn entry(&mut self, level: PtLevel, va: u64, target_pfn: u64, flags: u64) {
        let Some(table_pfn) = self.table(level, va) else {
            return;
        };
        if let Some(entries) = self.entries.as_mut() {
            let span = level.entry_span();
            entries.push(PtEntry {
                table_pfn,
                table_level: level,
                index: level.index(va),
                target_pfn,
                flags,
                vaddr: va & !(span - 1),
            });
        }
    }

    /// Builds the bootstrap tables for `[v_start, v_end)` with frames from `pt_pfn` on, in
    /// dom0_build.c's order: the L4, then per 2 MiB region an L1, and an L2 / L3 when the
    /// region starts a new 1 GiB / 512 GiB area. Leaves map pfn `(va - v_start) / 4K`;
    /// those of the `nr_pt` table frames lose RW. Returns the number of frames used.
    pub(crate) fn build_bootstrap(&mut self, v_start: u64, v_end: u64, pt_pfn: u64) -> u64 {
        let mut next = pt_pfn;
        self.add_table(PtLevel::L4, v_start, next, true);
        next += 1;
        let two_mib = PtLevel::L2.entry_span();
        let mut va = v_start & !(two_mib - 1);
        while va < v_end {
            let chunk = va.max(v_start);
            self.add_table(PtLevel::L1, chunk, next, true);
            let l1 = next;
            next += 1;
            if self.table(PtLevel::L2, chunk).is_none() {
                let l2 = next;
                self.add_table(PtLevel::L2, chunk, l2, true);
                next += 1;
                if self.table(PtLevel::L3, chunk).is_none() {
                    let l3 = next;
                    self.add_table(PtLevel::L3, chunk, l3, true);
                    next += 1;
                    self.entry(PtLevel::L4, chunk, l3, TABLE_PROT);
                }
                self.entry(PtLevel::L3, chunk, l2, TABLE_PROT);
            }
            self.entry(PtLevel::L2, chunk, l1, TABLE_PROT);
            match va.checked_add(two_mib) {
                Some(n) => va = n,
                None => break,
            }
        }
        let used = next - pt_pfn;
        if self.entries.is_some() {
            let mut va = v_start;
            while va < v_end {
                let pfn = (va - v_start) / PAGE_SIZE;
                let flags = if pfn >= pt_pfn && pfn < pt_pfn + used {
                    L1_PROT & !PTE_RW
                } else {
                    L1_PROT
                };
                self.entry(PtLevel::L1, va, pfn, flags);
                va += PAGE_SIZE;
            }
        }
        used
    }

    /// Maps the p2m list `[start, end)` as `setup_pv_physmap` does, allocating table and
    /// data frames from pfn `first_pfn` on, in order. `superpages` caps the leaf size
    /// (L1 = 4 KiB only, L2 = up to 2 MiB, L3 = up to 1 GiB). `tot_pages` is the domain's
    /// page count so far; fails like Xen when `nr_pages` cannot hold the rest.
    /// Returns the number of frames allocated.
    pub(crate) fn build_p2m(
        &mut self,
        start: u64,
        end: u64,
        first_pfn: u64,
        nr_pages: u64,
        superpages: PtLevel,
    ) -> Result<u64, LayoutError> {
        let mut next = first_pfn;
        let mut va = start;
        let end_up = end
            .checked_add(PAGE_SIZE - 1)
            .ok_or(LayoutError::Overflow)?
            & !(PAGE_SIZE - 1);
        while va < end {
            let needed = next + (end_up - va) / PAGE_SIZE + 3;
            if needed > nr_pages {
                return Err(LayoutError::P2mTooSmall { needed, nr_pages });
            }
            if self.table(PtLevel::L3, va).is_none() {
                self.add_table(PtLevel::L3, va, next, false);
                self.entry(PtLevel::L4, va, next, TABLE_PROT);
                next += 1;
            }
            if self.table(PtLevel::L2, va).is_none() {
                let span = PtLevel::L3.entry_span();
                if superpages >= PtLevel::L3 && va.is_multiple_of(span) && end - va >= span {
                    self.entry(PtLevel::L3, va, next, L1_PROT | PTE_DIRTY | PTE_PSE);
                    next += span / PAGE_SIZE;
                    va += span;
                    continue;
                }
                self.add_table(PtLevel::L2, va, next, false);
                self.entry(PtLevel::L3, va, next, TABLE_PROT);
                next += 1;
            }
            if self.table(PtLevel::L1, va).is_none() {
                let span = PtLevel::L2.entry_span();
                if superpages >= PtLevel::L2 && va.is_multiple_of(span) && end - va >= span {
                    self.entry(PtLevel::L2, va, next, L1_PROT | PTE_DIRTY | PTE_PSE);
                    next += span / PAGE_SIZE;
                    va += span;
                    continue;
                }
                self.add_table(PtLevel::L1, va, next, false);
                self.entry(PtLevel::L2, va, next, TABLE_PROT);
                next += 1;
            }
            self.entry(PtLevel::L1, va, next, L1_PROT | PTE_DIRTY);
            next += 1;
            va = (va + PAGE_SIZE) & !(PAGE_SIZE - 1);
        }
        Ok(next - first_pfn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_index_and_span() {
        let va = 0xffff_ffff_8020_3000u64;
        assert_eq!(PtLevel::L4.index(va), 511);
        assert_eq!(PtLevel::L3.index(va), 510);
        assert_eq!(PtLevel::L2.index(va), 1);
        assert_eq!(PtLevel::L1.index(va), 3);
        assert_eq!(PtLevel::L1.entry_span(), 4096);
        assert_eq!(PtLevel::L2.entry_span(), 2 << 20);
        assert_eq!(PtLevel::L3.entry_span(), 1 << 30);
        assert_eq!(
            PtLevel::L4.index(0xffff_8000_0000_0000),
            XEN_L4_FIRST_SLOT as u16
        );
        assert_eq!(
            PtLevel::L4.index(0xffff_8800_0000_0000),
            XEN_L4_END_SLOT as u16
        );
    }

    #[test]
    fn bootstrap_order_is_l4_l1_l2_l3_then_l1s() {
        let mut t = Tree::new(true);
        let v = 0xffff_ffff_8000_0000;
        let used = t.build_bootstrap(v, v + (6 << 20), 100);
        assert_eq!(used, 6);
        let order: Vec<_> = t.frames.iter().map(|f| (f.pfn, f.level)).collect();
        assert_eq!(
            order,
            [
                (100, PtLevel::L4),
                (101, PtLevel::L1),
                (102, PtLevel::L2),
                (103, PtLevel::L3),
                (104, PtLevel::L1),
                (105, PtLevel::L1)
            ]
        );
    }

    #[test]
    fn p2m_uses_superpages_when_allowed_and_aligned() {
        let mut t = Tree::new(true);
        t.build_bootstrap(0, 4 << 20, 0);
        let start = 0x80_0000_0000u64;
        let end = start + (4 << 20) + 8192;
        let n = t.build_p2m(start, end, 1000, 1 << 20, PtLevel::L2).unwrap();
        // L3, L2, two 2 MiB superpages (1024 frames), one L1, two 4 KiB pages.
        assert_eq!(n, 1 + 1 + 1024 + 1 + 2);
        let mut t = Tree::new(false);
        t.build_bootstrap(0, 4 << 20, 0);
        let n = t.build_p2m(start, end, 1000, 1 << 20, PtLevel::L1).unwrap();
        // L3, L2, 3 L1 tables, 1026 pages.
        assert_eq!(n, 1 + 1 + 3 + 1026);
        let mut t = Tree::new(false);
        t.build_bootstrap(0, 4 << 20, 0);
        assert_eq!(
            t.build_p2m(start, end, 1000, 1500, PtLevel::L1),
            Err(LayoutError::P2mTooSmall {
                needed: 1000 + 1026 + 3,
                nr_pages: 1500
            })
        );
    }
}
