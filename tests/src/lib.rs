//! QEMU integration harness for DualVisor: command builder, serial log capture with a
//! timeout, marker matching, isa-debug-exit decoding and the scenario catalogue.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod cli;
pub mod console_scenarios;
pub mod dom0;
pub mod dom0_spare;
pub mod execute;
pub mod exit;
pub mod linux_dom0;
pub mod lockstep_off;
pub mod monitor;
pub mod oracle;
pub mod pattern;
pub mod qemu;
pub mod recovery;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod script;
pub mod selftests;
pub mod two_pairs;
pub mod watch;
