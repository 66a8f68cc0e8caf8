//! A multiboot v1 kernel: checks the magic, then prints the command line, the modules
//! (with a checksum of each) and the memory map from the multiboot information.
#![no_std]
#![no_main]

use postbox_guest::{entry, println, BootInfo};

entry!(multiboot, main);

fn main(info: &BootInfo) -> u32 {
    println!("multiboot flags={:#x}", info.flags);
    println!("cmdline={}", info.cmdline().unwrap_or("<none>"));
    println!("loader={}", info.loader_name().unwrap_or("<none>"));
    for (i, m) in info.modules().iter().enumerate() {
        let sum = m
            .bytes()
            .iter()
            .fold(0u32, |s, &b| s.wrapping_mul(31).wrapping_add(u32::from(b)));
        println!(
            "module {} start={:#x} end={:#x} aligned={} name={} hash={:#010x}",
            i,
            m.start,
            m.end,
            m.start % 4096 == 0,
            m.name(),
            sum
        );
    }
    let regions = info.memory_map().count();
    println!("mmap entries={} mem_upper={}KiB", regions, info.mem_upper);
    0
}
