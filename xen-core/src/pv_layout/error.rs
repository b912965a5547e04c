//! Why a PV start-of-day layout cannot be built; `Display` is one line.

use core::fmt;

/// A layout that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The vCPU count is 0 or above [`super::MAX_PV_VCPUS`].
    BadVcpuCount(u32),
    /// VIRT_BASE is not page-aligned.
    MisalignedVirtBase(u64),
    /// The kernel range does not start at or above VIRT_BASE, or ends before it starts.
    BadKernelRange {
        /// VIRT_BASE.
        virt_base: u64,
        /// Kernel start.
        kstart: u64,
        /// Kernel end.
        kend: u64,
    },
    /// An address computation wrapped around 2^64.
    Overflow,
    /// The bootstrap region or the p2m crosses the non-canonical hole.
    NonCanonical {
        /// Start of the offending range.
        start: u64,
        /// End of the offending range.
        end: u64,
    },
    /// The bootstrap region or the p2m overlaps the hypervisor's reserved range.
    HypervisorHole {
        /// Start of the offending range.
        start: u64,
        /// End of the offending range.
        end: u64,
    },
    /// The domain has too few pages for the bootstrap region (plus the initrd).
    TooSmall {
        /// Pages needed.
        needed: u64,
        /// Pages the domain has.
        nr_pages: u64,
    },
    /// The domain has too few pages for the separately mapped p2m list.
    P2mTooSmall {
        /// Pages needed at the point the allocation failed.
        needed: u64,
        /// Pages the domain has.
        nr_pages: u64,
    },
    /// The INIT_P2M range overlaps the bootstrap region.
    P2mOverlapsBootstrap {
        /// INIT_P2M.
        p2m_base: u64,
    },
    /// HYPERCALL_PAGE lies outside the mapped bootstrap region.
    BadHypercallPage(u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::BadVcpuCount(n) => write!(
                f,
                "invalid vCPU count {n} (1 to {} allowed)",
                super::MAX_PV_VCPUS
            ),
            LayoutError::MisalignedVirtBase(v) => {
                write!(f, "VIRT_BASE {v:#x} is not page-aligned")
            }
            LayoutError::BadKernelRange {
                virt_base,
                kstart,
                kend,
            } => write!(
                f,
                "kernel range {kstart:#x}-{kend:#x} is invalid for VIRT_BASE {virt_base:#x}"
            ),
            LayoutError::Overflow => {
                f.write_str("initial memory layout wraps around the address space")
            }
            LayoutError::NonCanonical { start, end } => write!(
                f,
                "initial mapping {start:#x}-{end:#x} crosses the non-canonical address hole"
            ),
            LayoutError::HypervisorHole { start, end } => write!(
                f,
                "initial mapping {start:#x}-{end:#x} overlaps the Xen private area \
                 0xffff800000000000-0xffff880000000000"
            ),
            LayoutError::TooSmall { needed, nr_pages } => write!(
                f,
                "domain allocation is too small for the kernel image: {needed} pages needed, \
                 {nr_pages} available"
            ),
            LayoutError::P2mTooSmall { needed, nr_pages } => write!(
                f,
                "domain allocation is too small for the initial P->M table: {needed} pages \
                 needed, {nr_pages} available"
            ),
            LayoutError::P2mOverlapsBootstrap { p2m_base } => write!(
                f,
                "INIT_P2M table at {p2m_base:#x} overlaps the initial mapping"
            ),
            LayoutError::BadHypercallPage(va) => {
                write!(
                    f,
                    "invalid HYPERCALL_PAGE {va:#x}: outside the initial mapping"
                )
            }
        }
    }
}
