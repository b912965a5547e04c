//! Tests of Xen note parsing against libelf's rules, with Linux-like and legacy images.

use super::*;
use crate::elf::test_image::{note_bytes, ImageBuilder, Rng, Sect};
use crate::elf::{ElfFile, EHDR_SIZE, PHDR_SIZE};
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use dom0_interface::elfnote as n;

const VBASE: u64 = 0xffff_ffff_8000_0000;
const PSTART: u64 = 0x100_0000;
const KSTART: u64 = VBASE + PSTART;
const LIMIT: u64 = 1 << 30;

fn xen(ty: u32, desc: &[u8]) -> Vec<u8> {
    note_bytes(b"Xen", ty, desc)
}

/// The notes a Linux 6.x x86-64 kernel carries (values as Linux emits them).
fn linux_notes() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(xen(n::XEN_ELFNOTE_GUEST_OS, b"linux\0"));
    v.extend(xen(n::XEN_ELFNOTE_GUEST_VERSION, b"2.6\0"));
    v.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    v.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &VBASE.to_le_bytes()));
    v.extend(xen(n::XEN_ELFNOTE_PADDR_OFFSET, &0u64.to_le_bytes()));
    v.extend(xen(n::XEN_ELFNOTE_ENTRY, &(KSTART + 0x1c0).to_le_bytes()));
    v.extend(xen(
        n::XEN_ELFNOTE_HYPERCALL_PAGE,
        &(KSTART + 0x1000).to_le_bytes(),
    ));
    v.extend(xen(
        n::XEN_ELFNOTE_FEATURES,
        b"!writable_page_tables|pae_pgdir_above_4gb\0",
    ));
    v.extend(xen(
        n::XEN_ELFNOTE_SUPPORTED_FEATURES,
        &((1u32 << XENFEAT_DOM0) | (1 << 5)).to_le_bytes(),
    ));
    v.extend(xen(n::XEN_ELFNOTE_PAE_MODE, b"yes\0"));
    v.extend(xen(n::XEN_ELFNOTE_LOADER, b"generic\0"));
    v.extend(xen(
        n::XEN_ELFNOTE_L1_MFN_VALID,
        &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0][..8],
    ));
    v.extend(xen(n::XEN_ELFNOTE_SUSPEND_CANCEL, &1u32.to_le_bytes()));
    v.extend(xen(n::XEN_ELFNOTE_MOD_START_PFN, &1u32.to_le_bytes()));
    v.extend(xen(
        n::XEN_ELFNOTE_INIT_P2M,
        &0x80_0000_0000u64.to_le_bytes(),
    ));
    v.extend(xen(
        n::XEN_ELFNOTE_PHYS32_ENTRY,
        &0x100_0200u32.to_le_bytes(),
    ));
    v.extend(note_bytes(b"GNU", 3, &[0xab; 20]));
    v
}

fn kernel(notes: Vec<u8>) -> ImageBuilder {
    let mut b = ImageBuilder::simple(KSTART, PSTART, vec![0xcc; 0x3000], 0x20_0000);
    b.entry = KSTART;
    b.note_segment = Some(notes);
    b
}

fn parse(img: &[u8], mode: BootMode) -> Result<XenElfInfo, XenNotesError> {
    let elf = ElfFile::parse(img, LIMIT)?;
    parse_xen_elf_info(&elf, mode)
}

#[test]
fn linux_kernel_notes() {
    let img = kernel(linux_notes()).build();
    let info = parse(&img, BootMode::Pv).unwrap();
    assert_eq!(info.source, NotesSource::NoteSegments);
    assert_eq!(info.xen_note_count, 16);
    assert_eq!(info.guest_os, "linux");
    assert_eq!(info.guest_version, "2.6");
    assert_eq!(info.xen_version, "xen-3.0");
    assert_eq!(info.loader, "generic");
    assert_eq!(info.pae_mode, "yes");
    assert_eq!(info.virt_base, VBASE);
    assert_eq!(info.paddr_offset, 0);
    assert_eq!(info.virt_offset, VBASE);
    assert_eq!(info.virt_kstart, KSTART);
    assert_eq!(info.virt_kend, KSTART + 0x20_0000);
    assert_eq!(info.entry, KSTART + 0x1c0);
    assert!(info.entry_from_note);
    assert_eq!(info.hypercall_page, Some(KSTART + 0x1000));
    assert_eq!(info.features.required, 1 << XENFEAT_WRITABLE_PAGE_TABLES);
    assert_eq!(
        info.features.supported,
        (1 << XENFEAT_WRITABLE_PAGE_TABLES)
            | (1 << XENFEAT_PAE_PGDIR_ABOVE_4GB)
            | (1 << XENFEAT_DOM0)
            | (1 << 5)
    );
    assert_eq!(
        info.supported_features_note,
        Some((1 << XENFEAT_DOM0) | (1 << 5))
    );
    assert_eq!(info.init_p2m, Some(0x80_0000_0000));
    assert!(info.mod_start_pfn);
    assert_eq!(info.phys32_entry, Some(0x100_0200));
    assert_eq!(info.suspend_cancel, Some(1));
    assert_eq!(info.l1_mfn_valid, Some(1));
    assert!(!info.bsd_symtab);
    info.check_pv_boot(true, 1 << XENFEAT_WRITABLE_PAGE_TABLES)
        .unwrap();
}

#[test]
fn pvh_mode_uses_phys32_entry_and_zero_base() {
    let img = kernel(linux_notes()).build();
    let info = parse(&img, BootMode::Pvh).unwrap();
    assert_eq!(info.virt_base, 0);
    assert_eq!(info.paddr_offset, 0);
    assert_eq!(info.virt_kstart, PSTART);
    assert_eq!(info.entry, 0x100_0200);
    assert!(!info.entry_from_note);
}

#[test]
fn defaults_without_optional_notes() {
    let mut notes = xen(n::XEN_ELFNOTE_LOADER, b"generic\0");
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    let mut b = ImageBuilder::simple(0x40_0000, 0x40_0000, vec![1; 64], 0x1000);
    b.entry = 0x40_0010;
    b.note_segment = Some(notes);
    let info = parse(&b.build(), BootMode::Pv).unwrap();
    assert_eq!(info.virt_base, 0);
    assert_eq!(info.paddr_offset, 0);
    assert_eq!(info.virt_kstart, 0x40_0000);
    assert_eq!(info.virt_kend, 0x40_1000);
    assert_eq!(info.entry, 0x40_0010);
    assert!(!info.entry_from_note);
    assert_eq!(info.hypercall_page, None);
    assert_eq!(info.init_p2m, None);
    assert!(!info.mod_start_pfn);
}

#[test]
fn four_byte_numbers_and_later_notes_override() {
    let mut notes = xen(n::XEN_ELFNOTE_LOADER, b"other\0");
    notes.extend(xen(n::XEN_ELFNOTE_LOADER, b"generic\0"));
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    notes.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &0x10_0000u32.to_le_bytes()));
    // No PADDR_OFFSET: virt_offset = virt_base, so the kernel sits at 0x30_0000.
    notes.extend(xen(n::XEN_ELFNOTE_ENTRY, &0x30_0004u32.to_le_bytes()));
    notes.extend(xen(n::XEN_ELFNOTE_FEATURES, b"dom0"));
    notes.extend(xen(
        n::XEN_ELFNOTE_FEATURES,
        b"!writable_descriptor_tables\0",
    ));
    let mut b = ImageBuilder::simple(0x20_0000, 0x20_0000, vec![1; 64], 0x1000);
    b.note_segment = Some(notes);
    let info = parse(&b.build(), BootMode::Pv).unwrap();
    assert_eq!(info.loader, "generic");
    assert_eq!(info.virt_base, 0x10_0000);
    assert_eq!(info.entry, 0x30_0004);
    assert_eq!(info.virt_kstart, 0x30_0000);
    assert_eq!(
        info.features.supported,
        (1 << XENFEAT_DOM0) | (1 << XENFEAT_WRITABLE_DESCRIPTOR_TABLES)
    );
    assert_eq!(
        info.features.required,
        1 << XENFEAT_WRITABLE_DESCRIPTOR_TABLES
    );
}

#[test]
fn no_notes_is_not_a_xen_kernel() {
    let mut b = kernel(Vec::new());
    b.note_segment = Some(note_bytes(b"GNU", 3, &[0; 16]));
    let err = parse(&b.build(), BootMode::Pv).unwrap_err();
    assert_eq!(err, XenNotesError::NoXenNotes);
    assert_eq!(err.to_string(), "not a Xen PV kernel (no Xen ELF notes)");
    let mut b = kernel(Vec::new());
    b.note_segment = None;
    assert_eq!(
        parse(&b.build(), BootMode::Pv).unwrap_err(),
        XenNotesError::NoXenNotes
    );
}

#[test]
fn pvh_only_kernel_refused_for_pv() {
    let notes = xen(n::XEN_ELFNOTE_PHYS32_ENTRY, &0x10_0000u32.to_le_bytes());
    let mut b = ImageBuilder::simple(0x10_0000, 0x10_0000, vec![1; 64], 0x1000);
    b.note_segment = Some(notes);
    let img = b.build();
    let err = parse(&img, BootMode::Pv).unwrap_err();
    assert_eq!(err, XenNotesError::PvhOnly);
    assert!(err.to_string().starts_with("PVH-only kernel"));
    let info = parse(&img, BootMode::Pvh).unwrap();
    assert_eq!(info.entry, 0x10_0000);
}

#[test]
fn loader_and_version_checks() {
    let mut notes = xen(n::XEN_ELFNOTE_GUEST_OS, b"netbsd\0");
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    let mut b = ImageBuilder::simple(0x10_0000, 0x10_0000, vec![1; 64], 0x1000);
    b.note_segment = Some(notes);
    let err = parse(&b.build(), BootMode::Pv).unwrap_err();
    assert_eq!(
        err,
        XenNotesError::BadLoader {
            loader: "".into(),
            guest_os: "netbsd".into()
        }
    );
    // GUEST_OS "linux" alone is enough (libelf accepts either).
    let mut notes = xen(n::XEN_ELFNOTE_GUEST_OS, b"linux\0");
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    b.note_segment = Some(notes);
    assert!(parse(&b.build(), BootMode::Pv).is_ok());
    let mut notes = xen(n::XEN_ELFNOTE_LOADER, b"generic\0");
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-2.0\0"));
    b.note_segment = Some(notes);
    assert_eq!(
        parse(&b.build(), BootMode::Pv).unwrap_err(),
        XenNotesError::BadXenVersion("xen-2.0".into())
    );
}

#[test]
fn address_checks() {
    let base = || {
        let mut v = xen(n::XEN_ELFNOTE_LOADER, b"generic\0");
        v.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
        v
    };
    let img = |notes: Vec<u8>| {
        let mut b = ImageBuilder::simple(KSTART, PSTART, vec![1; 64], 0x1000);
        b.note_segment = Some(notes);
        b.build()
    };
    // PADDR_OFFSET without VIRT_BASE.
    let mut notes = base();
    notes.extend(xen(n::XEN_ELFNOTE_PADDR_OFFSET, &0u64.to_le_bytes()));
    assert_eq!(
        parse(&img(notes), BootMode::Pv).unwrap_err(),
        XenNotesError::PaddrOffsetWithoutVirtBase
    );
    // Entry outside the kernel.
    let mut notes = base();
    notes.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &VBASE.to_le_bytes()));
    notes.extend(xen(n::XEN_ELFNOTE_ENTRY, &(KSTART + 0x2000).to_le_bytes()));
    assert!(matches!(
        parse(&img(notes), BootMode::Pv).unwrap_err(),
        XenNotesError::AddressesOutOfBounds { entry, .. } if entry == KSTART + 0x2000
    ));
    // VIRT_BASE above the kernel.
    let mut notes = base();
    notes.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &VBASE.to_le_bytes()));
    notes.extend(xen(
        n::XEN_ELFNOTE_PADDR_OFFSET,
        &(VBASE - 0x1000).to_le_bytes(),
    ));
    // virt_offset = 0x1000 → kstart = PSTART + 0x1000 < virt_base.
    assert!(matches!(
        parse(&img(notes), BootMode::Pv).unwrap_err(),
        XenNotesError::AddressesOutOfBounds { .. }
    ));
    // INIT_P2M inside the kernel.
    let mut notes = base();
    notes.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &VBASE.to_le_bytes()));
    notes.extend(xen(n::XEN_ELFNOTE_ENTRY, &KSTART.to_le_bytes()));
    notes.extend(xen(n::XEN_ELFNOTE_INIT_P2M, &(KSTART + 8).to_le_bytes()));
    assert_eq!(
        parse(&img(notes), BootMode::Pv).unwrap_err(),
        XenNotesError::P2mInsideKernel(KSTART + 8)
    );
}

#[test]
fn bad_note_values() {
    let mut notes = linux_notes();
    notes.extend(xen(n::XEN_ELFNOTE_ENTRY, &[1, 2, 3]));
    let mut b = kernel(notes);
    // A numeric note of 3 bytes reads as 0 (libelf's elf_note_numeric): entry 0 lies outside
    // the kernel.
    let err = parse(&b.build(), BootMode::Pv).unwrap_err();
    assert!(
        matches!(err, XenNotesError::AddressesOutOfBounds { .. }),
        "{err:?}"
    );
    b.note_segment = Some(xen(n::XEN_ELFNOTE_FEATURES, b"dom0|!teleport\0"));
    let err = parse(&b.build(), BootMode::Pv).unwrap_err();
    assert_eq!(
        err,
        XenNotesError::UnknownRequiredFeature("teleport".into())
    );
    assert_eq!(
        err.to_string(),
        "kernel requires unknown Xen feature 'teleport'"
    );
}

#[test]
fn boot_checks_for_dom0_and_required_features() {
    let mut notes = linux_notes();
    notes.extend(xen(n::XEN_ELFNOTE_FEATURES, b"!supervisor_mode_kernel\0"));
    let info = parse(&kernel(notes).build(), BootMode::Pv).unwrap();
    let err = info
        .check_pv_boot(true, 1 << XENFEAT_WRITABLE_PAGE_TABLES)
        .unwrap_err();
    assert_eq!(
        err,
        XenNotesError::UnsupportedRequiredFeatures(1 << XENFEAT_SUPERVISOR_MODE_KERNEL)
    );
    assert_eq!(
        err.to_string(),
        "kernel requires unsupported Xen features: supervisor_mode_kernel"
    );
    // SUPPORTED_FEATURES without dom0.
    let mut notes = xen(n::XEN_ELFNOTE_LOADER, b"generic\0");
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    notes.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &VBASE.to_le_bytes()));
    notes.extend(xen(n::XEN_ELFNOTE_SUPPORTED_FEATURES, &1u32.to_le_bytes()));
    let info = parse(&kernel(notes).build(), BootMode::Pv).unwrap();
    assert_eq!(
        info.check_pv_boot(true, !0),
        Err(XenNotesError::NotDom0Capable)
    );
    assert_eq!(info.check_pv_boot(false, !0), Ok(()));
}

#[test]
fn section_fallback_and_p_offset_zero_quirk() {
    let mut b = kernel(linux_notes());
    b.sections.push(Sect {
        name: ".notes".into(),
        sh_type: crate::elf::SHT_NOTE,
        data: linux_notes(),
        link: 0,
    });
    let mut img = b.build();
    // Program header 1 is the PT_NOTE: zero its p_offset (binutils quirk → skipped).
    let off = EHDR_SIZE + PHDR_SIZE + 8;
    img[off..off + 8].copy_from_slice(&0u64.to_le_bytes());
    let info = parse(&img, BootMode::Pv).unwrap();
    assert_eq!(info.source, NotesSource::NoteSections);
    assert_eq!(info.virt_kstart, KSTART);
}

#[test]
fn legacy_xen_guest_section() {
    let mut b = ImageBuilder::simple(0xc010_0000, 0xc010_0000, vec![1; 64], 0x4000);
    b.sections.push(Sect {
        name: "__xen_guest".into(),
        sh_type: 1,
        data: b"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xC0000000,HYPERCALL_PAGE=0x101,\
                LOADER=generic,FEATURES=!writable_page_tables\0"
            .to_vec(),
        link: 0,
    });
    let info = parse(&b.build(), BootMode::Pv).unwrap();
    assert_eq!(info.source, NotesSource::LegacyGuestInfo);
    assert_eq!(info.virt_base, 0xc000_0000);
    // Legacy default: paddr_offset = virt_base, so ELF paddrs are virtual addresses.
    assert_eq!(info.paddr_offset, 0xc000_0000);
    assert_eq!(info.virt_kstart, 0xc010_0000);
    assert_eq!(info.hypercall_page, Some(0xc010_1000));
    assert!(info.features.requires(XENFEAT_WRITABLE_PAGE_TABLES));
    // PVH never reads the legacy string.
    assert_eq!(
        parse(&b.build(), BootMode::Pvh).unwrap_err(),
        XenNotesError::NoXenNotes
    );
}

#[test]
fn bsd_symtab_extends_the_kernel() {
    let mut notes = xen(n::XEN_ELFNOTE_LOADER, b"generic\0");
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    notes.extend(xen(n::XEN_ELFNOTE_BSD_SYMTAB, b"yes\0"));
    let mut b = ImageBuilder::simple(0x20_0000, 0x20_0000, vec![1; 64], 0x1003);
    b.note_segment = Some(notes);
    // Section 1: .symtab linked to section 2: .strtab.
    b.sections.push(Sect {
        name: ".symtab".into(),
        sh_type: crate::elf::SHT_SYMTAB,
        data: vec![0; 24 * 5],
        link: 2,
    });
    b.sections.push(Sect {
        name: ".strtab".into(),
        sh_type: crate::elf::SHT_STRTAB,
        data: vec![0; 13],
        link: 0,
    });
    let info = parse(&b.build(), BootMode::Pv).unwrap();
    assert!(info.bsd_symtab);
    // pend 0x201003 → start 0x201008; size 264 + 120 + 16 = 400.
    assert_eq!(info.bsd_symtab_range, Some((0x20_1008, 0x20_1008 + 400)));
    assert_eq!(info.virt_kend, 0x20_1008 + 400);
}

#[test]
fn fuzz_mutated_kernels_never_panic() {
    let mut b = kernel(linux_notes());
    b.sections.push(Sect {
        name: "__xen_guest".into(),
        sh_type: 1,
        data: b"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0x0\0".to_vec(),
        link: 0,
    });
    let base = b.build();
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut ok = 0;
    for _ in 0..20_000 {
        let mut img = base.clone();
        rng.mutate(&mut img);
        for mode in [BootMode::Pv, BootMode::Pvh] {
            match parse(&img, mode) {
                Ok(info) => {
                    ok += 1;
                    assert!(info.virt_kstart <= info.virt_kend);
                    let _ = info.check_pv_boot(true, 0);
                }
                Err(e) => assert!(!e.to_string().contains('\n')),
            }
        }
    }
    assert!(ok > 1000, "only {ok} mutants parsed");
}

/// Linux's L1_MFN_VALID note holds two quads (mask and value): Xen 4.17 boots the kernel
/// (the value reads as 0 and is not used), and so must DualVisor; a SUPPORTED_FEATURES note
/// whose size is not a multiple of 4 contributes nothing.
#[test]
fn odd_sized_numeric_notes_read_as_zero() {
    let plain = parse(&kernel(linux_notes()).build(), BootMode::Pv).unwrap();
    let mut notes = linux_notes();
    notes.extend(xen(
        n::XEN_ELFNOTE_L1_MFN_VALID,
        &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    ));
    notes.extend(xen(n::XEN_ELFNOTE_SUPPORTED_FEATURES, &[1, 2, 3]));
    let info = parse(&kernel(notes).build(), BootMode::Pv).expect("boots as on Xen");
    assert_eq!(info.l1_mfn_valid, Some(0));
    assert_eq!(info.supported_features_note, plain.supported_features_note);
    assert_eq!(info.entry, plain.entry);
}
