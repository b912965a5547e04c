//! The leader's environment for a transaction: guest memory through the running vCPU's page
//! tables, machine memory, time, and fresh frames for memory_op (freed again unless the
//! committed effects keep them).

use super::VcpuRt;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use lockstep::input::Env;
use xen_core::domain::VcpuKey;
use xen_core::hv::value_kind;

/// Nanoseconds since boot, from the TSC.
pub fn system_time_ns() -> u64 {
    let khz = arch::lapic::tsc_khz();
    (u128::from(arch::cpu::rdtsc()) * 1_000_000 / u128::from(khz)) as u64
}

/// One transaction's environment.
pub struct PvEnv<'a> {
    /// Page-table base of the calling vCPU (0: none, e.g. an idle CPU).
    pub cr3: u64,
    /// Machine address of the calling vCPU's vcpu_info (0: none).
    pub vcpu_info: u64,
    /// CPUID leaf and subleaf the guest asked for (its EAX/ECX at the exit).
    pub cpuid: (u32, u32),
    /// Frames handed out through `ALLOC_FRAME` during this transaction.
    pub allocated: Vec<u64>,
    /// The lockstep engine's status as words (taken before a sysctl, which may read it).
    pub lockstep_status: Option<Vec<u64>>,
    /// The registers and FPU state the runtime saved for each vCPU not on a CPU (read by
    /// getvcpucontext through `value_kind::vcpu_saved`).
    saved: &'a BTreeMap<VcpuKey, VcpuRt>,
}

impl<'a> PvEnv<'a> {
    /// An environment translating guest addresses through `cr3`.
    pub fn new(
        cr3: u64,
        vcpu_info: u64,
        cpuid: (u32, u32),
        saved: &'a BTreeMap<VcpuKey, VcpuRt>,
    ) -> Self {
        PvEnv {
            cr3,
            vcpu_info,
            cpuid,
            allocated: Vec::new(),
            lockstep_status: None,
            saved,
        }
    }

    /// Word `word` of the saved state of `key` (see `value_kind::VCPU_SAVED_WORDS`).
    fn saved_word(&self, key: VcpuKey, word: u32) -> u64 {
        let Some(v) = self.saved.get(&key) else {
            return 0;
        };
        let r = super::regs_of(&v.frame);
        let regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
            r.r13, r.r14, r.r15, r.rip, r.cs, r.rflags, r.rsp, r.ss,
        ];
        if word == value_kind::VCPU_SAVED_SEGS {
            return xen_core::pv::segments::pack(v.segs);
        }
        match word.checked_sub(value_kind::VCPU_SAVED_FX) {
            None => regs.get(word as usize).copied().unwrap_or(0),
            Some(i) => v.fx.0.chunks_exact(8).nth(i as usize).map_or(0, |c| {
                u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
            }),
        }
    }
}

/// Frees every frame a transaction allocated (`allocated`) that the committed effects did
/// not keep.
pub fn release_unkept(allocated: Vec<u64>, kept: &[u64]) {
    for m in allocated {
        if !kept.contains(&m) {
            let _ = arch::memory::free_frame(m << 12);
        }
    }
}

impl Env for PvEnv<'_> {
    fn value(&mut self, kind: u32) -> u64 {
        match kind {
            value_kind::SYSTEM_TIME => system_time_ns(),
            value_kind::TSC => arch::cpu::rdtsc(),
            // 2^order contiguous, aligned, zeroed frames (kind = ALLOC_FRAME + order).
            k if (value_kind::ALLOC_FRAME..value_kind::ALLOC_FRAME + 19).contains(&k) => {
                let n = 1u64 << (k - value_kind::ALLOC_FRAME);
                match arch::memory::alloc_contiguous(n, n) {
                    Some(p) => {
                        for f in (p >> 12)..(p >> 12) + n {
                            arch::guestmem::zero_frame(f);
                            self.allocated.push(f);
                        }
                        p >> 12
                    }
                    None => xen_core::mm::NO_FRAME,
                }
            }
            value_kind::UPCALL_STATE => {
                let mut b = [0u8; 2];
                if self.vcpu_info != 0 && arch::guestmem::read_machine(self.vcpu_info, &mut b) {
                    u64::from(b[0]) | (u64::from(b[1]) << 8)
                } else {
                    0
                }
            }
            value_kind::HOST_CPUID_AB => {
                let (a, b, _, _) = arch::cpu::cpuid(self.cpuid.0, self.cpuid.1);
                u64::from(a) | (u64::from(b) << 32)
            }
            value_kind::HOST_CPUID_CD => {
                let (_, _, c, d) = arch::cpu::cpuid(self.cpuid.0, self.cpuid.1);
                u64::from(c) | (u64::from(d) << 32)
            }
            value_kind::HOST_FREE_PAGES => arch::memory::current_stats().free_frames,
            value_kind::HOST_TOTAL_PAGES => arch::memory::current_stats().total_frames,
            value_kind::HOST_CPU_KHZ => arch::lapic::tsc_khz(),
            value_kind::HOST_NR_CPUS => arch::percpu::nr_online() as u64,
            value_kind::BIOS_KBD_SHIFT_FLAGS => u64::from(arch::platform::bios_kbd_shift_flags()),
            value_kind::HOST_PADDR_BITS => {
                let (max_ext, _, _, _) = arch::cpu::cpuid(0x8000_0000, 0);
                if max_ext >= 0x8000_0008 {
                    u64::from(arch::cpu::cpuid(0x8000_0008, 0).0 & 0xff)
                } else {
                    36
                }
            }
            k if k & 0xFF00_0000 == value_kind::LOCKSTEP_STATUS_BASE => self
                .lockstep_status
                .as_ref()
                .and_then(|w| w.get((k & 0xFFFF) as usize).copied())
                .unwrap_or(0),
            k if (value_kind::VCPU_SAVED_BASE..value_kind::VCPU_SAVED_END).contains(&k) => {
                let (dom, vcpu, word) = value_kind::vcpu_saved_decode(k);
                self.saved_word((dom, vcpu), word)
            }
            k if k & 0xFF00_0000 == value_kind::HOST_RDMSR_BASE => {
                arch::cpu::rdmsr_safe(value_kind::host_rdmsr_msr(k)).unwrap_or(u64::MAX)
            }
            k if k & 0xFF00_0000 == value_kind::PORT_IN_BASE => {
                let port = k as u16;
                match (k >> 16) & 0xFF {
                    1 => u64::from(arch::cpu::inb(port)),
                    2 => u64::from(arch::cpu::inw(port)),
                    _ => u64::from(arch::cpu::inl(port)),
                }
            }
            k if k & 0xFF00_0000 == value_kind::IOAPIC_BASE => {
                let index = ((k >> 8) & 0xFF) as usize;
                if k & 0x1_0000 != 0 {
                    arch::ioapic::ioapic_base((k & 0xFF) as usize).unwrap_or(0)
                } else {
                    arch::ioapic::read_register(index, k & 0xFF).map_or(u64::MAX, u64::from)
                }
            }
            k if k & 0xFF00_0000 == value_kind::HOST_PCPU_BASE => {
                match arch::percpu::get((k & 0xFFFF) as usize) {
                    Some(pc) if pc.online.load(core::sync::atomic::Ordering::Acquire) => {
                        let apic = pc.apic_id.load(core::sync::atomic::Ordering::Relaxed);
                        let acpi = u64::from(arch::platform::acpi_id_of(apic) & 0x7FFF_FFFF);
                        value_kind::HOST_PCPU_UP | (acpi << 32) | u64::from(apic)
                    }
                    _ => 0,
                }
            }
            k if k & 0xFF00_0000 == value_kind::CMOS_READ_BASE => {
                u64::from(arch::platform::cmos_read(k as u8))
            }
            k if k & 0xFF00_0000 == value_kind::HOST_CPUID_RAW_BASE => {
                let (leaf, sub, reg) = value_kind::host_cpuid_raw_decode(k);
                let (a, b, c, d) = arch::cpu::cpuid(leaf, sub);
                u64::from([a, b, c, d][reg as usize])
            }
            xen_core::console::value_kind::RX_STATE => arch::conring::SERIAL_RX.lock().state(),
            xen_core::console::value_kind::CONRING_STATE => arch::conring::CONRING.lock().state(),
            k if k & 0xFF00_0000 == xen_core::console::value_kind::RX_WORD_BASE => {
                arch::conring::SERIAL_RX.lock().word(k & 0x00FF_FFFF)
            }
            k if k & 0xFF00_0000 == xen_core::console::value_kind::CONRING_WORD_BASE => {
                arch::conring::CONRING.lock().word(k & 0x00FF_FFFF)
            }
            _ => 0,
        }
    }
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.cr3 != 0 && arch::guestmem::read(self.cr3, addr, buf)
    }
    fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
        arch::guestmem::read_machine(maddr, buf)
    }
    fn probe_write(&mut self, addr: u64, len: usize) -> bool {
        self.cr3 != 0 && arch::guestmem::probe_write(self.cr3, addr, len)
    }
}
