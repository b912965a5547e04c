//! `on_poweroff` / `on_reboot` / `on_crash`: libxl's `action_on_shutdown` words and what
//! each one asks the toolstack to do.

/// `libxl_action_on_shutdown`, with xl.cfg's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownAction {
    /// `destroy`: destroy the domain.
    Destroy,
    /// `restart`: destroy it and build it again from the same config.
    Restart,
    /// `rename-restart`: keep the old domain under a new name and start a new one.
    RenameRestart,
    /// `preserve`: leave the domain as it is (shut down, for inspection).
    Preserve,
    /// `coredump-destroy`: write a core dump, then destroy.
    CoredumpDestroy,
    /// `coredump-restart`: write a core dump, then restart.
    CoredumpRestart,
    /// `soft-reset`: reset the domain's state without rebuilding it.
    SoftReset,
}

impl ShutdownAction {
    /// Every action, in libxl's numbering order (1..=7).
    pub const ALL: [ShutdownAction; 7] = [
        ShutdownAction::Destroy,
        ShutdownAction::Restart,
        ShutdownAction::RenameRestart,
        ShutdownAction::Preserve,
        ShutdownAction::CoredumpDestroy,
        ShutdownAction::CoredumpRestart,
        ShutdownAction::SoftReset,
    ];

    /// The xl.cfg word.
    pub const fn name(self) -> &'static str {
        match self {
            ShutdownAction::Destroy => "destroy",
            ShutdownAction::Restart => "restart",
            ShutdownAction::RenameRestart => "rename-restart",
            ShutdownAction::Preserve => "preserve",
            ShutdownAction::CoredumpDestroy => "coredump-destroy",
            ShutdownAction::CoredumpRestart => "coredump-restart",
            ShutdownAction::SoftReset => "soft-reset",
        }
    }

    /// The action called `word` in xl.cfg (exact match, as xl's `parse_action_on_shutdown`).
    pub fn from_name(word: &str) -> Option<ShutdownAction> {
        Self::ALL.into_iter().find(|a| a.name() == word)
    }

    /// libxl's enumeration value.
    pub const fn libxl_value(self) -> u32 {
        self as u32 + 1
    }

    /// The domain is destroyed (its memory returned) once the action is done.
    pub const fn destroys(self) -> bool {
        matches!(
            self,
            ShutdownAction::Destroy
                | ShutdownAction::Restart
                | ShutdownAction::CoredumpDestroy
                | ShutdownAction::CoredumpRestart
        )
    }

    /// A new domain is built from the same config afterwards.
    pub const fn restarts(self) -> bool {
        matches!(
            self,
            ShutdownAction::Restart
                | ShutdownAction::RenameRestart
                | ShutdownAction::CoredumpRestart
        )
    }

    /// The shut-down domain is kept (not destroyed).
    pub const fn preserves(self) -> bool {
        matches!(
            self,
            ShutdownAction::Preserve | ShutdownAction::RenameRestart | ShutdownAction::SoftReset
        )
    }

    /// A core dump is asked for first.
    pub const fn dumps_core(self) -> bool {
        matches!(
            self,
            ShutdownAction::CoredumpDestroy | ShutdownAction::CoredumpRestart
        )
    }

    /// What DualVisor's toolstack cannot do of this action yet, if anything. It then
    /// falls back to the destroy/restart/preserve part of the action.
    pub const fn limitation(self) -> Option<&'static str> {
        match self {
            ShutdownAction::Destroy | ShutdownAction::Restart | ShutdownAction::Preserve => None,
            ShutdownAction::RenameRestart => Some(
                "renaming is not supported yet; the old domain is destroyed before the restart",
            ),
            ShutdownAction::CoredumpDestroy | ShutdownAction::CoredumpRestart => {
                Some("core dumps are not supported yet; no dump is written")
            }
            ShutdownAction::SoftReset => {
                Some("soft reset is not supported yet; the domain is preserved")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_number_like_libxl() {
        for (i, a) in ShutdownAction::ALL.into_iter().enumerate() {
            assert_eq!(ShutdownAction::from_name(a.name()), Some(a));
            assert_eq!(a.libxl_value(), i as u32 + 1);
        }
        assert_eq!(ShutdownAction::from_name("restart-rename"), None);
        assert_eq!(ShutdownAction::from_name("Destroy"), None);
        assert_eq!(ShutdownAction::from_name(""), None);
    }

    #[test]
    fn semantics() {
        use ShutdownAction::*;
        assert!(Destroy.destroys() && !Destroy.restarts() && !Destroy.preserves());
        assert!(Restart.destroys() && Restart.restarts() && !Restart.preserves());
        assert!(!Preserve.destroys() && !Preserve.restarts() && Preserve.preserves());
        assert!(CoredumpDestroy.dumps_core() && CoredumpDestroy.destroys());
        assert!(CoredumpRestart.dumps_core() && CoredumpRestart.restarts());
        assert!(RenameRestart.restarts() && RenameRestart.preserves());
        for a in [Destroy, Restart, Preserve] {
            assert_eq!(a.limitation(), None);
        }
        for a in [RenameRestart, CoredumpDestroy, CoredumpRestart, SoftReset] {
            assert!(a.limitation().is_some());
        }
    }
}
