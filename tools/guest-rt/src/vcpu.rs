//! `vcpu_op` (`public/vcpu.h`): up/down, runstate, periodic and single-shot timers, and
//! `set_timer_op`.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, SET_TIMER_OP, VCPU_OP};

pub use dom0_interface::vcpu::{
    VcpuRunstateInfo as RunstateInfo, VCPUOP_DOWN, VCPUOP_GET_PHYSID, VCPUOP_GET_RUNSTATE_INFO,
    VCPUOP_INITIALISE, VCPUOP_IS_UP, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
    VCPUOP_REGISTER_VCPU_INFO, VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, VCPUOP_SEND_NMI,
    VCPUOP_SET_PERIODIC_TIMER, VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER,
    VCPUOP_STOP_SINGLESHOT_TIMER, VCPUOP_UP, VCPU_SSHOTTMR_FUTURE,
};
use dom0_interface::vcpu::{VcpuSetPeriodicTimer, VcpuSetSingleshotTimer};

/// Issues `vcpu_op(cmd, vcpu, arg)` on a plain-old-data argument (or none).
fn op<T>(cmd: u32, vcpu: u32, arg: Option<&mut T>) -> XenResult {
    let ptr = arg.map_or(0, |a| a as *mut T as u64);
    // SAFETY: every caller passes the exact `struct vcpu_*` for `cmd` (or null when the
    // sub-op takes none), which Xen reads and writes within its size.
    unsafe { op_at(cmd, vcpu, ptr) }
}

/// `vcpu_op(cmd, vcpu, arg)` with the argument at address `arg`.
///
/// # Safety
/// `arg` must hold `cmd`'s argument structure (or be 0 / a [`hypercall::BadPtr`] address),
/// and whatever Xen does with the memory it names (a vCPU context, a runstate area it keeps
/// writing, a vcpu_info frame) must not break a live Rust reference.
pub(crate) unsafe fn op_at(cmd: u32, vcpu: u32, arg: u64) -> XenResult {
    // SAFETY: the caller vouches for `arg` and what the sub-op does with it.
    unsafe { hypercall::call(VCPU_OP, [cmd.into(), u64::from(vcpu), arg, 0, 0]) }
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
    let mut p = VcpuSetPeriodicTimer { period_ns };
    op(VCPUOP_SET_PERIODIC_TIMER, vcpu, Some(&mut p))
}

/// `VCPUOP_stop_periodic_timer`.
pub fn stop_periodic_timer(vcpu: u32) -> XenResult {
    op::<()>(VCPUOP_STOP_PERIODIC_TIMER, vcpu, None)
}

/// `VCPUOP_set_singleshot_timer` at absolute system time `timeout_abs_ns`.
pub fn set_singleshot_timer(vcpu: u32, timeout_abs_ns: u64, flags: u32) -> XenResult {
    let mut s = VcpuSetSingleshotTimer {
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
pub fn op_with_bad_ptr(cmd: u32, vcpu: u32, ptr: hypercall::BadPtr) -> XenResult {
    // SAFETY: the only pointer argument is a `BadPtr`, which Xen cannot access.
    unsafe { op_at(cmd, vcpu, ptr.addr()) }
}

/// `set_timer_op`: a single-shot timer at absolute system time `deadline_ns` (0 cancels).
pub fn set_timer_op(deadline_ns: u64) -> XenResult {
    // SAFETY: the argument is a scalar; no memory is accessed.
    unsafe { hypercall::call(SET_TIMER_OP, [deadline_ns, 0, 0, 0, 0]) }
}
