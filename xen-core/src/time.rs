//! Time: the TSC-to-nanoseconds scale exactly as Xen's `set_time_scale`/`scale_delta`
//! compute it, the per-vCPU `vcpu_time_info` and the shared_info wall clock, and the
//! guest-memory writes (effects) that publish them under their version seqlocks.
//!
//! System time is nanoseconds since boot. Handlers never read a clock: the TSC and the system
//! time come from the input (`value_kind::TSC`, `value_kind::SYSTEM_TIME`), and the embedder
//! computes the latter from the former with [`TimeBase::system_time`], so both agree.

use crate::effect::Effect;
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::VcpuTimeInfo;
use lockstep::impl_value;

/// Nanoseconds per second (Xen's `MILLISECS(1000)`).
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Offset of `vcpu_info.time` inside a `vcpu_info`.
pub const VCPU_INFO_TIME_OFFSET: u64 = 32;
/// Offset of `wc_version` in shared_info (followed by wc_sec, wc_nsec, wc_sec_hi).
pub const SHARED_INFO_WC_OFFSET: u64 = 3072;

/// A 32.32 fixed-point multiplier applied after a binary shift (Xen's `struct time_scale`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeScale {
    /// Multiplier, a fraction of 2^32.
    pub mul_frac: u32,
    /// Shift applied to the delta first (negative: right).
    pub shift: i8,
}
impl_value!(TimeScale { mul_frac, shift });

/// Xen's `div_frac(dividend, divisor)`: `(dividend << 32) / divisor`, with `dividend < divisor`.
fn div_frac(dividend: u32, divisor: u32) -> u32 {
    ((u64::from(dividend) << 32) / u64::from(divisor)) as u32
}

/// The scale converting ticks of a `ticks_per_sec` clock to ns, as Xen's `set_time_scale`:
/// halve until at most 2e9 (shift down), double until above 1e9 (shift up), then
/// `mul_frac = 1e9 / tps` as a fraction of 2^32. `None` for a zero frequency.
pub fn set_time_scale(ticks_per_sec: u64) -> Option<TimeScale> {
    if ticks_per_sec == 0 {
        return None;
    }
    let mut tps64 = ticks_per_sec;
    let mut shift: i32 = 0;
    while tps64 > NS_PER_SEC * 2 {
        tps64 >>= 1;
        shift -= 1;
    }
    let mut tps32 = tps64 as u32;
    while tps32 <= NS_PER_SEC as u32 {
        tps32 <<= 1;
        shift += 1;
    }
    Some(TimeScale {
        mul_frac: div_frac(NS_PER_SEC as u32, tps32),
        shift: shift as i8,
    })
}

/// Xen's `scale_delta`: shift, then multiply by the fraction (64x32 -> upper 64 of 96 bits).
pub fn scale_delta(delta: u64, scale: TimeScale) -> u64 {
    let shifted = if scale.shift < 0 {
        delta
            .checked_shr(u32::from(scale.shift.unsigned_abs()))
            .unwrap_or(0)
    } else {
        delta.checked_shl(scale.shift as u32).unwrap_or(0)
    };
    ((u128::from(shifted) * u128::from(scale.mul_frac)) >> 32) as u64
}

/// The host's time base: TSC frequency and scale, the TSC at system time 0 and the wall
/// clock at system time 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeBase {
    /// TSC frequency (Hz); 0 until configured.
    pub tsc_hz: u64,
    /// TSC -> ns scale.
    pub scale: TimeScale,
    /// TSC value at system time 0.
    pub boot_tsc: u64,
    /// Wall-clock seconds at system time 0.
    pub wc_sec: u64,
    /// Wall-clock nanoseconds at system time 0.
    pub wc_nsec: u32,
}
impl_value!(TimeBase {
    tsc_hz,
    scale,
    boot_tsc,
    wc_sec,
    wc_nsec
});

impl TimeBase {
    /// A time base for a `tsc_hz` TSC that read `boot_tsc` at system time 0, when the wall
    /// clock said `wc_sec.wc_nsec`. -EINVAL for a zero frequency or nsec >= 1e9.
    pub fn new(tsc_hz: u64, boot_tsc: u64, wc_sec: u64, wc_nsec: u32) -> Result<Self, XenErrno> {
        let scale = set_time_scale(tsc_hz).ok_or(XenErrno::EINVAL)?;
        if u64::from(wc_nsec) >= NS_PER_SEC {
            return Err(XenErrno::EINVAL);
        }
        Ok(TimeBase {
            tsc_hz,
            scale,
            boot_tsc,
            wc_sec,
            wc_nsec,
        })
    }

    /// Whether [`TimeBase::new`] configured it.
    pub fn is_configured(&self) -> bool {
        self.tsc_hz != 0
    }

    /// System time (ns since boot) at `tsc` (0 before boot).
    pub fn system_time(&self, tsc: u64) -> u64 {
        scale_delta(tsc.saturating_sub(self.boot_tsc), self.scale)
    }

    /// The `vcpu_time_info` a vCPU sees at `tsc`, with (even) `version`.
    pub fn vcpu_time_info(&self, version: u32, tsc: u64) -> VcpuTimeInfo {
        VcpuTimeInfo {
            version,
            tsc_timestamp: tsc,
            system_time: self.system_time(tsc),
            tsc_to_system_mul: self.scale.mul_frac,
            tsc_shift: self.scale.shift,
            ..VcpuTimeInfo::default()
        }
    }
}

/// The writes that publish `info` (whose `version` is the new, even version) at machine
/// address `maddr` (8-byte aligned) under the seqlock: version odd, body, version even.
pub fn vcpu_time_effects(maddr: u64, info: &VcpuTimeInfo) -> Vec<Effect> {
    let odd = u64::from(info.version.wrapping_sub(1));
    let word3 = u64::from(info.tsc_to_system_mul)
        | (u64::from(info.tsc_shift as u8) << 32)
        | (u64::from(info.flags) << 40);
    alloc::vec![
        Effect::WriteMachine { maddr, value: odd },
        Effect::WriteMachine {
            maddr: maddr + 8,
            value: info.tsc_timestamp,
        },
        Effect::WriteMachine {
            maddr: maddr + 16,
            value: info.system_time,
        },
        Effect::WriteMachine {
            maddr: maddr + 24,
            value: word3,
        },
        Effect::WriteMachine {
            maddr,
            value: u64::from(info.version),
        },
    ]
}

/// The guest writes that copy `info` (whose `version` is the new, even version) to a
/// secondary time area, each at the area's start, in Xen 4.17's `update_secondary_system_time`
/// order: the odd version alone, the whole `vcpu_time_info` with the odd version, then the
/// even version.
pub fn time_area_writes(info: &VcpuTimeInfo) -> [Vec<u8>; 3] {
    let odd = info.version.wrapping_sub(1);
    let body = VcpuTimeInfo {
        version: odd,
        ..*info
    };
    [
        odd.to_le_bytes().to_vec(),
        body.to_vec(),
        info.version.to_le_bytes().to_vec(),
    ]
}

/// The writes that publish the wall clock `sec.nsec` (at system time 0) in the shared_info
/// page at `shared_info_maddr` with the new even `version`, under its seqlock.
pub fn wallclock_effects(shared_info_maddr: u64, version: u32, sec: u64, nsec: u32) -> Vec<Effect> {
    let at = shared_info_maddr + SHARED_INFO_WC_OFFSET;
    let sec_lo = sec & 0xffff_ffff;
    let sec_hi = sec >> 32;
    alloc::vec![
        Effect::WriteMachine {
            maddr: at,
            value: u64::from(version.wrapping_sub(1)) | (sec_lo << 32),
        },
        Effect::WriteMachine {
            maddr: at + 8,
            value: u64::from(nsec) | (sec_hi << 32),
        },
        Effect::WriteMachine {
            maddr: at,
            value: u64::from(version) | (sec_lo << 32),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[test]
    fn scale_matches_xen_for_known_frequencies() {
        // 1 GHz: doubled once to 2e9, mul 0.5.
        assert_eq!(
            set_time_scale(1_000_000_000),
            Some(TimeScale {
                mul_frac: 1 << 31,
                shift: 1
            })
        );
        // 2 GHz: not above 2e9, so no shift down; not <= 1e9: mul = 1e9/2e9.
        assert_eq!(
            set_time_scale(2_000_000_000),
            Some(TimeScale {
                mul_frac: 1 << 31,
                shift: 0
            })
        );
        // 3 GHz: halved once to 1.5e9, mul = 2^32 * 2/3.
        assert_eq!(
            set_time_scale(3_000_000_000),
            Some(TimeScale {
                mul_frac: 0xaaaa_aaaa,
                shift: -1
            })
        );
        // Xen 4.17 under QEMU (TSC ~2.6 GHz) published mul 0xc5372049, shift -1: the
        // frequency that gives it is 1e9 * 2^32 / 0xc5372049 * 2.
        let tps = ((NS_PER_SEC as u128) << 33) / 0xc537_2049u128;
        let s = set_time_scale(tps as u64).unwrap();
        assert_eq!(s.shift, -1);
        assert!((i64::from(s.mul_frac) - 0xc537_2049i64).abs() <= 1, "{s:?}");
        // A slow 10 MHz clock: doubled up past 1e9.
        let s = set_time_scale(10_000_000).unwrap();
        assert_eq!(s.shift, 7);
        assert_eq!(scale_delta(10_000_000, s), 1_000_000_000);
        assert_eq!(set_time_scale(0), None);
    }

    #[test]
    fn scale_delta_converts_a_second_of_ticks_to_a_second() {
        for hz in [
            1_000_000u64,
            14_318_180,
            1_000_000_000,
            1_999_999_999,
            2_000_000_001,
            2_600_000_000,
            3_700_000_000,
            5_000_000_000,
        ] {
            let s = set_time_scale(hz).unwrap();
            assert!((s.mul_frac as u64) >= 1 << 31, "{hz}: {s:?}");
            let ns = scale_delta(hz, s);
            assert!(
                ns.abs_diff(NS_PER_SEC) <= NS_PER_SEC / 1_000_000,
                "{hz} Hz: a second of ticks is {ns} ns"
            );
            // Monotonic in the delta.
            assert!(scale_delta(hz + 1, s) >= ns);
        }
    }

    #[test]
    fn guest_formula_agrees_with_the_hypervisor() {
        let tb = TimeBase::new(2_600_000_000, 1_000, 1_700_000_000, 5).unwrap();
        let info = tb.vcpu_time_info(4, 2_600_001_000);
        assert_eq!(info.system_time, tb.system_time(2_600_001_000));
        for later in [2_600_001_000u64, 2_600_002_000, 9_999_999_999] {
            let guest = info.system_time_at(later);
            assert!(guest.abs_diff(tb.system_time(later)) <= 1, "{later}");
        }
        assert_eq!(tb.system_time(0), 0, "before boot reads as 0");
        assert_eq!(TimeBase::new(0, 0, 0, 0), Err(XenErrno::EINVAL));
        assert_eq!(TimeBase::new(1, 0, 0, 1_000_000_000), Err(XenErrno::EINVAL));
    }

    fn apply(effects: &[Effect], mem: &mut BTreeMap<u64, u64>, upto: usize) {
        for e in effects.iter().take(upto) {
            if let Effect::WriteMachine { maddr, value } = e {
                mem.insert(*maddr, *value);
            }
        }
    }

    #[test]
    fn time_info_writes_follow_the_seqlock() {
        let tb = TimeBase::new(3_000_000_000, 0, 0, 0).unwrap();
        let info = tb.vcpu_time_info(6, 123_456);
        let fx = vcpu_time_effects(0x5000 + 32, &info);
        let mut mem = BTreeMap::new();
        for upto in 1..fx.len() {
            apply(&fx, &mut mem, upto);
            assert_eq!(mem[&0x5020] & 1, 1, "odd while updating");
        }
        apply(&fx, &mut mem, fx.len());
        let mut bytes = alloc::vec::Vec::new();
        for off in [0u64, 8, 16, 24] {
            bytes.extend_from_slice(&mem[&(0x5020 + off)].to_le_bytes());
        }
        assert_eq!(VcpuTimeInfo::read_from(&bytes), Ok(info));
    }

    #[test]
    fn time_area_writes_follow_the_seqlock() {
        let tb = TimeBase::new(3_000_000_000, 0, 0, 0).unwrap();
        let old = tb.vcpu_time_info(6, 100);
        let info = tb.vcpu_time_info(8, 123_456);
        let mut area = old.to_vec();
        let writes = time_area_writes(&info);
        assert_eq!(writes.each_ref().map(|w| w.len()), [4, 32, 4]);
        let seen: alloc::vec::Vec<VcpuTimeInfo> = writes
            .iter()
            .map(|w| {
                area[..w.len()].copy_from_slice(w);
                VcpuTimeInfo::read_from(&area).unwrap()
            })
            .collect();
        assert_eq!(
            seen[0],
            VcpuTimeInfo { version: 7, ..old },
            "odd first, body untouched"
        );
        assert_eq!(
            seen[1],
            VcpuTimeInfo { version: 7, ..info },
            "body under the odd version"
        );
        assert_eq!(seen[2], info, "even at the end");
    }

    #[test]
    fn wallclock_writes_follow_the_seqlock() {
        let fx = wallclock_effects(0x9000, 2, 0x1_2345_6789, 42);
        let mut mem = BTreeMap::new();
        apply(&fx, &mut mem, 1);
        assert_eq!(mem[&(0x9000 + 3072)] & 0xffff_ffff, 1);
        apply(&fx, &mut mem, fx.len());
        let w0 = mem[&(0x9000 + 3072)];
        let w1 = mem[&(0x9000 + 3080)];
        assert_eq!(w0 & 0xffff_ffff, 2);
        assert_eq!(w0 >> 32, 0x2345_6789, "wc_sec");
        assert_eq!(w1 & 0xffff_ffff, 42, "wc_nsec");
        assert_eq!(w1 >> 32, 1, "wc_sec_hi");
    }
}
