//! Triple-faults on purpose: the VMM must report a shutdown with vCPU and RIP.
#![no_std]
#![no_main]

use postbox_guest::{entry, println, sys, BootInfo};

entry!(elf64, main);

fn main(_info: &BootInfo) -> u32 {
    println!("triple faulting");
    sys::triple_fault()
}
