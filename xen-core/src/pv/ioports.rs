//! Which I/O ports a domain's emulated port accesses reach: Xen's per-domain `ioport_caps`
//! and `admin_io_okay`. The hardware domain may use every port except those the hypervisor
//! drives itself; other domains none. An access that touches a port the domain may not use
//! reads all ones and writes nothing (Xen's `guest_io_read`/`guest_io_write`), measured on Xen
//! 4.17 under QEMU with `console=com1`: the PICs, PIT channels 0-1 and COM1 read 0xff.

use crate::effect::DomId;
use crate::hv::HvState;

/// Port ranges (inclusive) the hardware domain may not use, as Xen 4.17 denies them
/// (`dom0_setup_permissions`; `ns16550_endboot` for the console UART): the master and slave
/// PIC, PIT channels 0-1, and COM1 (0x3f8, the console DualVisor drives). Xen denies PIT
/// channel 2 / the speaker gate (0x42, 0x43, 0x61) and PCI configuration data (0xcfc-0xcff)
/// as well but emulates them for the hardware domain; here they reach the hardware.
pub const DOM0_DENIED_PORTS: [(u16, u16); 4] =
    [(0x20, 0x21), (0x40, 0x41), (0xa0, 0xa1), (0x3f8, 0x3ff)];

/// `admin_io_okay`: whether an access of `size` bytes at `port` by `dom` reaches the
/// hardware (every byte of it permitted).
pub fn admin_io_okay(state: &HvState, dom: DomId, port: u16, size: u8) -> bool {
    if !crate::hypercall::is_privileged(state, dom) {
        return false;
    }
    let first = u32::from(port);
    let last = first + u32::from(size.max(1)) - 1;
    !DOM0_DENIED_PORTS
        .iter()
        .any(|&(s, e)| first <= u32::from(e) && last >= u32::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::testing::Harness;

    #[test]
    fn dom0_is_denied_the_hypervisors_ports_and_a_domu_everything() {
        let h = Harness::dom0();
        for (port, size) in [
            (0x3f8, 1),
            (0x3fd, 1),
            (0x3f7, 2),
            (0x21, 1),
            (0x40, 4),
            (0xa1, 1),
        ] {
            assert!(!admin_io_okay(&h.state, 0, port, size), "{port:#x}/{size}");
        }
        for (port, size) in [
            (0x3f7, 1),
            (0x80, 1),
            (0xcf8, 4),
            (0xcfc, 4),
            (0x42, 1),
            (0x70, 1),
        ] {
            assert!(admin_io_okay(&h.state, 0, port, size), "{port:#x}/{size}");
        }
        let u = Harness::domu(1);
        assert!(!admin_io_okay(&u.state, 1, 0x80, 1));
    }
}
