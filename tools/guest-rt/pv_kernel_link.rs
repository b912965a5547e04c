// The one definition of how a guest crate links its binaries as freestanding Xen PV kernels
// with guest-rt's `link.ld`; each guest crate's build.rs `include!`s this file.
// (A plain comment, not `//!`: an `include!`d file cannot carry inner doc comments.)

/// Prints the cargo directives that link every binary of the calling crate as a freestanding Xen
/// PV kernel. `guest_rt` is the path of tools/guest-rt relative to the crate's manifest dir.
fn link_as_pv_kernel(guest_rt: &str) {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed={guest_rt}/link.ld");
    println!("cargo:rerun-if-changed={guest_rt}/pv_kernel_link.rs");
    println!("cargo:rerun-if-changed=build.rs");
    for arg in [
        &format!("-T{dir}/{guest_rt}/link.ld"),
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=4096",
        "-Wl,-z,norelro",
        "-Wl,--no-dynamic-linker",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
