//! Page-table validation as Xen's x86/mm.c does it for 64-bit PV guests: what each entry may
//! hold (`get_page_from_l1e` .. `get_page_from_l4e`), the references an entry holds and drops
//! (`put_page_from_l*e`), linear (recursive) mappings, whole-table promotion and demotion on
//! type change, single-entry updates (`mod_l1_entry` .. `mod_l4_entry`) and the walk to the L1
//! entry of a virtual address (`map_guest_l1e`).

use super::env::MmEnv;
use super::frame::{get_page, get_page_type, put_page, put_page_type_from, with_frame};
use super::{PageType, PADDR_MASK};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{HvError, HvState};
use dom0_interface::errno::XenErrno;

/// PTE bit: present.
pub const P: u64 = 1 << 0;
/// PTE bit: writable.
pub const RW: u64 = 1 << 1;
/// PTE bit: user.
pub const US: u64 = 1 << 2;
/// PTE bit: write-through.
pub const PWT: u64 = 1 << 3;
/// PTE bit: cache disable.
pub const PCD: u64 = 1 << 4;
/// PTE bit: accessed.
pub const A: u64 = 1 << 5;
/// PTE bit: dirty.
pub const D: u64 = 1 << 6;
/// PTE bit 7: PAT in an L1 entry, PSE (superpage) above.
pub const PSE: u64 = 1 << 7;
/// PTE bit: global.
pub const G: u64 = 1 << 8;
/// PTE bits 9..11, available to software.
pub const AVAIL: u64 = 0x7 << 9;
/// PTE bits 52..62, available to guest software on x86-64.
pub const AVAIL_HIGH: u64 = 0x7ff << 52;
/// `_PAGE_GUEST_KERNEL` (bit 52): Xen's mark of a guest-kernel mapping.
pub const GUEST_KERNEL: u64 = 1 << 52;
/// PTE bit: no-execute.
pub const NX: u64 = 1 << 63;
/// All flag bits (12 low, 12 high).
const FLAG_BITS: u64 = 0xfff | (0xfff << 52);
/// `base_disallow_mask` as PTE bits: PWT, PCD, PSE and GLOBAL (reserved bits are outside
/// the flag field; software bits 52..62, NX and AVAIL are the guest's).
pub const BASE_DISALLOW: u64 = PWT | PCD | PSE | G;
/// `L1_DISALLOW_MASK` (GLOBAL allowed in L1 entries).
pub const L1_DISALLOW: u64 = BASE_DISALLOW & !G;
/// The cache-attribute bits of an L1 entry (`PAGE_CACHE_ATTRS`).
pub const CACHE_ATTRS: u64 = PSE | PCD | PWT;
/// Flags a guest may change without re-validation (`FASTPATH_FLAG_WHITELIST`).
const FASTPATH_WHITELIST: u64 = NX | AVAIL_HIGH | AVAIL | G | D | A | US;
/// First L4 slot of the hypervisor's range in a 64-bit PV root.
pub const XEN_FIRST_SLOT: usize = 256;
/// Last L4 slot of the hypervisor's range.
pub const XEN_LAST_SLOT: usize = 271;
/// End of the hypervisor's virtual range (`HYPERVISOR_VIRT_END`).
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;
/// `XEN_MSR_PAT`: the PAT Xen programs (WB, WT, UC-, UC, WC, WP, UC, UC).
const XEN_MSR_PAT: u64 = 0x0000_0501_0007_0406;

/// The frame an entry points at.
pub fn entry_mfn(e: u64) -> u64 {
    (e & PADDR_MASK) >> 12
}

/// Xen's `__addr_ok`: below the canonical hole or above the hypervisor's range.
pub fn addr_ok(va: u64) -> bool {
    !((1 << 47)..HYPERVISOR_VIRT_END).contains(&va)
}

/// Whether L4 slot `slot` belongs to the guest (not the hypervisor's 256..=271).
pub fn is_guest_l4_slot(slot: usize) -> bool {
    !(XEN_FIRST_SLOT..=XEN_LAST_SLOT).contains(&slot)
}

/// `l1e_has_changed(o, n, ~whitelist)` for any level: the frame or a flag outside the
/// whitelist differs.
fn changed_beyond_whitelist(o: u64, n: u64) -> bool {
    (o ^ n) & (PADDR_MASK | (FLAG_BITS & !FASTPATH_WHITELIST)) != 0
}

/// Whether `dom` may map I/O memory and set cache attributes (Xen: non-empty iomem/ioport
/// rights; here the privileged domain, which Xen's dom0 setup grants them).
fn has_io_rights(st: &HvState, dom: DomId) -> bool {
    st.domains.get(&dom).is_some_and(|d| d.flags.privileged)
}

/// `l1_disallow_mask(d)`.
pub fn l1_disallow(st: &HvState, dom: DomId) -> u64 {
    if has_io_rights(st, dom) {
        L1_DISALLOW & !CACHE_ATTRS
    } else {
        L1_DISALLOW
    }
}

/// `adjust_guest_l1e` (64-bit PV): a kernel mapping (no USER bit) gets USER|GUEST_KERNEL.
pub fn adjust_l1(e: u64) -> u64 {
    if e & P != 0 && e & US == 0 {
        e | US | GUEST_KERNEL
    } else {
        e
    }
}

/// `adjust_guest_l{2,3,4}e` (64-bit PV): present entries get USER.
pub fn adjust_upper(e: u64) -> u64 {
    if e & P != 0 {
        e | US
    } else {
        e
    }
}

/// Whether `mfn` is RAM (`mfn_valid`) rather than I/O memory.
fn is_ram(st: &HvState, mfn: u64) -> bool {
    st.mm_config.get().is_ram(mfn) || st.frames.contains_key(&mfn)
}

/// The PAT memory type an L1 entry selects (`pte_flags_to_cacheattr`).
fn pat_type(e: u64) -> u64 {
    let idx = ((e >> 5) & 4) | ((e >> 3) & 3);
    (XEN_MSR_PAT >> (8 * idx)) & 0xff
}

/// Records a reference a table of `holder` takes on a frame owned by another domain.
pub(crate) fn note_foreign(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    holder: DomId,
    mfn: u64,
    rw: bool,
    add: bool,
) {
    let key = (holder, mfn);
    let (mut refs, mut writable) = st.mm_foreign.get(&key).copied().unwrap_or((0, 0));
    if add {
        refs += 1;
        writable += u32::from(rw);
    } else {
        refs = refs.saturating_sub(1);
        writable = writable.saturating_sub(u32::from(rw));
    }
    if refs == 0 {
        st.mm_foreign.remove(env.journal(), &key);
    } else {
        st.mm_foreign.insert(env.journal(), key, (refs, writable));
    }
}

/// `get_page_from_l1e(l1e, l1e_owner, pg_owner)`: takes the references a present L1 entry
/// holds. Returns the flag bits Xen flips (I/O memory forced uncacheable), or the errno.
pub fn get_page_from_l1e(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    e: u64,
    l1e_owner: DomId,
    pg_owner: DomId,
) -> Result<u64, HvError> {
    if e & l1_disallow(st, l1e_owner) != 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let mfn = entry_mfn(e);
    let real = st.frames.get(&mfn).map(|p| (p.owner, p.special));
    let Some((real_owner, special)) = real else {
        if is_ram(st, mfn) && !st.mm_config.get().is_io_hole(mfn) {
            // RAM nobody owns (free, or the hypervisor's): could_not_pin.
            return Err(XenErrno::EBUSY.into());
        }
        // I/O memory: DOMID_IO reverts to the caller for the privilege check.
        let pg = if pg_owner == dom0_interface::xen::DOMID_IO {
            l1e_owner
        } else {
            pg_owner
        };
        let invalid_mfn = mfn == PADDR_MASK >> 12;
        let denied = st.mm_config.get().io_denied(mfn);
        if denied || !has_io_rights(st, pg) || (pg != l1e_owner && !has_io_rights(st, l1e_owner)) {
            return Err(if invalid_mfn {
                XenErrno::EINVAL
            } else {
                XenErrno::EPERM
            }
            .into());
        }
        return Ok(match pat_type(e) {
            0x00 | 0x07 | 0x01 => 0,
            _ => (e & CACHE_ATTRS) ^ (PCD | PWT),
        });
    };
    if real_owner != pg_owner {
        // Only a privileged pg_owner mapping into another domain's page table may use the
        // real owner's frames (XSM_TARGET over the real owner).
        if pg_owner == l1e_owner || !has_io_rights(st, pg_owner) {
            return Err(XenErrno::EBUSY.into());
        }
    }
    with_frame(st, env, mfn, |p| p.count += 1);
    let write = e & RW != 0;
    if write && get_page_type(st, env, mfn, PageType::Writable).is_err() {
        put_page(st, env, mfn);
        return Err(XenErrno::EBUSY.into());
    }
    if e & CACHE_ATTRS != 0 && special {
        if write {
            put_page_type_from(st, env, mfn, None)?;
        }
        put_page(st, env, mfn);
        return Err(XenErrno::EACCES.into());
    }
    if real_owner != l1e_owner {
        note_foreign(st, env, l1e_owner, mfn, write, true);
    }
    Ok(0)
}

/// `put_page_from_l1e`: drops the references a present L1 entry held.
pub fn put_page_from_l1e(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    e: u64,
    l1e_owner: DomId,
) -> Result<(), HvError> {
    if e & P == 0 {
        return Ok(());
    }
    let mfn = entry_mfn(e);
    let Some(owner) = st.frames.get(&mfn).map(|p| p.owner) else {
        return Ok(());
    };
    let write = e & RW != 0;
    if owner != l1e_owner {
        note_foreign(st, env, l1e_owner, mfn, write, false);
    }
    if write {
        put_page_type_from(st, env, mfn, None)?;
    }
    put_page(st, env, mfn);
    Ok(())
}

/// `get_lN_linear_pagetable`: an entry of a level-`level` table `table` mapping a
/// same-level table read-only (a recursive/linear mapping).
fn get_linear(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    level: u8,
    e: u64,
    table: u64,
    dom: DomId,
) -> bool {
    if e & RW != 0 {
        return false;
    }
    let target = entry_mfn(e);
    if target == table {
        return true;
    }
    if st.frames.get(&table).map(|p| p.owner) != Some(dom) {
        return false;
    }
    if get_page(st, env, target, dom).is_err() {
        return false;
    }
    let table_linear = st.frames.get(&table).map_or(-1, |p| p.linear);
    let target_info = st.frames.get(&target).cloned();
    let ok = (0..i32::MAX).contains(&table_linear)
        && target_info.as_ref().is_some_and(|p| {
            p.linear <= 0
                && p.linear > i32::MIN
                && PageType::table(level) == Some(p.ty)
                && p.validated
                && p.type_count > 0
                && p.type_count < u32::MAX - 2
        });
    if !ok {
        put_page(st, env, target);
        return false;
    }
    with_frame(st, env, table, |p| p.linear += 1);
    with_frame(st, env, target, |p| {
        p.linear -= 1;
        p.type_count += 1;
    });
    true
}

/// `get_page_from_l{2,3,4}e`: the references an entry of a level-`level` table (`table`,
/// owned by `dom`) holds on the next table down.
pub fn get_page_from_upper(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    level: u8,
    e: u64,
    table: u64,
    dom: DomId,
) -> Result<(), HvError> {
    if e & BASE_DISALLOW != 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let Some(lower) = PageType::table(level - 1) else {
        return Err(XenErrno::EINVAL.into());
    };
    let target = entry_mfn(e);
    let rc = match get_page(st, env, target, dom) {
        Err(e) => Err(e),
        Ok(()) => match get_page_type(st, env, target, lower) {
            Ok(()) => Ok(()),
            Err(e) => {
                put_page(st, env, target);
                Err(e)
            }
        },
    };
    match rc {
        Err(HvError::Errno(XenErrno::EINVAL)) if get_linear(st, env, level, e, table, dom) => {
            Ok(())
        }
        other => other,
    }
}

/// `put_page_from_l{2,3,4}e`: drops what an entry of table `table` held (nothing for a
/// self-map; every page of a builder-made superpage).
pub fn put_page_from_upper(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    level: u8,
    e: u64,
    table: u64,
) -> Result<(), HvError> {
    let target = entry_mfn(e);
    if e & P == 0 || target == table {
        return Ok(());
    }
    if e & PSE != 0 {
        let pages = 1u64 << (9 * (u32::from(level) - 1));
        for m in target..target + pages {
            if e & RW != 0 {
                put_page_type_from(st, env, m, None)?;
            }
            put_page(st, env, m);
        }
        return Ok(());
    }
    put_page_type_from(st, env, target, Some(table))?;
    put_page(st, env, target);
    Ok(())
}

/// Whether VMASST_TYPE_m2p_strict is on for `dom`.
fn m2p_strict(st: &HvState, dom: DomId) -> bool {
    st.domains
        .get(&dom)
        .is_some_and(|d| d.vm_assist & (1 << 32) != 0)
}

/// `promote_lN_table`: validates every entry of `mfn` as a table of type `ty`, taking the
/// references they hold; on failure drops what was taken and returns the errno.
pub fn promote(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    ty: PageType,
) -> Result<(), HvError> {
    let Some(level) = ty.level() else {
        return Err(XenErrno::EINVAL.into());
    };
    let Some(dom) = st.frames.get(&mfn).map(|p| p.owner) else {
        return Err(XenErrno::EINVAL.into());
    };
    let table = env.read_table(mfn)?;
    let mut done: alloc::vec::Vec<(usize, u64)> = alloc::vec::Vec::new();
    for (i, &e) in table.iter().enumerate() {
        if level == 4 && !is_guest_l4_slot(i) {
            continue;
        }
        if e & P == 0 {
            continue;
        }
        let r = if level == 1 {
            get_page_from_l1e(st, env, e, dom, dom).map(|flip| adjust_l1(e ^ flip))
        } else {
            get_page_from_upper(st, env, level, e, mfn, dom).map(|()| adjust_upper(e))
        };
        match r {
            Ok(ne) => {
                if ne != e {
                    env.write_word((mfn << 12) + i as u64 * 8, ne);
                }
                done.push((i, ne));
            }
            Err(err) => {
                for &(_, held) in done.iter().rev() {
                    if level == 1 {
                        put_page_from_l1e(st, env, held, dom)?;
                    } else {
                        put_page_from_upper(st, env, level, held, mfn)?;
                    }
                }
                return Err(err);
            }
        }
    }
    if level == 4 {
        env.emit(Effect::Mm(MmEffect::XenL4Slots {
            mfn,
            ro_m2p: !m2p_strict(st, dom),
        }));
    }
    Ok(())
}

/// `demote_lN_table`: drops the references every entry of table `mfn` holds.
pub fn demote(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    mfn: u64,
    ty: PageType,
) -> Result<(), HvError> {
    let Some(level) = ty.level() else {
        return Ok(());
    };
    let Some(dom) = st.frames.get(&mfn).map(|p| p.owner) else {
        return Ok(());
    };
    let table = env.read_table(mfn)?;
    for (i, &e) in table.iter().enumerate() {
        if level == 4 && !is_guest_l4_slot(i) {
            continue;
        }
        if level == 1 {
            put_page_from_l1e(st, env, e, dom)?;
        } else {
            put_page_from_upper(st, env, level, e, mfn)?;
        }
    }
    Ok(())
}

/// `UPDATE_ENTRY`: writes `new` at `maddr`, OR-ing in the old A/D bits with `preserve_ad`.
fn update_entry(env: &mut dyn MmEnv, maddr: u64, old: u64, new: u64, preserve_ad: bool) {
    let v = if preserve_ad {
        new | (old & (A | D))
    } else {
        new
    };
    env.write_word(maddr, v);
}

/// Who asks for an entry update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update {
    /// Owner of the page table (`pt_dom`).
    pub pt_dom: DomId,
    /// Owner of the frames mapped (`pg_dom`; DOMID_IO for I/O memory).
    pub pg_dom: DomId,
    /// MMU_PT_UPDATE_PRESERVE_AD.
    pub preserve_ad: bool,
}

/// `mod_l1_entry`: replaces the L1 entry at `maddr` (in table `table`) with `new`.
pub fn mod_l1_entry(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    maddr: u64,
    new: u64,
    u: Update,
) -> Result<(), HvError> {
    let old = env.read_word(maddr)?;
    let mut new = new;
    if new & P != 0 {
        if new & l1_disallow(st, u.pt_dom) != 0 {
            return Err(XenErrno::EINVAL.into());
        }
        new = adjust_l1(new);
        if !changed_beyond_whitelist(old, new) {
            update_entry(env, maddr, old, new, u.preserve_ad);
            return Ok(());
        }
        let flip = get_page_from_l1e(st, env, new, u.pt_dom, u.pg_dom)?;
        new ^= flip;
    }
    update_entry(env, maddr, old, new, u.preserve_ad);
    put_page_from_l1e(st, env, old, u.pt_dom)
}

/// `mod_l{2,3,4}_entry`: replaces the entry at `maddr` of level-`level` table `table`.
pub fn mod_upper_entry(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    level: u8,
    maddr: u64,
    table: u64,
    new: u64,
    u: Update,
) -> Result<(), HvError> {
    let slot = ((maddr & 0xfff) / 8) as usize;
    if level == 4 && !is_guest_l4_slot(slot) {
        return Err(XenErrno::EINVAL.into());
    }
    let old = env.read_word(maddr)?;
    let mut new = new;
    if new & P != 0 {
        if new & BASE_DISALLOW != 0 {
            return Err(XenErrno::EINVAL.into());
        }
        new = adjust_upper(new);
        if !changed_beyond_whitelist(old, new) {
            update_entry(env, maddr, old, new, u.preserve_ad);
            return Ok(());
        }
        get_page_from_upper(st, env, level, new, table, u.pt_dom)?;
    }
    update_entry(env, maddr, old, new, u.preserve_ad);
    put_page_from_upper(st, env, level, old, table)
}

/// `map_guest_l1e`: walks the page tables rooted at `cr3` (machine address) to the L1 entry
/// of `va`; `(L1 table mfn, entry machine address)`, or None if no L1 maps it.
pub fn walk_to_l1e(env: &mut dyn MmEnv, cr3: u64, va: u64) -> Result<Option<(u64, u64)>, HvError> {
    if !addr_ok(va) || cr3 == 0 {
        return Ok(None);
    }
    let idx = |shift: u32| ((va >> shift) & 511) * 8;
    let l4e = env.read_word((cr3 & PADDR_MASK) + idx(39))?;
    if l4e & P == 0 {
        return Ok(None);
    }
    let l3e = env.read_word((l4e & PADDR_MASK) + idx(30))?;
    if l3e & (P | PSE) != P {
        return Ok(None);
    }
    let l2e = env.read_word((l3e & PADDR_MASK) + idx(21))?;
    if l2e & (P | PSE) != P {
        return Ok(None);
    }
    let l1 = entry_mfn(l2e);
    Ok(Some((l1, (l1 << 12) + idx(12))))
}

/// Whether `dom` may write `val` to its L1 entry at `maddr` with [`emulate_l1_write`],
/// checked without writing (Xen's ptwr validates a `cmpxchg`'s new entry before comparing):
/// the same refusals, and no reference left behind.
pub fn check_l1_write(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    dom: DomId,
    maddr: u64,
    val: u64,
) -> Result<(), HvError> {
    if !own_l1_slot(st, dom, maddr) {
        return Err(XenErrno::EINVAL.into());
    }
    if val & P == 0 {
        return Ok(());
    }
    if val & l1_disallow(st, dom) != 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let v = adjust_l1(val);
    let flip = get_page_from_l1e(st, env, v, dom, dom)?;
    put_page_from_l1e(st, env, v ^ flip, dom)
}

/// Whether `maddr` is an aligned entry of an L1 table of `dom`'s, validated and in use.
fn own_l1_slot(st: &HvState, dom: DomId, maddr: u64) -> bool {
    st.frames
        .get(&(maddr >> 12))
        .is_some_and(|p| p.owner == dom && p.ty == PageType::L1 && p.validated && p.type_count > 0)
        && maddr & 7 == 0
}

/// Writable page-table emulation (Xen's `ptwr_emulated_update`, VMASST_TYPE_writable_pagetables):
/// the guest kernel of `dom` wrote `val` to the L1 entry at machine address `maddr`, a frame of
/// its own validated as an L1 table, and the write faulted because page tables are mapped
/// read-only. The write is validated and done as `mod_l1_entry` would; anything other than an
/// L1 entry of the domain's own is -EINVAL (the fault is then bounced to the guest).
pub fn emulate_l1_write(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    dom: DomId,
    maddr: u64,
    val: u64,
) -> Result<(), HvError> {
    let l1 = maddr >> 12;
    if !own_l1_slot(st, dom, maddr) {
        return Err(XenErrno::EINVAL.into());
    }
    get_page(st, env, l1, dom)?;
    let r = mod_l1_entry(
        st,
        env,
        maddr,
        val,
        Update {
            pt_dom: dom,
            pg_dom: dom,
            preserve_ad: false,
        },
    );
    put_page(st, env, l1);
    r
}
