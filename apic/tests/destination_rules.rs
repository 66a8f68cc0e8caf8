//! Destination resolution (SDM vol. 3 §11.6.2, §11.12.9–§11.12.10).

use apic::registers::x2apic_ldr;
use apic::*;

fn xapic(id: u32, ldr: u8, dfr: u32, ppr: u8) -> ApicSnapshot {
    ApicSnapshot {
        id,
        mode: ApicMode::XApic,
        ldr: u32::from(ldr) << 24,
        dfr,
        ppr,
        software_enabled: true,
    }
}

fn x2(id: u32, ppr: u8) -> ApicSnapshot {
    ApicSnapshot {
        id,
        mode: ApicMode::X2Apic,
        ldr: x2apic_ldr(id),
        dfr: 0xffff_ffff,
        ppr,
        software_enabled: true,
    }
}

fn req(mode: DestinationMode, destination: u32) -> InterruptRequest {
    InterruptRequest {
        destination_mode: mode,
        ..InterruptRequest::fixed(0x40, destination)
    }
}

fn lowest(mode: DestinationMode, destination: u32) -> InterruptRequest {
    InterruptRequest {
        delivery_mode: DeliveryMode::LowestPriority,
        ..req(mode, destination)
    }
}

use DestinationFormat::{X2Apic as X2F, XApic as XF};
use DestinationMode::{Logical, Physical};

#[test]
fn xapic_physical_and_broadcast() {
    let apics: Vec<_> = (0..4).map(|i| xapic(i, 0, !0, 0)).collect();
    assert_eq!(
        resolve(&apics, &req(Physical, 2), Shorthand::None, None, XF),
        vec![2]
    );
    assert_eq!(
        resolve(&apics, &req(Physical, 0xff), Shorthand::None, None, XF),
        vec![0, 1, 2, 3]
    );
    assert!(resolve(&apics, &req(Physical, 9), Shorthand::None, None, XF).is_empty());
}

#[test]
fn xapic_logical_flat_and_cluster() {
    let flat: Vec<_> = (0..4).map(|i| xapic(i, 1 << i, 0xffff_ffff, 0)).collect();
    assert_eq!(
        resolve(&flat, &req(Logical, 0b0101), Shorthand::None, None, XF),
        vec![0, 2]
    );
    assert_eq!(
        resolve(&flat, &req(Logical, 0xff), Shorthand::None, None, XF),
        vec![0, 1, 2, 3]
    );
    assert!(resolve(&flat, &req(Logical, 0), Shorthand::None, None, XF).is_empty());
    // Cluster model: cluster in bits 7:4, member bits 3:0.
    let cluster = [
        xapic(0, 0x11, 0x0fff_ffff, 0),
        xapic(1, 0x12, 0x0fff_ffff, 0),
        xapic(2, 0x21, 0x0fff_ffff, 0),
    ];
    assert_eq!(
        resolve(&cluster, &req(Logical, 0x13), Shorthand::None, None, XF),
        vec![0, 1]
    );
    assert_eq!(
        resolve(&cluster, &req(Logical, 0x21), Shorthand::None, None, XF),
        vec![2]
    );
}

#[test]
fn x2apic_physical_logical_cluster_and_broadcast() {
    let apics: Vec<_> = (0..40).map(|i| x2(i, 0)).collect();
    assert_eq!(
        resolve(&apics, &req(Physical, 33), Shorthand::None, None, X2F),
        vec![33]
    );
    assert_eq!(
        resolve(
            &apics,
            &req(Physical, 0xffff_ffff),
            Shorthand::None,
            None,
            X2F
        )
        .len(),
        40
    );
    // Cluster 2 (IDs 32–47), members 0 and 3 → IDs 32 and 35.
    assert_eq!(
        resolve(
            &apics,
            &req(Logical, 0x0002_0009),
            Shorthand::None,
            None,
            X2F
        ),
        vec![32, 35]
    );
    // An xAPIC-format 0xff (from an IOAPIC or compatibility MSI) is a broadcast too.
    assert_eq!(
        resolve(&apics, &req(Physical, 0xff), Shorthand::None, None, XF).len(),
        40
    );
    // And an 8-bit physical destination reaches x2APIC IDs below 256.
    assert_eq!(
        resolve(&apics, &req(Physical, 7), Shorthand::None, None, XF),
        vec![7]
    );
}

#[test]
fn shorthands() {
    let apics: Vec<_> = (0..3).map(|i| x2(i, 0)).collect();
    let r = req(Physical, 0);
    assert_eq!(
        resolve(&apics, &r, Shorthand::SelfOnly, Some(1), X2F),
        vec![1]
    );
    assert_eq!(
        resolve(&apics, &r, Shorthand::AllIncludingSelf, Some(1), X2F),
        vec![0, 1, 2]
    );
    assert_eq!(
        resolve(&apics, &r, Shorthand::AllExcludingSelf, Some(1), X2F),
        vec![0, 2]
    );
    assert!(resolve(&apics, &r, Shorthand::SelfOnly, None, X2F).is_empty());
    assert!(resolve(&apics, &r, Shorthand::SelfOnly, Some(99), X2F).is_empty());
}

#[test]
fn lowest_priority_picks_lowest_ppr_among_enabled() {
    let mut apics = vec![x2(0, 0x50), x2(1, 0x20), x2(2, 0x20), x2(3, 0x10)];
    apics[3].software_enabled = false;
    let r = lowest(Physical, 0xffff_ffff);
    assert_eq!(
        resolve(&apics, &r, Shorthand::None, None, X2F),
        vec![1],
        "tie → first"
    );
    // The redirection hint makes a fixed MSI lowest-priority too.
    let rh = InterruptRequest {
        redirection_hint: true,
        ..req(Logical, 0x0000_000f)
    };
    assert_eq!(resolve(&apics, &rh, Shorthand::None, None, X2F), vec![1]);
}

#[test]
fn disabled_apics_are_never_targets() {
    let mut apics = vec![x2(0, 0), x2(1, 0)];
    apics[1].mode = ApicMode::Disabled;
    let r = req(Physical, 0xffff_ffff);
    assert_eq!(resolve(&apics, &r, Shorthand::None, None, X2F), vec![0]);
    assert_eq!(
        resolve(&apics, &r, Shorthand::AllIncludingSelf, Some(0), X2F),
        vec![0]
    );
}

#[test]
fn resolution_from_live_apics() {
    let mut a = LocalApic::new(ApicConfig::new(0, true));
    let b = LocalApic::new(ApicConfig::new(1, false));
    a.mmio_write(0xd0, &0x0100_0000u32.to_le_bytes(), 0); // LDR logical ID 1
    let apics = [a, b];
    assert_eq!(
        resolve(&apics, &req(Logical, 1), Shorthand::None, None, XF),
        vec![0]
    );
    assert_eq!(
        resolve(&apics, &req(Physical, 1), Shorthand::None, None, XF),
        vec![1]
    );
}
