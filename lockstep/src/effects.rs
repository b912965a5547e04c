//! The effects buffer: what a handler wants done outside the replica (guest register
//! updates, guest memory writes, event/IPI/timer actions), collected instead of applied.
//! The effect type is the machine's; the buffer is digested together with the handler's
//! result and re-verified against the agreed digest right before it is applied.

use crate::digest::Hasher;
use crate::value::Value;
use alloc::vec::Vec;

/// Effects of one execution, in emission order.
#[derive(Clone, Debug)]
pub struct Effects<E: Value> {
    items: Vec<E>,
}

impl<E: Value> Default for Effects<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Value> Effects<E> {
    /// An empty buffer.
    pub fn new() -> Self {
        Self { items: Vec::new() }
    }

    /// Appends one effect.
    pub fn push(&mut self, e: E) {
        self.items.push(e);
    }

    /// The effects, in order.
    pub fn as_slice(&self) -> &[E] {
        &self.items
    }

    /// The buffer itself, for a sink that takes a committed execution's effects
    /// ([`crate::EffectSink::apply_buffer`]).
    pub fn buffer_mut(&mut self) -> &mut Vec<E> {
        &mut self.items
    }

    /// Number of effects.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the buffer (keeps its memory).
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Feeds every effect into `h`.
    pub fn digest(&self, h: &mut Hasher) {
        h.write_u64(self.items.len() as u64);
        for e in &self.items {
            e.digest(h);
        }
    }

    /// Number of injectable bits.
    pub fn bit_len(&self) -> u64 {
        self.items.iter().map(Value::bit_len).sum()
    }

    /// Flips one bit (modulo the bit length) of one effect (fault injection).
    pub fn flip_bit(&mut self, bit: u64) {
        let total = self.bit_len();
        if total == 0 {
            return;
        }
        self.items.flip_bit(bit % total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(e: &Effects<(u8, u64)>) -> u32 {
        let mut h = Hasher::new();
        e.digest(&mut h);
        h.finish()
    }

    #[test]
    fn digest_sees_order_content_and_flips() {
        let mut a = Effects::new();
        a.push((1u8, 10u64));
        a.push((2, 20));
        let mut b = Effects::new();
        b.push((2u8, 20u64));
        b.push((1, 10));
        assert_ne!(d(&a), d(&b));
        let base = d(&a);
        for bit in 0..a.bit_len() {
            let mut c = a.clone();
            c.flip_bit(bit);
            assert_ne!(d(&c), base);
        }
        a.clear();
        assert!(a.is_empty());
        assert_ne!(d(&a), base);
    }
}
