//! Internet checksums for the offloads (RFC 1071): the receive side reports IPv4 header
//! and TCP/UDP checksum status in the descriptor; the transmit side inserts them
//! (82576 datasheet, "Receive Checksum Offloading" and "Transmit Checksum Offloading").

/// The ones' complement sum of `data` added to `acc` (not folded).
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
        if acc >= 0xffff_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [b] = chunks.remainder() {
        acc = acc.wrapping_add((*b as u32) << 8);
    }
    acc
}

/// Folds a sum to 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The parsed layers of an Ethernet frame, as far as the offloads need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub l3: usize,
    pub ihl: usize,
    pub protocol: u8,
    pub fragment: bool,
    pub l4_end: usize,
}

/// Finds an IPv4 header behind the Ethernet (optionally 802.1Q-tagged) header.
pub fn parse_ipv4(frame: &[u8]) -> Option<Layers> {
    let mut l3 = 14;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 = 18;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let vihl = *frame.get(l3)?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = ((vihl & 0xf) as usize) * 4;
    if ihl < 20 || frame.len() < l3 + ihl {
        return None;
    }
    let total = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize;
    let frag = u16::from_be_bytes([frame[l3 + 6], frame[l3 + 7]]);
    Some(Layers {
        l3,
        ihl,
        protocol: frame[l3 + 9],
        fragment: frag & 0x3fff != 0,
        l4_end: (l3 + total).min(frame.len()).max(l3 + ihl),
    })
}

/// Receive-side verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxCsum {
    pub ipv4: bool,
    pub ip_checked: bool,
    pub ip_ok: bool,
    pub tcp: bool,
    pub udp: bool,
    pub l4_checked: bool,
    pub l4_ok: bool,
}

fn pseudo_header(frame: &[u8], l: &Layers) -> u32 {
    let src = &frame[l.l3 + 12..l.l3 + 20];
    let len = (l.l4_end - (l.l3 + l.ihl)) as u32;
    sum(src, 0) + l.protocol as u32 + len
}

pub fn check_rx(frame: &[u8]) -> RxCsum {
    let mut r = RxCsum::default();
    let Some(l) = parse_ipv4(frame) else {
        return r;
    };
    r.ipv4 = true;
    r.ip_checked = true;
    r.ip_ok = fold(sum(&frame[l.l3..l.l3 + l.ihl], 0)) == 0xffff;
    if l.fragment {
        return r;
    }
    let l4 = &frame[l.l3 + l.ihl..l.l4_end];
    match l.protocol {
        6 if l4.len() >= 20 => {
            r.tcp = true;
            r.l4_checked = true;
            r.l4_ok = fold(sum(l4, pseudo_header(frame, &l))) == 0xffff;
        }
        17 if l4.len() >= 8 => {
            r.udp = true;
            // A zero UDP checksum means "not computed".
            if u16::from_be_bytes([l4[6], l4[7]]) != 0 {
                r.l4_checked = true;
                r.l4_ok = fold(sum(l4, pseudo_header(frame, &l))) == 0xffff;
            }
        }
        _ => {}
    }
    r
}

/// Inserts the IPv4 header checksum of the header at `l3`/`ihl` (IXSM).
pub fn insert_ipv4(frame: &mut [u8], l3: usize, ihl: usize) {
    if ihl < 20 || frame.len() < l3 + ihl {
        return;
    }
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let c = !fold(sum(&frame[l3..l3 + ihl], 0));
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// TXSM: the ones' complement of the sum from `start` to the end is stored at `at`. As
/// on the 82576 the pseudo-header sum is expected to be pre-loaded in the checksum field
/// by software (what Linux does for CHECKSUM_PARTIAL).
pub fn insert_l4(frame: &mut [u8], start: usize, at: usize) {
    if start >= frame.len() || at + 2 > frame.len() || at < start {
        return;
    }
    let mut c = !fold(sum(&frame[start..], 0));
    if c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let ip_len = 20 + 8 + payload.len();
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            1,
            0,
            0,
            64,
            17,
            0,
            0,
        ];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        let ulen = 8 + payload.len();
        f.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, (ulen >> 8) as u8, ulen as u8, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn tx_insertion_verifies_on_rx() {
        let mut f = udp_frame(b"hello, world");
        insert_ipv4(&mut f, 14, 20);
        // Pre-load the pseudo-header sum as Linux does.
        let l = parse_ipv4(&f).unwrap();
        let ph = fold(pseudo_header(&f, &l));
        f[40..42].copy_from_slice(&ph.to_be_bytes());
        insert_l4(&mut f, 34, 40);
        let r = check_rx(&f);
        assert!(r.ip_ok && r.udp && r.l4_checked && r.l4_ok, "{r:?}");
        f[45] ^= 1;
        let r = check_rx(&f);
        assert!(r.ip_ok && !r.l4_ok);
        f[15] ^= 1;
        assert!(!check_rx(&f).ip_ok);
    }

    #[test]
    fn malformed_headers_do_not_panic() {
        for n in 0..40 {
            let mut f = udp_frame(b"x");
            f.truncate(n);
            let _ = check_rx(&f);
            insert_ipv4(&mut f, 14, 20);
            insert_l4(&mut f, 34, 40);
        }
        let mut f = udp_frame(b"x");
        f[16] = 0xff; // total length beyond the frame
        let _ = check_rx(&f);
    }
}
