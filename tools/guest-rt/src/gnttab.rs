//! Grant tables from the guest side: the table-level sub-ops of `grant_table_op` as safe
//! calls, "windows" (pages of the start-of-day padding, where no Rust object lives) that can be
//! remapped to a grant mapping or a grant-table frame, the grant entries of a mapped table
//! frame (written and revoked with atomics, as Linux's gnttab code does), grant copies whose
//! frame operands are windows' own frames, and the raw batched call for refusal tests.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, GRANT_TABLE_OP, UPDATE_VA_MAPPING};
use crate::mm::pte;
use crate::start_info::StartInfo;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

pub use abi::*;

/// The `grant_table.h` structures and constants the guests use (`#[repr(C)]`, passed to Xen
/// by pointer): `dom0_interface::grant_table`'s.
pub mod abi {
    pub use dom0_interface::grant_table::{
        GnttabCacheFlush, GnttabCopy, GnttabCopyPtr, GnttabGetStatusFrames, GnttabGetVersion,
        GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable, GnttabTransfer,
        GnttabUnmapAndReplace, GnttabUnmapGrantRef, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
        GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTST_OKAY,
        GNTTABOP_CACHE_FLUSH, GNTTABOP_COPY, GNTTABOP_GET_STATUS_FRAMES, GNTTABOP_GET_VERSION,
        GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE, GNTTABOP_SET_VERSION,
        GNTTABOP_TRANSFER, GNTTABOP_UNMAP_AND_REPLACE, GNTTABOP_UNMAP_GRANT_REF,
        GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GNTTAB_CACHE_SOURCE_GREF, GTF_PERMIT_ACCESS,
        GTF_READING, GTF_READONLY, GTF_WRITING,
    };
}

/// Offset of the first window from the end of the boot stack (the `pvmm::Scratch` page sits
/// at 0x40000; windows follow it).
const WINDOW_OFFSET: u64 = 0x48000;
/// Windows available.
pub const WINDOWS: u64 = 16;

/// Calls `grant_table_op(cmd, ops, ops.len())` on an array of `#[repr(C)]` structures.
fn op_slice<T>(cmd: u32, ops: &mut [T]) -> XenResult {
    // SAFETY: `ops` is a live, writable array; its structures name only guest memory the
    // callers in this module checked (frame lists in live buffers, window addresses), so the
    // hypervisor's writes stay inside buffers we own and mappings we track.
    unsafe {
        hypercall::call(
            GRANT_TABLE_OP,
            [
                u64::from(cmd),
                ops.as_mut_ptr() as u64,
                ops.len() as u64,
                0,
                0,
            ],
        )
    }
}

fn op_one<T>(cmd: u32, op: &mut T) -> XenResult {
    op_slice(cmd, core::slice::from_mut(op))
}

/// `grant_table_op` with an arbitrary command word on one zeroed 64-byte buffer, with a
/// count of 1 or a negative one (for the sub-op and count checks); other counts are refused
/// here with `-E2BIG`.
pub fn raw_op(cmd: u32, count: u32) -> XenResult {
    if count > 1 && (count as i32) >= 0 {
        return Err(Errno::E2BIG);
    }
    let mut buf = [0u64; 8];
    // SAFETY: a zeroed 64-byte buffer of ours: a zero structure of any sub-op names no guest
    // memory (null frame lists are refused by Xen), and a negative count is refused first.
    unsafe {
        hypercall::call(
            GRANT_TABLE_OP,
            [
                u64::from(cmd),
                buf.as_mut_ptr() as u64,
                u64::from(count),
                0,
                0,
            ],
        )
    }
}

/// `GNTTABOP_setup_table` for `dom`: the status and the frames written to `frames`
/// (`frames.len()` asked for).
pub fn setup_table(dom: u16, frames: &mut [u64]) -> Result<i16, Errno> {
    let mut op = GnttabSetupTable {
        dom,
        nr_frames: frames.len() as u32,
        status: 0x55,
        frame_list: frames.as_mut_ptr() as u64,
    };
    op_one(GNTTABOP_SETUP_TABLE, &mut op)?;
    Ok(op.status)
}

/// `GNTTABOP_query_size` for `dom`: (nr_frames, max_nr_frames, status).
pub fn query_size(dom: u16) -> Result<(u32, u32, i16), Errno> {
    let mut op = GnttabQuerySize {
        dom,
        ..Default::default()
    };
    op_one(GNTTABOP_QUERY_SIZE, &mut op)?;
    Ok((op.nr_frames, op.max_nr_frames, op.status))
}

/// `GNTTABOP_set_version`: the result and the version Xen wrote back.
pub fn set_version(version: u32) -> (XenResult, u32) {
    let mut v = version;
    let r = op_one(GNTTABOP_SET_VERSION, &mut v);
    (r, v)
}

/// `GNTTABOP_get_version` for `dom`.
pub fn get_version(dom: u16) -> Result<u32, Errno> {
    let mut op = GnttabGetVersion {
        dom,
        pad: 0,
        version: 0xdead,
    };
    op_one(GNTTABOP_GET_VERSION, &mut op)?;
    Ok(op.version)
}

/// `GNTTABOP_get_status_frames` for `dom` into `frames`: the status.
pub fn get_status_frames(dom: u16, frames: &mut [u64]) -> Result<i16, Errno> {
    let mut op = GnttabGetStatusFrames {
        nr_frames: frames.len() as u32,
        dom,
        status: 0x55,
        frame_list: frames.as_mut_ptr() as u64,
    };
    op_one(GNTTABOP_GET_STATUS_FRAMES, &mut op)?;
    Ok(op.status)
}

/// `GNTTABOP_transfer` of a frame number beyond any RAM (at least 2^32, refusal tests only;
/// smaller ones are refused here with `-EPERM`, as one of ours would be given away): the
/// status.
pub fn transfer_foreign(mfn: u64, domid: u16, gref: u32) -> Result<i16, Errno> {
    if mfn < (1 << 32) {
        return Err(Errno::EPERM);
    }
    let mut op = GnttabTransfer {
        mfn,
        domid,
        r#ref: gref,
        status: 0x55,
    };
    op_one(GNTTABOP_TRANSFER, &mut op)?;
    Ok(op.status)
}

/// `GNTTABOP_cache_flush` of one range (cache maintenance only: memory contents do not
/// change).
pub fn cache_flush(dev_bus_addr: u64, offset: u16, length: u16, op: u32) -> XenResult {
    let mut f = GnttabCacheFlush {
        a: dev_bus_addr,
        offset,
        length,
        op,
    };
    op_one(GNTTABOP_CACHE_FLUSH, &mut f)
}

/// A page of the start-of-day padding that can be remapped; it starts out mapping its own
/// frame (its "home") writable.
pub struct Window {
    va: u64,
    home: u64,
    l1e: u64,
    /// What is mapped: Some(writable) or nothing.
    mapped: Option<bool>,
}

impl Window {
    /// Window `k` (< [`WINDOWS`]).
    pub fn new(si: &StartInfo, k: u64) -> Option<Window> {
        if k >= WINDOWS {
            return None;
        }
        let stack_end = si.pt_base + (si.nr_pt_frames + 1) * 4096;
        let va = stack_end + WINDOW_OFFSET + k * 4096;
        let home = crate::smp::virt_to_mfn(si, va)?;
        let l1e = crate::pvmm::l1e_maddr(si, va)?;
        Some(Window {
            va,
            home,
            l1e,
            mapped: Some(true),
        })
    }

    /// Its virtual address.
    pub fn va(&self) -> u64 {
        self.va
    }

    /// Its own frame.
    pub fn home(&self) -> u64 {
        self.home
    }

    /// The machine address of its L1 entry.
    pub fn l1e(&self) -> u64 {
        self.l1e
    }

    /// Whether something is mapped, and writable.
    pub fn mapped(&self) -> Option<bool> {
        self.mapped
    }

    /// Maps frame `mfn` (its home, or a grant-table frame of this domain) with
    /// `update_va_mapping`, writable or not.
    fn map_frame(&mut self, mfn: u64, writable: bool) -> XenResult {
        let mut flags = pte::PRESENT | pte::ACCESSED;
        if writable {
            flags |= pte::RW | pte::DIRTY;
        }
        // SAFETY: the window holds no Rust object; only its mapping changes.
        let r = unsafe {
            hypercall::call(
                UPDATE_VA_MAPPING,
                [self.va, (mfn << 12) | flags, crate::mm::UVMF_INVLPG, 0, 0],
            )
        };
        if r.is_ok() {
            self.mapped = Some(writable);
        }
        r
    }

    /// Maps its home frame back, writable.
    pub fn map_home(&mut self) -> XenResult {
        let h = self.home;
        self.map_frame(h, true)
    }

    /// Reads byte `i` (`None` if nothing is mapped).
    pub fn byte(&self, i: usize) -> Option<u8> {
        self.mapped?;
        if i >= 4096 {
            return None;
        }
        // SAFETY: a frame is mapped at the window (tracked), `i` is inside it, and the window
        // holds no Rust object; the access is atomic.
        Some(unsafe { (*((self.va + i as u64) as *const AtomicU8)).load(Ordering::SeqCst) })
    }

    /// Writes byte `i`; false if nothing writable is mapped.
    pub fn set_byte(&self, i: usize, v: u8) -> bool {
        if self.mapped != Some(true) || i >= 4096 {
            return false;
        }
        // SAFETY: as for `byte`, and the mapping is writable.
        unsafe { (*((self.va + i as u64) as *const AtomicU8)).store(v, Ordering::SeqCst) };
        true
    }

    /// Fills the page with `f(i)`; false if nothing writable is mapped.
    pub fn fill(&self, f: impl Fn(usize) -> u8) -> bool {
        (0..4096).all(|i| self.set_byte(i, f(i)))
    }

    /// Whether every byte equals `f(i)`.
    pub fn holds(&self, f: impl Fn(usize) -> u8) -> bool {
        (0..4096).all(|i| self.byte(i) == Some(f(i)))
    }

    /// `GNTTABOP_map_grant_ref` of (`dom`, `gref`) at this window (`GNTMAP_host_map` plus
    /// `extra`: `GNTMAP_readonly`, `GNTMAP_contains_pte` (the window's L1 entry is given),
    /// `GNTMAP_device_map`). The call's result and the op as Xen wrote it back.
    pub fn map_grant(&mut self, dom: u16, gref: u32, extra: u32) -> (XenResult, GnttabMapGrantRef) {
        let flags =
            GNTMAP_HOST_MAP | (extra & (GNTMAP_READONLY | GNTMAP_CONTAINS_PTE | GNTMAP_DEVICE_MAP));
        let host_addr = if flags & GNTMAP_CONTAINS_PTE != 0 {
            self.l1e
        } else {
            self.va
        };
        let mut ops = [GnttabMapGrantRef {
            host_addr,
            flags,
            r#ref: gref,
            dom,
            status: 0x55,
            ..Default::default()
        }];
        let r = map_raw(&mut ops);
        if r.is_ok() && ops[0].status == GNTST_OKAY {
            self.mapped = Some(flags & GNTMAP_READONLY == 0);
        }
        let _ = crate::mm::invlpg_local(self.va);
        (r, ops[0])
    }

    /// `GNTTABOP_unmap_grant_ref` of `handle` mapped at this window (by linear address, or by
    /// its L1 entry with `by_pte`): the result and the status.
    pub fn unmap_grant(
        &mut self,
        handle: u32,
        by_pte: bool,
        dev_bus_addr: u64,
    ) -> (XenResult, i16) {
        let host_addr = if by_pte { self.l1e } else { self.va };
        let mut ops = [GnttabUnmapGrantRef {
            host_addr,
            dev_bus_addr,
            handle,
            status: 0x55,
        }];
        let r = unmap_ops(&mut ops);
        if r.is_ok() && ops[0].status == GNTST_OKAY {
            self.mapped = None;
        }
        let _ = crate::mm::invlpg_local(self.va);
        (r, ops[0].status)
    }

    /// `GNTTABOP_unmap_and_replace` of `handle` mapped at this window, moving `other`'s
    /// mapping into its slot (`other` is left unmapped): the result and the status.
    pub fn unmap_and_replace(&mut self, handle: u32, other: &mut Window) -> (XenResult, i16) {
        let mut op = GnttabUnmapAndReplace {
            host_addr: self.va,
            new_addr: other.va,
            handle,
            status: 0x55,
        };
        let r = op_one(GNTTABOP_UNMAP_AND_REPLACE, &mut op);
        let status = op.status;
        if r.is_ok() && status == GNTST_OKAY {
            self.mapped = other.mapped;
            other.mapped = None;
        }
        let _ = crate::mm::invlpg_local(self.va);
        let _ = crate::mm::invlpg_local(other.va);
        (r, status)
    }

    /// Maps grant-table frame `mfn` of this domain here, writable, as a [`GrantFrame`].
    pub fn into_grant_frame(mut self, mfn: u64) -> Result<GrantFrame, (Errno, Window)> {
        match self.map_frame(mfn, true) {
            Ok(_) => Ok(GrantFrame { win: self }),
            Err(e) => Err((e, self)),
        }
    }
}

/// `GNTTABOP_map_grant_ref` of a batch (refusal and batch tests): host mappings only by
/// linear address at a window (others are refused here with `-EPERM` before any call; see
/// [`init_windows`]); the windows do not learn what got mapped.
pub fn map_ops(ops: &mut [GnttabMapGrantRef]) -> XenResult {
    let base = window_base();
    for op in ops.iter() {
        let at_window = base != 0
            && op.flags & GNTMAP_CONTAINS_PTE == 0
            && (base..base + WINDOWS * 4096).contains(&op.host_addr);
        if op.flags & GNTMAP_HOST_MAP != 0 && !at_window {
            return Err(Errno::EPERM);
        }
    }
    map_raw(ops)
}

fn map_raw(ops: &mut [GnttabMapGrantRef]) -> XenResult {
    op_slice(GNTTABOP_MAP_GRANT_REF, ops)
}

/// `GNTTABOP_unmap_grant_ref` of a batch (Xen only removes mappings that match the handles'
/// grants exactly).
pub fn unmap_ops(ops: &mut [GnttabUnmapGrantRef]) -> XenResult {
    op_slice(GNTTABOP_UNMAP_GRANT_REF, ops)
}

static WINDOW_BASE: AtomicU64 = AtomicU64::new(0);

fn window_base() -> u64 {
    WINDOW_BASE.load(Ordering::SeqCst)
}

/// Records where this domain's windows are (call once with the start info before
/// [`map_ops`] is used with host mappings).
pub fn init_windows(si: &StartInfo) {
    let stack_end = si.pt_base + (si.nr_pt_frames + 1) * 4096;
    WINDOW_BASE.store(stack_end + WINDOW_OFFSET, Ordering::SeqCst);
}

/// One side of a grant copy.
#[derive(Clone, Copy)]
pub enum CopySide<'a> {
    /// A grant reference of domain `dom`.
    Gref {
        /// Granting domain (or DOMID_SELF).
        dom: u16,
        /// The reference.
        gref: u32,
        /// Byte offset.
        offset: u16,
    },
    /// A window's own frame, named with `dom` (Xen allows only DOMID_SELF).
    Frame {
        /// The window.
        win: &'a Window,
        /// Domain id given with it.
        dom: u16,
        /// Byte offset.
        offset: u16,
    },
    /// A frame number this domain does not own, read-only use (refusal tests).
    Foreign {
        /// The frame.
        mfn: u64,
        /// Byte offset.
        offset: u16,
    },
}

fn copy_ptr(s: &CopySide<'_>) -> (GnttabCopyPtr, bool) {
    match *s {
        CopySide::Gref { dom, gref, offset } => (
            GnttabCopyPtr {
                u: u64::from(gref),
                domid: dom,
                offset,
            },
            true,
        ),
        CopySide::Frame { win, dom, offset } => (
            GnttabCopyPtr {
                u: win.home,
                domid: dom,
                offset,
            },
            false,
        ),
        CopySide::Foreign { mfn, offset } => (
            GnttabCopyPtr {
                u: mfn,
                domid: crate::mm::DOMID_SELF,
                offset,
            },
            false,
        ),
    }
}

/// One `GNTTABOP_copy` of `len` bytes: the call's result and the op's status. A foreign
/// frame may only be a source.
pub fn copy(src: CopySide<'_>, dst: CopySide<'_>, len: u16) -> (XenResult, i16) {
    if matches!(dst, CopySide::Foreign { .. }) {
        return (Err(Errno::EPERM), 0);
    }
    let (s, sg) = copy_ptr(&src);
    let (d, dg) = copy_ptr(&dst);
    let mut flags = 0;
    if sg {
        flags |= GNTCOPY_SOURCE_GREF;
    }
    if dg {
        flags |= GNTCOPY_DEST_GREF;
    }
    let mut op = GnttabCopy {
        source: s,
        dest: d,
        len,
        flags,
        status: 0x55,
    };
    let r = op_one(GNTTABOP_COPY, &mut op);
    (r, op.status)
}

/// A grant-table frame of this domain mapped at a window: its v1 entries.
pub struct GrantFrame {
    win: Window,
}

impl GrantFrame {
    fn word(&self, gref: u32) -> Option<&AtomicU64> {
        if gref >= 512 {
            return None;
        }
        // SAFETY: the window maps the grant-table frame writable (checked when it was made),
        // the entry is inside it and 8-aligned; grant entries are shared with Xen and always
        // accessed atomically.
        Some(unsafe { &*((self.win.va + u64::from(gref) * 8) as *const AtomicU64) })
    }

    fn combo(&self, gref: u32) -> Option<&AtomicU32> {
        if gref >= 512 {
            return None;
        }
        // SAFETY: as for `word`: the first 4 bytes of the entry (flags and domid).
        Some(unsafe { &*((self.win.va + u64::from(gref) * 8) as *const AtomicU32) })
    }

    /// Writes entry `gref`: grants `frame` to `domid` with `flags` (frame first, then the
    /// flags, as a grantor must).
    pub fn set(&self, gref: u32, flags: u16, domid: u16, frame: u32) -> bool {
        let (Some(w), Some(c)) = (self.word(gref), self.combo(gref)) else {
            return false;
        };
        w.store(u64::from(frame) << 32, Ordering::SeqCst);
        c.store(
            u32::from(flags) | (u32::from(domid) << 16),
            Ordering::SeqCst,
        );
        true
    }

    /// Entry `gref`: (flags, domid, frame).
    pub fn get(&self, gref: u32) -> Option<(u16, u16, u32)> {
        let w = self.word(gref)?.load(Ordering::SeqCst);
        Some((w as u16, (w >> 16) as u16, (w >> 32) as u32))
    }

    /// Ends access through `gref` as Linux's `gnttab_end_foreign_access_ref` does: clears the
    /// flags with a cmpxchg unless Xen has the entry in use (`GTF_reading`/`GTF_writing`);
    /// Err(flags) then.
    pub fn revoke(&self, gref: u32) -> Result<(), u16> {
        let Some(c) = self.combo(gref) else {
            return Err(0);
        };
        let mut cur = c.load(Ordering::SeqCst);
        loop {
            let flags = cur as u16;
            if flags & (GTF_READING | GTF_WRITING) != 0 {
                return Err(flags);
            }
            match c.compare_exchange(cur, cur & 0xffff_0000, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// The window back (the grant-table frame stays mapped until the window is remapped).
    pub fn into_window(self) -> Window {
        self.win
    }
}
