//! A minimal guest driver for the 82576 VF (what Linux's igbvf does at probe and for one
//! queue pair), on the PCI functions that the PF's SR-IOV capability describes. Register
//! offsets per the 82576 datasheet §8.28 (VF registers), as igbvf's regs.h names them.

use crate::arch::Global;

pub const ECAM: u64 = 0xe000_0000;
pub const PF_RID: u16 = 0x08; // 00:01.0
pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_82576_PF: u16 = 0x10c9;
pub const SRIOV_CAP: u16 = 0x160;
const SRIOV_NUM_VFS: u16 = 0x10;
const SRIOV_VF_OFFSET: u16 = 0x14;
const SRIOV_VF_STRIDE: u16 = 0x16;
const SRIOV_VF_BAR0: u16 = 0x24;
const SRIOV_VF_BAR3: u16 = 0x30;
const VF_BAR_SIZE: u64 = 16 * 1024;
const PCI_COMMAND: u16 = 0x04;
const PCI_COMMAND_MASTER: u32 = 1 << 2;
const MSIX_CAP: u16 = 0x70;
const MSIX_ENABLE: u32 = 1 << 15;

pub const CTRL: u64 = 0x0000;
pub const CTRL_RST: u32 = 1 << 26;
pub const EIMS: u64 = 0x1524;
pub const EIMC: u64 = 0x1528;
pub const EIAC: u64 = 0x152c;
pub const EIAM: u64 = 0x1530;
pub const EICR: u64 = 0x1580;
pub const IVAR0: u64 = 0x1700;
pub const IVAR_MISC: u64 = 0x1740;
pub const VMBMEM: u64 = 0x0800;
pub const V2PMAILBOX: u64 = 0x0c40;
const V2P_REQ: u32 = 1 << 0;
const V2P_ACK: u32 = 1 << 1;
const V2P_VFU: u32 = 1 << 2;
const V2P_PFSTS: u32 = 1 << 4;
const V2P_PFACK: u32 = 1 << 5;
pub const VF_RESET: u32 = 0x01;
pub const MSGTYPE_ACK: u32 = 0x8000_0000;
const RXQ: u64 = 0x2800;
const TXQ: u64 = 0x3800;
const RDBAL: u64 = 0x00;
const RDBAH: u64 = 0x04;
const RDLEN: u64 = 0x08;
const SRRCTL: u64 = 0x0c;
const RDH: u64 = 0x10;
const RDT: u64 = 0x18;
const RXDCTL: u64 = 0x28;
const QUEUE_ENABLE: u32 = 1 << 25;
/// SRRCTL: 2 KiB buffers, advanced one-buffer descriptors.
const SRRCTL_2K_ADV: u32 = 2 | (1 << 25);
const TXD_DTYP_DATA: u32 = 0x3 << 20;
const TXD_CMD: u32 = (1 << 24) | (1 << 25) | (1 << 27) | (1 << 29); // EOP IFCS RS DEXT
const RXD_STAT_DD: u32 = 1 << 0;
pub const RING: usize = 8;
const BUF: usize = 2048;

#[repr(C, align(4096))]
pub struct QueueMemory {
    rx: [[u64; 2]; RING],
    pad0: [u8; 4096 - 16 * RING],
    tx: [[u64; 2]; RING],
    pad1: [u8; 4096 - 16 * RING],
    rx_buf: [[u8; BUF]; RING],
    tx_buf: [[u8; BUF]; RING],
}

impl QueueMemory {
    pub const fn new() -> Self {
        Self {
            rx: [[0; 2]; RING],
            pad0: [0; 4096 - 16 * RING],
            tx: [[0; 2]; RING],
            pad1: [0; 4096 - 16 * RING],
            rx_buf: [[0; BUF]; RING],
            tx_buf: [[0; BUF]; RING],
        }
    }
}

impl Default for QueueMemory {
    fn default() -> Self {
        Self::new()
    }
}

fn ecam(rid: u16, off: u16) -> *mut u32 {
    (ECAM + (u64::from(rid) << 12) + u64::from(off & !3)) as *mut u32
}

pub fn cfg_read(rid: u16, off: u16) -> u32 {
    // SAFETY: ECAM is identity-mapped MMIO; dword-aligned.
    let v = unsafe { ecam(rid, off).read_volatile() };
    v >> (8 * u32::from(off & 3))
}

pub fn cfg_write32(rid: u16, off: u16, v: u32) {
    // SAFETY: as `cfg_read`.
    unsafe { ecam(rid, off).write_volatile(v) }
}

/// One VF as the driver sees it.
#[derive(Clone, Copy, Debug)]
pub struct Vf {
    pub index: u16,
    pub rid: u16,
    pub bar0: u64,
    pub bar3: u64,
}

/// The VFs the PF has enabled (NumVFs), from its SR-IOV capability.
pub fn discover(out: &mut [Option<Vf>]) -> usize {
    if cfg_read(PF_RID, 0) & 0xffff != u32::from(VENDOR_INTEL)
        || cfg_read(PF_RID, 2) & 0xffff != u32::from(DEVICE_82576_PF)
    {
        return 0;
    }
    let num = cfg_read(PF_RID, SRIOV_CAP + SRIOV_NUM_VFS) & 0xffff;
    let offset = cfg_read(PF_RID, SRIOV_CAP + SRIOV_VF_OFFSET) & 0xffff;
    let stride = cfg_read(PF_RID, SRIOV_CAP + SRIOV_VF_STRIDE) & 0xffff;
    let bar = |off: u16| {
        (u64::from(cfg_read(PF_RID, SRIOV_CAP + off + 4)) << 32)
            | u64::from(cfg_read(PF_RID, SRIOV_CAP + off) & !0xf)
    };
    let (bar0, bar3) = (bar(SRIOV_VF_BAR0), bar(SRIOV_VF_BAR3));
    let mut n = 0;
    for (i, slot) in out.iter_mut().enumerate().take(num as usize) {
        *slot = Some(Vf {
            index: i as u16,
            rid: PF_RID + (offset + stride * i as u32) as u16,
            bar0: bar0 + VF_BAR_SIZE * i as u64,
            bar3: bar3 + VF_BAR_SIZE * i as u64,
        });
        n += 1;
    }
    n
}

impl Vf {
    pub fn rd(&self, off: u64) -> u32 {
        // SAFETY: the VF's register BAR is identity-mapped MMIO.
        unsafe { ((self.bar0 + off) as *const u32).read_volatile() }
    }

    pub fn wr(&self, off: u64, v: u32) {
        // SAFETY: as `rd`.
        unsafe { ((self.bar0 + off) as *mut u32).write_volatile(v) }
    }

    /// Programs MSI-X table entry `vector` (masked while it changes).
    pub fn set_msix(&self, vector: u64, address: u64, data: u32) {
        let e = (self.bar3 + 16 * vector) as *mut u32;
        // SAFETY: the VF's MSI-X BAR is identity-mapped MMIO; entries are 16 bytes.
        unsafe {
            e.add(3).write_volatile(1);
            e.write_volatile(address as u32);
            e.add(1).write_volatile((address >> 32) as u32);
            e.add(2).write_volatile(data);
            e.add(3).write_volatile(0);
        }
    }

    /// The mailbox exchange: lock, write, REQ, wait for the PF's reply, read it, ACK.
    pub fn mailbox(&self, msg: &[u32], reply: &mut [u32; 4]) -> bool {
        self.wr(V2PMAILBOX, V2P_VFU);
        if self.rd(V2PMAILBOX) & V2P_VFU == 0 {
            return false;
        }
        for (i, w) in msg.iter().enumerate() {
            self.wr(VMBMEM + 4 * i as u64, *w);
        }
        self.wr(V2PMAILBOX, V2P_REQ);
        if !crate::testing::wait_until(|| {
            let s = self.rd(V2PMAILBOX);
            s & V2P_PFACK != 0 && s & V2P_PFSTS != 0
        }) {
            return false;
        }
        self.wr(V2PMAILBOX, V2P_VFU);
        for (i, w) in reply.iter_mut().enumerate() {
            *w = self.rd(VMBMEM + 4 * i as u64);
        }
        self.wr(V2PMAILBOX, V2P_ACK);
        true
    }

    /// igbvf's probe: reset, VF_RESET through the mailbox (returns the MAC), causes to
    /// vectors (rx 0 → 0, tx 0 → 1, mailbox → 2), MSI-X on, all three causes enabled with
    /// auto-clear and auto-mask.
    pub fn init(&self) -> Option<[u8; 6]> {
        let cmd = cfg_read(self.rid, PCI_COMMAND) & 0xffff;
        cfg_write32(self.rid, PCI_COMMAND, cmd | PCI_COMMAND_MASTER);
        self.wr(CTRL, CTRL_RST);
        let mut reply = [0u32; 4];
        if !self.mailbox(&[VF_RESET], &mut reply)
            || reply[0] & !0x2000_0000 != VF_RESET | MSGTYPE_ACK
        {
            return None;
        }
        let (a, b) = (reply[1].to_le_bytes(), reply[2].to_le_bytes());
        self.wr(IVAR0, 0x8180);
        self.wr(IVAR_MISC, 0x82);
        let header = cfg_read(self.rid, MSIX_CAP);
        cfg_write32(self.rid, MSIX_CAP, header | (MSIX_ENABLE << 16));
        self.wr(EIAC, 0x7);
        self.wr(EIAM, 0x7);
        self.wr(EIMS, 0x7);
        Some([a[0], a[1], a[2], a[3], b[0], b[1]])
    }

    /// Sets up local queue pair 0 on `q`: RX ring armed with all buffers but one, TX empty.
    pub fn rings(&self, q: &Global<QueueMemory>) {
        // SAFETY: the queue memory is this driver's.
        let m = unsafe { &mut *q.get() };
        for i in 0..RING {
            m.rx[i] = [m.rx_buf[i].as_ptr() as u64, 0];
        }
        self.wr(RXQ + RDBAL, m.rx.as_ptr() as u32);
        self.wr(RXQ + RDBAH, (m.rx.as_ptr() as u64 >> 32) as u32);
        self.wr(RXQ + RDLEN, (16 * RING) as u32);
        self.wr(RXQ + SRRCTL, SRRCTL_2K_ADV);
        self.wr(RXQ + RXDCTL, QUEUE_ENABLE);
        self.wr(RXQ + RDH, 0);
        self.wr(RXQ + RDT, (RING - 1) as u32);
        self.wr(TXQ + RDBAL, m.tx.as_ptr() as u32);
        self.wr(TXQ + RDBAH, (m.tx.as_ptr() as u64 >> 32) as u32);
        self.wr(TXQ + RDLEN, (16 * RING) as u32);
        self.wr(TXQ + RXDCTL, QUEUE_ENABLE);
    }

    /// Queues `frame` on TX queue 0.
    pub fn send(&self, q: &Global<QueueMemory>, frame: &[u8]) {
        // SAFETY: as `rings`.
        let m = unsafe { &mut *q.get() };
        let tail = self.rd(TXQ + RDT) as usize % RING;
        m.tx_buf[tail][..frame.len()].copy_from_slice(frame);
        let len = frame.len() as u64;
        let cmd = u64::from(TXD_DTYP_DATA | TXD_CMD) | len;
        let d = &mut m.tx[tail];
        // SAFETY: descriptor words the device reads after the TDT write.
        unsafe {
            core::ptr::write_volatile(&mut d[0], m.tx_buf[tail].as_ptr() as u64);
            core::ptr::write_volatile(&mut d[1], cmd | (len << 46));
        }
        self.wr(TXQ + RDT, ((tail + 1) % RING) as u32);
    }

    /// Takes a received frame from RX slot `slot` if its DD bit is set: returns its length
    /// and re-arms the slot.
    pub fn receive(&self, q: &Global<QueueMemory>, slot: usize, out: &mut [u8]) -> Option<usize> {
        // SAFETY: as `rings`.
        let m = unsafe { &mut *q.get() };
        // SAFETY: the device writes the descriptor back; read it volatile.
        let wb = unsafe { core::ptr::read_volatile(&m.rx[slot][1]) };
        if (wb as u32) & RXD_STAT_DD == 0 {
            return None;
        }
        let len = ((wb >> 32) & 0xffff) as usize;
        let n = len.min(out.len());
        out[..n].copy_from_slice(&m.rx_buf[slot][..n]);
        // SAFETY: give the slot back with its buffer.
        unsafe {
            core::ptr::write_volatile(&mut m.rx[slot][1], 0);
            core::ptr::write_volatile(&mut m.rx[slot][0], m.rx_buf[slot].as_ptr() as u64);
        }
        self.wr(RXQ + RDT, slot as u32);
        Some(len)
    }
}

/// The pair of VFs most tests use (VF 0 and VF 1, enabled by `--vfs 2`), brought up with
/// their queue pairs on `q0` and `q1`. Returns the VFs and their MAC addresses.
pub fn bring_up_pair(
    q0: &Global<QueueMemory>,
    q1: &Global<QueueMemory>,
) -> Result<(Vf, Vf, [u8; 6], [u8; 6]), &'static str> {
    let mut vfs = [None; 8];
    discover(&mut vfs);
    let (Some(vf0), Some(vf1)) = (vfs[0], vfs[1]) else {
        return Err("the NIC has no two VFs (run with --vfs 2)");
    };
    let (Some(mac0), Some(mac1)) = (vf0.init(), vf1.init()) else {
        return Err("VF reset handshake failed");
    };
    if mac0 == mac1 {
        return Err("the VFs got the same MAC address");
    }
    vf0.rings(q0);
    vf1.rings(q1);
    Ok((vf0, vf1, mac0, mac1))
}
