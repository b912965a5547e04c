//! The `timer` guest's checks of VCPUOP_register_vcpu_time_memory_area on vCPU 0 (vCPU 1's
//! are with its other checks): the area Xen 4.17 keeps as `time_info_guest` gets a forced copy
//! of the vcpu_info time at once and a copy of every later update; the null handle
//! unregisters it; an unmapped address is taken (its copies fail silently); Xen's errnos.

use super::{fires, FIRE_WAIT, MS};
use guest_rt::hypercall::BadPtr;
use guest_rt::shared_info::SharedInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{time_area, vcpu, Errno};

/// How long each timer wake-up of the time-area checks sleeps.
const WAKE_STEP: u64 = 100 * MS;
/// At most this many wake-ups wait for the time records to change: Xen 4.17 rewrites a
/// vCPU's time at a switch to it only when its CPU's calibration stamp changed, once a second.
const MAX_WAKES: u32 = 50;
/// What the time area is filled with once unregistered (Xen never writes an odd version).
const MARK: u64 = 0x5a5a_5a5a_5a5a_5a5b;

/// Sleeps on a single-shot timer `WAKE_STEP` ahead and wakes up (polling `port`) until
/// `done` holds, at most `MAX_WAKES` times; whether it came to hold.
fn wake_until(shared: &SharedInfo, port: u32, done: impl Fn() -> bool) -> bool {
    for _ in 0..MAX_WAKES {
        fires(shared, port, FIRE_WAIT, |t| {
            let _ = vcpu::set_timer_op(t + WAKE_STEP);
        });
        if done() {
            return true;
        }
    }
    false
}

/// Whether time area `slot` holds exactly vCPU `vcpu`'s time in shared_info: compared between
/// two equal reads of shared_info, since the hypervisor updates both copies together while the
/// vCPU is not running (retried if an update came in between).
fn area_matches_shared(shared: &SharedInfo, vcpu: u32, slot: usize) -> bool {
    for _ in 0..100 {
        let s1 = shared.vcpu_time(vcpu);
        let a = time_area::read(slot);
        if shared.vcpu_time(vcpu) == s1 {
            return a.is_some() && a == s1;
        }
    }
    false
}

/// The first vCPU id that does not exist (VCPUOP_is_up answers -ENOENT).
fn vcpu_count() -> u32 {
    (0..4096)
        .find(|&i| vcpu::is_up(i) == Err(Errno::ENOENT))
        .unwrap_or(4096)
}

/// VCPUOP_register_vcpu_time_memory_area on vCPU 0 (Xen 4.17's `time_info_guest`): the area
/// gets a forced copy of the vcpu_info time at once and a copy of every later update; the
/// null handle unregisters it; Xen's errnos.
pub fn vcpu0(shared: &SharedInfo, port: u32) {
    let before = shared.vcpu_time(0).unwrap_or_default();
    check_eq(
        "register_vcpu_time_memory_area(0, a static area)",
        time_area::register(0, 0),
        Ok(0),
    );
    let a = time_area::read(0).unwrap_or_default();
    info(format_args!(
        "time area(0): version {} tsc {} system {} mul {:#x} shift {} flags {:#x}",
        a.version, a.tsc_timestamp, a.system_time, a.tsc_to_system_mul, a.tsc_shift, a.flags
    ));
    check(
        "  ... written at once: even version > 0",
        a.version > 0 && a.version.is_multiple_of(2),
    );
    let s = shared.vcpu_time(0).unwrap_or_default();
    check_eq(
        "  ... tsc_to_system_mul as shared_info's",
        a.tsc_to_system_mul,
        s.tsc_to_system_mul,
    );
    check_eq("  ... tsc_shift as shared_info's", a.tsc_shift, s.tsc_shift);
    check_eq("  ... flags as shared_info's", a.flags, s.flags);
    check(
        "  ... system_time no earlier than shared_info's before registering",
        a.system_time >= before.system_time,
    );
    check(
        "  ... the same record as vcpu_info's time",
        area_matches_shared(shared, 0, 0),
    );
    let registered = a.system_time;
    check(
        "  ... system_time advances at a timer wake-up",
        wake_until(shared, port, || {
            time_area::read(0).is_some_and(|t| t.system_time > registered)
        }),
    );
    check(
        "  ... still the same record as vcpu_info's time",
        area_matches_shared(shared, 0, 0),
    );

    check_eq(
        "register_vcpu_time_memory_area(0, NULL handle) unregisters",
        time_area::unregister(0),
        Ok(0),
    );
    time_area::fill(0, MARK);
    let version = shared.vcpu_time(0).map_or(0, |t| t.version);
    check(
        "  ... vcpu_info's time is updated again",
        wake_until(shared, port, || {
            shared.vcpu_time(0).is_some_and(|t| t.version != version)
        }),
    );
    check_eq(
        "  ... and the area is left alone",
        time_area::raw(0),
        Some([MARK; 4]),
    );

    check_eq(
        "register_vcpu_time_memory_area with a NULL argument -> -EFAULT",
        vcpu::op_with_bad_ptr(vcpu::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, 0, BadPtr::NULL),
        Err(Errno::EFAULT),
    );
    check_eq(
        "register_vcpu_time_memory_area at Xen's range -> -EFAULT",
        time_area::register_at(0, BadPtr::HYPERVISOR),
        Err(Errno::EFAULT),
    );
    check_eq(
        "register_vcpu_time_memory_area at a non-canonical address -> -EFAULT",
        time_area::register_at(0, BadPtr::NON_CANONICAL),
        Err(Errno::EFAULT),
    );
    // Xen checks the address range only: an unmapped guest address is taken, and its copies
    // fail silently.
    check_eq(
        "register_vcpu_time_memory_area at the unmapped page 0 (0x800) is accepted",
        BadPtr::new(0x800).map_or(Err(Errno::EINVAL), |p| time_area::register_at(0, p)),
        Ok(0),
    );
    let version = shared.vcpu_time(0).map_or(0, |t| t.version);
    check(
        "  ... vcpu_info's time is still updated (the area's copy fails silently)",
        wake_until(shared, port, || {
            shared.vcpu_time(0).is_some_and(|t| t.version != version)
        }),
    );
    check_eq("  ... unregistered again", time_area::unregister(0), Ok(0));
    let n = vcpu_count();
    info(format_args!("{n} vCPUs"));
    check_eq(
        "register_vcpu_time_memory_area(first vCPU id past the last) -> -ENOENT",
        time_area::register(n, 3),
        Err(Errno::ENOENT),
    );
    check_eq(
        "register_vcpu_time_memory_area(4096) -> -ENOENT",
        time_area::register(4096, 3),
        Err(Errno::ENOENT),
    );
}
