//! Secondary `vcpu_time_info` areas (`VCPUOP_register_vcpu_time_memory_area`): static areas
//! this runtime reserves for Xen to copy a vCPU's time into, registered by guest virtual
//! address and read with their version seqlock.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::errno::{Errno, XenResult};
use crate::hypercall::BadPtr;
use crate::shared_info::VcpuTime;
use crate::vcpu::{op_at, VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA};
use dom0_interface::vcpu::VcpuRegisterTimeMemoryArea;

/// Number of static areas.
pub const SLOTS: usize = 4;

/// One 32-byte `vcpu_time_info`, aligned so that it never crosses a page.
#[repr(C, align(32))]
struct Area([AtomicU64; 4]);

/// The areas, only accessed with atomics here.
static AREAS: [Area; SLOTS] = [const { Area([const { AtomicU64::new(0) }; 4]) }; SLOTS];

/// The words of area `slot`.
fn words(slot: usize) -> Result<&'static [AtomicU64; 4], Errno> {
    AREAS.get(slot).map(|a| &a.0).ok_or(Errno::EINVAL)
}

/// `VCPUOP_register_vcpu_time_memory_area(vcpu, {addr})`.
///
/// # Safety
/// Xen keeps writing a 32-byte `vcpu_time_info` at `addr` from then on: it must be memory
/// reserved for that, or an address Xen cannot write.
unsafe fn register_addr(vcpu: u32, addr: u64) -> XenResult {
    let arg = VcpuRegisterTimeMemoryArea { addr };
    // SAFETY: Xen reads the 8-byte argument; the caller vouches for `addr`.
    unsafe {
        op_at(
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
            vcpu,
            &arg as *const VcpuRegisterTimeMemoryArea as u64,
        )
    }
}

/// Registers static area `slot` (below [`SLOTS`]) as `vcpu`'s secondary time area.
pub fn register(vcpu: u32, slot: usize) -> XenResult {
    let addr = words(slot)?.as_ptr() as u64;
    // SAFETY: the area is a static reserved for Xen's copies and only accessed atomically.
    unsafe { register_addr(vcpu, addr) }
}

/// Registers an address Xen can never write on our behalf as `vcpu`'s time area: Xen refuses
/// it with `-EFAULT`, or accepts it (it checks only the range) and its copies fail.
pub fn register_at(vcpu: u32, addr: BadPtr) -> XenResult {
    // SAFETY: a `BadPtr` is never written by Xen.
    unsafe { register_addr(vcpu, addr.addr()) }
}

/// Registers the null handle: `vcpu` has no time area any more.
pub fn unregister(vcpu: u32) -> XenResult {
    // SAFETY: the null handle makes Xen write nowhere.
    unsafe { register_addr(vcpu, 0) }
}

/// A consistent snapshot of area `slot` (retries while its version is odd or changes, at most
/// a million times); `None` without one.
pub fn read(slot: usize) -> Option<VcpuTime> {
    let w = words(slot).ok()?;
    VcpuTime::read(
        |off| (w[off / 8].load(Ordering::SeqCst) >> ((off % 8) * 8)) as u32,
        |off| w[off / 8].load(Ordering::SeqCst),
        Some(1_000_000),
    )
}

/// The four words of area `slot` as they are (no seqlock).
pub fn raw(slot: usize) -> Option<[u64; 4]> {
    let w = words(slot).ok()?;
    Some(core::array::from_fn(|i| w[i].load(Ordering::SeqCst)))
}

/// Fills area `slot` with `word` (to see whether Xen writes it again).
pub fn fill(slot: usize, word: u64) {
    if let Ok(w) = words(slot) {
        for x in w {
            x.store(word, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(slot: usize, w: [u64; 4]) {
        for (x, v) in AREAS[slot].0.iter().zip(w) {
            x.store(v, Ordering::SeqCst);
        }
    }

    #[test]
    fn reads_the_record_under_its_seqlock() {
        let shift_flags = u64::from(0xffu8) | (1 << 8);
        store(2, [6, 0x1122, 0x3344, 0xdead_beef | (shift_flags << 32)]);
        let t = read(2).unwrap();
        assert_eq!(
            t,
            VcpuTime {
                version: 6,
                tsc_timestamp: 0x1122,
                system_time: 0x3344,
                tsc_to_system_mul: 0xdead_beef,
                tsc_shift: -1,
                flags: 1,
            }
        );
        store(2, [7, 0, 0, 0]);
        assert_eq!(read(2), None, "odd: being updated");
        fill(2, 5);
        assert_eq!(raw(2), Some([5; 4]));
        assert_eq!(read(SLOTS), None);
        assert_eq!(register(0, SLOTS), Err(Errno::EINVAL));
    }
}
