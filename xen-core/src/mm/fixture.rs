//! Test fixture: a small 64-bit PV domain registered the way the builder does, with its page
//! tables in the harness's fake machine memory, and an audit that recomputes every
//! reference count from the tables.

use super::pt::{self, entry_mfn, P, RW};
use super::{build, DomainMemory, PageType};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hypercall::testing::{Harness, Outcome};
use crate::pv_layout::{PageTablePlan, PtEntry, PtFrame, PtLevel, L1_PROT, TABLE_PROT};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use dom0_interface::guest_abi::GuestAbi;
use lockstep::Journal;

/// mfn of pfn `p` in the fixture.
pub const MFN_BASE: u64 = 0x100;
/// pfns mapped by the bootstrap L1 (VA_BASE + pfn * 4K).
pub const MAPPED: u64 = 32;
/// pfns of the domain.
pub const PAGES: u64 = 48;
/// Virtual address of pfn 0.
pub const VA_BASE: u64 = 0x40_0000;
/// The shared_info frame.
pub const SHARED_INFO: u64 = 0x80;
/// The host's max_page (frames at or above are I/O memory).
pub const MAX_PAGE: u64 = 0x1000;
/// pfn of the L1 mapping VA_BASE.
pub const L1_PFN: u64 = 3;

/// The mfn of fixture pfn `pfn`.
pub fn mfn(pfn: u64) -> u64 {
    MFN_BASE + pfn
}

/// The machine address of L1 slot `i` of the bootstrap L1.
pub fn l1_slot(i: u64) -> u64 {
    (mfn(L1_PFN) << 12) + i * 8
}

/// A harness whose caller domain owns the fixture's memory.
pub fn harness(privileged: bool) -> Harness {
    let mut h = if privileged {
        Harness::dom0()
    } else {
        Harness::domu(1)
    };
    let dom = h.dom;
    let mut j = Journal::new();
    j.begin(1);
    h.state.mm_config.set(
        &mut j,
        super::MmConfig {
            max_page: MAX_PAGE,
            ..Default::default()
        },
    );
    add_domain(&mut h, &mut j, dom, MFN_BASE, SHARED_INFO);
    lockstep::replica::forget(&mut h.state);
    h
}

/// The fixture's domain (privileged or not) beside domain 5, created and laid out as the
/// fixture with pfn p at mfn `0x400 + p` and shared_info at 0x90.
pub fn with_domu5(privileged: bool) -> Harness {
    let mut h = harness(privileged);
    let mut j = Journal::new();
    j.begin(1);
    crate::hv::create_domain(&mut h.state, &mut j, 5, false, 1, 64).expect("domain 5");
    add_domain(&mut h, &mut j, 5, 0x400, 0x90);
    lockstep::replica::forget(&mut h.state);
    h
}

/// `mmu_update` (foreigndom 5) of the caller's L1 slot `slot` to map `mfn` with `flags`:
/// the return value.
pub fn map_domu5_frame(h: &mut Harness, slot: u64, mfn: u64, flags: u64) -> i64 {
    h.mem.map(
        0xa000,
        &dom0_interface::xen::MmuUpdate {
            ptr: l1_slot(slot),
            val: (mfn << 12) | flags,
        }
        .to_vec(),
    );
    call(
        h,
        dom0_interface::xen::HYPERVISOR_MMU_UPDATE,
        [0xa000, 1, 0, 5, 0],
    )
    .ret
}

/// Registers the fixture's memory layout for `dom` (already created) with pfn p at mfn
/// `base + p` and its tables in machine memory.
pub fn add_domain(h: &mut Harness, j: &mut Journal, dom: DomId, base: u64, shared_info: u64) {
    let frames = alloc::vec![
        PtFrame {
            pfn: 0,
            level: PtLevel::L4,
            bootstrap: true
        },
        PtFrame {
            pfn: 1,
            level: PtLevel::L3,
            bootstrap: true
        },
        PtFrame {
            pfn: 2,
            level: PtLevel::L2,
            bootstrap: true
        },
        PtFrame {
            pfn: 3,
            level: PtLevel::L1,
            bootstrap: true
        },
    ];
    let mut entries = Vec::new();
    let up = |table_pfn, table_level, target_pfn| PtEntry {
        table_pfn,
        table_level,
        index: 0,
        target_pfn,
        flags: TABLE_PROT,
        vaddr: VA_BASE,
    };
    entries.push(up(0, PtLevel::L4, 1));
    entries.push(up(1, PtLevel::L3, 2));
    let mut l2 = up(2, PtLevel::L2, 3);
    l2.index = 2;
    entries.push(l2);
    for p in 0..MAPPED {
        let rw = if p <= L1_PFN { 0 } else { RW };
        entries.push(PtEntry {
            table_pfn: L1_PFN,
            table_level: PtLevel::L1,
            index: p as u16,
            target_pfn: p,
            flags: (L1_PROT & !RW) | rw,
            vaddr: VA_BASE + p * 4096,
        });
    }
    let plan = PageTablePlan {
        root_pfn: 0,
        frames,
        entries,
    };
    for p in 0..PAGES {
        h.mem.add_frame(base + p);
    }
    h.mem.add_frame(shared_info);
    for e in &plan.entries {
        let maddr = ((base + e.table_pfn) << 12) + u64::from(e.index) * 8;
        h.mem.machine.insert(maddr, e.pte(base + e.target_pfn));
    }
    let p2m: Vec<u64> = (0..PAGES).map(|p| base + p).collect();
    build::register_pv_domain(
        &mut h.state,
        j,
        &DomainMemory {
            dom,
            p2m: &p2m,
            shared_info_mfn: shared_info,
            plan: &plan,
            max_pages: None,
        },
    )
    .expect("register");
}

/// Runs a hypercall and applies the effects the fixture models (frees, page clears).
pub fn call(h: &mut Harness, nr: u32, args: [u64; 5]) -> Outcome {
    let r = h.hypercall(u64::from(nr), args);
    for e in &r.effects {
        if let Effect::Mm(MmEffect::ClearPage { mfn }) = e {
            for i in 0..512 {
                h.mem.machine.remove(&((mfn << 12) + i * 8));
            }
        }
    }
    r
}

/// Recomputes every frame's general and type counts from the page tables in machine memory,
/// the vCPUs' base pointers and GDT/LDT frames, pins, foreign records and the frames held for
/// machine-address writes (vcpu_info, FIFO, EOI bitmap), and checks them against the state,
/// together with the PV invariant (no page table writably mapped).
pub fn audit(h: &Harness) -> Result<(), String> {
    let st = &h.state;
    let mut count: BTreeMap<u64, u32> = BTreeMap::new();
    let mut tcount: BTreeMap<u64, u32> = BTreeMap::new();
    for (m, p) in st.frames.iter() {
        let c = count.entry(*m).or_default();
        *c += u32::from(p.allocated) + u32::from(p.pinned);
        if p.special {
            *tcount.entry(*m).or_default() += 1;
        }
        *tcount.entry(*m).or_default() += u32::from(p.pinned);
    }
    for (_, v) in st.vcpus.iter() {
        for cr3 in [v.cr3, v.user_cr3] {
            if cr3 != 0 {
                *count.entry(cr3 >> 12).or_default() += 1;
                *tcount.entry(cr3 >> 12).or_default() += 1;
            }
        }
    }
    // Frames the hypervisor writes by machine address hold a general and a writable type
    // reference each: registered vcpu_info, FIFO control blocks and event array pages, the
    // PIRQ EOI bitmap.
    let mut held: Vec<u64> = Vec::new();
    held.extend(
        st.vsched
            .iter()
            .filter_map(|(_, v)| v.vcpu_info_maddr.map(|m| m >> 12)),
    );
    for (_, f) in st.evtchn_fifo.iter() {
        held.extend(f.control.iter().filter(|m| **m != 0).map(|m| m >> 12));
        held.extend(f.array.iter().copied());
    }
    held.extend(st.eoi_maps.iter().map(|(_, m)| m.mfn));
    for f in held {
        *count.entry(f).or_default() += 1;
        *tcount.entry(f).or_default() += 1;
    }
    for (_, pv) in st.pv_vcpus.iter() {
        for &f in pv
            .gdt_frames
            .iter()
            .chain(&pv.ldt_frames)
            .filter(|&&f| f != 0)
        {
            *count.entry(f).or_default() += 1;
            *tcount.entry(f).or_default() += 1;
        }
    }
    for (m, p) in st.frames.iter() {
        if !(p.validated && p.type_count > 0) {
            continue;
        }
        let Some(level) = p.ty.level() else { continue };
        for i in 0..512u64 {
            if level == 4 && !pt::is_guest_l4_slot(i as usize) {
                continue;
            }
            let e = h.mem.word((m << 12) + i * 8);
            if e & P == 0 {
                continue;
            }
            let t = entry_mfn(e);
            let Some(target) = st.frames.get(&t) else {
                if level == 1 {
                    continue; // I/O memory
                }
                return Err(format!("table {m:#x}[{i}] points at unknown frame {t:#x}"));
            };
            if level == 1 {
                *count.entry(t).or_default() += 1;
                if e & RW != 0 {
                    if target.ty != PageType::Writable {
                        return Err(format!(
                            "{t:#x} ({:?}) mapped writable by {m:#x}[{i}]",
                            target.ty
                        ));
                    }
                    *tcount.entry(t).or_default() += 1;
                }
            } else if t != *m {
                *count.entry(t).or_default() += 1;
                *tcount.entry(t).or_default() += 1;
                if PageType::table(level - 1) != Some(target.ty)
                    && Some(target.ty) != PageType::table(level)
                {
                    return Err(format!("{m:#x}[{i}] points at a {:?}", target.ty));
                }
            }
        }
    }
    for (m, p) in st.frames.iter() {
        let c = count.get(m).copied().unwrap_or(0);
        let t = tcount.get(m).copied().unwrap_or(0);
        if p.count != c || p.type_count != t {
            return Err(format!(
                "frame {m:#x}: count {} (expected {c}), type count {} (expected {t}), {:?}",
                p.count, p.type_count, p
            ));
        }
        if p.count == 0 {
            return Err(format!("frame {m:#x} kept with no reference"));
        }
    }
    Ok(())
}

/// The frames `effects` give back to the allocator (`MmEffect::FreeFrames`), in order.
pub fn freed(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Mm(MmEffect::FreeFrames(m)) => Some(m.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}
