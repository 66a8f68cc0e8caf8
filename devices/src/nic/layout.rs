//! Configuration-space layout of the 82576 PF and VFs (identity, BARs, capability
//! chain; see SPEC-FACTS.md and the 82576 datasheet's PCIe configuration chapter).

use super::*;

pub(super) fn pf_config() -> ConfigSpace {
    let mut c = ConfigSpace::new(
        INTEL_VENDOR_ID,
        E82576_DEVICE_ID,
        CLASS_ETHERNET,
        E82576_REVISION,
    );
    c.set16(PCI_SUBSYSTEM_VENDOR_ID, INTEL_VENDOR_ID);
    c.set16(PCI_SUBSYSTEM_ID, E82576_SUBSYS_ID);
    c.set8(PCI_INTERRUPT_PIN, 1);
    c.add_bar(
        REG_BAR,
        BarDef {
            size: PF_BAR0_SIZE,
            kind: BarKind::Mem64,
            prefetchable: false,
        },
    );
    c.add_bar(
        MSIX_BAR,
        BarDef {
            size: MSIX_BAR_SIZE,
            kind: BarKind::Mem64,
            prefetchable: false,
        },
    );
    caps::add_pm(&mut c, PM_CAP);
    caps::add_msi(&mut c, MSI_CAP);
    msix::add_msix(
        &mut c,
        MSIX_CAP,
        PF_MSIX_VECTORS as u16,
        MSIX_BAR as u8,
        0,
        MSIX_PBA_OFFSET,
    );
    caps::add_pcie_endpoint(&mut c, PCIE_CAP, true);
    caps::add_aer(&mut c, AER_CAP);
    caps::add_ari(&mut c, ARI_CAP, 0);
    let mut vf_bars = [None; 6];
    vf_bars[REG_BAR] = Some(BarDef {
        size: VF_BAR0_SIZE,
        kind: BarKind::Mem64,
        prefetchable: false,
    });
    vf_bars[MSIX_BAR] = Some(BarDef {
        size: VF_BAR3_SIZE,
        kind: BarKind::Mem64,
        prefetchable: false,
    });
    sriov::add_sriov(
        &mut c,
        SRIOV_CAP,
        &SriovParams {
            total_vfs: MAX_VFS as u16,
            initial_vfs: MAX_VFS as u16,
            first_vf_offset: VF_OFFSET,
            vf_stride: VF_STRIDE,
            vf_device_id: E82576_VF_DEVICE_ID,
            vf_bars,
        },
    );
    c
}

pub(super) fn vf_config() -> ConfigSpace {
    // A VF's vendor and device ID registers read 0xffff (SR-IOV 1.1 §3.4.1.1–2).
    let mut c = ConfigSpace::new(0xffff, 0xffff, CLASS_ETHERNET, E82576_REVISION);
    c.set16(PCI_SUBSYSTEM_VENDOR_ID, INTEL_VENDOR_ID);
    c.set16(PCI_SUBSYSTEM_ID, E82576_SUBSYS_ID);
    // Only Bus Master Enable is implemented in a VF's command register (§3.4.1.3);
    // memory decoding is the PF's VF MSE.
    c.set_wmask16(PCI_COMMAND, PCI_COMMAND_MASTER);
    c.set_wmask8(PCI_CACHE_LINE_SIZE, 0);
    c.set_wmask8(PCI_LATENCY_TIMER, 0);
    c.set_wmask8(PCI_INTERRUPT_LINE, 0);
    msix::add_msix(
        &mut c,
        MSIX_CAP,
        VF_MSIX_VECTORS as u16,
        MSIX_BAR as u8,
        0,
        MSIX_PBA_OFFSET,
    );
    caps::add_pcie_endpoint(&mut c, PCIE_CAP, true);
    caps::add_aer(&mut c, AER_CAP);
    caps::add_ari(&mut c, ARI_CAP, 0);
    c
}
