//! A domU's console: the `xencons_interface` ring page named by start_info's
//! `console.domU.{mfn,evtchn}` (`public/io/console.h`), as Linux's `hvc_xen` drives it. Output
//! goes into `out` and the backend (dom0) is notified on the event channel; input is read from
//! `in`. The page lies in the bootstrap region, so it is found through the M2P as a pfn of
//! this guest's own 1:1 start-of-day mapping.
//!
//! The index arithmetic works on any [`RingMem`] and is host-tested; the guest uses the
//! mapped page.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::start_info::{StartInfo, StartInfoExt};

/// Offset of `in[1024]`.
pub const IN_OFFSET: usize = 0;
/// Bytes of `in`.
pub const IN_SIZE: u32 = 1024;
/// Offset of `out[2048]`.
pub const OUT_OFFSET: usize = 1024;
/// Bytes of `out`.
pub const OUT_SIZE: u32 = 2048;
/// Offset of `in_cons`.
pub const IN_CONS: usize = 3072;
/// Offset of `in_prod`.
pub const IN_PROD: usize = 3076;
/// Offset of `out_cons`.
pub const OUT_CONS: usize = 3080;
/// Offset of `out_prod`.
pub const OUT_PROD: usize = 3084;

/// Byte and index access to a console ring page (4096 bytes).
pub trait RingMem {
    /// Reads the byte at `off`.
    fn load_u8(&self, off: usize) -> u8;
    /// Writes the byte at `off`.
    fn store_u8(&self, off: usize, v: u8);
    /// Reads the ring index at `off` (4-byte aligned).
    fn load_u32(&self, off: usize) -> u32;
    /// Writes the ring index at `off` (4-byte aligned).
    fn store_u32(&self, off: usize, v: u32);
}

/// Copies as much of `bytes` into `out` as fits, publishes the new `out_prod` after the
/// data, and returns how many bytes went in. A corrupt ring (producer more than a ring
/// ahead of the consumer) takes nothing.
pub fn put_out(mem: &dyn RingMem, bytes: &[u8]) -> usize {
    let cons = mem.load_u32(OUT_CONS);
    let mut prod = mem.load_u32(OUT_PROD);
    let used = prod.wrapping_sub(cons);
    if used > OUT_SIZE {
        return 0;
    }
    let n = bytes.len().min((OUT_SIZE - used) as usize);
    for &b in &bytes[..n] {
        mem.store_u8(OUT_OFFSET + (prod & (OUT_SIZE - 1)) as usize, b);
        prod = prod.wrapping_add(1);
    }
    mem.store_u32(OUT_PROD, prod);
    n
}

/// Takes pending input from `in` into `buf`, publishes the new `in_cons`, and returns the
/// number of bytes taken. A corrupt ring takes nothing.
pub fn take_in(mem: &dyn RingMem, buf: &mut [u8]) -> usize {
    let prod = mem.load_u32(IN_PROD);
    let mut cons = mem.load_u32(IN_CONS);
    let avail = prod.wrapping_sub(cons);
    if avail > IN_SIZE {
        return 0;
    }
    let n = buf.len().min(avail as usize);
    for b in &mut buf[..n] {
        *b = mem.load_u8(IN_OFFSET + (cons & (IN_SIZE - 1)) as usize);
        cons = cons.wrapping_add(1);
    }
    mem.store_u32(IN_CONS, cons);
    n
}

/// The mapped ring page of this domain.
struct Page(u64);

impl Page {
    fn u8_at(&self, off: usize) -> &AtomicU8 {
        // SAFETY: `self.0` is the 4 KiB-aligned console page of the bootstrap region (checked
        // in `attach`), mapped read-write for the whole run and shared only with the backend;
        // `off < 4096` by the callers' constant offsets and ring masks.
        unsafe { &*((self.0 + (off & 4095) as u64) as *const AtomicU8) }
    }
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as for `u8_at`; the index offsets are 4-byte aligned.
        unsafe { &*((self.0 + (off & 4092) as u64) as *const AtomicU32) }
    }
}

impl RingMem for Page {
    fn load_u8(&self, off: usize) -> u8 {
        self.u8_at(off).load(Ordering::Relaxed)
    }
    fn store_u8(&self, off: usize, v: u8) {
        self.u8_at(off).store(v, Ordering::Relaxed)
    }
    fn load_u32(&self, off: usize) -> u32 {
        self.u32_at(off).load(Ordering::SeqCst)
    }
    fn store_u32(&self, off: usize, v: u32) {
        self.u32_at(off).store(v, Ordering::SeqCst)
    }
}

static RING_VA: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// Finds the console ring `si` names in this guest's bootstrap mapping and sends console
/// output there from now on; false (console_io stays) if there is no usable ring.
pub fn attach(si: &StartInfo) -> bool {
    let mfn = si.console_mfn;
    if si.is_initdomain() || mfn == 0 {
        return false;
    }
    let pfn = crate::pvmm::m2p(mfn);
    if pfn >= si.nr_pages || crate::pvmm::pfn_to_mfn(si, pfn) != Some(mfn) {
        return false;
    }
    let Some(va) = crate::smp::virt_base().checked_add(pfn * 4096) else {
        return false;
    };
    // The ring precedes the bootstrap page tables in the start-of-day layout, which maps it.
    if va >= si.pt_base {
        return false;
    }
    RING_PORT.store(si.console_evtchn, Ordering::SeqCst);
    RING_VA.store(va, Ordering::SeqCst);
    true
}

/// The event channel of the attached ring, if any.
pub fn port() -> Option<u32> {
    (RING_VA.load(Ordering::SeqCst) != 0).then(|| RING_PORT.load(Ordering::SeqCst))
}

/// Writes all of `bytes` to the attached ring, notifying the backend and yielding while the
/// ring is full (as `hvc_xen`); false if no ring is attached.
pub fn write(bytes: &[u8]) -> bool {
    let va = RING_VA.load(Ordering::SeqCst);
    if va == 0 {
        return false;
    }
    let page = Page(va);
    let port = RING_PORT.load(Ordering::SeqCst);
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = put_out(&page, rest);
        rest = &rest[n..];
        let _ = crate::evtchn::send(port);
        if !rest.is_empty() {
            let _ = crate::sched::yield_now();
        }
    }
    true
}

/// Reads pending console input from the attached ring into `buf`; `None` without a ring.
pub fn read(buf: &mut [u8]) -> Option<usize> {
    let va = RING_VA.load(Ordering::SeqCst);
    if va == 0 {
        return None;
    }
    let n = take_in(&Page(va), buf);
    if n > 0 {
        let _ = crate::evtchn::send(RING_PORT.load(Ordering::SeqCst));
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    struct Fake(Vec<AtomicU8>);

    impl Fake {
        fn new() -> Fake {
            Fake((0..4096).map(|_| AtomicU8::new(0)).collect())
        }
    }

    impl RingMem for Fake {
        fn load_u8(&self, off: usize) -> u8 {
            self.0[off].load(Ordering::SeqCst)
        }
        fn store_u8(&self, off: usize, v: u8) {
            self.0[off].store(v, Ordering::SeqCst)
        }
        fn load_u32(&self, off: usize) -> u32 {
            u32::from_le_bytes(core::array::from_fn(|i| self.load_u8(off + i)))
        }
        fn store_u32(&self, off: usize, v: u32) {
            for (i, b) in v.to_le_bytes().into_iter().enumerate() {
                self.store_u8(off + i, b);
            }
        }
    }

    #[test]
    fn offsets_match_dom0_interface() {
        use core::mem::offset_of;
        use dom0_interface::console::XenconsInterface as X;
        assert_eq!(offset_of!(X, out), OUT_OFFSET);
        assert_eq!(offset_of!(X, in_cons), IN_CONS);
        assert_eq!(offset_of!(X, in_prod), IN_PROD);
        assert_eq!(offset_of!(X, out_cons), OUT_CONS);
        assert_eq!(offset_of!(X, out_prod), OUT_PROD);
    }

    #[test]
    fn output_fills_the_ring_then_waits_for_the_consumer() {
        let m = Fake::new();
        // Start near the u32 wrap so the free-running indices wrap too.
        m.store_u32(OUT_CONS, u32::MAX - 10);
        m.store_u32(OUT_PROD, u32::MAX - 10);
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert_eq!(put_out(&m, &data), 2048);
        assert_eq!(put_out(&m, &data[2048..]), 0, "full ring takes nothing");
        // The consumer reads 100 bytes: exactly that much room again.
        let cons = m.load_u32(OUT_CONS).wrapping_add(100);
        m.store_u32(OUT_CONS, cons);
        assert_eq!(put_out(&m, &data[2048..]), 100);
        assert_eq!(m.load_u32(OUT_PROD), (u32::MAX - 10).wrapping_add(2148));
        // Byte k of the stream sits at (start + k) mod 2048.
        let start = (u32::MAX - 10) as usize;
        for k in [0usize, 1, 10, 11, 2047] {
            assert_eq!(m.load_u8(OUT_OFFSET + (start + k) % 2048), data[k]);
        }
    }

    #[test]
    fn input_is_taken_up_to_the_producer() {
        let m = Fake::new();
        for (i, b) in b"abc".iter().enumerate() {
            m.store_u8(IN_OFFSET + 1022 + i - if i >= 2 { 1024 } else { 0 }, *b);
        }
        m.store_u32(IN_CONS, 1022);
        m.store_u32(IN_PROD, 1025);
        let mut buf = [0u8; 2];
        assert_eq!(take_in(&m, &mut buf), 2);
        assert_eq!(&buf, b"ab");
        assert_eq!(take_in(&m, &mut buf), 1);
        assert_eq!(buf[0], b'c');
        assert_eq!(take_in(&m, &mut buf), 0);
        assert_eq!(m.load_u32(IN_CONS), 1025);
    }

    #[test]
    fn corrupt_indices_move_nothing() {
        let m = Fake::new();
        m.store_u32(OUT_CONS, 0);
        m.store_u32(OUT_PROD, 5000);
        assert_eq!(put_out(&m, b"x"), 0);
        m.store_u32(IN_CONS, 0);
        m.store_u32(IN_PROD, 2000);
        assert_eq!(take_in(&m, &mut [0u8; 4]), 0);
        assert_eq!(m.load_u32(IN_CONS), 0);
    }

    #[test]
    fn no_ring_means_console_io() {
        assert!(!write(b"x"));
        assert_eq!(read(&mut [0u8; 1]), None);
        assert_eq!(port(), None);
    }
}
