//! The dom0 builder's output under the frame machine: a real PV image built by
//! `builder::build_pv`, registered with [`super::register_pv_domain`], audited, and its
//! bootstrap tables revalidated (copies of each level pinned) and used by the MMU hypercalls.

use super::fixture::{audit, call};
use super::pt::{P, RW};
use super::{register_pv_domain, DomainMemory, PageType, DOM0_MAX_PAGES};
use crate::builder::{build_pv, BuildMemory, BuildRequest};
use crate::elf::test_image::pv_kernel;
use crate::hypercall::testing::{FakeMem, Harness};
use crate::pv_layout::{DomainKind, PtLevel};
use alloc::vec::Vec;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::*;
use lockstep::Journal;

const VBASE: u64 = 0xffff_ffff_8000_0000;

/// Machine memory for the builder: the harness's fake memory.
struct Machine<'a> {
    mem: &'a mut FakeMem,
    next: u64,
}

impl BuildMemory for Machine<'_> {
    fn alloc_frames(&mut self, n: u64) -> Option<Vec<u64>> {
        let v: Vec<u64> = (self.next..self.next + n).rev().collect();
        self.next += n;
        for &m in &v {
            self.mem.add_frame(m);
        }
        Some(v)
    }
    fn free_frames(&mut self, _mfns: &[u64]) {}
    fn write(&mut self, mfn: u64, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = (mfn << 12) + (offset + i) as u64;
            let w = self.mem.word(a & !7);
            let sh = (a & 7) * 8;
            let w = (w & !(0xff << sh)) | (u64::from(*b) << sh);
            self.mem.machine.insert(a & !7, w);
        }
    }
    fn zero(&mut self, mfn: u64) {
        for i in 0..512 {
            self.mem.machine.remove(&((mfn << 12) + i * 8));
        }
    }
    fn hypervisor_l4_entries(&self) -> [u64; 16] {
        core::array::from_fn(|i| 0xABC0_0000 + ((i as u64) << 12) + 0x67)
    }
}

fn kernel() -> Vec<u8> {
    pv_kernel(alloc::vec![0x90u8; 0x3000], None)
}

fn pin(h: &mut Harness, level: u32, mfn: u64) -> i64 {
    h.mem.map(
        0x9000,
        &MmuextOp {
            cmd: MMUEXT_PIN_L1_TABLE + level - 1,
            arg1: mfn,
            arg2: 0,
        }
        .to_vec(),
    );
    call(h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 0x7ff0, 0]).ret
}

#[test]
fn built_dom0_registers_audits_and_revalidates() {
    let mut h = Harness::dom0();
    let k = kernel();
    let pages = 2048;
    let built = {
        let mut m = Machine {
            mem: &mut h.mem,
            next: 0x1000,
        };
        let req = BuildRequest {
            kernel: &k,
            initrd: None,
            cmdline: "",
            nr_pages: pages,
            nr_vcpus: 1,
            kind: DomainKind::Dom0,
        };
        build_pv(&req, &mut m).expect("build")
    };
    let plan = built.layout.page_table_plan().expect("plan");
    let mut j = Journal::new();
    j.begin(1);
    register_pv_domain(
        &mut h.state,
        &mut j,
        &DomainMemory {
            dom: 0,
            p2m: &built.p2m,
            shared_info_mfn: built.shared_info_mfn,
            plan: &plan,
            max_pages: Some(DOM0_MAX_PAGES),
        },
    )
    .expect("register");
    lockstep::replica::forget(&mut h.state);
    audit(&h).unwrap();
    assert_eq!(
        h.state.domains.get(&0).map(|d| (d.tot_pages, d.max_pages)),
        Some((pages, DOM0_MAX_PAGES))
    );
    let root = built.l4_mfn;
    assert_eq!(
        h.state.frames.get(&root).map(|p| (p.ty, p.pinned)),
        Some((PageType::L4, true))
    );

    // Copy every bootstrap table into a spare frame and pin the copy: the builder's entries
    // pass validation (table pages read-only, data writable, hypervisor slots ignored).
    let spare = |i: u64| built.p2m[(pages - 1 - i) as usize];
    for (i, &(mfn, level)) in built.pt_frames.iter().enumerate() {
        let copy = spare(i as u64);
        for w in 0..512u64 {
            let v = h.mem.word((mfn << 12) + w * 8);
            h.mem.machine.insert((copy << 12) + w * 8, v);
        }
        let lv = match level {
            PtLevel::L1 => 1,
            PtLevel::L2 => 2,
            PtLevel::L3 => 3,
            PtLevel::L4 => 4,
        };
        assert_eq!(
            pin(&mut h, lv, copy),
            0,
            "copy of the {level:?} table at {mfn:#x}"
        );
        audit(&h).unwrap();
    }
    // The bootstrap region maps the start_info page writable: remap it read-only and back.
    let si_va = built.start_info_va;
    let si_mfn = built.p2m[((si_va - VBASE) >> 12) as usize];
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [si_va, (si_mfn << 12) | P, 2, 0, 0],
    );
    assert_eq!(r.ret, 0);
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [si_va, (si_mfn << 12) | P | RW, 2, 0, 0],
    );
    assert_eq!(r.ret, 0);
    // The page tables at pt_base cannot be made writable.
    let pt_va = built.layout.page_tables.vstart;
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [pt_va, (root << 12) | P | RW, 0, 0, 0],
    );
    assert_eq!(r.ret, -16);
    audit(&h).unwrap();
    let mut j = Journal::new();
    j.begin(2);
    let freed = super::destroy_domain_memory(&mut h.state, &mut j, 0);
    assert_eq!(freed.len() as u64, pages + 1);
}
