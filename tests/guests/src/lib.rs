//! Test guests: PV kernels that run checks and print one `Test result:` line.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
