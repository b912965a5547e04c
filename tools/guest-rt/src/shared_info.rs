//! The shared_info page (`public/xen.h`): mapped over a page of this image with
//! `update_va_mapping`, then read and written with atomic operations only.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::errno::Errno;
use crate::mm::{self, pte};
use crate::start_info::StartInfo;

/// Offset of `evtchn_pending[64]`.
pub const EVTCHN_PENDING_OFFSET: usize = 2048;
/// Offset of `evtchn_mask[64]`.
pub const EVTCHN_MASK_OFFSET: usize = 2560;
/// Offset of `wc_version`.
pub const WC_VERSION_OFFSET: usize = 3072;
/// Offset of `arch.max_pfn`.
pub const ARCH_MAX_PFN_OFFSET: usize = 3088;
/// Size of one `struct vcpu_info`.
pub const VCPU_INFO_SIZE: usize = 64;
/// `XEN_LEGACY_MAX_VCPUS`: vcpu_info slots in shared_info.
pub const LEGACY_MAX_VCPUS: u32 = 32;

/// A page-aligned page of this image that the shared_info frame is mapped over.
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: the page is only accessed through atomics (see `SharedInfo`), which are safe to share.
unsafe impl Sync for Page {}

static PAGE: Page = Page(UnsafeCell::new([0; 4096]));
static MAPPED: AtomicBool = AtomicBool::new(false);

/// `struct vcpu_time_info`, read consistently with its version seqlock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTime {
    /// Even version of the snapshot.
    pub version: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// System time (ns since boot) at the last update.
    pub system_time: u64,
    /// TSC to ns multiplier (32.32 fixed point, after the shift).
    pub tsc_to_system_mul: u32,
    /// TSC shift.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
}

impl VcpuTime {
    /// Reads a `vcpu_time_info` through `load32`/`load64` (byte offsets into the structure),
    /// retrying while its version is odd (Xen is updating it) or changed during the read: at
    /// most `tries` times (`None`: until a consistent snapshot comes).
    pub(crate) fn read(
        load32: impl Fn(usize) -> u32,
        load64: impl Fn(usize) -> u64,
        tries: Option<u32>,
    ) -> Option<VcpuTime> {
        let mut left = tries;
        loop {
            if let Some(n) = left.as_mut() {
                if *n == 0 {
                    return None;
                }
                *n -= 1;
            }
            let v1 = load32(0);
            if v1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let tsc_timestamp = load64(8);
            let system_time = load64(16);
            let mul = load32(24);
            let shift_flags = load32(28);
            if load32(0) == v1 {
                return Some(VcpuTime {
                    version: v1,
                    tsc_timestamp,
                    system_time,
                    tsc_to_system_mul: mul,
                    tsc_shift: (shift_flags & 0xff) as u8 as i8,
                    flags: ((shift_flags >> 8) & 0xff) as u8,
                });
            }
        }
    }
}

/// A handle on the mapped shared_info page. Every access is atomic: Xen and other vCPUs write
/// the page concurrently.
#[derive(Clone, Copy, Debug)]
pub struct SharedInfo {
    base: usize,
}

impl SharedInfo {
    /// Maps the shared_info frame named in `si` (once; later calls return the same handle).
    pub fn map(si: &StartInfo) -> Result<SharedInfo, Errno> {
        let va = PAGE.0.get() as u64;
        if !MAPPED.load(Ordering::Acquire) {
            let entry = (si.shared_info & !0xfff & !pte::NX)
                | pte::PRESENT
                | pte::RW
                | pte::ACCESSED
                | pte::DIRTY;
            // SAFETY: the page is reserved for shared_info and only ever accessed through
            // atomics on raw pointers, never through a Rust reference to its old contents.
            unsafe { mm::update_va_mapping(va, entry, mm::UVMF_INVLPG)? };
            MAPPED.store(true, Ordering::Release);
        }
        Ok(SharedInfo { base: va as usize })
    }

    fn u8_at(&self, off: usize) -> &AtomicU8 {
        debug_assert!(off < 4096);
        // SAFETY: `off` is within the mapped 4 KiB page, which lives for the whole program and
        // is only accessed atomically.
        unsafe { &*((self.base + off) as *const AtomicU8) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off < 4096);
        // SAFETY: as for `u8_at`; `off` is 4-byte aligned.
        unsafe { &*((self.base + off) as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off < 4096);
        // SAFETY: as for `u8_at`; `off` is 8-byte aligned.
        unsafe { &*((self.base + off) as *const AtomicU64) }
    }

    fn port_word(port: u32) -> Option<(usize, u64)> {
        (port < crate::evtchn::NR_EVENT_CHANNELS_2L)
            .then(|| ((port / 64) as usize * 8, 1u64 << (port % 64)))
    }

    /// Whether `port` is pending (`false` for ports beyond the 2-level ABI).
    pub fn evtchn_pending(&self, port: u32) -> bool {
        Self::port_word(port).is_some_and(|(w, bit)| {
            self.u64_at(EVTCHN_PENDING_OFFSET + w)
                .load(Ordering::SeqCst)
                & bit
                != 0
        })
    }

    /// Clears `port`'s pending bit; returns whether it was set.
    pub fn clear_evtchn_pending(&self, port: u32) -> bool {
        Self::port_word(port).is_some_and(|(w, bit)| {
            self.u64_at(EVTCHN_PENDING_OFFSET + w)
                .fetch_and(!bit, Ordering::SeqCst)
                & bit
                != 0
        })
    }

    /// Whether `port` is masked.
    pub fn evtchn_masked(&self, port: u32) -> bool {
        Self::port_word(port).is_some_and(|(w, bit)| {
            self.u64_at(EVTCHN_MASK_OFFSET + w).load(Ordering::SeqCst) & bit != 0
        })
    }

    /// Masks (`true`) or unmasks `port` in the guest-owned mask bitmap (unmasking this way
    /// does not re-deliver a pending event; use `EVTCHNOP_unmask` for that).
    pub fn set_evtchn_mask(&self, port: u32, masked: bool) {
        if let Some((w, bit)) = Self::port_word(port) {
            let word = self.u64_at(EVTCHN_MASK_OFFSET + w);
            if masked {
                word.fetch_or(bit, Ordering::SeqCst);
            } else {
                word.fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }

    fn vcpu_off(vcpu: u32) -> Option<usize> {
        (vcpu < LEGACY_MAX_VCPUS).then(|| vcpu as usize * VCPU_INFO_SIZE)
    }

    /// `vcpu_info[vcpu].evtchn_upcall_pending`.
    pub fn upcall_pending(&self, vcpu: u32) -> Option<bool> {
        Self::vcpu_off(vcpu).map(|o| self.u8_at(o).load(Ordering::SeqCst) != 0)
    }

    /// Clears `vcpu_info[vcpu].evtchn_upcall_pending`.
    pub fn clear_upcall_pending(&self, vcpu: u32) {
        if let Some(o) = Self::vcpu_off(vcpu) {
            self.u8_at(o).store(0, Ordering::SeqCst);
        }
    }

    /// `vcpu_info[vcpu].evtchn_upcall_mask`.
    pub fn upcall_mask(&self, vcpu: u32) -> Option<bool> {
        Self::vcpu_off(vcpu).map(|o| self.u8_at(o + 1).load(Ordering::SeqCst) != 0)
    }

    /// Sets `vcpu_info[vcpu].evtchn_upcall_mask`.
    pub fn set_upcall_mask(&self, vcpu: u32, masked: bool) {
        if let Some(o) = Self::vcpu_off(vcpu) {
            self.u8_at(o + 1).store(u8::from(masked), Ordering::SeqCst);
        }
    }

    /// `vcpu_info[vcpu].evtchn_pending_sel`.
    pub fn pending_sel(&self, vcpu: u32) -> Option<u64> {
        Self::vcpu_off(vcpu).map(|o| self.u64_at(o + 8).load(Ordering::SeqCst))
    }

    /// Clears and returns `vcpu_info[vcpu].evtchn_pending_sel`.
    pub fn take_pending_sel(&self, vcpu: u32) -> Option<u64> {
        Self::vcpu_off(vcpu).map(|o| self.u64_at(o + 8).swap(0, Ordering::SeqCst))
    }

    /// `vcpu_info[vcpu].arch.cr2` (the fault address of the last bounced #PF).
    pub fn cr2(&self, vcpu: u32) -> Option<u64> {
        Self::vcpu_off(vcpu).map(|o| self.u64_at(o + 16).load(Ordering::SeqCst))
    }

    /// A consistent snapshot of `vcpu_info[vcpu].time` (retries while Xen updates it).
    pub fn vcpu_time(&self, vcpu: u32) -> Option<VcpuTime> {
        let o = Self::vcpu_off(vcpu)? + 32;
        VcpuTime::read(
            |off| self.u32_at(o + off).load(Ordering::SeqCst),
            |off| self.u64_at(o + off).load(Ordering::SeqCst),
            None,
        )
    }

    /// Current system time in ns for `vcpu`: the `vcpu_time_info` snapshot extended by the TSC
    /// ticks since it was taken (read under the version seqlock). Only meaningful on the vCPU
    /// the caller runs on (`vcpu` must be the current vCPU).
    pub fn system_time_now(&self, vcpu: u32) -> Option<u64> {
        loop {
            let t = self.vcpu_time(vcpu)?;
            let tsc = crate::cpu::rdtsc();
            let again = self.vcpu_time(vcpu)?;
            if again.version == t.version {
                // Modular, as pvclock: with an emulated TSC (Xen's vtsc for domUs) the stamp
                // may be "negative"; a reading just before the stamp counts as no time.
                let delta = match tsc.wrapping_sub(t.tsc_timestamp) {
                    d if (d as i64) < 0 => 0,
                    d => d,
                };
                return Some(t.system_time.wrapping_add(tsc_delta_to_ns(
                    delta,
                    t.tsc_to_system_mul,
                    t.tsc_shift,
                )));
            }
        }
    }

    /// Wall-clock `(version, seconds, nanoseconds)` at system time 0.
    pub fn wallclock(&self) -> (u32, u64, u32) {
        loop {
            let v = self.u32_at(WC_VERSION_OFFSET).load(Ordering::SeqCst);
            let sec = self.u32_at(WC_VERSION_OFFSET + 4).load(Ordering::SeqCst);
            let nsec = self.u32_at(WC_VERSION_OFFSET + 8).load(Ordering::SeqCst);
            let sec_hi = self.u32_at(WC_VERSION_OFFSET + 12).load(Ordering::SeqCst);
            if v & 1 == 0 && self.u32_at(WC_VERSION_OFFSET).load(Ordering::SeqCst) == v {
                return (v, (u64::from(sec_hi) << 32) | u64::from(sec), nsec);
            }
            core::hint::spin_loop();
        }
    }

    /// `arch.max_pfn`.
    pub fn max_pfn(&self) -> u64 {
        self.u64_at(ARCH_MAX_PFN_OFFSET).load(Ordering::SeqCst)
    }

    /// Sets `arch.max_pfn` (the guest's figure Xen reports as XENMEM_maximum_gpfn + 1).
    pub fn set_max_pfn(&self, v: u64) {
        self.u64_at(ARCH_MAX_PFN_OFFSET).store(v, Ordering::SeqCst);
    }
}

/// Converts a TSC delta to nanoseconds with a `vcpu_time_info`'s scale.
pub fn tsc_delta_to_ns(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        delta << shift.unsigned_abs()
    } else {
        delta >> shift.unsigned_abs()
    };
    ((u128::from(shifted) * u128::from(mul)) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_words() {
        assert_eq!(SharedInfo::port_word(0), Some((0, 1)));
        assert_eq!(SharedInfo::port_word(65), Some((8, 2)));
        assert_eq!(SharedInfo::port_word(4095), Some((504, 1 << 63)));
        assert_eq!(SharedInfo::port_word(4096), None);
        assert_eq!(SharedInfo::vcpu_off(31), Some(31 * 64));
        assert_eq!(SharedInfo::vcpu_off(32), None);
    }

    #[test]
    fn tsc_scaling() {
        // mul = 2^32 means 1.0: ns == shifted ticks.
        assert_eq!(tsc_delta_to_ns(1000, u32::MAX, 0), 999);
        assert_eq!(tsc_delta_to_ns(1000, 1 << 31, 1), 1000);
        assert_eq!(tsc_delta_to_ns(1000, 1 << 31, -1), 250);
    }
}
