//! Raw hypercalls through the hypercall page (`page + nr * 32`, arguments in RDI, RSI, RDX,
//! R10, R8, result in RAX) and the hypercall numbers from Xen's public `xen.h`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::errno::{from_raw, Errno, XenResult};

pub use dom0_interface::xen::{
    HYPERVISOR_ARGO_OP as ARGO_OP, HYPERVISOR_CALLBACK_OP as CALLBACK_OP,
    HYPERVISOR_CONSOLE_IO as CONSOLE_IO, HYPERVISOR_DM_OP as DM_OP, HYPERVISOR_DOMCTL as DOMCTL,
    HYPERVISOR_EVENT_CHANNEL_OP as EVENT_CHANNEL_OP,
    HYPERVISOR_EVENT_CHANNEL_OP_COMPAT as EVENT_CHANNEL_OP_COMPAT,
    HYPERVISOR_FPU_TASKSWITCH as FPU_TASKSWITCH, HYPERVISOR_GET_DEBUGREG as GET_DEBUGREG,
    HYPERVISOR_GRANT_TABLE_OP as GRANT_TABLE_OP, HYPERVISOR_HVM_OP as HVM_OP,
    HYPERVISOR_HYPFS_OP as HYPFS_OP, HYPERVISOR_IRET as IRET, HYPERVISOR_KEXEC_OP as KEXEC_OP,
    HYPERVISOR_MEMORY_OP as MEMORY_OP, HYPERVISOR_MMUEXT_OP as MMUEXT_OP,
    HYPERVISOR_MMU_UPDATE as MMU_UPDATE, HYPERVISOR_MULTICALL as MULTICALL,
    HYPERVISOR_NMI_OP as NMI_OP, HYPERVISOR_PHYSDEV_OP as PHYSDEV_OP,
    HYPERVISOR_PHYSDEV_OP_COMPAT as PHYSDEV_OP_COMPAT, HYPERVISOR_PLATFORM_OP as PLATFORM_OP,
    HYPERVISOR_SCHED_OP as SCHED_OP, HYPERVISOR_SCHED_OP_COMPAT as SCHED_OP_COMPAT,
    HYPERVISOR_SET_CALLBACKS as SET_CALLBACKS, HYPERVISOR_SET_DEBUGREG as SET_DEBUGREG,
    HYPERVISOR_SET_GDT as SET_GDT, HYPERVISOR_SET_SEGMENT_BASE as SET_SEGMENT_BASE,
    HYPERVISOR_SET_TIMER_OP as SET_TIMER_OP, HYPERVISOR_SET_TRAP_TABLE as SET_TRAP_TABLE,
    HYPERVISOR_STACK_SWITCH as STACK_SWITCH, HYPERVISOR_SYSCTL as SYSCTL,
    HYPERVISOR_TMEM_OP as TMEM_OP, HYPERVISOR_UPDATE_DESCRIPTOR as UPDATE_DESCRIPTOR,
    HYPERVISOR_UPDATE_VA_MAPPING as UPDATE_VA_MAPPING,
    HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN as UPDATE_VA_MAPPING_OTHERDOMAIN,
    HYPERVISOR_VCPU_OP as VCPU_OP, HYPERVISOR_VM_ASSIST as VM_ASSIST,
    HYPERVISOR_XENOPROF_OP as XENOPROF_OP, HYPERVISOR_XENPMU_OP as XENPMU_OP,
    HYPERVISOR_XEN_VERSION as XEN_VERSION, HYPERVISOR_XSM_OP as XSM_OP,
};

/// Size of one stub in the hypercall page.
pub const STUB_SIZE: u64 = 32;
/// Number of stubs in the hypercall page.
pub const NR_STUBS: u32 = 128;

/// Virtual address of the hypercall page; set once at boot by [`crate::boot`].
static PAGE: AtomicU64 = AtomicU64::new(0);

/// Records where the hypercall page is (called once at boot).
pub(crate) fn set_page(addr: u64) {
    PAGE.store(addr, Ordering::Release);
}

/// Address of the hypercall page, or 0 before boot.
pub fn page() -> u64 {
    PAGE.load(Ordering::Acquire)
}

/// Address of the stub for hypercall `nr`, or `None` if `nr` is outside the page or the page is
/// not known yet.
pub fn stub_address(nr: u32) -> Option<u64> {
    let page = page();
    if page == 0 || nr >= NR_STUBS {
        return None;
    }
    Some(page + u64::from(nr) * STUB_SIZE)
}

/// Issues hypercall `nr` with five arguments and returns RAX unchanged.
///
/// Returns `-ENOSYS` without calling anything if the hypercall page is unknown or `nr` is
/// outside it, and refuses `__HYPERVISOR_iret` (which does not return) the same way.
///
/// # Safety
/// Xen may read and write guest memory at any address passed in the arguments and may change
/// the vCPU's state (page tables, trap table, stacks) as the hypercall specifies. The caller
/// must make sure every pointer argument refers to memory that may be accessed that way and
/// that the requested state change keeps the program sound.
pub unsafe fn raw5(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let Some(stub) = stub_address(nr).filter(|_| nr != IRET) else {
        return Errno::ENOSYS.0;
    };
    call_stub(stub, [a1, a2, a3, a4, a5])
}

/// Calls a hypercall stub. Only compiled for the guest: host tests never reach a stub.
#[cfg(not(test))]
fn call_stub(stub: u64, args: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: `stub` is in the hypercall page Xen filled (checked by the caller); it keeps
    // RCX/R11, returns with `ret`; argument registers are clobbered; memory is the caller's.
    unsafe {
        core::arch::asm!(
            "call *{stub}",
            stub = in(reg) stub,
            lateout("rax") ret,
            inout("rdi") args[0] => _,
            inout("rsi") args[1] => _,
            inout("rdx") args[2] => _,
            inout("r10") args[3] => _,
            inout("r8") args[4] => _,
            options(att_syntax)
        );
    }
    ret
}

/// Host unit tests have no hypervisor: every stub reports `-ENOSYS`.
#[cfg(test)]
fn call_stub(_stub: u64, _args: [u64; 5]) -> i64 {
    Errno::ENOSYS.0
}

/// [`raw5`] with its result turned into a [`XenResult`].
///
/// # Safety
/// As for [`raw5`].
pub unsafe fn call(nr: u32, args: [u64; 5]) -> XenResult {
    // SAFETY: the caller upholds `raw5`'s contract.
    from_raw(unsafe { raw5(nr, args[0], args[1], args[2], args[3], args[4]) })
}

/// Lowest address of the range Xen reserves in every 64-bit PV guest (`HYPERVISOR_VIRT_START`).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the range Xen reserves in every 64-bit PV guest (`HYPERVISOR_VIRT_END`).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;

/// A guest address that Xen can never access on the guest's behalf: the null page (guest-rt
/// never maps it), the hypervisor-reserved range, or a non-canonical address. Hypercalls may be
/// given one safely to provoke `-EFAULT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPtr(u64);

impl BadPtr {
    /// The null pointer.
    pub const NULL: BadPtr = BadPtr(0);
    /// The first byte of the hypervisor-reserved range.
    pub const HYPERVISOR: BadPtr = BadPtr(HYPERVISOR_VIRT_START);
    /// A non-canonical address.
    pub const NON_CANONICAL: BadPtr = BadPtr(0x8000_0000_0000_0000);

    /// Accepts `addr` only if it is in the null page, the hypervisor range, or non-canonical.
    pub fn new(addr: u64) -> Option<BadPtr> {
        let null_page = addr < 4096;
        let hypervisor = (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&addr);
        let non_canonical = (0x0000_8000_0000_0000..0xFFFF_8000_0000_0000).contains(&addr);
        (null_page || hypervisor || non_canonical).then_some(BadPtr(addr))
    }

    /// The address.
    pub fn addr(self) -> u64 {
        self.0
    }
}

/// Hypercall `nr` with a scalar first argument and a [`BadPtr`] second argument: the usual
/// `(cmd, arg)` shape, used to check that Xen answers `-EFAULT` (or `-ENOSYS` for unknown
/// commands) without touching memory.
pub fn call_with_bad_ptr(nr: u32, cmd: u64, ptr: BadPtr) -> XenResult {
    // SAFETY: the only pointer argument is a `BadPtr`, which Xen cannot access; the remaining
    // arguments are zero. `raw5` refuses `iret`.
    unsafe { call(nr, [cmd, ptr.addr(), 0, 0, 0]) }
}

/// Hypercall `nr` with the `(cmd, count, ptr)` shape (console_io, mmu_update-like calls)
/// where `ptr` is a [`BadPtr`]: Xen must answer `-EFAULT` without touching memory.
pub fn call_with_count_and_bad_ptr(nr: u32, cmd: u64, count: u64, ptr: BadPtr) -> XenResult {
    // SAFETY: the only pointer argument is a `BadPtr`, which Xen cannot access. `raw5`
    // refuses `iret`.
    unsafe { call(nr, [cmd, count, ptr.addr(), 0, 0]) }
}

/// Hypercall `nr` with every argument zero (null pointers): for probing unknown or unused
/// hypercall numbers. Refuses (with `-ENOSYS`, without calling) the numbers whose zero-argument
/// form would change this vCPU's execution state: set_trap_table, stack_switch, set_callbacks,
/// fpu_taskswitch, iret, set_segment_base and callback_op.
pub fn call_zero_args(nr: u32) -> XenResult {
    const STATEFUL: [u32; 7] = [
        SET_TRAP_TABLE,
        STACK_SWITCH,
        SET_CALLBACKS,
        FPU_TASKSWITCH,
        IRET,
        SET_SEGMENT_BASE,
        CALLBACK_OP,
    ];
    if STATEFUL.contains(&nr) {
        return Err(Errno::ENOSYS);
    }
    // SAFETY: every argument is zero, so any pointer argument is null (never mapped), and the
    // hypercalls that would change execution state with zero arguments are refused above.
    unsafe { call(nr, [0; 5]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pointers_are_only_unreachable_addresses() {
        assert_eq!(BadPtr::new(0), Some(BadPtr::NULL));
        assert!(BadPtr::new(4095).is_some());
        assert!(BadPtr::new(4096).is_none());
        assert!(BadPtr::new(0xFFFF_FFFF_8000_0000).is_none());
        assert!(BadPtr::new(HYPERVISOR_VIRT_START).is_some());
        assert!(BadPtr::new(HYPERVISOR_VIRT_END - 1).is_some());
        assert!(BadPtr::new(HYPERVISOR_VIRT_END).is_none());
        assert!(BadPtr::new(0x0000_7FFF_FFFF_F000).is_none());
        assert!(BadPtr::new(0x0000_8000_0000_0000).is_some());
        assert_eq!(BadPtr::NON_CANONICAL.addr(), 0x8000_0000_0000_0000);
    }

    #[test]
    fn stubs_need_a_page_and_a_valid_number() {
        // The page is unset in host tests unless a test sets it; both cases are checked here
        // in one test to avoid races between tests on the global.
        set_page(0);
        assert_eq!(stub_address(17), None);
        set_page(0x1000);
        assert_eq!(stub_address(0), Some(0x1000));
        assert_eq!(stub_address(17), Some(0x1000 + 17 * 32));
        assert_eq!(stub_address(127), Some(0x1000 + 127 * 32));
        assert_eq!(stub_address(128), None);
        // iret and out-of-page numbers never reach a stub.
        // SAFETY: all arguments are zero; host stubs never call anything.
        assert_eq!(unsafe { raw5(IRET, 0, 0, 0, 0, 0) }, -38);
        assert_eq!(call_zero_args(SET_TRAP_TABLE), Err(Errno::ENOSYS));
        set_page(0);
    }
}
