//! Synchronous descheduling between the CPUs that run guests (several lockstep leaders), as
//! Xen's `vcpu_sleep_sync`: a CPU whose committed transaction takes a vCPU off another CPU
//! that holds it right now (pause, shutdown, crash, destroy, vCPU down) asks that CPU to
//! leave it and waits for its answer before the guest that asked goes on, and a domain's
//! frames released meanwhile go back to the allocator only once every CPU asked has left.
//!
//! Requests are a per-CPU generation counter and its acknowledgement, like [`crate::tlb`]'s:
//! the asking CPU bumps the counter under the runtime lock; the CPU asked acknowledges
//! under the same lock, once it saved the vCPU's state and switched page tables away
//! (it is interrupted by the kick that announced the change). A CPU that waits while it
//! owes an answer itself stops waiting (two CPUs asking each other both go on, and answer
//! at their next exit); one that does not answer within the timeout is reported. Frames
//! are released by whichever CPU next finds every answer in ([`release_ready`]).

use crate::percpu::MAX_CPUS;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// Departures asked of each CPU.
static ASKED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The last request each CPU acknowledged.
static LEFT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Requests made since boot, and those not answered within a wait's timeout.
static ASKS_MADE: AtomicU64 = AtomicU64::new(0);
static ASKS_LATE: AtomicU64 = AtomicU64::new(0);

/// A request: the CPU asked and the generation it must reach.
pub type Ask = (usize, u64);

/// Asks `cpu` to leave the vCPU it holds (the caller holds the runtime lock and kicks it).
/// Returns the request to wait for.
pub fn ask(cpu: usize) -> Option<Ask> {
    let a = ASKED.get(cpu)?;
    ASKS_MADE.fetch_add(1, Ordering::Relaxed);
    Some((cpu, a.fetch_add(1, Ordering::AcqRel).wrapping_add(1)))
}

/// `cpu` left whatever vCPU it was asked to leave (called by that CPU under the runtime
/// lock, with its vCPU switch done).
pub fn left(cpu: usize) {
    if let (Some(a), Some(l)) = (ASKED.get(cpu), LEFT.get(cpu)) {
        let asked = a.load(Ordering::Acquire);
        if l.load(Ordering::Relaxed) != asked {
            l.store(asked, Ordering::Release);
        }
    }
}

/// Whether `cpu` owes an answer to any request.
pub fn owes(cpu: usize) -> bool {
    match (ASKED.get(cpu), LEFT.get(cpu)) {
        (Some(a), Some(l)) => a.load(Ordering::Acquire) != l.load(Ordering::Acquire),
        _ => false,
    }
}

/// Whether request `a` is answered.
pub fn answered(a: Ask) -> bool {
    LEFT.get(a.0)
        .is_none_or(|l| !behind(l.load(Ordering::Acquire), a.1))
}

/// Whether generation `done` has not reached `want` (generations wrap).
fn behind(done: u64, want: u64) -> bool {
    done.wrapping_sub(want) > u64::MAX / 2
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// Every CPU asked answered.
    All,
    /// This CPU was asked to leave its own vCPU meanwhile: it goes on so the other can
    /// (the rest is answered at their next exits).
    Asked,
    /// These CPUs did not answer within the timeout.
    Late(Vec<usize>),
}

/// Waits up to `timeout_cycles` of the TSC for every request in `asks` to be answered,
/// serving TLB shootdowns asked of this CPU meanwhile; `me` is this CPU as requests name
/// it. Call without the runtime lock.
pub fn wait(asks: &[Ask], me: usize, timeout_cycles: u64) -> Waited {
    let deadline = crate::cpu::rdtsc().saturating_add(timeout_cycles);
    loop {
        crate::tlb::service();
        if asks.iter().all(|&a| answered(a)) {
            return Waited::All;
        }
        if owes(me) {
            return Waited::Asked;
        }
        if crate::cpu::rdtsc() > deadline {
            let mut late = Vec::new();
            for &(c, _) in asks.iter().filter(|&&a| !answered(a)) {
                if !late.contains(&c) {
                    late.push(c);
                }
            }
            ASKS_LATE.fetch_add(late.len() as u64, Ordering::Relaxed);
            return Waited::Late(late);
        }
        core::hint::spin_loop();
    }
}

/// Frames waiting for CPUs to answer before they go back to the allocator.
#[derive(Default)]
pub struct Pending {
    entries: Vec<(Vec<Ask>, Vec<u64>)>,
}

impl Pending {
    /// Keeps `mfns` until every request in `asks` is answered.
    pub fn add(&mut self, asks: &[Ask], mfns: &[u64]) {
        if !mfns.is_empty() {
            self.entries.push((asks.to_vec(), mfns.to_vec()));
        }
    }

    /// Takes the frames whose requests `answered` says are all answered.
    pub fn take_ready(&mut self, answered: impl Fn(Ask) -> bool) -> Vec<u64> {
        let mut out = Vec::new();
        self.entries.retain(|(asks, mfns)| {
            let ready = asks.iter().all(|&a| answered(a));
            if ready {
                out.extend_from_slice(mfns);
            }
            !ready
        });
        out
    }

    /// Frames kept.
    pub fn frames(&self) -> usize {
        self.entries.iter().map(|(_, m)| m.len()).sum()
    }
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    entries: Vec::new(),
});
/// Frames in [`PENDING`] (read without its lock on every exit).
static PENDING_FRAMES: AtomicUsize = AtomicUsize::new(0);

/// Releases machine frames `mfns` back to the allocator once every request in `asks` is
/// answered: now if they are, else at a later [`release_ready`].
pub fn release_after(asks: &[Ask], mfns: &[u64]) {
    if mfns.is_empty() {
        return;
    }
    if asks.iter().all(|&a| answered(a)) {
        free(mfns);
        return;
    }
    let mut p = PENDING.lock();
    p.add(asks, mfns);
    PENDING_FRAMES.store(p.frames(), Ordering::Release);
}

/// Releases the kept frames whose CPUs all answered by now.
pub fn release_ready() {
    if PENDING_FRAMES.load(Ordering::Acquire) == 0 {
        return;
    }
    let ready = {
        let mut p = PENDING.lock();
        let r = p.take_ready(answered);
        PENDING_FRAMES.store(p.frames(), Ordering::Release);
        r
    };
    free(&ready);
}

/// Frames still kept for CPUs that have not answered.
pub fn pending_frames() -> usize {
    PENDING_FRAMES.load(Ordering::Acquire)
}

/// Prints how many departures were asked and how many answered late, and the frames still
/// kept (`descheduling: 40 vCPU departures asked of other CPUs, 0 late, 0 frames kept`),
/// if any was asked.
pub fn report() {
    let made = ASKS_MADE.load(Ordering::Relaxed);
    if made > 0 {
        crate::xprintln!(
            "descheduling: {} vCPU departures asked of other CPUs, {} late, {} frames kept",
            made,
            ASKS_LATE.load(Ordering::Relaxed),
            pending_frames()
        );
    }
}

fn free(mfns: &[u64]) {
    for m in mfns {
        let _ = crate::memory::free_frame(m << 12);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_owed_until_the_cpu_left() {
        let a = ask(7).expect("cpu 7");
        assert!(owes(7));
        assert!(!answered(a));
        let b = ask(7).expect("cpu 7");
        left(7);
        assert!(!owes(7));
        assert!(answered(a) && answered(b));
        assert!(ask(MAX_CPUS).is_none(), "no such CPU");
        // Generations wrap.
        assert!(behind(u64::MAX, 0));
        assert!(!behind(0, u64::MAX));
    }

    #[test]
    fn frames_wait_for_every_cpu_asked() {
        let mut p = Pending::default();
        p.add(&[(1, 5), (3, 2)], &[10, 11]);
        p.add(&[(3, 3)], &[12]);
        p.add(&[(1, 1)], &[]);
        assert_eq!(p.frames(), 3);
        let done = |left: [u64; 4]| move |(c, g): Ask| !behind(left[c], g);
        // CPU1 answered, CPU3 not: nothing goes.
        assert!(p.take_ready(done([0, 5, 0, 1])).is_empty());
        // CPU3 reached 2: the first batch goes, the second waits for generation 3.
        assert_eq!(p.take_ready(done([0, 5, 0, 2])), alloc::vec![10, 11]);
        assert_eq!(p.frames(), 1);
        assert_eq!(p.take_ready(done([0, 5, 0, 3])), alloc::vec![12]);
        assert_eq!(p.frames(), 0);
    }
}
