//! Prints the memory map the loader passed, and checks the RAM it reports is usable.
#![no_std]
#![no_main]

use postbox_guest::boot::MMAP_RAM;
use postbox_guest::{entry, println, BootInfo};

entry!(elf64, main);

fn main(info: &BootInfo) -> u32 {
    let mut ram = 0u64;
    let mut top = 0u64;
    for region in info.memory_map() {
        println!(
            "mmap base={:#x} length={:#x} type={}",
            region.base, region.length, region.kind
        );
        if region.kind == MMAP_RAM {
            ram += region.length;
            top = top.max(region.base + region.length);
        }
    }
    println!(
        "mem_lower={}KiB mem_upper={}KiB",
        info.mem_lower, info.mem_upper
    );
    println!("ram total={:#x}", ram);
    // Touch the last usable page: it must be RAM, not a hole.
    let last = (top - 8) as *mut u64;
    // SAFETY: the loader says this address is RAM; it is identity-mapped.
    unsafe {
        last.write_volatile(0x5a5a_a5a5_0102_0304);
        if last.read_volatile() != 0x5a5a_a5a5_0102_0304 {
            println!("top of RAM is not writable");
            return 1;
        }
    }
    println!("top of ram {:#x} writable", top);
    0
}
