//! The data path: transmit processing, the internal switch, and delivery into receive
//! queues with statistics.

use super::*;

impl Nic82576 {
    // ---- data path ----

    /// Which function owns physical queue `q`.
    pub fn owner(&self, q: usize) -> Function {
        let p = (q & 7) as u16;
        if p < self.active_vfs {
            Function::Vf(p)
        } else {
            Function::Pf
        }
    }

    pub(super) fn pf_pool(&self) -> u32 {
        self.active_vfs as u32
    }

    pub(super) fn all_pools(&self) -> u32 {
        (1u32 << (self.active_vfs as u32 + 1)) - 1
    }

    /// The valid receive addresses with their pool bitmaps.
    pub(super) fn rars(&self) -> ([([u8; 6], u32); RAR_ENTRIES], usize) {
        let mut out = [([0u8; 6], 0u32); RAR_ENTRIES];
        let mut n = 0;
        for i in 0..RAR_ENTRIES as u32 {
            let off = if i < 16 {
                RAL0 + 8 * i
            } else {
                RAL16 + 8 * (i - 16)
            };
            if let Some(e) = switch::rar_entry(self.pf.get(off), self.pf.get(off + 4)) {
                out[n] = e;
                n += 1;
            }
        }
        (out, n)
    }

    pub(super) fn transmit(&mut self, q: usize, now: u64) {
        let owner = self.owner(q);
        let enabled = match owner {
            Function::Pf => self.pf.get(TCTL) & TCTL_EN != 0,
            Function::Vf(n) => self.pf.get(VFTE) & (1 << n) != 0,
        };
        if !enabled || !self.txq[q].enabled() {
            return;
        }
        let bus_master = match owner {
            Function::Pf => self.pf.cfg.bus_master(),
            Function::Vf(n) => self.vfs[n as usize].cfg.bus_master(),
        };
        if !bus_master {
            return;
        }
        let rid = self.rid(owner);
        let mut frames = Vec::new();
        let rep = self.txq[q].process(rid, &*self.dma, &mut frames);
        self.counters.dma_aborted += rep.dma_aborted as u64;
        self.counters.tx_dropped += rep.dropped as u64;
        for _ in 0..rep.dropped {
            self.events.frame_dropped(owner, DropReason::TxMalformed);
        }
        self.counters.bad_ring += rep.bad_tail as u64;
        if rep.written_back > 0 {
            self.queue_cause(q, true);
        }
        let src_pool = match owner {
            Function::Pf => self.pf_pool(),
            Function::Vf(n) => n as u32,
        };
        for f in frames {
            self.switch_frame(src_pool, owner, &f);
        }
        self.service(now);
    }

    pub(super) fn switch_frame(&mut self, src_pool: u32, owner: Function, frame: &[u8]) {
        self.counters.tx_frames += 1;
        let loopback = self.pf.get(DTXSWC) & DTXSWC_LOOPBACK_EN != 0;
        let (rars, nr) = self.rars();
        let r = switch::route(
            &frame[..6],
            &rars[..nr],
            Some(src_pool),
            self.pf_pool(),
            self.all_pools(),
            loopback,
        );
        let len = frame.len() as u64;
        let mc = switch::is_multicast(frame);
        match owner {
            Function::Pf => {
                self.pf.stat_add(GPTC, 1);
                self.pf.stat_add(TPT, 1);
                self.pf.stat_add64(GOTCL, len + 4);
                self.pf.stat_add64(TOTL, len + 4);
                if frame[..6] == [0xff; 6] {
                    self.pf.stat_add(BPTC, 1);
                } else if mc {
                    self.pf.stat_add(MPTC, 1);
                }
            }
            Function::Vf(n) => {
                let vf = &mut self.vfs[n as usize];
                vf.stat_add(VFGPTC, 1);
                vf.stat_add(VFGOTC, len);
                if r.pools != 0 {
                    vf.stat_add(VFGPTLBC, 1);
                    vf.stat_add(VFGOTLBC, len);
                }
            }
        }
        for p in bits(r.pools) {
            self.deliver_to_pool(p as u32, frame, true);
        }
        self.events
            .frame_transmitted(owner, frame.len(), r.pools, r.wire);
        if r.wire {
            self.counters.tx_to_wire += 1;
            if let Some(b) = self.backend.as_mut() {
                b.send(frame);
            }
        }
    }

    /// Maximum frame length a function accepts.
    pub(super) fn max_rx_len(&self, f: Function) -> usize {
        let rctl = self.pf.get(RCTL);
        match f {
            Function::Pf if rctl & RCTL_LPE != 0 => {
                let l = (self.pf.get(RLPML) & 0x3fff) as usize;
                if l == 0 {
                    MAX_FRAME
                } else {
                    l
                }
            }
            Function::Pf => MAX_STD_FRAME,
            Function::Vf(n) => {
                let vmolr = self.pf.get(VMOLR + 4 * n as u32);
                if vmolr & VMOLR_LPE != 0 {
                    ((vmolr & VMOLR_RLPML_MASK) as usize).max(MAX_STD_FRAME)
                } else {
                    MAX_STD_FRAME
                }
            }
        }
    }

    pub(super) fn deliver_to_pool(&mut self, pool: u32, frame: &[u8], loopback: bool) {
        let q = pool as usize;
        if q >= NUM_QUEUES {
            return;
        }
        let owner = self.owner(q);
        let (enabled, bus_master) = match owner {
            Function::Pf => (self.pf.get(RCTL) & RCTL_EN != 0, self.pf.cfg.bus_master()),
            Function::Vf(n) => (
                self.pf.get(VFRE) & (1 << n) != 0,
                self.vfs[n as usize].cfg.bus_master(),
            ),
        };
        if !enabled || !bus_master {
            self.counters.rx_disabled += 1;
            self.events
                .frame_dropped(owner, DropReason::ReceiverDisabled);
            return;
        }
        if frame.len() > self.max_rx_len(owner) {
            self.counters.rx_oversize += 1;
            self.events.frame_dropped(owner, DropReason::Oversize);
            self.pf.stat_add(ROC, 1);
            return;
        }
        let rctl = self.pf.get(RCTL);
        let mut bsize = match (rctl >> RCTL_BSIZE_SHIFT) & 3 {
            0 => 2048,
            1 => 1024,
            2 => 512,
            _ => 256,
        };
        if rctl & RCTL_BSEX != 0 {
            bsize *= 16;
        }
        let rxcsum = self.pf.get(RXCSUM);
        let strip_vlan = match owner {
            Function::Pf => self.pf.get(CTRL) & CTRL_VME != 0,
            Function::Vf(n) => self.pf.get(VMOLR + 4 * n as u32) & VMOLR_STRVLAN != 0,
        };
        let params = RxParams {
            rctl_bsize: bsize,
            ip_csum: rxcsum & RXCSUM_IPOFL != 0,
            l4_csum: rxcsum & RXCSUM_TUOFL != 0,
            strip_vlan,
        };
        let rid = self.rid(owner);
        let outcome = self.rxq[q].receive(frame, rid, &*self.dma, &params);
        let len = frame.len() as u64;
        match outcome {
            RxOutcome::Delivered { .. } => {
                self.counters.rx_delivered += 1;
                self.events.frame_received(owner, frame.len());
                match owner {
                    Function::Pf => {
                        self.pf.stat_add(GPRC, 1);
                        self.pf.stat_add(TPR, 1);
                        self.pf.stat_add64(GORCL, len + 4);
                        self.pf.stat_add64(TORL, len + 4);
                        if frame[..6] == [0xff; 6] {
                            self.pf.stat_add(BPRC, 1);
                        } else if switch::is_multicast(frame) {
                            self.pf.stat_add(MPRC, 1);
                        }
                    }
                    Function::Vf(n) => {
                        let vf = &mut self.vfs[n as usize];
                        vf.stat_add(VFGPRC, 1);
                        vf.stat_add(VFGORC, len);
                        if switch::is_multicast(frame) {
                            vf.stat_add(VFMPRC, 1);
                        }
                        if loopback {
                            vf.stat_add(VFGPRLBC, 1);
                            vf.stat_add(VFGORLBC, len);
                        }
                    }
                }
                self.queue_cause(q, false);
            }
            RxOutcome::NoDescriptors => {
                self.counters.rx_no_descriptors += 1;
                self.events.frame_dropped(owner, DropReason::NoDescriptors);
                if self.rxq[q].available() == 0
                    && (self.rxq[q].rdh >= self.rxq[q].count()
                        || self.rxq[q].rdt >= self.rxq[q].count())
                {
                    self.counters.bad_ring += 1;
                }
                self.pf.stat_add(MPC, 1);
                self.pf.stat_add(RNBC, 1);
            }
            RxOutcome::DmaAborted => {
                self.counters.dma_aborted += 1;
                self.events.frame_dropped(owner, DropReason::DmaAborted);
            }
            RxOutcome::Disabled => {
                self.counters.rx_disabled += 1;
                self.events
                    .frame_dropped(owner, DropReason::ReceiverDisabled);
            }
        }
    }
}
