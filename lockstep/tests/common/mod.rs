//! What the threaded lockstep tests share: the host's clock and idle for the cores (threads),
//! and the configuration they start from.

use lockstep::config::Config;
use lockstep::engine::Engine;
use lockstep::model::{Model, ModelState};
use lockstep::role::{Clock, Idle, WaitStrategy};
use std::time::Instant;

/// A core's clock (nanoseconds since the test started it) and idle (yield the thread).
pub struct Host(pub Instant);

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

/// Lockstep with a 300 ms deadline (generous on a loaded 2-core host), `spins` polls before
/// idling, two retries and a scrub after every commit (each core corrects single-bit upsets
/// in its own replica, so a latent flip cannot pile up with the next injection).
pub fn cfg(spins: u32) -> Config {
    Config {
        deadline_cycles: 300_000_000,
        wait: WaitStrategy { spins },
        max_retries: 2,
        scrub_interval: 1,
        ..Config::default()
    }
}

/// An engine over two fresh model replicas with lockstep off (`base` otherwise): the single
/// execution the threaded runs are compared with.
pub fn single_engine(base: Config) -> Engine<Model> {
    Engine::new(
        Config {
            lockstep: false,
            ..base
        },
        ModelState::new(),
        ModelState::new(),
    )
    .expect("two fresh replicas are equal")
}
