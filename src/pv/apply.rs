//! Applying a committed transaction's effects on the hardware: the running vCPU's registers,
//! guest and machine memory, event delivery on shared_info pages, the scheduler's decisions,
//! page-table maintenance, and domain shutdown.

use super::shared::SharedPage;
use super::{set_regs, After, Runtime, VcpuRt};
use alloc::collections::BTreeMap;
use arch::guest::FxArea;
use arch::trap::TrapFrame;
use arch::xprintln;
use dom0_interface::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use xen_core::console::ConsoleEffect;
use xen_core::effect::{DomId, Effect, MmEffect};
use xen_core::evtchn::deliver;
use xen_core::evtchn::fifo::FifoDomain;
use xen_core::evtchn::fifo_deliver;
use xen_core::evtchn::EvtchnEffect;
use xen_core::pv::effect::PvEffect;
use xen_core::request::Request;
use xen_core::sched::SchedEffect;

/// The shared_info page of `dom` with every vCPU's vcpu_info, as the replica knows them.
pub(crate) fn shared_page(rt: &Runtime, dom: DomId) -> Option<SharedPage> {
    let st = rt.backend.replica();
    let base = st.dom_time.get(&dom)?.shared_info_maddr;
    if base == 0 {
        return None;
    }
    let vcpu_info: BTreeMap<u32, u64> = st
        .vcpus
        .iter()
        .filter(|(k, _)| k.0 == dom)
        .filter_map(|(k, _)| xen_core::sched::vcpu_info_maddr(st, *k).map(|m| (k.1, m)))
        .collect();
    Some(SharedPage { base, vcpu_info })
}

fn kick(rt: &Runtime, dom: DomId, vcpu: u32) {
    let me = crate::lockstep_spare::logical_cpu();
    for (cpu, r) in rt.running.iter().enumerate() {
        if *r == Some((dom, vcpu)) && cpu != me {
            arch::smp::kick(crate::lockstep_spare::physical_cpu(cpu));
        }
    }
}

/// Ports the hypervisor itself drives: a guest's emulated `out` never reaches them. (PIT
/// channel 2 and the speaker gate, 0x42, 0x43 and 0x61, are the hardware domain's after the
/// boot calibration: xen-core lets through only what Xen's `hwdom_pit_access` does.)
fn port_reserved(port: u16) -> bool {
    matches!(port, 0x20 | 0x21 | 0xA0 | 0xA1 | 0x40 | 0x41 | 0x70 | 0x71 | 0xCF9 | 0xF4..=0xF7 | 0x3F8..=0x3FF)
}

/// Applies `effects` of `req` (on a vCPU whose kernel tables are `cr3`; `live` its registers).
#[inline]
pub(crate) fn apply_all(
    rt: &mut Runtime,
    req: &Request,
    cr3: u64,
    mut live: Option<(&mut TrapFrame, &mut FxArea)>,
    effects: &[Effect],
    after: &mut After,
) {
    // Most hypercalls commit just their return value: set here, without the call into the
    // whole dispatch (a large frame to set up for one register write).
    let settled = !(rt.cross_cpu && rt.unsettled);
    if let ([Effect::Return(v)], Some((f, _)), true) = (effects, &mut live, settled) {
        f.rax = *v as u64;
        return;
    }
    apply_each(rt, req, cr3, live, effects, after);
}

/// [`apply_all`], effect by effect.
#[inline(never)]
fn apply_each(
    rt: &mut Runtime,
    req: &Request,
    cr3: u64,
    mut live: Option<(&mut TrapFrame, &mut FxArea)>,
    effects: &[Effect],
    after: &mut After,
) {
    for e in effects {
        match e {
            Effect::Return(v) => {
                if let Some((f, _)) = live.as_mut() {
                    f.rax = *v as u64;
                }
            }
            Effect::Continue(args) => {
                if let Some((f, _)) = live.as_mut() {
                    f.rip = f.rip.wrapping_sub(2);
                    f.rdi = args[0];
                    f.rsi = args[1];
                    f.rdx = args[2];
                    f.r10 = args[3];
                    f.r8 = args[4];
                }
            }
            Effect::SetRegs(r) => {
                if let Some((f, _)) = live.as_mut() {
                    set_regs(f, r);
                }
            }
            Effect::WriteGuest { addr, data } => {
                if !arch::guestmem::write(cr3, *addr, data) {
                    xprintln!(
                        "d{}v{}: committed guest write at {:#x} failed (mapping changed)",
                        req.dom,
                        req.vcpu,
                        addr
                    );
                }
            }
            Effect::WriteMachine { maddr, value } => {
                arch::guestmem::write_machine_u64(*maddr, *value);
            }
            Effect::ConsoleWrite { dom, data } => {
                if *dom == 0 {
                    arch::console::write_raw(data);
                } else {
                    arch::console::write_raw(alloc::format!("(d{dom}) ").as_bytes());
                    arch::console::write_raw(data);
                }
            }
            Effect::Log(line) => xprintln!(
                "{}",
                core::str::from_utf8(line).unwrap_or("<log line not UTF-8>")
            ),
            Effect::Console(c) => match c {
                ConsoleEffect::RxConsumed { cons } => {
                    arch::conring::SERIAL_RX.lock().advance_to(*cons)
                }
                ConsoleEffect::ConringClear { c } => arch::conring::CONRING.lock().advance_to(*c),
            },
            Effect::Yield | Effect::Block => {}
            // The exit's first shutdown and first crash are the ones reported (`after`
            // gathers every transaction of the exit).
            Effect::DomainShutdown { dom, reason } => {
                after.shutdown.get_or_insert((*dom, *reason));
            }
            Effect::DomainCrash { dom } => {
                after.crashed.get_or_insert(*dom);
            }
            Effect::DomainDestroyed { dom } => {
                rt.vcpus.retain(|k, _| k.0 != *dom);
                rt.drop_loaded_selectors(|k| k.0 == *dom);
                rt.unsettled = true;
                for slot in rt.running.iter_mut() {
                    if slot.is_some_and(|k| k.0 == *dom) {
                        *slot = None;
                    }
                }
            }
            Effect::Sched(s) => apply_sched(rt, s),
            Effect::Evtchn(ev) => apply_evtchn(rt, ev),
            Effect::Mm(m) => apply_mm(m, rt.cross_cpu, after),
            Effect::Pv(p) => apply_pv(rt, p),
            Effect::Lockstep(op) => rt.backend.control(op),
            Effect::Gsi(g) => super::irq::apply(g),
        }
    }
    if rt.cross_cpu {
        ask_departures(rt, after);
    }
}

/// Synchronous descheduling: every other leader CPU that holds a vCPU the scheduler no
/// longer gives it (taken off by these effects or by earlier ones it has not answered yet)
/// is asked to leave it; the exit path waits for the answers once the runtime lock is
/// released, and frames these effects released wait for them too.
///
/// Nothing to look at unless a `running` slot changed since the last check found every
/// other CPU holding what it was given (`Runtime::unsettled`): most transactions change no
/// slot, and the scan of every CPU cost ~200 instructions per hypercall.
fn ask_departures(rt: &mut Runtime, after: &mut After) {
    if !rt.unsettled {
        return;
    }
    let me = crate::lockstep_spare::logical_cpu();
    let mut unsettled = false;
    for cpu in 0..rt.on_cpu.len() {
        let held = rt.on_cpu[cpu];
        if cpu == me || held.is_none() || held == rt.running[cpu] {
            continue;
        }
        // Until it has left that vCPU (its exit sets `on_cpu`), later checks look again.
        unsettled = true;
        if after.departures.iter().any(|&(c, _)| c == cpu) {
            // Asked already in this exit: that answer covers this change too.
            continue;
        }
        if let Some(a) = arch::desched::ask(cpu) {
            after.departures.push(a);
            arch::smp::kick(crate::lockstep_spare::physical_cpu(cpu));
        }
    }
    rt.unsettled = unsettled;
}

fn apply_sched(rt: &mut Runtime, s: &SchedEffect) {
    match s {
        SchedEffect::RunVcpu { pcpu, vcpu } => {
            if let Some(slot) = rt.running.get_mut(*pcpu as usize) {
                *slot = *vcpu;
                rt.unsettled = true;
            }
            if rt.cross_cpu && *pcpu as usize != crate::lockstep_spare::logical_cpu() {
                // Another leader CPU: it picks its new vCPU up from its idle loop or its
                // next exit.
                arch::smp::kick(crate::lockstep_spare::physical_cpu(*pcpu as usize));
            }
            if let Some(k) = vcpu {
                rt.vcpus.entry(*k).or_insert_with(VcpuRt::new);
            }
        }
        SchedEffect::ArmTimer { pcpu, deadline } => {
            if let Some(slot) = rt.deadline.get_mut(*pcpu as usize) {
                *slot = *deadline;
            }
        }
        // Recorded only: the VIRQ was delivered inside the transaction.
        SchedEffect::SendVirq { .. } => {}
        SchedEffect::WriteVcpuGuest {
            dom,
            vcpu,
            addr,
            data,
        } => {
            let cr3 = rt
                .backend
                .replica()
                .vcpus
                .get(&(*dom, *vcpu))
                .map_or(0, |v| v.cr3);
            if cr3 != 0 {
                // Faults are ignored, as Xen's runstate-area and time-area updates do.
                arch::guestmem::write(cr3, *addr, data);
            }
        }
        SchedEffect::SetVcpuRegs { dom, vcpu, regs } => {
            let v = rt.vcpus.entry((*dom, *vcpu)).or_insert_with(VcpuRt::new);
            set_regs(&mut v.frame, regs);
        }
        SchedEffect::SetVcpuFpu { dom, vcpu, fx } => {
            let v = rt.vcpus.entry((*dom, *vcpu)).or_insert_with(VcpuRt::new);
            if let Ok(image) = <&[u8; 512]>::try_from(&fx[..]) {
                v.fx.set_image(image);
            }
        }
        SchedEffect::SetVcpuSelectors { dom, vcpu, segs } => {
            rt.vcpus
                .entry((*dom, *vcpu))
                .or_insert_with(VcpuRt::new)
                .segs = *segs;
            rt.drop_loaded_selectors(|k| k == (*dom, *vcpu));
        }
        SchedEffect::WriteMachineByte { maddr, value } => {
            arch::guestmem::write_machine_u8(*maddr, *value);
        }
    }
}

fn apply_evtchn(rt: &mut Runtime, ev: &EvtchnEffect) {
    match ev {
        EvtchnEffect::Set { dom, port, vcpu } => {
            if let Some(mut page) = shared_page(rt, *dom) {
                if deliver::deliver(&mut page, *port, *vcpu).kick {
                    kick(rt, *dom, *vcpu);
                }
            }
        }
        EvtchnEffect::Unmask { dom, port, vcpu } => {
            if let Some(mut page) = shared_page(rt, *dom) {
                if deliver::unmask(&mut page, *port, *vcpu) {
                    kick(rt, *dom, *vcpu);
                }
            }
        }
        EvtchnEffect::Clear { dom, port } => {
            if let Some(mut page) = shared_page(rt, *dom) {
                deliver::clear(&mut page, *port);
            }
        }
        // Only emitted without a scheduler; DualVisor always runs one.
        EvtchnEffect::Poll { .. } => {}
        EvtchnEffect::FifoSet {
            dom,
            port,
            vcpu,
            priority,
        } => apply_fifo(rt, *dom, *vcpu, |page, q, fd| {
            fifo_deliver::set_pending(page, q, fd, *dom, *port, *vcpu, *priority).kick
        }),
        EvtchnEffect::FifoUnmask {
            dom,
            port,
            vcpu,
            priority,
        } => apply_fifo(rt, *dom, *vcpu, |page, q, fd| {
            fifo_deliver::unmask(page, q, fd, *dom, *port, *vcpu, *priority).kick
        }),
        EvtchnEffect::FifoClear { word, .. } => {
            // The word's machine address came with the effect: no shared_info page needed.
            let mut page = SharedPage {
                base: 0,
                vcpu_info: BTreeMap::new(),
            };
            fifo_deliver::clear(&mut page, *word);
        }
        EvtchnEffect::FifoReset { dom } => super::shared::FIFO_QUEUES.lock().reset(*dom),
    }
}

/// Runs FIFO delivery `f` for `dom` over its real event words (the event array and control
/// blocks as the committed replica has them) and the shared queue tails; kicks `vcpu` if `f`
/// says so. Nothing happens for a domain no longer on FIFO.
fn apply_fifo(
    rt: &Runtime,
    dom: DomId,
    vcpu: u32,
    f: impl FnOnce(&mut SharedPage, &mut fifo_deliver::FifoQueues, &FifoDomain) -> bool,
) {
    let Some(fd) = rt.backend.replica().evtchn_fifo.get(&dom) else {
        return;
    };
    let mut page = shared_page(rt, dom).unwrap_or(SharedPage {
        base: 0,
        vcpu_info: BTreeMap::new(),
    });
    let kick_it = f(&mut page, &mut super::shared::FIFO_QUEUES.lock(), fd);
    if kick_it {
        kick(rt, dom, vcpu);
    }
}

/// `cross_cpu`: several CPUs run guests ([`super::Runtime`]'s `cross_cpu`).
fn apply_mm(m: &MmEffect, cross_cpu: bool, after: &mut After) {
    if matches!(m, MmEffect::FlushTlb { .. }) && cross_cpu {
        // Other leader CPUs may run vCPUs of the same guest on the same page tables.
        after.remote_flush = true;
    }
    match m {
        MmEffect::FlushTlb { va: Some(va), .. } => arch::cpu::invlpg(*va),
        MmEffect::FlushTlb { va: None, .. } | MmEffect::SetCr3 { .. } => {
            arch::cpu::flush_tlb_local()
        }
        MmEffect::XenL4Slots { mfn, ro_m2p } => {
            let mut slots = arch::guestmem::hypervisor_l4_entries();
            if !ro_m2p {
                slots[0] = 0;
            }
            for (i, e) in slots.iter().enumerate() {
                arch::guestmem::write_frame(*mfn, (256 + i) * 8, &e.to_le_bytes());
            }
        }
        MmEffect::SetM2p { mfn, pfn } => {
            arch::paging::set_m2p(*mfn, *pfn);
        }
        // The exit path loads the vCPU's LDT (and GDT) from the replica before resuming it.
        MmEffect::LoadLdt { .. } => {}
        MmEffect::ClearPage { mfn } => {
            arch::guestmem::zero_frame(*mfn);
        }
        MmEffect::CopyPage { dst, src } => {
            arch::guestmem::copy_frame(*dst, *src);
        }
        MmEffect::FlushCache => arch::cpu::wbinvd(),
        // Released in `finish`, once no CPU can still reach them (see `After::freed`).
        MmEffect::FreeFrames(mfns) => after.freed.extend_from_slice(mfns),
        MmEffect::FramesAllocated { mfns, .. } => after.kept_frames.extend_from_slice(mfns),
        MmEffect::AtomicBits { maddr, set, clear } => {
            for bit in 0..64 {
                if set & (1 << bit) != 0 {
                    arch::guestmem::test_and_set_bit(*maddr, bit);
                }
            }
            for bit in 0..64 {
                if clear & (1 << bit) != 0 {
                    arch::guestmem::test_and_clear_bit(*maddr, bit);
                }
            }
        }
        MmEffect::CopyBytes { dst, src, len } => {
            arch::guestmem::copy_machine(*dst, *src, usize::from(*len));
        }
    }
}

fn apply_pv(rt: &mut Runtime, p: &PvEffect) {
    match p {
        // The mode, page-table base and segment bases are loaded from the replica's vCPU
        // record before the guest resumes.
        PvEffect::GuestMode { .. } | PvEffect::SegmentBase { .. } => {}
        PvEffect::UpcallMask { dom, vcpu, masked } => {
            if let Some(vi) = xen_core::sched::vcpu_info_maddr(rt.backend.replica(), (*dom, *vcpu))
            {
                arch::guestmem::write_machine_u8(vi + 1, u8::from(*masked));
            }
        }
        PvEffect::GuestCr2 { dom, vcpu, cr2 } => {
            if let Some(vi) = xen_core::sched::vcpu_info_maddr(rt.backend.replica(), (*dom, *vcpu))
            {
                arch::guestmem::write_machine_u64(vi + 16, *cr2);
            }
        }
        PvEffect::FpuTs(on) => arch::guest::set_guest_ts(*on),
        PvEffect::DebugReg { .. } => {}
        PvEffect::PortOut { port, size, value } => {
            if !port_reserved(*port) {
                match size {
                    1 => arch::cpu::outb(*port, *value as u8),
                    2 => arch::cpu::outw(*port, *value as u16),
                    _ => arch::cpu::outl(*port, *value),
                }
            }
        }
        PvEffect::SetGdt { frames, .. } => arch::gdt::load_guest_gdt(frames),
        PvEffect::CmosWrite { index, value } => arch::platform::cmos_write(*index, *value),
    }
}

/// How long a leader CPU waits for the others to do a TLB flush it asked for: 100 ms.
const REMOTE_FLUSH_TIMEOUT_MS: u64 = 100;

/// How long a leader CPU waits for others to leave the vCPUs it took off them: 100 ms.
const DEPARTURE_TIMEOUT_MS: u64 = 100;

/// After the runtime lock is dropped: the other leader CPUs' TLB flush, waiting for the
/// CPUs asked to leave a vCPU (before the guest that took it off goes on: a pause is
/// reported once the vCPU is off its CPU, as Xen's `vcpu_sleep_sync` makes it), releasing
/// frames, shutdown or crash of the hardware domain.
#[inline]
pub(crate) fn finish(after: After, noreboot: bool) {
    // On every exit, nearly always with nothing to do: decided here, without a call or a
    // move of `after`.
    if !after.remote_flush
        && after.departures.is_empty()
        && after.freed.is_empty()
        && after.crashed.is_none()
        && after.shutdown.is_none()
    {
        arch::desched::release_ready();
        return;
    }
    finish_all(after, noreboot);
}

/// [`finish`] with something to do.
#[inline(never)]
fn finish_all(after: After, noreboot: bool) {
    if after.remote_flush {
        let leaders = crate::lockstep_pairs::leader_cpus();
        let timeout = arch::lapic::tsc_khz().saturating_mul(REMOTE_FLUSH_TIMEOUT_MS);
        for cpu in arch::tlb::flush_others(&leaders, timeout) {
            xprintln!(
                "TLB flush: CPU{} did not answer within {} ms",
                cpu,
                REMOTE_FLUSH_TIMEOUT_MS
            );
        }
    }
    if !after.departures.is_empty() {
        let timeout = arch::lapic::tsc_khz().saturating_mul(DEPARTURE_TIMEOUT_MS);
        let me = crate::lockstep_spare::logical_cpu();
        if let arch::desched::Waited::Late(cpus) =
            arch::desched::wait(&after.departures, me, timeout)
        {
            for cpu in cpus {
                xprintln!(
                    "descheduling: CPU{} did not leave its vCPU within {} ms",
                    cpu,
                    DEPARTURE_TIMEOUT_MS
                );
            }
        }
    }
    arch::desched::release_after(&after.departures, &after.freed);
    arch::desched::release_ready();
    if let Some(d) = after.crashed {
        xprintln!("Domain {} crashed", d);
        if d == 0 {
            hardware_domain_down(0, SHUTDOWN_CRASH, noreboot);
        }
    }
    if let Some((d, reason)) = after.shutdown {
        if d == 0 {
            hardware_domain_down(d, reason, noreboot);
        }
    }
}

fn hardware_domain_down(dom: DomId, reason: u32, noreboot: bool) -> ! {
    // Xen's hwdom_shutdown/maybe_reboot wording, one line each.
    // How deep each CPU's stacks went in this run (the margin left), before the last line.
    arch::stacks::report();
    arch::smp::report_wakeups();
    super::irq::report();
    // Synchronous descheduling between leader CPUs, if there was any.
    arch::desched::report();
    let reboot_suffix = if noreboot {
        "'noreboot' set - not rebooting."
    } else {
        "rebooting machine in 5 seconds."
    };
    match reason {
        SHUTDOWN_POWEROFF => {
            xprintln!("Hardware Dom{} halted: halting machine", dom);
            halt_machine()
        }
        SHUTDOWN_REBOOT => {
            xprintln!("Hardware Dom{} shutdown: rebooting machine", dom);
            arch::platform::reset()
        }
        SHUTDOWN_CRASH => xprintln!("Hardware Dom{} crashed: {}", dom, reboot_suffix),
        _ => xprintln!(
            "Hardware Dom{} shutdown (unknown reason {}): {}",
            dom,
            reason,
            reboot_suffix
        ),
    }
    if noreboot {
        halt_machine()
    }
    arch::lapic::udelay(5_000_000);
    arch::platform::reset()
}

fn halt_machine() -> ! {
    arch::trap::begin_fatal();
    arch::cpu::halt_forever()
}
