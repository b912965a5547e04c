//! The tiny PV domU the toolstack test guests (`domrun`, `dompause`) build through foreign
//! mappings: six pages, the page tables mapping the code page at 0x400000 (read-only) and the
//! data page at 0x401000 (writable), and the domctls they use on it.

use guest_rt::mm::pte;
use guest_rt::pvmm::Scratch;
use guest_rt::xenctl::ops::DOMCTL_GETDOMAININFO;
use guest_rt::xenctl::{domctl, CtlBuf, DOMCTL_U};
use guest_rt::{Errno, XenResult};

/// The domU's pages: pfn of each.
pub const PFN_L4: usize = 0;
/// The L3 table.
pub const PFN_L3: usize = 1;
/// The L2 table.
pub const PFN_L2: usize = 2;
/// The L1 table.
pub const PFN_L1: usize = 3;
/// The code page (virtual 0x400000).
pub const PFN_CODE: usize = 4;
/// The data (and stack) page (virtual 0x401000).
pub const PFN_DATA: usize = 5;
/// Pages of the domU.
pub const PAGES: usize = 6;

/// A domctl `cmd` on `dom` without payload.
pub fn simple(cmd: u32, dom: u16) -> XenResult {
    domctl(&mut CtlBuf::domctl(cmd, dom))
}

/// `dom`'s `XEN_DOMINF_*` flags (getdomaininfo; -ESRCH if it answers another domain).
pub fn flags(dom: u16) -> Result<u32, Errno> {
    let mut op = CtlBuf::domctl(DOMCTL_GETDOMAININFO, dom);
    domctl(&mut op)?;
    if op.u16(DOMCTL_U) != dom {
        return Err(Errno::ESRCH);
    }
    Ok(op.u32(DOMCTL_U + 4))
}

/// Writes `words` (index, value) into frame `mfn` of `dom`, the rest zero.
pub fn write_frame(s: &mut Scratch, dom: u16, mfn: u64, words: &[(usize, u64)]) -> XenResult {
    s.map_foreign(
        dom,
        mfn,
        pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY,
    )?;
    let mut ok = s.fill(0);
    for &(i, v) in words {
        ok &= s.write(i, v);
    }
    s.restore()?;
    if ok {
        Ok(0)
    } else {
        Err(Errno::EFAULT)
    }
}

/// Writes the domU's page tables into its frames `m` (by pfn).
pub fn write_tables(s: &mut Scratch, dom: u16, m: &[u64; PAGES]) -> XenResult {
    let table = pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED;
    write_frame(s, dom, m[PFN_L4], &[(0, (m[PFN_L3] << 12) | table)])?;
    write_frame(s, dom, m[PFN_L3], &[(0, (m[PFN_L2] << 12) | table)])?;
    write_frame(s, dom, m[PFN_L2], &[(2, (m[PFN_L1] << 12) | table)])?;
    let code = (m[PFN_CODE] << 12) | pte::PRESENT | pte::USER | pte::ACCESSED;
    let data =
        (m[PFN_DATA] << 12) | pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED | pte::DIRTY;
    write_frame(s, dom, m[PFN_L1], &[(0, code), (1, data)])
}
