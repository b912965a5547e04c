//! Why a kernel's Xen notes were refused; `Display` is one line for `(XEN) dom0 kernel: ...`.

use super::features::XenFeatures;
use crate::elf::ElfError;
use alloc::string::String;
use core::fmt;

/// A refused set of Xen ELF notes (or legacy `__xen_guest` string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenNotesError {
    /// The ELF image itself was refused.
    Elf(ElfError),
    /// Neither Xen notes nor a `__xen_guest` section.
    NoXenNotes,
    /// PHYS32_ENTRY is present but there is no PV entry point (booted as PV).
    PvhOnly,
    /// More notes than libelf accepts in total.
    TooManyNotes,
    /// FEATURES requires a feature libelf does not know.
    UnknownRequiredFeature(String),
    /// Neither LOADER "generic" nor GUEST_OS "linux".
    BadLoader {
        /// The LOADER string.
        loader: String,
        /// The GUEST_OS string.
        guest_os: String,
    },
    /// XEN_VERSION is not "xen-3.0".
    BadXenVersion(String),
    /// PADDR_OFFSET is given but VIRT_BASE is not.
    PaddrOffsetWithoutVirtBase,
    /// Kernel range, entry or virt_base are inconsistent (libelf's bounds check).
    AddressesOutOfBounds {
        /// Start of the kernel's virtual range.
        virt_kstart: u64,
        /// End of the kernel's virtual range.
        virt_kend: u64,
        /// Entry point.
        entry: u64,
        /// VIRT_BASE.
        virt_base: u64,
    },
    /// INIT_P2M points inside the kernel image.
    P2mInsideKernel(u64),
    /// SUPPORTED_FEATURES lacks XENFEAT_dom0 and the kernel is to be dom0.
    NotDom0Capable,
    /// The kernel requires features this hypervisor does not offer.
    UnsupportedRequiredFeatures(u32),
}

impl From<ElfError> for XenNotesError {
    fn from(e: ElfError) -> Self {
        XenNotesError::Elf(e)
    }
}

impl fmt::Display for XenNotesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenNotesError::Elf(e) => e.fmt(f),
            XenNotesError::NoXenNotes => f.write_str("not a Xen PV kernel (no Xen ELF notes)"),
            XenNotesError::PvhOnly => f.write_str(
                "PVH-only kernel (PHYS32_ENTRY note but no PV entry point): boot it with dom0=pvh",
            ),
            XenNotesError::TooManyNotes => f.write_str("too many ELF notes"),
            XenNotesError::UnknownRequiredFeature(name) => {
                write!(f, "kernel requires unknown Xen feature '{name}'")
            }
            XenNotesError::BadLoader { loader, guest_os } => write!(
                f,
                "kernel is built neither for the generic loader nor as Linux \
                 (LOADER '{loader}', GUEST_OS '{guest_os}')"
            ),
            XenNotesError::BadXenVersion(v) => {
                write!(f, "kernel is built for Xen version '{v}', not 'xen-3.0'")
            }
            XenNotesError::PaddrOffsetWithoutVirtBase => {
                f.write_str("ELF_PADDR_OFFSET set but VIRT_BASE unset")
            }
            XenNotesError::AddressesOutOfBounds {
                virt_kstart,
                virt_kend,
                entry,
                virt_base,
            } => write!(
                f,
                "ELF start or entry out of bounds (kernel {virt_kstart:#x}-{virt_kend:#x}, \
                 entry {entry:#x}, virt_base {virt_base:#x})"
            ),
            XenNotesError::P2mInsideKernel(p) => {
                write!(f, "INIT_P2M address {p:#x} lies inside the kernel image")
            }
            XenNotesError::NotDom0Capable => {
                f.write_str("kernel does not support dom0 operation (no XENFEAT_dom0)")
            }
            XenNotesError::UnsupportedRequiredFeatures(mask) => {
                f.write_str("kernel requires unsupported Xen features: ")?;
                XenFeatures::describe(*mask, f)
            }
        }
    }
}
