//! `selftest=lockstep`: real transactions of the hypervisor's own state machine across the
//! pair's CPUs, with every fault kind injected; checks detection, recovery, that committed
//! effects always equal a fault-free golden run, and that both replicas end bit-identical.

use crate::lockstep_hw::{Backend, FOLLOWER_DIGEST, FOLLOWER_DONE};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use arch::selftest::SelfTest;
use arch::xprintln;
use core::sync::atomic::Ordering;
use lockstep::config::{Config, TxResult};
use lockstep::engine::Engine;
use lockstep::inject::FaultKind;
use lockstep::input::Env;
use spin::Mutex;
use xen_core::effect::Effect;
use xen_core::hv::{create_domain, HvState, Xen};
use xen_core::request::{GuestRegs, Request};

/// The lockstep self-tests (listed by `selftest=list`).
pub const LIST: &[SelfTest] = &[SelfTest {
    name: "lockstep",
    run: run_entry,
}];

fn run_entry() -> Result<(), String> {
    start()
}

/// Guest memory of the test domain: 4 KiB at 0x1000 with a known pattern.
struct TestEnv;

const BUF: u64 = 0x1000;

impl Env for TestEnv {
    fn value(&mut self, kind: u32) -> u64 {
        u64::from(kind) * 1000
    }
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = addr.checked_add(buf.len() as u64) else {
            return false;
        };
        if addr < BUF || end > BUF + 4096 {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = ((addr - BUF) as usize + i) as u8 | 0x20;
        }
        true
    }
}

fn initial_state() -> HvState {
    let mut s = HvState::new();
    let mut j = lockstep::Journal::new();
    j.begin(1);
    let _ = create_domain(&mut s, &mut j, 0, true, 1, 1024);
    let _ = create_domain(&mut s, &mut j, 1, false, 1, 1024);
    lockstep::replica::forget(&mut s);
    s
}

/// A mix of transactions: read-only queries, replica writes (rate-limit map, shutdown
/// codes), guest-memory reads (console output) and refusals.
fn request(i: u64) -> [u64; xen_core::request::REQUEST_WORDS] {
    let (dom, nr, args) = match i % 6 {
        0 => (0, 17, [0, 0, 0, 0, 0]),               // xen_version(version)
        1 => (0, 17, [0x7000 + i, 0, 0, 0, 0]),      // unknown sub-op: logged once (replica write)
        2 => (1, 29, [5, BUF + 8, 0, 0, 0]),         // sched_op(shutdown_code): guest read + write
        3 => (0, 18, [0, 40, BUF + (i % 64), 0, 0]), // console_io write: guest read, output
        4 => (1, 18, [0, 4, BUF, 0, 0]),             // console_io from a domU: -EPERM
        _ => (0, 100 + i, [0; 5]),                   // unknown hypercall: logged once
    };
    let regs = GuestRegs::for_hypercall(nr, args);
    Request::hypercall(dom, 0, regs).to_words()
}

/// Hands the test to the leader CPU (or runs it here) and never returns.
pub fn start() -> ! {
    let mut backend = match crate::lockstep_hw::topology() {
        // One CPU: both executions on it, one after the other (time redundancy).
        Some(lockstep::topology::Topology::Single {
            reason: "one CPU", ..
        }) => {
            let cfg = Config {
                lockstep: true,
                scrub_interval: 1,
                latency_bounds: crate::lockstep_hw::latency_bounds(),
                ..Config::default()
            };
            match Engine::new(cfg, initial_state(), initial_state()) {
                Ok(e) => Backend::Local(alloc::boxed::Box::new(e)),
                Err(e) => arch::selftest::report("lockstep", Err(format!("engine: {e:?}"))),
            }
        }
        _ => Backend::new(initial_state()),
    };
    let cpu = crate::lockstep_hw::topology().map_or(0, |t| t.guest_cpu());
    if cpu == arch::percpu::cpu_index() {
        arch::selftest::report("lockstep", run(&mut backend))
    }
    *PENDING.lock() = Some(backend);
    arch::smp::assign(cpu, leader_task);
    crate::boot::idle(arch::percpu::cpu_index())
}

static PENDING: Mutex<Option<Backend>> = Mutex::new(None);

fn leader_task() -> ! {
    let Some(mut backend) = PENDING.lock().take() else {
        arch::selftest::report("lockstep", Err("no backend handed over".into()))
    };
    arch::selftest::report("lockstep", run(&mut backend))
}

/// The pair transaction `i` runs through.
fn pair_of(i: u64) -> usize {
    let pairs = crate::lockstep_hw::topology().map_or(1, |t| t.pairs().len().max(1));
    (i % pairs as u64) as usize
}

/// Runs transaction `i` (through pair `i % pairs` with several pairs, so every pair's
/// mailbox, follower and the shared replicas take turns).
fn collect(
    backend: &mut Backend,
    i: u64,
    words: &[u64],
) -> (TxResult<xen_core::hv::Abort>, u32, Vec<Effect>) {
    let mut got = Vec::new();
    let out = backend.run_for_pair(pair_of(i), words, &mut TestEnv, &mut |e: &[Effect]| {
        got.extend_from_slice(e)
    });
    (out.result, out.detections, got)
}

fn run(backend: &mut Backend) -> Result<(), String> {
    xprintln!(
        "lockstep selftest on CPU{}: {}",
        arch::percpu::cpu_index(),
        crate::lockstep_hw::topology().map_or_else(|| String::from("?"), |t| format!("{t}"))
    );
    // The golden run: the same transactions, once each, on a separate replica.
    let mut golden = Engine::<Xen>::new(
        Config {
            lockstep: false,
            ..Config::default()
        },
        initial_state(),
        initial_state(),
    )
    .map_err(|e| format!("golden engine: {e:?}"))?;
    let mut expect = |i: u64| {
        let mut got = Vec::new();
        golden.run_single(&request(i), &mut TestEnv, &mut |e: &[Effect]| {
            got.extend_from_slice(e)
        });
        got
    };
    let mut i = 0u64;
    for _ in 0..24 {
        let want = expect(i);
        let (r, _, got) = collect(backend, i, &request(i));
        if r != TxResult::Committed || got != want {
            return Err(format!(
                "fault-free transaction {i}: {r:?}, effects differ from the golden run"
            ));
        }
        i += 1;
    }
    let protected = backend.health().is_protected();
    for kind in FaultKind::ALL {
        let mut detected = 0;
        let follower_repairs = crate::lockstep_hw::follower_repairs;
        let repairs_before = follower_repairs();
        for _ in 0..3 {
            let want = expect(i);
            backend.injector_of(pair_of(i)).arm(kind, 1);
            let (r, d, got) = collect(backend, i, &request(i));
            i += 1;
            if r != TxResult::Committed {
                return Err(format!(
                    "{}: transaction not committed ({r:?})",
                    kind.name()
                ));
            }
            if got != want {
                return Err(format!(
                    "{}: SILENT CORRUPTION: committed effects differ from the golden run",
                    kind.name()
                ));
            }
            detected += d;
        }
        if kind == FaultKind::ReplicaState {
            // Flips in the follower's replica are found by the follower's own scrub after
            // the round's commit: give it a moment, then count what it corrected.
            let t0 = arch::cpu::rdtsc();
            while follower_repairs() == repairs_before
                && arch::cpu::rdtsc() - t0 < 100 * arch::lapic::tsc_khz()
            {
                core::hint::spin_loop();
            }
            detected += (follower_repairs() - repairs_before) as u32;
        }
        let must_detect = matches!(
            kind,
            FaultKind::Effects | FaultKind::Digest | FaultKind::ReplicaState | FaultKind::Hang
        );
        xprintln!(
            "lockstep selftest: {:>13}: 3 injected, {} detection(s), all committed results correct",
            kind.name(),
            detected
        );
        if protected && must_detect && detected == 0 {
            return Err(format!("{}: injected 3 times, never detected", kind.name()));
        }
    }
    let stats = backend.stats();
    xprintln!("lockstep selftest: {}", stats);
    if !backend.health().is_protected() && protected {
        return Err(format!("the pair was escalated: {}", backend.health()));
    }
    let leader = lockstep::replica::full_digest(backend.replica());
    let golden_digest =
        lockstep::replica::full_digest(golden.replica(lockstep::role::Role::Leader));
    if leader != golden_digest {
        return Err(format!(
            "leader replica {leader:#x} differs from the golden replica {golden_digest:#x}"
        ));
    }
    if matches!(backend, Backend::Leader(_) | Backend::Pairs(_)) {
        backend.shut_down_pair();
        let t0 = arch::cpu::rdtsc();
        while !FOLLOWER_DONE.load(Ordering::SeqCst) {
            if arch::cpu::rdtsc() - t0 > 1000 * arch::lapic::tsc_khz() {
                return Err("the follower did not stop".into());
            }
            core::hint::spin_loop();
        }
        let f = FOLLOWER_DIGEST.load(Ordering::SeqCst);
        if f != leader {
            return Err(format!(
                "follower replica {f:#x} differs from the leader's {leader:#x}"
            ));
        }
        xprintln!(
            "lockstep selftest: leader and follower replicas bit-identical (digest {:#x})",
            f
        );
    }
    Ok(())
}
