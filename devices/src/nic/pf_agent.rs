//! The built-in PF agent: answers VF mailbox requests when no guest PF driver runs, the
//! way Linux igb's PF side does (e1000_mbx.h message set): VF_RESET is answered with
//! `VF_RESET | ACK` and the VF's MAC address, after which the VF is clear to send; other
//! requests get `ACK | CTS` or `NACK | CTS`. On VF_RESET the agent also programs what a
//! PF driver would: a receive address entry for the VF's MAC with the VF's pool bit,
//! VFRE/VFTE, VMOLR (broadcast accept, long packets) and DTXSWC loopback.

use super::regs::*;
use super::switch;
use super::{Nic82576, MAX_VFS};

impl Nic82576 {
    /// The RAR entry the agent uses for VF n (from the top, as igb does).
    fn agent_rar(n: usize) -> u32 {
        let i = (RAR_ENTRIES - 1 - n) as u32;
        if i < 16 {
            RAL0 + 8 * i
        } else {
            RAL16 + 8 * (i - 16)
        }
    }

    fn agent_set_mac(&mut self, n: usize, mac: [u8; 6]) {
        self.config.vf_macs[n] = mac;
        let off = Self::agent_rar(n);
        self.pf
            .set(off, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        self.pf.set(
            off + 4,
            u32::from_le_bytes([mac[4], mac[5], 0, 0])
                | RAH_AV
                | (1 << (RAH_POOL_SHIFT + n as u32)),
        );
    }

    /// Handles the request VF `n` just posted (REQ).
    pub(super) fn agent_handle(&mut self, n: usize) {
        if n >= MAX_VFS {
            return;
        }
        // Take the message and acknowledge it, as the PF's read_mbx does.
        self.mbx.mbvficr &= !(1 << n);
        let msg = self.mbx.mb[n].mem;
        self.mbx.mb[n].vf_status |= V2P_PFACK;
        if msg[0] & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) != 0 {
            self.vf_mailbox_cause(n);
            return;
        }
        let cts = self.agent_cts & (1 << n) != 0;
        let kind = msg[0] & 0xffff;
        let mut reply = [0u32; 4];
        let len;
        if kind == VF_RESET {
            let mac = self.config.vf_macs[n];
            self.agent_set_mac(n, mac);
            let vfre = self.pf.get(VFRE) | (1 << n);
            self.pf.set(VFRE, vfre);
            let vfte = self.pf.get(VFTE) | (1 << n);
            self.pf.set(VFTE, vfte);
            let vmolr = VMOLR_BAM | VMOLR_LPE | VMOLR_STRVLAN | MAX_FRAME as u32;
            self.pf.set(VMOLR + 4 * n as u32, vmolr);
            let sw = self.pf.get(DTXSWC) | DTXSWC_LOOPBACK_EN;
            self.pf.set(DTXSWC, sw);
            self.agent_cts |= 1 << n;
            reply[0] = VF_RESET | VT_MSGTYPE_ACK;
            reply[1] = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
            reply[2] = u32::from_le_bytes([mac[4], mac[5], 0, 0]);
            reply[3] = 0;
            len = 4;
        } else if !cts {
            reply[0] = msg[0] | VT_MSGTYPE_NACK;
            len = 1;
        } else {
            let ok = match kind {
                VF_SET_MAC_ADDR => {
                    let b1 = msg[1].to_le_bytes();
                    let b2 = msg[2].to_le_bytes();
                    let mac = [b1[0], b1[1], b1[2], b1[3], b2[0], b2[1]];
                    let info = (msg[0] >> 16) & 0xff;
                    if info != 0 {
                        // MAC filter add/clear: accepted, the primary address stays.
                        true
                    } else if switch::is_multicast(&mac) || mac == [0; 6] {
                        false
                    } else {
                        self.agent_set_mac(n, mac);
                        true
                    }
                }
                VF_SET_LPE => {
                    let max = (msg[1] as usize).clamp(MIN_FRAME, MAX_FRAME) as u32;
                    let vmolr = self.pf.get(VMOLR + 4 * n as u32) & !VMOLR_RLPML_MASK;
                    self.pf.set(VMOLR + 4 * n as u32, vmolr | VMOLR_LPE | max);
                    true
                }
                // Multicast and broadcast reach every pool; VLAN filtering is not modelled.
                VF_SET_MULTICAST | VF_SET_VLAN | VF_SET_PROMISC => true,
                _ => false,
            };
            reply[0] = msg[0] | VT_MSGTYPE_CTS | if ok { VT_MSGTYPE_ACK } else { VT_MSGTYPE_NACK };
            len = 1;
        }
        let mb = &mut self.mbx.mb[n];
        mb.mem[..len].copy_from_slice(&reply[..len]);
        mb.vf_status |= V2P_PFSTS;
        self.vf_mailbox_cause(n);
    }
}
