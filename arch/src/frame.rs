//! Physical frame allocator: a bitmap of 4 KiB frames built from the firmware memory map.
//!
//! Design: the caller provides the bitmap storage (`&mut [u64]`, two bits per frame: "in the
//! pool" and "free"). Before the heap exists the boot code sizes it with
//! [`FrameAllocator::bitmap_words`], finds a home for it with [`find_free_range`], maps it
//! through the direct map, and passes that range among the reserved ones. Keeping the storage
//! outside the allocator keeps this module free of `unsafe` and testable on the host.
//!
//! A frame is in the pool only if it lies entirely inside a `Usable` region, overlaps no
//! region of another kind (firmware maps can overlap: the conservative answer wins), overlaps
//! no reserved range, and is above the floor (1 MiB by default). Frames outside the pool are
//! never handed out, and freeing one is an error. Allocation is lowest-address-first.

mod bitmap;
#[cfg(test)]
mod tests;

use crate::multiboot::{MemKind, MemRegion};
use core::fmt;
use core::ops::Range;

/// Size of a frame.
pub const FRAME_SIZE: u64 = 4096;
/// Default floor: nothing below 1 MiB (BIOS data, EBDA, VGA, option ROMs) goes in the pool.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// Errors from operations on specific frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not 4 KiB aligned.
    Misaligned(u64),
    /// The address is above the memory the allocator covers.
    OutOfRange(u64),
    /// The frame is not in the pool (reserved, not RAM, or below the floor).
    NotUsable(u64),
    /// The frame is already allocated.
    InUse(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Misaligned(p) => write!(f, "frame address {p:#x} is not 4 KiB aligned"),
            FrameError::OutOfRange(p) => {
                write!(f, "frame {p:#x} is beyond the memory the allocator covers")
            }
            FrameError::NotUsable(p) => write!(f, "frame {p:#x} is reserved or not RAM"),
            FrameError::InUse(p) => write!(f, "frame {p:#x} is in use"),
            FrameError::DoubleFree(p) => write!(f, "double free of frame {p:#x}"),
        }
    }
}

/// A bitmap frame allocator over caller-provided storage.
pub struct FrameAllocator<'a> {
    /// Bit set: the frame is in the pool.
    pool: &'a mut [u64],
    /// Bit set: the frame is free (implies in the pool).
    free: &'a mut [u64],
    /// Number of frames covered by the bitmaps.
    frames: u64,
    /// Frames in the pool.
    total: u64,
    /// Free frames.
    nfree: u64,
    /// No free frame has an index below this.
    hint: u64,
}

impl fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("frames", &self.frames)
            .field("total", &self.total)
            .field("free", &self.nfree)
            .finish()
    }
}

const fn frame_down(p: u64) -> u64 {
    p / FRAME_SIZE
}

const fn frame_up(p: u64) -> u64 {
    p.div_ceil(FRAME_SIZE)
}

/// Whether `[a, a+len)` overlaps `r`.
fn overlaps(a: u64, len: u64, r: &Range<u64>) -> bool {
    a < r.end && r.start < a.saturating_add(len)
}

impl<'a> FrameAllocator<'a> {
    /// Number of `u64` words of storage needed to cover every usable frame of `map`.
    pub fn bitmap_words(map: &[MemRegion]) -> usize {
        let frames = map
            .iter()
            .filter(|r| r.kind == MemKind::Usable)
            .map(|r| frame_down(r.base.saturating_add(r.len)))
            .max()
            .unwrap_or(0);
        // Two bitmaps of ceil(frames / 64) words each.
        (frames.div_ceil(64) as usize).saturating_mul(2)
    }

    /// Builds the allocator with the default 1 MiB floor. See [`FrameAllocator::with_floor`].
    pub fn new(map: &[MemRegion], reserved: &[Range<u64>], storage: &'a mut [u64]) -> Self {
        Self::with_floor(map, reserved, storage, LOW_MEMORY_END)
    }

    /// Builds the allocator from `map` minus `reserved` minus everything below `floor` (which is
    /// at least one frame: frame 0 is never handed out). If `storage` is smaller than
    /// [`FrameAllocator::bitmap_words`] asks for, memory beyond what it covers is left out (and
    /// logged).
    pub fn with_floor(
        map: &[MemRegion],
        reserved: &[Range<u64>],
        storage: &'a mut [u64],
        floor: u64,
    ) -> Self {
        let want = Self::bitmap_words(map);
        let words = (storage.len() / 2).min(want / 2);
        if words * 2 < want {
            log::warn!(
                "frame bitmap storage covers {} MiB of {} MiB",
                (words as u64 * 64 * FRAME_SIZE) >> 20,
                (want as u64 / 2 * 64 * FRAME_SIZE) >> 20
            );
        }
        let (pool, rest) = storage.split_at_mut(words);
        let (free, _) = rest.split_at_mut(words);
        let frames = words as u64 * 64;
        pool.fill(0);
        free.fill(0);
        let clamp = |f: u64| f.min(frames);
        for r in map.iter().filter(|r| r.kind == MemKind::Usable) {
            let (s, e) = (frame_up(r.base), frame_down(r.base.saturating_add(r.len)));
            if s < e {
                bitmap::put_range(pool, clamp(s), clamp(e), true);
            }
        }
        for r in map.iter().filter(|r| r.kind != MemKind::Usable) {
            let (s, e) = (frame_down(r.base), frame_up(r.base.saturating_add(r.len)));
            bitmap::put_range(pool, clamp(s), clamp(e), false);
        }
        for r in reserved {
            bitmap::put_range(
                pool,
                clamp(frame_down(r.start)),
                clamp(frame_up(r.end)),
                false,
            );
        }
        bitmap::put_range(pool, 0, clamp(frame_up(floor.max(FRAME_SIZE))), false);
        free.copy_from_slice(pool);
        let total = bitmap::count_range(pool, 0, frames);
        FrameAllocator {
            pool,
            free,
            frames,
            total,
            nfree: total,
            hint: 0,
        }
    }

    /// Frames in the pool (free or allocated).
    pub fn total_count(&self) -> u64 {
        self.total
    }

    /// Free frames.
    pub fn free_count(&self) -> u64 {
        self.nfree
    }

    /// One past the highest physical address the allocator covers.
    pub fn limit(&self) -> u64 {
        self.frames * FRAME_SIZE
    }

    /// Whether the frame at `paddr` is in the pool (free or allocated).
    pub fn is_usable(&self, paddr: u64) -> bool {
        let f = paddr / FRAME_SIZE;
        f < self.frames && bitmap::get(self.pool, f)
    }

    /// Whether the frame at `paddr` is free.
    pub fn is_free(&self, paddr: u64) -> bool {
        let f = paddr / FRAME_SIZE;
        f < self.frames && bitmap::get(self.free, f)
    }

    fn take(&mut self, f: u64) {
        bitmap::put(self.free, f, false);
        self.nfree -= 1;
        if f == self.hint {
            self.hint = f + 1;
        }
    }

    /// Allocates the lowest free frame; returns its physical address.
    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_below(u64::MAX)
    }

    /// Allocates the lowest free frame that lies entirely below `limit` (e.g. 4 GiB for
    /// structures a 32-bit register must point at).
    pub fn alloc_below(&mut self, limit: u64) -> Option<u64> {
        let lim = frame_down(limit).min(self.frames);
        let f = bitmap::find_set(self.free, self.hint, lim)?;
        self.take(f);
        Some(f * FRAME_SIZE)
    }

    /// Allocates `count` contiguous frames whose first frame number is a multiple of
    /// `align_frames`; returns the physical address of the first. Lowest address first.
    pub fn alloc_contiguous(&mut self, count: u64, align_frames: u64) -> Option<u64> {
        if count == 0 || align_frames == 0 {
            return None;
        }
        let mut start = bitmap::find_set(self.free, self.hint, self.frames)?;
        loop {
            start = start.checked_next_multiple_of(align_frames)?;
            let end = start.checked_add(count)?;
            if end > self.frames {
                return None;
            }
            if !bitmap::get(self.free, start) {
                start = bitmap::find_set(self.free, start, self.frames)?;
                continue;
            }
            match bitmap::find_clear(self.free, start, end) {
                None => break,
                Some(gap) => start = bitmap::find_set(self.free, gap, self.frames)?,
            }
        }
        let end = start + count;
        bitmap::put_range(self.free, start, end, false);
        self.nfree -= count;
        if start <= self.hint {
            self.hint = bitmap::find_set(self.free, self.hint, self.frames).unwrap_or(self.frames);
        }
        Some(start * FRAME_SIZE)
    }

    fn check(&self, paddr: u64) -> Result<u64, FrameError> {
        if !paddr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Misaligned(paddr));
        }
        let f = paddr / FRAME_SIZE;
        if f >= self.frames {
            return Err(FrameError::OutOfRange(paddr));
        }
        if !bitmap::get(self.pool, f) {
            return Err(FrameError::NotUsable(paddr));
        }
        Ok(f)
    }

    /// Allocates the specific frame at `paddr`.
    pub fn alloc_at(&mut self, paddr: u64) -> Result<(), FrameError> {
        let f = self.check(paddr)?;
        if !bitmap::get(self.free, f) {
            return Err(FrameError::InUse(paddr));
        }
        self.take(f);
        Ok(())
    }

    /// Returns the frame at `paddr` to the pool. Freeing a free, reserved or unknown frame is
    /// an error and changes nothing.
    pub fn free(&mut self, paddr: u64) -> Result<(), FrameError> {
        let f = self.check(paddr)?;
        if bitmap::get(self.free, f) {
            return Err(FrameError::DoubleFree(paddr));
        }
        bitmap::put(self.free, f, true);
        self.nfree += 1;
        self.hint = self.hint.min(f);
        Ok(())
    }

    /// Takes every frame overlapping `range` out of the pool for good (e.g. the AP trampoline
    /// page, or boot modules handed to dom0). Fails without changing anything if one of them
    /// is currently allocated. Frames outside the pool are ignored.
    pub fn reserve(&mut self, range: Range<u64>) -> Result<(), FrameError> {
        if range.start >= range.end {
            return Ok(());
        }
        let s = frame_down(range.start).min(self.frames);
        let e = frame_up(range.end).min(self.frames);
        for f in s..e {
            if bitmap::get(self.pool, f) && !bitmap::get(self.free, f) {
                return Err(FrameError::InUse(f * FRAME_SIZE));
            }
        }
        let n = bitmap::count_range(self.pool, s, e);
        bitmap::put_range(self.pool, s, e, false);
        bitmap::put_range(self.free, s, e, false);
        self.total -= n;
        self.nfree -= n;
        Ok(())
    }
}

/// Finds the lowest 4 KiB-aligned physical range of `bytes` bytes, at or above `floor`, that
/// lies inside one `Usable` region of `map` and overlaps no other region and no `reserved`
/// range. Used to place the allocator's own bitmap before any allocator exists.
pub fn find_free_range(
    map: &[MemRegion],
    reserved: &[Range<u64>],
    floor: u64,
    bytes: u64,
) -> Option<u64> {
    let bytes = bytes.max(1);
    let mut best: Option<u64> = None;
    for region in map.iter().filter(|r| r.kind == MemKind::Usable) {
        let region_end = region.base.saturating_add(region.len);
        let Some(mut start) = region.base.max(floor).checked_next_multiple_of(FRAME_SIZE) else {
            continue;
        };
        // Each retry moves `start` past an obstacle's end, so this loop is bounded by the
        // number of obstacles.
        while let Some(end) = start.checked_add(bytes) {
            if end > region_end {
                break;
            }
            let blocker = map
                .iter()
                .filter(|r| r.kind != MemKind::Usable)
                .map(|r| r.base..r.base.saturating_add(r.len))
                .chain(reserved.iter().cloned())
                .filter(|r| overlaps(start, bytes, r))
                .map(|r| r.end)
                .max();
            match blocker {
                None => {
                    best = Some(best.map_or(start, |b| b.min(start)));
                    break;
                }
                Some(e) => match e.checked_next_multiple_of(FRAME_SIZE) {
                    Some(next) if next > start => start = next,
                    _ => break,
                },
            }
        }
    }
    best
}
