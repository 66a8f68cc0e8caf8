//! The LAPIC timer in one-shot, periodic and TSC-deadline modes. `x2apic` selects x2APIC.
#![no_std]
#![no_main]

use postbox_guest::apic::{self, *};
use postbox_guest::smp::{self, count};
use postbox_guest::testing::{has_flag, spin, wait_until, Checks, TIMEOUT_TSC};
use postbox_guest::{entry, sys, BootInfo};

entry!(elf64, main);

/// Divide configuration 1011b: divide by 1.
const DIVIDE_BY_1: u64 = 0xb;

fn main(info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    if has_flag(info, "x2apic") {
        let _ = apic::enable_x2apic();
    }
    let _ = apic::software_enable();

    // One-shot.
    let _ = apic::write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    let _ = apic::write(REG_LVT_TIMER, u64::from(TIMER_ONE_SHOT) | 0x50);
    let seen = smp::interrupts_taken();
    let _ = apic::write(REG_TIMER_INITIAL, 2_000_000);
    c.check(
        "one-shot timer fires",
        smp::wait_for_interrupts(seen, TIMEOUT_TSC) && count(0, 0x50) == 1,
    );
    spin(100_000_000);
    c.check("one-shot timer fires once", count(0, 0x50) == 1);
    c.check(
        "current count is 0 after expiry",
        apic::read(REG_TIMER_CURRENT) == 0,
    );

    // Periodic: at least three ticks, then masked.
    let _ = apic::write(REG_LVT_TIMER, u64::from(TIMER_PERIODIC) | 0x51);
    let _ = apic::write(REG_TIMER_INITIAL, 1_000_000);
    c.check(
        "periodic timer ticks repeatedly",
        wait_until(|| count(0, 0x51) >= 3),
    );
    let _ = apic::write(REG_LVT_TIMER, u64::from(TIMER_PERIODIC | LVT_MASKED) | 0x51);
    let _ = apic::write(REG_TIMER_INITIAL, 0);
    spin(20_000_000);
    let after_stop = count(0, 0x51);
    spin(100_000_000);
    c.check(
        "a stopped periodic timer stays quiet",
        count(0, 0x51) == after_stop,
    );

    // TSC deadline.
    let _ = apic::write(REG_LVT_TIMER, u64::from(TIMER_TSC_DEADLINE) | 0x52);
    let seen = smp::interrupts_taken();
    let armed = sys::wrmsr(MSR_TSC_DEADLINE, postbox_guest::arch::rdtsc() + 5_000_000);
    c.check("TSC deadline can be armed", armed.is_ok());
    c.check(
        "TSC-deadline timer fires",
        smp::wait_for_interrupts(seen, TIMEOUT_TSC) && count(0, 0x52) == 1,
    );
    c.check(
        "the deadline MSR reads 0 after firing",
        sys::rdmsr(MSR_TSC_DEADLINE) == Ok(0),
    );
    c.finish()
}
