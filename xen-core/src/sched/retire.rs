//! Retiring a leader CPU: its leader core was escalated as the suspect and parked for good
//! (several lockstep pairs), and every vCPU placed on it moves to the other leader CPUs.

use super::runq::{least_loaded, runnable, wake};
use super::timer::{placed_on, rearm};
use super::{Sched, SchedEffect};
use crate::domain::VcpuKey;
use alloc::vec::Vec;

/// Why a leader CPU was not retired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetireError {
    /// The CPU has no run queue (not a leader CPU, or retired already).
    NotALeader,
    /// It is the last leader CPU: nothing could run the guests.
    LastLeader,
}

impl core::fmt::Display for RetireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RetireError::NotALeader => "it runs no vCPUs (not a leader CPU, or retired already)",
            RetireError::LastLeader => "it is the last leader CPU",
        })
    }
}

/// Leader CPU `pcpu` leaves service for good: its run queue goes (it idles: `RunVcpu` none,
/// its timer disarmed) and every vCPU placed there, in queue order (the running one first,
/// then the waiting ones, then the blocked or offline ones by key) moves to the least loaded
/// of the other leader CPUs, keeping its state: a runnable one joins that CPU's queue (an
/// idle CPU dispatches it), a blocked or offline one waits there with its timers, which
/// that CPU now arms. Returns the moves `(vCPU, new CPU)`; changes nothing on an error.
pub fn retire_pcpu(s: &mut Sched<'_>, pcpu: u32) -> Result<Vec<(VcpuKey, u32)>, RetireError> {
    if !s.state.runqs.contains_key(&pcpu) {
        return Err(RetireError::NotALeader);
    }
    if s.state.runqs.len() < 2 {
        return Err(RetireError::LastLeader);
    }
    let Some(q) = s.state.runqs.remove(s.j, &pcpu) else {
        return Err(RetireError::NotALeader);
    };
    s.emit(SchedEffect::RunVcpu { pcpu, vcpu: None });
    s.emit(SchedEffect::ArmTimer {
        pcpu,
        deadline: None,
    });
    let mut order: Vec<VcpuKey> = q.current.into_iter().chain(q.queue).collect();
    for k in placed_on(s, pcpu) {
        if !order.contains(&k) {
            order.push(k);
        }
    }
    let mut moves = Vec::with_capacity(order.len());
    let mut targets: Vec<u32> = Vec::new();
    for key in order {
        let Some(to) = least_loaded(s) else {
            break;
        };
        let mut v = s.vcpu(key);
        v.pcpu = to;
        s.put(key, v);
        if runnable(s, key) {
            wake(s, key);
        }
        moves.push((key, to));
        if !targets.contains(&to) {
            targets.push(to);
        }
    }
    for to in targets {
        rearm(s, to);
    }
    Ok(moves)
}
