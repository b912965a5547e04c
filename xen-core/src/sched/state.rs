//! The scheduler's replica state: per-vCPU scheduling and timer state, per-domain time state
//! and per-leader-CPU run queues (values inside `HvState`'s journaled containers).

use crate::domain::VcpuKey;
use crate::effect::DomId;
use crate::hv::HvState;
use alloc::vec::Vec;
use dom0_interface::vcpu::{RUNSTATE_OFFLINE, RUNSTATE_RUNNING};
use lockstep::impl_value;

/// `VcpuSched::pcpu` of a vCPU not yet placed on a leader CPU.
pub const UNPLACED: u32 = u32::MAX;

/// A vCPU's runstate accounting (`struct vcpu_runstate_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runstate {
    /// `RUNSTATE_*`.
    pub state: i32,
    /// System time the state was entered.
    pub entry: u64,
    /// ns spent in each state before `entry`.
    pub time: [u64; 4],
}
impl_value!(Runstate { state, entry, time });

impl Runstate {
    /// The accounting as of `now` (time in the current state added), as Xen's
    /// `vcpu_runstate_get` reports it.
    pub fn at(&self, now: u64) -> Runstate {
        let mut r = *self;
        if let Some(t) = usize::try_from(r.state)
            .ok()
            .and_then(|i| r.time.get_mut(i))
        {
            *t = t.saturating_add(now.saturating_sub(self.entry));
        }
        r.entry = self.entry;
        r
    }

    /// Enters `state` at `now`, charging the time since `entry` to the old state.
    pub fn change(&mut self, state: i32, now: u64) {
        if let Some(t) = usize::try_from(self.state)
            .ok()
            .and_then(|i| self.time.get_mut(i))
        {
            *t = t.saturating_add(now.saturating_sub(self.entry));
        }
        self.state = state;
        self.entry = self.entry.max(now);
    }

    /// The guest ABI form.
    pub fn to_abi(&self) -> dom0_interface::vcpu::VcpuRunstateInfo {
        dom0_interface::vcpu::VcpuRunstateInfo {
            state: self.state,
            state_entry_time: self.entry,
            time: self.time,
        }
    }
}

/// Scheduling and timer state of one vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuSched {
    /// Has a context (the boot vCPU, or after VCPUOP_initialise).
    pub initialised: bool,
    /// Leader CPU it runs on ([`UNPLACED`] until first queued).
    pub pcpu: u32,
    /// Runstate accounting.
    pub runstate: Runstate,
    /// Periodic timer period (ns; 0: off). PV vCPUs start with 10 ms, as in Xen.
    pub periodic_period: u64,
    /// System time of the last periodic event.
    pub periodic_last: u64,
    /// Wake-up deadline of a SCHEDOP_poll with a timeout.
    pub poll_deadline: Option<u64>,
    /// Machine address of a vcpu_info registered with VCPUOP_register_vcpu_info.
    pub vcpu_info_maddr: Option<u64>,
    /// Guest address of the registered runstate area (0: none).
    pub runstate_area: u64,
    /// Guest virtual address of the secondary `vcpu_time_info` registered with
    /// VCPUOP_register_vcpu_time_memory_area (Xen's `time_info_guest`; 0: none).
    pub time_area: u64,
    /// Last published `vcpu_time_info.version` (even).
    pub time_version: u32,
}
impl_value!(VcpuSched {
    initialised,
    pcpu,
    runstate,
    periodic_period,
    periodic_last,
    poll_deadline,
    vcpu_info_maddr,
    runstate_area,
    time_area,
    time_version
});

/// Time state of one domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomTime {
    /// Machine address of its shared_info page (0: not known).
    pub shared_info_maddr: u64,
    /// Last published `wc_version` (even).
    pub wc_version: u32,
}
impl_value!(DomTime {
    shared_info_maddr,
    wc_version
});

/// The run queue of one leader CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQueue {
    /// The vCPU running there.
    pub current: Option<(DomId, u32)>,
    /// Runnable vCPUs waiting, in order.
    pub queue: Vec<(DomId, u32)>,
    /// When the current vCPU's slice ends.
    pub slice_end: u64,
}
impl_value!(RunQueue {
    current,
    queue,
    slice_end
});

/// The stored scheduling state of `key`, or the initial one: the online boot vCPU is
/// initialised and running, the others offline; the default 10 ms periodic timer is on.
pub fn vcpu_sched(state: &HvState, key: VcpuKey) -> VcpuSched {
    if let Some(v) = state.vsched.get(&key) {
        return v.clone();
    }
    let online = state.vcpus.get(&key).is_some_and(|v| v.online);
    VcpuSched {
        initialised: online,
        pcpu: UNPLACED,
        runstate: Runstate {
            state: if online {
                RUNSTATE_RUNNING
            } else {
                RUNSTATE_OFFLINE
            },
            ..Runstate::default()
        },
        periodic_period: super::DEFAULT_PERIOD_NS,
        periodic_last: 0,
        poll_deadline: None,
        vcpu_info_maddr: None,
        runstate_area: 0,
        time_area: 0,
        time_version: 0,
    }
}

/// Machine address of `key`'s vcpu_info: the registered one, else its slot in the domain's
/// shared_info (vCPUs 0..32), else `None`.
pub fn vcpu_info_maddr(state: &HvState, key: VcpuKey) -> Option<u64> {
    // The stored state, borrowed (the initial one registers none): the exit path asks this
    // twice per guest exit, and a clone of the whole `VcpuSched` cost ~250 TCG cycles each.
    if let Some(m) = state.vsched.get(&key).and_then(|v| v.vcpu_info_maddr) {
        return Some(m);
    }
    let si = state.dom_time.get(&key.0)?.shared_info_maddr;
    let legacy = dom0_interface::arch_x86::XEN_LEGACY_MAX_VCPUS as u32;
    (si != 0 && key.1 < legacy).then(|| si + u64::from(key.1) * 64)
}
