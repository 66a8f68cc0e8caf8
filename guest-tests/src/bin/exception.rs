//! Raises #UD and #DE at CPL3, catches them and reports vector and RIP.
#![no_std]
#![no_main]

use core::arch::asm;

use postbox_guest::sys::catch_exception;
use postbox_guest::{entry, println, BootInfo};

entry!(elf64, main);

#[inline(never)]
extern "C" fn raise_ud() {
    // SAFETY: UD2 raises #UD, which the runtime catches.
    unsafe {
        asm!("lea {r}, [rip + 2f]", "mov [{slot}], {r}", "2: ud2",
             r = out(reg) _, slot = in(reg) core::ptr::addr_of_mut!(UD_RIP))
    };
}

#[inline(never)]
extern "C" fn raise_de() {
    // SAFETY: a division by zero raises #DE, which the runtime catches.
    unsafe {
        asm!("lea {r}, [rip + 2f]", "mov [{slot}], {r}", "2: div ecx",
             r = out(reg) _, slot = in(reg) core::ptr::addr_of_mut!(DE_RIP),
             in("ecx") 0u32, inout("eax") 1u32 => _, inout("edx") 0u32 => _)
    };
}

/// Addresses of the faulting instructions, stored just before they execute.
static mut UD_RIP: u64 = 0;
static mut DE_RIP: u64 = 0;

fn main(_info: &BootInfo) -> u32 {
    let mut failures = 0;
    for (f, vector) in [(raise_ud as extern "C" fn(), 6), (raise_de, 0)] {
        let caught = catch_exception(f);
        // SAFETY: written by the function that just ran, on this CPU.
        let rip = unsafe {
            if vector == 6 {
                UD_RIP
            } else {
                DE_RIP
            }
        };
        match caught {
            Some(e) => {
                let ok = e.vector == vector && e.rip == rip;
                println!(
                    "caught vector {} at rip {:#x} (expected vector {} at {:#x}): {}",
                    e.vector,
                    e.rip,
                    vector,
                    rip,
                    if ok { "ok" } else { "WRONG" }
                );
                failures += u32::from(!ok);
            }
            None => {
                println!("no exception for vector {}", vector);
                failures += 1;
            }
        }
    }
    println!("exceptions done, failures={}", failures);
    failures
}
