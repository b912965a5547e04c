//! `mm`: the PV memory-management test guest. update_va_mapping of fresh frames (and through
//! mmu_update), refusals with Xen's errnos (page tables mapped writable, the hypervisor's
//! range and L4 slots, frames not ours), pin/unpin, NEW_USER_BASEPTR, TLB flush operations,
//! the read-only M2P and MMU_MACHPHYS_UPDATE, memory_op reservations, memory maps and the
//! M2P's location.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::mm::{self as xmm, pte};
use guest_rt::pvmm::{self, Scratch};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

const RW: u64 = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
const RO: u64 = pte::PRESENT | pte::ACCESSED;
const DOMID_SELF: u16 = 0x7FF0;

fn main(si: &StartInfo) {
    println!("mm: PV memory-management test guest");
    let Some(mut s) = Scratch::new(si) else {
        guest_rt::test::error(format_args!("no scratch page"));
    };
    info(format_args!(
        "nr_pages {} pt_base {:#x} nr_pt_frames {} scratch {:#x} (mfn {:#x})",
        si.nr_pages,
        si.pt_base,
        si.nr_pt_frames,
        s.va(),
        s.home()
    ));
    m2p_checks(si);
    reservation_checks(si);
    mapping_checks(si, &mut s);
    pin_checks(si, &mut s);
    validation_checks(si, &mut s);
    mmuext_checks();
    mmu_update_checks(si, &mut s);
    balloon_checks(si);
    memory_op_checks(si);
}

fn m2p_checks(si: &StartInfo) {
    for pfn in [0u64, 1, 5, si.nr_pages - 1] {
        if let Some(mfn) = pvmm::pfn_to_mfn(si, pfn) {
            check_eq(
                "read-only M2P maps our frame back to its pfn",
                pvmm::m2p(mfn),
                pfn,
            );
        }
    }
    let max = xmm::maximum_ram_page();
    info(format_args!("maximum_ram_page {:?}", max));
    match pvmm::machphys_mapping() {
        Ok((start, end, max_mfn)) => {
            check_eq("machphys_mapping v_start", start, 0xFFFF_8000_0000_0000);
            check_eq("machphys_mapping v_end", end, 0xFFFF_8040_0000_0000);
            check_eq(
                "machphys_mapping max_mfn (dom0): maximum_ram_page - 1",
                Ok(max_mfn as i64),
                max.map(|m| m - 1),
            );
        }
        Err(e) => {
            check_eq("machphys_mapping", Err::<(), Errno>(e), Ok(()));
        }
    }
    let mut frames = [0u64; 8];
    let n = pvmm::machphys_mfn_list(&mut frames);
    info(format_args!(
        "machphys_mfn_list {:?} first {:#x}",
        n, frames[0]
    ));
    check(
        "machphys_mfn_list returns at least one 2M frame",
        matches!(n, Ok(k) if k >= 1),
    );
}

fn reservation_checks(si: &StartInfo) {
    let cur = xmm::domid_query(xmm::XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    let max = xmm::domid_query(xmm::XENMEM_MAXIMUM_RESERVATION, DOMID_SELF);
    info(format_args!(
        "current_reservation {:?} maximum_reservation {:?}",
        cur, max
    ));
    check_eq(
        "current_reservation is nr_pages",
        cur,
        Ok(si.nr_pages as i64),
    );
    check(
        "maximum_reservation >= current",
        matches!((cur, max), (Ok(c), Ok(m)) if m >= c),
    );
    check_eq(
        "current_reservation of dom 0 named explicitly",
        xmm::domid_query(xmm::XENMEM_CURRENT_RESERVATION, 0),
        cur,
    );
    check_eq(
        "current_reservation of an unknown domain -> -ESRCH",
        xmm::domid_query(xmm::XENMEM_CURRENT_RESERVATION, 77),
        Err(Errno::ESRCH),
    );
    check_eq(
        "current_reservation from a bad pointer -> -EFAULT",
        xmm::memory_op_with_bad_ptr(
            xmm::XENMEM_CURRENT_RESERVATION,
            guest_rt::hypercall::BadPtr::NULL,
        ),
        Err(Errno::EFAULT),
    );
    let mut map = [xmm::E820Entry::default(); 32];
    let r = xmm::memory_map(false, &mut map);
    info(format_args!("memory_map {:?}", r));
    check_eq("memory_map of a PV dom0 -> -ENOSYS", r, Err(Errno::ENOSYS));
    let r = xmm::memory_map(true, &mut map);
    info(format_args!("machine_memory_map {:?}", r));
    if let Ok(n) = r {
        for e in &map[..n] {
            let (a, sz, k) = (e.addr, e.size, e.r#type);
            info(format_args!(
                "  machine e820 {:#x}-{:#x} type {}",
                a,
                a + sz,
                k
            ));
        }
        let ram = map[..n].iter().filter(|e| e.r#type == 1).count();
        check("machine_memory_map has RAM", ram >= 1);
        // The local APIC's page and the whole MSI window are the hypervisor's (Xen denies
        // dom0 0xfee00000-0xfeefffff): one reserved entry.
        check(
            "machine_memory_map: 0xfee00000-0xfef00000 reserved",
            map[..n]
                .iter()
                .any(|e| (e.addr, e.size, e.r#type) == (0xfee0_0000, 0x10_0000, 2)),
        );
        check_eq(
            "machine_memory_map into exactly as many entries -> -EINVAL",
            xmm::memory_map(true, &mut map[..n]),
            Err(Errno::EINVAL),
        );
        check_eq(
            "machine_memory_map into one spare entry",
            xmm::memory_map(true, &mut map[..n + 1]),
            Ok(n),
        );
    } else {
        check_eq("machine_memory_map", r, Ok(1));
    }
    check_eq(
        "machine_memory_map with a 1-entry buffer -> -EINVAL",
        xmm::memory_map(true, &mut map[..1]),
        Err(Errno::EINVAL),
    );
}

fn mapping_checks(si: &StartInfo, s: &mut Scratch) {
    let Some(fresh_pfn) = pvmm::spare_pfn(si, 0) else {
        guest_rt::test::skip(format_args!("no spare pfn"));
        return;
    };
    let fresh = pvmm::pfn_to_mfn(si, fresh_pfn).unwrap_or(0);
    check_eq(
        "update_va_mapping of a fresh frame, writable",
        s.map(fresh, RW),
        Ok(0),
    );
    check(
        "write through the new mapping",
        s.fill(0x5a5a_5a5a_5a5a_5a5a) && s.write(7, 42),
    );
    check_eq("read back through the new mapping", s.read(7), Some(42));
    check_eq("unmap (pte 0)", s.map(fresh, 0), Ok(0));
    check_eq("map it again read-only", s.map(fresh, RO), Ok(0));
    check_eq("the contents stayed", s.read(7), Some(42));
    let root = pvmm::root_mfn(si).unwrap_or(0);
    check_eq(
        "map the (pinned) root page table writable -> -EBUSY",
        s.map(root, RW),
        Err(Errno::EBUSY),
    );
    check_eq("map the root page table read-only", s.map(root, RO), Ok(0));
    check_eq(
        "its slot 256 holds Xen's M2P mapping",
        s.read(256).map(|e| e & 1),
        Some(1),
    );
    check_eq(
        "map a frame of another owner (Xen's M2P frame) -> -EBUSY",
        {
            let mut f = [0u64; 1];
            let _ = pvmm::machphys_mfn_list(&mut f);
            s.map(f[0], RO)
        },
        Err(Errno::EBUSY),
    );
    check_eq(
        "update_va_mapping in the hypervisor's range -> -EINVAL",
        pvmm::update_va_mapping_in_xen_range(0x1000, (fresh << 12) | RO),
        Err(Errno::EINVAL),
    );
    check_eq(
        "update_va_mapping with PSE set in an L1 entry of dom0",
        s.map(fresh, RO | (1 << 7)),
        Ok(0),
    );
    check_eq("restore the scratch page", s.restore(), Ok(0));
}

fn pin_checks(si: &StartInfo, s: &mut Scratch) {
    let (Some(p1), Some(p2)) = (pvmm::spare_pfn(si, 1), pvmm::spare_pfn(si, 2)) else {
        guest_rt::test::skip(format_args!("no spare pfns"));
        return;
    };
    let (t1, t2) = (
        pvmm::pfn_to_mfn(si, p1).unwrap_or(0),
        pvmm::pfn_to_mfn(si, p2).unwrap_or(0),
    );
    for t in [t2, t1] {
        check_eq("map a spare frame to clear it", s.map(t, RW), Ok(0));
        check("clear it", s.fill(0));
    }
    check_eq(
        "pin a frame that is mapped writable -> -EINVAL",
        pvmm::pin(1, t1),
        (Err(Errno::EINVAL), 0),
    );
    check_eq("restore", s.restore(), Ok(0));
    check_eq("pin an empty L1", pvmm::pin(1, t1), (Ok(0), 1));
    check_eq(
        "pin it again -> -EINVAL",
        pvmm::pin(1, t1),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "pin it as an L2 -> -EINVAL",
        pvmm::pin(2, t1),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "map the pinned L1 writable -> -EBUSY",
        s.map(t1, RW),
        Err(Errno::EBUSY),
    );
    check_eq("map the pinned L1 read-only", s.map(t1, RO), Ok(0));
    check_eq("restore", s.restore(), Ok(0));
    check_eq("unpin", pvmm::unpin(t1), (Ok(0), 1));
    check_eq(
        "unpin again -> -EINVAL",
        pvmm::unpin(t1),
        (Err(Errno::EINVAL), 0),
    );
    check_eq("unpinned: writable again", s.map(t1, RW), Ok(0));
    check_eq("restore", s.restore(), Ok(0));
    check_eq("pin an empty L4", pvmm::pin(4, t2), (Ok(0), 1));
    check_eq(
        "NEW_USER_BASEPTR to it",
        pvmm::new_user_baseptr(t2),
        (Ok(0), 1),
    );
    check_eq(
        "NEW_USER_BASEPTR to it again",
        pvmm::new_user_baseptr(t2),
        (Ok(0), 1),
    );
    check_eq(
        "NEW_USER_BASEPTR to a frame mapped writable -> -EINVAL",
        pvmm::new_user_baseptr(s.home()),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "the user base is still the pinned L4",
        pvmm::unpin(t1),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "unpin the user L4 while in use",
        pvmm::unpin(t2),
        (Ok(0), 1),
    );
    check_eq(
        "map it writable while CR3 holds it -> -EBUSY",
        s.map(t2, RW),
        Err(Errno::EBUSY),
    );
    check_eq("NEW_USER_BASEPTR 0", pvmm::new_user_baseptr(0), (Ok(0), 1));
    check_eq("now writable again", s.map(t2, RW), Ok(0));
    check_eq("restore", s.restore(), Ok(0));
    check_eq(
        "pin a frame that is not ours -> -EINVAL",
        pvmm::pin(1, 0x7fff_ffff),
        (Err(Errno::EINVAL), 0),
    );
}

fn mmuext_checks() {
    use xmm::*;
    let ok = (Ok(0), 1);
    check_eq(
        "TLB_FLUSH_LOCAL",
        pvmm::flush_op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0, DOMID_SELF),
        ok,
    );
    check_eq(
        "TLB_FLUSH_ALL",
        pvmm::flush_op(MMUEXT_TLB_FLUSH_ALL, 0, 0, DOMID_SELF),
        ok,
    );
    check_eq(
        "INVLPG_LOCAL",
        pvmm::flush_op(MMUEXT_INVLPG_LOCAL, 0x1000, 0, DOMID_SELF),
        ok,
    );
    check_eq(
        "INVLPG_ALL",
        pvmm::flush_op(MMUEXT_INVLPG_ALL, 0x1000, 0, DOMID_SELF),
        ok,
    );
    let mask = [1u64];
    check_eq(
        "TLB_FLUSH_MULTI",
        pvmm::flush_op(MMUEXT_TLB_FLUSH_MULTI, 0, mask.as_ptr() as u64, DOMID_SELF),
        ok,
    );
    check_eq(
        "INVLPG_MULTI with a bad mask pointer -> -EINVAL",
        pvmm::flush_op(MMUEXT_INVLPG_MULTI, 0x1000, 0, DOMID_SELF),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "mmuext_op naming itself as foreign domain -> -ESRCH",
        pvmm::flush_op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0, 0),
        (Err(Errno::ESRCH), 0),
    );
    check_eq(
        "mmuext_op with an unknown foreign domain -> -ESRCH",
        pvmm::flush_op(MMUEXT_TLB_FLUSH_LOCAL, 0, 0, 77),
        (Err(Errno::ESRCH), 0),
    );
    check_eq(
        "MARK_SUPER -> -EOPNOTSUPP",
        pvmm::flush_op(19, 0, 0, DOMID_SELF),
        (Err(Errno::EOPNOTSUPP), 0),
    );
    check_eq(
        "unknown mmuext command -> -ENOSYS",
        pvmm::flush_op(99, 0, 0, DOMID_SELF),
        (Err(Errno::ENOSYS), 0),
    );
    check_eq(
        "FLUSH_CACHE (dom0)",
        pvmm::flush_op(MMUEXT_FLUSH_CACHE, 0, 0, DOMID_SELF),
        ok,
    );
}

fn mmu_update_checks(si: &StartInfo, s: &mut Scratch) {
    check_eq(
        "mmu_update of L4 slot 256 (Xen's) -> -EINVAL",
        pvmm::update_xen_root_slot(si, 256, 0),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "mmu_update of L4 slot 271 (Xen's) -> -EINVAL",
        pvmm::update_xen_root_slot(si, 271, 0),
        (Err(Errno::EINVAL), 0),
    );
    let Some(pfn) = pvmm::spare_pfn(si, 3) else {
        return;
    };
    let mfn = pvmm::pfn_to_mfn(si, pfn).unwrap_or(0);
    check_eq(
        "MMU_MACHPHYS_UPDATE",
        pvmm::machphys_update(mfn, 0x1234),
        (Ok(0), 1),
    );
    check_eq("the read-only M2P shows it", pvmm::m2p(mfn), 0x1234);
    check_eq(
        "MMU_MACHPHYS_UPDATE back",
        pvmm::machphys_update(mfn, pfn),
        (Ok(0), 1),
    );
    check_eq(
        "MMU_MACHPHYS_UPDATE of a frame not ours -> -EINVAL",
        pvmm::machphys_update(0x7fff_ffff, 1),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "unknown mmu_update command -> -ENOSYS",
        pvmm::mmu_update_unknown(mfn, 5),
        (Err(Errno::ENOSYS), 0),
    );
    match pvmm::l1e_maddr(si, s.va()) {
        Some(maddr) => {
            check_eq(
                "mmu_update of the scratch L1 entry to a fresh frame",
                s.map_via_mmu_update(maddr, mfn, RW),
                (Ok(0), 1),
            );
            check("write through it", s.write(3, 99));
            check_eq("read back", s.read(3), Some(99));
            let root = pvmm::root_mfn(si).unwrap_or(0);
            check_eq(
                "mmu_update mapping the root writable -> -EBUSY",
                s.map_via_mmu_update(maddr, root, RW),
                (Err(Errno::EBUSY), 0),
            );
            check_eq("restore", s.restore(), Ok(0));
        }
        None => {
            check("found the scratch page's L1 entry", false);
        }
    }
}

fn balloon_checks(si: &StartInfo) {
    let Some(pfn) = pvmm::spare_pfn(si, 4) else {
        return;
    };
    let before = xmm::domid_query(xmm::XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    match pvmm::cycle_spare_pfn(si, pfn) {
        Ok((dec, pop, mfn)) => {
            check_eq("decrease_reservation of one frame", dec, Ok(1));
            check_eq("populate_physmap of its pfn", pop, Ok(1));
            check_eq("the new frame's M2P entry is the pfn", pvmm::m2p(mfn), pfn);
        }
        Err(e) => {
            check_eq("cycle a spare pfn", Err::<(), Errno>(e), Ok(()));
        }
    }
    if let Some(xpfn) = pvmm::spare_pfn(si, 5) {
        match pvmm::exchange_spare(si, xpfn) {
            Ok((r, n, mfn)) => {
                check_eq("XENMEM_exchange of one spare frame", (r, n), (Ok(0), 1));
                check_eq(
                    "the exchanged frame's M2P entry is the pfn",
                    pvmm::m2p(mfn),
                    xpfn,
                );
            }
            Err(e) => {
                check_eq("exchange a spare frame", Err::<(), Errno>(e), Ok(()));
            }
        }
    }
    check_eq(
        "XENMEM_exchange of the root page table -> -EINVAL",
        pvmm::exchange_root(si),
        (Err(Errno::EINVAL), 0),
    );
    check_eq(
        "current_reservation unchanged after the round trip",
        xmm::domid_query(xmm::XENMEM_CURRENT_RESERVATION, DOMID_SELF),
        before,
    );
}

/// Fills spare frame `mfn` (through the scratch page) with zeroes and the given entries.
fn prepare(s: &mut Scratch, mfn: u64, entries: &[(usize, u64)]) -> bool {
    let ok = s.map(mfn, RW) == Ok(0) && s.fill(0) && entries.iter().all(|&(i, v)| s.write(i, v));
    ok && s.restore() == Ok(0)
}

fn validation_checks(si: &StartInfo, s: &mut Scratch) {
    let (Some(p1), Some(p2), Some(p3)) = (
        pvmm::spare_pfn(si, 6),
        pvmm::spare_pfn(si, 7),
        pvmm::spare_pfn(si, 8),
    ) else {
        return;
    };
    let f = |p| pvmm::pfn_to_mfn(si, p).unwrap_or(0);
    let (t1, t2, t3) = (f(p1), f(p2), f(p3));
    let root = pvmm::root_mfn(si).unwrap_or(0);
    let ok = (Ok(0), 1);
    let einval = (Err(Errno::EINVAL), 0);
    let ebusy = (Err(Errno::EBUSY), 0);

    check(
        "prepare: an L1 mapping the root writable",
        prepare(s, t1, &[(3, (root << 12) | RW)]),
    );
    check_eq("pin it -> -EBUSY", pvmm::pin(1, t1), ebusy);
    check(
        "prepare: an L1 mapping the root read-only",
        prepare(s, t1, &[(3, (root << 12) | RO)]),
    );
    check_eq("pin it", pvmm::pin(1, t1), ok);
    check_eq("unpin it", pvmm::unpin(t1), ok);
    let mut xen = [0u64; 1];
    let _ = pvmm::machphys_mfn_list(&mut xen);
    check(
        "prepare: an L1 mapping a hypervisor frame",
        prepare(s, t1, &[(0, (xen[0] << 12) | RO)]),
    );
    check_eq("pin it -> -EBUSY", pvmm::pin(1, t1), ebusy);
    check(
        "prepare: an L2 with a superpage entry",
        prepare(s, t1, &[(1, (t2 << 12) | RO | (1 << 7))]),
    );
    check_eq("pin it -> -EINVAL", pvmm::pin(2, t1), einval);
    check(
        "prepare: an L2 with a GLOBAL entry (L1-only for PV)",
        prepare(s, t2, &[]) && prepare(s, t1, &[(1, (t2 << 12) | RW | (1 << 8))]),
    );
    check_eq("pin it -> -EINVAL", pvmm::pin(2, t1), einval);
    check(
        "prepare: an L2 pointing at a writable page",
        prepare(s, t1, &[(1, (s.home() << 12) | RW)]),
    );
    check_eq("pin it -> -EINVAL", pvmm::pin(2, t1), einval);
    check("prepare: an empty L1", prepare(s, t2, &[]));
    check(
        "prepare: an L2 pointing at it",
        prepare(s, t1, &[(1, (t2 << 12) | RW)]),
    );
    check_eq("pin the L2 (types the L1 below)", pvmm::pin(2, t1), ok);
    check_eq(
        "the L1 below is now a page table: writable map -> -EBUSY",
        s.map(t2, RW),
        Err(Errno::EBUSY),
    );
    check_eq("pin the L1 below as an L1 too", pvmm::pin(1, t2), ok);
    check_eq("unpin the L2", pvmm::unpin(t1), ok);
    check_eq(
        "the L1 stays typed while pinned",
        s.map(t2, RW),
        Err(Errno::EBUSY),
    );
    check_eq("unpin the L1", pvmm::unpin(t2), ok);
    check_eq("now writable", s.map(t2, RW), Ok(0));
    check_eq("restore", s.restore(), Ok(0));
    check(
        "prepare: an L3 pointing at an empty L2",
        prepare(s, t1, &[(0, (t2 << 12) | RW)]) && prepare(s, t2, &[]),
    );
    check_eq("pin the L3", pvmm::pin(3, t1), ok);
    check_eq("unpin the L3", pvmm::unpin(t1), ok);
    check(
        "prepare: an L4 mapping itself read-only at slot 5",
        prepare(s, t3, &[(5, (t3 << 12) | RO)]),
    );
    check_eq("pin it (a linear mapping)", pvmm::pin(4, t3), ok);
    check_eq("unpin it", pvmm::unpin(t3), ok);
    check(
        "prepare: an L4 mapping itself writable",
        prepare(s, t3, &[(5, (t3 << 12) | RW)]),
    );
    check_eq("pin it -> -EINVAL", pvmm::pin(4, t3), einval);
    check(
        "prepare: an L4 with a hypervisor-slot entry",
        prepare(s, t3, &[(256, (t3 << 12) | RW)]),
    );
    check_eq(
        "pin it: Xen's slots are not validated (it writes its own)",
        pvmm::pin(4, t3),
        ok,
    );
    check_eq("map the L4 read-only to look", s.map(t3, RO), Ok(0));
    check(
        "slot 256 now holds Xen's M2P mapping, not ours",
        s.read(256).is_some_and(|e| e >> 12 != t3),
    );
    check_eq("restore", s.restore(), Ok(0));
    check_eq("unpin it", pvmm::unpin(t3), ok);

    // Flush flags of update_va_mapping: the entry changes before the vCPU mask is read.
    check_eq(
        "update_va_mapping with UVMF_MULTI and a bad mask pointer -> -EFAULT",
        s.map_flush(t2, RW, 1 | 0x1000),
        Err(Errno::EFAULT),
    );
    check(
        "the mapping changed anyway",
        s.write(1, 5) && s.read(1) == Some(5),
    );
    let mask = [1u64];
    check_eq(
        "update_va_mapping with UVMF_INVLPG | UVMF_MULTI",
        s.map_flush(t2, RW, 2 | (mask.as_ptr() as u64)),
        Ok(0),
    );
    check_eq(
        "UVMF_TLB_FLUSH | UVMF_ALL",
        s.map_flush(t2, RW, 1 | 4),
        Ok(0),
    );
    check_eq("flush type 3 (none)", s.map_flush(t2, RW, 3), Ok(0));
    if let Some(maddr) = pvmm::l1e_maddr(si, s.va()) {
        check_eq(
            "MMU_PT_UPDATE_PRESERVE_AD of the scratch entry",
            s.map_via_mmu_update_cmd(maddr, t2, RW, 2),
            ok,
        );
    }
    check_eq("restore", s.restore(), Ok(0));

    // Batches stop at the first failure and report how many were done.
    check_eq(
        "mmu_update batch failing at its second request",
        pvmm::machphys_batch(&[(t1, p1), (0x7fff_ffff, 1), (t1, p1)]),
        (Err(Errno::EINVAL), 1),
    );
    check_eq(
        "mmuext_op batch failing at its second operation",
        pvmm::flush_batch(&[(6, 0), (99, 0), (6, 0)]),
        (Err(Errno::ENOSYS), 1),
    );
    check_eq(
        "an empty mmuext_op batch",
        pvmm::flush_batch(&[]),
        (Ok(0), 0),
    );
    check_eq(
        "mmuext_op with an unwritable done pointer still succeeds",
        pvmm::flush_with_bad_done(guest_rt::hypercall::BadPtr::HYPERVISOR),
        Ok(0),
    );
}

fn memory_op_checks(si: &StartInfo) {
    use guest_rt::shared_info::SharedInfo;
    check_eq(
        "add_to_physmap on a PV domain -> -EACCES",
        pvmm::memory_op_zeroed(7, 0),
        Err(Errno::EACCES),
    );
    check_eq(
        "remove_from_physmap on a PV domain -> -EACCES",
        pvmm::memory_op_zeroed(15, 0),
        Err(Errno::EACCES),
    );
    check_eq(
        "add_to_physmap_batch on a PV domain -> -EACCES",
        pvmm::memory_op_zeroed(23, 0),
        Err(Errno::EACCES),
    );
    check_eq(
        "get_pod_target of a PV domain -> -EINVAL",
        pvmm::memory_op_zeroed(17, 32),
        Err(Errno::EINVAL),
    );
    check_eq(
        "get_sharing_freed_pages",
        pvmm::memory_op_zeroed(18, 0),
        Ok(0),
    );
    check_eq(
        "get_vnumainfo without vNUMA -> -EOPNOTSUPP",
        pvmm::memory_op_zeroed(26, 0),
        Err(Errno::EOPNOTSUPP),
    );
    check_eq(
        "machphys_compat_mfn_list -> -EOPNOTSUPP",
        pvmm::memory_op_zeroed(25, 0),
        Err(Errno::EOPNOTSUPP),
    );
    check_eq(
        "unknown memory_op 63 -> -ENOSYS",
        pvmm::memory_op_zeroed(63, 0),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "set_memory_map of no entries",
        pvmm::memory_op_zeroed(13, 0),
        Ok(0),
    );
    let mut map = [xmm::E820Entry::default(); 4];
    check_eq(
        "memory_map after setting an empty one -> -ENOSYS",
        xmm::memory_map(false, &mut map),
        Err(Errno::ENOSYS),
    );
    match SharedInfo::map(si) {
        Ok(sh) => {
            let old = sh.max_pfn();
            info(format_args!("shared_info arch.max_pfn {}", old));
            sh.set_max_pfn(0);
            check_eq(
                "maximum_gpfn with max_pfn 0",
                xmm::domid_query(xmm::XENMEM_MAXIMUM_GPFN, DOMID_SELF),
                Ok(0),
            );
            sh.set_max_pfn(1234);
            check_eq(
                "maximum_gpfn is shared_info's max_pfn - 1",
                xmm::domid_query(xmm::XENMEM_MAXIMUM_GPFN, DOMID_SELF),
                Ok(1233),
            );
            sh.set_max_pfn(old);
        }
        Err(e) => {
            check_eq("map shared_info", Err::<(), Errno>(e), Ok(()));
        }
    }
}
