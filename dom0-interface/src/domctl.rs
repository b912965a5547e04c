//! Domain control, mirroring `xen/include/public/domctl.h` of Xen 4.17
//! (`XEN_DOMCTL_INTERFACE_VERSION` 0x15): the `xen_domctl` container, the op numbers, and
//! the payloads of createdomain, destroydomain, pause/unpause, getdomaininfo, max_mem,
//! max_vcpus, set/getvcpucontext and getvcpuinfo.
//!
//! The C union `u` (128 bytes) is stored as bytes; [`XenDomctl::payload`] and
//! [`XenDomctl::set_payload`] decode and encode the member for the command.

use crate::arch_x86::XenArchDomainconfig;
use crate::guest_abi;
use crate::guest_abi::{AbiError, GuestAbi};
use crate::xen::DomId;

/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x0000_0015;
/// Size of the `xen_domctl.u` union.
pub const XEN_DOMCTL_PAYLOAD_SIZE: usize = 128;

/// `XEN_DOMCTL_createdomain`.
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// `XEN_DOMCTL_destroydomain`.
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// `XEN_DOMCTL_pausedomain`.
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// `XEN_DOMCTL_unpausedomain`.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// `XEN_DOMCTL_getdomaininfo`.
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// `XEN_DOMCTL_setvcpuaffinity`.
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// `XEN_DOMCTL_shadow_op`.
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
/// `XEN_DOMCTL_max_mem`.
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// `XEN_DOMCTL_setvcpucontext`.
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// `XEN_DOMCTL_getvcpucontext`.
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// `XEN_DOMCTL_getvcpuinfo`.
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// `XEN_DOMCTL_max_vcpus`.
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// `XEN_DOMCTL_scheduler_op`.
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// `XEN_DOMCTL_setdomainhandle`.
pub const XEN_DOMCTL_SETDOMAINHANDLE: u32 = 17;
/// `XEN_DOMCTL_setdebugging`.
pub const XEN_DOMCTL_SETDEBUGGING: u32 = 18;
/// `XEN_DOMCTL_irq_permission`.
pub const XEN_DOMCTL_IRQ_PERMISSION: u32 = 19;
/// `XEN_DOMCTL_iomem_permission`.
pub const XEN_DOMCTL_IOMEM_PERMISSION: u32 = 20;
/// `XEN_DOMCTL_ioport_permission`.
pub const XEN_DOMCTL_IOPORT_PERMISSION: u32 = 21;
/// `XEN_DOMCTL_hypercall_init`.
pub const XEN_DOMCTL_HYPERCALL_INIT: u32 = 22;
/// `XEN_DOMCTL_settimeoffset`.
pub const XEN_DOMCTL_SETTIMEOFFSET: u32 = 24;
/// `XEN_DOMCTL_getvcpuaffinity`.
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;
/// `XEN_DOMCTL_resumedomain`.
pub const XEN_DOMCTL_RESUMEDOMAIN: u32 = 27;
/// `XEN_DOMCTL_sendtrigger`.
pub const XEN_DOMCTL_SENDTRIGGER: u32 = 28;
/// `XEN_DOMCTL_subscribe`.
pub const XEN_DOMCTL_SUBSCRIBE: u32 = 29;
/// `XEN_DOMCTL_gethvmcontext`.
pub const XEN_DOMCTL_GETHVMCONTEXT: u32 = 33;
/// `XEN_DOMCTL_sethvmcontext`.
pub const XEN_DOMCTL_SETHVMCONTEXT: u32 = 34;
/// `XEN_DOMCTL_set_address_size`.
pub const XEN_DOMCTL_SET_ADDRESS_SIZE: u32 = 35;
/// `XEN_DOMCTL_get_address_size`.
pub const XEN_DOMCTL_GET_ADDRESS_SIZE: u32 = 36;
/// `XEN_DOMCTL_assign_device`.
pub const XEN_DOMCTL_ASSIGN_DEVICE: u32 = 37;
/// `XEN_DOMCTL_bind_pt_irq`.
pub const XEN_DOMCTL_BIND_PT_IRQ: u32 = 38;
/// `XEN_DOMCTL_memory_mapping`.
pub const XEN_DOMCTL_MEMORY_MAPPING: u32 = 39;
/// `XEN_DOMCTL_ioport_mapping`.
pub const XEN_DOMCTL_IOPORT_MAPPING: u32 = 40;
/// `XEN_DOMCTL_set_ext_vcpucontext`.
pub const XEN_DOMCTL_SET_EXT_VCPUCONTEXT: u32 = 42;
/// `XEN_DOMCTL_get_ext_vcpucontext`.
pub const XEN_DOMCTL_GET_EXT_VCPUCONTEXT: u32 = 43;
/// `XEN_DOMCTL_test_assign_device`.
pub const XEN_DOMCTL_TEST_ASSIGN_DEVICE: u32 = 45;
/// `XEN_DOMCTL_set_target`.
pub const XEN_DOMCTL_SET_TARGET: u32 = 46;
/// `XEN_DOMCTL_deassign_device`.
pub const XEN_DOMCTL_DEASSIGN_DEVICE: u32 = 47;
/// `XEN_DOMCTL_unbind_pt_irq`.
pub const XEN_DOMCTL_UNBIND_PT_IRQ: u32 = 48;
/// `XEN_DOMCTL_get_device_group`.
pub const XEN_DOMCTL_GET_DEVICE_GROUP: u32 = 50;
/// `XEN_DOMCTL_debug_op`.
pub const XEN_DOMCTL_DEBUG_OP: u32 = 54;
/// `XEN_DOMCTL_gethvmcontext_partial`.
pub const XEN_DOMCTL_GETHVMCONTEXT_PARTIAL: u32 = 55;
/// `XEN_DOMCTL_vm_event_op`.
pub const XEN_DOMCTL_VM_EVENT_OP: u32 = 56;
/// `XEN_DOMCTL_mem_sharing_op`.
pub const XEN_DOMCTL_MEM_SHARING_OP: u32 = 57;
/// `XEN_DOMCTL_gettscinfo`.
pub const XEN_DOMCTL_GETTSCINFO: u32 = 59;
/// `XEN_DOMCTL_settscinfo`.
pub const XEN_DOMCTL_SETTSCINFO: u32 = 60;
/// `XEN_DOMCTL_getpageframeinfo3`.
pub const XEN_DOMCTL_GETPAGEFRAMEINFO3: u32 = 61;
/// `XEN_DOMCTL_setvcpuextstate`.
pub const XEN_DOMCTL_SETVCPUEXTSTATE: u32 = 62;
/// `XEN_DOMCTL_getvcpuextstate`.
pub const XEN_DOMCTL_GETVCPUEXTSTATE: u32 = 63;
/// `XEN_DOMCTL_set_access_required`.
pub const XEN_DOMCTL_SET_ACCESS_REQUIRED: u32 = 64;
/// `XEN_DOMCTL_audit_p2m`.
pub const XEN_DOMCTL_AUDIT_P2M: u32 = 65;
/// `XEN_DOMCTL_set_virq_handler`.
pub const XEN_DOMCTL_SET_VIRQ_HANDLER: u32 = 66;
/// `XEN_DOMCTL_set_broken_page_p2m`.
pub const XEN_DOMCTL_SET_BROKEN_PAGE_P2M: u32 = 67;
/// `XEN_DOMCTL_setnodeaffinity`.
pub const XEN_DOMCTL_SETNODEAFFINITY: u32 = 68;
/// `XEN_DOMCTL_getnodeaffinity`.
pub const XEN_DOMCTL_GETNODEAFFINITY: u32 = 69;
/// `XEN_DOMCTL_cacheflush`.
pub const XEN_DOMCTL_CACHEFLUSH: u32 = 71;
/// `XEN_DOMCTL_get_vcpu_msrs`.
pub const XEN_DOMCTL_GET_VCPU_MSRS: u32 = 72;
/// `XEN_DOMCTL_set_vcpu_msrs`.
pub const XEN_DOMCTL_SET_VCPU_MSRS: u32 = 73;
/// `XEN_DOMCTL_setvnumainfo`.
pub const XEN_DOMCTL_SETVNUMAINFO: u32 = 74;
/// `XEN_DOMCTL_psr_cmt_op`.
pub const XEN_DOMCTL_PSR_CMT_OP: u32 = 75;
/// `XEN_DOMCTL_monitor_op`.
pub const XEN_DOMCTL_MONITOR_OP: u32 = 77;
/// `XEN_DOMCTL_psr_alloc`.
pub const XEN_DOMCTL_PSR_ALLOC: u32 = 78;
/// `XEN_DOMCTL_soft_reset`.
pub const XEN_DOMCTL_SOFT_RESET: u32 = 79;
/// `XEN_DOMCTL_vuart_op`.
pub const XEN_DOMCTL_VUART_OP: u32 = 81;
/// `XEN_DOMCTL_get_cpu_policy`.
pub const XEN_DOMCTL_GET_CPU_POLICY: u32 = 82;
/// `XEN_DOMCTL_set_cpu_policy`.
pub const XEN_DOMCTL_SET_CPU_POLICY: u32 = 83;
/// `XEN_DOMCTL_vmtrace_op`.
pub const XEN_DOMCTL_VMTRACE_OP: u32 = 84;
/// `XEN_DOMCTL_get_paging_mempool_size`.
pub const XEN_DOMCTL_GET_PAGING_MEMPOOL_SIZE: u32 = 85;
/// `XEN_DOMCTL_set_paging_mempool_size`.
pub const XEN_DOMCTL_SET_PAGING_MEMPOOL_SIZE: u32 = 86;
/// `XEN_DOMCTL_gdbsx_guestmemio`.
pub const XEN_DOMCTL_GDBSX_GUESTMEMIO: u32 = 1000;
/// `XEN_DOMCTL_gdbsx_pausevcpu`.
pub const XEN_DOMCTL_GDBSX_PAUSEVCPU: u32 = 1001;
/// `XEN_DOMCTL_gdbsx_unpausevcpu`.
pub const XEN_DOMCTL_GDBSX_UNPAUSEVCPU: u32 = 1002;
/// `XEN_DOMCTL_gdbsx_domstatus`.
pub const XEN_DOMCTL_GDBSX_DOMSTATUS: u32 = 1003;

/// `XEN_DOMCTL_CDF_hvm`: HVM (or PVH) guest rather than PV.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// `XEN_DOMCTL_CDF_hap`: use hardware-assisted paging.
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// `XEN_DOMCTL_CDF_s3_integrity`.
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// `XEN_DOMCTL_CDF_oos_off`.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// `XEN_DOMCTL_CDF_xs_domain`.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// `XEN_DOMCTL_CDF_iommu`.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// `XEN_DOMCTL_CDF_nested_virt`.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// `XEN_DOMCTL_CDF_vpmu`.
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;
/// `XEN_DOMCTL_CDF_MAX`: highest defined flag.
pub const XEN_DOMCTL_CDF_MAX: u32 = XEN_DOMCTL_CDF_VPMU;
/// `XEN_DOMCTL_IOMMU_no_sharept`.
pub const XEN_DOMCTL_IOMMU_NO_SHAREPT: u32 = 1 << 0;
/// `XEN_DOMCTL_GRANT_version_mask`: grant table version in `grant_opts`.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;

/// `XEN_DOMINF_dying`.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_hvm_guest`.
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// `XEN_DOMINF_shutdown`.
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_paused`.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `XEN_DOMINF_blocked`.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// `XEN_DOMINF_running`.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// `XEN_DOMINF_debugged`.
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// `XEN_DOMINF_xs_domain`.
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// `XEN_DOMINF_hap`.
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// `XEN_DOMINF_shutdownmask`: the guest's shutdown code, after shifting.
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
/// `XEN_DOMINF_shutdownshift`.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// `XEN_INVALID_MAX_VCPU_ID`: the domain has no vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

/// `xen_domain_handle_t`: the toolstack's UUID for a domain.
pub type XenDomainHandle = [u8; 16];

/// `struct xen_domctl_createdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlCreatedomain {
    /// XSM security reference.
    pub ssidref: u32,
    /// UUID.
    pub handle: XenDomainHandle,
    /// `XEN_DOMCTL_CDF_*`.
    pub flags: u32,
    /// `XEN_DOMCTL_IOMMU_*`.
    pub iommu_opts: u32,
    /// Maximum vCPUs.
    pub max_vcpus: u32,
    /// Highest event channel port.
    pub max_evtchn_port: u32,
    /// Grant frames (< 0: hypervisor default).
    pub max_grant_frames: i32,
    /// Maptrack frames (< 0: hypervisor default).
    pub max_maptrack_frames: i32,
    /// Grant version in the low 4 bits.
    pub grant_opts: u32,
    /// Per-vCPU trace buffer bytes (0: disabled).
    pub vmtrace_size: u32,
    /// CPU pool.
    pub cpupool_id: u32,
    /// Arch configuration.
    pub arch: XenArchDomainconfig,
}
guest_abi!(XenDomctlCreatedomain {
    ssidref,
    handle,
    flags,
    iommu_opts,
    max_vcpus,
    max_evtchn_port,
    max_grant_frames,
    max_maptrack_frames,
    grant_opts,
    vmtrace_size,
    cpupool_id,
    arch
});

/// `struct xen_domctl_getdomaininfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlGetdomaininfo {
    /// Domain id (also echoed in `xen_domctl.domain`).
    pub domain: DomId,
    /// Padding.
    pub pad1: u16,
    /// `XEN_DOMINF_*` and the shutdown code.
    pub flags: u32,
    /// Pages allocated.
    pub tot_pages: u64,
    /// Maximum pages.
    pub max_pages: u64,
    /// Outstanding claimed pages.
    pub outstanding_pages: u64,
    /// Shared pages.
    pub shr_pages: u64,
    /// Paged-out pages.
    pub paged_pages: u64,
    /// GMFN of shared_info.
    pub shared_info_frame: u64,
    /// CPU time used (ns).
    pub cpu_time: u64,
    /// Online vCPUs.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id in use (`XEN_INVALID_MAX_VCPU_ID` if none).
    pub max_vcpu_id: u32,
    /// XSM security reference.
    pub ssidref: u32,
    /// UUID.
    pub handle: XenDomainHandle,
    /// CPU pool.
    pub cpupool: u32,
    /// Guest physical address width.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// Arch configuration.
    pub arch_config: XenArchDomainconfig,
}
guest_abi!(XenDomctlGetdomaininfo {
    domain,
    pad1,
    flags,
    tot_pages,
    max_pages,
    outstanding_pages,
    shr_pages,
    paged_pages,
    shared_info_frame,
    cpu_time,
    nr_online_vcpus,
    max_vcpu_id,
    ssidref,
    handle,
    cpupool,
    gpaddr_bits,
    pad2,
    arch_config
});

impl XenDomctlGetdomaininfo {
    /// The guest-supplied shutdown code carried in `flags`.
    pub const fn shutdown_code(&self) -> u32 {
        (self.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK
    }
}

/// `struct xen_domctl_max_mem`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlMaxMem {
    /// Memory limit in KiB.
    pub max_memkb: u64,
}
guest_abi!(XenDomctlMaxMem { max_memkb });

/// `XEN_SCHEDULER_credit` (`domctl.h`: the scheduler ids `sched_id` and `scheduler_op` use).
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// `XEN_SCHEDULER_credit2` (Xen 4.17's default scheduler).
pub const XEN_SCHEDULER_CREDIT2: u32 = 6;
/// `XEN_SCHEDULER_ARINC653`.
pub const XEN_SCHEDULER_ARINC653: u32 = 7;
/// `XEN_SCHEDULER_RTDS`.
pub const XEN_SCHEDULER_RTDS: u32 = 8;
/// `XEN_SCHEDULER_NULL`.
pub const XEN_SCHEDULER_NULL: u32 = 9;

/// `struct xen_domctl_vcpucontext` (set/getvcpucontext).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlVcpucontext {
    /// vCPU.
    pub vcpu: u32,
    /// Guest handle of a `vcpu_guest_context`.
    pub ctxt: u64,
}
guest_abi!(XenDomctlVcpucontext { vcpu, ctxt });

/// `struct xen_domctl_getvcpuinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlGetvcpuinfo {
    /// IN: vCPU.
    pub vcpu: u32,
    /// OUT: online.
    pub online: u8,
    /// OUT: blocked waiting for an event.
    pub blocked: u8,
    /// OUT: currently scheduled.
    pub running: u8,
    /// OUT: CPU time consumed (ns).
    pub cpu_time: u64,
    /// OUT: current physical CPU.
    pub cpu: u32,
}
guest_abi!(XenDomctlGetvcpuinfo {
    vcpu,
    online,
    blocked,
    running,
    cpu_time,
    cpu
});

/// `struct xen_domctl_max_vcpus`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlMaxVcpus {
    /// Maximum number of vCPUs.
    pub max: u32,
}
guest_abi!(XenDomctlMaxVcpus { max });

/// `struct xen_domctl`: the argument of `HYPERVISOR_domctl`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenDomctl {
    /// `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// Must be `XEN_DOMCTL_INTERFACE_VERSION`.
    pub interface_version: u32,
    /// Target domain (IN/OUT for createdomain: 0 allocates one).
    pub domain: DomId,
    /// Padding.
    pub _pad: [u16; 3],
    /// The `u` union.
    pub u: [u8; XEN_DOMCTL_PAYLOAD_SIZE],
}
guest_abi!(XenDomctl {
    cmd,
    interface_version,
    domain,
    _pad,
    u
});

impl Default for XenDomctl {
    fn default() -> Self {
        Self {
            cmd: 0,
            interface_version: 0,
            domain: 0,
            _pad: [0; 3],
            u: [0; XEN_DOMCTL_PAYLOAD_SIZE],
        }
    }
}

impl XenDomctl {
    /// A request for `cmd` on `domain` at this interface version, with an empty payload.
    pub fn new(cmd: u32, domain: DomId) -> Self {
        Self {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            ..Self::default()
        }
    }
    /// Whether the caller speaks Xen 4.17's domctl interface (Xen answers -EACCES if not).
    pub const fn version_matches(&self) -> bool {
        self.interface_version == XEN_DOMCTL_INTERFACE_VERSION
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

/// Decodes `T` from a 128-byte domctl/sysctl union.
pub(crate) fn payload_of<T: GuestAbi>(u: &[u8; XEN_DOMCTL_PAYLOAD_SIZE]) -> Result<T, AbiError> {
    if T::SIZE > u.len() {
        return Err(AbiError::PayloadTooLarge {
            size: T::SIZE,
            capacity: u.len(),
        });
    }
    T::read_from(u)
}

/// Encodes `value` into a 128-byte domctl/sysctl union, zeroing the remainder.
pub(crate) fn set_payload_of<T: GuestAbi>(
    u: &mut [u8; XEN_DOMCTL_PAYLOAD_SIZE],
    value: &T,
) -> Result<(), AbiError> {
    if T::SIZE > u.len() {
        return Err(AbiError::PayloadTooLarge {
            size: T::SIZE,
            capacity: u.len(),
        });
    }
    u.fill(0);
    value.write_to(u)
}

use core::mem::{align_of, offset_of, size_of};
const _: () = assert!(size_of::<XenDomctlCreatedomain>() == 64);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, handle) == 4);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, flags) == 20);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, max_vcpus) == 28);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, max_grant_frames) == 36);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, grant_opts) == 44);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, cpupool_id) == 52);
const _: () = assert!(offset_of!(XenDomctlCreatedomain, arch) == 56);
const _: () = assert!(size_of::<XenDomctlGetdomaininfo>() == 112);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, flags) == 4);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, tot_pages) == 8);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, shared_info_frame) == 48);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, cpu_time) == 56);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, nr_online_vcpus) == 64);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, max_vcpu_id) == 68);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, ssidref) == 72);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, handle) == 76);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, cpupool) == 92);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, gpaddr_bits) == 96);
const _: () = assert!(offset_of!(XenDomctlGetdomaininfo, arch_config) == 104);
const _: () = assert!(size_of::<XenDomctlMaxMem>() == 8);
const _: () = assert!(size_of::<XenDomctlVcpucontext>() == 16);
const _: () = assert!(offset_of!(XenDomctlVcpucontext, ctxt) == 8);
const _: () = assert!(size_of::<XenDomctlGetvcpuinfo>() == 24);
const _: () = assert!(offset_of!(XenDomctlGetvcpuinfo, online) == 4);
const _: () = assert!(offset_of!(XenDomctlGetvcpuinfo, running) == 6);
const _: () = assert!(offset_of!(XenDomctlGetvcpuinfo, cpu_time) == 8);
const _: () = assert!(offset_of!(XenDomctlGetvcpuinfo, cpu) == 16);
const _: () = assert!(size_of::<XenDomctlMaxVcpus>() == 4);
const _: () = assert!(size_of::<XenDomctl>() == 144);
const _: () = assert!(align_of::<XenDomctl>() == 8);
const _: () = assert!(offset_of!(XenDomctl, interface_version) == 4);
const _: () = assert!(offset_of!(XenDomctl, domain) == 8);
const _: () = assert!(offset_of!(XenDomctl, _pad) == 10);
const _: () = assert!(offset_of!(XenDomctl, u) == 16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch_x86::{XEN_X86_EMU_ALL, XEN_X86_EMU_LAPIC};

    #[test]
    fn createdomain_through_the_container() {
        let create = XenDomctlCreatedomain {
            ssidref: 0,
            handle: [0xab; 16],
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            iommu_opts: 0,
            max_vcpus: 2,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
            grant_opts: 1,
            vmtrace_size: 0,
            cpupool_id: 0,
            arch: XenArchDomainconfig {
                emulation_flags: XEN_X86_EMU_LAPIC,
                misc_flags: 0,
            },
        };
        let mut d = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
        d.set_payload(&create).unwrap();
        let b = d.to_vec();
        assert_eq!(b.len(), 144);
        assert_eq!(&b[..12], &[1, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16 + 20..16 + 24], &[3, 0, 0, 0]);
        assert_eq!(&b[16 + 36..16 + 40], &[0xff; 4]);
        assert_eq!(&b[16 + 56..16 + 60], &[1, 0, 0, 0]);
        let back = XenDomctl::read_from(&b).unwrap();
        assert!(back.version_matches());
        assert_eq!(back.payload::<XenDomctlCreatedomain>(), Ok(create));
        assert_ne!(create.arch.emulation_flags, XEN_X86_EMU_ALL);
    }

    #[test]
    fn getdomaininfo_and_small_payloads() {
        let info = XenDomctlGetdomaininfo {
            domain: 1,
            flags: XEN_DOMINF_SHUTDOWN | (3 << XEN_DOMINF_SHUTDOWNSHIFT),
            tot_pages: 0x4000,
            max_vcpu_id: 1,
            gpaddr_bits: 52,
            ..XenDomctlGetdomaininfo::default()
        };
        assert_eq!(info.shutdown_code(), 3);
        let mut d = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 1);
        d.set_payload(&info).unwrap();
        assert_eq!(d.u[96], 52);
        assert_eq!(d.payload::<XenDomctlGetdomaininfo>(), Ok(info));
        d.set_payload(&XenDomctlMaxVcpus { max: 4 }).unwrap();
        assert_eq!(&d.u[..8], &[4, 0, 0, 0, 0, 0, 0, 0]);
        let v = XenDomctlGetvcpuinfo {
            vcpu: 1,
            online: 1,
            blocked: 0,
            running: 1,
            cpu_time: 99,
            cpu: 2,
        };
        d.set_payload(&v).unwrap();
        assert_eq!(d.payload::<XenDomctlGetvcpuinfo>(), Ok(v));
        let c = XenDomctlVcpucontext {
            vcpu: 0,
            ctxt: 0x7000,
        };
        d.set_payload(&c).unwrap();
        assert_eq!(d.payload::<XenDomctlVcpucontext>(), Ok(c));
        let m = XenDomctlMaxMem { max_memkb: 262_144 };
        d.set_payload(&m).unwrap();
        assert_eq!(d.payload::<XenDomctlMaxMem>(), Ok(m));
    }

    #[test]
    fn oversized_payload_is_an_error() {
        let mut d = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, 1);
        let big = crate::arch_x86::VcpuGuestContext::default();
        assert_eq!(
            d.set_payload(&big),
            Err(AbiError::PayloadTooLarge {
                size: 5168,
                capacity: 128
            })
        );
        assert!(d.payload::<crate::arch_x86::VcpuGuestContext>().is_err());
        d.interface_version = 0x14;
        assert!(!d.version_matches());
    }
}
