//! Xen ELF note types, mirroring `xen/include/public/elfnote.h` (note name "Xen").

/// The ELF note name every Xen note carries.
pub const XEN_ELFNOTE_NAME: &[u8] = b"Xen";
/// `XEN_ELFNOTE_INFO`: obsolete, ignored.
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// `XEN_ELFNOTE_ENTRY`: virtual address of the kernel entry point.
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// `XEN_ELFNOTE_HYPERCALL_PAGE`: virtual address of the page the builder fills with stubs.
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// `XEN_ELFNOTE_VIRT_BASE`: virtual address the kernel's physical address 0 is mapped at.
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// `XEN_ELFNOTE_PADDR_OFFSET`: offset between ELF physical addresses and pseudo-physical ones.
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// `XEN_ELFNOTE_XEN_VERSION`: the Xen version the kernel was built for ("xen-3.0").
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// `XEN_ELFNOTE_GUEST_OS`: the guest OS name.
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// `XEN_ELFNOTE_GUEST_VERSION`: the guest OS version.
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// `XEN_ELFNOTE_LOADER`: the loader the image expects ("generic").
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// `XEN_ELFNOTE_PAE_MODE`: PAE support string (32-bit guests).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// `XEN_ELFNOTE_FEATURES`: '|'-separated feature list, '!' marks a required feature.
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// `XEN_ELFNOTE_BSD_SYMTAB`: the loader should load the symbol table.
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// `XEN_ELFNOTE_HV_START_LOW`: lowest address the hypervisor hole may start at (32-bit).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// `XEN_ELFNOTE_L1_MFN_VALID`: mask and value marking valid L1 entries.
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// `XEN_ELFNOTE_SUSPEND_CANCEL`: the guest supports the suspend-cancel protocol.
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// `XEN_ELFNOTE_INIT_P2M`: virtual address for the initial p2m list.
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// `XEN_ELFNOTE_MOD_START_PFN`: `mod_start` may be given as a PFN.
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// `XEN_ELFNOTE_SUPPORTED_FEATURES`: bitmap of supported features (as XENFEAT_*).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: 32-bit physical entry point for PVH.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `XEN_ELFNOTE_PHYS32_RELOC`: PVH relocation parameters.
pub const XEN_ELFNOTE_PHYS32_RELOC: u32 = 19;
