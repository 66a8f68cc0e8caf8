//! The guest's local APIC driver: xAPIC through MMIO at 0xfee00000 (usable from CPL3),
//! x2APIC through MSRs 0x800 + (offset >> 4) (through the gate from CPL3, directly at CPL0).
//! Intel SDM vol. 3 §11.4 (xAPIC) and §11.12 (x2APIC).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

pub const XAPIC_BASE: u64 = 0xfee0_0000;
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_EN: u64 = 1 << 11;
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// Register offsets in the xAPIC page (the x2APIC MSR is 0x800 + offset / 16).
pub const REG_ID: u32 = 0x20;
pub const REG_VERSION: u32 = 0x30;
pub const REG_TPR: u32 = 0x80;
pub const REG_PPR: u32 = 0xa0;
pub const REG_EOI: u32 = 0xb0;
pub const REG_LDR: u32 = 0xd0;
pub const REG_DFR: u32 = 0xe0;
pub const REG_SVR: u32 = 0xf0;
pub const REG_ISR: u32 = 0x100;
pub const REG_IRR: u32 = 0x200;
pub const REG_ESR: u32 = 0x280;
pub const REG_ICR_LOW: u32 = 0x300;
pub const REG_ICR_HIGH: u32 = 0x310;
pub const REG_LVT_TIMER: u32 = 0x320;
pub const REG_LVT_ERROR: u32 = 0x370;
pub const REG_TIMER_INITIAL: u32 = 0x380;
pub const REG_TIMER_CURRENT: u32 = 0x390;
pub const REG_TIMER_DIVIDE: u32 = 0x3e0;
/// x2APIC only: SELF IPI (MSR 0x83f).
pub const REG_SELF_IPI: u32 = 0x3f0;

pub const SVR_ENABLE: u32 = 1 << 8;
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// ICR fields (SDM §11.6.1).
pub const ICR_FIXED: u64 = 0 << 8;
pub const ICR_LOWEST: u64 = 1 << 8;
pub const ICR_NMI: u64 = 4 << 8;
pub const ICR_INIT: u64 = 5 << 8;
pub const ICR_STARTUP: u64 = 6 << 8;
pub const ICR_LOGICAL: u64 = 1 << 11;
pub const ICR_PENDING: u64 = 1 << 12;
pub const ICR_ASSERT: u64 = 1 << 14;
pub const ICR_LEVEL: u64 = 1 << 15;
pub const ICR_SELF: u64 = 1 << 18;
pub const ICR_ALL_INCLUDING_SELF: u64 = 2 << 18;
pub const ICR_ALL_EXCLUDING_SELF: u64 = 3 << 18;

/// LVT timer modes (bits 18:17) and mask (bit 16).
pub const LVT_MASKED: u32 = 1 << 16;
pub const TIMER_ONE_SHOT: u32 = 0 << 17;
pub const TIMER_PERIODIC: u32 = 1 << 17;
pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;

static X2APIC: AtomicBool = AtomicBool::new(false);

pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

fn at_cpl0() -> bool {
    let cs: u16;
    // SAFETY: reads CS.
    unsafe { core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    cs & 3 == 0
}

fn msr_of(reg: u32) -> u32 {
    0x800 + (reg >> 4)
}

/// Reads an APIC register (64 bits for the x2APIC ICR).
pub fn read(reg: u32) -> u64 {
    if is_x2apic() {
        if at_cpl0() {
            crate::arch::rdmsr_cpl0(msr_of(reg))
        } else {
            sys::rdmsr(msr_of(reg)).unwrap_or(u64::MAX)
        }
    } else {
        // SAFETY: the APIC page is identity-mapped; registers are 32-bit aligned.
        unsafe { core::ptr::read_volatile((XAPIC_BASE + u64::from(reg)) as *const u32) }.into()
    }
}

/// Writes an APIC register; `Err(vector)` if an x2APIC write raised an exception.
pub fn write(reg: u32, value: u64) -> Result<(), u64> {
    if is_x2apic() {
        if at_cpl0() {
            crate::arch::wrmsr_cpl0(msr_of(reg), value);
            Ok(())
        } else {
            sys::wrmsr(msr_of(reg), value)
        }
    } else {
        // SAFETY: as `read`.
        unsafe {
            core::ptr::write_volatile((XAPIC_BASE + u64::from(reg)) as *mut u32, value as u32)
        };
        Ok(())
    }
}

/// Switches this CPU's APIC to x2APIC mode through IA32_APIC_BASE.
pub fn enable_x2apic() -> Result<(), u64> {
    let base = sys::rdmsr(MSR_APIC_BASE)?;
    sys::wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD)?;
    X2APIC.store(true, Ordering::Relaxed);
    Ok(())
}

/// Software-enables the APIC with the spurious vector, TPR 0.
pub fn software_enable() -> Result<(), u64> {
    write(REG_TPR, 0)?;
    write(REG_SVR, u64::from(SVR_ENABLE | u32::from(SPURIOUS_VECTOR)))
}

pub fn id() -> u32 {
    let v = read(REG_ID) as u32;
    if is_x2apic() {
        v
    } else {
        v >> 24
    }
}

/// End of interrupt; at CPL0 (handlers) or CPL3.
pub fn eoi() {
    let _ = write(REG_EOI, 0);
}

/// Sends an IPI: `icr` holds the low 32 bits' fields; `dest` the destination APIC ID.
pub fn send_ipi(dest: u32, icr: u64) -> Result<(), u64> {
    if is_x2apic() {
        write(REG_ICR_LOW, (u64::from(dest) << 32) | icr)
    } else {
        write(REG_ICR_HIGH, u64::from(dest) << 24)?;
        write(REG_ICR_LOW, icr)?;
        // Wait for delivery status to clear.
        let mut spins = 0;
        while read(REG_ICR_LOW) & ICR_PENDING != 0 && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        Ok(())
    }
}

/// A self-IPI through the x2APIC SELF IPI register, or the ICR's self shorthand in xAPIC mode.
pub fn self_ipi(vector: u8) -> Result<(), u64> {
    if is_x2apic() {
        write(REG_SELF_IPI, u64::from(vector))
    } else {
        send_ipi(0, ICR_SELF | ICR_ASSERT | u64::from(vector))
    }
}

/// Whether `vector` is set in the 256-bit register array at `base` (ISR, IRR, TMR).
pub fn bit_in(base: u32, vector: u8) -> bool {
    read(base + 0x10 * u32::from(vector / 32)) & (1 << (vector % 32)) != 0
}
