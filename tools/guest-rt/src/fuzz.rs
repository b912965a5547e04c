//! Hostile hypercalls: random arguments thrown at every hypercall number, made safe for the
//! caller by [`sanitize`], which keeps every write the hypervisor could make for the call
//! inside a scratch window (or at addresses it can never reach) and leaves out the few
//! operations that legitimately end or derail the caller (shutdown, vCPU down, iret, new trap
//! tables and callbacks, stack and segment switches, DR7, console output).
//!
//! What stays reachable for the hypervisor: the scratch page (pointers land in its first
//! `SCRATCH_WINDOW` bytes, and batches are short enough that every write stays in the page,
//! which holds no Rust object), the null page and the whole lower half (never mapped by
//! guest-rt), its own reserved range and non-canonical addresses. Every argument that falls
//! in the kernel's upper 2 GiB, where the image, the start-of-day area and the p2m live, is
//! redirected into the window; machine addresses and PTE values given to the calls that use
//! them name frames beyond any RAM or the hypervisor's range.

use crate::hypercall;

/// Bytes of the scratch page a hostile call may have written (the largest direct write of a
/// hypercall, XENVER_commandline, is 1 KiB).
pub const SCRATCH_WINDOW: u64 = 2048;
/// Where the kernel's upper region (image, start of day, p2m) begins.
const KERNEL_REGION: u64 = 0xffff_ffff_8000_0000;
/// The hypervisor's reserved range start (`HYPERVISOR_VIRT_START`).
const HV_START: u64 = hypercall::HYPERVISOR_VIRT_START;

/// Hypercalls never made: they would replace the caller's trap table, callbacks, kernel
/// stack, segment bases, FPU state or NMI handler, return to a random frame (iret) or start
/// another kernel (kexec).
pub const EXCLUDED: [u32; 9] = [
    hypercall::SET_TRAP_TABLE,
    hypercall::STACK_SWITCH,
    hypercall::SET_CALLBACKS,
    hypercall::FPU_TASKSWITCH,
    hypercall::IRET,
    hypercall::SET_SEGMENT_BASE,
    hypercall::NMI_OP,
    hypercall::CALLBACK_OP,
    hypercall::KEXEC_OP,
];
/// Most operations a batch (multicall, grant_table_op, mmu_update, mmuext_op) may carry, so
/// that the hypervisor's per-entry writes stay inside the scratch page.
pub const MAX_BATCH: u64 = 16;

/// `VCPUOP_initialise`, `VCPUOP_up`, `VCPUOP_down`, `VCPUOP_send_nmi`.
const VCPU_OPS_EXCLUDED: [u64; 4] = [0, 1, 2, 11];

/// The arguments to make hypercall `nr` with, derived from random `args`; None if `nr` is
/// never made.
pub fn sanitize(nr: u32, mut args: [u64; 5], scratch: u64) -> Option<[u64; 5]> {
    if EXCLUDED.contains(&nr) || nr >= hypercall::NR_STUBS {
        return None;
    }
    for a in args.iter_mut() {
        let in_window = (scratch..scratch + SCRATCH_WINDOW).contains(a);
        if *a >= KERNEL_REGION && !in_window {
            *a = scratch + (*a & (SCRATCH_WINDOW - 8));
        }
    }
    match nr {
        // Only yield and unknown commands: no shutdown, block, poll or watchdog.
        // (The command is an `int`: only its low 32 bits count.)
        hypercall::SCHED_OP | hypercall::SCHED_OP_COMPAT if !matches!(args[0] as u32, 0 | 16..) => {
            args[0] = 0;
        }
        // Never take a vCPU down or up, or (re)initialise or NMI one.
        hypercall::VCPU_OP if VCPU_OPS_EXCLUDED.contains(&(args[0] & 0xffff_ffff)) => {
            args[0] = 3; // VCPUOP_is_up
        }
        // DR7 (and DR5, its alias) would arm breakpoints.
        hypercall::SET_DEBUGREG if matches!(args[0] as i32, 5 | 7) => args[0] = 6,
        // No console output (it could forge the result line).
        hypercall::CONSOLE_IO if args[0] & 0xffff_ffff == 0 => args[0] = 1,
        // A machine address beyond any RAM (the frame can be nobody's).
        hypercall::UPDATE_DESCRIPTOR => args[0] |= 1 << 52,
        // Virtual addresses in the hypervisor's range only.
        hypercall::UPDATE_VA_MAPPING | hypercall::UPDATE_VA_MAPPING_OTHERDOMAIN => {
            args[0] = HV_START | (args[0] & 0x07ff_ffff_f000);
        }
        // Short batches: per-entry results are written back (multicall 64 bytes an entry,
        // grant-table operations at most 40).
        hypercall::MULTICALL | hypercall::MMU_UPDATE | hypercall::MMUEXT_OP => {
            args[1] = args[1].min(MAX_BATCH)
        }
        hypercall::GRANT_TABLE_OP => args[2] = args[2].min(MAX_BATCH),
        // Physdev operations (I/O APIC writes, PCI) only with pointers it cannot read.
        hypercall::PHYSDEV_OP | hypercall::PHYSDEV_OP_COMPAT => {
            let p = if nr == hypercall::PHYSDEV_OP { 1 } else { 0 };
            args[p] = 0;
        }
        _ => {}
    }
    Some(args)
}

/// Makes hypercall `nr` with [`sanitize`]d `args` (`None`: not made); the scratch window at
/// `scratch` must be memory no Rust object lives in (see [`crate::pvmm::Scratch`]).
pub fn call(nr: u32, args: [u64; 5], scratch: &crate::pvmm::Scratch) -> Option<i64> {
    let args = sanitize(nr, args, scratch.va())?;
    // (See the module documentation.)
    // SAFETY: `sanitize` keeps every address the hypervisor may write for this call in the
    // scratch window (no Rust object lives there), the unmapped lower half, the hypervisor's
    // range or non-canonical space, and leaves out calls that change how this vCPU runs.
    let r = unsafe { hypercall::raw5(nr, args[0], args[1], args[2], args[3], args[4]) };
    Some(r)
}

#[cfg(not(test))]
extern "C" {
    static __image_start: u8;
    static __readonly_end: u8;
}

/// The image's read-only part (code, the hypercall page, read-only data): what no hostile
/// call may change.
#[cfg(not(test))]
pub fn readonly_image() -> &'static [u8] {
    let start = core::ptr::addr_of!(__image_start);
    let end = core::ptr::addr_of!(__readonly_end) as usize;
    // SAFETY: the linker script places `__image_start` and `__readonly_end` around the text
    // and read-only data segment, which is mapped for the whole life of the program and never
    // written by Rust code (it is mapped read-only).
    unsafe { core::slice::from_raw_parts(start, end.saturating_sub(start as usize)) }
}

/// Host tests have no image.
#[cfg(test)]
pub fn readonly_image() -> &'static [u8] {
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 0xffff_ffff_8050_0000;

    #[test]
    fn excluded_calls_are_not_made() {
        for nr in EXCLUDED {
            assert_eq!(sanitize(nr, [0; 5], S), None, "{nr}");
        }
        assert_eq!(sanitize(200, [0; 5], S), None);
        assert!(sanitize(hypercall::XEN_VERSION, [0; 5], S).is_some());
    }

    #[test]
    fn kernel_addresses_land_in_the_window() {
        let a = sanitize(17, [0, 0xffff_ffff_8000_1234, S + 8, 5, u64::MAX], S).unwrap();
        assert!((S..S + SCRATCH_WINDOW).contains(&a[1]));
        assert_eq!(a[2], S + 8);
        assert_eq!(a[3], 5);
        assert!((S..S + SCRATCH_WINDOW).contains(&a[4]));
        assert_eq!(a[1] % 8, 0);
    }

    #[test]
    fn dangerous_sub_ops_are_replaced() {
        assert_eq!(
            sanitize(hypercall::SCHED_OP, [2, 0, 0, 0, 0], S).unwrap()[0],
            0
        );
        assert_eq!(
            sanitize(hypercall::SCHED_OP, [99, 0, 0, 0, 0], S).unwrap()[0],
            99
        );
        assert_eq!(
            sanitize(hypercall::VCPU_OP, [2, 0, 0, 0, 0], S).unwrap()[0],
            3
        );
        assert_eq!(
            sanitize(hypercall::SET_DEBUGREG, [7, 1, 0, 0, 0], S).unwrap()[0],
            6
        );
        assert_eq!(
            sanitize(hypercall::CONSOLE_IO, [0, 9, 0, 0, 0], S).unwrap()[0],
            1
        );
        let d = sanitize(hypercall::UPDATE_DESCRIPTOR, [0x1000, 0, 0, 0, 0], S).unwrap();
        assert!(d[0] >> 52 != 0);
        let v = sanitize(hypercall::UPDATE_VA_MAPPING, [0x1000, 0, 0, 0, 0], S).unwrap();
        assert!((HV_START..0xffff_8800_0000_0000).contains(&v[0]));
        assert_eq!(
            sanitize(hypercall::PHYSDEV_OP, [6, S, 0, 0, 0], S).unwrap()[1],
            0
        );
        assert_eq!(
            sanitize(hypercall::MULTICALL, [S, 1 << 40, 0, 0, 0], S).unwrap()[1],
            16
        );
        assert_eq!(
            sanitize(hypercall::GRANT_TABLE_OP, [0, S, 999, 0, 0], S).unwrap()[2],
            16
        );
    }
}
