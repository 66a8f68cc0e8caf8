//! IPIs: self-IPI, fixed IPIs to each AP (physical), the all-excluding-self and
//! all-including-self shorthands, logical destinations, and lowest-priority delivery to a
//! logical set (exactly one receiver). `x2apic` on the command line selects x2APIC mode,
//! `cpus=N` the number of vCPUs.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use postbox_guest::apic::{self, *};
use postbox_guest::smp::{self, count};
use postbox_guest::testing::{has_flag, option, wait_until, Checks, TIMEOUT_TSC};
use postbox_guest::{entry, BootInfo};

entry!(elf64, main);

static READY: AtomicU32 = AtomicU32::new(0);

/// The logical ID a CPU answers to: x2APIC cluster mode derives it from the APIC ID (cluster
/// 0, bit id); in xAPIC flat mode the CPU programs bit `id` of LDR[31:24] itself.
fn logical_bit(cpu: usize) -> u32 {
    1 << cpu
}

fn setup_apic(cpu: usize, x2apic: bool) {
    if x2apic {
        let _ = apic::enable_x2apic();
    } else {
        let _ = apic::write(REG_DFR, 0xffff_ffff);
        let _ = apic::write(REG_LDR, u64::from(logical_bit(cpu)) << 24);
    }
    let _ = apic::software_enable();
}

fn ap_main(cpu: usize) {
    setup_apic(cpu, apic::is_x2apic());
    READY.fetch_add(1, Ordering::SeqCst);
}

fn main(info: &BootInfo) -> u32 {
    let x2apic = has_flag(info, "x2apic");
    let cpus = option(info, "cpus").unwrap_or(1) as usize;
    let mut c = Checks::default();
    setup_apic(0, x2apic);

    let seen = smp::interrupts_taken();
    let _ = apic::self_ipi(0x40);
    c.check(
        "self-IPI arrives once",
        smp::wait_for_interrupts(seen, TIMEOUT_TSC) && count(0, 0x40) == 1,
    );

    let aps = (cpus - 1) as u32;
    let online = smp::start_aps(aps, ap_main, TIMEOUT_TSC);
    c.check("APs started by INIT/SIPI", online == aps);
    c.check(
        "APs enabled their APICs",
        wait_until(|| READY.load(Ordering::SeqCst) == aps),
    );

    for cpu in 1..cpus {
        let _ = apic::send_ipi(cpu as u32, ICR_FIXED | ICR_ASSERT | 0x41);
    }
    c.check(
        "fixed physical IPI reaches each AP once",
        wait_until(|| (1..cpus).all(|cpu| count(cpu, 0x41) == 1)),
    );

    let _ = apic::send_ipi(0, ICR_ALL_EXCLUDING_SELF | ICR_ASSERT | 0x42);
    let others = wait_until(|| (1..cpus).all(|cpu| count(cpu, 0x42) == 1));
    c.check("all-excluding-self reaches every AP", others);
    c.check("all-excluding-self skips the sender", count(0, 0x42) == 0);

    let seen = smp::interrupts_taken();
    let _ = apic::send_ipi(0, ICR_ALL_INCLUDING_SELF | ICR_ASSERT | 0x43);
    let me = smp::wait_for_interrupts(seen, TIMEOUT_TSC) && count(0, 0x43) == 1;
    c.check(
        "all-including-self reaches every CPU",
        me && wait_until(|| (1..cpus).all(|cpu| count(cpu, 0x43) == 1)),
    );

    if cpus >= 3 {
        // Logical destination {CPU 1, CPU 2} (cluster 0 in x2APIC mode).
        let set = logical_bit(1) | logical_bit(2);
        let _ = apic::send_ipi(set, ICR_FIXED | ICR_LOGICAL | ICR_ASSERT | 0x44);
        c.check(
            "fixed logical IPI reaches both members",
            wait_until(|| count(1, 0x44) == 1 && count(2, 0x44) == 1),
        );
        c.check("fixed logical IPI skips non-members", count(0, 0x44) == 0);

        let _ = apic::send_ipi(set, ICR_LOWEST | ICR_LOGICAL | ICR_ASSERT | 0x46);
        let one = wait_until(|| count(1, 0x46) + count(2, 0x46) >= 1);
        postbox_guest::testing::spin(50_000_000);
        c.check(
            "lowest priority delivers to exactly one member",
            one && count(1, 0x46) + count(2, 0x46) == 1,
        );
    }
    c.finish()
}
