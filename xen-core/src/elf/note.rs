//! ELF note records (`Elf64_Nhdr` + name + descriptor), iterated over a byte region.
//!
//! Layout as libelf reads it: three little-endian `u32` (namesz, descsz, type), the name
//! padded to 4 bytes, then the descriptor padded to 4 bytes. Fewer than 12 trailing bytes
//! end the region quietly (padding); a record whose name or descriptor runs past the end is
//! reported as [`ElfError::TruncatedNote`] and ends the iteration.

use super::error::ElfError;
use super::header::read_u32;

/// One ELF note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note<'a> {
    /// The name, up to (not including) its first NUL.
    pub name: &'a [u8],
    /// The note type.
    pub n_type: u32,
    /// The descriptor bytes (`descsz` of them, without padding).
    pub desc: &'a [u8],
}

/// Iterator over the notes of one region (a PT_NOTE segment or SHT_NOTE section).
#[derive(Clone, Debug)]
pub struct NoteIter<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> NoteIter<'a> {
    /// Iterates the notes in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            done: false,
        }
    }
}

/// Rounds `n` up to a multiple of 4, or `None` on overflow.
fn pad4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

impl<'a> Iterator for NoteIter<'a> {
    type Item = Result<Note<'a>, ElfError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let (namesz, descsz, n_type) = match (
            read_u32(self.data, start),
            read_u32(self.data, start.wrapping_add(4)),
            read_u32(self.data, start.wrapping_add(8)),
        ) {
            (Some(a), Some(b), Some(c)) if start.checked_add(12).is_some() => (a, b, c),
            _ => {
                self.done = true;
                return None;
            }
        };
        let truncated = || ElfError::TruncatedNote { offset: start };
        let name_start = start + 12;
        let layout = (|| {
            let name_end = name_start.checked_add(namesz as usize)?;
            let desc_start = name_start.checked_add(pad4(namesz as usize)?)?;
            let desc_end = desc_start.checked_add(descsz as usize)?;
            let next = desc_start.checked_add(pad4(descsz as usize)?)?;
            Some((name_end, desc_start, desc_end, next))
        })();
        let Some((name_end, desc_start, desc_end, next)) = layout else {
            self.done = true;
            return Some(Err(truncated()));
        };
        let (Some(name), Some(desc)) = (
            self.data.get(name_start..name_end),
            self.data.get(desc_start..desc_end),
        ) else {
            self.done = true;
            return Some(Err(truncated()));
        };
        let name = match name.iter().position(|&b| b == 0) {
            Some(nul) => &name[..nul],
            None => name,
        };
        // Padding of the last record may be missing: that still ends the region cleanly.
        self.pos = next.min(self.data.len());
        Some(Ok(Note { name, n_type, desc }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn note(name: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(name);
        v.push(0);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    #[test]
    fn iterates_padded_records() {
        let mut data = note(b"Xen", 1, &0xffff_ffff_8100_0000u64.to_le_bytes());
        data.extend(note(b"GNU", 3, b"abcde"));
        data.extend(note(b"Xen", 5, b"xen-3.0\0"));
        let notes: Vec<_> = NoteIter::new(&data).map(|n| n.unwrap()).collect();
        assert_eq!(notes.len(), 3);
        assert_eq!(notes[0].name, b"Xen");
        assert_eq!(notes[0].n_type, 1);
        assert_eq!(notes[0].desc.len(), 8);
        assert_eq!(notes[1].name, b"GNU");
        assert_eq!(notes[1].desc, b"abcde");
        assert_eq!(notes[2].desc, b"xen-3.0\0");
    }

    #[test]
    fn short_tail_ends_quietly_but_truncated_record_is_an_error() {
        let mut data = note(b"Xen", 1, &[1, 2, 3, 4]);
        data.extend_from_slice(&[0; 8]);
        assert_eq!(NoteIter::new(&data).count(), 1);

        let mut data = note(b"Xen", 1, &[1, 2, 3, 4]);
        data.truncate(data.len() - 1);
        let items: Vec<_> = NoteIter::new(&data).collect();
        assert_eq!(items, [Err(ElfError::TruncatedNote { offset: 0 })]);

        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&0u32.to_le_bytes());
        let items: Vec<_> = NoteIter::new(&huge).collect();
        assert_eq!(items, [Err(ElfError::TruncatedNote { offset: 0 })]);
    }

    #[test]
    fn missing_final_padding_is_tolerated() {
        let mut data = note(b"Xen", 6, b"linux");
        // Drop the 3 padding bytes after the 5-byte descriptor.
        data.truncate(data.len() - 3);
        let notes: Vec<_> = NoteIter::new(&data).collect();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].as_ref().unwrap().desc, b"linux");
    }
}
