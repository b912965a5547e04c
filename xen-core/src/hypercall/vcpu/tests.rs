//! vcpu_op tests: the answers Xen 4.17 gave the `timer` test guest, and the secondary time
//! area's copies.

use super::*;
use crate::sched::tests::{virqs, Rig, ROOTS, SHARED_INFO};
use dom0_interface::arch_x86::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
use dom0_interface::xen::{VcpuTimeInfo, HYPERVISOR_SCHED_OP, HYPERVISOR_SET_TIMER_OP};

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
    // Xen 4.17 checks the start only (`guest_handle_okay`, `__addr_ok`): an area that starts
    // below the canonical hole, or at the top of the address space, is accepted (its copies
    // fail and are ignored); one that starts in the hole or in Xen's range is not.
    for (addr, want) in [
        (0xffff_ffff_8000_0000u64, 0),
        (0x0000_7fff_ffff_ffe0, 0),
        (u64::MAX - 4, 0),
        (0x0000_8000_0000_0000, -14),
        (HYPERVISOR_VIRT_START, -14),
        (HYPERVISOR_VIRT_END - 8, -14),
    ] {
        r.map(0x4000, &addr.to_le_bytes());
        assert_eq!(
            r.vcpu_op(0, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x4000),
            want,
            "{addr:#x}"
        );
        if want == 0 {
            assert_eq!(
                crate::sched::vcpu_sched(&r.state, (0, 0)).runstate_area,
                addr
            );
        }
    }
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

/// The `vcpu_time_info` in vCPU `vcpu`'s shared_info slot.
fn primary_time(r: &Rig, vcpu: u32) -> VcpuTimeInfo {
    let at = SHARED_INFO + 64 * u64::from(vcpu) + 32;
    let b: Vec<u8> = (0..32)
        .map(|i| r.world.machine.get(&(at + i)).copied().unwrap_or(0))
        .collect();
    VcpuTimeInfo::read_from(&b).unwrap()
}

/// The `vcpu_time_info` at guest address `addr`.
fn area_time(r: &Rig, addr: u64) -> VcpuTimeInfo {
    let b: Vec<u8> = (0..32).map(|i| r.world.guest[&(addr + i)]).collect();
    VcpuTimeInfo::read_from(&b).unwrap()
}

/// `VCPUOP_register_vcpu_time_memory_area(target, {addr})` from `vcpu`, the argument at 0x4000.
fn register_time_area(r: &mut Rig, vcpu: u32, target: u32, addr: u64) -> (i64, Vec<Effect>) {
    r.map(0x4000, &addr.to_le_bytes());
    r.call(
        vcpu,
        dom0_interface::xen::HYPERVISOR_VCPU_OP,
        [
            u64::from(VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA),
            u64::from(target),
            0x4000,
            0,
            0,
        ],
    )
}

/// vCPU 0 blocks with its single-shot timer set `after` ns ahead and the timer wakes it: the
/// effects of the wake-up (the dispatch that publishes its time).
fn block_until_timer(r: &mut Rig, after: u64) -> Vec<Effect> {
    let deadline = r.world.tsc + after;
    assert_eq!(r.vcpu_op(0, VCPUOP_STOP_PERIODIC_TIMER, 0, 0), 0);
    r.call(0, HYPERVISOR_SET_TIMER_OP, [deadline, 0, 0, 0, 0]);
    let block = u64::from(dom0_interface::sched::SCHEDOP_BLOCK);
    r.call(0, HYPERVISOR_SCHED_OP, [block, 0, 0, 0, 0]);
    assert!(r.vcpu(0).blocked);
    r.world.tsc = deadline;
    let out = r.interrupt(0);
    assert_eq!(r.current(0), Some((0, 0)), "woken and running");
    out
}

/// The guest writes of `out` through vCPU `vcpu`'s own page tables.
fn vcpu_guest_writes(out: &[Effect], vcpu: u32) -> Vec<(u64, Vec<u8>)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Sched(SchedEffect::WriteVcpuGuest {
                dom: 0,
                vcpu: v,
                addr,
                data,
            }) if *v == vcpu => Some((*addr, data.clone())),
            _ => None,
        })
        .collect()
}

fn time_area_of(r: &Rig, vcpu: u32) -> u64 {
    crate::sched::vcpu_sched(&r.state, (0, vcpu)).time_area
}

#[test]
fn time_area_refusals() {
    let mut r = Rig::new(2, 1);
    let op = VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA;
    assert_eq!(
        r.vcpu_op(0, op, 0, 0),
        -14,
        "an argument that cannot be read"
    );
    assert_eq!(r.vcpu_op(0, op, 0, 0xdead_0000), -14);
    // guest_handle_okay: the start must be below the canonical hole or above Xen's range.
    for bad in [
        HYPERVISOR_VIRT_START,
        HYPERVISOR_VIRT_END - 32,
        0x0000_8000_0000_0000,
        0xffff_7fff_ffff_ffe0,
    ] {
        assert_eq!(register_time_area(&mut r, 0, 0, bad).0, -14, "{bad:#x}");
    }
    // A vCPU that does not exist: -ENOENT before the argument is read.
    r.map(0x5000, &[0; 32]);
    for id in [2, 4096, u32::MAX] {
        assert_eq!(register_time_area(&mut r, 0, id, 0x5000).0, -2, "vCPU {id}");
        assert_eq!(r.vcpu_op(0, op, id, 0), -2, "vCPU {id}, bad argument");
    }
    assert_eq!((time_area_of(&r, 0), time_area_of(&r, 1)), (0, 0));
    // Xen checks the start only: an area above its range, or one that runs into the
    // hole, is accepted, and writes that cannot land are skipped silently.
    for odd in [HYPERVISOR_VIRT_END, 0x0000_7fff_ffff_fff0] {
        let (ret, out) = register_time_area(&mut r, 0, 0, odd);
        assert_eq!(ret, 0, "{odd:#x}");
        assert_eq!(time_area_of(&r, 0), odd);
        assert!(!out.iter().any(|e| matches!(e, Effect::WriteGuest { .. })));
        assert!(out.iter().any(|e| matches!(e, Effect::WriteMachine { .. })));
    }
    // The null handle unregisters.
    assert_eq!(register_time_area(&mut r, 0, 0, 0).0, 0);
    assert_eq!(time_area_of(&r, 0), 0);
}

#[test]
fn time_area_copies_every_update() {
    let mut r = Rig::new(2, 1);
    r.map(0x5000, &[0xff; 32]);
    // The rig drops the boot publication's writes: the replica has its version.
    let before = crate::sched::vcpu_sched(&r.state, (0, 0)).time_version;
    r.world.tsc = 5_000;
    let (ret, out) = register_time_area(&mut r, 0, 0, 0x5000);
    assert_eq!(ret, 0);
    assert_eq!(time_area_of(&r, 0), 0x5000);
    // Forced update: the vcpu_info copy first, then the area, the same bytes.
    let now = primary_time(&r, 0);
    assert_eq!(now.version, before + 2);
    assert_eq!(now.system_time, 5_000);
    let area_writes: Vec<Effect> = crate::time::time_area_writes(&now)
        .into_iter()
        .map(|data| Effect::WriteGuest { addr: 0x5000, data })
        .collect();
    let first = out
        .iter()
        .position(|e| *e == area_writes[0])
        .expect("area written");
    assert_eq!(out[first..first + 3], area_writes[..]);
    assert!(out[..first]
        .iter()
        .any(|e| matches!(e, Effect::WriteMachine { maddr, .. } if *maddr == SHARED_INFO + 32)));
    assert_eq!(area_time(&r, 0x5000), now);
    // Every later update is copied too, through vCPU 0's own page tables.
    for step in 1..4u64 {
        let out = block_until_timer(&mut r, 1_000 * step);
        let writes = vcpu_guest_writes(&out, 0);
        assert_eq!(writes.len(), 3, "step {step}");
        assert!(writes.iter().all(|(a, _)| *a == 0x5000));
        let p = primary_time(&r, 0);
        assert_eq!(area_time(&r, 0x5000), p, "step {step}");
        assert_eq!(p.version % 2, 0);
        assert_eq!(p.system_time, r.world.tsc);
    }
    // Unregistered: the area keeps what it had.
    let last = area_time(&r, 0x5000);
    assert_eq!(register_time_area(&mut r, 0, 0, 0).0, 0);
    let out = block_until_timer(&mut r, 1_000);
    assert!(vcpu_guest_writes(&out, 0).is_empty());
    assert_eq!(area_time(&r, 0x5000), last);
    assert!(primary_time(&r, 0).version > last.version);
}

#[test]
fn time_area_of_another_vcpu_outlives_its_start_and_stop() {
    let mut r = Rig::new(2, 2);
    r.map(0x6000, &[0; 32]);
    r.world.tsc = 7_000;
    // vCPU 1 is offline, not even initialised: the area is written through the caller's
    // tables, with the copy in vCPU 1's shared_info slot.
    let (ret, out) = register_time_area(&mut r, 0, 1, 0x6000);
    assert_eq!(ret, 0);
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::WriteGuest { addr: 0x6000, .. })));
    let p = primary_time(&r, 1);
    assert_eq!((p.version, p.system_time), (2, 7_000));
    assert_eq!(area_time(&r, 0x6000), p);
    assert_eq!(time_area_of(&r, 0), 0, "vCPU 0 has none");
    // VCPUOP_initialise keeps it; vCPU 1's first dispatch writes it through its own tables.
    r.map(0x8000, &context(0x1234));
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000), 0);
    r.world.tsc = 9_000;
    let (ret, out) = r.call(
        0,
        dom0_interface::xen::HYPERVISOR_VCPU_OP,
        [u64::from(VCPUOP_UP), 1, 0, 0, 0],
    );
    assert_eq!(ret, 0);
    assert_eq!(vcpu_guest_writes(&out, 1).len(), 3);
    assert_eq!(area_time(&r, 0x6000), primary_time(&r, 1));
    assert_eq!(area_time(&r, 0x6000).system_time, 9_000);
    // Down and up again: still registered.
    assert_eq!(r.vcpu_op(1, VCPUOP_DOWN, 1, 0), 0);
    r.world.tsc = 11_000;
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 1, 0), 0);
    assert_eq!(time_area_of(&r, 1), 0x6000);
    assert_eq!(area_time(&r, 0x6000).system_time, 11_000);
    assert_eq!(area_time(&r, 0x6000), primary_time(&r, 1));
}

#[test]
fn rolled_back_time_area_registration_leaves_the_replica_as_it_was() {
    let mut r = Rig::new(2, 1);
    r.map(0x5000, &[0; 32]);
    r.map(0x4000, &0x5000u64.to_le_bytes());
    lockstep::replica::forget(&mut r.state);
    let before = lockstep::replica::full_digest(&r.state);
    let version = crate::sched::vcpu_sched(&r.state, (0, 0)).time_version;
    let regs = crate::request::GuestRegs::for_hypercall(
        u64::from(dom0_interface::xen::HYPERVISOR_VCPU_OP),
        [
            u64::from(VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA),
            0,
            0x4000,
            0,
            0,
        ],
    );
    let out = r.run_rolled_back(crate::request::Request::hypercall(0, 0, regs));
    assert!(out.contains(&Effect::Return(0)));
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::WriteGuest { addr: 0x5000, .. })));
    assert_eq!(lockstep::replica::full_digest(&r.state), before);
    assert_eq!(time_area_of(&r, 0), 0);
    // Nothing was applied, and later updates do not write the area.
    assert_eq!(r.world.guest[&0x5000], 0);
    let out = block_until_timer(&mut r, 1_000);
    assert!(vcpu_guest_writes(&out, 0).is_empty());
    assert_eq!(
        primary_time(&r, 0).version,
        version + 2,
        "the rolled-back bump is gone"
    );
}

#[test]
fn time_area_of_a_vcpu_without_a_vcpu_info() {
    // vCPU 32 has no shared_info slot and registered no vcpu_info: Xen 4.17 updates its dummy
    // vcpu_info and still copies the record to the area.
    let mut r = Rig::new(33, 1);
    r.map(0x6000, &[0; 32]);
    r.world.tsc = 3_000;
    let (ret, out) = register_time_area(&mut r, 0, 32, 0x6000);
    assert_eq!(ret, 0);
    assert!(!out.iter().any(|e| matches!(e, Effect::WriteMachine { .. })));
    let a = area_time(&r, 0x6000);
    assert_eq!((a.version, a.system_time), (2, 3_000));
}
