//! A driver-side simulator for tests, fuzzing and benchmarks: a PCI bus with the NIC
//! over 16 MiB of guest memory, and helpers that do what igb/igbvf do (mailbox
//! handshake, interrupt setup, rings). The helpers assert on protocol failures; they
//! are a test driver, not part of the device model.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::dma::{GuestDma, IdentityTranslator};
use crate::interrupt::RecordingSink;
use crate::nic::regs::*;
use crate::nic::*;
use crate::pci::config::*;
use crate::pci::msix::MSIX_CONTROL_ENABLE;
use crate::pci::PciBus;
use crate::time::ManualClock;

pub const MEM_SIZE: usize = 16 << 20;
pub const ECAM: u64 = 0xe000_0000;
pub const WINDOW: (u64, u64) = (0xc000_0000, 0x1000_0000);
pub const DEV: u8 = 1;

pub struct Rig {
    pub bus: PciBus,
    pub h: usize,
    pub sink: Arc<RecordingSink>,
    pub mem: Arc<GuestDma<Arc<GuestMemoryMmap>, IdentityTranslator>>,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    pub fn new() -> Self {
        let mem = Arc::new(GuestDma::new(
            Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()),
            IdentityTranslator,
        ));
        let sink = RecordingSink::new();
        let nic = Nic82576::new(
            NicConfig::new(DEV, [0x52, 0x54, 0, 0x12, 0x34, 0x50]),
            mem.clone(),
            sink.clone(),
        )
        .unwrap();
        let mut bus = PciBus::new(Arc::new(ManualClock::default()), ECAM, WINDOW);
        let h = bus.add_device(Box::new(nic));
        assert!(bus.assign_bars());
        let mut r = Self { bus, h, sink, mem };
        let pf = r.nic().pf_rid();
        r.cfg_write(
            pf,
            PCI_COMMAND,
            2,
            (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) as u32,
        );
        r
    }

    /// A rig with `n` VFs enabled by the host (PF agent on), bus mastering on in each.
    pub fn with_vfs(n: u16) -> Self {
        let mut r = Self::new();
        r.nic_mut().host_enable_vfs(n, 0).unwrap();
        for i in 0..n {
            let rid = r.nic().rid(Function::Vf(i));
            r.cfg_write(rid, PCI_COMMAND, 2, PCI_COMMAND_MASTER as u32);
        }
        r
    }

    pub fn nic(&self) -> &Nic82576 {
        self.bus.device(self.h).unwrap()
    }

    pub fn nic_mut(&mut self) -> &mut Nic82576 {
        self.bus.device_mut(self.h).unwrap()
    }

    pub fn ecam(rid: u16, off: u16) -> u64 {
        ECAM + ((rid as u64) << 12) + off as u64
    }

    pub fn cfg_read(&mut self, rid: u16, off: u16, len: usize) -> u32 {
        let mut d = vec![0u8; len];
        self.bus.mmio_read_at(Self::ecam(rid, off), &mut d, 0);
        let mut b = [0u8; 4];
        b[..len].copy_from_slice(&d);
        u32::from_le_bytes(b)
    }

    pub fn cfg_write(&mut self, rid: u16, off: u16, len: usize, v: u32) {
        self.bus
            .mmio_write_at(Self::ecam(rid, off), &v.to_le_bytes()[..len], 0);
    }

    pub fn addr(&self, f: Function, bar: usize, off: u32) -> u64 {
        self.nic().bar_address(f, bar).unwrap() + off as u64
    }

    pub fn wr(&mut self, f: Function, off: u32, v: u32, now: u64) {
        let a = self.addr(f, REG_BAR, off);
        assert!(self.bus.mmio_write_at(a, &v.to_le_bytes(), now));
    }

    pub fn rd(&mut self, f: Function, off: u32) -> u32 {
        let a = self.addr(f, REG_BAR, off);
        let mut d = [0u8; 4];
        assert!(self.bus.mmio_read_at(a, &mut d, 0));
        u32::from_le_bytes(d)
    }

    pub fn msix_entry(&mut self, f: Function, v: u32, data: u32) {
        let a = self.addr(f, MSIX_BAR, 16 * v);
        self.bus.mmio_write_at(a, &0xfee0_0000u32.to_le_bytes(), 0);
        self.bus.mmio_write_at(a + 4, &0u32.to_le_bytes(), 0);
        self.bus.mmio_write_at(a + 8, &data.to_le_bytes(), 0);
        self.bus.mmio_write_at(a + 12, &0u32.to_le_bytes(), 0);
    }

    pub fn enable_msix(&mut self, f: Function) {
        let rid = self.nic().rid(f);
        self.cfg_write(rid, MSIX_CAP + 2, 2, MSIX_CONTROL_ENABLE as u32);
    }

    /// What igbvf does at probe: reset, mailbox handshake, interrupt setup (rx q0 →
    /// vector 0, tx q0 → vector 1, mailbox → vector 2), MSI-X data 0x40 + 8n + v.
    pub fn igbvf_init(&mut self, n: u16) -> [u8; 6] {
        let f = Function::Vf(n);
        self.wr(f, CTRL, CTRL_RST, 0);
        // Wait for RSTI to clear (it already has: the agent is the PF driver).
        assert_eq!(self.rd(f, V2PMAILBOX) & V2P_RSTI, 0);
        let reply = self.vf_send(n, &[VF_RESET]);
        assert_eq!(reply[0], VF_RESET | VT_MSGTYPE_ACK);
        let a = reply[1].to_le_bytes();
        let b = reply[2].to_le_bytes();
        self.wr(f, IVAR0, 0x8180, 0);
        self.wr(f, IVAR_MISC, 0x82, 0);
        for v in 0..3 {
            self.msix_entry(f, v, 0x40 + 8 * n as u32 + v);
        }
        self.enable_msix(f);
        self.wr(f, EIAC, 0x7, 0);
        self.wr(f, EIAM, 0x7, 0);
        self.wr(f, EIMS, 0x7, 0);
        self.sink.take();
        [a[0], a[1], a[2], a[3], b[0], b[1]]
    }

    /// The VF side of the mailbox protocol: lock, write, REQ; wait for ACK; read reply.
    pub fn vf_send(&mut self, n: u16, msg: &[u32]) -> Vec<u32> {
        let f = Function::Vf(n);
        self.wr(f, V2PMAILBOX, V2P_VFU, 0);
        assert_ne!(self.rd(f, V2PMAILBOX) & V2P_VFU, 0, "VF lock");
        for (i, w) in msg.iter().enumerate() {
            self.wr(f, VMBMEM + 4 * i as u32, *w, 0);
        }
        self.wr(f, V2PMAILBOX, V2P_REQ, 0);
        let st = self.rd(f, V2PMAILBOX);
        assert_ne!(st & V2P_PFACK, 0, "PF acked");
        assert_ne!(st & V2P_PFSTS, 0, "PF replied");
        self.wr(f, V2PMAILBOX, V2P_VFU, 0);
        let reply: Vec<u32> = (0..4).map(|i| self.rd(f, VMBMEM + 4 * i)).collect();
        self.wr(f, V2PMAILBOX, V2P_ACK, 0);
        reply
    }

    /// Sets up local queue 0 of `f` (rx ring at `base`, 8 descriptors, 2 KiB buffers;
    /// tx ring at `base + 0x1000`). The RX ring gets 7 buffers at `base + 0x10000`.
    pub fn rings(&mut self, f: Function, base: u64) {
        let rx = base;
        let tx = base + 0x1000;
        for i in 0..8u64 {
            let d = (base + 0x10000 + i * 2048).to_le_bytes();
            self.mem
                .memory()
                .write_slice(&d, GuestAddress(rx + 16 * i))
                .unwrap();
        }
        let (rxb, txb) = match f {
            Function::Pf => {
                let q = self.nic().active_vfs() as u32;
                (
                    RXQ_HIGH_BASE + QHIGH_STRIDE * q,
                    TXQ_HIGH_BASE + QHIGH_STRIDE * q,
                )
            }
            Function::Vf(_) => (RXQ_LOW_BASE, TXQ_LOW_BASE),
        };
        self.wr(f, rxb + RDBAL, rx as u32, 0);
        self.wr(f, rxb + RDBAH, 0, 0);
        self.wr(f, rxb + RDLEN, 128, 0);
        self.wr(f, rxb + SRRCTL, 2 | (1 << SRRCTL_DESCTYPE_SHIFT), 0);
        self.wr(f, rxb + RXDCTL, QUEUE_ENABLE, 0);
        self.wr(f, rxb + RDH, 0, 0);
        self.wr(f, rxb + RDT, 7, 0);
        self.wr(f, txb + TDBAL, tx as u32, 0);
        self.wr(f, txb + TDBAH, 0, 0);
        self.wr(f, txb + TDLEN, 128, 0);
        self.wr(f, txb + TXDCTL, QUEUE_ENABLE, 0);
    }

    /// Queues one frame on `f`'s tx queue 0 (advanced data descriptor, RS) at `now`.
    pub fn send(&mut self, f: Function, base: u64, frame: &[u8], now: u64) {
        let txb = match f {
            Function::Pf => TXQ_HIGH_BASE + QHIGH_STRIDE * self.nic().active_vfs() as u32,
            Function::Vf(_) => TXQ_LOW_BASE,
        };
        let tail = self.rd(f, txb + TDT);
        let ring = base + 0x1000;
        let buf = base + 0x2000 + 0x800 * tail as u64;
        self.mem
            .memory()
            .write_slice(frame, GuestAddress(buf))
            .unwrap();
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&buf.to_le_bytes());
        let cmd = frame.len() as u32
            | ADVTXD_DTYP_DATA
            | TXD_CMD_DEXT
            | TXD_CMD_EOP
            | TXD_CMD_IFCS
            | TXD_CMD_RS;
        d[8..12].copy_from_slice(&cmd.to_le_bytes());
        d[12..16].copy_from_slice(&((frame.len() as u32) << 14).to_le_bytes());
        self.mem
            .memory()
            .write_slice(&d, GuestAddress(ring + 16 * tail as u64))
            .unwrap();
        self.wr(f, txb + TDT, (tail + 1) % 8, now);
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem
            .memory()
            .read_slice(&mut v, GuestAddress(addr))
            .unwrap();
        v
    }
}

pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..len.saturating_sub(14)).map(|i| i as u8));
    f
}
