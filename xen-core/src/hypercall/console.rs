//! `console_io`: a privileged domain writes to the hypervisor console and reads the serial
//! input meant for it (`crate::console` holds the input ring's side).

use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use dom0_interface::errno::XenErrno;
use dom0_interface::xen::{CONSOLEIO_READ, CONSOLEIO_WRITE};

/// Bytes copied per chunk (Xen copies 128 at a time; output before a fault is kept).
const CHUNK: usize = 128;
/// Bytes handled per transaction before the call continues itself (Xen's preemption).
const PER_CALL: u64 = 16 * 1024;

/// `console_io(cmd, count, buffer)`.
pub fn console_io(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, count, buffer, ..] = ctx.req.args;
    // XSM's default: only a privileged (or console) domain may use the hypervisor console.
    if !super::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    match cmd as u32 {
        CONSOLEIO_WRITE => write(ctx, u64::from(count as u32), buffer),
        CONSOLEIO_READ => crate::console::read_input(ctx, count as u32, buffer),
        _ => super::unknown_subop(state, ctx, "console_io", cmd),
    }
}

fn write(ctx: &mut Ctx<'_, '_, '_>, count: u64, buffer: u64) -> HvResult {
    let now = count.min(PER_CALL);
    let mut done = 0u64;
    let mut buf = [0u8; CHUNK];
    while done < now {
        let n = (now - done).min(CHUNK as u64) as usize;
        ctx.copy_from_guest(buffer.wrapping_add(done), &mut buf[..n])?;
        ctx.emit(Effect::ConsoleWrite {
            dom: ctx.dom(),
            data: buf[..n].to_vec(),
        });
        done += n as u64;
    }
    if count > now {
        let a = ctx.req.args;
        ctx.emit(Effect::Continue([
            a[0],
            count - now,
            buffer.wrapping_add(now),
            a[3],
            a[4],
        ]));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::console::ConsoleEffect;
    use crate::effect::Effect;
    use crate::hypercall::testing::Harness;
    use dom0_interface::xen::HYPERVISOR_CONSOLE_IO as NR;

    fn written(effects: &[Effect]) -> alloc::vec::Vec<u8> {
        effects
            .iter()
            .filter_map(|e| {
                if let Effect::ConsoleWrite { data, .. } = e {
                    Some(data.clone())
                } else {
                    None
                }
            })
            .flatten()
            .collect()
    }

    #[test]
    fn dom0_writes_reach_the_console() {
        let mut h = Harness::dom0();
        let text = b"Hello from dom0, more than one chunk of text: ".repeat(5);
        h.mem.map(0x1000, &text);
        let r = h.hypercall(u64::from(NR), [0, text.len() as u64, 0x1000, 0, 0]);
        assert_eq!(r.ret, 0);
        assert_eq!(written(&r.effects), text);
    }

    #[test]
    fn bad_buffer_is_efault_and_keeps_what_was_written() {
        let mut h = Harness::dom0();
        h.mem.map(0x1000, &[b'x'; 128]);
        let r = h.hypercall(u64::from(NR), [0, 200, 0x1000, 0, 0]);
        assert_eq!(r.ret, -14);
        assert_eq!(written(&r.effects).len(), 128);
        let r = h.hypercall(u64::from(NR), [0, 5, 0, 0, 0]);
        assert_eq!(r.ret, -14);
    }

    #[test]
    fn domu_is_refused_and_unknown_cmd_is_enosys() {
        let mut h = Harness::domu(3);
        h.mem.map(0x1000, b"hi");
        assert_eq!(h.hypercall(u64::from(NR), [0, 2, 0x1000, 0, 0]).ret, -1);
        let mut h = Harness::dom0();
        assert_eq!(h.hypercall(u64::from(NR), [0x7fff, 0, 0, 0, 0]).ret, -38);
    }

    fn queue_input(h: &mut Harness, ring: &[u8], cons: u32, prod: u32) {
        crate::console::queue_ring(
            &mut h.mem,
            crate::console::value_kind::RX_STATE,
            crate::console::value_kind::RX_WORD_BASE,
            ring,
            cons,
            prod,
        );
    }

    fn consumed(effects: &[Effect]) -> Option<u32> {
        effects.iter().find_map(|e| match e {
            Effect::Console(ConsoleEffect::RxConsumed { cons }) => Some(*cons),
            _ => None,
        })
    }

    #[test]
    fn read_copies_waiting_input_and_consumes_it() {
        let mut h = Harness::dom0();
        let mut ring = [0u8; 128];
        ring[..6].copy_from_slice(b"hello\r");
        queue_input(&mut h, &ring, 0, 6);
        h.mem.map(0x2000, &[0u8; 64]);
        let r = h.hypercall(u64::from(NR), [1, 64, 0x2000, 0, 0]);
        assert_eq!(r.ret, 6);
        assert_eq!(consumed(&r.effects), Some(6));
        let got: alloc::vec::Vec<u8> = (0..6).map(|i| h.mem.bytes[&(0x2000 + i)]).collect();
        assert_eq!(got, b"hello\r");
    }

    #[test]
    fn read_wraps_the_ring_and_stops_at_count() {
        let mut h = Harness::dom0();
        let mut ring = [0u8; 128];
        ring[126] = b'a';
        ring[127] = b'b';
        ring[0] = b'c';
        ring[1] = b'd';
        // Two chunks (wrap), limited to 3 bytes.
        queue_input(&mut h, &ring, 126, 130);
        queue_input(&mut h, &ring, 126, 130);
        h.mem.map(0x2000, &[0u8; 8]);
        let r = h.hypercall(u64::from(NR), [1, 3, 0x2000, 0, 0]);
        assert_eq!(r.ret, 3);
        assert_eq!(consumed(&r.effects), Some(129));
        let got: alloc::vec::Vec<u8> = (0..3).map(|i| h.mem.bytes[&(0x2000 + i)]).collect();
        assert_eq!(got, b"abc");
    }

    #[test]
    fn read_without_input_returns_zero_and_consumes_nothing() {
        let mut h = Harness::dom0();
        queue_input(&mut h, &[0u8; 128], 40, 40);
        let r = h.hypercall(u64::from(NR), [1, 16, 0x2000, 0, 0]);
        assert_eq!(r.ret, 0);
        assert_eq!(consumed(&r.effects), None);
    }

    #[test]
    fn read_error_cases_match_xen() {
        let mut h = Harness::dom0();
        // count > INT_MAX: -E2BIG before anything is read.
        let r = h.hypercall(u64::from(NR), [1, 0x8000_0000, 0x2000, 0, 0]);
        assert_eq!(r.ret, -7);
        // Unwritable buffer: -EFAULT, nothing consumed.
        let mut ring = [0u8; 128];
        ring[0] = b'x';
        queue_input(&mut h, &ring, 0, 1);
        let r = h.hypercall(u64::from(NR), [1, 16, 0x9000, 0, 0]);
        assert_eq!(r.ret, -14);
        assert_eq!(consumed(&r.effects), None);
        // A domU is refused (XSM dummy: privileged only).
        let mut h = Harness::domu(2);
        h.mem.map(0x2000, &[0u8; 8]);
        assert_eq!(h.hypercall(u64::from(NR), [1, 8, 0x2000, 0, 0]).ret, -1);
    }

    #[test]
    fn long_writes_continue_themselves() {
        let mut h = Harness::dom0();
        let text = alloc::vec![b'a'; 40 * 1024];
        h.mem.map(0x10_0000, &text);
        let r = h.hypercall(u64::from(NR), [0, text.len() as u64, 0x10_0000, 0, 0]);
        assert_eq!(written(&r.effects).len(), 16 * 1024);
        assert!(r.effects.contains(&Effect::Continue([
            0,
            24 * 1024,
            0x10_0000 + 16 * 1024,
            0,
            0
        ])));
    }
}
