//! vCPU operations, mirroring `xen/include/public/vcpu.h` (Xen 4.17): `VCPUOP_*` sub-ops of
//! `HYPERVISOR_vcpu_op`, runstate info, timers and vcpu_info / time-area registration.

use crate::guest_abi;

/// `VCPUOP_initialise`: arg is a `vcpu_guest_context` (PV).
pub const VCPUOP_INITIALISE: u32 = 0;
/// `VCPUOP_up`.
pub const VCPUOP_UP: u32 = 1;
/// `VCPUOP_down`.
pub const VCPUOP_DOWN: u32 = 2;
/// `VCPUOP_is_up`: returns 1 if up.
pub const VCPUOP_IS_UP: u32 = 3;
/// `VCPUOP_get_runstate_info`: arg is `vcpu_runstate_info`.
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// `VCPUOP_register_runstate_memory_area`.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `VCPUOP_set_periodic_timer`.
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// `VCPUOP_stop_periodic_timer`.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// `VCPUOP_set_singleshot_timer`.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info`.
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// `VCPUOP_send_nmi`.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// `VCPUOP_get_physid`.
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// `VCPUOP_register_vcpu_time_memory_area`.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while the guest copy is updated.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// `VCPU_SSHOTTMR_future`: fail with -ETIME if the timeout has passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `struct vcpu_runstate_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    /// System time (ns) the current state was entered.
    pub state_entry_time: u64,
    /// Time spent in each `RUNSTATE_*` (ns).
    pub time: [u64; 4],
}
guest_abi!(VcpuRunstateInfo {
    state,
    state_entry_time,
    time
});

/// `struct vcpu_register_runstate_memory_area` (the `addr` union as a u64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest virtual address of a `vcpu_runstate_info`.
    pub addr: u64,
}
guest_abi!(VcpuRegisterRunstateMemoryArea { addr });

/// `struct vcpu_register_time_memory_area` (the `addr` union as a u64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterTimeMemoryArea {
    /// Guest virtual address of a `vcpu_time_info`.
    pub addr: u64,
}
guest_abi!(VcpuRegisterTimeMemoryArea { addr });

/// `struct vcpu_set_periodic_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    /// Period in ns.
    pub period_ns: u64,
}
guest_abi!(VcpuSetPeriodicTimer { period_ns });

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time in ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}
guest_abi!(VcpuSetSingleshotTimer {
    timeout_abs_ns,
    flags
});

/// `struct vcpu_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame of the page to place vcpu_info in.
    pub mfn: u64,
    /// Offset within the page.
    pub offset: u32,
    /// Unused.
    pub rsvd: u32,
}
guest_abi!(VcpuRegisterVcpuInfo { mfn, offset, rsvd });

/// `struct vcpu_get_physid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuGetPhysid {
    /// Low 32 bits: x86 APIC id; high 32 bits: ACPI id.
    pub phys_id: u64,
}
guest_abi!(VcpuGetPhysid { phys_id });

impl VcpuGetPhysid {
    /// `xen_vcpu_physid_to_x86_apicid`.
    pub const fn apic_id(&self) -> u32 {
        self.phys_id as u32
    }
    /// `xen_vcpu_physid_to_x86_acpiid`.
    pub const fn acpi_id(&self) -> u32 {
        (self.phys_id >> 32) as u32
    }
}

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<VcpuRunstateInfo>() == 48);
const _: () = assert!(offset_of!(VcpuRunstateInfo, state_entry_time) == 8);
const _: () = assert!(offset_of!(VcpuRunstateInfo, time) == 16);
const _: () = assert!(size_of::<VcpuRegisterRunstateMemoryArea>() == 8);
const _: () = assert!(size_of::<VcpuRegisterTimeMemoryArea>() == 8);
const _: () = assert!(size_of::<VcpuSetPeriodicTimer>() == 8);
const _: () = assert!(size_of::<VcpuSetSingleshotTimer>() == 16);
const _: () = assert!(offset_of!(VcpuSetSingleshotTimer, flags) == 8);
const _: () = assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);
const _: () = assert!(offset_of!(VcpuRegisterVcpuInfo, offset) == 8);
const _: () = assert!(offset_of!(VcpuRegisterVcpuInfo, rsvd) == 12);
const _: () = assert!(size_of::<VcpuGetPhysid>() == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn runstate_known_bytes() {
        let r = VcpuRunstateInfo {
            state: RUNSTATE_BLOCKED,
            state_entry_time: XEN_RUNSTATE_UPDATE | 5,
            time: [1, 2, 3, 4],
        };
        let b = r.to_vec();
        assert_eq!(&b[..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[8..16], &[5, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(&b[40..48], &4u64.to_le_bytes());
        assert_eq!(VcpuRunstateInfo::read_from(&b), Ok(r));
    }

    #[test]
    fn timer_and_info_round_trip() {
        let t = VcpuSetSingleshotTimer {
            timeout_abs_ns: 123_456_789,
            flags: VCPU_SSHOTTMR_FUTURE,
        };
        let b = t.to_vec();
        assert_eq!(&b[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(VcpuSetSingleshotTimer::read_from(&b), Ok(t));
        let p = VcpuSetPeriodicTimer {
            period_ns: 10_000_000,
        };
        assert_eq!(VcpuSetPeriodicTimer::read_from(&p.to_vec()), Ok(p));
        let i = VcpuRegisterVcpuInfo {
            mfn: 0x1234,
            offset: 0x40,
            rsvd: 0,
        };
        assert_eq!(VcpuRegisterVcpuInfo::read_from(&i.to_vec()), Ok(i));
        let a = VcpuRegisterRunstateMemoryArea {
            addr: 0xffff_8000_1000_0000,
        };
        assert_eq!(
            VcpuRegisterRunstateMemoryArea::read_from(&a.to_vec()),
            Ok(a)
        );
        let id = VcpuGetPhysid {
            phys_id: (7 << 32) | 3,
        };
        assert_eq!((id.apic_id(), id.acpi_id()), (3, 7));
    }
}
