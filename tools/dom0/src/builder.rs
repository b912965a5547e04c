//! The seam between dom0 and the domain builder: `xenguest::create_pv` and
//! `xenguest::map_foreign` (the API agreed in the project's interface notes, implemented by the
//! `tools/xenguest` crate). Everything dom0 does around a build — config, kernel and ramdisk
//! from the initrd, console binding, lifecycle — goes through the two functions here.
//!
//! This build has no `xenguest` crate in the workspace yet, so both answer a clear error and
//! [`ConsolePage`] has no values; with the crate present their bodies call it directly.

use alloc::string::String;
use tools::xlcfg::DomainConfig;

/// What to build (as `xenguest::BuildRequest`).
pub struct Request<'a> {
    /// The parsed config.
    pub config: &'a DomainConfig,
    /// The kernel image.
    pub kernel: &'a [u8],
    /// The ramdisk, if any.
    pub ramdisk: Option<&'a [u8]>,
    /// Leave the domain paused (`xl create -p`).
    pub paused: bool,
}

/// A built domain (as `xenguest::Built`).
#[derive(Clone, Copy, Debug)]
pub struct Built {
    /// Its id.
    pub domid: u16,
    /// The frame of its console ring.
    pub console_mfn: u64,
    /// Its unbound console port (remote end: dom0).
    pub console_port: u32,
}

/// Why the builder is not available in this build.
const NO_BUILDER: &str =
    "the domain builder (xenguest) is not part of this dom0 build; no domain was created";

/// Builds and starts a PV domain; a failure leaves nothing behind (the builder rolls back).
pub fn create_pv(req: &Request<'_>) -> Result<Built, String> {
    let _ = (req.config, req.kernel, req.ramdisk, req.paused);
    Err(String::from(NO_BUILDER))
}

/// A domU's console ring page mapped into dom0 (unmapped on drop).
pub enum ConsolePage {}

impl ConsolePage {
    /// The page's bytes (4096).
    pub fn bytes(&mut self) -> &mut [u8] {
        match *self {}
    }
}

/// Maps the console ring frame `mfn` of `domid`.
pub fn map_console(domid: u16, mfn: u64) -> Result<ConsolePage, String> {
    let _ = (domid, mfn);
    Err(String::from(NO_BUILDER))
}
