//! Direct writes to this guest's own page-table entries through the bootstrap region's
//! read-only mapping of its page tables, as a PV kernel relying on Xen's writable page-table
//! emulation (`VMASST_TYPE_writable_pagetables`) does. Each write is one instruction with a
//! known encoding; when the hypervisor does not emulate it, the guest takes the #PF, which
//! the trap handler skips over (the write did not happen).
//!
//! Only the entries that map the pages of a small target area of the start-of-day padding
//! (where no Rust object lives) can be named, and the upper-level entries only with their
//! current value, so nothing a write may do reaches memory the program uses.

use crate::pvmm::{self, pte};
use crate::start_info::StartInfo;
use crate::traps;
use core::sync::atomic::{AtomicU64, Ordering};

/// Offset of the target area from the end of the boot stack (past the gnttab windows and the
/// foreign-mapping window).
pub const TARGET_OFFSET: u64 = 0x60000;
/// Pages in the target area.
pub const TARGET_PAGES: u64 = 16;
/// `#PF`.
const PF: u8 = 14;

/// The virtual address of target page `k` (< [`TARGET_PAGES`]).
pub fn target_va(si: &StartInfo, k: u64) -> Option<u64> {
    (k < TARGET_PAGES).then(|| si.pt_base + (si.nr_pt_frames + 1) * 4096 + TARGET_OFFSET + k * 4096)
}

/// The frame target page `k` maps at start of day (its "home").
pub fn target_home(si: &StartInfo, k: u64) -> Option<u64> {
    crate::smp::virt_to_mfn(si, target_va(si, k)?)
}

/// Word `i` of target page `k`, if its L1 entry is present.
pub fn target_read(si: &StartInfo, k: u64, i: u64) -> Option<u64> {
    let e = Entry::of(si, 1, k)?;
    if e.read() & pte::PRESENT == 0 || i >= 512 {
        return None;
    }
    let va = target_va(si, k)? + i * 8;
    // Entries written directly leave the TLB to the guest, as on hardware.
    let _ = crate::mm::invlpg_local(va);
    // SAFETY: the page is mapped (its entry is present; every entry this module lets a
    // caller write was validated by Xen, so it maps a frame of ours) and holds no Rust
    // object; an aligned atomic load.
    Some(unsafe { (*(va as *const AtomicU64)).load(Ordering::SeqCst) })
}

/// Writes word `i` of target page `k`, only while it maps its home frame writable.
pub fn target_write(si: &StartInfo, k: u64, i: u64, v: u64) -> bool {
    let (Some(e), Some(home), Some(va)) =
        (Entry::of(si, 1, k), target_home(si, k), target_va(si, k))
    else {
        return false;
    };
    let cur = e.read();
    if cur & (pte::PRESENT | pte::RW) != pte::PRESENT | pte::RW
        || (cur & 0x000f_ffff_ffff_f000) >> 12 != home
        || i >= 512
    {
        return false;
    }
    let _ = crate::mm::invlpg_local(va);
    // SAFETY: the page maps its own home frame of the start-of-day padding writable, where
    // no Rust object lives; an aligned atomic store.
    unsafe { (*((va + i * 8) as *const AtomicU64)).store(v, Ordering::SeqCst) };
    true
}

/// Maps target page `k` back to its home frame, writable (`update_va_mapping`).
pub fn target_restore(si: &StartInfo, k: u64) -> crate::errno::XenResult {
    let (Some(va), Some(home)) = (target_va(si, k), target_home(si, k)) else {
        return Err(crate::errno::Errno::EINVAL);
    };
    let val = (home << 12) | pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
    // SAFETY: the page of the start-of-day padding gets its own frame back; no Rust object
    // lives there.
    unsafe { crate::mm::update_va_mapping(va, val, crate::mm::UVMF_INVLPG) }
}

/// How to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// `mov %rax, (%rdi)` (48 89 07).
    Mov64,
    /// `mov %rax, 8(%rdi)` with %rdi 8 bytes below the entry (48 89 47 08).
    Mov64Disp8,
    /// `mov %rax, (%rdi,%rcx,8)` with %rcx = 1 and %rdi 8 bytes below (48 89 04 cf).
    Mov64Indexed,
    /// `mov %eax, (%rdi)`: the entry's low half (89 07).
    Mov32Low,
    /// `mov %eax, 4(%rdi)`: the entry's high half (89 47 04).
    Mov32High,
    /// `movq $0, (%rdi)`: clears the entry (48 c7 07 00 00 00 00).
    MovZero,
    /// `xchg %rax, (%rdi)` (48 87 07): the old entry comes back.
    Xchg64,
    /// `lock cmpxchg %rsi, (%rdi)` with %rax = the expected value (f0 48 0f b1 37).
    Cmpxchg64 {
        /// The value compared with the entry.
        expect: u64,
    },
    /// `mov %rax, 4(%rdi)`: 8 bytes across this entry and the next (48 89 47 04).
    Misaligned64,
    /// `lock andb $0xfd, (%rdi)`: clears RW as Linux's `clear_bit` does (f0 80 27 fd).
    AndByteClearRw,
    /// `lock orb $2, (%rdi)`: sets RW as Linux's `set_bit` does (f0 80 0f 02).
    OrByteSetRw,
    /// `lock btrq $1, (%rdi)`: clears RW, CF the old bit (f0 48 0f ba 37 01).
    BtrRw,
    /// `lock btsq %rcx, (%rdi)` with %rcx = 1: sets RW, CF the old bit (f0 48 0f ab 0f).
    BtsRw,
}

impl Store {
    /// Its length in bytes (what the #PF handler skips).
    pub fn length(self) -> u8 {
        match self {
            Store::Mov32Low => 2,
            Store::Mov64 | Store::Mov32High | Store::Xchg64 => 3,
            Store::Mov64Disp8
            | Store::Mov64Indexed
            | Store::Misaligned64
            | Store::AndByteClearRw
            | Store::OrByteSetRw => 4,
            Store::Cmpxchg64 { .. } | Store::BtsRw => 5,
            Store::BtrRw => 6,
            Store::MovZero => 7,
        }
    }

    /// Whether `val` can be written this way (`MovZero` and the bit operations take 0, the
    /// 32-bit ones a 32-bit value).
    pub fn fits(self, val: u64) -> bool {
        match self {
            Store::MovZero
            | Store::AndByteClearRw
            | Store::OrByteSetRw
            | Store::BtrRw
            | Store::BtsRw => val == 0,
            Store::Mov32Low | Store::Mov32High => val <= u64::from(u32::MAX),
            _ => true,
        }
    }
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The guest took a #PF (the write was not emulated and did not happen).
    pub faulted: bool,
    /// %rax afterwards (the old entry for `Xchg64`, the entry for a failed `Cmpxchg64`).
    pub rax: u64,
    /// ZF afterwards (`Cmpxchg64`: the exchange happened).
    pub zf: bool,
    /// CF afterwards (`BtrRw`, `BtsRw`: the bit's old value).
    pub cf: bool,
}

/// A page-table entry of this guest, with its address in the read-only bootstrap mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    va: u64,
    maddr: u64,
    level: u8,
}

impl Entry {
    /// The level-`level` entry (1 = L1 ... 3) on the walk to target page `k`; `None` if the
    /// walk leaves the bootstrap tables.
    pub fn of(si: &StartInfo, level: u8, k: u64) -> Option<Entry> {
        if !(1..=3).contains(&level) {
            return None;
        }
        let target = target_va(si, k)?;
        let mut table = pvmm::root_mfn(si)?;
        for (depth, shift) in [39u32, 30, 21, 12].into_iter().enumerate() {
            let here = 4 - depth as u8;
            let index = (target >> shift) & 511;
            if here == level {
                let pfn = pvmm::m2p(table);
                let va = crate::smp::virt_base() + pfn * 4096 + index * 8;
                if va < si.pt_base || va >= si.pt_base + si.nr_pt_frames * 4096 {
                    return None;
                }
                return Some(Entry {
                    va,
                    maddr: (table << 12) + index * 8,
                    level,
                });
            }
            let e = pvmm::read_table_entry(si, table, index)?;
            if e & pte::PRESENT == 0 || e & (1 << 7) != 0 {
                return None;
            }
            table = (e & 0x000f_ffff_ffff_f000) >> 12;
        }
        None
    }

    /// Its virtual address (in the read-only mapping of the page tables).
    pub fn va(&self) -> u64 {
        self.va
    }

    /// Its machine address.
    pub fn maddr(&self) -> u64 {
        self.maddr
    }

    /// The 8 bytes a [`Store::Misaligned64`] write covers (this entry's high half and the
    /// next one's low half) as they are; `None` at the end of the table.
    pub fn misaligned_current(&self) -> Option<u64> {
        if self.va & 0xfff == 0xff8 {
            return None;
        }
        let next = Entry {
            va: self.va + 8,
            ..*self
        };
        Some((self.read() >> 32) | (next.read() << 32))
    }

    /// Its current value.
    pub fn read(&self) -> u64 {
        // SAFETY: `va` lies in the bootstrap page tables (checked in `of`), which Xen maps
        // read-only; an aligned atomic load.
        unsafe { (*(self.va as *const AtomicU64)).load(Ordering::SeqCst) }
    }

    /// Writes `val` the `how` way. An upper-level entry may only be written with its current
    /// value, and a misaligned write only with the current bytes it covers (an
    /// emulation that accepted them would change nothing); `None` if refused here.
    pub fn write(&self, how: Store, val: u64) -> Option<Outcome> {
        if !how.fits(val) {
            return None;
        }
        if how == Store::Misaligned64 {
            if self.misaligned_current() != Some(val) {
                return None;
            }
        } else if self.level != 1 && val != self.read() {
            return None;
        }
        let before = traps::taken(PF);
        traps::expect(PF, how.length());
        let (rax, zf, cf) = self.store(how, val);
        traps::unexpect(PF);
        Some(Outcome {
            faulted: traps::taken(PF) != before,
            rax,
            zf,
            cf,
        })
    }

    fn store(&self, how: Store, val: u64) -> (u64, bool, bool) {
        // Every block below is one store to this guest's own page-table entry at `p` (or the
        // 8 bytes at `p + 4`) through a read-only mapping: Xen either emulates it after
        // validating the new entry, or the CPU faults and the #PF handler resumes after the
        // instruction (the expectation is armed with its exact length). The entry maps a
        // target page, where no Rust object lives; upper-level and misaligned writes carry
        // the current bytes (checked in `write`). The encodings are spelled out so that the
        // lengths are exact.
        let p = self.va;
        let mut rax = val;
        let mut zf: u8 = 0;
        let mut cf: u8 = 0;
        match how {
            Store::Mov64 => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x48, 0x89, 0x07", in("rdi") p, in("rax") val,
                        options(nostack));
                }
            }
            Store::Mov64Disp8 => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x48, 0x89, 0x47, 0x08", in("rdi") p - 8,
                        in("rax") val, options(nostack));
                }
            }
            Store::Mov64Indexed => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x48, 0x89, 0x04, 0xcf", in("rdi") p - 8,
                        in("rcx") 1u64, in("rax") val, options(nostack));
                }
            }
            Store::Mov32Low => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x89, 0x07", in("rdi") p, in("rax") val,
                        options(nostack));
                }
            }
            Store::Mov32High => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x89, 0x47, 0x04", in("rdi") p, in("rax") val,
                        options(nostack));
                }
            }
            Store::MovZero => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x48, 0xc7, 0x07, 0, 0, 0, 0", in("rdi") p,
                        options(nostack));
                }
            }
            Store::Xchg64 => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x48, 0x87, 0x07", in("rdi") p, inout("rax") rax,
                        options(nostack));
                }
            }
            Store::Cmpxchg64 { expect } => {
                rax = expect;
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0xf0, 0x48, 0x0f, 0xb1, 0x37", "sete {zf}",
                        in("rdi") p, in("rsi") val, inout("rax") rax, zf = out(reg_byte) zf,
                        options(nostack));
                }
            }
            Store::Misaligned64 => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0x48, 0x89, 0x47, 0x04", in("rdi") p, in("rax") val,
                        options(nostack));
                }
            }
            Store::AndByteClearRw => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0xf0, 0x80, 0x27, 0xfd", in("rdi") p,
                        options(nostack));
                }
            }
            Store::OrByteSetRw => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0xf0, 0x80, 0x0f, 0x02", in("rdi") p,
                        options(nostack));
                }
            }
            Store::BtrRw => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0xf0, 0x48, 0x0f, 0xba, 0x37, 0x01", "setc {cf}",
                        in("rdi") p, cf = out(reg_byte) cf, options(nostack));
                }
            }
            Store::BtsRw => {
                // SAFETY: as described above.
                unsafe {
                    core::arch::asm!(".byte 0xf0, 0x48, 0x0f, 0xab, 0x0f", "setc {cf}",
                        in("rdi") p, in("rcx") 1u64, cf = out(reg_byte) cf, options(nostack));
                }
            }
        }
        (rax, zf != 0, cf != 0)
    }
}
