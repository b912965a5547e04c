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
use alloc::string::String;
use alloc::vec::Vec;

use dom0_interface::domctl::{
    XenDomctlGetdomaininfo, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_RUNNING,
    XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNSHIFT,
};
use domu_guest::console::{drain, take_lines, type_in};
use domu_guest::grant_peer::{
    a_after_copy, a_after_map, pattern, Command, Offer, HALF, SEED_A, SEED_B, SEED_COPIED,
    SEED_MAPPED,
};
use guest_rt::evtchn::{self, VIRQ_DOM_EXC};
use guest_rt::gnttab::{self as g, CopySide, Window, GNTMAP_READONLY};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::{boot_module, StartInfo};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, sched};
use tools::xlcfg::DomainConfig;
use xenguest::{
    create_pv, destroy_domain, domain_info, domain_list, map_foreign, physinfo, BuildRequest,
    Built, ForeignPage,
};

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
/// How long (system time) the domU may take for each step and to power off.
const STEP_LIMIT_NS: u64 = 120_000_000_000;
/// How long destroyed domains may take to disappear and give their memory back.
const SETTLE_NS: u64 = 10_000_000_000;
/// `-ESRCH`.
const ESRCH: i32 = -3;
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

/// Builds the domU (not started through `run_peer`'s exchange) and returns it with its
/// console, once it offered its grants.
fn start_peer<'a>(
    shared: &'a SharedInfo,
    now: &'a dyn Fn() -> u64,
    kernel: &[u8],
    round: u32,
) -> Option<(Peer<'a>, Offer)> {
    let built = build(kernel, round)?;
    let con = evtchn::bind_interdomain(built.domid, built.console_port);
    let ring = map_foreign(built.domid, built.console_mfn);
    check(
        "bind the console port and map the ring",
        con.is_ok() && ring.is_ok(),
    );
    let (Ok(con), Ok(ring)) = (con, ring) else {
        let _ = destroy_domain(built.domid);
        return None;
    };
    let mut peer = Peer {
        shared,
        now,
        domid: built.domid,
        con,
        ring,
        pending: Vec::new(),
        transcript: String::new(),
    };
    let offer = peer.wait_for(Offer::parse);
    check("the domU offered its grants", offer.is_some());
    Some((peer, offer?))
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
    let _ = evtchn::close(peer.con);
    drop(peer);
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

/// The domU as dom0 sees it: its console ring and the lines read from it.
struct Peer<'a> {
    shared: &'a SharedInfo,
    now: &'a dyn Fn() -> u64,
    domid: u16,
    /// dom0's end of the console event channel.
    con: u32,
    ring: ForeignPage,
    pending: Vec<u8>,
    /// Everything the domU printed.
    transcript: String,
}

impl Peer<'_> {
    /// Reads the ring, echoes complete lines and returns them.
    fn pump(&mut self) -> Vec<String> {
        drain(self.ring.as_mut_slice(), &mut self.pending);
        let lines = take_lines(&mut self.pending);
        for line in &lines {
            // Echo without the domU's own verdict wording (this test prints its own).
            println!(
                "gnttab2: [dom{}] {}",
                self.domid,
                line.replace("Test result:", "verdict:")
            );
            self.transcript.push_str(line);
            self.transcript.push('\n');
        }
        lines
    }

    /// Whether the domU has shut down.
    fn shut_down(&self) -> Option<u32> {
        let i = domain_info(self.domid).ok()?;
        (i.flags & XEN_DOMINF_SHUTDOWN != 0).then(|| i.shutdown_code())
    }

    /// Reads lines until `f` accepts one, the domU shuts down or the step's time is up.
    fn wait_for<T>(&mut self, f: impl Fn(&str) -> Option<T>) -> Option<T> {
        let t0 = (self.now)();
        loop {
            for line in self.pump() {
                if let Some(v) = f(&line) {
                    return Some(v);
                }
            }
            if (self.now)() > t0 + STEP_LIMIT_NS || self.shut_down().is_some() {
                // One last look at what it wrote before it went.
                return self.pump().iter().find_map(|l| f(l));
            }
            let _ = sched::poll(&[self.con], (self.now)() + 50_000_000);
            self.shared.clear_evtchn_pending(self.con);
        }
    }

    /// Types `cmd` into the domU's console and waits for its acknowledgement.
    fn command(&mut self, cmd: Command) -> bool {
        let line = format!("{}\n", cmd.word());
        let typed = type_in(self.ring.as_mut_slice(), line.as_bytes());
        let _ = evtchn::send(self.con);
        let ack = cmd.ack();
        let acked =
            typed == line.len() && self.wait_for(|l| l.contains(&ack).then_some(())).is_some();
        check(&format!("the domU handled '{}'", cmd.word()), acked);
        acked
    }
}

/// Builds and starts the gntpeer domU `round`.
fn build(kernel: &[u8], round: u32) -> Option<Built> {
    let text = format!(
        "name = \"gntpeer{round}\"\ntype = \"pv\"\nkernel = \"/boot/gntpeer.elf\"\n\
         memory = 8\nvcpus = 1\non_poweroff = \"destroy\"\n"
    );
    let cfg = match DomainConfig::parse("gntpeer.cfg", &text) {
        Ok(p) => p.config,
        Err(e) => guest_rt::test::error(format_args!("config: {e:?}")),
    };
    match create_pv(&BuildRequest {
        config: &cfg,
        kernel,
        ramdisk: None,
        paused: false,
    }) {
        Ok(b) => {
            info(format_args!("round {round}: built domain {}", b.domid));
            check("gntpeer domU built", b.domid != 0);
            Some(b)
        }
        Err(e) => {
            info(format_args!("build: {e}"));
            check("gntpeer domU built", false);
            None
        }
    }
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
    let domid = peer.domid;
    exchange(&mut peer, &offer, w);
    // Reads its last lines until it shuts down.
    let _ = peer.wait_for(|_| None::<()>);
    check_eq("the domU powered off", peer.shut_down(), Some(0));
    check(
        "the domU's own checks passed",
        peer.transcript.contains("Test result: SUCCESS"),
    );
    let _ = evtchn::close(peer.con);
    drop(peer);
    check("VIRQ_DOM_EXC fired", shared.clear_evtchn_pending(exc));
    let _ = evtchn::close(exc);
    check_eq("destroydomain", destroy_domain(domid), Ok(()));
    check_eq("destroyed domain is gone", gone(now, domid), Some(ESRCH));
}

/// Waits until `domid` no longer exists: its last domctl error.
fn gone(now: &dyn Fn() -> u64, domid: u16) -> Option<i32> {
    let t1 = now();
    let mut gone = domain_info(domid).err();
    while gone != Some(ESRCH) && now() < t1 + SETTLE_NS {
        let _ = sched::yield_now();
        gone = domain_info(domid).err();
    }
    gone
}

/// The whole exchange with the domU; stops at the first step it does not acknowledge.
fn exchange(peer: &mut Peer<'_>, offer: &Offer, w: &mut Windows) {
    let dom = peer.domid;
    let Some((rw_handle, ro_handle)) = map_step(dom, offer, w) else {
        return;
    };
    if !peer.command(Command::Mapped) {
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
    if !peer.command(Command::Copied) || !peer.command(Command::Revoke) {
        return;
    }
    revoked_step(dom, offer, w);
    peer.command(Command::Done);
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
