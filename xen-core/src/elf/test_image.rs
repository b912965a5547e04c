//! Test-only builder of small ELF64 x86-64 images (segments, a note segment, sections).

use super::header::{EHDR_SIZE, EM_X86_64, ET_EXEC, PHDR_SIZE, PT_LOAD, PT_NOTE, SHDR_SIZE};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// One loadable segment to emit.
pub(crate) struct Seg {
    pub vaddr: u64,
    pub paddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub flags: u32,
}

/// A section to emit (with its name in `.shstrtab`).
pub(crate) struct Sect {
    pub name: String,
    pub sh_type: u32,
    pub data: Vec<u8>,
    /// `sh_link` (index in the final table: user sections start at 1).
    pub link: u32,
}

/// Describes an image; `build` lays it out as header, phdrs, data, shdrs.
pub(crate) struct ImageBuilder {
    pub entry: u64,
    pub e_type: u16,
    pub segs: Vec<Seg>,
    pub note_segment: Option<Vec<u8>>,
    pub sections: Vec<Sect>,
}

/// Encodes one note record (name NUL-terminated, both parts padded to 4).
pub(crate) fn note_bytes(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    v.extend_from_slice(&n_type.to_le_bytes());
    v.extend_from_slice(name);
    v.push(0);
    pad(&mut v, 4);
    v.extend_from_slice(desc);
    pad(&mut v, 4);
    v
}

fn pad(v: &mut Vec<u8>, align: usize) {
    while !v.len().is_multiple_of(align) {
        v.push(0);
    }
}

fn put16(v: &mut [u8], off: usize, x: u16) {
    v[off..off + 2].copy_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut [u8], off: usize, x: u32) {
    v[off..off + 4].copy_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut [u8], off: usize, x: u64) {
    v[off..off + 8].copy_from_slice(&x.to_le_bytes());
}

impl ImageBuilder {
    /// An image with one RWX segment of `data` at `vaddr`/`paddr`, entry at its start.
    pub(crate) fn simple(vaddr: u64, paddr: u64, data: Vec<u8>, memsz: u64) -> Self {
        Self {
            entry: vaddr,
            e_type: ET_EXEC,
            segs: vec![Seg {
                vaddr,
                paddr,
                data,
                memsz,
                flags: 7,
            }],
            note_segment: None,
            sections: Vec::new(),
        }
    }

    /// Lays the image out.
    pub(crate) fn build(&self) -> Vec<u8> {
        let phnum = self.segs.len() + usize::from(self.note_segment.is_some());
        let mut out = vec![0u8; EHDR_SIZE + phnum * PHDR_SIZE];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little-endian
        out[6] = 1; // EV_CURRENT
        put16(&mut out, 16, self.e_type);
        put16(&mut out, 18, EM_X86_64);
        put32(&mut out, 20, 1);
        put64(&mut out, 24, self.entry);
        put64(&mut out, 32, EHDR_SIZE as u64);
        put16(&mut out, 52, EHDR_SIZE as u16);
        put16(&mut out, 54, PHDR_SIZE as u16);
        put16(&mut out, 56, phnum as u16);

        let mut phdrs = Vec::new();
        for s in &self.segs {
            pad(&mut out, 16);
            let off = out.len();
            out.extend_from_slice(&s.data);
            phdrs.push((
                PT_LOAD,
                s.flags,
                off,
                s.vaddr,
                s.paddr,
                s.data.len(),
                s.memsz,
            ));
        }
        if let Some(notes) = &self.note_segment {
            pad(&mut out, 4);
            let off = out.len();
            out.extend_from_slice(notes);
            phdrs.push((PT_NOTE, 4, off, 0, 0, notes.len(), notes.len() as u64));
        }
        for (i, (ty, flags, off, va, pa, filesz, memsz)) in phdrs.into_iter().enumerate() {
            let b = EHDR_SIZE + i * PHDR_SIZE;
            put32(&mut out, b, ty);
            put32(&mut out, b + 4, flags);
            put64(&mut out, b + 8, off as u64);
            put64(&mut out, b + 16, va);
            put64(&mut out, b + 24, pa);
            put64(&mut out, b + 32, filesz as u64);
            put64(&mut out, b + 40, memsz);
            put64(&mut out, b + 48, 4096);
        }

        if self.sections.is_empty() {
            return out;
        }
        // Section data, then .shstrtab, then the header table.
        let mut shstrtab = vec![0u8];
        let mut placed = Vec::new();
        for s in &self.sections {
            pad(&mut out, 8);
            let name_off = shstrtab.len();
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
            placed.push((name_off, s.sh_type, out.len(), s.data.len(), s.link));
            out.extend_from_slice(&s.data);
        }
        let name_off = shstrtab.len();
        shstrtab.extend_from_slice(b".shstrtab\0");
        let str_off = out.len();
        out.extend_from_slice(&shstrtab);
        placed.push((name_off, 3, str_off, shstrtab.len(), 0));
        pad(&mut out, 8);
        let shoff = out.len();
        let shnum = placed.len() + 1;
        out.resize(shoff + shnum * SHDR_SIZE, 0);
        for (i, (name, ty, off, size, link)) in placed.iter().enumerate() {
            let b = shoff + (i + 1) * SHDR_SIZE;
            put32(&mut out, b, *name as u32);
            put32(&mut out, b + 4, *ty);
            put64(&mut out, b + 24, *off as u64);
            put64(&mut out, b + 32, *size as u64);
            put32(&mut out, b + 40, *link);
        }
        put64(&mut out, 40, shoff as u64);
        put16(&mut out, 58, SHDR_SIZE as u16);
        put16(&mut out, 60, shnum as u16);
        put16(&mut out, 62, (shnum - 1) as u16);
        out
    }
}

/// A tiny deterministic PRNG (xorshift64*) for fuzz and property tests.
pub(crate) struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mutates `img` in place: a few random bytes, words or a truncation.
    pub(crate) fn mutate(&mut self, img: &mut Vec<u8>) {
        let edits = 1 + self.below(4);
        for _ in 0..edits {
            if img.is_empty() {
                return;
            }
            let pos = self.below(img.len() as u64) as usize;
            match self.below(6) {
                0 => img[pos] = self.next() as u8,
                1 => img[pos] ^= 1 << self.below(8),
                2 => {
                    let v = self.next().to_le_bytes();
                    let n = (img.len() - pos).min(8);
                    img[pos..pos + n].copy_from_slice(&v[..n]);
                }
                3 => img.truncate(pos),
                4 => {
                    let v = [0xffu8; 8];
                    let n = (img.len() - pos).min(8);
                    img[pos..pos + n].copy_from_slice(&v[..n]);
                }
                _ => {
                    // Mutate a header field: the first 64 bytes or the first phdr.
                    let p = self.below(img.len().min(EHDR_SIZE + PHDR_SIZE) as u64) as usize;
                    img[p] = self.next() as u8;
                }
            }
        }
    }
}

/// A minimal 64-bit PV kernel for builder tests: `code` at VIRT_BASE 0xffffffff80000000
/// (entry at its start, hypercall page at +4 KiB, 16 KiB in memory) with the Xen notes a
/// PV kernel carries; `features` is the FEATURES note, if any.
pub(crate) fn pv_kernel(code: Vec<u8>, features: Option<&[u8]>) -> Vec<u8> {
    use dom0_interface::elfnote as n;
    const VBASE: u64 = 0xffff_ffff_8000_0000;
    let mut b = ImageBuilder::simple(VBASE, 0, code, 0x4000);
    let mut notes = Vec::new();
    for (ty, desc) in [
        (n::XEN_ELFNOTE_GUEST_OS, &b"test\0"[..]),
        (n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"),
        (n::XEN_ELFNOTE_LOADER, b"generic\0"),
        (n::XEN_ELFNOTE_VIRT_BASE, &VBASE.to_le_bytes()),
        (n::XEN_ELFNOTE_PADDR_OFFSET, &0u64.to_le_bytes()),
        (n::XEN_ELFNOTE_ENTRY, &VBASE.to_le_bytes()),
        (
            n::XEN_ELFNOTE_HYPERCALL_PAGE,
            &(VBASE + 0x1000).to_le_bytes(),
        ),
    ] {
        notes.extend(note_bytes(b"Xen", ty, desc));
    }
    if let Some(f) = features {
        notes.extend(note_bytes(b"Xen", n::XEN_ELFNOTE_FEATURES, f));
    }
    notes.extend(note_bytes(b"Xen", n::XEN_ELFNOTE_PAE_MODE, b"yes\0"));
    b.note_segment = Some(notes);
    b.build()
}
