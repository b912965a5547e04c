//! Foreign mappings for a toolstack: another domain's frames mapped into a window of this
//! guest's address space with `mmu_update(MMU_NORMAL_PT_UPDATE, FOREIGNDOM = domid)` on the
//! window's own L1 entries (as Linux's privcmd does), and mapped back to this domain's own
//! frames when released.
//!
//! The window is [`WINDOW_PAGES`] pages in the start-of-day padding after the boot stack
//! (320 KiB in, past [`crate::pvmm::Scratch`]'s page), found through the start_info
//! recorded at boot.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::errno::{Errno, XenResult};
use crate::mm::{mmu_update, pte, MmuUpdate, DOMID_SELF};
use crate::start_info::StartInfo;

/// Pages in the window (mapped at once at most).
pub const WINDOW_PAGES: u32 = 16;
/// Offset of the window from the end of the boot stack.
pub const WINDOW_OFFSET: u64 = 0x50000;

/// Bitmap of window slots in use.
static USED: AtomicU32 = AtomicU32::new(0);

/// Virtual address of window slot `slot`.
fn slot_va(si: &StartInfo, slot: u32) -> u64 {
    let stack_end = si.pt_base + (si.nr_pt_frames + 1) * 4096;
    stack_end + WINDOW_OFFSET + u64::from(slot) * 4096
}

/// A frame of another domain, mapped read-write in a window slot until dropped.
pub struct Mapping {
    slot: u32,
    va: u64,
    l1e: u64,
    home: u64,
    mfn: u64,
}

/// Points the L1 entry at `l1e` to `mfn` of `owner` (flags `P|RW|A|D`, or 0 to clear).
fn set_l1e(l1e: u64, mfn: u64, owner: u16, va: u64) -> XenResult {
    let val = (mfn << 12) | pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
    let req = MmuUpdate { ptr: l1e, val };
    // SAFETY: `l1e` is the L1 entry of a window page (from `pvmm::l1e_maddr`), which holds no
    // Rust object; every access to the page goes through a `Mapping`, and the slot bitmap
    // gives each page to one `Mapping` at a time.
    let (r, _) = unsafe { mmu_update(&[req], owner) };
    let _ = crate::mm::invlpg_local(va);
    r
}

impl Mapping {
    /// Maps frame `mfn` of domain `domid` read-write into a free window slot.
    pub fn new(domid: u16, mfn: u64) -> Result<Mapping, Errno> {
        let si = crate::start_info::boot().ok_or(Errno::EINVAL)?;
        if domid == DOMID_SELF || mfn >= 1 << 40 {
            return Err(Errno::EINVAL);
        }
        let slot = loop {
            let used = USED.load(Ordering::SeqCst);
            let free = !used & ((1u64 << WINDOW_PAGES) - 1) as u32;
            if free == 0 {
                return Err(Errno::EBUSY);
            }
            let s = free.trailing_zeros();
            if USED
                .compare_exchange(used, used | 1 << s, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break s;
            }
        };
        let release = |e| {
            USED.fetch_and(!(1 << slot), Ordering::SeqCst);
            Err(e)
        };
        let va = slot_va(si, slot);
        let (Some(l1e), Some(home)) = (
            crate::pvmm::l1e_maddr(si, va),
            crate::smp::virt_to_mfn(si, va),
        ) else {
            return release(Errno::EFAULT);
        };
        if let Err(e) = set_l1e(l1e, mfn, domid, va) {
            return release(e);
        }
        Ok(Mapping {
            slot,
            va,
            l1e,
            home,
            mfn,
        })
    }

    /// The foreign frame.
    pub fn mfn(&self) -> u64 {
        self.mfn
    }

    /// Its contents.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the slot's page maps the foreign frame read-write for the life of `self`;
        // the borrow of `self` keeps the mapping alive and the slot exclusive.
        unsafe { core::slice::from_raw_parts(self.va as *const u8, 4096) }
    }

    /// Its contents, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes the access exclusive on this side.
        unsafe { core::slice::from_raw_parts_mut(self.va as *mut u8, 4096) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Map the window page's own frame back (its start-of-day mapping).
        let _ = set_l1e(self.l1e, self.home, DOMID_SELF, self.va);
        USED.fetch_and(!(1 << self.slot), Ordering::SeqCst);
    }
}

// The padding is at least 512 KiB; the scratch page sits 256 KiB in.
const _: () = assert!(WINDOW_OFFSET > 0x40000);
const _: () = assert!(WINDOW_OFFSET + WINDOW_PAGES as u64 * 4096 <= 512 * 1024);
