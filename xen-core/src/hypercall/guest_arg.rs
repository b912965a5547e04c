//! Hypercall arguments copied in from the guest: a small one (every event-channel and most
//! vCPU arguments) in a stack buffer, not a heap allocation per call.

use crate::hv::{Ctx, HvError};
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;

/// Bytes an argument may have and still be kept on the stack.
const INLINE: usize = 64;

/// The raw bytes of an argument copied in from the guest, to change and write back.
pub(crate) enum Raw {
    /// Up to [`INLINE`] bytes: the first `.1` of the array.
    Inline([u8; INLINE], usize),
    /// A larger argument (a vCPU context).
    Heap(Vec<u8>),
}

impl Raw {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Raw {
        if len <= INLINE {
            Raw::Inline([0; INLINE], len)
        } else {
            Raw::Heap(alloc::vec![0; len])
        }
    }
}

impl From<&[u8]> for Raw {
    /// A copy of `b` (on the stack if it is small).
    fn from(b: &[u8]) -> Raw {
        let mut r = Raw::zeroed(b.len());
        r.copy_from_slice(b);
        r
    }
}

impl Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Raw::Inline(b, n) => &b[..*n],
            Raw::Heap(v) => v,
        }
    }
}

impl DerefMut for Raw {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Raw::Inline(b, n) => &mut b[..*n],
            Raw::Heap(v) => v,
        }
    }
}

/// copy_from_guest of a `T` at `addr`: its raw bytes (to write back changed) and its
/// decoding; -EFAULT if the guest's memory cannot be read.
pub(crate) fn read_raw<T: GuestAbi>(
    ctx: &mut Ctx<'_, '_, '_>,
    addr: u64,
) -> Result<(Raw, T), HvError> {
    let mut raw = Raw::zeroed(T::SIZE);
    ctx.copy_from_guest(addr, &mut raw)?;
    let v = T::read_from(&raw).map_err(|_| HvError::Errno(XenErrno::EFAULT))?;
    Ok((raw, v))
}

/// copy_from_guest of a `T` at `addr` (-EFAULT).
pub(crate) fn read<T: GuestAbi>(ctx: &mut Ctx<'_, '_, '_>, addr: u64) -> Result<T, HvError> {
    read_raw(ctx, addr).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_arguments_stay_on_the_stack_and_large_ones_fit_too() {
        for len in [0, 1, 8, 24, INLINE] {
            let mut r = Raw::zeroed(len);
            assert!(matches!(r, Raw::Inline(..)), "{len}");
            assert_eq!(r.len(), len);
            assert!(r.iter().all(|&b| b == 0));
            if let Some(last) = r.last_mut() {
                *last = 7;
            }
            assert_eq!(r.get(len.wrapping_sub(1)).copied(), (len > 0).then_some(7));
        }
        let mut big = Raw::zeroed(INLINE + 1);
        assert!(matches!(big, Raw::Heap(_)));
        assert_eq!(big.len(), INLINE + 1);
        big[INLINE] = 9;
        assert_eq!(big[INLINE], 9);
        let status = Raw::from(&(-3i16).to_le_bytes()[..]);
        assert!(matches!(status, Raw::Inline(_, 2)));
        assert_eq!(&status[..], &[0xfd, 0xff]);
        let long = Raw::from(&[5u8; 100][..]);
        assert!(matches!(long, Raw::Heap(_)) && long.iter().all(|&b| b == 5));
    }
}
