//! Priority: TPR holds interrupts back (they wait in IRR); lowering it delivers them highest
//! priority class first, each completed by EOI before the next. `x2apic` selects x2APIC.
#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use postbox_guest::apic::{self, *};
use postbox_guest::arch::{IRQ_ORDER, IRQ_TOTAL};
use postbox_guest::smp::{count, interrupts_taken};
use postbox_guest::testing::{has_flag, spin, wait_until, Checks};
use postbox_guest::{entry, BootInfo};

entry!(elf64, main);

fn main(info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    if has_flag(info, "x2apic") {
        let _ = apic::enable_x2apic();
    }
    let _ = apic::software_enable();

    let _ = apic::write(REG_TPR, 0xf0);
    let before = interrupts_taken();
    for v in [0x45u8, 0x65, 0x55] {
        let _ = apic::self_ipi(v);
    }
    spin(50_000_000);
    c.check(
        "TPR 0xf0 holds all three back",
        interrupts_taken() == before,
    );
    c.check(
        "held vectors wait in IRR",
        [0x45u8, 0x65, 0x55]
            .iter()
            .all(|&v| apic::bit_in(REG_IRR, v)),
    );
    c.check("PPR follows TPR", apic::read(REG_PPR) & 0xf0 == 0xf0);

    let _ = apic::write(REG_TPR, 0x50);
    c.check(
        "TPR 0x50 lets the 0x6x class through",
        wait_until(|| count(0, 0x65) == 1),
    );
    spin(50_000_000);
    c.check(
        "0x5x and 0x4x still held",
        count(0, 0x55) == 0 && count(0, 0x45) == 0,
    );

    let _ = apic::write(REG_TPR, 0);
    c.check(
        "TPR 0 delivers the rest",
        wait_until(|| count(0, 0x55) == 1 && count(0, 0x45) == 1),
    );
    let n = IRQ_TOTAL[0].load(Ordering::SeqCst) as usize;
    let order: [u8; 3] = core::array::from_fn(|i| IRQ_ORDER[0][n - 3 + i].load(Ordering::SeqCst));
    postbox_guest::println!("arrival order {:#x?}", order);
    c.check("delivered in priority order", order == [0x65, 0x55, 0x45]);
    c.check(
        "ISR is empty after the EOIs",
        [0x45u8, 0x55, 0x65]
            .iter()
            .all(|&v| !apic::bit_in(REG_ISR, v)),
    );
    c.finish()
}
