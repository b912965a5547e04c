//! Run queues: placing vCPUs on leader CPUs, dispatch, wake-up, block, yield and off-lining,
//! with the runstate changes each implies.

use super::state::{RunQueue, UNPLACED};
use super::timer::{periodic_work, publish_time, rearm};
use super::{Sched, SchedEffect, SLICE_NS};
use crate::domain::VcpuKey;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::vcpu::{
    RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING,
};

/// Registers leader CPU `pcpu` with an empty run queue (at boot).
pub fn add_pcpu(s: &mut Sched<'_>, pcpu: u32) {
    if !s.state.runqs.contains_key(&pcpu) {
        s.state.runqs.insert(s.j, pcpu, RunQueue::default());
    }
}

fn runq(s: &Sched<'_>, pcpu: u32) -> Option<RunQueue> {
    s.state.runqs.get(&pcpu).cloned()
}

fn put_runq(s: &mut Sched<'_>, pcpu: u32, q: RunQueue) {
    if s.state.runqs.get(&pcpu) != Some(&q) {
        s.state.runqs.insert(s.j, pcpu, q);
    }
}

/// Where a vCPU not placed yet goes: the least loaded leader CPU, for every domain (dom0's
/// are placed at boot by the embedder, spread over the lockstep pairs' leaders). A domU's
/// vCPUs thus spread over the leaders too: pausing, shutting down or destroying a domain
/// may take a vCPU off another CPU that runs it right now, and the embedder lets nothing
/// that needs it gone (its frames released, the pause reported) happen before that CPU
/// acknowledged it left the vCPU (synchronous descheduling, Xen's `vcpu_sleep_sync`).
fn placement(s: &Sched<'_>, _key: VcpuKey) -> Option<u32> {
    least_loaded(s)
}

/// The least loaded leader CPU (running + queued), lowest id on ties.
pub(super) fn least_loaded(s: &Sched<'_>) -> Option<u32> {
    s.state
        .runqs
        .iter()
        .min_by_key(|(id, q)| (q.queue.len() + usize::from(q.current.is_some()), **id))
        .map(|(id, _)| *id)
}

/// Changes `key`'s runstate at `s.now` and refreshes its runstate area.
pub(super) fn set_runstate(s: &mut Sched<'_>, key: VcpuKey, state: i32) {
    let mut v = s.vcpu(key);
    if v.runstate.state == state {
        return;
    }
    v.runstate.change(state, s.now);
    let area = v.runstate_area;
    let info = v.runstate.to_abi();
    s.put(key, v);
    if area != 0 {
        s.emit(SchedEffect::WriteVcpuGuest {
            dom: key.0,
            vcpu: key.1,
            addr: area,
            data: info.to_vec(),
        });
    }
}

pub(super) fn runnable(s: &Sched<'_>, key: VcpuKey) -> bool {
    s.state
        .vcpus
        .get(&key)
        .is_some_and(|v| v.online && !v.blocked)
        && s.state
            .domains
            .get(&key.0)
            .is_some_and(|d| d.shutdown.is_none() && !d.flags.paused && !d.flags.dying)
}

/// Makes `pcpu` run the head of its queue if nothing (runnable) runs there now.
fn dispatch(s: &mut Sched<'_>, pcpu: u32) {
    let Some(mut q) = runq(s, pcpu) else {
        return;
    };
    if let Some(cur) = q.current {
        if runnable(s, cur) {
            return;
        }
    }
    let prev = q.current.take();
    q.queue.retain(|k| Some(*k) != prev);
    let mut next = None;
    while !q.queue.is_empty() {
        let k = q.queue.remove(0);
        if runnable(s, k) {
            next = Some(k);
            break;
        }
    }
    q.current = next;
    q.slice_end = s.now.saturating_add(SLICE_NS);
    put_runq(s, pcpu, q);
    if prev != next {
        s.emit(SchedEffect::RunVcpu { pcpu, vcpu: next });
    }
    if let Some(k) = next {
        set_runstate(s, k, RUNSTATE_RUNNING);
        publish_time(s, k);
        periodic_work(s, k);
    }
    rearm(s, pcpu);
}

/// Dispatches `pcpu` if it is idle (e.g. at boot, once vCPUs were woken).
pub fn dispatch_idle(s: &mut Sched<'_>, pcpu: u32) {
    if runq(s, pcpu).is_some_and(|q| q.current.is_none()) {
        dispatch(s, pcpu);
    }
}

/// Wakes `key`: clears its blocked state; if it is online and not already running or queued
/// it joins the back of its CPU's queue (runnable), and an idle CPU dispatches it.
pub fn wake(s: &mut Sched<'_>, key: VcpuKey) {
    let was_blocked = s.state.vcpus.get(&key).is_some_and(|v| v.blocked);
    if was_blocked {
        s.state.vcpus.update(s.j, &key, |v| v.blocked = false);
    }
    let mut v = s.vcpu(key);
    if v.poll_deadline.is_some() {
        v.poll_deadline = None;
        s.put(key, v.clone());
    }
    if !runnable(s, key) || !s.active() {
        return;
    }
    if v.pcpu == UNPLACED || !s.state.runqs.contains_key(&v.pcpu) {
        let Some(p) = placement(s, key) else {
            return;
        };
        v.pcpu = p;
        s.put(key, v.clone());
    }
    let pcpu = v.pcpu;
    let Some(mut q) = runq(s, pcpu) else {
        return;
    };
    if q.current == Some(key) {
        set_runstate(s, key, RUNSTATE_RUNNING);
        return;
    }
    if !q.queue.contains(&key) {
        q.queue.push(key);
        put_runq(s, pcpu, q.clone());
    }
    set_runstate(s, key, RUNSTATE_RUNNABLE);
    if q.current.is_none() {
        dispatch(s, pcpu);
    } else {
        rearm(s, pcpu);
    }
}

/// Takes `key` off its CPU (queue or current), entering `runstate`; the CPU dispatches.
fn deschedule(s: &mut Sched<'_>, key: VcpuKey, runstate: i32) {
    set_runstate(s, key, runstate);
    let pcpu = s.vcpu(key).pcpu;
    let Some(mut q) = runq(s, pcpu) else {
        return;
    };
    q.queue.retain(|k| *k != key);
    let was_current = q.current == Some(key);
    put_runq(s, pcpu, q);
    if was_current {
        dispatch(s, pcpu);
    } else {
        rearm(s, pcpu);
    }
}

/// Takes `key` off its CPU because its domain is paused or shut down (`vcpu_pause`): it
/// stays online and runs again on [`wake`] once its domain may run.
pub fn pause_off(s: &mut Sched<'_>, key: VcpuKey) {
    deschedule(s, key, RUNSTATE_OFFLINE);
}

/// Blocks `key` (SCHEDOP_block after its pending check, or SCHEDOP_poll with an optional
/// absolute `deadline`): it leaves its CPU until [`wake`].
pub fn block(s: &mut Sched<'_>, key: VcpuKey, deadline: Option<u64>) {
    s.state.vcpus.update(s.j, &key, |v| v.blocked = true);
    let mut v = s.vcpu(key);
    v.poll_deadline = deadline;
    s.put(key, v);
    deschedule(s, key, RUNSTATE_BLOCKED);
}

/// Takes `key` offline (VCPUOP_down): it stops running until [`online_and_wake`].
pub fn offline(s: &mut Sched<'_>, key: VcpuKey) {
    s.state.vcpus.update(s.j, &key, |v| v.online = false);
    deschedule(s, key, RUNSTATE_OFFLINE);
}

/// Brings `key` online (VCPUOP_up, a VGCF_online context) and wakes it.
pub fn online_and_wake(s: &mut Sched<'_>, key: VcpuKey) {
    s.state.vcpus.update(s.j, &key, |v| v.online = true);
    wake(s, key);
}

/// SCHEDOP_yield: `key` goes to the back of its CPU's queue if another vCPU waits there.
/// Returns whether anything changed.
pub fn yield_now(s: &mut Sched<'_>, key: VcpuKey) -> bool {
    let pcpu = s.vcpu(key).pcpu;
    let Some(mut q) = runq(s, pcpu) else {
        return false;
    };
    if q.current != Some(key) || q.queue.is_empty() {
        return false;
    }
    q.current = None;
    q.queue.push(key);
    put_runq(s, pcpu, q);
    set_runstate(s, key, RUNSTATE_RUNNABLE);
    dispatch(s, pcpu);
    true
}

/// Slice expiry on `pcpu` at `s.now`: the current vCPU goes to the back if others wait.
pub(super) fn rotate_if_expired(s: &mut Sched<'_>, pcpu: u32) {
    let Some(q) = runq(s, pcpu) else {
        return;
    };
    match q.current {
        Some(cur) if q.slice_end <= s.now && !q.queue.is_empty() => {
            yield_now(s, cur);
        }
        Some(_) => {}
        None => dispatch(s, pcpu),
    }
}
