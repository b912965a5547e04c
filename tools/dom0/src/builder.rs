//! The seam between dom0 and the domain builder, `xenguest` (libxenguest for DualVisor's
//! dom0): [`create_pv`] builds and starts a PV domain, [`map_console`] maps a domU's console
//! ring. Everything dom0 does around a build — config, kernel and ramdisk from the initrd,
//! console binding, lifecycle — goes through these two functions.

use alloc::format;
use alloc::string::{String, ToString};
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

/// Builds and starts a PV domain; a failure leaves nothing behind (the builder rolls back).
pub fn create_pv(req: &Request<'_>) -> Result<Built, String> {
    let r = xenguest::BuildRequest {
        config: req.config,
        kernel: req.kernel,
        ramdisk: req.ramdisk,
        paused: req.paused,
    };
    xenguest::create_pv(&r)
        .map(|b| Built {
            domid: b.domid,
            console_mfn: b.console_mfn,
            console_port: b.console_port,
        })
        .map_err(|e| e.to_string())
}

/// A domU's console ring page mapped into dom0 (unmapped on drop).
pub struct ConsolePage(xenguest::ForeignPage);

impl ConsolePage {
    /// The page's bytes (4096).
    pub fn bytes(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }
}

/// Maps the console ring frame `mfn` of `domid`.
pub fn map_console(domid: u16, mfn: u64) -> Result<ConsolePage, String> {
    xenguest::map_foreign(domid, mfn)
        .map(ConsolePage)
        .map_err(|e| format!("foreign mapping failed ({e})"))
}
