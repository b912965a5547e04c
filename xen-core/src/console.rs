//! The hypervisor console as transactions see it: dom0's serial input ring (Xen's
//! `serial_rx_ring`, read with CONSOLEIO_read) and the console ring of the hypervisor's own
//! lines (Xen's `conring`, read with XEN_SYSCTL_readconsole).
//!
//! Both rings live outside the replica, on the hardware side. Their indices and contents
//! reach a handler as nondeterministic input (value kinds below): the leader reads them, the
//! follower replays the same words. A handler never moves an index itself: it emits a
//! [`ConsoleEffect`] carrying the new absolute index, applied once after commit.

use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvState};
use alloc::vec::Vec;
use lockstep::{Hasher, Value};

/// Size of dom0's serial input ring (Xen's `SERIAL_RX_SIZE`).
pub const SERIAL_RX_SIZE: u32 = 128;
/// Size of the hypervisor's console ring (Xen's default `conring_size`, 16 KiB).
pub const CONRING_SIZE: u32 = 16 * 1024;
/// Most bytes one XEN_SYSCTL_readconsole returns: every 8 ring bytes cost two input-log
/// words, and the log holds 4096. Callers reading incrementally (libxl's `xl dmesg`) loop
/// until a read returns nothing, so a short read only costs another call.
pub const READCONSOLE_MAX: u32 = 4096;
/// The vector of the interrupt request the runtime issues when serial input for dom0 has
/// arrived (COM1 is ISA IRQ 4); the transaction raises VIRQ_CONSOLE.
pub const CONSOLE_RX_VECTOR: u64 = 0x24;

/// Value kinds under which the rings reach a transaction.
pub mod value_kind {
    /// The serial input ring's indices: consumer in bits 0-31, producer in bits 32-63
    /// (free-running, as Xen's `serial_rx_cons`/`serial_rx_prod`).
    pub const RX_STATE: u32 = 0x50;
    /// Console ring indices: `conringc` in bits 0-31, `conringp` in bits 32-63.
    pub const CONRING_STATE: u32 = 0x51;
    /// Base of the serial input ring's words: `RX_WORD_BASE + i` is bytes `8i..8i+8` of the
    /// ring (little endian). Its top byte is its own among all value kinds (checked by a
    /// test against `crate::hv::value_kind`).
    pub const RX_WORD_BASE: u32 = 0x0400_0000;
    /// Base of the console ring's words, as [`RX_WORD_BASE`].
    pub const CONRING_WORD_BASE: u32 = 0x0500_0000;
}

/// A committed change of the hardware-side console rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleEffect {
    /// dom0 consumed serial input up to `cons` (the new `serial_rx_cons`).
    RxConsumed {
        /// The new consumer index.
        cons: u32,
    },
    /// XEN_SYSCTL_readconsole with `clear`: the console ring now starts at `c`.
    ConringClear {
        /// The new `conringc`.
        c: u32,
    },
}

impl Value for ConsoleEffect {
    fn digest(&self, h: &mut Hasher) {
        match self {
            ConsoleEffect::RxConsumed { cons } => {
                h.write_u8(1);
                cons.digest(h);
            }
            ConsoleEffect::ConringClear { c } => {
                h.write_u8(2);
                c.digest(h);
            }
        }
    }
    fn bit_len(&self) -> u64 {
        32
    }
    fn flip_bit(&mut self, bit: u64) {
        match self {
            ConsoleEffect::RxConsumed { cons: v } | ConsoleEffect::ConringClear { c: v } => {
                v.flip_bit(bit)
            }
        }
    }
}

/// Reads `len` bytes of a ring starting at ring offset `idx` (no wrap: the caller splits),
/// through the word values at `base`.
fn ring_bytes(
    ctx: &mut Ctx<'_, '_, '_>,
    base: u32,
    idx: u32,
    len: u32,
) -> Result<Vec<u8>, HvError> {
    let mut out = Vec::with_capacity(len as usize);
    let first = idx / 8;
    let last = (idx + len).div_ceil(8);
    for w in first..last {
        let word = ctx.value(base + w)?.to_le_bytes();
        for (i, b) in word.iter().enumerate() {
            let at = w * 8 + i as u32;
            if at >= idx && at < idx + len {
                out.push(*b);
            }
        }
    }
    Ok(out)
}

/// Splits the two halves of a `*_STATE` value.
fn indices(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// CONSOLEIO_read (Xen's `do_console_io`): copies up to `count` bytes of serial input to
/// `buffer`; returns the number copied, -E2BIG if `count` exceeds INT_MAX, -EFAULT if a copy
/// fails (input copied before the fault stays consumed, as in Xen).
pub fn read_input(ctx: &mut Ctx<'_, '_, '_>, count: u32, buffer: u64) -> Result<i64, HvError> {
    if count > i32::MAX as u32 {
        return Err(dom0_interface::errno::XenErrno::E2BIG.into());
    }
    let (start, prod) = indices(ctx.value(value_kind::RX_STATE)?);
    // The hardware never lets the producer run more than a ring ahead; trust nothing else.
    let mut cons = if prod.wrapping_sub(start) > SERIAL_RX_SIZE {
        prod.wrapping_sub(SERIAL_RX_SIZE)
    } else {
        start
    };
    let mut rc: u32 = 0;
    let mut fault = false;
    while cons != prod && rc < count {
        let idx = cons & (SERIAL_RX_SIZE - 1);
        let mut len = prod.wrapping_sub(cons);
        if idx + len > SERIAL_RX_SIZE {
            len = SERIAL_RX_SIZE - idx;
        }
        if rc + len > count {
            len = count - rc;
        }
        let bytes = ring_bytes(ctx, value_kind::RX_WORD_BASE, idx, len)?;
        match ctx.copy_to_guest(buffer.wrapping_add(u64::from(rc)), &bytes) {
            Ok(()) => {}
            Err(HvError::Errno(_)) => {
                fault = true;
                break;
            }
            Err(e) => return Err(e),
        }
        rc += len;
        cons = cons.wrapping_add(len);
    }
    if cons != start {
        ctx.emit(Effect::Console(ConsoleEffect::RxConsumed { cons }));
    }
    if fault {
        return Err(dom0_interface::errno::XenErrno::EFAULT.into());
    }
    Ok(i64::from(rc))
}

/// Serial input for dom0 arrived (Xen's `__serial_rx`): raise VIRQ_CONSOLE on its handler
/// domain (always, so the receive path cannot get stuck).
pub fn input_arrived(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    crate::evtchn::virq::send_global_virq(state, ctx, dom0_interface::xen::VIRQ_CONSOLE)?;
    Ok(())
}

/// What [`read_ring`] found: the bytes, and the index after them.
pub struct RingRead {
    /// The bytes, oldest first.
    pub data: Vec<u8>,
    /// The index after the last byte read.
    pub end: u32,
    /// `conringp` at the time of the read.
    pub prod: u32,
}

/// Xen's `read_console_ring` minus the copy: up to `max` bytes of the console ring, from
/// `conringc` or, if `incremental` and `index` lies in the valid window, from `index`.
pub fn read_ring(
    ctx: &mut Ctx<'_, '_, '_>,
    incremental: bool,
    index: u32,
    max: u32,
) -> Result<RingRead, HvError> {
    let (mut c, p) = indices(ctx.value(value_kind::CONRING_STATE)?);
    if p.wrapping_sub(c) > CONRING_SIZE {
        c = p.wrapping_sub(CONRING_SIZE);
    }
    let in_window = if c <= p {
        c < index && index <= p
    } else {
        c < index || index <= p
    };
    if incremental && in_window {
        c = index;
    }
    let mut data = Vec::new();
    let max = max.min(READCONSOLE_MAX);
    while c != p && (data.len() as u32) < max {
        let idx = c & (CONRING_SIZE - 1);
        let mut len = p.wrapping_sub(c);
        if idx + len > CONRING_SIZE {
            len = CONRING_SIZE - idx;
        }
        let sofar = data.len() as u32;
        if sofar + len > max {
            len = max - sofar;
        }
        data.extend(ring_bytes(ctx, value_kind::CONRING_WORD_BASE, idx, len)?);
        c = c.wrapping_add(len);
    }
    Ok(RingRead {
        data,
        end: c,
        prod: p,
    })
}

/// The `conringc` a clearing read leaves (Xen: `p - c > size ? p - size : c`).
pub fn cleared_start(end: u32, prod: u32) -> u32 {
    if prod.wrapping_sub(end) > CONRING_SIZE {
        prod.wrapping_sub(CONRING_SIZE)
    } else {
        end
    }
}

/// Test support: queues a ring's state and words as the input a handler will read.
#[cfg(test)]
pub(crate) fn queue_ring(
    mem: &mut crate::hypercall::testing::FakeMem,
    state_kind: u32,
    word_base: u32,
    ring: &[u8],
    c: u32,
    p: u32,
) {
    mem.values
        .entry(state_kind)
        .or_default()
        .push_back(u64::from(c) | (u64::from(p) << 32));
    for (i, w) in ring.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        mem.values
            .entry(word_base + i as u32)
            .or_default()
            .push_back(u64::from_le_bytes(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleared_start_keeps_at_most_one_ring() {
        assert_eq!(cleared_start(10, 20), 10);
        assert_eq!(cleared_start(0, CONRING_SIZE + 5), 5);
        assert_eq!(cleared_start(u32::MAX - 1, 3), u32::MAX - 1);
    }

    fn console_interrupt(h: &mut crate::hypercall::testing::Harness) -> Vec<Effect> {
        let req = crate::request::Request::exit(
            crate::request::ExitKind::Interrupt,
            dom0_interface::xen::DOMID_IDLE,
            1,
            crate::request::GuestRegs::default(),
            CONSOLE_RX_VECTOR,
            0,
            0,
        );
        h.run(req).effects
    }

    #[test]
    fn input_raises_virq_console_on_dom0_once_bound() {
        use dom0_interface::event_channel::{EvtchnBindVirq, EVTCHNOP_BIND_VIRQ};
        use dom0_interface::guest_abi::GuestAbi;
        let mut h = crate::hypercall::testing::Harness::dom0();
        assert!(
            console_interrupt(&mut h).is_empty(),
            "unbound: dropped, and no scheduler tick either"
        );
        let b = EvtchnBindVirq {
            virq: dom0_interface::xen::VIRQ_CONSOLE,
            vcpu: 0,
            port: 0,
        };
        let mut raw = [0u8; 12];
        b.write_to(&mut raw).expect("fits");
        h.mem.map(0x3000, &raw);
        let r = h.hypercall(
            u64::from(dom0_interface::xen::HYPERVISOR_EVENT_CHANNEL_OP),
            [u64::from(EVTCHNOP_BIND_VIRQ), 0x3000, 0, 0, 0],
        );
        assert_eq!(r.ret, 0);
        let fx = console_interrupt(&mut h);
        assert!(!fx.is_empty());
        assert!(
            fx.iter().all(|e| matches!(e, Effect::Evtchn(_))),
            "only event delivery: {fx:?}"
        );
    }

    struct Cycles(core::cell::Cell<u64>);
    impl lockstep::role::Clock for Cycles {
        fn now(&self) -> u64 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
    }

    /// Leader and follower run CONSOLEIO_read over the same recorded input: they agree, the
    /// transaction commits once, and both replicas end identical.
    #[test]
    fn a_read_commits_under_lockstep_with_identical_replicas() {
        use crate::hypercall::testing::FakeMem;
        use lockstep::role::Role;
        let mut st = HvState::new();
        let mut j = lockstep::Journal::new();
        j.begin(1);
        crate::hv::create_domain(&mut st, &mut j, 0, true, 1, 1024).expect("dom0");
        lockstep::replica::forget(&mut st);
        let mut engine =
            lockstep::Engine::<crate::hv::Xen>::new(lockstep::Config::default(), st.clone(), st)
                .expect("engine");
        let mut mem = FakeMem::default();
        let mut ring = [0u8; SERIAL_RX_SIZE as usize];
        ring[10..14].copy_from_slice(b"ls\r\n");
        queue_ring(
            &mut mem,
            value_kind::RX_STATE,
            value_kind::RX_WORD_BASE,
            &ring,
            10,
            14,
        );
        mem.map(0x5000, &[0u8; 32]);
        let regs = crate::request::GuestRegs {
            rax: u64::from(dom0_interface::xen::HYPERVISOR_CONSOLE_IO),
            rdi: 1,
            rsi: 32,
            rdx: 0x5000,
            ..Default::default()
        };
        let req = crate::request::Request::hypercall(0, 0, regs).to_words();
        let mut committed: Vec<Effect> = Vec::new();
        let out = engine.run_local(
            &req,
            &mut mem,
            &Cycles(core::cell::Cell::new(0)),
            &mut |e: &[Effect]| committed.extend_from_slice(e),
        );
        assert_eq!(out.result, lockstep::TxResult::Committed);
        assert_eq!(out.attempts, 1);
        assert!(committed.contains(&Effect::WriteGuest {
            addr: 0x5000,
            data: b"ls\r\n".to_vec()
        }));
        assert!(committed.contains(&Effect::Console(ConsoleEffect::RxConsumed { cons: 14 })));
        assert!(committed.contains(&Effect::Return(4)));
        assert_eq!(
            lockstep::replica::full_digest(engine.replica(Role::Leader)),
            lockstep::replica::full_digest(engine.replica(Role::Follower))
        );
    }

    #[test]
    fn every_effect_bit_flip_is_detected() {
        for e in [
            ConsoleEffect::RxConsumed { cons: 7 },
            ConsoleEffect::ConringClear { c: 9 },
        ] {
            let mut h = Hasher::new();
            e.digest(&mut h);
            let d = h.finish();
            for bit in 0..e.bit_len() {
                let mut f = e.clone();
                f.flip_bit(bit);
                let mut h = Hasher::new();
                f.digest(&mut h);
                assert_ne!(h.finish(), d);
            }
        }
        let mut a = Hasher::new();
        ConsoleEffect::RxConsumed { cons: 1 }.digest(&mut a);
        let mut b = Hasher::new();
        ConsoleEffect::ConringClear { c: 1 }.digest(&mut b);
        assert_ne!(a.finish(), b.finish());
    }
}
