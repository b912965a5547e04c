//! The guest ABI: `#[repr(C)]` mirrors of Xen's public headers, plus DualVisor's extensions.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod elfnote;
