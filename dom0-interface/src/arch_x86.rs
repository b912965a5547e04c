//! x86-64 guest ABI, mirroring `xen/include/public/arch-x86/xen.h` and
//! `xen/include/public/arch-x86/xen-x86_64.h` (Xen 4.17): registers, vCPU context,
//! flat selectors, the hypervisor hole, and the arch parts of shared_info/vcpu_info.

use crate::guest_abi;

/// `xen_pfn_t`: a (pseudo-)physical or machine frame number.
pub type XenPfn = u64;
/// `xen_ulong_t`: an `unsigned long` in the ABI.
pub type XenUlong = u64;
/// `xen_callback_t`: a callback entry point (a virtual address on x86-64).
pub type XenCallback = u64;

/// `XEN_LEGACY_MAX_VCPUS`: vCPUs whose vcpu_info lives in shared_info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// `FIRST_RESERVED_GDT_PAGE`: first GDT page reserved by Xen.
pub const FIRST_RESERVED_GDT_PAGE: u32 = 14;
/// `FIRST_RESERVED_GDT_BYTE`.
pub const FIRST_RESERVED_GDT_BYTE: u32 = FIRST_RESERVED_GDT_PAGE * 4096;
/// `FIRST_RESERVED_GDT_ENTRY`.
pub const FIRST_RESERVED_GDT_ENTRY: u32 = FIRST_RESERVED_GDT_BYTE / 8;

/// `FLAT_RING3_CS32` (GDT index 260).
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// `FLAT_RING3_CS64`: the code selector a 64-bit PV kernel starts with.
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// `FLAT_RING3_DS32`.
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// `FLAT_RING3_DS64`: the NULL selector.
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// `FLAT_RING3_SS32`.
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// `FLAT_RING3_SS64`.
pub const FLAT_RING3_SS64: u16 = 0xe02b;
/// `FLAT_KERNEL_CS` (= `FLAT_RING3_CS64` on x86-64).
pub const FLAT_KERNEL_CS: u16 = FLAT_RING3_CS64;
/// `FLAT_KERNEL_DS` (= `FLAT_RING3_DS64`).
pub const FLAT_KERNEL_DS: u16 = FLAT_RING3_DS64;
/// `FLAT_KERNEL_SS` (= `FLAT_RING3_SS64`).
pub const FLAT_KERNEL_SS: u16 = FLAT_RING3_SS64;
/// `FLAT_USER_CS` (= `FLAT_RING3_CS64`).
pub const FLAT_USER_CS: u16 = FLAT_RING3_CS64;
/// `FLAT_USER_DS` (= `FLAT_RING3_DS64`).
pub const FLAT_USER_DS: u16 = FLAT_RING3_DS64;
/// `FLAT_USER_SS` (= `FLAT_RING3_SS64`).
pub const FLAT_USER_SS: u16 = FLAT_RING3_SS64;

/// `HYPERVISOR_VIRT_START`: start of the range Xen reserves in every PV guest.
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// `HYPERVISOR_VIRT_END`.
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// `MACH2PHYS_VIRT_START`: the read-only machine-to-phys table.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// `MACH2PHYS_VIRT_END`.
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// `MACH2PHYS_NR_ENTRIES`: 8-byte entries in the machine-to-phys table.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

/// `SEGBASE_FS`: `set_segment_base` target.
pub const SEGBASE_FS: u32 = 0;
/// `SEGBASE_GS_USER`.
pub const SEGBASE_GS_USER: u32 = 1;
/// `SEGBASE_GS_KERNEL`.
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// `SEGBASE_GS_USER_SEL`: set user %gs to the selector in base[15:0].
pub const SEGBASE_GS_USER_SEL: u32 = 3;

/// `VGCF_i387_valid` (also `VGCF_I387_VALID`).
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// `VGCF_in_kernel` (also `VGCF_IN_KERNEL`).
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_failsafe_disables_events`.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// `VGCF_syscall_disables_events`.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// `VGCF_online`.
pub const VGCF_ONLINE: u64 = 1 << 5;
/// `VGCF_in_syscall` (x86-64): the iret frame came from SYSCALL, return with SYSRET.
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// `XEN_EMULATE_PREFIX`: `ud2; .ascii "xen"`, forcing emulation of the next CPUID.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];
/// `XEN_HVM_DEBUGCONS_IOPORT`: the HVM debug console port.
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;

/// `TI_GET_DPL` mask of `trap_info.flags`.
pub const TI_DPL_MASK: u8 = 3;
/// `TI_GET_IF` bit of `trap_info.flags`: clear the event mask on entry.
pub const TI_IF: u8 = 4;

/// `xen_pfn_to_cr3`.
pub const fn xen_pfn_to_cr3(pfn: XenPfn) -> u64 {
    pfn << 12
}

/// `xen_cr3_to_pfn`.
pub const fn xen_cr3_to_pfn(cr3: u64) -> XenPfn {
    cr3 >> 12
}

/// `struct trap_info`: one entry of a PV guest's virtual IDT (`set_trap_table`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapInfo {
    /// Exception vector; a `set_trap_table` list ends with vector 0 and address 0.
    pub vector: u8,
    /// Bits 0-1: privilege level allowed to `int` into it; bit 2: clear event enable.
    pub flags: u8,
    /// Code selector.
    pub cs: u16,
    /// Code offset.
    pub address: u64,
}
guest_abi!(TrapInfo {
    vector,
    flags,
    cs,
    address
});

impl TrapInfo {
    /// `TI_GET_DPL`.
    pub const fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// `TI_GET_IF` (non-zero: events are masked on entry).
    pub const fn masks_events(&self) -> bool {
        self.flags & TI_IF != 0
    }
}

/// `struct cpu_user_regs` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Private to Xen.
    pub error_code: u32,
    /// Private to Xen.
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u16,
    pub _pad0: u16,
    /// Guest event mask saved on entry; `rflags.IF == !saved_upcall_mask`.
    pub saved_upcall_mask: u8,
    pub _pad1: [u8; 3],
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u16,
    pub _pad2: [u16; 3],
    pub es: u16,
    pub _pad3: [u16; 3],
    pub ds: u16,
    pub _pad4: [u16; 3],
    /// Non-zero takes precedence over `fs_base`.
    pub fs: u16,
    pub _pad5: [u16; 3],
    /// Non-zero takes precedence over `gs_base_user`.
    pub gs: u16,
    pub _pad6: [u16; 3],
}
guest_abi!(CpuUserRegs {
    r15,
    r14,
    r13,
    r12,
    rbp,
    rbx,
    r11,
    r10,
    r9,
    r8,
    rax,
    rcx,
    rdx,
    rsi,
    rdi,
    error_code,
    entry_vector,
    rip,
    cs,
    _pad0,
    saved_upcall_mask,
    _pad1,
    rflags,
    rsp,
    ss,
    _pad2,
    es,
    _pad3,
    ds,
    _pad4,
    fs,
    _pad5,
    gs,
    _pad6
});

/// `struct iret_context`: the frame a PV guest pushes before `HYPERVISOR_iret`
/// (lowest address first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct IretContext {
    pub rax: u64,
    pub r11: u64,
    pub rcx: u64,
    /// `VGCF_in_syscall` selects a SYSRET-style return.
    pub flags: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
guest_abi!(IretContext {
    rax,
    r11,
    rcx,
    flags,
    rip,
    cs,
    rflags,
    rsp,
    ss
});

/// `struct vcpu_guest_context` (x86-64, guest view): a PV vCPU's full state, used by
/// `VCPUOP_initialise` and `XEN_DOMCTL_{set,get}vcpucontext`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuGuestContext {
    /// FXSAVE image of the user-level FPU registers.
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*` flags.
    pub flags: u64,
    /// User-level CPU registers.
    pub user_regs: CpuUserRegs,
    /// Virtual IDT.
    pub trap_ctxt: [TrapInfo; 256],
    /// LDT linear address.
    pub ldt_base: u64,
    /// LDT entries.
    pub ldt_ents: u64,
    /// GDT machine frames.
    pub gdt_frames: [u64; 16],
    /// GDT entries.
    pub gdt_ents: u64,
    /// Virtual TSS SS1.
    pub kernel_ss: u64,
    /// Virtual TSS SP1.
    pub kernel_sp: u64,
    /// CR0-CR7; on x86-64 the user page table is in `ctrlreg[1]`.
    pub ctrlreg: [u64; 8],
    /// DR0-DR7.
    pub debugreg: [u64; 8],
    /// Event callback entry point.
    pub event_callback_eip: u64,
    /// Failsafe callback entry point.
    pub failsafe_callback_eip: u64,
    /// SYSCALL callback entry point.
    pub syscall_callback_eip: u64,
    /// `VMASST_TYPE_*` bitmap.
    pub vm_assist: u64,
    /// FS base.
    pub fs_base: u64,
    /// Kernel GS base.
    pub gs_base_kernel: u64,
    /// User GS base.
    pub gs_base_user: u64,
}
guest_abi!(VcpuGuestContext {
    fpu_ctxt,
    flags,
    user_regs,
    trap_ctxt,
    ldt_base,
    ldt_ents,
    gdt_frames,
    gdt_ents,
    kernel_ss,
    kernel_sp,
    ctrlreg,
    debugreg,
    event_callback_eip,
    failsafe_callback_eip,
    syscall_callback_eip,
    vm_assist,
    fs_base,
    gs_base_kernel,
    gs_base_user
});

impl Default for VcpuGuestContext {
    fn default() -> Self {
        Self {
            fpu_ctxt: [0; 512],
            flags: 0,
            user_regs: CpuUserRegs::default(),
            trap_ctxt: [TrapInfo::default(); 256],
            ldt_base: 0,
            ldt_ents: 0,
            gdt_frames: [0; 16],
            gdt_ents: 0,
            kernel_ss: 0,
            kernel_sp: 0,
            ctrlreg: [0; 8],
            debugreg: [0; 8],
            event_callback_eip: 0,
            failsafe_callback_eip: 0,
            syscall_callback_eip: 0,
            vm_assist: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
        }
    }
}

/// `struct arch_vcpu_info` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault delivered to the guest.
    pub cr2: u64,
    /// Padding to make `vcpu_info` 64 bytes.
    pub pad: u64,
}
guest_abi!(ArchVcpuInfo { cr2, pad });

/// `struct arch_shared_info` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    /// Valid entries in the p2m table(s).
    pub max_pfn: u64,
    /// Frame holding the list of frames listing the p2m frames (0: not set, ~0: invalid).
    pub pfn_to_mfn_frame_list_list: XenPfn,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// CR3 of the address space `p2m_vaddr` is valid in (0: fields unused).
    pub p2m_cr3: u64,
    /// Virtual address of the linear p2m list.
    pub p2m_vaddr: u64,
    /// Generation count of the p2m mapping (odd while updating).
    pub p2m_generation: u64,
}
guest_abi!(ArchSharedInfo {
    max_pfn,
    pfn_to_mfn_frame_list_list,
    nmi_reason,
    p2m_cr3,
    p2m_vaddr,
    p2m_generation
});

/// `XEN_X86_EMU_LAPIC`: emulated devices in `xen_arch_domainconfig.emulation_flags`.
pub const XEN_X86_EMU_LAPIC: u32 = 1 << 0;
/// `XEN_X86_EMU_HPET`.
pub const XEN_X86_EMU_HPET: u32 = 1 << 1;
/// `XEN_X86_EMU_PM`.
pub const XEN_X86_EMU_PM: u32 = 1 << 2;
/// `XEN_X86_EMU_RTC`.
pub const XEN_X86_EMU_RTC: u32 = 1 << 3;
/// `XEN_X86_EMU_IOAPIC`.
pub const XEN_X86_EMU_IOAPIC: u32 = 1 << 4;
/// `XEN_X86_EMU_PIC`.
pub const XEN_X86_EMU_PIC: u32 = 1 << 5;
/// `XEN_X86_EMU_VGA`.
pub const XEN_X86_EMU_VGA: u32 = 1 << 6;
/// `XEN_X86_EMU_IOMMU`.
pub const XEN_X86_EMU_IOMMU: u32 = 1 << 7;
/// `XEN_X86_EMU_PIT`.
pub const XEN_X86_EMU_PIT: u32 = 1 << 8;
/// `XEN_X86_EMU_USE_PIRQ`.
pub const XEN_X86_EMU_USE_PIRQ: u32 = 1 << 9;
/// `XEN_X86_EMU_VPCI`.
pub const XEN_X86_EMU_VPCI: u32 = 1 << 10;
/// `XEN_X86_EMU_ALL`.
pub const XEN_X86_EMU_ALL: u32 = (1 << 11) - 1;
/// `XEN_X86_MSR_RELAXED` in `misc_flags`.
pub const XEN_X86_MSR_RELAXED: u32 = 1 << 0;

/// `struct xen_arch_domainconfig` (x86; tools interface).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenArchDomainconfig {
    /// `XEN_X86_EMU_*`.
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_*`.
    pub misc_flags: u32,
}
guest_abi!(XenArchDomainconfig {
    emulation_flags,
    misc_flags
});

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<TrapInfo>() == 16);
const _: () = assert!(offset_of!(TrapInfo, cs) == 2);
const _: () = assert!(offset_of!(TrapInfo, address) == 8);
const _: () = assert!(size_of::<CpuUserRegs>() == 200);
const _: () = assert!(offset_of!(CpuUserRegs, rbp) == 32);
const _: () = assert!(offset_of!(CpuUserRegs, rax) == 80);
const _: () = assert!(offset_of!(CpuUserRegs, rdi) == 112);
const _: () = assert!(offset_of!(CpuUserRegs, error_code) == 120);
const _: () = assert!(offset_of!(CpuUserRegs, rip) == 128);
const _: () = assert!(offset_of!(CpuUserRegs, cs) == 136);
const _: () = assert!(offset_of!(CpuUserRegs, saved_upcall_mask) == 140);
const _: () = assert!(offset_of!(CpuUserRegs, rflags) == 144);
const _: () = assert!(offset_of!(CpuUserRegs, rsp) == 152);
const _: () = assert!(offset_of!(CpuUserRegs, ss) == 160);
const _: () = assert!(offset_of!(CpuUserRegs, gs) == 192);
const _: () = assert!(size_of::<IretContext>() == 72);
const _: () = assert!(size_of::<VcpuGuestContext>() == 5168);
const _: () = assert!(offset_of!(VcpuGuestContext, flags) == 512);
const _: () = assert!(offset_of!(VcpuGuestContext, user_regs) == 520);
const _: () = assert!(offset_of!(VcpuGuestContext, trap_ctxt) == 720);
const _: () = assert!(offset_of!(VcpuGuestContext, ldt_base) == 4816);
const _: () = assert!(offset_of!(VcpuGuestContext, gdt_frames) == 4832);
const _: () = assert!(offset_of!(VcpuGuestContext, gdt_ents) == 4960);
const _: () = assert!(offset_of!(VcpuGuestContext, kernel_ss) == 4968);
const _: () = assert!(offset_of!(VcpuGuestContext, ctrlreg) == 4984);
const _: () = assert!(offset_of!(VcpuGuestContext, debugreg) == 5048);
const _: () = assert!(offset_of!(VcpuGuestContext, event_callback_eip) == 5112);
const _: () = assert!(offset_of!(VcpuGuestContext, syscall_callback_eip) == 5128);
const _: () = assert!(offset_of!(VcpuGuestContext, vm_assist) == 5136);
const _: () = assert!(offset_of!(VcpuGuestContext, fs_base) == 5144);
const _: () = assert!(offset_of!(VcpuGuestContext, gs_base_user) == 5160);
const _: () = assert!(size_of::<ArchVcpuInfo>() == 16);
const _: () = assert!(size_of::<ArchSharedInfo>() == 48);
const _: () = assert!(offset_of!(ArchSharedInfo, nmi_reason) == 16);
const _: () = assert!(offset_of!(ArchSharedInfo, p2m_generation) == 40);
const _: () = assert!(size_of::<XenArchDomainconfig>() == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn trap_info_known_bytes() {
        let t = TrapInfo {
            vector: 14,
            flags: 3 | TI_IF,
            cs: FLAT_KERNEL_CS,
            address: 0xffff_ffff_8100_1000,
        };
        let b = t.to_vec();
        assert_eq!(
            b,
            [14, 7, 0x33, 0xe0, 0, 0, 0, 0, 0x00, 0x10, 0x00, 0x81, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(TrapInfo::read_from(&b), Ok(t));
        assert_eq!(t.dpl(), 3);
        assert!(t.masks_events());
    }

    #[test]
    fn vcpu_guest_context_round_trip() {
        let mut ctx = VcpuGuestContext {
            flags: VGCF_IN_KERNEL | VGCF_ONLINE,
            ..VcpuGuestContext::default()
        };
        ctx.fpu_ctxt[511] = 0x5a;
        ctx.user_regs.rip = 0xffff_ffff_8000_0000;
        ctx.user_regs.rsi = 0x1234;
        ctx.user_regs.cs = FLAT_KERNEL_CS;
        ctx.trap_ctxt[255] = TrapInfo {
            vector: 0x80,
            flags: 3,
            cs: FLAT_KERNEL_CS,
            address: 42,
        };
        ctx.ctrlreg[3] = xen_pfn_to_cr3(0x1234);
        ctx.gs_base_user = 0xdead_beef;
        let b = ctx.to_vec();
        assert_eq!(b.len(), 5168);
        // user_regs.rip sits at 520 + 128.
        assert_eq!(&b[648..656], &0xffff_ffff_8000_0000u64.to_le_bytes());
        // trap_ctxt[255].vector sits at 720 + 255 * 16.
        assert_eq!(b[720 + 255 * 16], 0x80);
        assert_eq!(&b[4984 + 24..4984 + 32], &0x123_4000u64.to_le_bytes());
        assert_eq!(&b[5160..5168], &0xdead_beefu64.to_le_bytes());
        assert_eq!(VcpuGuestContext::read_from(&b), Ok(ctx));
        assert_eq!(xen_cr3_to_pfn(ctx.ctrlreg[3]), 0x1234);
    }

    #[test]
    fn hypervisor_hole() {
        assert_eq!(MACH2PHYS_NR_ENTRIES, 1 << 35);
        assert_eq!(FIRST_RESERVED_GDT_ENTRY, 7168);
        // The flat selectors live in Xen's reserved GDT area, with RPL 3.
        assert!(u32::from(FLAT_RING3_CS64 >> 3) >= FIRST_RESERVED_GDT_ENTRY);
        assert_eq!(FLAT_RING3_CS64 & 3, 3);
    }
}
