//! The PV console ring, mirroring `xen/include/public/io/console.h` (Xen 4.17).
//!
//! Xen 4.17's `struct xencons_interface` ends after `out_prod` (3088 bytes); later Xen
//! releases appended fields that 4.17 does not have.

use crate::guest_abi;

/// `XENCONS_RING_IDX`: free-running ring index.
pub type XenconsRingIdx = u32;

/// Bytes of the input ring (`in`, backend to guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Bytes of the output ring (`out`, guest to backend).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `MASK_XENCONS_IDX(idx, in)`: position of a free-running index in the `in` ring.
pub const fn mask_in_idx(idx: XenconsRingIdx) -> usize {
    idx as usize & (XENCONS_IN_SIZE - 1)
}

/// `MASK_XENCONS_IDX(idx, out)`: position of a free-running index in the `out` ring.
pub const fn mask_out_idx(idx: XenconsRingIdx) -> usize {
    idx as usize & (XENCONS_OUT_SIZE - 1)
}

/// `struct xencons_interface`: the shared console page.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenconsInterface {
    /// Backend-to-guest bytes.
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Guest-to-backend bytes.
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Consumer index of `in` (guest).
    pub in_cons: XenconsRingIdx,
    /// Producer index of `in` (backend).
    pub in_prod: XenconsRingIdx,
    /// Consumer index of `out` (backend).
    pub out_cons: XenconsRingIdx,
    /// Producer index of `out` (guest).
    pub out_prod: XenconsRingIdx,
}
guest_abi!(XenconsInterface {
    r#in,
    out,
    in_cons,
    in_prod,
    out_cons,
    out_prod
});

impl Default for XenconsInterface {
    fn default() -> Self {
        Self {
            r#in: [0; XENCONS_IN_SIZE],
            out: [0; XENCONS_OUT_SIZE],
            in_cons: 0,
            in_prod: 0,
            out_cons: 0,
            out_prod: 0,
        }
    }
}

/// Byte offset of `in_cons` in the page.
pub const XENCONS_IN_CONS_OFFSET: usize = core::mem::offset_of!(XenconsInterface, in_cons);
/// Byte offset of `in_prod`.
pub const XENCONS_IN_PROD_OFFSET: usize = core::mem::offset_of!(XenconsInterface, in_prod);
/// Byte offset of `out_cons`.
pub const XENCONS_OUT_CONS_OFFSET: usize = core::mem::offset_of!(XenconsInterface, out_cons);
/// Byte offset of `out_prod`.
pub const XENCONS_OUT_PROD_OFFSET: usize = core::mem::offset_of!(XenconsInterface, out_prod);

const _: () = assert!(core::mem::size_of::<XenconsInterface>() == 3088);
const _: () = assert!(core::mem::offset_of!(XenconsInterface, out) == 1024);
const _: () = assert!(XENCONS_IN_CONS_OFFSET == 3072);
const _: () = assert!(XENCONS_IN_PROD_OFFSET == 3076);
const _: () = assert!(XENCONS_OUT_CONS_OFFSET == 3080);
const _: () = assert!(XENCONS_OUT_PROD_OFFSET == 3084);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn ring_indices_wrap() {
        assert_eq!(mask_out_idx(2048 + 5), 5);
        assert_eq!(mask_in_idx(u32::MAX), 1023);
    }

    #[test]
    fn interface_round_trip() {
        let mut c = XenconsInterface::default();
        c.out[..5].copy_from_slice(b"hello");
        c.out_prod = 5;
        c.in_cons = 7;
        let b = c.to_vec();
        assert_eq!(&b[1024..1029], b"hello");
        assert_eq!(&b[3084..3088], &[5, 0, 0, 0]);
        assert_eq!(&b[3072..3076], &[7, 0, 0, 0]);
        assert_eq!(XenconsInterface::read_from(&b), Ok(c));
    }
}
