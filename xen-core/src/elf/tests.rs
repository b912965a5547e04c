//! Tests of ELF validation: one per refusal, accessors, and a mutation fuzzer.

use super::test_image::{note_bytes, ImageBuilder, Rng, Sect, Seg};
use super::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

const VA: u64 = 0xffff_ffff_8100_0000;
const PA: u64 = 0x100_0000;
const LIMIT: u64 = 1 << 30;

fn two_segments() -> ImageBuilder {
    let mut b = ImageBuilder::simple(VA, PA, vec![0x90; 0x1800], 0x2000);
    b.segs.push(Seg {
        vaddr: VA + 0x2000,
        paddr: PA + 0x2000,
        data: vec![0xaa; 0x100],
        memsz: 0x3000,
        flags: PF_R | PF_W,
    });
    b
}

fn set_u16(img: &mut [u8], off: usize, v: u16) {
    img[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn set_u64(img: &mut [u8], off: usize, v: u64) {
    img[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
/// Offset of field `field` of program header `i`.
fn ph(i: usize, field: usize) -> usize {
    EHDR_SIZE + i * PHDR_SIZE + field
}

#[test]
fn accepts_valid_image_and_reports_ranges() {
    let img = two_segments().build();
    let elf = ElfFile::parse(&img, LIMIT).unwrap();
    assert_eq!(elf.entry(), VA);
    assert_eq!(elf.paddr_range(), (PA, PA + 0x5000));
    let segs: Vec<_> = elf.load_segments().collect();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].data.len(), 0x1800);
    assert_eq!(segs[1].index, 1);
    assert_eq!(segs[1].header.p_memsz, 0x3000);
}

#[test]
fn load_into_copies_and_zero_fills() {
    let img = two_segments().build();
    let elf = ElfFile::parse(&img, LIMIT).unwrap();
    let mut dest = vec![0x55u8; 0x5000];
    elf.load_into(&mut dest).unwrap();
    assert!(dest[..0x1800].iter().all(|&b| b == 0x90));
    assert!(dest[0x1800..0x2000].iter().all(|&b| b == 0));
    assert!(dest[0x2000..0x2100].iter().all(|&b| b == 0xaa));
    assert!(dest[0x2100..0x5000].iter().all(|&b| b == 0));
    let mut small = vec![0u8; 0x4fff];
    assert_eq!(
        elf.load_into(&mut small),
        Err(ElfError::ImageTooLarge {
            span: 0x5000,
            limit: 0x4fff
        })
    );
}

#[test]
fn refuses_non_elf_and_wrong_identification() {
    assert_eq!(ElfFile::parse(b"", LIMIT).unwrap_err(), ElfError::NotElf);
    assert_eq!(
        ElfFile::parse(b"MZ\x90\0 not elf at all", LIMIT).unwrap_err(),
        ElfError::NotElf
    );
    let good = two_segments().build();
    let mut img = good.clone();
    img[4] = ELFCLASS32;
    let err = ElfFile::parse(&img, LIMIT).unwrap_err();
    assert_eq!(err, ElfError::Class32);
    assert!(err.to_string().contains("32-bit kernels are not supported"));
    img[4] = 9;
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::BadClass(9)
    );
    let mut img = good.clone();
    img[5] = ELFDATA2MSB;
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::BigEndian
    );
    let mut img = good.clone();
    set_u16(&mut img, 18, EM_386);
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::WrongMachine(EM_386)
    );
    let mut img = good.clone();
    set_u16(&mut img, 16, ET_REL);
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::NotExecutable(ET_REL)
    );
    let mut img = good;
    set_u16(&mut img, 16, ET_DYN);
    assert!(ElfFile::parse(&img, LIMIT).is_ok());
}

#[test]
fn refuses_truncated_headers_and_tables() {
    let good = two_segments().build();
    assert_eq!(
        ElfFile::parse(&good[..40], LIMIT).unwrap_err(),
        ElfError::TruncatedHeader { len: 40 }
    );
    assert_eq!(
        ElfFile::parse(&good[..4], LIMIT).unwrap_err(),
        ElfError::TruncatedHeader { len: 4 }
    );
    // Program headers cut off.
    let cut = &good[..EHDR_SIZE + PHDR_SIZE + 10];
    assert!(matches!(
        ElfFile::parse(cut, LIMIT).unwrap_err(),
        ElfError::ProgramHeadersOutOfBounds { count: 2, .. }
    ));
    let mut img = good.clone();
    set_u64(&mut img, 32, u64::MAX - 8);
    assert!(matches!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::ProgramHeadersOutOfBounds { .. }
    ));
    let mut img = good.clone();
    set_u16(&mut img, 54, 32);
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::BadProgramHeaderSize(32)
    );
    let mut img = good;
    set_u16(&mut img, 60, 3);
    set_u16(&mut img, 58, 64);
    let shoff = img.len() as u64 - 64;
    set_u64(&mut img, 40, shoff);
    assert!(matches!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::SectionHeadersOutOfBounds { count: 3, .. }
    ));
}

#[test]
fn refuses_bad_segments() {
    let good = two_segments().build();
    // filesz > memsz
    let mut img = good.clone();
    set_u64(&mut img, ph(1, 40), 0x80);
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::FileSizeExceedsMemSize {
            index: 1,
            filesz: 0x100,
            memsz: 0x80
        }
    );
    // data beyond the file
    let mut img = good.clone();
    let len = img.len();
    set_u64(&mut img, ph(0, 8), len as u64 - 0x10);
    assert!(matches!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::SegmentBeyondFile { index: 0, .. }
    ));
    // offset + filesz wraps
    let mut img = good.clone();
    set_u64(&mut img, ph(0, 8), u64::MAX);
    assert!(matches!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::SegmentBeyondFile { index: 0, .. }
    ));
    // Virtual addresses are not where segments go (libelf places them by p_paddr): a
    // p_vaddr that wraps, overlaps another segment or lies far away (Linux's
    // .data..percpu has p_vaddr 0) is accepted, as Xen 4.17 accepts it.
    for bad_vaddr in [u64::MAX - 0x10, VA + 0x1fff, 0] {
        let mut img = good.clone();
        set_u64(&mut img, ph(1, 16), bad_vaddr);
        let elf = ElfFile::parse(&img, LIMIT).expect("p_vaddr is not checked");
        assert_eq!(elf.paddr_range(), (PA, PA + 0x5000));
    }
    // paddr + memsz wraps
    let mut img = good.clone();
    set_u64(&mut img, ph(1, 24), u64::MAX - 0x10);
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::AddressOverflow { index: 1 }
    );
    // overlapping in physical space only
    let mut img = good.clone();
    set_u64(&mut img, ph(1, 24), PA + 0x1000);
    let err = ElfFile::parse(&img, LIMIT).unwrap_err();
    assert_eq!(
        err,
        ElfError::OverlappingSegments {
            first: 0,
            second: 1,
            space: AddressSpace::Physical
        }
    );
    assert_eq!(
        err.to_string(),
        "ELF loadable segments 0 and 1 overlap in physical memory"
    );
    // oversized
    assert_eq!(
        ElfFile::parse(&good, 0x4fff).unwrap_err(),
        ElfError::ImageTooLarge {
            span: 0x5000,
            limit: 0x4fff
        }
    );
    assert!(ElfFile::parse(&good, 0x5000).is_ok());
    // no PT_LOAD: make both segments PT_NOTE-less non-loadable (flags 0).
    let mut img = good;
    img[ph(0, 4)..ph(0, 8)].copy_from_slice(&0u32.to_le_bytes());
    img[ph(1, 4)..ph(1, 8)].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        ElfFile::parse(&img, LIMIT).unwrap_err(),
        ElfError::NoLoadableSegments
    );
}

#[test]
fn overlap_detection_sees_nested_ranges() {
    // [0,100) contains [10,20); [30,40) starts after 20 but inside 100.
    let r = vec![(0, 100, 0), (10, 20, 1), (30, 40, 2)];
    assert_eq!(find_overlap(r), Some((0, 1)));
    let r = vec![(50, 60, 3), (0, 50, 1), (60, 61, 2)];
    assert_eq!(find_overlap(r), None);
}

#[test]
fn sections_and_names() {
    let mut b = two_segments();
    b.sections.push(Sect {
        name: "__xen_guest".into(),
        sh_type: 1,
        data: b"GUEST_OS=linux\0".to_vec(),
        link: 0,
    });
    b.sections.push(Sect {
        name: ".note.Xen".into(),
        sh_type: SHT_NOTE,
        data: note_bytes(b"Xen", 5, b"xen-3.0\0"),
        link: 0,
    });
    let img = b.build();
    let elf = ElfFile::parse(&img, LIMIT).unwrap();
    let (idx, sh) = elf.section_by_name(b"__xen_guest").unwrap();
    assert_eq!(idx, 1);
    assert_eq!(elf.section_data(idx, &sh).unwrap(), b"GUEST_OS=linux\0");
    let (idx, sh) = elf.section_by_name(b".note.Xen").unwrap();
    assert_eq!(sh.sh_type, SHT_NOTE);
    let notes: Vec<_> = NoteIter::new(elf.section_data(idx, &sh).unwrap()).collect();
    assert_eq!(notes.len(), 1);
    assert!(elf.section_by_name(b".nothing").is_none());
    // A section pointing outside the file is an error only when read.
    let mut bad = sh;
    bad.sh_offset = u64::MAX;
    assert_eq!(
        elf.section_data(7, &bad),
        Err(ElfError::SectionBeyondFile { index: 7 })
    );
}

#[test]
fn every_error_displays_as_one_line() {
    let errors = [
        ElfError::NotElf,
        ElfError::Class32,
        ElfError::BadClass(7),
        ElfError::BigEndian,
        ElfError::BadDataEncoding(3),
        ElfError::WrongMachine(3),
        ElfError::NotExecutable(1),
        ElfError::TruncatedHeader { len: 3 },
        ElfError::BadProgramHeaderSize(1),
        ElfError::BadSectionHeaderSize(1),
        ElfError::ProgramHeadersOutOfBounds {
            offset: 1,
            count: 2,
            len: 3,
        },
        ElfError::SectionHeadersOutOfBounds {
            offset: 1,
            count: 2,
            len: 3,
        },
        ElfError::FileSizeExceedsMemSize {
            index: 0,
            filesz: 2,
            memsz: 1,
        },
        ElfError::SegmentBeyondFile {
            index: 0,
            offset: 1,
            filesz: 2,
            len: 3,
        },
        ElfError::SectionBeyondFile { index: 1 },
        ElfError::AddressOverflow { index: 0 },
        ElfError::OverlappingSegments {
            first: 0,
            second: 1,
            space: AddressSpace::Physical,
        },
        ElfError::ImageTooLarge { span: 2, limit: 1 },
        ElfError::NoLoadableSegments,
        ElfError::TruncatedNote { offset: 0 },
    ];
    for e in errors {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
    }
}

/// Exercises every accessor of a parsed image; used by the fuzzer.
fn touch_everything(elf: &ElfFile<'_>) {
    let _ = elf.header();
    let (ps, pe) = elf.paddr_range();
    assert!(ps <= pe);
    for seg in elf.load_segments() {
        assert!(seg.data.len() as u64 <= seg.header.p_memsz);
    }
    for ph in elf.program_headers() {
        if ph.p_type == PT_NOTE {
            if let Some(data) = elf.segment_data(&ph) {
                for n in NoteIter::new(data) {
                    let _ = n;
                }
            }
        }
    }
    for (i, sh) in elf.section_headers().enumerate() {
        let _ = elf.section_name(&sh);
        if let Ok(data) = elf.section_data(i, &sh) {
            NoteIter::new(data).for_each(drop);
        }
    }
    let span = pe - ps;
    if span <= 1 << 20 {
        let mut dest = vec![0u8; span as usize];
        elf.load_into(&mut dest).unwrap();
    }
}

#[test]
fn fuzz_mutated_images_never_panic() {
    let mut b = two_segments();
    b.note_segment = Some(note_bytes(b"Xen", 1, &VA.to_le_bytes()));
    b.sections.push(Sect {
        name: ".notes".into(),
        sh_type: SHT_NOTE,
        data: note_bytes(b"Xen", 6, b"linux\0"),
        link: 0,
    });
    let base = b.build();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut img = base.clone();
        rng.mutate(&mut img);
        if let Ok(elf) = ElfFile::parse(&img, 1 << 20) {
            accepted += 1;
            touch_everything(&elf);
        }
    }
    // Mutations of data bytes keep the image valid: the fuzzer must reach the accessors.
    assert!(accepted > 1000, "only {accepted} mutants parsed");
}
