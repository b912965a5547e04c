//! The PV runtime: runs guest vCPUs in ring 3 on the lockstep leader, turns every guest exit
//! (and every timer expiry) into a transaction over `xen-core`'s state machine, and applies
//! the committed effects: registers, guest memory, event delivery, scheduling, page tables.

mod apply;
mod build;
mod console;
mod env;
mod irq;
mod promote;
mod shared;

pub use build::{start_dom0, Dom0Params};
pub(crate) use promote::take_over;

use crate::lockstep_hw::Backend;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use arch::guest::{FxArea, GuestBases, GuestExit};
use arch::percpu::MAX_CPUS;
use arch::trap::TrapFrame;
use arch::xprintln;
use core::cell::Cell;
use dom0_interface::xen::DOMID_IDLE;
use env::PvEnv;
use lockstep::config::TxResult;
use spin::Mutex;
use xen_core::domain::VcpuKey;
use xen_core::effect::{DomId, Effect};
use xen_core::pv::ldt;
use xen_core::request::{ExitKind, GuestRegs, LiveBases, Request};

/// What the hardware side keeps per vCPU (outside the replica): its saved registers.
struct VcpuRt {
    frame: TrapFrame,
    fx: FxArea,
    /// Data selectors DS, ES, FS, GS (Xen's `user_regs.ds` ...): saved when the vCPU leaves
    /// its CPU, loaded when it is resumed on a CPU whose registers hold another vCPU's.
    segs: [u16; 4],
    /// Its XSAVE-managed state beyond x87/SSE (AVX ...), once it enabled any with `xsetbv`:
    /// saved when it leaves its CPU, loaded when it enters one (`arch::xstate`).
    xstate: Option<alloc::boxed::Box<arch::xstate::XArea>>,
}

impl VcpuRt {
    /// A vCPU that has not run yet: zero registers, reset FPU state, null selectors.
    fn new() -> Self {
        VcpuRt {
            frame: TrapFrame::ZERO,
            fx: FxArea::default(),
            segs: [0; 4],
            xstate: None,
        }
    }
}

/// The runtime state shared by the leader's exit paths.
pub(crate) struct Runtime {
    backend: Backend,
    vcpus: BTreeMap<VcpuKey, VcpuRt>,
    /// The vCPU each physical CPU runs (None: idle).
    running: [Option<VcpuKey>; MAX_CPUS],
    /// The vCPU whose registers each CPU holds live while it runs a guest: `running` as of
    /// its last entry. With several leader CPUs a transaction on one may change what
    /// another runs (`running`) while that one is in its guest; it is kicked, and its exit
    /// path switches from this vCPU to the new one.
    on_cpu: [Option<VcpuKey>; MAX_CPUS],
    /// Several leader CPUs run guests (several lockstep pairs, or lockstep off on several
    /// CPUs): an interrupt exit also delivers a pending event and picks up a vCPU switch
    /// decided on another CPU.
    cross_cpu: bool,
    /// Some CPU's `running` slot changed since every other CPU last held what it was given
    /// (`on_cpu`): the committed effects' descheduling check (`apply::ask_departures`) has
    /// CPUs to look at. Cleared by that check once none is left.
    unsettled: bool,
    /// The vCPU whose data selectors each CPU's segment registers hold (Xen's lazy
    /// `curr_vcpu`: a vCPU resumed after idling on its CPU needs no reload).
    selectors_of: [Option<VcpuKey>; MAX_CPUS],
    /// Per CPU, whether its extended (XSAVE) registers may hold a vCPU's values rather than
    /// their initial state: a vCPU that never enabled them must not see another's.
    xstate_dirty: [bool; MAX_CPUS],
    /// The CPUs have AMD SVM: null FS and GS load as 0, as Xen's `svm_load_segs` loads them.
    svm: bool,
    /// Each CPU's timer deadline (system time, ns).
    deadline: [Option<u64>; MAX_CPUS],
    /// Per CPU, the vCPU whose return to its guest last faulted there and how many faults
    /// came right before that one (reset by any other exit): xen-core crashes a domain whose
    /// returns keep faulting (`xen_core::traps::RETURN_FAULT_LIMIT`).
    return_faults: [(Option<VcpuKey>, u64); MAX_CPUS],
    noreboot: bool,
    /// Set on a leader that was escalated as the suspect and steps down: the transaction
    /// the promoted follower must run (nothing of it was committed) and the aftermath of the
    /// exit path so far. No transaction runs on this CPU any more.
    handover: Option<promote::Handover>,
    /// The committed effects of the transaction being applied: one buffer, emptied after
    /// each transaction, instead of a vector allocated per transaction (that allocation and
    /// its release cost a lockstep-off `xen_version` ~1,000 of its ~12,000 TCG cycles).
    committed: Vec<Effect>,
    /// Per CPU, the last vcpu_info address it asked for: the vCPU, the change stamps of the
    /// replica maps it was derived from (`vsched`, `dom_time`) and the address, kept while
    /// the stamps hold. The exit path asks at least twice per exit, and the two map lookups
    /// each time were ~6% of a lockstep-off hypercall (`make profile`).
    vi_cache: [ViCache; MAX_CPUS],
    /// Per CPU, what its last complete resume of its vCPU without a vCPU switch was prepared
    /// from ([`ResumeMark`]), with the token that the CPU held the context then: while both
    /// hold, the resume has nothing to map or load.
    resumed: [Option<(ResumeMark, arch::guest_context::Held)>; MAX_CPUS],
}

/// What a resume of a vCPU that stays on its CPU depends on: the context source (the vCPU
/// and the change stamps of the two replica maps its CPU state, bases, CR3 and LDT come
/// from) and the code and stack selectors it resumes with (whether an LDT page must be
/// mapped for them). Equal marks, with the CPU still holding that context, mean the LDT
/// check, the base and CR3 loads and the CPU-state load would each find nothing to do: the
/// hardware bases the guest could change without an exit were recorded in the replica by
/// this exit's first transaction, renewing a stamp if they changed.
#[derive(Clone, Copy)]
struct ResumeMark {
    source: arch::guest_context::Source,
    cs_ss: [u64; 2],
}

impl ResumeMark {
    /// Equal marks (compared inline, see [`arch::guest_context::words_eq`]).
    fn same(&self, other: &ResumeMark) -> bool {
        arch::guest_context::words_eq(&self.source, &other.source)
            && arch::guest_context::words_eq(&self.cs_ss, &other.cs_ss)
    }
}

/// A CPU's cached vcpu_info address ([`Runtime::vcpu_info_maddr`]). Each part in its own
/// cell, so that a lookup reads the tag and the one part it wants, not a copy of the whole.
struct ViCache {
    /// The vCPU the entry is for (`dom << 32 | vcpu`; [`ViCache::EMPTY`]: none).
    key: Cell<u64>,
    /// The change stamps of the two maps the address comes from, when it was cached.
    stamps: Cell<[u64; 4]>,
    maddr: Cell<Option<u64>>,
    /// Its first word (pending and mask bytes), if it is RAM: checked once, when cached.
    word: Cell<Option<arch::guestmem::RamWord>>,
}

impl ViCache {
    /// No vCPU (domain ids are 16 bits).
    const EMPTY: u64 = u64::MAX;

    const fn new() -> Self {
        ViCache {
            key: Cell::new(Self::EMPTY),
            stamps: Cell::new([0; 4]),
            maddr: Cell::new(None),
            word: Cell::new(None),
        }
    }
}

/// Effects the committed-effects buffer holds before it first grows: more than a common
/// transaction emits, allocated with the runtime (outside any replica arena).
const COMMITTED_CAPACITY: usize = 64;

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

fn regs_of(f: &TrapFrame) -> GuestRegs {
    GuestRegs {
        rax: f.rax,
        rbx: f.rbx,
        rcx: f.rcx,
        rdx: f.rdx,
        rsi: f.rsi,
        rdi: f.rdi,
        rbp: f.rbp,
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rip: f.rip,
        cs: f.cs,
        rflags: f.rflags,
        rsp: f.rsp,
        ss: f.ss,
    }
}

fn set_regs(f: &mut TrapFrame, r: &GuestRegs) {
    f.rax = r.rax;
    f.rbx = r.rbx;
    f.rcx = r.rcx;
    f.rdx = r.rdx;
    f.rsi = r.rsi;
    f.rdi = r.rdi;
    f.rbp = r.rbp;
    f.r8 = r.r8;
    f.r9 = r.r9;
    f.r10 = r.r10;
    f.r11 = r.r11;
    f.r12 = r.r12;
    f.r13 = r.r13;
    f.r14 = r.r14;
    f.r15 = r.r15;
    f.rip = r.rip;
    f.cs = r.cs;
    f.rflags = r.rflags;
    f.rsp = r.rsp;
    f.ss = r.ss;
}

impl Runtime {
    /// The kernel page-table base of `key` (guest addresses in handlers resolve through it).
    /// Whether logical CPU `cpu`'s leader stepped down (escalated as the suspect): the rest of
    /// its exit path runs no transaction and ends in [`promote::step_down`].
    fn stepping_down(&self, cpu: usize) -> bool {
        self.handover.as_ref().is_some_and(|h| h.cpu == cpu)
    }

    fn kernel_cr3(&self, key: VcpuKey) -> u64 {
        self.backend.replica().vcpus.get(&key).map_or(0, |v| v.cr3)
    }

    /// Machine address of `key`'s vcpu_info in the leader's replica
    /// (`xen_core::sched::vcpu_info_maddr`), from this CPU's cache while the maps it comes
    /// from are unchanged.
    fn vcpu_info_maddr(&self, key: VcpuKey) -> Option<u64> {
        self.vcpu_info(key, |c| c.maddr.get()).flatten()
    }

    /// `what` of this CPU's cached vcpu_info of `key` (see [`Runtime::vcpu_info_maddr`]),
    /// renewed first if a map it comes from changed.
    fn vcpu_info<R>(&self, key: VcpuKey, what: impl FnOnce(&ViCache) -> R) -> Option<R> {
        let replica = self.backend.replica();
        let [a, b] = replica.vsched.stamp().words();
        let [c, d] = replica.dom_time.stamp().words();
        let stamps = [a, b, c, d];
        let slot = self.vi_cache.get(arch::percpu::cpu_index())?;
        let tag = (u64::from(key.0) << 32) | u64::from(key.1);
        if slot.key.get() != tag || !arch::guest_context::words_eq(&slot.stamps.get(), &stamps) {
            let maddr = xen_core::sched::vcpu_info_maddr(replica, key);
            slot.key.set(tag);
            slot.stamps.set(stamps);
            slot.maddr.set(maddr);
            slot.word.set(maddr.and_then(arch::guestmem::RamWord::new));
        }
        Some(what(slot))
    }

    /// Whether `key` has an event pending and not masked in its vcpu_info (its first two
    /// bytes, `evtchn_upcall_pending` and `evtchn_upcall_mask`). The frame stays allocated
    /// while the replica names it (a registered vcpu_info's frame holds a general and a
    /// writable-type reference until its domain goes; shared_info lives as long as its
    /// domain), so it is read without the allocator's check.
    fn event_pending(&self, key: VcpuKey) -> bool {
        self.vcpu_info(key, |c| c.word.get())
            .flatten()
            .is_some_and(|w| {
                let [pending, mask] = w.read().to_le_bytes();
                pending != 0 && mask == 0
            })
    }

    /// Prepares this CPU to resume `key`: its bases and its virtual CR0.TS. `held`: the FS and
    /// GS bases the registers hold, if known (see [`arch::guest::load_bases`]).
    fn load(&self, key: VcpuKey, held: Option<(u64, u64)>) {
        arch::guest::load_bases(self.bases(key), held);
        self.load_cpu_state(key);
    }

    /// This CPU's share of `key`'s PV CPU state: its virtual CR0.TS, its TSC_AUX, CR4.TSD and
    /// CR4.FSGSBASE, its GDT and LDT frames and its breakpoints.
    ///
    /// The state is read from two maps of the leader's replica only: named by the vCPU and
    /// the maps' change stamps, it is neither built nor compared again while neither map
    /// changed ([`arch::guest_context::load_from`]).
    fn load_cpu_state(&self, key: VcpuKey) {
        use xen_core::pv::state::{CR4_FSGSBASE, CR4_TSD, GDT_GUEST_PAGES, LDT_PAGES};
        let replica = self.backend.replica();
        arch::guest_context::load_from(self.context_source(key), || {
            let pv = replica.pv_vcpus.get(&key);
            arch::guest_context::GuestContext {
                ts: pv.is_some_and(|p| p.cr0_ts),
                tsc_aux: pv.map_or(0, |p| p.tsc_aux as u32),
                tsd: pv.is_some_and(|p| p.cr4 & CR4_TSD != 0),
                fsgsbase: pv.is_some_and(|p| p.cr4 & CR4_FSGSBASE != 0),
                gdt_frames: pv.map_or([0; GDT_GUEST_PAGES], |p| p.gdt_frames),
                ldt_frames: pv.map_or([0; LDT_PAGES], |p| p.ldt_frames),
                ldt_ents: replica.vcpus.get(&key).map_or(0, |v| v.ldt_ents),
                dr: pv.map_or([0; 4], |p| p.dr),
                dr7: pv.map_or(arch::cpu::DR7_DEFAULT, |p| p.dr7),
                xcr0: pv.map_or(arch::xstate::XCR0_FP_SSE, |p| p.xcr0),
            }
        });
    }

    /// What `key`'s CPU state is built from: the vCPU and the change stamps of the replica
    /// maps it is read from (`pv_vcpus`, `vcpus`).
    fn context_source(&self, key: VcpuKey) -> arch::guest_context::Source {
        let replica = self.backend.replica();
        let [pv_map, pv_changes] = replica.pv_vcpus.stamp().words();
        let [v_map, v_changes] = replica.vcpus.stamp().words();
        let who = (u64::from(key.0) << 32) | u64::from(key.1);
        [who, pv_map, pv_changes, v_map, v_changes]
    }

    /// Every XCR0 bit `key` ever enabled.
    fn xcr0_accum(&self, key: VcpuKey) -> u64 {
        self.backend
            .replica()
            .pv_vcpus
            .get(&key)
            .map_or(arch::xstate::XCR0_FP_SSE, |p| p.xcr0_accum)
    }

    /// Saves the extended state of `key`, which leaves this CPU, if it ever enabled any
    /// (Xen's `vcpu_save_fpu` with XSAVE). The registers keep its values: the CPU is dirty.
    fn save_xstate(&mut self, cpu: usize, key: VcpuKey) {
        if !arch::xstate::extended(self.xcr0_accum(key)) {
            return;
        }
        if let Some(v) = self.vcpus.get_mut(&key) {
            arch::xstate::save(v.xstate.get_or_insert_with(arch::xstate::XArea::new));
            self.xstate_dirty[cpu] = true;
        }
    }

    /// Loads the extended state of `key`, which enters this CPU after its CPU state (XCR0)
    /// was loaded: its own if it ever enabled any, else the initial state if the registers
    /// may hold another vCPU's.
    fn load_xstate(&mut self, cpu: usize, key: VcpuKey) {
        if arch::xstate::extended(self.xcr0_accum(key)) {
            let v = self.vcpus.get_mut(&key);
            match v.and_then(|v| v.xstate.as_deref()) {
                Some(area) => arch::xstate::restore(area),
                None => arch::xstate::restore_initial(),
            }
            self.xstate_dirty[cpu] = true;
        } else if self.xstate_dirty[cpu] {
            arch::xstate::restore_initial();
            self.xstate_dirty[cpu] = false;
        }
    }

    /// `key` leaves CPU `cpu` with the live registers `frame` and `fx`: its registers, FPU
    /// state (the x87 part completed from the hardware), data selectors and extended state
    /// are saved for its next entry.
    fn save_leaving(&mut self, cpu: usize, key: VcpuKey, frame: &TrapFrame, fx: &mut FxArea) {
        fx.complete();
        if let Some(v) = self.vcpus.get_mut(&key) {
            v.frame = *frame;
            v.fx = *fx;
        }
        self.save_selectors(key);
        self.save_xstate(cpu, key);
    }

    /// Saves the data selectors of `key`, which leaves this CPU (Xen's `save_segments`).
    fn save_selectors(&mut self, key: VcpuKey) {
        if let Some(v) = self.vcpus.get_mut(&key) {
            v.segs = arch::segments::read_data_selectors();
        }
    }

    /// Loads the data selectors of `key`, resumed on `cpu` after its GDT and LDT were loaded,
    /// unless the CPU holds them already; before its segment bases are written. Returns the
    /// saved selectors if one of them failed to load (the failsafe callback is due).
    fn load_selectors(&mut self, cpu: usize, key: VcpuKey) -> Option<[u16; 4]> {
        if self.selectors_of[cpu] == Some(key) {
            return None;
        }
        // Another CPU that still holds them holds stale ones once `key` runs here.
        self.drop_loaded_selectors(|k| k == key);
        self.selectors_of[cpu] = Some(key);
        let segs = self.vcpus.get(&key)?.segs;
        let load = xen_core::pv::segments::to_load(segs, self.svm);
        let failed = arch::segments::load_data_selectors(load);
        failed.contains(&true).then_some(segs)
    }

    /// Forgets that a CPU holds the selectors of the vCPUs `which` selects (they were given
    /// new ones, or their domain is gone).
    fn drop_loaded_selectors(&mut self, which: impl Fn(VcpuKey) -> bool) {
        for s in self.selectors_of.iter_mut() {
            if s.is_some_and(&which) {
                *s = None;
            }
        }
    }

    /// The LDT offsets of the selectors `key` resumes with that lie in a page of its LDT
    /// not mapped yet: its code and stack selectors `cs_ss` (resuming would fault on the
    /// `iretq`, inside the hypervisor) and, when its data selectors are about to be loaded
    /// (`with_data`), those too (Xen maps the page when `load_segments` faults on it).
    /// Without an LDT (the common case) there is none, found with one lookup.
    fn unmapped_ldt_selectors(&self, key: VcpuKey, cs_ss: [u64; 2], with_data: bool) -> Vec<u64> {
        let replica = self.backend.replica();
        let ents = replica.vcpus.get(&key).map_or(0, |v| u64::from(v.ldt_ents));
        let mut out = Vec::new();
        if ents == 0 {
            return out;
        }
        let frames = replica
            .pv_vcpus
            .get(&key)
            .map_or([0; xen_core::pv::state::LDT_PAGES], |p| p.ldt_frames);
        let data = match self.vcpus.get(&key) {
            Some(v) if with_data => v.segs,
            _ => [0; 4],
        };
        for sel in cs_ss.into_iter().chain(data.map(u64::from)) {
            let off = sel & 0xfff8;
            let page = (off >> 12) as usize;
            if sel & 4 != 0
                && off >> 3 < ents
                && frames.get(page) == Some(&0)
                && !out.contains(&off)
            {
                out.push(off);
            }
        }
        out
    }

    /// The bases (CR3, FS, GS) vCPU `key` runs with now, from the leader's replica.
    fn bases(&self, key: VcpuKey) -> GuestBases {
        match self.backend.replica().vcpus.get(&key) {
            Some(v) => GuestBases {
                cr3: if v.kernel_mode || v.user_cr3 == 0 {
                    v.cr3
                } else {
                    v.user_cr3
                },
                fs_base: v.fs_base,
                gs_base: if v.kernel_mode {
                    v.gs_base_kernel
                } else {
                    v.gs_base_user
                },
            },
            None => GuestBases::default(),
        }
    }
}

/// What a transaction's effects asked of the exit path afterwards.
#[derive(Default)]
pub(crate) struct After {
    shutdown: Option<(DomId, u32)>,
    crashed: Option<DomId>,
    kept_frames: Vec<u64>,
    /// A committed TLB flush the other leader CPUs must do too (several pairs), once the
    /// runtime lock is released.
    remote_flush: bool,
    /// Other leader CPUs asked to leave the vCPU they hold (synchronous descheduling): the
    /// exit path waits for them once the runtime lock is released.
    departures: Vec<arch::desched::Ask>,
    /// Machine frames the committed effects released: back to the allocator after the
    /// remote TLB flush and once every CPU in `departures` left its vCPU.
    freed: Vec<u64>,
}

impl After {
    fn merge(&mut self, o: After) {
        self.shutdown = self.shutdown.or(o.shutdown);
        self.crashed = self.crashed.or(o.crashed);
        self.remote_flush |= o.remote_flush;
        // Both are empty after almost every transaction: no call into `extend` then.
        if !o.departures.is_empty() {
            self.departures.extend(o.departures);
        }
        if !o.freed.is_empty() {
            self.freed.extend(o.freed);
        }
    }
}

/// Receives a transaction's committed effects into the runtime's (emptied) buffer: a single
/// execution's are taken, swapping the engine's vector with the buffer, a compared one's are
/// copied. Taking them instead of cloning each effect saved a lockstep-off `xen_version`
/// ~500 of its ~10,500 TCG cycles.
struct CommittedSink<'a>(&'a mut Vec<Effect>);

impl lockstep::EffectSink<Effect> for CommittedSink<'_> {
    fn apply(&mut self, effects: &[Effect]) {
        self.0.extend_from_slice(effects);
    }

    fn apply_buffer(&mut self, effects: &mut Vec<Effect>) {
        if self.0.is_empty() {
            core::mem::swap(self.0, effects);
        } else {
            self.0.append(effects);
        }
    }
}

/// Runs one transaction for `req` on this CPU and applies its committed effects. `frame`
/// and `fx` are the live state of the running vCPU (if any).
fn transact(
    rt: &mut Runtime,
    req: &Request,
    cr3: u64,
    live: Option<(&mut TrapFrame, &mut FxArea)>,
) -> After {
    let mut after = After::default();
    transact_into(rt, req, cr3, live, &mut after);
    after
}

/// [`transact`], adding what the effects ask of the exit path to `after` (the guest exit's
/// own transactions: no `After` built, returned and merged for each).
fn transact_into(
    rt: &mut Runtime,
    req: &Request,
    cr3: u64,
    live: Option<(&mut TrapFrame, &mut FxArea)>,
    after: &mut After,
) {
    if rt
        .handover
        .as_ref()
        .is_some_and(|h| h.cpu == crate::lockstep_spare::logical_cpu())
    {
        // This leader stepped down: the rest of its exit path runs no transaction.
        return;
    }
    let vi = rt.vcpu_info_maddr((req.dom, req.vcpu)).unwrap_or(0);
    let mut env = PvEnv::new(
        cr3,
        vi,
        (req.regs.rax as u32, req.regs.rcx as u32),
        &rt.vcpus,
    );
    if req.kind == ExitKind::Hypercall
        && req.nr == u64::from(dom0_interface::xen::HYPERVISOR_SYSCTL)
    {
        // The lockstep sysctl's status is input to the transaction: snapshot it now.
        use dom0_interface::guest_abi::GuestAbi;
        let bytes = rt.backend.status().to_vec();
        env.lockstep_status = Some(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        );
    }
    // The buffer is out of `rt` while the transaction runs and its effects are applied (a
    // transaction nested in those, if any, starts an empty one).
    let mut committed = core::mem::take(&mut rt.committed);
    committed.clear();
    let out = rt
        .backend
        .run(req, &mut env, &mut CommittedSink(&mut committed));
    if out.result == TxResult::Aborted(lockstep::config::EngineError::LeaderRetired) {
        rt.committed = committed;
        promote::begin_handover(rt, req, cr3, live);
        return;
    }
    match out.result {
        TxResult::Committed => {}
        TxResult::Failed(e) => xprintln!("d{}v{}: transaction failed: {:?}", req.dom, req.vcpu, e),
        TxResult::Aborted(e) => {
            xprintln!(
                "d{}v{}: transaction aborted: {:?} ({:?} {} at {:#x})",
                req.dom,
                req.vcpu,
                e,
                req.kind,
                if req.kind == ExitKind::Hypercall {
                    req.nr
                } else {
                    req.vector
                },
                req.regs.rip
            )
        }
    }
    if let Some(s) = out.escalation {
        xprintln!("lockstep: pair escalated (suspect {:?})", s);
        rt.backend.after_escalation(s);
    }
    let allocated = core::mem::take(&mut env.allocated);
    drop(env);
    // The frames this transaction's effects kept are what it adds to `after` (nothing after
    // the transaction reads them).
    let kept_before = after.kept_frames.len();
    apply::apply_all(rt, req, cr3, live, &committed, after);
    committed.clear();
    rt.committed = committed;
    env::release_unkept(allocated, &after.kept_frames[kept_before..]);
    after.kept_frames.truncate(kept_before);
}

/// The exit hook: every guest exit on a leader CPU.
fn guest_exit(exit: GuestExit, frame: &mut TrapFrame, fx: &mut FxArea) {
    let cpu = crate::lockstep_spare::logical_cpu();
    let mut guard = RUNTIME.lock();
    let Some(rt) = guard.as_mut() else {
        return;
    };
    let Some(key) = rt.on_cpu[cpu].or(rt.running[cpu]) else {
        return;
    };
    let (dom, vcpu) = key;
    // One lookup for both: whether the guest kernel or its user space left, and the kernel
    // page tables the exit's transaction resolves guest addresses through (an interrupt
    // exit's console and GSI transactions may run first: it looks again).
    let vcpu_state = rt.backend.replica().vcpus.get(&key);
    // Its domain was destroyed from another CPU while this one ran it: no transaction, it
    // only leaves this CPU.
    let gone = vcpu_state.is_none();
    let (kernel_mode, cr3_at_exit) = vcpu_state.map_or((true, 0), |v| (v.kernel_mode, v.cr3));
    // The segment bases the guest left in the hardware (it changes them without an exit): the
    // first transaction of this exit for it records them in the replica, which from then on
    // holds them for the rest of the exit and the resume (Xen reads the live registers).
    let (fs_base, gs_base) = arch::guest::live_bases();
    let mut live = Some(LiveBases { fs_base, gs_base });
    // What the base registers hold until this exit switches vCPUs (which loads selectors and
    // bases); no transaction or effect writes them.
    let mut held = Some((fs_base, gs_base));
    let mut after = After::default();
    // A leader out of service left its vCPUs to the others (several pairs): this exit takes
    // them over first.
    let took = rt.handover.is_some() && promote::take_over_into(rt, cpu, &mut after);
    if !matches!(exit, GuestExit::ReturnFault(_)) {
        // The guest ran: a return fault from now on is a first one.
        rt.return_faults[cpu].0 = None;
    }
    // What the exit asks for, if anything: its kind and trap details (the request itself is
    // built once, in place, below: moving or rebinding it copied its ~260 bytes).
    let exit_req = match exit {
        GuestExit::Syscall if kernel_mode => Some((ExitKind::Hypercall, 0, 0, 0)),
        GuestExit::Syscall => Some((ExitKind::UserSyscall, 0, 0, 0)),
        GuestExit::Exception(v) => {
            let (error_code, cr2) = exception_details(v, frame.error_code);
            Some((ExitKind::Exception, u64::from(v), error_code, cr2))
        }
        GuestExit::ReturnFault(v) => {
            let (error_code, cr2) = exception_details(v, frame.error_code);
            let repeats = match &mut rt.return_faults[cpu] {
                (Some(k), n) if *k == key => {
                    *n += 1;
                    *n
                }
                slot => {
                    *slot = (Some(key), 0);
                    0
                }
            };
            Some((
                ExitKind::ReturnFault,
                xen_core::traps::return_fault_word(v, repeats),
                error_code,
                cr2,
            ))
        }
        GuestExit::Interrupt(v) => {
            let rx = console::poll(rt, cpu);
            let gsis = irq::poll(rt, cpu, irq::Site::InterruptExit);
            let due = rt.deadline[cpu].is_some_and(|d| env::system_time_ns() >= d);
            // Kicked from another leader CPU: it woke an event for this vCPU, or decided
            // that this CPU runs another vCPU (or none) now.
            let remote = rt.cross_cpu && (rt.running[cpu] != Some(key) || rt.event_pending(key));
            if !due && rx.is_none() && gsis.is_none() && !remote && !took {
                return;
            }
            if let Some(a) = rx {
                after.merge(a);
            }
            if let Some(a) = gsis {
                after.merge(a);
            }
            due.then_some((ExitKind::Interrupt, u64::from(v), 0, 0))
        }
    };
    if let (Some((kind, vector, error_code, cr2)), false) = (exit_req, gone) {
        let req = &Request {
            live: live.take(),
            ..Request::exit(kind, dom, vcpu, regs_of(frame), vector, error_code, cr2)
        };
        let cr3 = match exit {
            GuestExit::Interrupt(_) => rt.kernel_cr3(key),
            _ => cr3_at_exit,
        };
        transact_into(rt, req, cr3, Some((frame, fx)), &mut after);
    }
    // GSIs taken while this exit's transactions waited for the follower (interrupts are on
    // in that `hlt`): delivered before the guest resumes, not at the next tick.
    if let Some(a) = irq::poll_late(rt, cpu) {
        after.merge(a);
    }
    // Before resuming a vCPU with an event pending and unmasked, deliver it (the upcall is
    // an interrupt transaction that bounces into the guest's event callback).
    for _ in 0..4 {
        let Some(k) = rt.running[cpu] else { break };
        if k != key || !rt.event_pending(k) {
            break;
        }
        let req = Request::exit(ExitKind::Interrupt, k.0, k.1, regs_of(frame), 0, 0, 0)
            .with_live(live.take());
        let cr3 = rt.kernel_cr3(k);
        transact_into(rt, &req, cr3, Some((frame, fx)), &mut after);
        // A GSI taken while that transaction waited: its transaction now too, and its
        // event delivered by the next round of this loop, not at the next interrupt exit.
        if let Some(a) = irq::poll_late(rt, cpu) {
            after.merge(a);
        }
    }
    let noreboot = rt.noreboot;
    // Who runs here next.
    let mut cur = key;
    loop {
        match rt.running[cpu] {
            Some(next) if next == cur => {
                let mark = ResumeMark {
                    source: rt.context_source(cur),
                    cs_ss: [frame.cs, frame.ss],
                };
                if cur == key && rt.resumed[cpu].is_some_and(|(m, h)| m.same(&mark) && h.still()) {
                    // Prepared from the same state last time: nothing to map or load.
                    break;
                }
                after.merge(map_ldt_selectors(rt, cur, Some((frame, fx)), false));
                if cur == key && live.is_some() {
                    // No transaction changed this vCPU: the hardware holds its bases still.
                    rt.load_cpu_state(cur);
                } else {
                    rt.load(cur, held);
                }
                // Marked only when no LDT transaction changed what the resume depends on
                // (one that failed to map its page is run again next time).
                let now = rt.context_source(cur);
                rt.resumed[cpu] = (cur == key && arch::guest_context::words_eq(&now, &mark.source))
                    .then(|| arch::guest_context::held(&mark.source).map(|h| (mark, h)))
                    .flatten();
                break;
            }
            Some(next) => {
                rt.resumed[cpu] = None;
                held = None;
                if cur == key {
                    after.merge(switch_out(rt, key, frame, live.take()));
                }
                rt.save_leaving(cpu, cur, frame, fx);
                if let Some(v) = rt.vcpus.get(&next) {
                    *frame = v.frame;
                    *fx = v.fx;
                }
                cur = next;
                after.merge(map_ldt_selectors(rt, next, Some((frame, fx)), true));
                rt.load_cpu_state(next);
                rt.load_xstate(cpu, next);
                if let Some(segs) = rt.load_selectors(cpu, next) {
                    // The failsafe callback may crash the domain: decide again.
                    after.merge(failsafe(rt, next, segs, frame, fx));
                    continue;
                }
                rt.load(next, None);
                break;
            }
            None => {
                rt.resumed[cpu] = None;
                if cur == key {
                    after.merge(switch_out(rt, key, frame, live.take()));
                }
                rt.save_leaving(cpu, cur, frame, fx);
                // Off the guest's page tables while idle: they may be released. Nor do its
                // GDT and LDT frames stay mapped in this CPU's windows, or its breakpoints
                // armed.
                arch::paging::switch_to_hypervisor_tables();
                arch::guest_context::load(&arch::guest_context::GuestContext::idle());
                break;
            }
        }
    }
    if rt.stepping_down(cpu) {
        let live = rt.running[cpu].map(|_| (&*frame, &mut *fx));
        promote::step_down(guard, after, live)
    }
    let idle = rt.running[cpu].is_none();
    rt.on_cpu[cpu] = rt.running[cpu];
    if rt.cross_cpu {
        // Whatever vCPU another CPU asked this one to leave, it left.
        arch::desched::left(cpu);
    }
    drop(guard);
    apply::finish(after, noreboot);
    if idle {
        arch::smp::reset_stack_and_jump(leader_idle)
    }
}

/// The error code and CR2 word of an exception exit on `vector`: a fault on this CPU's LDT
/// window (the page is not mapped for this vCPU yet) carries [`ldt::PF_LDT_WINDOW`] and the
/// offset into the LDT; a #DB carries DR6.
fn exception_details(vector: u8, error_code: u64) -> (u64, u64) {
    match vector {
        14 => {
            let cr2 = arch::cpu::read_cr2();
            match arch::gdt::ldt_window_offset(cr2) {
                Some(off) => (error_code | ldt::PF_LDT_WINDOW, off),
                None => (error_code, cr2),
            }
        }
        1 => (error_code, arch::cpu::take_dr6()),
        _ => (error_code, 0),
    }
}

/// A leader CPU with nothing to run: halt until its timer is due, then let the scheduler
/// decide (an interrupt transaction from the idle CPU).
fn leader_idle() -> ! {
    let cpu = crate::lockstep_spare::logical_cpu();
    loop {
        // A GSI taken during the last transaction's waits is served without halting first
        // (checked with interrupts off: one arriving after the check wakes the `hlt`).
        arch::cpu::disable_interrupts();
        if !irq::any_pending() {
            arch::cpu::enable_and_halt();
        }
        arch::cpu::disable_interrupts();
        let mut guard = RUNTIME.lock();
        let Some(rt) = guard.as_mut() else {
            continue;
        };
        let mut polled = console::poll(rt, cpu);
        if let Some(a) = irq::poll(rt, cpu, irq::Site::Idle) {
            match &mut polled {
                Some(p) => p.merge(a),
                None => polled = Some(a),
            }
        }
        if rt.handover.is_some() {
            // A leader out of service left its vCPUs to the others (several pairs).
            let mut a = After::default();
            if promote::take_over_into(rt, cpu, &mut a) {
                match &mut polled {
                    Some(p) => p.merge(a),
                    None => polled = Some(a),
                }
            }
        }
        if let Some(after) = polled {
            if rt.stepping_down(cpu) {
                promote::step_down(guard, after, None)
            }
            let noreboot = rt.noreboot;
            let woken = rt.running[cpu].is_some();
            drop(guard);
            apply::finish(after, noreboot);
            if woken {
                enter_current()
            }
            continue;
        }
        if rt.running[cpu].is_none() {
            let due = rt.deadline[cpu].is_some_and(|d| env::system_time_ns() >= d);
            if !due {
                continue;
            }
            let req = Request::exit(
                ExitKind::Interrupt,
                DOMID_IDLE,
                cpu as u32,
                GuestRegs::default(),
                0,
                0,
                0,
            );
            let after = transact(rt, &req, 0, None);
            if rt.stepping_down(cpu) {
                promote::step_down(guard, after, None)
            }
            let noreboot = rt.noreboot;
            drop(guard);
            apply::finish(after, noreboot);
            continue;
        }
        drop(guard);
        enter_current()
    }
}

/// Before `key` resumes (from `live`, or its saved frame): maps the pages of its LDT that
/// the selectors it resumes with lie in, if not mapped yet (see
/// `Runtime::unmapped_ldt_selectors`), as Xen's #PF handler does when the `iret` to the
/// guest or `load_segments` faults on them ([`ldt::PF_LDT_RESUME`]). A page that cannot be
/// mapped stays unmapped.
fn map_ldt_selectors(
    rt: &mut Runtime,
    key: VcpuKey,
    mut live: Option<(&mut TrapFrame, &mut FxArea)>,
    with_data: bool,
) -> After {
    let mut after = After::default();
    let cs_ss = match &live {
        Some((f, _)) => [f.cs, f.ss],
        None => match rt.vcpus.get(&key) {
            Some(v) => [v.frame.cs, v.frame.ss],
            None => return after,
        },
    };
    let offs = rt.unmapped_ldt_selectors(key, cs_ss, with_data);
    if offs.is_empty() {
        return after;
    }
    let frame = match &live {
        Some((f, _)) => **f,
        None => match rt.vcpus.get(&key) {
            Some(v) => v.frame,
            None => return after,
        },
    };
    for off in offs {
        let req = Request::exit(
            ExitKind::Exception,
            key.0,
            key.1,
            regs_of(&frame),
            14,
            ldt::PF_LDT_WINDOW | ldt::PF_LDT_RESUME,
            off,
        );
        let cr3 = rt.kernel_cr3(key);
        let l = live.as_mut().map(|(f, x)| (&mut **f, &mut **x));
        after.merge(transact(rt, &req, cr3, l));
    }
    after
}

/// `key` leaves this CPU: if no transaction of this exit recorded the segment bases it left
/// in the hardware (`live` is still there), records them now (Xen's `save_segments`), before
/// another vCPU's bases replace them.
fn switch_out(rt: &mut Runtime, key: VcpuKey, frame: &TrapFrame, live: Option<LiveBases>) -> After {
    if live.is_none() || !rt.backend.replica().vcpus.contains_key(&key) {
        return After::default();
    }
    let req =
        Request::exit(ExitKind::SwitchOut, key.0, key.1, regs_of(frame), 0, 0, 0).with_live(live);
    let cr3 = rt.kernel_cr3(key);
    transact(rt, &req, cr3, None)
}

/// Runs the failsafe transaction of `key`, resumed on this CPU with the live registers
/// `frame` and `fx`, whose saved data selectors `segs` did not all load.
fn failsafe(
    rt: &mut Runtime,
    key: VcpuKey,
    segs: [u16; 4],
    frame: &mut TrapFrame,
    fx: &mut FxArea,
) -> After {
    let packed = xen_core::pv::segments::pack(segs);
    let req = Request::exit(
        ExitKind::Failsafe,
        key.0,
        key.1,
        regs_of(frame),
        0,
        packed,
        0,
    );
    let cr3 = rt.kernel_cr3(key);
    transact(rt, &req, cr3, Some((frame, fx)))
}

/// The registers, FPU state and bases to enter the vCPU `cpu` runs with, after loading its
/// CPU state and data selectors (and entering its failsafe callback if a selector failed to
/// load); None if `cpu` has nothing to run now.
fn resume_entry(
    rt: &mut Runtime,
    cpu: usize,
    after: &mut After,
) -> Option<(TrapFrame, FxArea, GuestBases)> {
    let key = rt.running[cpu]?;
    let with_data = rt.selectors_of[cpu] != Some(key);
    after.merge(map_ldt_selectors(rt, key, None, with_data));
    let v = rt.vcpus.get(&key)?;
    let (mut f, mut fx) = (v.frame, v.fx);
    rt.load_cpu_state(key);
    rt.load_xstate(cpu, key);
    if let Some(segs) = rt.load_selectors(cpu, key) {
        after.merge(failsafe(rt, key, segs, &mut f, &mut fx));
        if rt.running[cpu] != Some(key) {
            // The failsafe callback crashed the domain: the scheduler decided again.
            rt.save_leaving(cpu, key, &f, &mut fx);
            return None;
        }
        rt.load_cpu_state(key);
    }
    Some((f, fx, rt.bases(key)))
}

/// Enters the vCPU the scheduler gave this CPU (or idles).
fn enter_current() -> ! {
    // Reached from the idle loop too, with interrupts on: the resume path (the RUNTIME lock,
    // transactions, loading the vCPU's selectors and bases) runs with them off, as every
    // other way into the guest does.
    arch::cpu::disable_interrupts();
    let cpu = crate::lockstep_spare::logical_cpu();
    let mut guard = RUNTIME.lock();
    let Some(rt) = guard.as_mut() else {
        drop(guard);
        leader_idle()
    };
    let noreboot = rt.noreboot;
    let mut after = After::default();
    let entry = resume_entry(rt, cpu, &mut after);
    if rt.stepping_down(cpu) {
        promote::step_down(guard, after, None)
    }
    // Nothing entered but another vCPU to run: the failsafe callback crashed the domain.
    let runnable = rt.running[cpu].is_some_and(|k| rt.vcpus.contains_key(&k));
    if entry.is_some() {
        rt.on_cpu[cpu] = rt.running[cpu];
        if rt.cross_cpu {
            arch::desched::left(cpu);
            crate::lockstep_pairs::announce_first_entry(cpu, rt.running[cpu]);
        }
    }
    drop(guard);
    apply::finish(after, noreboot);
    let Some((f, fx, bases)) = entry else {
        if runnable {
            enter_current()
        }
        leader_idle()
    };
    arch::guest::enter_guest(&f, &fx, bases)
}
