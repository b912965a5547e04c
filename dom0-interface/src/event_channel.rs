//! Event channels, mirroring `xen/include/public/event_channel.h` (Xen 4.17):
//! `EVTCHNOP_*` sub-ops of `HYPERVISOR_event_channel_op`, their argument structs,
//! `EVTCHNSTAT_*`, and the 2-level / FIFO constants.

use crate::guest_abi;
use crate::xen::DomId;

/// `evtchn_port_t`.
pub type EvtchnPort = u32;

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`.
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq`.
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status`.
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`.
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`.
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u32 = 9;
/// `EVTCHNOP_reset`.
pub const EVTCHNOP_RESET: u32 = 10;
/// `EVTCHNOP_init_control` (FIFO ABI).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array` (FIFO ABI).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority` (FIFO ABI).
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// `EVTCHNOP_reset_cont`: Xen's own continuation of `EVTCHNOP_reset` (`#ifdef __XEN__`; a
/// guest can still issue it).
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// `EVTCHNSTAT_closed`: not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`: waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`: connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`: bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`: bound to a virtual IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `BIND_PIRQ__WILL_SHARE`.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `EVTCHN_2L_NR_CHANNELS`: ports of the 2-level ABI on x86-64 (8 * 8 * 64).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;
/// `EVTCHN_FIFO_PRIORITY_MAX` (highest).
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// `EVTCHN_FIFO_PRIORITY_DEFAULT`.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// `EVTCHN_FIFO_PRIORITY_MIN` (lowest).
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// `EVTCHN_FIFO_MAX_QUEUES`.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
/// `EVTCHN_FIFO_PENDING` bit of an event word.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// `EVTCHN_FIFO_MASKED` bit.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// `EVTCHN_FIFO_LINKED` bit.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// `EVTCHN_FIFO_BUSY` bit.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// `EVTCHN_FIFO_LINK_BITS`.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// `EVTCHN_FIFO_LINK_MASK`.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// `EVTCHN_FIFO_NR_CHANNELS`.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: domain to allocate in (DOMID_SELF allowed).
    pub dom: DomId,
    /// IN: domain allowed to bind.
    pub remote_dom: DomId,
    /// OUT: allocated port.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnAllocUnbound {
    dom,
    remote_dom,
    port
});

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// IN.
    pub remote_dom: DomId,
    /// IN.
    pub remote_port: EvtchnPort,
    /// OUT.
    pub local_port: EvtchnPort,
}
guest_abi!(EvtchnBindInterdomain {
    remote_dom,
    remote_port,
    local_port
});

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN.
    pub vcpu: u32,
    /// OUT.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnBindVirq { virq, vcpu, port });

/// `struct evtchn_bind_pirq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindPirq {
    /// IN.
    pub pirq: u32,
    /// IN: `BIND_PIRQ__*`.
    pub flags: u32,
    /// OUT.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnBindPirq { pirq, flags, port });

/// `struct evtchn_bind_ipi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// IN.
    pub vcpu: u32,
    /// OUT.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnBindIpi { vcpu, port });

/// `struct evtchn_close`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    /// IN.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnClose { port });

/// `struct evtchn_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    /// IN.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnSend { port });

/// `struct evtchn_unmask`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    /// IN.
    pub port: EvtchnPort,
}
guest_abi!(EvtchnUnmask { port });

/// `struct evtchn_bind_vcpu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    /// IN.
    pub port: EvtchnPort,
    /// IN.
    pub vcpu: u32,
}
guest_abi!(EvtchnBindVcpu { port, vcpu });

/// `struct evtchn_reset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnReset {
    /// IN.
    pub dom: DomId,
}
guest_abi!(EvtchnReset { dom });

/// `struct evtchn_status`. The `u` union is kept as two 32-bit words; use the accessors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// IN.
    pub dom: DomId,
    /// IN.
    pub port: EvtchnPort,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the channel is bound to.
    pub vcpu: u32,
    /// OUT: union `u` (`unbound.dom`, `interdomain.{dom,port}`, `pirq`, `virq`).
    pub u: [u32; 2],
}
guest_abi!(EvtchnStatus {
    dom,
    port,
    status,
    vcpu,
    u
});

impl EvtchnStatus {
    /// `u.unbound.dom` / `u.interdomain.dom` (low 16 bits of the first word).
    pub const fn remote_dom(&self) -> DomId {
        self.u[0] as DomId
    }
    /// `u.interdomain.port`.
    pub const fn remote_port(&self) -> EvtchnPort {
        self.u[1]
    }
    /// `u.pirq` / `u.virq`.
    pub const fn irq(&self) -> u32 {
        self.u[0]
    }
    /// Fills `u` for `EVTCHNSTAT_unbound`.
    pub fn set_unbound(&mut self, dom: DomId) {
        self.u = [u32::from(dom), 0];
    }
    /// Fills `u` for `EVTCHNSTAT_interdomain`.
    pub fn set_interdomain(&mut self, dom: DomId, port: EvtchnPort) {
        self.u = [u32::from(dom), port];
    }
    /// Fills `u` for `EVTCHNSTAT_pirq` / `EVTCHNSTAT_virq`.
    pub fn set_irq(&mut self, irq: u32) {
        self.u = [irq, 0];
    }
}

/// `struct evtchn_init_control` (FIFO ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnInitControl {
    /// IN: GFN of the control block page.
    pub control_gfn: u64,
    /// IN: offset of the control block in the page.
    pub offset: u32,
    /// IN.
    pub vcpu: u32,
    /// OUT.
    pub link_bits: u8,
    /// Padding.
    pub _pad: [u8; 7],
}
guest_abi!(EvtchnInitControl {
    control_gfn,
    offset,
    vcpu,
    link_bits,
    _pad
});

/// `struct evtchn_expand_array` (FIFO ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnExpandArray {
    /// IN.
    pub array_gfn: u64,
}
guest_abi!(EvtchnExpandArray { array_gfn });

/// `struct evtchn_set_priority` (FIFO ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSetPriority {
    /// IN.
    pub port: EvtchnPort,
    /// IN.
    pub priority: u32,
}
guest_abi!(EvtchnSetPriority { port, priority });

/// `struct evtchn_fifo_control_block`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnFifoControlBlock {
    /// Bitmap of ready queues.
    pub ready: u32,
    /// Reserved.
    pub _rsvd: u32,
    /// Queue heads by priority.
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}
guest_abi!(EvtchnFifoControlBlock { ready, _rsvd, head });

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<EvtchnAllocUnbound>() == 8);
const _: () = assert!(offset_of!(EvtchnAllocUnbound, remote_dom) == 2);
const _: () = assert!(offset_of!(EvtchnAllocUnbound, port) == 4);
const _: () = assert!(size_of::<EvtchnBindInterdomain>() == 12);
const _: () = assert!(offset_of!(EvtchnBindInterdomain, remote_port) == 4);
const _: () = assert!(offset_of!(EvtchnBindInterdomain, local_port) == 8);
const _: () = assert!(size_of::<EvtchnBindVirq>() == 12);
const _: () = assert!(offset_of!(EvtchnBindVirq, port) == 8);
const _: () = assert!(size_of::<EvtchnBindPirq>() == 12);
const _: () = assert!(size_of::<EvtchnBindIpi>() == 8);
const _: () = assert!(size_of::<EvtchnClose>() == 4);
const _: () = assert!(size_of::<EvtchnSend>() == 4);
const _: () = assert!(size_of::<EvtchnUnmask>() == 4);
const _: () = assert!(size_of::<EvtchnBindVcpu>() == 8);
const _: () = assert!(size_of::<EvtchnReset>() == 2);
const _: () = assert!(size_of::<EvtchnStatus>() == 24);
const _: () = assert!(offset_of!(EvtchnStatus, port) == 4);
const _: () = assert!(offset_of!(EvtchnStatus, status) == 8);
const _: () = assert!(offset_of!(EvtchnStatus, vcpu) == 12);
const _: () = assert!(offset_of!(EvtchnStatus, u) == 16);
const _: () = assert!(size_of::<EvtchnInitControl>() == 24);
const _: () = assert!(offset_of!(EvtchnInitControl, offset) == 8);
const _: () = assert!(offset_of!(EvtchnInitControl, link_bits) == 16);
const _: () = assert!(size_of::<EvtchnExpandArray>() == 8);
const _: () = assert!(size_of::<EvtchnSetPriority>() == 8);
const _: () = assert!(size_of::<EvtchnFifoControlBlock>() == 72);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;
    use crate::xen::{DOMID_SELF, VIRQ_TIMER};

    #[test]
    fn alloc_unbound_known_bytes() {
        let op = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0x0102_0304,
        };
        let b = op.to_vec();
        assert_eq!(b, [0xf0, 0x7f, 0, 0, 4, 3, 2, 1]);
        assert_eq!(EvtchnAllocUnbound::read_from(&b), Ok(op));
    }

    #[test]
    fn bind_ops_round_trip() {
        let v = EvtchnBindVirq {
            virq: VIRQ_TIMER,
            vcpu: 3,
            port: 9,
        };
        assert_eq!(EvtchnBindVirq::read_from(&v.to_vec()), Ok(v));
        let i = EvtchnBindInterdomain {
            remote_dom: 1,
            remote_port: 2,
            local_port: 3,
        };
        let b = i.to_vec();
        assert_eq!(b, [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(EvtchnBindInterdomain::read_from(&b), Ok(i));
        let ipi = EvtchnBindIpi { vcpu: 1, port: 2 };
        assert_eq!(EvtchnBindIpi::read_from(&ipi.to_vec()), Ok(ipi));
        let s = EvtchnSend { port: 77 };
        assert_eq!(EvtchnSend::read_from(&s.to_vec()), Ok(s));
        let c = EvtchnInitControl {
            control_gfn: 0xabc,
            offset: 0x40,
            vcpu: 1,
            link_bits: 17,
            _pad: [0; 7],
        };
        assert_eq!(EvtchnInitControl::read_from(&c.to_vec()), Ok(c));
    }

    #[test]
    fn status_union_views() {
        let mut s = EvtchnStatus {
            dom: DOMID_SELF,
            port: 5,
            status: EVTCHNSTAT_INTERDOMAIN,
            vcpu: 0,
            u: [0; 2],
        };
        s.set_interdomain(3, 17);
        let b = s.to_vec();
        assert_eq!(&b[16..24], &[3, 0, 0, 0, 17, 0, 0, 0]);
        let back = EvtchnStatus::read_from(&b).unwrap();
        assert_eq!((back.remote_dom(), back.remote_port()), (3, 17));
        s.set_irq(VIRQ_TIMER + 1);
        assert_eq!(s.irq(), 1);
        s.set_unbound(4);
        assert_eq!(s.remote_dom(), 4);
    }

    #[test]
    fn fifo_constants() {
        assert_eq!(EVTCHN_FIFO_NR_CHANNELS, 131_072);
        assert_eq!(EVTCHN_FIFO_LINK_MASK, 0x1_ffff);
    }
}
