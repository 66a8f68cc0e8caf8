//! `postbox_guest`: the runtime of Postbox's bare-metal test guests.
//!
//! A guest enters at CPL0 (from the VMM's ELF64 loader or from a multiboot loader), and the
//! runtime sets up a GDT with user segments, a TSS per CPU with IST stacks, and an IDT whose
//! every gate uses an IST stack, then runs the test body at CPL3 with IOPL=3. Test bodies can
//! do port I/O, CLI/STI and MMIO directly; privileged work (MSRs, HLT) goes through a
//! `int3` gate (vector 3, DPL 3) into a small CPL0 part.
//!
//! Why CPL3: on this project's KVM hosts, guest CPL0 code is emulated slowly and without most
//! SSE, while CPL3 code runs natively (see DESIGN.md). The crate itself is compiled without
//! SSE, so its own CPL0 code is safe; CPL0 code must not call into libcore's formatting.
#![no_std]

pub mod apic;
pub mod arch;
pub mod boot;
pub mod igbvf;
pub mod mem;
pub mod serial;
pub mod smp;
pub mod sys;
pub mod testdev;
pub mod testing;
pub mod vtd;

pub use boot::BootInfo;

/// Exit codes the runtime itself uses (the VMM's status is `(code << 1) | 1`).
pub const EXIT_UNHANDLED_EXCEPTION: u32 = 0x7d;
pub const EXIT_PANIC: u32 = 0x7e;

/// Declares the guest's entry and its main function.
///
/// `entry!(elf64, main)` for a guest loaded as an ELF64 kernel (entered in long mode);
/// `entry!(multiboot, main)` for a multiboot v1 kernel (entered in 32-bit protected mode).
/// `main` is `fn(&BootInfo) -> u32`; its result is written to the exit port.
#[macro_export]
macro_rules! entry {
    (elf64, $main:path) => {
        core::arch::global_asm!(
            ".pushsection .text.entry, \"ax\"",
            ".globl _start",
            "_start:",
            "jmp start64",
            ".popsection",
        );
        $crate::entry!(@main $main);
    };
    (multiboot, $main:path) => {
        core::arch::global_asm!(
            ".pushsection .multiboot, \"a\"",
            ".balign 4",
            ".long 0x1BADB002",
            // Flags: page-align modules (bit 0), provide memory information (bit 1).
            ".long 0x00000003",
            ".long -(0x1BADB002 + 0x00000003)",
            ".popsection",
            ".pushsection .text.entry, \"ax\"",
            ".code32",
            ".globl _start",
            "_start:",
            "jmp start32_multiboot",
            ".code64",
            ".popsection",
        );
        $crate::entry!(@main $main);
    };
    (@main $main:path) => {
        #[no_mangle]
        extern "C" fn guest_main(info: &$crate::BootInfo) -> u32 {
            let main: fn(&$crate::BootInfo) -> u32 = $main;
            main(info)
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("guest panic: {}", info);
    sys::exit(EXIT_PANIC)
}

/// The host target's precompiled libcore references this symbol; guests never unwind.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
