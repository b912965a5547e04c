//! `event_channel_op` (`public/event_channel.h`), 2-level ABI: allocate, bind, send, status,
//! close, unmask, bind_vcpu, reset.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, EVENT_CHANNEL_OP};

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// `EVTCHNOP_bind_virq`.
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
/// `EVTCHNOP_bind_pirq`.
pub const EVTCHNOP_BIND_PIRQ: u64 = 2;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u64 = 4;
/// `EVTCHNOP_status`.
pub const EVTCHNOP_STATUS: u64 = 5;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// `EVTCHNOP_bind_ipi`.
pub const EVTCHNOP_BIND_IPI: u64 = 7;
/// `EVTCHNOP_bind_vcpu`.
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u64 = 9;
/// `EVTCHNOP_reset`.
pub const EVTCHNOP_RESET: u64 = 10;
/// `EVTCHNOP_init_control` (FIFO ABI).
pub const EVTCHNOP_INIT_CONTROL: u64 = 11;

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7FF0;

/// `VIRQ_TIMER`.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG`.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE`.
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC`.
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF`.
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER`.
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF`.
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING`.
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE`.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT`.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO`.
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM`.
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU`.
pub const VIRQ_XENPMU: u32 = 13;
/// `NR_VIRQS`.
pub const NR_VIRQS: u32 = 24;

/// Number of ports of the 2-level ABI on 64-bit guests (64 * 64).
pub const NR_EVENT_CHANNELS_2L: u32 = 4096;

/// The state of a port, as `EVTCHNOP_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `EVTCHNSTAT_closed`.
    Closed,
    /// `EVTCHNSTAT_unbound`: waiting for `dom` to bind.
    Unbound {
        /// The remote domain allowed to bind.
        dom: u16,
    },
    /// `EVTCHNSTAT_interdomain`: connected to `dom`'s `port`.
    Interdomain {
        /// Remote domain.
        dom: u16,
        /// Remote port.
        port: u32,
    },
    /// `EVTCHNSTAT_pirq`.
    Pirq(u32),
    /// `EVTCHNSTAT_virq`.
    Virq(u32),
    /// `EVTCHNSTAT_ipi`.
    Ipi,
    /// A status value this runtime does not know.
    Unknown(u32),
}

/// `struct evtchn_status` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawStatus {
    /// IN: domain (`DOMID_SELF`).
    pub dom: u16,
    /// IN: port.
    pub port: u32,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU notified.
    pub vcpu: u32,
    /// OUT: the union (unbound.dom / interdomain {dom, port} / pirq / virq).
    pub u: [u32; 2],
}
const _: () = assert!(core::mem::size_of::<RawStatus>() == 24);

impl RawStatus {
    /// Decodes the union according to `status`.
    pub fn decode(&self) -> Status {
        match self.status {
            0 => Status::Closed,
            1 => Status::Unbound {
                dom: (self.u[0] & 0xffff) as u16,
            },
            2 => Status::Interdomain {
                dom: (self.u[0] & 0xffff) as u16,
                port: self.u[1],
            },
            3 => Status::Pirq(self.u[0]),
            4 => Status::Virq(self.u[0]),
            5 => Status::Ipi,
            other => Status::Unknown(other),
        }
    }
}

/// Issues `event_channel_op(cmd, arg)` on a plain-old-data argument struct.
fn op<T>(cmd: u64, arg: &mut T) -> XenResult {
    // SAFETY: every caller passes the exact `struct evtchn_*` for `cmd`, which Xen reads and
    // writes within its size; `arg` is an exclusive reference to it.
    unsafe { hypercall::call(EVENT_CHANNEL_OP, [cmd, arg as *mut T as u64, 0, 0, 0]) }
}

fn port_of(r: XenResult, port: u32) -> Result<u32, Errno> {
    r.map(|_| port)
}

/// `EVTCHNOP_alloc_unbound`: a new port in `dom` that `remote_dom` may bind to.
pub fn alloc_unbound(dom: u16, remote_dom: u16) -> Result<u32, Errno> {
    #[repr(C)]
    struct A {
        dom: u16,
        remote_dom: u16,
        port: u32,
    }
    let mut a = A {
        dom,
        remote_dom,
        port: 0,
    };
    let r = op(EVTCHNOP_ALLOC_UNBOUND, &mut a);
    port_of(r, a.port)
}

/// `EVTCHNOP_bind_interdomain`: connects a new local port to `remote_dom`'s unbound `remote_port`.
pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, Errno> {
    #[repr(C)]
    struct B {
        remote_dom: u16,
        remote_port: u32,
        local_port: u32,
    }
    let mut b = B {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    let r = op(EVTCHNOP_BIND_INTERDOMAIN, &mut b);
    port_of(r, b.local_port)
}

/// `EVTCHNOP_bind_virq`: binds `virq` on `vcpu` to a new port.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, Errno> {
    let mut b: [u32; 3] = [virq, vcpu, 0];
    let r = op(EVTCHNOP_BIND_VIRQ, &mut b);
    port_of(r, b[2])
}

/// `EVTCHNOP_bind_ipi`: a new port that notifies `vcpu`.
pub fn bind_ipi(vcpu: u32) -> Result<u32, Errno> {
    let mut b: [u32; 2] = [vcpu, 0];
    let r = op(EVTCHNOP_BIND_IPI, &mut b);
    port_of(r, b[1])
}

/// `EVTCHNOP_close`.
pub fn close(port: u32) -> XenResult {
    let mut p = port;
    op(EVTCHNOP_CLOSE, &mut p)
}

/// `EVTCHNOP_send`.
pub fn send(port: u32) -> XenResult {
    let mut p = port;
    op(EVTCHNOP_SEND, &mut p)
}

/// `EVTCHNOP_unmask`.
pub fn unmask(port: u32) -> XenResult {
    let mut p = port;
    op(EVTCHNOP_UNMASK, &mut p)
}

/// `EVTCHNOP_bind_vcpu`: re-routes `port` to `vcpu`.
pub fn bind_vcpu(port: u32, vcpu: u32) -> XenResult {
    let mut b: [u32; 2] = [port, vcpu];
    op(EVTCHNOP_BIND_VCPU, &mut b)
}

/// `EVTCHNOP_reset` of domain `dom`.
pub fn reset(dom: u16) -> XenResult {
    let mut d = dom;
    op(EVTCHNOP_RESET, &mut d)
}

/// `EVTCHNOP_status` of `port` in `dom`, raw.
pub fn status_raw(dom: u16, port: u32) -> Result<RawStatus, Errno> {
    let mut s = RawStatus {
        dom,
        port,
        ..RawStatus::default()
    };
    op(EVTCHNOP_STATUS, &mut s)?;
    Ok(s)
}

/// `EVTCHNOP_status` of our own `port`: the decoded state and the vCPU it notifies.
pub fn status(port: u32) -> Result<(Status, u32), Errno> {
    let s = status_raw(DOMID_SELF, port)?;
    Ok((s.decode(), s.vcpu))
}

/// `event_channel_op(cmd, ptr)` with an unreachable pointer (to provoke `-EFAULT`) or an
/// unknown `cmd` (to provoke `-ENOSYS`).
pub fn op_with_bad_ptr(cmd: u64, ptr: hypercall::BadPtr) -> XenResult {
    hypercall::call_with_bad_ptr(EVENT_CHANNEL_OP, cmd, ptr)
}

/// `EVTCHNOP_expand_array` (FIFO ABI).
pub const EVTCHNOP_EXPAND_ARRAY: u64 = 12;
/// `EVTCHNOP_set_priority` (FIFO ABI).
pub const EVTCHNOP_SET_PRIORITY: u64 = 13;
/// `EVTCHNOP_reset_cont`: Xen's own continuation of `EVTCHNOP_reset`.
pub const EVTCHNOP_RESET_CONT: u64 = 14;

/// `EVTCHNOP_set_priority` of `port` (2-level: Xen has no priorities).
pub fn set_priority(port: u32, priority: u32) -> XenResult {
    let mut b: [u32; 2] = [port, priority];
    op(EVTCHNOP_SET_PRIORITY, &mut b)
}

/// `EVTCHNOP_expand_array` with `array_gfn` (2-level: refused before the frame is looked at).
pub fn expand_array(array_gfn: u64) -> XenResult {
    let mut g = array_gfn;
    op(EVTCHNOP_EXPAND_ARRAY, &mut g)
}

/// `EVTCHNOP_reset_cont` of domain `dom`, as a guest could issue it directly.
pub fn reset_cont(dom: u16) -> XenResult {
    let mut d = dom;
    op(EVTCHNOP_RESET_CONT, &mut d)
}

/// `EVTCHNOP_status` of `port` in `dom` with the union pre-filled with `u`: Xen writes only
/// the union members the status uses, so the rest comes back as it went in.
pub fn status_prefilled(dom: u16, port: u32, u: [u32; 2]) -> Result<RawStatus, Errno> {
    let mut s = RawStatus {
        dom,
        port,
        status: 0xdead,
        vcpu: 0xbeef,
        u,
    };
    op(EVTCHNOP_STATUS, &mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_union_decodes() {
        let mut s = RawStatus {
            status: 2,
            u: [7, 33],
            ..RawStatus::default()
        };
        assert_eq!(s.decode(), Status::Interdomain { dom: 7, port: 33 });
        s.status = 1;
        assert_eq!(s.decode(), Status::Unbound { dom: 7 });
        s.status = 4;
        assert_eq!(s.decode(), Status::Virq(7));
        s.status = 0;
        assert_eq!(s.decode(), Status::Closed);
        s.status = 5;
        assert_eq!(s.decode(), Status::Ipi);
        s.status = 9;
        assert_eq!(s.decode(), Status::Unknown(9));
    }

    #[test]
    fn status_layout_matches_xen() {
        assert_eq!(core::mem::offset_of!(RawStatus, port), 4);
        assert_eq!(core::mem::offset_of!(RawStatus, status), 8);
        assert_eq!(core::mem::offset_of!(RawStatus, vcpu), 12);
        assert_eq!(core::mem::offset_of!(RawStatus, u), 16);
    }
}
