//! Multiboot 2 info structure parser: a size-prefixed list of 8-byte-aligned tags.

use super::header::mb2::{TAG_ACPI_NEW, TAG_ACPI_OLD, TAG_ALIGN, TAG_BASIC_MEMINFO};
use super::header::mb2::{TAG_BOOT_LOADER_NAME, TAG_CMDLINE, TAG_END, TAG_MMAP, TAG_MODULE};
use super::mem::{bounded_cstr, le32, le64, read_exact, PhysMem};
use super::{BootInfo, MemKind, Module, MultibootError, Protocol, RsdpCopy};

/// Largest info structure accepted.
const MAX_TOTAL_SIZE: u32 = 1024 * 1024;
/// Largest single tag body read into the stack buffer; larger tags are skipped unread.
const TAG_BUF: usize = 4096;
/// Size of the ACPI 1.0 RSDP.
const RSDP_V1_LEN: usize = 20;
/// Size of the ACPI 2.0+ RSDP.
const RSDP_V2_LEN: usize = 36;

/// Parses a Multiboot 2 info structure at `info_paddr`.
pub(super) fn parse<M: PhysMem + ?Sized>(
    info_paddr: u64,
    mem: &M,
) -> Result<BootInfo, MultibootError> {
    if !info_paddr.is_multiple_of(TAG_ALIGN) {
        return Err(MultibootError::Misaligned(info_paddr));
    }
    let mut head = [0u8; 8];
    read_exact(mem, info_paddr, &mut head)?;
    let total = le32(&head, 0);
    if !(16..=MAX_TOTAL_SIZE).contains(&total) {
        return Err(MultibootError::AbsurdSize {
            what: "multiboot2 total_size",
            value: total.into(),
        });
    }
    let mut bi = BootInfo::empty(Protocol::Mb2, info_paddr);
    bi.info_range = info_paddr..info_paddr + u64::from(total);
    let mut mmap_seen = false;
    let mut basic_mem: Option<(u32, u32)> = None;
    let mut buf = [0u8; TAG_BUF];

    let mut off: u32 = 8;
    // Each tag advances `off` by at least 8 and `off` never exceeds `total`: this ends.
    loop {
        if total - off < 8 {
            return Err(MultibootError::MissingEndTag);
        }
        let tag_paddr = info_paddr + u64::from(off);
        read_exact(mem, tag_paddr, &mut head)?;
        let (ty, size) = (le32(&head, 0), le32(&head, 4));
        if size < 8 || size > total - off {
            return Err(MultibootError::BadTag {
                tag: ty,
                offset: off,
                size,
            });
        }
        if ty == TAG_END {
            if size != 8 {
                return Err(MultibootError::BadTag {
                    tag: ty,
                    offset: off,
                    size,
                });
            }
            break;
        }
        let body_len = (size - 8) as usize;
        let body_paddr = tag_paddr + 8;
        match ty {
            TAG_CMDLINE | TAG_BOOT_LOADER_NAME | TAG_MODULE | TAG_BASIC_MEMINFO | TAG_ACPI_OLD
            | TAG_ACPI_NEW => {
                let body = read_body(mem, body_paddr, body_len, &mut buf)?;
                match ty {
                    TAG_CMDLINE => {
                        bi.cmdline.clear();
                        bi.notes.strings_truncated |=
                            bounded_cstr(body, "command line", &mut bi.cmdline)?;
                    }
                    TAG_BOOT_LOADER_NAME => {
                        bi.loader_name.clear();
                        bi.notes.strings_truncated |=
                            bounded_cstr(body, "boot loader name", &mut bi.loader_name)?;
                    }
                    TAG_MODULE => {
                        if body.len() < 8 {
                            return Err(MultibootError::Truncated("module tag"));
                        }
                        let (start, end) = (le32(body, 0), le32(body, 4));
                        if end < start {
                            return Err(MultibootError::BadModule {
                                index: bi.modules.len(),
                            });
                        }
                        let mut m = Module {
                            start: start.into(),
                            end: end.into(),
                            cmdline: heapless::String::new(),
                        };
                        bi.notes.strings_truncated |=
                            bounded_cstr(&body[8..], "module command line", &mut m.cmdline)?;
                        bi.push_module(m);
                    }
                    TAG_BASIC_MEMINFO => {
                        if body.len() < 8 {
                            return Err(MultibootError::Truncated("basic meminfo tag"));
                        }
                        basic_mem = Some((le32(body, 0), le32(body, 4)));
                    }
                    _ => {
                        // ACPI RSDP copies. Prefer the 2.0+ copy whichever order they come in.
                        let need = if ty == TAG_ACPI_NEW {
                            RSDP_V2_LEN
                        } else {
                            RSDP_V1_LEN
                        };
                        if body.len() < need {
                            return Err(MultibootError::Truncated("ACPI RSDP tag"));
                        }
                        let replace = match &bi.rsdp {
                            None => true,
                            Some(old) => ty == TAG_ACPI_NEW || old.len < RSDP_V2_LEN,
                        };
                        if replace {
                            let mut bytes = [0u8; RSDP_V2_LEN];
                            bytes[..need].copy_from_slice(&body[..need]);
                            bi.rsdp = Some(RsdpCopy {
                                paddr: body_paddr,
                                len: need,
                                bytes,
                            });
                        }
                    }
                }
            }
            TAG_MMAP if !mmap_seen => {
                mmap_seen = true;
                parse_mmap(&mut bi, mem, body_paddr, body_len)?;
            }
            _ => bi.notes.tags_ignored = bi.notes.tags_ignored.saturating_add(1),
        }
        // `size <= total - off` and `total <= 1 MiB`, so neither add overflows.
        let next = (u64::from(off) + u64::from(size)).next_multiple_of(TAG_ALIGN);
        if next > u64::from(total) {
            return Err(MultibootError::MissingEndTag);
        }
        off = next as u32;
    }

    if bi.memory_map.is_empty() {
        match basic_mem {
            Some((lower, upper)) => bi.push_legacy_memory(lower, upper),
            None => return Err(MultibootError::NoMemoryInfo),
        }
    }
    Ok(bi)
}

/// Reads a tag body into `buf`; a body too large for the buffer is an error for tags we read.
fn read_body<'b, M: PhysMem + ?Sized>(
    mem: &M,
    paddr: u64,
    len: usize,
    buf: &'b mut [u8; TAG_BUF],
) -> Result<&'b [u8], MultibootError> {
    if len > TAG_BUF {
        return Err(MultibootError::AbsurdSize {
            what: "tag size",
            value: (len + 8) as u64,
        });
    }
    read_exact(mem, paddr, &mut buf[..len])?;
    Ok(&buf[..len])
}

/// Parses the memory-map tag body: `entry_size`, `entry_version`, then entries.
fn parse_mmap<M: PhysMem + ?Sized>(
    bi: &mut BootInfo,
    mem: &M,
    body_paddr: u64,
    body_len: usize,
) -> Result<(), MultibootError> {
    if body_len < 8 {
        return Err(MultibootError::Truncated("memory map tag"));
    }
    let mut h = [0u8; 8];
    read_exact(mem, body_paddr, &mut h)?;
    let entry_size = le32(&h, 0) as usize;
    if entry_size < 24 || !entry_size.is_multiple_of(8) {
        return Err(MultibootError::AbsurdSize {
            what: "memory map entry size",
            value: entry_size as u64,
        });
    }
    let entries = (body_len - 8) / entry_size;
    if !(body_len - 8).is_multiple_of(entry_size) {
        return Err(MultibootError::Truncated("memory map entry"));
    }
    for i in 0..entries {
        let mut e = [0u8; 24];
        read_exact(mem, body_paddr + 8 + (i * entry_size) as u64, &mut e)?;
        bi.push_region(le64(&e, 0), le64(&e, 8), MemKind::from_e820(le32(&e, 16)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::header::mb2::BOOTLOADER_MAGIC;
    use super::super::mb1::tests::{Image, BASE};
    use super::super::parse;
    use super::*;

    const INFO: u64 = BASE + 0x1000;

    /// Builds an info structure from (type, body) tags; returns the image and each tag's offset.
    fn build(tags: &[(u32, &[u8])]) -> (Image, alloc::vec::Vec<u64>) {
        let mut img = Image::new();
        let mut off = 8u64;
        let mut offs = alloc::vec::Vec::new();
        for (ty, body) in tags {
            offs.push(off);
            img.put32(INFO + off, *ty);
            img.put32(INFO + off + 4, 8 + body.len() as u32);
            img.put(INFO + off + 8, body);
            off = (off + 8 + body.len() as u64).next_multiple_of(8);
        }
        img.put32(INFO + off, 0);
        img.put32(INFO + off + 4, 8);
        img.put32(INFO, (off + 8) as u32);
        (img, offs)
    }

    fn mmap_body(entries: &[(u64, u64, u32)]) -> alloc::vec::Vec<u8> {
        let mut b = alloc::vec::Vec::new();
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (base, len, ty) in entries {
            b.extend_from_slice(&base.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }

    fn module_body(start: u32, end: u32, s: &[u8]) -> alloc::vec::Vec<u8> {
        let mut b = alloc::vec::Vec::new();
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
        b.extend_from_slice(s);
        b
    }

    fn rsdp_v2() -> [u8; 36] {
        let mut r = [0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = 2;
        r[20] = 36;
        r
    }

    #[test]
    fn parses_grub_like_info() {
        let mmap = mmap_body(&[
            (0, 0x9_fc00, 1),
            (0x10_0000, 0x3ff0_0000, 1),
            (0xfee0_0000, 0x1000, 2),
        ]);
        let m1 = module_body(0x40_0000, 0x50_0000, b"/boot/vmlinuz root=/dev/xvda\0");
        let m2 = module_body(0x50_0000, 0x58_0000, b"\0");
        let rsdp = rsdp_v2();
        let (img, offs) = build(&[
            (TAG_CMDLINE, b"console=com1 com1=115200,8n1\0"),
            (TAG_BOOT_LOADER_NAME, b"GRUB 2.06\0"),
            (TAG_MODULE, &m1),
            (TAG_MODULE, &m2),
            (TAG_BASIC_MEMINFO, &[0x7f, 2, 0, 0, 0, 0xfc, 0, 0]),
            (TAG_MMAP, &mmap),
            (8, &[0u8; 30]),
            (TAG_ACPI_OLD, &rsdp[..20]),
            (TAG_ACPI_NEW, &rsdp),
        ]);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.protocol, Protocol::Mb2);
        assert_eq!(bi.cmdline.as_str(), "console=com1 com1=115200,8n1");
        assert_eq!(bi.loader_name.as_str(), "GRUB 2.06");
        assert_eq!(bi.modules.len(), 2);
        assert_eq!(
            bi.modules[0].cmdline.as_str(),
            "/boot/vmlinuz root=/dev/xvda"
        );
        assert_eq!(
            (bi.modules[1].start, bi.modules[1].end),
            (0x50_0000, 0x58_0000)
        );
        assert_eq!(bi.memory_map.len(), 3);
        assert_eq!(bi.memory_map[2].kind, MemKind::Reserved);
        let r = bi.rsdp.unwrap();
        assert_eq!(r.len, 36);
        assert_eq!(r.as_bytes(), &rsdp[..]);
        assert_eq!(r.paddr, INFO + offs[8] + 8);
        assert_eq!(bi.notes.tags_ignored, 1);
        let total = u64::from(le32(&img.0, (INFO - BASE) as usize));
        assert_eq!(bi.info_range, INFO..INFO + total);
    }

    #[test]
    fn old_rsdp_alone_and_basic_meminfo_fallback() {
        let rsdp = rsdp_v2();
        let (img, _) = build(&[
            (TAG_ACPI_OLD, &rsdp[..20]),
            (TAG_BASIC_MEMINFO, &[0x7f, 2, 0, 0, 0, 0xfc, 0, 0]),
        ]);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.rsdp.unwrap().len, 20);
        assert_eq!(bi.memory_map.len(), 2);
        assert_eq!(bi.memory_map[0].len, 0x27f * 1024);
        assert_eq!(bi.memory_map[1].len, 0xfc00 * 1024);
    }

    #[test]
    fn structural_corruption_is_rejected() {
        let mmap = mmap_body(&[(0x10_0000, 0x100_0000, 1)]);
        let (good, offs) = build(&[(TAG_CMDLINE, b"x\0"), (TAG_MMAP, &mmap)]);
        assert!(parse(BOOTLOADER_MAGIC, INFO, &good.mem()).is_ok());

        // Misaligned info pointer.
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO + 4, &good.mem()).unwrap_err(),
            MultibootError::Misaligned(INFO + 4)
        );
        // Absurd total_size.
        let mut img = Image(good.0.clone());
        img.put32(INFO, 0x7fff_0000);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::AbsurdSize { .. }
        ));
        let mut img = Image(good.0.clone());
        img.put32(INFO, 8);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::AbsurdSize { .. }
        ));
        // A tag of size 0 (would loop) and one of size 4.
        for bad in [0u32, 4] {
            let mut img = Image(good.0.clone());
            img.put32(INFO + offs[0] + 4, bad);
            assert_eq!(
                parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
                MultibootError::BadTag {
                    tag: TAG_CMDLINE,
                    offset: offs[0] as u32,
                    size: bad
                }
            );
        }
        // A tag that overruns total_size (overlapping the end tag and beyond).
        let mut img = Image(good.0.clone());
        img.put32(INFO + offs[1] + 4, 0x1000);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::BadTag { .. }
        ));
        // total_size too small to reach the end tag.
        let mut img = Image(good.0.clone());
        let total = le32(&good.0, (INFO - BASE) as usize);
        img.put32(INFO, total - 8);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::MissingEndTag
        );
        // End tag with a wrong size.
        let mut img = Image(good.0.clone());
        img.put32(INFO + u64::from(total) - 4, 16);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::BadTag { tag: 0, .. }
        ));
        // Info structure extending past readable memory.
        let mut img = Image(good.0.clone());
        img.put32(INFO, 0xf_0000);
        img.put32(INFO + offs[1], 9);
        img.put32(INFO + offs[1] + 4, 0xe_0000);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Unreadable { .. }
        ));
    }

    #[test]
    fn tag_content_corruption_is_rejected() {
        let mmap = mmap_body(&[(0x10_0000, 0x100_0000, 1)]);
        // Unterminated command line.
        let (img, _) = build(&[(TAG_CMDLINE, b"abc"), (TAG_MMAP, &mmap)]);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::UnterminatedString("command line")
        );
        // Truncated module tag and reversed module.
        let (img, _) = build(&[(TAG_MODULE, &[1, 2, 3]), (TAG_MMAP, &mmap)]);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Truncated("module tag")
        );
        let m = module_body(0x50_0000, 0x40_0000, b"\0");
        let (img, _) = build(&[(TAG_MODULE, &m), (TAG_MMAP, &mmap)]);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::BadModule { index: 0 }
        );
        // Memory map with a bad entry size, and with a partial trailing entry.
        let mut bad = mmap.clone();
        bad[0] = 20;
        let (img, _) = build(&[(TAG_MMAP, &bad)]);
        assert!(matches!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::AbsurdSize {
                what: "memory map entry size",
                ..
            }
        ));
        let mut bad = mmap.clone();
        bad[0] = 0;
        let (img, _) = build(&[(TAG_MMAP, &bad)]);
        assert!(parse(BOOTLOADER_MAGIC, INFO, &img.mem()).is_err());
        let (img, _) = build(&[(TAG_MMAP, &mmap[..mmap.len() - 4])]);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Truncated("memory map entry")
        );
        // Short RSDP copy.
        let (img, _) = build(&[(TAG_ACPI_NEW, &[0u8; 20]), (TAG_MMAP, &mmap)]);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::Truncated("ACPI RSDP tag")
        );
        // No memory information at all.
        let (img, _) = build(&[(TAG_CMDLINE, b"x\0")]);
        assert_eq!(
            parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap_err(),
            MultibootError::NoMemoryInfo
        );
    }

    #[test]
    fn huge_ignored_tags_are_skipped_without_reading() {
        let mmap = mmap_body(&[(0x10_0000, 0x100_0000, 1)]);
        let big = alloc::vec![0u8; 8000];
        let (img, _) = build(&[(9, &big), (TAG_MMAP, &mmap)]);
        let bi = parse(BOOTLOADER_MAGIC, INFO, &img.mem()).unwrap();
        assert_eq!(bi.memory_map.len(), 1);
        assert_eq!(bi.notes.tags_ignored, 1);
    }
}
