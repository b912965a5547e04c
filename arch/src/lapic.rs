//! The local APIC (xAPIC MMIO; TCG has no x2APIC): timer, EOI, IPIs, INIT-SIPI-SIPI.

use crate::cpu::{inb, outb, rdmsr, rdtsc};
use crate::layout::phys_to_virt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Vector of the LAPIC timer.
pub const TIMER_VECTOR: u8 = 0xF0;
/// Vector used to wake a halted CPU (no action beyond the wake-up).
pub const WAKE_VECTOR: u8 = 0xF1;
/// Vector of the call-function IPI.
pub const CALL_VECTOR: u8 = 0xF2;
/// Spurious-interrupt vector (no EOI).
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// LAPIC timer frequency DualVisor programs, in Hz.
pub const TIMER_HZ: u64 = 100;

const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xB0;
const REG_SVR: u64 = 0xF0;
const REG_ESR: u64 = 0x280;
const REG_ICR_LO: u64 = 0x300;
const REG_ICR_HI: u64 = 0x310;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;
const REG_LVT_ERROR: u64 = 0x370;
const REG_TIMER_INIT: u64 = 0x380;
const REG_TIMER_CUR: u64 = 0x390;
const REG_TIMER_DIV: u64 = 0x3E0;

static BASE_VADDR: AtomicU64 = AtomicU64::new(0);
static TIMER_INITIAL_COUNT: AtomicU32 = AtomicU32::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

fn reg(offset: u64) -> *mut u32 {
    (BASE_VADDR.load(Ordering::Relaxed) + offset) as *mut u32
}

fn read(offset: u64) -> u32 {
    // SAFETY: BASE_VADDR maps the LAPIC's 4 KiB MMIO page (direct map, set by `init_bsp`);
    // every offset used is a defined 32-bit register.
    unsafe { core::ptr::read_volatile(reg(offset)) }
}

fn write(offset: u64, value: u32) {
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile(reg(offset), value) }
}

/// Whether the LAPIC has been mapped.
pub fn is_ready() -> bool {
    BASE_VADDR.load(Ordering::Relaxed) != 0
}

/// The running CPU's APIC id (xAPIC: bits 24–31).
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Maps the LAPIC (from IA32_APIC_BASE, or `paddr_hint` from the MADT) and calibrates the
/// timer and the TSC against PIT channel 2. Boot CPU only, before `init_cpu`.
pub fn init_bsp(paddr_hint: Option<u64>) {
    let msr = rdmsr(0x1B);
    let paddr = paddr_hint.unwrap_or(msr & 0x000F_FFFF_FFFF_F000);
    BASE_VADDR.store(phys_to_virt(paddr), Ordering::Relaxed);
    write(REG_TIMER_DIV, 0b1011); // divide by 1
    write(REG_LVT_TIMER, 1 << 16); // masked
    let mut samples = [Window::default(); CALIBRATION_TRIES];
    let mut taken = 0;
    for s in samples.iter_mut() {
        *s = measure_10ms();
        taken += 1;
        if s.precise() {
            break;
        }
    }
    let w = best(&samples[..taken]);
    let per_tick = (u64::from(w.apic_ticks) * 100 / TIMER_HZ).clamp(1000, u32::MAX as u64);
    TIMER_INITIAL_COUNT.store(per_tick as u32, Ordering::Relaxed);
    let khz = (w.tsc_estimate() / 10).max(1);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    crate::xprintln!("Detected {}.{:03} MHz processor.", khz / 1000, khz % 1000);
}

/// 10 ms windows of PIT channel 2 measured at most before taking the most precise one.
const CALIBRATION_TRIES: usize = 8;

/// One 10 ms window of PIT channel 2 as the TSC and the LAPIC timer saw it. The TSC is read
/// around the count load and around each poll of the PIT output, so the window's length in
/// TSC cycles is known to lie in `[lo, hi]`: a CPU that was not running at either end (a
/// preempted vCPU thread under QEMU on a busy host) shows as a wide bracket instead of a
/// wrong frequency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Fewest TSC cycles the window can have lasted.
    pub lo: u64,
    /// Most TSC cycles it can have lasted.
    pub hi: u64,
    /// LAPIC timer ticks counted (divide by 1).
    pub apic_ticks: u32,
}

impl Window {
    /// The middle of the bracket.
    pub fn tsc_estimate(&self) -> u64 {
        self.lo + (self.hi - self.lo) / 2
    }

    /// Known to within 0.1%.
    pub fn precise(&self) -> bool {
        self.hi >= self.lo && (self.hi - self.lo).saturating_mul(1000) <= self.lo
    }
}

/// The window with the narrowest bracket (relative to its length).
pub fn best(samples: &[Window]) -> Window {
    samples
        .iter()
        .filter(|w| w.hi >= w.lo && w.lo > 0)
        .min_by_key(|w| (w.hi - w.lo).saturating_mul(1 << 20) / w.lo)
        .copied()
        .unwrap_or_default()
}

/// Counts LAPIC timer ticks and TSC cycles over 10 ms of PIT channel 2 (mode 0: counting
/// starts when the count's high byte is written, the output rises when it runs out).
fn measure_10ms() -> Window {
    const PIT_10MS: u16 = 11932;
    let gate = inb(0x61);
    outb(0x61, (gate & !0x02) | 0x01); // gate high, speaker off
    outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0
    outb(0x42, PIT_10MS as u8);
    write(REG_TIMER_INIT, u32::MAX);
    let start_lo = rdtsc();
    outb(0x42, (PIT_10MS >> 8) as u8);
    let start_hi = rdtsc();
    // TSC read just before the last poll that still saw the output low.
    let mut last_low = start_hi;
    let mut spins: u64 = 0;
    let end_hi = loop {
        let t = rdtsc();
        if inb(0x61) & 0x20 != 0 {
            break rdtsc();
        }
        last_low = t;
        spins += 1;
        if spins > 50_000_000 {
            break t;
        }
    };
    let cur = read(REG_TIMER_CUR);
    write(REG_TIMER_INIT, 0);
    outb(0x61, gate);
    Window {
        lo: last_low.saturating_sub(start_hi),
        hi: end_hi.saturating_sub(start_lo),
        apic_ticks: u32::MAX - cur,
    }
}

/// TSC frequency in kHz, as calibrated at boot.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed).max(1)
}

/// Busy-waits `us` microseconds on the TSC (boot-time only: idle CPUs `hlt`).
pub fn udelay(us: u64) {
    let end = rdtsc() + us * tsc_khz() / 1000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Enables the running CPU's LAPIC and starts its periodic timer.
pub fn init_cpu() {
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_LVT_LINT0, 1 << 16);
    write(REG_LVT_LINT1, 1 << 16);
    write(REG_LVT_ERROR, 1 << 16);
    write(REG_ESR, 0);
    write(REG_TIMER_DIV, 0b1011);
    write(REG_LVT_TIMER, (1 << 17) | u32::from(TIMER_VECTOR)); // periodic
    write(REG_TIMER_INIT, TIMER_INITIAL_COUNT.load(Ordering::Relaxed));
    eoi();
}

/// Signals end of interrupt.
pub fn eoi() {
    if is_ready() {
        write(REG_EOI, 0);
    }
}

fn wait_icr_idle() {
    for _ in 0..1_000_000 {
        if read(REG_ICR_LO) & (1 << 12) == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

fn send_icr(dest_apic: u32, low: u32) {
    wait_icr_idle();
    write(REG_ICR_HI, dest_apic << 24);
    write(REG_ICR_LO, low);
    wait_icr_idle();
}

/// Sends a fixed-vector IPI to one CPU. Unlike INIT/SIPI/NMI ([`send_icr`]) it does not
/// wait for the delivery afterwards: the wait before the next send covers it. Each ICR access
/// is an MMIO exit that takes QEMU's global lock under TCG; the lockstep wake-ups made the
/// four accesses of `send_icr` ~30% of the leader's samples (`scripts/profile.sh`).
pub fn send_ipi(dest_apic: u32, vector: u8) {
    wait_icr_idle();
    write(REG_ICR_HI, dest_apic << 24);
    write(REG_ICR_LO, u32::from(vector) | (1 << 14));
}

/// Starts an application processor with INIT-SIPI-SIPI at `trampoline_paddr`.
pub fn start_ap(dest_apic: u32, trampoline_paddr: u64) {
    send_icr(dest_apic, 0x0000_C500); // INIT, level assert
    udelay(10);
    send_icr(dest_apic, 0x0000_8500); // INIT de-assert
    udelay(10_000);
    let page = ((trampoline_paddr >> 12) & 0xFF) as u32;
    for _ in 0..2 {
        send_icr(dest_apic, 0x0000_4600 | page); // STARTUP
        udelay(200);
    }
}

/// Sends an NMI to every other CPU (used to stop them on a fatal error).
pub fn stop_other_cpus() {
    if is_ready() {
        send_icr(0, 0x000C_4400); // all-excluding-self, NMI, assert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(lo: u64, hi: u64) -> Window {
        Window {
            lo,
            hi,
            apic_ticks: 1,
        }
    }

    #[test]
    fn a_window_is_precise_within_a_thousandth() {
        assert!(w(23_000_000, 23_010_000).precise());
        assert!(w(23_000_000, 23_023_000).precise());
        assert!(!w(23_000_000, 23_024_000).precise());
        assert!(!w(5, 4).precise());
        assert_eq!(w(100, 200).tsc_estimate(), 150);
    }

    #[test]
    fn the_narrowest_bracket_wins_over_a_preempted_window() {
        // A vCPU preempted for 7 ms at the end of the first window (the 3.9 GHz reading of
        // a 2.3 GHz TSC seen on a loaded host) loses to a tight one.
        let s = [
            w(23_000_000, 38_900_000),
            w(23_000_100, 23_003_000),
            w(0, 0),
        ];
        assert_eq!(best(&s), s[1]);
        assert_eq!(best(&[]), Window::default());
        assert_eq!(best(&[w(0, 0)]), Window::default());
    }
}
