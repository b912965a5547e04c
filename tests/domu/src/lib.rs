//! The `domu` test guest's host-testable pieces: dom0's reader of a domU console ring.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod console;
