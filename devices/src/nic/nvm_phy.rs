//! The EEPROM read interface (EERD) and the PHY behind MDIC, as far as the igb driver's
//! bring-up needs them (82576 datasheet, "EEPROM Read Register", "MDI Control Register",
//! and the NVM map: words 0–2 Ethernet address, word 0x3F checksum such that words
//! 0x00–0x3F sum to 0xBABA).

use super::regs::*;

pub const NVM_WORDS: usize = 64;
pub const NVM_CHECKSUM_WORD: usize = 0x3f;
pub const NVM_SUM: u16 = 0xbaba;

/// Builds the NVM image for `mac`.
pub fn nvm_image(mac: [u8; 6]) -> [u16; NVM_WORDS] {
    let mut w = [0u16; NVM_WORDS];
    for i in 0..3 {
        w[i] = u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
    }
    let s = w[..NVM_CHECKSUM_WORD]
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(b));
    w[NVM_CHECKSUM_WORD] = NVM_SUM.wrapping_sub(s);
    w
}

/// EERD write: returns the new EERD value (done, address, data).
pub fn eerd_access(nvm: &[u16; NVM_WORDS], v: u32) -> u32 {
    if v & EERD_START == 0 {
        return v & !EERD_DONE;
    }
    let addr = (v >> EERD_ADDR_SHIFT) & 0x3fff;
    let data = nvm.get(addr as usize).copied().unwrap_or(0xffff);
    ((data as u32) << EERD_DATA_SHIFT) | (addr << EERD_ADDR_SHIFT) | EERD_DONE
}

/// PHY registers (IEEE 802.3 clause 22): BMCR, BMSR, PHY ID (IGP03E1000_E_PHY_ID as
/// Linux's e1000_defines.h names it), autonegotiation advertisement/partner, 1000BASE-T
/// control/status. Link is up at 1000 Mb/s full duplex.
pub fn phy_defaults() -> [u16; 32] {
    let mut p = [0u16; 32];
    p[0] = 0x1140;
    p[1] = 0x796d;
    p[2] = 0x02a8;
    p[3] = 0x0390;
    p[4] = 0x0de1;
    p[5] = 0x4de1;
    p[9] = 0x0300;
    p[10] = 0x3c00;
    p
}

/// MDIC write: performs the access on PHY address 1; returns the new MDIC value.
pub fn mdic_access(phy: &mut [u16; 32], v: u32) -> u32 {
    let reg = ((v >> MDIC_REG_SHIFT) & 0x1f) as usize;
    let phy_addr = (v >> MDIC_PHY_SHIFT) & 0x1f;
    if phy_addr != 1 {
        return (v & !0xffff) | MDIC_READY | MDIC_ERROR;
    }
    match v & (3 << 26) {
        MDIC_OP_READ => (v & !0xffff) | phy[reg] as u32 | MDIC_READY,
        MDIC_OP_WRITE => {
            let mut d = v as u16;
            if reg == 0 {
                // Reset and restart-autonegotiation are self-clearing.
                d &= !(0x8000 | 0x0200);
            }
            if reg != 1 && reg != 2 && reg != 3 {
                phy[reg] = d;
            }
            v | MDIC_READY
        }
        _ => v | MDIC_READY | MDIC_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvm_checksum_and_mac() {
        let n = nvm_image([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(n.iter().fold(0u16, |a, &b| a.wrapping_add(b)), NVM_SUM);
        let r = eerd_access(&n, (1 << EERD_ADDR_SHIFT) | EERD_START);
        assert_eq!(r & EERD_DONE, EERD_DONE);
        assert_eq!(r >> 16, 0x1200);
        assert_eq!(eerd_access(&n, (0x3fff << 2) | 1) >> 16, 0xffff);
    }

    #[test]
    fn phy_read_write() {
        let mut p = phy_defaults();
        let r = mdic_access(
            &mut p,
            MDIC_OP_READ | (1 << MDIC_PHY_SHIFT) | (1 << MDIC_REG_SHIFT),
        );
        assert_eq!(r & 0xffff, 0x796d);
        assert_ne!(r & MDIC_READY, 0);
        let r = mdic_access(&mut p, MDIC_OP_READ | (2 << MDIC_PHY_SHIFT));
        assert_ne!(r & MDIC_ERROR, 0);
    }
}
