//! `ptwrdomu`: the `ptwr` guest run as a domU, from dom0. Boot module 2 (dom0's initrd) is
//! the `ptwr` kernel; the test builds it as a PV domU, follows its console until it powers off
//! and requires its own verdict to be SUCCESS: its writable page-table checks as a domU
//! (the assist off makes a domU's direct write fault, unlike dom0's), then destroys it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use domu_guest::peer::{destroy_and_wait, Peer};
use guest_rt::println;
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::{boot_module, StartInfo};
use guest_rt::test::check;

guest_rt::entry!(main);

/// The domain builder's heap.
#[global_allocator]
static HEAP: guest_rt::block_heap::BlockHeap<{ 16 << 20 }> = guest_rt::block_heap::BlockHeap::new();

fn main(si: &StartInfo) {
    println!("ptwrdomu: the ptwr guest as a domU");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("map shared_info: {e}")),
    };
    let Some(kernel) = boot_module() else {
        guest_rt::test::error(format_args!(
            "no boot module 2: pass the ptwr guest's ELF as dom0's initrd"
        ));
    };
    let now = || shared.system_time_now(0).unwrap_or(0);
    let Some(mut peer) = Peer::start(&shared, &now, "ptwrdomu", kernel, "ptwr") else {
        return;
    };
    peer.expect_success();
    check(
        "the domU's direct write faulted with the assist off",
        peer.transcript
            .contains("PASS: without the assist, a domU's write faults"),
    );
    destroy_and_wait(&now, peer.detach());
}
