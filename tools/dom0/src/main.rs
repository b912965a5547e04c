//! The DualVisor dom0 kernel: a 64-bit PV kernel on guest-rt that reads its initrd (a cpio
//! archive of guest kernels and xl configs), serves domU consoles and offers a serial shell
//! (`dom0# `) with `help`, `ls`, `cat` and `xl`.
//!
//! Everything that can be tested on the host lives in the `tools` crate (cpio, shell line
//! editing, xl parsing and formats, console rings, lifecycle); this binary wires it to the
//! hypercalls.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod builder;
mod domains;
mod events;
mod host;
mod initrd;
mod out;
mod shell;
mod xl;

use guest_rt::block_heap::BlockHeap;
use guest_rt::start_info::{StartInfo, StartInfoExt};

/// dom0's heap (kernels and configs are read in place from the initrd; this holds the rest).
#[global_allocator]
static HEAP: BlockHeap<{ 16 << 20 }> = BlockHeap::new();

guest_rt::entry!(main);

fn main(si: &StartInfo) {
    out::say(format_args!(
        "DualVisor dom0 {} starting ({} pages, flags {:#x})\n",
        env!("CARGO_PKG_VERSION"),
        si.nr_pages,
        si.flags
    ));
    let archive = initrd::load(si);
    let events = match events::Events::new(si) {
        Ok(e) => e,
        Err(msg) => {
            out::say(format_args!("dom0: {msg}; halting\n"));
            guest_rt::sched::poweroff();
        }
    };
    let mut sh = shell::Shell::new(archive, events, si.cmd_line_str().unwrap_or(""));
    sh.run()
}
