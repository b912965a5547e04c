//! dom0 tooling: the `xl` control tool logic, the xl.cfg parser and the domain builder.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
