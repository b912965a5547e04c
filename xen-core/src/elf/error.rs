//! Why an ELF image was refused: one variant per check, each displayed as one line.

use core::fmt;

/// Which address space two segments collide in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpace {
    /// `p_paddr` ranges (the addresses Xen loads segments at).
    Physical,
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressSpace::Physical => "physical",
        })
    }
}

/// A refused ELF image. `Display` is one line suitable for `(XEN) dom0 kernel: <error>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF identification, or the magic is not `\x7fELF`.
    NotElf,
    /// `EI_CLASS` is ELFCLASS32.
    Class32,
    /// `EI_CLASS` is neither 32 nor 64-bit.
    BadClass(u8),
    /// `EI_DATA` is big-endian.
    BigEndian,
    /// `EI_DATA` is neither little nor big-endian.
    BadDataEncoding(u8),
    /// `e_machine` is not x86-64.
    WrongMachine(u16),
    /// `e_type` is neither ET_EXEC nor ET_DYN.
    NotExecutable(u16),
    /// The file is shorter than the 64-byte ELF64 header.
    TruncatedHeader {
        /// Length of the file.
        len: usize,
    },
    /// `e_phentsize` is smaller than an ELF64 program header.
    BadProgramHeaderSize(u16),
    /// `e_shentsize` is smaller than an ELF64 section header.
    BadSectionHeaderSize(u16),
    /// The program header table lies (partly) outside the file.
    ProgramHeadersOutOfBounds {
        /// Table offset.
        offset: u64,
        /// Number of entries.
        count: u16,
        /// Length of the file.
        len: usize,
    },
    /// The section header table lies (partly) outside the file.
    SectionHeadersOutOfBounds {
        /// Table offset.
        offset: u64,
        /// Number of entries.
        count: u16,
        /// Length of the file.
        len: usize,
    },
    /// A loadable segment has more file bytes than memory bytes.
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment's file bytes extend beyond the end of the file.
    SegmentBeyondFile {
        /// Program header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// Length of the file.
        len: usize,
    },
    /// A section's bytes extend beyond the end of the file.
    SectionBeyondFile {
        /// Section header index.
        index: usize,
    },
    /// An address plus a size wraps around the 64-bit address space.
    AddressOverflow {
        /// Program header index.
        index: usize,
    },
    /// Two loadable segments overlap.
    OverlappingSegments {
        /// Lower program header index.
        first: usize,
        /// Higher program header index.
        second: usize,
        /// The address space they overlap in.
        space: AddressSpace,
    },
    /// The loaded image spans more than the caller allows.
    ImageTooLarge {
        /// Span of the image in bytes.
        span: u64,
        /// The caller's limit in bytes.
        limit: u64,
    },
    /// No loadable segment at all.
    NoLoadableSegments,
    /// A note record runs past the end of its segment or section.
    TruncatedNote {
        /// Offset of the note within its region.
        offset: usize,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::NotElf => f.write_str("not an ELF image (bad magic)"),
            ElfError::Class32 => f.write_str("32-bit ELF image: 32-bit kernels are not supported"),
            ElfError::BadClass(c) => write!(f, "ELF image has an invalid class ({c})"),
            ElfError::BigEndian => {
                f.write_str("big-endian ELF image: only little-endian x86-64 is supported")
            }
            ElfError::BadDataEncoding(d) => {
                write!(f, "ELF image has an invalid data encoding ({d})")
            }
            ElfError::WrongMachine(m) => {
                write!(f, "ELF image is for machine {m}, not x86-64 (62)")
            }
            ElfError::NotExecutable(t) => write!(
                f,
                "ELF image is not an executable (type {t}, expected ET_EXEC or ET_DYN)"
            ),
            ElfError::TruncatedHeader { len } => write!(
                f,
                "ELF image truncated: {len} bytes, shorter than the 64-byte ELF64 header"
            ),
            ElfError::BadProgramHeaderSize(s) => {
                write!(f, "ELF program header entry size {s} is smaller than 56")
            }
            ElfError::BadSectionHeaderSize(s) => {
                write!(f, "ELF section header entry size {s} is smaller than 64")
            }
            ElfError::ProgramHeadersOutOfBounds { offset, count, len } => write!(
                f,
                "ELF program headers ({count} at offset {offset:#x}) lie beyond the end of the \
                 {len}-byte file"
            ),
            ElfError::SectionHeadersOutOfBounds { offset, count, len } => write!(
                f,
                "ELF section headers ({count} at offset {offset:#x}) lie beyond the end of the \
                 {len}-byte file"
            ),
            ElfError::FileSizeExceedsMemSize {
                index,
                filesz,
                memsz,
            } => write!(
                f,
                "ELF segment {index}: file size {filesz:#x} exceeds memory size {memsz:#x}"
            ),
            ElfError::SegmentBeyondFile {
                index,
                offset,
                filesz,
                len,
            } => write!(
                f,
                "ELF segment {index}: data at {offset:#x}+{filesz:#x} lies beyond the end of \
                 the {len}-byte file"
            ),
            ElfError::SectionBeyondFile { index } => {
                write!(f, "ELF section {index} lies beyond the end of the file")
            }
            ElfError::AddressOverflow { index } => {
                write!(f, "ELF segment {index}: address range wraps around")
            }
            ElfError::OverlappingSegments {
                first,
                second,
                space,
            } => write!(
                f,
                "ELF loadable segments {first} and {second} overlap in {space} memory"
            ),
            ElfError::ImageTooLarge { span, limit } => write!(
                f,
                "ELF image too large: it spans {span:#x} bytes, the limit is {limit:#x}"
            ),
            ElfError::NoLoadableSegments => f.write_str("ELF image has no loadable segment"),
            ElfError::TruncatedNote { offset } => {
                write!(f, "ELF note at offset {offset:#x} is truncated")
            }
        }
    }
}
