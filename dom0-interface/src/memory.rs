//! Memory reservation and physmap operations, mirroring `xen/include/public/memory.h`
//! (Xen 4.17): `XENMEM_*` sub-ops of `HYPERVISOR_memory_op` and the structs a PV/PVH guest
//! and its toolstack use, plus the E820 entry format `XENMEM_memory_map` returns.

use crate::arch_x86::{XenPfn, XenUlong};
use crate::guest_abi;
use crate::xen::DomId;

/// `XENMEM_increase_reservation`.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page`.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation`: arg is `xen_memory_domain`.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation`: arg is `xen_memory_domain`.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_machphys_mfn_list`.
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map`: the caller's pseudo-physical E820 map.
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_machine_memory_map`: the host E820 map (privileged).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// `XENMEM_exchange`.
pub const XENMEM_EXCHANGE: u32 = 11;
/// `XENMEM_machphys_mapping`.
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// `XENMEM_set_memory_map`: arg is `xen_foreign_memory_map`.
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// `XENMEM_maximum_gpfn`.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap`.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// `XENMEM_set_pod_target`.
pub const XENMEM_SET_POD_TARGET: u32 = 16;
/// `XENMEM_get_pod_target`.
pub const XENMEM_GET_POD_TARGET: u32 = 17;
/// `XENMEM_get_sharing_freed_pages`.
pub const XENMEM_GET_SHARING_FREED_PAGES: u32 = 18;
/// `XENMEM_get_sharing_shared_pages`.
pub const XENMEM_GET_SHARING_SHARED_PAGES: u32 = 19;
/// `XENMEM_paging_op`.
pub const XENMEM_PAGING_OP: u32 = 20;
/// `XENMEM_access_op`.
pub const XENMEM_ACCESS_OP: u32 = 21;
/// `XENMEM_sharing_op`.
pub const XENMEM_SHARING_OP: u32 = 22;
/// `XENMEM_add_to_physmap_batch`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// `XENMEM_claim_pages`.
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// `XENMEM_machphys_compat_mfn_list`.
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// `XENMEM_get_vnumainfo`.
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// `XENMEM_reserved_device_memory_map`.
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// `XENMEM_acquire_resource`.
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// `XENMEMF_get_address_bits`: address-bits limit in `mem_flags` (0: none).
pub const fn xenmemf_get_address_bits(flags: u32) -> u32 {
    flags & 0xff
}
/// `XENMEMF_node(x)`.
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}
/// `XENMEMF_get_node(x)`.
pub const fn xenmemf_get_node(flags: u32) -> u32 {
    ((flags >> 8).wrapping_sub(1)) & 0xff
}
/// `XENMEMF_populate_on_demand`.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `XENMEMF_exact_node_request`.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `XENMEMF_vnode`.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `XENMAPSPACE_shared_info`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`.
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio` (Arm only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// `XENMAPIDX_grant_table_status`: with `XENMAPSPACE_grant_table`, map a status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `struct xen_memory_reservation`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Guest handle of a `xen_pfn_t` array of extent bases.
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: XenUlong,
    /// Each extent is 2^extent_order pages.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    /// Domain (unprivileged callers: DOMID_SELF only).
    pub domid: DomId,
}
guest_abi!(XenMemoryReservation {
    extent_start,
    nr_extents,
    extent_order,
    mem_flags,
    domid
});

/// `struct xen_memory_exchange`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryExchange {
    /// IN: extents to give up.
    pub r#in: XenMemoryReservation,
    /// IN/OUT: extents to receive.
    pub out: XenMemoryReservation,
    /// OUT: input extents exchanged (caller initialises to 0).
    pub nr_exchanged: XenUlong,
}
guest_abi!(XenMemoryExchange {
    r#in,
    out,
    nr_exchanged
});

/// `struct xen_memory_domain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryDomain {
    /// Domain queried.
    pub domid: DomId,
}
guest_abi!(XenMemoryDomain { domid });

/// `struct xen_machphys_mfn_list`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMachphysMfnList {
    /// IN: size of `extent_start`.
    pub max_extents: u32,
    /// IN: guest handle of a `xen_pfn_t` array (one MFN per 2 MiB of the M2P table).
    pub extent_start: u64,
    /// OUT: entries written.
    pub nr_extents: u32,
}
guest_abi!(XenMachphysMfnList {
    max_extents,
    extent_start,
    nr_extents
});

/// `struct xen_machphys_mapping`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMachphysMapping {
    /// Start virtual address of the M2P table.
    pub v_start: XenUlong,
    /// End virtual address.
    pub v_end: XenUlong,
    /// Maximum MFN that can be looked up.
    pub max_mfn: XenUlong,
}
guest_abi!(XenMachphysMapping {
    v_start,
    v_end,
    max_mfn
});

/// `struct xen_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// Domain whose mapping changes.
    pub domid: DomId,
    /// Pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: XenUlong,
    /// GPFN where the page should appear.
    pub gpfn: XenPfn,
}
guest_abi!(XenAddToPhysmap {
    domid,
    size,
    space,
    idx,
    gpfn
});

/// `struct xen_remove_from_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose mapping changes.
    pub domid: DomId,
    /// GPFN of the mapping to remove.
    pub gpfn: XenPfn,
}
guest_abi!(XenRemoveFromPhysmap { domid, gpfn });

/// `struct xen_memory_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// IN: entries the buffer holds; OUT: entries stored.
    pub nr_entries: u32,
    /// Guest handle of an array of [`E820Entry`].
    pub buffer: u64,
}
guest_abi!(XenMemoryMap { nr_entries, buffer });

/// `struct xen_foreign_memory_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenForeignMemoryMap {
    /// Target domain.
    pub domid: DomId,
    /// The map.
    pub map: XenMemoryMap,
}
guest_abi!(XenForeignMemoryMap { domid, map });

/// One entry of the `XENMEM_memory_map` buffer: "the same format as returned by the BIOS
/// INT 0x15 EAX=0xE820 call", i.e. 20 packed bytes (base, length, type).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    /// Base address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_*` type.
    pub r#type: u32,
}
guest_abi!(E820Entry { addr, size, r#type });

/// E820 usable RAM (same numbering as `XEN_HVM_MEMMAP_TYPE_RAM`).
pub const E820_RAM: u32 = crate::hvm::XEN_HVM_MEMMAP_TYPE_RAM;
/// E820 reserved.
pub const E820_RESERVED: u32 = crate::hvm::XEN_HVM_MEMMAP_TYPE_RESERVED;
/// E820 ACPI reclaimable.
pub const E820_ACPI: u32 = crate::hvm::XEN_HVM_MEMMAP_TYPE_ACPI;
/// E820 ACPI NVS.
pub const E820_NVS: u32 = crate::hvm::XEN_HVM_MEMMAP_TYPE_NVS;
/// E820 unusable.
pub const E820_UNUSABLE: u32 = crate::hvm::XEN_HVM_MEMMAP_TYPE_UNUSABLE;

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<XenMemoryReservation>() == 32);
const _: () = assert!(offset_of!(XenMemoryReservation, nr_extents) == 8);
const _: () = assert!(offset_of!(XenMemoryReservation, extent_order) == 16);
const _: () = assert!(offset_of!(XenMemoryReservation, mem_flags) == 20);
const _: () = assert!(offset_of!(XenMemoryReservation, domid) == 24);
const _: () = assert!(size_of::<XenMemoryExchange>() == 72);
const _: () = assert!(offset_of!(XenMemoryExchange, out) == 32);
const _: () = assert!(offset_of!(XenMemoryExchange, nr_exchanged) == 64);
const _: () = assert!(size_of::<XenMemoryDomain>() == 2);
const _: () = assert!(size_of::<XenMachphysMfnList>() == 24);
const _: () = assert!(offset_of!(XenMachphysMfnList, extent_start) == 8);
const _: () = assert!(offset_of!(XenMachphysMfnList, nr_extents) == 16);
const _: () = assert!(size_of::<XenMachphysMapping>() == 24);
const _: () = assert!(size_of::<XenAddToPhysmap>() == 24);
const _: () = assert!(offset_of!(XenAddToPhysmap, size) == 2);
const _: () = assert!(offset_of!(XenAddToPhysmap, space) == 4);
const _: () = assert!(offset_of!(XenAddToPhysmap, idx) == 8);
const _: () = assert!(offset_of!(XenAddToPhysmap, gpfn) == 16);
const _: () = assert!(size_of::<XenRemoveFromPhysmap>() == 16);
const _: () = assert!(offset_of!(XenRemoveFromPhysmap, gpfn) == 8);
const _: () = assert!(size_of::<XenMemoryMap>() == 16);
const _: () = assert!(offset_of!(XenMemoryMap, buffer) == 8);
const _: () = assert!(size_of::<XenForeignMemoryMap>() == 24);
const _: () = assert!(offset_of!(XenForeignMemoryMap, map) == 8);
const _: () = assert!(size_of::<E820Entry>() == 20);
const _: () = assert!(offset_of!(E820Entry, r#type) == 16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;
    use crate::xen::DOMID_SELF;

    #[test]
    fn reservation_known_bytes() {
        let r = XenMemoryReservation {
            extent_start: 0x1000,
            nr_extents: 3,
            extent_order: 9,
            mem_flags: xenmemf_node(1) | 32,
            domid: DOMID_SELF,
        };
        let b = r.to_vec();
        assert_eq!(&b[16..28], &[9, 0, 0, 0, 32, 2, 0, 0, 0xf0, 0x7f, 0, 0]);
        assert_eq!(XenMemoryReservation::read_from(&b), Ok(r));
        assert_eq!(xenmemf_get_node(r.mem_flags), 1);
        assert_eq!(xenmemf_get_address_bits(r.mem_flags), 32);
        let x = XenMemoryExchange {
            r#in: r,
            out: r,
            nr_exchanged: 0,
        };
        assert_eq!(XenMemoryExchange::read_from(&x.to_vec()), Ok(x));
    }

    #[test]
    fn e820_entries_are_packed() {
        let entries = [
            E820Entry {
                addr: 0,
                size: 0x9_f000,
                r#type: E820_RAM,
            },
            E820Entry {
                addr: 0x10_0000,
                size: 0x3ff0_0000,
                r#type: E820_RAM,
            },
        ];
        let bytes: alloc::vec::Vec<u8> = entries.iter().flat_map(|e| e.to_vec()).collect();
        assert_eq!(bytes.len(), 40);
        assert_eq!(&bytes[16..20], &[1, 0, 0, 0]);
        assert_eq!(&bytes[20..28], &0x10_0000u64.to_le_bytes());
        assert_eq!(E820Entry::read_element(&bytes, 1), Ok(entries[1]));
    }

    #[test]
    fn physmap_round_trip() {
        let a = XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn: 0xfeff0,
        };
        let b = a.to_vec();
        assert_eq!(&b[16..24], &0xfeff0u64.to_le_bytes());
        assert_eq!(XenAddToPhysmap::read_from(&b), Ok(a));
        let m = XenMemoryMap {
            nr_entries: 128,
            buffer: 0x2000,
        };
        assert_eq!(XenMemoryMap::read_from(&m.to_vec()), Ok(m));
        let l = XenMachphysMfnList {
            max_extents: 4,
            extent_start: 0x3000,
            nr_extents: 2,
        };
        assert_eq!(XenMachphysMfnList::read_from(&l.to_vec()), Ok(l));
        let p = XenMachphysMapping {
            v_start: crate::arch_x86::MACH2PHYS_VIRT_START,
            v_end: crate::arch_x86::MACH2PHYS_VIRT_END,
            max_mfn: 0xf_ffff,
        };
        assert_eq!(XenMachphysMapping::read_from(&p.to_vec()), Ok(p));
    }
}
