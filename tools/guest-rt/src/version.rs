//! `xen_version` (`public/version.h`): version number, strings, features, platform parameters.

use crate::errno::XenResult;
use crate::hypercall::{self, XEN_VERSION};

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;
/// `XENVER_extraversion`: `char[16]`.
pub const XENVER_EXTRAVERSION: u64 = 1;
/// `XENVER_compile_info`: `struct xen_compile_info` (64 + 16 + 32 + 32 bytes).
pub const XENVER_COMPILE_INFO: u64 = 2;
/// `XENVER_capabilities`: `char[1024]`.
pub const XENVER_CAPABILITIES: u64 = 3;
/// `XENVER_changeset`: `char[64]`.
pub const XENVER_CHANGESET: u64 = 4;
/// `XENVER_platform_parameters`: `struct { xen_ulong_t virt_start; }`.
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
/// `XENVER_get_features`: `struct xen_feature_info`.
pub const XENVER_GET_FEATURES: u64 = 6;
/// `XENVER_pagesize`: returns the page size, no argument.
pub const XENVER_PAGESIZE: u64 = 7;
/// `XENVER_guest_handle`: `xen_domain_handle_t` (16 bytes).
pub const XENVER_GUEST_HANDLE: u64 = 8;
/// `XENVER_commandline`: `char[1024]`.
pub const XENVER_COMMANDLINE: u64 = 9;
/// `XENVER_build_id`: `struct xen_build_id { u32 len; u8 buf[]; }`.
pub const XENVER_BUILD_ID: u64 = 10;

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables`.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`.
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad`.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist`.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits`.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector`.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs`.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`.
pub const XENFEAT_DOM0: u32 = 11;

/// Size of `xen_extraversion_t`.
pub const EXTRAVERSION_LEN: usize = 16;
/// Size of `xen_capabilities_info_t`.
pub const CAPABILITIES_LEN: usize = 1024;
/// Size of `xen_changeset_info_t`.
pub const CHANGESET_LEN: usize = 64;
/// Size of `xen_commandline_t`.
pub const COMMANDLINE_LEN: usize = 1024;

/// `struct xen_feature_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureInfo {
    /// IN: which 32-bit submap.
    pub submap_idx: u32,
    /// OUT: the feature bits of that submap.
    pub submap: u32,
}
const _: () = assert!(core::mem::size_of::<FeatureInfo>() == 8);

/// `xen_version(cmd, NULL)` for the sub-ops that take no argument (`XENVER_version`,
/// `XENVER_pagesize`) or to probe an unknown sub-op.
pub fn scalar(cmd: u64) -> XenResult {
    hypercall::call_with_bad_ptr(XEN_VERSION, cmd, hypercall::BadPtr::NULL)
}

/// `xen_version(cmd, buf)` for the sub-ops that fill a character buffer; `buf` must be exactly
/// the size the sub-op writes (see the `*_LEN` constants), otherwise `Err(-EINVAL)` is returned
/// without calling Xen.
pub fn into_buffer(cmd: u64, buf: &mut [u8]) -> XenResult {
    let want = match cmd {
        XENVER_EXTRAVERSION => EXTRAVERSION_LEN,
        XENVER_CAPABILITIES => CAPABILITIES_LEN,
        XENVER_CHANGESET => CHANGESET_LEN,
        XENVER_COMMANDLINE => COMMANDLINE_LEN,
        XENVER_GUEST_HANDLE => 16,
        XENVER_COMPILE_INFO => 144,
        XENVER_PLATFORM_PARAMETERS => 8,
        _ => return Err(crate::errno::Errno::EINVAL),
    };
    if buf.len() != want {
        return Err(crate::errno::Errno::EINVAL);
    }
    // SAFETY: for these sub-ops Xen writes exactly `want` bytes to the argument, and `buf` is
    // an exclusive slice of that length.
    unsafe { hypercall::call(XEN_VERSION, [cmd, buf.as_mut_ptr() as u64, 0, 0, 0]) }
}

/// `XENVER_version`: `(major, minor)`.
pub fn version() -> Result<(u16, u16), crate::errno::Errno> {
    let v = scalar(XENVER_VERSION)?;
    Ok(split_version(v))
}

/// Splits `major << 16 | minor`.
pub fn split_version(v: i64) -> (u16, u16) {
    (((v >> 16) & 0xffff) as u16, (v & 0xffff) as u16)
}

/// `XENVER_get_features` for submap `idx`.
pub fn features(idx: u32) -> Result<u32, crate::errno::Errno> {
    let mut fi = FeatureInfo {
        submap_idx: idx,
        submap: 0,
    };
    // SAFETY: Xen reads and writes the 8-byte `struct xen_feature_info` at `&mut fi`.
    unsafe {
        hypercall::call(
            XEN_VERSION,
            [
                XENVER_GET_FEATURES,
                &mut fi as *mut FeatureInfo as u64,
                0,
                0,
                0,
            ],
        )?;
    }
    Ok(fi.submap)
}

/// `XENVER_platform_parameters`: the start of the hypervisor's virtual range.
pub fn platform_virt_start() -> Result<u64, crate::errno::Errno> {
    let mut buf = [0u8; 8];
    into_buffer(XENVER_PLATFORM_PARAMETERS, &mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

/// The text of a NUL-terminated buffer up to its first NUL (or all of it), if it is UTF-8.
pub fn c_str(buf: &[u8]) -> Option<&str> {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    core::str::from_utf8(&buf[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;

    #[test]
    fn version_split() {
        assert_eq!(split_version((4 << 16) | 17), (4, 17));
        assert_eq!(split_version(0), (0, 0));
    }

    #[test]
    fn c_strings() {
        assert_eq!(c_str(b".7\0\0junk"), Some(".7"));
        assert_eq!(c_str(b"abc"), Some("abc"));
        assert_eq!(c_str(b"\xff\0"), None);
    }

    #[test]
    fn buffer_sizes_are_enforced_before_calling() {
        let mut small = [0u8; 8];
        assert_eq!(
            into_buffer(XENVER_EXTRAVERSION, &mut small),
            Err(Errno::EINVAL)
        );
        assert_eq!(into_buffer(XENVER_VERSION, &mut small), Err(Errno::EINVAL));
    }
}
