//! The domU test guests' host-testable pieces: dom0's side of a domU console ring, and the
//! protocol of the two-domain grant test (`gnttab2` with `gntpeer`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod console;
pub mod grant_peer;
