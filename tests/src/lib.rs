//! QEMU integration harness for DualVisor.
#![forbid(unsafe_code)]
