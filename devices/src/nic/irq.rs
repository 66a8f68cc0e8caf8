//! Interrupt causes: queue causes through IVAR, "other" causes through ICR/IVAR_MISC, the
//! VF mailbox cause, and signalling due vectors through MSI-X (or MSI on the PF).

use super::*;

impl Nic82576 {
    // ---- interrupts ----

    /// An "other" cause in ICR (mailbox, link): raises the vector IVAR_MISC (byte 1)
    /// names when enabled in IMS.
    pub(super) fn pf_other_cause(&mut self, bits: u32) {
        self.pf.icr |= bits;
        if bits & self.pf.ims != 0 {
            self.pf_other_vector();
        }
    }

    pub(super) fn pf_other_vector(&mut self) {
        match ivar_vector(self.pf.get(IVAR_MISC), 1) {
            Some(v) => self.pf.intr.cause(1 << v),
            // Non-MSI-X mode: ICR & IMS raise the function's single interrupt.
            None if self.pf.get(GPIE) & GPIE_MSIX_MODE == 0 => self.pf.icr_irq = true,
            None => {}
        }
    }

    /// VF n's mailbox cause: the vector in VTIVAR_MISC byte 0.
    pub(super) fn vf_mailbox_cause(&mut self, n: usize) {
        if n >= self.active_vfs as usize {
            return;
        }
        let vf = &mut self.vfs[n];
        if let Some(v) = ivar_vector(vf.get(IVAR_MISC), 0) {
            vf.intr.cause(1 << v);
        }
    }

    /// A queue's receive or transmit cause, mapped to a vector by its owner's IVAR.
    pub(super) fn queue_cause(&mut self, q: usize, tx: bool) {
        match self.owner(q) {
            Function::Pf if self.pf.get(GPIE) & GPIE_MSIX_MODE == 0 => {
                // Without MSI-X mode the queue causes are reported in ICR (what igb's
                // MSI handler reads).
                self.pf_other_cause(if tx { ICR_TXDW } else { ICR_RXT0 });
            }
            Function::Pf => {
                let ivar = self.pf.get(IVAR0 + 4 * (q as u32 & 7));
                let byte = if q & 8 != 0 { 2 } else { 0 } + tx as u32;
                if let Some(v) = ivar_vector(ivar, byte) {
                    self.pf.intr.cause(1 << v);
                }
            }
            Function::Vf(n) => {
                let vf = &mut self.vfs[n as usize];
                let k = (q >> 3) as u32;
                if let Some(v) = ivar_vector(vf.get(IVAR0), 2 * k + tx as u32) {
                    vf.intr.cause(1 << v);
                }
            }
        }
    }

    /// Sends every interrupt due at `now`.
    pub(super) fn service(&mut self, now: u64) {
        if self.pf.icr_irq && now >= self.pf.icr_next_allowed() {
            self.pf.icr_irq = false;
            self.pf.icr_last_fire = Some(now);
            self.events.interrupt(Function::Pf, 0);
            self.pf_signal(0);
        }
        let auto = self.pf.get(GPIE) & GPIE_EIAME != 0;
        let due = self.pf.intr.take_due(now, auto);
        for v in bits(due) {
            self.events.interrupt(Function::Pf, v);
            self.pf_signal(v);
        }
        for n in 0..self.active_vfs as usize {
            let due = self.vfs[n].intr.take_due(now, true);
            if due == 0 {
                continue;
            }
            let rid = self.rid(Function::Vf(n as u16));
            let vf = &mut self.vfs[n];
            let ctl = MsixControl::from_config(&vf.cfg, MSIX_CAP);
            for v in bits(due) {
                self.events.interrupt(Function::Vf(n as u16), v);
                vf.msix.signal(v, ctl, rid, &*self.sink);
            }
        }
    }

    pub(super) fn pf_signal(&mut self, v: usize) {
        let ctl = MsixControl::from_config(&self.pf.cfg, MSIX_CAP);
        if ctl.enabled {
            self.pf.msix.signal(v, ctl, self.pf_rid, &*self.sink);
            return;
        }
        let st = caps::msi_state(&self.pf.cfg, MSI_CAP);
        if !st.enabled || !self.pf.cfg.bus_master() {
            return;
        }
        if st.masked {
            caps::msi_set_pending(&mut self.pf.cfg, MSI_CAP, true);
        } else {
            self.pf.msix.sent += 1;
            self.sink
                .send_msi(MsiMessage::new(self.pf_rid, st.address, st.data));
        }
    }
}
