//! Multiboot 1 and Multiboot 2 boot information: header constants and a safe parser.
//!
//! The loader hands over a physical address (EBX) and a magic (EAX). [`parse`] reads the
//! structure through a [`PhysMem`] (the boot code implements it over the identity map or the
//! direct map; tests implement it over a byte buffer) and copies everything the hypervisor needs
//! into a self-contained [`BootInfo`]: no heap, no pointers into loader memory. Corrupt input
//! gives a [`MultibootError`], never a panic or an unbounded loop.

pub mod header;
mod mb1;
mod mb2;
mod mem;

use core::fmt;
use core::ops::Range;

pub use mem::{PhysMem, SliceMem};

/// Which multiboot protocol the loader spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Multiboot 1 (`EAX = 0x2BADB002`), e.g. QEMU `-kernel`.
    Mb1,
    /// Multiboot 2 (`EAX = 0x36D76289`), e.g. GRUB 2.
    Mb2,
}

/// The type of a memory-map region, as reported by the firmware (e820 types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    /// RAM free for use (type 1).
    Usable,
    /// Not usable (type 2 and every unknown type).
    Reserved,
    /// ACPI tables, reclaimable once parsed (type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (type 4).
    AcpiNvs,
    /// Defective RAM (type 5).
    Bad,
}

impl MemKind {
    /// Maps a multiboot / e820 memory type number to a kind (unknown types are `Reserved`).
    pub const fn from_e820(ty: u32) -> Self {
        match ty {
            1 => MemKind::Usable,
            3 => MemKind::AcpiReclaimable,
            4 => MemKind::AcpiNvs,
            5 => MemKind::Bad,
            _ => MemKind::Reserved,
        }
    }
}

/// One region of the physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte of the region.
    pub base: u64,
    /// Length in bytes (never 0; `base + len` never overflows).
    pub len: u64,
    /// What the firmware says the region is.
    pub kind: MemKind,
}

impl MemRegion {
    /// One past the last byte of the region.
    pub const fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// A boot module (dom0 kernel, initrd, ...) as loaded by the boot loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Physical address of the first byte.
    pub start: u64,
    /// Physical address one past the last byte.
    pub end: u64,
    /// The module's command line (truncated to 255 bytes if longer).
    pub cmdline: heapless::String<256>,
}

/// A copy of the ACPI RSDP that a Multiboot 2 loader placed in the info structure (tags 14/15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsdpCopy {
    /// Physical address of the copy (inside the info structure).
    pub paddr: u64,
    /// Number of valid bytes in `bytes` (20 for ACPI 1.0, 36 for 2.0+).
    pub len: usize,
    /// The RSDP bytes; only `bytes[..len]` are meaningful.
    pub bytes: [u8; 36],
}

impl RsdpCopy {
    /// The valid RSDP bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Things the parser had to drop or shorten to fit the fixed-size [`BootInfo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseNotes {
    /// A command line or loader name was longer than its buffer and was cut.
    pub strings_truncated: bool,
    /// Memory-map regions that did not fit in [`BootInfo::memory_map`].
    pub regions_dropped: u32,
    /// Modules that did not fit in [`BootInfo::modules`].
    pub modules_dropped: u32,
    /// Multiboot 2 tags of types this parser does not use.
    pub tags_ignored: u32,
}

/// Maximum number of memory-map regions kept.
pub const MAX_REGIONS: usize = 128;
/// Maximum number of modules kept.
pub const MAX_MODULES: usize = 16;

/// Everything the hypervisor needs from the boot loader, copied out of loader memory.
///
/// About 9 KiB: keep it in a static or on a boot stack of at least 32 KiB.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// Protocol used by the loader.
    pub protocol: Protocol,
    /// Boot loader name (e.g. "qemu", "GRUB 2.06"); empty if not given.
    pub loader_name: heapless::String<64>,
    /// The hypervisor command line exactly as given (Multiboot 1 loaders put the image name
    /// first: see `xen_core::cmdline::cook`); empty if not given.
    pub cmdline: heapless::String<1024>,
    /// The physical memory map in loader order (possibly unsorted / overlapping).
    pub memory_map: heapless::Vec<MemRegion, MAX_REGIONS>,
    /// The boot modules in loader order.
    pub modules: heapless::Vec<Module, MAX_MODULES>,
    /// The RSDP copy from a Multiboot 2 ACPI tag (the newest one if both are present).
    pub rsdp: Option<RsdpCopy>,
    /// Physical range of the info structure itself.
    pub info_range: Range<u64>,
    /// What was truncated or skipped.
    pub notes: ParseNotes,
}

impl BootInfo {
    fn empty(protocol: Protocol, info_paddr: u64) -> Self {
        BootInfo {
            protocol,
            loader_name: heapless::String::new(),
            cmdline: heapless::String::new(),
            memory_map: heapless::Vec::new(),
            modules: heapless::Vec::new(),
            rsdp: None,
            info_range: info_paddr..info_paddr,
            notes: ParseNotes::default(),
        }
    }

    /// Physical ranges the frame allocator must not hand out while boot data is still needed:
    /// the info structure and every module.
    pub fn boot_data_ranges(&self) -> heapless::Vec<Range<u64>, { MAX_MODULES + 1 }> {
        let mut out = heapless::Vec::new();
        // Capacity is MAX_MODULES + 1, so neither push can fail.
        let _ = out.push(self.info_range.clone());
        for m in &self.modules {
            let _ = out.push(m.start..m.end);
        }
        out
    }

    /// Highest end address of any usable region (0 if none).
    pub fn max_usable_addr(&self) -> u64 {
        self.memory_map
            .iter()
            .filter(|r| r.kind == MemKind::Usable)
            .map(MemRegion::end)
            .max()
            .unwrap_or(0)
    }

    fn push_region(&mut self, base: u64, len: u64, kind: MemKind) {
        let len = len.min(u64::MAX - base);
        if len == 0 {
            return;
        }
        if self.memory_map.push(MemRegion { base, len, kind }).is_err() {
            self.notes.regions_dropped = self.notes.regions_dropped.saturating_add(1);
        }
    }

    fn push_module(&mut self, m: Module) {
        if self.modules.push(m).is_err() {
            self.notes.modules_dropped = self.notes.modules_dropped.saturating_add(1);
        }
    }

    /// Fallback memory map from the legacy "lower/upper memory in KiB" fields.
    fn push_legacy_memory(&mut self, mem_lower_kib: u32, mem_upper_kib: u32) {
        self.push_region(0, u64::from(mem_lower_kib) * 1024, MemKind::Usable);
        self.push_region(0x10_0000, u64::from(mem_upper_kib) * 1024, MemKind::Usable);
    }
}

/// Why the boot information could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultibootError {
    /// EAX held neither multiboot magic.
    BadMagic(u32),
    /// The info structure pointer was null.
    NullInfo,
    /// `bytes` bytes at `paddr` could not be read.
    Unreadable {
        /// Physical address of the failed read.
        paddr: u64,
        /// Length of the failed read.
        len: usize,
    },
    /// A Multiboot 2 info structure not aligned to 8 bytes.
    Misaligned(u64),
    /// A size field outside the plausible range.
    AbsurdSize {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A structure shorter than its fixed part.
    Truncated(&'static str),
    /// A Multiboot 1 memory-map entry with size 0 (would loop forever).
    ZeroEntrySize {
        /// Byte offset of the entry inside the map.
        offset: u32,
    },
    /// A Multiboot 2 tag whose size is < 8 or runs past the end of the structure.
    BadTag {
        /// Tag type.
        tag: u32,
        /// Byte offset of the tag inside the info structure.
        offset: u32,
        /// Its size field.
        size: u32,
    },
    /// A Multiboot 2 structure without an end tag.
    MissingEndTag,
    /// A NUL-terminated string without its NUL within the allowed length.
    UnterminatedString(&'static str),
    /// A module with `end < start`.
    BadModule {
        /// Index of the module.
        index: usize,
    },
    /// Neither a memory map nor the basic lower/upper memory fields were provided.
    NoMemoryInfo,
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MultibootError::BadMagic(m) => write!(
                f,
                "bad multiboot magic {m:#x} (expected {:#x} or {:#x})",
                header::mb1::BOOTLOADER_MAGIC,
                header::mb2::BOOTLOADER_MAGIC
            ),
            MultibootError::NullInfo => write!(f, "multiboot info pointer is null"),
            MultibootError::Unreadable { paddr, len } => {
                write!(f, "cannot read {len} bytes of boot info at {paddr:#x}")
            }
            MultibootError::Misaligned(p) => {
                write!(f, "multiboot2 info at {p:#x} is not 8-byte aligned")
            }
            MultibootError::AbsurdSize { what, value } => {
                write!(f, "implausible {what} {value:#x} in boot info")
            }
            MultibootError::Truncated(what) => write!(f, "truncated {what} in boot info"),
            MultibootError::ZeroEntrySize { offset } => {
                write!(
                    f,
                    "multiboot memory map entry at offset {offset} has size 0"
                )
            }
            MultibootError::BadTag { tag, offset, size } => write!(
                f,
                "multiboot2 tag type {tag} at offset {offset} has bad size {size}"
            ),
            MultibootError::MissingEndTag => write!(f, "multiboot2 info has no end tag"),
            MultibootError::UnterminatedString(what) => {
                write!(f, "unterminated {what} string in boot info")
            }
            MultibootError::BadModule { index } => {
                write!(f, "boot module {index} ends before it starts")
            }
            MultibootError::NoMemoryInfo => {
                write!(f, "boot loader gave neither a memory map nor memory sizes")
            }
        }
    }
}

/// Parses the boot information the loader left at `info_paddr`, given the magic it put in EAX.
pub fn parse<M: PhysMem + ?Sized>(
    magic: u32,
    info_paddr: u64,
    mem: &M,
) -> Result<BootInfo, MultibootError> {
    if magic != header::mb1::BOOTLOADER_MAGIC && magic != header::mb2::BOOTLOADER_MAGIC {
        return Err(MultibootError::BadMagic(magic));
    }
    if info_paddr == 0 {
        return Err(MultibootError::NullInfo);
    }
    if magic == header::mb1::BOOTLOADER_MAGIC {
        mb1::parse(info_paddr, mem)
    } else {
        mb2::parse(info_paddr, mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_magic_and_null_pointer_are_errors() {
        let buf = [0u8; 64];
        let mem = SliceMem::new(0x1000, &buf);
        assert_eq!(
            parse(0x1234, 0x1000, &mem).unwrap_err(),
            MultibootError::BadMagic(0x1234)
        );
        assert_eq!(
            parse(header::mb1::BOOTLOADER_MAGIC, 0, &mem).unwrap_err(),
            MultibootError::NullInfo
        );
        let text = alloc::format!("{}", MultibootError::BadMagic(0x1234));
        assert!(
            text.contains("0x1234") && text.contains("0x2badb002"),
            "{text}"
        );
    }

    #[test]
    fn push_region_clamps_and_skips_empty() {
        let mut bi = BootInfo::empty(Protocol::Mb1, 0x1000);
        bi.push_region(0x1000, 0, MemKind::Usable);
        assert!(bi.memory_map.is_empty());
        bi.push_region(u64::MAX - 10, 100, MemKind::Usable);
        assert_eq!(bi.memory_map[0].len, 10);
        for _ in 0..MAX_REGIONS + 3 {
            bi.push_region(0x2000, 0x1000, MemKind::Reserved);
        }
        assert_eq!(bi.memory_map.len(), MAX_REGIONS);
        assert_eq!(bi.notes.regions_dropped, 4);
    }

    #[test]
    fn boot_data_ranges_cover_info_and_modules() {
        let mut bi = BootInfo::empty(Protocol::Mb2, 0x9000);
        bi.info_range = 0x9000..0x9100;
        bi.push_module(Module {
            start: 0x20_0000,
            end: 0x30_0000,
            cmdline: heapless::String::new(),
        });
        let r = bi.boot_data_ranges();
        assert_eq!(&r[..], &[0x9000..0x9100, 0x20_0000..0x30_0000]);
    }

    #[test]
    fn max_usable_ignores_reserved() {
        let mut bi = BootInfo::empty(Protocol::Mb1, 0x1000);
        bi.push_region(0, 0x9_f000, MemKind::Usable);
        bi.push_region(0x10_0000, 0x700_0000, MemKind::Usable);
        bi.push_region(0xfffc_0000, 0x4_0000, MemKind::Reserved);
        assert_eq!(bi.max_usable_addr(), 0x710_0000);
    }
}
