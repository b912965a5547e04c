//! Links the domu test guest as a freestanding Xen PV kernel with guest-rt's `link.ld`.

include!("../../tools/guest-rt/pv_kernel_link.rs");

fn main() {
    link_as_pv_kernel("../../tools/guest-rt");
}
