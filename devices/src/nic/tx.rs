//! A transmit queue (82576 datasheet, "Transmit Functionality": legacy descriptors,
//! advanced context and data descriptors, DD write-back on RS, head write-back, IP and
//! TCP/UDP checksum insertion, TCP segmentation).

use super::csum;
use super::regs::*;
use crate::dma::DmaSpace;

/// An advanced context descriptor's fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxContext {
    pub vlan_macip_lens: u32,
    pub type_tucmd_mlhl: u32,
    pub mss_l4len_idx: u32,
}

impl TxContext {
    fn maclen(&self) -> usize {
        ((self.vlan_macip_lens >> ADVTXD_MACLEN_SHIFT) & 0x7f) as usize
    }
    fn iplen(&self) -> usize {
        (self.vlan_macip_lens & 0x1ff) as usize
    }
    fn ipv4(&self) -> bool {
        self.type_tucmd_mlhl & ADVTXD_TUCMD_IPV4 != 0
    }
    /// L4 type: 0 UDP, 1 TCP, 2 SCTP.
    fn l4t(&self) -> u32 {
        (self.type_tucmd_mlhl >> ADVTXD_TUCMD_L4T_SHIFT) & 3
    }
    fn l4len(&self) -> usize {
        ((self.mss_l4len_idx >> 8) & 0xff) as usize
    }
    fn mss(&self) -> usize {
        (self.mss_l4len_idx >> 16) as usize
    }
}

/// Offloads requested for the frame being gathered (from its first data descriptor).
#[derive(Debug, Clone, Copy, Default)]
struct FrameOpts {
    ixsm: bool,
    txsm: bool,
    tse: bool,
    ctx: usize,
    legacy_cso: Option<(usize, usize)>,
    /// VLE: insert an 802.1Q tag (from the context descriptor, or the legacy special
    /// field).
    vle: bool,
    legacy: bool,
    legacy_vlan: u16,
}

/// One transmit queue.
#[derive(Debug, Clone, Default)]
pub struct TxQueue {
    pub tdbal: u32,
    pub tdbah: u32,
    pub tdlen: u32,
    pub tdh: u32,
    pub tdt: u32,
    pub txdctl: u32,
    pub tdwbal: u32,
    pub tdwbah: u32,
    ctx: [TxContext; 2],
    pending: Vec<u8>,
    pending_opts: Option<FrameOpts>,
    pending_bad: bool,
}

/// Counters of one processing run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxReport {
    pub descriptors: u32,
    /// Descriptors written back (RS): the TX cause fires.
    pub written_back: u32,
    pub dma_aborted: u32,
    /// Frames dropped as runt, oversized or malformed.
    pub dropped: u32,
    /// Head or tail outside the ring.
    pub bad_tail: bool,
}

impl TxQueue {
    pub fn base(&self) -> u64 {
        (self.tdbal as u64) | ((self.tdbah as u64) << 32)
    }

    pub fn count(&self) -> u32 {
        self.tdlen / DESC_SIZE as u32
    }

    pub fn enabled(&self) -> bool {
        self.txdctl & QUEUE_ENABLE != 0 && self.count() > 0
    }

    pub fn read_reg(&self, off: u32) -> u32 {
        match off {
            TDBAL => self.tdbal,
            TDBAH => self.tdbah,
            TDLEN => self.tdlen,
            TDH => self.tdh,
            TDT => self.tdt,
            TXDCTL => self.txdctl,
            TDWBAL => self.tdwbal,
            TDWBAH => self.tdwbah,
            _ => 0,
        }
    }

    pub fn write_reg(&mut self, off: u32, v: u32) {
        match off {
            TDBAL => self.tdbal = v & !0x7f,
            TDBAH => self.tdbah = v,
            TDLEN => self.tdlen = v & 0x000f_ff80,
            TDH => {
                self.tdh = v & 0xffff;
                self.pending.clear();
                self.pending_opts = None;
            }
            TDT => self.tdt = v & 0xffff,
            TXDCTL => self.txdctl = v,
            TDWBAL => self.tdwbal = v,
            TDWBAH => self.tdwbah = v,
            _ => {}
        }
    }

    /// Processes descriptors from head to tail; complete frames are appended to `out`.
    pub fn process(&mut self, rid: u16, dma: &dyn DmaSpace, out: &mut Vec<Vec<u8>>) -> TxReport {
        let mut r = TxReport::default();
        let n = self.count();
        if !self.enabled() {
            return r;
        }
        if self.tdh >= n || self.tdt >= n {
            r.bad_tail = true;
            return r;
        }
        while self.tdh != self.tdt {
            let daddr = self.base().wrapping_add(self.tdh as u64 * DESC_SIZE);
            let mut d = [0u8; 16];
            if dma.read(rid, daddr, &mut d).is_err() {
                // The queue stalls on an aborted descriptor fetch.
                r.dma_aborted += 1;
                break;
            }
            r.descriptors += 1;
            let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or([0; 8]));
            let dw2 = u32::from_le_bytes(d[8..12].try_into().unwrap_or([0; 4]));
            let dw3 = u32::from_le_bytes(d[12..16].try_into().unwrap_or([0; 4]));
            let advanced = dw2 & TXD_CMD_DEXT != 0;
            if advanced && dw2 & ADVTXD_DTYP_MASK == ADVTXD_DTYP_CTXT {
                let idx = ((dw3 >> ADVTXD_IDX_SHIFT) & 1) as usize;
                self.ctx[idx] = TxContext {
                    vlan_macip_lens: addr as u32,
                    type_tucmd_mlhl: dw2,
                    mss_l4len_idx: dw3,
                };
                if dw2 & TXD_CMD_RS != 0 && self.write_dd(rid, dma, daddr, true).is_ok() {
                    r.written_back += 1;
                }
            } else {
                let len = (dw2 & ADVTXD_LEN_MASK) as usize;
                if self.pending_opts.is_none() {
                    self.pending_opts = Some(if advanced {
                        FrameOpts {
                            ixsm: dw3 & ADVTXD_POPTS_IXSM != 0,
                            txsm: dw3 & ADVTXD_POPTS_TXSM != 0,
                            tse: dw2 & TXD_CMD_TSE != 0,
                            ctx: ((dw3 >> ADVTXD_IDX_SHIFT) & 1) as usize,
                            vle: dw2 & TXD_CMD_VLE != 0,
                            ..FrameOpts::default()
                        }
                    } else {
                        // Legacy: CSO byte 2 of dword 2, CSS byte 1 of dword 3, IC bit 26.
                        let ic = dw2 & (1 << 26) != 0;
                        FrameOpts {
                            legacy_cso: ic.then_some((
                                ((dw3 >> 8) & 0xff) as usize,
                                ((dw2 >> 16) & 0xff) as usize,
                            )),
                            vle: dw2 & TXD_CMD_VLE != 0,
                            legacy: true,
                            legacy_vlan: (dw3 >> 16) as u16,
                            ..FrameOpts::default()
                        }
                    });
                }
                if len > 0 && !self.pending_bad {
                    if self.pending.len() + len > MAX_FRAME * 4 {
                        self.pending_bad = true;
                    } else {
                        let start = self.pending.len();
                        self.pending.resize(start + len, 0);
                        if dma.read(rid, addr, &mut self.pending[start..]).is_err() {
                            r.dma_aborted += 1;
                            self.pending_bad = true;
                        }
                    }
                }
                if dw2 & TXD_CMD_EOP != 0 {
                    let frame = std::mem::take(&mut self.pending);
                    let opts = self.pending_opts.take().unwrap_or_default();
                    let bad = std::mem::take(&mut self.pending_bad);
                    if bad {
                        r.dropped += 1;
                    } else {
                        r.dropped += self.finish(frame, opts, out);
                    }
                }
                if dw2 & TXD_CMD_RS != 0 && self.write_dd(rid, dma, daddr, advanced).is_ok() {
                    r.written_back += 1;
                }
            }
            self.tdh = (self.tdh + 1) % n;
        }
        if self.tdwbal & TDWBAL_HEAD_WB_EN != 0 && r.descriptors > 0 {
            let a = ((self.tdwbal & !3) as u64) | ((self.tdwbah as u64) << 32);
            if dma.write(rid, a, &self.tdh.to_le_bytes()).is_err() {
                r.dma_aborted += 1;
            }
        }
        r
    }

    fn write_dd(
        &self,
        rid: u16,
        dma: &dyn DmaSpace,
        daddr: u64,
        advanced: bool,
    ) -> Result<(), crate::dma::DmaError> {
        if advanced {
            // Write-back format: dword 3 is STA (DD in bit 0).
            dma.write(rid, daddr + 12, &TXD_STAT_DD.to_le_bytes())
        } else {
            let mut b = [0u8; 1];
            dma.read(rid, daddr + 12, &mut b)?;
            dma.write(rid, daddr + 12, &[b[0] | TXD_STAT_DD as u8])
        }
    }

    /// Applies offloads (checksums, segmentation, then VLAN tag insertion); returns the
    /// number of frames dropped.
    fn finish(&self, frame: Vec<u8>, o: FrameOpts, out: &mut Vec<Vec<u8>>) -> u32 {
        let first = out.len();
        let dropped = self.offload(frame, &o, out);
        if o.vle {
            let tag = if o.legacy {
                o.legacy_vlan
            } else {
                (self.ctx[o.ctx].vlan_macip_lens >> 16) as u16
            };
            for f in &mut out[first..] {
                insert_vlan(f, tag);
            }
        }
        dropped
    }

    fn offload(&self, mut frame: Vec<u8>, o: &FrameOpts, out: &mut Vec<Vec<u8>>) -> u32 {
        let ctx = self.ctx[o.ctx];
        if o.tse {
            return self.segment(frame, &ctx, out);
        }
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            return 1;
        }
        if let Some((css, cso)) = o.legacy_cso {
            if cso + 2 <= frame.len() && css < cso {
                frame[cso] = 0;
                frame[cso + 1] = 0;
                let c = !csum::fold(csum::sum(&frame[css..], 0));
                frame[cso..cso + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        let l3 = ctx.maclen();
        let l4 = l3 + ctx.iplen();
        if o.ixsm && ctx.ipv4() {
            csum::insert_ipv4(&mut frame, l3, ctx.iplen());
        }
        if o.txsm {
            match ctx.l4t() {
                0 => csum::insert_l4(&mut frame, l4, l4 + 6),
                1 => csum::insert_l4(&mut frame, l4, l4 + 16),
                _ => {}
            }
        }
        out.push(frame);
        0
    }

    /// TCP segmentation (TSE): splits the payload behind the MAC/IP/TCP headers into
    /// MSS-sized segments, fixing IPv4 total length, ID and checksum, TCP sequence
    /// number, flags (FIN/PSH only on the last) and checksum.
    fn segment(&self, frame: Vec<u8>, ctx: &TxContext, out: &mut Vec<Vec<u8>>) -> u32 {
        let (l3, iplen, l4len, mss) = (ctx.maclen(), ctx.iplen(), ctx.l4len(), ctx.mss());
        let hdr = l3 + iplen + l4len;
        if ctx.l4t() != 1 || mss == 0 || l4len < 20 || iplen < 20 || frame.len() <= hdr {
            return 1;
        }
        if hdr + mss > MAX_FRAME {
            return 1;
        }
        let l4 = l3 + iplen;
        let payload = &frame[hdr..];
        let seq0 = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        let flags = frame[l4 + 13];
        let ipv4 = ctx.ipv4();
        let id0 = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);
        let chunks = payload.chunks(mss).count();
        for (i, chunk) in payload.chunks(mss).enumerate() {
            let mut seg = Vec::with_capacity(hdr + chunk.len());
            seg.extend_from_slice(&frame[..hdr]);
            seg.extend_from_slice(chunk);
            let last = i + 1 == chunks;
            let seq = seq0.wrapping_add((i * mss) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                seg[l4 + 13] = flags & !(0x01 | 0x08);
            }
            let l4_total = (l4len + chunk.len()) as u32;
            let mut ph = 0u32;
            if ipv4 {
                let total = (iplen + l4len + chunk.len()) as u16;
                seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                seg[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
                csum::insert_ipv4(&mut seg, l3, iplen);
                ph = csum::sum(&seg[l3 + 12..l3 + 20], 0) + 6 + l4_total;
            } else if iplen >= 40 {
                let plen = (l4len + chunk.len()) as u16;
                seg[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
                ph = csum::sum(&seg[l3 + 8..l3 + 40], 0) + 6 + l4_total;
            }
            // Seed the checksum field with the pseudo-header sum, then complete it.
            seg[l4 + 16..l4 + 18].copy_from_slice(&csum::fold(ph).to_be_bytes());
            csum::insert_l4(&mut seg, l4, l4 + 16);
            out.push(seg);
        }
        0
    }
}

/// Inserts an 802.1Q tag (TPID 0x8100) after the source MAC address.
pub fn insert_vlan(frame: &mut Vec<u8>, tci: u16) {
    if frame.len() >= 12 {
        let t = tci.to_be_bytes();
        frame.splice(12..12, [0x81, 0x00, t[0], t[1]]);
    }
}
