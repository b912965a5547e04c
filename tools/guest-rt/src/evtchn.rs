//! `event_channel_op` (`public/event_channel.h`): allocate, bind, send, status, close,
//! unmask, bind_vcpu, reset, and the FIFO ABI's init_control, expand_array, set_priority.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, EVENT_CHANNEL_OP};

use dom0_interface::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq,
    EvtchnClose, EvtchnExpandArray, EvtchnInitControl, EvtchnReset, EvtchnSend, EvtchnSetPriority,
    EvtchnUnmask, EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_PIRQ,
    EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
};
pub use dom0_interface::event_channel::{
    EvtchnStatus as RawStatus, EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN,
    EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_PIRQ, EVTCHNOP_BIND_VCPU, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE,
    EVTCHNOP_EXPAND_ARRAY, EVTCHNOP_INIT_CONTROL, EVTCHNOP_RESET, EVTCHNOP_RESET_CONT,
    EVTCHNOP_SEND, EVTCHNOP_SET_PRIORITY, EVTCHNOP_STATUS, EVTCHNOP_UNMASK,
    EVTCHN_2L_NR_CHANNELS as NR_EVENT_CHANNELS_2L,
};
pub use dom0_interface::xen::{
    DOMID_SELF, NR_VIRQS, VIRQ_ARGO, VIRQ_CONSOLE, VIRQ_CON_RING, VIRQ_DEBUG, VIRQ_DEBUGGER,
    VIRQ_DOM_EXC, VIRQ_ENOMEM, VIRQ_MEM_EVENT, VIRQ_PCPU_STATE, VIRQ_TBUF, VIRQ_TIMER,
    VIRQ_XENOPROF, VIRQ_XENPMU,
};

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

impl Status {
    /// Decodes the union of an `EVTCHNOP_status` answer according to its `status`.
    pub const fn decode(s: &RawStatus) -> Status {
        match s.status {
            EVTCHNSTAT_CLOSED => Status::Closed,
            EVTCHNSTAT_UNBOUND => Status::Unbound {
                dom: s.remote_dom(),
            },
            EVTCHNSTAT_INTERDOMAIN => Status::Interdomain {
                dom: s.remote_dom(),
                port: s.remote_port(),
            },
            EVTCHNSTAT_PIRQ => Status::Pirq(s.irq()),
            EVTCHNSTAT_VIRQ => Status::Virq(s.irq()),
            EVTCHNSTAT_IPI => Status::Ipi,
            other => Status::Unknown(other),
        }
    }
}

/// Issues `event_channel_op(cmd, arg)` on a plain-old-data argument struct.
fn op<T>(cmd: u32, arg: &mut T) -> XenResult {
    // SAFETY: every caller passes the exact `struct evtchn_*` for `cmd`, which Xen reads and
    // writes within its size; `arg` is an exclusive reference to it.
    unsafe {
        hypercall::call(
            EVENT_CHANNEL_OP,
            [cmd.into(), arg as *mut T as u64, 0, 0, 0],
        )
    }
}

fn port_of(r: XenResult, port: u32) -> Result<u32, Errno> {
    r.map(|_| port)
}

/// `EVTCHNOP_alloc_unbound`: a new port in `dom` that `remote_dom` may bind to.
pub fn alloc_unbound(dom: u16, remote_dom: u16) -> Result<u32, Errno> {
    let mut a = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    let r = op(EVTCHNOP_ALLOC_UNBOUND, &mut a);
    port_of(r, a.port)
}

/// `EVTCHNOP_bind_interdomain`: connects a new local port to `remote_dom`'s unbound `remote_port`.
pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, Errno> {
    let mut b = EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    let r = op(EVTCHNOP_BIND_INTERDOMAIN, &mut b);
    port_of(r, b.local_port)
}

/// `EVTCHNOP_bind_virq`: binds `virq` on `vcpu` to a new port.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, Errno> {
    let mut b = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    let r = op(EVTCHNOP_BIND_VIRQ, &mut b);
    port_of(r, b.port)
}

/// `EVTCHNOP_bind_ipi`: a new port that notifies `vcpu`.
pub fn bind_ipi(vcpu: u32) -> Result<u32, Errno> {
    let mut b = EvtchnBindIpi { vcpu, port: 0 };
    let r = op(EVTCHNOP_BIND_IPI, &mut b);
    port_of(r, b.port)
}

/// `EVTCHNOP_close`.
pub fn close(port: u32) -> XenResult {
    op(EVTCHNOP_CLOSE, &mut EvtchnClose { port })
}

/// `EVTCHNOP_send`.
pub fn send(port: u32) -> XenResult {
    op(EVTCHNOP_SEND, &mut EvtchnSend { port })
}

/// `EVTCHNOP_unmask`.
pub fn unmask(port: u32) -> XenResult {
    op(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port })
}

/// `EVTCHNOP_bind_vcpu`: re-routes `port` to `vcpu`.
pub fn bind_vcpu(port: u32, vcpu: u32) -> XenResult {
    op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port, vcpu })
}

/// `EVTCHNOP_reset` of domain `dom`.
pub fn reset(dom: u16) -> XenResult {
    op(EVTCHNOP_RESET, &mut EvtchnReset { dom })
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
    Ok((Status::decode(&s), s.vcpu))
}

/// `event_channel_op(cmd, ptr)` with an unreachable pointer (to provoke `-EFAULT`) or an
/// unknown `cmd` (to provoke `-ENOSYS`).
pub fn op_with_bad_ptr(cmd: u32, ptr: hypercall::BadPtr) -> XenResult {
    hypercall::call_with_bad_ptr(EVENT_CHANNEL_OP, cmd.into(), ptr)
}

/// `EVTCHNOP_set_priority` of `port` (2-level: Xen has no priorities).
pub fn set_priority(port: u32, priority: u32) -> XenResult {
    op(
        EVTCHNOP_SET_PRIORITY,
        &mut EvtchnSetPriority { port, priority },
    )
}

/// `EVTCHNOP_init_control`: registers `vcpu`'s FIFO control block at `offset` in frame
/// `control_gfn` (a machine frame for a PV guest); the first call switches the domain to the
/// FIFO ABI. Returns the struct as Xen left it (`link_bits` is the OUT field).
pub fn init_control(control_gfn: u64, offset: u32, vcpu: u32) -> Result<EvtchnInitControl, Errno> {
    let mut c = EvtchnInitControl {
        control_gfn,
        offset,
        vcpu,
        link_bits: 0,
        _pad: [0x5a; 7],
    };
    op(EVTCHNOP_INIT_CONTROL, &mut c)?;
    Ok(c)
}

/// `EVTCHNOP_expand_array` with `array_gfn` (2-level: refused before the frame is looked at).
pub fn expand_array(array_gfn: u64) -> XenResult {
    op(EVTCHNOP_EXPAND_ARRAY, &mut EvtchnExpandArray { array_gfn })
}

/// `EVTCHNOP_reset_cont` of domain `dom`, as a guest could issue it directly.
pub fn reset_cont(dom: u16) -> XenResult {
    op(EVTCHNOP_RESET_CONT, &mut EvtchnReset { dom })
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
        assert_eq!(Status::decode(&s), Status::Interdomain { dom: 7, port: 33 });
        s.status = 1;
        assert_eq!(Status::decode(&s), Status::Unbound { dom: 7 });
        s.status = 4;
        assert_eq!(Status::decode(&s), Status::Virq(7));
        s.status = 0;
        assert_eq!(Status::decode(&s), Status::Closed);
        s.status = 5;
        assert_eq!(Status::decode(&s), Status::Ipi);
        s.status = 9;
        assert_eq!(Status::decode(&s), Status::Unknown(9));
    }
}
