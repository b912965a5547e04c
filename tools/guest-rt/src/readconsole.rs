//! `XEN_SYSCTL_readconsole` (`public/sysctl.h`): a privileged guest reads the hypervisor's
//! console ring, as `xl dmesg` does.

use crate::errno::Errno;
use crate::hypercall::{self, BadPtr, SYSCTL};

pub use dom0_interface::sysctl::{XEN_SYSCTL_INTERFACE_VERSION, XEN_SYSCTL_READCONSOLE};

/// `struct xen_sysctl` with the `readconsole` member of its union (padded to 128 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Sysctl {
    cmd: u32,
    interface_version: u32,
    clear: u8,
    incremental: u8,
    pad0: u8,
    pad1: u8,
    index: u32,
    buffer: u64,
    count: u32,
    pad: [u8; 108],
}
const _: () = assert!(core::mem::size_of::<Sysctl>() == 136);

/// What to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// Clear the ring up to what was read.
    pub clear: bool,
    /// Start at `index` (when it lies in the ring's valid window).
    pub incremental: bool,
    /// Start index for an incremental read.
    pub index: u32,
}

/// The answer: bytes written into the buffer and the index after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Bytes copied.
    pub count: u32,
    /// Index after the last byte copied.
    pub index: u32,
}

fn call(op: &mut Sysctl) -> Result<ReadResult, Errno> {
    // SAFETY: Xen reads and writes `struct xen_sysctl` at `op` (136 bytes, exclusively ours)
    // and writes at most `op.count` bytes at `op.buffer`, which the callers set to a valid,
    // exclusive buffer of that size, or to a `BadPtr` Xen cannot access.
    let r = unsafe { hypercall::call(SYSCTL, [op as *mut Sysctl as u64, 0, 0, 0, 0]) };
    r.map(|_| ReadResult {
        count: op.count,
        index: op.index,
    })
}

fn request(req: ReadRequest, version: u32, buffer: u64, count: u32) -> Sysctl {
    Sysctl {
        cmd: XEN_SYSCTL_READCONSOLE,
        interface_version: version,
        clear: u8::from(req.clear),
        incremental: u8::from(req.incremental),
        pad0: 0,
        pad1: 0,
        index: req.index,
        buffer,
        count,
        pad: [0; 108],
    }
}

/// Reads the console ring into `buf`.
pub fn read(req: ReadRequest, buf: &mut [u8]) -> Result<ReadResult, Errno> {
    let count = u32::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
    let mut op = request(
        req,
        XEN_SYSCTL_INTERFACE_VERSION,
        buf.as_mut_ptr() as u64,
        count,
    );
    call(&mut op)
}

/// Reads into a buffer Xen cannot access (`-EFAULT` expected when the ring has content).
pub fn read_bad_buffer(req: ReadRequest, ptr: BadPtr, count: u32) -> Result<ReadResult, Errno> {
    let mut op = request(req, XEN_SYSCTL_INTERFACE_VERSION, ptr.addr(), count);
    call(&mut op)
}

/// A read with another interface version (`-EACCES` expected); the buffer is a `BadPtr`.
pub fn read_with_version(version: u32) -> Result<ReadResult, Errno> {
    let mut op = request(ReadRequest::default(), version, BadPtr::NULL.addr(), 16);
    call(&mut op)
}
