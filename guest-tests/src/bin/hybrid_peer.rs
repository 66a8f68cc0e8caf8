//! The second VM of the hybrid test (`vmm run --kernel hybrid --share-with hybrid_peer`):
//! it shares the other VM's interrupt source 0x100 through the virtual interrupt
//! configuration register, receives its interrupts as vector 0x63, and stops sharing after
//! `COPIES` of them — which must switch the source back to posted delivery in the owner.
#![no_std]
#![no_main]

use postbox_guest::smp::count;
use postbox_guest::testing::{spin, wait_until, Checks};
use postbox_guest::{apic, entry, println, sys, BootInfo};

entry!(elf64, main);

const SOURCE: u64 = 0x0100;
const VECTOR: u8 = 0x63;
const COPIES: u32 = 30;
const SUBSCRIBE: u64 = 1 << 31;
const UNSUBSCRIBE: u64 = 1 << 30;
/// Lets the owner deliver in posted mode for a while before the sharing starts.
const DELAY_TSC: u64 = 300_000_000;

fn main(_info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    // SAFETY: CPUID is available on every x86-64 CPU.
    let vicr = unsafe { core::arch::x86_64::__cpuid(0x4000_0100) }.edx;
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    spin(DELAY_TSC);
    c.check(
        "share the other VM's source",
        sys::wrmsr(vicr, SOURCE | (u64::from(VECTOR) << 16) | SUBSCRIBE).is_ok(),
    );
    c.check(
        "its interrupts arrive here",
        wait_until(|| count(0, VECTOR) >= COPIES),
    );
    c.check(
        "stop sharing",
        sys::wrmsr(vicr, SOURCE | UNSUBSCRIBE).is_ok(),
    );
    println!("HYBRID_PEER copies={}", count(0, VECTOR));
    c.finish()
}
