//! The hypercall table — one declarative list (number, name, handler, who may call it) —
//! and the dispatcher generated from it.

mod console;
pub mod domctl;
mod evtchn;
pub mod gnttab;
mod guest_arg;
pub mod lockstep_ctl;
pub mod mca;
pub mod memory;
pub mod mmu;
pub mod mmuext;
pub mod multicall;
pub mod physdev;
pub mod platform;
pub mod readconsole;
mod sched;
pub mod sysctl;
mod timer;
pub mod traps;
mod vcpu;
pub mod vcpu_ctl;
mod version;

use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use alloc::format;
use dom0_interface::errno::XenErrno;
use dom0_interface::xen as x;

/// A hypercall handler: state, context (request, input, effects) → value for RAX.
pub type Handler = fn(&mut HvState, &mut Ctx<'_, '_, '_>) -> HvResult;

/// Which guests may make a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Callers {
    /// 64-bit PV guests.
    pub pv: bool,
    /// HVM/PVH guests.
    pub hvm: bool,
    /// Only a privileged domain (dom0); others get -EPERM.
    pub privileged_only: bool,
}

const ALL: Callers = Callers {
    pv: true,
    hvm: true,
    privileged_only: false,
};
const PV: Callers = Callers {
    pv: true,
    hvm: false,
    privileged_only: false,
};

/// One row of the table.
#[derive(Clone, Copy)]
pub struct HypercallDesc {
    /// `__HYPERVISOR_*` number.
    pub nr: u32,
    /// Xen's name.
    pub name: &'static str,
    /// The handler.
    pub handler: Handler,
    /// Who may call it.
    pub callers: Callers,
}

/// The hypercall table. Numbers not listed answer -ENOSYS (logged once).
pub const HYPERCALLS: &[HypercallDesc] = &[
    HypercallDesc {
        nr: x::HYPERVISOR_SET_TRAP_TABLE,
        name: "set_trap_table",
        handler: traps::set_trap_table,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SET_GDT,
        name: "set_gdt",
        handler: vcpu_ctl::set_gdt,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_STACK_SWITCH,
        name: "stack_switch",
        handler: vcpu_ctl::stack_switch,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SET_CALLBACKS,
        name: "set_callbacks",
        handler: traps::set_callbacks,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_FPU_TASKSWITCH,
        name: "fpu_taskswitch",
        handler: vcpu_ctl::fpu_taskswitch,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SET_DEBUGREG,
        name: "set_debugreg",
        handler: vcpu_ctl::set_debugreg,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_GET_DEBUGREG,
        name: "get_debugreg",
        handler: vcpu_ctl::get_debugreg,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_UPDATE_DESCRIPTOR,
        name: "update_descriptor",
        handler: vcpu_ctl::update_descriptor,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_MULTICALL,
        name: "multicall",
        handler: multicall::multicall,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_VM_ASSIST,
        name: "vm_assist",
        handler: vcpu_ctl::vm_assist,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_IRET,
        name: "iret",
        handler: vcpu_ctl::iret,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SET_SEGMENT_BASE,
        name: "set_segment_base",
        handler: vcpu_ctl::set_segment_base,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_CALLBACK_OP,
        name: "callback_op",
        handler: traps::callback_op,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_PHYSDEV_OP,
        name: "physdev_op",
        handler: physdev::physdev_op,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_PLATFORM_OP,
        name: "platform_op",
        handler: platform::platform_op,
        callers: PV,
    },
    HypercallDesc {
        // `__HYPERVISOR_mca` (arch-x86/xen-mca.h) is xen.h's `arch_0`.
        nr: x::HYPERVISOR_ARCH_0,
        name: "arch_0",
        handler: mca::mca,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_XENPMU_OP,
        name: "xenpmu_op",
        handler: platform::xenpmu_op,
        callers: ALL,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_XEN_VERSION,
        name: "xen_version",
        handler: version::xen_version,
        callers: ALL,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_CONSOLE_IO,
        name: "console_io",
        handler: console::console_io,
        callers: ALL,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SCHED_OP,
        name: "sched_op",
        handler: sched::sched_op,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_EVENT_CHANNEL_OP,
        name: "event_channel_op",
        handler: evtchn::event_channel_op,
        callers: ALL,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_MMU_UPDATE,
        name: "mmu_update",
        handler: mmu::mmu_update,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_MEMORY_OP,
        name: "memory_op",
        handler: memory::memory_op,
        callers: ALL,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_UPDATE_VA_MAPPING,
        name: "update_va_mapping",
        handler: mmu::update_va_mapping,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
        name: "update_va_mapping_otherdomain",
        handler: mmu::update_va_mapping_otherdomain,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_MMUEXT_OP,
        name: "mmuext_op",
        handler: mmuext::mmuext_op,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SET_TIMER_OP,
        name: "set_timer_op",
        handler: timer::set_timer_op,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_GRANT_TABLE_OP,
        name: "grant_table_op",
        handler: gnttab::grant_table_op,
        callers: ALL,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_SYSCTL,
        name: "sysctl",
        handler: sysctl::sysctl,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_DOMCTL,
        name: "domctl",
        handler: domctl::domctl,
        callers: PV,
    },
    HypercallDesc {
        nr: x::HYPERVISOR_VCPU_OP,
        name: "vcpu_op",
        handler: vcpu::vcpu_op,
        callers: ALL,
    },
];

/// Highest hypercall number the dispatch index covers.
pub const MAX_NR: usize = 64;

const fn build_index() -> [u8; MAX_NR] {
    let mut idx = [u8::MAX; MAX_NR];
    let mut i = 0;
    while i < HYPERCALLS.len() {
        let nr = HYPERCALLS[i].nr as usize;
        assert!(nr < MAX_NR, "hypercall number outside the index");
        assert!(idx[nr] == u8::MAX, "hypercall listed twice");
        idx[nr] = i as u8;
        i += 1;
    }
    idx
}

/// Number → row of [`HYPERCALLS`], built at compile time (duplicates fail the build).
static INDEX: [u8; MAX_NR] = build_index();

/// The table row for `nr`, if DualVisor implements it.
pub fn lookup(nr: u64) -> Option<&'static HypercallDesc> {
    let i = *INDEX.get(usize::try_from(nr).ok()?)?;
    HYPERCALLS.get(usize::from(i))
}

/// Logs `what` once per `key` (the rate limit lives in the replica, so it is deterministic).
pub fn warn_once(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, key: u64, what: &str) {
    if state.warned.contains_key(&key) {
        return;
    }
    state.warned.insert(ctx.journal(), key, true);
    ctx.emit(Effect::Log(
        format!("d{}v{} {}", ctx.req.dom, ctx.req.vcpu, what).into_bytes(),
    ));
}

/// Answers an unknown sub-op: logs once and returns -ENOSYS.
pub fn unknown_subop(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    name: &str,
    cmd: u64,
) -> HvResult {
    let key = (u64::from(ctx.req.nr as u32) << 32) | (cmd & 0xffff_ffff) | (1 << 63);
    warn_once(
        state,
        ctx,
        key,
        &format!("{name}: unknown sub-op {cmd}, returning -ENOSYS"),
    );
    Err(XenErrno::ENOSYS.into())
}

/// Runs the hypercall in `ctx.req`.
pub fn dispatch(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let nr = ctx.req.nr;
    let Some(desc) = lookup(nr) else {
        let what = format!("unknown hypercall {nr}, returning -ENOSYS");
        warn_once(state, ctx, nr & 0xffff_ffff, &what);
        return Err(XenErrno::ENOSYS.into());
    };
    if !desc.callers.pv {
        return Err(XenErrno::ENOSYS.into());
    }
    if desc.callers.privileged_only && !is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    (desc.handler)(state, ctx)
}

/// Whether `dom` is privileged.
pub fn is_privileged(state: &HvState, dom: crate::effect::DomId) -> bool {
    state.domains.get(&dom).is_some_and(|d| d.flags.privileged)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::Harness;
    use super::*;

    #[test]
    fn table_numbers_match_xen_names() {
        for d in HYPERCALLS {
            assert_eq!(x::hypercall_name(d.nr), Some(d.name), "row {}", d.nr);
            assert_eq!(lookup(u64::from(d.nr)).map(|r| r.nr), Some(d.nr));
        }
    }

    /// A request handed over typed (a single execution) does what its words do: every
    /// hypercall number with arguments from a small generator, good and bad alike.
    #[test]
    fn typed_requests_do_what_their_words_do() {
        let (mut words, mut typed) = (Harness::dom0(), Harness::dom0());
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Small values (sub-ops, ports, counts) more often than wild ones.
            if x.is_multiple_of(3) {
                x
            } else {
                x % 40
            }
        };
        for round in 0..3 {
            for nr in 0..48u64 {
                if nr == u64::from(x::HYPERVISOR_SCHED_OP) && round > 0 {
                    continue; // a shutdown ends the domain: once is enough
                }
                let args = [next(), next(), next(), next(), next()];
                let a = words.hypercall(nr, args);
                let regs = crate::request::GuestRegs {
                    cs: 0xe033,
                    ss: 0xe02b,
                    ..crate::request::GuestRegs::for_hypercall(nr, args)
                };
                let b = typed.run_as(crate::request::Request::hypercall(typed.dom, 0, regs), true);
                assert_eq!(
                    (a.ret, &a.effects),
                    (b.ret, &b.effects),
                    "nr {nr} {args:x?}"
                );
            }
        }
        assert_eq!(
            lockstep::replica::full_digest(&words.state),
            lockstep::replica::full_digest(&typed.state)
        );
    }

    #[test]
    fn unknown_hypercalls_are_enosys_and_logged_once() {
        let mut h = Harness::dom0();
        for nr in [11u64, 43, 47, 63, 64, 100, 127, u64::MAX] {
            let r = h.hypercall(nr, [0; 5]);
            assert_eq!(r.ret, -38, "nr {nr}");
        }
        let first = h.hypercall(11, [0; 5]);
        assert!(first.logs.is_empty(), "second unknown call logged again");
    }
}
