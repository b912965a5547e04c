//! Per-vCPU execution state hypercalls: `callback_op`, `stack_switch`, `set_segment_base`,
//! `fpu_taskswitch`, `vm_assist` (`public/callback.h`, `public/xen.h`).

use crate::errno::XenResult;
use crate::hypercall::{
    self, CALLBACK_OP, FPU_TASKSWITCH, SET_SEGMENT_BASE, STACK_SWITCH, VM_ASSIST,
};

/// `CALLBACKOP_register`.
pub const CALLBACKOP_REGISTER: u64 = 0;
/// `CALLBACKOP_unregister`.
pub const CALLBACKOP_UNREGISTER: u64 = 1;
/// `CALLBACKTYPE_event`.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// `CALLBACKTYPE_failsafe`.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// `CALLBACKTYPE_syscall`.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// `CALLBACKTYPE_nmi`.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// `CALLBACKTYPE_sysenter`.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// `CALLBACKTYPE_syscall32`.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;
/// `CALLBACKF_mask_events`: mask event delivery while the callback runs.
pub const CALLBACKF_MASK_EVENTS: u16 = 1;

/// `SEGBASE_fs`.
pub const SEGBASE_FS: u64 = 0;
/// `SEGBASE_gs_user`.
pub const SEGBASE_GS_USER: u64 = 1;
/// `SEGBASE_gs_kernel`.
pub const SEGBASE_GS_KERNEL: u64 = 2;
/// `SEGBASE_gs_user_sel`.
pub const SEGBASE_GS_USER_SEL: u64 = 3;

/// `VMASST_CMD_enable`.
pub const VMASST_CMD_ENABLE: u64 = 0;
/// `VMASST_CMD_disable`.
pub const VMASST_CMD_DISABLE: u64 = 1;
/// `VMASST_TYPE_4gb_segments`.
pub const VMASST_TYPE_4GB_SEGMENTS: u64 = 0;
/// `VMASST_TYPE_4gb_segments_notify`.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u64 = 1;
/// `VMASST_TYPE_writable_pagetables`.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u64 = 2;
/// `VMASST_TYPE_pae_extended_cr3`.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u64 = 3;
/// `VMASST_TYPE_architectural_iopl`.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u64 = 4;
/// `VMASST_TYPE_runstate_update_flag`.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u64 = 5;
/// `VMASST_TYPE_m2p_strict`.
pub const VMASST_TYPE_M2P_STRICT: u64 = 32;

/// Xen's flat 64-bit ring-3 code selector (`FLAT_RING3_CS64`), the PV kernel's `%cs`.
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Xen's flat 64-bit ring-3 data/stack selector (`FLAT_RING3_SS64`/`DS64`).
pub const FLAT_RING3_SS64: u16 = 0xe02b;

/// `struct callback_register` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub kind: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Entry point.
    pub address: u64,
}
const _: () = assert!(core::mem::size_of::<CallbackRegister>() == 16);

/// `CALLBACKOP_register` of `kind` at `address`.
///
/// # Safety
/// Xen will transfer control to `address` (on this vCPU's kernel stack) when the callback
/// fires: it must be a correct handler for that callback type.
pub unsafe fn register_callback(kind: u16, flags: u16, address: u64) -> XenResult {
    let arg = CallbackRegister {
        kind,
        flags,
        address,
    };
    // SAFETY: Xen reads the 16-byte `struct callback_register`; the caller vouches for the
    // handler address.
    unsafe {
        hypercall::call(
            CALLBACK_OP,
            [
                CALLBACKOP_REGISTER,
                &arg as *const CallbackRegister as u64,
                0,
                0,
                0,
            ],
        )
    }
}

/// `CALLBACKOP_unregister` of `kind` (Xen refuses some types with `-EINVAL`).
pub fn unregister_callback(kind: u16) -> XenResult {
    // `struct callback_unregister { uint16_t type; uint16_t _unused; }`.
    let arg32 = u32::from(kind);
    // SAFETY: Xen reads the 4-byte `struct callback_unregister`; disabling a callback cannot
    // make Xen transfer control anywhere.
    unsafe {
        hypercall::call(
            CALLBACK_OP,
            [CALLBACKOP_UNREGISTER, &arg32 as *const u32 as u64, 0, 0, 0],
        )
    }
}

/// `stack_switch(ss, sp)`: the kernel stack Xen switches to on a guest-user to guest-kernel
/// transition.
///
/// # Safety
/// Xen will write exception and event frames below `sp`: it must be a valid, otherwise unused
/// stack whenever guest user code runs.
pub unsafe fn stack_switch(ss: u16, sp: u64) -> XenResult {
    // SAFETY: scalars only; the caller vouches for the stack.
    unsafe { hypercall::call(STACK_SWITCH, [u64::from(ss), sp, 0, 0, 0]) }
}

/// `set_segment_base(which, base)`. guest-rt uses neither `%fs` nor `%gs`, so changing their
/// bases does not affect it.
pub fn set_segment_base(which: u64, base: u64) -> XenResult {
    // SAFETY: scalars only; this runtime never addresses memory through `%fs`/`%gs`.
    unsafe { hypercall::call(SET_SEGMENT_BASE, [which, base, 0, 0, 0]) }
}

/// `fpu_taskswitch(set)`: sets (1) or clears (0) the virtual `CR0.TS`.
pub fn fpu_taskswitch(set: bool) -> XenResult {
    // SAFETY: a scalar argument. With TS set, the next FPU/SSE instruction raises #NM, which
    // the trap table reports as a fatal trap; no memory is affected.
    unsafe { hypercall::call(FPU_TASKSWITCH, [u64::from(set), 0, 0, 0, 0]) }
}

/// `vm_assist(cmd, type)`.
pub fn vm_assist(cmd: u64, kind: u64) -> XenResult {
    // SAFETY: scalars only; the assists change how Xen interprets later hypercalls, not memory.
    unsafe { hypercall::call(VM_ASSIST, [cmd, kind, 0, 0, 0]) }
}

/// `CR4.OSFXSR`: the OS supports FXSAVE/FXRSTOR (SSE usable).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// `CR4.OSXMMEXCPT`: the OS handles SIMD floating-point exceptions.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// Reads `%cr4`. A PV kernel runs in ring 3, so the CPU raises #GP and Xen emulates the read,
/// returning the guest's view of CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no memory effect; under Xen PV the privileged read is emulated
    // (the hypervisor decides what the guest sees) and returns to the next instruction.
    unsafe { core::arch::asm!("mov %cr4, {}", out(reg) v, options(att_syntax, nomem, nostack)) };
    v
}

/// `X86_CR4_TSD`.
pub const CR4_TSD: u64 = 1 << 2;

/// Sets or clears CR4.TSD with `mov %rax, %cr4` (emulated: the hypervisor keeps the bits a
/// PV kernel may change and ignores the rest). With it set, `rdtsc`/`rdtscp` trap: emulated
/// for the kernel, #GP in guest user mode.
pub fn set_cr4_tsd(on: bool) {
    let cr4 = read_cr4();
    let v = if on { cr4 | CR4_TSD } else { cr4 & !CR4_TSD };
    // SAFETY: in ring 3 the write always traps; the hypervisor changes only the guest's own
    // virtual CR4 bits (TSD here), which affect nothing but ring-3 time-stamp reads.
    unsafe { core::arch::asm!("mov {}, %cr4", in(reg) v, options(att_syntax, nomem, nostack)) };
}

/// `rdtscp`: the time-stamp counter and the vCPU's TSC_AUX (ECX). Like `rdtsc`, it runs
/// natively in ring 3 while `CR4.TSD` is clear; the caller checks CPUID for RDTSCP first.
pub fn rdtscp() -> (u64, u32) {
    let (lo, hi, aux): (u32, u32, u32);
    // SAFETY: `rdtscp` only reads the TSC into EDX:EAX and TSC_AUX into ECX.
    unsafe {
        core::arch::asm!("rdtscp", out("eax") lo, out("edx") hi, out("ecx") aux,
            options(nomem, nostack));
    }
    ((u64::from(hi) << 32) | u64::from(lo), aux)
}

/// Reads the time-stamp counter (`rdtsc`, allowed in ring 3 while `CR4.TSD` is clear, as Xen
/// leaves it for PV guests).
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: `rdtsc` only reads the TSC into EDX:EAX; no memory or stack is touched.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
