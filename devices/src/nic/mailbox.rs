//! The PF/VF mailboxes (82576 datasheet, "PF-VF Mailbox" in the virtualization chapter;
//! registers P2VMAILBOX, V2PMAILBOX, VMBMEM, MBVFICR, MBVFIMR, VFLRE).
//!
//! Each VF has a 64-byte buffer (VMBMEM) shared with the PF and a lock: the PF takes it
//! by writing PFU, the VF by writing VFU; a request succeeds only while the other side
//! does not hold it (software reads the register back to check). Writes to the buffer by
//! a side that does not hold the lock are ignored and counted as misuse. A VF message
//! (REQ) sets MBVFICR.VFREQ and a VF acknowledgement (ACK) sets MBVFICR.VFACK, both
//! raising the PF's mailbox cause (ICR.VMMB) when enabled in MBVFIMR; a PF message (STS)
//! or acknowledgement (ACK) sets PFSTS / PFACK in the VF's V2PMAILBOX and raises the VF's
//! mailbox ("other") cause. PFSTS, PFACK and RSTD clear when the VF reads V2PMAILBOX.

use super::regs::*;

/// Events a mailbox access produces, for the NIC to turn into interrupts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MbxEvents {
    /// Raise the PF mailbox cause (ICR.VMMB).
    pub to_pf: bool,
    /// Raise VF n's mailbox cause.
    pub to_vf: bool,
    /// A VF message arrived (REQ) — the built-in PF agent may answer it.
    pub vf_request: bool,
}

/// One VF's mailbox.
#[derive(Debug, Clone, Default)]
pub struct Mailbox {
    pub mem: [u32; VMBMEM_WORDS],
    pub pf_owns: bool,
    pub vf_owns: bool,
    /// PFSTS | PFACK | RSTI | RSTD as seen by the VF.
    pub vf_status: u32,
}

/// All mailboxes of the NIC plus the PF-side cause registers.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    pub mb: Vec<Mailbox>,
    pub mbvficr: u32,
    pub mbvfimr: u32,
    pub vflre: u32,
    /// Accesses that broke the protocol (buffer written without the lock).
    pub misuse: u64,
}

impl Mailboxes {
    pub fn new(vfs: usize) -> Self {
        let mut m = Self {
            mb: vec![Mailbox::default(); vfs],
            mbvficr: 0,
            mbvfimr: 0,
            vflre: 0,
            misuse: 0,
        };
        m.pf_reset();
        m
    }

    /// PF reset: the VFs see "PF reset in progress" (RSTI) until the PF driver sets
    /// CTRL_EXT.PFRSTD.
    pub fn pf_reset(&mut self) {
        for mb in &mut self.mb {
            *mb = Mailbox {
                vf_status: V2P_RSTI,
                ..Mailbox::default()
            };
        }
        self.mbvficr = 0;
        self.mbvfimr = 0;
        self.vflre = 0;
    }

    /// CTRL_EXT.PFRSTD: PF ready; every VF sees RSTD and RSTI clears.
    pub fn pf_reset_done(&mut self) -> u32 {
        let mut raised = 0;
        for (i, mb) in self.mb.iter_mut().enumerate() {
            mb.vf_status = (mb.vf_status & !V2P_RSTI) | V2P_RSTD;
            raised |= 1 << i;
        }
        raised
    }

    /// A VF reset (VTCTRL.RST or FLR): its lock is released and the PF is told in VFLRE.
    pub fn vf_reset(&mut self, n: usize) -> MbxEvents {
        let Some(mb) = self.mb.get_mut(n) else {
            return MbxEvents::default();
        };
        mb.vf_owns = false;
        mb.vf_status &= V2P_RSTI;
        self.vflre |= 1 << n;
        MbxEvents {
            to_pf: true,
            ..MbxEvents::default()
        }
    }

    fn pf_irq_enabled(&self, n: usize) -> bool {
        self.mbvfimr & (1 << n) != 0
    }

    // ---- PF side ----

    pub fn pf_read_ctl(&self, n: usize) -> u32 {
        self.mb.get(n).map_or(0, |mb| {
            (if mb.vf_owns { P2V_VFU } else { 0 }) | (if mb.pf_owns { P2V_PFU } else { 0 })
        })
    }

    pub fn pf_write_ctl(&mut self, n: usize, v: u32) -> MbxEvents {
        let mut ev = MbxEvents::default();
        let Some(mb) = self.mb.get_mut(n) else {
            return ev;
        };
        if v & P2V_RVFU != 0 {
            mb.vf_owns = false;
        }
        if v & P2V_PFU != 0 {
            if !mb.vf_owns {
                mb.pf_owns = true;
            }
        } else {
            mb.pf_owns = false;
        }
        if v & P2V_STS != 0 {
            mb.vf_status |= V2P_PFSTS;
            ev.to_vf = true;
        }
        if v & P2V_ACK != 0 {
            mb.vf_status |= V2P_PFACK;
            ev.to_vf = true;
        }
        ev
    }

    pub fn pf_read_mem(&self, n: usize, w: usize) -> u32 {
        self.mb
            .get(n)
            .and_then(|mb| mb.mem.get(w).copied())
            .unwrap_or(0)
    }

    pub fn pf_write_mem(&mut self, n: usize, w: usize, v: u32) {
        match self.mb.get_mut(n) {
            Some(mb) if mb.pf_owns && w < VMBMEM_WORDS => mb.mem[w] = v,
            _ => self.misuse += 1,
        }
    }

    // ---- VF side ----

    /// V2PMAILBOX read: returns the status and clears the read-to-clear bits.
    pub fn vf_read_ctl(&mut self, n: usize) -> u32 {
        let Some(mb) = self.mb.get_mut(n) else {
            return 0;
        };
        let v = mb.vf_status
            | if mb.vf_owns { V2P_VFU } else { 0 }
            | if mb.pf_owns { V2P_PFU } else { 0 };
        mb.vf_status &= !V2P_R2C_BITS;
        v
    }

    pub fn vf_write_ctl(&mut self, n: usize, v: u32) -> MbxEvents {
        let mut ev = MbxEvents::default();
        let irq = self.pf_irq_enabled(n);
        let Some(mb) = self.mb.get_mut(n) else {
            return ev;
        };
        if v & V2P_VFU != 0 {
            if !mb.pf_owns {
                mb.vf_owns = true;
            }
        } else {
            mb.vf_owns = false;
        }
        if v & V2P_REQ != 0 {
            self.mbvficr |= 1 << (MBVFICR_VFREQ_SHIFT + n as u32);
            ev.to_pf = irq;
            ev.vf_request = true;
        }
        if v & V2P_ACK != 0 {
            self.mbvficr |= 1 << (MBVFICR_VFACK_SHIFT + n as u32);
            ev.to_pf |= irq;
        }
        ev
    }

    pub fn vf_read_mem(&self, n: usize, w: usize) -> u32 {
        self.pf_read_mem(n, w)
    }

    pub fn vf_write_mem(&mut self, n: usize, w: usize, v: u32) {
        match self.mb.get_mut(n) {
            Some(mb) if mb.vf_owns && w < VMBMEM_WORDS => mb.mem[w] = v,
            _ => self.misuse += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_arbitration_and_r2c_bits() {
        let mut m = Mailboxes::new(2);
        m.mbvfimr = 0xff;
        m.pf_reset_done();
        assert_eq!(m.vf_read_ctl(0) & (V2P_RSTD | V2P_RSTI), V2P_RSTD);
        assert_eq!(m.vf_read_ctl(0) & V2P_RSTD, 0, "RSTD is read-to-clear");
        // VF locks, PF cannot.
        m.vf_write_ctl(0, V2P_VFU);
        m.pf_write_ctl(0, P2V_PFU);
        assert_eq!(m.pf_read_ctl(0), P2V_VFU);
        m.pf_write_mem(0, 0, 0xdead);
        assert_eq!(m.misuse, 1);
        m.vf_write_mem(0, 0, 0x1);
        let ev = m.vf_write_ctl(0, V2P_REQ);
        assert!(ev.to_pf && ev.vf_request);
        assert_eq!(m.mbvficr, 1);
        // REQ without VFU released the lock; the PF takes it and answers.
        m.pf_write_ctl(0, P2V_PFU);
        assert_eq!(m.pf_read_ctl(0), P2V_PFU);
        assert_eq!(m.pf_read_mem(0, 0), 1);
        let ev = m.pf_write_ctl(0, P2V_ACK);
        assert!(ev.to_vf);
        assert_eq!(m.vf_read_ctl(0) & V2P_PFACK, V2P_PFACK);
        assert_eq!(m.vf_read_ctl(0) & V2P_PFACK, 0);
    }

    #[test]
    fn misuse_of_nonexistent_mailboxes_is_harmless() {
        let mut m = Mailboxes::new(2);
        m.pf_write_mem(7, 0, 1);
        m.vf_write_mem(0, 99, 1);
        assert_eq!(m.pf_write_ctl(9, 0xff), MbxEvents::default());
        assert_eq!(m.vf_read_ctl(9), 0);
        assert_eq!(m.misuse, 2);
        let ev = m.vf_reset(1);
        assert!(ev.to_pf);
        assert_eq!(m.vflre, 2);
    }
}
