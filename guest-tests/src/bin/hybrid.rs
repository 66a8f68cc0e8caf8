//! Hybrid interrupt-controller virtualization: a posted IRTE for the MSI test device's
//! source (requester ID 0x100) to vCPU 0. The guest selects that source in the virtual
//! interrupt configuration register (MSR from CPUID 0x40000100 EDX) and sends MSIs one at a
//! time while the VMM attaches a stand-in sharer (`--share-source 0x100:START:END`): the mode
//! must read posted, then trapped, then posted again, and every interrupt must arrive
//! exactly once whatever the mode.
#![no_std]
#![no_main]

use postbox_guest::smp::count;
use postbox_guest::testdev::{fire, send_msi};
use postbox_guest::testing::{spin, wait_until, Checks};
use postbox_guest::vtd::{self, posted_irte, remappable_address, set_irte, Descriptor};
use postbox_guest::{apic, entry, println, sys, BootInfo};

entry!(elf64, main);

const SOURCE: u16 = 0x0100;
const VECTOR: u8 = 0x62;
const MAX_ROUNDS: u32 = 4000;
/// Rounds still sent after the mode came back to posted.
const AFTER: u32 = 20;
const GAP: u64 = 2_000_000;
const VICR_TRAPPED: u64 = 1 << 31;

static PID0: Descriptor = Descriptor::new();

fn main(_info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    // SAFETY: CPUID is available on every x86-64 CPU.
    let vicr = unsafe { core::arch::x86_64::__cpuid(0x4000_0100) }.edx;
    c.check("CPUID names the mode register", vicr != 0);
    c.check(
        "select the source",
        sys::wrmsr(vicr, u64::from(SOURCE)).is_ok(),
    );
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    c.check("VT-d enabled", vtd::enable(true, true).is_ok());
    PID0.init(0xf2, 0, true);
    let (lo, hi) = posted_irte(VECTOR, PID0.address(), false);
    set_irte(6, lo, hi);
    vtd::invalidate_iec();
    send_msi(remappable_address(6), 0, SOURCE, 0);

    let (mut posted_before, mut trapped, mut posted_after, mut sent) = (0u32, 0u32, 0u32, 0u32);
    while sent < MAX_ROUNDS && posted_after < AFTER {
        spin(GAP);
        let mode = sys::rdmsr(vicr).unwrap_or(0);
        let before = count(0, VECTOR);
        fire(1);
        sent += 1;
        if !wait_until(|| count(0, VECTOR) > before) {
            break;
        }
        if mode & VICR_TRAPPED != 0 {
            trapped += 1;
        } else if trapped == 0 {
            posted_before += 1;
        } else {
            posted_after += 1;
        }
    }
    spin(50_000_000);
    println!(
        "HYBRID sent={} delivered={} posted_before={} trapped={} posted_after={}",
        sent,
        count(0, VECTOR),
        posted_before,
        trapped,
        posted_after
    );
    c.check("the source started in posted mode", posted_before > 0);
    c.check("sharing switched it to trapped mode", trapped > 0);
    c.check("the end of sharing switched it back", posted_after > 0);
    c.check(
        "every interrupt arrived exactly once",
        count(0, VECTOR) == sent,
    );
    c.finish()
}
