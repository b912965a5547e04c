//! The hypervisor's two console rings, on the hardware side of lockstep: the console ring
//! (Xen's `conring`, every `(XEN) ` line printed, for `xl dmesg`) and dom0's serial input ring
//! (Xen's `serial_rx_ring`). Transactions read them only through the leader's input (indices
//! and 8-byte words) and move their indices only through committed effects.

use spin::Mutex;
use xen_core::console::{CONRING_SIZE, SERIAL_RX_SIZE};

/// A byte ring with free-running consumer and producer indices (`N` a power of two).
pub struct ByteRing<const N: usize> {
    buf: [u8; N],
    cons: u32,
    prod: u32,
}

impl<const N: usize> ByteRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        ByteRing {
            buf: [0; N],
            cons: 0,
            prod: 0,
        }
    }

    fn mask(i: u32) -> usize {
        i as usize & (N - 1)
    }

    /// Appends `b`, dropping the oldest byte when full (the console ring's policy).
    pub fn push_overwrite(&mut self, b: u8) {
        self.buf[Self::mask(self.prod)] = b;
        self.prod = self.prod.wrapping_add(1);
        if self.prod.wrapping_sub(self.cons) > N as u32 {
            self.cons = self.prod.wrapping_sub(N as u32);
        }
    }

    /// Appends `b` unless the ring is full (the serial input ring's policy); false if dropped.
    pub fn push_if_room(&mut self, b: u8) -> bool {
        if self.prod.wrapping_sub(self.cons) >= N as u32 {
            return false;
        }
        self.buf[Self::mask(self.prod)] = b;
        self.prod = self.prod.wrapping_add(1);
        true
    }

    /// Consumer index in bits 0-31, producer in bits 32-63 (a `*_STATE` input value).
    pub fn state(&self) -> u64 {
        u64::from(self.cons) | (u64::from(self.prod) << 32)
    }

    /// Bytes `8i..8i+8` of the buffer, little endian (0 past the end).
    pub fn word(&self, i: u32) -> u64 {
        let mut b = [0u8; 8];
        let start = i as usize * 8;
        if let Some(s) = self.buf.get(start..start + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    }

    /// Moves the consumer index to `cons` if it lies between the current one and the
    /// producer (a committed consumption or clear); anything else is ignored.
    pub fn advance_to(&mut self, cons: u32) {
        let ahead = cons.wrapping_sub(self.cons);
        if ahead <= self.prod.wrapping_sub(self.cons) {
            self.cons = cons;
        }
    }
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The console ring.
pub static CONRING: Mutex<ByteRing<{ CONRING_SIZE as usize }>> = Mutex::new(ByteRing::new());
/// dom0's serial input ring.
pub static SERIAL_RX: Mutex<ByteRing<{ SERIAL_RX_SIZE as usize }>> = Mutex::new(ByteRing::new());

/// Records printed bytes in the console ring (a crashing CPU skips it if the ring is busy).
pub fn record(bytes: &[u8], panicking: bool) {
    let guard = if panicking {
        CONRING.try_lock()
    } else {
        Some(CONRING.lock())
    };
    if let Some(mut r) = guard {
        for &b in bytes {
            r.push_overwrite(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_ring_keeps_the_newest_n_bytes() {
        let mut r: ByteRing<8> = ByteRing::new();
        for b in 0..11u8 {
            r.push_overwrite(b);
        }
        assert_eq!(r.state(), 3 | (11 << 32));
        // Byte i lives at i % 8: 8 9 10 3 4 5 6 7.
        assert_eq!(r.word(0), u64::from_le_bytes([8, 9, 10, 3, 4, 5, 6, 7]));
    }

    #[test]
    fn input_ring_drops_when_full_and_advances_only_forward() {
        let mut r: ByteRing<4> = ByteRing::new();
        assert!((0..4).all(|b| r.push_if_room(b)));
        assert!(!r.push_if_room(9));
        r.advance_to(10); // beyond the producer: ignored
        assert_eq!(r.state() as u32, 0);
        r.advance_to(3);
        assert_eq!(r.state(), 3 | (4 << 32));
        assert!(r.push_if_room(7));
        r.advance_to(2); // backwards: ignored
        assert_eq!(r.state() as u32, 3);
        assert_eq!(r.word(1), 0);
    }

    #[test]
    fn indices_wrap_around_u32() {
        let mut r: ByteRing<4> = ByteRing::new();
        r.cons = u32::MAX - 1;
        r.prod = u32::MAX - 1;
        assert!(r.push_if_room(1) && r.push_if_room(2) && r.push_if_room(3));
        assert_eq!(r.prod, 1);
        r.advance_to(0);
        assert_eq!(r.cons, 0);
    }
}
