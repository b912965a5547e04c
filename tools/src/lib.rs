//! dom0 tooling: the `xl` control tool logic, the xl.cfg parser and the domain builder.
//!
//! Everything here is portable and host-tested; the dom0 kernel feeds it hypercall results
//! and prints what it returns:
//! - [`xlcfg`]: xl.cfg files into a typed [`xlcfg::DomainConfig`];
//! - [`cmd`]: `xl` command lines into a [`cmd::Command`], with xl's usage errors;
//! - [`format`]: xl's output formats (`list`, `info`, `vcpu-list`, `uptime`, ...), plus
//!   DualVisor's `xl lockstep status`;
//! - [`builder_plan`]: the domain-build steps as a state machine that rolls back every
//!   completed step on failure;
//! - [`cpio`]: the dom0 initrd archive; [`shell`]: the dom0 shell's line editing and commands;
//!   [`console_log`]: domU console rings and output logs; [`lifecycle`]: `on_*` reactions.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod builder_plan;
pub mod cmd;
pub mod console_log;
pub mod cpio;
pub mod format;
pub mod lifecycle;
pub mod shell;
pub mod xlcfg;
