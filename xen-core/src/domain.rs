//! Domains and vCPUs as the replica holds them: plain values inside journaled containers.

use crate::effect::DomId;
use lockstep::impl_value;

/// A domain's life-cycle state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainFlags {
    /// Privileged (dom0): may use domctl/sysctl and console_io.
    pub privileged: bool,
    /// Paused by the toolstack (not by shutdown).
    pub paused: bool,
    /// Being destroyed.
    pub dying: bool,
}
impl_value!(DomainFlags {
    privileged,
    paused,
    dying
});

/// One domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Domain {
    /// Domain id.
    pub id: DomId,
    /// Flags.
    pub flags: DomainFlags,
    /// Number of vCPUs.
    pub max_vcpus: u32,
    /// Pages currently allocated to the domain.
    pub tot_pages: u64,
    /// Pages it may have.
    pub max_pages: u64,
    /// SHUTDOWN_* reason once it has shut down.
    pub shutdown: Option<u32>,
    /// Reason recorded with SCHEDOP_shutdown_code (reported if it later crashes/shuts down).
    pub shutdown_code: Option<u32>,
    /// VMASST_* bits enabled.
    pub vm_assist: u64,
    /// Toolstack pauses outstanding (`controller_pause_count`): 1 after createdomain, until
    /// the toolstack's first unpause; `flags.paused` mirrors `> 0`.
    pub pause_count: u32,
    /// The toolstack's UUID (`xen_domain_handle_t`).
    pub handle: [u8; 16],
    /// The CMOS/RTC register index the domain last wrote to port 0x70 (Xen's `cmos_idx`):
    /// it reads back from 0x70, and selects the register 0x71 reaches.
    pub cmos_idx: u8,
}
impl_value!(Domain {
    id,
    flags,
    max_vcpus,
    tot_pages,
    max_pages,
    shutdown,
    shutdown_code,
    vm_assist,
    pause_count,
    handle,
    cmos_idx
});

/// Key of a vCPU: (domain, vCPU id).
pub type VcpuKey = (DomId, u32);

/// The hypervisor-side state of one PV vCPU (its registers travel with each request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vcpu {
    /// Domain.
    pub dom: DomId,
    /// vCPU id.
    pub id: u32,
    /// Brought up (VCPUOP_up or the boot vCPU).
    pub online: bool,
    /// Running the guest kernel (as opposed to guest user space).
    pub kernel_mode: bool,
    /// Blocked in SCHEDOP_block until an event arrives.
    pub blocked: bool,
    /// Kernel page-table base (machine address of the L4).
    pub cr3: u64,
    /// User page-table base (0: none).
    pub user_cr3: u64,
    /// Kernel stack for ring transitions (stack_switch): SS.
    pub kernel_ss: u64,
    /// Kernel stack pointer.
    pub kernel_sp: u64,
    /// Event upcall entry point.
    pub event_callback: u64,
    /// Failsafe callback entry point.
    pub failsafe_callback: u64,
    /// 64-bit SYSCALL entry point for guest user space.
    pub syscall_callback: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base in kernel mode.
    pub gs_base_kernel: u64,
    /// GS base in user mode.
    pub gs_base_user: u64,
    /// Single-shot timer deadline (system time, ns), if armed.
    pub timer_deadline: Option<u64>,
    /// LDT base (guest virtual address) set with MMUEXT_SET_LDT.
    pub ldt_base: u64,
    /// LDT entries (0: no LDT).
    pub ldt_ents: u32,
}
impl_value!(Vcpu {
    dom,
    id,
    online,
    kernel_mode,
    blocked,
    cr3,
    user_cr3,
    kernel_ss,
    kernel_sp,
    event_callback,
    failsafe_callback,
    syscall_callback,
    fs_base,
    gs_base_kernel,
    gs_base_user,
    timer_deadline,
    ldt_base,
    ldt_ents,
});
