//! dom0's initrd (boot module 2 of the machine, dom0's only module): a cpio newc archive read
//! in place, or copied out first when Xen passed it as frames (`SIF_MOD_START_PFN`).

use crate::out;
use alloc::vec;
use guest_rt::module::{self, Module, ModuleError};
use guest_rt::start_info::StartInfo;
use tools::cpio::Archive;

/// The archive (empty, with a message, if there is none or it is unreadable).
pub fn load(si: &StartInfo) -> Archive<'static> {
    let bytes: &'static [u8] = match module::module(si) {
        Ok(Module::Mapped(b)) => b,
        Ok(Module::Frames { pfn, len }) => {
            let mut buf = vec![0u8; len as usize];
            match module::copy_pfn_module(si, pfn, &mut buf) {
                Ok(()) => alloc::boxed::Box::leak(buf.into_boxed_slice()),
                Err(e) => return empty(e),
            }
        }
        Err(e) => return empty(e),
    };
    match Archive::parse(bytes) {
        Ok(a) => {
            out::say(format_args!(
                "dom0: initrd: {} bytes, {} entries\n",
                bytes.len(),
                a.entries().len()
            ));
            a
        }
        Err(e) => {
            out::say(format_args!("dom0: initrd: {e}; no files\n"));
            Archive::default()
        }
    }
}

fn empty(e: ModuleError) -> Archive<'static> {
    out::say(format_args!("dom0: initrd: {e}; no files\n"));
    Archive::default()
}
