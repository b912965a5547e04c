//! Host tests of XEN_DOMCTL_getvcpucontext through the real state machine: Xen 4.17's
//! refusals, and a context set with setvcpucontext read back with the runtime's saved
//! registers and FPU image taken as input.

use super::tests::{as_dom, cfg, paged_domu, Host, BUF, OP};
use crate::effect::Effect;
use crate::hv::value_kind;
use crate::sched::SchedEffect;
use alloc::vec::Vec;
use dom0_interface::arch_x86::{
    TrapInfo, VcpuGuestContext, VGCF_FAILSAFE_DISABLES_EVENTS, VGCF_I387_VALID, VGCF_IN_KERNEL,
    VGCF_ONLINE,
};
use dom0_interface::domctl::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::HYPERVISOR_DOMCTL;

/// Where the context read back goes.
const OUT: u64 = 0x20_000;
const EPERM: i64 = -1;
const ESRCH: i64 = -3;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const ENODATA: i64 = -61;

/// XEN_DOMCTL_getvcpucontext of (`dom`, `vcpu`) into `to`: the return value, and the context
/// if it succeeded.
fn get(h: &mut Host, dom: u16, vcpu: u32, to: u64) -> (i64, Option<VcpuGuestContext>) {
    let mut op = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, dom);
    op.set_payload(&XenDomctlVcpucontext { vcpu, ctxt: to })
        .unwrap();
    let (r, _) = h.domctl(&op);
    if r != 0 {
        return (r, None);
    }
    let b: Vec<u8> = (0..VcpuGuestContext::SIZE as u64)
        .map(|i| h.h.mem.bytes[&(to + i)])
        .collect();
    (r, Some(VcpuGuestContext::read_from(&b).unwrap()))
}

/// setvcpucontext of `dom`'s vCPU 0 (`c` None: the null handle, a reset).
fn set(h: &mut Host, dom: u16, c: Option<&VcpuGuestContext>) -> (i64, Vec<Effect>) {
    let ctxt = match c {
        Some(c) => {
            h.h.mem.map(BUF, &c.to_vec());
            BUF
        }
        None => 0,
    };
    let mut op = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, dom);
    op.set_payload(&XenDomctlVcpucontext { vcpu: 0, ctxt })
        .unwrap();
    h.h.mem.map(OP, &op.to_vec());
    let r = h.call(HYPERVISOR_DOMCTL, [OP, 0, 0, 0, 0]);
    (r.ret, r.effects)
}

/// A paused domU with one vCPU and six pages: the L4 -> L3 -> L2 -> L1 chain mapping a code
/// and a stack page; [`OUT`] mapped in the caller. Returns its id and the page frames.
fn domu(h: &mut Host) -> (u16, Vec<u64>) {
    h.h.mem.map(OUT, &[0xAA; VcpuGuestContext::SIZE]);
    paged_domu(h)
}

/// The context the tests give: kernel mode, online, failsafe masks events, FPU state valid,
/// IOPL 1 in the flags, selectors with RPL 0 (Xen raises them), virtual CR0.TS, a #PF handler.
fn context(l4: u64) -> VcpuGuestContext {
    let mut c = VcpuGuestContext {
        flags: VGCF_IN_KERNEL | VGCF_ONLINE | VGCF_FAILSAFE_DISABLES_EVENTS | VGCF_I387_VALID,
        kernel_ss: 0xe028,
        kernel_sp: 0x40_2000,
        event_callback_eip: 0x40_0100,
        failsafe_callback_eip: 0x40_0200,
        syscall_callback_eip: 0x40_0300,
        fs_base: 0x7000_0000,
        gs_base_kernel: 0x7100_0000,
        ..VcpuGuestContext::default()
    };
    c.user_regs.rip = 0x40_0000;
    c.user_regs.cs = 0xe030;
    c.user_regs.ss = 0xe028;
    c.user_regs.rsp = 0x40_2000;
    c.user_regs.rflags = 0x1200;
    c.user_regs.r12 = 0x1212;
    c.user_regs.ds = 0x000f;
    c.user_regs.es = 0xe02b;
    c.user_regs.gs = 0x0013;
    c.ctrlreg[0] = 1 << 3;
    c.ctrlreg[3] = l4 << 12;
    // An FPU image with a non-default FCW and reserved MXCSR bits set.
    c.fpu_ctxt[..2].copy_from_slice(&0x027fu16.to_le_bytes());
    c.fpu_ctxt[24..28].copy_from_slice(&0xdead_1f80u32.to_le_bytes());
    c.fpu_ctxt[160] = 0x5a;
    c.trap_ctxt[14] = TrapInfo {
        vector: 14,
        flags: 0,
        cs: 0xe030,
        address: 0x40_0400,
    };
    c
}

/// The runtime's saved state of (`dom`, `vcpu`) as the leader would answer it: word `i` is
/// `base + i`.
fn offer_saved(h: &mut Host, dom: u16, vcpu: u32, base: u64) {
    for i in 0..value_kind::VCPU_SAVED_WORDS {
        h.h.mem.values.insert(
            value_kind::vcpu_saved(dom, vcpu, i),
            [base + u64::from(i)].into_iter().collect(),
        );
    }
}

/// The FPU image setvcpucontext's effects load.
fn fpu_loaded(effects: &[Effect]) -> Vec<u8> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Sched(SchedEffect::SetVcpuFpu { fx, .. }) => Some(fx.clone()),
            _ => None,
        })
        .expect("SetVcpuFpu")
}

#[test]
fn getvcpucontext_refuses_as_xen_4_17() {
    let mut h = Host::new();
    // The caller's own vCPU cannot be paused.
    assert_eq!(get(&mut h, 0, 0, OUT).0, EINVAL);
    let d = h.create_with(0, cfg(1)).unwrap();
    // No vCPU yet (max_vcpus not called), then beyond max_vcpus.
    assert_eq!(get(&mut h, d, 0, OUT).0, EINVAL);
    assert_eq!(h.max_vcpus(d, 1), 0);
    assert_eq!(get(&mut h, d, 1, OUT).0, EINVAL);
    assert_eq!(get(&mut h, d, u32::MAX, OUT).0, EINVAL);
    // Created but never given a context.
    assert_eq!(get(&mut h, d, 0, OUT).0, ENODATA);
    assert_eq!(get(&mut h, 0x7000, 0, OUT).0, ESRCH);
    assert_eq!(as_dom(&mut h, d, |h| get(h, 0, 0, OUT).0), EPERM);
}

#[test]
fn getvcpucontext_returns_what_setvcpucontext_gave_with_the_saved_registers() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    let (r, effects) = set(&mut h, d, Some(&context(m[0])));
    assert_eq!(r, 0, "{effects:?}");
    // The data selectors as given (Xen does not check them: a bad one fails to load when the
    // vCPU is next resumed, into its failsafe callback).
    assert!(
        effects.contains(&Effect::Sched(SchedEffect::SetVcpuSelectors {
            dom: d,
            vcpu: 0,
            segs: [0x000f, 0xe02b, 0, 0x0013],
        }))
    );
    // The registers loaded have RPL 3 selectors and no IOPL (it is virtualised).
    let regs = effects.iter().find_map(|e| match e {
        Effect::Sched(SchedEffect::SetVcpuRegs { regs, .. }) => Some(*regs),
        _ => None,
    });
    let regs = regs.expect("SetVcpuRegs");
    assert_eq!((regs.cs, regs.ss, regs.rflags), (0xe033, 0xe02b, 0x200));
    // VGCF_i387_valid: the context's FPU image, MXCSR's reserved bits cleared.
    let fx = fpu_loaded(&effects);
    assert_eq!(&fx[..2], &0x027fu16.to_le_bytes());
    assert_eq!(&fx[24..28], &0x1f80u32.to_le_bytes());
    assert_eq!(fx[160], 0x5a);
    // The runtime saved those registers; the words it answers are its own.
    offer_saved(&mut h, d, 0, 0x100);
    let (r, c) = get(&mut h, d, 0, OUT);
    assert_eq!(r, 0);
    let c = c.unwrap();
    let u = &c.user_regs;
    assert_eq!((u.rax, u.rbx, u.r15, u.rip), (0x100, 0x101, 0x10e, 0x10f));
    assert_eq!((u.cs, u.rsp, u.ss), (0x110, 0x112, 0x113));
    // IOPL merged back into the saved flags.
    assert_eq!(u.rflags, 0x111 | 0x1000);
    assert_eq!(u.error_code, 0);
    assert_eq!(&c.fpu_ctxt[..8], &0x114u64.to_le_bytes());
    assert_eq!(&c.fpu_ctxt[504..], &(0x114u64 + 63).to_le_bytes());
    // The data selectors saved with them, packed DS, ES, FS, GS in one word.
    assert_eq!((u.ds, u.es, u.fs, u.gs), (0x100 + 84, 0, 0, 0));
    assert_eq!(
        c.flags,
        VGCF_IN_KERNEL | VGCF_ONLINE | VGCF_FAILSAFE_DISABLES_EVENTS | VGCF_I387_VALID
    );
    // From the replica: callbacks, stacks (RPL raised), bases, roots, CR0 with TS, IDT.
    assert_eq!((c.kernel_ss, c.kernel_sp), (0xe02b, 0x40_2000));
    assert_eq!(
        (
            c.event_callback_eip,
            c.failsafe_callback_eip,
            c.syscall_callback_eip
        ),
        (0x40_0100, 0x40_0200, 0x40_0300)
    );
    assert_eq!(
        (c.fs_base, c.gs_base_kernel, c.gs_base_user),
        (0x7000_0000, 0x7100_0000, 0)
    );
    assert_eq!(c.ctrlreg[3], m[0] << 12);
    assert_eq!(c.ctrlreg[1], 0);
    assert_eq!(c.ctrlreg[0], crate::pv::state::HOST_CR0 | (1 << 3));
    assert_eq!(c.ctrlreg[4], crate::pv::state::GUEST_CR4);
    assert_eq!(c.debugreg[6], crate::pv::state::DR6_DEFAULT);
    assert_eq!(c.debugreg[7], crate::pv::state::DR7_DEFAULT);
    assert_eq!(
        c.trap_ctxt[14],
        TrapInfo {
            vector: 14,
            flags: 0,
            cs: 0xe033,
            address: 0x40_0400
        }
    );
    assert_eq!(c.trap_ctxt[13], TrapInfo::default());
    assert_eq!(c.vm_assist, 0);
    assert_eq!(c.gdt_ents, 0);
}

#[test]
fn getvcpucontext_reports_mode_and_online_from_the_vcpu_now() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    let mut c = context(m[0]);
    c.flags = VGCF_ONLINE;
    // Starting in user mode takes a user page table (the same L4 will do).
    c.ctrlreg[1] = m[0] << 12;
    let (r, effects) = set(&mut h, d, Some(&c));
    assert_eq!(r, 0);
    // No VGCF_i387_valid: the FPU starts from its reset state, whatever the image said.
    let mut reset = [0u8; 512];
    reset[..2].copy_from_slice(&0x037fu16.to_le_bytes());
    reset[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    assert_eq!(fpu_loaded(&effects), reset.to_vec());
    let (r, got) = get(&mut h, d, 0, OUT);
    assert_eq!(r, 0);
    // Not in kernel mode, no FPU state given, nothing masks events.
    assert_eq!(got.unwrap().flags, VGCF_ONLINE);
    h.h.state
        .vcpus
        .update(&mut lockstep::Journal::new(), &(d, 0), |v| {
            v.kernel_mode = true;
            v.online = false;
        });
    // Xen keeps the context's flags (online included) and adds in_kernel by mode.
    assert_eq!(
        get(&mut h, d, 0, OUT).1.unwrap().flags,
        VGCF_ONLINE | VGCF_IN_KERNEL
    );
}

#[test]
fn getvcpucontext_faults_on_a_bad_buffer_and_after_a_reset_has_no_data() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    assert_eq!(set(&mut h, d, Some(&context(m[0]))).0, 0);
    // Nothing mapped at the destination: -EFAULT, and nothing written.
    let (r, _) = get(&mut h, d, 0, 0xdead_0000);
    assert_eq!(r, EFAULT);
    assert!(!h.h.mem.bytes.contains_key(&0xdead_0000));
    // A null context resets the vCPU: no data until the next setvcpucontext.
    assert_eq!(set(&mut h, d, None).0, 0);
    assert_eq!(get(&mut h, d, 0, OUT).0, ENODATA);
    assert_eq!(set(&mut h, d, Some(&context(m[0]))).0, 0);
    assert_eq!(get(&mut h, d, 0, OUT).0, 0);
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
    assert_eq!(h.free.len(), 0x100);
}

#[test]
fn getvcpucontext_reports_the_gdt_frames_set_gdt_gave() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    assert_eq!(set(&mut h, d, Some(&context(m[0]))).0, 0);
    // As set_gdt leaves them: two frames, 1024 entries.
    let mut j = lockstep::Journal::new();
    j.begin(1);
    crate::pv::state::update(&mut h.h.state, &mut j, (d, 0), |p| {
        p.gdt_frames[0] = m[4];
        p.gdt_frames[1] = m[5];
        p.gdt_ents = 1024;
    });
    offer_saved(&mut h, d, 0, 0x100);
    let (r, c) = get(&mut h, d, 0, OUT);
    assert_eq!(r, 0);
    let c = c.unwrap();
    assert_eq!(&c.gdt_frames[..3], &[m[4], m[5], 0]);
    assert_eq!(c.gdt_frames[15], 0);
    assert_eq!(c.gdt_ents, 1024);
}

/// Type references held on frame `mfn`.
fn type_count(h: &Host, mfn: u64) -> u32 {
    h.h.state.frames.get(&mfn).map_or(0, |p| p.type_count)
}

#[test]
fn setvcpucontext_loads_every_field_and_getvcpucontext_gives_them_back() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    let mut c = context(m[0]);
    // The code page (mapped read-only, no descriptors in it) as the GDT's only frame.
    c.gdt_frames[0] = m[4];
    c.gdt_ents = 512;
    c.ldt_base = 0x50_0000;
    c.ldt_ents = 16;
    c.vm_assist = 1 << 2;
    // TSD, DE and OSXSAVE are the guest's; Xen's bits whatever was asked. (Xen 4.17 also
    // lets it set FSGSBASE, which DualVisor does not load into CR4.)
    c.ctrlreg[4] = u64::MAX;
    c.ctrlreg[5] = 5;
    c.ctrlreg[7] = 7;
    c.debugreg[0] = 0x1000;
    // Refused by set_debugreg (Xen's range): stays 0.
    c.debugreg[1] = 0xffff_8000_0000_0000;
    c.debugreg[6] = 0x1;
    // L0 and an I/O breakpoint on DR1 (allowed: CR4.DE is set first).
    c.debugreg[7] = 0x1 | (2 << 20);
    let (r, _) = set(&mut h, d, Some(&c));
    assert_eq!(r, 0);
    assert_eq!(type_count(&h, m[4]), 1, "the GDT frame holds its type");
    offer_saved(&mut h, d, 0, 0);
    let got = get(&mut h, d, 0, OUT).1.unwrap();
    assert_eq!(got.gdt_frames[0], m[4]);
    assert_eq!(got.gdt_frames[1..], [0; 15]);
    assert_eq!(got.gdt_ents, 512);
    assert_eq!((got.ldt_base, got.ldt_ents), (0x50_0000, 16));
    assert_eq!(got.vm_assist, 1 << 2);
    assert_eq!(got.ctrlreg[4], 0x660 | (1 << 2) | (1 << 3) | (1 << 18));
    assert_eq!(got.ctrlreg[5..], [5, 0, 7]);
    assert_eq!(got.debugreg[..4], [0x1000, 0, 0, 0]);
    assert_eq!(got.debugreg[6], 0xffff_0ff1);
    assert_eq!(got.debugreg[7], 0x401 | (2 << 20));
    // Set again, unchanged tables: loads, and the GDT keeps its one reference.
    let (r, _) = set(&mut h, d, Some(&c));
    assert_eq!(r, 0);
    assert_eq!(type_count(&h, m[4]), 1);
    // A reset drops the GDT.
    assert_eq!(set(&mut h, d, None).0, 0);
    assert_eq!(type_count(&h, m[4]), 0);
}

#[test]
fn a_refused_gdt_or_root_leaves_no_reference_and_the_vcpu_uninitialised() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    let mut c = context(m[0]);
    // A frame the domU does not own: no GDT frame.
    c.gdt_frames[0] = 0xf_0000;
    c.gdt_ents = 1;
    assert_eq!(set(&mut h, d, Some(&c)).0, EINVAL);
    assert_eq!(get(&mut h, d, 0, OUT).0, ENODATA);
    assert_eq!(type_count(&h, m[0]), 0, "no root referenced");
    // Too many entries.
    c.gdt_frames[0] = m[4];
    c.gdt_ents = 14 * 512 + 1;
    assert_eq!(set(&mut h, d, Some(&c)).0, EINVAL);
    // A good GDT, a root that is not an L4: the GDT is dropped again.
    c.gdt_ents = 512;
    c.ctrlreg[3] = m[4] << 12;
    assert_eq!(set(&mut h, d, Some(&c)).0, EINVAL);
    assert_eq!(type_count(&h, m[4]), 0);
    assert_eq!(get(&mut h, d, 0, OUT).0, ENODATA);
    // User mode with no user page table.
    let mut c = context(m[0]);
    c.flags &= !VGCF_IN_KERNEL;
    assert_eq!(set(&mut h, d, Some(&c)).0, EINVAL);
    assert_eq!(get(&mut h, d, 0, OUT).0, ENODATA);
}

#[test]
fn ldt_base_is_checked_as_xen_does_whatever_the_entries() {
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    for (base, ents) in [
        (0x0000_8000_0000_0000, 0),
        (0xffff_8000_0000_0000, 0),
        (0x0000_8000_0000_0000, 1),
        (0x50_0008, 1),
        (0x50_0000, 8193),
    ] {
        let mut c = context(m[0]);
        c.ldt_base = base;
        c.ldt_ents = ents;
        assert_eq!(set(&mut h, d, Some(&c)).0, EINVAL, "{base:#x} {ents}");
    }
    let mut c = context(m[0]);
    c.ldt_base = 0xffff_8800_0000_0000;
    assert_eq!(
        set(&mut h, d, Some(&c)).0,
        0,
        "above the hypervisor's range"
    );
}

#[test]
fn an_initialised_vcpu_keeps_its_tables_or_the_context_is_refused() {
    const EOPNOTSUPP: i64 = -95;
    let mut h = Host::new();
    let (d, m) = domu(&mut h);
    let c = context(m[0]);
    assert_eq!(set(&mut h, d, Some(&c)).0, 0);
    let mut other = c;
    other.ctrlreg[3] = m[4] << 12;
    assert_eq!(set(&mut h, d, Some(&other)).0, EOPNOTSUPP);
    let mut other = c;
    other.ldt_ents = 1;
    assert_eq!(set(&mut h, d, Some(&other)).0, EOPNOTSUPP);
    let mut other = c;
    other.gdt_ents = 1;
    assert_eq!(set(&mut h, d, Some(&other)).0, EOPNOTSUPP);
    // The same tables: the stack and callbacks are loaded, the roots keep one reference.
    let mut again = c;
    again.kernel_sp = 0x40_1000;
    again.event_callback_eip = 0x40_0180;
    assert_eq!(set(&mut h, d, Some(&again)).0, 0);
    assert_eq!(type_count(&h, m[0]), 1);
    offer_saved(&mut h, d, 0, 0);
    let got = get(&mut h, d, 0, OUT).1.unwrap();
    assert_eq!(
        (got.kernel_sp, got.event_callback_eip),
        (0x40_1000, 0x40_0180)
    );
}
