//! Halts with nothing to wake it: the VMM must stay responsive and end it at `--timeout`.
#![no_std]
#![no_main]

use postbox_guest::{entry, println, sys, BootInfo};

entry!(elf64, main);

fn main(_info: &BootInfo) -> u32 {
    println!("halting");
    loop {
        sys::halt();
    }
}
