//! Fuzzes the PCI bus with the 82576 NIC (PF + 3 VFs) with guest traffic: configuration
//! writes (ECAM and mechanism #1), register and MSI-X writes and reads, ring setup, tail
//! bumps and time. Invariants: no panic, the PF's identity stays read-only, and no DMA
//! lands outside what the translator grants (the upper half of guest memory is a canary
//! the translator refuses).

#![no_main]

use std::sync::Arc;

use devices::dma::{DmaTranslator, GuestDma};
use devices::interrupt::CountingSink;
use devices::nic::regs::*;
use devices::nic::{Function, Nic82576, NicConfig, MSIX_BAR, REG_BAR};
use devices::pci::PciBus;
use devices::time::ManualClock;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 2 << 20;

struct LowerHalf;
impl DmaTranslator for LowerHalf {
    fn translate(&self, _rid: u16, iova: u64, _write: bool) -> Option<u64> {
        (iova < (MEM / 2) as u64).then_some(iova)
    }
}

struct Input<'a>(&'a [u8]);
impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
}

const HOT: &[u32] = &[
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
    ICR,
    ICS,
    IMS,
    IVAR0,
    IVAR_MISC,
    EITR,
    EITR + 4,
    V2PMAILBOX,
    P2VMAILBOX,
    VMBMEM,
    MBVFICR,
    MBVFIMR,
    VFLRE,
    VFRE,
    VFTE,
    DTXSWC,
    RAL0,
    RAL0 + 4,
    VMOLR,
    EERD,
    MDIC,
];

fuzz_target!(|data: &[u8]| {
    let mem = Arc::new(GuestDma::new(
        Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap()),
        LowerHalf,
    ));
    let canary = vec![0x5au8; MEM / 2];
    mem.memory()
        .write_slice(&canary, GuestAddress((MEM / 2) as u64))
        .unwrap();
    let nic = Nic82576::new(
        NicConfig::new(1, [2, 0, 0, 0, 0, 1]),
        mem.clone(),
        Arc::new(CountingSink::default()),
    )
    .unwrap();
    let mut bus = PciBus::new(
        Arc::new(ManualClock::default()),
        0xe000_0000,
        (0xc000_0000, 0x1000_0000),
    );
    let h = bus.add_device(Box::new(nic));
    bus.assign_bars();
    let nic: &mut Nic82576 = bus.device_mut(h).unwrap();
    nic.host_enable_vfs(3, 0).unwrap();
    let pf = nic.pf_rid();
    bus.config_write(pf, 4, &6u16.to_le_bytes(), 0);
    for n in 0..3u16 {
        bus.config_write(pf + 0x80 + 2 * n, 4, &4u16.to_le_bytes(), 0);
    }
    let mut now = 0u64;
    let mut inp = Input(data);
    while let Some(kind) = inp.u8() {
        let nic: &Nic82576 = bus.device(h).unwrap();
        let f = match kind >> 5 {
            0 => Function::Pf,
            k => Function::Vf((k as u16 - 1) % nic.active_vfs().max(1)),
        };
        let f = if nic.active_vfs() == 0 {
            Function::Pf
        } else {
            f
        };
        match kind & 0x7 {
            0 => {
                let Some(rid) = inp.u8() else { break };
                let Some(off) = inp.u16() else { break };
                let Some(v) = inp.u32() else { break };
                let len = 1 << (kind >> 3 & 3).min(2);
                bus.config_write(
                    pf.wrapping_add(rid as u16),
                    off & 0xfff,
                    &v.to_le_bytes()[..len],
                    now,
                );
            }
            1 => {
                let Some(sel) = inp.u16() else { break };
                let Some(v) = inp.u32() else { break };
                let off = if sel & 0x8000 != 0 {
                    HOT[sel as usize % HOT.len()]
                } else {
                    (sel as u32 * 4) & 0x1fffc
                };
                if let Some(a) = nic.bar_address(f, REG_BAR) {
                    bus.mmio_write_at(a.wrapping_add(off as u64), &v.to_le_bytes(), now);
                }
            }
            2 => {
                let Some(off) = inp.u16() else { break };
                if let Some(a) = nic.bar_address(f, REG_BAR) {
                    let mut d = [0u8; 4];
                    bus.mmio_read_at(a.wrapping_add(off as u64 * 4), &mut d, now);
                }
            }
            3 => {
                let Some(off) = inp.u16() else { break };
                let Some(v) = inp.u32() else { break };
                if let Some(a) = nic.bar_address(f, MSIX_BAR) {
                    bus.mmio_write_at(a.wrapping_add((off & 0x3ffc) as u64), &v.to_le_bytes(), now);
                }
            }
            4 => {
                // A ring: base, length, enable, tail on rx and tx of local queue q.
                let Some(base) = inp.u32() else { break };
                let Some(len) = inp.u16() else { break };
                let q = (kind >> 3 & 1) as u32;
                let (rx, tx) = match f {
                    Function::Pf => {
                        let pq = nic.active_vfs() as u32 + 8 * q;
                        (0xc000 + 0x40 * pq, 0xe000 + 0x40 * pq)
                    }
                    Function::Vf(_) => (0x2800 + 0x100 * q, 0x3800 + 0x100 * q),
                };
                if let Some(a) = nic.bar_address(f, REG_BAR) {
                    for (blk, b) in [(rx, base), (tx, base.wrapping_add(0x4000))] {
                        for (o, v) in [
                            (0u32, b),
                            (8, len as u32),
                            (0x28, 1 << 25),
                            (0x18, len as u32 / 48),
                        ] {
                            bus.mmio_write_at(a + (blk + o) as u64, &v.to_le_bytes(), now);
                        }
                    }
                }
            }
            5 => {
                let Some(dt) = inp.u32() else { break };
                now += dt as u64;
                bus.poll(now);
            }
            6 => {
                let Some(port) = inp.u8() else { break };
                let Some(v) = inp.u32() else { break };
                let p = 0xcf8 + (port as u16 & 7);
                let len = if p == 0xcf8 {
                    4
                } else {
                    1 << (kind >> 3 & 3).min(2)
                };
                bus.pio_write_at(p, &v.to_le_bytes()[..len], now);
            }
            _ => {
                let Some(addr) = inp.u32() else { break };
                let Some(v) = inp.u32() else { break };
                // Anywhere in guest memory: descriptors and buffers.
                let _ = mem.memory().write_slice(
                    &v.to_le_bytes(),
                    GuestAddress((addr as u64) % (MEM as u64 / 2 - 4)),
                );
            }
        }
    }
    let nic: &Nic82576 = bus.device(h).unwrap();
    let pf = nic.pf_rid();
    assert_eq!(bus.config_read(pf, 0, 4, now), 0x10c9_8086);
    let mut upper = vec![0u8; MEM / 2];
    mem.memory()
        .read_slice(&mut upper, GuestAddress((MEM / 2) as u64))
        .unwrap();
    assert!(upper == canary, "DMA outside the granted range");
});
