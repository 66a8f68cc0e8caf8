//! The register page as the guest sees it: 32- and 64-bit accesses (VT-d specification
//! chapter 11, "Software Access to Registers": 64-bit registers as one 64-bit access or
//! as two 32-bit accesses), the Global Command / Global Status state machine, read-only
//! and write-1-to-clear fields, and vm-device's `MutDeviceMmio`.

use vm_device::bus::{MmioAddress, MmioAddressOffset};
use vm_device::MutDeviceMmio;
use vm_memory::GuestMemory;

use crate::regs::*;
use crate::Iommu;

const fn lo(v: u64) -> u32 {
    v as u32
}
const fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
const fn set_lo(v: u64, d: u32) -> u64 {
    (v & !0xffff_ffff) | d as u64
}
const fn set_hi(v: u64, d: u32) -> u64 {
    (v & 0xffff_ffff) | ((d as u64) << 32)
}

impl<M: GuestMemory> Iommu<M> {
    /// A guest read of `data.len()` bytes at `offset` in the register page. Aligned 4-
    /// and 8-byte reads are the architectural ones; 1- and 2-byte reads inside a dword
    /// are served from that dword; anything else reads as zeros. Reads have no side
    /// effects.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        match data.len() {
            8 if offset % 8 == 0 => {
                let v = u64::from(self.read_dword(offset))
                    | (u64::from(self.read_dword(offset + 4)) << 32);
                data.copy_from_slice(&v.to_le_bytes());
            }
            n @ (1 | 2 | 4) if offset % 4 + n as u64 <= 4 => {
                let v = self.read_dword(offset & !3).to_le_bytes();
                let start = (offset % 4) as usize;
                data.copy_from_slice(&v[start..start + n]);
            }
            _ => {
                tracing::debug!(target: "iommu", offset, len = data.len(), "unsupported register read");
                data.fill(0);
            }
        }
    }

    /// A guest write of `data` at `offset`. Aligned 4- and 8-byte writes take effect
    /// (an 8-byte write as its low dword, then its high dword); other sizes are ignored.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        match data.len() {
            8 if offset % 8 == 0 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                let v = u64::from_le_bytes(b);
                self.write_dword(offset, lo(v));
                self.write_dword(offset + 4, hi(v));
            }
            4 if offset % 4 == 0 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.write_dword(offset, u32::from_le_bytes(b));
            }
            _ => {
                tracing::debug!(target: "iommu", offset, len = data.len(), "unsupported register write ignored");
            }
        }
    }

    /// Reads a 32-bit register.
    pub fn read_u32(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Reads a 64-bit register.
    pub fn read_u64(&self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(offset, &mut b);
        u64::from_le_bytes(b)
    }

    /// Writes a 32-bit register.
    pub fn write_u32(&mut self, offset: u64, v: u32) {
        self.write(offset, &v.to_le_bytes());
    }

    /// Writes a 64-bit register.
    pub fn write_u64(&mut self, offset: u64, v: u64) {
        self.write(offset, &v.to_le_bytes());
    }

    fn read_dword(&self, off: u64) -> u32 {
        let q = &self.queue;
        match off {
            VER => VER_VALUE,
            CAP => lo(CAP_VALUE),
            o if o == CAP + 4 => hi(CAP_VALUE),
            ECAP => lo(ECAP_VALUE),
            o if o == ECAP + 4 => hi(ECAP_VALUE),
            GCMD => 0,
            GSTS => self.gsts,
            RTADDR => lo(self.rtaddr),
            o if o == RTADDR + 4 => hi(self.rtaddr),
            CCMD => lo(self.ccmd),
            o if o == CCMD + 4 => hi(self.ccmd),
            FSTS => self.faults.fsts(),
            FECTL => self.faults.fectl(),
            FEDATA => self.faults.fedata,
            FEADDR => self.faults.feaddr(),
            FEUADDR => self.faults.feuaddr,
            IQH => lo(q.iqh),
            IQT => lo(q.iqt),
            IQA => lo(q.iqa),
            o if o == IQA + 4 => hi(q.iqa),
            ICS => q.ics,
            IECTL => q.iectl,
            IEDATA => q.iedata,
            IEADDR => q.ieaddr,
            IEUADDR => q.ieuaddr,
            IQERCD => lo(q.iqercd),
            o if o == IQERCD + 4 => hi(q.iqercd),
            IRTA => lo(self.irta),
            o if o == IRTA + 4 => hi(self.irta),
            IVA => lo(self.iva),
            o if o == IVA + 4 => hi(self.iva),
            IOTLB => lo(self.iotlb),
            o if o == IOTLB + 4 => hi(self.iotlb),
            o if (FRCD_BASE..FRCD_BASE + FRCD_SIZE * NUM_FAULT_RECORDS as u64).contains(&o) => {
                let i = ((o - FRCD_BASE) / FRCD_SIZE) as usize;
                let r = self.faults.record(i).unwrap_or_default();
                match (o - FRCD_BASE) % FRCD_SIZE {
                    0 => lo(r.lo),
                    4 => hi(r.lo),
                    8 => lo(r.hi),
                    _ => hi(r.hi),
                }
            }
            _ => 0,
        }
    }

    fn write_dword(&mut self, off: u64, v: u32) {
        tracing::trace!(target: "iommu", offset = off, value = v, "register write");
        match off {
            GCMD => self.write_gcmd(v),
            RTADDR => self.rtaddr = set_lo(self.rtaddr, v & !0xfff),
            o if o == RTADDR + 4 => self.rtaddr = set_hi(self.rtaddr, v),
            CCMD => self.ccmd = set_lo(self.ccmd, v),
            o if o == CCMD + 4 => {
                self.ccmd = set_hi(self.ccmd, v);
                if self.ccmd & CCMD_ICC != 0 {
                    // Context-cache invalidation completes at once (no DMA remapping yet):
                    // ICC clears, CAIG reports the requested granularity.
                    let cirg = (self.ccmd >> CCMD_CIRG_SHIFT) & 0x3;
                    self.ccmd &= !(CCMD_ICC | (0x3 << CCMD_CAIG_SHIFT));
                    self.ccmd |= cirg << CCMD_CAIG_SHIFT;
                    tracing::debug!(target: "iommu", cirg, "register-based context-cache invalidation (no-op)");
                }
            }
            FSTS => {
                let iqe_before = self.faults.fsts() & FSTS_IQE != 0;
                self.faults.write_fsts(v);
                if iqe_before && self.faults.fsts() & FSTS_IQE == 0 {
                    // Queue errors: processing resumes from IQH once IQE is cleared.
                    self.run_queue();
                }
            }
            FECTL => self.faults.write_fectl(v, &mut self.interrupts),
            FEDATA => self.faults.fedata = v,
            FEADDR => self.faults.set_feaddr(v),
            FEUADDR => self.faults.feuaddr = v,
            IQT => self.write_iqt(u64::from(v)),
            IQA => self.queue.iqa = set_lo(self.queue.iqa, v & lo(IQA_ADDR_MASK | IQA_QS_MASK)),
            o if o == IQA + 4 => self.queue.iqa = set_hi(self.queue.iqa, v),
            ICS => self.queue.write_ics(v),
            IECTL => self.queue.write_iectl(v, &mut self.interrupts),
            IEDATA => self.queue.iedata = v,
            IEADDR => self.queue.ieaddr = v & EVENT_ADDR_MASK,
            IEUADDR => self.queue.ieuaddr = v,
            IRTA => self.irta = set_lo(self.irta, v & lo(IRTA_WRITABLE)),
            o if o == IRTA + 4 => self.irta = set_hi(self.irta, v),
            IVA => self.iva = set_lo(self.iva, v),
            o if o == IVA + 4 => self.iva = set_hi(self.iva, v),
            IOTLB => self.iotlb = set_lo(self.iotlb, v),
            o if o == IOTLB + 4 => {
                self.iotlb = set_hi(self.iotlb, v);
                if self.iotlb & IOTLB_IVT != 0 {
                    let iirg = (self.iotlb >> IOTLB_IIRG_SHIFT) & 0x3;
                    self.iotlb &= !(IOTLB_IVT | (0x3 << IOTLB_IAIG_SHIFT));
                    self.iotlb |= iirg << IOTLB_IAIG_SHIFT;
                    tracing::debug!(target: "iommu", iirg, "register-based IOTLB invalidation (no-op)");
                }
            }
            o if (FRCD_BASE..FRCD_BASE + FRCD_SIZE * NUM_FAULT_RECORDS as u64).contains(&o)
                && (o - FRCD_BASE) % FRCD_SIZE == 12 =>
            {
                self.faults
                    .write_record_hi_dword(((o - FRCD_BASE) / FRCD_SIZE) as usize, v);
            }
            // VER, CAP, ECAP, GSTS, IQH, IQERCD, the rest of the fault records and every
            // unimplemented offset: read-only or reserved, writes ignored.
            _ => {
                tracing::debug!(target: "iommu", offset = off, value = v, "write to read-only or reserved register ignored")
            }
        }
    }

    /// GCMD (Global Command Register): one-shot commands (SRTP, SIRTP; SFL and WBF are not supported and
    /// ignored) act on every write that has them set; the enables (TE, QIE, IRE, CFI, and
    /// EAFL which is not supported) take the written value. Every command completes
    /// before the write returns, so GSTS already shows the result.
    fn write_gcmd(&mut self, v: u32) {
        if v & G_SRTP != 0 {
            self.gsts |= G_SRTP;
            tracing::debug!(target: "iommu", rtaddr = self.rtaddr, "root table pointer set");
        }
        if v & G_SIRTP != 0 {
            self.active_irta = self.irta;
            // CAP.ESIRTPS: the SIRTP operation also invalidates the interrupt entry cache.
            self.iec.invalidate_all();
            self.counters.invalidations += 1;
            self.gsts |= G_SIRTP;
            tracing::debug!(
                target: "iommu",
                irta = self.active_irta,
                entries = irta_entries(self.active_irta),
                eime = self.extended_interrupt_mode(),
                "interrupt remap table pointer set"
            );
        }
        let enables = G_TE | G_QIE | G_IRE | G_CFI;
        let old = self.gsts;
        self.gsts = (self.gsts & !enables) | (v & enables);
        let changed = old ^ self.gsts;
        if changed != 0 {
            tracing::debug!(target: "iommu", gsts = self.gsts, "global status changed");
        }
        if changed & G_QIE != 0 {
            if self.gsts & G_QIE == 0 {
                // IQH resets to 0 whenever queued invalidation is disabled.
                self.queue.iqh = 0;
            } else {
                self.run_queue();
            }
        }
        if changed & (G_TE | G_IRE) != 0 && self.gsts & (G_TE | G_IRE) == 0 {
            self.faults.reset_index();
        }
    }
}

impl<M: GuestMemory> MutDeviceMmio for Iommu<M> {
    fn mmio_read(&mut self, _base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        self.read(offset, data);
    }

    fn mmio_write(&mut self, _base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        self.write(offset, data);
    }
}
