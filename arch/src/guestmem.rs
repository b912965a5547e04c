//! Guest memory as the hypervisor touches it: a software walk of a guest's page tables
//! (copy_from_guest / copy_to_guest by guest virtual address), and machine-frame access for
//! the domain builder and validated page-table writes. Only frames the allocator has handed
//! out are ever written.

use crate::layout::phys_to_virt;

const P: u64 = 1;
const W: u64 = 1 << 1;
const PS: u64 = 1 << 7;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
/// The hypervisor's range in every PV guest: never a guest buffer.
const HV_START: u64 = 0xFFFF_8000_0000_0000;
const HV_END: u64 = 0xFFFF_8800_0000_0000;

fn canonical(v: u64) -> bool {
    let top = v >> 47;
    top == 0 || top == 0x1_FFFF
}

/// Whether machine frame `mfn` was handed out by the frame allocator (guest or hypervisor
/// data), i.e. is RAM that is neither free, reserved, the image nor firmware.
pub fn frame_is_allocated(mfn: u64) -> bool {
    let paddr = mfn << 12;
    crate::memory::is_allocated(paddr)
}

fn read_u64(maddr: u64) -> u64 {
    // SAFETY: callers pass 8-byte-aligned addresses of allocated RAM frames (page-table
    // frames reached from a guest root the hypervisor installed), mapped by the direct map.
    unsafe { core::ptr::read_volatile(phys_to_virt(maddr) as *const u64) }
}

/// Translates guest virtual `va` through the tables at `cr3` (machine address of the L4):
/// the machine address and whether the mapping is writable. `None` if not mapped, not
/// canonical, in the hypervisor's range, or if a table frame is not allocated RAM.
pub fn translate(cr3: u64, va: u64) -> Option<(u64, bool)> {
    crate::memory::with_allocated(|allocated| translate_in(allocated, cr3, va))
}

/// [`translate`] with `allocated` telling whether a physical address's frame is allocated.
fn translate_in(allocated: &dyn Fn(u64) -> bool, cr3: u64, va: u64) -> Option<(u64, bool)> {
    if !canonical(va) || (HV_START..HV_END).contains(&va) {
        return None;
    }
    let mut table = cr3 & ADDR;
    let mut writable = true;
    for level in (0..4u32).rev() {
        if !allocated(table) {
            return None;
        }
        let idx = (va >> (12 + 9 * level)) & 511;
        let e = read_u64(table + idx * 8);
        if e & P == 0 {
            return None;
        }
        writable &= e & W != 0;
        let size_bits = 12 + 9 * level;
        if level == 0 || (e & PS != 0 && (level == 1 || level == 2)) {
            let base = e & ADDR & !((1u64 << size_bits) - 1);
            return Some((base + (va & ((1u64 << size_bits) - 1)), writable));
        }
        table = e & ADDR;
    }
    None
}

/// Calls `f(maddr, offset, len)` for each page-sized piece of the guest range `va..va+len`
/// in order, translated through `cr3`; false (stopping there) at the first piece that is not
/// mapped (writable, if `write`) onto an allocated frame.
fn for_each_page(
    allocated: &dyn Fn(u64) -> bool,
    cr3: u64,
    va: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(u64, usize, usize),
) -> bool {
    let mut done = 0usize;
    while done < len {
        let at = va.wrapping_add(done as u64);
        let n = (4096 - (at & 0xFFF) as usize).min(len - done);
        match translate_in(allocated, cr3, at) {
            Some((maddr, w)) if (!write || w) && allocated(maddr) => f(maddr, done, n),
            _ => return false,
        }
        done += n;
    }
    true
}

/// Pieces of a guest range one walk remembers for the copy that follows it (a range of up to
/// this many pages is translated once; a longer one again while it is copied).
const REMEMBERED: usize = 4;

/// Checks the whole guest range `va..va+len` (writable, if `write`), then calls
/// `copy(maddr, offset, len)` for each of its pieces: nothing is copied unless all of it is
/// mapped. One acquisition of the allocator's lock for all of it.
fn checked_copy(
    cr3: u64,
    va: u64,
    len: usize,
    write: bool,
    mut copy: impl FnMut(u64, usize, usize),
) -> bool {
    crate::memory::with_allocated(|allocated| {
        let mut pieces = [(0u64, 0usize, 0usize); REMEMBERED];
        let mut count = 0usize;
        let mapped = for_each_page(allocated, cr3, va, len, write, |maddr, off, n| {
            if let Some(p) = pieces.get_mut(count) {
                *p = (maddr, off, n);
            }
            count += 1;
        });
        if !mapped {
            return false;
        }
        if count > REMEMBERED {
            return for_each_page(allocated, cr3, va, len, write, copy);
        }
        for &(maddr, off, n) in &pieces[..count] {
            copy(maddr, off, n);
        }
        true
    })
}

/// copy_from_guest: reads `buf.len()` bytes at guest `va` through `cr3`; false on a bad address.
pub fn read(cr3: u64, va: u64, buf: &mut [u8]) -> bool {
    // First check the whole range, then copy: a fault leaves `buf` untouched.
    checked_copy(cr3, va, buf.len(), false, |maddr, off, n| {
        // SAFETY: `maddr..maddr+n` lies in one allocated RAM frame (checked by
        // `for_each_page` under the allocator's lock, still held) mapped by the direct map;
        // the bytes are copied out.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(maddr) as *const u8,
                buf[off..].as_mut_ptr(),
                n,
            )
        }
    })
}

/// Whether `len` bytes at guest `va` are mapped writable through `cr3`.
pub fn probe_write(cr3: u64, va: u64, len: usize) -> bool {
    crate::memory::with_allocated(|allocated| {
        for_each_page(allocated, cr3, va, len, true, |_, _, _| {})
    })
}

/// copy_to_guest: writes `data` at guest `va` through `cr3`; false (nothing written) on a
/// bad or read-only address.
pub fn write(cr3: u64, va: u64, data: &[u8]) -> bool {
    checked_copy(cr3, va, data.len(), true, |maddr, off, n| {
        // SAFETY: `maddr..maddr+n` lies in one allocated RAM frame mapped writable by the
        // guest's own tables (checked under the allocator's lock, still held), reached
        // through the direct map.
        unsafe {
            core::ptr::copy_nonoverlapping(data[off..].as_ptr(), phys_to_virt(maddr) as *mut u8, n)
        }
    })
}

/// Reads machine memory of allocated frames; false if any byte is outside them.
pub fn read_machine(maddr: u64, buf: &mut [u8]) -> bool {
    let Some(end) = maddr.checked_add(buf.len() as u64) else {
        return false;
    };
    crate::memory::with_allocated(|allocated| {
        let mut f = maddr >> 12;
        while f << 12 < end {
            if !allocated(f << 12) {
                return false;
            }
            f += 1;
        }
        // SAFETY: every frame of the range is allocated RAM (checked under the allocator's
        // lock, still held), mapped by the direct map.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(maddr) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    })
}

/// An aligned 16-bit word of usable RAM, checked once when made: RAM stays RAM (the usable
/// regions never change after boot), so every later [`RamWord::read`] is one load. For a
/// word the holder knows lies in a frame that stays allocated while it keeps the `RamWord`
/// (a vCPU's vcpu_info: its frame holds references while registered, shared_info lives as
/// long as its domain): whether the frame is allocated is not checked, only that it is RAM,
/// mapped by the direct map. On the exit path of every guest exit, where [`read_machine`]'s
/// lock and frame check cost ~60 instructions, and the RAM check ~35.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamWord(u64);

impl RamWord {
    /// The word at `maddr`; `None` if it is misaligned or not usable RAM.
    pub fn new(maddr: u64) -> Option<Self> {
        (maddr.is_multiple_of(2) && crate::memory::is_ram(maddr, 2)).then_some(Self(maddr))
    }

    /// Its machine address.
    pub fn maddr(self) -> u64 {
        self.0
    }

    /// Reads the word (an atomic load: the guest or another CPU may write it concurrently).
    pub fn read(self) -> u16 {
        // SAFETY: an aligned word of usable RAM (checked when `self` was made; usable RAM
        // never changes), mapped by the direct map; an atomic load.
        unsafe {
            (*(phys_to_virt(self.0) as *const core::sync::atomic::AtomicU16))
                .load(core::sync::atomic::Ordering::Acquire)
        }
    }
}

/// Copies `len` bytes of machine memory from `src` to `dst` (the ranges may overlap): the
/// source must lie in allocated frames and the destination inside one allocated frame, or
/// nothing is copied (false). One pass, frame to frame (grant copies of whole pages).
pub fn copy_machine(dst: u64, src: u64, len: usize) -> bool {
    let Some(end) = src.checked_add(len as u64) else {
        return false;
    };
    if (dst & 0xfff) as usize + len > 4096 {
        return false;
    }
    crate::memory::with_allocated(|allocated| {
        let mut f = src >> 12;
        while f << 12 < end {
            if !allocated(f << 12) {
                return false;
            }
            f += 1;
        }
        if !allocated(dst) {
            return false;
        }
        // SAFETY: the source range lies in allocated RAM frames and the destination range
        // inside one allocated RAM frame (checked under the allocator's lock, still held),
        // both reached through the direct map; `copy` allows the ranges to overlap.
        unsafe {
            core::ptr::copy(
                phys_to_virt(src) as *const u8,
                phys_to_virt(dst) as *mut u8,
                len,
            )
        };
        true
    })
}

/// Writes `data` into allocated frame `mfn` at `offset`; false (nothing written) if the frame
/// is not allocated or the range leaves the frame.
pub fn write_frame(mfn: u64, offset: usize, data: &[u8]) -> bool {
    if offset + data.len() > 4096 || !frame_is_allocated(mfn) {
        return false;
    }
    // SAFETY: the bytes lie inside one allocated RAM frame (checked), via the direct map.
    unsafe {
        core::ptr::copy_nonoverlapping(
            data.as_ptr(),
            (phys_to_virt(mfn << 12) + offset as u64) as *mut u8,
            data.len(),
        )
    };
    true
}

/// Zeroes allocated frame `mfn`.
pub fn zero_frame(mfn: u64) -> bool {
    if !frame_is_allocated(mfn) {
        return false;
    }
    // SAFETY: one allocated RAM frame (checked), via the direct map.
    unsafe { core::ptr::write_bytes(phys_to_virt(mfn << 12) as *mut u8, 0, 4096) };
    true
}

/// Atomically writes a 64-bit word (a validated page-table entry) of an allocated frame.
pub fn write_machine_u64(maddr: u64, value: u64) -> bool {
    if !maddr.is_multiple_of(8) || !frame_is_allocated(maddr >> 12) {
        return false;
    }
    // SAFETY: an aligned word of an allocated RAM frame (checked), via the direct map; the
    // atomic store keeps a concurrent hardware walk from seeing a torn entry.
    unsafe {
        (*(phys_to_virt(maddr) as *const core::sync::atomic::AtomicU64))
            .store(value, core::sync::atomic::Ordering::Release)
    };
    true
}

/// The hypervisor's L4 entries 256..272 (copied into every PV guest's root): slot 256 the
/// read-only M2P, the rest the hypervisor's own mappings.
pub fn hypervisor_l4_entries() -> [u64; 16] {
    let hv = crate::paging::hypervisor_cr3();
    let mut out = [0u64; 16];
    if hv != 0 {
        for (i, e) in out.iter_mut().enumerate() {
            *e = read_u64(hv + (256 + i as u64) * 8);
        }
    }
    out[0] = crate::paging::m2p_l4_entry();
    out
}

/// Writes one byte of an allocated frame (a flag in a guest-shared page).
pub fn write_machine_u8(maddr: u64, value: u8) -> bool {
    if !frame_is_allocated(maddr >> 12) {
        return false;
    }
    // SAFETY: one byte of an allocated RAM frame (checked), via the direct map; atomic so a
    // guest vCPU reading the flag concurrently sees the old or the new value.
    unsafe {
        (*(phys_to_virt(maddr) as *const core::sync::atomic::AtomicU8))
            .store(value, core::sync::atomic::Ordering::Release)
    };
    true
}

/// Copies allocated frame `src` over allocated frame `dst`.
pub fn copy_frame(dst: u64, src: u64) -> bool {
    if !frame_is_allocated(dst) || !frame_is_allocated(src) {
        return false;
    }
    // SAFETY: two allocated RAM frames (checked) through the direct map; `copy` allows overlap.
    unsafe {
        core::ptr::copy(
            phys_to_virt(src << 12) as *const u8,
            phys_to_virt(dst << 12) as *mut u8,
            4096,
        )
    };
    true
}

fn atomic_u64(maddr: u64) -> Option<&'static core::sync::atomic::AtomicU64> {
    if !maddr.is_multiple_of(8) || !frame_is_allocated(maddr >> 12) {
        return None;
    }
    // SAFETY: an aligned word of an allocated RAM frame (checked) through the direct map; a
    // guest-shared word is only ever accessed atomically by the hypervisor.
    Some(unsafe { &*(phys_to_virt(maddr) as *const core::sync::atomic::AtomicU64) })
}

fn atomic_u8(maddr: u64) -> Option<&'static core::sync::atomic::AtomicU8> {
    if !frame_is_allocated(maddr >> 12) {
        return None;
    }
    // SAFETY: one byte of an allocated RAM frame (checked) through the direct map, accessed
    // atomically.
    Some(unsafe { &*(phys_to_virt(maddr) as *const core::sync::atomic::AtomicU8) })
}

/// Atomically sets bit `bit` (0–63) of the word at `maddr`; its old value (true if the word
/// is not an allocated frame's: nothing to do then).
pub fn test_and_set_bit(maddr: u64, bit: u32) -> bool {
    atomic_u64(maddr).is_none_or(|w| {
        w.fetch_or(1 << (bit % 64), core::sync::atomic::Ordering::AcqRel) & (1 << (bit % 64)) != 0
    })
}

/// Atomically clears bit `bit` of the word at `maddr`; its old value.
pub fn test_and_clear_bit(maddr: u64, bit: u32) -> bool {
    atomic_u64(maddr).is_some_and(|w| {
        w.fetch_and(!(1 << (bit % 64)), core::sync::atomic::Ordering::AcqRel) & (1 << (bit % 64))
            != 0
    })
}

/// Bit `bit` of the word at `maddr`.
pub fn test_bit(maddr: u64, bit: u32) -> bool {
    atomic_u64(maddr)
        .is_some_and(|w| w.load(core::sync::atomic::Ordering::Acquire) & (1 << (bit % 64)) != 0)
}

/// Atomically sets bit 0 of the byte at `maddr`; its old value.
pub fn test_and_set_byte_flag(maddr: u64) -> bool {
    atomic_u8(maddr).is_none_or(|b| b.fetch_or(1, core::sync::atomic::Ordering::AcqRel) & 1 != 0)
}

fn atomic_u32(maddr: u64) -> Option<&'static core::sync::atomic::AtomicU32> {
    if !maddr.is_multiple_of(4) || !frame_is_allocated(maddr >> 12) {
        return None;
    }
    // SAFETY: an aligned 32-bit word of an allocated RAM frame (checked) through the direct
    // map; a guest-shared word is only ever accessed atomically by the hypervisor.
    Some(unsafe { &*(phys_to_virt(maddr) as *const core::sync::atomic::AtomicU32) })
}

/// The 32-bit word at `maddr` (0 if not an allocated frame's aligned word).
pub fn load_u32(maddr: u64) -> u32 {
    atomic_u32(maddr).map_or(0, |w| w.load(core::sync::atomic::Ordering::Acquire))
}

/// Atomically replaces the 32-bit word at `maddr` with `new` if it is `old`; the value seen
/// (`old` for an inaccessible word: nothing is written then, and the caller stops retrying).
pub fn cmpxchg_u32(maddr: u64, old: u32, new: u32) -> u32 {
    use core::sync::atomic::Ordering::{AcqRel, Acquire};
    atomic_u32(maddr).map_or(old, |w| {
        match w.compare_exchange(old, new, AcqRel, Acquire) {
            Ok(v) | Err(v) => v,
        }
    })
}

/// Atomically ORs `mask` into the 32-bit word at `maddr`; its old value (`mask` if not
/// accessible: every bit reads as already set).
pub fn fetch_or_u32(maddr: u64, mask: u32) -> u32 {
    atomic_u32(maddr).map_or(mask, |w| {
        w.fetch_or(mask, core::sync::atomic::Ordering::AcqRel)
    })
}

/// Atomically ANDs `mask` into the 32-bit word at `maddr`.
pub fn fetch_and_u32(maddr: u64, mask: u32) {
    if let Some(w) = atomic_u32(maddr) {
        w.fetch_and(mask, core::sync::atomic::Ordering::AcqRel);
    }
}

/// Atomically stores `v` at the 32-bit word at `maddr`.
pub fn store_u32(maddr: u64, v: u32) {
    if let Some(w) = atomic_u32(maddr) {
        w.store(v, core::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is RAM until the boot's memory map is recorded (never, on the host), and a
    /// misaligned word never is: no `RamWord` can be made for either.
    #[test]
    fn ram_words_exist_only_for_aligned_usable_ram() {
        assert_eq!(RamWord::new(0x1000), None);
        assert_eq!(RamWord::new(0x1001), None);
        assert_eq!(RamWord::new(u64::MAX - 1), None);
    }
}
