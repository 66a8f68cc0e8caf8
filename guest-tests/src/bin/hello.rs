//! Prints a greeting from CPL3 and exits with code 0.
#![no_std]
#![no_main]

use postbox_guest::{entry, println, BootInfo};

entry!(elf64, main);

fn main(info: &BootInfo) -> u32 {
    println!("hello from postbox guest");
    println!("loader: {}", info.loader_name().unwrap_or("?"));
    0
}
