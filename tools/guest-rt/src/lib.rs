//! Guest-side runtime shared by the dom0 kernel and the test guests: the only guest crate
//! with `unsafe` and `asm!` (entry, hypercall stubs, console, traps).
//!
//! A guest binary is `#![no_std] #![no_main]`, calls [`entry!`] once with its main function and
//! links with the test guests' linker script. Everything else is ordinary safe Rust on top of
//! the typed hypercall wrappers here, which all return [`XenResult`] (negative errno on error).
#![cfg_attr(not(test), no_std)]

#[cfg(test)]
extern crate std;

pub mod block_heap;
pub mod boot;
pub mod console;
pub mod cpu;
pub mod desc;
pub mod errno;
pub mod evtchn;
pub mod foreign;
pub mod fpu;
pub mod fsgsbase;
pub mod fuzz;
pub mod gnttab;
pub mod hypercall;
pub mod lockstep_ctl;
pub mod mca;
pub mod mm;
pub mod module;
pub mod msr;
pub mod multicall;
pub mod panic;
pub mod physdev;
pub mod portio;
pub mod pt_write;
pub mod pvcpu;
pub mod pvmm;
pub mod readconsole;
pub mod ring_console;
pub mod sched;
pub mod segs;
pub mod shared_info;
pub mod smp;
pub mod start_info;
pub mod test;
pub mod time_area;
pub mod toolstack;
pub mod traps;
pub mod vcpu;
pub mod version;
pub mod xenctl;
pub mod xsave;

pub use errno::{Errno, XenResult};
