//! How QEMU ended: exit codes, signals, and the isa-debug-exit encoding `(v << 1) | 1`.

use std::fmt;
use std::process::ExitStatus;

/// The isa-debug-exit value a DualVisor self-test writes on success (QEMU exit status 33).
pub const DEBUG_EXIT_PASS: u32 = 0x10;
/// The isa-debug-exit value a DualVisor self-test writes on failure (QEMU exit status 35).
pub const DEBUG_EXIT_FAIL: u32 = 0x11;
/// Exit status of `timeout(1)` when its own time limit expired.
const TIMEOUT_EXPIRED: i32 = 124;

/// How a QEMU process (possibly run under `timeout(1)`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuExit {
    /// The process exited with this status code.
    Code(i32),
    /// The process was killed by this signal.
    Signal(i32),
}

impl QemuExit {
    /// Converts a [`std::process::ExitStatus`].
    pub fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => QemuExit::Code(code),
            (None, Some(sig)) => QemuExit::Signal(sig),
            // Neither code nor signal: report as an impossible code rather than panic.
            (None, None) => QemuExit::Code(-1),
        }
    }

    /// The exit code, if the process exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            QemuExit::Code(c) => Some(c),
            QemuExit::Signal(_) => None,
        }
    }

    /// The value written to isa-debug-exit, if the status has that form.
    ///
    /// QEMU exits with `(v << 1) | 1` when the guest writes `v`, so every odd status decodes.
    /// Status 1 is ambiguous: it is both `v = 0` and QEMU's own error status.
    pub fn debug_exit_value(self) -> Option<u32> {
        debug_exit_value(self.code()?)
    }
}

/// Decodes an exit status produced by isa-debug-exit: `(v << 1) | 1` gives `Some(v)`.
///
/// Even or negative statuses were not produced by isa-debug-exit and give `None`.
pub fn debug_exit_value(code: i32) -> Option<u32> {
    if code > 0 && code & 1 == 1 {
        Some((code as u32) >> 1)
    } else {
        None
    }
}

/// The exit status QEMU reports when the guest writes `v` to isa-debug-exit.
///
/// Only the low byte of `v` reaches the status on Unix, as for any process exit status.
pub fn debug_exit_status(v: u32) -> i32 {
    (((v << 1) | 1) & 0xff) as i32
}

impl fmt::Display for QemuExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QemuExit::Signal(sig) => write!(f, "killed by signal {sig}"),
            QemuExit::Code(0) => write!(f, "exit status 0 (guest reset or poweroff)"),
            QemuExit::Code(1) => {
                write!(f, "exit status 1 (QEMU error, or isa-debug-exit value 0)")
            }
            QemuExit::Code(127) => write!(f, "exit status 127 (QEMU binary not found)"),
            QemuExit::Code(TIMEOUT_EXPIRED) => write!(f, "exit status 124 (timeout(1) expired)"),
            QemuExit::Code(c) => match debug_exit_value(c) {
                Some(v) => write!(f, "exit status {c} (isa-debug-exit value {v:#x})"),
                None => write!(f, "exit status {c}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_selftest_statuses() {
        assert_eq!(debug_exit_value(33), Some(DEBUG_EXIT_PASS));
        assert_eq!(debug_exit_value(35), Some(DEBUG_EXIT_FAIL));
        assert_eq!(debug_exit_status(DEBUG_EXIT_PASS), 33);
        assert_eq!(debug_exit_status(DEBUG_EXIT_FAIL), 35);
    }

    #[test]
    fn even_and_negative_statuses_are_not_debug_exits() {
        assert_eq!(debug_exit_value(0), None);
        assert_eq!(debug_exit_value(2), None);
        assert_eq!(debug_exit_value(124), None);
        assert_eq!(debug_exit_value(-1), None);
    }

    #[test]
    fn round_trips_every_byte_sized_value() {
        for v in 0..128u32 {
            assert_eq!(debug_exit_value(debug_exit_status(v)), Some(v));
        }
    }

    #[test]
    fn exit_accessors() {
        assert_eq!(QemuExit::Code(33).debug_exit_value(), Some(0x10));
        assert_eq!(QemuExit::Signal(9).debug_exit_value(), None);
        assert_eq!(QemuExit::Signal(9).code(), None);
        assert_eq!(QemuExit::Code(7).code(), Some(7));
    }

    #[test]
    fn display_names_the_debug_exit_value() {
        assert_eq!(
            QemuExit::Code(35).to_string(),
            "exit status 35 (isa-debug-exit value 0x11)"
        );
        assert_eq!(QemuExit::Signal(9).to_string(), "killed by signal 9");
        assert!(QemuExit::Code(0).to_string().contains("reset"));
        assert!(QemuExit::Code(124).to_string().contains("timeout"));
    }

    #[test]
    fn from_real_status() {
        let st = std::process::Command::new("sh")
            .args(["-c", "exit 33"])
            .status()
            .expect("sh runs");
        assert_eq!(QemuExit::from_status(st), QemuExit::Code(33));
        let st = std::process::Command::new("sh")
            .args(["-c", "kill -KILL $$"])
            .status()
            .expect("sh runs");
        assert_eq!(QemuExit::from_status(st), QemuExit::Signal(9));
    }
}
