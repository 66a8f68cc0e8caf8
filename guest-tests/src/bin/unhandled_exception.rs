//! Raises #UD without catching it: the runtime reports it and exits with its own code.
#![no_std]
#![no_main]

use postbox_guest::{entry, println, BootInfo};

entry!(elf64, main);

fn main(_info: &BootInfo) -> u32 {
    println!("about to execute ud2");
    // SAFETY: deliberately raises #UD.
    unsafe { core::arch::asm!("ud2") };
    0
}
