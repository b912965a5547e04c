//! PV memory management: who owns each machine frame, what it is used as, and who refers to
//! it — Xen's `struct page_info`, the p2m and the M2P — plus page-table validation.
//!
//! Every frame a domain can touch has a [`PageInfo`] in [`crate::hv::HvState::frames`]: its owner, a
//! general reference count (the allocation reference, one per mapping, one per reference from
//! a higher-level table, CR3 or a pin), a type (writable, L1–L4, segment descriptor) with a
//! type count, and the validated/pinned flags. The invariant Xen's PV model rests on: a frame
//! is never at once of writable type with a non-zero count (i.e. writably mapped) and a page
//! table. Page-table contents are machine memory: entries are read through the input log and
//! written through [`crate::effect::Effect::WriteMachine`].
//!
//! # What the embedder (the bare-metal side) provides and applies
//!
//! - At boot, [`set_host_memory`]: `max_page`, the host E820, the frames of the M2P table and
//!   the I/O frames reserved to the hypervisor (`io_deny`: local APIC, IO-APICs, ...).
//! - For each PV domain it builds, [`register_pv_domain`] with the builder's p2m, shared_info
//!   frame and page-table plan (dom0: `max_pages: Some(DOM0_MAX_PAGES)`); it writes the M2P
//!   entries of those frames and the hypervisor's L4 slots of the root itself, as the builder
//!   already does. [`destroy_domain_memory`] gives the frames back when a domain dies.
//! - `Env::read_machine` must let handlers read every frame a domain owns (page tables,
//!   shared_info): validation reads whole tables through the input log.
//! - [`crate::hv::value_kind::ALLOC_FRAME`] `+ order`: the leader's allocator hands out the
//!   first of 2^order contiguous, naturally aligned, zeroed frames (logged, so the follower
//!   sees the same mfn; [`NO_FRAME`] when none is left). A frame stays allocated only if a
//!   committed [`crate::effect::MmEffect::FramesAllocated`] names it; frames handed out in a
//!   transaction that is rolled back, or not confirmed, go back to the allocator.
//! - After commit, the [`crate::effect::MmEffect`]s: `FlushTlb` (the vCPUs' TLBs, one page or
//!   all), `SetCr3` (reload the calling vCPU's CR3 for its current mode), `XenL4Slots` (write
//!   the hypervisor's slots 256..=271 into a new root, slot 256 = the read-only M2P when
//!   `ro_m2p`), `LoadLdt`, `ClearPage`, `CopyPage`, `FlushCache`, `SetM2p` (the guest-visible
//!   M2P table), `FreeFrames` (back to the allocator, M2P entries invalidated) and
//!   `FramesAllocated`.
//! - VCPUOP_initialise and vCPU resets take and drop base-pointer references with
//!   [`vcpu_base::install`] / [`vcpu_base::release`]; the #PF path may emulate a kernel's
//!   write to one of its L1 tables with [`pt::emulate_l1_write`] (writable page tables).
//! - A frame a guest hands over for the hypervisor to write into by machine address for as
//!   long as it stays registered (a vcpu_info, FIFO event channel pages; the PIRQ EOI bitmap
//!   does the same by hand) is taken with [`frame::map_guest_page`] — the caller's own, typed
//!   writable, -EINVAL otherwise — and given back with [`frame::unmap_guest_page`].
//!
//! Deliberate simplifications against Xen: validation is never preempted (a whole table is
//! validated inside one transaction; long batches continue after [`OPS_PER_CALL`] operations);
//! iomem rights are "privileged domain, minus `io_deny`"; builder-made superpage and p2m
//! mappings hold one reference per page, so tearing them down balances.
//!
//! # Cost of a page-table update (issue 4, measurement log)
//!
//! The bench guest's `mmu_update64` (one `mmu_update` of 64 `MMU_NORMAL_PT_UPDATE`s of one
//! L1 entry; Xen 4.17 ~47k TCG cycles a call, ~730 an update) cost ~534k lockstep off, ~8,300
//! an update. rdtsc checkpoints on a scratch copy (never committed; ~200 cycles each taken
//! off) found, per update: ~2,100 reading the 16-byte request (two walks of the guest's
//! tables, each frame check a lock of the frame allocator), ~3,900 in each of `get_page` and
//! `put_page` (the frame's record checksummed byte by byte, ~600 a checksum, four an update;
//! the key hashed four times; three frame-table lookups), ~560 looking the frame up again.
//! After: integers folded into CRC-32C straight from their value (`lockstep::Hasher::
//! write_int`), one lookup and one key hash per journaled map update (`JMap::update_if`,
//! [`frame::get_page_info`]), requests read a page's worth at a time, one walk under one lock
//! per guest copy (`arch::guestmem`). Profile after, per update: two frame-table updates
//! ~1,200 each (of which checksums ~300 each, lookup ~220, undo record ~200, journal record
//! ~190), the entry read and write ~500, the request ~300, the committed write ~160. Bench,
//! busy shared host (load 6-10), medians of 4 interleaved runs, lockstep off: mmu_update64
//! ~1.0M/~560k (load-dependent) -> ~310k/~225k, gnttab_copy ~30k -> ~21k (its 4 KiB copy one
//! frame-to-frame move, no grant-table clone); lockstep on: mmu_update64 ~1.7-3.0M -> ~1.0-2.0M.
//! Left: the per-object checksums and the frame table's `BTreeMap` lookups are most of what
//! remains; a dense frame table would remove the lookups. Tried and dropped: a journal that
//! does not hash its writes in a single execution (whose write digest nobody reads) measured
//! 213-219k against 220-224k, within the noise, for a change to the engine's journal.

pub mod build;
#[cfg(test)]
mod builder_tests;
#[cfg(test)]
mod desc_tests;
pub mod env;
#[cfg(test)]
pub(crate) mod fixture;
pub mod frame;
#[cfg(test)]
mod guest_page_tests;
#[cfg(test)]
mod lockstep_tests;
#[cfg(test)]
mod op_tests;
#[cfg(test)]
mod prop_tests;
pub mod pt;
#[cfg(test)]
pub(crate) mod testenv;
#[cfg(test)]
mod tests;
pub mod vcpu_base;
#[cfg(test)]
mod zombie_tests;

use crate::effect::DomId;
use alloc::vec::Vec;
use dom0_interface::memory::E820Entry;
use lockstep::{Hasher, Value};

pub use crate::hypercall::mmu::OPS_PER_CALL;
pub use build::{destroy_domain_memory, register_pv_domain, DomainMemory, MmError, DOM0_MAX_PAGES};
pub use env::{CtxEnv, MmEnv};
pub use frame::{
    get_page, get_page_and_type, get_page_type, put_page, put_page_and_type, put_page_type,
};

/// The M2P entry of a frame without a pfn (`INVALID_M2P_ENTRY`).
pub const INVALID_M2P: u64 = !0;
/// What [`crate::hv::value_kind::ALLOC_FRAME`] answers when no frame is free.
pub const NO_FRAME: u64 = !0;
/// Start of the read-only M2P table in every 64-bit PV guest (`RO_MPT_VIRT_START`).
pub const RO_MPT_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End of the read-only M2P table (`RO_MPT_VIRT_END`: 256 GiB, half of L4 slot 256).
pub const RO_MPT_VIRT_END: u64 = 0xffff_8040_0000_0000;
/// `MACH2PHYS_NR_ENTRIES`: M2P entries the virtual range can hold.
pub const MACH2PHYS_NR_ENTRIES: u64 = (RO_MPT_VIRT_END - RO_MPT_VIRT_START) / 8;
/// Physical address bits of a PTE's frame field (bits 12..51).
pub const PADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// What a frame is used as (Xen's `PGT_*` types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageType {
    /// No type yet (`PGT_none`).
    #[default]
    None,
    /// Writable data (`PGT_writable_page`).
    Writable,
    /// L1 page table.
    L1,
    /// L2 page table.
    L2,
    /// L3 page table.
    L3,
    /// L4 page table (the root of a 64-bit PV guest).
    L4,
    /// GDT/LDT page (`PGT_seg_desc_page`).
    SegDesc,
}

impl PageType {
    fn code(self) -> u8 {
        match self {
            PageType::None => 0,
            PageType::Writable => 1,
            PageType::L1 => 2,
            PageType::L2 => 3,
            PageType::L3 => 4,
            PageType::L4 => 5,
            PageType::SegDesc => 6,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => PageType::Writable,
            2 => PageType::L1,
            3 => PageType::L2,
            4 => PageType::L3,
            5 => PageType::L4,
            6 => PageType::SegDesc,
            _ => PageType::None,
        }
    }

    /// Whether the type is a page-table level.
    pub fn is_page_table(self) -> bool {
        matches!(
            self,
            PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4
        )
    }

    /// The page-table type of level `level` (1..=4).
    pub fn table(level: u8) -> Option<Self> {
        match level {
            1 => Some(PageType::L1),
            2 => Some(PageType::L2),
            3 => Some(PageType::L3),
            4 => Some(PageType::L4),
            _ => None,
        }
    }

    /// The level of a page-table type.
    pub fn level(self) -> Option<u8> {
        match self {
            PageType::L1 => Some(1),
            PageType::L2 => Some(2),
            PageType::L3 => Some(3),
            PageType::L4 => Some(4),
            _ => None,
        }
    }
}

impl Value for PageType {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.code());
    }
    fn bit_len(&self) -> u64 {
        3
    }
    fn flip_bit(&mut self, bit: u64) {
        if bit < 3 {
            *self = PageType::from_code(self.code() ^ (1 << bit));
        }
    }
}

/// One machine frame (Xen's `struct page_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// Owning domain.
    pub owner: DomId,
    /// General references, including the allocation reference (`PGC_count_mask`).
    pub count: u32,
    /// Still allocated to the owner (`PGC_allocated`); false once released, the frame lives
    /// on until its last reference goes.
    pub allocated: bool,
    /// Current type (meaningful while `type_count > 0`; kept afterwards like Xen).
    pub ty: PageType,
    /// Type references (`PGT_count_mask`).
    pub type_count: u32,
    /// Contents validated for `ty` (`PGT_validated`).
    pub validated: bool,
    /// Pinned by the guest (`PGT_pinned`; holds one general and one type reference).
    pub pinned: bool,
    /// A hypervisor page shared with the guest (shared_info): permanently writable, not part
    /// of the domain's reservation, cache attributes fixed.
    pub special: bool,
    /// Linear page-table use: > 0 entries of this table map same-level tables, < 0 this table
    /// is mapped that way by others (`linear_pt_count`).
    pub linear: i32,
    /// The M2P entry: the pfn this frame backs, or [`INVALID_M2P`].
    pub m2p: u64,
}
impl PageInfo {
    /// A freshly allocated hypervisor page shared with `owner` (shared_info, grant-table
    /// frames): one allocation reference, writable with one type reference, validated,
    /// `special`, no M2P entry.
    pub fn shared_with(owner: DomId) -> Self {
        PageInfo {
            owner,
            count: 1,
            allocated: true,
            ty: PageType::Writable,
            type_count: 1,
            validated: true,
            special: true,
            m2p: INVALID_M2P,
            ..PageInfo::default()
        }
    }
}

/// The bits of a [`PageInfo`] in the order [`Value::flip_bit`] numbers them: owner 16,
/// count 32, allocated 1, ty 3, type_count 32, validated 1, pinned 1, special 1, linear 32,
/// m2p 64.
const PAGE_INFO_BITS: u64 = 16 + 32 + 1 + 3 + 32 + 1 + 1 + 1 + 32 + 64;

impl Value for PageInfo {
    /// Every field's bits, each in a bit of its own, packed into three words: three 8-byte
    /// folds instead of ten folds of 1 to 8 bytes. The frame table holds one object per
    /// machine frame; its checksums are recomputed at every journaled write and by every
    /// scrub step, where the field-by-field digest was the largest single cost.
    fn digest(&self, h: &mut Hasher) {
        let flags = u64::from(self.allocated)
            | u64::from(self.validated) << 1
            | u64::from(self.pinned) << 2
            | u64::from(self.special) << 3;
        h.write_u64(
            u64::from(self.owner)
                | u64::from(self.count) << 16
                | flags << 48
                | u64::from(self.ty.code()) << 52,
        );
        h.write_u64(u64::from(self.type_count) | u64::from(self.linear as u32) << 32);
        h.write_u64(self.m2p);
    }
    fn bit_len(&self) -> u64 {
        PAGE_INFO_BITS
    }
    fn flip_bit(&mut self, bit: u64) {
        match bit {
            0..16 => self.owner ^= 1 << bit,
            16..48 => self.count ^= 1 << (bit - 16),
            48 => self.allocated = !self.allocated,
            49..52 => self.ty.flip_bit(bit - 49),
            52..84 => self.type_count ^= 1 << (bit - 52),
            84 => self.validated = !self.validated,
            85 => self.pinned = !self.pinned,
            86 => self.special = !self.special,
            87..119 => self.linear ^= 1 << (bit - 87),
            119..183 => self.m2p ^= 1 << (bit - 119),
            _ => {}
        }
    }
}

/// Per-domain memory bookkeeping beyond `Domain`'s page counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomMm {
    /// The pseudo-physical memory map `XENMEM_memory_map` returns (empty: -ENOSYS, as Xen
    /// answers a PV domain whose toolstack set none); set with `XENMEM_set_memory_map`.
    pub e820: Vec<E820Entry>,
    /// The domain's shared_info frame (its `arch.max_pfn` answers `XENMEM_maximum_gpfn`).
    pub shared_info: Option<u64>,
}

/// Bits of one E820 entry in a digest.
const E820_BITS: u64 = 160;

fn e820_digest(v: &[E820Entry], h: &mut Hasher) {
    h.write_u64(v.len() as u64);
    for e in v {
        e820_fields(e).digest(h);
    }
}

fn e820_flip(v: &mut [E820Entry], bit: u64) {
    let i = (bit / E820_BITS) as usize;
    let b = bit % E820_BITS;
    if let Some(e) = v.get_mut(i) {
        let (mut a, mut s, mut t) = e820_fields(e);
        match b {
            0..=63 => a ^= 1 << b,
            64..=127 => s ^= 1 << (b - 64),
            _ => t ^= 1 << (b - 128),
        }
        *e = E820Entry {
            addr: a,
            size: s,
            r#type: t,
        };
    }
}

impl Value for DomMm {
    fn digest(&self, h: &mut Hasher) {
        e820_digest(&self.e820, h);
        self.shared_info.digest(h);
    }
    fn bit_len(&self) -> u64 {
        self.e820.len() as u64 * E820_BITS + self.shared_info.bit_len()
    }
    fn flip_bit(&mut self, bit: u64) {
        let n = self.e820.len() as u64 * E820_BITS;
        if bit < n {
            e820_flip(&mut self.e820, bit);
        } else {
            self.shared_info.flip_bit(bit - n);
        }
    }
}

fn e820_fields(e: &E820Entry) -> (u64, u64, u32) {
    let E820Entry { addr, size, r#type } = *e;
    (addr, size, r#type)
}

/// Host facts the memory hypercalls report (set at boot by the embedder).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MmConfig {
    /// One past the highest RAM frame (`max_page`): frames below are RAM (`mfn_valid`),
    /// frames above are MMIO that only a domain with I/O memory rights may map.
    pub max_page: u64,
    /// The host's E820 map (`XENMEM_machine_memory_map`).
    pub machine_e820: Vec<E820Entry>,
    /// Frames backing the M2P table, one per 2 MiB of it (`XENMEM_machphys_mfn_list`).
    pub m2p_frames: Vec<u64>,
    /// I/O frame ranges (inclusive) no guest may map, not even dom0: the hypervisor's own
    /// devices (local APIC, IO-APICs, HPET...), as Xen removes them from dom0's iomem rights.
    pub io_deny: Vec<(u64, u64)>,
}

impl MmConfig {
    /// Whether `mfn` is RAM (`mfn_valid`). With no `max_page` configured every frame counts
    /// as RAM, so nothing unowned can be mapped.
    pub fn is_ram(&self, mfn: u64) -> bool {
        self.max_page == 0 || mfn < self.max_page
    }

    /// Whether `mfn`, below `max_page`, is I/O memory rather than RAM: the first MiB (Xen:
    /// "historically marked as I/O"; the hypervisor's frame pool never uses it) and what the
    /// machine's memory map does not call RAM (holes, reserved and ACPI memory). Xen's
    /// `arch_init_memory` gives such frames to `dom_io`, so a domain with I/O rights maps
    /// them as I/O memory (Linux dom0 reads the BIOS's DMI tables at 0xf0000 this way and
    /// maps the first MiB 1:1). A frame any usable range touches is RAM; with no memory map
    /// nothing is.
    pub fn is_io_hole(&self, mfn: u64) -> bool {
        let (start, end) = (mfn << 12, (mfn << 12).saturating_add(4096));
        !self.machine_e820.is_empty()
            && (mfn < 0x100
                || !self.machine_e820.iter().any(|e| {
                    e.r#type == dom0_interface::memory::E820_RAM
                        && e.addr < end
                        && e.addr.saturating_add(e.size) > start
                }))
    }

    /// Whether I/O frame `mfn` is reserved to the hypervisor.
    pub fn io_denied(&self, mfn: u64) -> bool {
        self.io_deny.iter().any(|&(s, e)| (s..=e).contains(&mfn))
    }
}

/// Sets the host memory facts the handlers use (at boot, before the first transaction).
pub fn set_host_memory(st: &mut crate::hv::HvState, j: &mut lockstep::Journal, c: MmConfig) {
    st.mm_config.set(j, c);
}

impl Value for MmConfig {
    fn digest(&self, h: &mut Hasher) {
        self.max_page.digest(h);
        e820_digest(&self.machine_e820, h);
        self.m2p_frames.digest(h);
        self.io_deny.digest(h);
    }
    fn bit_len(&self) -> u64 {
        64 + self.machine_e820.len() as u64 * E820_BITS
            + self.m2p_frames.bit_len()
            + self.io_deny.bit_len()
    }
    fn flip_bit(&mut self, bit: u64) {
        if bit < 64 {
            self.max_page ^= 1 << bit;
            return;
        }
        let bit = bit - 64;
        let e_bits = self.machine_e820.len() as u64 * E820_BITS;
        if bit < e_bits {
            e820_flip(&mut self.machine_e820, bit);
        } else if bit - e_bits < self.m2p_frames.bit_len() {
            self.m2p_frames.flip_bit(bit - e_bits);
        } else {
            let b = bit - e_bits - self.m2p_frames.bit_len();
            self.io_deny.flip_bit(b);
        }
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;
    use lockstep::value::checksum;

    #[test]
    fn every_bit_flip_of_mm_state_is_detected() {
        let page = PageInfo {
            owner: 3,
            count: 4,
            allocated: true,
            ty: PageType::L2,
            type_count: 2,
            validated: true,
            pinned: true,
            special: false,
            linear: -1,
            m2p: 77,
        };
        let dm = DomMm {
            e820: alloc::vec![E820Entry {
                addr: 0x1000,
                size: 0x2000,
                r#type: 1
            }],
            shared_info: Some(0x55),
        };
        let cfg = MmConfig {
            max_page: 0x4000,
            machine_e820: dm.e820.clone(),
            m2p_frames: alloc::vec![9],
            io_deny: alloc::vec![(1, 2)],
        };
        fn all<T: Value + Clone + PartialEq + core::fmt::Debug>(v: &T) {
            let c0 = checksum(v);
            for bit in 0..v.bit_len() {
                let mut w = v.clone();
                w.flip_bit(bit);
                assert_ne!(&w, v, "flip {bit} changed nothing");
                assert_ne!(checksum(&w), c0, "flip {bit} not detected");
            }
        }
        all(&page);
        all(&dm);
        all(&cfg);
    }
}
