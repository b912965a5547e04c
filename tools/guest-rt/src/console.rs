//! Console output over `console_io(CONSOLEIO_write)` (`public/xen.h`), and the formatting
//! buffer behind `print!`/`println!`.

use core::fmt;

use crate::errno::XenResult;
use crate::hypercall::{self, CONSOLE_IO};

/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u64 = 0;
/// `CONSOLEIO_read`.
pub const CONSOLEIO_READ: u64 = 1;

/// Writes `bytes` to the Xen console; returns what Xen answered (0 on success).
pub fn write(bytes: &[u8]) -> XenResult {
    // SAFETY: Xen only reads `bytes.len()` bytes from `bytes`, which is a valid slice.
    unsafe {
        hypercall::call(
            CONSOLE_IO,
            [
                CONSOLEIO_WRITE,
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        )
    }
}

/// Reads pending console input into `buf` (dom0 only); returns the number of bytes read.
pub fn read(buf: &mut [u8]) -> XenResult {
    // SAFETY: Xen writes at most `buf.len()` bytes into `buf`, which is a valid, exclusive slice.
    unsafe {
        hypercall::call(
            CONSOLE_IO,
            [
                CONSOLEIO_READ,
                buf.len() as u64,
                buf.as_mut_ptr() as u64,
                0,
                0,
            ],
        )
    }
}

/// A fixed-capacity byte buffer implementing [`fmt::Write`]; when full it hands its contents
/// to a sink and starts over, so arbitrarily long output goes through in chunks.
pub struct ChunkWriter<F: FnMut(&[u8]), const N: usize> {
    buf: [u8; N],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8]), const N: usize> ChunkWriter<F, N> {
    /// An empty writer that flushes into `sink`.
    pub fn new(sink: F) -> Self {
        ChunkWriter {
            buf: [0; N],
            len: 0,
            sink,
        }
    }

    /// Hands buffered bytes to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8]), const N: usize> fmt::Write for ChunkWriter<F, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            if self.len == N {
                self.flush();
            }
            let take = rest.len().min(N - self.len);
            self.buf[self.len..self.len + take].copy_from_slice(&rest[..take]);
            self.len += take;
            rest = &rest[take..];
        }
        Ok(())
    }
}

impl<F: FnMut(&[u8]), const N: usize> Drop for ChunkWriter<F, N> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Formats `args` onto the console in chunks of up to 256 bytes (used by `print!`): the
/// console ring once attached (a domU, see [`crate::ring_console`]), else `console_io`.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let mut w = ChunkWriter::<_, 256>::new(|chunk: &[u8]| {
        if !crate::ring_console::write(chunk) {
            // Console output is best effort: there is nowhere else to report a failure.
            let _ = write(chunk);
        }
    });
    let _ = fmt::Write::write_fmt(&mut w, args);
}

/// Prints to the Xen console (`console_io` write).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the Xen console (`console_io` write).
#[macro_export]
macro_rules! println {
    () => { $crate::console::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;
    use std::vec::Vec;

    #[test]
    fn chunks_are_bounded_and_complete() {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        {
            let mut w = ChunkWriter::<_, 4>::new(|c: &[u8]| chunks.push(c.to_vec()));
            write!(w, "hello {}", 12345).unwrap();
        }
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 4));
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(joined, b"hello 12345");
        assert_eq!(chunks.len(), 3);
    }

    #[test]
    fn nothing_written_means_no_chunk() {
        let mut n = 0;
        {
            let mut w = ChunkWriter::<_, 8>::new(|_: &[u8]| n += 1);
            w.flush();
        }
        assert_eq!(n, 0);
    }
}
