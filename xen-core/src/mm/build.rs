//! The builder's side of memory management: registering a freshly built PV domain's frames,
//! bootstrap page tables and shared_info page with the reference counts Xen's dom0 builder
//! leaves, and the destroy path that gives every frame back.

use super::{PageInfo, PageType};
use crate::effect::DomId;
use crate::hv::HvState;
use crate::pv_layout::{PageTablePlan, PtLevel, PTE_RW};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use lockstep::Journal;

/// Why registering a domain's memory failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The domain does not exist.
    NoSuchDomain(DomId),
    /// A frame is already owned (by this or another domain).
    FrameInUse(u64),
    /// A pfn of the plan has no frame.
    PfnOutOfRange(u64),
    /// The plan maps a page-table frame writable (Xen's builder maps them read-only).
    WritableTable(u64),
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::NoSuchDomain(d) => write!(f, "mm: no domain d{d}"),
            MmError::FrameInUse(m) => write!(f, "mm: frame {m:#x} is already owned"),
            MmError::PfnOutOfRange(p) => write!(f, "mm: pfn {p:#x} has no frame"),
            MmError::WritableTable(p) => {
                write!(f, "mm: page-table frame at pfn {p:#x} mapped writable")
            }
        }
    }
}

/// What the builder hands over.
pub struct DomainMemory<'a> {
    /// The domain (already created).
    pub dom: DomId,
    /// pfn → mfn of every page of the domain.
    pub p2m: &'a [u64],
    /// The shared_info frame (a hypervisor page shared with the domain).
    pub shared_info_mfn: u64,
    /// The bootstrap page tables (pfns), root first: the root becomes vCPU 0's CR3, pinned.
    pub plan: &'a PageTablePlan,
    /// The domain's `max_pages` (maximum_reservation); None keeps the domain's own value.
    /// Xen leaves dom0 at `~0U` (4294967295), which its guests see.
    pub max_pages: Option<u64>,
}

/// `max_pages` of Xen's dom0.
pub const DOM0_MAX_PAGES: u64 = u32::MAX as u64;

fn level_type(l: PtLevel) -> PageType {
    match l {
        PtLevel::L1 => PageType::L1,
        PtLevel::L2 => PageType::L2,
        PtLevel::L3 => PageType::L3,
        PtLevel::L4 => PageType::L4,
    }
}

fn bump(
    frames: &mut BTreeMap<u64, PageInfo>,
    mfn: u64,
    refs: u32,
    ty: Option<PageType>,
) -> Option<()> {
    let p = frames.get_mut(&mfn)?;
    p.count += refs;
    if let Some(t) = ty {
        p.ty = t;
        p.type_count += 1;
        p.validated = true;
    }
    Some(())
}

/// Registers a built PV domain's memory: every pfn's frame owned by `m.dom` with its M2P
/// entry and p2m; the page-table frames typed and validated, each holding one general and
/// one type reference per entry that points at it; every mapped page one general reference
/// per mapping (plus a writable type reference if mapped writable); the root also referenced
/// by vCPU 0's CR3 and pinned (Xen's `PGC_allocated | 4`, type count 2); shared_info as a
/// permanently writable hypervisor page. `tot_pages` becomes the number of pfns. Nothing is
/// changed on error.
pub fn register_pv_domain(
    st: &mut HvState,
    j: &mut Journal,
    m: &DomainMemory<'_>,
) -> Result<(), MmError> {
    if !st.domains.contains_key(&m.dom) {
        return Err(MmError::NoSuchDomain(m.dom));
    }
    let mut frames: BTreeMap<u64, PageInfo> = BTreeMap::new();
    for (pfn, &mfn) in m.p2m.iter().enumerate() {
        if st.frames.contains_key(&mfn) || frames.contains_key(&mfn) || mfn == m.shared_info_mfn {
            return Err(MmError::FrameInUse(mfn));
        }
        frames.insert(
            mfn,
            PageInfo {
                owner: m.dom,
                count: 1,
                allocated: true,
                m2p: pfn as u64,
                ..PageInfo::default()
            },
        );
    }
    if st.frames.contains_key(&m.shared_info_mfn) {
        return Err(MmError::FrameInUse(m.shared_info_mfn));
    }
    let mfn_of = |pfn: u64| -> Result<u64, MmError> {
        usize::try_from(pfn)
            .ok()
            .and_then(|i| m.p2m.get(i).copied())
            .ok_or(MmError::PfnOutOfRange(pfn))
    };
    let mut table_level: BTreeMap<u64, PageType> = BTreeMap::new();
    for f in &m.plan.frames {
        table_level.insert(mfn_of(f.pfn)?, level_type(f.level));
    }
    for e in &m.plan.entries {
        if e.is_leaf() {
            let pages = e.leaf_span() / 4096;
            for k in 0..pages {
                let mfn = mfn_of(e.target_pfn + k)?;
                let rw = e.flags & PTE_RW != 0;
                if rw && table_level.contains_key(&mfn) {
                    return Err(MmError::WritableTable(e.target_pfn + k));
                }
                bump(&mut frames, mfn, 1, rw.then_some(PageType::Writable))
                    .ok_or(MmError::PfnOutOfRange(e.target_pfn + k))?;
            }
        } else {
            let target = mfn_of(e.target_pfn)?;
            let ty = table_level.get(&target).copied();
            bump(&mut frames, target, 1, ty).ok_or(MmError::PfnOutOfRange(e.target_pfn))?;
        }
    }
    let root = mfn_of(m.plan.root_pfn)?;
    // CR3 and the pin: two general and two type references on the root.
    bump(&mut frames, root, 1, Some(PageType::L4))
        .ok_or(MmError::PfnOutOfRange(m.plan.root_pfn))?;
    bump(&mut frames, root, 1, Some(PageType::L4))
        .ok_or(MmError::PfnOutOfRange(m.plan.root_pfn))?;
    if let Some(p) = frames.get_mut(&root) {
        p.pinned = true;
    }
    // Tables that nothing references yet still carry their type (validated by the builder).
    for (mfn, ty) in &table_level {
        if let Some(p) = frames.get_mut(mfn) {
            p.ty = *ty;
            p.validated = true;
        }
    }
    for (mfn, info) in frames {
        st.frames.insert(j, mfn, info);
    }
    for (pfn, &mfn) in m.p2m.iter().enumerate() {
        st.p2m.insert(j, (m.dom, pfn as u64), mfn);
    }
    st.frames
        .insert(j, m.shared_info_mfn, PageInfo::shared_with(m.dom));
    let n = m.p2m.len() as u64;
    let max = m.max_pages;
    st.domains.update(j, &m.dom, |d| {
        d.tot_pages = n;
        d.max_pages = max.unwrap_or(d.max_pages).max(n);
    });
    st.vcpus.update(j, &(m.dom, 0), |v| v.cr3 = root << 12);
    let mut dm = st.mm_domains.get(&m.dom).cloned().unwrap_or_default();
    dm.shared_info = Some(m.shared_info_mfn);
    st.mm_domains.insert(j, m.dom, dm);
    Ok(())
}

/// Destroys `dom`'s memory: drops every reference its page tables, CR3s and pins hold,
/// releases its allocation, and returns the frames that are now free (all of its frames,
/// except those still mapped by another domain's page tables: they follow, through
/// `Effect::FreeFrames`, when the last such mapping goes). `dom`'s `tot_pages` is left at
/// the number of its non-special frames still mapped that way (Xen's count for a dying
/// domain that cannot go yet).
pub fn destroy_domain_memory(st: &mut HvState, j: &mut Journal, dom: DomId) -> Vec<u64> {
    let mut freed = Vec::new();
    // References dom's tables hold on other domains' frames.
    let held: Vec<((DomId, u64), (u32, u32))> = st
        .mm_foreign
        .iter()
        .filter(|((h, _), _)| *h == dom)
        .map(|(k, v)| (*k, *v))
        .collect();
    for (key, (refs, writable)) in held {
        st.mm_foreign.remove(j, &key);
        let mfn = key.1;
        let left = st.frames.update(j, &mfn, |p| {
            p.count = p.count.saturating_sub(refs);
            p.type_count = p.type_count.saturating_sub(writable);
            p.count
        });
        if left == Some(0) {
            if let Some(p) = st.frames.remove(j, &mfn) {
                crate::mm::frame::frame_gone(st, j, &p);
            }
            freed.push(mfn);
        }
    }
    // References other domains hold on dom's frames.
    let mut from_others: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for ((_, mfn), (r, w)) in st.mm_foreign.iter() {
        let e = from_others.entry(*mfn).or_insert((0, 0));
        e.0 += r;
        e.1 += w;
    }
    let owned: Vec<u64> = st
        .frames
        .iter()
        .filter(|(_, p)| p.owner == dom)
        .map(|(m, _)| *m)
        .collect();
    let mut held = 0;
    for mfn in owned {
        match from_others.get(&mfn) {
            Some(&(r, w)) if r > 0 => {
                let special = st.frames.update(j, &mfn, |p| {
                    p.count = r;
                    p.allocated = false;
                    p.pinned = false;
                    p.linear = 0;
                    p.type_count = w;
                    p.ty = if w > 0 {
                        PageType::Writable
                    } else {
                        PageType::None
                    };
                    p.validated = w > 0;
                    p.special
                });
                held += u64::from(special == Some(false));
            }
            _ => {
                st.frames.remove(j, &mfn);
                freed.push(mfn);
            }
        }
    }
    let pfns: Vec<(DomId, u64)> = st
        .p2m
        .iter()
        .filter(|((d, _), _)| *d == dom)
        .map(|(k, _)| *k)
        .collect();
    for k in pfns {
        st.p2m.remove(j, &k);
    }
    st.mm_domains.remove(j, &dom);
    st.domains.update(j, &dom, |d| d.tot_pages = held);
    let vcpus: Vec<_> = st
        .vcpus
        .iter()
        .filter(|(k, _)| k.0 == dom)
        .map(|(k, _)| *k)
        .collect();
    for k in vcpus {
        st.vcpus.update(j, &k, |v| {
            v.cr3 = 0;
            v.user_cr3 = 0;
        });
    }
    freed
}
