//! The memory-reading abstraction the boot parsers use, and checked little-endian readers.

use super::MultibootError;

/// Read access to physical memory. Parsers never dereference loader pointers themselves.
pub trait PhysMem {
    /// Copies `buf.len()` bytes starting at physical address `paddr` into `buf`.
    /// Returns `false` (leaving `buf` unspecified) if any byte of the range cannot be read.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

/// A [`PhysMem`] over a byte slice that stands for physical memory starting at `base`.
#[derive(Debug, Clone, Copy)]
pub struct SliceMem<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> SliceMem<'a> {
    /// Physical memory `base .. base + bytes.len()` holding `bytes`.
    pub const fn new(base: u64, bytes: &'a [u8]) -> Self {
        SliceMem { base, bytes }
    }
}

impl PhysMem for SliceMem<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = paddr.checked_sub(self.base) else {
            return false;
        };
        let Ok(off) = usize::try_from(off) else {
            return false;
        };
        let Some(end) = off.checked_add(buf.len()) else {
            return false;
        };
        match self.bytes.get(off..end) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Reads exactly `buf.len()` bytes or fails with [`MultibootError::Unreadable`].
pub(crate) fn read_exact<M: PhysMem + ?Sized>(
    mem: &M,
    paddr: u64,
    buf: &mut [u8],
) -> Result<(), MultibootError> {
    if mem.read(paddr, buf) {
        Ok(())
    } else {
        Err(MultibootError::Unreadable {
            paddr,
            len: buf.len(),
        })
    }
}

/// Little-endian `u32` at byte offset `off` of `b` (the caller guarantees `off + 4 <= b.len()`).
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

/// Little-endian `u64` at byte offset `off` of `b` (the caller guarantees `off + 8 <= b.len()`).
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// Appends `bytes` to `dst` as text: invalid UTF-8 becomes `?`, and text that does not fit is
/// cut at a character boundary. Returns `true` if anything was cut.
pub(crate) fn push_lossy<const N: usize>(dst: &mut heapless::String<N>, bytes: &[u8]) -> bool {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if dst.push(c).is_err() {
                return true;
            }
        }
        if !chunk.invalid().is_empty() && dst.push('?').is_err() {
            return true;
        }
    }
    false
}

/// Longest NUL-terminated string accepted from a loader pointer (Multiboot 1).
pub(crate) const MAX_CSTR: usize = 64 * 1024;

/// Reads the NUL-terminated string at `paddr` (at most [`MAX_CSTR`] bytes) into `dst`.
/// Returns whether it had to be truncated to fit.
pub(crate) fn read_cstr<M: PhysMem + ?Sized, const N: usize>(
    mem: &M,
    paddr: u64,
    what: &'static str,
    dst: &mut heapless::String<N>,
) -> Result<bool, MultibootError> {
    let mut raw: heapless::Vec<u8, N> = heapless::Vec::new();
    let mut overflow = false;
    let mut chunk = [0u8; 64];
    let mut done = 0usize;
    while done < MAX_CSTR {
        let addr = paddr
            .checked_add(done as u64)
            .ok_or(MultibootError::Unreadable { paddr, len: done })?;
        // Near the end of readable memory a full chunk may fail: fall back to one byte.
        let n = if mem.read(addr, &mut chunk) {
            chunk.len()
        } else {
            read_exact(mem, addr, &mut chunk[..1])?;
            1
        };
        let part = &chunk[..n];
        let (text, found_nul) = match part.iter().position(|&b| b == 0) {
            Some(i) => (&part[..i], true),
            None => (part, false),
        };
        let room = N - raw.len();
        if text.len() > room {
            overflow = true;
        }
        // Cannot fail: at most `room` bytes are pushed.
        let _ = raw.extend_from_slice(&text[..text.len().min(room)]);
        if found_nul {
            return Ok(push_lossy(dst, &raw) || overflow);
        }
        done += n;
    }
    Err(MultibootError::UnterminatedString(what))
}

/// Parses a NUL-terminated string that must end inside `bytes` (a Multiboot 2 tag body).
pub(crate) fn bounded_cstr<const N: usize>(
    bytes: &[u8],
    what: &'static str,
    dst: &mut heapless::String<N>,
) -> Result<bool, MultibootError> {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => Ok(push_lossy(dst, &bytes[..i])),
        None => Err(MultibootError::UnterminatedString(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_mem_bounds() {
        let data = [1u8, 2, 3, 4];
        let m = SliceMem::new(0x100, &data);
        let mut b = [0u8; 2];
        assert!(m.read(0x102, &mut b));
        assert_eq!(b, [3, 4]);
        assert!(!m.read(0x103, &mut b));
        assert!(!m.read(0xff, &mut b));
        assert!(!m.read(u64::MAX, &mut b));
        assert!(m.read(0x104, &mut []));
    }

    #[test]
    fn lossy_push_replaces_invalid_and_truncates_on_char_boundary() {
        let mut s: heapless::String<8> = heapless::String::new();
        assert!(!push_lossy(&mut s, b"ab\xffc"));
        assert_eq!(s.as_str(), "ab?c");
        let mut s: heapless::String<4> = heapless::String::new();
        // "aé" = 3 bytes, then "é" needs 2 more: only 1 left.
        assert!(push_lossy(&mut s, "aéé".as_bytes()));
        assert_eq!(s.as_str(), "aé");
    }

    #[test]
    fn cstr_reading_across_chunks_and_edges() {
        // 63 x, then "é" straddling the 64-byte chunk boundary, then "yz" and NUL.
        let mut data = alloc::vec![b'x'; 63];
        data.extend_from_slice("é".as_bytes());
        data.extend_from_slice(b"yz\0");
        let m = SliceMem::new(0x1000, &data);
        let mut s: heapless::String<128> = heapless::String::new();
        assert!(!read_cstr(&m, 0x1000, "t", &mut s).unwrap());
        assert_eq!(s.len(), 63 + 2 + 2);
        assert!(s.ends_with("éyz"));

        // NUL is the last readable byte: must be found by the byte-wise fallback.
        let short = b"hi\0";
        let m = SliceMem::new(0, short);
        let mut s: heapless::String<8> = heapless::String::new();
        assert!(!read_cstr(&m, 0, "t", &mut s).unwrap());
        assert_eq!(s.as_str(), "hi");

        // Runs into unreadable memory without a NUL.
        let m = SliceMem::new(0, b"abc");
        let mut s: heapless::String<8> = heapless::String::new();
        assert!(matches!(
            read_cstr(&m, 0, "t", &mut s),
            Err(MultibootError::Unreadable { .. })
        ));

        // Longer than the destination: truncated, not an error.
        let m = SliceMem::new(0, b"abcdefgh\0");
        let mut s: heapless::String<4> = heapless::String::new();
        assert!(read_cstr(&m, 0, "t", &mut s).unwrap());
        assert_eq!(s.as_str(), "abcd");
    }

    #[test]
    fn cstr_without_nul_within_limit_is_error() {
        let data = alloc::vec![b'a'; MAX_CSTR + 10];
        let m = SliceMem::new(0, &data);
        let mut s: heapless::String<8> = heapless::String::new();
        assert_eq!(
            read_cstr(&m, 0, "cmdline", &mut s),
            Err(MultibootError::UnterminatedString("cmdline"))
        );
    }

    #[test]
    fn bounded_cstr_needs_nul() {
        let mut s: heapless::String<8> = heapless::String::new();
        assert!(bounded_cstr(b"ab\0cd", "x", &mut s).is_ok());
        assert_eq!(s.as_str(), "ab");
        assert_eq!(
            bounded_cstr(b"abcd", "x", &mut s),
            Err(MultibootError::UnterminatedString("x"))
        );
    }
}
