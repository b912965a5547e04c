//! The 64-bit PV vCPU's CPU-level virtualisation: the virtual IDT and callbacks, the bounce
//! frame Xen builds on the guest kernel stack, `iret`, and the privileged instructions Xen
//! emulates for a ring-3 guest kernel, its LDT paged in on use ([`ldt`]), and its writes to
//! its own page tables ([`ptwr`]).

pub mod bounce;
pub mod cpuid;
pub mod decode;
pub mod desc;
pub mod effect;
pub mod emulate;
pub mod ioports;
pub mod iret;
pub mod ldt;
pub mod msr;
pub mod ptwr;
pub mod segments;
pub mod state;
pub mod string_io;
pub mod vmce;

pub use state::{PvVcpu, TrapEntry};

#[cfg(test)]
mod failsafe_tests;
#[cfg(test)]
mod iobmp_tests;
#[cfg(test)]
mod live_bases_tests;
#[cfg(test)]
mod ptwr_tests;
#[cfg(test)]
mod return_fault_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tsd_tests;
#[cfg(test)]
mod xsetbv_tests;
