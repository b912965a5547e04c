//! The PV MMU hypercalls that change page-table entries: `update_va_mapping` (14),
//! `update_va_mapping_otherdomain` (22) and `mmu_update` (1), as x86/mm.c implements them;
//! the shared helpers (page-owner lookup, vCPU masks, caller's page tables) live here too.

use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{Ctx, HvError, HvResult, HvState};
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::frame::{get_page, get_page_info, get_page_type, put_page, put_page_type, set_m2p};
use crate::mm::pt::{self, addr_ok, Update};
use crate::mm::PageType;
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::{
    MmuUpdate, DOMID_IO, DOMID_SELF, DOMID_XEN, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
    MMU_PT_UPDATE_NO_TRANSLATE, MMU_PT_UPDATE_PRESERVE_AD, UVMF_ALL, UVMF_FLUSHTYPE_MASK,
    UVMF_INVLPG, UVMF_TLB_FLUSH,
};

/// `MMU_UPDATE_PREEMPTED`: set in `count` of a continued mmu_update/mmuext_op.
pub const MMU_UPDATE_PREEMPTED: u64 = 1 << 31;
/// Operations handled per transaction before the call continues itself (Xen preempts on
/// time; a fixed count keeps both executions identical).
pub const OPS_PER_CALL: u64 = 256;

fn errno(e: XenErrno) -> HvError {
    HvError::Errno(e)
}

/// `get_pg_owner`: DOMID_SELF is the caller; naming oneself explicitly is -ESRCH, as are
/// unknown domains; DOMID_IO and DOMID_XEN stand for themselves.
pub fn get_pg_owner(st: &HvState, caller: DomId, domid: DomId) -> Result<DomId, HvError> {
    if domid == DOMID_SELF {
        return Ok(caller);
    }
    if domid == caller {
        return Err(errno(XenErrno::ESRCH));
    }
    if domid == DOMID_IO || domid == DOMID_XEN || st.domains.contains_key(&domid) {
        return Ok(domid);
    }
    Err(errno(XenErrno::ESRCH))
}

/// XSM's default `XSM_TARGET` check: acting on oneself, or privileged.
pub fn xsm_target(st: &HvState, src: DomId, target: DomId) -> Result<(), HvError> {
    if src == target || super::is_privileged(st, src) {
        Ok(())
    } else {
        Err(errno(XenErrno::EPERM))
    }
}

/// `vcpumask_to_pcpumask`: the vCPU ids named by the guest bitmap at `bmap` (64 per word,
/// read while ids stay below `max_vcpus`); -EFAULT if a word cannot be read.
pub fn read_vcpumask(
    st: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    bmap: u64,
) -> Result<Vec<u32>, HvError> {
    let dom = ctx.dom();
    let max = st.domains.get(&dom).map_or(0, |d| d.max_vcpus);
    let mut out = Vec::new();
    let mut offs = 0u64;
    while offs * 64 < u64::from(max) {
        let word = ctx.read_u64(bmap.wrapping_add(offs * 8))?;
        for bit in 0..64u64 {
            let id = offs * 64 + bit;
            if word & (1 << bit) != 0 && id < u64::from(max) {
                out.push(id as u32);
            }
        }
        offs += 1;
    }
    Ok(out)
}

/// The calling vCPU's active page-table base (kernel or user CR3, machine address).
pub fn current_cr3(st: &HvState, ctx: &Ctx<'_, '_, '_>) -> u64 {
    match st.vcpus.get(&(ctx.req.dom, ctx.req.vcpu)) {
        Some(v) if v.kernel_mode => v.cr3,
        Some(v) => v.user_cr3,
        None => 0,
    }
}

/// `__do_update_va_mapping`: replaces the L1 entry mapping `va` in the caller's current
/// page tables, then flushes as `flags` asks.
fn do_update_va_mapping(
    st: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    va: u64,
    val: u64,
    flags: u64,
    pg_owner: DomId,
) -> HvResult {
    let d = ctx.dom();
    let vcpu = ctx.req.vcpu;
    if pg_owner != DOMID_IO {
        xsm_target(st, d, pg_owner)?;
    }
    let cr3 = current_cr3(st, ctx);
    {
        let mut env = CtxEnv::new(ctx);
        let Some((l1, maddr)) = pt::walk_to_l1e(&mut env, cr3, va)? else {
            return Err(errno(XenErrno::EINVAL));
        };
        get_page(st, &mut env, l1, d)?;
        let lockable = st
            .frames
            .get(&l1)
            .is_some_and(|p| p.validated && p.type_count > 0 && p.ty == PageType::L1);
        let rc = if lockable {
            pt::mod_l1_entry(
                st,
                &mut env,
                maddr,
                val,
                Update {
                    pt_dom: d,
                    pg_dom: pg_owner,
                    preserve_ad: false,
                },
            )
        } else {
            Err(errno(XenErrno::EINVAL))
        };
        put_page(st, &mut env, l1);
        rc?;
    }
    let target = match flags & !UVMF_FLUSHTYPE_MASK {
        0 => Some(alloc::vec![vcpu]),
        UVMF_ALL => None,
        bmap => Some(read_vcpumask(st, ctx, bmap)?),
    };
    let va_flush = match flags & UVMF_FLUSHTYPE_MASK {
        UVMF_TLB_FLUSH => Some(None),
        UVMF_INVLPG => Some(Some(va)),
        _ => None,
    };
    if let Some(one) = va_flush {
        ctx.emit(Effect::Mm(MmEffect::FlushTlb {
            dom: d,
            vcpus: target,
            va: one,
        }));
    }
    Ok(0)
}

/// `update_va_mapping(va, val, flags)`.
pub fn update_va_mapping(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [va, val, flags, ..] = ctx.req.args;
    let dom = ctx.dom();
    do_update_va_mapping(st, ctx, va, val, flags, dom)
}

/// `update_va_mapping_otherdomain(va, val, flags, domid)`: the frame belongs to `domid`.
pub fn update_va_mapping_otherdomain(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [va, val, flags, domid, _] = ctx.req.args;
    let pg_owner = get_pg_owner(st, ctx.dom(), domid as u16)?;
    do_update_va_mapping(st, ctx, va, val, flags, pg_owner)
}

/// Writes the cumulative done count to `pdone` (failures ignored, as Xen's copy_to_guest
/// result is).
pub fn report_done(ctx: &mut Ctx<'_, '_, '_>, pdone: u64, done: u64) -> Result<(), HvError> {
    if pdone == 0 {
        return Ok(());
    }
    match ctx.copy_to_guest(pdone, &(done as u32).to_le_bytes()) {
        Err(HvError::Abort(a)) => Err(HvError::Abort(a)),
        _ => Ok(()),
    }
}

/// Reads the done count a continued call carried in `pdone`.
pub fn resume_done(ctx: &mut Ctx<'_, '_, '_>, pdone: u64) -> Result<u64, HvError> {
    if pdone == 0 {
        return Ok(0);
    }
    let mut b = [0u8; 4];
    match ctx.copy_from_guest(pdone, &mut b) {
        Ok(()) => Ok(u64::from(u32::from_le_bytes(b))),
        Err(HvError::Abort(a)) => Err(HvError::Abort(a)),
        Err(_) => Ok(0),
    }
}

/// The requests of one `mmu_update` call as it reads them: a page's worth at a time (up to
/// the end of the page holding the next request, and no further than the call will go), where
/// Xen copies each request on its own. Each guest-memory read walks the guest's page tables
/// (and, with lockstep on, is logged with a header), so one read serves many requests. A read
/// of several that fails falls back to reading the one request alone, so a request that
/// cannot be read fails with its own error, after the ones before it ran.
struct Requests {
    /// The guest array.
    base: u64,
    /// Requests before this index are not read.
    limit: u64,
    /// Index of the first request in `buf`.
    first: u64,
    /// Requests read ahead, 16 bytes each.
    buf: Vec<u8>,
}

/// Bytes of one `struct mmu_update`.
const REQ_BYTES: u64 = 16;

impl Requests {
    fn new(base: u64, limit: u64) -> Self {
        Requests {
            base,
            limit,
            first: 0,
            buf: Vec::new(),
        }
    }

    /// Request `i` (< the limit): its bytes, or the error reading them met.
    fn get(&mut self, ctx: &mut Ctx<'_, '_, '_>, i: u64) -> Result<[u8; 16], HvError> {
        let held = self.buf.len() as u64 / REQ_BYTES;
        if !(self.first..self.first + held).contains(&i) {
            self.buf.clear();
            let at = self.base.wrapping_add(i * REQ_BYTES);
            let to_page_end = (4096 - (at & 0xfff)) / REQ_BYTES;
            let ahead = to_page_end.min(self.limit - i);
            if ahead > 1 {
                self.buf.resize((ahead * REQ_BYTES) as usize, 0);
                match ctx.copy_from_guest(at, &mut self.buf) {
                    Ok(()) => self.first = i,
                    Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
                    Err(HvError::Errno(_)) => self.buf.clear(),
                }
            }
            if self.buf.is_empty() {
                let mut b = [0u8; 16];
                ctx.copy_from_guest(at, &mut b)?;
                return Ok(b);
            }
        }
        let off = ((i - self.first) * REQ_BYTES) as usize;
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.buf[off..off + 16]);
        Ok(b)
    }
}

/// What one mmu_update request changed.
#[derive(Default)]
struct Flushes {
    linear_pt: bool,
}

/// One `mmu_update` request.
fn mmu_update_one(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    req: MmuUpdate,
    d: DomId,
    pt_owner: DomId,
    pg_owner: DomId,
    fl: &mut Flushes,
) -> Result<(), HvError> {
    let cmd = req.ptr & 7;
    match cmd {
        MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD | MMU_PT_UPDATE_NO_TRANSLATE => {
            xsm_checks(st, d, Some(pt_owner), pg_owner)?;
            let ptr = req.ptr - cmd;
            let gmfn = ptr >> 12;
            let info = get_page_info(st, env, gmfn, pt_owner)?;
            let u = Update {
                pt_dom: pt_owner,
                pg_dom: pg_owner,
                preserve_ad: cmd == MMU_PT_UPDATE_PRESERVE_AD,
            };
            let rc = match info {
                p if p.validated && p.type_count > 0 => match p.ty {
                    PageType::L1 => pt::mod_l1_entry(st, env, ptr, req.val, u),
                    PageType::L2 | PageType::L3 | PageType::L4 if pg_owner != pt_owner => {
                        Err(errno(XenErrno::EINVAL))
                    }
                    PageType::L2 | PageType::L3 | PageType::L4 => {
                        let level = p.ty.level().unwrap_or(1);
                        let r = pt::mod_upper_entry(st, env, level, ptr, gmfn, req.val, u);
                        if r.is_ok() {
                            fl.linear_pt = true;
                        }
                        r
                    }
                    PageType::Writable => {
                        env.write_word(ptr, req.val);
                        Ok(())
                    }
                    PageType::None | PageType::SegDesc => Err(errno(XenErrno::EINVAL)),
                },
                _ => match get_page_type(st, env, gmfn, PageType::Writable) {
                    Ok(()) => {
                        env.write_word(ptr, req.val);
                        put_page_type(st, env, gmfn)
                    }
                    Err(HvError::Abort(a)) => Err(HvError::Abort(a)),
                    Err(_) => Err(errno(XenErrno::EINVAL)),
                },
            };
            put_page(st, env, gmfn);
            rc
        }
        MMU_MACHPHYS_UPDATE => {
            if d != pt_owner {
                return Err(errno(XenErrno::EPERM));
            }
            xsm_checks(st, d, None, pg_owner)?;
            let mfn = req.ptr >> 12;
            get_page(st, env, mfn, pg_owner)?;
            set_m2p(st, env, mfn, req.val);
            put_page(st, env, mfn);
            Ok(())
        }
        _ => Err(errno(XenErrno::ENOSYS)),
    }
}

/// `xsm_mmu_update`: the page owner (unless DOMID_IO) and the table owner must be the
/// caller's own or the caller privileged.
fn xsm_checks(st: &HvState, d: DomId, pt: Option<DomId>, pg: DomId) -> Result<(), HvError> {
    if pg != DOMID_IO {
        xsm_target(st, d, pg)?;
    }
    if let Some(t) = pt {
        xsm_target(st, d, t)?;
    }
    Ok(())
}

/// `mmu_update(reqs, count, pdone, foreigndom)`: `foreigndom` low 16 bits name the owner of
/// the frames mapped, bits 16.. (plus one) the owner of the page tables.
pub fn mmu_update(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [ureqs, count, pdone, foreigndom, a4] = ctx.req.args;
    let d = ctx.dom();
    let mut count = count & 0xffff_ffff;
    let foreigndom = foreigndom & 0xffff_ffff;
    let mut done = 0u64;
    if count == MMU_UPDATE_PREEMPTED && ureqs == 0 {
        return Ok(i64::from(foreigndom as i32));
    }
    if count & MMU_UPDATE_PREEMPTED != 0 {
        count &= !MMU_UPDATE_PREEMPTED;
        done = resume_done(ctx, pdone)?;
    }
    if count > 0 && !addr_ok(ureqs) {
        return Err(errno(XenErrno::EFAULT));
    }
    let mut pt_owner = d;
    let pt_dom = foreigndom >> 16;
    if pt_dom != 0 {
        let id = DomId::try_from(pt_dom - 1).map_err(|_| errno(XenErrno::ESRCH))?;
        if !st.domains.contains_key(&id) {
            return Err(errno(XenErrno::ESRCH));
        }
        if id != d && !st.vcpus.contains_key(&(id, 0)) {
            report_done(ctx, pdone, done)?;
            return Err(errno(XenErrno::EINVAL));
        }
        pt_owner = id;
    }
    let pg_owner = match get_pg_owner(st, d, foreigndom as u16) {
        Ok(p) => p,
        Err(e) => {
            report_done(ctx, pdone, done)?;
            return Err(e);
        }
    };
    let mut fl = Flushes::default();
    let mut rc: Result<(), XenErrno> = Ok(());
    let mut i = 0u64;
    let mut preempted = false;
    {
        let mut env = CtxEnv::new(ctx);
        let mut reqs = Requests::new(ureqs, count.min(OPS_PER_CALL));
        while i < count {
            if i >= OPS_PER_CALL {
                preempted = true;
                break;
            }
            let b = match reqs.get(env.ctx, i) {
                Ok(b) => b,
                Err(HvError::Errno(e)) => {
                    rc = Err(e);
                    break;
                }
                Err(a) => return Err(a),
            };
            let req = MmuUpdate::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
            match mmu_update_one(st, &mut env, req, d, pt_owner, pg_owner, &mut fl) {
                Ok(()) => i += 1,
                Err(HvError::Errno(e)) => {
                    rc = Err(e);
                    break;
                }
                Err(a) => return Err(a),
            }
        }
        env.finish();
    }
    if fl.linear_pt {
        ctx.emit(Effect::Mm(MmEffect::FlushTlb {
            dom: pt_owner,
            vcpus: None,
            va: None,
        }));
    }
    if preempted {
        ctx.emit(Effect::Continue([
            ureqs.wrapping_add(i * 16),
            (count - i) | MMU_UPDATE_PREEMPTED,
            pdone,
            foreigndom,
            a4,
        ]));
        // The continuation carries the count so far in *pdone.
        report_done(ctx, pdone, done + i)?;
        return Ok(0);
    }
    report_done(ctx, pdone, done + i)?;
    rc.map(|()| 0).map_err(errno)
}
