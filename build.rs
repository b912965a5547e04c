//! Links the hypervisor binary as a freestanding static ELF with arch/link.ld.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir");
    println!("cargo:rerun-if-changed=arch/link.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/arch/link.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=4096",
        "-Wl,--gc-sections",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
