//! The FIFO ABI through `event_channel_op`: `init_control`, `expand_array`, `set_priority`,
//! the switch from 2-level and back, and which delivery effects FIFO ports produce.

use super::*;
use crate::evtchn::fifo::{FifoPort, CONTROL_BLOCK_SIZE};
use crate::mm::{PageInfo, PageType};

const EACCES: i64 = -13;

/// Frames dom0 owns in these tests.
const CB_MFN: u64 = 0x500;
const CB1_MFN: u64 = 0x501;
const ARRAY_MFN: u64 = 0x502;
const ARRAY2_MFN: u64 = 0x503;
/// A frame dom0 does not own.
const FOREIGN_MFN: u64 = 0x600;
/// dom0's shared_info page.
const SHARED_MFN: u64 = 0x700;

fn fifo_harness() -> Harness {
    let mut h = Harness::dom0();
    let mut j = Journal::new();
    j.begin(1);
    for (mfn, owner) in [
        (CB_MFN, 0),
        (CB1_MFN, 0),
        (ARRAY_MFN, 0),
        (ARRAY2_MFN, 0),
        (FOREIGN_MFN, 7),
    ] {
        let p = PageInfo {
            owner,
            count: 1,
            allocated: true,
            ..Default::default()
        };
        h.state.frames.insert(&mut j, mfn, p);
    }
    lockstep::replica::forget(&mut h.state);
    h
}

fn init_control(
    h: &mut Harness,
    gfn: u64,
    offset: u32,
    vcpu: u32,
) -> (i64, Vec<u8>, Vec<EvtchnEffect>) {
    let ic = EvtchnInitControl {
        control_gfn: gfn,
        offset,
        vcpu,
        link_bits: 0,
        _pad: [0xaa; 7],
    };
    op(h, EVTCHNOP_INIT_CONTROL, &ic.to_vec())
}

fn expand(h: &mut Harness, gfn: u64) -> (i64, Vec<EvtchnEffect>) {
    let (r, _, fx) = op(
        h,
        EVTCHNOP_EXPAND_ARRAY,
        &EvtchnExpandArray { array_gfn: gfn }.to_vec(),
    );
    (r, fx)
}

fn set_priority(h: &mut Harness, port: u32, priority: u32) -> i64 {
    op(
        h,
        EVTCHNOP_SET_PRIORITY,
        &EvtchnSetPriority { port, priority }.to_vec(),
    )
    .0
}

fn fifo_set(port: u32, vcpu: u32, priority: u8) -> EvtchnEffect {
    EvtchnEffect::FifoSet {
        dom: 0,
        port,
        vcpu,
        priority,
    }
}

fn type_count(h: &Harness, mfn: u64) -> u32 {
    h.state.frames.get(&mfn).map_or(0, |p| p.type_count)
}

#[test]
fn init_control_checks_in_xens_order() {
    let mut h = fifo_harness();
    assert_eq!(init_control(&mut h, CB_MFN, 0, 9).0, ENOENT, "no such vCPU");
    assert_eq!(
        init_control(&mut h, CB_MFN, 4096 - CONTROL_BLOCK_SIZE + 8, 0).0,
        EINVAL
    );
    assert_eq!(
        init_control(&mut h, CB_MFN, 4, 0).0,
        EINVAL,
        "not 8-byte aligned"
    );
    assert_eq!(
        init_control(&mut h, FOREIGN_MFN, 0, 0).0,
        EINVAL,
        "not ours"
    );
    assert_eq!(
        init_control(&mut h, 0xdead_beef, 0, 0).0,
        EINVAL,
        "no such frame"
    );
    assert!(
        !crate::evtchn::fifo::is_fifo(&h.state, 0),
        "failures switch nothing"
    );
    let (r, out, fx) = init_control(&mut h, CB_MFN, 4096 - CONTROL_BLOCK_SIZE, 0);
    assert_eq!(r, 0);
    let back = EvtchnInitControl::read_from(&out).unwrap();
    assert_eq!(back.link_bits, 17);
    assert_eq!(back._pad, [0xaa; 7], "padding written back as it came");
    assert_eq!(fx, vec![EvtchnEffect::FifoReset { dom: 0 }]);
    assert_eq!(type_count(&h, CB_MFN), 1, "a writable type reference");
    assert_eq!(h.state.frames.get(&CB_MFN).unwrap().ty, PageType::Writable);
    let (r, out, _) = init_control(&mut h, CB_MFN, 0, 0);
    assert_eq!(r, EINVAL, "vCPU 0 already has one");
    assert_eq!(
        EvtchnInitControl::read_from(&out).unwrap().link_bits,
        0,
        "not written"
    );
    let (r, _, fx) = init_control(&mut h, CB1_MFN, 64, 1);
    assert_eq!(r, 0, "a second vCPU");
    assert!(fx.is_empty(), "not a fresh switch");
}

#[test]
fn expand_array_and_ports_beyond_it() {
    let mut h = fifo_harness();
    let ipi = bind_ipi(&mut h, 0).unwrap();
    assert_eq!(init_control(&mut h, CB_MFN, 0, 0).0, 0);
    // No event array page yet: the event is saved, nothing is delivered, no one is woken.
    let (r, fx) = send(&mut h, ipi);
    assert_eq!((r, fx), (0, vec![]));
    assert!(crate::evtchn::fifo::port(&h.state, (0, ipi)).saved_pending);
    // Unmask and close of such a port touch nothing either.
    assert_eq!(port_op(&mut h, EVTCHNOP_UNMASK, ipi), (0, vec![]));
    assert_eq!(expand(&mut h, FOREIGN_MFN).0, EINVAL);
    let (r, fx) = expand(&mut h, ARRAY_MFN);
    assert_eq!(r, 0);
    assert_eq!(fx, vec![fifo_set(ipi, 0, 7)], "the saved event is raised");
    assert_eq!(type_count(&h, ARRAY_MFN), 1);
    let (r, fx) = send(&mut h, ipi);
    assert_eq!((r, fx), (0, vec![fifo_set(ipi, 0, 7)]));
    let (r, fx) = port_op(&mut h, EVTCHNOP_UNMASK, ipi);
    assert_eq!(r, 0);
    assert_eq!(
        fx,
        vec![EvtchnEffect::FifoUnmask {
            dom: 0,
            port: ipi,
            vcpu: 0,
            priority: 7
        }]
    );
    let (r, fx) = port_op(&mut h, EVTCHNOP_CLOSE, ipi);
    assert_eq!(r, 0);
    let word = ARRAY_MFN * 4096 + 4 * u64::from(ipi);
    assert_eq!(fx, vec![EvtchnEffect::FifoClear { dom: 0, word }]);
}

#[test]
fn expand_array_stops_at_128_pages() {
    let mut h = fifo_harness();
    assert_eq!(init_control(&mut h, CB_MFN, 0, 0).0, 0);
    let mut j = Journal::new();
    j.begin(1);
    for i in 0..129u64 {
        let p = PageInfo {
            owner: 0,
            count: 1,
            allocated: true,
            ..Default::default()
        };
        h.state.frames.insert(&mut j, 0x1000 + i, p);
    }
    lockstep::replica::forget(&mut h.state);
    for i in 0..128u64 {
        assert_eq!(expand(&mut h, 0x1000 + i).0, 0, "page {i}");
    }
    assert_eq!(expand(&mut h, 0x1000 + 128).0, ENOSPC);
    assert_eq!(type_count(&h, 0x1000 + 128), 0, "not taken");
}

#[test]
fn set_priority_errors_and_effect() {
    let mut h = fifo_harness();
    let p = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(set_priority(&mut h, p, 3), ENOSYS, "2-level");
    assert_eq!(init_control(&mut h, CB_MFN, 0, 0).0, 0);
    assert_eq!(expand(&mut h, ARRAY_MFN).0, 0);
    assert_eq!(
        set_priority(&mut h, PORTS_PER_BUCKET, 3),
        EINVAL,
        "invalid port"
    );
    assert_eq!(set_priority(&mut h, p, 16), EINVAL, "beyond the lowest");
    assert_eq!(set_priority(&mut h, 40, 3), EACCES, "a free port");
    assert_eq!(set_priority(&mut h, 0, 0), EACCES, "the reserved one");
    assert_eq!(
        set_priority(&mut h, 40, 16),
        EACCES,
        "checked before the priority"
    );
    let q = bind_interdomain(&mut h, DOMID_SELF, p).unwrap();
    let (_, _) = send(&mut h, q);
    assert_eq!(set_priority(&mut h, p, 2), 0);
    assert_eq!(send(&mut h, q).1, vec![fifo_set(p, 0, 2)]);
    // Rebinding the port to vCPU 1 moves its next events to vCPU 1's queue.
    assert_eq!(bind_vcpu(&mut h, p, 1), 0);
    assert_eq!(send(&mut h, q).1, vec![fifo_set(p, 1, 2)]);
    // A closed and re-bound port is back at the default priority.
    assert_eq!(close(&mut h, q), 0);
    assert_eq!(close(&mut h, p), 0);
    let again = alloc_unbound(&mut h, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(again, p);
    assert_eq!(
        crate::evtchn::fifo::port(&h.state, (0, p)),
        FifoPort::default()
    );
}

#[test]
fn switching_keeps_two_level_pending_events_and_reset_switches_back() {
    let mut h = fifo_harness();
    let a = bind_ipi(&mut h, 0).unwrap();
    let b = bind_ipi(&mut h, 1).unwrap();
    // dom0's shared_info, with b pending in the 2-level bitmap.
    h.mem.add_frame(SHARED_MFN);
    let pend = SHARED_MFN * 4096 + 2048;
    h.mem.machine.insert(pend, 1 << b);
    let mut j = Journal::new();
    j.begin(1);
    let t = crate::sched::DomTime {
        shared_info_maddr: SHARED_MFN * 4096,
        wc_version: 0,
    };
    h.state.dom_time.insert(&mut j, 0, t);
    lockstep::replica::forget(&mut h.state);
    assert_eq!(init_control(&mut h, CB_MFN, 0, 0).0, 0);
    assert!(!crate::evtchn::fifo::port(&h.state, (0, a)).saved_pending);
    assert!(crate::evtchn::fifo::port(&h.state, (0, b)).saved_pending);
    let (r, fx) = expand(&mut h, ARRAY_MFN);
    assert_eq!(r, 0);
    assert_eq!(fx, vec![fifo_set(b, 1, 7)]);
    // SCHEDOP_poll reads the FIFO event word.
    assert!(
        crate::evtchn::fifo::word_maddr(&h.state, 0, b)
            == Some(ARRAY_MFN * 4096 + 4 * u64::from(b))
    );
    // Reset closes everything and goes back to 2-level, dropping the page references.
    let (r, _, fx) = op(
        &mut h,
        EVTCHNOP_RESET,
        &EvtchnReset { dom: DOMID_SELF }.to_vec(),
    );
    assert_eq!(r, 0);
    let word = |p: u32| ARRAY_MFN * 4096 + 4 * u64::from(p);
    assert_eq!(
        fx,
        vec![
            EvtchnEffect::FifoClear {
                dom: 0,
                word: word(a)
            },
            EvtchnEffect::FifoClear {
                dom: 0,
                word: word(b)
            },
            EvtchnEffect::FifoReset { dom: 0 },
        ],
        "the freed ports' words are cleared although the array goes in the same call"
    );
    assert!(!crate::evtchn::fifo::is_fifo(&h.state, 0));
    assert_eq!(type_count(&h, CB_MFN), 0);
    assert_eq!(type_count(&h, ARRAY_MFN), 0);
    let p = bind_ipi(&mut h, 0).unwrap();
    assert_eq!(
        send(&mut h, p).1,
        vec![set(0, p, 0)],
        "2-level delivery again"
    );
    assert_eq!(set_priority(&mut h, p, 3), ENOSYS);
    assert_eq!(expand(&mut h, ARRAY2_MFN).0, EOPNOTSUPP);
    // And FIFO can be set up again.
    assert_eq!(init_control(&mut h, CB1_MFN, 0, 1).0, 0);
}

#[test]
fn fifo_state_is_in_the_digest() {
    let mut h = fifo_harness();
    let before = lockstep::replica::full_digest(&h.state);
    assert_eq!(init_control(&mut h, CB_MFN, 0, 0).0, 0);
    assert_ne!(lockstep::replica::full_digest(&h.state), before);
}

#[test]
fn a_freed_port_still_linked_is_not_reused() {
    let mut h = fifo_harness();
    assert_eq!(init_control(&mut h, CB_MFN, 0, 0).0, 0);
    assert_eq!(expand(&mut h, ARRAY_MFN).0, 0);
    let a = bind_ipi(&mut h, 0).unwrap();
    let b = bind_ipi(&mut h, 0).unwrap();
    assert_eq!(close(&mut h, a), 0);
    // The guest has not consumed a yet: its word is LINKED (the event array is read through
    // the input, as the guest changes it).
    h.mem.add_frame(ARRAY_MFN);
    let at = ARRAY_MFN * 4096 + 4 * u64::from(a);
    let shift = (at % 8) * 8;
    h.mem
        .machine
        .insert(at & !7, u64::from(1u32 << 29) << shift);
    let c = bind_ipi(&mut h, 0).unwrap();
    assert_eq!(c, b + 1, "a is busy: skipped");
    // Consumed (LINKED cleared): free again.
    h.mem.machine.insert(at & !7, 0);
    assert_eq!(bind_ipi(&mut h, 0), Ok(a));
    // A 2-level domain never looks at words.
    assert_eq!(reset(&mut h, EVTCHNOP_RESET, DOMID_SELF), 0);
    h.mem
        .machine
        .insert(at & !7, u64::from(1u32 << 29) << shift);
    assert_eq!(bind_ipi(&mut h, 0), Ok(1));
}
