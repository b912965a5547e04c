//! The legacy `__xen_guest` section: `"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0x...,..."`.
//!
//! Parsed as libelf's `elf_xen_parse_guest_info`: comma-separated `NAME=value` pairs up to
//! the first NUL, numbers read like C `strtoull(value, NULL, 0)`.

/// One `NAME=value` pair (a pair without `=` has an empty value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestInfoPair<'a> {
    /// The name, e.g. `VIRT_BASE`.
    pub name: &'a [u8],
    /// The value, e.g. `0xffffffff80000000`.
    pub value: &'a [u8],
}

/// Splits the section's string (up to its first NUL) into pairs.
pub fn guest_info_pairs(section: &[u8]) -> impl Iterator<Item = GuestInfoPair<'_>> {
    let text = match section.iter().position(|&b| b == 0) {
        Some(nul) => &section[..nul],
        None => section,
    };
    text.split(|&b| b == b',')
        .filter(|item| !item.is_empty())
        .map(|item| match item.iter().position(|&b| b == b'=') {
            Some(eq) => GuestInfoPair {
                name: &item[..eq],
                value: &item[eq + 1..],
            },
            None => GuestInfoPair {
                name: item,
                value: &[],
            },
        })
}

/// C `strtoull(s, NULL, 0)`: optional leading whitespace and sign, base from the prefix
/// (`0x` hex, `0` octal, else decimal), digits up to the first invalid character, 0 when
/// there are none, saturating at `u64::MAX` on overflow; a `-` negates modulo 2^64.
pub fn strtoull(s: &[u8]) -> u64 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let hex_digit_follows = s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
    let base: u64 = if s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && hex_digit_follows
    {
        i += 2;
        16
    } else if s.get(i) == Some(&b'0') {
        8
    } else {
        10
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(&c) = s.get(i) {
        let digit = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'z' => u64::from(c - b'a') + 10,
            b'A'..=b'Z' => u64::from(c - b'A') + 10,
            _ => break,
        };
        if digit >= base {
            break;
        }
        match value.checked_mul(base).and_then(|v| v.checked_add(digit)) {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn splits_pairs_up_to_nul() {
        let pairs: Vec<_> =
            guest_info_pairs(b"GUEST_OS=linux,XEN_VER=xen-3.0,,PAE=yes,BSD_SYMTAB\0junk=1")
                .collect();
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[0].name, b"GUEST_OS");
        assert_eq!(pairs[0].value, b"linux");
        assert_eq!(pairs[1].value, b"xen-3.0");
        assert_eq!(pairs[3].name, b"BSD_SYMTAB");
        assert_eq!(pairs[3].value, b"");
    }

    #[test]
    fn strtoull_matches_c() {
        assert_eq!(strtoull(b"0xC0000000"), 0xc000_0000);
        assert_eq!(strtoull(b"  0x10zz"), 0x10);
        assert_eq!(strtoull(b"0755"), 0o755);
        assert_eq!(strtoull(b"0"), 0);
        assert_eq!(strtoull(b"0x"), 0);
        assert_eq!(strtoull(b"1234abc"), 1234);
        assert_eq!(strtoull(b"abc"), 0);
        assert_eq!(strtoull(b""), 0);
        assert_eq!(strtoull(b"-1"), u64::MAX);
        assert_eq!(strtoull(b"+42"), 42);
        assert_eq!(strtoull(b"0xffffffffffffffffff"), u64::MAX);
        assert_eq!(strtoull(b"0x7fffffffffffffff"), 0x7fff_ffff_ffff_ffff);
    }
}
