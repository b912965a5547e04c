//! A 64-bit PV vCPU's data segment selectors DS, ES, FS, GS, as Xen 4.17 keeps them in
//! `user_regs`: the bare-metal side saves them when a vCPU leaves its CPU (`save_segments`)
//! and loads them when another is resumed there (`load_segments`). A selector that no longer
//! loads (its descriptor became invalid) is replaced by the null selector and the vCPU enters
//! its failsafe callback ([`crate::traps::failsafe`]) with the selectors it had saved.
//!
//! Which selectors are loaded is Xen's choice too ([`to_load`]): on a CPU with AMD SVM, Xen
//! 4.17 loads FS and GS through `svm_load_segs` (VMLOAD) whenever both are null selectors
//! (0-3), and that leaves them 0, whatever RPL they had.
//!
//! The bases the guest changes without an exit travel in the request
//! ([`record_live_bases`]).
//!
//! In a request or an input word the four selectors travel packed, DS in bits 0-15, ES in
//! 16-31, FS in 32-47, GS in 48-63 ([`pack`]).

/// Records the segment bases vCPU `key` left in the hardware (a request's
/// [`crate::request::LiveBases`]) in its replica state: the FS base, and the GS base of the
/// mode it runs in (the other one can only change through the hypervisor). Xen keeps what the
/// hardware holds in the same way (`save_segments`, and `rdmsr` of the bases reads them live).
/// False if there is no such vCPU.
pub fn record_live_bases(
    state: &mut crate::hv::HvState,
    j: &mut lockstep::Journal,
    key: crate::domain::VcpuKey,
    live: crate::request::LiveBases,
) -> bool {
    let Some(v) = state.vcpus.get(&key) else {
        return false;
    };
    let gs = if v.kernel_mode {
        v.gs_base_kernel
    } else {
        v.gs_base_user
    };
    if v.fs_base == live.fs_base && gs == live.gs_base {
        return true;
    }
    state.vcpus.update(j, &key, |v| {
        v.fs_base = live.fs_base;
        if v.kernel_mode {
            v.gs_base_kernel = live.gs_base;
        } else {
            v.gs_base_user = live.gs_base;
        }
    });
    true
}

/// DS, ES, FS, GS, in that order (the order of the failsafe frame).
pub type DataSelectors = [u16; 4];

/// The selectors as one word: DS in bits 0-15, ES 16-31, FS 32-47, GS 48-63.
pub fn pack(s: DataSelectors) -> u64 {
    s.iter()
        .enumerate()
        .fold(0, |w, (i, &x)| w | (u64::from(x) << (16 * i)))
}

/// The selectors `load_segments` puts in DS, ES, FS, GS for the `saved` ones (before any
/// fails to load): FS and GS become 0 when both are null (0-3) on a CPU with SVM (`svm`),
/// as `svm_load_segs` loads them; otherwise the saved values.
pub fn to_load(saved: DataSelectors, svm: bool) -> DataSelectors {
    let [ds, es, fs, gs] = saved;
    if svm && (fs | gs) <= 3 {
        [ds, es, 0, 0]
    } else {
        saved
    }
}

/// Inverse of [`pack`].
pub fn unpack(w: u64) -> DataSelectors {
    core::array::from_fn(|i| (w >> (16 * i)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_in_frame_order() {
        let s = [0xe02b, 0x000f, 0x0000, 0xfff3];
        assert_eq!(pack(s), 0xfff3_0000_000f_e02b);
        assert_eq!(unpack(pack(s)), s);
        assert_eq!(unpack(0), [0; 4]);
    }

    #[test]
    fn svm_loads_null_fs_and_gs_as_zero() {
        // Measured on Xen 4.17 (QEMU EPYC): FS 3 and GS 2 came back as 0, DS and ES as saved.
        assert_eq!(to_load([0x0f, 0xe02b, 3, 2], true), [0x0f, 0xe02b, 0, 0]);
        assert_eq!(to_load([3, 1, 0, 3], true), [3, 1, 0, 0]);
        // One non-null selector: both loaded as saved (`TRY_LOAD_SEG`).
        assert_eq!(to_load([0, 0, 3, 0xe02b], true), [0, 0, 3, 0xe02b]);
        assert_eq!(to_load([0, 0, 0xe02b, 1], true), [0, 0, 0xe02b, 1]);
        // Without SVM nothing changes.
        assert_eq!(to_load([1, 2, 3, 2], false), [1, 2, 3, 2]);
    }
}
