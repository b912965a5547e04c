//! Output to the serial console through `CONSOLEIO_write` (the hypervisor turns `\n` into
//! `\r\n` on the serial line). xl's stdout and stderr both go here.

use core::fmt;

/// Writes formatted text.
pub fn say(args: fmt::Arguments<'_>) {
    guest_rt::console::print_fmt(args);
}

/// Writes text as it is.
pub fn text(s: &str) {
    bytes(s.as_bytes());
}

/// Writes bytes as they are, in chunks the hypercall accepts.
pub fn bytes(b: &[u8]) {
    for chunk in b.chunks(1024) {
        // Console output is best effort: there is nowhere else to report a failure.
        let _ = guest_rt::console::write(chunk);
    }
}
