//! Drives the local APIC and its APICv layer with arbitrary sequences of guest register
//! accesses (xAPIC MMIO of any width and offset, MSRs), interrupt messages, posted
//! interrupts, LINT pins and time. The model must never panic and its derived state must
//! stay consistent after every step.

#![no_main]

use apic::registers::*;
use apic::*;
use libfuzzer_sys::fuzz_target;

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) | u16::from(self.u8()?) << 8)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from(self.u16()?) | u32::from(self.u16()?) << 16)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) | u64::from(self.u32()?) << 32)
    }
}

fn msr_from(selector: u8, low: u8) -> u32 {
    match selector % 4 {
        0 => MSR_IA32_APIC_BASE,
        1 => MSR_IA32_TSC_DEADLINE,
        _ => MSR_X2APIC_FIRST | u32::from(low),
    }
}

fn step(input: &mut Input, v: &mut VirtualApic, pid: &PostedInterruptDescriptor, now: &mut u64) -> Option<()> {
    let op = input.u8()?;
    *now = now.wrapping_add(u64::from(input.u16()?));
    match op % 14 {
        0 => {
            let offset = u64::from(input.u16()?);
            let len = usize::from(input.u8()? % 9);
            let mut buf = [0u8; 8];
            v.apic_mut().mmio_read(offset, &mut buf[..len], *now);
        }
        1 => {
            let offset = u64::from(input.u16()?);
            let len = usize::from(input.u8()? % 9);
            let bytes = input.u64()?.to_le_bytes();
            v.apic_mut().mmio_write(offset, &bytes[..len], *now);
        }
        2 => {
            let msr = msr_from(input.u8()?, input.u8()?);
            let _ = v.apic_mut().read_msr(msr, *now);
        }
        3 => {
            let msr = msr_from(input.u8()?, input.u8()?);
            let value = input.u64()?;
            let _ = v.apic_mut().write_msr(msr, value, *now);
        }
        4 => {
            let vector = input.u8()?;
            let flags = input.u8()?;
            let destination = input.u32()?;
            v.accept(&InterruptRequest {
                vector,
                delivery_mode: DeliveryMode::from_bits(u32::from(flags)),
                destination_mode: if flags & 8 != 0 { DestinationMode::Logical } else { DestinationMode::Physical },
                destination,
                trigger_mode: if flags & 16 != 0 { TriggerMode::Level } else { TriggerMode::Edge },
                level: flags & 32 != 0,
                redirection_hint: flags & 64 != 0,
            });
        }
        5 => {
            v.apic_mut().acknowledge();
        }
        6 => {
            v.apic_mut().tick(*now);
        }
        7 => {
            let pin = input.u8()?;
            v.apic_mut().set_lint(pin % 3, pin & 0x80 != 0);
        }
        8 => {
            let vector = input.u8()?;
            let urgent = input.u8()? & 1 != 0;
            pid.post(vector, urgent);
            v.notification(0xf2, pid);
        }
        9 => {
            v.deliver();
        }
        10 => {
            let offset = u64::from(input.u16()?);
            let len = usize::from(input.u8()? % 9);
            let mut buf = [0u8; 8];
            v.mmio_read_or_emulate(offset, &mut buf[..len], *now);
        }
        11 => {
            let offset = u64::from(input.u16()?);
            let len = usize::from(input.u8()? % 9);
            let bytes = input.u64()?.to_le_bytes();
            v.mmio_write_or_emulate(offset, &bytes[..len], *now);
        }
        12 => {
            let msr = msr_from(input.u8()?, input.u8()?);
            let value = input.u64()?;
            let _ = v.msr_write_or_emulate(msr, value, *now);
            let _ = v.msr_read_or_emulate(msr, *now);
        }
        _ => {
            let entry = LvtEntry::ALL[usize::from(input.u8()? % 7)];
            v.apic_mut().deliver_lvt(entry);
            v.vm_entry();
        }
    }
    Some(())
}

fn highest(bits: &[u64; 4]) -> u8 {
    apic::apicv::highest_of(bits).unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let Some(flags) = input.u8() else { return };
    let controls = ApicvControls {
        use_tpr_shadow: flags & 1 != 0,
        virtualize_apic_accesses: flags & 2 != 0,
        virtualize_x2apic_mode: flags & 4 != 0,
        apic_register_virtualization: flags & 8 != 0,
        virtual_interrupt_delivery: flags & 16 != 0,
        process_posted_interrupts: flags & 32 != 0,
        notification_vector: 0xf2,
        tpr_threshold: flags >> 4,
        eoi_exit_bitmap: [0x0f0f_0000_ffff_0000, 0, u64::MAX, 1 << 63],
        msr_read_intercepts: if flags & 1 != 0 { apic::apicv::default_msr_read_intercepts() } else { [0; 4] },
    };
    let mut config = ApicConfig::new(u32::from(flags) * 3, flags & 64 != 0);
    config.directed_eoi = flags & 128 != 0;
    let mut v = VirtualApic::new(LocalApic::new(config), controls);
    let pid = PostedInterruptDescriptor::new(0xf2, 0);
    let mut now = 0u64;
    while step(&mut input, &mut v, &pid, &mut now).is_some() {
        // The VMM's step before every VM entry: resynchronize RVI/SVI and (V)PPR.
        v.vm_entry();
        if let Err(e) = v.apic().check_invariants() {
            panic!("inconsistent state: {e}");
        }
        assert_eq!(v.svi(), highest(&v.apic().isr()));
        assert_eq!(v.rvi(), highest(&v.apic().irr()));
        if let Some(vector) = v.apic().pending_interrupt() {
            assert!(vector >> 4 > v.apic().compute_ppr() >> 4, "dispatch below PPR");
        }
    }
});
