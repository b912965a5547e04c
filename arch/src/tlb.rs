//! TLB shootdown between the CPUs that run guests (several lockstep leaders): a CPU that
//! committed a TLB flush for a guest asks every other such CPU to flush its own TLB and
//! waits until each did, as Xen's `flush_mask` does, before its guest goes on. Requests are
//! a per-CPU generation counter and its acknowledgement; the IPI that carries them is the
//! wake vector, whose handler calls [`service`].
//!
//! The asking CPU must not hold a lock another CPU may spin on with interrupts off (the
//! runtime lock): such a CPU takes the IPI only once it has run on. While waiting, it serves
//! requests to itself, so two CPUs asking each other at the same time both finish; a CPU
//! that does not answer within the timeout (a core that died) is given up and reported.

use crate::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};

/// Flushes asked of each CPU.
static REQUESTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Flushes each CPU did of those asked.
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Does the flush asked of this CPU, if any. Called from the wake IPI and while waiting.
pub fn service() {
    let me = crate::percpu::cpu_index();
    let asked = REQUESTED[me].load(Ordering::Acquire);
    if DONE[me].load(Ordering::Relaxed) != asked {
        crate::cpu::flush_tlb_local();
        DONE[me].store(asked, Ordering::Release);
    }
}

/// Whether a flush is owed by `cpu` whose generation `want` it has not reached.
fn owed(cpu: usize, want: u64) -> bool {
    DONE[cpu].load(Ordering::Acquire).wrapping_sub(want) > u64::MAX / 2
}

/// Has every CPU in `cpus` (other than this one) flush its TLB, and waits up to
/// `timeout_cycles` of the TSC for all of them. Returns the CPUs that did not answer.
pub fn flush_others(cpus: &[usize], timeout_cycles: u64) -> heapless::Vec<usize, 8> {
    let me = crate::percpu::cpu_index();
    let mut asked: heapless::Vec<(usize, u64), MAX_CPUS> = heapless::Vec::new();
    for &c in cpus {
        if c == me || c >= MAX_CPUS || asked.iter().any(|&(a, _)| a == c) {
            continue;
        }
        let want = REQUESTED[c].fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        let _ = asked.push((c, want));
        crate::smp::send_wake_ipi(c);
    }
    let deadline = crate::cpu::rdtsc().saturating_add(timeout_cycles);
    loop {
        service();
        if asked.iter().all(|&(c, w)| !owed(c, w)) {
            return heapless::Vec::new();
        }
        if crate::cpu::rdtsc() > deadline {
            let mut late = heapless::Vec::new();
            for &(c, _) in asked.iter().filter(|&&(c, w)| owed(c, w)) {
                let _ = late.push(c);
            }
            return late;
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_is_owed_until_its_generation_is_done() {
        DONE[5].store(3, Ordering::Relaxed);
        assert!(owed(5, 4));
        assert!(!owed(5, 3));
        assert!(!owed(5, 2));
        // Generations wrap.
        DONE[6].store(u64::MAX, Ordering::Relaxed);
        assert!(owed(6, 0));
        DONE[6].store(0, Ordering::Relaxed);
        assert!(!owed(6, u64::MAX));
    }
}
