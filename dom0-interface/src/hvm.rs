//! HVM/PVH interface, mirroring `xen/include/public/hvm/hvm_op.h`, `hvm/params.h` and
//! `arch-x86/hvm/start_info.h` (Xen 4.17): `HVMOP_*`, `HVM_PARAM_*` and the PVH start info.

use crate::guest_abi;
use crate::xen::DomId;

/// `HVMOP_set_param`: arg is `xen_hvm_param`.
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`: arg is `xen_hvm_param`.
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_flush_tlbs`: arg must be NULL.
pub const HVMOP_FLUSH_TLBS: u32 = 5;
/// `HVMOP_pagetable_dying`.
pub const HVMOP_PAGETABLE_DYING: u32 = 9;
/// `HVMOP_get_time`.
pub const HVMOP_GET_TIME: u32 = 10;
/// `HVMOP_xentrace`.
pub const HVMOP_XENTRACE: u32 = 11;
/// `HVMOP_set_mem_access` (tools only, deprecated).
pub const HVMOP_SET_MEM_ACCESS: u32 = 12;
/// `HVMOP_get_mem_access` (tools only, deprecated).
pub const HVMOP_GET_MEM_ACCESS: u32 = 13;
/// `HVMOP_get_mem_type`.
pub const HVMOP_GET_MEM_TYPE: u32 = 15;
/// `HVMOP_set_evtchn_upcall_vector` (x86).
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;
/// `HVMOP_guest_request_vm_event`.
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u32 = 24;
/// `HVMOP_altp2m`.
pub const HVMOP_ALTP2M: u32 = 25;

/// `HVM_PARAM_CALLBACK_IRQ`: how event upcalls are delivered (type in bits 63:56).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: xenstore ring frame.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: xenstore event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_IOREQ_PFN`.
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
/// `HVM_PARAM_BUFIOREQ_PFN`.
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
/// `HVM_PARAM_VIRIDIAN` (x86).
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
/// `HVM_PARAM_TIMER_MODE`.
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVM_PARAM_HPET_ENABLED`.
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// `HVM_PARAM_IDENT_PT`.
pub const HVM_PARAM_IDENT_PT: u32 = 12;
/// `HVM_PARAM_ACPI_S_STATE`.
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
/// `HVM_PARAM_VM86_TSS`.
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_VPT_ALIGN`.
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// `HVM_PARAM_CONSOLE_PFN`: console ring frame.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: console event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION`.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_PAGING_RING_PFN`.
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
/// `HVM_PARAM_MONITOR_RING_PFN`.
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// `HVM_PARAM_SHARING_RING_PFN`.
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `HVM_PARAM_TRIPLE_FAULT_REASON`.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
/// `HVM_PARAM_IOREQ_SERVER_PFN`.
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
/// `HVM_PARAM_NR_IOREQ_SERVER_PAGES`.
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR`.
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M`.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH`.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED`.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_PARAM_MCA_CAP`.
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// `HVM_NR_PARAMS`: parameters are numbered below this.
pub const HVM_NR_PARAMS: u32 = 39;

/// `HVM_PARAM_CALLBACK_IRQ_TYPE_MASK`.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xFF00_0000_0000_0000;
/// `HVM_PARAM_CALLBACK_TYPE_GSI`: value[55:0] is a GSI (0 disables).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u64 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_PCI_INTX`: value is a PCI INTx line.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u64 = 1;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR` (x86): value[7:0] is an IDT vector.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;

/// The callback type (`HVM_PARAM_CALLBACK_TYPE_*`) of an `HVM_PARAM_CALLBACK_IRQ` value.
pub const fn callback_irq_type(value: u64) -> u64 {
    (value & HVM_PARAM_CALLBACK_IRQ_TYPE_MASK) >> 56
}

/// `XEN_HVM_START_MAGIC_VALUE`: `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// `XEN_HVM_MEMMAP_TYPE_RAM`.
pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED`.
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
/// `XEN_HVM_MEMMAP_TYPE_ACPI`.
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
/// `XEN_HVM_MEMMAP_TYPE_NVS`.
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
/// `XEN_HVM_MEMMAP_TYPE_UNUSABLE`.
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
/// `XEN_HVM_MEMMAP_TYPE_DISABLED`.
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
/// `XEN_HVM_MEMMAP_TYPE_PMEM`.
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    /// IN.
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// IN: `HVM_PARAM_*`.
    pub index: u32,
    /// IN/OUT.
    pub value: u64,
}
guest_abi!(XenHvmParam {
    domid,
    pad,
    index,
    value
});

/// `struct xen_hvm_evtchn_upcall_vector`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    /// vCPU.
    pub vcpu: u32,
    /// IDT vector.
    pub vector: u8,
}
guest_abi!(XenHvmEvtchnUpcallVector { vcpu, vector });

/// `struct xen_hvm_get_time`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmGetTime {
    /// OUT: ns since boot.
    pub now: u64,
}
guest_abi!(XenHvmGetTime { now });

/// `struct xen_hvm_pagetable_dying`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmPagetableDying {
    /// Domain.
    pub domid: DomId,
    /// Padding.
    pub pad: [u16; 3],
    /// Guest-physical address of the top-level page table.
    pub gpa: u64,
}
guest_abi!(XenHvmPagetableDying { domid, pad, gpa });

/// `struct hvm_start_info`: passed to a PVH guest in EBX.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmStartInfo {
    /// `XEN_HVM_START_MAGIC_VALUE`.
    pub magic: u32,
    /// Structure version (1 adds the memory map).
    pub version: u32,
    /// `SIF_*`.
    pub flags: u32,
    /// Modules passed.
    pub nr_modules: u32,
    /// Physical address of an array of [`HvmModlistEntry`].
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Physical address of an array of [`HvmMemmapTableEntry`] (version >= 1).
    pub memmap_paddr: u64,
    /// Entries in the memory map (version >= 1; 0: none).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}
guest_abi!(HvmStartInfo {
    magic,
    version,
    flags,
    nr_modules,
    modlist_paddr,
    cmdline_paddr,
    rsdp_paddr,
    memmap_paddr,
    memmap_entries,
    reserved
});

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of its command line.
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}
guest_abi!(HvmModlistEntry {
    paddr,
    size,
    cmdline_paddr,
    reserved
});

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`.
    pub r#type: u32,
    /// Must be zero.
    pub reserved: u32,
}
guest_abi!(HvmMemmapTableEntry {
    addr,
    size,
    r#type,
    reserved
});

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<XenHvmParam>() == 16);
const _: () = assert!(offset_of!(XenHvmParam, index) == 4);
const _: () = assert!(offset_of!(XenHvmParam, value) == 8);
const _: () = assert!(size_of::<XenHvmEvtchnUpcallVector>() == 8);
const _: () = assert!(offset_of!(XenHvmEvtchnUpcallVector, vector) == 4);
const _: () = assert!(size_of::<XenHvmGetTime>() == 8);
const _: () = assert!(size_of::<XenHvmPagetableDying>() == 16);
const _: () = assert!(offset_of!(XenHvmPagetableDying, gpa) == 8);
const _: () = assert!(size_of::<HvmStartInfo>() == 56);
const _: () = assert!(offset_of!(HvmStartInfo, version) == 4);
const _: () = assert!(offset_of!(HvmStartInfo, flags) == 8);
const _: () = assert!(offset_of!(HvmStartInfo, nr_modules) == 12);
const _: () = assert!(offset_of!(HvmStartInfo, modlist_paddr) == 16);
const _: () = assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 24);
const _: () = assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 32);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_paddr) == 40);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_entries) == 48);
const _: () = assert!(offset_of!(HvmStartInfo, reserved) == 52);
const _: () = assert!(size_of::<HvmModlistEntry>() == 32);
const _: () = assert!(size_of::<HvmMemmapTableEntry>() == 24);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, r#type) == 16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;
    use crate::xen::DOMID_SELF;

    #[test]
    fn start_info_known_bytes() {
        let s = HvmStartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            flags: crate::xen::SIF_PRIVILEGED | crate::xen::SIF_INITDOMAIN,
            nr_modules: 1,
            modlist_paddr: 0x1000,
            cmdline_paddr: 0x2000,
            rsdp_paddr: 0xe_0000,
            memmap_paddr: 0x3000,
            memmap_entries: 4,
            reserved: 0,
        };
        let b = s.to_vec();
        // "xEn3" with the 0x80 bit of the "E" set.
        assert_eq!(&b[..4], &[0x78, 0xc5, 0x6e, 0x33]);
        assert_eq!(&b[8..12], &[3, 0, 0, 0]);
        assert_eq!(&b[40..52], &[0, 0x30, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(HvmStartInfo::read_from(&b), Ok(s));
    }

    #[test]
    fn memmap_and_modules_round_trip() {
        let e = HvmMemmapTableEntry {
            addr: 0x10_0000,
            size: 0x1000_0000,
            r#type: XEN_HVM_MEMMAP_TYPE_RAM,
            reserved: 0,
        };
        assert_eq!(HvmMemmapTableEntry::read_from(&e.to_vec()), Ok(e));
        let m = HvmModlistEntry {
            paddr: 0x20_0000,
            size: 4096,
            cmdline_paddr: 0,
            reserved: 0,
        };
        assert_eq!(HvmModlistEntry::read_from(&m.to_vec()), Ok(m));
    }

    #[test]
    fn params() {
        let p = XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index: HVM_PARAM_CONSOLE_EVTCHN,
            value: 3,
        };
        let b = p.to_vec();
        assert_eq!(&b[..8], &[0xf0, 0x7f, 0, 0, 18, 0, 0, 0]);
        assert_eq!(XenHvmParam::read_from(&b), Ok(p));
        let v = (HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | 0xf3;
        assert_eq!(callback_irq_type(v), HVM_PARAM_CALLBACK_TYPE_VECTOR);
        let u = XenHvmEvtchnUpcallVector {
            vcpu: 1,
            vector: 0xf3,
        };
        assert_eq!(u.to_vec(), [1, 0, 0, 0, 0xf3, 0, 0, 0]);
    }
}
