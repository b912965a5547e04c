//! Event and exception callbacks, mirroring `xen/include/public/callback.h` (Xen 4.17):
//! `CALLBACKOP_*` sub-ops of `HYPERVISOR_callback_op`, `CALLBACKTYPE_*` and their structs.

use crate::arch_x86::XenCallback;
use crate::guest_abi;

/// `CALLBACKTYPE_event`: event delivery.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// `CALLBACKTYPE_failsafe`: guest state could not be restored.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// `CALLBACKTYPE_syscall`: SYSCALL from a 64-bit guest application.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// `CALLBACKTYPE_sysenter_deprecated`.
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// `CALLBACKTYPE_nmi`: NMI delivery.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// `CALLBACKTYPE_sysenter`: SYSENTER from a 32-bit guest application.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// `CALLBACKTYPE_syscall32`: SYSCALL from a 32-bit guest application.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// `CALLBACKF_mask_events`: mask events on entry to the callback.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// `CALLBACKOP_register`: arg is `callback_register`.
pub const CALLBACKOP_REGISTER: u32 = 0;
/// `CALLBACKOP_unregister`: arg is `callback_unregister`.
pub const CALLBACKOP_UNREGISTER: u32 = 1;

/// `struct callback_register`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Entry point.
    pub address: XenCallback,
}
guest_abi!(CallbackRegister {
    r#type,
    flags,
    address
});

/// `struct callback_unregister`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackUnregister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// Unused.
    pub _unused: u16,
}
guest_abi!(CallbackUnregister { r#type, _unused });

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<CallbackRegister>() == 16);
const _: () = assert!(offset_of!(CallbackRegister, flags) == 2);
const _: () = assert!(offset_of!(CallbackRegister, address) == 8);
const _: () = assert!(size_of::<CallbackUnregister>() == 4);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;

    #[test]
    fn register_known_bytes() {
        let r = CallbackRegister {
            r#type: CALLBACKTYPE_SYSCALL,
            flags: CALLBACKF_MASK_EVENTS,
            address: 0xffff_ffff_8100_0040,
        };
        let b = r.to_vec();
        assert_eq!(
            b,
            [2, 0, 1, 0, 0, 0, 0, 0, 0x40, 0, 0, 0x81, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(CallbackRegister::read_from(&b), Ok(r));
        let u = CallbackUnregister {
            r#type: CALLBACKTYPE_NMI,
            _unused: 0,
        };
        assert_eq!(CallbackUnregister::read_from(&u.to_vec()), Ok(u));
    }
}
