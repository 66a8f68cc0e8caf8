//! The bundled demo guest: reports what it found and exits cleanly.
#![no_std]
#![no_main]

use postbox_guest::boot::MMAP_RAM;
use postbox_guest::{entry, println, BootInfo};

entry!(elf64, main);

fn main(info: &BootInfo) -> u32 {
    println!("postbox demo guest: running at CPL3 with IOPL=3");
    let ram: u64 = info.memory_map().filter(|r| r.kind == MMAP_RAM).map(|r| r.length).sum();
    println!("postbox demo guest: {} MiB of RAM, loader {}", ram >> 20,
             info.loader_name().unwrap_or("?"));
    let t0 = postbox_guest::arch::rdtsc();
    let mut x = 0u64;
    for i in 0..1_000_000u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    let dt = postbox_guest::arch::rdtsc() - t0;
    println!("postbox demo guest: 1e6 iterations at CPL3 took {} TSC cycles (x={:#x})", dt, x & 0xffff);
    0
}
