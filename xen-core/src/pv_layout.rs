//! The 64-bit PV start-of-day memory layout (public `xen.h`, "Start-of-day memory layout"),
//! computed as Xen's dom0 builder (`xen/arch/x86/pv/dom0_build.c`) does.
//!
//! From VIRT_BASE upwards, each element 4 KiB-aligned: kernel, initrd (unless passed
//! unmapped by pfn, MOD_START_PFN), the p2m list of `nr_pages` 8-byte entries (unless
//! INIT_P2M maps it elsewhere), start_info (dom0: followed by the VGA console info), for a
//! domU the xenstore and console ring pages, the bootstrap page tables, one page of boot
//! stack, then at least 512 KiB of padding up to a 4 MiB boundary. The region is mapped 1:1
//! onto the first pfns. The number of page-table frames and the end of the region depend on
//! each other; like Xen, the smallest consistent count is found by search. The vCPU count
//! does not change a 64-bit PV layout (secondary vCPUs are brought up by the guest); it is
//! validated here so the builder has one place to refuse it.

mod error;
mod tables;
#[cfg(test)]
mod tests;

pub use error::LayoutError;
pub use tables::{
    PageTablePlan, PtEntry, PtFrame, PtLevel, L1_PROT, PTE_ACCESSED, PTE_DIRTY, PTE_GUEST_KERNEL,
    PTE_PRESENT, PTE_PSE, PTE_RW, PTE_USER, TABLE_PROT, XEN_L4_END_SLOT, XEN_L4_FIRST_SLOT,
};

use crate::xen_notes::XenElfInfo;
use tables::Tree;

/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;
/// Start of the range the hypervisor reserves in every 64-bit PV guest.
pub const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End (exclusive) of the range the hypervisor reserves in every 64-bit PV guest.
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;
/// `sizeof(struct start_info)` on x86-64.
pub const START_INFO_SIZE: u64 = 1168;
/// `sizeof(struct dom0_vga_console_info)` (interface version ≥ 0x00040d00).
pub const DOM0_VGA_CONSOLE_INFO_SIZE: u64 = 40;
/// The bootstrap region ends on a boundary of this many bytes.
pub const BOOTSTRAP_ALIGN: u64 = 4 << 20;
/// Minimum padding after the boot stack.
pub const BOOTSTRAP_PADDING: u64 = 512 << 10;
/// Largest vCPU count accepted.
pub const MAX_PV_VCPUS: u32 = 4096;
/// `SIF_PRIVILEGED`.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MOD_START_PFN`: `mod_start` is a pfn, the module is not mapped.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// Lowest non-canonical address.
const CANONICAL_LOW_END: u64 = 0x0000_8000_0000_0000;

/// Which kind of domain is built (dom0's start_info page also holds the console info; a
/// domU gets xenstore and console ring pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// The initial domain.
    Dom0,
    /// Any other domain.
    DomU,
}

/// The initial ramdisk / first module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdSpec {
    /// Its length in bytes.
    pub len: u64,
    /// Mapped in the bootstrap region (false: passed by pfn, the kernel has MOD_START_PFN).
    pub mapped: bool,
}

/// The inputs of a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutRequest {
    /// Which kind of domain.
    pub kind: DomainKind,
    /// VIRT_BASE: start of the bootstrap region (page-aligned).
    pub virt_base: u64,
    /// Start of the kernel image.
    pub virt_kstart: u64,
    /// End of the kernel image (exclusive).
    pub virt_kend: u64,
    /// The initrd, if any (a zero length counts as none).
    pub initrd: Option<InitrdSpec>,
    /// Pages of the domain.
    pub nr_pages: u64,
    /// vCPUs of the domain.
    pub nr_vcpus: u32,
    /// INIT_P2M: map the p2m list here instead of in the bootstrap region.
    pub init_p2m: Option<u64>,
    /// HYPERCALL_PAGE, checked to lie in the bootstrap region.
    pub hypercall_page: Option<u64>,
    /// Largest leaf for the INIT_P2M mapping: L1 (4 KiB only), L2 (2 MiB, Xen's default)
    /// or L3 (1 GiB, Xen with `page1gb`). Superpage leaves need machine-contiguous,
    /// naturally aligned frames for their pfns.
    pub p2m_superpages: PtLevel,
}

impl LayoutRequest {
    /// A request from a kernel's notes: kernel range, VIRT_BASE, INIT_P2M, HYPERCALL_PAGE,
    /// and the initrd mapped unless the kernel has MOD_START_PFN. 2 MiB p2m superpages.
    pub fn from_info(
        info: &XenElfInfo,
        kind: DomainKind,
        nr_pages: u64,
        nr_vcpus: u32,
        initrd_len: Option<u64>,
    ) -> Self {
        Self {
            kind,
            virt_base: info.virt_base,
            virt_kstart: info.virt_kstart,
            virt_kend: info.virt_kend,
            initrd: initrd_len.map(|len| InitrdSpec {
                len,
                mapped: !info.mod_start_pfn,
            }),
            nr_pages,
            nr_vcpus,
            init_p2m: info.init_p2m,
            hypercall_page: info.hypercall_page,
            p2m_superpages: PtLevel::L2,
        }
    }
}

/// A virtual range of the bootstrap region and the pfn of its first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub vstart: u64,
    /// One past the last byte (not rounded up to a page).
    pub vend: u64,
    /// pfn of the page holding `vstart`.
    pub first_pfn: u64,
}

impl Region {
    /// Number of pages the range touches.
    pub fn nr_pages(&self) -> u64 {
        let first = self.vstart / PAGE_SIZE;
        let end = self.vend.div_ceil(PAGE_SIZE);
        end.saturating_sub(first)
    }
}

/// Where the initrd went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitrdLayout {
    /// Mapped after the kernel; `mod_start` is its virtual address.
    Mapped(Region),
    /// Not mapped; `mod_start` is `first_pfn` and `SIF_MOD_START_PFN` is set.
    Unmapped {
        /// First pfn.
        first_pfn: u64,
        /// Pages.
        nr_pages: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// Where the p2m list (`mfn_list`) went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mPlacement {
    /// In the bootstrap region.
    Bootstrap(Region),
    /// At INIT_P2M with its own page tables; frames `first_pfn..first_pfn + nr_frames`
    /// hold both those tables and the list, in allocation order.
    Separate {
        /// First byte (INIT_P2M).
        vstart: u64,
        /// One past the last byte.
        vend: u64,
        /// First pfn of its frames.
        first_pfn: u64,
        /// Frames (tables and data).
        nr_frames: u64,
    },
}

/// The start_info fields that follow from the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfoFields {
    /// `nr_pages`.
    pub nr_pages: u64,
    /// `flags` (SIF_PRIVILEGED | SIF_INITDOMAIN for dom0, SIF_MOD_START_PFN if unmapped).
    pub flags: u32,
    /// `pt_base`.
    pub pt_base: u64,
    /// `nr_pt_frames`.
    pub nr_pt_frames: u64,
    /// `mfn_list`.
    pub mfn_list: u64,
    /// `mod_start` (virtual address, or pfn with SIF_MOD_START_PFN); 0 without initrd.
    pub mod_start: u64,
    /// `mod_len`.
    pub mod_len: u64,
    /// `first_p2m_pfn`.
    pub first_p2m_pfn: u64,
    /// `nr_p2m_frames`.
    pub nr_p2m_frames: u64,
}

/// The computed start-of-day layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvLayout {
    /// Which kind of domain.
    pub kind: DomainKind,
    /// Pages of the domain.
    pub nr_pages: u64,
    /// vCPUs of the domain.
    pub nr_vcpus: u32,
    /// Start of the bootstrap region (VIRT_BASE, pfn 0).
    pub v_start: u64,
    /// End of the bootstrap region (4 MiB-aligned, exclusive).
    pub v_end: u64,
    /// The kernel image.
    pub kernel: Region,
    /// The initrd, if any.
    pub initrd: Option<InitrdLayout>,
    /// The p2m list.
    pub p2m: P2mPlacement,
    /// The start_info page (dom0: start_info then the VGA console info).
    pub start_info: Region,
    /// domU: the xenstore ring page.
    pub xenstore: Option<Region>,
    /// domU: the console ring page.
    pub console: Option<Region>,
    /// The bootstrap page tables (`pt_base`), mapped read-only.
    pub page_tables: Region,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// The boot stack page; the initial RSP is its end.
    pub stack: Region,
    /// Pages of the bootstrap region (`(v_end - v_start) / 4K`).
    pub bootstrap_pages: u64,
    /// Xen's first allocation: the power of two covering the bootstrap region (minus a
    /// mapped initrd). pfns up to it (and past a mapped initrd) are the domain's first RAM.
    pub alloc_pages: u64,
    /// `first_p2m_pfn`: the allocation plus the initrd pages.
    pub first_p2m_pfn: u64,
    /// `nr_p2m_frames`: frames of a separately mapped p2m (0 otherwise).
    pub nr_p2m_frames: u64,
    /// HYPERCALL_PAGE, if any.
    pub hypercall_page: Option<u64>,
    p2m_superpages: PtLevel,
}

/// Rounds up to a multiple of `align` (a power of two), or fails on overflow.
fn round_up(x: u64, align: u64) -> Result<u64, LayoutError> {
    Ok(x.checked_add(align - 1).ok_or(LayoutError::Overflow)? & !(align - 1))
}

/// `a + b`, or an overflow error.
fn add(a: u64, b: u64) -> Result<u64, LayoutError> {
    a.checked_add(b).ok_or(LayoutError::Overflow)
}

/// Xen's `NR(l, h, s)`: tables at shift `s` needed to cover `[l, h)`.
fn nr_tables(l: u64, h: u64, shift: u32) -> u64 {
    let size = 1u128 << shift;
    let hi = (u128::from(h) + size - 1) & !(size - 1);
    let lo = u128::from(l) & !(size - 1);
    ((hi - lo) >> shift) as u64
}

/// Bootstrap page-table frames needed to map `[v_start, v_end)`: L4 + L3s + L2s + L1s.
fn pt_frames_needed(v_start: u64, v_end: u64) -> u64 {
    1 + nr_tables(v_start, v_end, 39)
        + nr_tables(v_start, v_end, 30)
        + nr_tables(v_start, v_end, 21)
}

/// Checks `[start, end)` is canonical and clear of the hypervisor's range.
fn check_range(start: u64, end: u64) -> Result<(), LayoutError> {
    let low = end <= CANONICAL_LOW_END;
    let high = start >= HYPERVISOR_VIRT_START;
    if !low && !high {
        return Err(LayoutError::NonCanonical { start, end });
    }
    if start < HYPERVISOR_VIRT_END && end > HYPERVISOR_VIRT_START {
        return Err(LayoutError::HypervisorHole { start, end });
    }
    Ok(())
}

/// Xen's `get_order_from_bytes`: pages of the smallest power-of-two allocation of `bytes`.
fn alloc_pages_for(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE).max(1).next_power_of_two()
}

impl PvLayout {
    /// Computes the layout for `req`.
    pub fn compute(req: &LayoutRequest) -> Result<Self, LayoutError> {
        if req.nr_vcpus == 0 || req.nr_vcpus > MAX_PV_VCPUS {
            return Err(LayoutError::BadVcpuCount(req.nr_vcpus));
        }
        let v_start = req.virt_base;
        if !v_start.is_multiple_of(PAGE_SIZE) {
            return Err(LayoutError::MisalignedVirtBase(v_start));
        }
        if req.virt_kstart < v_start || req.virt_kend < req.virt_kstart {
            return Err(LayoutError::BadKernelRange {
                virt_base: v_start,
                kstart: req.virt_kstart,
                kend: req.virt_kend,
            });
        }
        let initrd = req.initrd.filter(|i| i.len > 0);
        let kend_up = round_up(req.virt_kend, PAGE_SIZE)?;
        let (mapped_initrd, vphys_start) = match initrd {
            Some(InitrdSpec { len, mapped: true }) => {
                let end = add(kend_up, len)?;
                (Some((kend_up, end)), round_up(end, PAGE_SIZE)?)
            }
            _ => (None, kend_up),
        };
        let p2m_bytes = req.nr_pages.checked_mul(8).ok_or(LayoutError::Overflow)?;
        let vphys_end = if req.init_p2m.is_some() {
            vphys_start
        } else {
            add(vphys_start, p2m_bytes)?
        };
        let si_start = round_up(vphys_end, PAGE_SIZE)?;
        let si_size = match req.kind {
            DomainKind::Dom0 => START_INFO_SIZE + DOM0_VGA_CONSOLE_INFO_SIZE,
            DomainKind::DomU => START_INFO_SIZE,
        };
        let si_end = add(si_start, si_size)?;
        let mut next = round_up(si_end, PAGE_SIZE)?;
        let (xenstore, console) = match req.kind {
            DomainKind::Dom0 => (None, None),
            DomainKind::DomU => {
                let xs = next;
                next = add(next, 2 * PAGE_SIZE)?;
                (Some(xs), Some(xs + PAGE_SIZE))
            }
        };
        let vpt_start = next;

        // The simultaneous equations of dom0_build.c, solved by search from 2 frames.
        let mut nr_pt: u64 = 2;
        let (stack_start, v_end) = loop {
            let vpt_end = add(
                vpt_start,
                nr_pt.checked_mul(PAGE_SIZE).ok_or(LayoutError::Overflow)?,
            )?;
            let stack_end = add(vpt_end, PAGE_SIZE)?;
            let mut v_end = round_up(stack_end, BOOTSTRAP_ALIGN)?;
            if v_end - stack_end < BOOTSTRAP_PADDING {
                v_end = add(v_end, BOOTSTRAP_ALIGN)?;
            }
            if pt_frames_needed(v_start, v_end) <= nr_pt {
                break (vpt_end, v_end);
            }
            nr_pt += 1;
        };
        check_range(v_start, v_end)?;

        let pfn = |va: u64| (va - v_start) / PAGE_SIZE;
        let region = |vstart: u64, vend: u64| Region {
            vstart,
            vend,
            first_pfn: pfn(vstart),
        };
        if let Some(hp) = req.hypercall_page {
            if hp < v_start || hp >= v_end {
                return Err(LayoutError::BadHypercallPage(hp));
            }
        }

        let bootstrap_bytes = v_end - v_start;
        let initrd_pages = initrd.map_or(0, |i| i.len.div_ceil(PAGE_SIZE));
        let alloc_bytes = match mapped_initrd {
            Some(_) => bootstrap_bytes - initrd_pages * PAGE_SIZE,
            None => bootstrap_bytes,
        };
        let alloc_pages = alloc_pages_for(alloc_bytes);
        let first_p2m_pfn = add(alloc_pages, initrd_pages)?;
        if first_p2m_pfn > req.nr_pages {
            return Err(LayoutError::TooSmall {
                needed: first_p2m_pfn,
                nr_pages: req.nr_pages,
            });
        }
        let initrd_layout = match (initrd, mapped_initrd) {
            (_, Some((s, e))) => Some(InitrdLayout::Mapped(region(s, e))),
            (Some(i), None) => Some(InitrdLayout::Unmapped {
                first_pfn: alloc_pages,
                nr_pages: initrd_pages,
                len: i.len,
            }),
            (None, None) => None,
        };

        let superpages = req.p2m_superpages.min(PtLevel::L3);
        let (p2m, nr_p2m_frames) = match req.init_p2m {
            None => (P2mPlacement::Bootstrap(region(vphys_start, vphys_end)), 0),
            Some(base) => {
                let end = add(base, p2m_bytes)?;
                if v_start <= end && base <= v_end {
                    return Err(LayoutError::P2mOverlapsBootstrap { p2m_base: base });
                }
                check_range(base, end)?;
                let mut tree = Tree::new(false);
                tree.build_bootstrap(v_start, v_end, pfn(vpt_start));
                let frames = tree.build_p2m(base, end, first_p2m_pfn, req.nr_pages, superpages)?;
                let placement = P2mPlacement::Separate {
                    vstart: base,
                    vend: end,
                    first_pfn: first_p2m_pfn,
                    nr_frames: frames,
                };
                (placement, frames)
            }
        };

        Ok(Self {
            kind: req.kind,
            nr_pages: req.nr_pages,
            nr_vcpus: req.nr_vcpus,
            v_start,
            v_end,
            kernel: region(req.virt_kstart, req.virt_kend),
            initrd: initrd_layout,
            p2m,
            start_info: region(si_start, si_end),
            xenstore: xenstore.map(|x| region(x, x + PAGE_SIZE)),
            console: console.map(|c| region(c, c + PAGE_SIZE)),
            page_tables: region(vpt_start, stack_start),
            nr_pt_frames: nr_pt,
            stack: region(stack_start, stack_start + PAGE_SIZE),
            bootstrap_pages: bootstrap_bytes / PAGE_SIZE,
            alloc_pages,
            first_p2m_pfn,
            nr_p2m_frames,
            hypercall_page: req.hypercall_page,
            p2m_superpages: superpages,
        })
    }

    /// `mfn_list`: the virtual address of the p2m list.
    pub fn mfn_list(&self) -> u64 {
        match self.p2m {
            P2mPlacement::Bootstrap(r) => r.vstart,
            P2mPlacement::Separate { vstart, .. } => vstart,
        }
    }

    /// The initial RSP (end of the boot stack).
    pub fn initial_rsp(&self) -> u64 {
        self.stack.vend
    }

    /// The initial RSI (virtual address of start_info).
    pub fn initial_rsi(&self) -> u64 {
        self.start_info.vstart
    }

    /// The pfn mapped at `va`, if `va` is in the bootstrap region.
    pub fn bootstrap_pfn(&self, va: u64) -> Option<u64> {
        (va >= self.v_start && va < self.v_end).then(|| (va - self.v_start) / PAGE_SIZE)
    }

    /// The start_info fields the layout determines.
    pub fn start_info_fields(&self) -> StartInfoFields {
        let mut flags = match self.kind {
            DomainKind::Dom0 => SIF_PRIVILEGED | SIF_INITDOMAIN,
            DomainKind::DomU => 0,
        };
        let (mod_start, mod_len) = match self.initrd {
            Some(InitrdLayout::Mapped(r)) => (r.vstart, r.vend - r.vstart),
            Some(InitrdLayout::Unmapped { first_pfn, len, .. }) => {
                flags |= SIF_MOD_START_PFN;
                (first_pfn, len)
            }
            None => (0, 0),
        };
        StartInfoFields {
            nr_pages: self.nr_pages,
            flags,
            pt_base: self.page_tables.vstart,
            nr_pt_frames: self.nr_pt_frames,
            mfn_list: self.mfn_list(),
            mod_start,
            mod_len,
            first_p2m_pfn: self.first_p2m_pfn,
            nr_p2m_frames: self.nr_p2m_frames,
        }
    }

    /// Every page-table frame and entry the builder must write: the bootstrap tables
    /// (their own mappings read-only) and, with INIT_P2M, the p2m's tables and leaves.
    /// The builder also installs the hypervisor's entries in root slots
    /// [`XEN_L4_FIRST_SLOT`]`..`[`XEN_L4_END_SLOT`].
    pub fn page_table_plan(&self) -> Result<PageTablePlan, LayoutError> {
        let mut tree = Tree::new(true);
        tree.build_bootstrap(self.v_start, self.v_end, self.page_tables.first_pfn);
        if let P2mPlacement::Separate {
            vstart,
            vend,
            first_pfn,
            ..
        } = self.p2m
        {
            tree.build_p2m(vstart, vend, first_pfn, self.nr_pages, self.p2m_superpages)?;
        }
        Ok(PageTablePlan {
            root_pfn: self.page_tables.first_pfn,
            frames: tree.frames,
            entries: tree.entries.unwrap_or_default(),
        })
    }
}
