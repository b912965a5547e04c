//! System control, mirroring `xen/include/public/sysctl.h` of Xen 4.17
//! (`XEN_SYSCTL_INTERFACE_VERSION` 0x15): the `xen_sysctl` container, the op numbers, and
//! the payloads of readconsole, physinfo, sched_id and getdomaininfolist.

use crate::domctl::{payload_of, set_payload_of, XEN_DOMCTL_PAYLOAD_SIZE};
use crate::guest_abi;
use crate::guest_abi::{AbiError, GuestAbi};
use crate::xen::DomId;

/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x0000_0015;
/// Size of the `xen_sysctl.u` union.
pub const XEN_SYSCTL_PAYLOAD_SIZE: usize = XEN_DOMCTL_PAYLOAD_SIZE;

/// `XEN_SYSCTL_readconsole`.
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// `XEN_SYSCTL_tbuf_op`.
pub const XEN_SYSCTL_TBUF_OP: u32 = 2;
/// `XEN_SYSCTL_physinfo`.
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// `XEN_SYSCTL_sched_id`.
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// `XEN_SYSCTL_perfc_op`.
pub const XEN_SYSCTL_PERFC_OP: u32 = 5;
/// `XEN_SYSCTL_getdomaininfolist`.
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// `XEN_SYSCTL_debug_keys`.
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;
/// `XEN_SYSCTL_getcpuinfo`.
pub const XEN_SYSCTL_GETCPUINFO: u32 = 8;
/// `XEN_SYSCTL_availheap`.
pub const XEN_SYSCTL_AVAILHEAP: u32 = 9;
/// `XEN_SYSCTL_get_pmstat`.
pub const XEN_SYSCTL_GET_PMSTAT: u32 = 10;
/// `XEN_SYSCTL_cpu_hotplug`.
pub const XEN_SYSCTL_CPU_HOTPLUG: u32 = 11;
/// `XEN_SYSCTL_pm_op`.
pub const XEN_SYSCTL_PM_OP: u32 = 12;
/// `XEN_SYSCTL_page_offline_op`.
pub const XEN_SYSCTL_PAGE_OFFLINE_OP: u32 = 14;
/// `XEN_SYSCTL_lockprof_op`.
pub const XEN_SYSCTL_LOCKPROF_OP: u32 = 15;
/// `XEN_SYSCTL_cputopoinfo`.
pub const XEN_SYSCTL_CPUTOPOINFO: u32 = 16;
/// `XEN_SYSCTL_numainfo`.
pub const XEN_SYSCTL_NUMAINFO: u32 = 17;
/// `XEN_SYSCTL_cpupool_op`.
pub const XEN_SYSCTL_CPUPOOL_OP: u32 = 18;
/// `XEN_SYSCTL_scheduler_op`.
pub const XEN_SYSCTL_SCHEDULER_OP: u32 = 19;
/// `XEN_SYSCTL_coverage_op`.
pub const XEN_SYSCTL_COVERAGE_OP: u32 = 20;
/// `XEN_SYSCTL_psr_cmt_op`.
pub const XEN_SYSCTL_PSR_CMT_OP: u32 = 21;
/// `XEN_SYSCTL_pcitopoinfo`.
pub const XEN_SYSCTL_PCITOPOINFO: u32 = 22;
/// `XEN_SYSCTL_psr_alloc`.
pub const XEN_SYSCTL_PSR_ALLOC: u32 = 23;
/// `XEN_SYSCTL_get_cpu_levelling_caps`.
pub const XEN_SYSCTL_GET_CPU_LEVELLING_CAPS: u32 = 25;
/// `XEN_SYSCTL_get_cpu_featureset`.
pub const XEN_SYSCTL_GET_CPU_FEATURESET: u32 = 26;
/// `XEN_SYSCTL_livepatch_op`.
pub const XEN_SYSCTL_LIVEPATCH_OP: u32 = 27;
/// `XEN_SYSCTL_get_cpu_policy`: the highest sysctl number Xen 4.17 defines.
pub const XEN_SYSCTL_GET_CPU_POLICY: u32 = 29;

/// `XEN_SYSCTL_PHYSCAP_hvm`.
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
/// `XEN_SYSCTL_PHYSCAP_pv`.
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
/// `XEN_SYSCTL_PHYSCAP_directio`.
pub const XEN_SYSCTL_PHYSCAP_DIRECTIO: u32 = 1 << 2;
/// `XEN_SYSCTL_PHYSCAP_hap`.
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
/// `XEN_SYSCTL_PHYSCAP_shadow`.
pub const XEN_SYSCTL_PHYSCAP_SHADOW: u32 = 1 << 4;
/// `XEN_SYSCTL_PHYSCAP_iommu_hap_pt_share`.
pub const XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
/// `XEN_SYSCTL_PHYSCAP_vmtrace`.
pub const XEN_SYSCTL_PHYSCAP_VMTRACE: u32 = 1 << 6;
/// `XEN_SYSCTL_PHYSCAP_vpmu`.
pub const XEN_SYSCTL_PHYSCAP_VPMU: u32 = 1 << 7;
/// `XEN_SYSCTL_PHYSCAP_gnttab_v1`.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V1: u32 = 1 << 8;
/// `XEN_SYSCTL_PHYSCAP_gnttab_v2`.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V2: u32 = 1 << 9;
/// `XEN_SYSCTL_PHYSCAP_MAX`.
pub const XEN_SYSCTL_PHYSCAP_MAX: u32 = XEN_SYSCTL_PHYSCAP_GNTTAB_V2;

/// `struct xen_sysctl_readconsole`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlReadconsole {
    /// IN: non-zero clears the ring after reading.
    pub clear: u8,
    /// IN: non-zero starts at `index`.
    pub incremental: u8,
    /// Padding.
    pub pad0: u8,
    /// Padding.
    pub pad1: u8,
    /// IN: start index (if incremental); OUT: end index.
    pub index: u32,
    /// IN: guest handle of the destination buffer.
    pub buffer: u64,
    /// IN: buffer size; OUT: bytes written.
    pub count: u32,
}
guest_abi!(XenSysctlReadconsole {
    clear,
    incremental,
    pad0,
    pad1,
    index,
    buffer,
    count
});

/// `struct xen_sysctl_physinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlPhysinfo {
    /// Threads per core.
    pub threads_per_core: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// CPUs online.
    pub nr_cpus: u32,
    /// Largest possible CPU id.
    pub max_cpu_id: u32,
    /// NUMA nodes online.
    pub nr_nodes: u32,
    /// Largest possible node id.
    pub max_node_id: u32,
    /// CPU frequency in kHz.
    pub cpu_khz: u32,
    /// `XEN_SYSCTL_PHYSCAP_*`.
    pub capabilities: u32,
    /// Arch-specific capabilities.
    pub arch_capabilities: u32,
    /// Padding.
    pub pad: u32,
    /// Total pages.
    pub total_pages: u64,
    /// Free pages.
    pub free_pages: u64,
    /// Pages awaiting scrubbing.
    pub scrub_pages: u64,
    /// Outstanding claimed pages.
    pub outstanding_pages: u64,
    /// Largest possible MFN.
    pub max_mfn: u64,
    /// Hardware capability words.
    pub hw_cap: [u32; 8],
}
guest_abi!(XenSysctlPhysinfo {
    threads_per_core,
    cores_per_socket,
    nr_cpus,
    max_cpu_id,
    nr_nodes,
    max_node_id,
    cpu_khz,
    capabilities,
    arch_capabilities,
    pad,
    total_pages,
    free_pages,
    scrub_pages,
    outstanding_pages,
    max_mfn,
    hw_cap
});

/// `struct xen_sysctl_sched_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlSchedId {
    /// OUT: the `XEN_SCHEDULER_*` id of the scheduler (of cpupool 0).
    pub sched_id: u32,
}
guest_abi!(XenSysctlSchedId { sched_id });

/// `struct xen_sysctl_getdomaininfolist`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlGetdomaininfolist {
    /// IN: first domain id to report.
    pub first_domain: DomId,
    /// IN: entries the buffer holds.
    pub max_domains: u32,
    /// IN: guest handle of an array of `xen_domctl_getdomaininfo`.
    pub buffer: u64,
    /// OUT: entries written.
    pub num_domains: u32,
}
guest_abi!(XenSysctlGetdomaininfolist {
    first_domain,
    max_domains,
    buffer,
    num_domains
});

/// `struct xen_sysctl`: the argument of `HYPERVISOR_sysctl`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenSysctl {
    /// `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// Must be `XEN_SYSCTL_INTERFACE_VERSION`.
    pub interface_version: u32,
    /// The `u` union.
    pub u: [u8; XEN_SYSCTL_PAYLOAD_SIZE],
}
guest_abi!(XenSysctl {
    cmd,
    interface_version,
    u
});

impl Default for XenSysctl {
    fn default() -> Self {
        Self {
            cmd: 0,
            interface_version: 0,
            u: [0; XEN_SYSCTL_PAYLOAD_SIZE],
        }
    }
}

impl XenSysctl {
    /// A request for `cmd` at this interface version, with an empty payload.
    pub fn new(cmd: u32) -> Self {
        Self {
            cmd,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            ..Self::default()
        }
    }
    /// Whether the caller speaks Xen 4.17's sysctl interface (Xen answers -EACCES if not).
    pub const fn version_matches(&self) -> bool {
        self.interface_version == XEN_SYSCTL_INTERFACE_VERSION
    }
    /// Decodes the union member `T`.
    pub fn payload<T: GuestAbi>(&self) -> Result<T, AbiError> {
        payload_of(&self.u)
    }
    /// Encodes `value` as the union member, zeroing the rest of the union.
    pub fn set_payload<T: GuestAbi>(&mut self, value: &T) -> Result<(), AbiError> {
        set_payload_of(&mut self.u, value)
    }
}

use core::mem::{align_of, offset_of, size_of};
const _: () = assert!(size_of::<XenSysctlReadconsole>() == 24);
const _: () = assert!(offset_of!(XenSysctlReadconsole, incremental) == 1);
const _: () = assert!(offset_of!(XenSysctlReadconsole, index) == 4);
const _: () = assert!(offset_of!(XenSysctlReadconsole, buffer) == 8);
const _: () = assert!(offset_of!(XenSysctlReadconsole, count) == 16);
const _: () = assert!(size_of::<XenSysctlPhysinfo>() == 112);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, cpu_khz) == 24);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, capabilities) == 28);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, arch_capabilities) == 32);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, total_pages) == 40);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, free_pages) == 48);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, max_mfn) == 72);
const _: () = assert!(offset_of!(XenSysctlPhysinfo, hw_cap) == 80);
const _: () = assert!(size_of::<XenSysctlSchedId>() == 4);
const _: () = assert!(size_of::<XenSysctlGetdomaininfolist>() == 24);
const _: () = assert!(offset_of!(XenSysctlGetdomaininfolist, max_domains) == 4);
const _: () = assert!(offset_of!(XenSysctlGetdomaininfolist, buffer) == 8);
const _: () = assert!(offset_of!(XenSysctlGetdomaininfolist, num_domains) == 16);
const _: () = assert!(size_of::<XenSysctl>() == 136);
const _: () = assert!(align_of::<XenSysctl>() == 8);
const _: () = assert!(offset_of!(XenSysctl, interface_version) == 4);
const _: () = assert!(offset_of!(XenSysctl, u) == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physinfo_through_the_container() {
        let p = XenSysctlPhysinfo {
            threads_per_core: 1,
            cores_per_socket: 4,
            nr_cpus: 4,
            max_cpu_id: 3,
            nr_nodes: 1,
            cpu_khz: 2_000_000,
            capabilities: XEN_SYSCTL_PHYSCAP_PV | XEN_SYSCTL_PHYSCAP_HVM,
            total_pages: 0x4_0000,
            free_pages: 0x3_0000,
            max_mfn: 0x4_0000,
            hw_cap: [1, 2, 3, 4, 5, 6, 7, 8],
            ..XenSysctlPhysinfo::default()
        };
        let mut s = XenSysctl::new(XEN_SYSCTL_PHYSINFO);
        s.set_payload(&p).unwrap();
        let b = s.to_vec();
        assert_eq!(b.len(), 136);
        assert_eq!(&b[..8], &[3, 0, 0, 0, 0x15, 0, 0, 0]);
        assert_eq!(&b[8 + 28..8 + 32], &[3, 0, 0, 0]);
        assert_eq!(&b[8 + 108..8 + 112], &[8, 0, 0, 0]);
        let back = XenSysctl::read_from(&b).unwrap();
        assert!(back.version_matches());
        assert_eq!(back.payload::<XenSysctlPhysinfo>(), Ok(p));
    }

    #[test]
    fn readconsole_and_domaininfolist() {
        let r = XenSysctlReadconsole {
            clear: 0,
            incremental: 1,
            index: 100,
            buffer: 0x7f00_0000,
            count: 4096,
            ..XenSysctlReadconsole::default()
        };
        let mut s = XenSysctl::new(XEN_SYSCTL_READCONSOLE);
        s.set_payload(&r).unwrap();
        assert_eq!(&s.u[..8], &[0, 1, 0, 0, 100, 0, 0, 0]);
        assert_eq!(s.payload::<XenSysctlReadconsole>(), Ok(r));
        let l = XenSysctlGetdomaininfolist {
            first_domain: 0,
            max_domains: 16,
            buffer: 0x5000,
            num_domains: 0,
        };
        s.set_payload(&l).unwrap();
        assert_eq!(s.payload::<XenSysctlGetdomaininfolist>(), Ok(l));
        assert!(XenSysctl::read_from(&[0u8; 135]).is_err());
    }
}
