//! Reaches CPL0 through the gate for MSR accesses: a known MSR reads, an MSR nobody
//! implements raises #GP (vector 13), as on hardware.
#![no_std]
#![no_main]

use postbox_guest::{entry, println, sys, BootInfo};

entry!(elf64, main);

const IA32_EFER: u32 = 0xc000_0080;
const EFER_LMA: u64 = 1 << 10;
const UNIMPLEMENTED_MSR: u32 = 0x1234_5678;

fn main(_info: &BootInfo) -> u32 {
    let efer = sys::rdmsr(IA32_EFER);
    let bogus_read = sys::rdmsr(UNIMPLEMENTED_MSR);
    let bogus_write = sys::wrmsr(UNIMPLEMENTED_MSR, 1);
    println!(
        "efer={:?} bogus_read={:?} bogus_write={:?}",
        efer, bogus_read, bogus_write
    );
    let ok = matches!(efer, Ok(v) if v & EFER_LMA != 0)
        && bogus_read == Err(13)
        && bogus_write == Err(13);
    u32::from(!ok)
}
