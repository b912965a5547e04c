//! The return to a guest and its faults. A PV guest is left through one of two `iretq`s:
//! `trap_common`'s return to ring 3 (`dv_guest_iret_trap`, idt.rs) and `enter_guest_asm`'s
//! (`dv_guest_iret_enter`, guest.rs), each right after the `swapgs` that installs the guest's
//! GS base. A frame the CPU refuses to return to (a code or stack selector whose descriptor is
//! empty, not present or of the wrong type, an LDT page that is not mapped, a non-canonical
//! RIP) makes that `iretq` fault in hypervisor context, with the guest's registers loaded.
//!
//! Xen 4.17 handles this with an exception-table fixup on its `iret_exit_to_guest` (`.Lft0`
//! → `handle_exception`): the fault is dispatched as if the guest had raised it, at the frame
//! being returned to. DualVisor does the same: `trap_common` swaps GS back when it finds a
//! trap at one of these `iretq`s, and [`crate::trap`] turns the fault into the exit
//! [`crate::guest::GuestExit::ReturnFault`] over the guest frame recorded here. Any other
//! event taken there (an NMI, a machine check) is handled as one interrupting the guest,
//! which is then returned to again.
//!
//! The frame must be recorded because the `iretq` of an exception exit runs on the exception
//! IST stack: the fault it raises is delivered on that same stack and overwrites the frame.

use crate::trap::TrapFrame;
use core::sync::atomic::Ordering;

extern "C" {
    fn dv_guest_iret_trap();
    fn dv_guest_iret_enter();
}

/// The exceptions the return `iretq` itself raises: #NP, #SS, #GP and #PF (a descriptor in
/// an LDT page that is not mapped).
pub fn is_return_fault(vector: u64) -> bool {
    matches!(vector, 11..=14)
}

/// Address of `trap_common`'s guest `iretq` (for the self-test of this path).
pub(crate) fn trap_iret_address() -> u64 {
    dv_guest_iret_trap as *const () as u64
}

/// Whether `rip` is one of the `iretq`s that return to a guest (where GS holds the guest's
/// base).
pub fn is_guest_iret(rip: u64) -> bool {
    rip == dv_guest_iret_trap as *const () as u64 || rip == dv_guest_iret_enter as *const () as u64
}

/// Records the iret words of `frame` as the guest frame this CPU is about to return to.
/// Call with interrupts off, after the last change to the frame.
pub(crate) fn record(frame: &TrapFrame) {
    let words = [frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss];
    for (slot, w) in crate::percpu::this().guest_return.iter().zip(words) {
        slot.store(w, Ordering::Relaxed);
    }
}

/// Makes `frame`, a trap taken at one of the guest `iretq`s (with the guest's general
/// registers), the guest's: its RIP, CS, RFLAGS, RSP and SS become those of the frame being
/// returned to.
pub(crate) fn take_guest_frame(frame: &mut TrapFrame) {
    let r = &crate::percpu::this().guest_return;
    let w = |i: usize| r[i].load(Ordering::Relaxed);
    frame.rip = w(0);
    frame.cs = w(1);
    frame.rflags = w(2);
    frame.rsp = w(3);
    frame.ss = w(4);
}
