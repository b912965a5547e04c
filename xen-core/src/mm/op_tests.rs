//! memory_op, foreign mappings by a privileged domain, and the destroy path.

use super::build::destroy_domain_memory;
use super::fixture::{
    audit, call, harness, l1_slot, map_domu5_frame, mfn, with_domu5, MAX_PAGE, PAGES, VA_BASE,
};
use super::pt::{P, RW};
use super::{DomMm, MmConfig, MACH2PHYS_NR_ENTRIES, NO_FRAME};
use crate::effect::{Effect, MmEffect};
use crate::hv::{create_domain, value_kind};
use crate::hypercall::testing::Harness;
use alloc::vec::Vec;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::memory::*;
use dom0_interface::xen::*;
use lockstep::Journal;

fn domid_op(h: &mut Harness, cmd: u32, domid: u16) -> i64 {
    h.mem.map(0x7000, &domid.to_le_bytes());
    call(h, HYPERVISOR_MEMORY_OP, [u64::from(cmd), 0x7000, 0, 0, 0]).ret
}

fn reservation(
    h: &mut Harness,
    cmd: u32,
    extents: &[u64],
    order: u32,
    domid: u16,
) -> (i64, Vec<u64>, Vec<Effect>) {
    let mut b = Vec::new();
    for e in extents {
        b.extend_from_slice(&e.to_le_bytes());
    }
    h.mem.map(0xb000, &b);
    let r = XenMemoryReservation {
        extent_start: 0xb000,
        nr_extents: extents.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid,
    };
    h.mem.map(0xc000, &r.to_vec());
    let out = call(h, HYPERVISOR_MEMORY_OP, [u64::from(cmd), 0xc000, 0, 0, 0]);
    let words = (0..extents.len() as u64)
        .map(|i| {
            let mut w = [0u8; 8];
            for (k, x) in w.iter_mut().enumerate() {
                *x = h
                    .mem
                    .bytes
                    .get(&(0xb000 + i * 8 + k as u64))
                    .copied()
                    .unwrap_or(0);
            }
            u64::from_le_bytes(w)
        })
        .collect();
    (out.ret, words, out.effects)
}

fn set_config(h: &mut Harness, c: MmConfig) {
    let mut j = Journal::new();
    j.begin(1);
    h.state.mm_config.set(&mut j, c);
    lockstep::replica::forget(&mut h.state);
}

fn e820(addr: u64, size: u64, t: u32) -> E820Entry {
    E820Entry {
        addr,
        size,
        r#type: t,
    }
}

#[test]
fn reservation_queries() {
    let mut h = harness(false);
    assert_eq!(
        domid_op(&mut h, XENMEM_CURRENT_RESERVATION, 0x7ff0),
        PAGES as i64
    );
    assert_eq!(
        domid_op(&mut h, XENMEM_CURRENT_RESERVATION, 1),
        PAGES as i64
    );
    assert_eq!(domid_op(&mut h, XENMEM_MAXIMUM_RESERVATION, 0x7ff0), 1024);
    assert_eq!(domid_op(&mut h, XENMEM_CURRENT_RESERVATION, 77), -3);
    assert_eq!(call(&mut h, HYPERVISOR_MEMORY_OP, [3, 0, 0, 0, 0]).ret, -14);
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [2, 0, 0, 0, 0]).ret,
        MAX_PAGE as i64
    );
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [2 | (1 << 6), 0, 0, 0, 0]).ret,
        -22
    );
    // Another domain's reservation is for privileged callers.
    let mut j = Journal::new();
    j.begin(1);
    create_domain(&mut h.state, &mut j, 5, false, 1, 64).unwrap();
    lockstep::replica::forget(&mut h.state);
    assert_eq!(domid_op(&mut h, XENMEM_CURRENT_RESERVATION, 5), -1);
}

#[test]
fn memory_maps_and_the_m2p_location() {
    let mut h = harness(false);
    h.mem.map(
        0x7000,
        &XenMemoryMap {
            nr_entries: 4,
            buffer: 0x7100,
        }
        .to_vec(),
    );
    h.mem.map(0x7100, &[0; 80]);
    // A PV domain without a toolstack-set map: -ENOSYS, as Xen answers dom0.
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [9, 0x7000, 0, 0, 0]).ret,
        -38
    );
    let mut j = Journal::new();
    j.begin(1);
    h.state.mm_domains.insert(
        &mut j,
        1,
        DomMm {
            e820: alloc::vec![e820(0, 0x30000, 1), e820(0x40000, 0x1000, 2)],
            shared_info: None,
        },
    );
    lockstep::replica::forget(&mut h.state);
    h.mem.map(
        0x7000,
        &XenMemoryMap {
            nr_entries: 1,
            buffer: 0x7100,
        }
        .to_vec(),
    );
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [9, 0x7000, 0, 0, 0]).ret,
        0
    );
    assert_eq!(h.mem.bytes.get(&0x7000).copied(), Some(1));
    assert_eq!(h.mem.bytes.get(&(0x7100 + 10)).copied(), Some(3)); // size 0x30000
                                                                   // machine_memory_map is dom0's.
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [10, 0x7000, 0, 0, 0]).ret,
        -1
    );
    // machphys_mapping for a domU: the whole virtual range.
    h.mem.map(0x7200, &[0; 24]);
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [12, 0x7200, 0, 0, 0]).ret,
        0
    );
    let m = XenMachphysMapping::read_from(
        &(0..24)
            .map(|i| h.mem.bytes[&(0x7200 + i)])
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    assert_eq!(
        (m.v_start, m.v_end, m.max_mfn),
        (
            0xffff_8000_0000_0000,
            0xffff_8040_0000_0000,
            MACH2PHYS_NR_ENTRIES - 1
        )
    );

    let mut h = harness(true);
    set_config(
        &mut h,
        MmConfig {
            max_page: MAX_PAGE,
            machine_e820: alloc::vec![e820(0, 0x9f000, 1), e820(0x100000, 0x7ff00000, 1)],
            m2p_frames: alloc::vec![0x3ee00, 0x3f000],
            io_deny: alloc::vec![(0xfee00, 0xfee00)],
        },
    );
    // The hypervisor's own devices stay out of dom0's reach; other I/O memory does not.
    let uvm = |h: &mut Harness, slot: u64, mfn: u64| {
        call(
            h,
            HYPERVISOR_UPDATE_VA_MAPPING,
            [VA_BASE + slot * 4096, (mfn << 12) | P, 0, 0, 0],
        )
        .ret
    };
    assert_eq!(uvm(&mut h, 40, 0xfee00), -1);
    assert_eq!(uvm(&mut h, 40, 0xfec00), 0);
    // Below max_page, the first MiB and frames the memory map does not call RAM (the BIOS
    // area) are I/O memory for dom0, as Xen gives them to dom_io; unowned RAM above 1 MiB
    // stays refused.
    assert_eq!(uvm(&mut h, 41, 0xf5), 0);
    assert_eq!(uvm(&mut h, 42, 0x50), 0);
    assert_eq!(uvm(&mut h, 43, MAX_PAGE - 1), -16);
    h.mem.map(
        0x7000,
        &XenMemoryMap {
            nr_entries: 8,
            buffer: 0x7100,
        }
        .to_vec(),
    );
    h.mem.map(0x7100, &[0; 160]);
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [10, 0x7000, 0, 0, 0]).ret,
        0
    );
    // RAM, RAM, then the denied local APIC page after the last entry.
    assert_eq!(h.mem.bytes.get(&0x7000).copied(), Some(3));
    assert_eq!(h.mem.bytes.get(&(0x7100 + 40 + 16)).copied(), Some(2));
    assert_eq!(h.mem.bytes.get(&(0x7100 + 40 + 2)).copied(), Some(0xe0));
    h.mem.map(
        0x7000,
        &XenMemoryMap {
            nr_entries: 1,
            buffer: 0x7100,
        }
        .to_vec(),
    );
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [10, 0x7000, 0, 0, 0]).ret,
        -22
    );
    h.mem.map(0x7200, &[0; 24]);
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [12, 0x7200, 0, 0, 0]).ret,
        0
    );
    assert_eq!(h.mem.bytes.get(&(0x7200 + 16)).copied(), Some(0xff)); // max_page - 1
    let l = XenMachphysMfnList {
        max_extents: 1,
        extent_start: 0x7300,
        nr_extents: 0,
    };
    h.mem.map(0x7280, &l.to_vec());
    h.mem.map(0x7300, &[0; 16]);
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [5, 0x7280, 0, 0, 0]).ret,
        0
    );
    assert_eq!(h.mem.bytes.get(&0x7301).copied(), Some(0xee));
    assert_eq!(h.mem.bytes.get(&(0x7280 + 16)).copied(), Some(1));
}

#[test]
fn populate_and_decrease_reservation() {
    let mut h = harness(false);
    for m in [0x2000u64, 0x2001, NO_FRAME] {
        h.mem
            .values
            .entry(value_kind::ALLOC_FRAME)
            .or_default()
            .push_back(m);
        h.mem.add_frame(m);
    }
    let (ret, out, eff) = reservation(&mut h, XENMEM_POPULATE_PHYSMAP, &[100, 101, 102], 0, 0x7ff0);
    assert_eq!(ret, 2, "stops when the allocator is empty");
    assert_eq!(&out[..2], &[0x2000, 0x2001]);
    assert!(eff.contains(&Effect::Mm(MmEffect::FramesAllocated {
        dom: 1,
        mfns: alloc::vec![0x2000, 0x2001]
    })));
    assert_eq!(h.state.frames.get(&0x2001).unwrap().m2p, 101);
    assert_eq!(h.state.domains.get(&1).unwrap().tot_pages, PAGES + 2);
    audit(&h).unwrap();
    // A mapped frame given back lives on until unmapped.
    let (ret, _, eff) = reservation(&mut h, XENMEM_DECREASE_RESERVATION, &[mfn(10)], 0, 0x7ff0);
    assert_eq!(ret, 1);
    assert!(!eff
        .iter()
        .any(|e| matches!(e, Effect::Mm(MmEffect::FreeFrames(_)))));
    audit(&h).unwrap();
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [VA_BASE + 10 * 4096, 0, 0, 0, 0],
    );
    assert!(r
        .effects
        .contains(&Effect::Mm(MmEffect::FreeFrames(alloc::vec![mfn(10)]))));
    assert_eq!(h.state.domains.get(&1).unwrap().tot_pages, PAGES + 1);
    // Unmapped frames go at once; frames not ours stop the batch.
    let (ret, _, eff) = reservation(
        &mut h,
        XENMEM_DECREASE_RESERVATION,
        &[0x2000, 0x500, 0x2001],
        0,
        0x7ff0,
    );
    assert_eq!(ret, 1);
    assert!(eff.contains(&Effect::Mm(MmEffect::FreeFrames(alloc::vec![0x2000]))));
    // increase_reservation hands out mfns; an order above domU's 9 does nothing.
    h.mem
        .values
        .entry(value_kind::ALLOC_FRAME)
        .or_default()
        .push_back(0x2100);
    h.mem.add_frame(0x2100);
    let (ret, out, _) = reservation(&mut h, XENMEM_INCREASE_RESERVATION, &[0], 0, 0x7ff0);
    assert_eq!((ret, out[0]), (1, 0x2100));
    assert_eq!(
        reservation(&mut h, XENMEM_INCREASE_RESERVATION, &[0], 10, 0x7ff0).0,
        0
    );
    // A bad argument struct answers 0 extents, not an errno.
    assert_eq!(call(&mut h, HYPERVISOR_MEMORY_OP, [6, 0, 0, 0, 0]).ret, 0);
    audit(&h).unwrap();
}

#[test]
fn foreign_mappings_and_destroy() {
    let mut h = with_domu5(true);
    audit(&h).unwrap();
    let theirs = 0x400 + 20;
    // dom0 maps a domU frame into its own table: foreigndom names the page owner.
    assert_eq!(map_domu5_frame(&mut h, 40, theirs, P | RW), 0);
    assert_eq!(h.state.mm_foreign.get(&(0, theirs)), Some(&(1, 1)));
    // Without foreigndom it is not ours: -EBUSY.
    assert_eq!(
        call(
            &mut h,
            HYPERVISOR_UPDATE_VA_MAPPING,
            [VA_BASE + 41 * 4096, (theirs << 12) | P, 0, 0, 0]
        )
        .ret,
        -16
    );
    assert_eq!(
        call(
            &mut h,
            HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
            [VA_BASE + 41 * 4096, (theirs << 12) | P, 0, 5, 0]
        )
        .ret,
        0
    );
    audit(&h).unwrap();
    // The domU is destroyed: everything comes back except the frame dom0 still maps, and
    // the dying domain stays (Xen's zombie) with that one page.
    let mut j = Journal::new();
    j.begin(2);
    h.state.domains.update(&mut j, &5, |d| d.flags.dying = true);
    let freed = destroy_domain_memory(&mut h.state, &mut j, 5);
    lockstep::replica::forget(&mut h.state);
    assert_eq!(freed.len() as u64, PAGES); // PAGES + shared_info - the mapped one
    assert!(!freed.contains(&theirs));
    assert_eq!(h.state.domains.get(&5).map(|d| d.tot_pages), Some(1));
    audit(&h).unwrap();
    let r1 = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [VA_BASE + 40 * 4096, 0, 0, 0, 0],
    );
    assert!(r1
        .effects
        .iter()
        .all(|e| !matches!(e, Effect::Mm(MmEffect::FreeFrames(_)))));
    assert_eq!(
        h.state.domains.get(&5).map(|d| d.tot_pages),
        Some(1),
        "still mapped once"
    );
    let r2 = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [VA_BASE + 41 * 4096, 0, 0, 0, 0],
    );
    assert!(r2
        .effects
        .contains(&Effect::Mm(MmEffect::FreeFrames(alloc::vec![theirs]))));
    assert!(h.state.mm_foreign.is_empty());
    assert!(
        !h.state.domains.contains_key(&5),
        "the zombie goes with its last page"
    );
    audit(&h).unwrap();
    // dom0 itself: every frame back.
    let mut j = Journal::new();
    j.begin(3);
    let freed = destroy_domain_memory(&mut h.state, &mut j, 0);
    assert_eq!(freed.len() as u64, PAGES + 1);
    assert!(h.state.frames.is_empty());
    let _ = (mfn(0), RW);
}

#[test]
fn unprivileged_foreign_requests_are_refused() {
    let mut h = with_domu5(false);
    assert_eq!(map_domu5_frame(&mut h, 40, 0x414, P), -1);
    assert_eq!(
        call(
            &mut h,
            HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
            [VA_BASE + 41 * 4096, 0x414 << 12 | P, 0, 5, 0]
        )
        .ret,
        -1
    );
    h.mem.map(
        0x9000,
        &MmuextOp {
            cmd: MMUEXT_PIN_L1_TABLE,
            arg1: 0x420,
            arg2: 0,
        }
        .to_vec(),
    );
    assert_eq!(
        call(&mut h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 5, 0]).ret,
        -1
    );
    // DOMID_IO as page owner is allowed to ask, but a domU has no I/O memory.
    h.mem.map(
        0xa000,
        &MmuUpdate {
            ptr: l1_slot(40),
            val: (0x10_0000 << 12) | P,
        }
        .to_vec(),
    );
    assert_eq!(
        call(
            &mut h,
            HYPERVISOR_MMU_UPDATE,
            [0xa000, 1, 0, u64::from(DOMID_IO), 0]
        )
        .ret,
        -1
    );
    audit(&h).unwrap();
}

fn exchange(
    h: &mut Harness,
    ins: &[u64],
    outs: &[u64],
    orders: (u32, u32),
    domids: (u16, u16),
) -> (i64, u64, Vec<u64>, Vec<Effect>) {
    let words = |v: &[u64]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    h.mem.map(0xd000, &words(ins));
    h.mem.map(0xd800, &words(outs));
    let x = XenMemoryExchange {
        r#in: XenMemoryReservation {
            extent_start: 0xd000,
            nr_extents: ins.len() as u64,
            extent_order: orders.0,
            mem_flags: 0,
            domid: domids.0,
        },
        out: XenMemoryReservation {
            extent_start: 0xd800,
            nr_extents: outs.len() as u64,
            extent_order: orders.1,
            mem_flags: 0,
            domid: domids.1,
        },
        nr_exchanged: 0,
    };
    h.mem.map(0xe000, &x.to_vec());
    let r = call(
        h,
        HYPERVISOR_MEMORY_OP,
        [u64::from(XENMEM_EXCHANGE), 0xe000, 0, 0, 0],
    );
    let rd = |h: &Harness, a: u64| {
        let mut w = [0u8; 8];
        for (k, b) in w.iter_mut().enumerate() {
            *b = h.mem.bytes.get(&(a + k as u64)).copied().unwrap_or(0);
        }
        u64::from_le_bytes(w)
    };
    let done = rd(h, 0xe000 + XenMemoryExchange::SIZE as u64 - 8);
    let out = (0..outs.len() as u64)
        .map(|i| rd(h, 0xd800 + i * 8))
        .collect();
    (r.ret, done, out, r.effects)
}

#[test]
fn exchange_trades_unused_frames_for_new_ones() {
    let mut h = harness(false);
    for m in [0x3000u64, 0x3001] {
        h.mem
            .values
            .entry(value_kind::ALLOC_FRAME)
            .or_default()
            .push_back(m);
    }
    let (ret, done, out, eff) = exchange(
        &mut h,
        &[mfn(40), mfn(41)],
        &[40, 41],
        (0, 0),
        (0x7ff0, 0x7ff0),
    );
    assert_eq!((ret, done), (0, 2));
    assert_eq!(out, [0x3000, 0x3001]);
    let freed: Vec<u64> = eff
        .iter()
        .filter_map(|e| match e {
            Effect::Mm(MmEffect::FreeFrames(m)) => Some(m.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(freed, [mfn(40), mfn(41)]);
    assert!(eff.contains(&Effect::Mm(MmEffect::SetM2p {
        mfn: 0x3001,
        pfn: 41
    })));
    assert_eq!(h.state.frames.get(&0x3000).unwrap().m2p, 40);
    assert_eq!(h.state.domains.get(&1).unwrap().tot_pages, PAGES);
    audit(&h).unwrap();
    // A mapped (or typed, or pinned) frame cannot be traded: -EINVAL, nothing exchanged.
    h.mem
        .values
        .entry(value_kind::ALLOC_FRAME)
        .or_default()
        .push_back(0x3002);
    let (ret, done, _, _) = exchange(&mut h, &[mfn(10)], &[10], (0, 0), (0x7ff0, 0x7ff0));
    assert_eq!((ret, done), (-22, 0));
    assert!(h.state.frames.contains_key(&mfn(10)));
    // Argument checks.
    assert_eq!(
        exchange(&mut h, &[mfn(42)], &[42, 43], (0, 0), (0x7ff0, 0x7ff0)).0,
        -22
    );
    assert_eq!(
        exchange(&mut h, &[mfn(42)], &[42], (0, 0), (0x7ff0, 1)).0,
        -22
    );
    assert_eq!(
        exchange(&mut h, &[mfn(42)], &[42], (10, 10), (0x7ff0, 0x7ff0)).0,
        -1
    );
    // Out of memory: -ENOMEM, the input frame stays.
    h.mem.values.clear();
    h.mem
        .values
        .entry(value_kind::ALLOC_FRAME)
        .or_default()
        .push_back(NO_FRAME);
    assert_eq!(
        exchange(&mut h, &[mfn(42)], &[42], (0, 0), (0x7ff0, 0x7ff0)).0,
        -12
    );
    assert!(h.state.frames.contains_key(&mfn(42)));
    audit(&h).unwrap();
}

/// Xen 4.17's answer under QEMU q35 (`-m 1024`), as the mm test guest printed it: the host
/// E820 plus the IO-APIC page and the local APIC megabyte, which dom0 has no rights to.
#[test]
fn machine_memory_map_matches_xen_under_qemu() {
    let host = [
        (0x0, 0x9fc00, 1),
        (0x9fc00, 0xa0000, 2),
        (0xf0000, 0x100000, 2),
        (0x100000, 0x3ffdf000, 1),
        (0x3ffdf000, 0x40000000, 2),
        (0xb0000000, 0xc0000000, 2),
        (0xfed1c000, 0xfed20000, 2),
        (0xfffc0000, 0x1_0000_0000, 2),
        (0xfd_0000_0000, 0x100_0000_0000, 2),
    ];
    let xen = [
        (0x0, 0x9fc00, 1),
        (0x9fc00, 0xa0000, 2),
        (0xf0000, 0x100000, 2),
        (0x100000, 0x3ffdf000, 1),
        (0x3ffdf000, 0x40000000, 2),
        (0xb0000000, 0xc0000000, 2),
        (0xfec00000, 0xfec01000, 2),
        (0xfed1c000, 0xfed20000, 2),
        (0xfee00000, 0xfef00000, 2),
        (0xfffc0000, 0x1_0000_0000, 2),
        (0xfd_0000_0000, 0x100_0000_0000, 2),
    ];
    let mut h = harness(true);
    set_config(
        &mut h,
        MmConfig {
            max_page: 0x40000,
            machine_e820: host.iter().map(|&(s, e, t)| e820(s, e - s, t)).collect(),
            m2p_frames: Vec::new(),
            io_deny: alloc::vec![(0xfec00, 0xfec00), (0xfee00, 0xfeeff)],
        },
    );
    let run = |h: &mut Harness, cap: u32| {
        h.mem.map(
            0x7000,
            &XenMemoryMap {
                nr_entries: cap,
                buffer: 0x7100,
            }
            .to_vec(),
        );
        h.mem.map(0x7100, &[0; 20 * 32]);
        call(h, HYPERVISOR_MEMORY_OP, [10, 0x7000, 0, 0, 0]).ret
    };
    assert_eq!(run(&mut h, 32), 0);
    let bytes: Vec<u8> = (0..20 * 11).map(|i| h.mem.bytes[&(0x7100 + i)]).collect();
    let got: Vec<(u64, u64, u32)> = (0..11)
        .map(|i| {
            let e = E820Entry::read_element(&bytes, i).unwrap();
            let E820Entry { addr, size, r#type } = e;
            (addr, addr + size, r#type)
        })
        .collect();
    assert_eq!(got, xen);
    assert_eq!(h.mem.bytes.get(&0x7000).copied(), Some(11));
    // The buffer must hold one more entry than it gets.
    assert_eq!(run(&mut h, 11), -22);
    assert_eq!(run(&mut h, 12), 0);
    assert_eq!(run(&mut h, 1), -22);
}

#[test]
fn pv_answers_for_physmap_pod_vnuma_and_maximum_gpfn() {
    let mut h = harness(false);
    h.mem.map(0x7000, &[0; 128]);
    h.mem.map(0x7000, &0x7ff0u16.to_le_bytes());
    h.mem.map(0x7000 + 32, &0x7ff0u16.to_le_bytes());
    let op = |h: &mut Harness, cmd: u32| {
        call(h, HYPERVISOR_MEMORY_OP, [u64::from(cmd), 0x7000, 0, 0, 0]).ret
    };
    assert_eq!(op(&mut h, XENMEM_ADD_TO_PHYSMAP), -13);
    assert_eq!(op(&mut h, XENMEM_REMOVE_FROM_PHYSMAP), -13);
    assert_eq!(op(&mut h, XENMEM_ADD_TO_PHYSMAP_BATCH), -13);
    assert_eq!(op(&mut h, XENMEM_GET_POD_TARGET), -22);
    assert_eq!(op(&mut h, XENMEM_GET_SHARING_FREED_PAGES), 0);
    assert_eq!(op(&mut h, XENMEM_GET_VNUMAINFO), -95);
    assert_eq!(op(&mut h, XENMEM_MACHPHYS_COMPAT_MFN_LIST), -95);
    assert_eq!(op(&mut h, 63), -38);
    assert_eq!(call(&mut h, HYPERVISOR_MEMORY_OP, [7, 0, 0, 0, 0]).ret, -14);
    // maximum_gpfn: the guest's shared_info.arch.max_pfn - 1 (0 when unset).
    assert_eq!(domid_op(&mut h, XENMEM_MAXIMUM_GPFN, 0x7ff0), 0);
    h.mem
        .machine
        .insert((super::fixture::SHARED_INFO << 12) + 3088, 1234);
    assert_eq!(domid_op(&mut h, XENMEM_MAXIMUM_GPFN, 0x7ff0), 1233);
    // set_memory_map, then memory_map returns it; too many entries is -EINVAL.
    h.mem.map(0x7400, &e820(0, 0x8000_0000, 1).to_vec());
    let fmap = XenForeignMemoryMap {
        domid: 0x7ff0,
        map: XenMemoryMap {
            nr_entries: 1,
            buffer: 0x7400,
        },
    };
    h.mem.map(0x7300, &fmap.to_vec());
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [13, 0x7300, 0, 0, 0]).ret,
        0
    );
    h.mem.map(
        0x7500,
        &XenMemoryMap {
            nr_entries: 4,
            buffer: 0x7600,
        }
        .to_vec(),
    );
    h.mem.map(0x7600, &[0; 80]);
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [9, 0x7500, 0, 0, 0]).ret,
        0
    );
    assert_eq!(h.mem.bytes.get(&0x7500).copied(), Some(1));
    assert_eq!(h.mem.bytes.get(&(0x7600 + 11)).copied(), Some(0x80));
    let big = XenForeignMemoryMap {
        domid: 0x7ff0,
        map: XenMemoryMap {
            nr_entries: 1025,
            buffer: 0x7400,
        },
    };
    h.mem.map(0x7300, &big.to_vec());
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [13, 0x7300, 0, 0, 0]).ret,
        -22
    );
}

#[test]
fn increase_reservation_without_a_list() {
    let mut h = harness(false);
    h.mem.add_frame(0x2200);
    h.mem
        .values
        .entry(value_kind::ALLOC_FRAME)
        .or_default()
        .push_back(0x2200);
    let r = XenMemoryReservation {
        extent_start: 0,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: 0x7ff0,
    };
    h.mem.map(0xc000, &r.to_vec());
    assert_eq!(
        call(&mut h, HYPERVISOR_MEMORY_OP, [0, 0xc000, 0, 0, 0]).ret,
        1
    );
    assert_eq!(h.state.frames.get(&0x2200).map(|p| p.owner), Some(1));
    audit(&h).unwrap();
}
