//! Tests of the frame machine and the MMU hypercalls on the fixture domain.

use super::fixture::{self, audit, call, harness, l1_slot, mfn, L1_PFN, MAPPED, VA_BASE};
use super::pt::{A, GUEST_KERNEL, P, PCD, RW, US};
use super::PageType;
use crate::effect::{Effect, MmEffect};
use crate::hypercall::testing::CONTINUED;
use dom0_interface::xen::*;

const UVMF_LOCAL_INVLPG: u64 = UVMF_INVLPG;

fn va(pfn: u64) -> u64 {
    VA_BASE + pfn * 4096
}

fn pte(mfn: u64, flags: u64) -> u64 {
    (mfn << 12) | flags
}

fn uvm(h: &mut crate::hypercall::testing::Harness, va: u64, val: u64, flags: u64) -> i64 {
    call(h, HYPERVISOR_UPDATE_VA_MAPPING, [va, val, flags, 0, 0]).ret
}

/// Writes `ops` (mmuext_op structs) at guest address 0x9000 and runs them.
pub(super) fn mmuext(
    h: &mut crate::hypercall::testing::Harness,
    ops: &[(u32, u64, u64)],
    dom: u64,
) -> (i64, u32) {
    let mut bytes = alloc::vec::Vec::new();
    for &(cmd, a1, a2) in ops {
        bytes.extend_from_slice(
            &MmuextOp {
                cmd,
                arg1: a1,
                arg2: a2,
            }
            .to_vec(),
        );
    }
    h.mem.map(0x9000, &bytes);
    h.mem.map(0x8000, &[0xff; 4]);
    let r = call(
        h,
        HYPERVISOR_MMUEXT_OP,
        [0x9000, ops.len() as u64, 0x8000, dom, 0],
    );
    let mut d = [0u8; 4];
    for (i, b) in d.iter_mut().enumerate() {
        *b = h.mem.bytes.get(&(0x8000 + i as u64)).copied().unwrap_or(0);
    }
    (r.ret, u32::from_le_bytes(d))
}

fn mmu_update(
    h: &mut crate::hypercall::testing::Harness,
    reqs: &[(u64, u64)],
    dom: u64,
) -> (i64, u32) {
    let mut bytes = alloc::vec::Vec::new();
    for &(ptr, val) in reqs {
        bytes.extend_from_slice(&MmuUpdate { ptr, val }.to_vec());
    }
    h.mem.map(0xa000, &bytes);
    h.mem.map(0x8000, &[0xff; 4]);
    let r = call(
        h,
        HYPERVISOR_MMU_UPDATE,
        [0xa000, reqs.len() as u64, 0x8000, dom, 0],
    );
    let mut d = [0u8; 4];
    for (i, b) in d.iter_mut().enumerate() {
        *b = h.mem.bytes.get(&(0x8000 + i as u64)).copied().unwrap_or(0);
    }
    (r.ret, u32::from_le_bytes(d))
}

use dom0_interface::guest_abi::GuestAbi;

#[test]
fn registered_domain_has_xen_builder_counts() {
    let h = harness(false);
    audit(&h).unwrap();
    let root = h.state.frames.get(&mfn(0)).unwrap();
    assert_eq!((root.count, root.type_count, root.pinned), (4, 2, true));
    assert_eq!(root.ty, PageType::L4);
    let l1 = h.state.frames.get(&mfn(L1_PFN)).unwrap();
    assert_eq!((l1.count, l1.type_count, l1.ty), (3, 1, PageType::L1));
    let data = h.state.frames.get(&mfn(10)).unwrap();
    assert_eq!(
        (data.count, data.type_count, data.ty),
        (2, 1, PageType::Writable)
    );
    let spare = h.state.frames.get(&mfn(40)).unwrap();
    assert_eq!((spare.count, spare.type_count, spare.m2p), (1, 0, 40));
    assert_eq!(h.state.domains.get(&1).unwrap().tot_pages, fixture::PAGES);
    assert_eq!(h.state.vcpus.get(&(1, 0)).unwrap().cr3, mfn(0) << 12);
}

#[test]
fn update_va_mapping_unmaps_and_maps_fresh_frames() {
    let mut h = harness(false);
    assert_eq!(uvm(&mut h, va(10), 0, UVMF_LOCAL_INVLPG), 0);
    assert_eq!(h.mem.word(l1_slot(10)), 0);
    let f = h.state.frames.get(&mfn(10)).unwrap();
    assert_eq!((f.count, f.type_count), (1, 0));
    audit(&h).unwrap();
    // A fresh frame, writable, at an unused slot; the kernel mapping gets USER|GUEST_KERNEL.
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [va(40), pte(mfn(41), P | RW | A), UVMF_INVLPG, 0, 0],
    );
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::Mm(MmEffect::FlushTlb {
        dom: 1,
        vcpus: Some(alloc::vec![0]),
        va: Some(va(40))
    })));
    assert_eq!(
        h.mem.word(l1_slot(40)),
        pte(mfn(41), P | RW | A | US | GUEST_KERNEL)
    );
    assert_eq!(h.state.frames.get(&mfn(41)).unwrap().ty, PageType::Writable);
    audit(&h).unwrap();
    // UVMF_ALL flushes every vCPU; a bad vCPU mask pointer is -EFAULT after the update.
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [va(40), 0, UVMF_TLB_FLUSH | UVMF_ALL, 0, 0],
    );
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::Mm(MmEffect::FlushTlb {
        dom: 1,
        vcpus: None,
        va: None
    })));
    assert_eq!(
        uvm(
            &mut h,
            va(40),
            pte(mfn(41), P),
            UVMF_TLB_FLUSH | 0xdead_0000
        ),
        -14
    );
    h.mem.map(0xdead_0000, &2u64.to_le_bytes());
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [va(40), 0, UVMF_INVLPG | 0xdead_0000, 0, 0],
    );
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::Mm(MmEffect::FlushTlb {
        dom: 1,
        vcpus: Some(alloc::vec![1]),
        va: Some(va(40))
    })));
    audit(&h).unwrap();
}

#[test]
fn refusals_carry_xens_errnos() {
    let mut h = harness(false);
    // A page table mapped writable: -EBUSY (could not take PGT_writable_page).
    assert_eq!(uvm(&mut h, va(40), pte(mfn(L1_PFN), P | RW), 0), -16);
    // Read-only is fine.
    assert_eq!(uvm(&mut h, va(40), pte(mfn(L1_PFN), P), 0), 0);
    // RAM the domain does not own: -EBUSY; I/O memory for a domU: -EPERM.
    assert_eq!(uvm(&mut h, va(41), pte(0x500, P), 0), -16);
    assert_eq!(uvm(&mut h, va(41), pte(0x10_0000, P), 0), -1);
    // Cache attributes in a domU's L1: -EINVAL.
    assert_eq!(uvm(&mut h, va(41), pte(mfn(42), P | PCD), 0), -22);
    // The hypervisor's range and unmapped regions: -EINVAL.
    assert_eq!(uvm(&mut h, 0xffff_8000_0000_1000, pte(mfn(42), P), 0), -22);
    assert_eq!(uvm(&mut h, 0x8000_0000, pte(mfn(42), P), 0), -22);
    // The shared_info frame is the domain's to map, but not uncached... nor can it be freed.
    assert_eq!(uvm(&mut h, va(42), pte(fixture::SHARED_INFO, P | RW), 0), 0);
    audit(&h).unwrap();
}

#[test]
fn dom0_may_map_io_memory_and_cache_attributes() {
    let mut h = harness(true);
    assert_eq!(uvm(&mut h, va(41), pte(0x10_0000, P | RW), 0), 0);
    // Cacheable I/O memory is forced uncacheable (PCD|PWT flipped in).
    assert_eq!(h.mem.word(l1_slot(41)) & 0x18, 0x18);
    assert_eq!(uvm(&mut h, va(42), pte(mfn(42), P | PCD), 0), 0);
    assert_eq!(
        uvm(&mut h, va(43), pte(fixture::SHARED_INFO, P | PCD), 0),
        -13
    );
    audit(&h).unwrap();
}

#[test]
fn pin_unpin_and_type_changes() {
    let mut h = harness(false);
    let f = mfn(36);
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L1_TABLE, f, 0)], 0x7ff0),
        (0, 1)
    );
    assert_eq!(h.state.frames.get(&f).unwrap().ty, PageType::L1);
    audit(&h).unwrap();
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L1_TABLE, f, 0)], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L2_TABLE, f, 0)], 0x7ff0),
        (-22, 0)
    );
    // Pinned as a table: writable mappings are refused.
    assert_eq!(uvm(&mut h, va(40), pte(f, P | RW), 0), -16);
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_UNPIN_TABLE, f, 0)], 0x7ff0),
        (0, 1)
    );
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_UNPIN_TABLE, f, 0)], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(uvm(&mut h, va(40), pte(f, P | RW), 0), 0);
    // Now writable: pinning as a table fails.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L1_TABLE, f, 0)], 0x7ff0),
        (-22, 0)
    );
    // Not ours: -EINVAL.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L1_TABLE, 0x500, 0)], 0x7ff0),
        (-22, 0)
    );
    audit(&h).unwrap();
}

#[test]
fn validation_refuses_writable_table_mappings_inside_a_table() {
    let mut h = harness(false);
    let t = mfn(37);
    h.mem.machine.insert(t << 12, pte(mfn(L1_PFN), P | RW));
    h.mem.machine.insert((t << 12) + 8, pte(mfn(38), P | RW));
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L1_TABLE, t, 0)], 0x7ff0),
        (-16, 0)
    );
    let f = h.state.frames.get(&t).unwrap();
    assert_eq!((f.type_count, f.ty), (0, PageType::None));
    // Nothing leaked from the entry validated before the failure.
    assert_eq!(h.state.frames.get(&mfn(38)).unwrap().count, 1);
    audit(&h).unwrap();
    // Read-only, it validates; the entries then hold references.
    h.mem.machine.insert(t << 12, pte(mfn(L1_PFN), P));
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_PIN_L1_TABLE, t, 0)], 0x7ff0),
        (0, 1)
    );
    assert_eq!(h.state.frames.get(&mfn(38)).unwrap().type_count, 1);
    audit(&h).unwrap();
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_UNPIN_TABLE, t, 0)], 0x7ff0),
        (0, 1)
    );
    assert_eq!(h.state.frames.get(&mfn(38)).unwrap().type_count, 0);
    audit(&h).unwrap();
}

#[test]
fn new_baseptrs_and_the_hypervisor_slots() {
    let mut h = harness(false);
    let u = mfn(38);
    let (rc, done) = mmuext(
        &mut h,
        &[(MMUEXT_PIN_L4_TABLE, u, 0), (MMUEXT_NEW_USER_BASEPTR, u, 0)],
        0x7ff0,
    );
    assert_eq!((rc, done), (0, 2));
    assert_eq!(h.state.vcpus.get(&(1, 0)).unwrap().user_cr3, u << 12);
    audit(&h).unwrap();
    // Xen's slots cannot be written; guest slots can, linear only read-only.
    let root = mfn(0) << 12;
    assert_eq!(
        mmu_update(&mut h, &[(root + 256 * 8, pte(u, P))], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(
        mmu_update(&mut h, &[(root + 5 * 8, pte(mfn(0), P | RW))], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(
        mmu_update(&mut h, &[(root + 5 * 8, pte(mfn(0), P))], 0x7ff0),
        (0, 1)
    );
    assert_eq!(
        mmu_update(&mut h, &[(root + 6 * 8, pte(u, P))], 0x7ff0),
        (0, 1)
    );
    audit(&h).unwrap();
    assert_eq!(h.state.frames.get(&u).unwrap().linear, -1);
    assert_eq!(
        mmu_update(&mut h, &[(root + 6 * 8, 0), (root + 5 * 8, 0)], 0x7ff0),
        (0, 2)
    );
    assert_eq!(h.state.frames.get(&u).unwrap().linear, 0);
    // Switching the user base back to none drops its reference; unpin frees the type.
    assert_eq!(
        mmuext(
            &mut h,
            &[(MMUEXT_NEW_USER_BASEPTR, 0, 0), (MMUEXT_UNPIN_TABLE, u, 0)],
            0x7ff0
        ),
        (0, 2)
    );
    assert_eq!(h.state.frames.get(&u).unwrap().type_count, 0);
    // A new kernel base: an L4 we own.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_NEW_BASEPTR, mfn(40), 0)], 0x7ff0),
        (0, 1)
    );
    audit(&h).unwrap();
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_NEW_BASEPTR, mfn(10), 0)], 0x7ff0),
        (-22, 0)
    );
    // Naming oneself as the foreign domain: -ESRCH; an unknown domain: -ESRCH.
    assert_eq!(mmuext(&mut h, &[(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], 1).0, -3);
    assert_eq!(mmuext(&mut h, &[(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)], 9).0, -3);
    assert_eq!(mmuext(&mut h, &[(99, 0, 0)], 0x7ff0), (-38, 0));
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_MARK_SUPER, 0, 0)], 0x7ff0),
        (-95, 0)
    );
}

#[test]
fn mmu_update_commands_and_done_count() {
    let mut h = harness(false);
    // Normal update of an L1 entry (by machine address), then M2P and plain-page writes.
    let reqs = [
        (l1_slot(40), pte(mfn(40), P | RW)),
        (mfn(41) << 12 | MMU_MACHPHYS_UPDATE, 7),
        ((mfn(42) << 12) + 16, 0x1234),
    ];
    assert_eq!(mmu_update(&mut h, &reqs, 0x7ff0), (0, 3));
    assert_eq!(h.state.frames.get(&mfn(41)).unwrap().m2p, 7);
    assert_eq!(h.mem.word((mfn(42) << 12) + 16), 0x1234);
    audit(&h).unwrap();
    // The second request fails: done is 1 and the first stays applied.
    let reqs = [
        (l1_slot(41), pte(mfn(41), P)),
        (l1_slot(42), pte(0x500, P)),
        (l1_slot(43), 0),
    ];
    assert_eq!(mmu_update(&mut h, &reqs, 0x7ff0), (-16, 1));
    assert_ne!(h.mem.word(l1_slot(41)), 0);
    // Unknown command, foreign page table owner, bad pointer.
    assert_eq!(
        mmu_update(&mut h, &[(l1_slot(44) | 4, 0)], 0x7ff0),
        (-38, 0)
    );
    assert_eq!(mmu_update(&mut h, &[(0x500 << 12, 0)], 0x7ff0), (-22, 0));
    assert_eq!(
        call(
            &mut h,
            HYPERVISOR_MMU_UPDATE,
            [0xffff_8000_0000_0000, 1, 0, 0x7ff0, 0]
        )
        .ret,
        -14
    );
    assert_eq!(
        call(
            &mut h,
            HYPERVISOR_MMU_UPDATE,
            [0x7000_0000, 1, 0, 0x7ff0, 0]
        )
        .ret,
        -14
    );
    audit(&h).unwrap();
}

#[test]
fn a_request_that_cannot_be_read_fails_after_the_ones_before_it() {
    // mmu_update reads its requests a page's worth at a time; when that read fails, each
    // request is read on its own: the readable ones run, the first unreadable one is -EFAULT.
    let mut h = harness(false);
    let reqs = |v: u64| {
        let mut bytes = alloc::vec::Vec::new();
        for (ptr, val) in [
            (l1_slot(40), pte(mfn(40), P | RW)),
            ((mfn(42) << 12) + 16, v),
        ] {
            bytes.extend_from_slice(&MmuUpdate { ptr, val }.to_vec());
        }
        bytes
    };
    let done = |h: &crate::hypercall::testing::Harness| {
        let d: alloc::vec::Vec<u8> = (0..4)
            .map(|i| h.mem.bytes.get(&(0x8000 + i)).copied().unwrap_or(0))
            .collect();
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    };
    h.mem.map(0x8000, &[0xff; 4]);
    // Four requests asked for, two readable, in the same page.
    h.mem.map(0xa000, &reqs(0x77));
    let r = call(
        &mut h,
        HYPERVISOR_MMU_UPDATE,
        [0xa000, 4, 0x8000, 0x7ff0, 0],
    );
    assert_eq!((r.ret, done(&h)), (-14, 2));
    assert_eq!(h.mem.word((mfn(42) << 12) + 16), 0x77);
    // Three asked for, the two readable ones end a page, the third would be in the next.
    h.mem.map(0xbfe0, &reqs(0x78));
    let r = call(
        &mut h,
        HYPERVISOR_MMU_UPDATE,
        [0xbfe0, 3, 0x8000, 0x7ff0, 0],
    );
    assert_eq!((r.ret, done(&h)), (-14, 2));
    assert_eq!(h.mem.word((mfn(42) << 12) + 16), 0x78);
    // A request straddling the page boundary, readable: all three run.
    let mut three = reqs(0x79);
    three.extend_from_slice(
        &MmuUpdate {
            ptr: (mfn(42) << 12) + 24,
            val: 0x7a,
        }
        .to_vec(),
    );
    h.mem.map(0xcff8, &three);
    let r = call(
        &mut h,
        HYPERVISOR_MMU_UPDATE,
        [0xcff8, 3, 0x8000, 0x7ff0, 0],
    );
    assert_eq!((r.ret, done(&h)), (0, 3));
    assert_eq!(h.mem.word((mfn(42) << 12) + 16), 0x79);
    assert_eq!(h.mem.word((mfn(42) << 12) + 24), 0x7a);
    audit(&h).unwrap();
}

#[test]
fn long_batches_continue_themselves() {
    let mut h = harness(false);
    let reqs: alloc::vec::Vec<(u64, u64)> = (0..300)
        .map(|i| ((mfn(42) << 12) + (i % 512) * 8, i))
        .collect();
    let (rc, done) = mmu_update(&mut h, &reqs, 0x7ff0);
    assert_eq!((rc, done), (CONTINUED, 256));
    let r = call(
        &mut h,
        HYPERVISOR_MMU_UPDATE,
        [0xa000 + 256 * 16, 44 | (1 << 31), 0x8000, 0x7ff0, 0],
    );
    assert_eq!(r.ret, 0);
    assert_eq!(h.mem.bytes.get(&0x8000).copied(), Some(44));
    assert_eq!(h.mem.bytes.get(&0x8001).copied(), Some(1));
}

#[test]
fn flushes_ldt_clear_and_copy() {
    let mut h = harness(false);
    let ops = [
        (MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        (MMUEXT_INVLPG_ALL, va(5), 0),
        (MMUEXT_INVLPG_LOCAL, 0xffff_8000_0000_0000, 0),
        (MMUEXT_SET_LDT, va(20), 3),
        (MMUEXT_CLEAR_PAGE, mfn(20), 0),
        (MMUEXT_COPY_PAGE, mfn(21), mfn(22)),
    ];
    let r = {
        let (rc, done) = mmuext(&mut h, &ops, 0x7ff0);
        assert_eq!((rc, done), (0, 6));
        call(&mut h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 0x7ff0, 0])
    };
    assert_eq!(r.ret, 0);
    let v = h.state.vcpus.get(&(1, 0)).unwrap();
    assert_eq!((v.ldt_base, v.ldt_ents), (va(20), 3));
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_SET_LDT, va(20) + 8, 3)], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_CLEAR_PAGE, mfn(L1_PFN), 0)], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_COPY_PAGE, mfn(21), 0x500)], 0x7ff0),
        (-22, 0)
    );
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_FLUSH_CACHE, 0, 0)], 0x7ff0),
        (-13, 0)
    );
    // The multi variants read a vCPU bitmap; a bad one is -EINVAL.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_TLB_FLUSH_MULTI, 0, 0x7777_0000)], 0x7ff0),
        (-22, 0)
    );
    audit(&h).unwrap();
}

#[test]
fn mappings_count_each_reference() {
    let mut h = harness(false);
    for slot in 40..48 {
        assert_eq!(uvm(&mut h, va(slot), pte(mfn(45), P | RW), 0), 0);
    }
    assert_eq!(h.state.frames.get(&mfn(45)).unwrap().type_count, 8);
    for slot in 40..48 {
        assert_eq!(uvm(&mut h, va(slot), 0, 0), 0);
    }
    let f = h.state.frames.get(&mfn(45)).unwrap();
    assert_eq!((f.count, f.type_count), (1, 0));
    audit(&h).unwrap();
    let _ = MAPPED;
}

/// Fills frame `mfn` of the fixture's machine memory with zeroes and `entries`.
fn prepare(h: &mut crate::hypercall::testing::Harness, mfn: u64, entries: &[(u64, u64)]) {
    for i in 0..512 {
        h.mem.machine.remove(&((mfn << 12) + i * 8));
    }
    for &(i, v) in entries {
        h.mem.machine.insert((mfn << 12) + i * 8, v);
    }
}

/// The validation sequence of the mm test guest, with the answers Xen 4.17 gave it.
#[test]
fn validation_flows_answer_as_xen_did() {
    let mut h = harness(true);
    let (t1, t2, t3) = (mfn(40), mfn(41), mfn(42));
    let root = mfn(0);
    let pin = |h: &mut crate::hypercall::testing::Harness, level: u32, m: u64| {
        mmuext(h, &[(MMUEXT_PIN_L1_TABLE + level - 1, m, 0)], 0x7ff0)
    };
    let unpin = |h: &mut crate::hypercall::testing::Harness, m: u64| {
        mmuext(h, &[(MMUEXT_UNPIN_TABLE, m, 0)], 0x7ff0)
    };
    prepare(&mut h, t1, &[(3, pte(root, P | RW))]);
    assert_eq!(pin(&mut h, 1, t1), (-16, 0));
    prepare(&mut h, t1, &[(3, pte(root, P))]);
    assert_eq!(pin(&mut h, 1, t1), (0, 1));
    assert_eq!(unpin(&mut h, t1), (0, 1));
    prepare(&mut h, t1, &[(0, pte(0x500, P))]); // RAM nobody owns (the hypervisor's)
    assert_eq!(pin(&mut h, 1, t1), (-16, 0));
    prepare(&mut h, t1, &[(1, pte(t2, P | (1 << 7)))]);
    assert_eq!(pin(&mut h, 2, t1), (-22, 0));
    // GLOBAL is an L1-only bit for a PV guest (L2_DISALLOW_MASK has it): what Linux wrote
    // into its direct map's L2s while the CPUID showed PGE.
    prepare(&mut h, t2, &[]);
    prepare(&mut h, t1, &[(1, pte(t2, P | RW | (1 << 8)))]);
    assert_eq!(pin(&mut h, 2, t1), (-22, 0));
    prepare(&mut h, t1, &[(1, pte(mfn(10), P | RW))]);
    assert_eq!(pin(&mut h, 2, t1), (-22, 0));
    prepare(&mut h, t2, &[]);
    prepare(&mut h, t1, &[(1, pte(t2, P | RW))]);
    assert_eq!(pin(&mut h, 2, t1), (0, 1));
    assert_eq!(uvm(&mut h, va(44), pte(t2, P | RW), 0), -16);
    assert_eq!(pin(&mut h, 1, t2), (0, 1));
    assert_eq!(unpin(&mut h, t1), (0, 1));
    assert_eq!(uvm(&mut h, va(44), pte(t2, P | RW), 0), -16);
    assert_eq!(unpin(&mut h, t2), (0, 1));
    assert_eq!(uvm(&mut h, va(44), pte(t2, P | RW), 0), 0);
    assert_eq!(uvm(&mut h, va(44), 0, 0), 0);
    prepare(&mut h, t2, &[]);
    prepare(&mut h, t1, &[(0, pte(t2, P | RW))]);
    assert_eq!(pin(&mut h, 3, t1), (0, 1));
    assert_eq!(unpin(&mut h, t1), (0, 1));
    prepare(&mut h, t3, &[(5, pte(t3, P))]);
    assert_eq!(pin(&mut h, 4, t3), (0, 1));
    assert_eq!(unpin(&mut h, t3), (0, 1));
    prepare(&mut h, t3, &[(5, pte(t3, P | RW))]);
    assert_eq!(pin(&mut h, 4, t3), (-22, 0));
    prepare(&mut h, t3, &[(256, pte(t3, P | RW))]);
    let r = {
        h.mem.map(
            0x9000,
            &MmuextOp {
                cmd: MMUEXT_PIN_L4_TABLE,
                arg1: t3,
                arg2: 0,
            }
            .to_vec(),
        );
        call(&mut h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 0x7ff0, 0])
    };
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::Mm(MmEffect::XenL4Slots {
        mfn: t3,
        ro_m2p: true
    })));
    assert_eq!(unpin(&mut h, t3), (0, 1));
    audit(&h).unwrap();
    // Batches stop at the first failure; an empty one does nothing.
    assert_eq!(
        mmuext(
            &mut h,
            &[
                (MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
                (99, 0, 0),
                (MMUEXT_TLB_FLUSH_LOCAL, 0, 0)
            ],
            0x7ff0
        ),
        (-38, 1)
    );
    assert_eq!(mmuext(&mut h, &[], 0x7ff0), (0, 0));
    // PRESERVE_AD keeps the A/D bits the entry had.
    assert_eq!(
        mmu_update(
            &mut h,
            &[(l1_slot(44), pte(mfn(44), P | RW | A | super::pt::D))],
            0x7ff0
        ),
        (0, 1)
    );
    assert_eq!(
        mmu_update(
            &mut h,
            &[(
                l1_slot(44) | MMU_PT_UPDATE_PRESERVE_AD,
                pte(mfn(44), P | RW)
            )],
            0x7ff0
        ),
        (0, 1)
    );
    assert_eq!(
        h.mem.word(l1_slot(44)) & (A | super::pt::D),
        A | super::pt::D
    );
    audit(&h).unwrap();
}

#[test]
fn type_changes_flush_and_l1_writes_are_emulated() {
    let mut h = harness(false);
    // A frame that was writable becomes an L1: every vCPU of the owner flushes.
    let f = mfn(36);
    assert_eq!(uvm(&mut h, va(40), pte(f, P | RW), 0), 0);
    assert_eq!(uvm(&mut h, va(40), 0, 0), 0);
    h.mem.map(
        0x9000,
        &MmuextOp {
            cmd: MMUEXT_PIN_L1_TABLE,
            arg1: f,
            arg2: 0,
        }
        .to_vec(),
    );
    let r = call(&mut h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 0x7ff0, 0]);
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::Mm(MmEffect::FlushTlb {
        dom: 1,
        vcpus: None,
        va: None
    })));
    // Emulated writes to an L1 entry go through validation.
    let mut j = lockstep::Journal::new();
    j.begin(99);
    let mut env = super::testenv::MemEnv {
        mem: &mut h.mem,
        j: &mut j,
        effects: alloc::vec::Vec::new(),
    };
    let st = &mut h.state;
    let slot = l1_slot(45);
    assert!(super::pt::emulate_l1_write(st, &mut env, 1, slot, pte(mfn(45), P | RW)).is_ok());
    assert_eq!(
        super::pt::emulate_l1_write(st, &mut env, 1, l1_slot(46), pte(mfn(L1_PFN), P | RW)),
        Err(crate::hv::HvError::Errno(
            dom0_interface::errno::XenErrno::EBUSY
        ))
    );
    assert!(super::pt::emulate_l1_write(st, &mut env, 1, (mfn(10) << 12) + 8, 0).is_err());
    assert!(super::pt::emulate_l1_write(st, &mut env, 1, slot + 1, 0).is_err());
    drop(env);
    lockstep::replica::forget(&mut h.state);
    audit(&h).unwrap();
}

#[test]
fn page_info_digest_sees_every_bit_of_every_field() {
    use super::PageInfo;
    use lockstep::value::checksum;
    use lockstep::Value;
    let p = PageInfo {
        owner: 7,
        count: 3,
        allocated: true,
        ty: PageType::L2,
        type_count: 2,
        validated: true,
        pinned: false,
        special: false,
        linear: -1,
        m2p: 0x1234,
    };
    assert_eq!(
        p.bit_len(),
        183,
        "the fields' widths, as before the packed digest"
    );
    let base = checksum(&p);
    let mut seen = alloc::collections::BTreeSet::new();
    for bit in 0..p.bit_len() {
        let mut q = p.clone();
        q.flip_bit(bit);
        assert_ne!(q, p, "bit {bit} changes a field");
        assert_ne!(checksum(&q), base, "bit {bit} changes the digest");
        assert!(
            seen.insert(checksum(&q)),
            "bit {bit}: two flips, one digest"
        );
        if !(49..52).contains(&bit) {
            // (A type flipped into a code no type has becomes another type.)
            q.flip_bit(bit);
            assert_eq!(q, p, "bit {bit} flipped back");
        }
    }
    // The same fields in another order of values digest differently (no field overlaps
    // another in the packed words).
    let swapped = PageInfo {
        count: 7,
        owner: 3,
        ..p.clone()
    };
    assert_ne!(checksum(&swapped), base);
}
