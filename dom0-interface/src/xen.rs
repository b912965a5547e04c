//! Core guest interface, mirroring `xen/include/public/xen.h` (Xen 4.17, x86-64):
//! hypercall and VIRQ numbers, domain ids, start_info, shared_info, vcpu_info, time info,
//! mmu_update / mmuext_op, multicall, vm_assist and console_io commands.

use crate::arch_x86::XEN_LEGACY_MAX_VCPUS;
use crate::guest_abi;
use crate::guest_abi::AbiError;

pub use crate::arch_x86::{ArchSharedInfo, ArchVcpuInfo, TrapInfo, XenPfn, XenUlong};

/// `domid_t`.
pub type DomId = u16;

macro_rules! hypercalls {
    ($($name:ident = $nr:literal, $cname:literal;)*) => {
        $(#[doc = concat!("`__HYPERVISOR_", $cname, "`.")] pub const $name: u32 = $nr;)*

        /// Xen's name for hypercall `nr` (e.g. `"sched_op"`), if `xen.h` defines it.
        pub const fn hypercall_name(nr: u32) -> Option<&'static str> {
            match nr {
                $($nr => Some($cname),)*
                _ => None,
            }
        }
    };
}

hypercalls! {
    HYPERVISOR_SET_TRAP_TABLE = 0, "set_trap_table";
    HYPERVISOR_MMU_UPDATE = 1, "mmu_update";
    HYPERVISOR_SET_GDT = 2, "set_gdt";
    HYPERVISOR_STACK_SWITCH = 3, "stack_switch";
    HYPERVISOR_SET_CALLBACKS = 4, "set_callbacks";
    HYPERVISOR_FPU_TASKSWITCH = 5, "fpu_taskswitch";
    HYPERVISOR_SCHED_OP_COMPAT = 6, "sched_op_compat";
    HYPERVISOR_PLATFORM_OP = 7, "platform_op";
    HYPERVISOR_SET_DEBUGREG = 8, "set_debugreg";
    HYPERVISOR_GET_DEBUGREG = 9, "get_debugreg";
    HYPERVISOR_UPDATE_DESCRIPTOR = 10, "update_descriptor";
    HYPERVISOR_MEMORY_OP = 12, "memory_op";
    HYPERVISOR_MULTICALL = 13, "multicall";
    HYPERVISOR_UPDATE_VA_MAPPING = 14, "update_va_mapping";
    HYPERVISOR_SET_TIMER_OP = 15, "set_timer_op";
    HYPERVISOR_EVENT_CHANNEL_OP_COMPAT = 16, "event_channel_op_compat";
    HYPERVISOR_XEN_VERSION = 17, "xen_version";
    HYPERVISOR_CONSOLE_IO = 18, "console_io";
    HYPERVISOR_PHYSDEV_OP_COMPAT = 19, "physdev_op_compat";
    HYPERVISOR_GRANT_TABLE_OP = 20, "grant_table_op";
    HYPERVISOR_VM_ASSIST = 21, "vm_assist";
    HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN = 22, "update_va_mapping_otherdomain";
    HYPERVISOR_IRET = 23, "iret";
    HYPERVISOR_VCPU_OP = 24, "vcpu_op";
    HYPERVISOR_SET_SEGMENT_BASE = 25, "set_segment_base";
    HYPERVISOR_MMUEXT_OP = 26, "mmuext_op";
    HYPERVISOR_XSM_OP = 27, "xsm_op";
    HYPERVISOR_NMI_OP = 28, "nmi_op";
    HYPERVISOR_SCHED_OP = 29, "sched_op";
    HYPERVISOR_CALLBACK_OP = 30, "callback_op";
    HYPERVISOR_XENOPROF_OP = 31, "xenoprof_op";
    HYPERVISOR_EVENT_CHANNEL_OP = 32, "event_channel_op";
    HYPERVISOR_PHYSDEV_OP = 33, "physdev_op";
    HYPERVISOR_HVM_OP = 34, "hvm_op";
    HYPERVISOR_SYSCTL = 35, "sysctl";
    HYPERVISOR_DOMCTL = 36, "domctl";
    HYPERVISOR_KEXEC_OP = 37, "kexec_op";
    HYPERVISOR_TMEM_OP = 38, "tmem_op";
    HYPERVISOR_ARGO_OP = 39, "argo_op";
    HYPERVISOR_XENPMU_OP = 40, "xenpmu_op";
    HYPERVISOR_DM_OP = 41, "dm_op";
    HYPERVISOR_HYPFS_OP = 42, "hypfs_op";
    HYPERVISOR_ARCH_0 = 48, "arch_0";
    HYPERVISOR_ARCH_1 = 49, "arch_1";
    HYPERVISOR_ARCH_2 = 50, "arch_2";
    HYPERVISOR_ARCH_3 = 51, "arch_3";
    HYPERVISOR_ARCH_4 = 52, "arch_4";
    HYPERVISOR_ARCH_5 = 53, "arch_5";
    HYPERVISOR_ARCH_6 = 54, "arch_6";
    HYPERVISOR_ARCH_7 = 55, "arch_7";
}

/// Stubs in a hypercall page (one 4 KiB page of 32-byte stubs).
pub const HYPERCALL_PAGE_STUBS: usize = 128;
/// Bytes per hypercall stub: the guest calls `page + nr * 32`.
pub const HYPERCALL_STUB_SIZE: usize = 32;

/// `VIRQ_TIMER`: per-vCPU timebase update / requested timeout.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG`: per-vCPU request to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE`: (dom0) bytes received on the emergency console.
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC`: (dom0) exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF`: (dom0) trace buffer has records.
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER`: (dom0) a domain has paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF`: per-vCPU oprofile sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING`: (dom0) bytes received on the console.
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE`: (dom0) physical CPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT`: (dom0) a memory event has occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO`: Argo interdomain message notification.
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM`: (dom0) low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU`: per-vCPU PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// `VIRQ_ARCH_0`: first architecture-specific VIRQ (`VIRQ_ARCH_n` = 16 + n).
pub const VIRQ_ARCH_0: u32 = 16;
/// `NR_VIRQS`.
pub const NR_VIRQS: u32 = 24;

/// Whether VIRQ `virq` is per-vCPU ("V." in the header) rather than global ("G.").
/// Returns `None` for numbers the header does not define (arch VIRQs included).
pub const fn virq_is_per_vcpu(virq: u32) -> Option<bool> {
    match virq {
        VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU => Some(true),
        VIRQ_CONSOLE | VIRQ_DOM_EXC | VIRQ_TBUF | VIRQ_DEBUGGER | VIRQ_CON_RING
        | VIRQ_PCPU_STATE | VIRQ_MEM_EVENT | VIRQ_ARGO | VIRQ_ENOMEM => Some(false),
        _ => None,
    }
}

/// `MMU_NORMAL_PT_UPDATE`: checked `*ptr = val` (ptr is a machine address).
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `MMU_MACHPHYS_UPDATE`: update the machine-to-phys entry of the frame at ptr.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `MMU_PT_UPDATE_PRESERVE_AD`: as normal, preserving the A/D bits.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// `MMU_PT_UPDATE_NO_TRANSLATE`: as normal, val never translated.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;

/// `MMUEXT_PIN_L1_TABLE`.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// `MMUEXT_PIN_L2_TABLE`.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// `MMUEXT_PIN_L3_TABLE`.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// `MMUEXT_PIN_L4_TABLE`.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_NEW_BASEPTR`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_INVLPG_LOCAL`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// `MMUEXT_TLB_FLUSH_MULTI`.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// `MMUEXT_INVLPG_MULTI`.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// `MMUEXT_TLB_FLUSH_ALL`.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// `MMUEXT_INVLPG_ALL`.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// `MMUEXT_FLUSH_CACHE`.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// `MMUEXT_SET_LDT`.
pub const MMUEXT_SET_LDT: u32 = 13;
/// `MMUEXT_NEW_USER_BASEPTR` (x86-64).
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// `MMUEXT_CLEAR_PAGE`.
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// `MMUEXT_COPY_PAGE`.
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// `MMUEXT_FLUSH_CACHE_GLOBAL`.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// `MMUEXT_MARK_SUPER`.
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// `MMUEXT_UNMARK_SUPER`.
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

/// `UVMF_NONE`: `update_va_mapping` flags, no flushing.
pub const UVMF_NONE: u64 = 0;
/// `UVMF_TLB_FLUSH`: flush entire TLB(s).
pub const UVMF_TLB_FLUSH: u64 = 1;
/// `UVMF_INVLPG`: flush only one entry.
pub const UVMF_INVLPG: u64 = 2;
/// `UVMF_FLUSHTYPE_MASK`.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// `UVMF_MULTI`: flush a subset of TLBs (OR in a pointer to a vCPU bitmap).
pub const UVMF_MULTI: u64 = 0;
/// `UVMF_LOCAL`: flush the local TLB.
pub const UVMF_LOCAL: u64 = 0;
/// `UVMF_ALL`: flush all TLBs.
pub const UVMF_ALL: u64 = 1 << 2;

/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `CONSOLEIO_read`.
pub const CONSOLEIO_READ: u32 = 1;

/// `VMASST_CMD_enable`.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `VMASST_CMD_disable`.
pub const VMASST_CMD_DISABLE: u32 = 1;
/// `VMASST_TYPE_4gb_segments` (x86-32 only).
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// `VMASST_TYPE_4gb_segments_notify` (x86-32 only).
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// `VMASST_TYPE_writable_pagetables`.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// `VMASST_TYPE_pae_extended_cr3` (x86-32 only).
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// `VMASST_TYPE_architectural_iopl`.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// `VMASST_TYPE_runstate_update_flag`.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// `VMASST_TYPE_m2p_strict` (x86-64 only).
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

/// `DOMID_FIRST_RESERVED`: ids at or above this are not ordinary domains.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// `DOMID_SELF`.
pub const DOMID_SELF: DomId = 0x7FF0;
/// `DOMID_IO`.
pub const DOMID_IO: DomId = 0x7FF1;
/// `DOMID_XEN`.
pub const DOMID_XEN: DomId = 0x7FF2;
/// `DOMID_COW`.
pub const DOMID_COW: DomId = 0x7FF3;
/// `DOMID_INVALID`.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// `DOMID_IDLE`.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// `DOMID_MASK`.
pub const DOMID_MASK: DomId = 0x7FFF;

/// `XEN_PVCLOCK_TSC_STABLE_BIT` in `vcpu_time_info.flags`.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` in `vcpu_time_info.flags`.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `SIF_PRIVILEGED`: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`: the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `SIF_MULTIBOOT_MOD`: `mod_start` is a multiboot module list.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `SIF_MOD_START_PFN`: `mod_start` is a PFN.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `SIF_VIRT_P2M_4TOOLS`: tools understand a virtually mapped p2m.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `SIF_PM_MASK`: reserved for xen-pm options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// `MAX_GUEST_CMDLINE`: bytes of `start_info.cmd_line`.
pub const MAX_GUEST_CMDLINE: usize = 1024;
/// The start-of-day region ends on this alignment ("an aligned 4MB boundary").
pub const START_OF_DAY_ALIGN: u64 = 4 << 20;
/// Minimum padding after the last bootstrap element ("at least 512kB").
pub const START_OF_DAY_MIN_PADDING: u64 = 512 << 10;
/// `start_info.magic` of a 64-bit PV guest: `"xen-<version>-<platform>"` with version 3.0
/// (the interface version also named by `XEN_ELFNOTE_XEN_VERSION`) and platform `x86_64`.
pub const START_INFO_MAGIC_X86_64: &[u8] = b"xen-3.0-x86_64";

/// `struct mmu_update`: one request of `HYPERVISOR_mmu_update`; `ptr[1:0]` is the command.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuUpdate {
    /// Machine address of the PTE (low 2 bits: `MMU_*` command).
    pub ptr: u64,
    /// New contents.
    pub val: u64,
}
guest_abi!(MmuUpdate { ptr, val });

impl MmuUpdate {
    /// The `MMU_*` command in `ptr[1:0]`.
    pub const fn cmd(&self) -> u64 {
        self.ptr & 3
    }
    /// The address in `ptr[:2]`.
    pub const fn address(&self) -> u64 {
        self.ptr & !3
    }
}

/// `struct mmuext_op`. The C unions are kept as their 8-byte storage.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// Union `arg1`: `mfn` or `linear_addr`.
    pub arg1: u64,
    /// Union `arg2`: `nr_ents` (low 32 bits), `vcpumask` (guest handle) or `src_mfn`.
    pub arg2: u64,
}
guest_abi!(MmuextOp { cmd, arg1, arg2 });

impl MmuextOp {
    /// `arg2.nr_ents` (SET_LDT).
    pub const fn nr_ents(&self) -> u32 {
        self.arg2 as u32
    }
}

/// `struct multicall_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Return value, written by the hypervisor.
    pub result: u64,
    /// Arguments.
    pub args: [u64; 6],
}
guest_abi!(MulticallEntry { op, result, args });

/// `struct vcpu_time_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Incremented before and after each update (odd while updating).
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC at last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-ns multiplier (32.32 fixed point after shifting).
    pub tsc_to_system_mul: u32,
    /// TSC shift applied before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}
guest_abi!(VcpuTimeInfo {
    version,
    pad0,
    tsc_timestamp,
    system_time,
    tsc_to_system_mul,
    tsc_shift,
    flags,
    pad1
});

impl VcpuTimeInfo {
    /// System time at `tsc`, by the header's formula
    /// `system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)`
    /// (negative shifts shift right).
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let shifted = if self.tsc_shift >= 0 {
            delta << (self.tsc_shift as u32)
        } else {
            delta >> ((-(self.tsc_shift as i32)) as u32)
        };
        let ns = ((shifted as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(ns)
    }
}

/// `struct vcpu_info`: 64 bytes per vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set non-zero by Xen when an event is pending.
    pub evtchn_upcall_pending: u8,
    /// Guest's event mask (non-zero: no upcall).
    pub evtchn_upcall_mask: u8,
    /// Selector: one bit per word of `evtchn_pending`.
    pub evtchn_pending_sel: u64,
    /// Arch part.
    pub arch: ArchVcpuInfo,
    /// Time info.
    pub time: VcpuTimeInfo,
}
guest_abi!(VcpuInfo {
    evtchn_upcall_pending,
    evtchn_upcall_mask,
    evtchn_pending_sel,
    arch,
    time
});

/// `struct shared_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    /// Legacy per-vCPU info.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bits.
    pub evtchn_pending: [u64; 64],
    /// 2-level event channel mask bits.
    pub evtchn_mask: [u64; 64],
    /// Wallclock version (see `VcpuTimeInfo::version`).
    pub wc_version: u32,
    /// Wallclock seconds (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds (high 32 bits).
    pub wc_sec_hi: u32,
    /// Arch part.
    pub arch: ArchSharedInfo,
}
guest_abi!(SharedInfo {
    vcpu_info,
    evtchn_pending,
    evtchn_mask,
    wc_version,
    wc_sec,
    wc_nsec,
    wc_sec_hi,
    arch
});

impl Default for SharedInfo {
    fn default() -> Self {
        Self {
            vcpu_info: [VcpuInfo::default(); XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [0; 64],
            evtchn_mask: [0; 64],
            wc_version: 0,
            wc_sec: 0,
            wc_nsec: 0,
            wc_sec_hi: 0,
            arch: ArchSharedInfo::default(),
        }
    }
}

/// `struct start_info` (x86-64 PV). The `console` union is stored as its domU view
/// (`mfn`, `evtchn`); dom0 reads it as `info_off`/`info_size` (see the accessors).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, NUL-terminated.
    pub magic: [u8; 32],
    /// Total pages allocated to the domain.
    pub nr_pages: u64,
    /// Machine address of shared_info.
    pub shared_info: u64,
    /// `SIF_*`.
    pub flags: u32,
    /// Machine frame of the xenstore page.
    pub store_mfn: XenPfn,
    /// Event channel for xenstore.
    pub store_evtchn: u32,
    /// `console.domU.mfn` (dom0: `info_off` | `info_size` << 32).
    pub console_mfn: XenPfn,
    /// `console.domU.evtchn`.
    pub console_evtchn: u32,
    /// Virtual address of the bootstrap page directory.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the page-frame list.
    pub mfn_list: u64,
    /// Virtual address (or PFN with `SIF_MOD_START_PFN`) of the first module.
    pub mod_start: u64,
    /// Module size in bytes.
    pub mod_len: u64,
    /// Kernel command line, NUL-terminated.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the initial p2m table.
    pub first_p2m_pfn: u64,
    /// PFNs in the initial p2m table.
    pub nr_p2m_frames: u64,
}
guest_abi!(StartInfo {
    magic,
    nr_pages,
    shared_info,
    flags,
    store_mfn,
    store_evtchn,
    console_mfn,
    console_evtchn,
    pt_base,
    nr_pt_frames,
    mfn_list,
    mod_start,
    mod_len,
    cmd_line,
    first_p2m_pfn,
    nr_p2m_frames
});

impl Default for StartInfo {
    fn default() -> Self {
        Self {
            magic: [0; 32],
            nr_pages: 0,
            shared_info: 0,
            flags: 0,
            store_mfn: 0,
            store_evtchn: 0,
            console_mfn: 0,
            console_evtchn: 0,
            pt_base: 0,
            nr_pt_frames: 0,
            mfn_list: 0,
            mod_start: 0,
            mod_len: 0,
            cmd_line: [0; MAX_GUEST_CMDLINE],
            first_p2m_pfn: 0,
            nr_p2m_frames: 0,
        }
    }
}

impl StartInfo {
    /// Sets `magic` (must leave room for the NUL).
    pub fn set_magic(&mut self, magic: &[u8]) -> Result<(), AbiError> {
        guest_abi::copy_cstr(&mut self.magic, magic)
    }
    /// Sets `cmd_line` (must leave room for the NUL).
    pub fn set_cmd_line(&mut self, cmdline: &[u8]) -> Result<(), AbiError> {
        guest_abi::copy_cstr(&mut self.cmd_line, cmdline)
    }
    /// `cmd_line` up to its NUL.
    pub fn cmd_line_bytes(&self) -> &[u8] {
        guest_abi::cstr_bytes(&self.cmd_line)
    }
    /// The dom0 view of the console union: (`info_off`, `info_size`).
    pub const fn dom0_console_info(&self) -> (u32, u32) {
        (self.console_mfn as u32, (self.console_mfn >> 32) as u32)
    }
    /// Sets the dom0 view of the console union.
    pub fn set_dom0_console_info(&mut self, info_off: u32, info_size: u32) {
        self.console_mfn = u64::from(info_off) | (u64::from(info_size) << 32);
        self.console_evtchn = 0;
    }
}

use core::mem::{offset_of, size_of};
const _: () = assert!(HYPERCALL_PAGE_STUBS * HYPERCALL_STUB_SIZE == 4096);
const _: () = assert!(size_of::<MmuUpdate>() == 16);
const _: () = assert!(size_of::<MmuextOp>() == 24);
const _: () = assert!(offset_of!(MmuextOp, arg1) == 8);
const _: () = assert!(offset_of!(MmuextOp, arg2) == 16);
const _: () = assert!(size_of::<MulticallEntry>() == 64);
const _: () = assert!(offset_of!(MulticallEntry, args) == 16);
const _: () = assert!(size_of::<VcpuTimeInfo>() == 32);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_timestamp) == 8);
const _: () = assert!(offset_of!(VcpuTimeInfo, system_time) == 16);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_to_system_mul) == 24);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_shift) == 28);
const _: () = assert!(offset_of!(VcpuTimeInfo, flags) == 29);
const _: () = assert!(size_of::<VcpuInfo>() == 64);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
const _: () = assert!(offset_of!(VcpuInfo, arch) == 16);
const _: () = assert!(offset_of!(VcpuInfo, time) == 32);
const _: () = assert!(size_of::<SharedInfo>() == 3136);
const _: () = assert!(offset_of!(SharedInfo, evtchn_pending) == 2048);
const _: () = assert!(offset_of!(SharedInfo, evtchn_mask) == 2560);
const _: () = assert!(offset_of!(SharedInfo, wc_version) == 3072);
const _: () = assert!(offset_of!(SharedInfo, wc_sec_hi) == 3084);
const _: () = assert!(offset_of!(SharedInfo, arch) == 3088);
const _: () = assert!(size_of::<StartInfo>() == 1168);
const _: () = assert!(offset_of!(StartInfo, nr_pages) == 32);
const _: () = assert!(offset_of!(StartInfo, shared_info) == 40);
const _: () = assert!(offset_of!(StartInfo, flags) == 48);
const _: () = assert!(offset_of!(StartInfo, store_mfn) == 56);
const _: () = assert!(offset_of!(StartInfo, store_evtchn) == 64);
const _: () = assert!(offset_of!(StartInfo, console_mfn) == 72);
const _: () = assert!(offset_of!(StartInfo, console_evtchn) == 80);
const _: () = assert!(offset_of!(StartInfo, pt_base) == 88);
const _: () = assert!(offset_of!(StartInfo, nr_pt_frames) == 96);
const _: () = assert!(offset_of!(StartInfo, mfn_list) == 104);
const _: () = assert!(offset_of!(StartInfo, mod_start) == 112);
const _: () = assert!(offset_of!(StartInfo, mod_len) == 120);
const _: () = assert!(offset_of!(StartInfo, cmd_line) == 128);
const _: () = assert!(offset_of!(StartInfo, first_p2m_pfn) == 1152);
const _: () = assert!(offset_of!(StartInfo, nr_p2m_frames) == 1160);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn hypercall_names() {
        assert_eq!(hypercall_name(HYPERVISOR_SCHED_OP), Some("sched_op"));
        assert_eq!(hypercall_name(HYPERVISOR_CONSOLE_IO), Some("console_io"));
        assert_eq!(hypercall_name(42), Some("hypfs_op"));
        assert_eq!(hypercall_name(11), None);
        assert_eq!(hypercall_name(43), None);
        assert_eq!(hypercall_name(55), Some("arch_7"));
        assert_eq!(hypercall_name(56), None);
    }

    #[test]
    fn virq_classes() {
        assert_eq!(virq_is_per_vcpu(VIRQ_TIMER), Some(true));
        assert_eq!(virq_is_per_vcpu(VIRQ_CONSOLE), Some(false));
        assert_eq!(virq_is_per_vcpu(5), None);
        assert_eq!(virq_is_per_vcpu(NR_VIRQS), None);
    }

    #[test]
    fn start_info_known_bytes() {
        let mut si = StartInfo::default();
        si.set_magic(START_INFO_MAGIC_X86_64).unwrap();
        si.nr_pages = 0x8000;
        si.flags = SIF_PRIVILEGED | SIF_INITDOMAIN;
        si.set_cmd_line(b"console=hvc0").unwrap();
        si.first_p2m_pfn = 7;
        let b = si.to_vec();
        assert_eq!(b.len(), 1168);
        assert_eq!(&b[..15], b"xen-3.0-x86_64\0");
        assert_eq!(&b[32..40], &0x8000u64.to_le_bytes());
        assert_eq!(&b[48..52], &3u32.to_le_bytes());
        assert_eq!(&b[128..141], b"console=hvc0\0");
        assert_eq!(b[1152], 7);
        let back = StartInfo::read_from(&b).unwrap();
        assert_eq!(back, si);
        assert_eq!(back.cmd_line_bytes(), b"console=hvc0");
        assert!(si.set_cmd_line(&[b'x'; MAX_GUEST_CMDLINE]).is_err());
    }

    #[test]
    fn dom0_console_union() {
        let mut si = StartInfo::default();
        si.set_dom0_console_info(0x800, 0x24);
        let b = si.to_vec();
        assert_eq!(&b[72..80], &[0, 8, 0, 0, 0x24, 0, 0, 0]);
        assert_eq!(si.dom0_console_info(), (0x800, 0x24));
    }

    #[test]
    fn mmu_requests() {
        let u = MmuUpdate {
            ptr: 0x1234_5000 | MMU_PT_UPDATE_PRESERVE_AD,
            val: 0x8000_0000_0000_0067,
        };
        assert_eq!(u.cmd(), MMU_PT_UPDATE_PRESERVE_AD);
        assert_eq!(u.address(), 0x1234_5000);
        let b = u.to_vec();
        assert_eq!(MmuUpdate::read_from(&b), Ok(u));
        let op = MmuextOp {
            cmd: MMUEXT_SET_LDT,
            arg1: 0xffff_8800_0000_0000,
            arg2: 0xffff_ffff_0000_0010,
        };
        let b = op.to_vec();
        assert_eq!(&b[..8], &[13, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(MmuextOp::read_from(&b), Ok(op));
        assert_eq!(op.nr_ents(), 16);
    }

    #[test]
    fn multicall_round_trip() {
        let m = MulticallEntry {
            op: u64::from(HYPERVISOR_MMU_UPDATE),
            result: u64::MAX,
            args: [1, 2, 3, 4, 5, 6],
        };
        let b = m.to_vec();
        assert_eq!(&b[56..64], &6u64.to_le_bytes());
        assert_eq!(MulticallEntry::read_from(&b), Ok(m));
        assert_eq!(
            MulticallEntry::read_element(&[b.clone(), b].concat(), 1),
            Ok(m)
        );
    }

    #[test]
    fn shared_info_round_trip() {
        let mut s = SharedInfo::default();
        s.vcpu_info[31].evtchn_upcall_pending = 1;
        s.vcpu_info[31].time.system_time = 99;
        s.evtchn_pending[63] = 1 << 63;
        s.wc_sec_hi = 5;
        s.arch.p2m_generation = 2;
        let b = s.to_vec();
        assert_eq!(b[31 * 64], 1);
        assert_eq!(b[2048 + 63 * 8 + 7], 0x80);
        assert_eq!(b[3084], 5);
        assert_eq!(b[3128], 2);
        assert_eq!(SharedInfo::read_from(&b), Ok(s));
    }

    #[test]
    fn time_formula() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            // 0.5 ns per (shifted) tick.
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 1,
            ..VcpuTimeInfo::default()
        };
        // (500 << 1) * 0.5 = 500 ns.
        assert_eq!(t.system_time_at(1500), 5_500);
        let t2 = VcpuTimeInfo { tsc_shift: -1, ..t };
        // (500 >> 1) * 0.5 = 125 ns.
        assert_eq!(t2.system_time_at(1500), 5_125);
    }
}
