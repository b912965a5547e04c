//! `gnttab2`: grant map and copy between two domains, run as dom0. Boot module 2 (dom0's
//! initrd) is the `gntpeer` kernel; the test builds it as a PV domU with xenguest, reads the
//! grants it offers on its console ring and drives it by typing commands into the ring
//! ([`domu_guest::grant_peer`]): it maps the writable grant (bytes checked, then written),
//! is refused a writable mapping of the read-only grant and any use of a grant made to
//! another domain, maps the read-only one read-only, copies with `GNTTABOP_copy` out of and
//! into the domU (checked byte for byte here and by the domU), and after the domU revoked
//! both grants is refused every map and copy of them. Each refusal is Xen 4.17's GNTST code.
//! The domU checks its side and powers off; the test destroys it and checks that the free
//! memory comes back. It runs twice: the first run may leave Xen's one-time allocations
//! behind (dom0's first grant mapping allocates its maptrack), the second must give back
//! exactly what it took. A third domU is destroyed while dom0 still maps its page: it stays
//! as Xen keeps it (dying, holding that page) until dom0 unmaps.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;

use dom0_interface::domctl::{
    XenDomctlGetdomaininfo, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_RUNNING,
    XEN_DOMINF_SHUTDOWNSHIFT,
};
use domu_guest::grant_peer::{
    a_after_copy, a_after_map, pattern, Command, Offer, HALF, SEED_A, SEED_B, SEED_COPIED,
    SEED_MAPPED,
};
use domu_guest::peer::{destroy_and_wait, event_arrives, gone, Peer, ESRCH, SETTLE_NS};
use guest_rt::evtchn::{self, VIRQ_DOM_EXC};
use guest_rt::gnttab::{self as g, CopySide, Window, GNTMAP_READONLY};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::{boot_module, StartInfo};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, sched};
use xenguest::{destroy_domain, domain_info, domain_list, physinfo};

guest_rt::entry!(main);

/// The domain builder's heap.
#[global_allocator]
static HEAP: guest_rt::block_heap::BlockHeap<{ 16 << 20 }> = guest_rt::block_heap::BlockHeap::new();

const DOMID_SELF: u16 = 0x7FF0;
// GNTST_* codes.
const OKAY: i16 = 0;
const GENERAL_ERROR: i16 = -1;
const BAD_GNTREF: i16 = -3;
const BAD_HANDLE: i16 = -4;
/// A grant reference beyond the domU's one grant-table frame (512 entries).
const BEYOND_TABLE: u32 = 5000;
/// getdomaininfo's shutdown-code bits of a domain that never shut down (Xen's
/// `SHUTDOWN_CODE_INVALID`, ~0, shifted).
const ZOMBIE_SHUTDOWN_CODE: u32 = 0xffff << XEN_DOMINF_SHUTDOWNSHIFT;

fn free_pages() -> u64 {
    match physinfo() {
        Ok(p) => p.free_pages,
        Err(e) => guest_rt::test::error(format_args!("physinfo: {e}")),
    }
}

fn domains() -> Vec<XenDomctlGetdomaininfo> {
    domain_list(0, 16).unwrap_or_default()
}

/// dom0's four windows: two for grant mappings, two local pages for copies.
struct Windows {
    /// Maps the writable grant.
    rw: Window,
    /// Maps the read-only grant.
    ro: Window,
    /// A local page copies land in.
    sink: Window,
    /// A local page copies come from.
    source: Window,
}

fn main(si: &StartInfo) {
    println!("gnttab2: grant map and copy between dom0 and a domU");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("map shared_info: {e}")),
    };
    let Some(kernel) = boot_module() else {
        guest_rt::test::error(format_args!(
            "no boot module 2: pass the gntpeer kernel as dom0's initrd"
        ));
    };
    g::init_windows(si);
    let win = |k| Window::new(si, k);
    let (Some(rw), Some(ro), Some(sink), Some(source)) = (win(0), win(1), win(2), win(3)) else {
        guest_rt::test::error(format_args!("no windows"));
    };
    let mut w = Windows {
        rw,
        ro,
        sink,
        source,
    };
    let now = || shared.system_time_now(0).unwrap_or(0);
    // Waits until the free memory settles back to `want` (destroyed domains are reclaimed
    // possibly a little after the domctl returned).
    let settle = |want: u64| {
        let t0 = now();
        let mut f = free_pages();
        while f != want && now() < t0 + SETTLE_NS {
            let _ = sched::poll(&[], now() + 10_000_000);
            f = free_pages();
        }
        f
    };
    check_eq("only dom0 exists", domains().len(), 1);
    let free0 = free_pages();
    info(format_args!("free pages before: {free0}"));
    run_peer(&shared, &now, kernel, &mut w, 1);
    check_eq("after destroy: only dom0", domains().len(), 1);
    let free1 = settle(free0);
    info(format_args!(
        "free pages after the first domU: {free1} (before: {free0})"
    ));
    check(
        "the first domU gave back all but Xen's own allocations",
        free1 <= free0 && free1 + 8 >= free0,
    );
    run_peer(&shared, &now, kernel, &mut w, 2);
    check_eq("after destroy: only dom0", domains().len(), 1);
    check_eq(
        "after the second domU: free pages back exactly",
        settle(free1),
        free1,
    );
    destroy_while_mapped(&shared, &now, kernel, &mut w, free1);
    check_eq("after the third domU: only dom0", domains().len(), 1);
    check_eq(
        "after the third domU: free pages back exactly",
        settle(free1),
        free1,
    );
}

/// Builds the gntpeer domU `round` and attaches to it, once it offered its grants.
fn start_peer<'a>(
    shared: &'a SharedInfo,
    now: &'a dyn Fn() -> u64,
    kernel: &[u8],
    round: u32,
) -> Option<(Peer<'a>, Offer)> {
    let mut peer = Peer::start(shared, now, "gnttab2", kernel, &format!("gntpeer{round}"))?;
    let offer = peer.wait_for(Offer::parse);
    check("the domU offered its grants", offer.is_some());
    match offer {
        Some(o) => Some((peer, o)),
        None => {
            destroy_and_wait(now, peer.detach());
            None
        }
    }
}

/// Destroys the domU while dom0 still maps its page A: the domain stays as Xen keeps it
/// (dying, holding that one page, its id taken) until dom0 unmaps, then goes.
fn destroy_while_mapped(
    shared: &SharedInfo,
    now: &dyn Fn() -> u64,
    kernel: &[u8],
    w: &mut Windows,
    free_before: u64,
) {
    let Some((peer, offer)) = start_peer(shared, now, kernel, 3) else {
        return;
    };
    let domid = peer.domid;
    let (r, op) = w.rw.map_grant(domid, offer.rw, 0);
    check_eq("map A writable", (r, op.status), (Ok(0), OKAY));
    peer.detach();
    check_eq(
        "destroy the domU while A is mapped",
        destroy_domain(domid),
        Ok(()),
    );
    // Its vCPUs' scheduling bits are left out: on Xen they keep what they had when it was
    // killed (blocked in its poll, later woken but paused), timing that is no ABI.
    check_eq(
        "the destroyed domU stays, dying, with the one page dom0 maps",
        domain_info(domid).map(|d| {
            (
                d.flags & !(XEN_DOMINF_BLOCKED | XEN_DOMINF_RUNNING),
                d.tot_pages,
            )
        }),
        Ok((XEN_DOMINF_DYING | ZOMBIE_SHUTDOWN_CODE, 1)),
    );
    check_eq(
        "it is listed",
        domains().iter().map(|d| d.domain).collect::<Vec<_>>(),
        alloc::vec![0, domid],
    );
    check("its page is not free", free_pages() < free_before);
    check(
        "A's mapping still shows the domU's bytes",
        w.rw.holds(|i| pattern(SEED_A, i)),
    );
    check_eq(
        "destroying it again succeeds",
        destroy_domain(domid),
        Ok(()),
    );
    check_eq(
        "unmap A after the domU was destroyed",
        w.rw.unmap_grant(op.handle, false, 0),
        (Ok(0), OKAY),
    );
    check_eq(
        "the destroyed domain is gone once unmapped",
        gone(now, domid),
        Some(ESRCH),
    );
}

fn run_peer(
    shared: &SharedInfo,
    now: &dyn Fn() -> u64,
    kernel: &[u8],
    w: &mut Windows,
    round: u32,
) {
    let Ok(exc) = evtchn::bind_virq(VIRQ_DOM_EXC, 0) else {
        check("bind_virq(VIRQ_DOM_EXC)", false);
        return;
    };
    shared.clear_evtchn_pending(exc);
    let Some((mut peer, offer)) = start_peer(shared, now, kernel, round) else {
        let _ = evtchn::close(exc);
        return;
    };
    exchange(&mut peer, &offer, w);
    peer.expect_success();
    let domid = peer.detach();
    check("VIRQ_DOM_EXC fired", event_arrives(shared, now, exc));
    let _ = evtchn::close(exc);
    destroy_and_wait(now, domid);
}

/// Types `cmd` into the domU's console and waits for its acknowledgement.
fn command(peer: &mut Peer<'_>, cmd: Command) -> bool {
    let ack = cmd.ack();
    let acked =
        peer.type_line(cmd.word()) && peer.wait_for(|l| l.contains(&ack).then_some(())).is_some();
    check(&format!("the domU handled '{}'", cmd.word()), acked);
    acked
}

/// The whole exchange with the domU; stops at the first step it does not acknowledge.
fn exchange(peer: &mut Peer<'_>, offer: &Offer, w: &mut Windows) {
    let dom = peer.domid;
    let Some((rw_handle, ro_handle)) = map_step(dom, offer, w) else {
        return;
    };
    if !command(peer, Command::Mapped) {
        return;
    }
    check_eq(
        "unmap A",
        w.rw.unmap_grant(rw_handle, false, 0),
        (Ok(0), OKAY),
    );
    check_eq(
        "unmap B",
        w.ro.unmap_grant(ro_handle, false, 0),
        (Ok(0), OKAY),
    );
    check_eq(
        "unmap A twice -> bad handle",
        w.rw.unmap_grant(rw_handle, false, 0),
        (Ok(0), BAD_HANDLE),
    );
    copy_step(dom, offer, w);
    if !command(peer, Command::Copied) || !command(peer, Command::Revoke) {
        return;
    }
    revoked_step(dom, offer, w);
    command(peer, Command::Done);
}

/// Maps A writable (checks its bytes, writes its first half) and B read-only, with the
/// refusals on the way; the two handles, or None if either mapping failed (then nothing
/// stays mapped).
fn map_step(dom: u16, offer: &Offer, w: &mut Windows) -> Option<(u32, u32)> {
    let (r, op) = w.rw.map_grant(dom, offer.rw, 0);
    let rw_ok = check_eq("map A writable", (r, op.status), (Ok(0), OKAY));
    let rw_handle = op.handle;
    if rw_ok {
        check_eq(
            "A's dev_bus_addr is the frame offered",
            op.dev_bus_addr,
            offer.a_frame << 12,
        );
        check(
            "A's mapping shows the domU's bytes, byte for byte",
            w.rw.holds(|i| pattern(SEED_A, i)),
        );
    }
    let (r, op) = w.ro.map_grant(dom, offer.ro, 0);
    check_eq(
        "read-only grant mapped writable -> general error",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    let (r, op) = w.ro.map_grant(dom, offer.ro, GNTMAP_READONLY);
    let ro_ok = check_eq("map B read-only", (r, op.status), (Ok(0), OKAY));
    let ro_handle = op.handle;
    if ro_ok {
        check_eq(
            "B's dev_bus_addr is the frame offered",
            op.dev_bus_addr,
            offer.b_frame << 12,
        );
        check(
            "B's mapping shows the domU's bytes, byte for byte",
            w.ro.holds(|i| pattern(SEED_B, i)),
        );
    }
    let (r, op) = w.sink.map_grant(dom, offer.other, GNTMAP_READONLY);
    check_eq(
        "a grant made to another domain -> general error",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    let (r, op) = w.sink.map_grant(dom, BEYOND_TABLE, GNTMAP_READONLY);
    check_eq(
        "a gref beyond the domU's table -> bad gntref",
        (r, op.status),
        (Ok(0), BAD_GNTREF),
    );
    if rw_ok && ro_ok {
        check(
            "write A's first half through the mapping",
            (0..HALF).all(|i| w.rw.set_byte(i, pattern(SEED_MAPPED, i))),
        );
        check("A's mapping reads the writes back", w.rw.holds(a_after_map));
        return Some((rw_handle, ro_handle));
    }
    if rw_ok {
        let _ = w.rw.unmap_grant(rw_handle, false, 0);
    }
    if ro_ok {
        let _ = w.ro.unmap_grant(ro_handle, false, 0);
    }
    None
}

/// Copies out of and into the domU's grants.
fn copy_step(dom: u16, offer: &Offer, w: &mut Windows) {
    let gref = |gref, offset| CopySide::Gref { dom, gref, offset };
    let (sink, source) = (&w.sink, &w.source);
    let frame = |win, offset| CopySide::Frame {
        win,
        dom: DOMID_SELF,
        offset,
    };
    check("clear the sink page", sink.fill(|_| 0));
    check(
        "fill the source page",
        source.fill(|i| pattern(SEED_COPIED, i)),
    );
    check_eq(
        "copy A out of the domU (source gref, whole page)",
        g::copy(gref(offer.rw, 0), frame(sink, 0), 4096),
        (Ok(0), OKAY),
    );
    check(
        "the copy holds A's bytes with dom0's mapped writes",
        sink.holds(a_after_map),
    );
    check_eq(
        "copy into A's second half (dest gref)",
        g::copy(
            frame(source, HALF as u16),
            gref(offer.rw, HALF as u16),
            HALF as u16,
        ),
        (Ok(0), OKAY),
    );
    check_eq(
        "copy A out again",
        g::copy(gref(offer.rw, 0), frame(sink, 0), 4096),
        (Ok(0), OKAY),
    );
    check(
        "A holds both halves written from dom0, byte for byte",
        sink.holds(a_after_copy),
    );
    check_eq(
        "copy B out of the domU (read-only grant as source)",
        g::copy(gref(offer.ro, 0), frame(sink, 0), 4096),
        (Ok(0), OKAY),
    );
    check(
        "the copy holds B's bytes",
        sink.holds(|i| pattern(SEED_B, i)),
    );
    check_eq(
        "copy into the read-only grant -> general error",
        g::copy(frame(source, 0), gref(offer.ro, 0), 8),
        (Ok(0), GENERAL_ERROR),
    );
    check_eq(
        "copy from a grant made to another domain -> general error",
        g::copy(gref(offer.other, 0), frame(sink, 0), 8),
        (Ok(0), GENERAL_ERROR),
    );
}

/// Every use of the revoked grants is refused.
fn revoked_step(dom: u16, offer: &Offer, w: &mut Windows) {
    let (r, op) = w.rw.map_grant(dom, offer.rw, 0);
    check_eq(
        "map the revoked A -> general error",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    let (r, op) = w.ro.map_grant(dom, offer.ro, GNTMAP_READONLY);
    check_eq(
        "map the revoked B read-only -> general error",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    let gref = |gref, offset| CopySide::Gref { dom, gref, offset };
    let frame = |win, offset| CopySide::Frame {
        win,
        dom: DOMID_SELF,
        offset,
    };
    check("clear the sink page", w.sink.fill(|_| 0));
    check_eq(
        "copy from the revoked A -> general error",
        g::copy(gref(offer.rw, 0), frame(&w.sink, 0), 8),
        (Ok(0), GENERAL_ERROR),
    );
    check("the refused copy wrote nothing", w.sink.holds(|_| 0));
    check_eq(
        "copy into the revoked A -> general error",
        g::copy(frame(&w.source, 0), gref(offer.rw, 0), 8),
        (Ok(0), GENERAL_ERROR),
    );
}
