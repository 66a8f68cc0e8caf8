//! Interrupt storms: thousands of IPIs at one vCPU and a burst of MSIs. Requests for a
//! vector already pending coalesce in IRR (as on hardware), so the receiver takes between
//! one and N of them; the VM must stay responsive throughout.
#![no_std]
#![no_main]

use postbox_guest::apic::{self, ICR_ASSERT, ICR_FIXED};
use postbox_guest::smp::{self, count};
use postbox_guest::testdev::send_msi;
use postbox_guest::testing::{has_flag, wait_until, Checks, TIMEOUT_TSC};
use postbox_guest::{entry, BootInfo};

entry!(elf64, main);

const IPIS: u32 = 2000;
const MSIS: u16 = 4000;

fn main(info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    if has_flag(info, "x2apic") {
        let _ = apic::enable_x2apic();
    }
    let _ = apic::software_enable();
    c.check("AP 1 online", smp::start_ap_like_bsp());

    for _ in 0..IPIS {
        let _ = apic::send_ipi(1, ICR_FIXED | ICR_ASSERT | 0x41);
    }
    c.check(
        "the IPI storm reaches vCPU 1",
        wait_until(|| count(1, 0x41) >= 1),
    );
    c.check("no more deliveries than IPIs", count(1, 0x41) <= IPIS);

    // Compatibility-format MSIs (no remapping) to vCPU 1, vector 0x42, in one burst.
    send_msi(0xfee0_1000, 0x42, 0x0100, MSIS);
    c.check(
        "the MSI burst reaches vCPU 1",
        wait_until(|| count(1, 0x42) >= 1),
    );
    c.check(
        "no more deliveries than MSIs",
        count(1, 0x42) <= u32::from(MSIS),
    );

    let seen = smp::interrupts_taken();
    let _ = apic::self_ipi(0x43);
    c.check(
        "the VM is still responsive",
        smp::wait_for_interrupts(seen, TIMEOUT_TSC) && count(0, 0x43) == 1,
    );
    postbox_guest::println!(
        "vCPU 1 took {} of {} IPIs and {} of {} MSIs",
        count(1, 0x41),
        IPIS,
        count(1, 0x42),
        MSIS
    );
    c.finish()
}
