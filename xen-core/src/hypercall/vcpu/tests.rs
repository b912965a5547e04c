//! vcpu_op tests: the answers Xen 4.17 gave the `timer` test guest.

use super::*;
use crate::sched::tests::{virqs, Rig, ROOTS, SHARED_INFO};

fn context(cr3_pfn: u64) -> [u8; 5168] {
    let mut c = [0u8; 5168];
    // VGCF_in_kernel: a context starting in user mode needs a user page table.
    c[512] = 1 << 2;
    c[4984 + 24..4984 + 32].copy_from_slice(&(cr3_pfn << 12).to_le_bytes());
    c
}

#[test]
fn ids_and_unknown_ops() {
    let mut r = Rig::new(2, 1);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, 0, 0), 1);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, 1, 0), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, 4096, 0), -2);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, u32::MAX, 0), -2);
    assert_eq!(r.vcpu_op(0, VCPUOP_STOP_PERIODIC_TIMER, 4096, 0), -2);
    assert_eq!(r.vcpu_op(0, 99, 0, 0), -38);
    assert_eq!(r.vcpu_op(0, VCPUOP_GET_PHYSID, 0, 0), -22);
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 0, 0), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 0, 0), -14);
}

#[test]
fn singleshot_rules() {
    let mut r = Rig::new(2, 1);
    r.world.tsc = 1_000_000;
    let past = VcpuSetSingleshotTimer {
        timeout_abs_ns: 10,
        flags: VCPU_SSHOTTMR_FUTURE,
    };
    r.map(0x2000, &past.to_vec());
    // Xen 4.17 ignores VCPU_SSHOTTMR_future: accepted, fires at once.
    let (ret, out) = r.call(
        0,
        dom0_interface::xen::HYPERVISOR_VCPU_OP,
        [u64::from(VCPUOP_SET_SINGLESHOT_TIMER), 0, 0x2000, 0, 0],
    );
    assert_eq!(ret, 0);
    assert_eq!(virqs(&out), alloc::vec![(0, 0)]);
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_SINGLESHOT_TIMER, 1, 0x2000), -22);
    assert_eq!(r.vcpu_op(0, VCPUOP_STOP_SINGLESHOT_TIMER, 1, 0), -22);
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_SINGLESHOT_TIMER, 0, 0), -14);
    let later = VcpuSetSingleshotTimer {
        timeout_abs_ns: 5_000_000,
        flags: 0,
    };
    r.map(0x2000, &later.to_vec());
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_SINGLESHOT_TIMER, 0, 0x2000), 0);
    assert_eq!(r.vcpu(0).timer_deadline, Some(5_000_000));
    assert_eq!(r.vcpu_op(0, VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0), 0);
    assert_eq!(r.vcpu(0).timer_deadline, None);
}

#[test]
fn runstate_info_and_area() {
    let mut r = Rig::new(2, 1);
    r.world.tsc = 7_000;
    r.map(0x3000, &[0; 48]);
    assert_eq!(r.vcpu_op(0, VCPUOP_GET_RUNSTATE_INFO, 0, 0x3000), 0);
    let mut b = [0u8; 48];
    for (i, x) in b.iter_mut().enumerate() {
        *x = r.world.guest[&(0x3000 + i as u64)];
    }
    let info = VcpuRunstateInfo::read_from(&b).unwrap();
    assert_eq!(info.state, RUNSTATE_RUNNING);
    assert_eq!(info.time[0], 7_000);
    assert_eq!(r.vcpu_op(0, VCPUOP_GET_RUNSTATE_INFO, 0, 0), -14);
    assert_eq!(r.vcpu_op(0, VCPUOP_GET_RUNSTATE_INFO, 1, 0x3000), 0);
    assert_eq!(r.world.guest[&0x3000], RUNSTATE_OFFLINE as u8);
    // Area: a bad argument, an address in Xen's range, then a good one.
    assert_eq!(
        r.vcpu_op(0, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0),
        -14
    );
    r.map(0x4000, &HYPERVISOR_VIRT_START.to_le_bytes());
    assert_eq!(
        r.vcpu_op(0, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x4000),
        -14
    );
    r.map(0x5000, &[0xff; 48]);
    r.map(0x4000, &0x5000u64.to_le_bytes());
    assert_eq!(
        r.vcpu_op(0, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x4000),
        0
    );
    assert_eq!(r.world.guest[&0x5000], RUNSTATE_RUNNING as u8);
    assert!(guest_range_ok(0xffff_ffff_8000_0000, 48));
    assert!(!guest_range_ok(0x0000_8000_0000_0000, 48));
    assert!(!guest_range_ok(HYPERVISOR_VIRT_END - 8, 48));
    assert!(!guest_range_ok(u64::MAX - 4, 48));
}

#[test]
fn bring_up_down_and_initialise() {
    let mut r = Rig::new(2, 2);
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 1, 0), -22, "not initialised");
    assert_eq!(r.vcpu_op(0, VCPUOP_DOWN, 1, 0), 0, "already down");
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0), -14);
    r.map(0x8000, &context(0));
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000), -22, "no cr3");
    let mut bad = context(0x1234);
    bad[520 + 128..520 + 136].copy_from_slice(&0x0000_8000_0000_0000u64.to_le_bytes());
    r.map(0x8000, &bad);
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000), -22, "rip");
    r.map(0x8000, &context(0x4321));
    assert_eq!(
        r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000),
        -22,
        "a root that is not an L4 of the domain"
    );
    assert!(
        !r.state.frames.contains_key(&0x4321),
        "nothing referenced on refusal"
    );
    r.map(0x8000, &context(0x1234));
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000), 0);
    assert_eq!(
        r.state.frames.get(&0x1234).map(|p| p.type_count),
        Some(2),
        "vCPU 1's CR3 holds a type reference on its root"
    );
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000), -17);
    assert_eq!(r.vcpu(1).cr3, 0x1234 << 12);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, 1, 0), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 1, 0), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, 1, 0), 1);
    assert_eq!(r.current(1), Some((0, 1)), "placed on the idle CPU");
    // vCPU 1 takes itself down; vCPU 0 brings it back.
    assert_eq!(r.vcpu_op(1, VCPUOP_DOWN, 1, 0), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_IS_UP, 1, 0), 0);
    assert_eq!(r.current(1), None);
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 1, 0), 0);
    assert_eq!(r.current(1), Some((0, 1)));
    // The last vCPU going down powers the domain off.
    assert_eq!(r.vcpu_op(0, VCPUOP_DOWN, 1, 0), 0);
    let (ret, out) = r.call(
        0,
        dom0_interface::xen::HYPERVISOR_VCPU_OP,
        [u64::from(VCPUOP_DOWN), 0, 0, 0, 0],
    );
    assert_eq!(ret, 0);
    assert!(out.contains(&Effect::DomainShutdown {
        dom: 0,
        reason: SHUTDOWN_POWEROFF
    }));
}

#[test]
fn register_vcpu_info_rules() {
    let mut r = Rig::new(2, 1);
    let reg = |r: &mut Rig, vcpu, target, mfn, offset| {
        let i = VcpuRegisterVcpuInfo {
            mfn,
            offset,
            rsvd: 0,
        };
        r.map(0x6000, &i.to_vec());
        r.vcpu_op(vcpu, VCPUOP_REGISTER_VCPU_INFO, target, 0x6000)
    };
    assert_eq!(r.vcpu_op(0, VCPUOP_REGISTER_VCPU_INFO, 1, 0), -14);
    assert_eq!(reg(&mut r, 0, 1, 0x77, 4096 - 63), -6, "crosses the page");
    assert_eq!(reg(&mut r, 0, 1, 0x77, 4), -6, "misaligned");
    assert_eq!(
        reg(&mut r, 0, 1, 0x77, 64),
        -22,
        "a frame dom0 does not own"
    );
    assert_eq!(reg(&mut r, 0, 1, ROOTS[0], 64), -22, "a page table");
    assert_eq!(
        crate::sched::vcpu_info_maddr(&r.state, (0, 1)),
        Some(SHARED_INFO + 64),
        "still its shared_info slot"
    );
    // Frame 0x77 becomes dom0's (a data page).
    let page = crate::mm::PageInfo {
        owner: 0,
        count: 1,
        allocated: true,
        ..Default::default()
    };
    r.state.frames.insert(&mut r.journal, 0x77, page);
    lockstep::replica::forget(&mut r.state);
    assert_eq!(
        reg(&mut r, 1, 0, 0x77, 64),
        -22,
        "vCPU 0 is online and not the caller"
    );
    // The old slot's mask is copied, all selectors marked pending.
    r.world.machine.insert(SHARED_INFO + 64 + 1, 1);
    assert_eq!(reg(&mut r, 0, 1, 0x77, 64), 0);
    assert_eq!(reg(&mut r, 0, 1, 0x77, 128), -22, "once only");
    let new = 0x77 * 4096 + 64;
    assert_eq!(r.world.machine.get(&(new + 1)), Some(&1), "mask copied");
    assert_eq!(r.world.machine.get(&new), Some(&1), "upcall pending");
    for i in 8..16 {
        assert_eq!(r.world.machine.get(&(new + i)), Some(&0xff));
    }
    assert_eq!(crate::sched::vcpu_info_maddr(&r.state, (0, 1)), Some(new));
    let p = r.state.frames.get(&0x77).cloned().unwrap();
    assert_eq!(
        (p.count, p.ty, p.type_count),
        (2, crate::mm::PageType::Writable, 1),
        "a general and a writable type reference held"
    );
}
