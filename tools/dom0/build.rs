//! Links the dom0 kernel as a freestanding Xen PV kernel with guest-rt's `link.ld` (the same
//! script as the test guests).

include!("../guest-rt/pv_kernel_link.rs");

fn main() {
    link_as_pv_kernel("../guest-rt");
}
