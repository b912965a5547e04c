//! Host tests of the frames a guest hands the hypervisor to write into by machine address
//! (a registered vcpu_info, FIFO control blocks and event array pages): only writable frames
//! of the caller's own are taken, the references are held while the hypervisor may write
//! there (the frame cannot become a page table, and a release by the guest does not free
//! it), they go with the domain (or the FIFO reset), and a rolled-back transaction leaves
//! every count as it was.

use super::fixture::{audit, call, freed, harness, mfn, with_domu5, L1_PFN, PAGES};
use super::pt::{P, RW};
use super::PageType;
use crate::effect::Effect;
use crate::hv::Xen;
use crate::hypercall::testing::Harness;
use crate::request::{GuestRegs, Request};
use alloc::vec::Vec;
use dom0_interface::domctl::{XenDomctl, XEN_DOMCTL_DESTROYDOMAIN};
use dom0_interface::event_channel::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::memory::{XenMemoryReservation, XENMEM_DECREASE_RESERVATION};
use dom0_interface::vcpu::{VcpuRegisterVcpuInfo, VCPUOP_REGISTER_VCPU_INFO};
use dom0_interface::xen::*;
use lockstep::effects::Effects;
use lockstep::input::Input;
use lockstep::machine::execute;
use lockstep::replica::{full_digest, rollback};
use lockstep::Journal;

const EINVAL: i64 = -22;
/// Where the tests put hypercall arguments in guest memory.
const ARG: u64 = 0x6000;
/// A data frame of the fixture's domain that nothing maps (pfn 40).
const DATA_PFN: u64 = 40;

/// `vcpu_op(VCPUOP_register_vcpu_info, vcpu, {mfn, offset})` from vCPU 0 of `h.dom`.
fn register(h: &mut Harness, vcpu: u32, mfn: u64, offset: u32) -> i64 {
    h.mem.map(ARG, &register_arg(mfn, offset));
    let args = [
        u64::from(VCPUOP_REGISTER_VCPU_INFO),
        u64::from(vcpu),
        ARG,
        0,
        0,
    ];
    call(h, HYPERVISOR_VCPU_OP, args).ret
}

fn register_arg(mfn: u64, offset: u32) -> Vec<u8> {
    VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    }
    .to_vec()
}

/// `EVTCHNOP_init_control` of vCPU `vcpu`'s control block at `mfn`.
fn init_control(h: &mut Harness, mfn: u64, vcpu: u32) -> i64 {
    let ic = EvtchnInitControl {
        control_gfn: mfn,
        offset: 0,
        vcpu,
        link_bits: 0,
        _pad: [0; 7],
    };
    evtchn_op(h, EVTCHNOP_INIT_CONTROL, &ic.to_vec())
}

fn expand_array(h: &mut Harness, mfn: u64) -> i64 {
    let ea = EvtchnExpandArray { array_gfn: mfn };
    evtchn_op(h, EVTCHNOP_EXPAND_ARRAY, &ea.to_vec())
}

fn evtchn_op(h: &mut Harness, cmd: u32, arg: &[u8]) -> i64 {
    h.mem.map(ARG, arg);
    let args = [u64::from(cmd), ARG, 0, 0, 0];
    call(h, HYPERVISOR_EVENT_CHANNEL_OP, args).ret
}

/// `MMUEXT_PIN_L1_TABLE` of `mfn`.
fn pin_l1(h: &mut Harness, mfn: u64) -> i64 {
    let op = MmuextOp {
        cmd: MMUEXT_PIN_L1_TABLE,
        arg1: mfn,
        arg2: 0,
    };
    h.mem.map(0x9000, &op.to_vec());
    call(h, HYPERVISOR_MMUEXT_OP, [0x9000, 1, 0, 0x7ff0, 0]).ret
}

/// `mmu_update` of L2 slot 3 of the fixture's tables to point at `mfn` (as an L1).
fn use_as_l1(h: &mut Harness, mfn: u64) -> i64 {
    let u = MmuUpdate {
        ptr: (super::fixture::mfn(2) << 12) + 3 * 8,
        val: (mfn << 12) | P | RW,
    };
    h.mem.map(0xa000, &u.to_vec());
    call(h, HYPERVISOR_MMU_UPDATE, [0xa000, 1, 0, 0x7ff0, 0]).ret
}

/// `XENMEM_decrease_reservation` of frame `mfn`: the extents done and the effects.
fn decrease(h: &mut Harness, mfn: u64) -> (i64, Vec<Effect>) {
    h.mem.map(0xb000, &mfn.to_le_bytes());
    let r = XenMemoryReservation {
        extent_start: 0xb000,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: 0x7ff0,
    };
    h.mem.map(0xc000, &r.to_vec());
    let arg = [u64::from(XENMEM_DECREASE_RESERVATION), 0xc000, 0, 0, 0];
    let out = call(h, HYPERVISOR_MEMORY_OP, arg);
    (out.ret, out.effects)
}

/// (general count, type, type count, allocated) of `mfn`.
fn refs(h: &Harness, mfn: u64) -> Option<(u32, PageType, u32, bool)> {
    let p = h.state.frames.get(&mfn)?;
    Some((p.count, p.ty, p.type_count, p.allocated))
}

#[test]
fn vcpu_info_needs_a_writable_frame_of_the_callers_own() {
    let mut h = with_domu5(false);
    let before = full_digest(&h.state);
    assert_eq!(register(&mut h, 1, 0x400 + 20, 0), EINVAL, "domain 5's");
    assert_eq!(
        register(&mut h, 1, 0x90, 0),
        EINVAL,
        "domain 5's shared_info"
    );
    assert_eq!(register(&mut h, 1, 0xdead_beef, 0), EINVAL, "no such frame");
    assert_eq!(register(&mut h, 1, 0xff, 0), EINVAL, "nobody's frame");
    assert_eq!(register(&mut h, 1, mfn(L1_PFN), 0), EINVAL, "our L1");
    assert_eq!(register(&mut h, 1, mfn(0), 64), EINVAL, "our L4");
    assert_eq!(full_digest(&h.state), before, "refusals hold nothing");
    assert_eq!(crate::sched::vcpu_info_maddr(&h.state, (1, 1)), None);
    let data = mfn(DATA_PFN);
    assert_eq!(refs(&h, data), Some((1, PageType::None, 0, true)));
    assert_eq!(register(&mut h, 1, data, 64), 0);
    assert_eq!(
        crate::sched::vcpu_info_maddr(&h.state, (1, 1)),
        Some((data << 12) + 64)
    );
    assert_eq!(refs(&h, data), Some((2, PageType::Writable, 1, true)));
    audit(&h).unwrap();
    // While it is a vcpu_info the frame cannot become a page table.
    assert_eq!(pin_l1(&mut h, data), EINVAL);
    assert_eq!(use_as_l1(&mut h, data), EINVAL);
    assert_eq!(refs(&h, data), Some((2, PageType::Writable, 1, true)));
    audit(&h).unwrap();
    // An untyped frame of ours can, as a check that the refusals are the vcpu_info's.
    let other = mfn(DATA_PFN + 1);
    assert_eq!(pin_l1(&mut h, other), 0);
    audit(&h).unwrap();
}

#[test]
fn a_released_vcpu_info_frame_lives_until_its_domain_goes() {
    let mut h = with_domu5(true);
    let theirs = 0x400 + DATA_PFN;
    // Domain 5's vCPU 0 registers its own vcpu_info, then gives the frame back.
    h.dom = 5;
    assert_eq!(register(&mut h, 0, theirs, 0), 0);
    let (done, effects) = decrease(&mut h, theirs);
    assert_eq!(done, 1);
    assert!(freed(&effects).is_empty(), "not freed while registered");
    assert_eq!(refs(&h, theirs), Some((1, PageType::Writable, 1, false)));
    assert_eq!(
        h.state.domains.get(&5).map(|d| d.tot_pages),
        Some(PAGES),
        "still the domain's page, as in Xen"
    );
    assert_eq!(pin_l1(&mut h, theirs), EINVAL);
    audit(&h).unwrap();
    // Destroying the domain drops the reference and frees the frame with the rest.
    h.dom = 0;
    h.mem.map(
        0x1000,
        &XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 5).to_vec(),
    );
    let r = call(&mut h, HYPERVISOR_DOMCTL, [0x1000, 0, 0, 0, 0]);
    assert_eq!(r.ret, 0);
    let gone = freed(&r.effects);
    assert_eq!(gone.iter().filter(|m| **m == theirs).count(), 1);
    assert!(h.state.frames.iter().all(|(_, p)| p.owner != 5));
    assert!(!h.state.domains.contains_key(&5));
    audit(&h).unwrap();
}

#[test]
fn fifo_pages_need_writable_frames_of_the_callers_own_and_are_held() {
    let mut h = with_domu5(false);
    let before = full_digest(&h.state);
    assert_eq!(init_control(&mut h, mfn(L1_PFN), 0), EINVAL, "our L1");
    assert_eq!(init_control(&mut h, 0x400 + 20, 0), EINVAL, "domain 5's");
    assert_eq!(full_digest(&h.state), before, "refusals hold nothing");
    let (control, array) = (mfn(DATA_PFN), mfn(DATA_PFN + 1));
    assert_eq!(init_control(&mut h, control, 0), 0);
    assert_eq!(expand_array(&mut h, mfn(0)), EINVAL, "our L4");
    assert_eq!(expand_array(&mut h, 0x400 + 21), EINVAL, "domain 5's");
    assert_eq!(expand_array(&mut h, array), 0);
    for m in [control, array] {
        assert_eq!(refs(&h, m), Some((2, PageType::Writable, 1, true)));
        assert_eq!(pin_l1(&mut h, m), EINVAL);
    }
    audit(&h).unwrap();
    // EVTCHNOP_reset tears FIFO down: the references go, the frames can be tables again.
    let reset = EvtchnReset { dom: DOMID_SELF };
    assert_eq!(evtchn_op(&mut h, EVTCHNOP_RESET, &reset.to_vec()), 0);
    assert_eq!(refs(&h, array), Some((1, PageType::Writable, 0, true)));
    assert_eq!(pin_l1(&mut h, array), 0);
    audit(&h).unwrap();
}

/// Runs hypercall `nr` with `args` from vCPU 0 of `h.dom` in transaction `epoch` and rolls it
/// back, as the lockstep engine does when the two executions disagree: the answer it gave.
fn run_and_roll_back(h: &mut Harness, epoch: u64, nr: u32, args: [u64; 5]) -> i64 {
    let regs = GuestRegs::for_hypercall(u64::from(nr), args);
    let words = Request::hypercall(h.dom, 0, regs).to_words();
    let mut j = Journal::new();
    let mut effects = Effects::new();
    let report = {
        let mut input = Input::direct(&words, &mut h.mem);
        execute::<Xen>(&mut h.state, &mut j, epoch, &mut effects, &mut input)
    };
    assert!(report.error.is_none(), "{:?}", report.error);
    rollback(&mut h.state, epoch);
    effects
        .as_slice()
        .iter()
        .find_map(|e| match e {
            Effect::Return(v) => Some(*v),
            _ => None,
        })
        .expect("a Return")
}

#[test]
fn rolled_back_registrations_leave_every_count_as_it_was() {
    let mut h = harness(false);
    let data = mfn(DATA_PFN);
    let before = full_digest(&h.state);
    let frames_before: Vec<_> = h
        .state
        .frames
        .iter()
        .map(|(m, p)| (*m, p.clone()))
        .collect();
    let vcpu_op = |vcpu: u64| [u64::from(VCPUOP_REGISTER_VCPU_INFO), vcpu, ARG, 0, 0];
    // A registration that succeeded, and one refused after its general reference was taken
    // (a page table: the type reference fails), each rolled back.
    h.mem.map(ARG, &register_arg(data, 0));
    assert_eq!(
        run_and_roll_back(&mut h, 900, HYPERVISOR_VCPU_OP, vcpu_op(1)),
        0
    );
    assert_eq!(full_digest(&h.state), before);
    h.mem.map(ARG, &register_arg(mfn(L1_PFN), 0));
    assert_eq!(
        run_and_roll_back(&mut h, 901, HYPERVISOR_VCPU_OP, vcpu_op(1)),
        EINVAL
    );
    assert_eq!(full_digest(&h.state), before);
    // FIFO's init_control likewise.
    let ic = EvtchnInitControl {
        control_gfn: data,
        offset: 0,
        vcpu: 0,
        link_bits: 0,
        _pad: [0; 7],
    };
    h.mem.map(ARG, &ic.to_vec());
    let args = [u64::from(EVTCHNOP_INIT_CONTROL), ARG, 0, 0, 0];
    assert_eq!(
        run_and_roll_back(&mut h, 902, HYPERVISOR_EVENT_CHANNEL_OP, args),
        0
    );
    assert_eq!(full_digest(&h.state), before);
    let frames_after: Vec<_> = h
        .state
        .frames
        .iter()
        .map(|(m, p)| (*m, p.clone()))
        .collect();
    assert_eq!(frames_after, frames_before);
    assert_eq!(crate::sched::vcpu_info_maddr(&h.state, (1, 1)), None);
    lockstep::replica::forget(&mut h.state);
    audit(&h).unwrap();
    // And the registration, run for real, still works.
    assert_eq!(register(&mut h, 1, data, 0), 0);
    assert_eq!(refs(&h, data), Some((2, PageType::Writable, 1, true)));
}
