//! Host tests of a faulting return to the guest (`ExitKind::ReturnFault`): handled as the
//! guest's own exception at the frame being returned to, as Xen 4.17's `iret_exit_to_guest`
//! fixup does, and a vCPU whose returns keep faulting crashes its domain.

use super::tests::{exit, kregs, map_stack, set_regs, stack_words, trap_table, HANDLER, STACK};
use crate::effect::Effect;
use crate::hv::value_kind;
use crate::hypercall::testing::Harness;
use crate::request::{ExitKind, GuestRegs, Request};
use crate::traps::{return_fault_word, RETURN_FAULT_LIMIT};

/// The frame `HYPERVISOR_iret` was given: GDT entry 5 (0x2b) as CS, not present.
fn bad_cs() -> GuestRegs {
    GuestRegs {
        cs: 0x2b,
        ..kregs()
    }
}

/// A dom0 or domU with #NP, #SS, #GP handlers and a mapped kernel stack.
fn harness(domu: bool) -> Harness {
    let mut h = if domu {
        Harness::domu(3)
    } else {
        Harness::dom0()
    };
    let table = [
        (11, 0, HANDLER),
        (12, 0, HANDLER + 0x10),
        (13, 0, HANDLER + 0x20),
    ];
    assert_eq!(trap_table(&mut h, 0x1000, &table), 0);
    map_stack(&mut h, STACK & !0xf);
    h
}

/// The next transactions read these vcpu_info upcall states (events unmasked, none pending).
fn upcall_states(h: &mut Harness, n: usize) {
    let q = h.mem.values.entry(value_kind::UPCALL_STATE).or_default();
    for _ in 0..n {
        q.push_back(0);
    }
}

#[test]
fn the_fault_is_bounced_with_the_selector_as_error_code() {
    let mut h = harness(false);
    upcall_states(&mut h, 1);
    let e = exit(
        &mut h,
        ExitKind::ReturnFault,
        bad_cs(),
        return_fault_word(11, 0),
        0x28,
        0,
    );
    let r = set_regs(&e).expect("bounced to the #NP handler");
    let top = STACK & !0xf;
    assert_eq!(
        (r.rip, r.cs, r.ss, r.rsp),
        (HANDLER, 0xe033, 0xe02b, top - 64)
    );
    // RCX, R11, error code, then the frame being returned to (CS with RPL 0).
    assert_eq!(
        stack_words(&h, top - 64, 8),
        [
            11,
            22,
            0x28,
            0xffff_ffff_8000_5000,
            0x28,
            0x246,
            STACK,
            0xe02b
        ]
    );
    assert!(!e.iter().any(|x| matches!(x, Effect::DomainCrash { .. })));
}

#[test]
fn handled_exactly_as_the_same_exception_raised_by_the_guest() {
    for (vector, ec) in [(11u8, 0x28u64), (12, 0x2c), (13, 0x28), (13, 0)] {
        let mut a = harness(true);
        let mut b = harness(true);
        upcall_states(&mut a, 1);
        upcall_states(&mut b, 1);
        let fault = exit(
            &mut a,
            ExitKind::ReturnFault,
            bad_cs(),
            return_fault_word(vector, 1),
            ec,
            0,
        );
        let raised = exit(
            &mut b,
            ExitKind::Exception,
            bad_cs(),
            u64::from(vector),
            ec,
            0,
        );
        assert_eq!(fault, raised, "vector {vector} error code {ec:#x}");
        assert!(set_regs(&fault).is_some());
    }
}

#[test]
fn returns_that_keep_faulting_crash_the_domain() {
    let mut h = harness(true);
    upcall_states(&mut h, 1);
    let last_retry = return_fault_word(13, RETURN_FAULT_LIMIT - 1);
    let e = exit(&mut h, ExitKind::ReturnFault, bad_cs(), last_retry, 0x28, 0);
    assert!(!e.iter().any(|x| matches!(x, Effect::DomainCrash { .. })));
    let too_many = return_fault_word(13, RETURN_FAULT_LIMIT);
    let e = exit(&mut h, ExitKind::ReturnFault, bad_cs(), too_many, 0x28, 0);
    assert!(e.contains(&Effect::DomainCrash { dom: 3 }));
    assert!(set_regs(&e).is_none(), "nothing returned to");
    assert_eq!(h.state.domains.get(&3).and_then(|d| d.shutdown), Some(3));
}

#[test]
fn an_unhandled_return_fault_crashes_the_domain_as_xen() {
    // No trap table: Xen's bounce to a null handler crashes the domain.
    let mut h = Harness::domu(3);
    map_stack(&mut h, STACK & !0xf);
    upcall_states(&mut h, 1);
    let e = exit(
        &mut h,
        ExitKind::ReturnFault,
        bad_cs(),
        return_fault_word(11, 0),
        0x28,
        0,
    );
    assert!(e.contains(&Effect::DomainCrash { dom: 3 }));
}

#[test]
fn the_request_word_round_trips() {
    assert_eq!(return_fault_word(13, 0), 13);
    assert_eq!(return_fault_word(11, 2), 0x20b);
    assert_eq!(return_fault_word(14, u64::MAX) & 0xff, 14);
    let req = Request::exit(
        ExitKind::ReturnFault,
        1,
        0,
        bad_cs(),
        return_fault_word(12, 3),
        0x2c,
        0,
    );
    assert_eq!(Request::from_words(&req.to_words()), Some(req));
}
