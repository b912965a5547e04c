//! Links the test guest binaries as freestanding Xen PV kernels with guest-rt's `link.ld`.

include!("../../tools/guest-rt/pv_kernel_link.rs");

fn main() {
    link_as_pv_kernel("../../tools/guest-rt");
}
