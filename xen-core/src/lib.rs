//! Portable hypervisor logic: boot options, domains, vCPUs, hypercalls, event channels.
//!
//! No `unsafe`, no `asm!`: everything here runs under host `cargo test`. Hardware is reached
//! only through the small traits this crate defines and `arch` implements.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod builder;
pub mod cmdline;
pub mod console;
pub mod debugkeys;
pub mod domain;
pub mod effect;
pub mod elf;
pub mod evtchn;
pub mod gnttab;
pub mod hv;
pub mod hypercall;
pub mod mm;
pub mod pirq;
pub mod pv;
pub mod pv_layout;
pub mod request;
pub mod sched;
pub mod serial_switch;
pub mod time;
pub mod traps;
pub mod xen_notes;
