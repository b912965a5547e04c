//! Boot: the Rust side of the 64-bit PV entry, and the `entry!` macro that emits the link-level
//! pieces (`_start`, Xen ELF notes, hypercall page, boot stack, `mem*` functions, panic handler)
//! into the guest binary.
//!
//! Those pieces live in a macro rather than in this crate so that host `cargo test` of any
//! crate that depends on guest-rt never links a second `_start`, `memcpy` or panic handler.

use crate::start_info::{StartInfo, StartInfoExt};
use crate::{hypercall, test, traps};

/// Size of the boot stack `entry!` reserves.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// Called by `_start` with the start_info address Xen passed in RSI and the address of the
/// hypercall page: records the page, copies start_info, installs the trap table and runs
/// `main`. When `main` returns the test ends with [`test::finish`].
pub fn start(start_info_va: u64, hypercall_page: u64, main: fn(&StartInfo)) -> ! {
    hypercall::set_page(hypercall_page);
    // SAFETY: `start_info_va` is the RSI value Xen passed at entry (see `entry!`'s `_start`).
    let si = match unsafe { crate::start_info::read_at(start_info_va) } {
        Ok(si) => si,
        Err(e) => test::error(format_args!(
            "bad start_info at {:#x}: {:?}",
            start_info_va, e
        )),
    };
    crate::start_info::record_boot(&si);
    if !si.is_initdomain() {
        // A domU's console is its ring (as Linux's hvc_xen); dom0 keeps console_io.
        crate::ring_console::attach(&si);
    }
    if let Err(e) = traps::install() {
        test::error(format_args!("set_trap_table failed: {}", e));
    }
    main(&si);
    test::finish()
}

/// Emits the guest's entry point and link-level support, and routes panics to
/// [`crate::panic::report`]. Use once, in the binary: `guest_rt::entry!(main);` with
/// `fn main(si: &guest_rt::start_info::StartInfo)`.
///
/// The linker script must define `__guest_rt_virt_base` (the `VIRT_BASE` note) and map the
/// image at that base with physical addresses relative to it (`PADDR_OFFSET` 0, as Linux).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        extern "C" fn __guest_rt_entry(start_info: u64, hypercall_page: u64) -> ! {
            $crate::boot::start(start_info, hypercall_page, $main)
        }

        #[panic_handler]
        fn __guest_rt_panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::panic::report(info)
        }

        ::core::arch::global_asm!(
            $crate::__guest_rt_boot_asm!(),
            entry = sym __guest_rt_entry,
            options(att_syntax)
        );
    };
}

/// The assembly `entry!` emits (one string). Not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __guest_rt_boot_asm {
    () => {
        concat!(
            // Entry: RSI = start_info, RSP = Xen's boot stack (replaced by ours).
            ".pushsection .text.guest_rt_entry,\"ax\",@progbits\n",
            ".globl _start\n",
            ".type _start, @function\n",
            "_start:\n",
            "  cld\n",
            "  lea guest_rt_boot_stack_top(%rip), %rsp\n",
            "  xor %ebp, %ebp\n",
            "  mov %rsi, %rdi\n",
            "  lea hypercall_page(%rip), %rsi\n",
            "  call {entry}\n",
            "  ud2\n",
            ".size _start, . - _start\n",
            ".popsection\n",
            // The hypercall page: filled by the domain builder; int3 until then.
            ".pushsection .text.hypercall_page,\"ax\",@progbits\n",
            ".balign 4096\n",
            ".globl hypercall_page\n",
            "hypercall_page:\n",
            "  .fill 4096, 1, 0xcc\n",
            ".popsection\n",
            // Boot stack.
            ".pushsection .bss.guest_rt_boot_stack,\"aw\",@nobits\n",
            ".balign 4096\n",
            "guest_rt_boot_stack:\n",
            "  .skip 65536\n",
            "guest_rt_boot_stack_top:\n",
            ".popsection\n",
            // Xen ELF notes (name "Xen", public/elfnote.h numbers).
            ".pushsection .note.Xen,\"a\",@note\n",
            ".macro guest_rt_note type\n",
            "  .balign 4\n",
            "  .long 4\n",
            "  .long 5f - 4f\n",
            "  .long \\type\n",
            "  .asciz \"Xen\"\n",
            "  .balign 4\n",
            "4:\n",
            ".endm\n",
            "guest_rt_note 6\n",
            "  .asciz \"DualVisor-guest-rt\"\n",
            "5:\n",
            "guest_rt_note 7\n",
            "  .asciz \"0.1\"\n",
            "5:\n",
            "guest_rt_note 5\n",
            "  .asciz \"xen-3.0\"\n",
            "5:\n",
            "guest_rt_note 8\n",
            "  .asciz \"generic\"\n",
            "5:\n",
            "guest_rt_note 3\n",
            "  .quad __guest_rt_virt_base\n",
            "5:\n",
            "guest_rt_note 4\n",
            "  .quad 0\n",
            "5:\n",
            "guest_rt_note 1\n",
            "  .quad _start\n",
            "5:\n",
            "guest_rt_note 2\n",
            "  .quad hypercall_page\n",
            "5:\n",
            "guest_rt_note 10\n",
            "  .asciz \"!writable_page_tables|pae_pgdir_above_4gb\"\n",
            "5:\n",
            "guest_rt_note 9\n",
            "  .asciz \"yes\"\n",
            "5:\n",
            "guest_rt_note 14\n",
            "  .long 1\n",
            "5:\n",
            "  .balign 4\n",
            ".purgem guest_rt_note\n",
            ".popsection\n",
            // memcpy/memmove/memset/memcmp/bcmp for core, and unwinding stubs (panic=abort).
            ".pushsection .text.guest_rt_mem,\"ax\",@progbits\n",
            ".globl memcpy\n",
            ".type memcpy, @function\n",
            "memcpy:\n",
            "  mov %rdi, %rax\n",
            "  mov %rdx, %rcx\n",
            "  rep movsb\n",
            "  ret\n",
            ".globl memmove\n",
            ".type memmove, @function\n",
            "memmove:\n",
            "  mov %rdi, %rax\n",
            "  mov %rdx, %rcx\n",
            "  cmp %rsi, %rdi\n",
            "  jbe 6f\n",
            "  lea -1(%rsi,%rcx), %rsi\n",
            "  lea -1(%rdi,%rcx), %rdi\n",
            "  std\n",
            "  rep movsb\n",
            "  cld\n",
            "  ret\n",
            "6:\n",
            "  rep movsb\n",
            "  ret\n",
            ".globl memset\n",
            ".type memset, @function\n",
            "memset:\n",
            "  mov %rdi, %r9\n",
            "  mov %esi, %eax\n",
            "  mov %rdx, %rcx\n",
            "  rep stosb\n",
            "  mov %r9, %rax\n",
            "  ret\n",
            ".globl memcmp\n",
            ".type memcmp, @function\n",
            ".globl bcmp\n",
            ".type bcmp, @function\n",
            "memcmp:\n",
            "bcmp:\n",
            "  xor %eax, %eax\n",
            "  test %rdx, %rdx\n",
            "  jz 8f\n",
            "7:\n",
            "  movzbl (%rdi), %eax\n",
            "  movzbl (%rsi), %ecx\n",
            "  sub %ecx, %eax\n",
            "  jnz 8f\n",
            "  inc %rdi\n",
            "  inc %rsi\n",
            "  dec %rdx\n",
            "  jnz 7b\n",
            "8:\n",
            "  ret\n",
            ".globl rust_eh_personality\n",
            "rust_eh_personality:\n",
            "  ud2\n",
            ".globl _Unwind_Resume\n",
            "_Unwind_Resume:\n",
            "  ud2\n",
            ".popsection\n"
        )
    };
}
