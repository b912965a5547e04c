//! Xen error numbers (`xen/include/public/errno.h`) and the result type every wrapper returns.

use core::fmt;

/// A negative Xen errno exactly as a hypercall returned it in RAX (e.g. `-14` for EFAULT).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i64);

/// What every hypercall wrapper returns: the non-negative (or non-errno) RAX value, or the
/// negative errno.
pub type XenResult = Result<i64, Errno>;

/// Largest errno value Xen uses; RAX values in `-MAX_ERRNO..=-1` are errors.
pub const MAX_ERRNO: i64 = 4095;

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(-1);
    /// No such file or directory (no such object).
    pub const ENOENT: Errno = Errno(-2);
    /// No such process (no such domain).
    pub const ESRCH: Errno = Errno(-3);
    /// Interrupted system call.
    pub const EINTR: Errno = Errno(-4);
    /// I/O error.
    pub const EIO: Errno = Errno(-5);
    /// Argument list too long.
    pub const E2BIG: Errno = Errno(-7);
    /// Bad file number (bad handle).
    pub const EBADF: Errno = Errno(-9);
    /// Try again.
    pub const EAGAIN: Errno = Errno(-11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(-12);
    /// Permission denied.
    pub const EACCES: Errno = Errno(-13);
    /// Bad address.
    pub const EFAULT: Errno = Errno(-14);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(-16);
    /// Object exists.
    pub const EEXIST: Errno = Errno(-17);
    /// Cross-device link.
    pub const EXDEV: Errno = Errno(-18);
    /// No such device.
    pub const ENODEV: Errno = Errno(-19);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(-22);
    /// No space left.
    pub const ENOSPC: Errno = Errno(-28);
    /// Result out of range.
    pub const ERANGE: Errno = Errno(-34);
    /// Function not implemented.
    pub const ENOSYS: Errno = Errno(-38);
    /// No data available.
    pub const ENODATA: Errno = Errno(-61);
    /// No such device or address (e.g. a misplaced `vcpu_info`).
    pub const ENXIO: Errno = Errno(-6);
    /// Timer expired (e.g. a `VCPU_SSHOTTMR_future` deadline already passed).
    pub const ETIME: Errno = Errno(-62);
    /// Operation not supported.
    pub const EOPNOTSUPP: Errno = Errno(-95);

    /// The symbolic name (`"EFAULT"`), or `None` for a number Xen does not define.
    pub fn name(self) -> Option<&'static str> {
        dom0_interface::errno::XenErrno::from_neg(self.0).map(|e| e.name())
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "-{} ({})", name, self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// Turns a raw RAX value into a [`XenResult`]: `-4095..=-1` are errors, anything else success.
pub fn from_raw(rax: i64) -> XenResult {
    if (-MAX_ERRNO..0).contains(&rax) {
        Err(Errno(rax))
    } else {
        Ok(rax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn raw_values_split_into_ok_and_err() {
        assert_eq!(from_raw(0), Ok(0));
        assert_eq!(from_raw(0x4_0011), Ok(0x4_0011));
        assert_eq!(from_raw(-14), Err(Errno::EFAULT));
        assert_eq!(from_raw(-4095), Err(Errno(-4095)));
        assert_eq!(from_raw(-4096), Ok(-4096));
        assert_eq!(from_raw(i64::MIN), Ok(i64::MIN));
    }

    #[test]
    fn names_and_display() {
        assert_eq!(Errno::ENOSYS.name(), Some("ENOSYS"));
        assert_eq!(Errno::EINVAL.name(), Some("EINVAL"));
        assert_eq!(Errno(-3000).name(), None);
        assert_eq!(Errno(i64::MIN).name(), None);
        assert_eq!(format!("{}", Errno::EFAULT), "-EFAULT (-14)");
        assert_eq!(format!("{:?}", Errno(-3000)), "errno -3000");
    }
}
