//! What dom0 does when a domain shuts down (xl's `handle_domain_death`): the config's
//! `on_poweroff` / `on_reboot` / `on_crash` action for the shutdown reason.

use crate::xlcfg::{DomainConfig, ShutdownAction};

/// The `SHUTDOWN_*` reasons, as dom0-interface mirrors them from Xen's sched.h.
pub use dom0_interface::sched::{
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET, SHUTDOWN_SUSPEND,
    SHUTDOWN_WATCHDOG,
};

/// The toolstack's reaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and create it again from its config.
    Restart,
    /// Leave it shut down.
    Preserve,
    /// Nothing (suspend is a save in progress, not a death).
    Ignore,
}

/// The config's action for `reason` (libxl: watchdog as `on_watchdog`, which defaults to
/// destroy; soft_reset as `on_soft_reset`, default soft-reset; unknown reasons as a crash).
pub fn action_for(cfg: &DomainConfig, reason: u32) -> Option<ShutdownAction> {
    match reason {
        SHUTDOWN_POWEROFF => Some(cfg.on_poweroff),
        SHUTDOWN_REBOOT => Some(cfg.on_reboot),
        SHUTDOWN_SUSPEND => None,
        SHUTDOWN_WATCHDOG => Some(ShutdownAction::Destroy),
        SHUTDOWN_SOFT_RESET => Some(ShutdownAction::SoftReset),
        _ => Some(cfg.on_crash),
    }
}

/// What to do for `reason`, with DualVisor's fallbacks for actions it cannot do fully (see
/// [`ShutdownAction::limitation`]).
pub fn reaction(cfg: &DomainConfig, reason: u32) -> Reaction {
    match action_for(cfg, reason) {
        None => Reaction::Ignore,
        Some(a) if a.restarts() => Reaction::Restart,
        Some(a) if a.destroys() => Reaction::Destroy,
        Some(ShutdownAction::CoredumpDestroy) => Reaction::Destroy,
        Some(_) => Reaction::Preserve,
    }
}

/// The word xl prints for a shutdown reason ("unknown" for one Xen does not define).
pub const fn reason_name(reason: u32) -> &'static str {
    match dom0_interface::sched::shutdown_reason_name(reason) {
        Some(name) => name,
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> DomainConfig {
        DomainConfig::parse("t.cfg", text).unwrap().config
    }

    #[test]
    fn actions_follow_the_config() {
        let c = cfg("name=\"a\"\nkernel=\"/k\"\non_poweroff=\"destroy\"\non_reboot=\"restart\"\non_crash=\"preserve\"\n");
        assert_eq!(reaction(&c, SHUTDOWN_POWEROFF), Reaction::Destroy);
        assert_eq!(reaction(&c, SHUTDOWN_REBOOT), Reaction::Restart);
        assert_eq!(reaction(&c, SHUTDOWN_CRASH), Reaction::Preserve);
        assert_eq!(reaction(&c, 77), Reaction::Preserve);
        assert_eq!(reaction(&c, SHUTDOWN_SUSPEND), Reaction::Ignore);
        assert_eq!(reaction(&c, SHUTDOWN_WATCHDOG), Reaction::Destroy);
        assert_eq!(reaction(&c, SHUTDOWN_SOFT_RESET), Reaction::Preserve);
        let c = cfg("name=\"a\"\nkernel=\"/k\"\non_crash=\"coredump-restart\"\non_poweroff=\"rename-restart\"\non_reboot=\"coredump-destroy\"\n");
        assert_eq!(reaction(&c, SHUTDOWN_CRASH), Reaction::Restart);
        assert_eq!(reaction(&c, SHUTDOWN_POWEROFF), Reaction::Restart);
        assert_eq!(reaction(&c, SHUTDOWN_REBOOT), Reaction::Destroy);
        assert_eq!(reason_name(SHUTDOWN_CRASH), "crash");
    }
}
