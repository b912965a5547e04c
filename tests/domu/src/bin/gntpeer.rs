//! `gntpeer`: the domU side of the two-domain grant test. `gnttab2` (dom0) builds this kernel
//! as a domU; it grants page A writable and page B read-only to dom0 (and A once more to
//! another domain), prints the offer on its console, then follows dom0's commands typed into
//! its console ring ([`domu_guest::grant_peer`]), checking at each step what dom0's mappings
//! and copies did to its pages and grant entries, byte for byte: the in-use bits while dom0
//! maps, revocation refused while mapped and allowed after, dom0's writes and copies, and
//! nothing changed by the operations Xen must refuse. It answers each command with an `ack`
//! line, prints its verdict and powers off.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use domu_guest::grant_peer::{
    a_after_copy, a_after_map, pattern, Command, Offer, BACKEND, NOT_BACKEND, SEED_A, SEED_B,
};
use guest_rt::gnttab::{
    self as g, GrantFrame, Window, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, ring_console, sched};

guest_rt::entry!(main);

/// The offer's line and the command buffer.
#[global_allocator]
static HEAP: guest_rt::block_heap::BlockHeap<{ 64 << 10 }> = guest_rt::block_heap::BlockHeap::new();

const DOMID_SELF: u16 = 0x7FF0;
/// `GNTST_okay`.
const OKAY: i16 = 0;
/// Grant references (above the 8 reserved ones).
const G_RW: u32 = 10;
const G_RO: u32 = 11;
const G_OTHER: u32 = 12;
/// How long (system time) to wait for each of dom0's commands.
const COMMAND_LIMIT_NS: u64 = 120_000_000_000;

fn main(si: &StartInfo) {
    if si.is_initdomain() {
        guest_rt::test::error(format_args!(
            "gntpeer is a domU: gnttab2 builds it from its boot module"
        ));
    }
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("map shared_info: {e}")),
    };
    let Some(port) = ring_console::port() else {
        guest_rt::test::error(format_args!("no console ring"));
    };
    g::init_windows(si);
    let (Some(tw), Some(a), Some(b)) = (Window::new(si, 0), Window::new(si, 1), Window::new(si, 2))
    else {
        guest_rt::test::error(format_args!("no windows"));
    };
    let mut frames = [0u64; 1];
    check_eq(
        "setup_table(1 frame)",
        g::setup_table(DOMID_SELF, &mut frames),
        Ok(OKAY),
    );
    let gt = match tw.into_grant_frame(frames[0]) {
        Ok(gt) => gt,
        Err((e, _)) => guest_rt::test::error(format_args!("map the grant-table frame: {e}")),
    };
    check("fill A", a.fill(|i| pattern(SEED_A, i)));
    check("fill B", b.fill(|i| pattern(SEED_B, i)));
    check(
        "grant A writable to dom0",
        gt.set(G_RW, GTF_PERMIT_ACCESS, BACKEND, a.home() as u32),
    );
    check(
        "grant B read-only to dom0",
        gt.set(
            G_RO,
            GTF_PERMIT_ACCESS | GTF_READONLY,
            BACKEND,
            b.home() as u32,
        ),
    );
    check(
        "grant A to another domain",
        gt.set(G_OTHER, GTF_PERMIT_ACCESS, NOT_BACKEND, a.home() as u32),
    );
    let offer = Offer {
        rw: G_RW,
        ro: G_RO,
        other: G_OTHER,
        a_frame: a.home(),
        b_frame: b.home(),
    };
    println!("{}", offer.line());

    let mut input = Vec::new();
    for want in Command::SEQUENCE {
        let Some(got) = next_command(&shared, port, &mut input) else {
            guest_rt::test::error(format_args!("no command from dom0 (wanted {want:?})"));
        };
        check_eq("dom0's next command", got, want);
        match got {
            Command::Mapped => mapped(&gt, &a),
            Command::Copied => copied(&gt, &a, &b),
            Command::Revoke => revoke(&gt),
            Command::Done => done(&gt, &a, &b),
        }
        println!("{}", got.ack());
    }
}

/// Waits for the next line typed into the console ring and parses it.
fn next_command(shared: &SharedInfo, port: u32, input: &mut Vec<u8>) -> Option<Command> {
    let now = || shared.system_time_now(0).unwrap_or(0);
    let t0 = now();
    loop {
        if let Some(i) = input.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = input.drain(..=i).collect();
            let text = core::str::from_utf8(&line).unwrap_or("");
            let cmd = Command::parse(text);
            if cmd.is_none() {
                info(format_args!("unknown command {text:?}"));
            }
            return cmd;
        }
        let mut buf = [0u8; 64];
        let n = ring_console::read(&mut buf).unwrap_or(0);
        input.extend_from_slice(&buf[..n]);
        if n == 0 {
            if now() > t0 + COMMAND_LIMIT_NS {
                return None;
            }
            shared.clear_evtchn_pending(port);
            // Input may have arrived between the read and the clear: look again first.
            let n = ring_console::read(&mut buf).unwrap_or(0);
            input.extend_from_slice(&buf[..n]);
            if n == 0 {
                let _ = sched::poll(&[port], now() + 100_000_000);
            }
        }
    }
}

/// The flags of entry `gref`.
fn flags(gt: &GrantFrame, gref: u32) -> Option<u16> {
    gt.get(gref).map(|e| e.0)
}

/// dom0 maps A writable and B read-only, and wrote A's first half through its mapping.
fn mapped(gt: &GrantFrame, a: &Window) {
    check_eq(
        "A mapped writable by dom0: reading|writing set",
        flags(gt, G_RW),
        Some(GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
    );
    check_eq(
        "B mapped read-only by dom0: reading set",
        flags(gt, G_RO),
        Some(GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING),
    );
    check_eq(
        "the grant to another domain is untouched",
        flags(gt, G_OTHER),
        Some(GTF_PERMIT_ACCESS),
    );
    check_eq(
        "revoking A while dom0 maps it fails (in use)",
        gt.revoke(G_RW).map_err(|f| f & (GTF_READING | GTF_WRITING)),
        Err(GTF_READING | GTF_WRITING),
    );
    check_eq(
        "revoking B while dom0 maps it fails (in use)",
        gt.revoke(G_RO).map_err(|f| f & (GTF_READING | GTF_WRITING)),
        Err(GTF_READING),
    );
    check(
        "A shows dom0's bytes in its first half, its own in the second",
        a.holds(a_after_map),
    );
}

/// dom0 unmapped both pages, copied A's bytes out and its own into A's second half, and was
/// refused a copy into B.
fn copied(gt: &GrantFrame, a: &Window, b: &Window) {
    check_eq(
        "A unmapped: in-use bits cleared",
        flags(gt, G_RW),
        Some(GTF_PERMIT_ACCESS),
    );
    check_eq(
        "B unmapped: in-use bits cleared",
        flags(gt, G_RO),
        Some(GTF_PERMIT_ACCESS | GTF_READONLY),
    );
    check(
        "A holds dom0's mapped writes and its copy, byte for byte",
        a.holds(a_after_copy),
    );
    check(
        "B unchanged (read-only grant)",
        b.holds(|i| pattern(SEED_B, i)),
    );
}

/// Ends dom0's access to both pages.
fn revoke(gt: &GrantFrame) {
    check_eq("revoke A once dom0 unmapped it", gt.revoke(G_RW), Ok(()));
    check_eq("revoke B once dom0 unmapped it", gt.revoke(G_RO), Ok(()));
    check_eq("A's entry is invalid", flags(gt, G_RW), Some(0));
    check_eq("B's entry is invalid", flags(gt, G_RO), Some(0));
}

/// dom0 was refused every use of the revoked grants.
fn done(gt: &GrantFrame, a: &Window, b: &Window) {
    check_eq(
        "refused maps left A's entry alone",
        flags(gt, G_RW),
        Some(0),
    );
    check_eq(
        "refused maps left B's entry alone",
        flags(gt, G_RO),
        Some(0),
    );
    check("A unchanged by the refused copies", a.holds(a_after_copy));
    check("B unchanged", b.holds(|i| pattern(SEED_B, i)));
}
