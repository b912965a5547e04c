//! The guest ABI: `#[repr(C)]` mirrors of Xen's public headers, plus DualVisor's extensions.
//!
//! Every module mirrors one header of Xen 4.17 (`xen/include/public/`), x86-64 layout.
//! Sizes and offsets are pinned by compile-time assertions against values measured from the
//! headers with a C compiler. Structures a hypervisor copies from or to guest memory
//! implement [`GuestAbi`], an explicit little-endian codec that needs no `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod guest_abi;

pub mod arch_x86;
pub mod callback;
pub mod console;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod lockstep_ctl;
pub mod memory;
pub mod physdev;
pub mod platform;
pub mod sched;
pub mod sysctl;
pub mod vcpu;
pub mod version;
pub mod xen;
pub mod xen_mca;

pub use errno::XenErrno;
pub use guest_abi::{AbiError, GuestAbi};
