//! The machine-check hypercall, mirroring `xen/include/public/arch-x86/xen-mca.h` (Xen
//! 4.17): `HYPERVISOR_mca` (`__HYPERVISOR_arch_0`), `struct xen_mc` and its commands, and
//! `struct mcinfo_logical_cpu` (what `XEN_MC_physcpuinfo` reports per physical CPU).

use crate::guest_abi;

/// `__HYPERVISOR_mca` (`__HYPERVISOR_arch_0`).
pub const HYPERVISOR_MCA: u32 = crate::xen::HYPERVISOR_ARCH_0;
/// `XEN_MCA_INTERFACE_VERSION`: what `xen_mc.interface_version` must hold.
pub const XEN_MCA_INTERFACE_VERSION: u32 = 0x01ec_c003;

/// `XEN_MC_fetch`.
pub const XEN_MC_FETCH: u32 = 1;
/// `XEN_MC_notifydomain`.
pub const XEN_MC_NOTIFYDOMAIN: u32 = 2;
/// `XEN_MC_physcpuinfo`.
pub const XEN_MC_PHYSCPUINFO: u32 = 3;
/// `XEN_MC_msrinject`.
pub const XEN_MC_MSRINJECT: u32 = 4;
/// `XEN_MC_mceinject`.
pub const XEN_MC_MCEINJECT: u32 = 5;
/// `XEN_MC_inject_v2`.
pub const XEN_MC_INJECT_V2: u32 = 6;

/// `XEN_MC_NONURGENT` (fetch flags, IN).
pub const XEN_MC_NONURGENT: u32 = 0x1;
/// `XEN_MC_URGENT`.
pub const XEN_MC_URGENT: u32 = 0x2;
/// `XEN_MC_ACK`.
pub const XEN_MC_ACK: u32 = 0x4;
/// `XEN_MC_OK` (fetch flags, OUT).
pub const XEN_MC_OK: u32 = 0x0;
/// `XEN_MC_NODATA`: no telemetry to fetch.
pub const XEN_MC_NODATA: u32 = 0x2;

/// `VIRQ_MCA` (`VIRQ_ARCH_0`): dom0's machine-check event.
pub const VIRQ_MCA: u32 = 16;

/// `sizeof(struct xen_mc)`: `cmd`, `interface_version` and the union, whose largest member
/// is `struct xen_mc_msrinject` (144 bytes).
pub const XEN_MC_SIZE: usize = 152;
/// Offset of the union `u` in `struct xen_mc`.
pub const XEN_MC_U: usize = 8;

/// `struct xen_mc_fetch` (the union member of `XEN_MC_fetch`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMcFetch {
    /// IN: `XEN_MC_NONURGENT`/`XEN_MC_URGENT` (| `XEN_MC_ACK`); OUT: `XEN_MC_OK`,
    /// `XEN_MC_NODATA`, ...
    pub flags: u32,
    /// Padding.
    pub pad0: u32,
    /// OUT: id for the ack; IN: the id acked.
    pub fetch_id: u64,
    /// OUT: guest handle of the `struct mc_info` to fill.
    pub data: u64,
}
guest_abi!(XenMcFetch {
    flags,
    pad0,
    fetch_id,
    data
});
const _: () = assert!(core::mem::size_of::<XenMcFetch>() == 24);

/// `struct xen_mc_physcpuinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMcPhyscpuinfo {
    /// IN: entries `info` has room for; OUT: entries written (or CPUs online with a null
    /// `info`).
    pub ncpus: u32,
    /// Padding.
    pub pad0: u32,
    /// OUT: guest handle of the `xen_mc_logical_cpu_t` array (0: only count).
    pub info: u64,
}
guest_abi!(XenMcPhyscpuinfo { ncpus, pad0, info });
const _: () = assert!(core::mem::size_of::<XenMcPhyscpuinfo>() == 16);

/// `MC_NCAPS`: CPU feature words in `mc_cpu_caps`.
pub const MC_NCAPS: usize = 7;
/// `__MC_MSR_ARRAYSIZE`.
pub const MC_MSR_ARRAYSIZE: usize = 8;

/// `struct mcinfo_msr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct McinfoMsr {
    /// The MSR.
    pub reg: u64,
    /// Its value.
    pub value: u64,
}
guest_abi!(McinfoMsr { reg, value });
const _: () = assert!(core::mem::size_of::<McinfoMsr>() == 16);

/// `struct mcinfo_logical_cpu` (`xen_mc_logical_cpu_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McLogicalCpu {
    /// Xen's CPU number.
    pub mc_cpunr: u32,
    /// Package (socket) id.
    pub mc_chipid: u32,
    /// Core id in the package.
    pub mc_coreid: u16,
    /// Thread id in the core.
    pub mc_threadid: u16,
    /// APIC id.
    pub mc_apicid: u32,
    /// Cluster id.
    pub mc_clusterid: u32,
    /// Cores per package.
    pub mc_ncores: u32,
    /// Active cores per package.
    pub mc_ncores_active: u32,
    /// Threads per core.
    pub mc_nthreads: u32,
    /// Highest basic CPUID leaf.
    pub mc_cpuid_level: i32,
    /// Family.
    pub mc_family: u32,
    /// `X86_VENDOR_*`.
    pub mc_vendor: u32,
    /// Model.
    pub mc_model: u32,
    /// Stepping.
    pub mc_step: u32,
    /// CPUID vendor string.
    pub mc_vendorid: [u8; 16],
    /// CPUID brand string.
    pub mc_brandid: [u8; 64],
    /// Feature words (`MC_CAPS_*`).
    pub mc_cpu_caps: [u32; MC_NCAPS],
    /// Cache size in KiB.
    pub mc_cache_size: u32,
    /// Cache line alignment.
    pub mc_cache_alignment: u32,
    /// Valid entries of `mc_msrvalues`.
    pub mc_nmsrvals: i32,
    /// Machine-check MSRs (MCG_CAP first).
    pub mc_msrvalues: [McinfoMsr; MC_MSR_ARRAYSIZE],
}
guest_abi!(McLogicalCpu {
    mc_cpunr,
    mc_chipid,
    mc_coreid,
    mc_threadid,
    mc_apicid,
    mc_clusterid,
    mc_ncores,
    mc_ncores_active,
    mc_nthreads,
    mc_cpuid_level,
    mc_family,
    mc_vendor,
    mc_model,
    mc_step,
    mc_vendorid,
    mc_brandid,
    mc_cpu_caps,
    mc_cache_size,
    mc_cache_alignment,
    mc_nmsrvals,
    mc_msrvalues,
});
const _: () = assert!(core::mem::size_of::<McLogicalCpu>() == 304);
const _: () = assert!(core::mem::offset_of!(McLogicalCpu, mc_msrvalues) == 176);

impl Default for McLogicalCpu {
    fn default() -> Self {
        McLogicalCpu {
            mc_cpunr: 0,
            mc_chipid: 0,
            mc_coreid: 0,
            mc_threadid: 0,
            mc_apicid: 0,
            mc_clusterid: 0,
            mc_ncores: 0,
            mc_ncores_active: 0,
            mc_nthreads: 0,
            mc_cpuid_level: 0,
            mc_family: 0,
            mc_vendor: 0,
            mc_model: 0,
            mc_step: 0,
            mc_vendorid: [0; 16],
            mc_brandid: [0; 64],
            mc_cpu_caps: [0; MC_NCAPS],
            mc_cache_size: 0,
            mc_cache_alignment: 0,
            mc_nmsrvals: 0,
            mc_msrvalues: [McinfoMsr::default(); MC_MSR_ARRAYSIZE],
        }
    }
}
