//! A receive queue (82576 datasheet, "Receive Functionality": receive descriptor ring,
//! legacy, advanced one-buffer and header-split descriptors, write-back). Header split
//! places the Ethernet/IPv4/TCP-or-UDP headers (Ethernet only for other frames) in the
//! header buffer, capped at SRRCTL.BSIZEHEADER.

use super::csum;
use super::regs::*;
use crate::dma::DmaSpace;

/// One receive queue's registers and ring state.
#[derive(Debug, Clone, Default)]
pub struct RxQueue {
    pub rdbal: u32,
    pub rdbah: u32,
    pub rdlen: u32,
    pub srrctl: u32,
    pub rdh: u32,
    pub rdt: u32,
    pub rxdctl: u32,
    /// RQDPC: frames dropped for lack of descriptors (read-clear).
    pub rqdpc: u32,
}

/// What became of a frame offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxOutcome {
    Delivered {
        descriptors: u32,
    },
    /// Queue disabled or ring not configured.
    Disabled,
    /// Not enough descriptors between head and tail (or tail/head outside the ring).
    NoDescriptors,
    /// A descriptor or buffer access was aborted (outside guest memory / translation).
    DmaAborted,
}

/// Offload settings that apply to a delivery.
#[derive(Debug, Clone, Copy)]
pub struct RxParams {
    /// Buffer size from RCTL when SRRCTL.BSIZEPACKET is 0.
    pub rctl_bsize: u32,
    pub ip_csum: bool,
    pub l4_csum: bool,
    /// Strip an 802.1Q tag into the descriptor (PF: CTRL.VME; VF: VMOLR.STRVLAN).
    pub strip_vlan: bool,
}

impl RxQueue {
    pub fn base(&self) -> u64 {
        (self.rdbal as u64) | ((self.rdbah as u64) << 32)
    }

    /// Ring size in descriptors.
    pub fn count(&self) -> u32 {
        self.rdlen / DESC_SIZE as u32
    }

    pub fn enabled(&self) -> bool {
        self.rxdctl & QUEUE_ENABLE != 0 && self.count() > 0
    }

    pub fn read_reg(&mut self, off: u32) -> u32 {
        match off {
            RDBAL => self.rdbal,
            RDBAH => self.rdbah,
            RDLEN => self.rdlen,
            SRRCTL => self.srrctl,
            RDH => self.rdh,
            RDT => self.rdt,
            RXDCTL => self.rxdctl,
            RQDPC => std::mem::take(&mut self.rqdpc),
            _ => 0,
        }
    }

    pub fn write_reg(&mut self, off: u32, v: u32) {
        match off {
            // Base 128-byte aligned, length a multiple of 128 bytes (datasheet RDBAL,
            // RDLEN: low bits ignored), 20-bit length field.
            RDBAL => self.rdbal = v & !0x7f,
            RDBAH => self.rdbah = v,
            RDLEN => self.rdlen = v & 0x000f_ff80,
            SRRCTL => self.srrctl = v,
            RDH => self.rdh = v & 0xffff,
            RDT => self.rdt = v & 0xffff,
            RXDCTL => self.rxdctl = v,
            _ => {}
        }
    }

    /// Descriptors owned by hardware (between head and tail); 0 when head or tail lies
    /// outside the ring (the queue then stalls rather than touching memory beyond it).
    pub fn available(&self) -> u32 {
        let n = self.count();
        if n == 0 || self.rdh >= n || self.rdt >= n {
            return 0;
        }
        (self.rdt + n - self.rdh) % n
    }

    fn buffer_size(&self, p: &RxParams) -> usize {
        let b = self.srrctl & SRRCTL_BSIZEPKT_MASK;
        if b != 0 {
            b as usize * 1024
        } else {
            p.rctl_bsize as usize
        }
    }

    /// SRRCTL.DESCTYPE header split (010b) or header split always (101b).
    fn header_split(&self) -> bool {
        matches!(
            (self.srrctl & SRRCTL_DESCTYPE_MASK) >> SRRCTL_DESCTYPE_SHIFT,
            2 | 5
        )
    }

    /// SRRCTL.BSIZEHEADER, bits 11:8 in 64-byte units.
    fn header_buffer_size(&self) -> usize {
        (((self.srrctl >> 8) & 0xf) as usize) * 64
    }

    fn advanced(&self) -> bool {
        self.srrctl & SRRCTL_DESCTYPE_MASK != SRRCTL_DESCTYPE_LEGACY
    }

    /// Writes `frame` into the ring at the head, spanning descriptors when it is larger
    /// than one buffer, writes the descriptors back (DD, EOP on the last, length,
    /// checksum status) and advances the head.
    pub fn receive(
        &mut self,
        frame: &[u8],
        rid: u16,
        dma: &dyn DmaSpace,
        p: &RxParams,
    ) -> RxOutcome {
        if !self.enabled() {
            return RxOutcome::Disabled;
        }
        let stripped;
        let mut vlan = None;
        let frame = if p.strip_vlan && frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
            vlan = Some(u16::from_be_bytes([frame[14], frame[15]]));
            stripped = [&frame[..12], &frame[16..]].concat();
            &stripped[..]
        } else {
            frame
        };
        let bsize = self.buffer_size(p).max(256);
        // Header split: the protocol headers go to the header buffer of the first
        // descriptor, the rest to the packet buffers.
        let hlen = if self.header_split() {
            header_len(frame)
                .min(self.header_buffer_size())
                .min(frame.len())
        } else {
            0
        };
        let (header, payload) = frame.split_at(hlen);
        let needed = payload.len().div_ceil(bsize).max(1) as u32;
        if self.available() < needed {
            self.rqdpc = self.rqdpc.wrapping_add(1);
            return RxOutcome::NoDescriptors;
        }
        let cs = if p.ip_csum || p.l4_csum {
            csum::check_rx(frame)
        } else {
            csum::RxCsum::default()
        };
        let n = self.count();
        let mut head = self.rdh;
        let mut chunks = payload.chunks(bsize);
        for i in 0..needed {
            let chunk = chunks.next().unwrap_or(&[]);
            let first = i == 0;
            let last = i + 1 == needed;
            let daddr = self.base().wrapping_add(head as u64 * DESC_SIZE);
            let mut desc = [0u8; 16];
            if dma.read(rid, daddr, &mut desc).is_err() {
                return RxOutcome::DmaAborted;
            }
            let buf = u64::from_le_bytes(desc[0..8].try_into().unwrap_or([0; 8]));
            let hdr_buf = u64::from_le_bytes(desc[8..16].try_into().unwrap_or([0; 8]));
            if first && !header.is_empty() && dma.write(rid, hdr_buf, header).is_err() {
                return RxOutcome::DmaAborted;
            }
            if dma.write(rid, buf, chunk).is_err() {
                return RxOutcome::DmaAborted;
            }
            let mut wb = if self.advanced() {
                advanced_writeback(chunk.len(), last, &cs, p)
            } else {
                legacy_writeback(buf, chunk, last, &cs, p)
            };
            if first && self.header_split() {
                // hdr_info: header length bits 14:5, SPH bit 15 (split done).
                let hi = ((hlen as u32) << RXDADV_HDRBUFLEN_SHIFT) & RXDADV_HDRBUFLEN_MASK
                    | if hlen > 0 { RXDADV_SPH } else { 0 };
                wb[2..4].copy_from_slice(&(hi as u16).to_le_bytes());
            }
            if let (Some(tci), true) = (vlan, last) {
                // VP status (bit 3 of the status field) and the tag: advanced write-back
                // dword 3 bits 31:16, legacy "special" bytes 14–15.
                wb[if self.advanced() { 8 } else { 12 }] |= RXD_STAT_VP as u8;
                wb[14..16].copy_from_slice(&tci.to_le_bytes());
            }
            if dma.write(rid, daddr, &wb).is_err() {
                return RxOutcome::DmaAborted;
            }
            head = (head + 1) % n;
            self.rdh = head;
        }
        RxOutcome::Delivered {
            descriptors: needed,
        }
    }
}

fn status_bits(cs: &csum::RxCsum, p: &RxParams) -> (u32, bool, bool) {
    let mut st = 0;
    let mut ipe = false;
    let mut l4e = false;
    if p.ip_csum && cs.ip_checked {
        st |= RXD_STAT_IPCS;
        ipe = !cs.ip_ok;
    }
    if p.l4_csum && cs.l4_checked {
        st |= if cs.tcp {
            RXD_STAT_TCPCS
        } else {
            RXD_STAT_UDPCS
        };
        l4e = !cs.l4_ok;
    }
    (st, ipe, l4e)
}

/// Advanced one-buffer write-back: packet type, status/error, length.
fn advanced_writeback(len: usize, last: bool, cs: &csum::RxCsum, p: &RxParams) -> [u8; 16] {
    let mut wb = [0u8; 16];
    let mut pkt = 0u32;
    if cs.ipv4 {
        pkt |= RXDADV_PKTTYPE_IPV4;
    }
    if cs.tcp {
        pkt |= RXDADV_PKTTYPE_TCP;
    }
    if cs.udp {
        pkt |= RXDADV_PKTTYPE_UDP;
    }
    let mut st = RXD_STAT_DD;
    if last {
        st |= RXD_STAT_EOP;
        let (bits, ipe, l4e) = status_bits(cs, p);
        st |= bits;
        if ipe {
            st |= RXDEXT_STATERR_IPE;
        }
        if l4e {
            st |= RXDEXT_STATERR_TCPE;
        }
    }
    wb[0..4].copy_from_slice(&pkt.to_le_bytes());
    wb[8..12].copy_from_slice(&st.to_le_bytes());
    wb[12..14].copy_from_slice(&(len as u16).to_le_bytes());
    wb
}

/// Legacy write-back: buffer address kept, length, packet checksum, status, errors.
fn legacy_writeback(
    buf: u64,
    chunk: &[u8],
    last: bool,
    cs: &csum::RxCsum,
    p: &RxParams,
) -> [u8; 16] {
    let mut wb = [0u8; 16];
    wb[0..8].copy_from_slice(&buf.to_le_bytes());
    wb[8..10].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
    // Packet checksum: ones' complement sum from byte 14 (RXCSUM.PCSS default is 0 on
    // reset; Linux sets 14 on the legacy path).
    let pcs = csum::fold(csum::sum(chunk.get(14..).unwrap_or(&[]), 0));
    wb[10..12].copy_from_slice(&pcs.to_le_bytes());
    let mut st = RXD_STAT_DD as u8;
    let mut err = 0u8;
    if last {
        st |= RXD_STAT_EOP as u8;
        let (bits, ipe, l4e) = status_bits(cs, p);
        st |= bits as u8;
        if ipe {
            err |= RXD_ERR_IPE;
        }
        if l4e {
            err |= RXD_ERR_TCPE;
        }
    }
    wb[12] = st;
    wb[13] = err;
    wb
}

/// Length of the headers a header split separates: Ethernet (+ 802.1Q), then IPv4 and
/// TCP/UDP when present and unfragmented.
fn header_len(frame: &[u8]) -> usize {
    let l2 = if frame.get(12..14) == Some(&[0x81, 0x00]) {
        18
    } else {
        14
    };
    let Some(l) = csum::parse_ipv4(frame) else {
        return l2.min(frame.len());
    };
    let l4 = l.l3 + l.ihl;
    if l.fragment {
        return l4;
    }
    match l.protocol {
        6 => frame
            .get(l4 + 12)
            .map_or(l4, |b| (l4 + ((b >> 4) as usize) * 4).min(frame.len())),
        17 => (l4 + 8).min(frame.len()),
        _ => l4,
    }
}
