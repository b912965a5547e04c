//! `XEN_SYSCTL_readconsole` (Xen's `read_console_ring`): the hypervisor's console ring for
//! `xl dmesg`, with Xen's clear, incremental and index semantics. The ring's indices and
//! bytes come from the input (`crate::console`); clearing is an effect.
//! `hypercall::sysctl` dispatches the sub-op here.

use crate::console::{cleared_start, read_ring, ConsoleEffect};
use crate::effect::Effect;
use crate::hv::{Ctx, HvResult};
use dom0_interface::sysctl::XenSysctlReadconsole;

/// Serves `op` (Xen's `read_console_ring`): copies the ring to `op.buffer`, sets `op.count`
/// to the bytes copied and `op.index` to the index after them; with `clear`, the ring then
/// starts there. -EFAULT if the buffer is not writable (nothing cleared).
pub fn readconsole(ctx: &mut Ctx<'_, '_, '_>, op: &mut XenSysctlReadconsole) -> HvResult {
    let read = read_ring(ctx, op.incremental != 0, op.index, op.count)?;
    ctx.copy_to_guest(op.buffer, &read.data)?;
    if op.clear != 0 {
        ctx.emit(Effect::Console(ConsoleEffect::ConringClear {
            c: cleared_start(read.end, read.prod),
        }));
    }
    op.count = read.data.len() as u32;
    op.index = read.end;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::console::{queue_ring, value_kind, ConsoleEffect, CONRING_SIZE};
    use crate::effect::Effect;
    use crate::hypercall::testing::{Harness, Outcome};
    use dom0_interface::guest_abi::GuestAbi;
    use dom0_interface::sysctl::{XenSysctlReadconsole, XEN_SYSCTL_INTERFACE_VERSION};
    use dom0_interface::xen::HYPERVISOR_SYSCTL as NR;

    const ARG: u64 = 0x4000;
    const BUF: u64 = 0x8000;

    fn ring_with(text: &[u8], at: u32) -> alloc::vec::Vec<u8> {
        let mut ring = alloc::vec![0u8; CONRING_SIZE as usize];
        for (i, b) in text.iter().enumerate() {
            ring[(at as usize + i) % CONRING_SIZE as usize] = *b;
        }
        ring
    }

    fn call(h: &mut Harness, op: XenSysctlReadconsole, version: u32) -> Outcome {
        let mut raw = [0u8; 136];
        raw[0..4].copy_from_slice(&1u32.to_le_bytes());
        raw[4..8].copy_from_slice(&version.to_le_bytes());
        op.write_to(&mut raw[8..]).expect("fits");
        h.mem.map(ARG, &raw);
        h.hypercall(u64::from(NR), [ARG, 0, 0, 0, 0])
    }

    fn result(h: &Harness) -> XenSysctlReadconsole {
        let raw: alloc::vec::Vec<u8> = (0..128).map(|i| h.mem.bytes[&(ARG + 8 + i)]).collect();
        XenSysctlReadconsole::read_from(&raw).expect("reads")
    }

    fn copied(h: &Harness, n: u64) -> alloc::vec::Vec<u8> {
        (0..n).map(|i| h.mem.bytes[&(BUF + i)]).collect()
    }

    fn op(count: u32) -> XenSysctlReadconsole {
        XenSysctlReadconsole {
            buffer: BUF,
            count,
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_ring_from_its_start() {
        let mut h = Harness::dom0();
        let text = b"(XEN) Xen version 4.17\n(XEN) second line\n";
        queue_ring(
            &mut h.mem,
            value_kind::CONRING_STATE,
            value_kind::CONRING_WORD_BASE,
            &ring_with(text, 0),
            0,
            text.len() as u32,
        );
        h.mem.map(BUF, &[0u8; 256]);
        let r = call(&mut h, op(256), XEN_SYSCTL_INTERFACE_VERSION);
        assert_eq!(r.ret, 0);
        let out = result(&h);
        assert_eq!(out.count as usize, text.len());
        assert_eq!(out.index as usize, text.len());
        assert_eq!(copied(&h, text.len() as u64), text);
        assert!(!r.effects.iter().any(|e| matches!(e, Effect::Console(_))));
    }

    #[test]
    fn incremental_reads_resume_at_index_and_wrap() {
        let mut h = Harness::dom0();
        // The ring wrapped: c = 100, p = CONRING_SIZE + 10; the text straddles the end.
        let at = CONRING_SIZE - 6;
        let text = b"abcdefghijklmnop";
        let ring = ring_with(text, at);
        let p = CONRING_SIZE + 10;
        queue_ring(
            &mut h.mem,
            value_kind::CONRING_STATE,
            value_kind::CONRING_WORD_BASE,
            &ring,
            100,
            p,
        );
        h.mem.map(BUF, &[0u8; 64]);
        let mut o = op(64);
        o.incremental = 1;
        o.index = at;
        call(&mut h, o, XEN_SYSCTL_INTERFACE_VERSION);
        let out = result(&h);
        assert_eq!(out.count, 16);
        assert_eq!(out.index, p);
        assert_eq!(copied(&h, 16), text);
    }

    #[test]
    fn an_index_outside_the_window_reads_from_the_start() {
        let mut h = Harness::dom0();
        let text = b"0123456789";
        queue_ring(
            &mut h.mem,
            value_kind::CONRING_STATE,
            value_kind::CONRING_WORD_BASE,
            &ring_with(text, 0),
            0,
            10,
        );
        h.mem.map(BUF, &[0u8; 16]);
        let mut o = op(4);
        o.incremental = 1;
        o.index = 50;
        call(&mut h, o, XEN_SYSCTL_INTERFACE_VERSION);
        let out = result(&h);
        assert_eq!((out.count, out.index), (4, 4));
        assert_eq!(copied(&h, 4), b"0123");
    }

    #[test]
    fn clear_moves_the_start_to_what_was_read() {
        let mut h = Harness::dom0();
        let text = b"0123456789";
        queue_ring(
            &mut h.mem,
            value_kind::CONRING_STATE,
            value_kind::CONRING_WORD_BASE,
            &ring_with(text, 0),
            0,
            10,
        );
        h.mem.map(BUF, &[0u8; 16]);
        let mut o = op(6);
        o.clear = 1;
        let r = call(&mut h, o, XEN_SYSCTL_INTERFACE_VERSION);
        assert!(r
            .effects
            .contains(&Effect::Console(ConsoleEffect::ConringClear { c: 6 })));
    }

    #[test]
    fn errors_match_do_sysctl() {
        let mut h = Harness::dom0();
        assert_eq!(
            call(&mut h, op(16), 0x14).ret,
            -13,
            "wrong interface version"
        );
        assert_eq!(h.hypercall(u64::from(NR), [0x10, 0, 0, 0, 0]).ret, -14);
        // Unwritable destination: -EFAULT, nothing cleared.
        queue_ring(
            &mut h.mem,
            value_kind::CONRING_STATE,
            value_kind::CONRING_WORD_BASE,
            &ring_with(b"x", 0),
            0,
            1,
        );
        let mut o = op(16);
        o.buffer = 0xdead_0000;
        o.clear = 1;
        let r = call(&mut h, o, XEN_SYSCTL_INTERFACE_VERSION);
        assert_eq!(r.ret, -14);
        assert!(!r.effects.iter().any(|e| matches!(e, Effect::Console(_))));
        let mut d = Harness::domu(4);
        assert_eq!(call(&mut d, op(16), XEN_SYSCTL_INTERFACE_VERSION).ret, -1);
    }

    #[test]
    fn one_call_returns_at_most_readconsole_max() {
        let mut h = Harness::dom0();
        let text = alloc::vec![b'z'; 6000];
        queue_ring(
            &mut h.mem,
            value_kind::CONRING_STATE,
            value_kind::CONRING_WORD_BASE,
            &ring_with(&text, 0),
            0,
            6000,
        );
        h.mem.map(BUF, &alloc::vec![0u8; 8192]);
        call(&mut h, op(8192), XEN_SYSCTL_INTERFACE_VERSION);
        let out = result(&h);
        assert_eq!(out.count, crate::console::READCONSOLE_MAX);
        assert_eq!(out.index, crate::console::READCONSOLE_MAX);
    }
}
