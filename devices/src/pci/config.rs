//! A type-0 PCI Express configuration space (PCI Local Bus 3.0 §6.1–6.2; PCIe Base 4.0
//! §7.5): 4 KiB of registers with per-byte write masks (read-only, read-write,
//! write-1-to-clear), BAR sizing through the write masks, and the capability and extended
//! capability chains.

/// Vendor ID (PCI 3.0 §6.2.1).
pub const PCI_VENDOR_ID: u16 = 0x00;
/// Device ID.
pub const PCI_DEVICE_ID: u16 = 0x02;
/// Command register (PCI 3.0 §6.2.2).
pub const PCI_COMMAND: u16 = 0x04;
/// Status register.
pub const PCI_STATUS: u16 = 0x06;
/// Revision ID and class code.
pub const PCI_REVISION_ID: u16 = 0x08;
pub const PCI_CACHE_LINE_SIZE: u16 = 0x0c;
pub const PCI_LATENCY_TIMER: u16 = 0x0d;
pub const PCI_HEADER_TYPE: u16 = 0x0e;
/// First Base Address Register (six in a type-0 header).
pub const PCI_BAR0: u16 = 0x10;
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
pub const PCI_SUBSYSTEM_ID: u16 = 0x2e;
/// Capabilities pointer.
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
pub const PCI_INTERRUPT_LINE: u16 = 0x3c;
pub const PCI_INTERRUPT_PIN: u16 = 0x3d;
/// First extended capability (PCIe Base 4.0 §7.6).
pub const PCI_EXT_CAP_START: u16 = 0x100;
/// Size of a PCIe configuration space.
pub const PCI_CONFIG_SPACE_SIZE: usize = 4096;

/// Command: I/O space enable.
pub const PCI_COMMAND_IO: u16 = 1 << 0;
/// Command: memory space enable (gates BAR decode).
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command: bus master enable (gates DMA and MSI/MSI-X).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
pub const PCI_COMMAND_PARITY: u16 = 1 << 6;
pub const PCI_COMMAND_SERR: u16 = 1 << 8;
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status: capabilities list present.
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// Status: the error bits 15:11 and 8 are write-1-to-clear.
pub const PCI_STATUS_W1C: u16 = 0xf900;

/// BAR bit 0: I/O space indicator.
pub const PCI_BAR_IO: u32 = 1 << 0;
/// BAR bits 2:1 = 10b: 64-bit memory BAR.
pub const PCI_BAR_MEM_64: u32 = 0b10 << 1;
/// BAR bit 3: prefetchable.
pub const PCI_BAR_PREFETCH: u32 = 1 << 3;
/// BAR address mask for memory BARs.
pub const PCI_BAR_MEM_MASK: u32 = !0xf;

/// Capability IDs (PCI Code and ID Assignment Specification).
pub const PCI_CAP_ID_PM: u8 = 0x01;
pub const PCI_CAP_ID_MSI: u8 = 0x05;
pub const PCI_CAP_ID_EXP: u8 = 0x10;
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Extended capability IDs.
pub const PCI_EXT_CAP_ID_AER: u16 = 0x0001;
pub const PCI_EXT_CAP_ID_ARI: u16 = 0x000e;
pub const PCI_EXT_CAP_ID_SRIOV: u16 = 0x0010;

/// Kind of a memory BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Mem32,
    Mem64,
}

/// A BAR that a function implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarDef {
    /// Size in bytes, a power of two ≥ 16.
    pub size: u64,
    pub kind: BarKind,
    pub prefetchable: bool,
}

/// One function's configuration space.
#[derive(Clone)]
pub struct ConfigSpace {
    data: Box<[u8; PCI_CONFIG_SPACE_SIZE]>,
    wmask: Box<[u8; PCI_CONFIG_SPACE_SIZE]>,
    w1cmask: Box<[u8; PCI_CONFIG_SPACE_SIZE]>,
    bars: [Option<BarDef>; 6],
    last_cap: Option<u16>,
    last_ext_cap: Option<u16>,
}

impl std::fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSpace")
            .field("vendor", &self.read16(PCI_VENDOR_ID))
            .field("device", &self.read16(PCI_DEVICE_ID))
            .finish()
    }
}

impl ConfigSpace {
    /// A type-0 header with the given identity; the command register's I/O, memory, bus
    /// master, parity, SERR and INTx-disable bits are writable.
    pub fn new(vendor: u16, device: u16, class_code: u32, revision: u8) -> Self {
        let mut c = Self {
            data: Box::new([0; PCI_CONFIG_SPACE_SIZE]),
            wmask: Box::new([0; PCI_CONFIG_SPACE_SIZE]),
            w1cmask: Box::new([0; PCI_CONFIG_SPACE_SIZE]),
            bars: [None; 6],
            last_cap: None,
            last_ext_cap: None,
        };
        c.set16(PCI_VENDOR_ID, vendor);
        c.set16(PCI_DEVICE_ID, device);
        c.set32(PCI_REVISION_ID, (class_code << 8) | revision as u32);
        c.set_wmask16(
            PCI_COMMAND,
            PCI_COMMAND_IO
                | PCI_COMMAND_MEMORY
                | PCI_COMMAND_MASTER
                | PCI_COMMAND_PARITY
                | PCI_COMMAND_SERR
                | PCI_COMMAND_INTX_DISABLE,
        );
        c.set_w1cmask16(PCI_STATUS, PCI_STATUS_W1C);
        c.set_wmask8(PCI_CACHE_LINE_SIZE, 0xff);
        c.set_wmask8(PCI_LATENCY_TIMER, 0xff);
        c.set_wmask8(PCI_INTERRUPT_LINE, 0xff);
        c
    }

    // ---- raw accessors (device side: no masks) ----

    pub fn get8(&self, off: u16) -> u8 {
        self.data.get(off as usize).copied().unwrap_or(0xff)
    }
    pub fn read16(&self, off: u16) -> u16 {
        u16::from_le_bytes([self.get8(off), self.get8(off.wrapping_add(1))])
    }
    pub fn read32(&self, off: u16) -> u32 {
        u32::from_le_bytes([
            self.get8(off),
            self.get8(off.wrapping_add(1)),
            self.get8(off.wrapping_add(2)),
            self.get8(off.wrapping_add(3)),
        ])
    }
    fn set_bytes(arr: &mut [u8; PCI_CONFIG_SPACE_SIZE], off: u16, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = arr.get_mut(off as usize + i) {
                *slot = *b;
            }
        }
    }
    pub fn set8(&mut self, off: u16, v: u8) {
        Self::set_bytes(&mut self.data, off, &[v]);
    }
    pub fn set16(&mut self, off: u16, v: u16) {
        Self::set_bytes(&mut self.data, off, &v.to_le_bytes());
    }
    pub fn set32(&mut self, off: u16, v: u32) {
        Self::set_bytes(&mut self.data, off, &v.to_le_bytes());
    }
    pub fn set_wmask8(&mut self, off: u16, v: u8) {
        Self::set_bytes(&mut self.wmask, off, &[v]);
    }
    pub fn set_wmask16(&mut self, off: u16, v: u16) {
        Self::set_bytes(&mut self.wmask, off, &v.to_le_bytes());
    }
    pub fn set_wmask32(&mut self, off: u16, v: u32) {
        Self::set_bytes(&mut self.wmask, off, &v.to_le_bytes());
    }
    pub fn set_w1cmask16(&mut self, off: u16, v: u16) {
        Self::set_bytes(&mut self.w1cmask, off, &v.to_le_bytes());
    }
    pub fn set_w1cmask32(&mut self, off: u16, v: u32) {
        Self::set_bytes(&mut self.w1cmask, off, &v.to_le_bytes());
    }

    // ---- guest side ----

    /// A configuration read of `len` (1, 2 or 4) bytes; out-of-range bytes read as ones.
    pub fn read(&self, off: u16, len: usize) -> u32 {
        let mut v = 0u32;
        for i in 0..len.min(4) {
            v |= (self.get8(off.wrapping_add(i as u16)) as u32) << (8 * i);
        }
        v
    }

    /// A configuration write: per byte, read-only bits keep their value, read-write bits
    /// take the new value, write-1-to-clear bits are cleared where a one is written.
    pub fn write(&mut self, off: u16, data: &[u8]) {
        for (i, &b) in data.iter().enumerate().take(4) {
            let o = off as usize + i;
            if o >= PCI_CONFIG_SPACE_SIZE {
                break;
            }
            let wm = self.wmask[o];
            let w1c = self.w1cmask[o];
            let old = self.data[o];
            self.data[o] = ((old & !wm) | (b & wm)) & !(b & w1c);
        }
    }

    // ---- command register ----

    pub fn command(&self) -> u16 {
        self.read16(PCI_COMMAND)
    }
    pub fn memory_enabled(&self) -> bool {
        self.command() & PCI_COMMAND_MEMORY != 0
    }
    pub fn bus_master(&self) -> bool {
        self.command() & PCI_COMMAND_MASTER != 0
    }

    // ---- BARs ----

    /// Declares BAR `idx` (a 64-bit BAR also takes `idx + 1`). Sizing works through the
    /// write mask: writing all ones reads back `!(size - 1)` plus the type bits.
    pub fn add_bar(&mut self, idx: usize, def: BarDef) {
        assert!(idx < 6 && def.size.is_power_of_two() && def.size >= 16);
        let off = PCI_BAR0 + 4 * idx as u16;
        let mut ty = 0;
        if def.kind == BarKind::Mem64 {
            assert!(idx < 5);
            ty |= PCI_BAR_MEM_64;
        }
        if def.prefetchable {
            ty |= PCI_BAR_PREFETCH;
        }
        Self::declare_bar_regs(self, off, def, ty);
        self.bars[idx] = Some(def);
    }

    /// Declares BAR registers at `off` (also used for the SR-IOV VF BARs).
    pub fn declare_bar_regs(&mut self, off: u16, def: BarDef, type_bits: u32) {
        let mask = !(def.size - 1);
        self.set32(off, type_bits);
        self.set_wmask32(off, (mask as u32) & PCI_BAR_MEM_MASK);
        if def.kind == BarKind::Mem64 {
            self.set32(off + 4, 0);
            self.set_wmask32(off + 4, (mask >> 32) as u32);
        }
    }

    pub fn bar_def(&self, idx: usize) -> Option<BarDef> {
        self.bars.get(idx).copied().flatten()
    }

    /// The base address currently programmed in BAR registers at `off`.
    pub fn bar_regs_address(&self, off: u16, kind: BarKind) -> u64 {
        let lo = (self.read32(off) & PCI_BAR_MEM_MASK) as u64;
        match kind {
            BarKind::Mem32 => lo,
            BarKind::Mem64 => lo | ((self.read32(off + 4) as u64) << 32),
        }
    }

    /// The base address of BAR `idx`, whether or not decoding is enabled.
    pub fn bar_address(&self, idx: usize) -> Option<u64> {
        let def = self.bar_def(idx)?;
        Some(self.bar_regs_address(PCI_BAR0 + 4 * idx as u16, def.kind))
    }

    /// Programs BAR `idx` (host side, like firmware does).
    pub fn set_bar_address(&mut self, idx: usize, addr: u64) {
        if let Some(def) = self.bar_def(idx) {
            let off = PCI_BAR0 + 4 * idx as u16;
            let ty = self.read32(off) & !PCI_BAR_MEM_MASK;
            let a = addr & !(def.size - 1);
            self.set32(off, (a as u32 & PCI_BAR_MEM_MASK) | ty);
            if def.kind == BarKind::Mem64 {
                self.set32(off + 4, (a >> 32) as u32);
            }
        }
    }

    /// If memory decoding is on and `addr` falls in a BAR, returns `(bar, offset)`.
    pub fn decode(&self, addr: u64) -> Option<(usize, u64)> {
        if !self.memory_enabled() {
            return None;
        }
        self.decode_bars(addr)
    }

    /// BAR decode ignoring the command register.
    pub fn decode_bars(&self, addr: u64) -> Option<(usize, u64)> {
        for idx in 0..6 {
            if let Some(def) = self.bar_def(idx) {
                let base = self.bar_address(idx).unwrap_or(0);
                // An unprogrammed BAR (base 0) does not decode.
                if base != 0 && addr >= base && addr - base < def.size {
                    return Some((idx, addr - base));
                }
            }
        }
        None
    }

    // ---- capabilities ----

    /// Adds a standard capability at `off` with `len` bytes, linking it into the list
    /// (PCI 3.0 §6.7). Returns `off`.
    pub fn add_capability(&mut self, off: u16, id: u8, len: u16) -> u16 {
        assert!(
            (0x40..0x100).contains(&off) && off + len <= 0x100 && off & 3 == 0,
            "capability outside the header's capability area"
        );
        self.set8(off, id);
        self.set8(off + 1, 0);
        match self.last_cap {
            None => {
                self.set8(PCI_CAPABILITY_LIST, off as u8);
                let st = self.read16(PCI_STATUS) | PCI_STATUS_CAP_LIST;
                self.set16(PCI_STATUS, st);
            }
            Some(prev) => self.set8(prev + 1, off as u8),
        }
        self.last_cap = Some(off);
        off
    }

    /// Adds an extended capability at `off` (PCIe Base 4.0 §7.6.2 header: ID 15:0,
    /// version 19:16, next 31:20).
    pub fn add_ext_capability(&mut self, off: u16, id: u16, version: u8, len: u16) -> u16 {
        assert!(
            off >= PCI_EXT_CAP_START
                && (off as usize + len as usize) <= PCI_CONFIG_SPACE_SIZE
                && off & 3 == 0
        );
        self.set32(off, id as u32 | ((version as u32 & 0xf) << 16));
        if let Some(prev) = self.last_ext_cap {
            let h = self.read32(prev) & 0x000f_ffff;
            self.set32(prev, h | ((off as u32) << 20));
        }
        self.last_ext_cap = Some(off);
        off
    }

    /// Walks the standard capability list: `(offset, id)` pairs, loop-safe.
    pub fn capabilities(&self) -> Vec<(u16, u8)> {
        let mut out = Vec::new();
        if self.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
            return out;
        }
        let mut p = self.get8(PCI_CAPABILITY_LIST) as u16 & !3;
        while p >= 0x40 && out.len() < 48 {
            out.push((p, self.get8(p)));
            p = self.get8(p + 1) as u16 & !3;
        }
        out
    }

    /// Walks the extended capability list: `(offset, id)` pairs.
    pub fn ext_capabilities(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut p = PCI_EXT_CAP_START;
        while p >= PCI_EXT_CAP_START && out.len() < 64 {
            let h = self.read32(p);
            if h == 0 || h == u32::MAX {
                break;
            }
            out.push((p, h as u16));
            p = ((h >> 20) as u16) & !3;
        }
        out
    }

    /// Finds a standard capability.
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        self.capabilities()
            .into_iter()
            .find(|&(_, i)| i == id)
            .map(|(o, _)| o)
    }

    /// Finds an extended capability.
    pub fn find_ext_capability(&self, id: u16) -> Option<u16> {
        self.ext_capabilities()
            .into_iter()
            .find(|&(_, i)| i == id)
            .map(|(o, _)| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizing_and_relocation_64bit() {
        let mut c = ConfigSpace::new(0x8086, 0x10c9, 0x020000, 1);
        c.add_bar(
            0,
            BarDef {
                size: 128 << 10,
                kind: BarKind::Mem64,
                prefetchable: false,
            },
        );
        c.write(0x10, &[0xff; 4]);
        c.write(0x14, &[0xff; 4]);
        assert_eq!(c.read(0x10, 4), 0xfffe_0004);
        assert_eq!(c.read(0x14, 4), 0xffff_ffff);
        c.write(0x10, &0xfeb0_0000u32.to_le_bytes());
        c.write(0x14, &1u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0x1_feb0_0000));
        assert_eq!(c.decode(0x1_feb0_0010), None, "memory space disabled");
        c.write(PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
        assert_eq!(c.decode(0x1_feb0_0010), Some((0, 0x10)));
        assert_eq!(c.decode(0x1_feb2_0000), None);
    }

    #[test]
    fn bar_sizing_32bit_and_unimplemented_bars_read_zero() {
        let mut c = ConfigSpace::new(0x8086, 0x10c9, 0x020000, 1);
        c.add_bar(
            1,
            BarDef {
                size: 4096,
                kind: BarKind::Mem32,
                prefetchable: true,
            },
        );
        c.write(0x14, &[0xff; 4]);
        assert_eq!(c.read(0x14, 4), 0xffff_f008);
        c.write(0x18, &[0xff; 4]);
        assert_eq!(c.read(0x18, 4), 0);
    }

    #[test]
    fn read_only_and_w1c_bits() {
        let mut c = ConfigSpace::new(0x8086, 0x10c9, 0x020000, 1);
        c.write(0, &[0; 4]);
        assert_eq!(c.read(0, 4), 0x10c9_8086);
        c.set16(PCI_STATUS, 0x8010);
        c.write(PCI_STATUS, &0x8000u16.to_le_bytes());
        assert_eq!(c.read16(PCI_STATUS), 0x0010);
        c.write(PCI_COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), 0x0547);
    }

    #[test]
    fn capability_chains_walk() {
        let mut c = ConfigSpace::new(0x8086, 0x10c9, 0x020000, 1);
        c.add_capability(0x50, PCI_CAP_ID_MSI, 0x18);
        c.add_capability(0x70, PCI_CAP_ID_MSIX, 12);
        c.add_ext_capability(0x100, PCI_EXT_CAP_ID_AER, 1, 0x48);
        c.add_ext_capability(0x160, PCI_EXT_CAP_ID_SRIOV, 1, 0x40);
        assert_eq!(
            c.capabilities(),
            vec![(0x50, PCI_CAP_ID_MSI), (0x70, PCI_CAP_ID_MSIX)]
        );
        assert_eq!(
            c.ext_capabilities(),
            vec![(0x100, PCI_EXT_CAP_ID_AER), (0x160, PCI_EXT_CAP_ID_SRIOV)]
        );
        assert_eq!(c.read(0x100, 4) >> 20, 0x160);
        // The chain is read-only.
        c.write(0x51, &[0x40]);
        assert_eq!(c.find_capability(PCI_CAP_ID_MSIX), Some(0x70));
    }

    #[test]
    fn out_of_range_accesses_are_harmless() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        c.write(0xffe, &[0xff; 4]);
        assert_eq!(c.read(0xffe, 4), 0xffff_0000);
    }
}
