//! dom0's side of a domU console ring in the `domu` and `gnttab2` test guests: drains `out`
//! from the mapped page bytes into a line buffer and types into `in` (the ring layout is
//! guest-rt's [`guest_rt::ring_console`], here over a plain byte page).

use alloc::string::String;
use alloc::vec::Vec;
use guest_rt::ring_console::{
    IN_CONS, IN_OFFSET, IN_PROD, IN_SIZE, OUT_CONS, OUT_OFFSET, OUT_PROD, OUT_SIZE,
};

fn u32_at(page: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&page[off..off + 4]);
    u32::from_le_bytes(b)
}

/// Takes everything between `out_cons` and `out_prod` of the ring `page` into `sink` and
/// advances `out_cons`; returns the byte count (0 for a corrupt ring).
pub fn drain(page: &mut [u8], sink: &mut Vec<u8>) -> usize {
    if page.len() < 4096 {
        return 0;
    }
    let prod = u32_at(page, OUT_PROD);
    let mut cons = u32_at(page, OUT_CONS);
    let n = prod.wrapping_sub(cons);
    if n > OUT_SIZE {
        return 0;
    }
    for _ in 0..n {
        sink.push(page[OUT_OFFSET + (cons & (OUT_SIZE - 1)) as usize]);
        cons = cons.wrapping_add(1);
    }
    page[OUT_CONS..OUT_CONS + 4].copy_from_slice(&cons.to_le_bytes());
    n as usize
}

/// Types as much of `bytes` into the ring's `in` side as fits (the data, then `in_prod`, as
/// a console backend must); returns the byte count (0 for a corrupt ring).
pub fn type_in(page: &mut [u8], bytes: &[u8]) -> usize {
    if page.len() < 4096 {
        return 0;
    }
    let cons = u32_at(page, IN_CONS);
    let mut prod = u32_at(page, IN_PROD);
    let used = prod.wrapping_sub(cons);
    if used > IN_SIZE {
        return 0;
    }
    let n = bytes.len().min((IN_SIZE - used) as usize);
    for &b in &bytes[..n] {
        page[IN_OFFSET + (prod & (IN_SIZE - 1)) as usize] = b;
        prod = prod.wrapping_add(1);
    }
    page[IN_PROD..IN_PROD + 4].copy_from_slice(&prod.to_le_bytes());
    n
}

/// Removes and returns the complete lines (without `\n`) at the front of `buf`.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(i) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=i).collect();
        lines.push(String::from_utf8_lossy(&line[..i]).into_owned());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn drains_across_the_wrap_and_splits_lines() {
        let mut page = vec![0u8; 4096];
        let start = 2046u32;
        for (i, b) in b"ab\ncd\ne".iter().enumerate() {
            page[OUT_OFFSET + ((start as usize + i) % 2048)] = *b;
        }
        page[OUT_CONS..OUT_CONS + 4].copy_from_slice(&start.to_le_bytes());
        page[OUT_PROD..OUT_PROD + 4].copy_from_slice(&(start + 7).to_le_bytes());
        let mut buf = Vec::new();
        assert_eq!(drain(&mut page, &mut buf), 7);
        assert_eq!(u32_at(&page, OUT_CONS), start + 7);
        assert_eq!(take_lines(&mut buf), ["ab", "cd"]);
        assert_eq!(buf, b"e");
        assert_eq!(drain(&mut page, &mut buf), 0);
        page[OUT_PROD..OUT_PROD + 4].copy_from_slice(&(start + 9000).to_le_bytes());
        assert_eq!(drain(&mut page, &mut buf), 0, "corrupt ring");
    }

    #[test]
    fn types_across_the_wrap_up_to_a_full_ring() {
        let mut page = vec![0u8; 4096];
        let start = u32::MAX - 1;
        page[IN_CONS..IN_CONS + 4].copy_from_slice(&start.to_le_bytes());
        page[IN_PROD..IN_PROD + 4].copy_from_slice(&start.to_le_bytes());
        assert_eq!(type_in(&mut page, b"done\n"), 5);
        assert_eq!(u32_at(&page, IN_PROD), start.wrapping_add(5));
        assert_eq!(page[IN_OFFSET + 1022], b'd');
        assert_eq!(page[IN_OFFSET + 1023], b'o');
        assert_eq!(page[IN_OFFSET], b'n');
        assert_eq!(page[IN_OFFSET + 2], b'\n');
        let big = vec![b'x'; 2000];
        assert_eq!(type_in(&mut page, &big), 1019, "only the free room");
        assert_eq!(type_in(&mut page, b"y"), 0, "full");
        page[IN_PROD..IN_PROD + 4].copy_from_slice(&start.wrapping_add(5000).to_le_bytes());
        assert_eq!(type_in(&mut page, b"y"), 0, "corrupt ring");
    }
}
