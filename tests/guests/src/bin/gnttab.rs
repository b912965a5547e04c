//! `gnttab`: the grant-table test guest (dom0 granting to itself). setup_table and mapping
//! the table frame, query_size, set/get_version (v2 and back), get_status_frames; a page
//! granted to itself mapped read-only and writable (by address and by PTE) with the bytes
//! checked both ways and the in-use bits checked while mapped; grant copies gref→frame,
//! frame→gref and gref→gref checked byte for byte; refusals with Xen's GNTST codes (no
//! permission, read-only grant mapped writable, bad gref, bad handle, bad domain, unmap
//! twice, frames of other domains, bad copy arguments); revocation refused while mapped and
//! allowed after; a batched map and unmap; unmap_and_replace; cache_flush as x86 answers it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::gnttab::{
    self as g, CopySide, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantFrame, Window,
    GNTMAP_CONTAINS_PTE, GNTMAP_HOST_MAP, GNTMAP_READONLY, GTF_PERMIT_ACCESS, GTF_READING,
    GTF_READONLY, GTF_WRITING,
};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

const DOMID_SELF: u16 = 0x7FF0;
const ME: u16 = 0;

// GNTST_* codes.
const OKAY: i16 = 0;
const GENERAL_ERROR: i16 = -1;
const BAD_DOMAIN: i16 = -2;
const BAD_GNTREF: i16 = -3;
const BAD_HANDLE: i16 = -4;
const PERMISSION_DENIED: i16 = -8;
const BAD_PAGE: i16 = -9;
const BAD_COPY_ARG: i16 = -10;

// Grant references used (above the 8 reserved ones).
const G_RO: u32 = 10;
const G_RW: u32 = 11;
const G_NONE: u32 = 12;
const G_B: u32 = 13;
const G_C: u32 = 14;

fn pattern(seed: u8) -> impl Fn(usize) -> u8 {
    move |i| (i as u8).wrapping_mul(7).wrapping_add(seed) ^ ((i >> 8) as u8)
}

fn main(si: &StartInfo) {
    println!("gnttab: grant-table test guest");
    g::init_windows(si);
    let win = |k| Window::new(si, k);
    let (Some(tw), Some(a), Some(mut b), Some(c), Some(mut m)) =
        (win(0), win(1), win(2), win(3), win(4))
    else {
        guest_rt::test::error(format_args!("no windows"));
    };
    info(format_args!(
        "frames: A {:#x} B {:#x} C {:#x} M {:#x}",
        a.home(),
        b.home(),
        c.home(),
        m.home()
    ));
    sub_op_checks();
    version_checks();
    let Some(gt) = table_checks(tw) else {
        guest_rt::test::error(format_args!("grant table not mapped"));
    };
    check("fill A", a.fill(pattern(1)));
    check("fill B", b.fill(pattern(2)));
    check("fill C", c.fill(pattern(3)));
    check(
        "grant A read-only",
        gt.set(G_RO, GTF_PERMIT_ACCESS | GTF_READONLY, ME, a.home() as u32),
    );
    check(
        "grant A writable",
        gt.set(G_RW, GTF_PERMIT_ACCESS, ME, a.home() as u32),
    );
    check(
        "entry without permission",
        gt.set(G_NONE, 0, ME, a.home() as u32),
    );
    check(
        "grant B writable",
        gt.set(G_B, GTF_PERMIT_ACCESS, ME, b.home() as u32),
    );
    check(
        "grant C writable",
        gt.set(G_C, GTF_PERMIT_ACCESS, ME, c.home() as u32),
    );
    map_checks(&gt, &a, &mut m);
    refusal_checks(&gt, &a, &mut m);
    copy_checks(&a, &b, &c);
    batch_checks(&gt, &mut m, &mut b);
    transfer_checks();
    cache_flush_checks(&a);
    check(
        "hypervisor still answers: get_version",
        g::get_version(DOMID_SELF) == Ok(1),
    );
}

fn sub_op_checks() {
    check_eq(
        "unknown sub-op 99 -> -ENOSYS",
        g::raw_op(99, 1),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "continuation bits on map -> -EINVAL",
        g::raw_op(1 << 12, 1),
        Err(Errno::EINVAL),
    );
    check_eq(
        "negative count -> -EINVAL",
        g::raw_op(0, 0x8000_0000),
        Err(Errno::EINVAL),
    );
    check_eq(
        "dump_table (3) -> -ENOSYS",
        g::raw_op(3, 1),
        Err(Errno::ENOSYS),
    );
}

fn version_checks() {
    check_eq("get_version: 1 at start", g::get_version(DOMID_SELF), Ok(1));
    check_eq("get_version of dom0 by id", g::get_version(ME), Ok(1));
    check_eq(
        "get_version of unknown domain -> -ESRCH",
        g::get_version(77),
        Err(Errno::ESRCH),
    );
    check_eq("set_version(1) keeps 1", g::set_version(1), (Ok(0), 1));
    check_eq(
        "set_version(3) -> -EINVAL",
        g::set_version(3),
        (Err(Errno::EINVAL), 1),
    );
    let mut sf = [0u64; 1];
    check_eq(
        "get_status_frames(1) in v1 -> general error",
        g::get_status_frames(DOMID_SELF, &mut sf),
        Ok(GENERAL_ERROR),
    );
    check_eq(
        "get_status_frames(0) in v1 -> okay",
        g::get_status_frames(DOMID_SELF, &mut sf[..0]),
        Ok(OKAY),
    );
    let r = g::set_version(2);
    info(format_args!("set_version(2) -> {:?}", r));
    check_eq(
        "set_version(2) (gnttab max-ver 2 by default)",
        r,
        (Ok(0), 2),
    );
    check_eq("get_version: 2", g::get_version(DOMID_SELF), Ok(2));
    let (nr, _, _) = g::query_size(DOMID_SELF).unwrap_or((0, 0, -1));
    info(format_args!("v2 nr_frames {}", nr));
    let st = g::get_status_frames(DOMID_SELF, &mut sf);
    info(format_args!(
        "get_status_frames(1) in v2 -> {:?} frame {:#x}",
        st, sf[0]
    ));
    check_eq("get_status_frames(1) in v2 -> okay", st, Ok(OKAY));
    check("status frame is a real frame", sf[0] != 0);
    let mut two = [0u64; 2];
    check_eq(
        "get_status_frames(2) in v2 -> general error",
        g::get_status_frames(DOMID_SELF, &mut two),
        Ok(GENERAL_ERROR),
    );
    check_eq("set_version(1) back", g::set_version(1), (Ok(0), 1));
    check_eq("get_version: 1 again", g::get_version(DOMID_SELF), Ok(1));
}

fn table_checks(tw: Window) -> Option<GrantFrame> {
    let q = g::query_size(DOMID_SELF);
    info(format_args!("query_size {:?}", q));
    check_eq("query_size: 1 frame of 64 at start", q, Ok((1, 64, OKAY)));
    check_eq("query_size of dom0 by id", g::query_size(ME), q);
    check_eq(
        "query_size of an unknown domain -> bad domain",
        g::query_size(77).map(|x| x.2),
        Ok(BAD_DOMAIN),
    );
    let mut too_many = [0u64; 65];
    check_eq(
        "setup_table(65 frames) -> general error",
        g::setup_table(DOMID_SELF, &mut too_many),
        Ok(GENERAL_ERROR),
    );
    check_eq(
        "setup_table of an unknown domain -> bad domain",
        g::setup_table(77, &mut too_many[..1]),
        Ok(BAD_DOMAIN),
    );
    let mut frames = [0u64; 2];
    check_eq(
        "setup_table(2 frames)",
        g::setup_table(DOMID_SELF, &mut frames),
        Ok(OKAY),
    );
    info(format_args!(
        "grant frames {:#x} {:#x}",
        frames[0], frames[1]
    ));
    check(
        "two distinct frames",
        frames[0] != 0 && frames[1] != 0 && frames[0] != frames[1],
    );
    check_eq(
        "query_size: 2 frames now",
        g::query_size(DOMID_SELF),
        Ok((2, 64, OKAY)),
    );
    let mut one = [0u64; 1];
    check_eq(
        "setup_table(1) after growing",
        g::setup_table(DOMID_SELF, &mut one),
        Ok(OKAY),
    );
    check_eq("same first frame", one[0], frames[0]);
    match tw.into_grant_frame(frames[0]) {
        Ok(gt) => {
            check("grant table frame mapped writable", true);
            check_eq("fresh entry 20 is empty", gt.get(20), Some((0, 0, 0)));
            Some(gt)
        }
        Err((e, _)) => {
            check_eq("map the grant table frame", Err::<(), Errno>(e), Ok(()));
            None
        }
    }
}

fn map_checks(gt: &GrantFrame, a: &Window, m: &mut Window) {
    // Read-only mapping by address.
    let (r, op) = m.map_grant(ME, G_RO, GNTMAP_READONLY);
    check_eq("map read-only grant RO", (r, op.status), (Ok(0), OKAY));
    check_eq("dev_bus_addr is the frame", op.dev_bus_addr, a.home() << 12);
    check("RO mapping shows A's bytes", m.holds(pattern(1)));
    check_eq(
        "RO mapped: GTF_reading set, not writing",
        gt.get(G_RO).map(|e| e.0 & (GTF_READING | GTF_WRITING)),
        Some(GTF_READING),
    );
    check_eq(
        "revoking a mapped entry fails (in use)",
        gt.revoke(G_RO).map_err(|f| f & GTF_READING),
        Err(GTF_READING),
    );
    let (r, s) = m.unmap_grant(op.handle, false, 0);
    check_eq("unmap RO", (r, s), (Ok(0), OKAY));
    check_eq(
        "after unmap: in-use bits cleared",
        gt.get(G_RO).map(|e| e.0),
        Some(GTF_PERMIT_ACCESS | GTF_READONLY),
    );
    check_eq(
        "unmap twice -> bad handle",
        m.unmap_grant(op.handle, false, 0),
        (Ok(0), BAD_HANDLE),
    );
    // Writable mapping by PTE address.
    let (r, op) = m.map_grant(ME, G_RW, GNTMAP_CONTAINS_PTE);
    check_eq("map writable grant by PTE", (r, op.status), (Ok(0), OKAY));
    check_eq(
        "RW mapped: reading|writing",
        gt.get(G_RW).map(|e| e.0),
        Some(GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING),
    );
    check("RW mapping shows A's bytes", m.holds(pattern(1)));
    check("write through the grant mapping", m.fill(pattern(9)));
    check(
        "A sees the bytes written through the grant",
        a.holds(pattern(9)),
    );
    check("write A directly", a.fill(pattern(1)));
    check("the grant mapping sees A's new bytes", m.holds(pattern(1)));
    check_eq(
        "revoking RW-mapped entry fails",
        gt.revoke(G_RW).map_err(|f| f & (GTF_READING | GTF_WRITING)),
        Err(GTF_READING | GTF_WRITING),
    );
    check_eq(
        "unmap RW by PTE (a dev_bus_addr is not checked without a device mapping)",
        m.unmap_grant(op.handle, true, 0x1000),
        (Ok(0), OKAY),
    );
    check_eq(
        "RW unmapped: in-use bits cleared",
        gt.get(G_RW).map(|e| e.0),
        Some(GTF_PERMIT_ACCESS),
    );
    // Writable by address, then revocation after unmap.
    let (r, op) = m.map_grant(ME, G_RW, 0);
    check_eq("map writable by address", (r, op.status), (Ok(0), OKAY));
    check_eq(
        "unmap it",
        m.unmap_grant(op.handle, false, 0),
        (Ok(0), OKAY),
    );
    check_eq("revoke after unmap succeeds", gt.revoke(G_RW), Ok(()));
    check_eq("entry is invalid now", gt.get(G_RW).map(|e| e.0), Some(0));
    let (r, op) = m.map_grant(ME, G_RW, 0);
    check_eq(
        "a revoked grant cannot be mapped",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    check(
        "grant A writable again",
        gt.set(G_RW, GTF_PERMIT_ACCESS, ME, a.home() as u32),
    );
    check("M back to its own frame", m.map_home().is_ok());
}

fn refusal_checks(gt: &GrantFrame, a: &Window, m: &mut Window) {
    let (r, op) = m.map_grant(ME, G_NONE, GNTMAP_READONLY);
    info(format_args!(
        "map of an entry without permission: {:?} status {}",
        r, op.status
    ));
    check_eq(
        "map without GTF_permit_access -> general error",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    let (r, op) = m.map_grant(ME, G_RO, 0);
    check_eq(
        "read-only grant mapped writable -> general error",
        (r, op.status),
        (Ok(0), GENERAL_ERROR),
    );
    check_eq(
        "refused map leaves the entry alone",
        gt.get(G_RO).map(|e| e.0),
        Some(GTF_PERMIT_ACCESS | GTF_READONLY),
    );
    let (r, op) = m.map_grant(ME, 2 * 512 + 5, GNTMAP_READONLY);
    check_eq(
        "gref beyond the table -> bad gntref",
        (r, op.status),
        (Ok(0), BAD_GNTREF),
    );
    let (r, op) = m.map_grant(77, G_RO, GNTMAP_READONLY);
    check_eq(
        "unknown granting domain -> bad domain",
        (r, op.status),
        (Ok(0), BAD_DOMAIN),
    );
    let (r, op) = m.map_grant(DOMID_SELF, G_RO, GNTMAP_READONLY);
    check_eq(
        "DOMID_SELF as granting domain -> bad domain",
        (r, op.status),
        (Ok(0), BAD_DOMAIN),
    );
    let mut ops = [GnttabMapGrantRef {
        host_addr: m.va(),
        flags: GNTMAP_READONLY,
        r#ref: G_RO,
        dom: ME,
        status: 0x55,
        ..Default::default()
    }];
    check_eq(
        "neither host nor device map -> bad gntref",
        g::map_ops(&mut ops).map(|_| ops[0].status),
        Ok(BAD_GNTREF),
    );
    check_eq(
        "unmap of a handle never given -> bad handle",
        m.unmap_grant(0xdead, false, 0),
        (Ok(0), BAD_HANDLE),
    );
    check(
        "M still maps its own frame",
        m.map_home().is_ok() && m.fill(pattern(4)),
    );
    // A grant of a frame that is not ours.
    check(
        "grant a frame we do not own",
        gt.set(G_NONE, GTF_PERMIT_ACCESS, ME, 0xfff_ffff),
    );
    let (r, op) = m.map_grant(ME, G_NONE, GNTMAP_READONLY);
    check_eq(
        "grant of a frame not ours -> bad page",
        (r, op.status),
        (Ok(0), BAD_PAGE),
    );
    check(
        "entry back to no permission",
        gt.set(G_NONE, 0, ME, a.home() as u32),
    );
    check("M still maps its own frame", m.holds(pattern(4)));
}

fn copy_checks(a: &Window, b: &Window, c: &Window) {
    let gref = |gref, offset| CopySide::Gref {
        dom: ME,
        gref,
        offset,
    };
    let frame = |win, offset| CopySide::Frame {
        win,
        dom: DOMID_SELF,
        offset,
    };
    check("A holds pattern 1", a.holds(pattern(1)));
    // gref -> frame: A (via read-only grant) into C.
    check_eq(
        "copy gref->frame (whole page)",
        g::copy(gref(G_RO, 0), frame(c, 0), 4096),
        (Ok(0), OKAY),
    );
    check("C now holds A's bytes", c.holds(pattern(1)));
    // frame -> gref: B into A (writable grant), a part of it.
    check_eq(
        "copy frame->gref (100 bytes at 200 -> 300)",
        g::copy(frame(b, 200), gref(G_RW, 300), 100),
        (Ok(0), OKAY),
    );
    let p1 = pattern(1);
    let p2 = pattern(2);
    let want = |i: usize| {
        if (300..400).contains(&i) {
            p2(i - 100)
        } else {
            p1(i)
        }
    };
    check(
        "A holds B's 100 bytes at 300, the rest unchanged",
        a.holds(want),
    );
    // gref -> gref: C (writable grant) from B (grant).
    check_eq(
        "copy gref->gref (whole page)",
        g::copy(gref(G_B, 0), gref(G_C, 0), 4096),
        (Ok(0), OKAY),
    );
    check("C holds B's bytes", c.holds(pattern(2)));
    check_eq(
        "zero-length copy",
        g::copy(gref(G_B, 0), gref(G_C, 0), 0),
        (Ok(0), OKAY),
    );
    check_eq(
        "copy source without permission -> general error",
        g::copy(gref(G_NONE, 0), frame(c, 0), 8),
        (Ok(0), GENERAL_ERROR),
    );
    check_eq(
        "copy into a read-only grant -> general error",
        g::copy(frame(b, 0), gref(G_RO, 0), 8),
        (Ok(0), GENERAL_ERROR),
    );
    check_eq(
        "copy from a bad gref -> bad gntref",
        g::copy(gref(9000, 0), frame(c, 0), 8),
        (Ok(0), BAD_GNTREF),
    );
    check_eq(
        "copy from a frame named with domid 0 (not DOMID_SELF) -> permission denied",
        g::copy(
            CopySide::Frame {
                win: b,
                dom: ME,
                offset: 0,
            },
            frame(c, 0),
            8,
        ),
        (Ok(0), PERMISSION_DENIED),
    );
    check_eq(
        "copy with an unknown domain -> bad domain",
        g::copy(
            CopySide::Gref {
                dom: 77,
                gref: G_B,
                offset: 0,
            },
            frame(c, 0),
            8,
        ),
        (Ok(0), BAD_DOMAIN),
    );
    check_eq(
        "copy from a frame not ours -> bad page",
        g::copy(
            CopySide::Foreign {
                mfn: 0xfff_ffff,
                offset: 0,
            },
            frame(c, 0),
            8,
        ),
        (Ok(0), BAD_PAGE),
    );
    check_eq(
        "copy crossing the page end -> bad copy arg",
        g::copy(gref(G_B, 4000), frame(c, 0), 200),
        (Ok(0), BAD_COPY_ARG),
    );
    check("C unchanged by the refused copies", c.holds(pattern(2)));
}

fn batch_checks(gt: &GrantFrame, m: &mut Window, b: &mut Window) {
    let mut ops = [
        GnttabMapGrantRef {
            host_addr: m.va(),
            flags: GNTMAP_HOST_MAP | GNTMAP_READONLY,
            r#ref: G_RO,
            dom: ME,
            status: 0x55,
            ..Default::default()
        },
        GnttabMapGrantRef {
            host_addr: m.va(),
            flags: GNTMAP_HOST_MAP,
            r#ref: 4000,
            dom: ME,
            status: 0x55,
            ..Default::default()
        },
    ];
    check_eq("batched map", g::map_ops(&mut ops), Ok(0));
    check_eq(
        "batch statuses",
        (ops[0].status, ops[1].status),
        (OKAY, BAD_GNTREF),
    );
    let mut un = [
        GnttabUnmapGrantRef {
            host_addr: m.va(),
            dev_bus_addr: 0,
            handle: ops[0].handle,
            status: 0x55,
        },
        GnttabUnmapGrantRef {
            host_addr: m.va(),
            dev_bus_addr: 0,
            handle: 0xbeef,
            status: 0x55,
        },
    ];
    check_eq("batched unmap", g::unmap_ops(&mut un), Ok(0));
    check_eq(
        "batch unmap statuses",
        (un[0].status, un[1].status),
        (OKAY, BAD_HANDLE),
    );
    check_eq(
        "batch left the entry idle",
        gt.get(G_RO).map(|e| e.0),
        Some(GTF_PERMIT_ACCESS | GTF_READONLY),
    );
    // unmap_and_replace: M maps grant B writable; B's own mapping moves into M's slot.
    check("M home", m.map_home().is_ok());
    let (r, op) = m.map_grant(ME, G_C, 0);
    check_eq("map C's grant at M", (r, op.status), (Ok(0), OKAY));
    check("M shows C's bytes", m.holds(pattern(2)));
    check_eq(
        "unmap_and_replace",
        m.unmap_and_replace(op.handle, b),
        (Ok(0), OKAY),
    );
    check(
        "M now maps B's frame",
        m.holds(pattern(2)) && m.mapped() == Some(true),
    );
    check("B's address is unmapped", b.mapped().is_none());
    check_eq(
        "C's grant idle again",
        gt.get(G_C).map(|e| e.0),
        Some(GTF_PERMIT_ACCESS),
    );
    check("B back home", b.map_home().is_ok() && b.holds(pattern(2)));
    check("M back home", m.map_home().is_ok() && m.holds(pattern(4)));
}

fn transfer_checks() {
    check_eq(
        "transfer of a frame not ours -> bad page",
        g::transfer_foreign(1 << 32, ME, G_NONE),
        Ok(BAD_PAGE),
    );
}

/// (what, dev_bus_addr, offset, length, op, expected result).
type FlushCase = (&'static str, u64, u16, u16, u32, Result<i64, Errno>);

fn cache_flush_checks(a: &Window) {
    use guest_rt::gnttab::{GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GNTTAB_CACHE_SOURCE_GREF};
    let own = a.home() << 12;
    let both = GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL;
    let cases: [FlushCase; 8] = [
        (
            "nothing to do (length 0)",
            own,
            0,
            0,
            GNTTAB_CACHE_CLEAN,
            Ok(0),
        ),
        ("nothing to do (op 0)", own, 0, 64, 0, Ok(0)),
        (
            "clean of an own frame",
            own,
            0,
            64,
            GNTTAB_CACHE_CLEAN,
            Ok(0),
        ),
        (
            "invalidate alone -> -EOPNOTSUPP",
            own,
            0,
            64,
            GNTTAB_CACHE_INVAL,
            Err(Errno::EOPNOTSUPP),
        ),
        ("clean+invalidate of an own frame", own, 0, 64, both, Ok(0)),
        (
            "offset past the page -> -EINVAL",
            own,
            4096,
            1,
            GNTTAB_CACHE_CLEAN,
            Err(Errno::EINVAL),
        ),
        (
            "source gref flag -> -EINVAL",
            10,
            0,
            64,
            GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_SOURCE_GREF,
            Err(Errno::EINVAL),
        ),
        (
            "frame beyond RAM -> -EINVAL",
            0xfff_ffff << 12,
            0,
            64,
            GNTTAB_CACHE_CLEAN,
            Err(Errno::EINVAL),
        ),
    ];
    for (what, addr, off, len, op, want) in cases {
        check_eq(what, g::cache_flush(addr, off, len, op), want);
    }
}
