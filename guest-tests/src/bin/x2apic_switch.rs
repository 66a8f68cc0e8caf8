//! The switch from xAPIC to x2APIC through IA32_APIC_BASE, and its rules: the ID and the
//! derived LDR in x2APIC mode, and the #GP for the illegal x2APIC → xAPIC transition.
#![no_std]
#![no_main]

use postbox_guest::apic::{self, *};
use postbox_guest::testing::Checks;
use postbox_guest::{entry, sys, BootInfo};

entry!(elf64, main);

fn main(_info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    let base = sys::rdmsr(MSR_APIC_BASE).unwrap_or(0);
    c.check(
        "APIC base is 0xfee00000, enabled, BSP",
        base & !0xfff == XAPIC_BASE && base & APIC_BASE_EN != 0 && base & APIC_BASE_BSP != 0,
    );
    c.check("starts in xAPIC mode", base & APIC_BASE_EXTD == 0);
    c.check("xAPIC ID of the BSP is 0", apic::id() == 0);
    let version = apic::read(REG_VERSION) as u32;
    c.check(
        "version register reads an integrated APIC",
        version & 0xff >= 0x10,
    );

    c.check("switch to x2APIC", apic::enable_x2apic().is_ok());
    c.check("x2APIC ID MSR reads 0", sys::rdmsr(0x802) == Ok(0));
    c.check(
        "x2APIC LDR is derived from the ID",
        sys::rdmsr(0x80d) == Ok(1),
    );
    c.check(
        "LDR is read-only in x2APIC mode",
        sys::wrmsr(0x80d, 0x10) == Err(13),
    );
    let x2 = sys::rdmsr(MSR_APIC_BASE).unwrap_or(0);
    c.check(
        "illegal x2APIC -> xAPIC transition raises #GP",
        sys::wrmsr(MSR_APIC_BASE, x2 & !APIC_BASE_EXTD) == Err(13),
    );
    c.check(
        "x2APIC -> disabled is legal",
        sys::wrmsr(MSR_APIC_BASE, x2 & !(APIC_BASE_EXTD | APIC_BASE_EN)).is_ok(),
    );
    c.finish()
}
