//! The `Value` trait: what replica objects, effects and errors must offer to be digested,
//! compared and hit by the fault injector.

use crate::digest::Hasher;
use alloc::vec::Vec;

/// Plain data the engine can digest and the injector can flip bits in.
///
/// `digest` must feed every bit that matters for equality, in a deterministic order (never
/// addresses). `bit_len`/`flip_bit` expose the value's bits to the `replica-state` and
/// `effects` injection kinds; `flip_bit` with `bit >= bit_len()` does nothing. Structs with
/// named fields get all three from [`impl_value!`](crate::impl_value).
pub trait Value: Clone {
    /// Feeds the value into a digest.
    fn digest(&self, h: &mut Hasher);
    /// Number of injectable bits.
    fn bit_len(&self) -> u64;
    /// Flips one bit (models a memory or register upset).
    fn flip_bit(&mut self, bit: u64);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            #[inline]
            fn digest(&self, h: &mut Hasher) {
                h.write_int(*self);
            }
            fn bit_len(&self) -> u64 {
                <$t>::BITS as u64
            }
            fn flip_bit(&mut self, bit: u64) {
                if bit < <$t>::BITS as u64 {
                    *self ^= (1 as $t) << bit;
                }
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! wide_int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn digest(&self, h: &mut Hasher) {
                h.write(&self.to_le_bytes());
            }
            fn bit_len(&self) -> u64 {
                <$t>::BITS as u64
            }
            fn flip_bit(&mut self, bit: u64) {
                if bit < <$t>::BITS as u64 {
                    *self ^= (1 as $t) << bit;
                }
            }
        }
    )*};
}
wide_int_value!(u128, i128);

impl Value for usize {
    fn digest(&self, h: &mut Hasher) {
        h.write_u64(*self as u64);
    }
    fn bit_len(&self) -> u64 {
        usize::BITS as u64
    }
    fn flip_bit(&mut self, bit: u64) {
        if bit < usize::BITS as u64 {
            *self ^= 1 << bit;
        }
    }
}

impl Value for bool {
    #[inline]
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(*self as u8);
    }
    fn bit_len(&self) -> u64 {
        1
    }
    fn flip_bit(&mut self, bit: u64) {
        if bit == 0 {
            *self = !*self;
        }
    }
}

impl Value for () {
    fn digest(&self, _h: &mut Hasher) {}
    fn bit_len(&self) -> u64 {
        0
    }
    fn flip_bit(&mut self, _bit: u64) {}
}

/// Digests a slice with its length; shared by arrays and vectors.
fn digest_slice<T: Value>(s: &[T], h: &mut Hasher) {
    h.write_u64(s.len() as u64);
    for v in s {
        v.digest(h);
    }
}

fn flip_in_slice<T: Value>(s: &mut [T], mut bit: u64) {
    for v in s {
        let n = v.bit_len();
        if bit < n {
            v.flip_bit(bit);
            return;
        }
        bit -= n;
    }
}

impl<T: Value, const N: usize> Value for [T; N] {
    fn digest(&self, h: &mut Hasher) {
        digest_slice(self, h);
    }
    fn bit_len(&self) -> u64 {
        self.iter().map(Value::bit_len).sum()
    }
    fn flip_bit(&mut self, bit: u64) {
        flip_in_slice(self, bit);
    }
}

impl<T: Value> Value for Vec<T> {
    fn digest(&self, h: &mut Hasher) {
        digest_slice(self, h);
    }
    fn bit_len(&self) -> u64 {
        self.iter().map(Value::bit_len).sum()
    }
    fn flip_bit(&mut self, bit: u64) {
        flip_in_slice(self, bit);
    }
}

impl<T: Value> Value for Option<T> {
    fn digest(&self, h: &mut Hasher) {
        match self {
            None => h.write_u8(0),
            Some(v) => {
                h.write_u8(1);
                v.digest(h);
            }
        }
    }
    fn bit_len(&self) -> u64 {
        self.as_ref().map_or(0, Value::bit_len)
    }
    fn flip_bit(&mut self, bit: u64) {
        if let Some(v) = self {
            v.flip_bit(bit);
        }
    }
}

macro_rules! tuple_value {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Value),+> Value for ($($name,)+) {
            fn digest(&self, h: &mut Hasher) {
                $( self.$idx.digest(h); )+
            }
            fn bit_len(&self) -> u64 {
                0 $( + self.$idx.bit_len() )+
            }
            fn flip_bit(&mut self, bit: u64) {
                let mut bit = bit;
                $(
                    let n = self.$idx.bit_len();
                    if bit < n {
                        self.$idx.flip_bit(bit);
                        return;
                    }
                    bit -= n;
                )+
                let _ = bit;
            }
        }
    };
}
tuple_value!(A 0);
tuple_value!(A 0, B 1);
tuple_value!(A 0, B 1, C 2);
tuple_value!(A 0, B 1, C 2, D 3);

/// Implements [`Value`] for a struct with named fields by visiting the listed fields in order:
/// `impl_value!(Vcpu { id, running, regs });`. List every field that matters for equality.
#[macro_export]
macro_rules! impl_value {
    ($ty:ty { $($field:tt),* $(,)? }) => {
        impl $crate::Value for $ty {
            fn digest(&self, h: &mut $crate::Hasher) {
                $( $crate::Value::digest(&self.$field, h); )*
            }
            fn bit_len(&self) -> u64 {
                0 $( + $crate::Value::bit_len(&self.$field) )*
            }
            fn flip_bit(&mut self, bit: u64) {
                let mut bit = bit;
                $(
                    let n = $crate::Value::bit_len(&self.$field);
                    if bit < n {
                        $crate::Value::flip_bit(&mut self.$field, bit);
                        return;
                    }
                    bit -= n;
                )*
                let _ = bit;
            }
        }
    };
}

/// CRC-32C of one value on its own (the per-object checksum).
pub fn checksum<T: Value>(v: &T) -> u32 {
    let mut h = Hasher::new();
    v.digest(&mut h);
    h.finish()
}

/// CRC-32C of a key and its value together (the per-object checksum of map entries).
pub fn checksum_kv<K: Value, V: Value>(k: &K, v: &V) -> u32 {
    let mut h = Hasher::new();
    k.digest(&mut h);
    v.digest(&mut h);
    h.finish()
}

/// Corrects a single flipped bit of `v` given the checksum it should have: tries every
/// one-bit change and keeps the one whose checksum (`sum`) matches. CRC-32C has Hamming
/// distance >= 4 for messages below 2^31 bits, so at most one single-bit change can match:
/// the correction is unique. Returns false (and leaves `v` as it was) if none matches.
pub fn correct_single_bit<T: Value>(v: &mut T, stored: u32, sum: impl Fn(&T) -> u32) -> bool {
    for bit in 0..v.bit_len() {
        v.flip_bit(bit);
        if sum(v) == stored {
            return true;
        }
        v.flip_bit(bit);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[derive(Clone, Debug, PartialEq)]
    struct S {
        a: u32,
        b: bool,
        c: Vec<u16>,
    }
    crate::impl_value!(S { a, b, c });

    #[test]
    fn every_bit_flip_changes_checksum_and_flips_back() {
        let mut s = S {
            a: 7,
            b: false,
            c: vec![1, 2, 3],
        };
        let orig = s.clone();
        let base = checksum(&s);
        assert_eq!(s.bit_len(), 32 + 1 + 48);
        for bit in 0..s.bit_len() {
            s.flip_bit(bit);
            assert_ne!(s, orig, "bit {bit} not flipped");
            assert_ne!(checksum(&s), base, "bit {bit}");
            s.flip_bit(bit);
            assert_eq!(s, orig);
        }
        s.flip_bit(s.bit_len());
        assert_eq!(s, orig, "out-of-range flip must do nothing");
    }

    #[test]
    fn single_bit_errors_are_corrected() {
        let good = S {
            a: 0x1234,
            b: true,
            c: vec![9, 8, 7],
        };
        let stored = checksum(&good);
        for bit in 0..good.bit_len() {
            let mut v = good.clone();
            v.flip_bit(bit);
            assert!(correct_single_bit(&mut v, stored, checksum));
            assert_eq!(v, good);
        }
        let mut two = good.clone();
        two.flip_bit(0);
        two.flip_bit(40);
        let before = two.clone();
        assert!(!correct_single_bit(&mut two, stored, checksum));
        assert_eq!(two, before, "an uncorrectable value is left alone");
    }

    #[test]
    fn option_and_tuple() {
        let mut o: Option<(u8, u64)> = Some((1, 2));
        assert_eq!(o.bit_len(), 72);
        o.flip_bit(8);
        assert_eq!(o, Some((1, 3)));
        let n: Option<u8> = None;
        assert_eq!(n.bit_len(), 0);
        assert_ne!(checksum(&n), checksum(&Some(0u8)));
    }

    #[test]
    fn vec_length_is_digested() {
        let a: Vec<u8> = vec![0];
        let b: Vec<u8> = vec![0, 0];
        assert_ne!(checksum(&a), checksum(&b));
    }
}
