//! Register offsets and bits of the 82576, declared once.
//!
//! Source: Intel 82576EB Gigabit Ethernet Controller Datasheet, chapter "Device Registers
//! — PF" (general, interrupt, receive, transmit, statistics, virtualization registers) and
//! chapter "Device Registers — VF"; cross-checked against Linux igb (e1000_regs.h,
//! e1000_82575.h, e1000_mbx.h, e1000_defines.h) and igbvf (regs.h, mbx.h, defines.h).

// ---- general (PF "General Register Descriptions"; VF: VTCTRL/VTSTATUS) ----
/// Device Control (CTRL / VTCTRL).
pub const CTRL: u32 = 0x0000;
/// Device Status (STATUS / VTSTATUS).
pub const STATUS: u32 = 0x0008;
/// EEPROM/Flash Control.
pub const EECD: u32 = 0x0010;
/// EEPROM Read.
pub const EERD: u32 = 0x0014;
/// Management EEPROM control: configuration done for port 0 (bit 18), polled by igb.
pub const EEMNGCTL: u32 = 0x1010;
pub const EEMNGCTL_CFG_DONE_PORT_0: u32 = 1 << 18;
/// Extended Device Control.
pub const CTRL_EXT: u32 = 0x0018;
/// MDI Control (PHY access).
pub const MDIC: u32 = 0x0020;

/// CTRL: Set Link Up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: VLAN mode enable (PF tag stripping).
pub const CTRL_VME: u32 = 1 << 30;
/// CTRL: Device Reset (self-clearing; VTCTRL.RST resets only the VF).
pub const CTRL_RST: u32 = 1 << 26;
/// CTRL: PHY reset.
pub const CTRL_PHY_RST: u32 = 1 << 31;

/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: speed 1000 Mb/s (bits 7:6 = 10b).
pub const STATUS_SPEED_1000: u32 = 1 << 7;
/// STATUS: PF reset done (set after a PF software reset completes).
pub const STATUS_PF_RST_DONE: u32 = 1 << 21;

/// EECD: EEPROM present.
pub const EECD_PRES: u32 = 1 << 8;
/// EECD: Flash/EEPROM auto-read done.
pub const EECD_AUTO_RD: u32 = 1 << 9;
/// EERD: start read.
pub const EERD_START: u32 = 1 << 0;
/// EERD: read done.
pub const EERD_DONE: u32 = 1 << 1;
/// EERD: word address shift (bits 15:2).
pub const EERD_ADDR_SHIFT: u32 = 2;
/// EERD: data shift (bits 31:16).
pub const EERD_DATA_SHIFT: u32 = 16;

/// CTRL_EXT: PF Reset Done — tells the VFs the PF driver is ready (clears RSTI, sets
/// RSTD in every VF mailbox).
pub const CTRL_EXT_PFRSTD: u32 = 1 << 14;

/// MDIC: data bits 15:0, register 20:16, PHY 25:21, op 27:26 (01 write, 10 read),
/// ready 28, error 30.
pub const MDIC_REG_SHIFT: u32 = 16;
pub const MDIC_PHY_SHIFT: u32 = 21;
pub const MDIC_OP_WRITE: u32 = 1 << 26;
pub const MDIC_OP_READ: u32 = 2 << 26;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_ERROR: u32 = 1 << 30;

// ---- interrupts (PF "Interrupt Register Descriptions"; VF VTEICR...) ----
/// Interrupt Cause Read (PF, "other" causes).
pub const ICR: u32 = 0x00c0;
/// Interrupt Throttling Rate (non-MSI-X mode): interval bits 15:0 in 256 ns units.
pub const ITR: u32 = 0x00c4;
pub const ITR_INTERVAL_MASK: u32 = 0xffff;
/// Interrupt Cause Set.
pub const ICS: u32 = 0x00c8;
/// Interrupt Mask Set/Read.
pub const IMS: u32 = 0x00d0;
/// Interrupt Mask Clear.
pub const IMC: u32 = 0x00d8;
/// Interrupt Acknowledge Auto Mask.
pub const IAM: u32 = 0x00e0;
/// ICR: transmit descriptor written back (non-MSI-X mode queue cause).
pub const ICR_TXDW: u32 = 1 << 0;
/// ICR: receiver timer interrupt / descriptor written back (non-MSI-X mode).
pub const ICR_RXT0: u32 = 1 << 7;
/// ICR: link status change.
pub const ICR_LSC: u32 = 1 << 2;
/// ICR: VM mailbox / VF reset event (VMMB).
pub const ICR_VMMB: u32 = 1 << 8;
/// ICR: interrupt asserted.
pub const ICR_INT_ASSERTED: u32 = 1 << 31;

/// General Purpose Interrupt Enable.
pub const GPIE: u32 = 0x1514;
/// GPIE: Non Selective Interrupt Clear on Read.
pub const GPIE_NSICR: u32 = 1 << 0;
/// GPIE: MSI-X mode (EICR bits are MSI-X vectors).
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
/// GPIE: Extended Interrupt Auto Mask Enable.
pub const GPIE_EIAME: u32 = 1 << 30;
/// GPIE: PBA support.
pub const GPIE_PBA: u32 = 1 << 31;

/// Extended Interrupt Cause Set.
pub const EICS: u32 = 0x1520;
/// Extended Interrupt Mask Set/Read.
pub const EIMS: u32 = 0x1524;
/// Extended Interrupt Mask Clear.
pub const EIMC: u32 = 0x1528;
/// Extended Interrupt Auto Clear.
pub const EIAC: u32 = 0x152c;
/// Extended Interrupt Auto Mask.
pub const EIAM: u32 = 0x1530;
/// Extended Interrupt Cause Read.
pub const EICR: u32 = 0x1580;
/// Extended Interrupt Throttle, vector n at EITR + 4n.
pub const EITR: u32 = 0x1680;
/// EITR: interval in 1 µs units, bits 14:2.
pub const EITR_INTERVAL_MASK: u32 = 0x7ffc;
/// EITR: counter ignore.
pub const EITR_CNT_IGNR: u32 = 1 << 31;
/// Interrupt Vector Allocation, 8 registers (PF) / 1 (VF VTIVAR).
pub const IVAR0: u32 = 0x1700;
/// IVAR for "other" causes (PF: byte 1; VF VTIVAR_MISC: byte 0).
pub const IVAR_MISC: u32 = 0x1740;
/// IVAR entry valid bit.
pub const IVAR_VALID: u32 = 0x80;
/// IVAR entry vector field.
pub const IVAR_VECTOR_MASK: u32 = 0x1f;

// ---- receive ("Receive Register Descriptions") ----
/// Receive Control.
pub const RCTL: u32 = 0x0100;
/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL: long packet enable.
pub const RCTL_LPE: u32 = 1 << 5;
/// RCTL: buffer size bits 17:16 (00 2048, 01 1024, 10 512, 11 256).
pub const RCTL_BSIZE_SHIFT: u32 = 16;
/// RCTL: buffer size extension (×16).
pub const RCTL_BSEX: u32 = 1 << 25;
/// RX Checksum Control.
pub const RXCSUM: u32 = 0x5000;
/// RXCSUM: IP checksum offload.
pub const RXCSUM_IPOFL: u32 = 1 << 8;
/// RXCSUM: TCP/UDP checksum offload.
pub const RXCSUM_TUOFL: u32 = 1 << 9;
/// RX Long Packet Maximum Length.
pub const RLPML: u32 = 0x5004;
/// Receive Address Low/High, 16 pairs at RAL0 and 8 more at RAL16.
pub const RAL0: u32 = 0x5400;
pub const RAL16: u32 = 0x54e0;
/// RAH: address valid.
pub const RAH_AV: u32 = 1 << 31;
/// RAH: pool select bitmap, bits 25:18 (82576: one bit per pool).
pub const RAH_POOL_SHIFT: u32 = 18;
pub const RAH_POOL_MASK: u32 = 0xff << RAH_POOL_SHIFT;
/// Receive address entries on the 82576.
pub const RAR_ENTRIES: usize = 24;

/// Queue register blocks: queues 0–3 at 0x2800/0x3800 + 0x100·n, all 16 at
/// 0xC000/0xE000 + 0x40·n.
pub const RXQ_LOW_BASE: u32 = 0x2800;
pub const RXQ_HIGH_BASE: u32 = 0xc000;
pub const TXQ_LOW_BASE: u32 = 0x3800;
pub const TXQ_HIGH_BASE: u32 = 0xe000;
pub const QLOW_STRIDE: u32 = 0x100;
pub const QHIGH_STRIDE: u32 = 0x40;
/// Offsets inside a receive queue block.
pub const RDBAL: u32 = 0x00;
pub const RDBAH: u32 = 0x04;
pub const RDLEN: u32 = 0x08;
pub const SRRCTL: u32 = 0x0c;
pub const RDH: u32 = 0x10;
pub const RDT: u32 = 0x18;
pub const RXDCTL: u32 = 0x28;
/// Receive queue drop packet count (read-clear).
pub const RQDPC: u32 = 0x30;
/// Offsets inside a transmit queue block.
pub const TDBAL: u32 = 0x00;
pub const TDBAH: u32 = 0x04;
pub const TDLEN: u32 = 0x08;
pub const TDH: u32 = 0x10;
pub const TDT: u32 = 0x18;
pub const TXDCTL: u32 = 0x28;
pub const TDWBAL: u32 = 0x38;
pub const TDWBAH: u32 = 0x3c;
/// RXDCTL/TXDCTL: queue enable.
pub const QUEUE_ENABLE: u32 = 1 << 25;
/// TDWBAL: head write-back enable.
pub const TDWBAL_HEAD_WB_EN: u32 = 1 << 0;

/// SRRCTL: packet buffer size in 1 KiB units, bits 6:0 (0: use RCTL.BSIZE).
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7f;
/// SRRCTL: descriptor type, bits 27:25 (000 legacy, 001 advanced one buffer, others
/// header split).
pub const SRRCTL_DESCTYPE_SHIFT: u32 = 25;
pub const SRRCTL_DESCTYPE_MASK: u32 = 0x7 << SRRCTL_DESCTYPE_SHIFT;
pub const SRRCTL_DESCTYPE_LEGACY: u32 = 0;
/// SRRCTL: drop enable.
pub const SRRCTL_DROP_EN: u32 = 1 << 31;

// ---- transmit ("Transmit Register Descriptions") ----
/// Transmit Control.
pub const TCTL: u32 = 0x0400;
/// TCTL: transmitter enable.
pub const TCTL_EN: u32 = 1 << 1;
/// DMA Tx Switch Control.
pub const DTXSWC: u32 = 0x3500;
/// DTXSWC: VMDq loopback (VM-to-VM switching) enable.
pub const DTXSWC_LOOPBACK_EN: u32 = 1 << 31;

// ---- virtualization ("Virtualization Register Descriptions") ----
/// Virtual function mailbox memory, 16 dwords per VF (PF view: VMBMEM + 64·n; VF view:
/// its own at VMBMEM).
pub const VMBMEM: u32 = 0x0800;
pub const VMBMEM_WORDS: usize = 16;
/// PF-to-VF mailbox control, one per VF.
pub const P2VMAILBOX: u32 = 0x0c00;
/// Mailbox VF Interrupt Cause (W1C): VFREQ bits 7:0, VFACK bits 23:16.
pub const MBVFICR: u32 = 0x0c80;
/// Mailbox VF Interrupt Mask.
pub const MBVFIMR: u32 = 0x0c84;
/// VF Level Reset Events (W1C).
pub const VFLRE: u32 = 0x0c88;
/// VF Receive Enables.
pub const VFRE: u32 = 0x0c8c;
/// VF Transmit Enables.
pub const VFTE: u32 = 0x0c90;
pub const MBVFICR_VFREQ_SHIFT: u32 = 0;
pub const MBVFICR_VFACK_SHIFT: u32 = 16;

/// P2VMAILBOX: PF sends a message (STS).
pub const P2V_STS: u32 = 1 << 0;
/// P2VMAILBOX: PF acknowledges the VF's message.
pub const P2V_ACK: u32 = 1 << 1;
/// P2VMAILBOX: VF owns the buffer (read-only to the PF).
pub const P2V_VFU: u32 = 1 << 2;
/// P2VMAILBOX: PF owns the buffer.
pub const P2V_PFU: u32 = 1 << 3;
/// P2VMAILBOX: reset VFU (releases a stuck VF lock).
pub const P2V_RVFU: u32 = 1 << 4;

/// VF-to-PF mailbox (VF view).
pub const V2PMAILBOX: u32 = 0x0c40;
/// V2PMAILBOX: VF sends a message (REQ).
pub const V2P_REQ: u32 = 1 << 0;
/// V2PMAILBOX: VF acknowledges the PF's message.
pub const V2P_ACK: u32 = 1 << 1;
/// V2PMAILBOX: VF owns the buffer.
pub const V2P_VFU: u32 = 1 << 2;
/// V2PMAILBOX: PF owns the buffer (read-only).
pub const V2P_PFU: u32 = 1 << 3;
/// V2PMAILBOX: PF wrote a message (read-clear).
pub const V2P_PFSTS: u32 = 1 << 4;
/// V2PMAILBOX: PF acknowledged the VF's message (read-clear).
pub const V2P_PFACK: u32 = 1 << 5;
/// V2PMAILBOX: PF reset in progress (read-only).
pub const V2P_RSTI: u32 = 1 << 6;
/// V2PMAILBOX: PF reset done (read-clear).
pub const V2P_RSTD: u32 = 1 << 7;
/// The read-to-clear bits of V2PMAILBOX.
pub const V2P_R2C_BITS: u32 = V2P_PFSTS | V2P_PFACK | V2P_RSTD;

/// Mailbox message words (igb/igbvf protocol over VMBMEM).
pub const VT_MSGTYPE_ACK: u32 = 0x8000_0000;
pub const VT_MSGTYPE_NACK: u32 = 0x4000_0000;
pub const VT_MSGTYPE_CTS: u32 = 0x2000_0000;
pub const VF_RESET: u32 = 0x01;
pub const VF_SET_MAC_ADDR: u32 = 0x02;
pub const VF_SET_MULTICAST: u32 = 0x03;
pub const VF_SET_VLAN: u32 = 0x04;
pub const VF_SET_LPE: u32 = 0x05;
pub const VF_SET_PROMISC: u32 = 0x06;

// ---- statistics ("Statistics Register Descriptions"; PF ones are read-clear) ----
pub const STATS_START: u32 = 0x4000;
pub const STATS_END: u32 = 0x4140;
/// Missed packets (no descriptor).
pub const MPC: u32 = 0x4010;
pub const GPRC: u32 = 0x4074;
pub const BPRC: u32 = 0x4078;
pub const MPRC: u32 = 0x407c;
pub const GPTC: u32 = 0x4080;
pub const GORCL: u32 = 0x4088;
pub const GOTCL: u32 = 0x4090;
/// Receive no buffers count.
pub const RNBC: u32 = 0x40a0;
/// Receive oversize count.
pub const ROC: u32 = 0x40ac;
pub const TORL: u32 = 0x40c0;
pub const TOTL: u32 = 0x40c8;
pub const TPR: u32 = 0x40d0;
pub const TPT: u32 = 0x40d4;
pub const MPTC: u32 = 0x40f0;
pub const BPTC: u32 = 0x40f4;
/// VF statistics (VF view; not cleared on read, wrap at 32 bits).
pub const VFGPRC: u32 = 0x0f10;
pub const VFGPTC: u32 = 0x0f14;
pub const VFGORC: u32 = 0x0f18;
pub const VFGOTC: u32 = 0x0f34;
pub const VFMPRC: u32 = 0x0f3c;
pub const VFGPRLBC: u32 = 0x0f40;
pub const VFGPTLBC: u32 = 0x0f44;
pub const VFGORLBC: u32 = 0x0f48;
pub const VFGOTLBC: u32 = 0x0f50;

// ---- descriptors ("Receive/Transmit Descriptor" sections of the datasheet) ----
pub const DESC_SIZE: u64 = 16;
/// RX write-back status: descriptor done.
pub const RXD_STAT_DD: u32 = 1 << 0;
/// RX write-back status: end of packet.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// RX: 802.1Q packet, tag stripped into the descriptor.
pub const RXD_STAT_VP: u32 = 1 << 3;
/// RX: UDP checksum calculated.
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// RX: TCP checksum calculated.
pub const RXD_STAT_TCPCS: u32 = 1 << 5;
/// RX: IP checksum calculated.
pub const RXD_STAT_IPCS: u32 = 1 << 6;
/// RX advanced error: TCP/UDP checksum error.
pub const RXDEXT_STATERR_TCPE: u32 = 1 << 29;
/// RX advanced error: IP checksum error.
pub const RXDEXT_STATERR_IPE: u32 = 1 << 30;
/// RX legacy error byte: TCP/UDP checksum error, IP checksum error.
pub const RXD_ERR_TCPE: u8 = 1 << 5;
pub const RXD_ERR_IPE: u8 = 1 << 6;
/// RX advanced hdr_info: header length (bits 14:5) and split-header flag (bit 15).
pub const RXDADV_HDRBUFLEN_MASK: u32 = 0x7fe0;
pub const RXDADV_HDRBUFLEN_SHIFT: u32 = 5;
pub const RXDADV_SPH: u32 = 0x8000;
/// RX advanced packet type (dword 0 bits 16:4): IPv4, TCP, UDP.
pub const RXDADV_PKTTYPE_IPV4: u32 = 1 << 4;
pub const RXDADV_PKTTYPE_TCP: u32 = 1 << 8;
pub const RXDADV_PKTTYPE_UDP: u32 = 1 << 9;

/// TX command bits (legacy byte 3 / advanced DCMD 31:24).
pub const TXD_CMD_EOP: u32 = 1 << 24;
pub const TXD_CMD_IFCS: u32 = 1 << 25;
pub const TXD_CMD_RS: u32 = 1 << 27;
pub const TXD_CMD_DEXT: u32 = 1 << 29;
pub const TXD_CMD_VLE: u32 = 1 << 30;
pub const TXD_CMD_TSE: u32 = 1 << 31;
/// Advanced TX descriptor type, bits 23:20.
pub const ADVTXD_DTYP_MASK: u32 = 0xf << 20;
pub const ADVTXD_DTYP_CTXT: u32 = 0x2 << 20;
pub const ADVTXD_DTYP_DATA: u32 = 0x3 << 20;
/// Advanced data descriptor length (DTALEN), bits 15:0.
pub const ADVTXD_LEN_MASK: u32 = 0xffff;
/// TX write-back status: descriptor done.
pub const TXD_STAT_DD: u32 = 1 << 0;
/// Advanced olinfo: context index bits 6:4, POPTS IXSM bit 8, TXSM bit 9.
pub const ADVTXD_IDX_SHIFT: u32 = 4;
pub const ADVTXD_POPTS_IXSM: u32 = 1 << 8;
pub const ADVTXD_POPTS_TXSM: u32 = 1 << 9;
/// Advanced context: IPLEN 8:0, MACLEN 15:9 (vlan_macip_lens); TUCMD IPV4 bit 10, L4T
/// bits 12:11 (type_tucmd_mlhl).
pub const ADVTXD_MACLEN_SHIFT: u32 = 9;
pub const ADVTXD_TUCMD_IPV4: u32 = 1 << 10;
pub const ADVTXD_TUCMD_L4T_SHIFT: u32 = 11;

/// Largest frame the model transmits (MAX_JUMBO_FRAME_SIZE in the drivers).
pub const MAX_FRAME: usize = 0x3f00;
/// Smallest frame handed to the switch (destination + source MAC + ethertype).
pub const MIN_FRAME: usize = 14;
/// Standard maximum frame without long packet enable (1518 + VLAN tag).
pub const MAX_STD_FRAME: usize = 1522;

/// PCI identity.
pub const INTEL_VENDOR_ID: u16 = 0x8086;
pub const E82576_DEVICE_ID: u16 = 0x10c9;
pub const E82576_VF_DEVICE_ID: u16 = 0x10ca;
pub const E82576_REVISION: u8 = 0x01;
pub const E82576_SUBSYS_ID: u16 = 0xa01c;
/// Class: network controller, Ethernet.
pub const CLASS_ETHERNET: u32 = 0x02_00_00;

/// Per-pool VM offload register (PF view), pool n at VMOLR + 4n.
pub const VMOLR: u32 = 0x5ad0;
/// VMOLR: long packet maximum length, bits 13:0.
pub const VMOLR_RLPML_MASK: u32 = 0x3fff;
/// VMOLR: accept long packets.
pub const VMOLR_LPE: u32 = 1 << 16;
/// VMOLR: accept broadcast.
pub const VMOLR_BAM: u32 = 1 << 27;
/// VMOLR: strip VLAN tags.
pub const VMOLR_STRVLAN: u32 = 1 << 30;
