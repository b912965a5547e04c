//! What the scheduler, the timers and the time code ask the bare-metal side to do after commit:
//! switch vCPUs on a leader CPU, arm its hardware timer, raise VIRQ_TIMER, write per-vCPU
//! guest memory, load a new vCPU's registers and FPU state, and update guest bytes of hypervisor-managed
//! pages.

use crate::effect::DomId;
use crate::request::GuestRegs;
use alloc::vec::Vec;
use lockstep::{Hasher, Value};

/// A scheduling, timer or time effect (wrapped in [`crate::effect::Effect::Sched`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedEffect {
    /// Leader CPU `pcpu` runs `vcpu` next (`None`: it idles with `hlt`). The previous vCPU's
    /// registers are saved by the bare-metal side as usual.
    RunVcpu {
        /// The leader CPU.
        pcpu: u32,
        /// `(domain, vCPU)` to run, or `None` for idle.
        vcpu: Option<(DomId, u32)>,
    },
    /// Arm `pcpu`'s one-shot hardware timer for system time `deadline` (ns); `None` disarms.
    /// Its expiry comes back as an `ExitKind::Interrupt` transaction on that CPU.
    ArmTimer {
        /// The leader CPU.
        pcpu: u32,
        /// Absolute system time, ns.
        deadline: Option<u64>,
    },
    /// Raise `virq` for `vcpu` of `dom` through its event channel (the event-channel code's
    /// `send_virq`: sets the bound port pending and marks the vCPU's upcall pending; nothing
    /// happens if the VIRQ is not bound).
    SendVirq {
        /// The domain.
        dom: DomId,
        /// The vCPU.
        vcpu: u32,
        /// `VIRQ_*`.
        virq: u32,
    },
    /// Write `data` at guest virtual address `addr` in the address space of `dom`'s `vcpu`,
    /// ignoring faults (as Xen's runstate-area and secondary time-area updates do).
    WriteVcpuGuest {
        /// The domain.
        dom: DomId,
        /// The vCPU whose page tables translate `addr`.
        vcpu: u32,
        /// Guest virtual address.
        addr: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Load `regs` into `dom`'s `vcpu` before it first runs (VCPUOP_initialise).
    SetVcpuRegs {
        /// The domain.
        dom: DomId,
        /// The vCPU.
        vcpu: u32,
        /// Its registers.
        regs: GuestRegs,
    },
    /// Load the 512-byte FXSAVE image `fx` into `dom`'s `vcpu` before it first runs
    /// (arch_set_info_guest's `vcpu_setup_fpu`: the context's image, or the reset state).
    SetVcpuFpu {
        /// The domain.
        dom: DomId,
        /// The vCPU.
        vcpu: u32,
        /// The FXSAVE image (512 bytes).
        fx: Vec<u8>,
    },
    /// Load the data selectors `segs` (DS, ES, FS, GS) into `dom`'s `vcpu` before it next
    /// runs (arch_set_info_guest copies them from the context unchecked).
    SetVcpuSelectors {
        /// The domain.
        dom: DomId,
        /// The vCPU.
        vcpu: u32,
        /// DS, ES, FS, GS.
        segs: [u16; 4],
    },
    /// Write one byte at machine address `maddr` (a flag in a vcpu_info, written alone so that
    /// the neighbouring bytes others update concurrently are not clobbered).
    WriteMachineByte {
        /// Machine address.
        maddr: u64,
        /// The byte.
        value: u8,
    },
}

impl SchedEffect {
    fn tag(&self) -> u8 {
        match self {
            SchedEffect::RunVcpu { .. } => 1,
            SchedEffect::ArmTimer { .. } => 2,
            SchedEffect::SendVirq { .. } => 3,
            SchedEffect::WriteVcpuGuest { .. } => 4,
            SchedEffect::SetVcpuRegs { .. } => 5,
            SchedEffect::WriteMachineByte { .. } => 6,
            SchedEffect::SetVcpuFpu { .. } => 7,
            SchedEffect::SetVcpuSelectors { .. } => 8,
        }
    }

    /// The fields as `Value`s, in digest order.
    fn fields_mut(&mut self) -> Vec<&mut dyn FieldValue> {
        match self {
            SchedEffect::RunVcpu { pcpu, vcpu } => alloc::vec![pcpu as &mut dyn FieldValue, vcpu],
            SchedEffect::ArmTimer { pcpu, deadline } => alloc::vec![pcpu as _, deadline as _],
            SchedEffect::SendVirq { dom, vcpu, virq } => {
                alloc::vec![dom as &mut dyn FieldValue, vcpu, virq]
            }
            SchedEffect::WriteVcpuGuest {
                dom,
                vcpu,
                addr,
                data,
            } => alloc::vec![dom as &mut dyn FieldValue, vcpu, addr, data],
            SchedEffect::SetVcpuRegs { dom, vcpu, regs } => {
                alloc::vec![dom as &mut dyn FieldValue, vcpu, regs]
            }
            SchedEffect::WriteMachineByte { maddr, value } => {
                alloc::vec![maddr as &mut dyn FieldValue, value]
            }
            SchedEffect::SetVcpuFpu { dom, vcpu, fx } => {
                alloc::vec![dom as &mut dyn FieldValue, vcpu, fx]
            }
            SchedEffect::SetVcpuSelectors { dom, vcpu, segs } => {
                alloc::vec![dom as &mut dyn FieldValue, vcpu, segs]
            }
        }
    }
}

/// Object-safe view of [`Value`] for iterating over an effect's fields.
trait FieldValue {
    fn digest_dyn(&self, h: &mut Hasher);
    fn bit_len_dyn(&self) -> u64;
    fn flip_bit_dyn(&mut self, bit: u64);
}

impl<T: Value> FieldValue for T {
    fn digest_dyn(&self, h: &mut Hasher) {
        self.digest(h);
    }
    fn bit_len_dyn(&self) -> u64 {
        self.bit_len()
    }
    fn flip_bit_dyn(&mut self, bit: u64) {
        self.flip_bit(bit);
    }
}

impl Value for SchedEffect {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.tag());
        let mut copy = self.clone();
        for f in copy.fields_mut() {
            f.digest_dyn(h);
        }
    }

    fn bit_len(&self) -> u64 {
        let mut copy = self.clone();
        copy.fields_mut().iter().map(|f| f.bit_len_dyn()).sum()
    }

    fn flip_bit(&mut self, bit: u64) {
        let mut bit = bit;
        for f in self.fields_mut() {
            let n = f.bit_len_dyn();
            if bit < n {
                f.flip_bit_dyn(bit);
                return;
            }
            bit -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(e: &SchedEffect) -> u32 {
        let mut h = Hasher::new();
        e.digest(&mut h);
        h.finish()
    }

    pub(crate) fn samples() -> Vec<SchedEffect> {
        alloc::vec![
            SchedEffect::RunVcpu {
                pcpu: 1,
                vcpu: Some((3, 2)),
            },
            SchedEffect::RunVcpu {
                pcpu: 2,
                vcpu: None,
            },
            SchedEffect::ArmTimer {
                pcpu: 1,
                deadline: Some(10_000_000),
            },
            SchedEffect::SendVirq {
                dom: 1,
                vcpu: 0,
                virq: 0,
            },
            SchedEffect::WriteVcpuGuest {
                dom: 0,
                vcpu: 1,
                addr: 0xffff_ffff_8000_0000,
                data: alloc::vec![1, 2],
            },
            SchedEffect::SetVcpuRegs {
                dom: 0,
                vcpu: 1,
                regs: GuestRegs {
                    rip: 5,
                    ..Default::default()
                },
            },
            SchedEffect::WriteMachineByte {
                maddr: 0x1000,
                value: 7,
            },
            SchedEffect::SetVcpuFpu {
                dom: 1,
                vcpu: 0,
                fx: alloc::vec![0x7f, 0x03, 0, 0],
            },
            SchedEffect::SetVcpuSelectors {
                dom: 2,
                vcpu: 1,
                segs: [0xe02b, 0, 0x000f, 0x0013],
            },
        ]
    }

    #[test]
    fn every_bit_flip_changes_the_digest() {
        for e in samples() {
            let d0 = digest(&e);
            assert!(e.bit_len() > 0);
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
        let a = SchedEffect::ArmTimer {
            pcpu: 1,
            deadline: None,
        };
        let b = SchedEffect::RunVcpu {
            pcpu: 1,
            vcpu: None,
        };
        assert_ne!(digest(&a), digest(&b));
    }
}
