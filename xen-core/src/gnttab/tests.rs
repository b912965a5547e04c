//! Host tests of the grant-table sub-ops through the hypercall path, leader and follower
//! compared on every call: setup and query, maps and unmaps with their in-use bits and
//! references, refusals with Xen's statuses, copies, continuations, version changes,
//! transfers and releasing a domain.

use super::release_domain;
use super::testkit::*;
use super::GrantTable;
use crate::effect::{Effect, MmEffect};
use crate::hv::value_kind;
use crate::mm::fixture::{audit, l1_slot, mfn, L1_PFN};
use crate::mm::pt::{entry_mfn, P, RW};
use alloc::vec::Vec;
use dom0_interface::grant_table::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::DOMID_SELF;
use lockstep::Journal;

#[test]
fn setup_table_shares_host_frames_and_query_size_reports_them() {
    let mut t = T::new();
    t.frames(2);
    let (s, f) = t.setup(2);
    assert_eq!(s, GNTST_OKAY);
    assert_eq!(f, alloc::vec![ALLOC_BASE, ALLOC_BASE + 1]);
    for m in &f {
        let p = t.h.state.frames.get(m).expect("frame registered");
        assert!(p.special && p.owner == 0 && p.count == 1);
    }
    assert!(t.effects.iter().any(|e| matches!(
        e,
        Effect::Mm(MmEffect::FramesAllocated { dom: 0, mfns }) if *mfns == f
    )));
    let q = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    t.h.mem.map(UOP, &q.to_vec());
    assert_eq!(t.op(GNTTABOP_QUERY_SIZE, UOP, 1), 0);
    let q: GnttabQuerySize = t.read(UOP);
    assert_eq!(
        (q.nr_frames, q.max_nr_frames, q.status),
        (2, 64, GNTST_OKAY)
    );
    assert_eq!(t.setup(65).0, GNTST_GENERAL_ERROR);
    assert_eq!(t.op(GNTTABOP_SETUP_TABLE, UOP, 2), -22);
    assert_eq!(t.op(GNTTABOP_QUERY_SIZE, 0, 1), -14);
    // The host is out of frames: nothing changes.
    let before = t.h.state.gnttab.get(&0).cloned();
    t.h.mem
        .values
        .entry(value_kind::ALLOC_FRAME)
        .or_default()
        .push_back(crate::mm::NO_FRAME);
    assert_eq!(t.setup(3).0, GNTST_GENERAL_ERROR);
    assert_eq!(t.h.state.gnttab.get(&0).cloned(), before);
    audit(&t.h).expect("audit");
}

#[test]
fn mapping_a_self_grant_sets_in_use_bits_and_references() {
    let (mut t, table) = ready();
    let before = t.counts();
    let page = mfn(20);
    t.grant(table, 10, GTF_PERMIT_ACCESS, page);
    t.grant(table, 11, GTF_PERMIT_ACCESS | GTF_READONLY, page);
    let at = va(5);
    let ro = t.map(11, GNTMAP_HOST_MAP | GNTMAP_READONLY, at);
    assert_eq!(ro.status, GNTST_OKAY);
    assert_eq!(ro.dev_bus_addr, page << 12);
    let pte = t.h.mem.word(l1_slot(5));
    assert_eq!((entry_mfn(pte), pte & (P | RW)), (page, P));
    assert_eq!(
        t.flags(table, 11),
        GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
    );
    audit(&t.h).expect("audit after RO map");
    assert!(!t.revoke(table, 11), "revoked while mapped");
    // The same entry mapped writable is refused (read-only grant).
    let rw = t.map(11, GNTMAP_HOST_MAP, va(6));
    assert_eq!(rw.status, GNTST_GENERAL_ERROR);
    let w = t.map(10, GNTMAP_HOST_MAP, va(6));
    assert_eq!(w.status, GNTST_OKAY);
    assert_ne!(w.handle, ro.handle);
    assert_eq!(
        t.flags(table, 10),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    assert_eq!(t.h.mem.word(l1_slot(6)) & (P | RW), P | RW);
    audit(&t.h).expect("audit after RW map");
    assert_eq!(t.unmap(ro.handle, at), GNTST_OKAY);
    assert_eq!(t.flags(table, 11), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(t.h.mem.word(l1_slot(5)), 0);
    assert_eq!(t.unmap(ro.handle, at), GNTST_BAD_HANDLE);
    assert_eq!(t.unmap(w.handle, va(6)), GNTST_OKAY);
    assert_eq!(t.flags(table, 10), GTF_PERMIT_ACCESS);
    assert!(t.revoke(table, 10));
    assert!(t.h.state.gnttab_active.is_empty());
    assert!(t.h.state.gnttab_maptrack.is_empty());
    // The PTEs at 5 and 6 held the pages' own mappings before: those references are gone.
    let mut after = t.counts();
    for p in [5u64, 6] {
        let (c, tc) = before[&mfn(p)];
        assert_eq!(after.remove(&mfn(p)), Some((c - 1, tc - 1)));
    }
    let mut before = before;
    before.remove(&mfn(5));
    before.remove(&mfn(6));
    assert_eq!(after, before);
    audit(&t.h).expect("audit after unmap");
}

#[test]
fn refusals_answer_xen_statuses() {
    let (mut t, table) = ready();
    let page = mfn(20);
    t.grant(table, 12, 0, page);
    assert_eq!(
        t.map(12, GNTMAP_HOST_MAP, va(5)).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(t.map(600, GNTMAP_HOST_MAP, va(5)).status, GNTST_BAD_GNTREF);
    assert_eq!(t.map(12, 0, va(5)).status, GNTST_BAD_GNTREF);
    let mut op = GnttabMapGrantRef {
        host_addr: va(5),
        flags: GNTMAP_HOST_MAP,
        r#ref: 12,
        dom: 77,
        ..Default::default()
    };
    t.h.mem.map(UOP, &op.to_vec());
    t.op(GNTTABOP_MAP_GRANT_REF, UOP, 1);
    assert_eq!(t.read::<GnttabMapGrantRef>(UOP).status, GNTST_BAD_DOMAIN);
    op.dom = DOMID_SELF;
    t.h.mem.map(UOP, &op.to_vec());
    t.op(GNTTABOP_MAP_GRANT_REF, UOP, 1);
    assert_eq!(t.read::<GnttabMapGrantRef>(UOP).status, GNTST_BAD_DOMAIN);
    assert_eq!(t.unmap(1234, va(5)), GNTST_BAD_HANDLE);
    // A frame that is not the granter's.
    t.grant(table, 13, GTF_PERMIT_ACCESS, 0x7777);
    assert_eq!(t.map(13, GNTMAP_HOST_MAP, va(5)).status, GNTST_BAD_PAGE);
    // A page table cannot be mapped writable, only read-only.
    t.grant(table, 14, GTF_PERMIT_ACCESS, mfn(L1_PFN));
    assert_eq!(
        t.map(14, GNTMAP_HOST_MAP, va(7)).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(
        t.flags(table, 14),
        GTF_PERMIT_ACCESS,
        "refused map left bits"
    );
    let ro = t.map(14, GNTMAP_HOST_MAP | GNTMAP_READONLY, va(7));
    assert_eq!(ro.status, GNTST_OKAY);
    audit(&t.h).expect("audit");
    assert_eq!(t.unmap(ro.handle, va(7)), GNTST_OKAY);
    // No L1 maps this address.
    t.grant(table, 15, GTF_PERMIT_ACCESS, page);
    assert_eq!(
        t.map(15, GNTMAP_HOST_MAP, 0x7000_0000_0000).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(t.flags(table, 15), GTF_PERMIT_ACCESS);
    // Bad sub-ops and counts.
    assert_eq!(t.op(99, UOP, 1), -38);
    assert_eq!(t.op(1 << 12, UOP, 1), -22);
    assert_eq!(t.op(GNTTABOP_MAP_GRANT_REF, UOP, 0x8000_0000), -22);
    assert_eq!(t.op(GNTTABOP_MAP_GRANT_REF, 0xffff_8000_0000_0000, 1), -14);
    audit(&t.h).expect("audit");
}

#[test]
fn contains_pte_and_unmap_and_replace() {
    let (mut t, table) = ready();
    let page = mfn(21);
    t.grant(table, 10, GTF_PERMIT_ACCESS, page);
    let m = t.map(10, GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE, l1_slot(8));
    assert_eq!(m.status, GNTST_OKAY);
    assert_eq!(entry_mfn(t.h.mem.word(l1_slot(8))), page);
    // Misaligned PTE address.
    assert_eq!(
        t.map(10, GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE, l1_slot(9) + 3)
            .status,
        GNTST_GENERAL_ERROR
    );
    // A frame left with the L1 type but no type reference (the builder's unreferenced
    // tables) is no page table in use: Xen's page_lock refuses it.
    let idle = mfn(44);
    t.set_frame(idle, |p| {
        p.ty = crate::mm::PageType::L1;
        p.validated = true;
    });
    assert_eq!(
        t.map(10, GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE, idle << 12)
            .status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(t.unmap(m.handle, l1_slot(8)), GNTST_OKAY);
    audit(&t.h).expect("audit");
    // unmap_and_replace: the mapping of pfn 12 moves into pfn 11's slot.
    let m = t.map(10, GNTMAP_HOST_MAP, va(11));
    assert_eq!(m.status, GNTST_OKAY);
    let moved = t.h.mem.word(l1_slot(12));
    let op = GnttabUnmapAndReplace {
        host_addr: va(11),
        new_addr: va(12),
        handle: m.handle,
        status: 0x55,
    };
    t.h.mem.map(UOP, &op.to_vec());
    assert_eq!(t.op(GNTTABOP_UNMAP_AND_REPLACE, UOP, 1), 0);
    assert_eq!(t.read::<GnttabUnmapAndReplace>(UOP).status, GNTST_OKAY);
    assert_eq!(t.h.mem.word(l1_slot(11)), moved);
    assert_eq!(t.h.mem.word(l1_slot(12)), 0);
    assert_eq!(t.flags(table, 10), GTF_PERMIT_ACCESS);
    audit(&t.h).expect("audit");
}

#[test]
fn copies_check_their_operands_and_move_bytes() {
    let (mut t, table) = ready();
    let (a, b) = (mfn(20), mfn(21));
    for i in 0..512u64 {
        t.h.mem
            .machine
            .insert((a << 12) + i * 8, 0x0101_0101_0101_0101 * (i % 200));
    }
    t.grant(table, 10, GTF_PERMIT_ACCESS | GTF_READONLY, a);
    t.grant(table, 11, GTF_PERMIT_ACCESS, b);
    let gref = |r: u32, offset| GnttabCopyPtr {
        u: u64::from(r),
        domid: DOMID_SELF,
        offset,
    };
    let frame = |m: u64, domid, offset| GnttabCopyPtr {
        u: m,
        domid,
        offset,
    };
    let both = GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF;
    assert_eq!(t.copy(gref(10, 16), gref(11, 100), 300, both), GNTST_OKAY);
    for i in 0..300u64 {
        assert_eq!(
            byte(&t.h.mem, (b << 12) + 100 + i),
            byte(&t.h.mem, (a << 12) + 16 + i)
        );
    }
    assert_eq!(byte(&t.h.mem, (b << 12) + 99), 0);
    assert_eq!(
        t.flags(table, 10),
        GTF_PERMIT_ACCESS | GTF_READONLY,
        "copy left bits"
    );
    let c = mfn(22);
    assert_eq!(
        t.copy(frame(b, DOMID_SELF, 0), frame(c, DOMID_SELF, 0), 4096, 0),
        GNTST_OKAY
    );
    assert_eq!(
        t.copy(frame(b, 0, 0), frame(c, DOMID_SELF, 0), 8, 0),
        GNTST_PERMISSION_DENIED
    );
    assert_eq!(
        t.copy(gref(10, 0), gref(10, 0), 8, both),
        GNTST_GENERAL_ERROR
    );
    assert_eq!(
        t.copy(
            frame(b, DOMID_SELF, 0),
            frame(mfn(L1_PFN), DOMID_SELF, 0),
            8,
            0
        ),
        GNTST_GENERAL_ERROR,
        "a page table is not a copy destination"
    );
    assert_eq!(
        t.copy(frame(0x7777, DOMID_SELF, 0), frame(c, DOMID_SELF, 0), 8, 0),
        GNTST_BAD_PAGE
    );
    assert_eq!(
        t.copy(
            gref(9000, 0),
            frame(c, DOMID_SELF, 0),
            8,
            GNTCOPY_SOURCE_GREF
        ),
        GNTST_BAD_GNTREF
    );
    let mut bad = gref(11, 0);
    bad.domid = 77;
    assert_eq!(
        t.copy(bad, frame(c, DOMID_SELF, 0), 8, GNTCOPY_SOURCE_GREF),
        GNTST_BAD_DOMAIN
    );
    assert_eq!(
        t.copy(
            gref(11, 4000),
            frame(c, DOMID_SELF, 0),
            200,
            GNTCOPY_SOURCE_GREF
        ),
        GNTST_BAD_COPY_ARG
    );
    audit(&t.h).expect("audit");
}

#[test]
fn long_batches_continue_themselves() {
    let (mut t, table) = ready();
    t.grant(table, 10, GTF_PERMIT_ACCESS | GTF_READONLY, mfn(20));
    let n = super::super::hypercall::gnttab::GNTTAB_OPS_PER_CALL as u64 + 8;
    let mut bytes = Vec::new();
    for _ in 0..n {
        bytes.extend(
            GnttabMapGrantRef {
                flags: GNTMAP_DEVICE_MAP | GNTMAP_READONLY,
                r#ref: 10,
                dom: 0,
                status: 0x55,
                ..Default::default()
            }
            .to_vec(),
        );
    }
    t.h.mem.map(UOP, &bytes);
    assert_eq!(t.op(GNTTABOP_MAP_GRANT_REF, UOP, n), i64::MIN);
    let cont = t.effects.iter().find_map(|e| match e {
        Effect::Continue(a) => Some(*a),
        _ => None,
    });
    let done = n - 8;
    assert_eq!(cont, Some([0, UOP + done * 32, 8, 0, 0]));
    assert_eq!(t.op(GNTTABOP_MAP_GRANT_REF, UOP + done * 32, 8), 0);
    let act =
        t.h.state
            .gnttab_active
            .get(&(0, 10))
            .cloned()
            .expect("pinned");
    assert_eq!(act.pin, n as u32 * super::PIN_DEVR);
    assert_eq!(
        t.h.state.frames.get(&mfn(20)).map(|p| p.count),
        Some(2 + n as u32)
    );
    // Releasing the domain's grant state drops every device mapping and pin.
    let mut j = Journal::new();
    j.begin(1);
    let mut env = crate::mm::testenv::MemEnv {
        mem: &mut t.h.mem,
        j: &mut j,
        effects: Vec::new(),
    };
    release_domain(&mut t.h.state, &mut env, 0).expect("release");
    assert!(t.h.state.gnttab_maptrack.is_empty() && t.h.state.gnttab_active.is_empty());
    assert_eq!(t.h.state.frames.get(&mfn(20)).map(|p| p.count), Some(2));
}

#[test]
fn version_two_and_back_keeps_reserved_entries() {
    let (mut t, table) = ready();
    t.grant(table, 3, GTF_PERMIT_ACCESS, mfn(20));
    t.grant(table, 30, GTF_PERMIT_ACCESS, mfn(21));
    t.frames(1);
    t.h.mem.map(UOP, &2u32.to_le_bytes());
    assert_eq!(t.op(GNTTABOP_SET_VERSION, UOP, 1), 0);
    let g: &GrantTable = t.h.state.gnttab.get(&0).expect("table");
    assert_eq!((g.version, g.status_frames.len()), (2, 1));
    let sf = g.status_frames[0];
    // Entry 3 survived in v2 form, entry 30 is gone.
    assert_eq!(
        t.h.mem.word((table << 12) + 3 * 16) as u16,
        GTF_PERMIT_ACCESS
    );
    assert_eq!(t.h.mem.word((table << 12) + 3 * 16 + 8), mfn(20));
    assert_eq!(t.h.mem.word((table << 12) + 30 * 8), 0);
    // A v2 map sets the in-use bits in the status frame.
    let m = t.map(3, GNTMAP_HOST_MAP, va(5));
    assert_eq!(m.status, GNTST_OKAY);
    assert_eq!(
        (t.h.mem.word(sf << 12) >> 48) as u16,
        GTF_READING | GTF_WRITING
    );
    t.h.mem.map(UOP, &1u32.to_le_bytes());
    assert_eq!(
        t.op(GNTTABOP_SET_VERSION, UOP, 1),
        0,
        "reserved entries may be in use"
    );
    assert_eq!(t.unmap(m.handle, va(5)), GNTST_OKAY);
    assert_eq!(t.h.mem.word((table << 12) + 3 * 8) as u16 & GTF_READING, 0);
    assert!(!t.h.state.frames.contains_key(&sf), "status frame freed");
    t.h.mem.map(UOP, &3u32.to_le_bytes());
    assert_eq!(t.op(GNTTABOP_SET_VERSION, UOP, 1), -22);
    assert_eq!(t.guest_u64(UOP) as u32, 1);
    audit(&t.h).expect("audit");
}

#[test]
fn transfer_gives_an_unmapped_frame_to_the_accepting_entry() {
    let (mut t, table) = ready();
    let page = mfn(40); // beyond the mapped pfns: only its allocation reference
    t.grant(table, 20, GTF_ACCEPT_TRANSFER, 40);
    let op = GnttabTransfer {
        mfn: page,
        domid: 0,
        r#ref: 20,
        status: 0x55,
    };
    t.h.mem.map(UOP, &op.to_vec());
    assert_eq!(t.op(GNTTABOP_TRANSFER, UOP, 1), 0);
    assert_eq!(t.read::<GnttabTransfer>(UOP).status, GNTST_OKAY);
    let w = t.h.mem.word((table << 12) + 20 * 8);
    assert_eq!(
        w as u16,
        GTF_ACCEPT_TRANSFER | GTF_TRANSFER_COMMITTED | GTF_TRANSFER_COMPLETED
    );
    assert_eq!(w >> 32, page);
    // A mapped frame cannot be given away.
    let op = GnttabTransfer {
        mfn: mfn(5),
        domid: 0,
        r#ref: 20,
        status: 0x55,
    };
    t.h.mem.map(UOP, &op.to_vec());
    t.op(GNTTABOP_TRANSFER, UOP, 1);
    assert_eq!(t.read::<GnttabTransfer>(UOP).status, GNTST_GENERAL_ERROR);
    audit(&t.h).expect("audit");
}

#[test]
fn cache_flush_checks_ranges_ownership_and_ops() {
    let (mut t, _) = ready();
    let flush = |t: &mut T, a: u64, offset: u16, length: u16, op: u32, cmd: u32| {
        let f = GnttabCacheFlush {
            a,
            offset,
            length,
            op,
        };
        t.h.mem.map(UOP, &f.to_vec());
        t.op(cmd, UOP, 1)
    };
    let own = mfn(20) << 12;
    let c = GNTTABOP_CACHE_FLUSH;
    assert_eq!(flush(&mut t, own, 0, 64, GNTTAB_CACHE_CLEAN, c), 0);
    assert!(t
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Mm(MmEffect::FlushCache))));
    assert_eq!(flush(&mut t, own, 0, 64, GNTTAB_CACHE_INVAL, c), -95);
    assert_eq!(flush(&mut t, own, 0, 0, GNTTAB_CACHE_CLEAN, c), 0);
    assert_eq!(
        flush(&mut t, own, 0, 0, GNTTAB_CACHE_CLEAN, c | (5 << 12)),
        -84
    );
    assert_eq!(flush(&mut t, own, 4096, 1, GNTTAB_CACHE_CLEAN, c), -22);
    assert_eq!(flush(&mut t, own, 0, 64, GNTTAB_CACHE_SOURCE_GREF, c), -22);
    assert_eq!(flush(&mut t, 0x50 << 12, 0, 64, GNTTAB_CACHE_CLEAN, c), -1);
    assert_eq!(
        flush(&mut t, 0x2_0000 << 12, 0, 64, GNTTAB_CACHE_CLEAN, c),
        -22
    );
}
