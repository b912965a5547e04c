//! The hypervisor's replica state and its transaction step: the lockstep state machine.
//!
//! Everything a hypercall may change lives in [`HvState`]'s journaled containers; handlers
//! see it through [`Ctx`], which also carries the input (request, nondeterministic values,
//! guest memory reads) and collects effects.

use crate::domain::{Domain, Vcpu, VcpuKey};
use crate::effect::{DomId, Effect};
use crate::request::{ExitKind, Request};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use lockstep::input::{Input, InputError};
use lockstep::machine::{Machine, TxCtx};
use lockstep::{impl_replica_state, Hasher, JCell, JMap, Value};

/// Container tags (unique per container; they key undo records and digests).
mod tag {
    pub const DOMAINS: u32 = 1;
    pub const VCPUS: u32 = 2;
    pub const WARNED: u32 = 3;
    pub const CONFIG: u32 = 4;
    pub const DOMID_ROVER: u32 = 5;
    pub const EVTCHNS: u32 = 10;
    pub const EVTCHN_TABLES: u32 = 11;
    pub const VIRQS: u32 = 12;
    pub const GLOBAL_VIRQS: u32 = 13;
    pub const EVTCHN_POLLERS: u32 = 14;
    pub const EVTCHN_FIFO: u32 = 15;
    pub const EVTCHN_FIFO_PORTS: u32 = 16;
    pub const MM_FRAMES: u32 = 40;
    pub const MM_P2M: u32 = 41;
    pub const MM_FOREIGN: u32 = 42;
    pub const MM_DOMAINS: u32 = 43;
    pub const MM_CONFIG: u32 = 44;
    pub const TIME: u32 = 30;
    pub const DOM_TIME: u32 = 31;
    pub const VSCHED: u32 = 32;
    pub const RUNQS: u32 = 33;
    pub const PV_VCPUS: u32 = 20;
    pub const TRAP_TABLES: u32 = 21;
    pub const IN_MULTICALL: u32 = 22;
    pub const GNTTAB: u32 = 50;
    pub const GNTTAB_ACTIVE: u32 = 51;
    pub const GNTTAB_MAPTRACK: u32 = 52;
    pub const PIRQS: u32 = 60;
    pub const GSIS: u32 = 61;
    pub const IRQ_ACCESS: u32 = 62;
    pub const EOI_MAPS: u32 = 63;
    pub const PIRQ_CONFIG: u32 = 64;
    pub const PCI_DEVS: u32 = 65;
}

/// Host-wide configuration the handlers report (set at boot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HvConfig {
    /// The hypervisor's boot command line (XENVER_commandline).
    pub cmdline: Vec<u8>,
    /// The ACPI PM timer's I/O port (4 ports from it), denied to dom0 as Xen denies it.
    pub pm_timer_port: Option<u16>,
    /// The MCFG's PCI ECAM areas: (base, segment, first bus, last bus).
    pub mcfg: Vec<(u64, u16, u8, u8)>,
}
lockstep::impl_value!(HvConfig {
    cmdline,
    pm_timer_port,
    mcfg
});

/// The hypervisor state one replica holds.
#[derive(Clone)]
pub struct HvState {
    /// Domains by id.
    pub domains: JMap<DomId, Domain>,
    /// vCPUs by (domain, id).
    pub vcpus: JMap<VcpuKey, Vcpu>,
    /// Unknown hypercall/sub-op keys already logged (rate limit: once each).
    pub warned: JMap<u64, bool>,
    /// Host configuration.
    pub config: JCell<HvConfig>,
    /// Bound event channels by (domain, port); free ports are absent, port 0 is reserved.
    pub evtchns: JMap<crate::evtchn::PortKey, crate::evtchn::Channel>,
    /// Per-domain port tables (valid range, allocation bitmap); absent: the default table.
    pub evtchn_tables: JMap<DomId, crate::evtchn::PortTable>,
    /// VIRQ bindings: (domain, vCPU, VIRQ) → port (global VIRQs under vCPU 0).
    pub virqs: JMap<crate::evtchn::VirqKey, u32>,
    /// Global VIRQ handlers the toolstack set (VIRQ → domain); unset: dom0.
    pub global_virq_handlers: JMap<u32, DomId>,
    /// vCPUs blocked in SCHEDOP_poll and the port they wait for (`evtchn::POLL_ANY`: any).
    pub evtchn_pollers: JMap<VcpuKey, crate::evtchn::PollWait>,
    /// Domains on the FIFO event channel ABI: event array frames, control blocks.
    pub evtchn_fifo: JMap<DomId, crate::evtchn::fifo::FifoDomain>,
    /// FIFO attributes of ports (priority, saved event); absent: the defaults.
    pub evtchn_fifo_ports: JMap<crate::evtchn::PortKey, crate::evtchn::fifo::FifoPort>,
    /// Every machine frame a domain can touch, by mfn (`struct page_info`).
    pub frames: JMap<u64, crate::mm::PageInfo>,
    /// The p2m of PV domains: (domain, pfn) → mfn.
    pub p2m: JMap<(DomId, u64), u64>,
    /// References page tables of one domain hold on another's frames: (holder, mfn) →
    /// (references, writable references).
    pub mm_foreign: JMap<(DomId, u64), (u32, u32)>,
    /// Per-domain memory bookkeeping (memory map).
    pub mm_domains: JMap<DomId, crate::mm::DomMm>,
    /// Host memory facts (max_page, machine E820, M2P frames).
    pub mm_config: JCell<crate::mm::MmConfig>,
    /// The host time base (TSC scale, boot TSC, wall clock).
    pub time: JCell<crate::time::TimeBase>,
    /// Per-domain time state (shared_info address, wall-clock version).
    pub dom_time: JMap<DomId, crate::sched::DomTime>,
    /// Per-vCPU scheduling and timer state.
    pub vsched: JMap<VcpuKey, crate::sched::VcpuSched>,
    /// Run queues by leader CPU.
    pub runqs: JMap<u32, crate::sched::RunQueue>,
    /// PV CPU state per vCPU (callback flags, virtual CR0.TS/CR2/CR4, debug registers, IOPL).
    pub pv_vcpus: JMap<VcpuKey, crate::pv::PvVcpu>,
    /// Virtual IDT entries by (domain, vCPU, vector); absent: no handler.
    pub trap_tables: JMap<(DomId, u32, u8), crate::pv::TrapEntry>,
    /// vCPUs running a multicall (Xen's `_MCSF_in_multicall`); set only inside a transaction.
    pub in_multicall: JMap<VcpuKey, bool>,
    /// Grant tables by domain (version, shared and status frames, limits).
    pub gnttab: JMap<DomId, crate::gnttab::GrantTable>,
    /// Active (pinned) grant entries by (granting domain, gref); absent: not pinned.
    pub gnttab_active: JMap<(DomId, u32), crate::gnttab::ActiveEntry>,
    /// Maptrack entries by (mapping domain, handle); absent: free handle.
    pub gnttab_maptrack: JMap<(DomId, u32), crate::gnttab::MapTrack>,
    /// The last domain id createdomain handed out (Xen's `rover`).
    pub domid_rover: JCell<DomId>,
    /// PIRQs by (domain, pirq): the GSI each is mapped to and its event channel.
    pub pirqs: JMap<(DomId, u32), crate::pirq::Pirq>,
    /// GSIs whose pin differs from its boot state: signalling, bound guests, EOIs awaited.
    pub gsis: JMap<u32, crate::pirq::Gsi>,
    /// IRQ access a domain was granted (map) or lost (unmap); absent: dom0's boot access.
    pub irq_access: JMap<(DomId, u32), bool>,
    /// PIRQ EOI bitmaps by domain.
    pub eoi_maps: JMap<DomId, crate::pirq::EoiMap>,
    /// Host interrupt facts (GSIs, ISA signalling, the hypervisor's own GSIs).
    pub pirq_config: JCell<crate::pirq::PirqConfig>,
    /// PCI devices dom0 reported (`PHYSDEVOP_pci_device_add`) by (segment, bus, devfn): the
    /// `XEN_PCI_DEV_*` flags it gave.
    pub pci_devs: JMap<(u16, u8, u8), u32>,
}
impl_replica_state!(HvState {
    domains,
    vcpus,
    warned,
    evtchns,
    evtchn_tables,
    virqs,
    global_virq_handlers,
    evtchn_pollers,
    evtchn_fifo,
    evtchn_fifo_ports,
    time,
    dom_time,
    vsched,
    runqs,
    config,
    frames,
    p2m,
    mm_foreign,
    mm_domains,
    mm_config,
    pv_vcpus,
    trap_tables,
    in_multicall,
    gnttab,
    gnttab_active,
    gnttab_maptrack,
    domid_rover,
    pirqs,
    gsis,
    irq_access,
    eoi_maps,
    pirq_config,
    pci_devs
});

impl Default for HvState {
    fn default() -> Self {
        Self::new()
    }
}

impl HvState {
    /// An empty state (no domains).
    pub fn new() -> Self {
        HvState {
            domains: JMap::new(tag::DOMAINS),
            vcpus: JMap::new(tag::VCPUS),
            warned: JMap::new(tag::WARNED),
            evtchns: JMap::new(tag::EVTCHNS),
            evtchn_tables: JMap::new(tag::EVTCHN_TABLES),
            virqs: JMap::new(tag::VIRQS),
            global_virq_handlers: JMap::new(tag::GLOBAL_VIRQS),
            evtchn_pollers: JMap::new(tag::EVTCHN_POLLERS),
            evtchn_fifo: JMap::new(tag::EVTCHN_FIFO),
            evtchn_fifo_ports: JMap::new(tag::EVTCHN_FIFO_PORTS),
            config: JCell::new(tag::CONFIG, HvConfig::default()),
            frames: JMap::new(tag::MM_FRAMES),
            p2m: JMap::new(tag::MM_P2M),
            mm_foreign: JMap::new(tag::MM_FOREIGN),
            mm_domains: JMap::new(tag::MM_DOMAINS),
            mm_config: JCell::new(tag::MM_CONFIG, crate::mm::MmConfig::default()),
            time: JCell::new(tag::TIME, crate::time::TimeBase::default()),
            dom_time: JMap::new(tag::DOM_TIME),
            vsched: JMap::new(tag::VSCHED),
            runqs: JMap::new(tag::RUNQS),
            pv_vcpus: JMap::new(tag::PV_VCPUS),
            trap_tables: JMap::new(tag::TRAP_TABLES),
            in_multicall: JMap::new(tag::IN_MULTICALL),
            gnttab: JMap::new(tag::GNTTAB),
            gnttab_active: JMap::new(tag::GNTTAB_ACTIVE),
            gnttab_maptrack: JMap::new(tag::GNTTAB_MAPTRACK),
            domid_rover: JCell::new(tag::DOMID_ROVER, 0),
            pirqs: JMap::new(tag::PIRQS),
            gsis: JMap::new(tag::GSIS),
            irq_access: JMap::new(tag::IRQ_ACCESS),
            eoi_maps: JMap::new(tag::EOI_MAPS),
            pirq_config: JCell::new(tag::PIRQ_CONFIG, crate::pirq::PirqConfig::default()),
            pci_devs: JMap::new(tag::PCI_DEVS),
        }
    }
}

/// Why a transaction could not run to completion (the engine retries or escalates; the
/// guest sees nothing). Guest-visible errors are not `Abort`s: they are `Effect::Return`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// The request words do not decode.
    BadRequest,
    /// The caller is not a known vCPU.
    NoSuchVcpu,
    /// The input broke down (divergence, overflow, missing data).
    Input(InputError),
}

impl Value for Abort {
    fn digest(&self, h: &mut Hasher) {
        let code: u8 = match self {
            Abort::BadRequest => 1,
            Abort::NoSuchVcpu => 2,
            Abort::Input(InputError::Fault) => 3,
            Abort::Input(InputError::Diverged) => 4,
            Abort::Input(InputError::Overflow) => 5,
            Abort::Input(InputError::Unavailable) => 6,
        };
        h.write_u8(code);
    }
    fn bit_len(&self) -> u64 {
        0
    }
    fn flip_bit(&mut self, _bit: u64) {}
}

/// A handler's failure: a Xen errno for the guest, or an abort of the whole transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvError {
    /// Returned to the guest as `-errno`.
    Errno(XenErrno),
    /// The transaction cannot complete.
    Abort(Abort),
}

impl From<XenErrno> for HvError {
    fn from(e: XenErrno) -> Self {
        HvError::Errno(e)
    }
}

/// Result of a handler: the value for the guest's RAX.
pub type HvResult = Result<i64, HvError>;

/// Kinds of nondeterministic values handlers ask the input for. Kinds are one number space
/// shared with other modules' kinds (`crate::console::value_kind`): the test
/// `value_kinds_never_overlap` lists them all; a new kind goes there too.
pub mod value_kind {
    /// Whether `len` bytes at a guest address are writable: the address and length are
    /// passed through [`super::Ctx::probe_write`].
    pub const PROBE_WRITE: u32 = 1;
    /// Current system time in ns.
    pub const SYSTEM_TIME: u32 = 2;
    /// A free, zeroed machine frame for the domain being handled (memory_op): the mfn, or
    /// `crate::mm::NO_FRAME` when none is left. The leader's allocator reserves it; it stays
    /// allocated only if a committed `Effect::FramesAllocated` names it.
    pub const ALLOC_FRAME: u32 = 40;
    /// The TSC now (the scheduler computes system time from it once the time base is set).
    pub const TSC: u32 = 30;
    /// The calling vCPU's `vcpu_info` event bytes: `evtchn_upcall_pending` in bits 0-7,
    /// `evtchn_upcall_mask` in bits 8-15.
    pub const UPCALL_STATE: u32 = 20;
    /// Host CPUID (as levelled for PV guests) of the leaf/subleaf in the request's EAX/ECX:
    /// EAX in bits 0-31, EBX in bits 32-63.
    pub const HOST_CPUID_AB: u32 = 21;
    /// As [`HOST_CPUID_AB`]: ECX in bits 0-31, EDX in bits 32-63.
    pub const HOST_CPUID_CD: u32 = 22;
    /// Free machine pages in the host allocator now (sysctl physinfo `free_pages`).
    pub const HOST_FREE_PAGES: u32 = 60;
    /// RAM pages of the host (physinfo `total_pages`).
    pub const HOST_TOTAL_PAGES: u32 = 61;
    /// The CPU frequency in kHz (physinfo `cpu_khz`).
    pub const HOST_CPU_KHZ: u32 = 62;
    /// CPUs brought up (physinfo `nr_cpus`).
    pub const HOST_NR_CPUS: u32 = 63;
    /// Physical address bits of the CPU (getdomaininfo `gpaddr_bits`).
    pub const HOST_PADDR_BITS: u32 = 64;
    /// The BIOS keyboard shift flags (the BIOS data area's byte at 0x417, what int 16h AH=02
    /// returns), for `XEN_FW_KBD_SHIFT_FLAGS`.
    pub const BIOS_KBD_SHIFT_FLAGS: u32 = 65;
    /// Base of the lockstep-status kinds: see [`lockstep_status`].
    pub const LOCKSTEP_STATUS_BASE: u32 = 0x0600_0000;
    /// Word `i` (little-endian) of the lockstep engine's `LockstepStatus`, as the leader's
    /// engine reports it now (statistics live outside the replicas: they are input).
    pub const fn lockstep_status(i: u32) -> u32 {
        LOCKSTEP_STATUS_BASE | (i & 0xFFFF)
    }
    /// Base of the raw host CPUID kinds: see [`host_cpuid_raw`].
    pub const HOST_CPUID_RAW_BASE: u32 = 0x0C00_0000;
    /// Register `reg` (0 EAX, 1 EBX, 2 ECX, 3 EDX) of the host's raw CPUID `leaf`/`subleaf`
    /// (not levelled for guests; physinfo `hw_cap`). Encodes the leaf's low byte in bits
    /// 0-7, bit 31 of the leaf in bit 8, the subleaf's low byte in bits 9-16 and the
    /// register in bits 17-18: every leaf physinfo reads fits.
    pub const fn host_cpuid_raw(leaf: u32, subleaf: u32, reg: u32) -> u32 {
        HOST_CPUID_RAW_BASE
            | (leaf & 0xFF)
            | ((leaf >> 31) << 8)
            | ((subleaf & 0xFF) << 9)
            | ((reg & 3) << 17)
    }
    /// Decodes a [`host_cpuid_raw`] kind: (leaf, subleaf, register).
    pub const fn host_cpuid_raw_decode(kind: u32) -> (u32, u32, u32) {
        (
            (kind & 0xFF) | (((kind >> 8) & 1) << 31),
            (kind >> 9) & 0xFF,
            (kind >> 17) & 3,
        )
    }
    /// First kind of the saved-vCPU-state range: see [`vcpu_saved`].
    pub const VCPU_SAVED_BASE: u32 = 0x4000_0000;
    /// End (exclusive) of the saved-vCPU-state range.
    pub const VCPU_SAVED_END: u32 = 0x8000_0000;
    /// Words of one vCPU's saved state: its registers in [`crate::request::GuestRegs`] field
    /// order (rax ... ss, 20 words), then its 512-byte FXSAVE image (64 little-endian words),
    /// then its data selectors ([`VCPU_SAVED_SEGS`]).
    pub const VCPU_SAVED_WORDS: u32 = 85;
    // Every word index fits the encoding's 7 bits.
    const _: () = assert!(VCPU_SAVED_WORDS <= 0x80);
    /// Word index of the FXSAVE image's first word.
    pub const VCPU_SAVED_FX: u32 = 20;
    /// Word index of the saved data selectors DS, ES, FS, GS ([`crate::pv::segments::pack`]).
    pub const VCPU_SAVED_SEGS: u32 = 84;
    /// vCPU ids the encoding holds (PV domUs have at most 32, dom0 one per CPU).
    pub const VCPU_SAVED_MAX_VCPUS: u32 = 256;
    /// Word `word` of the state the runtime saved for vCPU (`dom`, `vcpu`) when it last left
    /// its CPU (or was given by setvcpucontext): another vCPU's registers live outside the
    /// replicas, so they are input (XEN_DOMCTL_getvcpucontext). Word in bits 0-6, vCPU in
    /// bits 7-14, domain in bits 15-29; 0 for a vCPU the runtime has no state for.
    pub const fn vcpu_saved(dom: u16, vcpu: u32, word: u32) -> u32 {
        VCPU_SAVED_BASE | ((dom as u32 & 0x7FFF) << 15) | ((vcpu & 0xFF) << 7) | (word & 0x7F)
    }
    /// Decodes a [`vcpu_saved`] kind: (domain, vCPU, word).
    pub const fn vcpu_saved_decode(kind: u32) -> (u16, u32, u32) {
        (
            ((kind >> 15) & 0x7FFF) as u16,
            (kind >> 7) & 0xFF,
            kind & 0x7F,
        )
    }
    /// Base of the host-MSR kinds: see [`host_rdmsr`].
    pub const HOST_RDMSR_BASE: u32 = 0x0700_0000;
    /// What the leader's CPU reads from `msr` (`rdmsr_safe`; `u64::MAX` if the read faults),
    /// for the MSRs in the architectural (0..0xffff), `0xc000_xxxx` and `0xc001_xxxx` ranges;
    /// None for others (treated as not readable).
    pub const fn host_rdmsr(msr: u32) -> Option<u32> {
        let range = match msr >> 16 {
            0 => 0,
            0xc000 => 1,
            0xc001 => 2,
            _ => return None,
        };
        Some(HOST_RDMSR_BASE | (range << 16) | (msr & 0xffff))
    }
    /// The MSR a [`host_rdmsr`] kind names.
    pub const fn host_rdmsr_msr(kind: u32) -> u32 {
        let low = kind & 0xffff;
        match (kind >> 16) & 0xff {
            1 => 0xc000_0000 | low,
            2 => 0xc001_0000 | low,
            _ => low,
        }
    }
    /// Base of the I/O APIC kinds: see [`ioapic_base`] and [`ioapic_read`].
    pub const IOAPIC_BASE: u32 = 0x0F00_0000;
    /// The MMIO base of the host's `index`th I/O APIC (0: no such I/O APIC).
    pub const fn ioapic_base(index: u32) -> u32 {
        IOAPIC_BASE | 0x1_0000 | (index & 0xFF)
    }
    /// Register `reg` (its low byte, what IOREGSEL takes) of the `index`th I/O APIC as the
    /// leader reads it now (u64::MAX: no such I/O APIC).
    pub const fn ioapic_read(index: u32, reg: u32) -> u32 {
        IOAPIC_BASE | ((index & 0xFF) << 8) | (reg & 0xFF)
    }
    /// Base of the physical-CPU kinds: see [`host_pcpu`].
    pub const HOST_PCPU_BASE: u32 = 0x0E00_0000;
    /// Physical CPU `index` (the hypervisor's numbering, boot CPU 0) as the leader sees it
    /// now: bit 63 set if the CPU is up (present), its ACPI processor UID in bits 32-62, its
    /// local APIC id in bits 0-31; 0 if there is no such CPU.
    pub const fn host_pcpu(index: u32) -> u32 {
        HOST_PCPU_BASE | (index & 0xFFFF)
    }
    /// `host_pcpu`'s bit: the CPU is up.
    pub const HOST_PCPU_UP: u64 = 1 << 63;
    /// Base of the CMOS-read kinds: see [`cmos_read`].
    pub const CMOS_READ_BASE: u32 = 0x0D00_0000;
    /// CMOS/RTC register `index` (0-0x7f) as the leader reads it now (port 0x70 then 0x71,
    /// under the lock of the hypervisor's own CMOS reads), for dom0's emulated `in` from 0x71.
    pub const fn cmos_read(index: u8) -> u32 {
        CMOS_READ_BASE | (index & 0x7f) as u32
    }
    /// Base of the port-input kinds: see [`port_in`].
    pub const PORT_IN_BASE: u32 = 0x0100_0000;
    /// The value read from I/O `port` with an access of `size` bytes (1, 2 or 4), performed by
    /// the leader for a privileged guest's emulated `in`.
    pub const fn port_in(port: u16, size: u8) -> u32 {
        PORT_IN_BASE | ((size as u32) << 16) | port as u32
    }
}

/// What a handler works with: the request, the input, the journal and the effects buffer.
pub struct Ctx<'a, 'i, 't> {
    input: &'a mut Input<'i>,
    tx: &'a mut TxCtx<'t, Effect>,
    /// The request being handled (borrowed: a copy of its ~260 bytes per transaction was
    /// ~3% of a lockstep-off hypercall).
    pub req: &'a Request,
}

impl<'a, 'i, 't> Ctx<'a, 'i, 't> {
    /// A context for `req` (the engine's step builds this).
    pub fn new(input: &'a mut Input<'i>, tx: &'a mut TxCtx<'t, Effect>, req: &'a Request) -> Self {
        Ctx { input, tx, req }
    }

    /// This transaction's context handling `req` instead (a multicall's entry, an exit
    /// handled as another kind): same inputs, same journal and effects.
    pub fn with_req<'b>(&'b mut self, req: &'b Request) -> Ctx<'b, 'i, 't> {
        Ctx {
            input: &mut *self.input,
            tx: &mut *self.tx,
            req,
        }
    }

    /// The journal every replica write goes through.
    pub fn journal(&mut self) -> &mut lockstep::Journal {
        self.tx.journal
    }

    /// Emits an effect (applied after commit).
    pub fn emit(&mut self, e: Effect) {
        self.tx.emit(e);
    }

    /// A nondeterministic value (time, ...).
    pub fn value(&mut self, kind: u32) -> Result<u64, HvError> {
        self.input
            .value(kind)
            .map_err(|e| HvError::Abort(Abort::Input(e)))
    }

    /// copy_from_guest: fills `buf` from the caller's address space, -EFAULT if unmapped.
    pub fn copy_from_guest(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), HvError> {
        match self.input.read_guest(addr, buf) {
            Ok(()) => Ok(()),
            Err(InputError::Fault) => Err(XenErrno::EFAULT.into()),
            Err(e) => Err(HvError::Abort(Abort::Input(e))),
        }
    }

    /// Reads machine memory (a page-table entry, a shared page) by machine address; -EFAULT if
    /// the embedder does not let handlers read it.
    pub fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> Result<(), HvError> {
        match self.input.read_machine(maddr, buf) {
            Ok(()) => Ok(()),
            Err(InputError::Fault) => Err(XenErrno::EFAULT.into()),
            Err(e) => Err(HvError::Abort(Abort::Input(e))),
        }
    }

    /// Reads a little-endian u64 from guest memory.
    pub fn read_u64(&mut self, addr: u64) -> Result<u64, HvError> {
        let mut b = [0u8; 8];
        self.copy_from_guest(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Whether `len` bytes at `addr` are writable by the caller (decided by the leader and
    /// logged, so both executions agree).
    pub fn probe_write(&mut self, addr: u64, len: usize) -> Result<bool, HvError> {
        self.input
            .probe_write(addr, len)
            .map_err(|e| HvError::Abort(Abort::Input(e)))
    }

    /// copy_to_guest: checks the destination is writable now and emits the write as an
    /// effect; -EFAULT if it is not.
    pub fn copy_to_guest(&mut self, addr: u64, data: &[u8]) -> Result<(), HvError> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.probe_write(addr, data.len())? {
            return Err(XenErrno::EFAULT.into());
        }
        self.emit(Effect::WriteGuest {
            addr,
            data: data.to_vec(),
        });
        Ok(())
    }

    /// The calling domain's id.
    pub fn dom(&self) -> DomId {
        self.req.dom
    }
}

/// The state machine lockstep runs.
pub struct Xen;

impl Machine for Xen {
    type State = HvState;
    type Effect = Effect;
    type Error = Abort;

    fn step(
        state: &mut HvState,
        input: &mut Input<'_>,
        tx: &mut TxCtx<'_, Effect>,
    ) -> Result<(), Abort> {
        // A request handed over typed (a single execution) has no words to decode.
        let decoded;
        let req = match input.typed::<Request>() {
            Some(r) => r,
            None => {
                decoded = Request::from_words(input.request()).ok_or(Abort::BadRequest)?;
                &decoded
            }
        };
        // An idle leader CPU's timer interrupt comes from DOMID_IDLE with the CPU as `vcpu`.
        let idle = req.kind == ExitKind::Interrupt && req.dom == dom0_interface::xen::DOMID_IDLE;
        let mut ctx = Ctx::new(input, tx, req);
        if req.kind == ExitKind::RetireCpu {
            // Only the hypervisor asks this, for a leader CPU (`vcpu`), from DOMID_IDLE.
            if req.dom != dom0_interface::xen::DOMID_IDLE {
                return Err(Abort::BadRequest);
            }
            return crate::sched::retire(state, &mut ctx).map_err(|e| match e {
                HvError::Abort(a) => a,
                HvError::Errno(_) => Abort::BadRequest,
            });
        }
        if !idle {
            // One lookup for both: that the vCPU exists, and its live bases recorded.
            let key = (req.dom, req.vcpu);
            let found = match req.live {
                Some(live) => {
                    crate::pv::segments::record_live_bases(state, ctx.journal(), key, live)
                }
                None => state.vcpus.contains_key(&key),
            };
            if !found {
                return Err(Abort::NoSuchVcpu);
            }
        }
        if req.kind == ExitKind::SwitchOut {
            return Ok(());
        }
        if req.kind == ExitKind::Interrupt && req.vector == crate::console::CONSOLE_RX_VECTOR {
            // Serial input for dom0 arrived: only VIRQ_CONSOLE, no scheduler tick.
            return crate::console::input_arrived(state, &mut ctx).map_err(|e| match e {
                HvError::Abort(a) => a,
                HvError::Errno(_) => Abort::BadRequest,
            });
        }
        if let (ExitKind::Interrupt, Some(gsi)) = (req.kind, crate::pirq::vector_gsi(req.vector)) {
            // A GSI a guest may have bound: only its PIRQ events, no scheduler tick.
            return crate::pirq::ops::interrupt(state, &mut ctx, gsi).map_err(|e| match e {
                HvError::Abort(a) => a,
                HvError::Errno(_) => Abort::BadRequest,
            });
        }
        if req.kind == ExitKind::Interrupt {
            crate::sched::interrupt(state, &mut ctx).map_err(|e| match e {
                HvError::Abort(a) => a,
                HvError::Errno(_) => Abort::BadRequest,
            })?;
            if idle {
                return Ok(());
            }
        }
        match req.kind {
            ExitKind::Exception
            | ExitKind::UserSyscall
            | ExitKind::Interrupt
            | ExitKind::Failsafe
            | ExitKind::ReturnFault
            | ExitKind::SwitchOut
            | ExitKind::RetireCpu => {
                crate::traps::guest_exit(state, &mut ctx).map_err(|e| match e {
                    HvError::Abort(a) => a,
                    HvError::Errno(_) => Abort::BadRequest,
                })?;
            }
            ExitKind::Hypercall => {
                let ret = match crate::hypercall::dispatch(state, &mut ctx) {
                    Ok(v) => v,
                    Err(HvError::Errno(e)) => e.as_neg(),
                    Err(HvError::Abort(a)) => return Err(a),
                };
                // A hypercall that does not return to its caller (iret, a continuation) emits
                // no Return.
                if !ctx
                    .tx
                    .effects()
                    .iter()
                    .any(|e| matches!(e, Effect::Return(_) | Effect::Continue(_)))
                {
                    ctx.emit(Effect::Return(ret));
                }
            }
        }
        Ok(())
    }
}

/// Creates a domain with `vcpus` offline vCPUs (vCPU 0 online) in `state`.
pub fn create_domain(
    state: &mut HvState,
    j: &mut lockstep::Journal,
    id: DomId,
    privileged: bool,
    vcpus: u32,
    pages: u64,
) -> Result<(), XenErrno> {
    if state.domains.contains_key(&id) {
        return Err(XenErrno::EEXIST);
    }
    if vcpus == 0 {
        return Err(XenErrno::EINVAL);
    }
    let mut d = Domain {
        id,
        max_vcpus: vcpus,
        tot_pages: pages,
        max_pages: pages,
        ..Domain::default()
    };
    d.flags.privileged = privileged;
    state.domains.insert(j, id, d);
    for v in 0..vcpus {
        let vcpu = Vcpu {
            dom: id,
            id: v,
            online: v == 0,
            kernel_mode: true,
            ..Vcpu::default()
        };
        state.vcpus.insert(j, (id, v), vcpu);
    }
    Ok(())
}

/// Ids of all domains, ascending.
pub fn domain_ids(state: &HvState) -> Vec<DomId> {
    state.domains.iter().map(|(k, _)| *k).collect()
}

#[cfg(test)]
mod value_kind_tests {
    use super::value_kind as v;
    use crate::console::value_kind as c;

    /// Every value kind as a range `[start, end)`: scalars take one number, bases the 24 bits
    /// below them.
    fn ranges() -> alloc::vec::Vec<(&'static str, u32, u32)> {
        let one = |n: &'static str, k: u32| (n, k, k + 1);
        let base = |n: &'static str, k: u32| (n, k, k + 0x0100_0000);
        alloc::vec![
            one("PROBE_WRITE", v::PROBE_WRITE),
            one("SYSTEM_TIME", v::SYSTEM_TIME),
            // ALLOC_FRAME + order (0..20) is a range.
            ("ALLOC_FRAME", v::ALLOC_FRAME, v::ALLOC_FRAME + 20),
            one("TSC", v::TSC),
            one("UPCALL_STATE", v::UPCALL_STATE),
            one("HOST_CPUID_AB", v::HOST_CPUID_AB),
            one("HOST_CPUID_CD", v::HOST_CPUID_CD),
            one("HOST_FREE_PAGES", v::HOST_FREE_PAGES),
            one("HOST_TOTAL_PAGES", v::HOST_TOTAL_PAGES),
            one("HOST_CPU_KHZ", v::HOST_CPU_KHZ),
            one("HOST_NR_CPUS", v::HOST_NR_CPUS),
            one("HOST_PADDR_BITS", v::HOST_PADDR_BITS),
            one("BIOS_KBD_SHIFT_FLAGS", v::BIOS_KBD_SHIFT_FLAGS),
            one("RX_STATE", c::RX_STATE),
            one("CONRING_STATE", c::CONRING_STATE),
            base("LOCKSTEP_STATUS_BASE", v::LOCKSTEP_STATUS_BASE),
            base("PORT_IN_BASE", v::PORT_IN_BASE),
            base("CMOS_READ_BASE", v::CMOS_READ_BASE),
            base("HOST_PCPU_BASE", v::HOST_PCPU_BASE),
            base("IOAPIC_BASE", v::IOAPIC_BASE),
            base("HOST_CPUID_RAW_BASE", v::HOST_CPUID_RAW_BASE),
            base("HOST_RDMSR_BASE", v::HOST_RDMSR_BASE),
            base("RX_WORD_BASE", c::RX_WORD_BASE),
            base("CONRING_WORD_BASE", c::CONRING_WORD_BASE),
            ("VCPU_SAVED", v::VCPU_SAVED_BASE, v::VCPU_SAVED_END),
        ]
    }

    #[test]
    fn vcpu_saved_round_trips_and_stays_in_its_range() {
        for (d, vc, w) in [(0, 0, 0), (0x7FEF, 255, 83), (1, 31, 20), (0x1234, 7, 5)] {
            let k = v::vcpu_saved(d, vc, w);
            assert!((v::VCPU_SAVED_BASE..v::VCPU_SAVED_END).contains(&k));
            assert_eq!(v::vcpu_saved_decode(k), (d, vc, w));
        }
    }

    #[test]
    fn host_cpuid_raw_round_trips() {
        for (leaf, sub, reg) in [(0, 0, 0), (0xd, 1, 0), (0x8000_0001, 0, 3), (7, 0, 2)] {
            let k = v::host_cpuid_raw(leaf, sub, reg);
            assert_eq!(k & 0xFF00_0000, v::HOST_CPUID_RAW_BASE);
            assert_eq!(v::host_cpuid_raw_decode(k), (leaf, sub, reg));
        }
    }

    #[test]
    fn host_rdmsr_kinds_name_their_msr() {
        for msr in [0x10u32, 0x1a0, 0x8b, 0xc000_0080, 0xc000_0103, 0xc001_1029] {
            let k = v::host_rdmsr(msr).expect("in a covered range");
            assert_eq!(k & 0xff00_0000, v::HOST_RDMSR_BASE);
            assert_eq!(v::host_rdmsr_msr(k), msr);
        }
        assert_eq!(v::host_rdmsr(0x4000_0000), None);
        assert_eq!(v::host_rdmsr(0x1234_5678), None);
    }

    #[test]
    fn value_kinds_never_overlap() {
        let r = ranges();
        for (i, a) in r.iter().enumerate() {
            for b in &r[i + 1..] {
                assert!(
                    a.2 <= b.1 || b.2 <= a.1,
                    "value kinds {} and {} overlap: the embedder would answer one with the other",
                    a.0,
                    b.0
                );
            }
        }
    }
}
