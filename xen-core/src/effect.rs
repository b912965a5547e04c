//! Effects: everything a handler wants done outside the replica (guest registers and memory,
//! console output, scheduling). Buffered during a transaction and applied once, after commit.

use alloc::vec::Vec;
use lockstep::{Hasher, Value};

/// Domain identifier (`domid_t`).
pub type DomId = u16;

/// One effect of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Set the calling vCPU's RAX (the hypercall's return value).
    Return(i64),
    /// Write `data` to guest virtual address `addr` of the calling vCPU (copy_to_guest);
    /// the address was probed writable during the transaction.
    WriteGuest {
        /// Guest virtual address.
        addr: u64,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Write `value` at machine address `maddr` (8-byte aligned): a validated page-table entry
    /// or another hypervisor-managed word of guest-owned memory.
    WriteMachine {
        /// Machine address.
        maddr: u64,
        /// The new 64-bit value.
        value: u64,
    },
    /// Text a domain wrote with console_io, for the hypervisor console.
    ConsoleWrite {
        /// The writer.
        dom: DomId,
        /// The bytes (not NUL-terminated).
        data: Vec<u8>,
    },
    /// A line for the hypervisor log (e.g. a rate-limited "unknown hypercall").
    Log(Vec<u8>),
    /// Hypercall continuation: re-issue the same hypercall with these arguments (the guest
    /// re-executes its SYSCALL; RAX keeps the hypercall number).
    Continue([u64; 5]),
    /// Replace the calling vCPU's registers (a bounce into a guest handler, `iret`).
    SetRegs(crate::request::GuestRegs),
    /// A scheduling, timer or time action (run a vCPU, arm a CPU's timer, VIRQ_TIMER, ...).
    Sched(crate::sched::SchedEffect),
    /// An event-channel action on a domain's shared_info page (deliver, unmask, clear) or a
    /// vCPU entering SCHEDOP_poll.
    Evtchn(crate::evtchn::EvtchnEffect),
    /// Kill the calling domain: it crashed in a way it cannot handle (e.g. no trap handler).
    DomainCrash {
        /// The domain.
        dom: DomId,
    },
    /// The calling vCPU yields its physical CPU.
    Yield,
    /// The calling vCPU blocks until an event is pending for it.
    Block,
    /// Domain `dom` has shut down with `reason` (SHUTDOWN_*).
    DomainShutdown {
        /// The domain.
        dom: DomId,
        /// SHUTDOWN_* reason.
        reason: u32,
    },
    /// A memory-management effect (TLB flush, CR3 load, frame contents, frame ownership).
    Mm(MmEffect),
    /// Domain `dom` was destroyed (XEN_DOMCTL_destroydomain): the runtime drops its vCPUs.
    DomainDestroyed {
        /// The domain.
        dom: DomId,
    },
    /// A PV CPU-state effect (guest mode, vcpu_info mask/CR2, segment bases, FPU, debug
    /// registers, port output, GDT).
    Pv(crate::pv::effect::PvEffect),
    /// A console-ring index moved (serial input consumed, console ring cleared).
    Console(crate::console::ConsoleEffect),
    /// Control the lockstep engine (on, off, arm injections): applied after commit, so at a
    /// transaction boundary (DualVisor's lockstep sysctl).
    Lockstep(crate::hypercall::lockstep_ctl::LockstepOp),
    /// Program a GSI's I/O APIC pin (signalling, mask) for the guests bound to it.
    Gsi(crate::pirq::GsiEffect),
}

/// Memory-management effects (PV MMU: TLB, CR3, LDT, frame contents and frame ownership).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmEffect {
    /// Flush TLBs of `dom`'s vCPUs: `vcpus` None means every vCPU of the domain; `va` Some
    /// flushes that one page only (INVLPG), None the whole TLB.
    FlushTlb {
        /// The domain.
        dom: DomId,
        /// Which vCPUs (their physical CPUs): None for all.
        vcpus: Option<Vec<u32>>,
        /// One page, or everything.
        va: Option<u64>,
    },
    /// The calling vCPU's page-table bases changed: load `kernel` (or `user` in user mode)
    /// into CR3. Machine addresses; `user` 0 means none.
    SetCr3 {
        /// Kernel L4 (machine address).
        kernel: u64,
        /// User L4 (machine address, 0: none).
        user: u64,
    },
    /// Write the hypervisor's L4 slots 256..=271 into the new root table `mfn`; slot 256
    /// (the read-only M2P) present iff `ro_m2p`.
    XenL4Slots {
        /// The L4 frame.
        mfn: u64,
        /// Map the read-only M2P table in slot 256.
        ro_m2p: bool,
    },
    /// Load the calling vCPU's LDT from `base` (guest virtual) with `ents` entries.
    LoadLdt {
        /// Base address.
        base: u64,
        /// Entries (0: no LDT).
        ents: u32,
    },
    /// Zero machine frame `mfn`.
    ClearPage {
        /// The frame.
        mfn: u64,
    },
    /// Copy machine frame `src` to `dst`.
    CopyPage {
        /// Destination frame.
        dst: u64,
        /// Source frame.
        src: u64,
    },
    /// Write back and invalidate caches (MMUEXT_FLUSH_CACHE[_GLOBAL]).
    FlushCache,
    /// These frames lost their last reference: return them to the allocator.
    FreeFrames(Vec<u64>),
    /// The frames the transaction took from the allocator (`value_kind::ALLOC_FRAME`) now
    /// belong to `dom`.
    FramesAllocated {
        /// The new owner.
        dom: DomId,
        /// The frames.
        mfns: Vec<u64>,
    },
    /// Write M2P entry `mfn` (the table guests read at 0xFFFF800000000000) as `pfn`
    /// (`!0`: invalid).
    SetM2p {
        /// The frame.
        mfn: u64,
        /// Its pfn.
        pfn: u64,
    },
    /// Atomically set then clear bits of the aligned 64-bit word at `maddr` of a guest-shared
    /// frame (a grant entry's `GTF_reading`/`GTF_writing` in-use bits): `word |= set`, then
    /// `word &= !clear`, each bit with one atomic operation so a guest's concurrent cmpxchg on
    /// the same entry sees either state.
    AtomicBits {
        /// Machine address (8-byte aligned).
        maddr: u64,
        /// Bits to set.
        set: u64,
        /// Bits to clear.
        clear: u64,
    },
    /// Copy `len` bytes from machine address `src` to `dst` (a grant copy; both ranges lie
    /// inside one frame each, checked by the handler).
    CopyBytes {
        /// Destination machine address.
        dst: u64,
        /// Source machine address.
        src: u64,
        /// Bytes (at most 4096).
        len: u16,
    },
}

impl MmEffect {
    fn tag(&self) -> u8 {
        match self {
            MmEffect::FlushTlb { .. } => 1,
            MmEffect::SetCr3 { .. } => 2,
            MmEffect::XenL4Slots { .. } => 3,
            MmEffect::LoadLdt { .. } => 4,
            MmEffect::ClearPage { .. } => 5,
            MmEffect::CopyPage { .. } => 6,
            MmEffect::FlushCache => 7,
            MmEffect::FreeFrames(_) => 8,
            MmEffect::FramesAllocated { .. } => 9,
            MmEffect::SetM2p { .. } => 10,
            MmEffect::AtomicBits { .. } => 11,
            MmEffect::CopyBytes { .. } => 12,
        }
    }
}

impl Value for MmEffect {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.tag());
        match self {
            MmEffect::FlushTlb { dom, vcpus, va } => (*dom, vcpus.clone(), *va).digest(h),
            MmEffect::SetCr3 { kernel, user } => (*kernel, *user).digest(h),
            MmEffect::XenL4Slots { mfn, ro_m2p } => (*mfn, *ro_m2p).digest(h),
            MmEffect::LoadLdt { base, ents } => (*base, *ents).digest(h),
            MmEffect::ClearPage { mfn } => mfn.digest(h),
            MmEffect::CopyPage { dst, src } => (*dst, *src).digest(h),
            MmEffect::FlushCache => {}
            MmEffect::FreeFrames(m) => m.digest(h),
            MmEffect::FramesAllocated { dom, mfns } => (*dom, mfns.clone()).digest(h),
            MmEffect::SetM2p { mfn, pfn } => (*mfn, *pfn).digest(h),
            MmEffect::AtomicBits { maddr, set, clear } => (*maddr, *set, *clear).digest(h),
            MmEffect::CopyBytes { dst, src, len } => (*dst, *src, *len).digest(h),
        }
    }

    fn bit_len(&self) -> u64 {
        match self {
            MmEffect::FlushTlb { dom, vcpus, va } => dom.bit_len() + vcpus.bit_len() + va.bit_len(),
            MmEffect::SetCr3 { kernel, user } => kernel.bit_len() + user.bit_len(),
            MmEffect::XenL4Slots { mfn, ro_m2p } => mfn.bit_len() + ro_m2p.bit_len(),
            MmEffect::LoadLdt { base, ents } => base.bit_len() + ents.bit_len(),
            MmEffect::ClearPage { mfn } => mfn.bit_len(),
            MmEffect::CopyPage { dst, src } => dst.bit_len() + src.bit_len(),
            MmEffect::FlushCache => 0,
            MmEffect::FreeFrames(m) => m.bit_len(),
            MmEffect::FramesAllocated { dom, mfns } => dom.bit_len() + mfns.bit_len(),
            MmEffect::SetM2p { mfn, pfn } => mfn.bit_len() + pfn.bit_len(),
            MmEffect::AtomicBits { maddr, set, clear } => {
                maddr.bit_len() + set.bit_len() + clear.bit_len()
            }
            MmEffect::CopyBytes { dst, src, len } => dst.bit_len() + src.bit_len() + len.bit_len(),
        }
    }

    fn flip_bit(&mut self, bit: u64) {
        fn pair<A: Value, B: Value>(a: &mut A, b: &mut B, bit: u64) {
            let n = a.bit_len();
            if bit < n {
                a.flip_bit(bit);
            } else {
                b.flip_bit(bit - n);
            }
        }
        match self {
            MmEffect::FlushTlb { dom, vcpus, va } => {
                let n = dom.bit_len();
                if bit < n {
                    dom.flip_bit(bit);
                } else {
                    pair(vcpus, va, bit - n);
                }
            }
            MmEffect::SetCr3 { kernel, user } => pair(kernel, user, bit),
            MmEffect::XenL4Slots { mfn, ro_m2p } => pair(mfn, ro_m2p, bit),
            MmEffect::LoadLdt { base, ents } => pair(base, ents, bit),
            MmEffect::ClearPage { mfn } => mfn.flip_bit(bit),
            MmEffect::CopyPage { dst, src } => pair(dst, src, bit),
            MmEffect::FlushCache => {}
            MmEffect::FreeFrames(m) => m.flip_bit(bit),
            MmEffect::FramesAllocated { dom, mfns } => pair(dom, mfns, bit),
            MmEffect::SetM2p { mfn, pfn } => pair(mfn, pfn, bit),
            MmEffect::AtomicBits { maddr, set, clear } => {
                let n = maddr.bit_len();
                if bit < n {
                    maddr.flip_bit(bit);
                } else {
                    pair(set, clear, bit - n);
                }
            }
            MmEffect::CopyBytes { dst, src, len } => {
                let n = dst.bit_len();
                if bit < n {
                    dst.flip_bit(bit);
                } else {
                    pair(src, len, bit - n);
                }
            }
        }
    }
}

impl Effect {
    fn tag(&self) -> u8 {
        match self {
            Effect::Return(_) => 1,
            Effect::WriteGuest { .. } => 2,
            Effect::ConsoleWrite { .. } => 3,
            Effect::Log(_) => 4,
            Effect::Yield => 5,
            Effect::Block => 6,
            Effect::DomainShutdown { .. } => 7,
            Effect::Continue(_) => 8,
            Effect::SetRegs(_) => 9,
            Effect::DomainCrash { .. } => 10,
            Effect::Evtchn(_) => 20,
            Effect::Sched(_) => 30,
            Effect::WriteMachine { .. } => 11,
            Effect::Mm(_) => 40,
            Effect::Pv(_) => 25,
            Effect::DomainDestroyed { .. } => 12,
            Effect::Console(_) => 26,
            Effect::Lockstep(_) => 50,
            Effect::Gsi(_) => 60,
        }
    }
}

impl Value for Effect {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.tag());
        match self {
            Effect::Return(v) => v.digest(h),
            Effect::WriteGuest { addr, data } => {
                addr.digest(h);
                data.digest(h);
            }
            Effect::ConsoleWrite { dom, data } => {
                dom.digest(h);
                data.digest(h);
            }
            Effect::Log(data) => data.digest(h),
            Effect::Yield | Effect::Block => {}
            Effect::DomainShutdown { dom, reason } => {
                dom.digest(h);
                reason.digest(h);
            }
            Effect::Continue(args) => args.digest(h),
            Effect::SetRegs(r) => r.digest(h),
            Effect::DomainCrash { dom } => dom.digest(h),
            Effect::DomainDestroyed { dom } => dom.digest(h),
            Effect::Evtchn(e) => e.digest(h),
            Effect::Sched(s) => s.digest(h),
            Effect::WriteMachine { maddr, value } => {
                maddr.digest(h);
                value.digest(h);
            }
            Effect::Mm(m) => m.digest(h),
            Effect::Pv(p) => p.digest(h),
            Effect::Console(c) => c.digest(h),
            Effect::Lockstep(op) => op.digest(h),
            Effect::Gsi(g) => g.digest(h),
        }
    }

    fn bit_len(&self) -> u64 {
        match self {
            Effect::Return(v) => v.bit_len(),
            Effect::WriteGuest { addr, data } => addr.bit_len() + data.bit_len(),
            Effect::ConsoleWrite { dom, data } => dom.bit_len() + data.bit_len(),
            Effect::Log(data) => data.bit_len(),
            Effect::Yield | Effect::Block => 0,
            Effect::DomainShutdown { dom, reason } => dom.bit_len() + reason.bit_len(),
            Effect::Continue(args) => args.bit_len(),
            Effect::SetRegs(r) => r.bit_len(),
            Effect::DomainCrash { dom } => dom.bit_len(),
            Effect::DomainDestroyed { dom } => dom.bit_len(),
            Effect::Evtchn(e) => e.bit_len(),
            Effect::Sched(s) => s.bit_len(),
            Effect::WriteMachine { maddr, value } => maddr.bit_len() + value.bit_len(),
            Effect::Mm(m) => m.bit_len(),
            Effect::Pv(p) => p.bit_len(),
            Effect::Console(c) => c.bit_len(),
            Effect::Lockstep(op) => op.bit_len(),
            Effect::Gsi(g) => g.bit_len(),
        }
    }

    fn flip_bit(&mut self, bit: u64) {
        fn pair<A: Value, B: Value>(a: &mut A, b: &mut B, bit: u64) {
            let n = a.bit_len();
            if bit < n {
                a.flip_bit(bit);
            } else {
                b.flip_bit(bit - n);
            }
        }
        match self {
            Effect::Return(v) => v.flip_bit(bit),
            Effect::WriteGuest { addr, data } => pair(addr, data, bit),
            Effect::ConsoleWrite { dom, data } => pair(dom, data, bit),
            Effect::Log(data) => data.flip_bit(bit),
            Effect::Yield | Effect::Block => {}
            Effect::DomainShutdown { dom, reason } => pair(dom, reason, bit),
            Effect::Continue(args) => args.flip_bit(bit),
            Effect::SetRegs(r) => r.flip_bit(bit),
            Effect::DomainCrash { dom } => dom.flip_bit(bit),
            Effect::DomainDestroyed { dom } => dom.flip_bit(bit),
            Effect::Evtchn(e) => e.flip_bit(bit),
            Effect::Sched(s) => s.flip_bit(bit),
            Effect::WriteMachine { maddr, value } => pair(maddr, value, bit),
            Effect::Mm(m) => m.flip_bit(bit),
            Effect::Pv(p) => p.flip_bit(bit),
            Effect::Console(c) => c.flip_bit(bit),
            Effect::Lockstep(op) => op.flip_bit(bit),
            Effect::Gsi(g) => g.flip_bit(bit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(e: &Effect) -> u32 {
        let mut h = Hasher::new();
        e.digest(&mut h);
        h.finish()
    }

    #[test]
    fn every_bit_flip_changes_the_digest() {
        let effects = [
            Effect::Pv(crate::pv::effect::PvEffect::GuestCr2 {
                dom: 1,
                vcpu: 0,
                cr2: 0x1000,
            }),
            Effect::Return(-22),
            Effect::WriteGuest {
                addr: 0xffff_ffff_8000_1000,
                data: alloc::vec![1, 2, 3],
            },
            Effect::ConsoleWrite {
                dom: 0,
                data: b"hello".to_vec(),
            },
            Effect::DomainShutdown { dom: 3, reason: 1 },
            Effect::Sched(crate::sched::SchedEffect::SendVirq {
                dom: 1,
                vcpu: 2,
                virq: 0,
            }),
            Effect::WriteMachine {
                maddr: 0x1234_5000,
                value: 0x8000_0000_0000_0067,
            },
            Effect::Mm(MmEffect::FlushTlb {
                dom: 1,
                vcpus: Some(alloc::vec![0, 3]),
                va: Some(0x7000),
            }),
            Effect::Mm(MmEffect::SetCr3 {
                kernel: 0x1000,
                user: 0x2000,
            }),
            Effect::Mm(MmEffect::XenL4Slots {
                mfn: 0x42,
                ro_m2p: true,
            }),
            Effect::Mm(MmEffect::LoadLdt {
                base: 0x10_0000,
                ents: 3,
            }),
            Effect::Mm(MmEffect::ClearPage { mfn: 7 }),
            Effect::Mm(MmEffect::CopyPage { dst: 7, src: 9 }),
            Effect::Mm(MmEffect::FreeFrames(alloc::vec![5, 6])),
            Effect::Mm(MmEffect::FramesAllocated {
                dom: 2,
                mfns: alloc::vec![8],
            }),
            Effect::Mm(MmEffect::SetM2p { mfn: 8, pfn: 3 }),
            Effect::Mm(MmEffect::AtomicBits {
                maddr: 0x5008,
                set: 8,
                clear: 16,
            }),
            Effect::Mm(MmEffect::CopyBytes {
                dst: 0x6010,
                src: 0x7020,
                len: 64,
            }),
            Effect::SetRegs(crate::request::GuestRegs {
                rip: 1,
                rsp: 2,
                ..Default::default()
            }),
            Effect::Gsi(crate::pirq::GsiEffect {
                gsi: 8,
                level: true,
                active_low: false,
                unmasked: true,
            }),
        ];
        let evtchn = crate::evtchn::effect::tests::samples()
            .into_iter()
            .map(Effect::Evtchn);
        for e in effects.into_iter().chain(evtchn) {
            let d0 = digest(&e);
            for bit in 0..e.bit_len() {
                let mut f = e.clone();
                f.flip_bit(bit);
                assert_ne!(f, e, "flip {bit} of {e:?} changed nothing");
                assert_ne!(digest(&f), d0, "flip {bit} of {e:?} not detected");
            }
        }
    }

    #[test]
    fn variants_digest_differently() {
        assert_ne!(digest(&Effect::Yield), digest(&Effect::Block));
        assert_ne!(
            digest(&Effect::Return(0)),
            digest(&Effect::Log(alloc::vec::Vec::new()))
        );
    }
}
