//! The redundancy engine: transactions executed on two replicas, digests, mailbox, coordinator.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
