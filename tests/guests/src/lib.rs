//! Test guests: PV kernels that run checks and print one `Test result:` line. The kernels are
//! the binaries in `src/bin/`; this library holds the small pieces of logic they share.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod bench_stats;
pub mod demo_args;
pub mod pair_guest;
pub mod pingpong;
pub mod tinydom;

/// Whether the space-separated `list` (e.g. the XENVER_capabilities string) contains `token`.
pub fn has_token(list: &str, token: &str) -> bool {
    list.split_ascii_whitespace().any(|t| t == token)
}

/// Whether `bit` is set in a 32-bit feature submap (`false` for bits beyond 31).
pub fn feature_set(submap: u32, bit: u32) -> bool {
    bit < 32 && submap & (1 << bit) != 0
}

/// Whether `buf` holds a NUL-terminated, printable-ASCII string (the form Xen's fixed-size
/// version strings take).
pub fn is_c_string(buf: &[u8]) -> bool {
    match buf.iter().position(|&b| b == 0) {
        Some(end) => buf[..end]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' '),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let caps = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_64";
        assert!(has_token(caps, "xen-3.0-x86_64"));
        assert!(has_token(caps, "hvm-3.0-x86_64"));
        assert!(!has_token(caps, "xen-3.0"));
        assert!(!has_token("", "xen-3.0-x86_64"));
    }

    #[test]
    fn feature_bits() {
        assert!(feature_set(1 << 11, 11));
        assert!(!feature_set(1 << 11, 2));
        assert!(!feature_set(u32::MAX, 32));
    }

    #[test]
    fn c_strings() {
        assert!(is_c_string(b".7\0\0\0"));
        assert!(is_c_string(b"\0"));
        assert!(!is_c_string(b"abc"));
        assert!(!is_c_string(b"a\x01\0"));
    }
}
