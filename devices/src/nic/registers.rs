//! Register dispatch: BAR decode for the PF and VFs, MSI-X BAR accesses, and the PF and
//! VF register maps (offsets in regs.rs).

use super::*;

/// Decodes a queue register offset: `(queue, offset within block, is_tx)`.
pub(super) fn pf_queue_reg(off: u32) -> Option<(usize, u32, bool)> {
    let q = |base: u32, stride: u32, n: u32| -> Option<(usize, u32)> {
        let o = off.checked_sub(base)?;
        let i = o / stride;
        (i < n).then_some((i as usize, o % stride))
    };
    if let Some((i, o)) = q(RXQ_LOW_BASE, QLOW_STRIDE, 4) {
        return Some((i, o, false));
    }
    if let Some((i, o)) = q(TXQ_LOW_BASE, QLOW_STRIDE, 4) {
        return Some((i, o, true));
    }
    if let Some((i, o)) = q(RXQ_HIGH_BASE, QHIGH_STRIDE, NUM_QUEUES as u32) {
        return Some((i, o, false));
    }
    if let Some((i, o)) = q(TXQ_HIGH_BASE, QHIGH_STRIDE, NUM_QUEUES as u32) {
        return Some((i, o, true));
    }
    None
}

/// A VF's queue registers: local queue k at 0x2800/0x3800 + 0x100·k.
pub(super) fn vf_queue_reg(off: u32) -> Option<(u32, u32, bool)> {
    for (base, tx) in [(RXQ_LOW_BASE, false), (TXQ_LOW_BASE, true)] {
        if let Some(o) = off.checked_sub(base) {
            if o / QLOW_STRIDE < VF_QUEUES {
                return Some((o / QLOW_STRIDE, o % QLOW_STRIDE, tx));
            }
        }
    }
    None
}

impl Nic82576 {
    // ---- MMIO ----

    pub(super) fn decode(&self, addr: u64) -> Option<(Function, usize, u64)> {
        // In D3hot a function answers configuration requests only (PCI PM 1.2 §5.4.1).
        let pf_d3 = self.pf.cfg.read16(PM_CAP + caps::PM_PMCSR) & 3 == 3;
        if let Some((bar, off)) = self.pf.cfg.decode(addr).filter(|_| !pf_d3) {
            return Some((Function::Pf, bar, off));
        }
        let s = self.sriov();
        // VF memory decoding is the PF's VF MSE (SR-IOV 1.1 §3.3.3.4), not its command
        // register.
        if self.active_vfs == 0 || !s.vf_mse {
            return None;
        }
        for (bar, size) in [(REG_BAR, VF_BAR0_SIZE), (MSIX_BAR, VF_BAR3_SIZE)] {
            let def = BarDef {
                size,
                kind: BarKind::Mem64,
                prefetchable: false,
            };
            let base = sriov::vf_bar_base(&self.pf.cfg, SRIOV_CAP, bar, &def);
            if base == 0 || addr < base {
                continue;
            }
            let n = (addr - base) / size;
            if n < self.active_vfs as u64 {
                return Some((Function::Vf(n as u16), bar, (addr - base) % size));
            }
        }
        None
    }

    pub(super) fn msix_access(&mut self, f: Function, off: u64, data: &mut [u8], write: bool) {
        let rid = self.rid(f);
        let (cfg, table) = match f {
            Function::Pf => (&self.pf.cfg, &mut self.pf.msix),
            Function::Vf(n) => {
                let v = &mut self.vfs[n as usize];
                (&v.cfg, &mut v.msix)
            }
        };
        let ctl = MsixControl::from_config(cfg, MSIX_CAP);
        let pba = MSIX_PBA_OFFSET as u64;
        if off < pba {
            if write {
                table.table_write(off, data, ctl, rid, &*self.sink);
            } else {
                table.table_read(off, data);
            }
        } else if !write {
            table.pba_read(off - pba, data);
        }
    }

    pub(super) fn mmio_read_impl(&mut self, addr: u64, data: &mut [u8], now: u64) -> bool {
        let Some((f, bar, off)) = self.decode(addr) else {
            return false;
        };
        if bar == MSIX_BAR {
            self.msix_access(f, off, data, false);
            return true;
        }
        data.fill(0);
        match data.len() {
            1 | 2 | 4 => {
                let v = self.reg_read(f, (off & !3) as u32, now);
                let sh = (off & 3) as usize;
                let bytes = v.to_le_bytes();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = bytes.get(sh + i).copied().unwrap_or(0);
                }
            }
            8 if off & 7 == 0 => {
                let lo = self.reg_read(f, off as u32, now);
                let hi = self.reg_read(f, off as u32 + 4, now);
                data.copy_from_slice(&(lo as u64 | (hi as u64) << 32).to_le_bytes());
            }
            _ => self.counters.ignored_accesses += 1,
        }
        true
    }

    pub(super) fn mmio_write_impl(&mut self, addr: u64, data: &[u8], now: u64) -> bool {
        let Some((f, bar, off)) = self.decode(addr) else {
            return false;
        };
        if bar == MSIX_BAR {
            let mut d = data.to_vec();
            self.msix_access(f, off, &mut d, true);
            self.service(now);
            return true;
        }
        match data.len() {
            4 if off & 3 == 0 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.reg_write(f, off as u32, v, now);
            }
            8 if off & 7 == 0 => {
                let lo = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                let hi = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
                self.reg_write(f, off as u32, lo, now);
                self.reg_write(f, off as u32 + 4, hi, now);
            }
            _ => self.counters.ignored_accesses += 1,
        }
        self.service(now);
        true
    }

    /// A register read in function `f`'s register BAR (offset dword-aligned).
    pub fn reg_read(&mut self, f: Function, off: u32, _now: u64) -> u32 {
        match f {
            Function::Pf => self.pf_reg_read(off),
            Function::Vf(n) => self.vf_reg_read(n as usize, off),
        }
    }

    /// A register write in function `f`'s register BAR.
    pub fn reg_write(&mut self, f: Function, off: u32, v: u32, now: u64) {
        match f {
            Function::Pf => self.pf_reg_write(off, v, now),
            Function::Vf(n) => self.vf_reg_write(n as usize, off, v, now),
        }
    }

    pub(super) fn pf_reg_read(&mut self, off: u32) -> u32 {
        if let Some((q, o, tx)) = pf_queue_reg(off) {
            return if tx {
                self.txq[q].read_reg(o)
            } else {
                self.rxq[q].read_reg(o)
            };
        }
        let mbx_mem_end = VMBMEM + (MAX_VFS * VMBMEM_WORDS * 4) as u32;
        match off {
            STATUS => {
                STATUS_FD
                    | STATUS_LU
                    | STATUS_SPEED_1000
                    | (self.pf.get(STATUS) & STATUS_PF_RST_DONE)
            }
            EECD => self.pf.get(EECD) | EECD_PRES | EECD_AUTO_RD,
            EEMNGCTL => self.pf.get(EEMNGCTL) | EEMNGCTL_CFG_DONE_PORT_0,
            EERD => self.pf.eerd,
            MDIC => self.pf.mdic,
            ICR => {
                let v = std::mem::take(&mut self.pf.icr);
                if v & self.pf.ims != 0 {
                    v | ICR_INT_ASSERTED
                } else {
                    v
                }
            }
            IMS => self.pf.ims,
            EICR => self.pf.intr.read_eicr(),
            EIMS => self.pf.intr.eims,
            EIAC => self.pf.intr.eiac,
            EIAM => self.pf.intr.eiam,
            o if (EITR..EITR + 4 * 25).contains(&o) => self.pf.intr.eitr(((o - EITR) / 4) as usize),
            o if (VMBMEM..mbx_mem_end).contains(&o) => {
                let w = ((o - VMBMEM) / 4) as usize;
                self.mbx.pf_read_mem(w / VMBMEM_WORDS, w % VMBMEM_WORDS)
            }
            o if (P2VMAILBOX..P2VMAILBOX + 4 * MAX_VFS as u32).contains(&o) => {
                self.mbx.pf_read_ctl(((o - P2VMAILBOX) / 4) as usize)
            }
            MBVFICR => self.mbx.mbvficr,
            MBVFIMR => self.mbx.mbvfimr,
            VFLRE => self.mbx.vflre,
            o if (STATS_START..STATS_END).contains(&o) => {
                // Statistics clear on read.
                let v = self.pf.get(o);
                self.pf.set(o, 0);
                v
            }
            o => self.pf.get(o),
        }
    }

    pub(super) fn pf_reg_write(&mut self, off: u32, v: u32, now: u64) {
        if let Some((q, o, tx)) = pf_queue_reg(off) {
            if tx {
                self.txq[q].write_reg(o, v);
                if o == TDT || o == TXDCTL {
                    self.transmit(q, now);
                }
            } else {
                self.rxq[q].write_reg(o, v);
            }
            return;
        }
        let mbx_mem_end = VMBMEM + (MAX_VFS * VMBMEM_WORDS * 4) as u32;
        match off {
            CTRL => {
                if v & CTRL_RST != 0 {
                    self.pf_soft_reset();
                } else {
                    self.pf.set(CTRL, v & !CTRL_PHY_RST);
                }
            }
            STATUS => {}
            EERD => self.pf.eerd = nvm_phy::eerd_access(&self.pf.nvm, v),
            MDIC => self.pf.mdic = nvm_phy::mdic_access(&mut self.pf.phy, v),
            CTRL_EXT => {
                // PFRSTD acts when it goes 0 → 1: igb rewrites CTRL_EXT read-modify-write
                // with the bit kept, which must not signal a new PF reset to the VFs.
                let was = self.pf.get(CTRL_EXT) & CTRL_EXT_PFRSTD;
                self.pf.set(CTRL_EXT, v);
                if v & CTRL_EXT_PFRSTD != 0 && was == 0 {
                    self.pf_ready = true;
                    self.mbx.pf_reset_done();
                    for n in 0..self.active_vfs as usize {
                        self.vf_mailbox_cause(n);
                    }
                }
            }
            ICR => self.pf.icr &= !v,
            ICS => self.pf_other_cause(v),
            IMS => {
                let newly = v & !self.pf.ims;
                self.pf.ims |= v;
                if newly & self.pf.icr != 0 {
                    self.pf_other_vector();
                }
            }
            IMC => self.pf.ims &= !v,
            EICS => self.pf.intr.cause(v),
            EIMS => self.pf.intr.write_eims(v),
            EIMC => self.pf.intr.write_eimc(v),
            EIAC => self.pf.intr.eiac = v,
            EIAM => self.pf.intr.eiam = v,
            EICR => self.pf.intr.write_eicr(v),
            o if (EITR..EITR + 4 * 25).contains(&o) => {
                self.pf.intr.write_eitr(((o - EITR) / 4) as usize, v)
            }
            o if (VMBMEM..mbx_mem_end).contains(&o) => {
                let w = ((o - VMBMEM) / 4) as usize;
                self.mbx.pf_write_mem(w / VMBMEM_WORDS, w % VMBMEM_WORDS, v)
            }
            o if (P2VMAILBOX..P2VMAILBOX + 4 * MAX_VFS as u32).contains(&o) => {
                let n = ((o - P2VMAILBOX) / 4) as usize;
                let ev = self.mbx.pf_write_ctl(n, v);
                if ev.to_vf {
                    self.vf_mailbox_cause(n);
                }
            }
            MBVFICR => self.mbx.mbvficr &= !v,
            MBVFIMR => self.mbx.mbvfimr = v,
            VFLRE => self.mbx.vflre &= !v,
            VFTE => {
                self.pf.set(VFTE, v);
                for q in 0..NUM_QUEUES {
                    if matches!(self.owner(q), Function::Vf(_)) {
                        self.transmit(q, now);
                    }
                }
            }
            TCTL => {
                self.pf.set(TCTL, v);
                if v & TCTL_EN != 0 {
                    for q in 0..NUM_QUEUES {
                        if self.owner(q) == Function::Pf {
                            self.transmit(q, now);
                        }
                    }
                }
            }
            o if (STATS_START..STATS_END).contains(&o) => {}
            o => self.pf.set(o, v),
        }
    }

    pub(super) fn vf_reg_read(&mut self, n: usize, off: u32) -> u32 {
        if let Some((k, o, tx)) = vf_queue_reg(off) {
            let q = n + 8 * k as usize;
            return if tx {
                self.txq[q].read_reg(o)
            } else {
                self.rxq[q].read_reg(o)
            };
        }
        let vf = &mut self.vfs[n];
        match off {
            STATUS => STATUS_FD | STATUS_LU | STATUS_SPEED_1000,
            EICR => vf.intr.read_eicr(),
            EIMS => vf.intr.eims,
            EIAC => vf.intr.eiac,
            EIAM => vf.intr.eiam,
            o if (EITR..EITR + 4 * VF_MSIX_VECTORS as u32).contains(&o) => {
                vf.intr.eitr(((o - EITR) / 4) as usize)
            }
            V2PMAILBOX => self.mbx.vf_read_ctl(n),
            o if (VMBMEM..VMBMEM + 4 * VMBMEM_WORDS as u32).contains(&o) => {
                self.mbx.vf_read_mem(n, ((o - VMBMEM) / 4) as usize)
            }
            o => vf.get(o),
        }
    }

    pub(super) fn vf_reg_write(&mut self, n: usize, off: u32, v: u32, now: u64) {
        if let Some((k, o, tx)) = vf_queue_reg(off) {
            let q = n + 8 * k as usize;
            if tx {
                self.txq[q].write_reg(o, v);
                if o == TDT || o == TXDCTL {
                    self.transmit(q, now);
                }
            } else {
                self.rxq[q].write_reg(o, v);
            }
            return;
        }
        let vf = &mut self.vfs[n];
        match off {
            CTRL => {
                if v & CTRL_RST != 0 {
                    self.vf_soft_reset(n);
                } else {
                    vf.set(CTRL, v);
                }
            }
            STATUS => {}
            EICS => vf.intr.cause(v),
            EIMS => vf.intr.write_eims(v),
            EIMC => vf.intr.write_eimc(v),
            EIAC => vf.intr.eiac = v,
            EIAM => vf.intr.eiam = v,
            EICR => vf.intr.write_eicr(v),
            o if (EITR..EITR + 4 * VF_MSIX_VECTORS as u32).contains(&o) => {
                vf.intr.write_eitr(((o - EITR) / 4) as usize, v)
            }
            V2PMAILBOX => {
                let ev = self.mbx.vf_write_ctl(n, v);
                if ev.to_pf {
                    self.pf_other_cause(ICR_VMMB);
                }
                if ev.vf_request && self.agent {
                    self.agent_handle(n);
                }
            }
            o if (VMBMEM..VMBMEM + 4 * VMBMEM_WORDS as u32).contains(&o) => {
                self.mbx.vf_write_mem(n, ((o - VMBMEM) / 4) as usize, v)
            }
            // Statistics are read-only.
            o if (VFGPRC..=VFGOTLBC).contains(&o) => {}
            o => vf.set(o, v),
        }
    }
}
