//! Multiboot 1 and 2 constants: header magics and flags for the image headers in asm, the magics
//! loaders pass in EAX, and the info-structure flag bits and tag types.

/// Multiboot 1 (the GNU Multiboot Specification 0.6.96).
pub mod mb1 {
    /// Magic in the image header.
    pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
    /// Magic the loader leaves in EAX.
    pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
    /// The header must lie within this many bytes of the start of the image, 4-byte aligned.
    pub const HEADER_SEARCH: usize = 8192;

    /// Header flag: load modules on page (4 KiB) boundaries.
    pub const HEADER_FLAG_PAGE_ALIGN: u32 = 1 << 0;
    /// Header flag: provide memory information (mem_* and the memory map).
    pub const HEADER_FLAG_MEMORY_INFO: u32 = 1 << 1;
    /// Header flag: provide video mode information.
    pub const HEADER_FLAG_VIDEO_MODE: u32 = 1 << 2;
    /// Header flag ("a.out kludge"): the address fields of the header are valid; the loader
    /// uses them instead of parsing the ELF (needed for QEMU `-kernel` with a 64-bit ELF).
    pub const HEADER_FLAG_AOUT_KLUDGE: u32 = 1 << 16;

    /// Checksum field value making `magic + flags + checksum == 0 (mod 2^32)`.
    pub const fn header_checksum(flags: u32) -> u32 {
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags))
    }

    /// Info flag: `mem_lower` / `mem_upper` are valid.
    pub const INFO_MEMORY: u32 = 1 << 0;
    /// Info flag: `boot_device` is valid.
    pub const INFO_BOOTDEV: u32 = 1 << 1;
    /// Info flag: `cmdline` is valid.
    pub const INFO_CMDLINE: u32 = 1 << 2;
    /// Info flag: `mods_count` / `mods_addr` are valid.
    pub const INFO_MODS: u32 = 1 << 3;
    /// Info flag: a.out symbol table is valid.
    pub const INFO_AOUT_SYMS: u32 = 1 << 4;
    /// Info flag: ELF section header table is valid.
    pub const INFO_ELF_SHDR: u32 = 1 << 5;
    /// Info flag: `mmap_length` / `mmap_addr` are valid.
    pub const INFO_MEM_MAP: u32 = 1 << 6;
    /// Info flag: drive info is valid.
    pub const INFO_DRIVE_INFO: u32 = 1 << 7;
    /// Info flag: config table is valid.
    pub const INFO_CONFIG_TABLE: u32 = 1 << 8;
    /// Info flag: `boot_loader_name` is valid.
    pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;
    /// Info flag: APM table is valid.
    pub const INFO_APM_TABLE: u32 = 1 << 10;
    /// Info flag: VBE info is valid.
    pub const INFO_VBE: u32 = 1 << 11;
    /// Info flag: framebuffer info is valid.
    pub const INFO_FRAMEBUFFER: u32 = 1 << 12;

    /// Offsets of the info structure fields used here.
    pub mod info {
        /// `flags`.
        pub const FLAGS: usize = 0;
        /// `mem_lower` (KiB below 1 MiB).
        pub const MEM_LOWER: usize = 4;
        /// `mem_upper` (KiB above 1 MiB, up to the first hole).
        pub const MEM_UPPER: usize = 8;
        /// `cmdline` (physical address of a C string).
        pub const CMDLINE: usize = 16;
        /// `mods_count`.
        pub const MODS_COUNT: usize = 20;
        /// `mods_addr` (physical address of `mods_count` 16-byte entries).
        pub const MODS_ADDR: usize = 24;
        /// `mmap_length` (bytes).
        pub const MMAP_LENGTH: usize = 44;
        /// `mmap_addr`.
        pub const MMAP_ADDR: usize = 48;
        /// `boot_loader_name` (physical address of a C string).
        pub const BOOT_LOADER_NAME: usize = 64;
        /// Size of the structure without framebuffer fields.
        pub const SIZE_BASE: usize = 88;
        /// Size of the structure with the framebuffer fields (flag bit 12).
        pub const SIZE_WITH_FRAMEBUFFER: usize = 116;
    }
}

/// Multiboot 2 (Multiboot Specification 2.0).
pub mod mb2 {
    /// Magic in the image header.
    pub const HEADER_MAGIC: u32 = 0xE852_50D6;
    /// Magic the loader leaves in EAX.
    pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
    /// The header must lie within this many bytes of the start of the image, 8-byte aligned.
    pub const HEADER_SEARCH: usize = 32768;
    /// Architecture field: 32-bit protected-mode i386.
    pub const ARCH_I386: u32 = 0;
    /// Architecture field: 32-bit MIPS.
    pub const ARCH_MIPS32: u32 = 4;
    /// Header tags and info tags are aligned to this many bytes.
    pub const TAG_ALIGN: u64 = 8;

    /// Checksum field value making `magic + arch + header_length + checksum == 0 (mod 2^32)`.
    pub const fn header_checksum(arch: u32, header_length: u32) -> u32 {
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(arch).wrapping_add(header_length))
    }

    /// Header tag flag: the loader may ignore this tag if it does not support it.
    pub const HEADER_TAG_OPTIONAL: u16 = 1;
    /// Header tag: end of the tag list.
    pub const HEADER_TAG_END: u16 = 0;
    /// Header tag: information request (list of info tag types wanted).
    pub const HEADER_TAG_INFORMATION_REQUEST: u16 = 1;
    /// Header tag: load addresses (a.out-kludge equivalent).
    pub const HEADER_TAG_ADDRESS: u16 = 2;
    /// Header tag: entry address.
    pub const HEADER_TAG_ENTRY_ADDRESS: u16 = 3;
    /// Header tag: console flags.
    pub const HEADER_TAG_CONSOLE_FLAGS: u16 = 4;
    /// Header tag: preferred framebuffer mode.
    pub const HEADER_TAG_FRAMEBUFFER: u16 = 5;
    /// Header tag: page-align modules.
    pub const HEADER_TAG_MODULE_ALIGN: u16 = 6;
    /// Header tag: do not terminate EFI boot services.
    pub const HEADER_TAG_EFI_BS: u16 = 7;
    /// Header tag: EFI i386 entry address.
    pub const HEADER_TAG_ENTRY_ADDRESS_EFI32: u16 = 8;
    /// Header tag: EFI amd64 entry address.
    pub const HEADER_TAG_ENTRY_ADDRESS_EFI64: u16 = 9;
    /// Header tag: the image is relocatable.
    pub const HEADER_TAG_RELOCATABLE: u16 = 10;

    /// Info tag: end.
    pub const TAG_END: u32 = 0;
    /// Info tag: boot command line.
    pub const TAG_CMDLINE: u32 = 1;
    /// Info tag: boot loader name.
    pub const TAG_BOOT_LOADER_NAME: u32 = 2;
    /// Info tag: module.
    pub const TAG_MODULE: u32 = 3;
    /// Info tag: basic memory information (mem_lower / mem_upper).
    pub const TAG_BASIC_MEMINFO: u32 = 4;
    /// Info tag: BIOS boot device.
    pub const TAG_BOOTDEV: u32 = 5;
    /// Info tag: memory map.
    pub const TAG_MMAP: u32 = 6;
    /// Info tag: VBE info.
    pub const TAG_VBE: u32 = 7;
    /// Info tag: framebuffer info.
    pub const TAG_FRAMEBUFFER: u32 = 8;
    /// Info tag: ELF sections.
    pub const TAG_ELF_SECTIONS: u32 = 9;
    /// Info tag: APM table.
    pub const TAG_APM: u32 = 10;
    /// Info tag: EFI 32-bit system table pointer.
    pub const TAG_EFI32: u32 = 11;
    /// Info tag: EFI 64-bit system table pointer.
    pub const TAG_EFI64: u32 = 12;
    /// Info tag: SMBIOS tables.
    pub const TAG_SMBIOS: u32 = 13;
    /// Info tag: copy of the ACPI 1.0 RSDP.
    pub const TAG_ACPI_OLD: u32 = 14;
    /// Info tag: copy of the ACPI 2.0+ RSDP.
    pub const TAG_ACPI_NEW: u32 = 15;
    /// Info tag: network (DHCP ACK).
    pub const TAG_NETWORK: u32 = 16;
    /// Info tag: EFI memory map.
    pub const TAG_EFI_MMAP: u32 = 17;
    /// Info tag: EFI boot services not terminated.
    pub const TAG_EFI_BS: u32 = 18;
    /// Info tag: EFI 32-bit image handle.
    pub const TAG_EFI32_IH: u32 = 19;
    /// Info tag: EFI 64-bit image handle.
    pub const TAG_EFI64_IH: u32 = 20;
    /// Info tag: image load base physical address.
    pub const TAG_LOAD_BASE_ADDR: u32 = 21;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_sum_to_zero() {
        let flags = mb1::HEADER_FLAG_PAGE_ALIGN
            | mb1::HEADER_FLAG_MEMORY_INFO
            | mb1::HEADER_FLAG_AOUT_KLUDGE;
        let c = mb1::header_checksum(flags);
        assert_eq!(mb1::HEADER_MAGIC.wrapping_add(flags).wrapping_add(c), 0);
        // The classic QEMU-bootable value for flags 0x00010003.
        assert_eq!(c, 0xE451_4FFB);
        let c2 = mb2::header_checksum(mb2::ARCH_I386, 24);
        assert_eq!(mb2::HEADER_MAGIC.wrapping_add(24).wrapping_add(c2), 0);
    }
}
