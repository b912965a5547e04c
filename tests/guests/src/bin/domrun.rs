//! `domrun`: dom0 builds and runs two tiny PV domUs at once, the way a toolstack does:
//! createdomain, max_vcpus, max_mem, populate_physmap, page tables and code written through
//! foreign mappings, setvcpucontext, unpause. Each domU yields 20 times and shuts
//! down with its own reason; dom0 sees both shut down (with their codes, VIRQ_DOM_EXC
//! pending), keeps running, and destroys them. A domU started with a code selector it cannot
//! run on is crashed by the fault of its first return, and dom0 goes on. Another domU's vCPU
//! context is read back with getvcpucontext before and after it runs (and the call's errors: a vCPU not created,
//! beyond max_vcpus, the caller's own, never initialised or reset, a bad buffer). A third domU (not privileged) then issues
//! domctls and sysctls itself and records what each returned in its own memory, which dom0
//! reads after it powers off: every one is -EPERM, except where Xen checks something before
//! its XSM policy (interface version -EACCES, a missing target domain -ESRCH, getdomaininfo
//! finding no domain at or above the id -ESRCH).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::mm::{pte, XENMEM_POPULATE_PHYSMAP};
use guest_rt::pvmm::Scratch;
use guest_rt::shared_info::SharedInfo;
use guest_rt::smp::{self, ctx_off::*};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::xenctl::ops::*;
use guest_rt::xenctl::{domctl, foreign_reservation, CtlBuf, DOMCTL_U};
use guest_rt::{println, Errno, XenResult};
use test_guests::tinydom::*;

guest_rt::entry!(main);
guest_rt::no_heap!();

const VIRQ_DOM_EXC: u32 = 3;
const SHUTDOWN_REBOOT: u32 = 1;
const SHUTDOWN_SUSPEND: u32 = 2;

/// Where the domU's code runs (L4 0, L3 0, L2 2, L1 0); its stack is the next page.
const CODE_VA: u64 = 0x40_0000;
const STACK_TOP: u64 = CODE_VA + 0x2000;
/// Offset of the shutdown reason in the code page.
const REASON_AT: usize = 64;

/// The domU: `for 20 times: sched_op(SCHEDOP_yield)`, then
/// `sched_op(SCHEDOP_shutdown, &reason)` with the reason at byte 64, then spin.
const CODE: [u8; 44] = [
    0xbb, 0x14, 0x00, 0x00, 0x00, // mov $20, %ebx
    0xbf, 0x00, 0x00, 0x00, 0x00, // 1: mov $SCHEDOP_yield, %edi
    0x31, 0xf6, // xor %esi, %esi
    0xb8, 0x1d, 0x00, 0x00, 0x00, // mov $__HYPERVISOR_sched_op, %eax
    0x0f, 0x05, // syscall
    0xff, 0xcb, // dec %ebx
    0x75, 0xee, // jnz 1b
    0xbf, 0x02, 0x00, 0x00, 0x00, // mov $SCHEDOP_shutdown, %edi
    0x48, 0x8d, 0x35, 0x1d, 0x00, 0x00, 0x00, // lea reason(%rip), %rsi
    0xb8, 0x1d, 0x00, 0x00, 0x00, // mov $__HYPERVISOR_sched_op, %eax
    0x0f, 0x05, // syscall
    0xeb, 0xfe, // jmp .
];

fn main(si: &StartInfo) {
    println!("domrun: dom0 builds and runs two PV domUs");
    let Ok(shared) = SharedInfo::map(si) else {
        guest_rt::test::error(format_args!("cannot map shared_info"));
    };
    let Some(mut scratch) = Scratch::new(si) else {
        guest_rt::test::error(format_args!("no scratch page"));
    };
    let exc = guest_rt::evtchn::bind_virq(VIRQ_DOM_EXC, 0);
    check("bind VIRQ_DOM_EXC", exc.is_ok());
    let mut doms = [0u16; 2];
    for (i, reason) in [SHUTDOWN_REBOOT, SHUTDOWN_SUSPEND].into_iter().enumerate() {
        let mut code = [0u8; 72];
        code[..CODE.len()].copy_from_slice(&CODE);
        code[REASON_AT..REASON_AT + 4].copy_from_slice(&reason.to_le_bytes());
        match build(&mut scratch, &code, &[]) {
            Ok((d, _)) => doms[i] = d,
            Err(e) => {
                check_eq("build a domU", Err(e), Ok(0u16));
                guest_rt::test::finish();
            }
        }
    }
    info(format_args!("built d{} and d{}", doms[0], doms[1]));
    for d in doms {
        check_eq(
            "its vCPU 0 is online after setvcpucontext",
            vcpu_online(d, 0),
            Ok(1),
        );
        check_eq("unpause it", simple(DOMCTL_UNPAUSEDOMAIN, d), Ok(0));
    }
    // Generous: under lockstep in TCG each of the domUs' hypercalls is a paired transaction.
    let codes = wait_shutdown(&shared, &doms, 60_000);
    check_eq(
        "both domUs ran and shut down with their reasons",
        codes,
        [Some(SHUTDOWN_REBOOT), Some(SHUTDOWN_SUSPEND)],
    );
    if let Ok(port) = exc {
        // Xen sets a domain's shutdown flag and then raises VIRQ_DOM_EXC: seen from this CPU
        // the flag can come first, so the event gets a moment to arrive.
        let now = || shared.system_time_now(0).unwrap_or(0);
        let t0 = now();
        while !shared.evtchn_pending(port) && now() < t0 + 10_000_000_000 {
            let _ = guest_rt::sched::poll(&[port], now() + 50_000_000);
        }
        check(
            "VIRQ_DOM_EXC is pending for dom0",
            shared.evtchn_pending(port),
        );
    }
    check_eq(
        "dom0 is not shut down",
        flags(0).map(|f| f & DOMINF_SHUTDOWN),
        Ok(0),
    );
    for d in doms {
        check_eq("destroy it", simple(DOMCTL_DESTROYDOMAIN, d), Ok(0));
        check_eq("it is gone", flags(d).map(|_| ()), Err(Errno::ESRCH));
    }
    unreturnable_domu(&shared, &mut scratch);
    context_calls(&shared, &mut scratch);
    unprivileged_calls(&shared, &mut scratch);
    guest_rt::test::finish();
}

const SHUTDOWN_CRASH: u32 = 3;

/// A domU whose context has a code selector it cannot run on (an empty entry of its GDT)
/// and no trap table: its first return to the guest faults (#GP), a fault of its own with no
/// handler, so its domain is crashed; dom0 and the hypervisor go on.
fn unreturnable_domu(shared: &SharedInfo, s: &mut Scratch) {
    let mut code = [0u8; 72];
    code[..CODE.len()].copy_from_slice(&CODE);
    let d = match build_with(s, &code, &[], &[(520 + 136, 0x2b)]) {
        Ok((d, _)) => d,
        Err(e) => {
            check_eq("build a domU with CS 0x2b", Err(e), Ok(0u16));
            return;
        }
    };
    check_eq(
        "unpause the domU with CS 0x2b",
        simple(DOMCTL_UNPAUSEDOMAIN, d),
        Ok(0),
    );
    check_eq(
        "returning to it faults with no handler: crashed",
        wait_shutdown(shared, &[d, d], 60_000)[0],
        Some(SHUTDOWN_CRASH),
    );
    check_eq(
        "dom0 is not shut down",
        flags(0).map(|f| f & DOMINF_SHUTDOWN),
        Ok(0),
    );
    check_eq("destroy it", simple(DOMCTL_DESTROYDOMAIN, d), Ok(0));
}

/// Size of `struct vcpu_guest_context` (x86-64).
const CTX_SIZE: usize = smp::VCPU_GUEST_CONTEXT_SIZE;
const CTX_FLAGS: usize = FLAGS;
const VGCF_I387_VALID: u64 = 1 << 0;
const VGCF_IN_KERNEL: u64 = 1 << 2;
const VGCF_ONLINE: u64 = 1 << 5;
/// Where the domU's code issues its shutdown (the `lea` of the reason precedes it) and
/// the `jmp .` after it.
const SHUTDOWN_RET: u64 = CODE_VA + 42;

/// What the context-checking domU starts with beyond every domU's context: registers its
/// code leaves alone, the callbacks, segment bases, a page-fault handler whose code
/// selector has RPL 0 (Xen raises it to 3) and a valid FPU image (FCW 0x27f, MXCSR rounding
/// toward zero), an LDT (mapped by nothing: Xen maps its pages on use), VM assists, CR4 and
/// CR5 as asked, and breakpoints (DR1's value is one Xen refuses and leaves at 0).
const CTX_EXTRA: [(usize, u64); 23] = [
    (CTX_FLAGS, VGCF_IN_KERNEL | VGCF_ONLINE | VGCF_I387_VALID),
    (0, 0x027f),
    (24, 0x7f80),
    (R12, 0x1212_1212_1212_1212),
    (R13, 0x1313_1313_1313_1313),
    (RBP, 0xb0b0_b0b0),
    (RDX, 0xd0d0_d0d0),
    (EVENT_CB, CODE_VA + 0x100),
    (FAILSAFE_CB, CODE_VA + 0x200),
    (SYSCALL_CB, CODE_VA + 0x300),
    (FS_BASE, 0x7000_0000),
    (GS_BASE_KERNEL, 0x7100_0000),
    (TRAP_CTXT + 14 * 16, 14 | (0xe030 << 16)),
    (TRAP_CTXT + 14 * 16 + 8, CODE_VA + 0x400),
    (LDT_BASE, CODE_VA + 0x10_0000),
    (LDT_BASE + 8, 16),
    (VM_ASSIST, 1 << 2),
    // TSD DE OSXSAVE and PGE (Xen's to decide). Not FSGSBASE: Xen 4.17 lets a PV guest set
    // it (real CR4 follows), DualVisor does not yet.
    (CTRLREG + 32, (1 << 2) | (1 << 3) | (1 << 7) | (1 << 18)),
    (CTRLREG + 40, 0x55),
    (DEBUGREG, CODE_VA + 0x800),
    (DEBUGREG + 8, 0xffff_8000_0000_0000),
    (DEBUGREG + 48, 1),
    (DEBUGREG + 56, 1),
];

/// `XEN_DOMCTL_getvcpucontext(dom, vcpu)` into `buf` (`to` overrides the buffer address).
fn get_context(dom: u16, vcpu: u32, buf: &mut [u8; CTX_SIZE], to: Option<u64>) -> XenResult {
    let mut op = CtlBuf::domctl(DOMCTL_GETVCPUCONTEXT, dom);
    op.set_u32(DOMCTL_U, vcpu);
    op.set_u64(DOMCTL_U + 8, to.unwrap_or(buf.as_mut_ptr() as u64));
    domctl(&mut op)
}

/// The little-endian word of `size` bytes at `at` in `buf`.
fn field(buf: &[u8; CTX_SIZE], at: usize, size: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..size].copy_from_slice(&buf[at..at + size]);
    u64::from_le_bytes(b)
}

/// Checks each (name, offset, size, value) of a context read back.
fn check_fields(buf: &[u8; CTX_SIZE], want: &[(&str, usize, usize, u64)]) {
    for &(name, at, size, v) in want {
        check_eq(name, field(buf, at, size), v);
    }
}

/// XEN_DOMCTL_getvcpucontext: -EINVAL for a vCPU not created, beyond max_vcpus or the
/// caller's own; -ENODATA before setvcpucontext and after a reset; -EFAULT for a bad buffer;
/// otherwise the context setvcpucontext gave (selectors' RPL raised to 3), and after the
/// domU has run and shut down its registers as it left them.
fn context_calls(shared: &SharedInfo, s: &mut Scratch) {
    let mut buf = [0u8; CTX_SIZE];
    check_eq(
        "getvcpucontext of the caller's own vCPU",
        get_context(0, 0, &mut buf, None),
        Err(Errno::EINVAL),
    );
    match create() {
        Ok(d) => {
            check_eq(
                "getvcpucontext of a vCPU not created yet",
                get_context(d, 0, &mut buf, None),
                Err(Errno::EINVAL),
            );
            check_eq("create its vCPU", max_vcpus(d), Ok(0));
            check_eq(
                "getvcpucontext of a vCPU never initialised",
                get_context(d, 0, &mut buf, None),
                Err(Errno::ENODATA),
            );
            check_eq("destroy it", simple(DOMCTL_DESTROYDOMAIN, d), Ok(0));
        }
        Err(e) => {
            check_eq("create a domain", Err(e), Ok(0u16));
        }
    }
    let mut code = [0u8; 72];
    code[..CODE.len()].copy_from_slice(&CODE);
    let (d, _) = match build_with(s, &code, &[], &CTX_EXTRA) {
        Ok(d) => d,
        Err(e) => {
            check_eq("build the context domU", Err(e), Ok(0u16));
            return;
        }
    };
    check_eq(
        "getvcpucontext beyond max_vcpus",
        get_context(d, 1, &mut buf, None),
        Err(Errno::EINVAL),
    );
    check_eq(
        "getvcpucontext into a null buffer",
        get_context(d, 0, &mut buf, Some(0)),
        Err(Errno::EFAULT),
    );
    check_eq(
        "getvcpucontext before it runs",
        get_context(d, 0, &mut buf, None),
        Ok(0),
    );
    let kept = [
        ("r12", R12, 8, 0x1212_1212_1212_1212),
        ("r13", R13, 8, 0x1313_1313_1313_1313),
        ("rbp", RBP, 8, 0xb0b0_b0b0),
        ("cs", CS, 2, 0xe033),
        ("ss", SS, 2, 0xe02b),
        ("kernel_ss", KERNEL_SS, 8, 0xe02b),
        ("kernel_sp", KERNEL_SP, 8, STACK_TOP),
        ("event_callback_eip", EVENT_CB, 8, CODE_VA + 0x100),
        ("failsafe_callback_eip", FAILSAFE_CB, 8, CODE_VA + 0x200),
        ("syscall_callback_eip", SYSCALL_CB, 8, CODE_VA + 0x300),
        ("fs_base", FS_BASE, 8, 0x7000_0000),
        ("gs_base_kernel", GS_BASE_KERNEL, 8, 0x7100_0000),
        ("gs_base_user", GS_BASE_USER, 8, 0),
        ("vm_assist as given", VM_ASSIST, 8, 1 << 2),
        ("ldt_base, ldt_ents", LDT_BASE, 8, CODE_VA + 0x10_0000),
        ("ldt_ents", LDT_BASE + 8, 8, 16),
        (
            "ctrlreg[4]: PAE MCE OSFXSR OSXMMEXCPT + TSD DE OSXSAVE",
            CTRLREG + 32,
            8,
            0x4066c,
        ),
        ("ctrlreg[5] kept", CTRLREG + 40, 8, 0x55),
        ("DR0", DEBUGREG, 8, CODE_VA + 0x800),
        ("DR1 refused by set_debugreg", DEBUGREG + 8, 8, 0),
        ("DR6 (reserved bits set)", DEBUGREG + 48, 8, 0xffff_0ff1),
        ("DR7 (L0, bit 10)", DEBUGREG + 56, 8, 0x401),
        ("ctrlreg[1] (no user page table)", CTRLREG + 8, 8, 0),
        (
            "trap 14 vector, flags, cs (RPL 3)",
            TRAP_CTXT + 14 * 16,
            4,
            14 | (0xe033 << 16),
        ),
        (
            "trap 14 address",
            TRAP_CTXT + 14 * 16 + 8,
            8,
            CODE_VA + 0x400,
        ),
        ("trap 13 unset", TRAP_CTXT + 13 * 16 + 8, 8, 0),
        ("fpu FCW as given", 0, 2, 0x27f),
        ("fpu MXCSR as given", 24, 4, 0x7f80),
    ];
    let cr3 = field(&buf, CTRLREG + 24, 8);
    check_fields(&buf, &kept);
    check_fields(
        &buf,
        &[
            (
                "flags (FPU state valid)",
                CTX_FLAGS,
                8,
                VGCF_IN_KERNEL | VGCF_ONLINE | VGCF_I387_VALID,
            ),
            ("rip", RIP, 8, CODE_VA),
            ("rsp", RSP, 8, STACK_TOP),
            ("rdx", RDX, 8, 0xd0d0_d0d0),
            ("rax", RAX, 8, 0),
            ("rflags as given", RFLAGS, 8, 0x200),
            ("ctrlreg[0] (Xen's CR0, TS clear)", CTRLREG, 8, 0x8005_0033),
        ],
    );
    check_eq(
        "unpause the context domU",
        simple(DOMCTL_UNPAUSEDOMAIN, d),
        Ok(0),
    );
    let code = wait_shutdown(shared, &[d, d], 60_000)[0];
    check_eq("the context domU ran and powered off", code, Some(0));
    check_eq(
        "getvcpucontext after it ran",
        get_context(d, 0, &mut buf, None),
        Ok(0),
    );
    check_fields(&buf, &kept);
    check_fields(
        &buf,
        &[
            (
                "flags (FPU state valid)",
                CTX_FLAGS,
                8,
                VGCF_IN_KERNEL | VGCF_ONLINE | VGCF_I387_VALID,
            ),
            ("rip (after the shutdown call)", RIP, 8, SHUTDOWN_RET),
            ("rsp", RSP, 8, STACK_TOP),
            ("rax (shutdown returned 0)", RAX, 8, 0),
            ("rbx (the loop ran out)", RBX, 8, 0),
            ("rdi (SCHEDOP_shutdown)", RDI, 8, 2),
            (
                "rsi (the reason's address)",
                RSI,
                8,
                CODE_VA + REASON_AT as u64,
            ),
            ("ctrlreg[3] unchanged", CTRLREG + 24, 8, cr3),
            ("rflags (IF, and ZF PF from the loop)", RFLAGS, 8, 0x246),
            ("rcx (SYSCALL's return address)", RCX, 8, SHUTDOWN_RET),
            ("r11 (SYSCALL's saved flags)", R11, 8, 0x246),
        ],
    );
    // An initialised vCPU is not reset: other page tables -EOPNOTSUPP, the same load.
    buf[CTX_FLAGS] &= !(VGCF_ONLINE as u8);
    buf[KERNEL_SP..KERNEL_SP + 8].copy_from_slice(&(STACK_TOP - 8).to_le_bytes());
    let mut other = buf;
    other[CTRLREG + 24..CTRLREG + 32].fill(0);
    other[R12..R12 + 8].fill(0x77);
    let mut op = CtlBuf::domctl(DOMCTL_SETVCPUCONTEXT, d);
    op.set_u64(DOMCTL_U + 8, other.as_ptr() as u64);
    check_eq(
        "setvcpucontext, other cr3",
        domctl(&mut op),
        Err(Errno::EOPNOTSUPP),
    );
    // Xen loads the registers before it compares the tables, the kernel stack after.
    let mut seen = [0u8; CTX_SIZE];
    check_eq("read it", get_context(d, 0, &mut seen, None), Ok(0));
    check_eq(
        "  ... r12 loaded",
        field(&seen, R12, 8),
        0x7777_7777_7777_7777,
    );
    check_eq("  ... kernel_sp not", field(&seen, KERNEL_SP, 8), STACK_TOP);
    op.set_u64(DOMCTL_U + 8, buf.as_ptr() as u64);
    check_eq("setvcpucontext, same tables", domctl(&mut op), Ok(0));
    check_eq("read it back", get_context(d, 0, &mut buf, None), Ok(0));
    check_eq("kernel_sp loaded", field(&buf, KERNEL_SP, 8), STACK_TOP - 8);
    op.set_u64(DOMCTL_U + 8, 0);
    check_eq("reset its vCPU (null context)", domctl(&mut op), Ok(0));
    check_eq(
        "getvcpucontext after the reset",
        get_context(d, 0, &mut buf, None),
        Err(Errno::ENODATA),
    );
    check_eq(
        "destroy the context domU",
        simple(DOMCTL_DESTROYDOMAIN, d),
        Ok(0),
    );
}

/// A domctl or sysctl the unprivileged domU makes, and what Xen 4.17 answers it.
struct Probe {
    what: &'static str,
    hypercall: u32,
    cmd: u32,
    version: u32,
    domain: u16,
    want: i64,
}

const HYPERVISOR_SYSCTL: u32 = 35;
const HYPERVISOR_DOMCTL: u32 = 36;
const EPERM: i64 = -1;
const ESRCH: i64 = -3;
const EACCES: i64 = -13;

const PROBES: [Probe; 11] = [
    Probe {
        what: "domctl getdomaininfo of dom0",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_GETDOMAININFO,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
    Probe {
        // Xen searches onwards before asking XSM: nothing found is -ESRCH for anyone...
        what: "domctl getdomaininfo with no domain at or above the id",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_GETDOMAININFO,
        version: 0x15,
        domain: 0x7000,
        want: ESRCH,
    },
    Probe {
        // ...a domain found above a missing id is refused.
        what: "domctl getdomaininfo from a missing id below a domain",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_GETDOMAININFO,
        version: 0x15,
        domain: 1,
        want: EPERM,
    },
    Probe {
        what: "domctl pausedomain of dom0",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_PAUSEDOMAIN,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
    Probe {
        what: "domctl createdomain",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_CREATEDOMAIN,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
    Probe {
        what: "domctl pausedomain of a missing domain",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_PAUSEDOMAIN,
        version: 0x15,
        domain: 0x7000,
        want: ESRCH,
    },
    Probe {
        what: "domctl at another interface version",
        hypercall: HYPERVISOR_DOMCTL,
        cmd: DOMCTL_GETDOMAININFO,
        version: 0x14,
        domain: 0,
        want: EACCES,
    },
    Probe {
        what: "sysctl physinfo",
        hypercall: HYPERVISOR_SYSCTL,
        cmd: SYSCTL_PHYSINFO,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
    Probe {
        what: "sysctl sched_id",
        hypercall: HYPERVISOR_SYSCTL,
        cmd: SYSCTL_SCHED_ID,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
    Probe {
        what: "sysctl getdomaininfolist",
        hypercall: HYPERVISOR_SYSCTL,
        cmd: SYSCTL_GETDOMAININFOLIST,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
    Probe {
        what: "sysctl readconsole",
        hypercall: HYPERVISOR_SYSCTL,
        cmd: SYSCTL_READCONSOLE,
        version: 0x15,
        domain: 0,
        want: EPERM,
    },
];

/// Probe `i`'s `xen_domctl`/`xen_sysctl` sits at `i * PROBE_STRIDE` in the domU's data page
/// (zero but for cmd, interface_version and domain); its result at `RESULTS_AT + 8 * i`.
const PROBE_STRIDE: u64 = 0x100;
const RESULTS_AT: u64 = 0xC00;
/// A zero word of the data page: the poweroff reason.
const ZERO_AT: u64 = 0xFF8;

/// Bytes of [`probe_code`]: 20 a probe, 19 for the shutdown.
const PROBE_CODE_LEN: usize = 20 * PROBES.len() + 19;

/// The domU's code: each probe `mov $struct, %edi; mov $nr, %eax; syscall; mov %rax, result`,
/// then `sched_op(SCHEDOP_shutdown, &poweroff)` and spin.
fn probe_code() -> [u8; PROBE_CODE_LEN] {
    let mut c = [0u8; PROBE_CODE_LEN];
    let mut at = 0;
    let mut put = |b: &[u8], at: &mut usize| {
        c[*at..*at + b.len()].copy_from_slice(b);
        *at += b.len();
    };
    let data = STACK_TOP as u32 - 0x1000;
    for (i, p) in PROBES.iter().enumerate() {
        put(&[0xbf], &mut at);
        put(
            &(data + (i as u32) * PROBE_STRIDE as u32).to_le_bytes(),
            &mut at,
        );
        put(&[0xb8], &mut at);
        put(&p.hypercall.to_le_bytes(), &mut at);
        put(&[0x0f, 0x05], &mut at);
        put(&[0x48, 0x89, 0x04, 0x25], &mut at); // mov %rax, disp32
        put(
            &(data + RESULTS_AT as u32 + 8 * i as u32).to_le_bytes(),
            &mut at,
        );
    }
    put(&[0xbf, 0x02, 0x00, 0x00, 0x00], &mut at); // mov $SCHEDOP_shutdown, %edi
    put(&[0xbe], &mut at);
    put(&(data + ZERO_AT as u32).to_le_bytes(), &mut at); // mov $&poweroff, %esi
    put(&[0xb8, 0x1d, 0x00, 0x00, 0x00], &mut at); // mov $__HYPERVISOR_sched_op, %eax
    put(&[0x0f, 0x05, 0xeb, 0xfe], &mut at); // syscall; jmp .
    c
}

/// Builds and runs the probing domU; checks what each of its calls returned, and that dom0
/// still manages domains afterwards.
fn unprivileged_calls(shared: &SharedInfo, s: &mut Scratch) {
    // Word 0 of each struct: cmd and interface_version; word 1: the domain id.
    let mut words = [(0usize, 0u64); 2 * PROBES.len()];
    for (i, p) in PROBES.iter().enumerate() {
        let at = (i as u64 * PROBE_STRIDE / 8) as usize;
        words[2 * i] = (at, u64::from(p.cmd) | (u64::from(p.version) << 32));
        words[2 * i + 1] = (at + 1, u64::from(p.domain));
    }
    let (d, data_mfn) = match build(s, &probe_code(), &words) {
        Ok(d) => d,
        Err(e) => {
            check_eq("build the probing domU", Err(e), Ok(0u16));
            return;
        }
    };
    check_eq(
        "unpause the probing domU",
        simple(DOMCTL_UNPAUSEDOMAIN, d),
        Ok(0),
    );
    let code = wait_shutdown(shared, &[d, d], 60_000)[0];
    check_eq("the probing domU ran and powered off", code, Some(0));
    match results(s, d, data_mfn) {
        Ok(r) => {
            for (p, got) in PROBES.iter().zip(r) {
                check_eq(p.what, got, p.want);
            }
        }
        Err(e) => {
            check_eq("read the domU's results", Err(e), Ok(()));
        }
    }
    check_eq(
        "dom0 still gets domain info",
        flags(0).map(|f| f & DOMINF_SHUTDOWN),
        Ok(0),
    );
    check_eq(
        "dom0 destroys the domU",
        simple(DOMCTL_DESTROYDOMAIN, d),
        Ok(0),
    );
    check_eq("it is gone", flags(d).map(|_| ()), Err(Errno::ESRCH));
}

/// The results domU `d` wrote to its data page (machine frame `mfn`).
fn results(s: &mut Scratch, d: u16, mfn: u64) -> Result<[i64; PROBES.len()], Errno> {
    s.map_foreign(d, mfn, pte::PRESENT | pte::ACCESSED)?;
    let mut out = [0i64; PROBES.len()];
    let mut ok = true;
    for (i, o) in out.iter_mut().enumerate() {
        match s.read(RESULTS_AT as usize / 8 + i) {
            Some(v) => *o = v as i64,
            None => ok = false,
        }
    }
    s.restore()?;
    if ok {
        Ok(out)
    } else {
        Err(Errno::EFAULT)
    }
}

fn vcpu_online(dom: u16, vcpu: u32) -> Result<u8, Errno> {
    let mut op = CtlBuf::domctl(DOMCTL_GETVCPUINFO, dom);
    op.set_u32(DOMCTL_U, vcpu);
    domctl(&mut op)?;
    Ok(op.u8(DOMCTL_U + 4))
}

/// The shutdown code of each domain once all have shut down (or `ms` ms have passed).
fn wait_shutdown(shared: &SharedInfo, doms: &[u16; 2], ms: u64) -> [Option<u32>; 2] {
    let now = || shared.system_time_now(0).unwrap_or(0);
    let start = now();
    loop {
        let mut out = [None; 2];
        for (o, d) in out.iter_mut().zip(doms) {
            if let Ok(f) = flags(*d) {
                if f & DOMINF_SHUTDOWN != 0 {
                    *o = Some(f >> 16);
                }
            }
        }
        if out.iter().all(Option::is_some) || now().saturating_sub(start) > ms * 1_000_000 {
            return out;
        }
        let _ = guest_rt::sched::yield_now();
    }
}

/// Builds a paused domU running `code` (at most 32 words), its stack page holding `data`
/// (word index, value) and zeros elsewhere: its id and the stack page's machine frame.
fn build(s: &mut Scratch, code: &[u8], data: &[(usize, u64)]) -> Result<(u16, u64), Errno> {
    build_with(s, code, data, &[])
}

/// A new paused domain with one vCPU allowed and none created yet: its id.
fn create() -> Result<u16, Errno> {
    let mut op = CtlBuf::domctl(DOMCTL_CREATEDOMAIN, 0);
    op.set_bytes(DOMCTL_U + 4, b"dualvisor-domrun");
    op.set_u32(DOMCTL_U + 28, 1);
    op.set_u32(DOMCTL_U + 32, 1023);
    op.set_u32(DOMCTL_U + 36, 32);
    op.set_u32(DOMCTL_U + 40, 1024);
    op.set_u32(DOMCTL_U + 44, 1);
    domctl(&mut op)?;
    Ok(op.u16(8))
}

/// XEN_DOMCTL_max_vcpus(1): creates `d`'s vCPU 0.
fn max_vcpus(d: u16) -> XenResult {
    let mut op = CtlBuf::domctl(DOMCTL_MAX_VCPUS, d);
    op.set_u32(DOMCTL_U, 1);
    domctl(&mut op)
}

/// As [`build`], the vCPU context also holding `extra` (byte offset, value) on top of what
/// every domU starts with.
fn build_with(
    s: &mut Scratch,
    code: &[u8],
    data: &[(usize, u64)],
    extra: &[(usize, u64)],
) -> Result<(u16, u64), Errno> {
    let d = create()?;
    max_vcpus(d)?;
    let mut op = CtlBuf::domctl(DOMCTL_MAX_MEM, d);
    op.set_u64(DOMCTL_U, (PAGES as u64) * 4);
    domctl(&mut op)?;
    let mut m = [0u64; PAGES];
    for (i, e) in m.iter_mut().enumerate() {
        *e = i as u64;
    }
    if foreign_reservation(XENMEM_POPULATE_PHYSMAP, d, &mut m, 0)? != PAGES as i64 {
        return Err(Errno::ENOMEM);
    }
    write_tables(s, d, &m)?;
    let mut words = [(0usize, 0u64); 32];
    let n = code.len().div_ceil(8).min(words.len());
    for (i, w) in words.iter_mut().enumerate().take(n) {
        let mut b = [0u8; 8];
        let end = (i * 8 + 8).min(code.len());
        b[..end - i * 8].copy_from_slice(&code[i * 8..end]);
        *w = (i, u64::from_le_bytes(b));
    }
    write_frame(s, d, m[PFN_CODE], &words[..n])?;
    write_frame(s, d, m[PFN_DATA], data)?;
    // struct vcpu_guest_context (x86-64): flags @512, user_regs @520 (rip +128, cs +136,
    // rflags +144, rsp +152, ss +160), kernel_ss @4968, kernel_sp @4976, ctrlreg[3] @5008.
    let mut ctx = [0u8; 5168];
    let mut put = |at: usize, v: u64| ctx[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(512, (1 << 2) | (1 << 5)); // VGCF_in_kernel | VGCF_online
    put(520 + 128, CODE_VA);
    put(520 + 136, 0xe033);
    put(520 + 144, 0x200);
    put(520 + 152, STACK_TOP);
    put(520 + 160, 0xe02b);
    put(4968, 0xe02b);
    put(4976, STACK_TOP);
    put(4984 + 3 * 8, m[PFN_L4] << 12);
    for &(at, v) in extra {
        put(at, v);
    }
    let mut op = CtlBuf::domctl(DOMCTL_SETVCPUCONTEXT, d);
    op.set_u32(DOMCTL_U, 0);
    op.set_u64(DOMCTL_U + 8, ctx.as_ptr() as u64);
    domctl(&mut op)?;
    Ok((d, m[PFN_DATA]))
}
