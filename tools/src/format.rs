//! xl's output formats, byte for byte as xl 4.17 prints them (tools/xl/xl_info.c,
//! xl_vcpu.c, xl_utils.c), plus DualVisor's `xl lockstep status`.
//!
//! Every function takes plain data (mapped from the domctl/sysctl structures where Xen has
//! them) and returns the text xl writes to stdout; error texts are returned as `Err` with
//! the text xl writes to stderr.

pub mod info;
pub mod list;
pub mod lockstep;
pub mod misc;
pub mod vcpu;

pub use info::{info, info_field, HostInfo, NodeInfo, PhysInfo, XenInfo};
pub use list::{list, DomainInfo};
pub use lockstep::lockstep_status;
pub use misc::{dmesg, domid, domname, parsing_config, uptime, UptimeEntry};
pub use vcpu::{vcpu_list, VcpuInfo};

use alloc::string::String;
use core::fmt::Write;

/// Writes `s` left-justified in `width` bytes, as C's `%-Ns` (which counts bytes).
pub(crate) fn ljust(out: &mut String, s: &str, width: usize) {
    out.push_str(s);
    for _ in s.len()..width {
        out.push(' ');
    }
}

/// Seconds as xl prints CPU time: `(float)ns / 1e9` (a float promoted to double) with
/// `width` columns and one decimal.
pub(crate) fn seconds(out: &mut String, ns: u64, width: usize) {
    let secs = f64::from(ns as f32) / 1e9;
    let _ = write!(out, "{secs:width$.1}");
}

/// Most CPUs a bitmap is printed for (Xen's largest `NR_CPUS` is 4096); a larger `nr`
/// from a confused caller is cut here rather than looping for billions of bits.
pub const MAX_BITMAP_CPUS: usize = 1 << 16;

/// A CPU bitmap as xl's `print_bitmap`: `all` when every one of the `nr` bits is set,
/// `none` when none is, else ranges such as `0-3,6`. Bits beyond `map` read as clear.
pub fn bitmap(map: &[u8], nr: usize) -> String {
    let nr = nr.min(MAX_BITMAP_CPUS);
    let mut out = String::new();
    let bit = |i: usize| map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
    let mut first = 0;
    let mut state = 0;
    let mut i = 0;
    while i < nr {
        match state {
            0 | 2 => {
                if bit(i) {
                    first = i;
                    state += 1;
                }
            }
            _ => {
                if !bit(i) {
                    range(&mut out, state > 1, first, i - 1);
                    state = 2;
                }
            }
        }
        i += 1;
    }
    match state {
        0 => out.push_str("none"),
        1 if first == 0 => out.push_str("all"),
        1 | 3 => range(&mut out, state > 1, first, i - 1),
        _ => {}
    }
    out
}

fn range(out: &mut String, comma: bool, first: usize, last: usize) {
    if comma {
        out.push(',');
    }
    let _ = write!(out, "{first}");
    if last > first {
        let _ = write!(out, "-{last}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_like_print_bitmap() {
        assert_eq!(bitmap(&[0x0f], 4), "all");
        assert_eq!(bitmap(&[0xff, 0xff], 16), "all");
        assert_eq!(bitmap(&[0], 4), "none");
        assert_eq!(bitmap(&[], 0), "none");
        assert_eq!(bitmap(&[0b0000_0011], 4), "0-1");
        assert_eq!(bitmap(&[0b0100_1101], 8), "0,2-3,6");
        assert_eq!(bitmap(&[0b1000_0000, 0b0000_0001], 16), "7-8");
        assert_eq!(bitmap(&[0b0000_1110], 4), "1-3");
        assert_eq!(bitmap(&[0b0000_0100], 8), "2");
        // Bits beyond nr and beyond the map are ignored/clear.
        assert_eq!(bitmap(&[0xff], 2), "all");
        assert_eq!(bitmap(&[0x01], 12), "0");
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut s: u64 = 5;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..2000 {
            let n = (next() % 5) as usize;
            let doms: alloc::vec::Vec<DomainInfo> = (0..n)
                .map(|i| DomainInfo {
                    domid: next() as u32,
                    name: alloc::format!("d{}\u{e9}{}", i, next() % 1000),
                    current_kib: next(),
                    outstanding_kib: next(),
                    vcpu_online: next() as u32,
                    running: next() % 2 == 0,
                    shutdown: next() % 2 == 0,
                    shutdown_reason: next() as u32,
                    cpu_time_ns: next(),
                    ..DomainInfo::default()
                })
                .collect();
            assert_eq!(list(&doms).lines().count(), n + 1);
            let map = [next() as u8, next() as u8];
            let b = bitmap(&map, (next() % 40) as usize);
            assert!(!b.is_empty());
            let v = VcpuInfo {
                vcpuid: next() as u32,
                cpu: next() as u32,
                online: next() % 2 == 0,
                vcpu_time_ns: next(),
                hard_affinity: map.to_vec(),
                ..VcpuInfo::default()
            };
            let vs = [v];
            assert_eq!(
                vcpu_list(&[("x", next() as u32, &vs)], next() as u32)
                    .lines()
                    .count(),
                2
            );
            let _ = misc::uptime_to_string(next(), next() % 2 == 0);
        }
        assert_eq!(bitmap(&[0xff], usize::MAX), "0-7");
    }

    #[test]
    fn seconds_like_printf() {
        let s = |ns, w| {
            let mut o = String::new();
            seconds(&mut o, ns, w);
            o
        };
        assert_eq!(s(0, 8), "     0.0");
        assert_eq!(s(1_250_000_000, 8), "     1.2");
        assert_eq!(s(1_750_000_000, 8), "     1.8");
        assert_eq!(s(123_456_789_000, 9), "    123.5");
        assert_eq!(s(u64::MAX, 8), "18446744073.7");
    }
}
