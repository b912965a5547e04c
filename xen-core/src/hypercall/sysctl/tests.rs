//! Host tests of the sysctl sub-ops added for `xl info`: sched_id and physinfo's `hw_cap`
//! from the host CPUID input.

use super::hw_cap::{Reg, WORDS};
use crate::hv::value_kind;
use crate::hypercall::testing::Harness;
use dom0_interface::domctl::XEN_SCHEDULER_CREDIT2;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::sysctl::*;
use dom0_interface::xen::HYPERVISOR_SYSCTL;

const OP: u64 = 0x1000;

/// Runs `op` as sysctl: the return value and the struct as copied back.
fn sysctl(h: &mut Harness, op: &XenSysctl) -> (i64, XenSysctl) {
    h.mem.map(OP, &op.to_vec());
    let r = h.hypercall(u64::from(HYPERVISOR_SYSCTL), [OP, 0, 0, 0, 0]);
    let mut b = [0u8; XenSysctl::SIZE];
    for (i, x) in b.iter_mut().enumerate() {
        *x = h.mem.bytes[&(OP + i as u64)];
    }
    (r.ret, XenSysctl::read_from(&b).unwrap())
}

/// Offers raw CPUID register `reg` of `leaf`/`sub` as `v`.
fn offer(h: &mut Harness, leaf: u32, sub: u32, reg: Reg, v: u32) {
    h.mem.values.insert(
        value_kind::host_cpuid_raw(leaf, sub, reg as u32),
        [u64::from(v)].into_iter().collect(),
    );
}

#[test]
fn sched_id_is_credit2_for_dom0_and_eperm_for_a_domu() {
    let mut h = Harness::dom0();
    let (r, out) = sysctl(&mut h, &XenSysctl::new(XEN_SYSCTL_SCHED_ID));
    assert_eq!(r, 0);
    assert_eq!(
        out.payload::<XenSysctlSchedId>().unwrap().sched_id,
        XEN_SCHEDULER_CREDIT2
    );
    let mut h = Harness::domu(4);
    let (r, out) = sysctl(&mut h, &XenSysctl::new(XEN_SYSCTL_SCHED_ID));
    assert_eq!(r, -1);
    assert_eq!(out.payload::<XenSysctlSchedId>().unwrap().sched_id, 0);
}

#[test]
fn hw_cap_comes_from_the_cpuid_input_with_xens_edits() {
    let mut h = Harness::dom0();
    offer(&mut h, 0, 0, Reg::A, 0xd);
    offer(&mut h, 0, 0, Reg::B, u32::from_le_bytes(*b"Auth"));
    offer(&mut h, 0x8000_0000, 0, Reg::A, 0x8000_0008);
    for (i, &(leaf, sub, reg)) in WORDS.iter().enumerate() {
        offer(
            &mut h,
            leaf,
            sub,
            reg,
            (0x1000 * (i as u32 + 1)) | 0x0800_0802,
        );
    }
    let (r, out) = sysctl(&mut h, &XenSysctl::new(XEN_SYSCTL_PHYSINFO));
    assert_eq!(r, 0);
    let p: XenSysctlPhysinfo = out.payload().unwrap();
    // Word 0 loses VME and (AMD) SEP, word 1 OSXSAVE, word 2 the leaf-1 duplicates.
    assert_eq!(p.hw_cap[0], 0x0800_1000);
    assert_eq!(p.hw_cap[1], 0x0000_2802);
    assert_eq!(p.hw_cap[2], 0x0800_0800);
    for i in 3..8 {
        assert_eq!(
            p.hw_cap[i],
            (0x1000 * (i as u32 + 1)) | 0x0800_0802,
            "word {i}"
        );
    }
}

#[test]
fn hw_cap_words_beyond_the_max_leaves_are_zero() {
    let mut h = Harness::dom0();
    // Basic leaves up to 1 only, no extended leaves.
    offer(&mut h, 0, 0, Reg::A, 1);
    offer(&mut h, 0x8000_0000, 0, Reg::A, 0);
    for &(leaf, sub, reg) in &WORDS {
        offer(&mut h, leaf, sub, reg, 0xffff_ffff);
    }
    let p: XenSysctlPhysinfo = sysctl(&mut h, &XenSysctl::new(XEN_SYSCTL_PHYSINFO))
        .1
        .payload()
        .unwrap();
    assert_eq!(p.hw_cap[0], !(1 << 1));
    assert_eq!(p.hw_cap[1], !(1 << 27));
    assert_eq!(&p.hw_cap[2..], &[0; 6]);
}
