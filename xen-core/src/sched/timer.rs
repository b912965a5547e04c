//! vCPU timers and time publication: the single-shot timer (set_timer_op,
//! VCPUOP_set_singleshot_timer), the periodic timer (10 ms by default for PV vCPUs, as Xen),
//! poll timeouts, the leader CPU's hardware-timer deadline, VIRQ_TIMER delivery, and the
//! `vcpu_time_info` / wall-clock updates.

use super::runq::{rotate_if_expired, wake};
use super::state::{vcpu_info_maddr, DomTime, UNPLACED};
use super::{Sched, SchedEffect};
use crate::domain::VcpuKey;
use crate::effect::DomId;
use crate::time::{self, TimeBase};
use dom0_interface::xen::{VcpuTimeInfo, VIRQ_TIMER};

/// Default periodic timer period of a PV vCPU (Xen: "PV guests by default have a 100Hz
/// ticker").
pub const DEFAULT_PERIOD_NS: u64 = 10_000_000;
/// Smallest period VCPUOP_set_periodic_timer accepts (`MILLISECS(1)`).
pub const MIN_PERIOD_NS: u64 = 1_000_000;
/// Largest timer delta Xen accepts (`STIME_DELTA_MAX`, 2^62 - 1).
pub const STIME_DELTA_MAX: u64 = u64::MAX >> 2;

/// Delivers a timer event to `key`: VIRQ_TIMER, and a wake-up if it is blocked or polling
/// (a spurious wake-up, if its VIRQ is not bound, is allowed by the ABI).
pub fn fire_timer(s: &mut Sched<'_>, key: VcpuKey) {
    s.emit(SchedEffect::SendVirq {
        dom: key.0,
        vcpu: key.1,
        virq: VIRQ_TIMER,
    });
    if s.state.vcpus.get(&key).is_some_and(|v| v.blocked) {
        wake(s, key);
    }
}

/// Xen's `vcpu_periodic_timer_work` for the running `key`: an event if a period has passed
/// since the last one.
pub fn periodic_work(s: &mut Sched<'_>, key: VcpuKey) {
    let mut v = s.vcpu(key);
    if v.periodic_period == 0 {
        return;
    }
    if s.now >= v.periodic_last.saturating_add(v.periodic_period) {
        v.periodic_last = s.now;
        s.put(key, v);
        fire_timer(s, key);
    }
}

fn is_current(s: &Sched<'_>, key: VcpuKey) -> bool {
    let p = s.vcpu(key).pcpu;
    s.state
        .runqs
        .get(&p)
        .is_some_and(|q| q.current == Some(key))
}

/// Sets (`Some`) or stops (`None`) `key`'s single-shot timer; a deadline already passed
/// fires at once.
pub fn set_singleshot(s: &mut Sched<'_>, key: VcpuKey, deadline: Option<u64>) {
    let expired = deadline.is_some_and(|d| d <= s.now);
    let stored = if expired { None } else { deadline };
    s.state
        .vcpus
        .update(s.j, &key, |v| v.timer_deadline = stored);
    if expired {
        fire_timer(s, key);
    }
    let p = s.vcpu(key).pcpu;
    rearm(s, p);
}

/// Sets `key`'s periodic timer period (0 stops it); a running vCPU gets its periodic work at
/// once, as after Xen's forced reschedule.
pub fn set_periodic(s: &mut Sched<'_>, key: VcpuKey, period: u64) {
    let mut v = s.vcpu(key);
    v.periodic_period = period;
    s.put(key, v);
    if is_current(s, key) {
        periodic_work(s, key);
    }
    let p = s.vcpu(key).pcpu;
    rearm(s, p);
}

/// Leader CPU `pcpu`'s timer interrupt at `s.now`: expired single-shot timers fire, expired
/// poll timeouts wake, the running vCPU gets its periodic work, an expired slice rotates, an
/// idle CPU dispatches, and the hardware timer is re-armed.
pub fn tick(s: &mut Sched<'_>, pcpu: u32) {
    for key in placed_on(s, pcpu) {
        let due = s
            .state
            .vcpus
            .get(&key)
            .and_then(|v| v.timer_deadline)
            .is_some_and(|d| d <= s.now);
        if due {
            s.state.vcpus.update(s.j, &key, |v| v.timer_deadline = None);
            fire_timer(s, key);
        }
        if s.vcpu(key).poll_deadline.is_some_and(|d| d <= s.now) {
            wake(s, key);
        }
    }
    if let Some(cur) = s.state.runqs.get(&pcpu).and_then(|q| q.current) {
        periodic_work(s, cur);
    }
    rotate_if_expired(s, pcpu);
    rearm(s, pcpu);
}

/// The vCPUs placed on leader CPU `pcpu` (running, queued, blocked or offline), by key.
pub(super) fn placed_on(s: &Sched<'_>, pcpu: u32) -> alloc::vec::Vec<VcpuKey> {
    s.state
        .vsched
        .iter()
        .filter(|(_, v)| v.pcpu == pcpu)
        .map(|(k, _)| *k)
        .collect()
}

/// Arms `pcpu`'s hardware timer for its earliest deadline: a single-shot timer or poll
/// timeout of a vCPU placed there, the running vCPU's next periodic event, the end of the
/// slice if others wait.
pub fn rearm(s: &mut Sched<'_>, pcpu: u32) {
    if pcpu == UNPLACED {
        return;
    }
    let Some(q) = s.state.runqs.get(&pcpu).cloned() else {
        return;
    };
    let mut next: Option<u64> = None;
    let mut consider = |d: u64| next = Some(next.map_or(d, |n| n.min(d)));
    for (key, v) in s.state.vsched.iter().filter(|(_, v)| v.pcpu == pcpu) {
        if let Some(d) = s.state.vcpus.get(key).and_then(|x| x.timer_deadline) {
            consider(d);
        }
        if let Some(d) = v.poll_deadline {
            consider(d);
        }
        if q.current == Some(*key) && v.periodic_period != 0 {
            consider(v.periodic_last.saturating_add(v.periodic_period));
        }
    }
    if q.current.is_some() && !q.queue.is_empty() {
        consider(q.slice_end);
    }
    s.emit(SchedEffect::ArmTimer {
        pcpu,
        deadline: next,
    });
}

/// Xen's `__update_vcpu_system_time` up to the secondary copy, always forced (the record
/// comes from this transaction's TSC, so it always changed): publishes `key`'s
/// `vcpu_time_info` at its vcpu_info under a new version and returns it, if the time base is
/// configured and the vCPU has a vcpu_info or a time area (Xen 4.17 gives a vCPU beyond the
/// legacy 32 without a registered vcpu_info a dummy one, and still copies to its area). The
/// caller writes the time area (see [`publish_time`]).
pub fn update_time(s: &mut Sched<'_>, key: VcpuKey) -> Option<VcpuTimeInfo> {
    let base = *s.state.time.get();
    let tsc = s.tsc?;
    if !base.is_configured() {
        return None;
    }
    let maddr = vcpu_info_maddr(s.state, key);
    let mut v = s.vcpu(key);
    if maddr.is_none() && v.time_area == 0 {
        return None;
    }
    v.time_version = v.time_version.wrapping_add(2);
    let info = base.vcpu_time_info(v.time_version, tsc);
    s.put(key, v);
    if let Some(maddr) = maddr {
        s.out.extend(time::vcpu_time_effects(
            maddr + time::VCPU_INFO_TIME_OFFSET,
            &info,
        ));
    }
    Some(info)
}

/// Publishes `key`'s `vcpu_time_info` as Xen's context switch does for the vCPU it switches
/// to ([`update_time`]), and copies it to the vCPU's registered time area, if any, through
/// the vCPU's own page tables (`update_secondary_system_time`): guest writes that fail
/// silently, as Xen's `__copy_to_guest` there.
///
/// Xen writes through the page tables loaded at the time, so for a 64-bit PV vCPU in guest
/// user mode it keeps a copy that faulted in `pending_system_time` and writes it at the next
/// switch to kernel mode. DualVisor writes through the vCPU's kernel page tables in either
/// mode (as it writes the runstate area), so that copy is written at once: the guest kernel
/// finds the same bytes whenever it next runs.
pub fn publish_time(s: &mut Sched<'_>, key: VcpuKey) {
    let Some(info) = update_time(s, key) else {
        return;
    };
    // Borrowed, not cloned: this runs at every dispatch (a vCPU without stored state has none).
    let area = s.state.vsched.get(&key).map_or(0, |v| v.time_area);
    if area == 0 {
        return;
    }
    for data in time::time_area_writes(&info) {
        s.emit(SchedEffect::WriteVcpuGuest {
            dom: key.0,
            vcpu: key.1,
            addr: area,
            data,
        });
    }
}

/// Configures the host time base (at boot, before any domain runs).
pub fn configure_time(s: &mut Sched<'_>, base: TimeBase) {
    s.state.time.set(s.j, base);
}

/// Records `dom`'s shared_info machine address and publishes its wall clock there.
pub fn set_shared_info(s: &mut Sched<'_>, dom: DomId, maddr: u64) {
    let mut t = s
        .state
        .dom_time
        .get(&dom)
        .copied()
        .unwrap_or(DomTime::default());
    t.shared_info_maddr = maddr;
    let base = *s.state.time.get();
    if base.is_configured() {
        t.wc_version = t.wc_version.wrapping_add(2);
        s.out.extend(time::wallclock_effects(
            maddr,
            t.wc_version,
            base.wc_sec,
            base.wc_nsec,
        ));
    }
    s.state.dom_time.insert(s.j, dom, t);
}
