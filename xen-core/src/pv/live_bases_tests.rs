//! Host tests of the segment bases a guest changes without an exit (a selector load into
//! FS/GS, `wrfsbase`/`wrgsbase`): the request's live bases become the replica's, which
//! `rdmsr` and the resume path then report, as Xen reads the live registers.

use super::tests::{exit, kregs, set_regs};
use crate::hypercall::testing::Harness;
use crate::request::{ExitKind, GuestRegs, LiveBases, Request};
use dom0_interface::xen as x;

const RIP: u64 = 0xffff_ffff_8000_5000;
const FS: u64 = 0x0000_7f00_1234_5000;
const GS: u64 = 0xffff_8880_0abc_d000;

fn live(fs_base: u64, gs_base: u64) -> Option<LiveBases> {
    Some(LiveBases { fs_base, gs_base })
}

/// `rdmsr` of `msr` by the guest kernel, in a request that carries `bases`.
fn rdmsr(h: &mut Harness, msr: u64, bases: Option<LiveBases>) -> Option<u64> {
    h.mem.map(RIP, &[0x0f, 0x32]);
    let regs = GuestRegs {
        rcx: msr,
        ..kregs()
    };
    let req = Request::exit(ExitKind::Exception, h.dom, 0, regs, 13, 0, 0).with_live(bases);
    set_regs(&h.run(req).effects)
        .filter(|r| r.rip == RIP + 2)
        .map(|r| (r.rdx << 32) | r.rax)
}

fn bases(h: &Harness) -> (u64, u64, u64) {
    let v = h.state.vcpus.get(&(h.dom, 0)).expect("vCPU 0");
    (v.fs_base, v.gs_base_kernel, v.gs_base_user)
}

#[test]
fn rdmsr_reports_the_bases_the_guest_left_in_the_hardware() {
    let mut h = Harness::dom0();
    assert_eq!(rdmsr(&mut h, 0xc000_0100, live(FS, GS)), Some(FS));
    assert_eq!(rdmsr(&mut h, 0xc000_0101, live(FS, GS)), Some(GS));
    // The user GS base is not in the hardware while the kernel runs: unchanged.
    assert_eq!(rdmsr(&mut h, 0xc000_0102, live(FS, GS)), Some(0));
    assert_eq!(bases(&h), (FS, GS, 0));
    // A request without live bases (a later transaction of the same exit) leaves them.
    assert_eq!(rdmsr(&mut h, 0xc000_0100, None), Some(FS));
}

#[test]
fn user_mode_exits_record_the_user_gs_base() {
    let mut h = Harness::dom0();
    h.state
        .vcpus
        .update(&mut lockstep::Journal::new(), &(0, 0), |v| {
            v.kernel_mode = false;
            v.gs_base_kernel = 0x5000;
        });
    // A guest-user SYSCALL without a registered callback: what matters is the bases.
    let regs = GuestRegs {
        cs: 0xe033,
        ss: 0xe02b,
        ..Default::default()
    };
    let req = Request::exit(ExitKind::UserSyscall, 0, 0, regs, 0, 0, 0).with_live(live(FS, GS));
    h.run(req);
    let (fs, gsk, gsu) = bases(&h);
    assert_eq!((fs, gsu), (FS, GS));
    assert_eq!(gsk, 0x5000, "the kernel GS base stays");
}

#[test]
fn a_hypercall_setting_a_base_wins_over_the_live_value() {
    let mut h = Harness::dom0();
    let regs = GuestRegs {
        rax: u64::from(x::HYPERVISOR_SET_SEGMENT_BASE),
        rdi: 0, // SEGBASE_FS
        rsi: 0x4000,
        cs: 0xe033,
        ss: 0xe02b,
        ..Default::default()
    };
    let out = h.run(Request::hypercall(0, 0, regs).with_live(live(FS, GS)));
    assert_eq!(out.ret, 0);
    assert_eq!(bases(&h), (0x4000, GS, 0));
}

#[test]
fn switch_out_only_records_the_bases() {
    let mut h = Harness::dom0();
    let before = set_regs(&exit(&mut h, ExitKind::SwitchOut, kregs(), 0, 0, 0));
    assert_eq!(before, None);
    let req = Request::exit(ExitKind::SwitchOut, 0, 0, kregs(), 0, 0, 0).with_live(live(FS, GS));
    let out = h.run(req);
    assert!(out.effects.is_empty(), "no effects: {:?}", out.effects);
    assert_eq!(bases(&h), (FS, GS, 0));
}
