//! Xen feature flags (`XENFEAT_*`, public `features.h`) and libelf's FEATURES string parser.

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables`.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`.
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_hvm_callback_vector`.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_dom0`: the kernel can run as the initial domain.
pub const XENFEAT_DOM0: u32 = 11;

/// The feature names libelf recognises in a FEATURES string, with their bit numbers.
pub const FEATURE_NAMES: [(&str, u32); 7] = [
    ("writable_page_tables", XENFEAT_WRITABLE_PAGE_TABLES),
    (
        "writable_descriptor_tables",
        XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
    ),
    ("auto_translated_physmap", XENFEAT_AUTO_TRANSLATED_PHYSMAP),
    ("supervisor_mode_kernel", XENFEAT_SUPERVISOR_MODE_KERNEL),
    ("pae_pgdir_above_4gb", XENFEAT_PAE_PGDIR_ABOVE_4GB),
    ("hvm_callback_vector", XENFEAT_HVM_CALLBACK_VECTOR),
    ("dom0", XENFEAT_DOM0),
];

/// Supported and required feature bitmaps (submap 0, bit n = `XENFEAT` n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenFeatures {
    /// Features the kernel can use (every required feature is also supported).
    pub supported: u32,
    /// Features the kernel cannot run without (`!name` in the FEATURES string).
    pub required: u32,
}

impl XenFeatures {
    /// Whether bit `feature` is supported.
    pub fn supports(&self, feature: u32) -> bool {
        feature < 32 && self.supported & (1 << feature) != 0
    }

    /// Whether bit `feature` is required.
    pub fn requires(&self, feature: u32) -> bool {
        feature < 32 && self.required & (1 << feature) != 0
    }

    /// Adds the features of a `'|'`-separated FEATURES string as libelf does: known names
    /// set a supported bit, `!name` also sets the required bit, unknown supported names are
    /// ignored, and an unknown required name is an error (returned as `Err(name)`).
    pub fn add_feature_string<'s>(&mut self, features: &'s [u8]) -> Result<(), &'s [u8]> {
        for token in features.split(|&b| b == b'|') {
            let (name, required) = match token.strip_prefix(b"!") {
                Some(rest) => (rest, true),
                None => (token, false),
            };
            let bit = FEATURE_NAMES
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map(|&(_, bit)| bit);
            match (bit, required) {
                (Some(bit), req) => {
                    self.supported |= 1 << bit;
                    if req {
                        self.required |= 1 << bit;
                    }
                }
                (None, true) => return Err(name),
                (None, false) => {}
            }
        }
        Ok(())
    }

    /// The names of the bits set in `mask`, for messages (unknown bits as numbers).
    pub fn describe(mask: u32, mut out: impl core::fmt::Write) -> core::fmt::Result {
        let mut first = true;
        for bit in 0..32 {
            if mask & (1 << bit) == 0 {
                continue;
            }
            if !first {
                out.write_str("|")?;
            }
            first = false;
            match FEATURE_NAMES.iter().find(|&&(_, b)| b == bit) {
                Some((name, _)) => out.write_str(name)?,
                None => write!(out, "feature{bit}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn parses_linux_style_feature_string() {
        let mut f = XenFeatures::default();
        f.add_feature_string(
            b"!writable_page_tables|pae_pgdir_above_4gb|writable_descriptor_tables|\
              auto_translated_physmap|supervisor_mode_kernel|hvm_callback_vector|dom0",
        )
        .unwrap();
        assert_eq!(f.required, 1 << XENFEAT_WRITABLE_PAGE_TABLES);
        assert_eq!(
            f.supported,
            0b1_1111 | (1 << XENFEAT_HVM_CALLBACK_VECTOR) | (1 << XENFEAT_DOM0)
        );
        assert!(f.supports(XENFEAT_DOM0));
        assert!(f.requires(XENFEAT_WRITABLE_PAGE_TABLES));
        assert!(!f.requires(XENFEAT_DOM0));
        assert!(!f.supports(40));
    }

    #[test]
    fn unknown_names_ignored_unless_required() {
        let mut f = XenFeatures::default();
        f.add_feature_string(b"gnttab_map_avail_bits||dom0")
            .unwrap();
        assert_eq!(f.supported, 1 << XENFEAT_DOM0);
        assert_eq!(
            f.add_feature_string(b"dom0|!warp_drive"),
            Err(&b"warp_drive"[..])
        );
    }

    #[test]
    fn describes_masks() {
        let mut s = String::new();
        XenFeatures::describe((1 << 3) | (1 << 20), &mut s).unwrap();
        assert_eq!(s, "supervisor_mode_kernel|feature20");
    }
}
