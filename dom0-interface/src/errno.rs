//! Xen error numbers, mirroring `xen/include/public/errno.h` (Xen 4.17).
//!
//! Exactly the header's list, checked against `/usr/include/xen/errno.h` of Debian's
//! `libxen-dev` 4.17.7 (48 names besides the aliases; Xen 4.17 has no EOVERFLOW, later versions add it).
//!
//! Hypercalls return the negated value in RAX. `EINTR` and `ERESTART` are marked
//! "internal only, should never be exposed to the guest" in the header; they are kept here
//! because the hypervisor itself uses them, but a dispatcher must not return them.

use core::fmt;

macro_rules! xen_errnos {
    ($($name:ident = $value:literal, $doc:literal;)*) => {
        /// A Xen error number (`enum xen_errno`), positive as in the header.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum XenErrno {
            $(#[doc = $doc] $name = $value,)*
        }

        impl XenErrno {
            /// Every error number, in header order.
            pub const ALL: &'static [XenErrno] = &[$(XenErrno::$name,)*];

            /// The header's name, e.g. `"EINVAL"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(XenErrno::$name => stringify!($name),)*
                }
            }

            /// The error number for a positive value, if Xen defines one.
            pub const fn from_positive(value: i64) -> Option<XenErrno> {
                match value {
                    $($value => Some(XenErrno::$name),)*
                    _ => None,
                }
            }
        }
    };
}

xen_errnos! {
    EPERM = 1, "Operation not permitted.";
    ENOENT = 2, "No such file or directory.";
    ESRCH = 3, "No such process.";
    EINTR = 4, "Interrupted system call (hypervisor-internal, never exposed to a guest).";
    EIO = 5, "I/O error.";
    ENXIO = 6, "No such device or address.";
    E2BIG = 7, "Arg list too long.";
    ENOEXEC = 8, "Exec format error.";
    EBADF = 9, "Bad file number.";
    ECHILD = 10, "No child processes.";
    EAGAIN = 11, "Try again (also `EWOULDBLOCK`).";
    ENOMEM = 12, "Out of memory.";
    EACCES = 13, "Permission denied.";
    EFAULT = 14, "Bad address.";
    EBUSY = 16, "Device or resource busy.";
    EEXIST = 17, "File exists.";
    EXDEV = 18, "Cross-device link.";
    ENODEV = 19, "No such device.";
    ENOTDIR = 20, "Not a directory.";
    EISDIR = 21, "Is a directory.";
    EINVAL = 22, "Invalid argument.";
    ENFILE = 23, "File table overflow.";
    EMFILE = 24, "Too many open files.";
    ENOSPC = 28, "No space left on device.";
    EROFS = 30, "Read-only file system.";
    EMLINK = 31, "Too many links.";
    EDOM = 33, "Math argument out of domain of func.";
    ERANGE = 34, "Math result not representable.";
    EDEADLK = 35, "Resource deadlock would occur (also `EDEADLOCK`).";
    ENAMETOOLONG = 36, "File name too long.";
    ENOLCK = 37, "No record locks available.";
    ENOSYS = 38, "Function not implemented.";
    ENOTEMPTY = 39, "Directory not empty.";
    ENODATA = 61, "No data available.";
    ETIME = 62, "Timer expired.";
    EBADMSG = 74, "Not a data message.";
    EILSEQ = 84, "Illegal byte sequence.";
    ERESTART = 85, "Interrupted system call should be restarted (hypervisor-internal).";
    ENOTSOCK = 88, "Socket operation on non-socket.";
    EMSGSIZE = 90, "Message too large.";
    EOPNOTSUPP = 95, "Operation not supported on transport endpoint.";
    EADDRINUSE = 98, "Address already in use.";
    EADDRNOTAVAIL = 99, "Cannot assign requested address.";
    ENOBUFS = 105, "No buffer space available.";
    EISCONN = 106, "Transport endpoint is already connected.";
    ENOTCONN = 107, "Transport endpoint is not connected.";
    ETIMEDOUT = 110, "Connection timed out.";
    ECONNREFUSED = 111, "Connection refused.";
}

/// `XEN_EWOULDBLOCK`: an alias of `EAGAIN`.
pub const EWOULDBLOCK: XenErrno = XenErrno::EAGAIN;
/// `XEN_EDEADLOCK`: an alias of `EDEADLK`.
pub const EDEADLOCK: XenErrno = XenErrno::EDEADLK;

impl XenErrno {
    /// The positive error number.
    pub const fn as_positive(self) -> i32 {
        self as i32
    }

    /// The value a hypercall returns in RAX for this error: `-errno`.
    pub const fn as_neg(self) -> i64 {
        -(self as i64)
    }

    /// The error a negative hypercall return value stands for, if any.
    pub const fn from_neg(ret: i64) -> Option<XenErrno> {
        if ret >= 0 {
            return None;
        }
        match ret.checked_neg() {
            Some(v) => XenErrno::from_positive(v),
            None => None,
        }
    }

    /// Whether the header forbids exposing this value to a guest.
    pub const fn is_internal(self) -> bool {
        matches!(self, XenErrno::EINTR | XenErrno::ERESTART)
    }
}

impl fmt::Display for XenErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn numbers_match_the_header() {
        let expected: &[(XenErrno, i32)] = &[
            (XenErrno::EPERM, 1),
            (XenErrno::ENOENT, 2),
            (XenErrno::ESRCH, 3),
            (XenErrno::EINTR, 4),
            (XenErrno::EIO, 5),
            (XenErrno::E2BIG, 7),
            (XenErrno::EBADF, 9),
            (XenErrno::EAGAIN, 11),
            (XenErrno::ENOMEM, 12),
            (XenErrno::EACCES, 13),
            (XenErrno::EFAULT, 14),
            (XenErrno::EBUSY, 16),
            (XenErrno::EEXIST, 17),
            (XenErrno::EXDEV, 18),
            (XenErrno::ENODEV, 19),
            (XenErrno::EINVAL, 22),
            (XenErrno::ENOSPC, 28),
            (XenErrno::ERANGE, 34),
            (XenErrno::ENOSYS, 38),
            (XenErrno::ENODATA, 61),
            (XenErrno::ETIME, 62),
            (XenErrno::ERESTART, 85),
            (XenErrno::EOPNOTSUPP, 95),
            (XenErrno::ETIMEDOUT, 110),
            (XenErrno::ENOTDIR, 20),
            (XenErrno::EISDIR, 21),
            (XenErrno::EROFS, 30),
            (XenErrno::ENOTEMPTY, 39),
            (XenErrno::EMSGSIZE, 90),
            (XenErrno::ECONNREFUSED, 111),
        ];
        for &(e, n) in expected {
            assert_eq!(e.as_positive(), n, "{e}");
            assert_eq!(e.as_neg(), -i64::from(n));
        }
        // Xen 4.17's header has 48 names besides the aliases EWOULDBLOCK and EDEADLOCK.
        assert_eq!(XenErrno::ALL.len(), 48);
        for gone in [56, 57, 75, 87, 108, 109] {
            assert_eq!(
                XenErrno::from_positive(gone),
                None,
                "{gone} is not a Xen 4.17 errno"
            );
        }
    }

    #[test]
    fn round_trips_through_negative_returns() {
        for &e in XenErrno::ALL {
            assert_eq!(XenErrno::from_neg(e.as_neg()), Some(e));
            assert_eq!(XenErrno::from_positive(i64::from(e.as_positive())), Some(e));
        }
        assert_eq!(XenErrno::from_neg(0), None);
        assert_eq!(XenErrno::from_neg(22), None);
        assert_eq!(XenErrno::from_neg(-15), None);
        assert_eq!(XenErrno::from_neg(i64::MIN), None);
    }

    #[test]
    fn display_uses_header_names() {
        assert_eq!(XenErrno::EINVAL.to_string(), "EINVAL");
        assert_eq!(XenErrno::ENOSYS.to_string(), "ENOSYS");
        assert_eq!(EWOULDBLOCK, XenErrno::EAGAIN);
        assert_eq!(EDEADLOCK.name(), "EDEADLK");
        assert!(XenErrno::ERESTART.is_internal());
        assert!(!XenErrno::EFAULT.is_internal());
    }
}
