//! The device-interrupt path across the three models, without KVM: a frame sent VF 0 → VF 1
//! through the 82576 model's switch makes VF 1 raise its RX MSI-X message (with VF 1's
//! requester ID); VT-d remaps it through a posted IRTE that verifies that source ID, posts
//! into a descriptor in guest memory, and the vCPU's virtual APIC processes the descriptor
//! and delivers the vector, then completes it with a virtualized EOI.

use apic::registers::{
    x2apic_msr, APIC_BASE_BSP, APIC_BASE_ENABLE, APIC_BASE_EXTD, APIC_DEFAULT_BASE, APIC_SVR,
    MSR_IA32_APIC_BASE, MSR_X2APIC_EOI,
};
use apic::{ApicConfig, ApicvControls, Handling, LocalApic, VirtualApic};
use devices::nic::{Function, MSIX_BAR};
use devices::sim::{frame, Rig};
use iommu::irte::{Irte, IRTE_SIZE};
use iommu::post::PostResult;
use iommu::regs::{FSTS, GCMD, GSTS, G_IRE, G_SIRTP, IRTA, IRTA_EIME};
use iommu::remap::RemapResult;
use iommu::Iommu;
use postbox_tests::remappable_address;
use vm_memory::{Bytes, GuestAddress};

const IRT: u64 = 0x80_0000;
const PID: u64 = 0x90_0000;
const HANDLE: u16 = 5;
const VECTOR: u8 = 0x61;
const NOTIFICATION_VECTOR: u8 = 0xf2;
/// SVT = 01b (verify the full source ID, SQ = 0).
const SVT_REQUESTER_ID: u8 = 1;
const FRAMES: usize = 5;

fn x2apic_vcpu() -> VirtualApic {
    let mut apic = LocalApic::new(ApicConfig::new(0, true));
    apic.write_msr(
        MSR_IA32_APIC_BASE,
        APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD | APIC_BASE_BSP,
        0,
    )
    .unwrap();
    apic.write_msr(x2apic_msr(APIC_SVR), 0x1ff, 0).unwrap();
    VirtualApic::new(apic, ApicvControls::full(NOTIFICATION_VECTOR))
}

#[test]
fn vf_rx_interrupt_is_posted_and_delivered_by_the_virtual_apic() {
    let mut rig = Rig::with_vfs(2);
    let mac1 = rig.igbvf_init(1);
    rig.igbvf_init(0);
    rig.rings(Function::Vf(0), 0x10_0000);
    rig.rings(Function::Vf(1), 0x20_0000);
    let vf1_rid = rig.nic().rid(Function::Vf(1));
    let vf0_rid = rig.nic().rid(Function::Vf(0));

    // VF 1's RX vector (MSI-X entry 0) in remappable format, handle HANDLE.
    let entry = rig.addr(Function::Vf(1), MSIX_BAR, 0);
    rig.bus
        .mmio_write_at(entry, &(remappable_address(HANDLE) as u32).to_le_bytes(), 0);
    rig.bus.mmio_write_at(entry + 8, &0u32.to_le_bytes(), 0);

    // The IOMMU over the same guest memory: one posted IRTE that only VF 1 may use.
    let memory = rig.mem.memory().as_ref().clone();
    let irte = Irte::posted_entry(VECTOR, false, PID).with_source(SVT_REQUESTER_ID, 0, vf1_rid);
    memory
        .write_slice(
            &irte.to_bytes(),
            GuestAddress(IRT + u64::from(HANDLE) * IRTE_SIZE),
        )
        .unwrap();
    let mut iommu = Iommu::new(memory);
    iommu.write_u64(IRTA, IRT | IRTA_EIME | 7);
    iommu.write_u32(GCMD, G_SIRTP);
    iommu.write_u32(GCMD, G_IRE);
    assert_ne!(iommu.read_u32(GSTS) & G_IRE, 0);
    iommu
        .with_descriptor(PID, |pid| pid.set_notification(NOTIFICATION_VECTOR, 0))
        .unwrap();
    let mut vcpu = x2apic_vcpu();

    rig.sink.take();
    let mut delivered = 0;
    for n in 0..FRAMES {
        rig.send(
            Function::Vf(0),
            0x10_0000,
            &frame(mac1, [2, 0, 0, 0, 0, 1], 64),
            n as u64,
        );
        let messages = rig.sink.take();
        let from_vf1: Vec<_> = messages
            .iter()
            .filter(|m| m.requester_id == vf1_rid)
            .collect();
        assert_eq!(
            from_vf1.len(),
            1,
            "frame {n}: one RX interrupt from VF 1, got {messages:?}"
        );
        let RemapResult::Posting(posting) = iommu.remap(from_vf1[0]) else {
            panic!("frame {n}: expected a posting");
        };
        let PostResult::Notify {
            nv, destination, ..
        } = iommu.post(&posting)
        else {
            panic!("frame {n}: expected a notification");
        };
        assert_eq!((nv, destination), (NOTIFICATION_VECTOR, 0));
        // Posted-interrupt processing on the notification vector: PIR → virtual IRR.
        let processed = iommu.with_descriptor(PID, |pid| vcpu.notification(nv, pid));
        assert_eq!(processed, Some(true), "frame {n}: descriptor processed");
        assert_eq!(
            vcpu.deliver(),
            Some(VECTOR),
            "frame {n}: the vector is delivered"
        );
        let (handling, result) = vcpu.msr_write_or_emulate(MSR_X2APIC_EOI, 0, 0);
        assert!(result.is_ok());
        assert_eq!(
            handling,
            Handling::Virtualized,
            "EOI is virtualized: no VM exit"
        );
        delivered += 1;
        // Re-enable the auto-masked cause, as igbvf's handler does.
        rig.wr(Function::Vf(1), devices::nic::regs::EIMS, 1, 0);
    }
    assert_eq!(delivered, FRAMES);
    assert_eq!(iommu.read_u32(FSTS), 0, "no remapping faults");

    // The same message with VF 0's requester ID fails the source-ID check (fault 0x26).
    let spoofed = apic::MsiMessage::new(vf0_rid, remappable_address(HANDLE), 0);
    match iommu.remap(&spoofed) {
        RemapResult::Fault(fault) => assert_eq!(fault.reason as u8, 0x26),
        other => panic!("expected a source-ID fault, got {other:?}"),
    }
}
