//! One test per local APIC rule, written from the Intel SDM vol. 3 chapter 11.

use apic::registers::*;
use apic::*;

const BASE_XAPIC: u64 = APIC_DEFAULT_BASE | APIC_BASE_ENABLE;
const BASE_X2APIC: u64 = BASE_XAPIC | APIC_BASE_EXTD;

fn x2(id: u32) -> LocalApic {
    let mut apic = LocalApic::new(ApicConfig::new(id, false));
    apic.write_msr(MSR_IA32_APIC_BASE, BASE_X2APIC, 0).unwrap();
    apic.write_msr(x2apic_msr(APIC_SVR), 0x1ff, 0).unwrap();
    // Start the AP out of wait-for-SIPI.
    apic.accept(&with_mode(DeliveryMode::StartUp, 0x10));
    apic
}

fn xapic(id: u32) -> LocalApic {
    let mut apic = LocalApic::new(ApicConfig::new(id, true));
    mmio_w(&mut apic, APIC_SVR, 0x1ff);
    apic
}

fn mmio_r(apic: &mut LocalApic, offset: u16) -> u32 {
    let mut b = [0u8; 4];
    assert!(apic.mmio_read(u64::from(offset), &mut b, 0));
    u32::from_le_bytes(b)
}

fn mmio_w(apic: &mut LocalApic, offset: u16, value: u32) -> Actions {
    apic.mmio_write(u64::from(offset), &value.to_le_bytes(), 0)
}

fn wr(apic: &mut LocalApic, offset: u16, value: u64) -> Result<Actions, Exception> {
    apic.write_msr(x2apic_msr(offset), value, 0)
}

fn rd(apic: &mut LocalApic, offset: u16) -> Result<u64, Exception> {
    apic.read_msr(x2apic_msr(offset), 0)
}

const GP: Exception = Exception::GeneralProtection;

fn level(vector: u8) -> InterruptRequest {
    InterruptRequest {
        trigger_mode: TriggerMode::Level,
        ..InterruptRequest::fixed(vector, 0)
    }
}

fn with_mode(mode: DeliveryMode, vector: u8) -> InterruptRequest {
    InterruptRequest {
        delivery_mode: mode,
        ..InterruptRequest::fixed(vector, 0)
    }
}

// ---- Power-up state (§11.4.7.1) --------------------------------------------------------

#[test]
fn power_up_state() {
    let mut bsp = LocalApic::new(ApicConfig::new(3, true));
    assert_eq!(bsp.apic_base(), 0xfee0_0900, "base 0xfee00000, EN, BSP");
    assert_eq!(bsp.mode(), ApicMode::XApic);
    assert_eq!(mmio_r(&mut bsp, APIC_ID), 3 << 24);
    assert_eq!(mmio_r(&mut bsp, APIC_VERSION), 0x0106_0014);
    assert_eq!(mmio_r(&mut bsp, APIC_DFR), 0xffff_ffff);
    assert_eq!(mmio_r(&mut bsp, APIC_SVR), 0xff);
    for e in LvtEntry::ALL {
        assert_eq!(bsp.lvt(e), LVT_MASKED, "{e:?} masked at reset");
    }
    assert_eq!(bsp.processor_state(), ProcessorState::Running);
    let ap = LocalApic::new(ApicConfig::new(1, false));
    assert_eq!(ap.apic_base(), 0xfee0_0800);
    assert_eq!(ap.processor_state(), ProcessorState::WaitForSipi);
}

#[test]
fn version_without_directed_eoi_support() {
    let mut cfg = ApicConfig::new(0, true);
    cfg.directed_eoi = false;
    let mut apic = LocalApic::new(cfg);
    assert_eq!(mmio_r(&mut apic, APIC_VERSION), 0x0006_0014);
    apic.write_msr(MSR_IA32_APIC_BASE, BASE_X2APIC, 0).unwrap();
    assert_eq!(wr(&mut apic, APIC_SVR, 0x11ff), Err(GP), "bit 12 reserved");
}

// ---- IA32_APIC_BASE transitions (§11.12.5) ----------------------------------------------

#[test]
fn apic_base_legal_transitions() {
    let mut apic = LocalApic::new(ApicConfig::new(0x23, false));
    let a = apic.write_msr(MSR_IA32_APIC_BASE, BASE_X2APIC, 0).unwrap();
    assert!(a.contains(&ApicAction::ModeChanged {
        mode: ApicMode::X2Apic,
        base: APIC_DEFAULT_BASE
    }));
    assert_eq!(rd(&mut apic, APIC_ID), Ok(0x23));
    assert_eq!(rd(&mut apic, APIC_LDR), Ok(0x0002_0008), "cluster 2, bit 3");
    apic.write_msr(MSR_IA32_APIC_BASE, APIC_DEFAULT_BASE, 0)
        .unwrap();
    assert_eq!(apic.mode(), ApicMode::Disabled);
    assert_eq!(apic.mmio_base(), None);
    apic.write_msr(MSR_IA32_APIC_BASE, BASE_XAPIC, 0).unwrap();
    assert_eq!(apic.mode(), ApicMode::XApic);
    assert_eq!(mmio_r(&mut apic, APIC_ID), 0x23 << 24);
    assert_eq!(
        mmio_r(&mut apic, APIC_SVR),
        0xff,
        "reset state after disable"
    );
}

#[test]
fn apic_base_illegal_transitions_gp() {
    let mut apic = x2(1);
    assert_eq!(
        apic.write_msr(MSR_IA32_APIC_BASE, BASE_XAPIC, 0),
        Err(GP),
        "x2APIC→xAPIC"
    );
    let mut apic = LocalApic::new(ApicConfig::new(0, true));
    apic.write_msr(MSR_IA32_APIC_BASE, APIC_DEFAULT_BASE, 0)
        .unwrap();
    assert_eq!(
        apic.write_msr(
            MSR_IA32_APIC_BASE,
            APIC_DEFAULT_BASE | APIC_BASE_EXTD | APIC_BASE_ENABLE,
            0
        ),
        Err(GP),
        "disabled→x2APIC"
    );
    assert_eq!(
        apic.write_msr(MSR_IA32_APIC_BASE, APIC_DEFAULT_BASE | APIC_BASE_EXTD, 0),
        Err(GP),
        "EXTD without EN"
    );
    for reserved in [1u64 << 0, 1 << 9, 1 << 46, 1 << 63] {
        assert_eq!(
            apic.write_msr(MSR_IA32_APIC_BASE, BASE_XAPIC | reserved, 0),
            Err(GP),
            "reserved bit {reserved:#x}"
        );
    }
    assert_eq!(
        apic.mode(),
        ApicMode::Disabled,
        "failed writes change nothing"
    );
}

#[test]
fn relocating_the_page_is_reported() {
    let mut apic = xapic(0);
    let a = apic
        .write_msr(
            MSR_IA32_APIC_BASE,
            0xfed0_0000 | APIC_BASE_ENABLE | APIC_BASE_BSP,
            0,
        )
        .unwrap();
    assert!(a.contains(&ApicAction::ModeChanged {
        mode: ApicMode::XApic,
        base: 0xfed0_0000
    }));
    assert_eq!(apic.mmio_base(), Some(0xfed0_0000));
}

// ---- x2APIC MSR interface (§11.12.1) ---------------------------------------------------

#[test]
fn x2apic_msrs_gp_outside_x2apic_mode() {
    let mut apic = xapic(0);
    assert_eq!(rd(&mut apic, APIC_ID), Err(GP));
    assert_eq!(wr(&mut apic, APIC_TPR, 0), Err(GP));
    let mut apic = x2(0);
    let mut b = [0u8; 4];
    assert!(
        !apic.mmio_read(0x20, &mut b, 0),
        "MMIO page not decoded in x2APIC mode"
    );
}

#[test]
fn x2apic_read_only_write_only_and_missing_registers_gp() {
    let mut apic = x2(5);
    for ro in [
        APIC_ID,
        APIC_VERSION,
        APIC_LDR,
        APIC_PPR,
        APIC_ISR,
        APIC_TMR + 0x70,
        APIC_IRR,
        APIC_TIMER_CURRENT_COUNT,
    ] {
        assert_eq!(wr(&mut apic, ro, 0), Err(GP), "write to read-only {ro:#x}");
    }
    for wo in [APIC_EOI, APIC_SELF_IPI] {
        assert_eq!(rd(&mut apic, wo), Err(GP), "read of write-only {wo:#x}");
    }
    for missing in [
        0x800u32, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x831, 0x83a, 0x83d, 0x840, 0x8ff,
    ] {
        assert_eq!(apic.read_msr(missing, 0), Err(GP), "read {missing:#x}");
        assert_eq!(apic.write_msr(missing, 0, 0), Err(GP), "write {missing:#x}");
    }
    assert_eq!(apic.read_msr(0x10, 0), Err(GP), "not an APIC MSR");
}

#[test]
fn x2apic_reserved_bits_gp() {
    let mut apic = x2(0);
    assert_eq!(wr(&mut apic, APIC_TPR, 0x100), Err(GP));
    assert_eq!(
        wr(&mut apic, APIC_TPR, 1 << 32),
        Err(GP),
        "upper half reserved"
    );
    assert_eq!(wr(&mut apic, APIC_EOI, 1), Err(GP));
    assert_eq!(wr(&mut apic, APIC_ESR, 1), Err(GP));
    assert_eq!(wr(&mut apic, APIC_SELF_IPI, 0x100), Err(GP));
    assert_eq!(wr(&mut apic, APIC_TIMER_DIVIDE, 0x4), Err(GP));
    assert_eq!(
        wr(&mut apic, APIC_LVT_ERROR, 0x700),
        Err(GP),
        "error LVT has no delivery mode"
    );
    assert_eq!(wr(&mut apic, APIC_ICR_LOW, 1 << 13), Err(GP));
    // Delivery status is reserved in x2APIC mode but ignored by Intel processors.
    assert!(wr(
        &mut apic,
        APIC_ICR_LOW,
        u64::from(ICR_DELIVERY_STATUS) | 0x40
    )
    .is_ok());
    assert_eq!(rd(&mut apic, APIC_ICR_LOW), Ok(0x40));
    assert_eq!(wr(&mut apic, APIC_SVR, 0x2000), Err(GP));
    // Read-only LVT bits are ignored, not reserved.
    assert!(wr(&mut apic, APIC_LVT_LINT0, u64::from(LVT_REMOTE_IRR | 0x40)).is_ok());
    assert_eq!(apic.lvt(LvtEntry::Lint0), 0x40);
}

#[test]
fn x2apic_icr_is_one_64_bit_register() {
    let mut apic = x2(7);
    let a = wr(&mut apic, APIC_ICR_LOW, 0x0000_1234_0000_4041).unwrap();
    assert_eq!(rd(&mut apic, APIC_ICR_LOW), Ok(0x0000_1234_0000_4041));
    let ipi = match a.iter().next() {
        Some(ApicAction::SendIpi(ipi)) => *ipi,
        other => panic!("expected an IPI, got {other:?}"),
    };
    assert_eq!(ipi.request.destination, 0x1234);
    assert_eq!(ipi.request.vector, 0x41);
    assert_eq!(ipi.format, DestinationFormat::X2Apic);
    assert_eq!(ipi.source_id, 7);
    assert_eq!(ipi.shorthand, Shorthand::None);
}

// ---- xAPIC MMIO (§11.4.1) -------------------------------------------------------------

#[test]
fn xapic_mmio_widths_and_alignment() {
    let mut apic = xapic(0x12);
    mmio_w(&mut apic, APIC_TPR, 0x4d);
    let mut b1 = [0u8; 1];
    apic.mmio_read(u64::from(APIC_ID) + 3, &mut b1, 0);
    assert_eq!(b1[0], 0x12, "byte 3 of the ID register");
    let mut b8 = [0xaau8; 8];
    apic.mmio_read(u64::from(APIC_TPR), &mut b8, 0);
    assert_eq!(
        b8,
        [0x4d, 0, 0, 0, 0, 0, 0, 0],
        "bytes 4–15 of a slot read 0"
    );
    // Writes that are not aligned 32-bit are ignored.
    apic.mmio_write(u64::from(APIC_TPR), &[0x20], 0);
    apic.mmio_write(u64::from(APIC_TPR) + 4, &0x30u32.to_le_bytes(), 0);
    apic.mmio_write(u64::from(APIC_TPR), &0x40u64.to_le_bytes(), 0);
    assert_eq!(apic.tpr(), 0x4d);
    // Offsets beyond the page never panic.
    let mut b = [0u8; 4];
    apic.mmio_read(0xffe, &mut b, 0);
    apic.mmio_read(u64::MAX, &mut b, 0);
    apic.mmio_write(u64::MAX - 3, &[0; 4], 0);
}

#[test]
fn xapic_reserved_bits_read_back_zero_and_dfr_low_bits_one() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_TPR, 0xffff_ffff);
    assert_eq!(mmio_r(&mut apic, APIC_TPR), 0xff);
    mmio_w(&mut apic, APIC_DFR, 0);
    assert_eq!(mmio_r(&mut apic, APIC_DFR), 0x0fff_ffff, "cluster model");
    mmio_w(&mut apic, APIC_LDR, 0xffff_ffff);
    assert_eq!(mmio_r(&mut apic, APIC_LDR), 0xff00_0000);
    mmio_w(&mut apic, APIC_VERSION, 0);
    assert_eq!(mmio_r(&mut apic, APIC_VERSION), 0x0106_0014, "read-only");
}

#[test]
fn esr_latches_on_write_and_logs_illegal_register() {
    let mut apic = xapic(0);
    mmio_r(&mut apic, 0x10); // unimplemented register
    assert_eq!(
        mmio_r(&mut apic, APIC_ESR),
        0,
        "not visible before the ESR write"
    );
    mmio_w(&mut apic, APIC_ESR, 0);
    assert_eq!(mmio_r(&mut apic, APIC_ESR), ESR_ILLEGAL_REGISTER);
    mmio_w(&mut apic, APIC_ESR, 0);
    assert_eq!(mmio_r(&mut apic, APIC_ESR), 0, "cleared by the next write");
}

#[test]
fn illegal_vectors_are_not_accepted_and_raise_the_error_interrupt() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_LVT_ERROR, 0xfe);
    apic.accept(&InterruptRequest::fixed(0x05, 0));
    assert_eq!(apic.irr()[0], 0, "vector 5 not accepted");
    mmio_w(&mut apic, APIC_ESR, 0);
    assert_eq!(mmio_r(&mut apic, APIC_ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(apic.pending_interrupt(), Some(0xfe), "error LVT interrupt");
    // Sending one logs a send error (and the IPI still goes out).
    mmio_w(&mut apic, APIC_ICR_HIGH, 1 << 24);
    let a = mmio_w(&mut apic, APIC_ICR_LOW, 0x0000_0007);
    assert_eq!(a.len(), 1);
    mmio_w(&mut apic, APIC_ESR, 0);
    assert_eq!(mmio_r(&mut apic, APIC_ESR), ESR_SEND_ILLEGAL_VECTOR);
}

// ---- Priorities (§11.8.3.1, §11.6.2.4) -------------------------------------------------

#[test]
fn ppr_follows_tpr_and_isr() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_TPR, 0x35);
    assert_eq!(
        mmio_r(&mut apic, APIC_PPR),
        0x35,
        "TPR class ≥ ISR class: PPR = TPR"
    );
    apic.accept(&InterruptRequest::fixed(0x62, 0));
    assert_eq!(apic.acknowledge(), Some(0x62));
    assert_eq!(
        mmio_r(&mut apic, APIC_PPR),
        0x60,
        "ISR class wins, sub-class 0"
    );
    mmio_w(&mut apic, APIC_TPR, 0x6a);
    assert_eq!(mmio_r(&mut apic, APIC_PPR), 0x6a, "equal class: TPR");
}

#[test]
fn dispatch_needs_a_higher_priority_class_than_ppr() {
    let mut apic = xapic(0);
    apic.accept(&InterruptRequest::fixed(0x51, 0));
    mmio_w(&mut apic, APIC_TPR, 0x50);
    assert_eq!(apic.pending_interrupt(), None, "same class as PPR is held");
    assert_eq!(apic.acknowledge(), None);
    mmio_w(&mut apic, APIC_TPR, 0x4f);
    assert_eq!(apic.pending_interrupt(), Some(0x51));
    // A lower-class vector waits behind an in-service higher class.
    mmio_w(&mut apic, APIC_TPR, 0);
    assert_eq!(apic.acknowledge(), Some(0x51));
    apic.accept(&InterruptRequest::fixed(0x45, 0));
    assert_eq!(apic.pending_interrupt(), None);
    apic.accept(&InterruptRequest::fixed(0x61, 0));
    assert_eq!(apic.acknowledge(), Some(0x61), "nesting by higher class");
}

#[test]
fn apr_per_sdm() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_TPR, 0x45);
    assert_eq!(
        mmio_r(&mut apic, APIC_APR),
        0x45,
        "TPR ≥ IRRV and > ISRV: APR = TPR"
    );
    apic.accept(&InterruptRequest::fixed(0x72, 0));
    assert_eq!(
        mmio_r(&mut apic, APIC_APR),
        0x70,
        "IRRV class wins, sub-class 0"
    );
}

// ---- EOI (§11.8.5) ---------------------------------------------------------------------

#[test]
fn eoi_clears_highest_isr_and_broadcasts_only_level() {
    let mut apic = xapic(0);
    apic.accept(&InterruptRequest::fixed(0x41, 0));
    apic.acknowledge();
    apic.accept(&level(0x81));
    apic.acknowledge();
    let a = mmio_w(&mut apic, APIC_EOI, 0);
    assert_eq!(
        a.iter().copied().collect::<Vec<_>>(),
        vec![ApicAction::EoiBroadcast { vector: 0x81 }]
    );
    assert_eq!(apic.isr()[1], 1 << 1, "0x41 still in service");
    assert!(
        mmio_w(&mut apic, APIC_EOI, 0).is_empty(),
        "edge: no broadcast"
    );
    assert_eq!(apic.isr(), [0; 4]);
    assert!(
        mmio_w(&mut apic, APIC_EOI, 0).is_empty(),
        "EOI with empty ISR is harmless"
    );
}

#[test]
fn directed_eoi_suppresses_the_broadcast() {
    let mut apic = x2(0);
    wr(&mut apic, APIC_SVR, 0x11ff).unwrap();
    apic.accept(&level(0x81));
    apic.acknowledge();
    assert!(wr(&mut apic, APIC_EOI, 0).unwrap().is_empty());
    assert_eq!(apic.isr(), [0; 4]);
}

#[test]
fn tmr_follows_the_trigger_mode_of_the_last_acceptance() {
    let mut apic = xapic(0);
    apic.accept(&level(0x90));
    assert_eq!(apic.tmr()[2], 1 << 0x10);
    apic.acknowledge();
    apic.accept(&InterruptRequest::fixed(0x90, 0));
    assert_eq!(apic.tmr()[2], 0);
}

// ---- Software enable (§11.4.7.2) -------------------------------------------------------

#[test]
fn software_disabled_apic_drops_fixed_but_takes_nmi_and_keeps_lvts_masked() {
    let mut apic = LocalApic::new(ApicConfig::new(0, true));
    apic.accept(&InterruptRequest::fixed(0x40, 0));
    assert_eq!(apic.irr(), [0; 4]);
    assert!(apic
        .accept(&with_mode(DeliveryMode::Nmi, 0))
        .contains(&ApicAction::Nmi));
    mmio_w(&mut apic, APIC_LVT_LINT0, 0x700);
    assert_eq!(apic.lvt(LvtEntry::Lint0), 0x10700, "mask cannot be cleared");
    mmio_w(&mut apic, APIC_SVR, 0x1ff);
    mmio_w(&mut apic, APIC_LVT_TIMER, 0x30);
    assert_eq!(apic.lvt(LvtEntry::Timer), 0x30);
    mmio_w(&mut apic, APIC_SVR, 0xff);
    assert_eq!(
        apic.lvt(LvtEntry::Timer),
        0x10030,
        "disabling masks every LVT"
    );
}

// ---- ICR (§11.6.1) ---------------------------------------------------------------------

fn only_ipi(actions: &Actions) -> Ipi {
    match actions.iter().collect::<Vec<_>>().as_slice() {
        [ApicAction::SendIpi(ipi)] => *ipi,
        other => panic!("expected one IPI, got {other:?}"),
    }
}

#[test]
fn xapic_icr_fixed_logical_lowest_nmi() {
    let mut apic = xapic(2);
    mmio_w(&mut apic, APIC_ICR_HIGH, 0x0f00_0000);
    let ipi = only_ipi(&mmio_w(&mut apic, APIC_ICR_LOW, 0x0000_4931));
    assert_eq!(ipi.request.delivery_mode, DeliveryMode::LowestPriority);
    assert_eq!(ipi.request.destination_mode, DestinationMode::Logical);
    assert_eq!(ipi.request.destination, 0x0f);
    assert_eq!(ipi.format, DestinationFormat::XApic);
    assert_eq!(ipi.source_id, 2);
    assert_eq!(
        mmio_r(&mut apic, APIC_ICR_LOW) & ICR_DELIVERY_STATUS,
        0,
        "idle"
    );
    let nmi = only_ipi(&mmio_w(&mut apic, APIC_ICR_LOW, 0x000c_4400));
    assert_eq!(nmi.request.delivery_mode, DeliveryMode::Nmi);
    assert_eq!(nmi.shorthand, Shorthand::AllExcludingSelf);
}

#[test]
fn self_shorthand_and_self_ipi_stay_local() {
    let mut apic = xapic(0);
    assert!(mmio_w(&mut apic, APIC_ICR_LOW, 0x0004_0055).is_empty());
    assert_eq!(apic.pending_interrupt(), Some(0x55));
    let mut apic = x2(0);
    assert!(wr(&mut apic, APIC_SELF_IPI, 0x66).unwrap().is_empty());
    assert_eq!(apic.pending_interrupt(), Some(0x66));
}

#[test]
fn invalid_icr_combinations_send_nothing() {
    let mut apic = xapic(0);
    // §11.6.1 valid ICR combinations: NMI to self, lowest priority / NMI / start-up to all-including-self,
    // ExtINT, reserved mode.
    for low in [
        0x0004_0400u32,
        0x0008_0130,
        0x0008_0400,
        0x0008_0610,
        0x0000_0730,
        0x0000_0330,
    ] {
        assert!(mmio_w(&mut apic, APIC_ICR_LOW, low).is_empty(), "{low:#x}");
    }
}

#[test]
fn init_sipi_protocol() {
    let mut ap = x2(4);
    mmio_or_msr_lvt_timer(&mut ap);
    let a = ap.accept(&with_mode(DeliveryMode::Init, 0));
    assert!(a.contains(&ApicAction::Init));
    assert!(
        a.contains(&ApicAction::TimerDeadline(None)),
        "INIT stops the timer"
    );
    assert_eq!(ap.processor_state(), ProcessorState::WaitForSipi);
    assert_eq!(ap.mode(), ApicMode::X2Apic, "INIT keeps x2APIC mode");
    assert_eq!(rd(&mut ap, APIC_ID), Ok(4));
    assert_eq!(rd(&mut ap, APIC_SVR), Ok(0xff), "INIT resets registers");
    let a = ap.accept(&with_mode(DeliveryMode::StartUp, 0x9a));
    assert!(a.contains(&ApicAction::Startup { vector: 0x9a }));
    assert_eq!(ap.processor_state(), ProcessorState::Running);
    assert!(
        ap.accept(&with_mode(DeliveryMode::StartUp, 0x9a))
            .is_empty(),
        "second SIPI ignored"
    );
    let deassert = InterruptRequest {
        level: false,
        trigger_mode: TriggerMode::Level,
        ..with_mode(DeliveryMode::Init, 0)
    };
    assert!(
        ap.accept(&deassert).is_empty(),
        "INIT level de-assert does nothing"
    );
    assert_eq!(ap.processor_state(), ProcessorState::Running);
}

fn mmio_or_msr_lvt_timer(apic: &mut LocalApic) {
    wr(apic, APIC_LVT_TIMER, 0x30).unwrap();
    wr(apic, APIC_TIMER_INITIAL_COUNT, 100).unwrap();
    assert!(apic.next_deadline().is_some());
}

#[test]
fn icr_init_level_deassert_is_sent_as_level_deassert() {
    let mut apic = xapic(0);
    let ipi = only_ipi(&mmio_w(&mut apic, APIC_ICR_LOW, 0x0000_8500));
    assert_eq!(ipi.request.delivery_mode, DeliveryMode::Init);
    assert!(!ipi.request.level);
    assert_eq!(ipi.request.trigger_mode, TriggerMode::Level);
}

// ---- Timer (§11.5.4) -------------------------------------------------------------------

#[test]
fn one_shot_timer_with_divide_and_current_count() {
    let mut apic = x2(0);
    wr(&mut apic, APIC_TIMER_DIVIDE, 0x1).unwrap(); // divide by 4
    wr(&mut apic, APIC_LVT_TIMER, 0x31).unwrap();
    let a = apic
        .write_msr(x2apic_msr(APIC_TIMER_INITIAL_COUNT), 100, 1000)
        .unwrap();
    assert!(a.contains(&ApicAction::TimerDeadline(Some(1400))));
    assert_eq!(
        apic.read_msr(x2apic_msr(APIC_TIMER_CURRENT_COUNT), 1200),
        Ok(50)
    );
    assert!(apic.tick(1399).is_empty());
    let a = apic.tick(1400);
    assert!(a.contains(&ApicAction::TimerDeadline(None)));
    assert_eq!(apic.pending_interrupt(), Some(0x31));
    assert_eq!(
        apic.read_msr(x2apic_msr(APIC_TIMER_CURRENT_COUNT), 2000),
        Ok(0)
    );
    // Writing 0 to the initial count stops a running timer.
    wr(&mut apic, APIC_TIMER_INITIAL_COUNT, 10).unwrap();
    let a = wr(&mut apic, APIC_TIMER_INITIAL_COUNT, 0).unwrap();
    assert!(a.contains(&ApicAction::TimerDeadline(None)));
}

#[test]
fn periodic_timer_reloads() {
    let mut apic = x2(0);
    wr(&mut apic, APIC_TIMER_DIVIDE, 0xb).unwrap(); // divide by 1
    wr(&mut apic, APIC_LVT_TIMER, (1 << 17) | 0x32).unwrap();
    apic.write_msr(x2apic_msr(APIC_TIMER_INITIAL_COUNT), 50, 0)
        .unwrap();
    let a = apic.tick(50);
    assert!(a.contains(&ApicAction::TimerDeadline(Some(100))));
    assert_eq!(apic.acknowledge(), Some(0x32));
    apic.write_msr(MSR_X2APIC_EOI, 0, 50).unwrap();
    assert_eq!(
        apic.read_msr(x2apic_msr(APIC_TIMER_CURRENT_COUNT), 60),
        Ok(40)
    );
    apic.tick(100);
    assert_eq!(apic.pending_interrupt(), Some(0x32));
    assert_eq!(apic.next_deadline(), Some(150));
}

#[test]
fn divide_change_keeps_the_count() {
    let mut apic = x2(0);
    wr(&mut apic, APIC_TIMER_DIVIDE, 0xb).unwrap();
    wr(&mut apic, APIC_LVT_TIMER, 0x33).unwrap();
    apic.write_msr(x2apic_msr(APIC_TIMER_INITIAL_COUNT), 100, 0)
        .unwrap();
    let a = apic
        .write_msr(x2apic_msr(APIC_TIMER_DIVIDE), 0x0, 40)
        .unwrap(); // /2
    assert!(a.contains(&ApicAction::TimerDeadline(Some(40 + 60 * 2))));
}

#[test]
fn tsc_deadline_mode() {
    let mut apic = x2(0);
    assert!(
        apic.write_msr(MSR_IA32_TSC_DEADLINE, 500, 0)
            .unwrap()
            .is_empty(),
        "ignored outside the mode"
    );
    assert_eq!(apic.read_msr(MSR_IA32_TSC_DEADLINE, 0), Ok(0));
    wr(&mut apic, APIC_LVT_TIMER, (2 << 17) | 0x34).unwrap();
    wr(&mut apic, APIC_TIMER_INITIAL_COUNT, 1000).unwrap();
    assert_eq!(
        rd(&mut apic, APIC_TIMER_INITIAL_COUNT),
        Ok(0),
        "initial count ignored"
    );
    let a = apic.write_msr(MSR_IA32_TSC_DEADLINE, 500, 0).unwrap();
    assert!(a.contains(&ApicAction::TimerDeadline(Some(500))));
    assert_eq!(apic.read_msr(MSR_IA32_TSC_DEADLINE, 0), Ok(500));
    apic.tick(499);
    assert_eq!(apic.pending_interrupt(), None);
    apic.tick(501);
    assert_eq!(apic.pending_interrupt(), Some(0x34));
    assert_eq!(
        apic.read_msr(MSR_IA32_TSC_DEADLINE, 0),
        Ok(0),
        "cleared when it fires"
    );
    apic.write_msr(MSR_IA32_TSC_DEADLINE, 900, 0).unwrap();
    let a = wr(&mut apic, APIC_LVT_TIMER, 0x34).unwrap();
    assert!(
        a.contains(&ApicAction::TimerDeadline(None)),
        "mode change disarms"
    );
}

#[test]
fn masked_timer_expires_without_an_interrupt() {
    let mut apic = x2(0);
    wr(&mut apic, APIC_TIMER_DIVIDE, 0xb).unwrap();
    wr(&mut apic, APIC_LVT_TIMER, u64::from(LVT_MASKED) | 0x35).unwrap();
    wr(&mut apic, APIC_TIMER_INITIAL_COUNT, 10).unwrap();
    apic.tick(10);
    assert_eq!(apic.irr(), [0; 4]);
    assert_eq!(apic.next_deadline(), None);
}

// ---- LVT LINT/thermal/PMI/CMCI (§11.5.1) -----------------------------------------------

#[test]
fn lint_pins_virtual_wire_and_nmi() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_LVT_LINT0, 0x700); // ExtINT
    mmio_w(&mut apic, APIC_LVT_LINT1, 0x400); // NMI
    assert!(apic.set_lint(0, true).contains(&ApicAction::ExtInt));
    assert!(
        apic.set_lint(0, true).is_empty(),
        "edge: only on the rising edge"
    );
    assert!(apic.set_lint(1, true).contains(&ApicAction::Nmi));
    assert!(apic.set_lint(7, true).is_empty(), "no such pin");
}

#[test]
fn level_triggered_lint_uses_remote_irr() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_LVT_LINT0, LVT_TRIGGER_LEVEL | 0x58);
    apic.set_lint(0, true);
    assert_ne!(apic.lvt(LvtEntry::Lint0) & LVT_REMOTE_IRR, 0);
    assert_eq!(apic.acknowledge(), Some(0x58));
    apic.set_lint(0, true);
    assert_eq!(apic.irr(), [0; 4], "remote IRR holds a second delivery");
    let a = mmio_w(&mut apic, APIC_EOI, 0);
    assert!(a.contains(&ApicAction::EoiBroadcast { vector: 0x58 }));
    assert_eq!(
        apic.pending_interrupt(),
        Some(0x58),
        "still asserted: delivered again"
    );
    apic.set_lint(0, false);
    apic.acknowledge();
    mmio_w(&mut apic, APIC_EOI, 0);
    assert_eq!(apic.lvt(LvtEntry::Lint0) & LVT_REMOTE_IRR, 0);
    assert_eq!(apic.pending_interrupt(), None);
}

#[test]
fn active_low_polarity_inverts_the_pin() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_LVT_LINT1, LVT_POLARITY_LOW | 0x400);
    assert!(apic.set_lint(1, true).is_empty());
    assert!(apic.set_lint(1, false).contains(&ApicAction::Nmi));
}

#[test]
fn hardware_disabled_apic_passes_lint_through() {
    let mut apic = xapic(0);
    apic.write_msr(MSR_IA32_APIC_BASE, APIC_DEFAULT_BASE, 0)
        .unwrap();
    assert!(apic.set_lint(0, true).contains(&ApicAction::ExtInt));
    assert!(apic.set_lint(1, true).contains(&ApicAction::Nmi));
    assert!(apic.accept(&InterruptRequest::fixed(0x40, 0)).is_empty());
    assert_eq!(apic.pending_interrupt(), None);
}

#[test]
fn thermal_pmi_cmci_delivery_modes_and_masks() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_LVT_THERMAL, 0x400);
    assert!(apic
        .deliver_lvt(LvtEntry::Thermal)
        .contains(&ApicAction::Nmi));
    mmio_w(&mut apic, APIC_LVT_PMI, 0x200);
    assert!(apic
        .deliver_lvt(LvtEntry::PerformanceCounter)
        .contains(&ApicAction::Smi));
    assert_eq!(
        apic.lvt(LvtEntry::PerformanceCounter),
        LVT_MASKED | 0x200,
        "a PMI masks its LVT entry"
    );
    assert!(apic.deliver_lvt(LvtEntry::PerformanceCounter).is_empty());
    mmio_w(&mut apic, APIC_LVT_CMCI, 0x42);
    apic.deliver_lvt(LvtEntry::Cmci);
    assert_eq!(apic.pending_interrupt(), Some(0x42));
    mmio_w(&mut apic, APIC_LVT_CMCI, LVT_MASKED | 0x43);
    apic.deliver_lvt(LvtEntry::Cmci);
    assert_eq!(apic.irr()[1], 1 << 2, "masked entry delivers nothing");
}

#[test]
fn cr8_is_tpr_bits_7_4() {
    let mut apic = xapic(0);
    apic.write_cr8(0x9).unwrap();
    assert_eq!(apic.tpr(), 0x90);
    assert_eq!(apic.ppr(), 0x90);
    mmio_w(&mut apic, APIC_TPR, 0x5f);
    assert_eq!(apic.cr8(), 0x5);
    assert_eq!(apic.write_cr8(0x10), Err(GP));
}

#[test]
fn ap_in_wait_for_sipi_takes_no_interrupts() {
    let mut ap = LocalApic::new(ApicConfig::new(1, false));
    mmio_w(&mut ap, APIC_SVR, 0x1ff);
    ap.accept(&InterruptRequest::fixed(0x40, 1));
    assert_eq!(ap.pending_interrupt(), None, "held in IRR");
    ap.accept(&with_mode(DeliveryMode::StartUp, 0x10));
    assert_eq!(ap.pending_interrupt(), Some(0x40));
}

#[test]
fn vector_arrays_read_through_mmio_and_msrs() {
    let mut apic = xapic(0);
    apic.accept(&level(0x41));
    apic.accept(&InterruptRequest::fixed(0xe3, 0));
    assert_eq!(mmio_r(&mut apic, APIC_IRR + 0x20), 1 << 1);
    assert_eq!(mmio_r(&mut apic, APIC_IRR + 0x70), 1 << 3);
    assert_eq!(mmio_r(&mut apic, APIC_TMR + 0x20), 1 << 1);
    apic.acknowledge();
    assert_eq!(mmio_r(&mut apic, APIC_ISR + 0x70), 1 << 3);
    let mut apic = x2(0);
    apic.accept(&InterruptRequest::fixed(0x41, 0));
    assert_eq!(rd(&mut apic, APIC_IRR + 0x20), Ok(1 << 1));
}

#[test]
fn hardware_disabled_apic_decodes_no_mmio_and_no_x2apic_msrs() {
    let mut apic = xapic(0);
    apic.write_msr(MSR_IA32_APIC_BASE, APIC_DEFAULT_BASE | APIC_BASE_BSP, 0)
        .unwrap();
    let mut b = [0u8; 4];
    assert!(!apic.mmio_read(u64::from(APIC_ID), &mut b, 0));
    assert!(apic
        .mmio_write(u64::from(APIC_TPR), &[0x40, 0, 0, 0], 0)
        .is_empty());
    assert_eq!(apic.tpr(), 0);
    assert_eq!(rd(&mut apic, APIC_ID), Err(GP));
    assert_eq!(
        apic.read_msr(MSR_IA32_APIC_BASE, 0),
        Ok(APIC_DEFAULT_BASE | APIC_BASE_BSP),
        "IA32_APIC_BASE stays readable"
    );
}

#[test]
fn software_disabled_apic_still_takes_init_and_sipi() {
    let mut ap = LocalApic::new(ApicConfig::new(2, false));
    assert!(!ap.software_enabled());
    assert!(ap
        .accept(&with_mode(DeliveryMode::StartUp, 0x20))
        .contains(&ApicAction::Startup { vector: 0x20 }));
    assert!(ap
        .accept(&with_mode(DeliveryMode::Init, 0))
        .contains(&ApicAction::Init));
    assert_eq!(ap.processor_state(), ProcessorState::WaitForSipi);
    assert!(ap
        .accept(&with_mode(DeliveryMode::Smi, 0))
        .contains(&ApicAction::Smi));
    assert!(ap
        .accept(&with_mode(DeliveryMode::ExtInt, 0))
        .contains(&ApicAction::ExtInt));
    assert!(ap
        .accept(&with_mode(DeliveryMode::Reserved, 0x40))
        .is_empty());
}

#[test]
fn bsp_flag_is_kept_through_transitions() {
    let mut bsp = xapic(0);
    bsp.write_msr(MSR_IA32_APIC_BASE, BASE_X2APIC | APIC_BASE_BSP, 0)
        .unwrap();
    assert_eq!(bsp.apic_base() & APIC_BASE_BSP, APIC_BASE_BSP);
    // INIT on the BSP restarts it at the reset vector, no wait-for-SIPI.
    bsp.accept(&with_mode(DeliveryMode::Init, 0));
    assert_eq!(bsp.processor_state(), ProcessorState::Running);
}

#[test]
fn lowest_priority_ipi_between_live_apics() {
    let mut a = xapic(0);
    let mut b = xapic(1);
    let mut c = xapic(2);
    for (apic, logical) in [(&mut a, 1u32), (&mut b, 2), (&mut c, 4)] {
        mmio_w(apic, APIC_LDR, logical << 24);
    }
    mmio_w(&mut a, APIC_TPR, 0x80);
    mmio_w(&mut b, APIC_TPR, 0x20);
    mmio_w(&mut c, APIC_TPR, 0x30);
    mmio_w(&mut a, APIC_ICR_HIGH, 0x0700_0000);
    let ipi = match mmio_w(&mut a, APIC_ICR_LOW, 0x0000_0961).iter().next() {
        Some(ApicAction::SendIpi(ipi)) => *ipi,
        other => panic!("{other:?}"),
    };
    let apics = [a, b, c];
    let targets = resolve(&apics, &ipi.request, ipi.shorthand, Some(0), ipi.format);
    assert_eq!(targets, vec![1], "APIC 1 has the lowest PPR");
}

#[test]
fn level_triggered_ipis_go_out_as_edge() {
    let mut apic = xapic(0);
    // Fixed, level trigger, assert, all excluding self (§11.6.1, valid ICR combinations, note 2).
    let ipi = only_ipi(&mmio_w(&mut apic, APIC_ICR_LOW, 0x000c_c041));
    assert_eq!(ipi.request.trigger_mode, TriggerMode::Edge);
    assert_eq!(ipi.shorthand, Shorthand::AllExcludingSelf);
}

#[test]
fn one_shot_periodic_switch_keeps_the_count_running() {
    let mut apic = x2(0);
    wr(&mut apic, APIC_TIMER_DIVIDE, 0xb).unwrap();
    wr(&mut apic, APIC_LVT_TIMER, 0x36).unwrap();
    wr(&mut apic, APIC_TIMER_INITIAL_COUNT, 100).unwrap();
    let a = apic
        .write_msr(x2apic_msr(APIC_LVT_TIMER), (1 << 17) | 0x36, 30)
        .unwrap();
    assert!(a.is_empty(), "deadline unchanged");
    assert_eq!(
        apic.read_msr(x2apic_msr(APIC_TIMER_CURRENT_COUNT), 30),
        Ok(70)
    );
    apic.tick(100);
    assert_eq!(apic.next_deadline(), Some(200), "now periodic");
    // Before any count was written, a mode change does not start the timer.
    let mut apic = x2(0);
    wr(&mut apic, APIC_LVT_TIMER, (1 << 17) | 0x36).unwrap();
    assert_eq!(apic.next_deadline(), None);
}

#[test]
fn lint1_is_always_edge_sensitive() {
    let mut apic = xapic(0);
    mmio_w(&mut apic, APIC_LVT_LINT1, LVT_TRIGGER_LEVEL | 0x59);
    apic.set_lint(1, true);
    assert_eq!(apic.lvt(LvtEntry::Lint1) & LVT_REMOTE_IRR, 0);
    assert_eq!(apic.tmr()[1], 0, "accepted edge-triggered");
    assert_eq!(apic.acknowledge(), Some(0x59));
    apic.set_lint(1, true);
    assert_eq!(apic.irr(), [0; 4], "no new edge, no new request");
}

#[test]
fn reset_returns_to_the_power_up_state() {
    let mut apic = x2(6);
    wr(&mut apic, APIC_TPR, 0x40).unwrap();
    apic.reset();
    assert_eq!(apic.mode(), ApicMode::XApic);
    assert_eq!(apic.apic_base(), 0xfee0_0800);
    assert_eq!(apic.tpr(), 0);
    assert_eq!(mmio_r(&mut apic, APIC_ID), 6 << 24);
    assert_eq!(apic.processor_state(), ProcessorState::WaitForSipi);
}

#[test]
fn tsc_deadline_mode_is_not_writable_without_support() {
    let mut cfg = ApicConfig::new(0, true);
    cfg.tsc_deadline = false;
    let mut apic = LocalApic::new(cfg);
    mmio_w(&mut apic, APIC_SVR, 0x1ff);
    mmio_w(&mut apic, APIC_LVT_TIMER, (2 << 17) | 0x30);
    assert_eq!(apic.lvt(LvtEntry::Timer), 0x30, "bit 18 reserved");
    assert_eq!(apic.read_msr(MSR_IA32_TSC_DEADLINE, 0), Err(GP));
}
