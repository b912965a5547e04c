//! Multiboot 1 info structure parser.

use super::header::mb1::{info, INFO_BOOT_LOADER_NAME, INFO_CMDLINE, INFO_FRAMEBUFFER};
use super::header::mb1::{INFO_MEMORY, INFO_MEM_MAP, INFO_MODS};
use super::mem::{le32, le64, read_cstr, read_exact, PhysMem};
use super::{BootInfo, MemKind, Module, MultibootError, Protocol};

/// Most modules accepted in the module list (more is treated as corruption).
const MAX_MODS_COUNT: u32 = 1024;
/// Largest memory map accepted, in bytes.
const MAX_MMAP_LENGTH: u32 = 64 * 1024;
/// Size of one module list entry.
const MOD_ENTRY_SIZE: u64 = 16;
/// Size of a memory map entry after its `size` field (base, length, type).
const MMAP_ENTRY_MIN: u32 = 20;

/// Parses a Multiboot 1 info structure at `info_paddr`.
pub(super) fn parse<M: PhysMem + ?Sized>(
    info_paddr: u64,
    mem: &M,
) -> Result<BootInfo, MultibootError> {
    let mut raw = [0u8; info::SIZE_BASE];
    read_exact(mem, info_paddr, &mut raw)?;
    let flags = le32(&raw, info::FLAGS);
    let mut bi = BootInfo::empty(Protocol::Mb1, info_paddr);
    let size = if flags & INFO_FRAMEBUFFER != 0 {
        info::SIZE_WITH_FRAMEBUFFER
    } else {
        info::SIZE_BASE
    };
    bi.info_range = info_paddr..info_paddr.saturating_add(size as u64);

    if flags & INFO_CMDLINE != 0 {
        let p = u64::from(le32(&raw, info::CMDLINE));
        if p != 0 {
            bi.notes.strings_truncated |= read_cstr(mem, p, "command line", &mut bi.cmdline)?;
        }
    }
    if flags & INFO_BOOT_LOADER_NAME != 0 {
        let p = u64::from(le32(&raw, info::BOOT_LOADER_NAME));
        if p != 0 {
            bi.notes.strings_truncated |=
                read_cstr(mem, p, "boot loader name", &mut bi.loader_name)?;
        }
    }
    if flags & INFO_MODS != 0 {
        parse_modules(
            &mut bi,
            mem,
            le32(&raw, info::MODS_COUNT),
            u64::from(le32(&raw, info::MODS_ADDR)),
        )?;
    }
    if flags & INFO_MEM_MAP != 0 {
        parse_mmap(
            &mut bi,
            mem,
            le32(&raw, info::MMAP_LENGTH),
            u64::from(le32(&raw, info::MMAP_ADDR)),
        )?;
    }
    if bi.memory_map.is_empty() {
        if flags & INFO_MEMORY == 0 {
            return Err(MultibootError::NoMemoryInfo);
        }
        bi.push_legacy_memory(le32(&raw, info::MEM_LOWER), le32(&raw, info::MEM_UPPER));
    }
    Ok(bi)
}

fn parse_modules<M: PhysMem + ?Sized>(
    bi: &mut BootInfo,
    mem: &M,
    count: u32,
    addr: u64,
) -> Result<(), MultibootError> {
    if count > MAX_MODS_COUNT {
        return Err(MultibootError::AbsurdSize {
            what: "module count",
            value: count.into(),
        });
    }
    for i in 0..u64::from(count) {
        let mut e = [0u8; MOD_ENTRY_SIZE as usize];
        read_exact(mem, addr + i * MOD_ENTRY_SIZE, &mut e)?;
        let (start, end, string) = (le32(&e, 0), le32(&e, 4), le32(&e, 8));
        if end < start {
            return Err(MultibootError::BadModule { index: i as usize });
        }
        let mut m = Module {
            start: start.into(),
            end: end.into(),
            cmdline: heapless::String::new(),
        };
        if string != 0 {
            bi.notes.strings_truncated |=
                read_cstr(mem, string.into(), "module command line", &mut m.cmdline)?;
        }
        bi.push_module(m);
    }
    Ok(())
}

fn parse_mmap<M: PhysMem + ?Sized>(
    bi: &mut BootInfo,
    mem: &M,
    length: u32,
    addr: u64,
) -> Result<(), MultibootError> {
    if length > MAX_MMAP_LENGTH {
        return Err(MultibootError::AbsurdSize {
            what: "memory map length",
            value: length.into(),
        });
    }
    let mut off: u32 = 0;
    // Each step advances by at least 4 + MMAP_ENTRY_MIN bytes, so this ends.
    while off < length {
        if length - off < 4 {
            return Err(MultibootError::Truncated("memory map entry"));
        }
        let mut sz = [0u8; 4];
        read_exact(mem, addr + u64::from(off), &mut sz)?;
        let size = u32::from_le_bytes(sz);
        if size == 0 {
            return Err(MultibootError::ZeroEntrySize { offset: off });
        }
        if size < MMAP_ENTRY_MIN || size > length - off - 4 {
            return Err(MultibootError::Truncated("memory map entry"));
        }
        let mut e = [0u8; MMAP_ENTRY_MIN as usize];
        read_exact(mem, addr + u64::from(off) + 4, &mut e)?;
        bi.push_region(le64(&e, 0), le64(&e, 8), MemKind::from_e820(le32(&e, 16)));
        off += 4 + size;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::header::mb1::BOOTLOADER_MAGIC;
    use super::super::{parse, SliceMem};
    use super::*;
    use alloc::vec::Vec;

    /// Physical memory for tests: `BASE .. BASE + 64 KiB`.
    pub(crate) const BASE: u64 = 0x10_0000;

    /// A synthetic physical memory image.
    pub(crate) struct Image(pub Vec<u8>);

    impl Image {
        pub(crate) fn new() -> Self {
            Image(alloc::vec![0u8; 0x1_0000])
        }
        pub(crate) fn put(&mut self, paddr: u64, bytes: &[u8]) {
            let o = (paddr - BASE) as usize;
            self.0[o..o + bytes.len()].copy_from_slice(bytes);
        }
        pub(crate) fn put32(&mut self, paddr: u64, v: u32) {
            self.put(paddr, &v.to_le_bytes());
        }
        pub(crate) fn put64(&mut self, paddr: u64, v: u64) {
            self.put(paddr, &v.to_le_bytes());
        }
        pub(crate) fn mem(&self) -> SliceMem<'_> {
            SliceMem::new(BASE, &self.0)
        }
    }

    const INFO: u64 = BASE + 0x100;
    const CMDLINE: u64 = BASE + 0x400;
    const LOADER: u64 = BASE + 0x500;
    const MODS: u64 = BASE + 0x600;
    const MMAP: u64 = BASE + 0x800;
    const MODSTR: u64 = BASE + 0xA00;

    /// A QEMU-like info structure: cmdline, loader name, 2 modules, 3 mmap entries.
    fn qemu_like() -> Image {
        let mut img = Image::new();
        img.put32(
            INFO,
            INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME,
        );
        img.put32(INFO + 4, 639);
        img.put32(INFO + 8, 130_048);
        img.put32(INFO + 16, CMDLINE as u32);
        img.put(CMDLINE, b"/boot/dualvisor console=com1 loglvl=all\0");
        img.put32(INFO + 64, LOADER as u32);
        img.put(LOADER, b"qemu\0");
        img.put32(INFO + 20, 2);
        img.put32(INFO + 24, MODS as u32);
        img.put32(MODS, 0x20_0000);
        img.put32(MODS + 4, 0x28_0000);
        img.put32(MODS + 8, MODSTR as u32);
        img.put(MODSTR, b"dom0.elf console=hvc0\0");
        img.put32(MODS + 16, 0x28_0000);
        img.put32(MODS + 20, 0x28_1000);
        img.put32(MODS + 24, 0);
        let entries: [(u64, u64, u32); 3] = [
            (0, 0x9_fc00, 1),
            (0xf_0000, 0x1_0000, 2),
            (0x10_0000, 0x7ee_0000, 1),
        ];
        for (i, (b, l, t)) in entries.iter().enumerate() {
            let e = MMAP + i as u64 * 24;
            img.put32(e, 20);
            img.put64(e + 4, *b);
            img.put64(e + 12, *l);
            img.put32(e + 20, *t);
        }
        img.put32(INFO + 44, 72);
        img.put32(INFO + 48, MMAP as u32);
        img
    }

    #[test]
    fn parses_qemu_like_info() {
        let img = qemu_like();
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.protocol, Protocol::Mb1);
        assert_eq!(
            bi.cmdline.as_str(),
            "/boot/dualvisor console=com1 loglvl=all"
        );
        assert_eq!(bi.loader_name.as_str(), "qemu");
        assert_eq!(bi.modules.len(), 2);
        assert_eq!(bi.modules[0].start, 0x20_0000);
        assert_eq!(bi.modules[0].end, 0x28_0000);
        assert_eq!(bi.modules[0].cmdline.as_str(), "dom0.elf console=hvc0");
        assert_eq!(bi.modules[1].cmdline.as_str(), "");
        assert_eq!(bi.memory_map.len(), 3);
        assert_eq!(bi.memory_map[1].kind, MemKind::Reserved);
        assert_eq!(bi.memory_map[2].base, 0x10_0000);
        assert_eq!(bi.memory_map[2].len, 0x7ee_0000);
        assert_eq!(bi.info_range, INFO..INFO + 88);
        assert_eq!(bi.rsdp, None);
        assert_eq!(bi.notes, Default::default());
    }

    #[test]
    fn entry_size_larger_than_20_is_skipped_over() {
        let mut img = qemu_like();
        // Two entries of size 28 (8 bytes of padding each).
        img.put32(MMAP, 28);
        img.put64(MMAP + 4, 0);
        img.put64(MMAP + 12, 0x9_f000);
        img.put32(MMAP + 20, 1);
        img.put32(MMAP + 32, 28);
        img.put64(MMAP + 36, 0x10_0000);
        img.put64(MMAP + 44, 0x100_0000);
        img.put32(MMAP + 52, 3);
        img.put32(INFO + 44, 64);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.memory_map.len(), 2);
        assert_eq!(bi.memory_map[1].kind, MemKind::AcpiReclaimable);
        assert_eq!(bi.memory_map[1].len, 0x100_0000);
    }

    #[test]
    fn falls_back_to_mem_lower_upper() {
        let mut img = qemu_like();
        img.put32(INFO, INFO_MEMORY);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.memory_map.len(), 2);
        assert_eq!(bi.memory_map[0].len, 639 * 1024);
        assert_eq!(bi.memory_map[1].base, 0x10_0000);
        assert_eq!(bi.memory_map[1].len, 130_048 * 1024);
        assert!(bi.cmdline.is_empty() && bi.modules.is_empty());
    }

    #[test]
    fn no_memory_information_is_an_error() {
        let mut img = qemu_like();
        img.put32(INFO, INFO_CMDLINE);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::NoMemoryInfo
        );
    }

    #[test]
    fn zero_entry_size_is_an_error_not_a_loop() {
        let mut img = qemu_like();
        img.put32(MMAP + 24, 0);
        let e = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err();
        assert_eq!(e, MultibootError::ZeroEntrySize { offset: 24 });
        assert!(alloc::format!("{e}").contains("size 0"));
    }

    #[test]
    fn truncated_and_absurd_mmap_are_errors() {
        let mut img = qemu_like();
        img.put32(INFO + 44, 70);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Truncated("memory map entry")
        );
        let mut img = qemu_like();
        img.put32(MMAP + 24, 12);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Truncated("memory map entry")
        );
        let mut img = qemu_like();
        img.put32(INFO + 44, 0x1000_0000);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::AbsurdSize { .. }
        ));
        // Map pointing outside readable memory.
        let mut img = qemu_like();
        img.put32(INFO + 48, 0xdead_0000);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Unreadable { .. }
        ));
    }

    #[test]
    fn module_errors() {
        let mut img = qemu_like();
        img.put32(MODS + 20, 0x10_0000);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::BadModule { index: 1 }
        );
        let mut img = qemu_like();
        img.put32(INFO + 20, 0xffff_ffff);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::AbsurdSize {
                what: "module count",
                ..
            }
        ));
        // 20 modules: 16 kept, 4 noted as dropped.
        let mut img = qemu_like();
        for i in 0..20u64 {
            img.put32(MODS + i * 16, 0x30_0000);
            img.put32(MODS + i * 16 + 4, 0x30_1000);
            img.put32(MODS + i * 16 + 8, 0);
        }
        img.put32(INFO + 20, 20);
        img.put32(INFO + 48, (BASE + 0x2000) as u32);
        img.put32(BASE + 0x2000, 20);
        img.put64(BASE + 0x2004, 0x10_0000);
        img.put64(BASE + 0x200c, 0x100_0000);
        img.put32(BASE + 0x2014, 1);
        img.put32(INFO + 44, 24);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.modules.len(), 16);
        assert_eq!(bi.notes.modules_dropped, 4);
    }

    #[test]
    fn long_and_unterminated_strings() {
        let mut img = qemu_like();
        let long = alloc::vec![b'a'; 3000];
        img.put(BASE + 0x3000, &long);
        img.put(BASE + 0x3000 + 3000, b"\0");
        img.put32(INFO + 16, (BASE + 0x3000) as u32);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.cmdline.len(), 1024);
        assert!(bi.notes.strings_truncated);

        // A cmdline running to the end of readable memory without a NUL.
        let mut img = qemu_like();
        let end = BASE + img.0.len() as u64;
        img.put(end - 16, &[b'z'; 16]);
        img.put32(INFO + 16, (end - 16) as u32);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Unreadable { .. }
        ));
    }

    #[test]
    fn info_structure_must_be_readable() {
        let img = qemu_like();
        let end = BASE + img.0.len() as u64;
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, end - 10, &img.mem()).unwrap_err(),
            MultibootError::Unreadable { .. }
        ));
    }

    #[test]
    fn framebuffer_flag_extends_info_range() {
        let mut img = qemu_like();
        img.put32(INFO, INFO_MEMORY | INFO_FRAMEBUFFER);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.info_range, INFO..INFO + 116);
    }
}
