//! The MMU hypercalls under lockstep: a leader executes against its replica recording every
//! input (machine-memory reads of page tables, allocator answers), a follower replays the log
//! against its own replica; both must produce the same effects, the same transaction digest
//! and bit-identical replicas.

use super::fixture::{harness, l1_slot, mfn, VA_BASE};
use super::pt::{P, RW};
use crate::effect::Effect;
use crate::hv::{value_kind, Xen};
use crate::hypercall::testing::Harness;
use crate::request::{GuestRegs, Request};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::memory::XenMemoryReservation;
use dom0_interface::xen::*;
use lockstep::effects::Effects;
use lockstep::input::{Input, InputLog};
use lockstep::machine::execute;
use lockstep::replica::full_digest;
use lockstep::Journal;

/// Runs one hypercall on the leader (recording) and the follower (replaying).
fn step(
    h: &mut Harness,
    follower: &mut crate::hv::HvState,
    epoch: u64,
    nr: u32,
    args: [u64; 5],
) -> i64 {
    let regs = GuestRegs::for_hypercall(u64::from(nr), args);
    let req = Request::hypercall(h.dom, 0, regs).to_words();
    let mut log = InputLog::new(1 << 20);
    let mut lj = Journal::new();
    let mut le = Effects::new();
    let lead = {
        let mut input = Input::record(&req, &mut h.mem, &mut log);
        execute::<Xen>(&mut h.state, &mut lj, epoch, &mut le, &mut input)
    };
    let mut fj = Journal::new();
    let mut fe = Effects::new();
    let follow = {
        let mut src = log.reader();
        let mut input = Input::replay(&req, &mut src);
        execute::<Xen>(follower, &mut fj, epoch, &mut fe, &mut input)
    };
    assert!(
        lead.error.is_none() && follow.error.is_none(),
        "{:?} {:?}",
        lead.error,
        follow.error
    );
    assert_eq!(le.as_slice(), fe.as_slice(), "effects differ");
    assert_eq!(lead.digest, follow.digest, "transaction digests differ");
    assert_eq!(
        full_digest(&h.state),
        full_digest(follower),
        "replicas differ"
    );
    let mut ret = i64::MIN;
    for e in le.as_slice() {
        match e {
            Effect::WriteGuest { addr, data } => h.mem.map(*addr, data),
            Effect::WriteMachine { maddr, value } => {
                h.mem.machine.insert(*maddr, *value);
            }
            Effect::Return(v) => ret = *v,
            _ => {}
        }
    }
    lockstep::replica::forget(&mut h.state);
    lockstep::replica::forget(follower);
    ret
}

#[test]
fn leader_and_follower_agree_on_every_mm_hypercall() {
    let mut h = harness(false);
    let mut f = h.state.clone();
    let t = mfn(36);
    // Give the future L1 an entry, so validation reads and references something. An
    // unwritable done pointer does not fail the call (Xen ignores that copy's result).
    h.mem.machine.insert(t << 12, (mfn(37) << 12) | P | RW);
    h.mem.map(
        0x9000,
        &MmuextOp {
            cmd: MMUEXT_PIN_L1_TABLE,
            arg1: t,
            arg2: 0,
        }
        .to_vec(),
    );
    assert_eq!(
        step(
            &mut h,
            &mut f,
            10,
            HYPERVISOR_MMUEXT_OP,
            [0x9000, 1, 0x8000, 0x7ff0, 0]
        ),
        0
    );
    h.mem.map(0x8000, &[0; 4]);
    assert_eq!(
        step(
            &mut h,
            &mut f,
            11,
            HYPERVISOR_MMUEXT_OP,
            [0x9000, 1, 0x8000, 0x7ff0, 0]
        ),
        -22
    );
    let va = VA_BASE + 40 * 4096;
    assert_eq!(
        step(
            &mut h,
            &mut f,
            12,
            HYPERVISOR_UPDATE_VA_MAPPING,
            [va, (mfn(38) << 12) | P | RW, 2, 0, 0]
        ),
        0
    );
    assert_eq!(
        step(
            &mut h,
            &mut f,
            13,
            HYPERVISOR_UPDATE_VA_MAPPING,
            [va, (t << 12) | P | RW, 0, 0, 0]
        ),
        -16
    );
    h.mem.map(
        0xa000,
        &MmuUpdate {
            ptr: l1_slot(41),
            val: (mfn(39) << 12) | P,
        }
        .to_vec(),
    );
    assert_eq!(
        step(
            &mut h,
            &mut f,
            14,
            HYPERVISOR_MMU_UPDATE,
            [0xa000, 1, 0, 0x7ff0, 0]
        ),
        0
    );
    // Allocation answers come through the log too.
    h.mem.add_frame(0x2000);
    h.mem
        .values
        .entry(value_kind::ALLOC_FRAME)
        .or_default()
        .push_back(0x2000);
    h.mem.map(0xb000, &200u64.to_le_bytes());
    let r = XenMemoryReservation {
        extent_start: 0xb000,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: 0x7ff0,
    };
    h.mem.map(0xc000, &r.to_vec());
    assert_eq!(
        step(
            &mut h,
            &mut f,
            15,
            HYPERVISOR_MEMORY_OP,
            [6, 0xc000, 0, 0, 0]
        ),
        1
    );
    h.mem.map(
        0x9000,
        &MmuextOp {
            cmd: MMUEXT_UNPIN_TABLE,
            arg1: t,
            arg2: 0,
        }
        .to_vec(),
    );
    assert_eq!(
        step(
            &mut h,
            &mut f,
            16,
            HYPERVISOR_MMUEXT_OP,
            [0x9000, 1, 0, 0x7ff0, 0]
        ),
        0
    );
    assert_eq!(h.state.frames.get(&mfn(37)).map(|p| p.type_count), Some(0));
}
