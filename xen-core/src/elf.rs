//! Safe, zero-copy ELF64 little-endian x86-64 parser for guest kernels.
//!
//! [`ElfFile::parse`] validates everything a loader relies on (identification, header
//! tables in bounds, every segment's bytes in the file, no wrap-around, no overlapping
//! loadable segments, a bounded image span) so that later accessors cannot fail on
//! segment data. Sections are checked lazily, as libelf only needs them for note fallback.
//! Any input gives `Ok` or an [`ElfError`]; nothing here panics.

mod error;
mod header;
mod note;
#[cfg(test)]
pub(crate) mod test_image;
#[cfg(test)]
mod tests;

pub use error::{AddressSpace, ElfError};
pub use header::{
    FileHeader, ProgramHeader, SectionHeader, EHDR_SIZE, ELFCLASS32, ELFCLASS64, ELFDATA2LSB,
    ELFDATA2MSB, EM_386, EM_X86_64, ET_DYN, ET_EXEC, ET_REL, PF_R, PF_W, PF_X, PHDR_SIZE, PT_LOAD,
    PT_NOTE, SHDR_SIZE, SHT_NOTE, SHT_STRTAB, SHT_SYMTAB,
};
pub use note::{Note, NoteIter};

use alloc::vec::Vec;

/// `SHT_NOBITS`: the section occupies no file bytes.
const SHT_NOBITS: u32 = 8;

/// A validated ELF64 x86-64 image borrowed from the module's bytes.
#[derive(Clone, Debug)]
pub struct ElfFile<'a> {
    bytes: &'a [u8],
    header: FileHeader,
    pstart: u64,
    pend: u64,
}

/// A loadable segment and its bytes in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment<'a> {
    /// Index in the program header table.
    pub index: usize,
    /// The program header.
    pub header: ProgramHeader,
    /// The `p_filesz` bytes from the file; the rest up to `p_memsz` is zero.
    pub data: &'a [u8],
}

/// Checks the identification bytes and the fixed header.
fn check_ident(bytes: &[u8]) -> Result<FileHeader, ElfError> {
    if bytes.len() < 4 || bytes[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    match bytes.get(4) {
        None => return Err(ElfError::TruncatedHeader { len: bytes.len() }),
        Some(&ELFCLASS64) => {}
        Some(&ELFCLASS32) => return Err(ElfError::Class32),
        Some(&c) => return Err(ElfError::BadClass(c)),
    }
    match bytes.get(5) {
        None => return Err(ElfError::TruncatedHeader { len: bytes.len() }),
        Some(&ELFDATA2LSB) => {}
        Some(&ELFDATA2MSB) => return Err(ElfError::BigEndian),
        Some(&d) => return Err(ElfError::BadDataEncoding(d)),
    }
    let header = match bytes.get(..EHDR_SIZE).and_then(FileHeader::decode) {
        Some(h) => h,
        None => return Err(ElfError::TruncatedHeader { len: bytes.len() }),
    };
    if header.e_machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(header.e_machine));
    }
    if header.e_type != ET_EXEC && header.e_type != ET_DYN {
        return Err(ElfError::NotExecutable(header.e_type));
    }
    Ok(header)
}

/// Whether a table of `count` entries of `entsize` bytes at `offset` fits in `len` bytes.
fn table_fits(offset: u64, entsize: u16, count: u16, len: usize) -> bool {
    let size = u64::from(entsize) * u64::from(count);
    matches!(offset.checked_add(size), Some(end) if end <= len as u64)
}

/// Finds two overlapping `[start, end)` ranges (tagged with their phdr index), if any.
fn find_overlap(mut ranges: Vec<(u64, u64, usize)>) -> Option<(usize, usize)> {
    ranges.sort_unstable();
    // Sorted by start: an overlap exists iff some range starts before the furthest end so far.
    let mut furthest: Option<(u64, usize)> = None;
    for &(start, end, idx) in &ranges {
        if let Some((fend, fidx)) = furthest {
            if start < fend {
                return Some((fidx.min(idx), fidx.max(idx)));
            }
            if end > fend {
                furthest = Some((end, idx));
            }
        } else {
            furthest = Some((end, idx));
        }
    }
    None
}

impl<'a> ElfFile<'a> {
    /// Validates `bytes` as an ELF64 little-endian x86-64 executable whose loaded image
    /// spans at most `max_image_span` bytes of physical address space (`p_paddr`, where
    /// Xen's libelf places segments).
    pub fn parse(bytes: &'a [u8], max_image_span: u64) -> Result<Self, ElfError> {
        let header = check_ident(bytes)?;
        let len = bytes.len();
        if header.e_phnum > 0 {
            if usize::from(header.e_phentsize) < PHDR_SIZE {
                return Err(ElfError::BadProgramHeaderSize(header.e_phentsize));
            }
            if !table_fits(header.e_phoff, header.e_phentsize, header.e_phnum, len) {
                return Err(ElfError::ProgramHeadersOutOfBounds {
                    offset: header.e_phoff,
                    count: header.e_phnum,
                    len,
                });
            }
        }
        if header.e_shnum > 0 {
            if usize::from(header.e_shentsize) < SHDR_SIZE {
                return Err(ElfError::BadSectionHeaderSize(header.e_shentsize));
            }
            if !table_fits(header.e_shoff, header.e_shentsize, header.e_shnum, len) {
                return Err(ElfError::SectionHeadersOutOfBounds {
                    offset: header.e_shoff,
                    count: header.e_shnum,
                    len,
                });
            }
        }
        let mut file = Self {
            bytes,
            header,
            pstart: u64::MAX,
            pend: 0,
        };
        let mut pranges = Vec::new();
        for (index, ph) in file.program_headers().enumerate() {
            let in_file = ph.p_offset.checked_add(ph.p_filesz);
            if !matches!(in_file, Some(end) if end <= len as u64) {
                return Err(ElfError::SegmentBeyondFile {
                    index,
                    offset: ph.p_offset,
                    filesz: ph.p_filesz,
                    len,
                });
            }
            if !ph.is_loadable() {
                continue;
            }
            if ph.p_filesz > ph.p_memsz {
                return Err(ElfError::FileSizeExceedsMemSize {
                    index,
                    filesz: ph.p_filesz,
                    memsz: ph.p_memsz,
                });
            }
            // Segments are placed by `p_paddr` (plus the notes' virt_offset), as Xen's
            // libelf does; `p_vaddr` plays no part (Linux's .data..percpu has p_vaddr 0).
            let Some(pend) = ph.p_paddr.checked_add(ph.p_memsz) else {
                return Err(ElfError::AddressOverflow { index });
            };
            // libelf's pstart/pend include every loadable segment, empty ones too.
            file.pstart = file.pstart.min(ph.p_paddr);
            file.pend = file.pend.max(pend);
            if ph.p_memsz > 0 {
                pranges.push((ph.p_paddr, pend, index));
            }
        }
        if file.pstart > file.pend {
            return Err(ElfError::NoLoadableSegments);
        }
        if let Some((first, second)) = find_overlap(pranges) {
            return Err(ElfError::OverlappingSegments {
                first,
                second,
                space: AddressSpace::Physical,
            });
        }
        let span = file.pend - file.pstart;
        if span > max_image_span {
            return Err(ElfError::ImageTooLarge {
                span,
                limit: max_image_span,
            });
        }
        Ok(file)
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The file header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// `e_entry`.
    pub fn entry(&self) -> u64 {
        self.header.e_entry
    }

    /// libelf's `[pstart, pend)`: lowest `p_paddr` to highest `p_paddr + p_memsz` of the
    /// loadable segments. This is what gets loaded and what Xen's layout starts from.
    pub fn paddr_range(&self) -> (u64, u64) {
        (self.pstart, self.pend)
    }

    /// All program headers, in table order.
    pub fn program_headers(&self) -> impl Iterator<Item = ProgramHeader> + 'a {
        let bytes = self.bytes;
        let h = self.header;
        (0..usize::from(h.e_phnum)).filter_map(move |i| {
            let off = usize::try_from(h.e_phoff)
                .ok()?
                .checked_add(i * usize::from(h.e_phentsize))?;
            ProgramHeader::decode(bytes.get(off..)?)
        })
    }

    /// The file bytes of a segment (`p_filesz` from `p_offset`), if they are in the file.
    pub fn segment_data(&self, ph: &ProgramHeader) -> Option<&'a [u8]> {
        let start = usize::try_from(ph.p_offset).ok()?;
        let end = start.checked_add(usize::try_from(ph.p_filesz).ok()?)?;
        self.bytes.get(start..end)
    }

    /// The loadable segments (libelf's rule: `PT_LOAD` with R, W or X) and their bytes.
    pub fn load_segments(&self) -> impl Iterator<Item = LoadSegment<'a>> + 'a {
        let this = self.clone();
        self.program_headers()
            .enumerate()
            .filter(|(_, ph)| ph.is_loadable())
            .filter_map(move |(index, header)| {
                Some(LoadSegment {
                    index,
                    header,
                    data: this.segment_data(&header)?,
                })
            })
    }

    /// Copies the loadable segments into `dest`, which stands for physical addresses
    /// `[pstart, pstart + dest.len())`, zero-filling each segment's tail up to `p_memsz`.
    /// Bytes of `dest` between segments are left as they are.
    pub fn load_into(&self, dest: &mut [u8]) -> Result<(), ElfError> {
        let span = self.pend - self.pstart;
        if (dest.len() as u64) < span {
            return Err(ElfError::ImageTooLarge {
                span,
                limit: dest.len() as u64,
            });
        }
        for seg in self.load_segments() {
            // Parse-time checks make these conversions and ranges valid; stay defensive.
            let off = seg.header.p_paddr - self.pstart;
            let (Ok(off), Ok(memsz)) = (usize::try_from(off), usize::try_from(seg.header.p_memsz))
            else {
                return Err(ElfError::AddressOverflow { index: seg.index });
            };
            let Some(slot) = off
                .checked_add(memsz)
                .and_then(|end| dest.get_mut(off..end))
            else {
                return Err(ElfError::AddressOverflow { index: seg.index });
            };
            let (file_part, zero_part) = slot.split_at_mut(seg.data.len().min(memsz));
            file_part.copy_from_slice(&seg.data[..file_part.len()]);
            zero_part.fill(0);
        }
        Ok(())
    }

    /// All section headers, in table order (index 0 is the null section).
    pub fn section_headers(&self) -> impl Iterator<Item = SectionHeader> + 'a {
        let this = self.clone();
        (0..usize::from(self.header.e_shnum)).filter_map(move |i| this.section_header(i))
    }

    /// Section header `index`, if the table has it.
    pub fn section_header(&self, index: usize) -> Option<SectionHeader> {
        let h = &self.header;
        if index >= usize::from(h.e_shnum) {
            return None;
        }
        let off = usize::try_from(h.e_shoff)
            .ok()?
            .checked_add(index.checked_mul(usize::from(h.e_shentsize))?)?;
        SectionHeader::decode(self.bytes.get(off..)?)
    }

    /// The bytes of section `index` (empty for `SHT_NOBITS`).
    pub fn section_data(&self, index: usize, sh: &SectionHeader) -> Result<&'a [u8], ElfError> {
        if sh.sh_type == SHT_NOBITS {
            return Ok(&[]);
        }
        let range = usize::try_from(sh.sh_offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(sh.sh_size).ok()?)?;
            Some(start..end)
        });
        range
            .and_then(|r| self.bytes.get(r))
            .ok_or(ElfError::SectionBeyondFile { index })
    }

    /// The section-name string table's bytes, if it can be read.
    fn shstrtab(&self) -> Option<&'a [u8]> {
        let idx = usize::from(self.header.e_shstrndx);
        let sh = self.section_header(idx)?;
        self.section_data(idx, &sh).ok()
    }

    /// Name at `offset` in string table `strtab`, up to its NUL.
    fn name_at(strtab: &'a [u8], offset: u32) -> Option<&'a [u8]> {
        let tail = strtab.get(usize::try_from(offset).ok()?..)?;
        let nul = tail.iter().position(|&b| b == 0)?;
        Some(&tail[..nul])
    }

    /// The name of a section from the section-name string table, if it can be read.
    pub fn section_name(&self, sh: &SectionHeader) -> Option<&'a [u8]> {
        Self::name_at(self.shstrtab()?, sh.sh_name)
    }

    /// The first section called `name`, with its index.
    pub fn section_by_name(&self, name: &[u8]) -> Option<(usize, SectionHeader)> {
        let strtab = self.shstrtab()?;
        self.section_headers()
            .enumerate()
            .find(|(_, sh)| Self::name_at(strtab, sh.sh_name) == Some(name))
    }
}
