//! Reads and writes ports and MMIO that no device claims: reads float high, writes vanish,
//! and the VM goes on, as on a PC.
#![no_std]
#![no_main]

use postbox_guest::arch::{inb, inl, outb};
use postbox_guest::{entry, println, BootInfo};

entry!(elf64, main);

fn main(_info: &BootInfo) -> u32 {
    outb(0x80, 0x12);
    let port8 = inb(0x80);
    let port32 = inl(0x510);
    let mmio = 0xfebf_0000 as *mut u32;
    // SAFETY: an unclaimed MMIO address below the APIC window; the VMM emulates the access.
    let value = unsafe {
        mmio.write_volatile(0xdead_beef);
        mmio.read_volatile()
    };
    println!("port8={:#x} port32={:#x} mmio={:#x}", port8, port32, value);
    u32::from(!(port8 == 0xff && port32 == 0xffff_ffff && value == 0xffff_ffff))
}
