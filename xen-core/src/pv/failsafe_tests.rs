//! Host tests of the failsafe callback (`ExitKind::Failsafe`): the frame Xen 4.17's
//! `load_segments` builds when a saved data selector no longer loads.

use super::tests::{exit, kregs, map_stack, set_regs, stack_words, to_user, KSTACK, STACK};
use crate::effect::Effect;
use crate::hv::value_kind;
use crate::hypercall::testing::Harness;
use crate::pv::effect::PvEffect;
use crate::pv::segments::pack;
use crate::request::ExitKind;
use dom0_interface::xen as x;

const FAILSAFE: u64 = 0xffff_ffff_8000_7000;
/// DS (an LDT selector with no LDT), ES, FS, GS as the vCPU had them saved.
const SEGS: [u16; 4] = [0x000f, 0xe02b, 0, 0x1234];

/// Registers the failsafe callback with callback_op (`mask`: CALLBACKF_mask_events).
fn register_failsafe(h: &mut Harness, mask: bool) {
    let mut b = 1u16.to_le_bytes().to_vec();
    b.extend_from_slice(&u16::from(mask).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&FAILSAFE.to_le_bytes());
    h.mem.map(0x100, &b);
    let nr = u64::from(x::HYPERVISOR_CALLBACK_OP);
    assert_eq!(h.hypercall(nr, [0, 0x100, 0, 0, 0]).ret, 0);
}

/// The next transaction reads this vcpu_info upcall mask (nothing pending).
fn upcall_mask(h: &mut Harness, mask: u64) {
    h.mem
        .values
        .entry(value_kind::UPCALL_STATE)
        .or_default()
        .push_back(mask << 8);
}

fn masks(e: &[Effect]) -> bool {
    e.iter()
        .any(|x| matches!(x, Effect::Pv(PvEffect::UpcallMask { masked: true, .. })))
}

#[test]
fn kernel_mode_frame_carries_the_saved_selectors() {
    let mut h = Harness::dom0();
    register_failsafe(&mut h, true);
    let top = STACK & !0xf;
    map_stack(&mut h, top);
    upcall_mask(&mut h, 0);
    let e = exit(&mut h, ExitKind::Failsafe, kregs(), 0, pack(SEGS), 0);
    let r = set_regs(&e).expect("entered the failsafe callback");
    assert_eq!(
        (r.rip, r.cs, r.ss, r.rsp),
        (FAILSAFE, 0xe033, 0xe02b, top - 88)
    );
    // RCX, R11, DS, ES, FS, GS, RIP, CS (RPL 0, saved mask 0), RFLAGS (IF: events were on),
    // RSP, SS.
    assert_eq!(
        stack_words(&h, top - 88, 11),
        [
            11,
            22,
            0x000f,
            0xe02b,
            0,
            0x1234,
            0xffff_ffff_8000_5000,
            0xe030,
            0x246,
            STACK,
            0xe02b
        ]
    );
    assert!(masks(&e), "CALLBACKF_mask_events masks events");
    assert!(!e.iter().any(|x| matches!(x, Effect::DomainCrash { .. })));
}

#[test]
fn events_stay_unmasked_without_the_flag_and_the_saved_mask_is_reported() {
    let mut h = Harness::dom0();
    register_failsafe(&mut h, false);
    let top = STACK & !0xf;
    map_stack(&mut h, top);
    upcall_mask(&mut h, 0);
    let e = exit(&mut h, ExitKind::Failsafe, kregs(), 0, pack(SEGS), 0);
    assert!(!masks(&e));
    upcall_mask(&mut h, 1);
    let e = exit(&mut h, ExitKind::Failsafe, kregs(), 0, pack(SEGS), 0);
    assert!(set_regs(&e).is_some());
    let w = stack_words(&h, top - 88, 11);
    assert_eq!((w[7], w[8]), (0x1_0000_e030, 0x046), "mask in CS, IF clear");
}

#[test]
fn user_mode_switches_to_the_kernel_stack() {
    let mut h = Harness::dom0();
    register_failsafe(&mut h, true);
    to_user(&mut h);
    map_stack(&mut h, KSTACK);
    upcall_mask(&mut h, 0);
    let e = exit(&mut h, ExitKind::Failsafe, kregs(), 0, pack(SEGS), 0);
    assert!(e.contains(&Effect::Pv(PvEffect::GuestMode {
        kernel: true,
        cr3: 0x1000
    })));
    let r = set_regs(&e).expect("entered the failsafe callback");
    assert_eq!((r.rip, r.rsp), (FAILSAFE, KSTACK - 88));
    let w = stack_words(&h, KSTACK - 88, 11);
    assert_eq!(&w[2..6], &[0x000f, 0xe02b, 0, 0x1234]);
    assert_eq!((w[7], w[9]), (0xe033, STACK), "user CS keeps RPL 3");
}

#[test]
fn no_callback_enters_address_zero_and_a_bad_stack_crashes() {
    let mut h = Harness::dom0();
    let top = STACK & !0xf;
    map_stack(&mut h, top);
    upcall_mask(&mut h, 0);
    let e = exit(&mut h, ExitKind::Failsafe, kregs(), 0, pack(SEGS), 0);
    assert_eq!(set_regs(&e).map(|r| r.rip), Some(0));
    assert!(!e.iter().any(|x| matches!(x, Effect::DomainCrash { .. })));
    let mut h = Harness::domu(3);
    register_failsafe(&mut h, false);
    upcall_mask(&mut h, 0);
    let e = exit(&mut h, ExitKind::Failsafe, kregs(), 0, pack(SEGS), 0);
    assert!(e.contains(&Effect::DomainCrash { dom: 3 }));
}
