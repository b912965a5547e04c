//! Platform operations, mirroring `xen/include/public/platform.h` (Xen 4.17): the
//! `XENPF_*` commands of `HYPERVISOR_platform_op` and the parts of `struct xen_platform_op`
//! a PV dom0 uses at boot; and `xen/include/public/pmu.h`'s `XENPMU_*` sub-ops.

use crate::guest_abi;

/// `XENPF_INTERFACE_VERSION`: what `xen_platform_op.interface_version` must hold.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;

/// `XENPF_settime32`.
pub const XENPF_SETTIME32: u32 = 17;
/// `XENPF_add_memtype`.
pub const XENPF_ADD_MEMTYPE: u32 = 31;
/// `XENPF_del_memtype`.
pub const XENPF_DEL_MEMTYPE: u32 = 32;
/// `XENPF_read_memtype`.
pub const XENPF_READ_MEMTYPE: u32 = 33;
/// `XENPF_microcode_update`.
pub const XENPF_MICROCODE_UPDATE: u32 = 35;
/// `XENPF_platform_quirk`.
pub const XENPF_PLATFORM_QUIRK: u32 = 39;
/// `XENPF_get_cpu_version`.
pub const XENPF_GET_CPU_VERSION: u32 = 48;
/// `XENPF_efi_runtime_call`.
pub const XENPF_EFI_RUNTIME_CALL: u32 = 49;
/// `XENPF_firmware_info`.
pub const XENPF_FIRMWARE_INFO: u32 = 50;
/// `XENPF_enter_acpi_sleep`.
pub const XENPF_ENTER_ACPI_SLEEP: u32 = 51;
/// `XENPF_change_freq`.
pub const XENPF_CHANGE_FREQ: u32 = 52;
/// `XENPF_getidletime`.
pub const XENPF_GETIDLETIME: u32 = 53;
/// `XENPF_set_processor_pminfo`.
pub const XENPF_SET_PROCESSOR_PMINFO: u32 = 54;
/// `XENPF_get_cpuinfo`.
pub const XENPF_GET_CPUINFO: u32 = 55;
/// `XENPF_settime64`.
pub const XENPF_SETTIME64: u32 = 62;

/// `XEN_FW_DISK_INFO`: EDD data from int 13h.
pub const XEN_FW_DISK_INFO: u32 = 1;
/// `XEN_FW_DISK_MBR_SIGNATURE`.
pub const XEN_FW_DISK_MBR_SIGNATURE: u32 = 2;
/// `XEN_FW_VBEDDC_INFO`: EDID from int 10h AX=4f15.
pub const XEN_FW_VBEDDC_INFO: u32 = 3;
/// `XEN_FW_EFI_INFO`.
pub const XEN_FW_EFI_INFO: u32 = 4;
/// `XEN_FW_KBD_SHIFT_FLAGS`: int 16h AH=02.
pub const XEN_FW_KBD_SHIFT_FLAGS: u32 = 5;

/// Size of `struct xen_platform_op`: cmd, interface_version and a 128-byte union.
pub const XEN_PLATFORM_OP_SIZE: usize = 136;
/// Offset of the union `u` in `struct xen_platform_op`.
pub const XEN_PLATFORM_OP_U: usize = 8;

/// The head of `struct xen_platform_op`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenPlatformOpHead {
    /// `XENPF_*`.
    pub cmd: u32,
    /// [`XENPF_INTERFACE_VERSION`].
    pub interface_version: u32,
}
guest_abi!(XenPlatformOpHead {
    cmd,
    interface_version
});
const _: () = assert!(core::mem::size_of::<XenPlatformOpHead>() == XEN_PLATFORM_OP_U);

/// `struct xenpf_settime32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenpfSettime32 {
    /// Wall-clock seconds at `system_time`.
    pub secs: u32,
    /// Nanoseconds.
    pub nsecs: u32,
    /// System time (ns since boot) the wall clock is given for.
    pub system_time: u64,
}
guest_abi!(XenpfSettime32 {
    secs,
    nsecs,
    system_time
});
const _: () = assert!(core::mem::size_of::<XenpfSettime32>() == 16);

/// `struct xenpf_settime64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenpfSettime64 {
    /// Wall-clock seconds at `system_time`.
    pub secs: u64,
    /// Nanoseconds.
    pub nsecs: u32,
    /// Must be zero.
    pub mbz: u32,
    /// System time (ns since boot) the wall clock is given for.
    pub system_time: u64,
}
guest_abi!(XenpfSettime64 {
    secs,
    nsecs,
    mbz,
    system_time
});
const _: () = assert!(core::mem::size_of::<XenpfSettime64>() == 24);

/// The IN part of `struct xenpf_firmware_info` (its OUT union follows at offset 8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenpfFirmwareInfoHead {
    /// `XEN_FW_*`.
    pub type_: u32,
    /// Which item (disk, EFI info index, ...).
    pub index: u32,
}
guest_abi!(XenpfFirmwareInfoHead { type_, index });
const _: () = assert!(core::mem::size_of::<XenpfFirmwareInfoHead>() == 8);
/// Offset of `u.kbd_shift_flags` (a `uint8_t`) in `struct xen_platform_op`.
pub const KBD_SHIFT_FLAGS_OFFSET: usize = XEN_PLATFORM_OP_U + 8;

/// `struct xenpf_pcpuinfo` (`XENPF_get_cpuinfo`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenpfPcpuinfo {
    /// IN: the physical CPU.
    pub xen_cpuid: u32,
    /// OUT: the highest CPU number present.
    pub max_present: u32,
    /// OUT: `XEN_PCPU_FLAGS_*`.
    pub flags: u32,
    /// OUT.
    pub apic_id: u32,
    /// OUT.
    pub acpi_id: u32,
}
guest_abi!(XenpfPcpuinfo {
    xen_cpuid,
    max_present,
    flags,
    apic_id,
    acpi_id
});
const _: () = assert!(core::mem::size_of::<XenpfPcpuinfo>() == 20);
/// `XEN_PCPU_FLAGS_ONLINE`.
pub const XEN_PCPU_FLAGS_ONLINE: u32 = 1;
/// `XEN_PCPU_FLAGS_INVALID`: no such CPU.
pub const XEN_PCPU_FLAGS_INVALID: u32 = 2;

/// `XENPMU_mode_get` (`public/pmu.h`).
pub const XENPMU_MODE_GET: u32 = 0;
/// `XENPMU_init`.
pub const XENPMU_INIT: u32 = 4;
/// `XENPMU_finish`.
pub const XENPMU_FINISH: u32 = 5;
