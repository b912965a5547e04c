//! The hypervisor console: COM1 output behind one lock, and the `log` backend that prefixes
//! every line with `(XEN) ` as Xen does, so existing log tooling reads it. Every line also
//! goes to the console ring (`crate::conring`) that `xl dmesg` reads.

use crate::serial::{Uart, UartConfig};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

static COM1: Mutex<Uart> = Mutex::new(Uart::new(0x3F8));
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Programs COM1 with the given line settings.
pub fn init(cfg: UartConfig) {
    crate::cpu::without_interrupts(|| COM1.lock().init(cfg));
}

struct LineWriter<'a> {
    uart: &'a Uart,
    at_line_start: bool,
}

impl Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let panicking = PANICKING.load(Ordering::Relaxed);
        for &b in s.as_bytes() {
            if self.at_line_start {
                self.uart.write_bytes(b"(XEN) ");
                crate::conring::record(b"(XEN) ", panicking);
                self.at_line_start = false;
            }
            self.uart.write_bytes(&[b]);
            crate::conring::record(&[b], panicking);
            if b == b'\n' {
                self.at_line_start = true;
            }
        }
        Ok(())
    }
}

/// Prints formatted text as complete `(XEN) `-prefixed lines, atomically with respect to
/// other CPUs. A trailing newline is added if missing.
pub fn print_lines(args: fmt::Arguments) {
    crate::cpu::without_interrupts(|| {
        let guard;
        let forced;
        let uart: &Uart = if PANICKING.load(Ordering::Relaxed) {
            // A CPU that died holding the lock must not silence the crash report: after a
            // bounded wait, write without it.
            match try_lock_bounded() {
                Some(g) => {
                    guard = g;
                    &guard
                }
                None => {
                    forced = Uart::new(0x3F8);
                    &forced
                }
            }
        } else {
            guard = COM1.lock();
            &guard
        };
        let mut w = LineWriter {
            uart,
            at_line_start: true,
        };
        let _ = w.write_fmt(args);
        if !w.at_line_start {
            uart.write_bytes(b"\n");
            crate::conring::record(b"\n", PANICKING.load(Ordering::Relaxed));
        }
    });
}

fn try_lock_bounded() -> Option<spin::MutexGuard<'static, Uart>> {
    for _ in 0..10_000_000u32 {
        if let Some(g) = COM1.try_lock() {
            return Some(g);
        }
        core::hint::spin_loop();
    }
    None
}

/// Writes raw bytes (no prefix) to COM1, e.g. a guest's console output.
pub fn write_raw(bytes: &[u8]) {
    crate::cpu::without_interrupts(|| COM1.lock().write_bytes(bytes));
}

/// Reads one byte of console input, if any.
pub fn try_read() -> Option<u8> {
    crate::cpu::without_interrupts(|| COM1.lock().try_read_byte())
}

/// Marks the system as crashing: console output no longer waits for a lock held by a dead CPU.
pub fn set_panicking() {
    PANICKING.store(true, Ordering::Relaxed);
}

struct XenLogger;

impl log::Log for XenLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            print_lines(*record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: XenLogger = XenLogger;

/// Installs the `(XEN) ` logger with the given level filter.
pub fn init_logger(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// `println!`-style output to the hypervisor console, each line prefixed `(XEN) `.
#[macro_export]
macro_rules! xprintln {
    ($($arg:tt)*) => { $crate::console::print_lines(format_args!($($arg)*)) };
}
