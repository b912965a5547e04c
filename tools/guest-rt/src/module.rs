//! The initial domain's boot module (its initrd, `start_info.mod_start`/`mod_len`), with
//! Xen's two conventions: a virtual address inside the start-of-day mapping, or (flag
//! `SIF_MOD_START_PFN`) the first PFN of frames Xen did not map, read here page by page.

use crate::mm::pte;
use crate::pvmm::{pfn_to_mfn, Scratch};
use crate::start_info::{StartInfo, SIF_MOD_START_PFN};

/// Largest module accepted (1 GiB).
pub const MAX_MODULE: u64 = 1 << 30;

/// Why the module could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// Xen passed no module.
    Absent,
    /// Larger than [`MAX_MODULE`].
    TooLarge(u64),
    /// Its address range is not inside the start-of-day mapping after the kernel image.
    OutsideMapping {
        /// `mod_start`.
        start: u64,
        /// `mod_len`.
        len: u64,
    },
    /// A PFN of the module has no frame in the p2m list.
    BadPfn(u64),
    /// The output buffer of [`copy_pfn_module`] has the wrong size.
    BadBuffer,
    /// Mapping a frame of the module failed (negative errno).
    Map(i64),
}

impl core::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ModuleError::Absent => write!(f, "no boot module"),
            ModuleError::TooLarge(n) => write!(f, "module of {n} bytes is too large"),
            ModuleError::OutsideMapping { start, len } => write!(
                f,
                "module at {start:#x} (+{len:#x}) is outside the start-of-day mapping"
            ),
            ModuleError::BadPfn(p) => write!(f, "module pfn {p:#x} has no frame"),
            ModuleError::BadBuffer => write!(f, "buffer size differs from the module size"),
            ModuleError::Map(e) => write!(f, "mapping a module frame failed ({e})"),
        }
    }
}

/// Where the module is.
#[derive(Clone, Copy, Debug)]
pub enum Module {
    /// Mapped in the start-of-day region: its bytes.
    Mapped(&'static [u8]),
    /// Given as frames (`SIF_MOD_START_PFN`): first PFN and length; copy it with
    /// [`copy_pfn_module`].
    Frames {
        /// First PFN.
        pfn: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// The boot module named in `si`.
pub fn module(si: &StartInfo) -> Result<Module, ModuleError> {
    let (start, len) = (si.mod_start, si.mod_len);
    if start == 0 || len == 0 {
        return Err(ModuleError::Absent);
    }
    if len > MAX_MODULE {
        return Err(ModuleError::TooLarge(len));
    }
    if si.flags & SIF_MOD_START_PFN != 0 {
        return Ok(Module::Frames { pfn: start, len });
    }
    // Xen's start-of-day layout (public/xen.h): kernel image, module, p2m list, start_info, page
    // tables, stack; all mapped from VIRT_BASE.
    let limit = si.mfn_list.min(si.pt_base);
    let end = start.checked_add(len);
    if start < crate::smp::virt_base() || end.is_none_or(|e| e > limit) {
        return Err(ModuleError::OutsideMapping { start, len });
    }
    // SAFETY: [start, start+len) lies in the start-of-day mapping below the p2m list and the
    // bootstrap page tables (checked above), where Xen placed the module after the kernel image; nothing
    // else uses it and it stays mapped, unchanged, for the life of the domain.
    let bytes = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
    Ok(Module::Mapped(bytes))
}

/// Copies a `SIF_MOD_START_PFN` module (`pfn`, `out.len()` bytes) through the scratch page.
pub fn copy_pfn_module(si: &StartInfo, pfn: u64, out: &mut [u8]) -> Result<(), ModuleError> {
    let mut scratch = Scratch::new(si).ok_or(ModuleError::BadPfn(pfn))?;
    for (i, chunk) in out.chunks_mut(4096).enumerate() {
        let p = pfn + i as u64;
        let mfn = pfn_to_mfn(si, p).ok_or(ModuleError::BadPfn(p))?;
        scratch
            .map(mfn, pte::PRESENT | pte::ACCESSED)
            .map_err(|e| ModuleError::Map(e.0))?;
        for (w, dst) in chunk.chunks_mut(8).enumerate() {
            let word = scratch.read(w).unwrap_or(0).to_le_bytes();
            dst.copy_from_slice(&word[..dst.len()]);
        }
    }
    let _ = scratch.restore();
    Ok(())
}
