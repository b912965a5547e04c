//! ELF64 little-endian header records (file, program, section) decoded from raw bytes.
//!
//! Every reader here is bounds-checked: a short slice yields `None`, never a panic.

/// `EI_CLASS` value for 32-bit objects.
pub const ELFCLASS32: u8 = 1;
/// `EI_CLASS` value for 64-bit objects.
pub const ELFCLASS64: u8 = 2;
/// `EI_DATA` value for little-endian objects.
pub const ELFDATA2LSB: u8 = 1;
/// `EI_DATA` value for big-endian objects.
pub const ELFDATA2MSB: u8 = 2;
/// `e_type`: relocatable object.
pub const ET_REL: u16 = 1;
/// `e_type`: executable.
pub const ET_EXEC: u16 = 2;
/// `e_type`: shared object / position-independent executable.
pub const ET_DYN: u16 = 3;
/// `e_machine`: Intel 80386.
pub const EM_386: u16 = 3;
/// `e_machine`: AMD x86-64.
pub const EM_X86_64: u16 = 62;
/// Program header type: loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type: auxiliary information (notes).
pub const PT_NOTE: u32 = 4;
/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;
/// Section type: symbol table.
pub const SHT_SYMTAB: u32 = 2;
/// Section type: string table.
pub const SHT_STRTAB: u32 = 3;
/// Section type: notes.
pub const SHT_NOTE: u32 = 7;
/// Size of an ELF64 file header.
pub const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// Size of an ELF64 section header.
pub const SHDR_SIZE: usize = 64;

/// Reads a little-endian `u16` at `off`, or `None` when out of bounds.
pub(crate) fn read_u16(bytes: &[u8], off: usize) -> Option<u16> {
    let end = off.checked_add(2)?;
    let b = bytes.get(off..end)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Reads a little-endian `u32` at `off`, or `None` when out of bounds.
pub(crate) fn read_u32(bytes: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b = bytes.get(off..end)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian `u64` at `off`, or `None` when out of bounds.
pub(crate) fn read_u64(bytes: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    let b = bytes.get(off..end)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// The fields of an ELF64 file header (`Elf64_Ehdr`) that a loader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Object file type (`ET_*`).
    pub e_type: u16,
    /// Target architecture (`EM_*`).
    pub e_machine: u16,
    /// Virtual address of the entry point.
    pub e_entry: u64,
    /// File offset of the program header table.
    pub e_phoff: u64,
    /// File offset of the section header table.
    pub e_shoff: u64,
    /// Processor-specific flags.
    pub e_flags: u32,
    /// Size of this header.
    pub e_ehsize: u16,
    /// Size of one program header entry.
    pub e_phentsize: u16,
    /// Number of program header entries.
    pub e_phnum: u16,
    /// Size of one section header entry.
    pub e_shentsize: u16,
    /// Number of section header entries.
    pub e_shnum: u16,
    /// Index of the section holding section names.
    pub e_shstrndx: u16,
}

impl FileHeader {
    /// Decodes the fixed part of the header; `bytes` must hold at least [`EHDR_SIZE`] bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            e_type: read_u16(bytes, 16)?,
            e_machine: read_u16(bytes, 18)?,
            e_entry: read_u64(bytes, 24)?,
            e_phoff: read_u64(bytes, 32)?,
            e_shoff: read_u64(bytes, 40)?,
            e_flags: read_u32(bytes, 48)?,
            e_ehsize: read_u16(bytes, 52)?,
            e_phentsize: read_u16(bytes, 54)?,
            e_phnum: read_u16(bytes, 56)?,
            e_shentsize: read_u16(bytes, 58)?,
            e_shnum: read_u16(bytes, 60)?,
            e_shstrndx: read_u16(bytes, 62)?,
        })
    }
}

/// An ELF64 program header (`Elf64_Phdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Segment type (`PT_*`).
    pub p_type: u32,
    /// Segment flags (`PF_*`).
    pub p_flags: u32,
    /// File offset of the segment's bytes.
    pub p_offset: u64,
    /// Virtual address of the segment.
    pub p_vaddr: u64,
    /// Physical address of the segment (Xen loads by this address).
    pub p_paddr: u64,
    /// Number of bytes in the file.
    pub p_filesz: u64,
    /// Number of bytes in memory (the rest is zero-filled).
    pub p_memsz: u64,
    /// Alignment.
    pub p_align: u64,
}

impl ProgramHeader {
    /// Decodes one entry; `bytes` must start at the entry.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            p_type: read_u32(bytes, 0)?,
            p_flags: read_u32(bytes, 4)?,
            p_offset: read_u64(bytes, 8)?,
            p_vaddr: read_u64(bytes, 16)?,
            p_paddr: read_u64(bytes, 24)?,
            p_filesz: read_u64(bytes, 32)?,
            p_memsz: read_u64(bytes, 40)?,
            p_align: read_u64(bytes, 48)?,
        })
    }

    /// Whether the segment is loaded, by libelf's rule: `PT_LOAD` with any of R, W, X set.
    pub fn is_loadable(&self) -> bool {
        self.p_type == PT_LOAD && self.p_flags & (PF_R | PF_W | PF_X) != 0
    }
}

/// An ELF64 section header (`Elf64_Shdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// Offset of the name in the section-name string table.
    pub sh_name: u32,
    /// Section type (`SHT_*`).
    pub sh_type: u32,
    /// Section flags.
    pub sh_flags: u64,
    /// Virtual address when loaded.
    pub sh_addr: u64,
    /// File offset of the section's bytes.
    pub sh_offset: u64,
    /// Size in bytes.
    pub sh_size: u64,
    /// Link to another section.
    pub sh_link: u32,
    /// Extra information.
    pub sh_info: u32,
    /// Alignment.
    pub sh_addralign: u64,
    /// Entry size for tables.
    pub sh_entsize: u64,
}

impl SectionHeader {
    /// Decodes one entry; `bytes` must start at the entry.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            sh_name: read_u32(bytes, 0)?,
            sh_type: read_u32(bytes, 4)?,
            sh_flags: read_u64(bytes, 8)?,
            sh_addr: read_u64(bytes, 16)?,
            sh_offset: read_u64(bytes, 24)?,
            sh_size: read_u64(bytes, 32)?,
            sh_link: read_u32(bytes, 40)?,
            sh_info: read_u32(bytes, 44)?,
            sh_addralign: read_u64(bytes, 48)?,
            sh_entsize: read_u64(bytes, 56)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_refuse_out_of_bounds() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(read_u16(&b, 6), Some(0x0807));
        assert_eq!(read_u16(&b, 7), None);
        assert_eq!(read_u32(&b, 4), Some(0x0807_0605));
        assert_eq!(read_u32(&b, 5), None);
        assert_eq!(read_u64(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(read_u64(&b, 1), None);
        assert_eq!(read_u64(&b, usize::MAX), None);
    }

    #[test]
    fn loadable_needs_pt_load_and_a_permission() {
        let mut ph = ProgramHeader::decode(&[0u8; PHDR_SIZE]).unwrap();
        ph.p_type = PT_LOAD;
        assert!(!ph.is_loadable());
        ph.p_flags = PF_R;
        assert!(ph.is_loadable());
        ph.p_type = PT_NOTE;
        assert!(!ph.is_loadable());
    }
}
