//! `struct start_info` (`public/xen.h`): what Xen hands a PV kernel in RSI at entry.

/// `SIF_PRIVILEGED`: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`: the domain is the initial domain (dom0).
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MULTIBOOT_MOD`: `mod_start` points to a multiboot module list.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `SIF_MOD_START_PFN`: `mod_start` is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `SIF_VIRT_P2M_4TOOLS`: the p2m is virtually mapped for the tools.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;

/// The magic prefix of a 64-bit PV start_info (followed by more text, e.g. nothing or a suffix).
pub const MAGIC_PREFIX: &[u8] = b"xen-3.0-x86_64";

/// `struct start_info` for 64-bit guests (1168 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// "xen-<version>-<platform>", NUL-padded.
    pub magic: [u8; 32],
    /// Total pages allocated to this domain.
    pub nr_pages: u64,
    /// Machine address of the shared_info page.
    pub shared_info: u64,
    /// `SIF_*`.
    pub flags: u32,
    /// Machine frame of the xenstore ring.
    pub store_mfn: u64,
    /// Event channel for xenstore.
    pub store_evtchn: u32,
    /// domU: console ring MFN; dom0: `info_off` (low 32 bits) and `info_size` (high 32 bits).
    pub console_mfn: u64,
    /// domU: console event channel.
    pub console_evtchn: u32,
    /// Virtual address of the bootstrap page tables.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the page-frame list (p2m).
    pub mfn_list: u64,
    /// Virtual address (or PFN) of the first module.
    pub mod_start: u64,
    /// Size of the first module in bytes.
    pub mod_len: u64,
    /// Kernel command line, NUL-terminated.
    pub cmd_line: [u8; 1024],
    /// First PFN of the physically mapped p2m (0 if none).
    pub first_p2m_pfn: u64,
    /// Number of p2m frames.
    pub nr_p2m_frames: u64,
}
const _: () = assert!(core::mem::size_of::<StartInfo>() == 1168);

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

impl StartInfo {
    /// Checks the magic.
    pub fn validate(&self) -> Result<(), StartInfoError> {
        if self.magic.starts_with(MAGIC_PREFIX) {
            Ok(())
        } else {
            Err(StartInfoError::BadMagic)
        }
    }

    /// The magic as text.
    pub fn magic_str(&self) -> &str {
        crate::version::c_str(&self.magic).unwrap_or("<not utf-8>")
    }

    /// The command line as text (up to the first NUL; `None` if it is not UTF-8).
    pub fn cmd_line_str(&self) -> Option<&str> {
        crate::version::c_str(&self.cmd_line)
    }

    /// Whether Xen marked this domain as the initial, privileged domain.
    pub fn is_initdomain(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }

    /// Copies the start_info Xen placed at virtual address `va`.
    ///
    /// # Safety
    /// `va` must be the address Xen passed in RSI at entry (mapped, readable, 1168 bytes).
    pub unsafe fn read_from(va: u64) -> Result<StartInfo, StartInfoError> {
        if va == 0 || !va.is_multiple_of(8) {
            return Err(StartInfoError::BadAddress(va));
        }
        // SAFETY: the caller guarantees `va` is Xen's mapped start_info; the address is non-null
        // and aligned (checked above) and `StartInfo` is plain old data.
        let si = unsafe { core::ptr::read_volatile(va as *const StartInfo) };
        si.validate()?;
        Ok(si)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn blank() -> Box<StartInfo> {
        Box::new(StartInfo {
            magic: [0; 32],
            nr_pages: 0,
            shared_info: 0,
            flags: 0,
            store_mfn: 0,
            store_evtchn: 0,
            console_mfn: 0,
            console_evtchn: 0,
            pt_base: 0,
            nr_pt_frames: 0,
            mfn_list: 0,
            mod_start: 0,
            mod_len: 0,
            cmd_line: [0; 1024],
            first_p2m_pfn: 0,
            nr_p2m_frames: 0,
        })
    }

    #[test]
    fn layout_matches_xen() {
        assert_eq!(core::mem::offset_of!(StartInfo, nr_pages), 32);
        assert_eq!(core::mem::offset_of!(StartInfo, shared_info), 40);
        assert_eq!(core::mem::offset_of!(StartInfo, flags), 48);
        assert_eq!(core::mem::offset_of!(StartInfo, store_mfn), 56);
        assert_eq!(core::mem::offset_of!(StartInfo, store_evtchn), 64);
        assert_eq!(core::mem::offset_of!(StartInfo, console_mfn), 72);
        assert_eq!(core::mem::offset_of!(StartInfo, pt_base), 88);
        assert_eq!(core::mem::offset_of!(StartInfo, mfn_list), 104);
        assert_eq!(core::mem::offset_of!(StartInfo, mod_start), 112);
        assert_eq!(core::mem::offset_of!(StartInfo, mod_len), 120);
        assert_eq!(core::mem::offset_of!(StartInfo, cmd_line), 128);
        assert_eq!(core::mem::offset_of!(StartInfo, first_p2m_pfn), 1152);
        assert_eq!(core::mem::offset_of!(StartInfo, nr_p2m_frames), 1160);
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
            assert!(matches!(
                StartInfo::read_from(0),
                Err(StartInfoError::BadAddress(0))
            ));
            assert!(matches!(
                StartInfo::read_from(0x1003),
                Err(StartInfoError::BadAddress(0x1003))
            ));
        }
        let si = blank();
        let mut good = *si;
        good.magic[..14].copy_from_slice(MAGIC_PREFIX);
        let boxed = Box::new(good);
        // SAFETY: `boxed` is a live, aligned StartInfo.
        let copy = unsafe { StartInfo::read_from(&*boxed as *const StartInfo as u64) };
        assert!(copy.is_ok());
    }
}
