//! APIC virtualization rules (SDM vol. 3 chapter 30).

use apic::registers::*;
use apic::*;

const NV: u8 = 0xf2;

fn x2_apic() -> LocalApic {
    let mut apic = LocalApic::new(ApicConfig::new(1, true));
    apic.write_msr(
        MSR_IA32_APIC_BASE,
        APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD,
        0,
    )
    .unwrap();
    apic.write_msr(x2apic_msr(APIC_SVR), 0x1ff, 0).unwrap();
    apic
}

fn xapic_apic() -> LocalApic {
    let mut apic = LocalApic::new(ApicConfig::new(1, true));
    apic.mmio_write(u64::from(APIC_SVR), &0x1ffu32.to_le_bytes(), 0);
    apic
}

fn vapic(controls: ApicvControls) -> VirtualApic {
    VirtualApic::new(x2_apic(), controls)
}

#[test]
fn virtual_apic_page_has_the_hardware_layout() {
    let mut v = vapic(ApicvControls::full(NV));
    v.accept(&InterruptRequest::fixed(0x41, 1));
    v.msr_write(MSR_X2APIC_TPR, 0x20);
    let bytes = v.apic().page().as_bytes();
    assert_eq!(bytes[0x80], 0x20, "VTPR at 0x80");
    assert_eq!(
        bytes[0x200 + 0x20],
        0b10,
        "VIRR: vector 0x41 is word 2 (0x220) bit 1"
    );
    assert_eq!(
        u32::from_le_bytes(bytes[0x20..0x24].try_into().unwrap()),
        1,
        "x2APIC ID"
    );
    v.deliver();
    let bytes = v.apic().page().as_bytes();
    assert_eq!(bytes[0x100 + 0x20], 0b10, "VISR at 0x100..");
    assert_eq!(bytes[0xa0], 0x40, "VPPR at 0xa0");
}

#[test]
fn virtual_interrupt_delivery_and_eoi_virtualization() {
    let mut v = vapic(ApicvControls::full(NV));
    v.accept(&InterruptRequest::fixed(0x41, 1));
    v.accept(&InterruptRequest::fixed(0x82, 1));
    assert_eq!(v.rvi(), 0x82);
    assert_eq!(v.evaluate(), Some(0x82), "RVI class 8 > VPPR class 0");
    assert_eq!(v.deliver(), Some(0x82));
    assert_eq!((v.svi(), v.rvi(), v.vppr()), (0x82, 0x41, 0x80));
    assert_eq!(v.evaluate(), None, "0x41 is below VPPR");
    assert_eq!(v.guest_interrupt_status(), 0x8241);
    // EOI of a vector not in the EOI-exit bitmap completes without exit.
    assert_eq!(v.msr_write(MSR_X2APIC_EOI, 0), Access::Virtualized(()));
    assert_eq!((v.svi(), v.vppr()), (0, 0));
    assert_eq!(v.deliver(), Some(0x41));
    assert_eq!(
        v.msr_write(MSR_X2APIC_EOI, 1),
        Access::Fault(Exception::GeneralProtection)
    );
}

#[test]
fn eoi_exit_bitmap_reports_an_eoi_induced_exit() {
    let mut controls = ApicvControls::full(NV);
    controls.eoi_exit_bitmap[1] = 1 << (0x51 - 64);
    let mut v = vapic(controls);
    v.accept(&InterruptRequest {
        trigger_mode: TriggerMode::Level,
        ..InterruptRequest::fixed(0x51, 1)
    });
    v.deliver();
    let (handling, result) = v.msr_write_or_emulate(MSR_X2APIC_EOI, 0, 0);
    assert_eq!(
        handling,
        Handling::Exit(VmExit::VirtualizedEoi { vector: 0x51 })
    );
    assert!(result
        .unwrap()
        .contains(&ApicAction::EoiBroadcast { vector: 0x51 }));
    assert_eq!(v.apic().isr(), [0; 4]);
}

#[test]
fn tpr_virtualization_with_and_without_vid() {
    let mut v = vapic(ApicvControls::full(NV));
    v.accept(&InterruptRequest::fixed(0x45, 1));
    assert_eq!(v.msr_write(MSR_X2APIC_TPR, 0x50), Access::Virtualized(()));
    assert_eq!(v.vppr(), 0x50);
    assert_eq!(v.evaluate(), None);
    v.msr_write(MSR_X2APIC_TPR, 0x30);
    assert_eq!(v.evaluate(), Some(0x45));
    assert_eq!(
        v.msr_write(MSR_X2APIC_TPR, 0x100),
        Access::Fault(Exception::GeneralProtection)
    );

    let controls = ApicvControls {
        virtual_interrupt_delivery: false,
        tpr_threshold: 4,
        ..ApicvControls::full(NV)
    };
    let mut v = vapic(controls);
    assert_eq!(v.msr_write(MSR_X2APIC_TPR, 0x40), Access::Virtualized(()));
    assert_eq!(
        v.msr_write(MSR_X2APIC_TPR, 0x3f),
        Access::Exit(VmExit::TprBelowThreshold)
    );
    assert_eq!(v.vtpr(), 0x3f, "trap-like: the write happened");
}

#[test]
fn self_ipi_virtualization() {
    let mut v = vapic(ApicvControls::full(NV));
    assert_eq!(
        v.msr_write(MSR_X2APIC_SELF_IPI, 0x63),
        Access::Virtualized(())
    );
    assert_eq!(v.rvi(), 0x63);
    assert_eq!(v.evaluate(), Some(0x63));
    assert_eq!(
        v.msr_write(MSR_X2APIC_SELF_IPI, 0x05),
        Access::Exit(VmExit::ApicWrite {
            offset: APIC_SELF_IPI
        }),
        "illegal vector: APIC-write exit"
    );
    assert_eq!(
        v.msr_write(MSR_X2APIC_SELF_IPI, 0x163),
        Access::Fault(Exception::GeneralProtection)
    );
}

#[test]
fn x2apic_msr_read_virtualization_depends_on_register_virtualization() {
    let mut v = vapic(ApicvControls::full(NV));
    assert_eq!(v.msr_read(x2apic_msr(APIC_ID)), Access::Virtualized(1));
    // With APIC-register virtualization every MSR 800H-8FFH reads the page (§30.5),
    // the 64-bit ICR included.
    let _ = v.msr_write_or_emulate(x2apic_msr(APIC_ICR_LOW), 0x0000_0005_0000_0041, 0);
    assert_eq!(
        v.msr_read(x2apic_msr(APIC_ICR_LOW)),
        Access::Virtualized(0x0000_0005_0000_0041)
    );
    // ... unless the MSR bitmap intercepts the read: the current count and non-registers.
    assert!(v.msr_read(x2apic_msr(APIC_TIMER_CURRENT_COUNT)).is_exit());
    assert!(v.msr_read(MSR_X2APIC_EOI).is_exit());
    let (_, r) = v.msr_read_or_emulate(0x809, 0);
    assert_eq!(
        r,
        Err(Exception::GeneralProtection),
        "APR does not exist in x2APIC mode"
    );
    v.controls.msr_read_intercepts = [0; 4];
    assert_eq!(
        v.msr_read(0x809),
        Access::Virtualized(0),
        "the page is read blindly"
    );
    v.controls.msr_read_intercepts = apic::apicv::default_msr_read_intercepts();
    assert!(
        v.msr_write(x2apic_msr(APIC_ICR_LOW), 0x41).is_exit(),
        "ICR writes exit"
    );
    let mut v = vapic(ApicvControls {
        apic_register_virtualization: false,
        ..ApicvControls::full(NV)
    });
    assert!(v.msr_read(x2apic_msr(APIC_ID)).is_exit());
    assert_eq!(v.msr_read(MSR_X2APIC_TPR), Access::Virtualized(0));
    // The control, not the APIC mode, decides (§30.5); without it, RDMSR exits and the
    // emulation raises #GP outside x2APIC mode.
    let mut v = VirtualApic::new(xapic_apic(), ApicvControls::full(NV));
    assert_eq!(v.msr_read(MSR_X2APIC_TPR), Access::Virtualized(0));
    v.controls.virtualize_x2apic_mode = false;
    assert_eq!(
        v.msr_read(MSR_X2APIC_TPR),
        Access::Exit(VmExit::MsrRead {
            msr: MSR_X2APIC_TPR
        })
    );
    let (h, r) = v.msr_read_or_emulate(MSR_X2APIC_TPR, 0);
    assert!(matches!(h, Handling::Exit(_)));
    assert_eq!(
        r,
        Err(Exception::GeneralProtection),
        "emulation: #GP in xAPIC mode"
    );
}

#[test]
fn exits_are_emulated_by_the_or_emulate_methods() {
    let mut v = vapic(ApicvControls::full(NV));
    let (h, r) = v.msr_write_or_emulate(x2apic_msr(APIC_ICR_LOW), 0x0000_0002_0000_0041, 0);
    assert_eq!(h, Handling::Exit(VmExit::MsrWrite { msr: 0x830 }));
    let actions = r.unwrap();
    assert!(
        matches!(actions.iter().next(), Some(ApicAction::SendIpi(ipi)) if ipi.request.destination == 2)
    );
    let (h, r) = v.msr_read_or_emulate(x2apic_msr(APIC_TIMER_CURRENT_COUNT), 0);
    assert!(matches!(h, Handling::Exit(_)));
    assert_eq!(r, Ok(0));
}

#[test]
fn xapic_mmio_virtualization() {
    let mut v = VirtualApic::new(xapic_apic(), ApicvControls::full(NV));
    let mut b = [0u8; 4];
    assert_eq!(v.mmio_read(0x30, &mut b), Access::Virtualized(()));
    assert_eq!(u32::from_le_bytes(b), 0x0106_0014);
    assert!(v.mmio_read(0xa0, &mut b).is_exit(), "PPR reads exit");
    assert!(
        v.mmio_read(0x390, &mut b).is_exit(),
        "current count reads exit"
    );
    assert!(v.mmio_read(0x2e, &mut b).is_exit(), "spans a dword");
    // TPR write: virtualized.
    assert_eq!(
        v.mmio_write(0x80, &0x20u32.to_le_bytes()),
        Access::Virtualized(())
    );
    assert_eq!(v.vtpr(), 0x20);
    // Self IPI through the ICR (shorthand self, fixed, edge): virtualized.
    assert_eq!(
        v.mmio_write(0x300, &0x0004_0071u32.to_le_bytes()),
        Access::Virtualized(())
    );
    assert_eq!(v.evaluate(), Some(0x71));
    // Any other ICR write: APIC-write exit, then the VMM emulates it.
    let (h, actions) = v.mmio_write_or_emulate(0x300, &0x0000_4071u32.to_le_bytes(), 0);
    assert_eq!(h, Handling::Exit(VmExit::ApicWrite { offset: 0x300 }));
    assert_eq!(actions.len(), 1);
    // EOI: virtualized.
    v.deliver();
    assert_eq!(
        v.mmio_write(0xb0, &0u32.to_le_bytes()),
        Access::Virtualized(())
    );
    assert_eq!(v.apic().isr(), [0; 4]);
    // SVR write with register virtualization: APIC-write exit, emulated from the old state.
    let (h, _) = v.mmio_write_or_emulate(0xf0, &0xffu32.to_le_bytes(), 0);
    assert_eq!(h, Handling::Exit(VmExit::ApicWrite { offset: 0xf0 }));
    assert!(!v.apic().software_enabled());
    assert_eq!(v.apic().lvt(LvtEntry::Timer) & LVT_MASKED, LVT_MASKED);
    // Without TPR shadow every access exits.
    let mut v = VirtualApic::new(xapic_apic(), ApicvControls::default());
    assert!(v.mmio_read(0x80, &mut b).is_exit());
}

#[test]
fn posted_interrupt_processing() {
    let pid = PostedInterruptDescriptor::new(NV, 1);
    let mut v = vapic(ApicvControls::full(NV));
    pid.post(0x33, false);
    assert_eq!(pid.post(0x91, false), PostOutcome::AlreadyOutstanding);
    assert!(!v.notification(0x20, &pid), "not the notification vector");
    assert!(pid.on());
    assert!(v.notification(NV, &pid));
    assert!(!pid.on() && !pid.pir_pending());
    assert_eq!(v.rvi(), 0x91);
    assert_eq!(v.deliver(), Some(0x91));
    assert_eq!(v.rvi(), 0x33);
    v.msr_write(MSR_X2APIC_EOI, 0);
    assert_eq!(v.deliver(), Some(0x33));
}

#[test]
fn evaluation_needs_a_higher_class_than_vppr() {
    let mut v = vapic(ApicvControls::full(NV));
    v.msr_write(MSR_X2APIC_TPR, 0x5f);
    v.accept(&InterruptRequest::fixed(0x50, 1));
    assert_eq!(v.evaluate(), None, "RVI class 5 = VPPR class 5");
    v.accept(&InterruptRequest::fixed(0x60, 1));
    assert_eq!(v.pending_interrupt(), Some(0x60));
    assert_eq!(v.acknowledge(), Some(0x60));
    assert_eq!(v.evaluate(), None, "0x50 waits behind VPPR 0x60");
}

#[test]
fn timer_interrupts_raise_rvi() {
    let mut v = vapic(ApicvControls::full(NV));
    v.apic_mut()
        .write_msr(x2apic_msr(APIC_TIMER_DIVIDE), 0xb, 0)
        .unwrap();
    v.apic_mut()
        .write_msr(x2apic_msr(APIC_LVT_TIMER), 0x3c, 0)
        .unwrap();
    v.apic_mut()
        .write_msr(x2apic_msr(APIC_TIMER_INITIAL_COUNT), 10, 0)
        .unwrap();
    v.tick(10);
    assert_eq!(v.rvi(), 0x3c);
    assert_eq!(v.pending_interrupt(), Some(0x3c));
}

#[test]
fn without_vid_the_apic_dispatches() {
    let mut v = vapic(ApicvControls {
        virtual_interrupt_delivery: false,
        ..ApicvControls::full(NV)
    });
    v.accept(&InterruptRequest::fixed(0x44, 1));
    assert_eq!(v.pending_interrupt(), Some(0x44));
    assert_eq!(v.acknowledge(), Some(0x44));
    assert!(
        v.msr_write(MSR_X2APIC_EOI, 0).is_exit(),
        "EOI is not virtualized without virtual-interrupt delivery"
    );
    let (_, r) = v.msr_write_or_emulate(MSR_X2APIC_EOI, 0, 0);
    assert!(r.is_ok());
    assert_eq!(v.apic().isr(), [0; 4]);
    assert!(
        v.msr_write(MSR_X2APIC_SELF_IPI, 0x50).is_exit(),
        "self IPI is not virtualized either"
    );
}

#[test]
fn xapic_mmio_eoi_with_exit_bitmap_and_tpr_threshold() {
    let mut controls = ApicvControls::full(NV);
    controls.eoi_exit_bitmap[3] = 1 << (0xe1 - 192);
    let mut v = VirtualApic::new(xapic_apic(), controls);
    v.accept(&InterruptRequest::fixed(0xe1, 1));
    v.deliver();
    let (h, _) = v.mmio_write_or_emulate(0xb0, &0u32.to_le_bytes(), 0);
    assert_eq!(h, Handling::Exit(VmExit::VirtualizedEoi { vector: 0xe1 }));
    // ICR high: virtualized, bits 23:0 cleared.
    assert_eq!(
        v.mmio_write(0x310, &0x0312_3456u32.to_le_bytes()),
        Access::Virtualized(())
    );
    assert_eq!(v.apic().page().read(0x310), 0x0300_0000);
    // Self IPI through the ICR with an illegal vector: APIC-write exit.
    assert_eq!(
        v.mmio_write(0x300, &0x0004_0005u32.to_le_bytes()),
        Access::Exit(VmExit::ApicWrite { offset: 0x300 })
    );
    // TPR threshold without virtual-interrupt delivery.
    let mut v = VirtualApic::new(
        xapic_apic(),
        ApicvControls {
            virtual_interrupt_delivery: false,
            apic_register_virtualization: false,
            tpr_threshold: 3,
            ..ApicvControls::full(NV)
        },
    );
    assert_eq!(v.mmio_write(0x80, &[0x30]), Access::Virtualized(()));
    assert_eq!(
        v.mmio_write(0x80, &[0x20]),
        Access::Exit(VmExit::TprBelowThreshold)
    );
    let mut b = [0u8; 4];
    assert_eq!(v.mmio_read(0x80, &mut b), Access::Virtualized(()));
    assert_eq!(b[0], 0x20);
    assert_eq!(
        v.mmio_read(0x20, &mut b),
        Access::Exit(VmExit::ApicAccess {
            offset: 0x20,
            write: false
        }),
        "only TPR reads are virtualized without register virtualization"
    );
    assert!(
        v.mmio_write(0xb0, &[0; 4]).is_exit(),
        "EOI needs VID or register virtualization"
    );
}

#[test]
fn cr8_accesses_use_the_tpr_shadow() {
    let mut v = vapic(ApicvControls::full(NV));
    v.accept(&InterruptRequest::fixed(0x45, 1));
    assert_eq!(v.cr8_write(0x5), Access::Virtualized(()));
    assert_eq!(v.vtpr(), 0x50);
    assert_eq!(v.evaluate(), None);
    assert_eq!(v.cr8_read(), Access::Virtualized(5));
    assert_eq!(
        v.cr8_write(0x10),
        Access::Fault(Exception::GeneralProtection)
    );
    let mut v = vapic(ApicvControls::default());
    assert_eq!(v.cr8_write(1), Access::Exit(VmExit::Cr8Write));
    assert_eq!(v.cr8_read(), Access::Exit(VmExit::Cr8Read));
}
