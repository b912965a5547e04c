//! The redundancy engine: transactions executed on two replicas, digests, mailbox, coordinator.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod containers;
pub mod digest;
pub mod effects;
pub mod input;
pub mod journal;
pub mod machine;
pub mod mailbox;
pub mod model;
pub mod pair;
pub mod policy;
pub mod role;
pub mod campaign;
pub mod config;
pub mod coordinator;
pub mod engine;
pub mod inject;
pub mod stats;
pub mod replica;
pub mod value;

pub use containers::{JMap, JVec};
pub use digest::{Hasher, TxDigest};
pub use journal::{JCell, Journal, Journaled};
pub use replica::ReplicaState;
pub use value::Value;
