//! MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and the pending-bit
//! array (PBA) living in a memory BAR.
//!
//! Semantics: a vector is signalled when MSI-X is enabled, neither the function mask nor
//! the vector's mask bit is set, and bus mastering is enabled; when masked the vector's
//! pending bit is set instead and the message is sent when it is unmasked. Accesses to
//! entries beyond the table size are ignored (reads return 0); only aligned DWORD and
//! QWORD accesses are honoured (§6.8.2: other sizes give undefined results).

use apic::MsiMessage;

use super::config::{ConfigSpace, PCI_CAP_ID_MSIX};
use crate::interrupt::InterruptSink;

/// Capability: Message Control at +2.
pub const MSIX_CONTROL: u16 = 2;
/// Capability: Table Offset/BIR at +4.
pub const MSIX_TABLE: u16 = 4;
/// Capability: PBA Offset/BIR at +8.
pub const MSIX_PBA: u16 = 8;
pub const MSIX_CAP_LEN: u16 = 12;
/// Message Control: MSI-X Enable (bit 15).
pub const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// Message Control: Function Mask (bit 14).
pub const MSIX_CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Table entry size.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Vector Control: Mask Bit.
pub const MSIX_ENTRY_CTRL_MASKED: u32 = 1;

/// Adds the MSI-X capability: `vectors` entries, table at `table_offset` in BAR `bir`,
/// PBA at `pba_offset` in the same BAR.
pub fn add_msix(
    c: &mut ConfigSpace,
    off: u16,
    vectors: u16,
    bir: u8,
    table_offset: u32,
    pba_offset: u32,
) {
    assert!((1..=2048).contains(&vectors));
    c.add_capability(off, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
    c.set16(off + MSIX_CONTROL, vectors - 1);
    c.set_wmask16(
        off + MSIX_CONTROL,
        MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK,
    );
    c.set32(off + MSIX_TABLE, table_offset | bir as u32);
    c.set32(off + MSIX_PBA, pba_offset | bir as u32);
}

/// The control bits that gate delivery, read from the config space at each use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixControl {
    pub enabled: bool,
    pub function_masked: bool,
    pub bus_master: bool,
}

impl MsixControl {
    pub fn from_config(c: &ConfigSpace, cap: u16) -> Self {
        let ctl = c.read16(cap + MSIX_CONTROL);
        Self {
            enabled: ctl & MSIX_CONTROL_ENABLE != 0,
            function_masked: ctl & MSIX_CONTROL_FUNCTION_MASK != 0,
            bus_master: c.bus_master(),
        }
    }
}

/// What happened to a signalled vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixOutcome {
    Sent,
    /// Masked: pending bit set.
    Pending,
    /// MSI-X disabled, bus mastering off, or no such vector: nothing sent.
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    ctrl: u32,
}

impl Default for Entry {
    fn default() -> Self {
        // Reset state: all vectors masked (§6.8.2.9).
        Self {
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            ctrl: MSIX_ENTRY_CTRL_MASKED,
        }
    }
}

/// A function's MSI-X table and PBA.
#[derive(Debug, Clone)]
pub struct MsixTable {
    entries: Vec<Entry>,
    pba: Vec<u64>,
    /// Messages not sent because bus mastering was off or MSI-X disabled.
    pub dropped: u64,
    pub sent: u64,
}

impl MsixTable {
    pub fn new(vectors: usize) -> Self {
        Self {
            entries: vec![Entry::default(); vectors],
            pba: vec![0; vectors.div_ceil(64)],
            dropped: 0,
            sent: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Back to the reset state (FLR).
    pub fn reset(&mut self) {
        *self = Self::new(self.entries.len());
    }

    pub fn is_pending(&self, v: usize) -> bool {
        v < self.entries.len() && self.pba[v / 64] & (1 << (v % 64)) != 0
    }

    pub fn is_masked(&self, v: usize) -> bool {
        self.entries
            .get(v)
            .is_none_or(|e| e.ctrl & MSIX_ENTRY_CTRL_MASKED != 0)
    }

    fn set_pending(&mut self, v: usize, p: bool) {
        if p {
            self.pba[v / 64] |= 1 << (v % 64);
        } else {
            self.pba[v / 64] &= !(1 << (v % 64));
        }
    }

    fn message(&self, v: usize, rid: u16) -> MsiMessage {
        let e = &self.entries[v];
        MsiMessage::new(rid, e.addr_lo as u64 | ((e.addr_hi as u64) << 32), e.data)
    }

    /// The device signals vector `v`.
    pub fn signal(
        &mut self,
        v: usize,
        ctl: MsixControl,
        rid: u16,
        sink: &dyn InterruptSink,
    ) -> MsixOutcome {
        if v >= self.entries.len() || !ctl.enabled {
            self.dropped += 1;
            return MsixOutcome::Dropped;
        }
        if ctl.function_masked || self.is_masked(v) {
            self.set_pending(v, true);
            return MsixOutcome::Pending;
        }
        if !ctl.bus_master {
            self.dropped += 1;
            return MsixOutcome::Dropped;
        }
        self.sent += 1;
        let msg = self.message(v, rid);
        tracing::trace!(
            rid,
            vector = v,
            address = msg.address,
            data = msg.data,
            "MSI-X"
        );
        sink.send_msi(msg);
        MsixOutcome::Sent
    }

    /// Sends every pending vector that is now deliverable (after an unmask, a function
    /// unmask, or enabling MSI-X).
    pub fn deliver_pending(&mut self, ctl: MsixControl, rid: u16, sink: &dyn InterruptSink) {
        if !ctl.enabled || ctl.function_masked || !ctl.bus_master {
            return;
        }
        for v in 0..self.entries.len() {
            if self.is_pending(v) && !self.is_masked(v) {
                self.set_pending(v, false);
                self.sent += 1;
                let msg = self.message(v, rid);
                tracing::trace!(
                    rid,
                    vector = v,
                    address = msg.address,
                    "MSI-X pending delivered"
                );
                sink.send_msi(msg);
            }
        }
    }

    /// Reads `data.len()` bytes at `offset` in the table.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !matches!(data.len(), 4 | 8) || offset & (data.len() as u64 - 1) != 0 {
            return;
        }
        let mut v = 0u64;
        for (i, dw) in (0..data.len() / 4).enumerate() {
            let o = offset + 4 * dw as u64;
            let idx = (o / MSIX_ENTRY_SIZE) as usize;
            let val = match self.entries.get(idx) {
                None => 0,
                Some(e) => match o % MSIX_ENTRY_SIZE {
                    0 => e.addr_lo,
                    4 => e.addr_hi,
                    8 => e.data,
                    _ => e.ctrl,
                },
            };
            v |= (val as u64) << (32 * i);
        }
        data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
    }

    /// Writes the table; unmasking a pending vector delivers it.
    pub fn table_write(
        &mut self,
        offset: u64,
        data: &[u8],
        ctl: MsixControl,
        rid: u16,
        sink: &dyn InterruptSink,
    ) {
        if !matches!(data.len(), 4 | 8) || offset & (data.len() as u64 - 1) != 0 {
            return;
        }
        let mut buf = [0u8; 8];
        buf[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(buf);
        for dw in 0..data.len() / 4 {
            let o = offset + 4 * dw as u64;
            let val = (v >> (32 * dw)) as u32;
            let idx = (o / MSIX_ENTRY_SIZE) as usize;
            let Some(e) = self.entries.get_mut(idx) else {
                tracing::trace!(idx, "MSI-X write to nonexistent vector ignored");
                continue;
            };
            match o % MSIX_ENTRY_SIZE {
                0 => e.addr_lo = val & !3,
                4 => e.addr_hi = val,
                8 => e.data = val,
                _ => {
                    e.ctrl = val & MSIX_ENTRY_CTRL_MASKED;
                    if e.ctrl & MSIX_ENTRY_CTRL_MASKED == 0 {
                        self.deliver_pending(ctl, rid, sink);
                    }
                }
            }
        }
    }

    /// Reads the PBA (read-only; writes are ignored).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !matches!(data.len(), 4 | 8) || offset & (data.len() as u64 - 1) != 0 {
            return;
        }
        let q = (offset / 8) as usize;
        let word = self.pba.get(q).copied().unwrap_or(0);
        let shifted = word >> (8 * (offset % 8));
        data.copy_from_slice(&shifted.to_le_bytes()[..data.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::RecordingSink;

    const ON: MsixControl = MsixControl {
        enabled: true,
        function_masked: false,
        bus_master: true,
    };

    fn program(t: &mut MsixTable, v: u64, sink: &RecordingSink, unmask: bool) {
        t.table_write(v * 16, &0xfee0_0000u32.to_le_bytes(), ON, 1, sink);
        t.table_write(v * 16 + 8, &(0x40 + v as u32).to_le_bytes(), ON, 1, sink);
        if unmask {
            t.table_write(v * 16 + 12, &0u32.to_le_bytes(), ON, 1, sink);
        }
    }

    #[test]
    fn masked_vector_goes_pending_then_delivers_on_unmask() {
        let sink = RecordingSink::new();
        let mut t = MsixTable::new(3);
        program(&mut t, 1, &sink, false);
        assert_eq!(t.signal(1, ON, 0x88, &*sink), MsixOutcome::Pending);
        let mut pba = [0u8; 8];
        t.pba_read(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0b10);
        assert!(sink.is_empty());
        t.table_write(16 + 12, &0u32.to_le_bytes(), ON, 0x88, &*sink);
        let m = sink.take();
        assert_eq!(m, vec![MsiMessage::new(0x88, 0xfee0_0000, 0x41)]);
        assert!(!t.is_pending(1));
    }

    #[test]
    fn function_mask_holds_all_vectors() {
        let sink = RecordingSink::new();
        let mut t = MsixTable::new(3);
        program(&mut t, 0, &sink, true);
        program(&mut t, 2, &sink, true);
        let fm = MsixControl {
            function_masked: true,
            ..ON
        };
        t.signal(0, fm, 5, &*sink);
        t.signal(2, fm, 5, &*sink);
        assert!(sink.is_empty());
        t.deliver_pending(ON, 5, &*sink);
        assert_eq!(sink.take().len(), 2);
        assert_eq!(t.signal(0, ON, 5, &*sink), MsixOutcome::Sent);
        assert_eq!(sink.take()[0].requester_id, 5);
    }

    #[test]
    fn disabled_or_no_bus_master_drops() {
        let sink = RecordingSink::new();
        let mut t = MsixTable::new(1);
        program(&mut t, 0, &sink, true);
        let off = MsixControl {
            enabled: false,
            ..ON
        };
        assert_eq!(t.signal(0, off, 1, &*sink), MsixOutcome::Dropped);
        let nbm = MsixControl {
            bus_master: false,
            ..ON
        };
        assert_eq!(t.signal(0, nbm, 1, &*sink), MsixOutcome::Dropped);
        assert!(sink.is_empty());
        assert_eq!(t.dropped, 2);
    }

    #[test]
    fn nonexistent_vectors_and_odd_accesses_are_ignored() {
        let sink = RecordingSink::new();
        let mut t = MsixTable::new(3);
        t.table_write(3 * 16, &0xdeadu32.to_le_bytes(), ON, 1, &*sink);
        t.table_write(0x1ff0, &[0xff; 8], ON, 1, &*sink);
        t.table_write(2, &[0xff; 4], ON, 1, &*sink);
        t.table_write(0, &[0xff; 2], ON, 1, &*sink);
        let mut b = [0xaau8; 4];
        t.table_read(3 * 16 + 8, &mut b);
        assert_eq!(b, [0; 4]);
        t.table_read(0, &mut b);
        assert_eq!(b, [0; 4]);
        t.table_read(12, &mut b);
        assert_eq!(u32::from_le_bytes(b), 1);
        assert_eq!(t.signal(7, ON, 1, &*sink), MsixOutcome::Dropped);
        assert!(sink.is_empty());
    }
}
