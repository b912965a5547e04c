//! The domU test guests' shared pieces: dom0's side of a domU console ring and the protocol
//! of the two-domain grant test (`gnttab2` with `gntpeer`), host-tested; the domU a dom0
//! test builds and follows ([`peer`], guest-only).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod console;
pub mod grant_peer;
pub mod peer;
