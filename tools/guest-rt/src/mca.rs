//! `HYPERVISOR_mca` (`public/arch-x86/xen-mca.h`): the machine-check telemetry a dom0 reads
//! (`XEN_MC_fetch`) and the physical CPUs it is reported for (`XEN_MC_physcpuinfo`).

use crate::hypercall;
use crate::XenResult;
pub use dom0_interface::guest_abi::{cstr_bytes, GuestAbi};
pub use dom0_interface::xen_mca::*;

/// A `struct xen_mc` with `cmd`, `interface_version` and the union's first bytes `u`.
pub fn op(cmd: u32, version: u32, u: &[u8]) -> [u8; XEN_MC_SIZE] {
    let mut b = [0u8; XEN_MC_SIZE];
    b[0..4].copy_from_slice(&cmd.to_le_bytes());
    b[4..8].copy_from_slice(&version.to_le_bytes());
    let n = u.len().min(XEN_MC_SIZE - XEN_MC_U);
    b[XEN_MC_U..XEN_MC_U + n].copy_from_slice(&u[..n]);
    b
}

/// `HYPERVISOR_mca(op)`: Xen reads and may write back the whole `struct xen_mc`.
pub fn call(op: &mut [u8; XEN_MC_SIZE]) -> XenResult {
    // SAFETY: `op` is a whole `struct xen_mc` Xen reads and writes in place; the handles in
    // its union are the caller's (buffers it owns for as long as the call runs).
    unsafe { hypercall::call(HYPERVISOR_MCA, [op.as_mut_ptr() as u64, 0, 0, 0, 0]) }
}

/// `XEN_MC_physcpuinfo` into `cpus` (an empty slice only counts): the count Xen reports.
pub fn physcpuinfo(cpus: &mut [McLogicalCpu]) -> Result<u32, crate::errno::Errno> {
    let mut raw = [0u8; 304 * 8];
    let room = cpus.len().min(8);
    let q = XenMcPhyscpuinfo {
        ncpus: room as u32,
        pad0: 0,
        info: if room == 0 {
            0
        } else {
            raw.as_mut_ptr() as u64
        },
    };
    let mut u = [0u8; 16];
    let _ = q.write_to(&mut u);
    let mut b = op(XEN_MC_PHYSCPUINFO, XEN_MCA_INTERFACE_VERSION, &u);
    call(&mut b)?;
    let back = XenMcPhyscpuinfo::read_from(&b[XEN_MC_U..]).unwrap_or_default();
    for (i, c) in cpus.iter_mut().take(room).enumerate() {
        if let Ok(v) = McLogicalCpu::read_from(&raw[i * 304..]) {
            *c = v;
        }
    }
    Ok(back.ncpus)
}
