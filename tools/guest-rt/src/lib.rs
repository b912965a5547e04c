//! Guest-side runtime shared by the dom0 kernel and the test guests: the only guest crate
//! with `unsafe` and `asm!` (entry, hypercall stubs, console).
#![cfg_attr(not(test), no_std)]
