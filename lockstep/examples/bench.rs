//! Host benchmark of the lockstep engine. Prints ratios measured in one run (never a
//! pass/fail on time): mailbox round trip vs a raw cache-line ping-pong between the same two
//! threads; one model transaction with lockstep on vs off (one core, and two threads);
//! digest cost per KiB.
//!
//! `cargo run --release -p lockstep --example bench [iterations]`

use lockstep::digest::{crc32c, TxDigest};
use lockstep::follower::FollowerCore;
use lockstep::inject::Prng;
use lockstep::leader::LeaderCore;
use lockstep::machine::ExecStatus;
use lockstep::mailbox::{Pair, Post};
use lockstep::model::{random_request, Effect, Model, ModelEnv, ModelState};
use lockstep::role::{wait_until, Clock, Idle, WaitStrategy};
use lockstep::{Config, Engine};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

struct Host(Instant);
impl Clock for Host {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}
impl Idle for Host {
    fn idle(&self) {
        std::thread::yield_now();
    }
}

#[repr(align(64))]
struct Line(AtomicU64);

const SPIN: WaitStrategy = WaitStrategy { spins: 4000 };

fn spin_until(mut f: impl FnMut() -> bool) {
    let mut n = 0u32;
    while !f() {
        n += 1;
        if n < SPIN.spins {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Raw ping-pong: one store and one load per direction, nothing else.
fn raw_ping_pong(iters: u64) -> f64 {
    let ping = Line(AtomicU64::new(0));
    let pong = Line(AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=iters {
                spin_until(|| ping.0.load(Ordering::Acquire) == i);
                pong.0.store(i, Ordering::Release);
            }
        });
        let t = Instant::now();
        for i in 1..=iters {
            ping.0.store(i, Ordering::Release);
            spin_until(|| pong.0.load(Ordering::Acquire) == i);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

/// The same exchange through the mailbox: a digest post to each side's slot.
fn mailbox_round_trip(iters: u64) -> f64 {
    let pair = Pair::new(16);
    let post = |i: u64| Post {
        digest: TxDigest {
            writes: i as u32,
            effects: !(i as u32),
        },
        status: ExecStatus::Ok,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let h = Host(Instant::now());
            for i in 1..=iters {
                let p = wait_until(SPIN, &h, &h, None, || pair.leader.read(i)).unwrap();
                pair.follower.post(i, p);
            }
        });
        let h = Host(Instant::now());
        let t = Instant::now();
        for i in 1..=iters {
            pair.leader.post(i, post(i));
            let back = wait_until(SPIN, &h, &h, None, || pair.follower.read(i)).unwrap();
            black_box(back);
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    })
}

fn local_tx(lockstep: bool, n: u64) -> f64 {
    let cfg = Config {
        lockstep,
        ..Config::default()
    };
    let mut e = Engine::<Model>::new(cfg, ModelState::new(), ModelState::new()).unwrap();
    let clk = Host(Instant::now());
    let mut p = Prng::new(1);
    let reqs: Vec<[u64; 3]> = (0..n).map(|_| random_request(&mut p)).collect();
    let t = Instant::now();
    for (i, r) in reqs.iter().enumerate() {
        let out = e.run_local(
            r,
            &mut ModelEnv::new(1, i as u64),
            &clk,
            &mut |x: &[Effect]| {
                black_box(x);
            },
        );
        black_box(out);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn threaded_tx(n: u64) -> f64 {
    let pair = Pair::new(1024);
    let cfg = Config {
        wait: SPIN,
        deadline_cycles: 1_000_000_000,
        ..Config::default()
    };
    let mut p = Prng::new(1);
    let reqs: Vec<[u64; 3]> = (0..n).map(|_| random_request(&mut p)).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let h = Host(Instant::now());
            FollowerCore::<Model>::new(&pair, cfg, ModelState::new(), 0).follower_serve(&h, &h);
        });
        let h = Host(Instant::now());
        let mut l = LeaderCore::<Model>::new(&pair, cfg, ModelState::new(), true);
        let t = Instant::now();
        for (i, r) in reqs.iter().enumerate() {
            let out = l.leader_run(
                r,
                &mut ModelEnv::new(1, i as u64),
                &h,
                &h,
                &mut |x: &[Effect]| {
                    black_box(x);
                },
            );
            black_box(out);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        pair.shut_down();
        ns
    })
}

fn digest_ns_per_kib(kib: usize, reps: u32) -> f64 {
    let buf: Vec<u8> = (0..kib * 1024).map(|i| (i * 131) as u8).collect();
    let t = Instant::now();
    let mut acc = 0u32;
    for _ in 0..reps {
        acc ^= crc32c(black_box(&buf));
    }
    black_box(acc);
    t.elapsed().as_nanos() as f64 / (kib as f64 * reps as f64)
}

fn copy_ns_per_kib(kib: usize, reps: u32) -> f64 {
    let src: Vec<u8> = (0..kib * 1024).map(|i| i as u8).collect();
    let mut dst = vec![0u8; src.len()];
    let t = Instant::now();
    for _ in 0..reps {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    }
    t.elapsed().as_nanos() as f64 / (kib as f64 * reps as f64)
}

fn main() {
    let iters: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    // Warm up both threads' paths once, then measure interleaved runs and keep the best.
    raw_ping_pong(iters / 10);
    mailbox_round_trip(iters / 10);
    let mut raw = f64::MAX;
    let mut mb = f64::MAX;
    for _ in 0..3 {
        raw = raw.min(raw_ping_pong(iters));
        mb = mb.min(mailbox_round_trip(iters));
    }
    println!("mailbox round trip      {mb:8.1} ns   raw cache-line ping-pong {raw:8.1} ns   ratio {:.2} (target <= 1.5)", mb / raw);

    let n = iters / 4;
    let mut on = f64::MAX;
    let mut off = f64::MAX;
    for _ in 0..3 {
        off = off.min(local_tx(false, n));
        on = on.min(local_tx(true, n));
    }
    println!(
        "transaction, one core   on {on:8.1} ns   off {off:8.1} ns   ratio {:.2}",
        on / off
    );
    let mut two = f64::MAX;
    for _ in 0..3 {
        two = two.min(threaded_tx(n / 4));
    }
    println!(
        "transaction, two cores  on {two:8.1} ns   off {off:8.1} ns   ratio {:.2}",
        two / off
    );

    let d = digest_ns_per_kib(64, 2000);
    let c = copy_ns_per_kib(64, 2000);
    println!(
        "digest CRC-32C          {d:8.1} ns/KiB ({:.2} GB/s)   memcpy {c:6.1} ns/KiB   ratio {:.1}",
        1024.0 / d,
        d / c
    );
}
