//! Everything x86-64: boot, descriptor tables, paging, frames, APICs, SMP, ACPI, UART.
//!
//! This is the only hypervisor crate with `unsafe` and `asm!`; every unsafe block carries a
//! `// SAFETY:` line.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod boot;
pub mod conring;
pub mod console;
pub mod cpu;
pub mod desched;
pub mod entry;
pub mod frame;
pub mod gdt;
pub mod guest;
pub mod guest_context;
pub mod guest_return;
pub mod guestmem;
pub mod heap;
pub mod idt;
pub mod ioapic;
pub mod lapic;
pub mod layout;
pub mod memory;
pub mod multiboot;
pub mod paging;
pub mod percpu;
pub mod physmem;
pub mod platform;
pub mod rt;
pub mod segments;
pub mod selftest;
pub mod serial;
pub mod smp;
pub mod stacks;
pub mod tlb;
pub mod trap;
pub mod xstate;
