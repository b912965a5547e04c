//! Frame allocator tests: fixed scenarios plus a randomized model check.

use super::*;
use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

const MIB: u64 = 1 << 20;

fn region(base: u64, len: u64, kind: MemKind) -> MemRegion {
    MemRegion { base, len, kind }
}

/// QEMU's e820 for `-m 128M`.
fn qemu_map() -> Vec<MemRegion> {
    vec![
        region(0, 0x9_fc00, MemKind::Usable),
        region(0x9_fc00, 0x400, MemKind::Reserved),
        region(0xf_0000, 0x1_0000, MemKind::Reserved),
        region(0x10_0000, 0x7ee_0000, MemKind::Usable),
        region(0x7fe_0000, 0x2_0000, MemKind::Reserved),
        region(0xfffc_0000, 0x4_0000, MemKind::Reserved),
    ]
}

fn storage_for(map: &[MemRegion]) -> Vec<u64> {
    vec![0u64; FrameAllocator::bitmap_words(map)]
}

#[test]
fn builds_from_qemu_map_with_reservations() {
    let map = qemu_map();
    let mut st = storage_for(&map);
    let image = 0x10_0000..0x30_0000;
    let module = 0x40_0000..0x40_0800;
    let fa = FrameAllocator::new(&map, &[image.clone(), module], &mut st);
    // 0x100000..0x7fe0000 usable = 32480 frames; minus image (512) and module (1).
    assert_eq!(fa.total_count(), 32_480 - 512 - 1);
    assert_eq!(fa.free_count(), fa.total_count());
    assert!(!fa.is_usable(0x9_f000), "below 1 MiB is never in the pool");
    assert!(!fa.is_usable(0x2f_f000));
    assert!(fa.is_usable(0x30_0000));
    assert!(!fa.is_usable(0x40_0000) && fa.is_usable(0x40_1000));
    assert!(!fa.is_usable(0x7fe_0000));
    assert_eq!(
        fa.limit(),
        0x7fe_0000_u64.div_ceil(64 * FRAME_SIZE) * 64 * FRAME_SIZE
    );
}

#[test]
fn lowest_first_and_free_reuses() {
    let map = qemu_map();
    let mut st = storage_for(&map);
    let mut fa = FrameAllocator::new(
        &map,
        core::slice::from_ref(&(0x10_0000..0x20_0000)),
        &mut st,
    );
    let a = fa.alloc().unwrap();
    let b = fa.alloc().unwrap();
    assert_eq!((a, b), (0x20_0000, 0x20_1000));
    fa.free(a).unwrap();
    assert_eq!(fa.alloc(), Some(a));
    assert_eq!(fa.free(0x20_1000), Ok(()));
    assert_eq!(fa.free(0x20_1000), Err(FrameError::DoubleFree(0x20_1000)));
    assert_eq!(fa.free(0x20_1001), Err(FrameError::Misaligned(0x20_1001)));
    assert_eq!(fa.free(0x10_0000), Err(FrameError::NotUsable(0x10_0000)));
    assert_eq!(
        fa.free(0x1_0000_0000),
        Err(FrameError::OutOfRange(0x1_0000_0000))
    );
    let text = alloc::format!("{}", FrameError::DoubleFree(0x20_1000));
    assert_eq!(text, "double free of frame 0x201000");
}

#[test]
fn floor_and_alloc_below_for_trampolines() {
    let map = qemu_map();
    let mut st = storage_for(&map);
    let mut fa = FrameAllocator::with_floor(&map, &[], &mut st, 0x1000);
    // Page 0 is never handed out, even with a low floor.
    assert!(!fa.is_usable(0));
    assert_eq!(fa.alloc_below(MIB), Some(0x1000));
    fa.reserve(0x8000..0x9000).unwrap();
    assert_eq!(fa.alloc_at(0x8000), Err(FrameError::NotUsable(0x8000)));
    assert_eq!(fa.alloc_at(0x7000), Ok(()));
    assert_eq!(fa.alloc_at(0x7000), Err(FrameError::InUse(0x7000)));
    // The EBDA page 0x9f000 overlaps the reserved 0x9fc00 region: not in the pool.
    assert!(!fa.is_usable(0x9_f000));
    assert!(fa.is_usable(0x9_e000));
    // Nothing usable below 0x2000 any more except what is allocated.
    assert_eq!(fa.alloc_below(0x2000), None);

    let mut st = storage_for(&map);
    let mut fa = FrameAllocator::new(&map, &[], &mut st);
    assert_eq!(fa.alloc_below(MIB), None);
}

#[test]
fn reserve_refuses_allocated_frames_and_updates_counts() {
    let map = qemu_map();
    let mut st = storage_for(&map);
    let mut fa = FrameAllocator::new(&map, &[], &mut st);
    let total = fa.total_count();
    let a = fa.alloc().unwrap();
    assert_eq!(fa.reserve(a..a + 0x3000), Err(FrameError::InUse(a)));
    assert_eq!(fa.total_count(), total);
    fa.reserve(a + 0x1000..a + 0x2001).unwrap();
    assert_eq!(fa.total_count(), total - 2);
    assert_eq!(fa.free_count(), total - 3);
    assert_eq!(fa.alloc(), Some(a + 0x3000));
    // Empty and out-of-range reservations are no-ops.
    fa.reserve(5..5).unwrap();
    fa.reserve(0x10_0000_0000..0x20_0000_0000).unwrap();
    assert_eq!(fa.total_count(), total - 2);
}

#[test]
fn contiguous_respects_alignment_and_holes() {
    let map = vec![region(0x10_0000, 0x100_0000, MemKind::Usable)];
    let mut st = storage_for(&map);
    let mut fa = FrameAllocator::new(
        &map,
        core::slice::from_ref(&(0x20_3000..0x20_4000)),
        &mut st,
    );
    // 512 frames aligned to 512 (2 MiB): the first hole-free 2 MiB-aligned run is 0x400000.
    assert_eq!(fa.alloc_contiguous(512, 512), Some(0x40_0000));
    // 4 frames aligned to 4 from 0x100000 are free.
    assert_eq!(fa.alloc_contiguous(4, 4), Some(0x10_0000));
    // Runs of 8 must skip the reserved 0x203000 frame.
    assert_eq!(fa.alloc_contiguous(8, 1), Some(0x10_4000));
    assert_eq!(fa.alloc_contiguous(0x1000, 1), None);
    assert_eq!(fa.alloc_contiguous(0, 1), None);
    assert_eq!(fa.alloc_contiguous(1, 0), None);
    let before = fa.free_count();
    assert_eq!(fa.alloc_contiguous(3, 1), Some(0x10_c000));
    assert_eq!(fa.free_count(), before - 3);
    // Single allocations still find the lowest hole.
    fa.free(0x10_1000).unwrap();
    assert_eq!(fa.alloc(), Some(0x10_1000));
}

#[test]
fn overlapping_regions_are_conservative() {
    let map = vec![
        region(0x10_0000, 0x10_0000, MemKind::Usable),
        region(0x18_0800, 0x100, MemKind::AcpiNvs),
        region(0x1c_0000, 0x10_0000, MemKind::Usable),
    ];
    let mut st = storage_for(&map);
    let fa = FrameAllocator::new(&map, &[], &mut st);
    assert!(!fa.is_usable(0x18_0000));
    assert!(fa.is_usable(0x18_1000));
    // Unaligned usable ends do not produce partial frames.
    let map = vec![region(0x10_0800, 0x2000, MemKind::Usable)];
    let mut st = storage_for(&map);
    let fa = FrameAllocator::new(&map, &[], &mut st);
    assert_eq!(fa.total_count(), 1);
    assert!(fa.is_usable(0x10_1000));
}

#[test]
fn small_storage_covers_less_memory_and_empty_map_is_empty() {
    let map = qemu_map();
    let mut st = vec![0u64; 8]; // 4 words per bitmap: 256 frames = 1 MiB.
    let mut fa = FrameAllocator::new(&map, &[], &mut st);
    assert_eq!(fa.limit(), MIB);
    assert_eq!(fa.total_count(), 0);
    assert_eq!(fa.alloc(), None);

    let mut st: Vec<u64> = Vec::new();
    let mut fa = FrameAllocator::new(&[], &[], &mut st);
    assert_eq!(
        (fa.total_count(), fa.free_count(), fa.alloc()),
        (0, 0, None)
    );
    assert_eq!(fa.free(0x1000), Err(FrameError::OutOfRange(0x1000)));
}

#[test]
fn find_free_range_avoids_everything() {
    let map = qemu_map();
    let reserved = [0x10_0000..0x30_0000, 0x30_0000..0x30_0001];
    let p = find_free_range(&map, &reserved, MIB, 0x2000).unwrap();
    assert_eq!(p, 0x30_1000);
    // Does not fit anywhere.
    assert_eq!(find_free_range(&map, &reserved, MIB, 0x1000_0000), None);
    // Below the floor only if the floor allows it, and never across the reserved 0x9fc00.
    assert_eq!(find_free_range(&map, &[], 0, 0x9_f000), Some(0));
    assert_eq!(find_free_range(&map, &[], 0, 0xa_0000), Some(0x10_0000));
    // The bitmap for the QEMU map fits in one page pair.
    let words = FrameAllocator::bitmap_words(&map) as u64;
    assert_eq!(words, 2 * 0x7fe0_u64.div_ceil(64));
}

/// xorshift64*: a tiny deterministic PRNG for the model check.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Reference: is frame `f` allowed by the map, the reserved list and the floor?
fn allowed(map: &[MemRegion], reserved: &[Range<u64>], floor: u64, f: u64) -> bool {
    let (a, b) = (f * FRAME_SIZE, (f + 1) * FRAME_SIZE);
    let inside_usable = map
        .iter()
        .any(|r| r.kind == MemKind::Usable && r.base <= a && b <= r.base + r.len);
    let hits_other = map
        .iter()
        .any(|r| r.kind != MemKind::Usable && r.base < b && a < r.base + r.len);
    let hits_reserved = reserved.iter().any(|r| r.start < b && a < r.end);
    inside_usable && !hits_other && !hits_reserved && a >= floor.max(FRAME_SIZE)
}

#[test]
fn randomized_model_check() {
    const SPAN: u64 = 4096; // frames of address space in each scenario (16 MiB)
    let kinds = [
        MemKind::Usable,
        MemKind::Reserved,
        MemKind::AcpiNvs,
        MemKind::Bad,
    ];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut map = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let base = rng.below(SPAN * FRAME_SIZE);
            let len = 1 + rng.below(SPAN * FRAME_SIZE / 2);
            let kind = if rng.below(3) == 0 {
                kinds[rng.below(4) as usize]
            } else {
                MemKind::Usable
            };
            map.push(region(base, len, kind));
        }
        let mut reserved = Vec::new();
        for _ in 0..rng.below(5) {
            let s = rng.below(SPAN * FRAME_SIZE);
            reserved.push(s..s + rng.below(64 * FRAME_SIZE));
        }
        let floor = rng.below(2 * MIB);
        let mut st = storage_for(&map);
        let mut fa = FrameAllocator::with_floor(&map, &reserved, &mut st, floor);
        let frames = fa.limit() / FRAME_SIZE;
        let mut pool: BTreeSet<u64> = (0..frames)
            .filter(|&f| allowed(&map, &reserved, floor, f))
            .collect();
        assert_eq!(fa.total_count(), pool.len() as u64, "seed {seed}");
        let mut used: BTreeSet<u64> = BTreeSet::new();
        for _ in 0..600 {
            let lowest_free = pool.iter().find(|f| !used.contains(f)).copied();
            match rng.below(7) {
                0 | 1 => {
                    let got = fa.alloc().map(|p| p / FRAME_SIZE);
                    assert_eq!(got, lowest_free, "seed {seed}: alloc not lowest-first");
                    if let Some(f) = got {
                        used.insert(f);
                    }
                }
                2 => {
                    let limit = rng.below((frames + 1) * FRAME_SIZE);
                    let got = fa.alloc_below(limit).map(|p| p / FRAME_SIZE);
                    let want = lowest_free.filter(|f| (f + 1) * FRAME_SIZE <= limit);
                    assert_eq!(got, want, "seed {seed}: alloc_below({limit:#x})");
                    if let Some(f) = got {
                        used.insert(f);
                    }
                }
                3 => {
                    let count = 1 + rng.below(16);
                    let align = 1 << rng.below(4);
                    let want = (0..frames).step_by(align as usize).find(|s| {
                        s + count <= frames
                            && (*s..s + count).all(|f| pool.contains(&f) && !used.contains(&f))
                    });
                    let got = fa.alloc_contiguous(count, align).map(|p| p / FRAME_SIZE);
                    assert_eq!(got, want, "seed {seed}: contiguous {count}/{align}");
                    if let Some(s) = got {
                        used.extend(s..s + count);
                    }
                }
                4 => {
                    // Free an allocated frame, or try a bogus free.
                    if !used.is_empty() && rng.below(4) != 0 {
                        let nth = rng.below(used.len() as u64) as usize;
                        let f = *used.iter().nth(nth).unwrap();
                        assert_eq!(fa.free(f * FRAME_SIZE), Ok(()));
                        used.remove(&f);
                    } else {
                        let f = rng.below(frames + 8);
                        let r = fa.free(f * FRAME_SIZE);
                        if used.remove(&f) {
                            assert_eq!(r, Ok(()), "seed {seed}");
                        } else {
                            assert!(r.is_err(), "seed {seed}: bogus free of {f} accepted");
                        }
                    }
                }
                5 => {
                    let f = rng.below(frames + 8);
                    let r = fa.alloc_at(f * FRAME_SIZE);
                    let ok = pool.contains(&f) && !used.contains(&f);
                    assert_eq!(r.is_ok(), ok, "seed {seed}: alloc_at({f})");
                    if ok {
                        used.insert(f);
                    }
                }
                _ => {
                    let s = rng.below(frames.max(1) * FRAME_SIZE);
                    let range = s..s + rng.below(8 * FRAME_SIZE);
                    let hit: Vec<u64> = pool
                        .iter()
                        .copied()
                        .filter(|f| {
                            range.start < (f + 1) * FRAME_SIZE && f * FRAME_SIZE < range.end
                        })
                        .collect();
                    let r = fa.reserve(range.clone());
                    if hit.iter().any(|f| used.contains(f)) {
                        assert!(matches!(r, Err(FrameError::InUse(_))), "seed {seed}");
                    } else {
                        assert_eq!(r, Ok(()));
                        for f in hit {
                            pool.remove(&f);
                        }
                    }
                }
            }
            assert_eq!(fa.total_count(), pool.len() as u64, "seed {seed}");
            assert_eq!(
                fa.free_count(),
                (pool.len() - used.len()) as u64,
                "seed {seed}"
            );
            assert!(
                used.is_subset(&pool),
                "seed {seed}: allocated a non-pool frame"
            );
        }
    }
}
