//! Physical device operations, mirroring `xen/include/public/physdev.h` (Xen 4.17):
//! `PHYSDEVOP_*` sub-ops of `HYPERVISOR_physdev_op` and the structs a PV kernel uses.

use crate::arch_x86::XenPfn;
use crate::guest_abi;
use crate::xen::DomId;

/// `PHYSDEVOP_IRQ_UNMASK_NOTIFY` (legacy).
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;
/// `PHYSDEVOP_irq_status_query`.
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// `PHYSDEVOP_set_iopl`.
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
/// `PHYSDEVOP_set_iobitmap`.
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
/// `PHYSDEVOP_apic_read`.
pub const PHYSDEVOP_APIC_READ: u32 = 8;
/// `PHYSDEVOP_apic_write`.
pub const PHYSDEVOP_APIC_WRITE: u32 = 9;
/// `PHYSDEVOP_alloc_irq_vector`.
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u32 = 10;
/// `PHYSDEVOP_free_irq_vector`.
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u32 = 11;
/// `PHYSDEVOP_eoi`.
pub const PHYSDEVOP_EOI: u32 = 12;
/// `PHYSDEVOP_map_pirq`.
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// `PHYSDEVOP_unmap_pirq`.
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
/// `PHYSDEVOP_manage_pci_add`.
pub const PHYSDEVOP_MANAGE_PCI_ADD: u32 = 15;
/// `PHYSDEVOP_manage_pci_remove`.
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u32 = 16;
/// `PHYSDEVOP_pirq_eoi_gmfn_v1`.
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u32 = 17;
/// `PHYSDEVOP_restore_msi`.
pub const PHYSDEVOP_RESTORE_MSI: u32 = 19;
/// `PHYSDEVOP_manage_pci_add_ext`.
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u32 = 20;
/// `PHYSDEVOP_setup_gsi`.
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
/// `PHYSDEVOP_get_free_pirq`.
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
/// `PHYSDEVOP_pci_mmcfg_reserved`.
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
/// `PHYSDEVOP_pci_device_add`.
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
/// `PHYSDEVOP_pci_device_remove`.
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
/// `PHYSDEVOP_restore_msi_ext`.
pub const PHYSDEVOP_RESTORE_MSI_EXT: u32 = 27;
/// `PHYSDEVOP_pirq_eoi_gmfn_v2` (what `PHYSDEVOP_pirq_eoi_gmfn` means today).
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;
/// `PHYSDEVOP_dbgp_op`.
pub const PHYSDEVOP_DBGP_OP: u32 = 29;
/// `PHYSDEVOP_prepare_msix`.
pub const PHYSDEVOP_PREPARE_MSIX: u32 = 30;
/// `PHYSDEVOP_release_msix`.
pub const PHYSDEVOP_RELEASE_MSIX: u32 = 31;

/// `XENIRQSTAT_needs_eoi`: call `PHYSDEVOP_eoi` when serviced.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// `XENIRQSTAT_shared`: IRQ shared by several guests.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// `MAP_PIRQ_TYPE_MSI`.
pub const MAP_PIRQ_TYPE_MSI: i32 = 0x0;
/// `MAP_PIRQ_TYPE_GSI`.
pub const MAP_PIRQ_TYPE_GSI: i32 = 0x1;
/// `MAP_PIRQ_TYPE_UNKNOWN`.
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 0x2;
/// `MAP_PIRQ_TYPE_MSI_SEG`.
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 0x3;
/// `MAP_PIRQ_TYPE_MULTI_MSI`.
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 0x4;

/// `XEN_PCI_MMCFG_RESERVED`.
pub const XEN_PCI_MMCFG_RESERVED: u32 = 0x1;

/// `struct physdev_eoi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevEoi {
    /// IN.
    pub irq: u32,
}
guest_abi!(PhysdevEoi { irq });

/// `struct physdev_pirq_eoi_gmfn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevPirqEoiGmfn {
    /// IN: frame of the PIRQ EOI bitmap.
    pub gmfn: XenPfn,
}
guest_abi!(PhysdevPirqEoiGmfn { gmfn });

/// `struct physdev_irq_status_query`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevIrqStatusQuery {
    /// IN.
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*`.
    pub flags: u32,
}
guest_abi!(PhysdevIrqStatusQuery { irq, flags });

/// `struct physdev_set_iopl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevSetIopl {
    /// IN: I/O privilege level (0-3).
    pub iopl: u32,
}
guest_abi!(PhysdevSetIopl { iopl });

/// `struct physdev_set_iobitmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevSetIobitmap {
    /// IN: guest handle of the bitmap.
    pub bitmap: u64,
    /// IN: ports covered.
    pub nr_ports: u32,
}
guest_abi!(PhysdevSetIobitmap { bitmap, nr_ports });

/// `struct physdev_apic`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevApic {
    /// IN.
    pub apic_physbase: u64,
    /// IN.
    pub reg: u32,
    /// IN or OUT.
    pub value: u32,
}
guest_abi!(PhysdevApic {
    apic_physbase,
    reg,
    value
});

/// `struct physdev_irq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevIrq {
    /// IN.
    pub irq: u32,
    /// IN or OUT.
    pub vector: u32,
}
guest_abi!(PhysdevIrq { irq, vector });

/// `struct physdev_map_pirq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevMapPirq {
    /// IN.
    pub domid: DomId,
    /// IN: `MAP_PIRQ_TYPE_*`.
    pub r#type: i32,
    /// IN.
    pub index: i32,
    /// IN or OUT.
    pub pirq: i32,
    /// IN (high 16 bits: segment for MSI_SEG / MULTI_MSI).
    pub bus: i32,
    /// IN.
    pub devfn: i32,
    /// IN (OUT for MULTI_MSI).
    pub entry_nr: i32,
    /// IN.
    pub table_base: u64,
}
guest_abi!(PhysdevMapPirq {
    domid,
    r#type,
    index,
    pirq,
    bus,
    devfn,
    entry_nr,
    table_base
});

/// `struct physdev_unmap_pirq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevUnmapPirq {
    /// IN.
    pub domid: DomId,
    /// IN.
    pub pirq: i32,
}
guest_abi!(PhysdevUnmapPirq { domid, pirq });

/// `struct physdev_manage_pci` (also `physdev_restore_msi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevManagePci {
    /// IN.
    pub bus: u8,
    /// IN.
    pub devfn: u8,
}
guest_abi!(PhysdevManagePci { bus, devfn });

/// `struct physdev_setup_gsi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevSetupGsi {
    /// IN.
    pub gsi: i32,
    /// IN.
    pub triggering: u8,
    /// IN.
    pub polarity: u8,
}
guest_abi!(PhysdevSetupGsi {
    gsi,
    triggering,
    polarity
});

/// `struct physdev_get_free_pirq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevGetFreePirq {
    /// IN: `MAP_PIRQ_TYPE_*`.
    pub r#type: i32,
    /// OUT.
    pub pirq: u32,
}
guest_abi!(PhysdevGetFreePirq { r#type, pirq });

/// `struct physdev_pci_mmcfg_reserved`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevPciMmcfgReserved {
    /// MMCONFIG base.
    pub address: u64,
    /// PCI segment.
    pub segment: u16,
    /// First bus.
    pub start_bus: u8,
    /// Last bus.
    pub end_bus: u8,
    /// `XEN_PCI_MMCFG_*`.
    pub flags: u32,
}
guest_abi!(PhysdevPciMmcfgReserved {
    address,
    segment,
    start_bus,
    end_bus,
    flags
});

/// `struct physdev_pci_device`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevPciDevice {
    /// IN.
    pub seg: u16,
    /// IN.
    pub bus: u8,
    /// IN.
    pub devfn: u8,
}
guest_abi!(PhysdevPciDevice { seg, bus, devfn });

/// `XEN_PCI_DEV_EXTFN`.
pub const XEN_PCI_DEV_EXTFN: u32 = 0x1;
/// `XEN_PCI_DEV_VIRTFN`.
pub const XEN_PCI_DEV_VIRTFN: u32 = 0x2;
/// `XEN_PCI_DEV_PXM`: `optarr[0]` holds the device's proximity domain.
pub const XEN_PCI_DEV_PXM: u32 = 0x4;

/// `struct physdev_pci_device_add` without its flexible `optarr[]` (which follows at
/// offset 12 when `XEN_PCI_DEV_PXM` is set).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevPciDeviceAdd {
    /// IN: PCI segment.
    pub seg: u16,
    /// IN.
    pub bus: u8,
    /// IN.
    pub devfn: u8,
    /// IN: `XEN_PCI_DEV_*`.
    pub flags: u32,
    /// IN: the physical function's bus (virtual functions).
    pub physfn_bus: u8,
    /// IN: the physical function's devfn.
    pub physfn_devfn: u8,
}
guest_abi!(PhysdevPciDeviceAdd {
    seg,
    bus,
    devfn,
    flags,
    physfn_bus,
    physfn_devfn
});

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<PhysdevPciDeviceAdd>() == 12);
const _: () = assert!(offset_of!(PhysdevPciDeviceAdd, flags) == 4);
const _: () = assert!(offset_of!(PhysdevPciDeviceAdd, physfn_devfn) == 9);
const _: () = assert!(size_of::<PhysdevEoi>() == 4);
const _: () = assert!(size_of::<PhysdevPirqEoiGmfn>() == 8);
const _: () = assert!(size_of::<PhysdevIrqStatusQuery>() == 8);
const _: () = assert!(size_of::<PhysdevSetIopl>() == 4);
const _: () = assert!(size_of::<PhysdevSetIobitmap>() == 16);
const _: () = assert!(offset_of!(PhysdevSetIobitmap, nr_ports) == 8);
const _: () = assert!(size_of::<PhysdevApic>() == 16);
const _: () = assert!(offset_of!(PhysdevApic, reg) == 8);
const _: () = assert!(offset_of!(PhysdevApic, value) == 12);
const _: () = assert!(size_of::<PhysdevIrq>() == 8);
const _: () = assert!(size_of::<PhysdevMapPirq>() == 40);
const _: () = assert!(offset_of!(PhysdevMapPirq, r#type) == 4);
const _: () = assert!(offset_of!(PhysdevMapPirq, entry_nr) == 24);
const _: () = assert!(offset_of!(PhysdevMapPirq, table_base) == 32);
const _: () = assert!(size_of::<PhysdevUnmapPirq>() == 8);
const _: () = assert!(offset_of!(PhysdevUnmapPirq, pirq) == 4);
const _: () = assert!(size_of::<PhysdevManagePci>() == 2);
const _: () = assert!(size_of::<PhysdevSetupGsi>() == 8);
const _: () = assert!(offset_of!(PhysdevSetupGsi, triggering) == 4);
const _: () = assert!(offset_of!(PhysdevSetupGsi, polarity) == 5);
const _: () = assert!(size_of::<PhysdevGetFreePirq>() == 8);
const _: () = assert!(size_of::<PhysdevPciMmcfgReserved>() == 16);
const _: () = assert!(offset_of!(PhysdevPciMmcfgReserved, segment) == 8);
const _: () = assert!(offset_of!(PhysdevPciMmcfgReserved, end_bus) == 11);
const _: () = assert!(offset_of!(PhysdevPciMmcfgReserved, flags) == 12);
const _: () = assert!(size_of::<PhysdevPciDevice>() == 4);
const _: () = assert!(offset_of!(PhysdevPciDevice, devfn) == 3);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn probe_structs_known_bytes() {
        let q = PhysdevIrqStatusQuery {
            irq: 9,
            flags: XENIRQSTAT_NEEDS_EOI,
        };
        assert_eq!(q.to_vec(), [9, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(PhysdevIrqStatusQuery::read_from(&q.to_vec()), Ok(q));
        let i = PhysdevSetIopl { iopl: 1 };
        assert_eq!(PhysdevSetIopl::read_from(&i.to_vec()), Ok(i));
        let m = PhysdevMapPirq {
            domid: 0,
            r#type: MAP_PIRQ_TYPE_GSI,
            index: 9,
            pirq: -1,
            bus: 0,
            devfn: 0,
            entry_nr: 0,
            table_base: 0,
        };
        let b = m.to_vec();
        assert_eq!(&b[12..16], &[0xff; 4]);
        assert_eq!(PhysdevMapPirq::read_from(&b), Ok(m));
        let d = PhysdevPciDevice {
            seg: 1,
            bus: 2,
            devfn: 3,
        };
        assert_eq!(d.to_vec(), [1, 0, 2, 3]);
        let g = PhysdevSetupGsi {
            gsi: 16,
            triggering: 1,
            polarity: 1,
        };
        assert_eq!(PhysdevSetupGsi::read_from(&g.to_vec()), Ok(g));
    }
}
