//! dom0's console service for domUs: reading a domain's `xencons_interface` ring (as xenconsoled
//! does) and keeping its recent output ([`OutputLog`]) for `xl console`.
//!
//! The ring page is given as a byte slice (a foreign mapping of the domU's frame); indices are
//! free-running `u32`s masked by the ring sizes, exactly as `public/io/console.h`.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};
use dom0_interface::console::{
    mask_in_idx, mask_out_idx, XENCONS_IN_CONS_OFFSET, XENCONS_IN_PROD_OFFSET, XENCONS_IN_SIZE,
    XENCONS_OUT_CONS_OFFSET, XENCONS_OUT_PROD_OFFSET, XENCONS_OUT_SIZE,
};

/// Offset of `out[]` in the page.
const OUT_OFFSET: usize = XENCONS_IN_SIZE;
/// Bytes of recent output kept per domain.
pub const LOG_CAPACITY: usize = 16 * 1024;
/// The key that leaves `xl console` (Ctrl-]).
pub const DETACH: u8 = 0x1d;

fn get_u32(page: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([page[off], page[off + 1], page[off + 2], page[off + 3]])
}

fn put_u32(page: &mut [u8], off: usize, v: u32) {
    page[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Takes everything the domain wrote to its `out` ring (at most one ring's worth; a producer
/// index further ahead than that is a confused guest and the excess is skipped) and advances
/// `out_cons`. `page` must be at least 4096 bytes (shorter: nothing is read).
pub fn drain_out(page: &mut [u8]) -> Vec<u8> {
    if page.len() < 4096 {
        return Vec::new();
    }
    let cons = get_u32(page, XENCONS_OUT_CONS_OFFSET);
    let prod = get_u32(page, XENCONS_OUT_PROD_OFFSET);
    fence(Ordering::Acquire);
    let mut avail = prod.wrapping_sub(cons) as usize;
    let mut start = cons;
    if avail > XENCONS_OUT_SIZE {
        start = prod.wrapping_sub(XENCONS_OUT_SIZE as u32);
        avail = XENCONS_OUT_SIZE;
    }
    let mut out = Vec::with_capacity(avail);
    for i in 0..avail {
        out.push(page[OUT_OFFSET + mask_out_idx(start.wrapping_add(i as u32))]);
    }
    fence(Ordering::Release);
    put_u32(page, XENCONS_OUT_CONS_OFFSET, prod);
    out
}

/// Puts as much of `input` as fits into the domain's `in` ring; returns the bytes taken.
pub fn push_in(page: &mut [u8], input: &[u8]) -> usize {
    if page.len() < 4096 {
        return 0;
    }
    let cons = get_u32(page, XENCONS_IN_CONS_OFFSET);
    let prod = get_u32(page, XENCONS_IN_PROD_OFFSET);
    fence(Ordering::Acquire);
    let used = prod.wrapping_sub(cons) as usize;
    let free = XENCONS_IN_SIZE.saturating_sub(used);
    let n = free.min(input.len());
    for (i, &b) in input[..n].iter().enumerate() {
        page[mask_in_idx(prod.wrapping_add(i as u32))] = b;
    }
    fence(Ordering::Release);
    put_u32(page, XENCONS_IN_PROD_OFFSET, prod.wrapping_add(n as u32));
    n
}

/// The recent output of one domain: the last [`LOG_CAPACITY`] bytes.
#[derive(Clone, Debug, Default)]
pub struct OutputLog {
    bytes: VecDeque<u8>,
    total: u64,
}

impl OutputLog {
    /// An empty log.
    pub fn new() -> OutputLog {
        OutputLog::default()
    }

    /// Appends output, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let data = &data[data.len().saturating_sub(LOG_CAPACITY)..];
        let excess = (self.bytes.len() + data.len()).saturating_sub(LOG_CAPACITY);
        self.bytes.drain(..excess);
        self.bytes.extend(data.iter().copied());
    }

    /// What is kept, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }

    /// Bytes ever pushed.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Splits console input while attached: the bytes before Ctrl-] go to the domain, and whether
/// Ctrl-] was seen (the rest is dropped, as xl's console client exits there).
pub fn split_detach(input: &[u8]) -> (&[u8], bool) {
    match input.iter().position(|&b| b == DETACH) {
        Some(i) => (&input[..i], true),
        None => (input, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with_out(cons: u32, text: &[u8]) -> Vec<u8> {
        let mut p = alloc::vec![0u8; 4096];
        for (i, &b) in text.iter().enumerate() {
            p[OUT_OFFSET + mask_out_idx(cons.wrapping_add(i as u32))] = b;
        }
        put_u32(&mut p, XENCONS_OUT_CONS_OFFSET, cons);
        put_u32(
            &mut p,
            XENCONS_OUT_PROD_OFFSET,
            cons.wrapping_add(text.len() as u32),
        );
        p
    }

    #[test]
    fn drains_with_wrap() {
        let mut p = page_with_out(u32::MAX - 2, b"hello world");
        assert_eq!(drain_out(&mut p), b"hello world");
        assert_eq!(drain_out(&mut p), b"");
        let mut p = page_with_out(2040, b"0123456789abcdef");
        assert_eq!(drain_out(&mut p), b"0123456789abcdef");
    }

    #[test]
    fn confused_producer_is_bounded() {
        let mut p = alloc::vec![0u8; 4096];
        put_u32(&mut p, XENCONS_OUT_PROD_OFFSET, 1_000_000);
        assert_eq!(drain_out(&mut p).len(), XENCONS_OUT_SIZE);
        assert_eq!(get_u32(&p, XENCONS_OUT_CONS_OFFSET), 1_000_000);
        assert!(drain_out(&mut [0u8; 10]).is_empty());
    }

    #[test]
    fn input_ring_fills_up() {
        let mut p = alloc::vec![0u8; 4096];
        assert_eq!(push_in(&mut p, b"ls\r"), 3);
        assert_eq!(&p[..3], b"ls\r");
        assert_eq!(get_u32(&p, XENCONS_IN_PROD_OFFSET), 3);
        let big = alloc::vec![b'x'; 2000];
        assert_eq!(push_in(&mut p, &big), XENCONS_IN_SIZE - 3);
        assert_eq!(push_in(&mut p, b"y"), 0);
        put_u32(&mut p, XENCONS_IN_CONS_OFFSET, 10);
        assert_eq!(push_in(&mut p, b"yy"), 2);
        assert_eq!(p[0], b'y');
    }

    #[test]
    fn log_keeps_the_tail() {
        let mut l = OutputLog::new();
        l.push(b"abc");
        assert_eq!(l.contents(), b"abc");
        l.push(&alloc::vec![b'z'; LOG_CAPACITY]);
        let c = l.contents();
        assert_eq!(c.len(), LOG_CAPACITY);
        assert!(c.iter().all(|&b| b == b'z'));
        l.push(b"q");
        assert_eq!(*l.contents().last().unwrap(), b'q');
        assert_eq!(l.total(), 3 + LOG_CAPACITY as u64 + 1);
    }

    #[test]
    fn detach_key() {
        assert_eq!(split_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(split_detach(b"ab"), (&b"ab"[..], false));
    }
}
