//! `console`: the serial console seen from dom0. CONSOLEIO_read's error cases, the
//! hypervisor's console ring through XEN_SYSCTL_readconsole (incremental reads, errors), and
//! two lines typed at the serial port by the test runner, read with CONSOLEIO_read when
//! VIRQ_CONSOLE fires and echoed back. Runs as dom0 on Xen 4.17 and on DualVisor.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::hypercall::{self, BadPtr, CONSOLE_IO};
use guest_rt::readconsole::{self, ReadRequest};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{console, evtchn, print, println, sched, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// `VIRQ_CONSOLE`: bytes received on the hypervisor's serial console.
const VIRQ_CONSOLE: u32 = 2;
/// The first line the runner types.
pub const FIRST_LINE: &str = "hello dualvisor 42";
/// The second line the runner types.
pub const SECOND_LINE: &str = "still typing after the keys";
/// How long to wait for a typed line.
const LINE_WAIT_NS: u64 = 150_000_000_000;
/// What Xen 4.17 prints when serial input goes to dom0 (also at the end of boot).
const TO_DOM0: &str = "(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)";

fn main(si: &StartInfo) {
    println!("console: DualVisor PV test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    read_errors();
    console_ring();
    let port = match evtchn::bind_virq(VIRQ_CONSOLE, 0) {
        Ok(p) => p,
        Err(e) => guest_rt::test::error(format_args!("bind_virq(VIRQ_CONSOLE) failed: {}", e)),
    };
    info(format_args!("VIRQ_CONSOLE bound to port {}", port));

    print!("console: type a line> ");
    let mut buf = [0u8; 128];
    if let Some(line) = read_line(&shared, port, &mut buf, false) {
        println!("console: you typed '{}'", line);
        check_eq("first line read through CONSOLEIO_read", line, FIRST_LINE);
    }
    print!("console: type another line> ");
    let mut buf = [0u8; 128];
    if let Some(line) = read_line(&shared, port, &mut buf, true) {
        println!("console: you typed '{}'", line);
        check_eq("second line read through CONSOLEIO_read", line, SECOND_LINE);
    }
    guest_rt::test::finish()
}

/// CONSOLEIO_read's answers that need no input.
fn read_errors() {
    check_eq(
        "CONSOLEIO_read with count > INT_MAX -> -E2BIG",
        hypercall::call_with_count_and_bad_ptr(
            CONSOLE_IO,
            console::CONSOLEIO_READ,
            0x8000_0000,
            BadPtr::NULL,
        ),
        Err(Errno::E2BIG),
    );
    check_eq(
        "CONSOLEIO_read with nothing typed and a bad buffer -> 0",
        hypercall::call_with_count_and_bad_ptr(
            CONSOLE_IO,
            console::CONSOLEIO_READ,
            16,
            BadPtr::NULL,
        ),
        Ok(0),
    );
    let mut b = [0u8; 8];
    check_eq(
        "CONSOLEIO_read with nothing typed -> 0",
        console::read(&mut b),
        Ok(0),
    );
    check_eq(
        "console_io with an unknown command -> -ENOSYS",
        hypercall::call_with_count_and_bad_ptr(CONSOLE_IO, 2, 0, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
}

/// What the lines of the console ring looked like.
struct RingScan {
    lines: u32,
    prefixed: u32,
    serial_to_dom0: bool,
    dom0_layout: bool,
    our_output: bool,
    line: [u8; 160],
    len: usize,
}

impl RingScan {
    fn new() -> Self {
        RingScan {
            lines: 0,
            prefixed: 0,
            serial_to_dom0: false,
            dom0_layout: false,
            our_output: false,
            line: [0; 160],
            len: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b != b'\n' {
                if self.len < self.line.len() {
                    self.line[self.len] = b;
                    self.len += 1;
                }
                continue;
            }
            let line = core::str::from_utf8(&self.line[..self.len]).unwrap_or("");
            self.lines += 1;
            self.prefixed += u32::from(line.starts_with("(XEN) "));
            self.serial_to_dom0 |= line == TO_DOM0;
            self.dom0_layout |= line == "(XEN) VIRTUAL MEMORY ARRANGEMENT:";
            self.our_output |= line.contains("console: DualVisor PV test guest");
            self.len = 0;
        }
    }
}

/// XEN_SYSCTL_readconsole: the ring holds the hypervisor's boot lines, read in pieces.
fn console_ring() {
    check_eq(
        "readconsole with another interface version -> -EACCES",
        readconsole::read_with_version(readconsole::XEN_SYSCTL_INTERFACE_VERSION - 1),
        Err(Errno::EACCES),
    );
    check_eq(
        "readconsole into a bad buffer -> -EFAULT",
        readconsole::read_bad_buffer(ReadRequest::default(), BadPtr::NULL, 64),
        Err(Errno::EFAULT),
    );
    let mut buf = [0u8; 512];
    let mut scan = RingScan::new();
    let first = match readconsole::read(ReadRequest::default(), &mut buf[..64]) {
        Ok(r) => r,
        Err(e) => {
            check_eq("readconsole(64 bytes)", Err(e), Ok(()));
            return;
        }
    };
    check_eq("readconsole fills a 64-byte buffer", first.count, 64);
    scan.feed(&buf[..64]);
    let mut index = first.index;
    let mut total = u64::from(first.count);
    let mut rounds = 0;
    loop {
        let req = ReadRequest {
            incremental: true,
            index,
            ..Default::default()
        };
        match readconsole::read(req, &mut buf) {
            Ok(r) if r.count == 0 => {
                check_eq("an empty incremental read keeps the index", r.index, index);
                break;
            }
            Ok(r) => {
                check(
                    "an incremental read advances the index by its count",
                    r.index == index.wrapping_add(r.count),
                );
                scan.feed(&buf[..r.count as usize]);
                index = r.index;
                total += u64::from(r.count);
            }
            Err(e) => {
                check_eq("incremental readconsole", Err(e), Ok(()));
                return;
            }
        }
        rounds += 1;
        if rounds > 1000 {
            check("incremental reads come to an end", false);
            return;
        }
    }
    info(format_args!(
        "console ring: {} bytes, {} lines, {} with the (XEN) prefix",
        total, scan.lines, scan.prefixed
    ));
    check("the console ring holds over 10 lines", scan.lines > 10);
    check(
        "every line of the console ring but the first has the (XEN) prefix",
        scan.prefixed + 1 >= scan.lines,
    );
    check(
        "the console ring holds the dom0 build line 'VIRTUAL MEMORY ARRANGEMENT:'",
        scan.dom0_layout,
    );
    check(
        "the console ring says serial input goes to DOM0",
        scan.serial_to_dom0,
    );
    check(
        "dom0's own console_io output is not in the ring",
        !scan.our_output,
    );
}

/// Reads one line (up to CR or LF) typed at the serial port, waiting on VIRQ_CONSOLE.
/// With `probe_fault`, first waits until input is there (a read into a bad buffer answers 0
/// while nothing is) and checks that such a read then fails with -EFAULT and leaves the
/// input in place.
fn read_line<'a>(
    shared: &SharedInfo,
    port: u32,
    buf: &'a mut [u8; 128],
    probe_fault: bool,
) -> Option<&'a str> {
    let start = shared.system_time_now(0).unwrap_or(0);
    let timed_out = || {
        let now = shared.system_time_now(0).unwrap_or(0);
        if now.saturating_sub(start) > LINE_WAIT_NS {
            check("a line was typed in time", false);
            return None;
        }
        Some(now)
    };
    if probe_fault {
        // A notification may be left over from the previous line (its CR and LF can come
        // in two interrupts): a bad-buffer read with nothing waiting answers 0, so keep
        // waiting until one finds input.
        let probe = || {
            hypercall::call_with_count_and_bad_ptr(
                CONSOLE_IO,
                console::CONSOLEIO_READ,
                4,
                BadPtr::NULL,
            )
        };
        let mut got = probe();
        while got == Ok(0) {
            let now = timed_out()?;
            shared.clear_evtchn_pending(port);
            let _ = sched::poll(&[port], now + 1_000_000_000);
            got = probe();
        }
        check_eq(
            "CONSOLEIO_read into a bad buffer with input waiting -> -EFAULT",
            got,
            Err(Errno::EFAULT),
        );
    }
    let mut len = 0usize;
    loop {
        shared.clear_evtchn_pending(port);
        match console::read(&mut buf[len..]) {
            Ok(n) => len += n as usize,
            Err(e) => {
                check_eq("CONSOLEIO_read", Err(e), Ok(0));
                return None;
            }
        }
        if let Some(end) = buf[..len].iter().position(|&b| b == b'\r' || b == b'\n') {
            println!("");
            return match core::str::from_utf8(&buf[..end]) {
                Ok(s) => Some(s),
                Err(_) => {
                    check("the typed line is UTF-8", false);
                    None
                }
            };
        }
        if len == buf.len() {
            check("a typed line fits 128 bytes", false);
            return None;
        }
        let now = timed_out()?;
        let _ = sched::poll(&[port], now + 1_000_000_000);
    }
}
