//! `struct start_info` (`public/xen.h`): what Xen hands a PV kernel in RSI at entry.

pub use dom0_interface::xen::{
    StartInfo, SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_MULTIBOOT_MOD, SIF_PRIVILEGED,
    SIF_VIRT_P2M_4TOOLS, START_INFO_MAGIC_X86_64 as MAGIC_PREFIX,
};

/// The start_info copy [`crate::boot::start`] records before `main` runs.
struct BootCopy {
    si: core::cell::UnsafeCell<core::mem::MaybeUninit<StartInfo>>,
    state: core::sync::atomic::AtomicU8,
}

// SAFETY: the copy is written once (state 0 -> 1 -> 2, by the one caller that won the
// compare-exchange) and only read after state 2 is observed with Acquire ordering.
unsafe impl Sync for BootCopy {}

static BOOT_COPY: BootCopy = BootCopy {
    si: core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()),
    state: core::sync::atomic::AtomicU8::new(0),
};

/// Records the boot start_info (first call wins; later calls are ignored).
pub(crate) fn record_boot(si: &StartInfo) {
    use core::sync::atomic::Ordering;
    if BOOT_COPY
        .state
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: the compare-exchange above made this the only writer, and no reader looks
        // at the cell before state 2 is published below.
        unsafe { (*BOOT_COPY.si.get()).write(*si) };
        BOOT_COPY.state.store(2, Ordering::Release);
    }
}

/// The start_info this guest booted with, once `entry!`'s start code has recorded it.
pub fn boot() -> Option<&'static StartInfo> {
    if BOOT_COPY.state.load(core::sync::atomic::Ordering::Acquire) != 2 {
        return None;
    }
    // SAFETY: state 2 means the copy was fully written and is never written again.
    Some(unsafe { (*BOOT_COPY.si.get()).assume_init_ref() })
}

/// The first boot module (dom0's initrd) as mapped at `mod_start`, if the boot start_info
/// names one that is mapped (no `SIF_MOD_START_PFN`) below the bootstrap page tables.
pub fn boot_module() -> Option<&'static [u8]> {
    let si = boot()?;
    if si.mod_start == 0 || si.mod_len == 0 || si.flags & SIF_MOD_START_PFN != 0 {
        return None;
    }
    let end = si.mod_start.checked_add(si.mod_len)?;
    // The start-of-day layout places a mapped module after the kernel and before the p2m
    // list and the page tables.
    if end > si.pt_base || usize::try_from(si.mod_len).is_err() {
        return None;
    }
    // SAFETY: Xen maps the module read-write at `mod_start..mod_start + mod_len` in the
    // bootstrap region for the whole run (checked to lie below the page tables); nothing of
    // this image lives there, and the slice is only read.
    Some(unsafe { core::slice::from_raw_parts(si.mod_start as *const u8, si.mod_len as usize) })
}

/// Why a start_info was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// The address was null or not 8-byte aligned.
    BadAddress(u64),
    /// The magic did not start with `xen-3.0-x86_64`.
    BadMagic,
}

/// What a guest asks of its start_info (`StartInfo` is `dom0_interface`'s).
pub trait StartInfoExt {
    /// Checks the magic.
    fn validate(&self) -> Result<(), StartInfoError>;
    /// The magic as text.
    fn magic_str(&self) -> &str;
    /// The command line as text (up to the first NUL; `None` if it is not UTF-8).
    fn cmd_line_str(&self) -> Option<&str>;
    /// Whether Xen marked this domain as the initial, privileged domain.
    fn is_initdomain(&self) -> bool;
}

impl StartInfoExt for StartInfo {
    fn validate(&self) -> Result<(), StartInfoError> {
        if self.magic.starts_with(MAGIC_PREFIX) {
            Ok(())
        } else {
            Err(StartInfoError::BadMagic)
        }
    }

    fn magic_str(&self) -> &str {
        crate::version::c_str(&self.magic).unwrap_or("<not utf-8>")
    }

    fn cmd_line_str(&self) -> Option<&str> {
        crate::version::c_str(&self.cmd_line)
    }

    fn is_initdomain(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }
}

/// Copies the start_info Xen placed at virtual address `va`.
///
/// # Safety
/// `va` must be the address Xen passed in RSI at entry (mapped, readable, 1168 bytes).
pub unsafe fn read_at(va: u64) -> Result<StartInfo, StartInfoError> {
    if va == 0 || !va.is_multiple_of(8) {
        return Err(StartInfoError::BadAddress(va));
    }
    // SAFETY: the caller guarantees `va` is Xen's mapped start_info; the address is non-null
    // and aligned (checked above) and `StartInfo` is plain old data.
    let si = unsafe { core::ptr::read_volatile(va as *const StartInfo) };
    si.validate()?;
    Ok(si)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn blank() -> Box<StartInfo> {
        Box::new(StartInfo::default())
    }

    #[test]
    fn magic_and_flags() {
        let mut si = blank();
        assert_eq!(si.validate(), Err(StartInfoError::BadMagic));
        si.magic[..14].copy_from_slice(MAGIC_PREFIX);
        assert_eq!(si.validate(), Ok(()));
        assert_eq!(si.magic_str(), "xen-3.0-x86_64");
        si.cmd_line[..5].copy_from_slice(b"quiet");
        assert_eq!(si.cmd_line_str(), Some("quiet"));
        assert!(!si.is_initdomain());
        si.flags = SIF_PRIVILEGED | SIF_INITDOMAIN;
        assert!(si.is_initdomain());
    }

    #[test]
    fn bad_addresses_are_refused_before_reading() {
        // SAFETY: both addresses are refused before any read.
        unsafe {
            assert!(matches!(read_at(0), Err(StartInfoError::BadAddress(0))));
            assert!(matches!(
                read_at(0x1003),
                Err(StartInfoError::BadAddress(0x1003))
            ));
        }
        let si = blank();
        let mut good = *si;
        good.magic[..14].copy_from_slice(MAGIC_PREFIX);
        let boxed = Box::new(good);
        // SAFETY: `boxed` is a live, aligned StartInfo.
        let copy = unsafe { read_at(&*boxed as *const StartInfo as u64) };
        assert!(copy.is_ok());
    }
}
