//! Links the dom0 kernel as a freestanding Xen PV kernel with guest-rt's `link.ld` (the same
//! script as the test guests).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=../guest-rt/link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    for arg in [
        &format!("-T{dir}/../guest-rt/link.ld"),
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
