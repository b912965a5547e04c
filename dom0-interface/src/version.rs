//! Version queries, mirroring `xen/include/public/version.h` and `features.h` (Xen 4.17):
//! `XENVER_*` sub-ops of `HYPERVISOR_xen_version`, their argument buffers and `XENFEAT_*`.

use crate::guest_abi;
use crate::guest_abi::AbiError;

/// `XENVER_version`: arg NULL; returns major << 16 | minor.
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`: arg is `xen_extraversion_t`.
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_compile_info`: arg is `xen_compile_info_t`.
pub const XENVER_COMPILE_INFO: u32 = 2;
/// `XENVER_capabilities`: arg is `xen_capabilities_info_t`.
pub const XENVER_CAPABILITIES: u32 = 3;
/// `XENVER_changeset`: arg is `xen_changeset_info_t`.
pub const XENVER_CHANGESET: u32 = 4;
/// `XENVER_platform_parameters`: arg is `xen_platform_parameters_t`.
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// `XENVER_get_features`: arg is `xen_feature_info_t`.
pub const XENVER_GET_FEATURES: u32 = 6;
/// `XENVER_pagesize`: arg NULL; returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
/// `XENVER_guest_handle`: arg is `xen_domain_handle_t`.
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// `XENVER_commandline`: arg is `xen_commandline_t`.
pub const XENVER_COMMANDLINE: u32 = 9;
/// `XENVER_build_id`: arg is `xen_build_id_t`.
pub const XENVER_BUILD_ID: u32 = 10;

/// `XEN_EXTRAVERSION_LEN`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `XEN_CAPABILITIES_INFO_LEN`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `XEN_CHANGESET_INFO_LEN`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Size of `xen_commandline_t`.
pub const XEN_COMMANDLINE_LEN: usize = 1024;
/// Size of `xen_domain_handle_t` (the `XENVER_guest_handle` buffer).
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;

/// Encodes a `XENVER_version` result (major:minor, 16:16).
pub const fn xenver_version(major: u16, minor: u16) -> u32 {
    ((major as u32) << 16) | minor as u32
}

macro_rules! char_buffer {
    ($name:ident, $len:expr, $doc:literal) => {
        #[doc = $doc]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub [u8; $len]);
        guest_abi!($name { 0 });

        impl Default for $name {
            fn default() -> Self {
                Self([0; $len])
            }
        }

        impl $name {
            /// A NUL-terminated buffer holding `s`; fails if `s` leaves no room for the NUL.
            pub fn from_bytes(s: &[u8]) -> Result<Self, AbiError> {
                let mut out = Self::default();
                guest_abi::copy_cstr(&mut out.0, s)?;
                Ok(out)
            }
            /// The contents up to the first NUL.
            pub fn as_bytes(&self) -> &[u8] {
                guest_abi::cstr_bytes(&self.0)
            }
        }
    };
}

char_buffer!(
    XenExtraversion,
    XEN_EXTRAVERSION_LEN,
    "`xen_extraversion_t`: e.g. `\".0\"`."
);
char_buffer!(
    XenCapabilitiesInfo,
    XEN_CAPABILITIES_INFO_LEN,
    "`xen_capabilities_info_t`: space-separated guest types, e.g. `\"xen-3.0-x86_64 hvm-3.0-x86_64\"`."
);
char_buffer!(
    XenChangesetInfo,
    XEN_CHANGESET_INFO_LEN,
    "`xen_changeset_info_t`."
);
char_buffer!(XenCommandline, XEN_COMMANDLINE_LEN, "`xen_commandline_t`.");

/// `struct xen_compile_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCompileInfo {
    /// Compiler.
    pub compiler: [u8; 64],
    /// Built by.
    pub compile_by: [u8; 16],
    /// Build domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}
guest_abi!(XenCompileInfo {
    compiler,
    compile_by,
    compile_domain,
    compile_date
});

impl Default for XenCompileInfo {
    fn default() -> Self {
        Self {
            compiler: [0; 64],
            compile_by: [0; 16],
            compile_domain: [0; 32],
            compile_date: [0; 32],
        }
    }
}

/// `struct xen_platform_parameters`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenPlatformParameters {
    /// Start of the hypervisor's virtual range (x86-64 PV: `HYPERVISOR_VIRT_START`).
    pub virt_start: u64,
}
guest_abi!(XenPlatformParameters { virt_start });

/// `struct xen_feature_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap to return.
    pub submap_idx: u32,
    /// OUT: the submap.
    pub submap: u32,
}
guest_abi!(XenFeatureInfo { submap_idx, submap });

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
/// `XENFEAT_grant_map_identity`.
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported`.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported`.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted`.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_NR_SUBMAPS`.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The `XENVER_get_features` submap for `submap_idx`, given the feature numbers supported.
/// Returns `None` for an index beyond `XENFEAT_NR_SUBMAPS`.
pub fn feature_submap(features: &[u32], submap_idx: u32) -> Option<u32> {
    if submap_idx >= XENFEAT_NR_SUBMAPS {
        return None;
    }
    Some(
        features
            .iter()
            .filter(|&&f| f / 32 == submap_idx)
            .fold(0u32, |map, &f| map | (1 << (f % 32))),
    )
}

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<XenExtraversion>() == 16);
const _: () = assert!(size_of::<XenCapabilitiesInfo>() == 1024);
const _: () = assert!(size_of::<XenChangesetInfo>() == 64);
const _: () = assert!(size_of::<XenCommandline>() == 1024);
const _: () = assert!(size_of::<XenCompileInfo>() == 144);
const _: () = assert!(offset_of!(XenCompileInfo, compile_by) == 64);
const _: () = assert!(offset_of!(XenCompileInfo, compile_domain) == 80);
const _: () = assert!(offset_of!(XenCompileInfo, compile_date) == 112);
const _: () = assert!(size_of::<XenPlatformParameters>() == 8);
const _: () = assert!(size_of::<XenFeatureInfo>() == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn version_encoding() {
        assert_eq!(xenver_version(4, 17), 0x0004_0011);
    }

    #[test]
    fn char_buffers() {
        let e = XenExtraversion::from_bytes(b".0-dualvisor").unwrap();
        let b = e.to_vec();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[..13], b".0-dualvisor\0");
        assert_eq!(
            XenExtraversion::read_from(&b).unwrap().as_bytes(),
            b".0-dualvisor"
        );
        assert!(XenExtraversion::from_bytes(&[b'x'; 16]).is_err());
        let c = XenCapabilitiesInfo::from_bytes(b"xen-3.0-x86_64 hvm-3.0-x86_64").unwrap();
        assert_eq!(c.as_bytes(), b"xen-3.0-x86_64 hvm-3.0-x86_64");
    }

    #[test]
    fn feature_info() {
        let map = feature_submap(
            &[
                XENFEAT_WRITABLE_PAGE_TABLES,
                XENFEAT_DOM0,
                XENFEAT_HVM_CALLBACK_VECTOR,
            ],
            0,
        );
        assert_eq!(map, Some((1 << 0) | (1 << 11) | (1 << 8)));
        assert_eq!(feature_submap(&[XENFEAT_DOM0], 1), None);
        let f = XenFeatureInfo {
            submap_idx: 0,
            submap: 0x901,
        };
        let b = f.to_vec();
        assert_eq!(b, [0, 0, 0, 0, 1, 9, 0, 0]);
        assert_eq!(XenFeatureInfo::read_from(&b), Ok(f));
    }

    #[test]
    fn compile_info_round_trip() {
        let mut c = XenCompileInfo::default();
        guest_abi::copy_cstr(&mut c.compiler, b"rustc").unwrap();
        guest_abi::copy_cstr(&mut c.compile_date, b"today").unwrap();
        let b = c.to_vec();
        assert_eq!(&b[112..117], b"today");
        assert_eq!(XenCompileInfo::read_from(&b), Ok(c));
    }
}
