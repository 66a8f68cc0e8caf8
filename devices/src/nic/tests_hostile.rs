//! Hostile input: rings and buffers outside guest memory, tails beyond the ring,
//! zero-length and oversized buffers, overlapping BARs, odd accesses, and random
//! register/config traffic. The model must never panic and never touch memory outside
//! what the DMA translator grants.

use std::sync::Arc;

use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::dma::{DmaTranslator, GuestDma};
use crate::interrupt::RecordingSink;
use crate::pci::sriov::SRIOV_BAR;
use crate::pci::PciBus;
use crate::sim::{frame, Rig, DEV, ECAM, MEM_SIZE, WINDOW};
use crate::time::ManualClock;

fn two_vfs() -> (Rig, [u8; 6], [u8; 6]) {
    let mut r = Rig::with_vfs(2);
    let a = r.igbvf_init(0);
    let b = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    (r, a, b)
}

#[test]
fn rx_ring_outside_guest_memory_aborts_and_counts() {
    let (mut r, a, b) = two_vfs();
    let vf1 = Function::Vf(1);
    r.wr(vf1, RXQ_LOW_BASE + RDBAL, 0x8000_0000, 0);
    r.wr(vf1, RXQ_LOW_BASE + RDBAH, 0x10, 0);
    let before = r.mem.aborted();
    r.send(Function::Vf(0), 0x10_0000, &frame(b, a, 64), 0);
    assert_eq!(r.mem.aborted(), before + 1);
    assert_eq!(r.nic().counters.dma_aborted, 1);
    assert_eq!(r.rd(vf1, RXQ_LOW_BASE + RDH), 0);
    // A ring straddling the end of memory: the descriptors inside work, the next abort.
    r.wr(vf1, RXQ_LOW_BASE + RDBAH, 0, 0);
    let base = MEM_SIZE as u64 - 0x80;
    for i in 0..8u64 {
        let d = (0x30_0000 + i * 2048).to_le_bytes();
        let _ = r.mem.memory().write_slice(&d, GuestAddress(base + 16 * i));
    }
    r.wr(vf1, RXQ_LOW_BASE + RDBAL, base as u32, 0);
    r.wr(vf1, RXQ_LOW_BASE + RDLEN, 0x100, 0);
    r.wr(vf1, RXQ_LOW_BASE + RDT, 15, 0);
    for _ in 0..10 {
        r.send(Function::Vf(0), 0x10_0000, &frame(b, a, 64), 0);
    }
    assert_eq!(r.rd(vf1, RXQ_LOW_BASE + RDH), 8);
    assert!(r.nic().counters.dma_aborted >= 2);
}

#[test]
fn tx_ring_and_buffers_outside_guest_memory() {
    let (mut r, _a, _b) = two_vfs();
    let vf0 = Function::Vf(0);
    r.wr(vf0, TXQ_LOW_BASE + TDBAL, 0xffff_ff80, 0);
    r.wr(vf0, TXQ_LOW_BASE + TDBAH, 0xffff_ffff, 0);
    r.wr(vf0, TXQ_LOW_BASE + TDT, 3, 0);
    assert_eq!(r.rd(vf0, TXQ_LOW_BASE + TDH), 0, "the queue stalls");
    assert!(r.nic().counters.dma_aborted >= 1);
    // Valid ring, buffer address outside memory: the frame is dropped, DD written.
    r.wr(vf0, TXQ_LOW_BASE + TDBAL, 0x10_1000, 0);
    r.wr(vf0, TXQ_LOW_BASE + TDBAH, 0, 0);
    r.wr(vf0, TXQ_LOW_BASE + TDH, 0, 0);
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&0x7fff_ffff_0000u64.to_le_bytes());
    let cmd = 64 | ADVTXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_EOP | TXD_CMD_RS;
    d[8..12].copy_from_slice(&cmd.to_le_bytes());
    r.mem
        .memory()
        .write_slice(&d, GuestAddress(0x10_1000))
        .unwrap();
    let before = r.nic().counters.tx_dropped;
    r.wr(vf0, TXQ_LOW_BASE + TDT, 1, 0);
    assert_eq!(r.nic().counters.tx_dropped, before + 1);
    assert_eq!(r.read_mem(0x10_100c, 1)[0] & 1, 1);
}

#[test]
fn tail_beyond_ring_stalls_the_queue() {
    let (mut r, a, b) = two_vfs();
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 100, 0);
    assert_eq!(r.rd(Function::Vf(0), TXQ_LOW_BASE + TDH), 0);
    assert_eq!(r.nic().counters.bad_ring, 1);
    r.wr(Function::Vf(0), TXQ_LOW_BASE + TDT, 0, 0);
    r.wr(Function::Vf(1), RXQ_LOW_BASE + RDT, 50, 0);
    r.send(Function::Vf(0), 0x10_0000, &frame(b, a, 64), 0);
    assert_eq!(r.nic().counters.rx_no_descriptors, 1);
    assert_eq!(r.nic().counters.bad_ring, 2);
    assert_eq!(r.rd(Function::Vf(1), VFGPRC), 0);
}

#[test]
fn no_descriptors_drops_and_counts() {
    let (mut r, a, b) = two_vfs();
    r.wr(Function::Vf(1), RXQ_LOW_BASE + RDT, 0, 0);
    r.send(Function::Vf(0), 0x10_0000, &frame(b, a, 64), 0);
    assert_eq!(r.nic().counters.rx_no_descriptors, 1);
    assert_eq!(r.rd(Function::Pf, MPC), 1);
    assert_eq!(r.rd(Function::Pf, RXQ_HIGH_BASE + QHIGH_STRIDE + RQDPC), 1);
    assert_eq!(r.rd(Function::Pf, RXQ_HIGH_BASE + QHIGH_STRIDE + RQDPC), 0);
}

fn put_tx(r: &mut Rig, ring: u64, i: u64, buf: u64, len: u32, eop: bool) {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&buf.to_le_bytes());
    let mut cmd = len | ADVTXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_RS;
    if eop {
        cmd |= TXD_CMD_EOP;
    }
    d[8..12].copy_from_slice(&cmd.to_le_bytes());
    r.mem
        .memory()
        .write_slice(&d, GuestAddress(ring + 16 * i))
        .unwrap();
}

#[test]
fn zero_length_and_oversized_buffers() {
    let (mut r, a, b) = two_vfs();
    let ring = 0x10_1000;
    let vf0 = Function::Vf(0);
    // Zero-length EOP alone: a runt, dropped.
    put_tx(&mut r, ring, 0, 0x40_0000, 0, true);
    r.wr(vf0, TXQ_LOW_BASE + TDT, 1, 0);
    assert_eq!(r.nic().counters.tx_dropped, 1);
    // Zero-length middle descriptor: skipped, the frame is intact.
    let f = frame(b, a, 100);
    r.mem
        .memory()
        .write_slice(&f, GuestAddress(0x40_0000))
        .unwrap();
    put_tx(&mut r, ring, 1, 0x40_0000, 50, false);
    put_tx(&mut r, ring, 2, 0x50_0000, 0, false);
    put_tx(&mut r, ring, 3, 0x40_0000 + 50, 50, true);
    r.wr(vf0, TXQ_LOW_BASE + TDT, 4, 0);
    assert_eq!(r.read_mem(0x21_0000, 100), f);
    // Three 8000-byte buffers in one frame exceed the maximum frame: dropped.
    for i in 0..3 {
        put_tx(&mut r, ring, 4 + i, 0x40_0000, 8000, i == 2);
    }
    r.wr(vf0, TXQ_LOW_BASE + TDT, 7, 0);
    assert_eq!(r.nic().counters.tx_dropped, 2);
    // A 5000-byte frame fits the VF (the agent enabled long packets) and spans three
    // 2 KiB receive buffers, EOP only on the last.
    let big = frame(b, a, 5000);
    r.mem
        .memory()
        .write_slice(&big, GuestAddress(0x40_0000))
        .unwrap();
    put_tx(&mut r, ring, 7, 0x40_0000, 5000, true);
    r.wr(vf0, TXQ_LOW_BASE + TDT, 0, 0);
    let rx = r.read_mem(0x21_0000 + 2048, 5000);
    assert_eq!(rx, big);
    for (i, eop) in [(1u64, false), (2, false), (3, true)] {
        let wb = r.read_mem(0x20_0000 + 16 * i, 16);
        assert_eq!(wb[8] & 3, if eop { 3 } else { 1 }, "descriptor {i}");
    }
    // Without long packet enable the same frame is oversize for the VF.
    r.wr(Function::Pf, VMOLR + 4, 0, 0);
    put_tx(&mut r, ring, 0, 0x40_0000, 5000, true);
    r.wr(vf0, TXQ_LOW_BASE + TDT, 1, 0);
    assert_eq!(r.nic().counters.rx_oversize, 1);
}

#[test]
fn overlapping_bars_decode_deterministically() {
    let (mut r, _a, _b) = two_vfs();
    let pf = r.nic().pf_rid();
    let vf_bar0 = r.nic().bar_address(Function::Vf(0), REG_BAR).unwrap();
    // VF BAR3 on top of VF BAR0: register accesses win, nothing panics.
    r.cfg_write(pf, SRIOV_CAP + SRIOV_BAR + 12, 4, vf_bar0 as u32);
    r.cfg_write(pf, SRIOV_CAP + SRIOV_BAR + 16, 4, (vf_bar0 >> 32) as u32);
    let mut d = [0u8; 4];
    assert!(r.bus.mmio_read_at(vf_bar0 + STATUS as u64, &mut d, 0));
    assert_eq!(u32::from_le_bytes(d) & STATUS_LU, STATUS_LU);
    // The PF's BAR0 on top of the VFs: the PF wins.
    r.cfg_write(pf, 0x10, 4, vf_bar0 as u32);
    r.cfg_write(pf, 0x14, 4, (vf_bar0 >> 32) as u32);
    assert!(r.bus.mmio_read_at(vf_bar0 + EERD as u64, &mut d, 0));
    // VF BAR at the top of the address space: no overflow.
    r.cfg_write(pf, SRIOV_CAP + SRIOV_BAR, 4, 0xffff_c000);
    r.cfg_write(pf, SRIOV_CAP + SRIOV_BAR + 4, 4, 0xffff_ffff);
    assert!(r.bus.mmio_read_at(u64::MAX - 3, &mut d, 0));
    // Only VF 0 fits below the top; VF 1 would wrap and does not decode.
    assert!(!r.bus.mmio_read_at(0x10, &mut d, 0));
}

#[test]
fn odd_register_accesses_are_ignored_or_sliced() {
    let (mut r, _a, _b) = two_vfs();
    let a = r.addr(Function::Vf(0), REG_BAR, STATUS);
    let mut b1 = [0u8; 1];
    r.bus.mmio_read_at(a, &mut b1, 0);
    assert_eq!(b1[0] as u32 & STATUS_LU, STATUS_LU);
    let e = r.addr(Function::Vf(0), REG_BAR, EIAC);
    r.bus.mmio_write_at(e, &[0xff, 0xff], 0);
    r.bus.mmio_write_at(e + 1, &[0xff; 4], 0);
    r.bus.mmio_write_at(e, &[0xff; 3], 0);
    assert_eq!(r.rd(Function::Vf(0), EIAC), 0x7);
    assert_eq!(r.nic().counters.ignored_accesses, 3);
    // MSI-X: byte accesses and nonexistent entries are ignored.
    let t = r.addr(Function::Vf(0), MSIX_BAR, 0);
    r.bus.mmio_write_at(t + 8, &[0xff], 0);
    r.bus.mmio_write_at(t + 0x1ff0, &[0xff; 4], 0);
    r.bus.mmio_write_at(t + 0x2000, &[0xff; 4], 0);
    let mut d = [0u8; 4];
    r.bus.mmio_read_at(t + 8, &mut d, 0);
    assert_eq!(u32::from_le_bytes(d), 0x40);
}

#[test]
fn mailbox_misuse_is_counted_and_harmless() {
    let mut r = Rig::with_vfs(1);
    let vf = Function::Vf(0);
    // Writing the buffer without the lock, acking nothing, requesting with garbage.
    r.wr(vf, VMBMEM, 0xdead_beef, 0);
    assert_eq!(r.nic().mailbox_misuse(), 1);
    r.wr(vf, V2PMAILBOX, 0xffff_ffff, 0);
    r.wr(vf, V2PMAILBOX, V2P_ACK, 0);
    // PF-side writes to mailboxes of absent VFs.
    r.wr(Function::Pf, P2VMAILBOX + 4 * 7, 0xffff_ffff, 0);
    r.wr(Function::Pf, VMBMEM + 64 * 7, 1, 0);
    // The VF can still complete a proper handshake afterwards.
    let mac = r.igbvf_init(0);
    assert_eq!(mac, r.nic().vf_mac(0));
}

/// Grants DMA only below 8 MiB; the upper half of guest memory is a canary.
struct LowerHalf;
impl DmaTranslator for LowerHalf {
    fn translate(&self, _rid: u16, iova: u64, _write: bool) -> Option<u64> {
        (iova < (MEM_SIZE / 2) as u64).then_some(iova)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Cfg {
        rid: u8,
        off: u16,
        len: u8,
        val: u32,
    },
    Reg {
        func: u8,
        off: u32,
        val: u32,
    },
    RegRead {
        func: u8,
        off: u32,
    },
    Msix {
        func: u8,
        off: u32,
        val: u32,
    },
    Tail {
        func: u8,
        q: u8,
        val: u32,
    },
    Ring {
        func: u8,
        q: u8,
        base: u32,
        len: u32,
    },
    Time(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            any::<u8>(),
            0u16..0x1000,
            prop::sample::select(vec![1u8, 2, 4]),
            any::<u32>()
        )
            .prop_map(|(rid, off, len, val)| Op::Cfg { rid, off, len, val }),
        (0u8..4, reg_offset(), any::<u32>()).prop_map(|(func, off, val)| Op::Reg {
            func,
            off: off & !3,
            val
        }),
        (0u8..4, 0u32..0x20000).prop_map(|(func, off)| Op::RegRead {
            func,
            off: off & !3
        }),
        (0u8..4, 0u32..0x4000, any::<u32>()).prop_map(|(func, off, val)| Op::Msix {
            func,
            off: off & !3,
            val
        }),
        (0u8..4, 0u8..2, 0u32..20).prop_map(|(func, q, val)| Op::Tail { func, q, val }),
        (0u8..4, 0u8..2, 0u32..0x10_0000, 0u32..0x8000)
            .prop_map(|(func, q, base, len)| { Op::Ring { func, q, base, len } }),
        any::<u32>().prop_map(Op::Time),
    ]
}

/// Register offsets: anywhere, or one the data path and interrupt logic react to.
fn reg_offset() -> impl Strategy<Value = u32> {
    let mut hot = vec![
        CTRL,
        CTRL_EXT,
        RCTL,
        TCTL,
        GPIE,
        EICS,
        EIMS,
        EIMC,
        EIAC,
        EIAM,
        EICR,
        ICS,
        IMS,
        IVAR0,
        IVAR0 + 4,
        IVAR_MISC,
        EITR,
        EITR + 4,
        V2PMAILBOX,
        P2VMAILBOX,
        P2VMAILBOX + 4,
        VMBMEM,
        VMBMEM + 64,
        MBVFIMR,
        VFRE,
        VFTE,
        DTXSWC,
        RAL0,
        RAL0 + 4,
        VMOLR,
        RXCSUM,
    ];
    for q in 0..4 {
        for o in [RDBAL, RDBAH, RDLEN, SRRCTL, RDH, RDT, RXDCTL] {
            hot.push(RXQ_LOW_BASE + QLOW_STRIDE * q + o);
        }
        for o in [TDBAL, TDBAH, TDLEN, TDH, TDT, TXDCTL, TDWBAL] {
            hot.push(TXQ_LOW_BASE + QLOW_STRIDE * q + o);
        }
    }
    prop_oneof![0u32..0x20000, prop::sample::select(hot)]
}

fn func(nic: &Nic82576, f: u8) -> Function {
    if f == 0 || nic.active_vfs() == 0 {
        Function::Pf
    } else {
        Function::Vf((f as u16 - 1) % nic.active_vfs())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_register_and_config_traffic(ops in prop::collection::vec(op(), 1..200)) {
        let mem = Arc::new(GuestDma::new(
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()),
            LowerHalf,
        ));
        let canary = vec![0xa5u8; MEM_SIZE / 2];
        mem.memory().write_slice(&canary, GuestAddress((MEM_SIZE / 2) as u64)).unwrap();
        // Rings pointing into the canary and buffers everywhere.
        for i in 0..0x1000u64 {
            let v = (i * 0x1234_5678_9abc) % (MEM_SIZE as u64);
            mem.memory().write_slice(&v.to_le_bytes(), GuestAddress(i * 8)).unwrap();
        }
        let sink = RecordingSink::new();
        let nic = Nic82576::new(NicConfig::new(DEV, [2, 0, 0, 0, 0, 1]), mem.clone(), sink).unwrap();
        let mut bus = PciBus::new(Arc::new(ManualClock::default()), ECAM, WINDOW);
        let h = bus.add_device(Box::new(nic));
        bus.assign_bars();
        let n: &mut Nic82576 = bus.device_mut(h).unwrap();
        n.host_enable_vfs(3, 0).unwrap();
        let pf = n.pf_rid();
        let mut now = 0u64;
        bus.config_write(pf, PCI_COMMAND, &6u16.to_le_bytes(), now);
        for o in ops {
            let nic: &Nic82576 = bus.device(h).unwrap();
            match o {
                Op::Cfg { rid, off, len, val } => {
                    // Mostly the NIC's functions, sometimes anywhere.
                    let rid = if rid < 200 { pf + (rid as u16 % 0x90) } else { rid as u16 };
                    bus.config_write(rid, off, &val.to_le_bytes()[..len as usize], now);
                }
                Op::Reg { func: f, off, val } => {
                    if let Some(a) = nic.bar_address(func(nic, f), REG_BAR) {
                        bus.mmio_write_at(a + off as u64, &val.to_le_bytes(), now);
                    }
                }
                Op::RegRead { func: f, off } => {
                    if let Some(a) = nic.bar_address(func(nic, f), REG_BAR) {
                        let mut d = [0u8; 4];
                        bus.mmio_read_at(a + off as u64, &mut d, now);
                    }
                }
                Op::Msix { func: f, off, val } => {
                    if let Some(a) = nic.bar_address(func(nic, f), MSIX_BAR) {
                        bus.mmio_write_at(a + off as u64, &val.to_le_bytes(), now);
                    }
                }
                Op::Tail { func: f, q, val } => {
                    let fu = func(nic, f);
                    let off = match fu {
                        Function::Pf => TXQ_HIGH_BASE + QHIGH_STRIDE * (nic.active_vfs() as u32 + 8 * q as u32),
                        Function::Vf(_) => TXQ_LOW_BASE + QLOW_STRIDE * q as u32,
                    };
                    if let Some(a) = nic.bar_address(fu, REG_BAR) {
                        bus.mmio_write_at(a + (off + TDT) as u64, &val.to_le_bytes(), now);
                    }
                }
                Op::Ring { func: f, q, base, len } => {
                    // A plausible ring (rx and tx) with queue enable, so frames flow.
                    let fu = func(nic, f);
                    let (rx, tx) = match fu {
                        Function::Pf => {
                            let pq = nic.active_vfs() as u32 + 8 * q as u32;
                            (RXQ_HIGH_BASE + QHIGH_STRIDE * pq, TXQ_HIGH_BASE + QHIGH_STRIDE * pq)
                        }
                        Function::Vf(_) => (RXQ_LOW_BASE + QLOW_STRIDE * q as u32, TXQ_LOW_BASE + QLOW_STRIDE * q as u32),
                    };
                    if let Some(a) = nic.bar_address(fu, REG_BAR) {
                        for (blk, b) in [(rx, base), (tx, base + 0x8000)] {
                            for (o, v) in [(RDBAL, b), (RDLEN, len), (RXDCTL, QUEUE_ENABLE), (RDT, len / 32)] {
                                bus.mmio_write_at(a + (blk + o) as u64, &v.to_le_bytes(), now);
                            }
                        }
                    }
                }
                Op::Time(dt) => {
                    now += dt as u64;
                    bus.poll(now);
                }
            }
        }
        // Read-only identity survived, the canary is intact, the bus still answers.
        let nic: &Nic82576 = bus.device(h).unwrap();
        let pf = nic.pf_rid();
        prop_assert_eq!(bus.config_read(pf, 0, 4, now), 0x10c9_8086);
        prop_assert_eq!(bus.config_read(0, 0, 4, now), 0x29c0_8086);
        let mut upper = vec![0u8; MEM_SIZE / 2];
        mem.memory().read_slice(&mut upper, GuestAddress((MEM_SIZE / 2) as u64)).unwrap();
        prop_assert!(upper == canary, "DMA outside the granted range");
    }
}
