//! 16550 UART driver for the serial console (COM1 at 0x3F8 by default).

use crate::cpu::{inb, outb};

/// A 16550-compatible UART at an I/O base.
pub struct Uart {
    base: u16,
}

/// Line settings for a UART, as given by Xen's `com1=<baud>,<data><parity><stop>`.
#[derive(Clone, Copy, Debug)]
pub struct UartConfig {
    /// Baud rate; 0 keeps what the firmware programmed.
    pub baud: u32,
    /// Data bits (5–8).
    pub data_bits: u8,
    /// Parity: b'n', b'o', b'e', b'm', b's'.
    pub parity: u8,
    /// Stop bits (1 or 2).
    pub stop_bits: u8,
}

impl Default for UartConfig {
    fn default() -> Self {
        UartConfig {
            baud: 115_200,
            data_bits: 8,
            parity: b'n',
            stop_bits: 1,
        }
    }
}

impl Uart {
    /// A UART at I/O port `base`; nothing is programmed until [`Uart::init`].
    pub const fn new(base: u16) -> Self {
        Uart { base }
    }

    /// Programs line settings and enables the FIFO; interrupts stay off (polled output)
    /// until [`Uart::enable_rx_interrupt`].
    pub fn init(&self, cfg: UartConfig) {
        let b = self.base;
        outb(b + 1, 0x00); // no interrupts
        if cfg.baud != 0 {
            let divisor = (115_200 / cfg.baud.clamp(1, 115_200)).max(1) as u16;
            outb(b + 3, 0x80); // DLAB
            outb(b, divisor as u8);
            outb(b + 1, (divisor >> 8) as u8);
        }
        let data = match cfg.data_bits {
            5 => 0,
            6 => 1,
            7 => 2,
            _ => 3,
        };
        let stop = if cfg.stop_bits == 2 { 1 << 2 } else { 0 };
        let parity = match cfg.parity {
            b'o' => 0b001 << 3,
            b'e' => 0b011 << 3,
            b'm' => 0b101 << 3,
            b's' => 0b111 << 3,
            _ => 0,
        };
        outb(b + 3, data | stop | parity); // DLAB off
        outb(b + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
        outb(b + 4, 0x03); // DTR + RTS
    }

    /// Raises the UART's interrupt when a byte is received (IER bit 0; OUT2 gates the
    /// interrupt line on PC UARTs), with the receive FIFO's trigger at one byte.
    pub fn enable_rx_interrupt(&self) {
        let b = self.base;
        outb(b + 2, 0x07); // FIFO on, cleared, 1-byte trigger
        outb(b + 4, 0x0B); // DTR + RTS + OUT2
        outb(b + 1, 0x01); // received data available
    }

    /// Writes one byte, waiting for the transmitter (bounded: a dead UART never hangs us).
    pub fn write_byte(&self, byte: u8) {
        for _ in 0..100_000 {
            if inb(self.base + 5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        outb(self.base, byte);
    }

    /// Writes bytes, turning `\n` into `\r\n`.
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }

    /// Reads a byte if one is waiting.
    pub fn try_read_byte(&self) -> Option<u8> {
        if inb(self.base + 5) & 0x01 != 0 {
            Some(inb(self.base))
        } else {
            None
        }
    }
}
