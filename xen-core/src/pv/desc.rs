//! Segment descriptors a 64-bit PV guest may put in its GDT or LDT, checked and fixed up as
//! Xen 4.17's `check_descriptor` (`pv/descriptor-tables.c`): code and data segments get
//! DPL 3 at least (the guest kernel runs in ring 3), call gates must target a guest or
//! Xen's flat kernel selector and are forced to DPL 0 (their use traps and is emulated),
//! every other system descriptor is refused.

use dom0_interface::arch_x86::{FIRST_RESERVED_GDT_ENTRY, FLAT_KERNEL_CS};

/// `_SEGMENT_P` (in the high word).
const SEG_P: u32 = 1 << 15;
/// `_SEGMENT_S`: code or data.
const SEG_S: u32 = 1 << 12;
/// `_SEGMENT_DPL`.
const SEG_DPL: u32 = 3 << 13;
/// `_SEGMENT_TYPE`.
const SEG_TYPE: u32 = 15 << 8;
/// Type of a 64-bit call gate.
const TYPE_CALL_GATE: u32 = 0xc << 8;
/// `GUEST_KERNEL_RPL` of a 64-bit PV domain.
const GUEST_KERNEL_RPL: u32 = 3;

/// `guest_gate_selector_okay` for a 64-bit PV domain.
fn gate_selector_ok(sel: u32) -> bool {
    (sel >> 3) < FIRST_RESERVED_GDT_ENTRY || sel == u32::from(FLAT_KERNEL_CS) || sel & 4 != 0
}

/// Checks descriptor `raw` (low word first, as in memory): the descriptor to store (with
/// Xen's fix-ups), or None if the guest may not have it.
pub fn check_descriptor(raw: u64) -> Option<u64> {
    let mut a = raw as u32;
    let mut b = (raw >> 32) as u32;
    // A not-present descriptor always faults: harmless.
    if b & SEG_P == 0 {
        return Some(raw);
    }
    let mut dpl = (b >> 13) & 3;
    if dpl < GUEST_KERNEL_RPL {
        dpl = GUEST_KERNEL_RPL;
    }
    b = (b & !SEG_DPL) | (dpl << 13);
    if b & SEG_S == 0 {
        // Type 0 is harmless (the upper half of a 16-byte gate).
        if b & SEG_TYPE == 0 {
            return Some(raw);
        }
        if b & SEG_TYPE != TYPE_CALL_GATE {
            return None;
        }
        let cs = a >> 16;
        if !gate_selector_ok(cs) {
            return None;
        }
        // DPL 0: using the gate faults and is emulated; the original DPL goes in the RPL.
        b &= !SEG_DPL;
        let cs = (cs & !3) | dpl;
        a = (a & 0xffff) | (cs << 16);
        if b & 0xff != 0 {
            return None;
        }
    }
    Some(u64::from(a) | (u64::from(b) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT_CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
    const FLAT_DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;

    #[test]
    fn not_present_and_type_zero_pass_unchanged() {
        assert_eq!(check_descriptor(0), Some(0));
        assert_eq!(
            check_descriptor(0x0000_7a00_dead_beef),
            Some(0x0000_7a00_dead_beef)
        );
        // Present system descriptor of type 0 (second half of a gate).
        assert_eq!(
            check_descriptor(0x0000_8000_0000_0000),
            Some(0x0000_8000_0000_0000)
        );
    }

    #[test]
    fn code_and_data_get_dpl_3() {
        assert_eq!(check_descriptor(FLAT_CODE64_DPL3), Some(FLAT_CODE64_DPL3));
        assert_eq!(check_descriptor(FLAT_DATA_DPL3), Some(FLAT_DATA_DPL3));
        // DPL 0 code (0x9a) and DPL 1 data (0xb2) are raised to DPL 3.
        assert_eq!(
            check_descriptor(0x00af_9a00_0000_ffff),
            Some(FLAT_CODE64_DPL3)
        );
        assert_eq!(
            check_descriptor(0x00cf_b200_0000_ffff),
            Some(FLAT_DATA_DPL3)
        );
    }

    #[test]
    fn system_descriptors_other_than_call_gates_are_refused() {
        // LDT (type 2), available TSS (9), interrupt gate (0xe), trap gate (0xf).
        for ty in [2u64, 9, 0xe, 0xf, 5, 1] {
            let d = (0x80u64 | ty) << 40;
            assert_eq!(check_descriptor(d), None, "type {ty:#x}");
        }
    }

    #[test]
    fn call_gates_are_forced_to_dpl_0_with_the_dpl_in_the_rpl() {
        // DPL 3 gate to FLAT_KERNEL_CS, offset 0x1234 (its selector must be exactly that).
        let gate = (0xecu64 << 40) | (u64::from(FLAT_KERNEL_CS) << 16) | 0x1234;
        assert_eq!(check_descriptor((0xecu64 << 40) | (0xe030 << 16)), None);
        let fixed = check_descriptor(gate).expect("gate allowed");
        assert_eq!((fixed >> 45) & 3, 0, "DPL forced to 0");
        assert_eq!(
            (fixed >> 16) & 0xffff,
            u64::from(FLAT_KERNEL_CS),
            "RPL = old DPL"
        );
        // A gate to a guest GDT selector and one to an LDT selector.
        assert!(check_descriptor((0xecu64 << 40) | (0x10 << 16)).is_some());
        assert!(check_descriptor((0xecu64 << 40) | (0xe00c << 16)).is_some());
        // A gate to a hypervisor selector (0xe008) is refused.
        assert_eq!(check_descriptor((0xecu64 << 40) | (0xe008 << 16)), None);
        // Parameter-count bits set are reserved.
        assert_eq!(
            check_descriptor((0xecu64 << 40) | (1 << 32) | (0x10 << 16)),
            None
        );
    }
}
