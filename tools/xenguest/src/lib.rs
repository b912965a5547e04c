//! libxenguest for DualVisor's dom0: builds a 64-bit PV domU from a kernel ELF as Xen
//! 4.17's libxl/libxenguest do, on Xen 4.17 or DualVisor, step by step through
//! [`tools::builder_plan`] so that a failure rolls everything back.
//!
//! - [`image`]: the domain's start-of-day memory (pure, host-tested);
//! - [`build`]: the build steps over a [`build::Xc`] hypercall interface (host-tested with
//!   a fake hypervisor);
//! - [`live`]: that interface on the real hypercalls (guest-rt);
//! - [`create_pv`], [`map_foreign`]: the entry points dom0 calls.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod build;
pub mod image;
pub mod live;

pub use build::{BuildError, BuildRequest, Built};
pub use live::{
    create_pv, destroy_domain, domain_info, domain_list, map_foreign, physinfo, ForeignPage,
};
