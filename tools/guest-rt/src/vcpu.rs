//! `vcpu_op` (`public/vcpu.h`): up/down, runstate, periodic and single-shot timers, and
//! `set_timer_op`.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, SET_TIMER_OP, VCPU_OP};

/// `VCPUOP_initialise`.
pub const VCPUOP_INITIALISE: u64 = 0;
/// `VCPUOP_up`.
pub const VCPUOP_UP: u64 = 1;
/// `VCPUOP_down`.
pub const VCPUOP_DOWN: u64 = 2;
/// `VCPUOP_is_up`.
pub const VCPUOP_IS_UP: u64 = 3;
/// `VCPUOP_get_runstate_info`.
pub const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
/// `VCPUOP_register_runstate_memory_area`.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
/// `VCPUOP_set_periodic_timer`.
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
/// `VCPUOP_stop_periodic_timer`.
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
/// `VCPUOP_set_singleshot_timer`.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
/// `VCPUOP_stop_singleshot_timer`.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
/// `VCPUOP_register_vcpu_info`.
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
/// `VCPUOP_send_nmi`.
pub const VCPUOP_SEND_NMI: u64 = 11;
/// `VCPUOP_get_physid`.
pub const VCPUOP_GET_PHYSID: u64 = 12;
/// `VCPUOP_register_vcpu_time_memory_area`.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;

/// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the deadline has already passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

/// `struct vcpu_runstate_info` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunstateInfo {
    /// `RUNSTATE_running` 0, `runnable` 1, `blocked` 2, `offline` 3.
    pub state: i32,
    /// System time when `state` was entered.
    pub state_entry_time: u64,
    /// Time spent in each state, ns.
    pub time: [u64; 4],
}
const _: () = assert!(core::mem::size_of::<RunstateInfo>() == 48);

/// Issues `vcpu_op(cmd, vcpu, arg)` on a plain-old-data argument (or none).
fn op<T>(cmd: u64, vcpu: u32, arg: Option<&mut T>) -> XenResult {
    let ptr = arg.map_or(0, |a| a as *mut T as u64);
    // SAFETY: every caller passes the exact `struct vcpu_*` for `cmd` (or null when the
    // sub-op takes none), which Xen reads and writes within its size.
    unsafe { hypercall::call(VCPU_OP, [cmd, u64::from(vcpu), ptr, 0, 0]) }
}

/// `VCPUOP_is_up`: `Ok(1)` if `vcpu` is up, `Ok(0)` if down.
pub fn is_up(vcpu: u32) -> XenResult {
    op::<()>(VCPUOP_IS_UP, vcpu, None)
}

/// `VCPUOP_up`: starts an initialised `vcpu`.
pub fn up(vcpu: u32) -> XenResult {
    op::<()>(VCPUOP_UP, vcpu, None)
}

/// `VCPUOP_down`: stops `vcpu`.
pub fn down(vcpu: u32) -> XenResult {
    op::<()>(VCPUOP_DOWN, vcpu, None)
}

/// `VCPUOP_get_runstate_info`.
pub fn runstate_info(vcpu: u32) -> Result<RunstateInfo, Errno> {
    let mut info = RunstateInfo::default();
    op(VCPUOP_GET_RUNSTATE_INFO, vcpu, Some(&mut info))?;
    Ok(info)
}

/// `VCPUOP_set_periodic_timer` with a period in ns.
pub fn set_periodic_timer(vcpu: u32, period_ns: u64) -> XenResult {
    let mut p = period_ns;
    op(VCPUOP_SET_PERIODIC_TIMER, vcpu, Some(&mut p))
}

/// `VCPUOP_stop_periodic_timer`.
pub fn stop_periodic_timer(vcpu: u32) -> XenResult {
    op::<()>(VCPUOP_STOP_PERIODIC_TIMER, vcpu, None)
}

/// `VCPUOP_set_singleshot_timer` at absolute system time `timeout_abs_ns`.
pub fn set_singleshot_timer(vcpu: u32, timeout_abs_ns: u64, flags: u32) -> XenResult {
    #[repr(C)]
    struct S {
        timeout_abs_ns: u64,
        flags: u32,
    }
    let mut s = S {
        timeout_abs_ns,
        flags,
    };
    op(VCPUOP_SET_SINGLESHOT_TIMER, vcpu, Some(&mut s))
}

/// `VCPUOP_stop_singleshot_timer`.
pub fn stop_singleshot_timer(vcpu: u32) -> XenResult {
    op::<()>(VCPUOP_STOP_SINGLESHOT_TIMER, vcpu, None)
}

/// `vcpu_op(cmd, vcpu, ptr)` with an unreachable pointer or an unknown command.
pub fn op_with_bad_ptr(cmd: u64, vcpu: u32, ptr: hypercall::BadPtr) -> XenResult {
    // SAFETY: the only pointer argument is a `BadPtr`, which Xen cannot access.
    unsafe { hypercall::call(VCPU_OP, [cmd, u64::from(vcpu), ptr.addr(), 0, 0]) }
}

/// `set_timer_op`: a single-shot timer at absolute system time `deadline_ns` (0 cancels).
pub fn set_timer_op(deadline_ns: u64) -> XenResult {
    // SAFETY: the argument is a scalar; no memory is accessed.
    unsafe { hypercall::call(SET_TIMER_OP, [deadline_ns, 0, 0, 0, 0]) }
}
