//! Scheduler operations, mirroring `xen/include/public/sched.h` (Xen 4.17):
//! `SCHEDOP_*` sub-ops of `HYPERVISOR_sched_op`, their structs and `SHUTDOWN_*` reasons.

use crate::guest_abi;
use crate::xen::DomId;

/// `SCHEDOP_yield`: voluntarily yield the CPU.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block`: block until an event arrives.
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`: arg is `sched_shutdown`.
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`: arg is `sched_poll`.
pub const SCHEDOP_POLL: u32 = 3;
/// `SCHEDOP_remote_shutdown`: arg is `sched_remote_shutdown`.
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code`: record a shutdown code without shutting down.
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// `SCHEDOP_watchdog`: arg is `sched_watchdog`.
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// `SCHEDOP_pin_override`: arg is `sched_pin_override`.
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// `SHUTDOWN_poweroff`: exited normally.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset`.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// `SHUTDOWN_MAX`: largest valid reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// Xen's name for a shutdown reason, if valid.
pub const fn shutdown_reason_name(reason: u32) -> Option<&'static str> {
    Some(match reason {
        SHUTDOWN_POWEROFF => "poweroff",
        SHUTDOWN_REBOOT => "reboot",
        SHUTDOWN_SUSPEND => "suspend",
        SHUTDOWN_CRASH => "crash",
        SHUTDOWN_WATCHDOG => "watchdog",
        SHUTDOWN_SOFT_RESET => "soft_reset",
        _ => return None,
    })
}

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}
guest_abi!(SchedShutdown { reason });

/// `struct sched_poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest handle of an `evtchn_port_t` array.
    pub ports: u64,
    /// Entries in `ports`.
    pub nr_ports: u32,
    /// Absolute system time (ns) to wake at; 0 for none.
    pub timeout: u64,
}
guest_abi!(SchedPoll {
    ports,
    nr_ports,
    timeout
});

/// `struct sched_remote_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedRemoteShutdown {
    /// Remote domain.
    pub domain_id: DomId,
    /// `SHUTDOWN_*`.
    pub reason: u32,
}
guest_abi!(SchedRemoteShutdown { domain_id, reason });

/// `struct sched_watchdog`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedWatchdog {
    /// Watchdog id (0 to allocate one).
    pub id: u32,
    /// Timeout in seconds (0 to destroy).
    pub timeout: u32,
}
guest_abi!(SchedWatchdog { id, timeout });

/// `struct sched_pin_override`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPinOverride {
    /// Physical CPU to pin to, or negative to undo.
    pub pcpu: i32,
}
guest_abi!(SchedPinOverride { pcpu });

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<SchedShutdown>() == 4);
const _: () = assert!(size_of::<SchedPoll>() == 24);
const _: () = assert!(offset_of!(SchedPoll, nr_ports) == 8);
const _: () = assert!(offset_of!(SchedPoll, timeout) == 16);
const _: () = assert!(size_of::<SchedRemoteShutdown>() == 8);
const _: () = assert!(offset_of!(SchedRemoteShutdown, reason) == 4);
const _: () = assert!(size_of::<SchedWatchdog>() == 8);
const _: () = assert!(size_of::<SchedPinOverride>() == 4);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn shutdown_known_bytes() {
        let s = SchedShutdown {
            reason: SHUTDOWN_CRASH,
        };
        assert_eq!(s.to_vec(), [3, 0, 0, 0]);
        assert_eq!(
            SchedShutdown::read_from(&[1, 0, 0, 0]).unwrap().reason,
            SHUTDOWN_REBOOT
        );
        assert_eq!(
            shutdown_reason_name(SHUTDOWN_SOFT_RESET),
            Some("soft_reset")
        );
        assert_eq!(shutdown_reason_name(SHUTDOWN_MAX + 1), None);
    }

    #[test]
    fn poll_and_remote_round_trip() {
        let p = SchedPoll {
            ports: 0xffff_8880_0000_1000,
            nr_ports: 2,
            timeout: 1_000_000,
        };
        let b = p.to_vec();
        assert_eq!(&b[8..16], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(SchedPoll::read_from(&b), Ok(p));
        let r = SchedRemoteShutdown {
            domain_id: 5,
            reason: SHUTDOWN_POWEROFF,
        };
        assert_eq!(r.to_vec(), [5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(SchedRemoteShutdown::read_from(&r.to_vec()), Ok(r));
        let w = SchedWatchdog { id: 1, timeout: 30 };
        assert_eq!(SchedWatchdog::read_from(&w.to_vec()), Ok(w));
        let o = SchedPinOverride { pcpu: -1 };
        assert_eq!(o.to_vec(), [0xff; 4]);
    }
}
