//! set_gdt and update_descriptor on the fixture domain's frames: segment-descriptor typing,
//! Xen's descriptor checks and fix-ups, and the references a GDT holds.

use super::fixture::{audit, call, harness, l1_slot, mfn};
use super::PageType;
use crate::effect::Effect;
use crate::pv::effect::PvEffect;
use dom0_interface::xen::*;

const CODE64_DPL0: u64 = 0x00af_9a00_0000_ffff;
const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
const TSS: u64 = 0x0000_8900_0000_0067;
/// Where the tests put the frame list.
const LIST: u64 = 0x9000;

fn set_gdt(h: &mut crate::hypercall::testing::Harness, frames: &[u64], entries: u64) -> i64 {
    let mut b = alloc::vec::Vec::new();
    for f in frames {
        b.extend_from_slice(&f.to_le_bytes());
    }
    h.mem.map(LIST, &b);
    call(h, HYPERVISOR_SET_GDT, [LIST, entries, 0, 0, 0]).ret
}

fn ty(h: &crate::hypercall::testing::Harness, m: u64) -> (PageType, u32) {
    let f = h.state.frames.get(&m).expect("frame");
    (f.ty, f.type_count)
}

#[test]
fn set_gdt_types_fixes_up_and_replaces_frames() {
    let mut h = harness(false);
    let g = mfn(40);
    h.mem.add_frame(g);
    h.mem.machine.insert((g << 12) + 8, CODE64_DPL0);
    h.mem.machine.insert((g << 12) + 16, DATA_DPL3);
    let r = call(&mut h, HYPERVISOR_SET_GDT, [LIST, 0, 0, 0, 0]);
    assert_eq!(r.ret, 0);
    assert_eq!(set_gdt(&mut h, &[g], 3), 0);
    assert_eq!(ty(&h, g), (PageType::SegDesc, 1));
    assert_eq!(h.mem.word((g << 12) + 8), CODE64_DPL3, "DPL raised to 3");
    let pv = crate::pv::state::get(&h.state, (1, 0));
    assert_eq!((pv.gdt_frames[0], pv.gdt_frames[1], pv.gdt_ents), (g, 0, 3));
    audit(&h).unwrap();
    // A GDT page may not become writable: mapping it RW fails, read-only is fine.
    let va = super::fixture::VA_BASE + 40 * 4096;
    let rw = (g << 12) | 0x63;
    let r = call(&mut h, HYPERVISOR_UPDATE_VA_MAPPING, [va, rw, 0, 0, 0]);
    assert_eq!(r.ret, -16, "get_page_from_l1e: -EBUSY");
    let r = call(&mut h, HYPERVISOR_UPDATE_VA_MAPPING, [va, rw & !2, 0, 0, 0]);
    assert_eq!(r.ret, 0);
    assert_ne!(h.mem.word(l1_slot(40)), 0);
    audit(&h).unwrap();
    // Replacing the GDT with none drops its references; the page may be writable again.
    let r = call(&mut h, HYPERVISOR_SET_GDT, [LIST, 0, 0, 0, 0]);
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::Pv(PvEffect::SetGdt {
        frames: alloc::vec![],
        entries: 0
    })));
    assert_eq!(ty(&h, g).1, 0);
    audit(&h).unwrap();
}

#[test]
fn set_gdt_refuses_writable_bad_and_foreign_frames() {
    let mut h = harness(false);
    // pfn 10 is mapped writable by the bootstrap L1; pfn 3 is that L1.
    assert_eq!(set_gdt(&mut h, &[mfn(10)], 1), -22);
    assert_eq!(set_gdt(&mut h, &[mfn(3)], 1), -22);
    assert_eq!(set_gdt(&mut h, &[0x50], 1), -22, "not the caller's frame");
    let g = mfn(41);
    h.mem.add_frame(g);
    h.mem.machine.insert((g << 12) + 511 * 8, TSS);
    assert_eq!(set_gdt(&mut h, &[mfn(42), g], 513), -22);
    // The failed attempt keeps no reference, not even on the good first frame.
    assert_eq!(ty(&h, g).1, 0);
    assert_eq!(ty(&h, mfn(42)).1, 0);
    assert_eq!(
        set_gdt(&mut h, &[0; 15], 7169),
        -22,
        "past the reserved entries"
    );
    audit(&h).unwrap();
}

#[test]
fn update_descriptor_checks_and_writes() {
    let mut h = harness(false);
    let g = mfn(40);
    h.mem.add_frame(g);
    assert_eq!(set_gdt(&mut h, &[g], 512), 0);
    let upd = |h: &mut crate::hypercall::testing::Harness, maddr: u64, d: u64| {
        call(h, HYPERVISOR_UPDATE_DESCRIPTOR, [maddr, d, 0, 0, 0]).ret
    };
    assert_eq!(upd(&mut h, (g << 12) + 0x20, CODE64_DPL0), 0);
    assert_eq!(h.mem.word((g << 12) + 0x20), CODE64_DPL3);
    assert_eq!(upd(&mut h, (g << 12) + 0x28, TSS), -22);
    assert_eq!(upd(&mut h, (g << 12) + 0x2c, DATA_DPL3), -22, "misaligned");
    assert_eq!(h.mem.word((g << 12) + 0x28), 0);
    // Any writable frame of the caller takes a descriptor; page tables and others' do not.
    assert_eq!(upd(&mut h, (mfn(10) << 12) + 8, DATA_DPL3), 0);
    assert_eq!(h.mem.word((mfn(10) << 12) + 8), DATA_DPL3);
    assert_eq!(upd(&mut h, (mfn(3) << 12) + 8, DATA_DPL3), -22);
    assert_eq!(upd(&mut h, 0x50 << 12, DATA_DPL3), -22);
    assert_eq!(ty(&h, g), (PageType::SegDesc, 1));
    audit(&h).unwrap();
}

/// A #PF exit of the fixture domain's vCPU 0 on its LDT window at `offset`: its effects.
fn ldt_fault(h: &mut crate::hypercall::testing::Harness, offset: u64, flags: u64) -> Vec<Effect> {
    use crate::pv::ldt::PF_LDT_WINDOW;
    use crate::request::{ExitKind, GuestRegs};
    let regs = GuestRegs {
        rip: 0x40_0000,
        cs: 0xe033,
        ss: 0xe02b,
        rsp: 0x40_2000,
        ..GuestRegs::default()
    };
    let req = crate::request::Request::exit(
        ExitKind::Exception,
        h.dom,
        0,
        regs,
        14,
        PF_LDT_WINDOW | flags,
        offset,
    );
    h.run(req).effects
}

/// The CR2 a bounced #PF reported, if any.
fn cr2_reported(e: &[Effect]) -> Option<u64> {
    e.iter().find_map(|e| match e {
        Effect::Pv(PvEffect::GuestCr2 { cr2, .. }) => Some(*cr2),
        _ => None,
    })
}

#[test]
fn set_ldt_maps_nothing_until_a_page_is_used() {
    use super::fixture::VA_BASE;
    use super::tests::mmuext;
    use crate::pv::ldt::PF_LDT_RESUME;
    let mut h = harness(false);
    let va = |p: u64| VA_BASE + p * 4096;
    // pfn 40 read-only at its slot, with a DPL 0 data descriptor (fixed up on typing).
    h.mem.add_frame(mfn(40));
    h.mem.machine.insert(mfn(40) << 12, 0x00cf_9300_0000_ffff);
    let ro = (mfn(40) << 12) | 0x21;
    // Two pages at pfn 40's address, recorded before the page is even mapped.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_SET_LDT, va(40), 1024)], 0x7ff0),
        (0, 1)
    );
    let r = call(&mut h, HYPERVISOR_UPDATE_VA_MAPPING, [va(40), ro, 0, 0, 0]);
    assert_eq!(r.ret, 0);
    let pv = crate::pv::state::get(&h.state, (1, 0));
    assert_eq!(pv.ldt_frames, [0; 16], "nothing mapped by SET_LDT");
    assert_eq!(ty(&h, mfn(40)).1, 0);
    // First use of page 0: mapped, typed (the descriptor fixed up), nothing bounced.
    let e = ldt_fault(&mut h, 8, 4);
    assert_eq!(cr2_reported(&e), None);
    let pv = crate::pv::state::get(&h.state, (1, 0));
    assert_eq!(&pv.ldt_frames[..2], &[mfn(40), 0]);
    assert_eq!(ty(&h, mfn(40)), (PageType::SegDesc, 1));
    assert_eq!(h.mem.word(mfn(40) << 12), 0x00cf_f300_0000_ffff);
    audit(&h).unwrap();
    // The same kernel base again keeps it; another one drops it (paged in again on use).
    let cr3 = h.state.vcpus.get(&(1, 0)).unwrap().cr3 >> 12;
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_NEW_BASEPTR, cr3, 0)], 0x7ff0),
        (0, 1)
    );
    assert_eq!(ty(&h, mfn(40)).1, 1);
    h.mem.add_frame(mfn(41));
    assert_eq!(
        mmuext(
            &mut h,
            &[
                (MMUEXT_NEW_BASEPTR, mfn(41), 0),
                (MMUEXT_NEW_BASEPTR, cr3, 0)
            ],
            0x7ff0
        ),
        (0, 2)
    );
    assert_eq!(crate::pv::state::get(&h.state, (1, 0)).ldt_frames[0], 0);
    assert_eq!(ty(&h, mfn(40)).1, 0);
    assert_eq!(cr2_reported(&ldt_fault(&mut h, 8, 4)), None, "mapped again");
    // Page 1 (pfn 41's address, not mapped): the guest gets #PF at its LDT address.
    let e = ldt_fault(&mut h, 4096 + 16, 4);
    assert_eq!(cr2_reported(&e), Some(va(41) + 16));
    // A resume-time check of the same page maps nothing and injects nothing.
    let e = ldt_fault(&mut h, 4096 + 16, PF_LDT_RESUME);
    assert_eq!(cr2_reported(&e), None);
    assert_eq!(crate::pv::state::get(&h.state, (1, 0)).ldt_frames[1], 0);
    // A writable-mapped page cannot be an LDT page: SET_LDT succeeds, its use faults.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_SET_LDT, va(20), 16)], 0x7ff0),
        (0, 1)
    );
    assert_eq!(ty(&h, mfn(40)).1, 0, "the old LDT page was released");
    let e = ldt_fault(&mut h, 0, 4);
    assert_eq!(cr2_reported(&e), Some(va(20)));
    assert_eq!(crate::pv::state::get(&h.state, (1, 0)).ldt_frames[0], 0);
    assert_eq!(ty(&h, mfn(20)), (PageType::Writable, 1));
    // Past the LDT's entries: not mapped either.
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_SET_LDT, va(40), 1)], 0x7ff0),
        (0, 1)
    );
    let e = ldt_fault(&mut h, 8, 4);
    assert_eq!(cr2_reported(&e), Some(va(40) + 8));
    assert_eq!(mmuext(&mut h, &[(MMUEXT_SET_LDT, 0, 0)], 0x7ff0), (0, 1));
    audit(&h).unwrap();
}

#[test]
fn an_ldt_address_that_would_not_be_canonical_is_a_gp() {
    use super::tests::mmuext;
    let mut h = harness(false);
    let base = 0x0000_7fff_ffff_f000;
    assert_eq!(
        mmuext(&mut h, &[(MMUEXT_SET_LDT, base, 8192)], 0x7ff0),
        (0, 1)
    );
    let e = ldt_fault(&mut h, 0x1008, 4);
    assert_eq!(cr2_reported(&e), None, "#GP, not #PF");
    // No handler registered: the bounce says which trap and error code it delivered.
    let gp = e.iter().any(|e| match e {
        Effect::Log(b) => {
            core::str::from_utf8(b).is_ok_and(|s| s.contains("trap 13 (error 0x100c)"))
        }
        _ => false,
    });
    assert!(gp, "#GP(offset | TI): {e:?}");
}
