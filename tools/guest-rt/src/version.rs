//! `xen_version` (`public/version.h`): version number, strings, features, platform parameters.

use crate::errno::XenResult;
use crate::hypercall::{self, XEN_VERSION};
use core::mem::size_of;

use dom0_interface::version::{XenCompileInfo, XenPlatformParameters, XEN_DOMAIN_HANDLE_LEN};
pub use dom0_interface::version::{
    XenFeatureInfo as FeatureInfo, XENFEAT_AUTO_TRANSLATED_PHYSMAP, XENFEAT_DOM0,
    XENFEAT_GNTTAB_MAP_AVAIL_BITS, XENFEAT_HIGHMEM_ASSIST, XENFEAT_HVM_CALLBACK_VECTOR,
    XENFEAT_HVM_PIRQS, XENFEAT_HVM_SAFE_PVCLOCK, XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
    XENFEAT_PAE_PGDIR_ABOVE_4GB, XENFEAT_SUPERVISOR_MODE_KERNEL,
    XENFEAT_WRITABLE_DESCRIPTOR_TABLES, XENFEAT_WRITABLE_PAGE_TABLES, XENVER_BUILD_ID,
    XENVER_CAPABILITIES, XENVER_CHANGESET, XENVER_COMMANDLINE, XENVER_COMPILE_INFO,
    XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_GUEST_HANDLE, XENVER_PAGESIZE,
    XENVER_PLATFORM_PARAMETERS, XENVER_VERSION, XEN_CAPABILITIES_INFO_LEN as CAPABILITIES_LEN,
    XEN_CHANGESET_INFO_LEN as CHANGESET_LEN, XEN_COMMANDLINE_LEN as COMMANDLINE_LEN,
    XEN_EXTRAVERSION_LEN as EXTRAVERSION_LEN,
};

/// `xen_version(cmd, NULL)` for the sub-ops that take no argument (`XENVER_version`,
/// `XENVER_pagesize`) or to probe an unknown sub-op.
pub fn scalar(cmd: u32) -> XenResult {
    hypercall::call_with_bad_ptr(XEN_VERSION, cmd.into(), hypercall::BadPtr::NULL)
}

/// `xen_version(cmd, buf)` for the sub-ops that fill a character buffer; `buf` must be exactly
/// the size the sub-op writes (see the `*_LEN` constants), otherwise `Err(-EINVAL)` is returned
/// without calling Xen.
pub fn into_buffer(cmd: u32, buf: &mut [u8]) -> XenResult {
    let want = match cmd {
        XENVER_EXTRAVERSION => EXTRAVERSION_LEN,
        XENVER_CAPABILITIES => CAPABILITIES_LEN,
        XENVER_CHANGESET => CHANGESET_LEN,
        XENVER_COMMANDLINE => COMMANDLINE_LEN,
        XENVER_GUEST_HANDLE => XEN_DOMAIN_HANDLE_LEN,
        XENVER_COMPILE_INFO => size_of::<XenCompileInfo>(),
        XENVER_PLATFORM_PARAMETERS => size_of::<XenPlatformParameters>(),
        _ => return Err(crate::errno::Errno::EINVAL),
    };
    if buf.len() != want {
        return Err(crate::errno::Errno::EINVAL);
    }
    // SAFETY: for these sub-ops Xen writes exactly `want` bytes to the argument, and `buf` is
    // an exclusive slice of that length.
    unsafe { hypercall::call(XEN_VERSION, [cmd.into(), buf.as_mut_ptr() as u64, 0, 0, 0]) }
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
                XENVER_GET_FEATURES.into(),
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
