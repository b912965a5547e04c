//! A vCPU's page-table base pointers as references: installing the kernel and user roots of a
//! context (`arch_set_info_guest` for VCPUOP_initialise) and dropping them again
//! (`vcpu_destroy_pagetables` for a vCPU reset). MMUEXT_NEW_BASEPTR/NEW_USER_BASEPTR are
//! in `hypercall::mmuext`.

use super::env::MmEnv;
use super::frame::{get_page, get_page_type, put_page, put_page_and_type};
use super::PageType;
use crate::domain::VcpuKey;
use crate::effect::{Effect, MmEffect};
use crate::hv::{HvError, HvState};

/// Whether VMASST_TYPE_m2p_strict is on for the domain.
fn m2p_strict(st: &HvState, key: VcpuKey) -> bool {
    st.domains
        .get(&key.0)
        .is_some_and(|d| d.vm_assist & (1 << 32) != 0)
}

/// One root: a general reference and an L4 type reference on `cr3 >> 12`.
fn take_root(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    key: VcpuKey,
    cr3: u64,
) -> Result<u64, HvError> {
    let mfn = cr3 >> 12;
    get_page(st, env, mfn, key.0)?;
    if let Err(e) = get_page_type(st, env, mfn, PageType::L4) {
        put_page(st, env, mfn);
        return Err(e);
    }
    Ok(mfn)
}

/// Installs `ctrlreg3` (kernel root, `mfn << 12`) and `ctrlreg1` (user root, 0: none) as vCPU
/// `key`'s base pointers, each an L4 of the vCPU's domain, taking the references Xen takes;
/// -EINVAL (or the validation's errno) leaves everything as it was. Old bases, if any, are
/// dropped.
pub fn install(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    key: VcpuKey,
    ctrlreg3: u64,
    ctrlreg1: u64,
) -> Result<(), HvError> {
    let kernel = take_root(st, env, key, ctrlreg3)?;
    if !m2p_strict(st, key) {
        env.emit(Effect::Mm(MmEffect::XenL4Slots {
            mfn: kernel,
            ro_m2p: true,
        }));
    }
    let user = if ctrlreg1 != 0 {
        match take_root(st, env, key, ctrlreg1) {
            Ok(m) => {
                if m2p_strict(st, key) {
                    env.emit(Effect::Mm(MmEffect::XenL4Slots {
                        mfn: m,
                        ro_m2p: false,
                    }));
                }
                m
            }
            Err(e) => {
                put_page_and_type(st, env, kernel)?;
                return Err(e);
            }
        }
    } else {
        0
    };
    release(st, env, key)?;
    let j = env.journal();
    st.vcpus.update(j, &key, |v| {
        v.cr3 = kernel << 12;
        v.user_cr3 = user << 12;
    });
    Ok(())
}

/// Drops vCPU `key`'s base pointers (and their references) and clears them.
pub fn release(st: &mut HvState, env: &mut dyn MmEnv, key: VcpuKey) -> Result<(), HvError> {
    let Some((k, u)) = st.vcpus.get(&key).map(|v| (v.cr3 >> 12, v.user_cr3 >> 12)) else {
        return Ok(());
    };
    let j = env.journal();
    st.vcpus.update(j, &key, |v| {
        v.cr3 = 0;
        v.user_cr3 = 0;
    });
    for m in [k, u] {
        if m != 0 {
            put_page_and_type(st, env, m)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fixture::{audit, harness, mfn};
    use crate::mm::testenv::MemEnv;
    use dom0_interface::errno::XenErrno;
    use lockstep::Journal;

    #[test]
    fn install_takes_and_release_drops_the_root_references() {
        let mut h = harness(false);
        let mut j = Journal::new();
        j.begin(50);
        let key = (1, 1);
        {
            let mut env = MemEnv {
                mem: &mut h.mem,
                j: &mut j,
                effects: alloc::vec::Vec::new(),
            };
            // The bootstrap root as kernel base, an empty frame as user base.
            install(&mut h.state, &mut env, key, mfn(0) << 12, mfn(40) << 12).unwrap();
            assert!(env.effects.contains(&Effect::Mm(MmEffect::XenL4Slots {
                mfn: mfn(0),
                ro_m2p: true
            })));
        }
        assert_eq!(
            h.state.vcpus.get(&key).map(|v| (v.cr3, v.user_cr3)),
            Some((mfn(0) << 12, mfn(40) << 12))
        );
        assert_eq!(
            h.state.frames.get(&mfn(40)).map(|p| (p.ty, p.type_count)),
            Some((PageType::L4, 1))
        );
        audit(&h).unwrap();
        {
            let mut env = MemEnv {
                mem: &mut h.mem,
                j: &mut j,
                effects: alloc::vec::Vec::new(),
            };
            // A data page is no root: -EINVAL, nothing taken.
            assert_eq!(
                install(&mut h.state, &mut env, (1, 0), mfn(0) << 12, mfn(10) << 12),
                Err(HvError::Errno(XenErrno::EINVAL))
            );
            assert_eq!(
                install(&mut h.state, &mut env, (1, 0), 0x500 << 12, 0),
                Err(HvError::Errno(XenErrno::EINVAL))
            );
        }
        audit(&h).unwrap();
        {
            let mut env = MemEnv {
                mem: &mut h.mem,
                j: &mut j,
                effects: alloc::vec::Vec::new(),
            };
            release(&mut h.state, &mut env, key).unwrap();
        }
        assert_eq!(h.state.frames.get(&mfn(40)).map(|p| p.type_count), Some(0));
        lockstep::replica::forget(&mut h.state);
        audit(&h).unwrap();
    }
}
