//! Grant tables, mirroring `xen/include/public/grant_table.h` (Xen 4.17):
//! grant entries (v1, v2 header), `GTF_*`, `GNTTABOP_*` sub-ops and their structs,
//! `GNTMAP_*`, `GNTCOPY_*` and `GNTST_*` statuses.

use crate::guest_abi;
use crate::xen::{DomId, XenPfn};

/// `grant_ref_t`.
pub type GrantRef = u32;
/// `grant_handle_t`.
pub type GrantHandle = u32;
/// `grant_status_t` (v2 status frames).
pub type GrantStatus = u16;

/// `GNTTAB_NR_RESERVED_ENTRIES`: entries preserved for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// `GNTTAB_RESERVED_XENSTORE`.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// `GTF_invalid`.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive` (v2).
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading` (set by Xen while mapped for reading).
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing` (set by Xen while mapped for writing).
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT`.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page` (v2).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// `GTF_transfer_committed`.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// `GTF_transfer_completed`.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`.
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table`.
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer`.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`.
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace`.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version`.
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames`.
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version`.
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// `GNTTABOP_swap_grant_ref`.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// `GNTTABOP_cache_flush`.
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// `GNTMAP_device_map`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_application_map`.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `GNTMAP_contains_pte`.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// `GNTMAP_guest_avail_mask`: bits 16 and up are for the guest.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << 16;

/// `GNTCOPY_source_gref`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTTAB_CACHE_CLEAN`.
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// `GNTTAB_CACHE_INVAL`.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// `GNTTAB_CACHE_SOURCE_GREF`.
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle`.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr`.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_bad_dev_addr`.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// `GNTST_no_device_space`.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page`.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg`.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_address_too_big`.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// `GNTST_eagain`.
pub const GNTST_EAGAIN: i16 = -12;
/// `GNTST_no_space`.
pub const GNTST_NO_SPACE: i16 = -13;

/// `GNTTABOP_error_msgs`: the header's message for a `GNTST_*` status.
pub const fn gntst_message(status: i16) -> Option<&'static str> {
    Some(match status {
        0 => "okay",
        -1 => "undefined error",
        -2 => "unrecognised domain id",
        -3 => "invalid grant reference",
        -4 => "invalid mapping handle",
        -5 => "invalid virtual address",
        -6 => "invalid device address",
        -7 => "no spare translation slot in the I/O MMU",
        -8 => "permission denied",
        -9 => "bad page",
        -10 => "copy arguments cross page boundary",
        -11 => "page address size too large",
        -12 => "operation not done; try again",
        -13 => "out of space",
        _ => return None,
    })
}

/// `struct grant_entry_v1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// `GTF_*`.
    pub flags: u16,
    /// Domain being granted foreign privileges.
    pub domid: DomId,
    /// Frame the grantee may map (or transfer into / that was transferred).
    pub frame: u32,
}
guest_abi!(GrantEntryV1 {
    flags,
    domid,
    frame
});

/// v1 entries in one 4 KiB grant-table frame.
pub const GRANT_ENTRIES_V1_PER_PAGE: usize = 4096 / core::mem::size_of::<GrantEntryV1>();

/// `struct grant_entry_header` (first 4 bytes of a v2 entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryHeader {
    /// `GTF_*`.
    pub flags: u16,
    /// Grantee.
    pub domid: DomId,
}
guest_abi!(GrantEntryHeader { flags, domid });

/// `union grant_entry_v2`, 16 bytes: the header and 12 bytes whose meaning depends on
/// the grant type (full page: pad + u64 frame; sub page: offset, length, frame;
/// transitive: trans_domid, pad, gref).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV2 {
    /// Common header.
    pub hdr: GrantEntryHeader,
    /// The type-specific words after the header.
    pub body: [u32; 3],
}
guest_abi!(GrantEntryV2 { hdr, body });

impl GrantEntryV2 {
    /// `full_page.frame` / `sub_page.frame`.
    pub const fn frame(&self) -> u64 {
        self.body[1] as u64 | ((self.body[2] as u64) << 32)
    }
    /// `sub_page.page_off` and `sub_page.length`.
    pub const fn sub_page(&self) -> (u16, u16) {
        (self.body[0] as u16, (self.body[0] >> 16) as u16)
    }
    /// `transitive.trans_domid` and `transitive.gref`.
    pub const fn transitive(&self) -> (DomId, GrantRef) {
        (self.body[0] as u16, self.body[1])
    }
}

/// `struct gnttab_map_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// IN: where to map (or PTE machine address with `GNTMAP_contains_pte`).
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN.
    pub r#ref: GrantRef,
    /// IN: granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT.
    pub handle: GrantHandle,
    /// OUT.
    pub dev_bus_addr: u64,
}
guest_abi!(GnttabMapGrantRef {
    host_addr,
    flags,
    r#ref,
    dom,
    status,
    handle,
    dev_bus_addr
});

/// `struct gnttab_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// IN.
    pub host_addr: u64,
    /// IN.
    pub dev_bus_addr: u64,
    /// IN.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
}
guest_abi!(GnttabUnmapGrantRef {
    host_addr,
    dev_bus_addr,
    handle,
    status
});

/// `struct gnttab_setup_table`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// IN.
    pub dom: DomId,
    /// IN.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// IN: guest handle of a `xen_pfn_t` array receiving the frames.
    pub frame_list: u64,
}
guest_abi!(GnttabSetupTable {
    dom,
    nr_frames,
    status,
    frame_list
});

/// `struct gnttab_dump_table`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabDumpTable {
    /// IN.
    pub dom: DomId,
    /// OUT.
    pub status: i16,
}
guest_abi!(GnttabDumpTable { dom, status });

/// `struct gnttab_transfer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabTransfer {
    /// IN.
    pub mfn: XenPfn,
    /// IN.
    pub domid: DomId,
    /// IN.
    pub r#ref: GrantRef,
    /// OUT.
    pub status: i16,
}
guest_abi!(GnttabTransfer {
    mfn,
    domid,
    r#ref,
    status
});

/// `struct gnttab_copy_ptr`. The `u` union (`ref` or `gmfn`) is kept as its u64 storage.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// `u.ref` (low 32 bits, with `GNTCOPY_*_gref`) or `u.gmfn`.
    pub u: u64,
    /// Domain.
    pub domid: DomId,
    /// Byte offset in the page.
    pub offset: u16,
}
guest_abi!(GnttabCopyPtr { u, domid, offset });

impl GnttabCopyPtr {
    /// `u.ref`.
    pub const fn gref(&self) -> GrantRef {
        self.u as u32
    }
}

/// `struct gnttab_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// IN.
    pub source: GnttabCopyPtr,
    /// IN.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
}
guest_abi!(GnttabCopy {
    source,
    dest,
    len,
    flags,
    status
});

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// IN.
    pub dom: DomId,
    /// OUT.
    pub nr_frames: u32,
    /// OUT.
    pub max_nr_frames: u32,
    /// OUT.
    pub status: i16,
}
guest_abi!(GnttabQuerySize {
    dom,
    nr_frames,
    max_nr_frames,
    status
});

/// `struct gnttab_unmap_and_replace`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapAndReplace {
    /// IN.
    pub host_addr: u64,
    /// IN.
    pub new_addr: u64,
    /// IN.
    pub handle: GrantHandle,
    /// OUT.
    pub status: i16,
}
guest_abi!(GnttabUnmapAndReplace {
    host_addr,
    new_addr,
    handle,
    status
});

/// `struct gnttab_set_version`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetVersion {
    /// IN/OUT.
    pub version: u32,
}
guest_abi!(GnttabSetVersion { version });

/// `struct gnttab_get_status_frames`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetStatusFrames {
    /// IN.
    pub nr_frames: u32,
    /// IN.
    pub dom: DomId,
    /// OUT.
    pub status: i16,
    /// IN: guest handle of a `uint64_t` array.
    pub frame_list: u64,
}
guest_abi!(GnttabGetStatusFrames {
    nr_frames,
    dom,
    status,
    frame_list
});

/// `struct gnttab_get_version`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetVersion {
    /// IN.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// OUT.
    pub version: u32,
}
guest_abi!(GnttabGetVersion { dom, pad, version });

/// `struct gnttab_swap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSwapGrantRef {
    /// IN.
    pub ref_a: GrantRef,
    /// IN.
    pub ref_b: GrantRef,
    /// OUT.
    pub status: i16,
}
guest_abi!(GnttabSwapGrantRef {
    ref_a,
    ref_b,
    status
});

/// `struct gnttab_cache_flush`. The `a` union (`dev_bus_addr` or `ref`) is its u64 storage.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCacheFlush {
    /// `a.dev_bus_addr`, or `a.ref` in the low 32 bits with `GNTTAB_CACHE_SOURCE_GREF`.
    pub a: u64,
    /// Offset from the start of the grant.
    pub offset: u16,
    /// Size within the grant.
    pub length: u16,
    /// `GNTTAB_CACHE_*`.
    pub op: u32,
}
guest_abi!(GnttabCacheFlush {
    a,
    offset,
    length,
    op
});

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<GrantEntryV1>() == 8);
const _: () = assert!(offset_of!(GrantEntryV1, domid) == 2);
const _: () = assert!(offset_of!(GrantEntryV1, frame) == 4);
const _: () = assert!(size_of::<GrantEntryHeader>() == 4);
const _: () = assert!(size_of::<GrantEntryV2>() == 16);
const _: () = assert!(size_of::<GnttabMapGrantRef>() == 32);
const _: () = assert!(offset_of!(GnttabMapGrantRef, flags) == 8);
const _: () = assert!(offset_of!(GnttabMapGrantRef, r#ref) == 12);
const _: () = assert!(offset_of!(GnttabMapGrantRef, dom) == 16);
const _: () = assert!(offset_of!(GnttabMapGrantRef, status) == 18);
const _: () = assert!(offset_of!(GnttabMapGrantRef, handle) == 20);
const _: () = assert!(offset_of!(GnttabMapGrantRef, dev_bus_addr) == 24);
const _: () = assert!(size_of::<GnttabUnmapGrantRef>() == 24);
const _: () = assert!(offset_of!(GnttabUnmapGrantRef, handle) == 16);
const _: () = assert!(offset_of!(GnttabUnmapGrantRef, status) == 20);
const _: () = assert!(size_of::<GnttabSetupTable>() == 24);
const _: () = assert!(offset_of!(GnttabSetupTable, nr_frames) == 4);
const _: () = assert!(offset_of!(GnttabSetupTable, status) == 8);
const _: () = assert!(offset_of!(GnttabSetupTable, frame_list) == 16);
const _: () = assert!(size_of::<GnttabDumpTable>() == 4);
const _: () = assert!(size_of::<GnttabTransfer>() == 24);
const _: () = assert!(offset_of!(GnttabTransfer, domid) == 8);
const _: () = assert!(offset_of!(GnttabTransfer, r#ref) == 12);
const _: () = assert!(offset_of!(GnttabTransfer, status) == 16);
const _: () = assert!(size_of::<GnttabCopyPtr>() == 16);
const _: () = assert!(size_of::<GnttabCopy>() == 40);
const _: () = assert!(offset_of!(GnttabCopy, dest) == 16);
const _: () = assert!(offset_of!(GnttabCopy, len) == 32);
const _: () = assert!(offset_of!(GnttabCopy, flags) == 34);
const _: () = assert!(offset_of!(GnttabCopy, status) == 36);
const _: () = assert!(size_of::<GnttabQuerySize>() == 16);
const _: () = assert!(offset_of!(GnttabQuerySize, nr_frames) == 4);
const _: () = assert!(offset_of!(GnttabQuerySize, max_nr_frames) == 8);
const _: () = assert!(offset_of!(GnttabQuerySize, status) == 12);
const _: () = assert!(size_of::<GnttabUnmapAndReplace>() == 24);
const _: () = assert!(size_of::<GnttabSetVersion>() == 4);
const _: () = assert!(size_of::<GnttabGetStatusFrames>() == 16);
const _: () = assert!(offset_of!(GnttabGetStatusFrames, status) == 6);
const _: () = assert!(offset_of!(GnttabGetStatusFrames, frame_list) == 8);
const _: () = assert!(size_of::<GnttabGetVersion>() == 8);
const _: () = assert!(size_of::<GnttabSwapGrantRef>() == 12);
const _: () = assert!(size_of::<GnttabCacheFlush>() == 16);
const _: () = assert!(offset_of!(GnttabCacheFlush, op) == 12);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn v1_entry_known_bytes() {
        let e = GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS | GTF_READONLY,
            domid: 0,
            frame: 0x12345,
        };
        let b = e.to_vec();
        assert_eq!(b, [5, 0, 0, 0, 0x45, 0x23, 0x01, 0]);
        assert_eq!(GrantEntryV1::read_from(&b), Ok(e));
        assert_eq!(GRANT_ENTRIES_V1_PER_PAGE, 512);
    }

    #[test]
    fn map_grant_ref_round_trip() {
        let m = GnttabMapGrantRef {
            host_addr: 0xffff_c900_0000_0000,
            flags: GNTMAP_HOST_MAP | GNTMAP_READONLY,
            r#ref: 8,
            dom: 1,
            status: GNTST_BAD_GNTREF,
            handle: 3,
            dev_bus_addr: 0x1000,
        };
        let b = m.to_vec();
        assert_eq!(&b[16..20], &[1, 0, 0xfd, 0xff]);
        assert_eq!(GnttabMapGrantRef::read_from(&b), Ok(m));
    }

    #[test]
    fn copy_round_trip() {
        let c = GnttabCopy {
            source: GnttabCopyPtr {
                u: 7,
                domid: 2,
                offset: 0x10,
            },
            dest: GnttabCopyPtr {
                u: 0xabcde,
                domid: crate::xen::DOMID_SELF,
                offset: 0,
            },
            len: 512,
            flags: GNTCOPY_SOURCE_GREF,
            status: GNTST_OKAY,
        };
        let b = c.to_vec();
        assert_eq!(&b[8..12], &[2, 0, 0x10, 0]);
        assert_eq!(&b[32..36], &[0, 2, 1, 0]);
        let back = GnttabCopy::read_from(&b).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.source.gref(), 7);
    }

    #[test]
    fn other_ops_round_trip() {
        let s = GnttabSetupTable {
            dom: 0x7ff0,
            nr_frames: 4,
            status: 0,
            frame_list: 0xdead_0000,
        };
        assert_eq!(GnttabSetupTable::read_from(&s.to_vec()), Ok(s));
        let q = GnttabQuerySize {
            dom: 1,
            nr_frames: 1,
            max_nr_frames: 64,
            status: -1,
        };
        assert_eq!(GnttabQuerySize::read_from(&q.to_vec()), Ok(q));
        let u = GnttabUnmapGrantRef {
            host_addr: 1,
            dev_bus_addr: 2,
            handle: 3,
            status: -4,
        };
        assert_eq!(GnttabUnmapGrantRef::read_from(&u.to_vec()), Ok(u));
        let v = GnttabSetVersion { version: 1 };
        assert_eq!(v.to_vec(), [1, 0, 0, 0]);
    }

    #[test]
    fn v2_views_and_messages() {
        let mut raw = [0u8; 16];
        raw[0] = 1;
        raw[4..6].copy_from_slice(&0x10u16.to_le_bytes());
        raw[6..8].copy_from_slice(&0x20u16.to_le_bytes());
        raw[8..16].copy_from_slice(&0x1_2345_6789u64.to_le_bytes());
        let e = GrantEntryV2::read_from(&raw).unwrap();
        assert_eq!(e.hdr.flags, GTF_PERMIT_ACCESS);
        assert_eq!(e.sub_page(), (0x10, 0x20));
        assert_eq!(e.frame(), 0x1_2345_6789);
        assert_eq!(e.to_vec(), raw);
        assert_eq!(
            gntst_message(GNTST_EAGAIN),
            Some("operation not done; try again")
        );
        assert_eq!(gntst_message(-14), None);
    }
}
