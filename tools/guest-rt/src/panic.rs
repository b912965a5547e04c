//! Panic reporting for guests: the message, `Test result: ERROR`, then a crash shutdown.

use core::panic::PanicInfo;

/// Reports a panic and crashes the domain; the `entry!` macro's `#[panic_handler]` calls this.
pub fn report(info: &PanicInfo<'_>) -> ! {
    crate::test::error(format_args!("panic: {}", info))
}
