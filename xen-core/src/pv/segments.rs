//! A 64-bit PV vCPU's data segment selectors DS, ES, FS, GS, as Xen 4.17 keeps them in
//! `user_regs`: the bare-metal side saves them when a vCPU leaves its CPU (`save_segments`)
//! and loads them when another is resumed there (`load_segments`). A selector that no longer
//! loads (its descriptor became invalid) is replaced by the null selector and the vCPU enters
//! its failsafe callback ([`crate::traps::failsafe`]) with the selectors it had saved.
//!
//! In a request or an input word the four selectors travel packed, DS in bits 0-15, ES in
//! 16-31, FS in 32-47, GS in 48-63 ([`pack`]).

/// DS, ES, FS, GS, in that order (the order of the failsafe frame).
pub type DataSelectors = [u16; 4];

/// The selectors as one word: DS in bits 0-15, ES 16-31, FS 32-47, GS 48-63.
pub fn pack(s: DataSelectors) -> u64 {
    s.iter()
        .enumerate()
        .fold(0, |w, (i, &x)| w | (u64::from(x) << (16 * i)))
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
}
