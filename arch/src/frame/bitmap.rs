//! Bit operations over a `[u64]` bitmap: one bit per frame, bit `i % 64` of word `i / 64`.

/// Whether bit `i` is set.
pub(super) fn get(bits: &[u64], i: u64) -> bool {
    bits[(i / 64) as usize] & (1u64 << (i % 64)) != 0
}

/// Sets bit `i` to `v`.
pub(super) fn put(bits: &mut [u64], i: u64, v: bool) {
    let w = &mut bits[(i / 64) as usize];
    if v {
        *w |= 1u64 << (i % 64);
    } else {
        *w &= !(1u64 << (i % 64));
    }
}

/// Sets bits `start..end` to `v` (a word at a time where possible).
pub(super) fn put_range(bits: &mut [u64], start: u64, end: u64, v: bool) {
    let mut i = start;
    while i < end {
        if i.is_multiple_of(64) && end - i >= 64 {
            bits[(i / 64) as usize] = if v { u64::MAX } else { 0 };
            i += 64;
        } else {
            put(bits, i, v);
            i += 1;
        }
    }
}

/// Number of set bits in `start..end`.
pub(super) fn count_range(bits: &[u64], start: u64, end: u64) -> u64 {
    let mut i = start;
    let mut n = 0;
    while i < end {
        if i.is_multiple_of(64) && end - i >= 64 {
            n += u64::from(bits[(i / 64) as usize].count_ones());
            i += 64;
        } else {
            n += u64::from(get(bits, i));
            i += 1;
        }
    }
    n
}

/// Index of the first set bit at or after `from` and below `limit`.
pub(super) fn find_set(bits: &[u64], from: u64, limit: u64) -> Option<u64> {
    let mut i = from;
    while i < limit {
        let w = bits[(i / 64) as usize] >> (i % 64);
        if w == 0 {
            i = (i / 64 + 1) * 64;
            continue;
        }
        let found = i + u64::from(w.trailing_zeros());
        return (found < limit).then_some(found);
    }
    None
}

/// Index of the first clear bit at or after `from` and below `limit`.
pub(super) fn find_clear(bits: &[u64], from: u64, limit: u64) -> Option<u64> {
    let mut i = from;
    while i < limit {
        let w = !bits[(i / 64) as usize] >> (i % 64);
        if w == 0 {
            i = (i / 64 + 1) * 64;
            continue;
        }
        let found = i + u64::from(w.trailing_zeros());
        return (found < limit).then_some(found);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_searches() {
        let mut b = [0u64; 4];
        put_range(&mut b, 3, 200, true);
        assert_eq!(count_range(&b, 0, 256), 197);
        assert!(!get(&b, 2) && get(&b, 3) && get(&b, 199) && !get(&b, 200));
        assert_eq!(find_set(&b, 0, 256), Some(3));
        assert_eq!(find_clear(&b, 3, 256), Some(200));
        assert_eq!(find_clear(&b, 3, 150), None);
        put(&mut b, 130, false);
        assert_eq!(find_clear(&b, 3, 256), Some(130));
        assert_eq!(find_set(&b, 200, 256), None);
        assert_eq!(find_set(&b, 199, 256), Some(199));
        put_range(&mut b, 0, 256, false);
        assert_eq!(b, [0; 4]);
        assert_eq!(find_set(&b, 0, 256), None);
    }
}
