//! NIC tests: configuration space rules, SR-IOV, the data path through the switch,
//! interrupts and moderation, the mailbox, and hostile input.

use apic::MsiMessage;

use super::*;
use crate::pci::sriov::{
    SRIOV_BAR, SRIOV_CTRL, SRIOV_CTRL_MSE, SRIOV_CTRL_VFE, SRIOV_NUM_VF, SRIOV_TOTAL_VF,
    SRIOV_VF_DID, SRIOV_VF_OFFSET,
};
use crate::sim::{frame, Rig, DEV};

#[test]
fn pf_identity_capabilities_and_bar_sizing() {
    let mut r = Rig::new();
    let pf = r.nic().pf_rid();
    assert_eq!(pf, 0x08);
    assert_eq!(r.cfg_read(pf, 0, 4), 0x10c9_8086);
    assert_eq!(r.cfg_read(pf, 0x08, 4) >> 8, 0x02_00_00);
    let nic = r.nic();
    assert_eq!(
        nic.config_space(Function::Pf).unwrap().capabilities(),
        vec![
            (PM_CAP, PCI_CAP_ID_PM),
            (MSI_CAP, PCI_CAP_ID_MSI),
            (MSIX_CAP, PCI_CAP_ID_MSIX),
            (PCIE_CAP, PCI_CAP_ID_EXP)
        ]
    );
    assert_eq!(
        nic.config_space(Function::Pf).unwrap().ext_capabilities(),
        vec![
            (AER_CAP, PCI_EXT_CAP_ID_AER),
            (ARI_CAP, PCI_EXT_CAP_ID_ARI),
            (SRIOV_CAP, PCI_EXT_CAP_ID_SRIOV)
        ]
    );
    // MSI-X: 10 vectors, table and PBA in BAR3.
    assert_eq!(r.cfg_read(pf, MSIX_CAP + 2, 2) & 0x7ff, 9);
    assert_eq!(r.cfg_read(pf, MSIX_CAP + 4, 4), 3);
    assert_eq!(r.cfg_read(pf, MSIX_CAP + 8, 4), 0x2003);
    // BAR sizing: write all ones, read the mask, restore.
    let old = r.cfg_read(pf, 0x10, 4);
    r.cfg_write(pf, 0x10, 4, 0xffff_ffff);
    assert_eq!(r.cfg_read(pf, 0x10, 4), 0xfffe_0004);
    r.cfg_write(pf, 0x1c, 4, 0xffff_ffff);
    assert_eq!(r.cfg_read(pf, 0x1c, 4), 0xffff_c004);
    r.cfg_write(pf, 0x10, 4, old);
    // SR-IOV fields.
    assert_eq!(r.cfg_read(pf, SRIOV_CAP + SRIOV_TOTAL_VF, 2), 8);
    assert_eq!(r.cfg_read(pf, SRIOV_CAP + SRIOV_VF_OFFSET, 4), 0x0002_0080);
    assert_eq!(r.cfg_read(pf, SRIOV_CAP + SRIOV_VF_DID, 2), 0x10ca);
    r.cfg_write(pf, SRIOV_CAP + SRIOV_BAR, 4, 0xffff_ffff);
    assert_eq!(r.cfg_read(pf, SRIOV_CAP + SRIOV_BAR, 4), 0xffff_c004);
}

#[test]
fn mechanism1_reaches_the_nic() {
    let mut r = Rig::new();
    r.bus.pio_write_at(
        0xcf8,
        &(0x8000_0000u32 | (DEV as u32) << 11).to_le_bytes(),
        0,
    );
    let mut d = [0u8; 4];
    r.bus.pio_read_at(0xcfc, &mut d, 0);
    assert_eq!(u32::from_le_bytes(d), 0x10c9_8086);
}

#[test]
fn sriov_enable_disable_and_vf_routing_ids() {
    let mut r = Rig::new();
    let pf = r.nic().pf_rid();
    assert_eq!(r.cfg_read(pf + 0x80, 0, 4), 0xffff_ffff);
    r.cfg_write(pf, SRIOV_CAP + SRIOV_NUM_VF, 2, 3);
    r.cfg_write(
        pf,
        SRIOV_CAP + SRIOV_CTRL,
        2,
        (SRIOV_CTRL_VFE | SRIOV_CTRL_MSE) as u32,
    );
    assert_eq!(r.nic().active_vfs(), 3);
    for n in 0..3u16 {
        let rid = pf + 0x80 + 2 * n;
        assert_eq!(r.nic().rid(Function::Vf(n)), rid);
        // VF vendor/device read 0xffff; the class code and MSI-X capability are there.
        assert_eq!(r.cfg_read(rid, 0, 4), 0xffff_ffff);
        assert_eq!(r.cfg_read(rid, 0x08, 4) >> 8, 0x02_00_00);
        assert_eq!(r.cfg_read(rid, MSIX_CAP, 1), PCI_CAP_ID_MSIX as u32);
        assert_eq!(r.cfg_read(rid, MSIX_CAP + 2, 2) & 0x7ff, 2);
        // Memory space enable is not implemented in a VF; BME is.
        r.cfg_write(rid, PCI_COMMAND, 2, 0xffff);
        assert_eq!(r.cfg_read(rid, PCI_COMMAND, 2), PCI_COMMAND_MASTER as u32);
    }
    assert_eq!(r.cfg_read(pf + 0x86, 0, 4), 0xffff_ffff);
    assert!(!r
        .bus
        .device::<Nic82576>(r.h)
        .unwrap()
        .responds_to(pf + 0x86));
    // NumVFs is frozen while VF Enable is set.
    r.cfg_write(pf, SRIOV_CAP + SRIOV_NUM_VF, 2, 8);
    assert_eq!(r.cfg_read(pf, SRIOV_CAP + SRIOV_NUM_VF, 2), 3);
    r.cfg_write(pf, SRIOV_CAP + SRIOV_CTRL, 2, 0);
    assert_eq!(r.nic().active_vfs(), 0);
    assert!(!r.nic().responds_to(pf + 0x80));
}

#[test]
fn vf_bars_follow_the_pf_capability() {
    let mut r = Rig::with_vfs(4);
    let base0 = r.nic().bar_address(Function::Vf(0), REG_BAR).unwrap();
    for n in 0..4u16 {
        assert_eq!(
            r.nic().bar_address(Function::Vf(n), REG_BAR),
            Some(base0 + n as u64 * VF_BAR0_SIZE)
        );
        assert_eq!(r.rd(Function::Vf(n), STATUS) & STATUS_LU, STATUS_LU);
    }
    // Past the last VF nothing decodes.
    let mut d = [0u8; 4];
    assert!(!r.bus.mmio_read_at(base0 + 4 * VF_BAR0_SIZE, &mut d, 0));
    // Reprogramming the VF BAR moves every VF.
    let pf = r.nic().pf_rid();
    let new = 0xc800_0000u32;
    r.cfg_write(pf, SRIOV_CAP + SRIOV_BAR, 4, new);
    assert!(!r.bus.mmio_read_at(base0 + 8, &mut d, 0));
    assert!(r.bus.mmio_read_at(new as u64 + VF_BAR0_SIZE + 8, &mut d, 0));
    // VF MSE gates decoding.
    r.cfg_write(pf, SRIOV_CAP + SRIOV_CTRL, 2, SRIOV_CTRL_VFE as u32);
    assert!(!r.bus.mmio_read_at(new as u64 + 8, &mut d, 0));
}

#[test]
fn pf_bar_relocation_and_memory_enable() {
    let mut r = Rig::new();
    let pf = r.nic().pf_rid();
    let old = r.addr(Function::Pf, REG_BAR, 0);
    r.cfg_write(pf, 0x10, 4, 0xd000_0000);
    r.cfg_write(pf, 0x14, 4, 0x1);
    assert_eq!(
        r.nic().bar_address(Function::Pf, REG_BAR),
        Some(0x1_d000_0000)
    );
    let mut d = [0u8; 4];
    assert!(!r.bus.mmio_read_at(old + 8, &mut d, 0));
    assert!(r.bus.mmio_read_at(0x1_d000_0008, &mut d, 0));
    assert_eq!(u32::from_le_bytes(d) & STATUS_LU, STATUS_LU);
    // D3hot: no memory decoding; back in D0 it answers again.
    r.cfg_write(pf, PM_CAP + 4, 2, 3);
    assert!(!r.bus.mmio_read_at(0x1_d000_0008, &mut d, 0));
    r.cfg_write(pf, PM_CAP + 4, 2, 0);
    assert!(r.bus.mmio_read_at(0x1_d000_0008, &mut d, 0));
    r.cfg_write(pf, PCI_COMMAND, 2, 0);
    assert!(!r.bus.mmio_read_at(0x1_d000_0008, &mut d, 0));
    assert_eq!(d, [0xff; 4]);
}

#[test]
fn vf_reset_handshake_with_builtin_agent() {
    let mut r = Rig::with_vfs(2);
    let mac = r.igbvf_init(1);
    assert_eq!(mac, r.nic().vf_mac(1));
    // After the reset the VF may send other requests (CTS).
    let reply = r.vf_send(1, &[VF_SET_MULTICAST]);
    assert_eq!(reply[0], VF_SET_MULTICAST | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS);
    let new = [0x02, 0, 0, 0, 0x77, 0x01];
    let w1 = u32::from_le_bytes([new[0], new[1], new[2], new[3]]);
    let w2 = u32::from_le_bytes([new[4], new[5], 0, 0]);
    let reply = r.vf_send(1, &[VF_SET_MAC_ADDR, w1, w2]);
    assert_eq!(reply[0] & VT_MSGTYPE_ACK, VT_MSGTYPE_ACK);
    assert_eq!(r.nic().vf_mac(1), new);
    let reply = r.vf_send(1, &[VF_SET_MAC_ADDR, 0x0000_0001, 0]);
    assert_eq!(
        reply[0] & VT_MSGTYPE_NACK,
        VT_MSGTYPE_NACK,
        "multicast MAC refused"
    );
    // VF 0 has not reset: it is not clear to send.
    let reply = r.vf_send(0, &[VF_SET_MULTICAST]);
    assert_eq!(reply[0] & VT_MSGTYPE_NACK, VT_MSGTYPE_NACK);
}

#[test]
fn pf_driver_and_vf_exchange_messages() {
    // No agent: a guest PF driver talks to the VF over the mailbox.
    let mut r = Rig::new();
    let pf = r.nic().pf_rid();
    r.cfg_write(pf, SRIOV_CAP + SRIOV_NUM_VF, 2, 1);
    r.cfg_write(
        pf,
        SRIOV_CAP + SRIOV_CTRL,
        2,
        (SRIOV_CTRL_VFE | SRIOV_CTRL_MSE) as u32,
    );
    let vf = Function::Vf(0);
    // PF reset in progress until PFRSTD.
    assert_ne!(r.rd(vf, V2PMAILBOX) & V2P_RSTI, 0);
    // The PF driver: MSI-X, other cause on vector 9, mailbox interrupts on.
    r.msix_entry(Function::Pf, 9, 0x99);
    r.enable_msix(Function::Pf);
    r.wr(
        Function::Pf,
        GPIE,
        GPIE_MSIX_MODE | GPIE_EIAME | GPIE_PBA,
        0,
    );
    r.wr(Function::Pf, IVAR_MISC, (9 | IVAR_VALID) << 8, 0);
    r.wr(Function::Pf, EIMS, 1 << 9, 0);
    r.wr(Function::Pf, IMS, ICR_VMMB, 0);
    r.wr(Function::Pf, MBVFIMR, 0xff, 0);
    r.wr(Function::Pf, CTRL_EXT, CTRL_EXT_PFRSTD, 0);
    let st = r.rd(vf, V2PMAILBOX);
    assert_eq!(st & (V2P_RSTI | V2P_RSTD), V2P_RSTD);
    // A read-modify-write of CTRL_EXT keeping PFRSTD is not a new reset.
    r.wr(Function::Pf, CTRL_EXT, CTRL_EXT_PFRSTD | 0x100, 0);
    assert_eq!(r.rd(vf, V2PMAILBOX) & (V2P_RSTI | V2P_RSTD), 0);
    // VF posts a message.
    r.wr(vf, V2PMAILBOX, V2P_VFU, 0);
    r.wr(vf, VMBMEM, VF_SET_LPE, 0);
    r.wr(vf, VMBMEM + 4, 9000, 0);
    r.wr(vf, V2PMAILBOX, V2P_REQ, 0);
    let m = r.sink.take();
    assert_eq!(m, vec![MsiMessage::new(pf, 0xfee0_0000, 0x99)]);
    assert_ne!(r.rd(Function::Pf, ICR) & ICR_VMMB, 0);
    assert_eq!(r.rd(Function::Pf, MBVFICR), 1);
    // PF: clear the request bit, lock, read, ack.
    r.wr(Function::Pf, MBVFICR, 1, 0);
    r.wr(Function::Pf, P2VMAILBOX, P2V_PFU, 0);
    assert_eq!(r.rd(Function::Pf, P2VMAILBOX) & P2V_PFU, P2V_PFU);
    assert_eq!(r.rd(Function::Pf, VMBMEM), VF_SET_LPE);
    assert_eq!(r.rd(Function::Pf, VMBMEM + 4), 9000);
    // While the PF holds the lock the VF cannot take it or write the buffer.
    r.wr(vf, V2PMAILBOX, V2P_VFU, 0);
    assert_eq!(r.rd(vf, V2PMAILBOX) & V2P_VFU, 0);
    r.wr(vf, VMBMEM, 0xbad, 0);
    assert_eq!(r.nic().mailbox_misuse(), 1);
    assert_eq!(r.rd(Function::Pf, VMBMEM), VF_SET_LPE);
    r.wr(
        Function::Pf,
        VMBMEM,
        VF_SET_LPE | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS,
        0,
    );
    r.wr(Function::Pf, P2VMAILBOX, P2V_ACK | P2V_STS, 0);
    let st = r.rd(vf, V2PMAILBOX);
    assert_eq!(
        st & (V2P_PFACK | V2P_PFSTS | V2P_PFU),
        V2P_PFACK | V2P_PFSTS
    );
    assert_eq!(
        r.rd(vf, VMBMEM),
        VF_SET_LPE | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS
    );
    // VF reset: the PF sees it in VFLRE.
    r.wr(vf, CTRL, CTRL_RST, 0);
    assert_eq!(r.rd(Function::Pf, VFLRE), 1);
    r.wr(Function::Pf, VFLRE, 1, 0);
    assert_eq!(r.rd(Function::Pf, VFLRE), 0);
}

#[test]
fn vf_to_vf_frame_through_the_switch() {
    let mut r = Rig::with_vfs(2);
    let mac0 = r.igbvf_init(0);
    let mac1 = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    let f = frame(mac1, mac0, 100);
    r.send(Function::Vf(0), 0x10_0000, &f, 0);
    // Frame in VF1's first buffer; descriptor written back.
    assert_eq!(r.read_mem(0x21_0000, 100), f);
    let wb = r.read_mem(0x20_0000, 16);
    let st = u32::from_le_bytes(wb[8..12].try_into().unwrap());
    assert_eq!(
        st & (RXD_STAT_DD | RXD_STAT_EOP),
        RXD_STAT_DD | RXD_STAT_EOP
    );
    assert_eq!(u16::from_le_bytes([wb[12], wb[13]]), 100);
    assert_eq!(r.rd(Function::Vf(1), RXQ_LOW_BASE + RDH), 1);
    // TX descriptor done.
    let td = r.read_mem(0x10_1000, 16);
    assert_eq!(td[12] & 1, 1);
    assert_eq!(r.rd(Function::Vf(0), TXQ_LOW_BASE + TDH), 1);
    // One MSI for VF0's tx (vector 1) and one for VF1's rx (vector 0), with their
    // requester IDs.
    let m = r.sink.take();
    let vf0 = r.nic().rid(Function::Vf(0));
    let vf1 = r.nic().rid(Function::Vf(1));
    assert!(
        m.contains(&MsiMessage::new(vf0, 0xfee0_0000, 0x41)),
        "{m:x?}"
    );
    assert!(
        m.contains(&MsiMessage::new(vf1, 0xfee0_0000, 0x48)),
        "{m:x?}"
    );
    assert_eq!(m.len(), 2);
    // Statistics.
    assert_eq!(r.rd(Function::Vf(0), VFGPTC), 1);
    assert_eq!(r.rd(Function::Vf(0), VFGPTLBC), 1);
    assert_eq!(r.rd(Function::Vf(1), VFGPRC), 1);
    assert_eq!(r.rd(Function::Vf(1), VFGORC), 100);
    assert_eq!(r.rd(Function::Vf(1), VFGPRLBC), 1);
    // Auto-clear and auto-mask: EICR clear, EIMS bit 0 masked until re-enabled.
    assert_eq!(r.rd(Function::Vf(1), EIMS) & 1, 0);
}

#[test]
fn broadcast_reaches_every_other_function() {
    let mut r = Rig::with_vfs(3);
    let mut macs = vec![];
    for n in 0..3 {
        macs.push(r.igbvf_init(n));
        r.rings(Function::Vf(n), 0x10_0000 * (n as u64 + 1));
    }
    let f = frame([0xff; 6], macs[0], 60);
    r.send(Function::Vf(0), 0x10_0000, &f, 0);
    assert_eq!(r.rd(Function::Vf(1), VFGPRC), 1);
    assert_eq!(r.rd(Function::Vf(2), VFGPRC), 1);
    assert_eq!(r.rd(Function::Vf(0), VFGPRC), 0);
    assert_eq!(r.nic().counters.tx_to_wire, 1);
}

#[test]
fn unknown_unicast_goes_to_the_wire_backend() {
    let mut r = Rig::with_vfs(1);
    let mac = r.igbvf_init(0);
    let be = backend::RecordingBackend::default();
    r.nic_mut().set_backend(Box::new(be.clone()));
    r.rings(Function::Vf(0), 0x10_0000);
    let f = frame([2, 1, 2, 3, 4, 5], mac, 64);
    r.send(Function::Vf(0), 0x10_0000, &f, 0);
    assert_eq!(*be.frames.lock().unwrap(), vec![f]);
    // A frame from the wire to the VF's MAC is received.
    let g = frame(mac, [2, 1, 2, 3, 4, 5], 64);
    r.nic_mut().receive_from_wire(&g, 0);
    assert_eq!(r.read_mem(0x11_0000, 64), g);
}

#[test]
fn eitr_moderation_timing() {
    let mut r = Rig::with_vfs(2);
    let mac0 = r.igbvf_init(0);
    let mac1 = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    // VF1 rx vector 0: 100 µs minimum interval; no auto-mask so only EITR limits.
    r.wr(Function::Vf(1), EIAM, 0, 0);
    r.wr(Function::Vf(1), EITR, 100 << 2, 0);
    // VF0's tx interrupts off, to count VF1's only.
    r.wr(Function::Vf(0), EIMC, 0x7, 0);
    let f = frame(mac1, mac0, 64);
    let vf1 = r.nic().rid(Function::Vf(1));
    r.send(Function::Vf(0), 0x10_0000, &f, 1_000);
    assert_eq!(r.sink.take(), vec![MsiMessage::new(vf1, 0xfee0_0000, 0x48)]);
    r.send(Function::Vf(0), 0x10_0000, &f, 10_000);
    r.send(Function::Vf(0), 0x10_0000, &f, 20_000);
    assert!(r.sink.is_empty(), "moderated");
    assert_eq!(r.bus.next_deadline(), Some(101_000));
    r.bus.poll(100_999);
    assert!(r.sink.is_empty());
    r.bus.poll(101_000);
    assert_eq!(r.sink.take().len(), 1, "one interrupt for the two frames");
    assert_eq!(r.bus.next_deadline(), None);
    assert_eq!(r.rd(Function::Vf(1), VFGPRC), 3);
    // With EITR 0 every frame interrupts.
    r.wr(Function::Vf(1), EITR, 0, 0);
    for t in 0..3 {
        r.send(Function::Vf(0), 0x10_0000, &f, 200_000 + t);
    }
    assert_eq!(r.sink.take().len(), 3);
}

#[test]
fn msix_mask_pending_and_unmask_through_the_bar() {
    let mut r = Rig::with_vfs(2);
    let mac0 = r.igbvf_init(0);
    let mac1 = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    r.wr(Function::Vf(0), EIMC, 0x7, 0);
    let ctrl = r.addr(Function::Vf(1), MSIX_BAR, 12);
    r.bus.mmio_write_at(ctrl, &1u32.to_le_bytes(), 0);
    r.send(Function::Vf(0), 0x10_0000, &frame(mac1, mac0, 64), 0);
    assert!(r.sink.is_empty());
    let pba = r.addr(Function::Vf(1), MSIX_BAR, MSIX_PBA_OFFSET);
    let mut d = [0u8; 8];
    r.bus.mmio_read_at(pba, &mut d, 0);
    assert_eq!(u64::from_le_bytes(d), 1);
    r.bus.mmio_write_at(ctrl, &0u32.to_le_bytes(), 0);
    let vf1 = r.nic().rid(Function::Vf(1));
    assert_eq!(r.sink.take(), vec![MsiMessage::new(vf1, 0xfee0_0000, 0x48)]);
    r.bus.mmio_read_at(pba, &mut d, 0);
    assert_eq!(u64::from_le_bytes(d), 0);
    // Function mask holds, clearing it delivers.
    let rid = vf1;
    r.cfg_write(rid, MSIX_CAP + 2, 2, 0xc000);
    r.wr(Function::Vf(1), EIMS, 1, 0);
    r.send(Function::Vf(0), 0x10_0000, &frame(mac1, mac0, 64), 0);
    assert!(r.sink.is_empty());
    r.cfg_write(rid, MSIX_CAP + 2, 2, 0x8000);
    assert_eq!(r.sink.take().len(), 1);
    // Writes to nonexistent vectors are ignored.
    let a = r.addr(Function::Vf(1), MSIX_BAR, 16 * 3 + 8);
    r.bus.mmio_write_at(a, &0x1234u32.to_le_bytes(), 0);
    let mut d4 = [0u8; 4];
    r.bus.mmio_read_at(a, &mut d4, 0);
    assert_eq!(d4, [0; 4]);
}

#[test]
fn pf_cause_to_vector_mapping() {
    let mut r = Rig::new();
    let pf = Function::Pf;
    let pfr = r.nic().pf_rid();
    for v in 0..10 {
        r.msix_entry(pf, v, 0x60 + v);
    }
    r.enable_msix(pf);
    r.wr(pf, GPIE, GPIE_MSIX_MODE | GPIE_EIAME | GPIE_PBA, 0);
    // Queue 0: rx → vector 3, tx → vector 5; queue 8 (byte 2) rx → vector 7.
    r.wr(
        pf,
        IVAR0,
        (3 | IVAR_VALID) | ((5 | IVAR_VALID) << 8) | ((7 | IVAR_VALID) << 16),
        0,
    );
    r.wr(pf, EIAC, 0x3ff, 0);
    r.wr(pf, EIMS, 0x3ff, 0);
    r.wr(pf, RCTL, RCTL_EN, 0);
    r.wr(pf, TCTL, TCTL_EN, 0);
    // Accept our own MAC (RAR0 from the NVM).
    r.rings(pf, 0x10_0000);
    let mac = r.nic().mac();
    r.nic_mut()
        .receive_from_wire(&frame(mac, [2, 0, 0, 0, 0, 9], 80), 0);
    assert_eq!(r.sink.take(), vec![MsiMessage::new(pfr, 0xfee0_0000, 0x63)]);
    r.send(pf, 0x10_0000, &frame([2, 0, 0, 0, 0, 9], mac, 80), 0);
    assert_eq!(r.sink.take(), vec![MsiMessage::new(pfr, 0xfee0_0000, 0x65)]);
    // EICS raises a vector by hand; unmapped queues raise nothing.
    r.wr(pf, EICS, 1 << 7, 0);
    assert_eq!(r.sink.take(), vec![MsiMessage::new(pfr, 0xfee0_0000, 0x67)]);
    // Statistics are clear-on-read.
    assert_eq!(r.rd(pf, GPRC), 1);
    assert_eq!(r.rd(pf, GPRC), 0);
    assert_eq!(r.rd(pf, GPTC), 1);
}

#[test]
fn pf_msi_mode_delivers_through_the_msi_capability() {
    let mut r = Rig::new();
    let pfr = r.nic().pf_rid();
    r.cfg_write(pfr, MSI_CAP + 4, 4, 0xfee0_1000);
    r.cfg_write(pfr, MSI_CAP + 0xc, 2, 0x4321);
    r.cfg_write(pfr, MSI_CAP + 0x10, 4, 1);
    r.cfg_write(pfr, MSI_CAP + 2, 2, 1);
    r.wr(Function::Pf, IMS, ICR_LSC, 0);
    r.wr(Function::Pf, EIMS, 1, 0);
    r.wr(Function::Pf, ICS, ICR_LSC, 0);
    assert!(r.sink.is_empty(), "MSI masked");
    assert_eq!(r.cfg_read(pfr, MSI_CAP + 0x14, 4), 1, "pending");
    r.cfg_write(pfr, MSI_CAP + 0x10, 4, 0);
    assert_eq!(
        r.sink.take(),
        vec![MsiMessage::new(pfr, 0xfee0_1000, 0x4321)]
    );
    assert_eq!(
        r.rd(Function::Pf, ICR) & (ICR_LSC | ICR_INT_ASSERTED),
        ICR_LSC | ICR_INT_ASSERTED
    );
    assert_eq!(r.rd(Function::Pf, ICR), 0);
}

#[test]
fn flr_resets_vf_and_pf() {
    let mut r = Rig::with_vfs(2);
    r.igbvf_init(1);
    let rid = r.nic().rid(Function::Vf(1));
    assert_ne!(r.cfg_read(rid, MSIX_CAP + 2, 2) & 0x8000, 0);
    r.cfg_write(rid, PCIE_CAP + 8, 2, 0x8000);
    assert_eq!(r.cfg_read(rid, MSIX_CAP + 2, 2) & 0x8000, 0);
    assert_eq!(r.cfg_read(rid, PCI_COMMAND, 2), 0);
    assert_eq!(r.rd(Function::Pf, VFLRE) & 2, 2);
    assert_eq!(r.rd(Function::Pf, VFTE) & 2, 0);
    let pf = r.nic().pf_rid();
    r.cfg_write(pf, PCIE_CAP + 8, 2, 0x8000);
    assert_eq!(r.nic().active_vfs(), 0);
    assert_eq!(r.cfg_read(pf, PCI_COMMAND, 2), 0);
    assert_eq!(r.nic().bar_address(Function::Pf, REG_BAR), Some(0));
}

#[test]
fn pf_nvm_and_phy_for_igb_bring_up() {
    let mut r = Rig::new();
    let pf = Function::Pf;
    assert_ne!(r.rd(pf, EECD) & EECD_AUTO_RD, 0);
    r.wr(pf, EERD, EERD_START, 0);
    let v = r.rd(pf, EERD);
    assert_eq!(v & EERD_DONE, EERD_DONE);
    assert_eq!(v >> 16, 0x5452);
    r.wr(
        pf,
        MDIC,
        MDIC_OP_READ | (1 << MDIC_PHY_SHIFT) | (1 << MDIC_REG_SHIFT),
        0,
    );
    let m = r.rd(pf, MDIC);
    assert_ne!(m & MDIC_READY, 0);
    assert_eq!(m & 4, 4, "BMSR link status");
    // CTRL.RST self-clears and sets STATUS.PF_RST_DONE.
    r.wr(pf, CTRL, CTRL_RST, 0);
    assert_eq!(r.rd(pf, CTRL) & CTRL_RST, 0);
    assert_ne!(r.rd(pf, STATUS) & STATUS_PF_RST_DONE, 0);
}

/// An IPv4/TCP frame with `payload` bytes; the TCP checksum field holds the
/// pseudo-header sum (as Linux leaves it for CHECKSUM_PARTIAL / TSO).
fn tcp_frame(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = frame(dst, src, 14);
    f[12] = 0x08;
    f[13] = 0x00;
    let total = 20 + 20 + payload;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
    ]);
    f.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x50, 0x19, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| (i * 7) as u8));
    let ph = csum::sum(&f[26..34], 0) + 6 + (20 + payload) as u32;
    let ph = csum::fold(ph);
    f[50..52].copy_from_slice(&ph.to_be_bytes());
    f
}

/// Writes a context descriptor then a data descriptor with `olinfo`/`cmd` at `i`, `i+1`.
fn put_ctx_and_data(r: &mut Rig, i: u64, buf: u64, len: u32, cmd: u32, olinfo: u32, mss: u32) {
    let ring = 0x10_1000;
    let mut c = [0u8; 16];
    let maclen_iplen = (14u32 << ADVTXD_MACLEN_SHIFT) | 20;
    c[0..4].copy_from_slice(&maclen_iplen.to_le_bytes());
    let tucmd = ADVTXD_DTYP_CTXT | TXD_CMD_DEXT | ADVTXD_TUCMD_IPV4 | (1 << ADVTXD_TUCMD_L4T_SHIFT);
    c[8..12].copy_from_slice(&tucmd.to_le_bytes());
    c[12..16].copy_from_slice(&((mss << 16) | (20 << 8)).to_le_bytes());
    r.mem
        .memory()
        .write_slice(&c, GuestAddress(ring + 16 * i))
        .unwrap();
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&buf.to_le_bytes());
    let cmd = len | ADVTXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_EOP | TXD_CMD_RS | cmd;
    d[8..12].copy_from_slice(&cmd.to_le_bytes());
    d[12..16].copy_from_slice(&olinfo.to_le_bytes());
    r.mem
        .memory()
        .write_slice(&d, GuestAddress(ring + 16 * (i + 1)))
        .unwrap();
}

use vm_memory::{Bytes, GuestAddress};

#[test]
fn tx_checksum_offload_and_rx_checksum_status() {
    let mut r = Rig::with_vfs(2);
    let a = r.igbvf_init(0);
    let b = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    let f = tcp_frame(b, a, 100);
    r.mem
        .memory()
        .write_slice(&f, GuestAddress(0x40_0000))
        .unwrap();
    let olinfo = ADVTXD_POPTS_IXSM | ADVTXD_POPTS_TXSM | ((f.len() as u32 - 54) << 14);
    put_ctx_and_data(&mut r, 0, 0x40_0000, f.len() as u32, 0, olinfo, 0);
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 2, 0);
    let got = r.read_mem(0x21_0000, f.len());
    let cs = csum::check_rx(&got);
    assert!(cs.ip_ok && cs.tcp && cs.l4_ok, "{cs:?}");
    let wb = r.read_mem(0x20_0000, 16);
    let st = u32::from_le_bytes(wb[8..12].try_into().unwrap());
    assert_eq!(
        st & (RXD_STAT_IPCS | RXD_STAT_TCPCS),
        RXD_STAT_IPCS | RXD_STAT_TCPCS
    );
    assert_eq!(st & (RXDEXT_STATERR_IPE | RXDEXT_STATERR_TCPE), 0);
    let pkt = u32::from_le_bytes(wb[0..4].try_into().unwrap());
    assert_eq!(
        pkt & (RXDADV_PKTTYPE_IPV4 | RXDADV_PKTTYPE_TCP),
        RXDADV_PKTTYPE_IPV4 | RXDADV_PKTTYPE_TCP
    );
    // Without offload the pre-seeded field is wrong on the wire: the receiver flags it.
    put_ctx_and_data(&mut r, 2, 0x40_0000, f.len() as u32, 0, 0, 0);
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 4, 0);
    let wb = r.read_mem(0x20_0010, 16);
    let st = u32::from_le_bytes(wb[8..12].try_into().unwrap());
    assert_ne!(st & RXDEXT_STATERR_TCPE, 0);
    assert_ne!(st & RXDEXT_STATERR_IPE, 0, "IP checksum left zero");
}

#[test]
fn tcp_segmentation_offload() {
    let mut r = Rig::with_vfs(2);
    let a = r.igbvf_init(0);
    let b = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    let f = tcp_frame(b, a, 3000);
    r.mem
        .memory()
        .write_slice(&f, GuestAddress(0x40_0000))
        .unwrap();
    let olinfo = ADVTXD_POPTS_IXSM | ADVTXD_POPTS_TXSM | (3000 << 14);
    put_ctx_and_data(
        &mut r,
        0,
        0x40_0000,
        f.len() as u32,
        TXD_CMD_TSE,
        olinfo,
        1000,
    );
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 2, 0);
    assert_eq!(r.rd(Function::Vf(1), VFGPRC), 3);
    for i in 0..3u64 {
        let wb = r.read_mem(0x20_0000 + 16 * i, 16);
        assert_eq!(u16::from_le_bytes([wb[12], wb[13]]), 1054);
        let seg = r.read_mem(0x21_0000 + 2048 * i, 1054);
        let cs = csum::check_rx(&seg);
        assert!(cs.ip_ok && cs.l4_ok, "segment {i}: {cs:?}");
        let seq = u32::from_be_bytes(seg[38..42].try_into().unwrap());
        assert_eq!(seq, 0x1000 + 1000 * i as u32);
        assert_eq!(
            &seg[54..],
            &f[54 + 1000 * i as usize..54 + 1000 * (i as usize + 1)]
        );
    }
}

#[test]
fn pf_and_vfs_share_the_switch() {
    let mut r = Rig::with_vfs(2);
    let v1 = r.igbvf_init(1);
    r.rings(Function::Vf(1), 0x20_0000);
    // The PF's ring 0 is physical queue NumVFs (2), as igb places it.
    r.wr(Function::Pf, RCTL, RCTL_EN, 0);
    r.wr(Function::Pf, TCTL, TCTL_EN, 0);
    r.rings(Function::Pf, 0x30_0000);
    let pf_mac = r.nic().mac();
    r.send(Function::Pf, 0x30_0000, &frame(v1, pf_mac, 70), 0);
    assert_eq!(r.rd(Function::Vf(1), VFGPRC), 1);
    assert_eq!(r.read_mem(0x21_0000, 70), frame(v1, pf_mac, 70));
    r.send(Function::Vf(1), 0x20_0000, &frame(pf_mac, v1, 90), 0);
    assert_eq!(r.read_mem(0x31_0000, 90), frame(pf_mac, v1, 90));
    assert_eq!(r.rd(Function::Pf, GPRC), 1);
    assert_eq!(r.nic().owner(2), Function::Pf);
    assert_eq!(r.nic().owner(9), Function::Vf(1));
}

#[test]
fn vlan_insertion_on_tx_and_stripping_on_rx() {
    let mut r = Rig::with_vfs(2);
    let a = r.igbvf_init(0);
    let b = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    let f = frame(b, a, 80);
    r.mem
        .memory()
        .write_slice(&f, GuestAddress(0x40_0000))
        .unwrap();
    let ring = 0x10_1000u64;
    let mut c = [0u8; 16];
    let vlan_macip = (5u32 << 16) | (14 << ADVTXD_MACLEN_SHIFT);
    c[0..4].copy_from_slice(&vlan_macip.to_le_bytes());
    c[8..12].copy_from_slice(&(ADVTXD_DTYP_CTXT | TXD_CMD_DEXT).to_le_bytes());
    r.mem.memory().write_slice(&c, GuestAddress(ring)).unwrap();
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&0x40_0000u64.to_le_bytes());
    let cmd = 80 | ADVTXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_EOP | TXD_CMD_RS | TXD_CMD_VLE;
    d[8..12].copy_from_slice(&cmd.to_le_bytes());
    r.mem
        .memory()
        .write_slice(&d, GuestAddress(ring + 16))
        .unwrap();
    // VF1 strips (the agent set VMOLR.STRVLAN as igb does).
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 2, 0);
    assert_eq!(r.read_mem(0x21_0000, 80), f);
    let wb = r.read_mem(0x20_0000, 16);
    assert_ne!(wb[8] as u32 & RXD_STAT_VP, 0);
    assert_eq!(u16::from_le_bytes([wb[12], wb[13]]), 80);
    assert_eq!(u16::from_le_bytes([wb[14], wb[15]]), 5);
    // Without stripping the tag stays in the frame.
    r.wr(Function::Pf, VMOLR + 4, VMOLR_LPE | 1522, 0);
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDH, 0, 0);
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 0, 0);
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 2, 0);
    let got = r.read_mem(0x21_0000 + 2048, 84);
    assert_eq!(&got[12..16], &[0x81, 0x00, 0x00, 0x05]);
    assert_eq!(&got[16..], &f[12..]);
}

#[test]
fn header_split_always_as_igbvf_uses_for_jumbo_mtu() {
    let mut r = Rig::with_vfs(2);
    let a = r.igbvf_init(0);
    let b = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    // Header buffers at 0x28_0000 + 256·i; SRRCTL: 128-byte headers, 2 KiB packets.
    for i in 0..8u64 {
        let h = (0x28_0000 + 256 * i).to_le_bytes();
        r.mem
            .memory()
            .write_slice(&h, GuestAddress(0x20_0008 + 16 * i))
            .unwrap();
    }
    r.wr(
        Function::Vf(1),
        RXQ_LOW_BASE + SRRCTL,
        2 | (2 << 8) | (5 << SRRCTL_DESCTYPE_SHIFT),
        0,
    );
    let f = tcp_frame(b, a, 300);
    r.send(Function::Vf(0), 0x10_0000, &f, 0);
    assert_eq!(r.read_mem(0x28_0000, 54), f[..54].to_vec());
    assert_eq!(r.read_mem(0x21_0000, 300), f[54..].to_vec());
    let wb = r.read_mem(0x20_0000, 16);
    let hdr_info = u16::from_le_bytes([wb[2], wb[3]]) as u32;
    assert_eq!(
        (hdr_info & RXDADV_HDRBUFLEN_MASK) >> RXDADV_HDRBUFLEN_SHIFT,
        54
    );
    assert_ne!(hdr_info & RXDADV_SPH, 0);
    assert_eq!(u16::from_le_bytes([wb[12], wb[13]]), 300);
    // A non-IP frame: only the Ethernet header is split off.
    let g = frame(b, a, 100);
    r.send(Function::Vf(0), 0x10_0000, &g, 0);
    assert_eq!(r.read_mem(0x28_0100, 14), g[..14].to_vec());
    assert_eq!(r.read_mem(0x21_0800, 86), g[14..].to_vec());
}

#[test]
fn pf_msi_mode_reports_queue_causes_in_icr() {
    let mut r = Rig::new();
    let pfr = r.nic().pf_rid();
    r.cfg_write(pfr, MSI_CAP + 4, 4, 0xfee0_0000);
    r.cfg_write(pfr, MSI_CAP + 0xc, 2, 0x31);
    r.cfg_write(pfr, MSI_CAP + 2, 2, 1);
    // igb's non-MSI-X setup: IMS with the queue and link causes.
    r.wr(Function::Pf, IMS, ICR_RXT0 | ICR_TXDW | ICR_LSC, 0);
    r.wr(Function::Pf, RCTL, RCTL_EN, 0);
    r.rings(Function::Pf, 0x10_0000);
    let mac = r.nic().mac();
    r.nic_mut()
        .receive_from_wire(&frame(mac, [2, 0, 0, 0, 0, 9], 60), 0);
    assert_eq!(r.sink.take(), vec![MsiMessage::new(pfr, 0xfee0_0000, 0x31)]);
    assert_eq!(r.rd(Function::Pf, ICR), ICR_RXT0 | ICR_INT_ASSERTED);
    // Legacy ITR: 1000 × 256 ns = 256 µs between interrupts.
    r.wr(Function::Pf, ITR, 1000, 0);
    r.nic_mut()
        .receive_from_wire(&frame(mac, [2, 0, 0, 0, 0, 9], 60), 10_000);
    assert!(r.sink.is_empty(), "within the ITR interval");
    assert_eq!(r.bus.next_deadline(), Some(256_000));
    r.bus.poll(256_000);
    assert_eq!(r.sink.take().len(), 1);
    assert_eq!(r.bus.next_deadline(), None);
}

#[test]
fn device_numbers_that_would_collide_are_refused() {
    let sink = crate::interrupt::RecordingSink::new();
    let mem = std::sync::Arc::new(crate::dma::GuestDma::new(
        std::sync::Arc::new(
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap(),
        ),
        crate::dma::IdentityTranslator,
    ));
    for (dev, ok) in [(0u8, false), (1, true), (0x0e, true), (0x0f, false)] {
        let r = Nic82576::new(
            NicConfig::new(dev, [2, 0, 0, 0, 0, 1]),
            mem.clone(),
            sink.clone(),
        );
        assert_eq!(r.is_ok(), ok, "device {dev}");
    }
    // The last VF of a PF at device 0x0e is 00:1f.6.
    let mut nic = Nic82576::new(NicConfig::new(0x0e, [2, 0, 0, 0, 0, 1]), mem, sink).unwrap();
    nic.host_enable_vfs(8, 0).unwrap();
    assert_eq!(nic.rid(Function::Vf(7)), 0xfe);
    assert!(nic.host_enable_vfs(9, 0).is_err());
}

#[derive(Default)]
struct Tally(std::sync::Mutex<(u32, u32, u32, u32)>);

impl events::NicEvents for Tally {
    fn frame_transmitted(&self, _: Function, _: usize, _: u32, _: bool) {
        self.0.lock().unwrap().0 += 1;
    }
    fn frame_received(&self, _: Function, _: usize) {
        self.0.lock().unwrap().1 += 1;
    }
    fn frame_dropped(&self, _: Function, why: events::DropReason) {
        assert_eq!(why, events::DropReason::NoDescriptors);
        self.0.lock().unwrap().2 += 1;
    }
    fn interrupt(&self, _: Function, _: usize) {
        self.0.lock().unwrap().3 += 1;
    }
}

#[test]
fn metrics_observer_sees_frames_drops_and_interrupts() {
    let mut r = Rig::with_vfs(2);
    let a = r.igbvf_init(0);
    let b = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    let t = std::sync::Arc::new(Tally::default());
    r.nic_mut().set_events(t.clone());
    r.send(Function::Vf(0), 0x10_0000, &frame(b, a, 64), 0);
    r.wr(Function::Vf(1), RXQ_LOW_BASE + RDT, 1, 0);
    r.send(Function::Vf(0), 0x10_0000, &frame(b, a, 64), 0);
    // 2 sent, 1 received, 1 dropped; interrupts: VF0's tx vector and VF1's rx vector
    // once each (EIAM auto-masks them after the first).
    let got = *t.0.lock().unwrap();
    assert_eq!(got, (2, 1, 1, 2));
    assert_eq!(got.3 as u64, r.nic().interrupts_sent());
}
