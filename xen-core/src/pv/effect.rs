//! Effects of the PV CPU-state code, applied by the bare-metal side after commit: guest
//! mode switches, `vcpu_info` event-mask and CR2 updates, segment bases, FPU TS, debug
//! registers, port output and GDT loads.

use crate::effect::DomId;
use alloc::vec::Vec;
use lockstep::{Hasher, Value};

/// One PV CPU-state effect of the calling vCPU (or of the vCPU named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PvEffect {
    /// Switch between guest kernel and user mode (`toggle_guest_mode`): swap the active GS
    /// base (kernel ↔ user) and load `cr3` (machine address of the mode's L4).
    GuestMode {
        /// Entering guest kernel mode.
        kernel: bool,
        /// The page-table base to load.
        cr3: u64,
    },
    /// Write `evtchn_upcall_mask` of the vCPU's `vcpu_info` (a single byte: the pending byte
    /// next to it may change concurrently).
    UpcallMask {
        /// Domain.
        dom: DomId,
        /// vCPU.
        vcpu: u32,
        /// New mask.
        masked: bool,
    },
    /// Write `arch.cr2` of the vCPU's `vcpu_info` (the faulting address of a bounced #PF).
    GuestCr2 {
        /// Domain.
        dom: DomId,
        /// vCPU.
        vcpu: u32,
        /// The address.
        cr2: u64,
    },
    /// Load a segment base (`SEGBASE_FS`, `GS_USER`, `GS_KERNEL`: `value` is the base) or the
    /// user `%gs` selector (`SEGBASE_GS_USER_SEL`: `value` is the selector; a faulting load
    /// loads NUL).
    SegmentBase {
        /// `SEGBASE_*`.
        which: u32,
        /// Base or selector.
        value: u64,
    },
    /// Set (true) or clear the hardware CR0.TS for the calling vCPU.
    FpuTs(bool),
    /// Load hardware debug register `reg` (0-3, 6, 7) with `value`.
    DebugReg {
        /// Register number.
        reg: u8,
        /// Value.
        value: u64,
    },
    /// Write `value` (`size` bytes) to I/O port `port` (a privileged guest's emulated `out`).
    PortOut {
        /// Port.
        port: u16,
        /// 1, 2 or 4.
        size: u8,
        /// Value (low `size` bytes).
        value: u32,
    },
    /// Write `value` to CMOS/RTC register `index` (0-0x7f): port 0x70 then 0x71, under the
    /// lock the hypervisor's own CMOS reads take (Xen's `rtc_guest_write`).
    CmosWrite {
        /// Register (bit 7, NMI disable, clear).
        index: u8,
        /// Value.
        value: u8,
    },
    /// Load the calling vCPU's GDT from these (validated) frames with `entries` entries.
    SetGdt {
        /// Machine frames.
        frames: Vec<u64>,
        /// Descriptor count.
        entries: u32,
    },
}

impl PvEffect {
    fn tag(&self) -> u8 {
        match self {
            PvEffect::GuestMode { .. } => 1,
            PvEffect::UpcallMask { .. } => 2,
            PvEffect::GuestCr2 { .. } => 3,
            PvEffect::SegmentBase { .. } => 4,
            PvEffect::FpuTs(_) => 5,
            PvEffect::DebugReg { .. } => 6,
            PvEffect::PortOut { .. } => 7,
            PvEffect::SetGdt { .. } => 8,
            PvEffect::CmosWrite { .. } => 9,
        }
    }

    /// Visits the fields in order (digest, bit counts and bit flips share this).
    fn fields(&mut self, f: &mut dyn FnMut(&mut dyn FieldValue)) {
        match self {
            PvEffect::GuestMode { kernel, cr3 } => {
                f(kernel);
                f(cr3);
            }
            PvEffect::UpcallMask { dom, vcpu, masked } => {
                f(dom);
                f(vcpu);
                f(masked);
            }
            PvEffect::GuestCr2 { dom, vcpu, cr2 } => {
                f(dom);
                f(vcpu);
                f(cr2);
            }
            PvEffect::SegmentBase { which, value } => {
                f(which);
                f(value);
            }
            PvEffect::FpuTs(set) => f(set),
            PvEffect::DebugReg { reg, value } => {
                f(reg);
                f(value);
            }
            PvEffect::PortOut { port, size, value } => {
                f(port);
                f(size);
                f(value);
            }
            PvEffect::SetGdt { frames, entries } => {
                f(frames);
                f(entries);
            }
            PvEffect::CmosWrite { index, value } => {
                f(index);
                f(value);
            }
        }
    }
}

/// Object-safe view of a [`Value`] field.
trait FieldValue {
    fn digest_into(&self, h: &mut Hasher);
    fn bits(&self) -> u64;
    fn flip(&mut self, bit: u64);
}

impl<T: Value> FieldValue for T {
    fn digest_into(&self, h: &mut Hasher) {
        self.digest(h);
    }
    fn bits(&self) -> u64 {
        self.bit_len()
    }
    fn flip(&mut self, bit: u64) {
        self.flip_bit(bit);
    }
}

impl Value for PvEffect {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.tag());
        let mut me = self.clone();
        me.fields(&mut |v| v.digest_into(h));
    }

    fn bit_len(&self) -> u64 {
        let mut n = 0;
        let mut me = self.clone();
        me.fields(&mut |v| n += v.bits());
        n
    }

    fn flip_bit(&mut self, bit: u64) {
        let mut left = bit;
        let mut done = false;
        self.fields(&mut |v| {
            if done {
                return;
            }
            let n = v.bits();
            if left < n {
                v.flip(left);
                done = true;
            } else {
                left -= n;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(e: &PvEffect) -> u32 {
        let mut h = Hasher::new();
        e.digest(&mut h);
        h.finish()
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let all = [
            PvEffect::GuestMode {
                kernel: true,
                cr3: 0x1000,
            },
            PvEffect::UpcallMask {
                dom: 1,
                vcpu: 2,
                masked: true,
            },
            PvEffect::GuestCr2 {
                dom: 0,
                vcpu: 0,
                cr2: 0xdead_b000,
            },
            PvEffect::SegmentBase {
                which: 2,
                value: 0xffff_8880_0000_0000,
            },
            PvEffect::FpuTs(false),
            PvEffect::DebugReg {
                reg: 7,
                value: 0x401,
            },
            PvEffect::PortOut {
                port: 0x80,
                size: 1,
                value: 0x5a,
            },
            PvEffect::SetGdt {
                frames: alloc::vec![7, 8],
                entries: 1024,
            },
        ];
        let mut tags = alloc::vec::Vec::new();
        for e in all {
            tags.push(e.tag());
            let d0 = digest(&e);
            assert!(e.bit_len() > 0);
            for bit in 0..e.bit_len() {
                let mut f = e.clone();
                f.flip_bit(bit);
                assert_ne!(f, e, "flip {bit} of {e:?}");
                assert_ne!(digest(&f), d0, "flip {bit} of {e:?} undetected");
            }
        }
        tags.dedup();
        assert_eq!(tags.len(), 8);
    }
}
