//! The posted-interrupt descriptor: 64 bytes, 64-byte aligned, that a posting agent (VT-d,
//! or a CPU sending a posted IPI) and a vCPU share. Intel SDM vol. 3 §30.6 (posted-interrupt
//! processing) and the Intel VT-d specification §5.2 / §9.12 (posted-interrupt descriptor).
//!
//! | bytes  | field                                                    |
//! |--------|----------------------------------------------------------|
//! | 0–31   | PIR: 256 posted-interrupt request bits, bit n = vector n |
//! | 32 b0  | ON: outstanding notification                             |
//! | 32 b1  | SN: suppress notification                                |
//! | 34     | NV: notification vector                                  |
//! | 36–39  | NDST: notification destination (APIC ID)                 |
//! | 40–63  | reserved                                                 |
//!
//! The descriptor is updated only with atomic read-modify-write operations, since a device
//! thread posts while a vCPU thread processes. The same type overlays guest memory (a guest
//! programming a posted IRTE) and VMM-owned memory.

use std::sync::atomic::{AtomicU64, Ordering};

/// Size of a descriptor in bytes; also its required alignment.
pub const PID_SIZE: usize = 64;
/// Control word (bytes 32–39): ON, bit 0.
pub const PID_CTL_ON: u64 = 1 << 0;
/// Control word: SN, bit 1.
pub const PID_CTL_SN: u64 = 1 << 1;
/// Control word: NV, bits 23:16 (byte 34).
pub const PID_CTL_NV_SHIFT: u32 = 16;
pub const PID_CTL_NV_MASK: u64 = 0xff << PID_CTL_NV_SHIFT;
/// Control word: NDST, bits 63:32 (bytes 36–39).
pub const PID_CTL_NDST_SHIFT: u32 = 32;
pub const PID_CTL_NDST_MASK: u64 = 0xffff_ffff << PID_CTL_NDST_SHIFT;

/// What a post did, as the posting agent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// ON went from 0 to 1: send notification vector `nv` to APIC `ndst` (the raw NDST field:
    /// in xAPIC mode the ID sits in bits 15:8).
    Notify { nv: u8, ndst: u32 },
    /// The request is in PIR; SN held the notification back (URG was clear).
    Suppressed,
    /// The request is in PIR; a notification was already outstanding (ON was set).
    AlreadyOutstanding,
}

/// A posted-interrupt descriptor. See the module documentation for the layout.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct PostedInterruptDescriptor {
    pir: [AtomicU64; 4],
    control: AtomicU64,
    reserved: [AtomicU64; 3],
}

const _: () = assert!(std::mem::size_of::<PostedInterruptDescriptor>() == PID_SIZE);
const _: () = assert!(std::mem::align_of::<PostedInterruptDescriptor>() == PID_SIZE);

/// The NDST encoding of an APIC ID: the full 32-bit ID in x2APIC mode, `id << 8` (bits 15:8)
/// in xAPIC mode.
pub const fn ndst_for(apic_id: u32, x2apic: bool) -> u32 {
    if x2apic {
        apic_id
    } else {
        (apic_id << 8) & 0xff00
    }
}

impl PostedInterruptDescriptor {
    /// A descriptor with empty PIR, ON and SN clear, and the given notification target.
    pub fn new(nv: u8, ndst: u32) -> Self {
        let pid = Self::default();
        pid.set_notification(nv, ndst);
        pid
    }

    /// Views 64 bytes at `ptr` as a descriptor.
    ///
    /// # Safety
    /// `ptr` must be 64-byte aligned and valid for reads and writes of 64 bytes for `'a`,
    /// and that memory must only be accessed atomically (or by code that tolerates
    /// concurrent atomic updates, such as a guest) while the reference lives.
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a Self {
        debug_assert_eq!(ptr as usize % PID_SIZE, 0);
        // SAFETY: the caller guarantees alignment, size and lifetime; every field is an
        // atomic integer, valid for any bit pattern.
        unsafe { &*(ptr as *const Self) }
    }

    /// Posts `vector`: sets its PIR bit, then sets ON unless SN is set (`urgent` overrides
    /// SN), atomically, as VT-d does for a posted-format IRTE (URG = `urgent`).
    pub fn post(&self, vector: u8, urgent: bool) -> PostOutcome {
        let word = usize::from(vector >> 6);
        let bit = 1u64 << (vector & 63);
        self.pir[word].fetch_or(bit, Ordering::SeqCst);
        let mut control = self.control.load(Ordering::SeqCst);
        loop {
            if control & PID_CTL_SN != 0 && !urgent {
                return PostOutcome::Suppressed;
            }
            // A compare-exchange even when ON is already set, so that a vCPU's later
            // clearing of ON is ordered after this post's PIR update.
            match self.control.compare_exchange_weak(
                control,
                control | PID_CTL_ON,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(previous) if previous & PID_CTL_ON != 0 => {
                    return PostOutcome::AlreadyOutstanding
                }
                Ok(previous) => {
                    return PostOutcome::Notify {
                        nv: ((previous & PID_CTL_NV_MASK) >> PID_CTL_NV_SHIFT) as u8,
                        ndst: (previous >> PID_CTL_NDST_SHIFT) as u32,
                    }
                }
                Err(current) => control = current,
            }
        }
    }

    /// Posted-interrupt processing (SDM §30.6, steps 1–2): clears ON, then takes and clears
    /// PIR, returning the 256 request bits for the caller to OR into VIRR.
    pub fn process(&self) -> [u64; 4] {
        self.control.fetch_and(!PID_CTL_ON, Ordering::SeqCst);
        self.take_pir()
    }

    /// Takes and clears PIR without touching ON (a VMM syncing PIR of a descriptor whose
    /// notifications were suppressed). A word that reads zero is not swapped: a request
    /// posted into it after the read is left in PIR, and its poster, which sets ON after
    /// the PIR bit, sees ON clear (when called from `process`) and notifies again.
    pub fn take_pir(&self) -> [u64; 4] {
        std::array::from_fn(|i| {
            if self.pir[i].load(Ordering::SeqCst) == 0 {
                0
            } else {
                self.pir[i].swap(0, Ordering::SeqCst)
            }
        })
    }

    /// Whether vector `vector` is requested in PIR.
    pub fn pir_bit(&self, vector: u8) -> bool {
        self.pir[usize::from(vector >> 6)].load(Ordering::SeqCst) & (1 << (vector & 63)) != 0
    }

    /// Whether PIR holds any request.
    pub fn pir_pending(&self) -> bool {
        self.pir.iter().any(|w| w.load(Ordering::SeqCst) != 0)
    }

    /// A vCPU has a posted interrupt pending when ON is set, or SN is set and PIR is not
    /// empty (the check KVM makes before blocking a vCPU).
    pub fn has_pending(&self) -> bool {
        let control = self.control.load(Ordering::SeqCst);
        control & PID_CTL_ON != 0 || (control & PID_CTL_SN != 0 && self.pir_pending())
    }

    pub fn on(&self) -> bool {
        self.control.load(Ordering::SeqCst) & PID_CTL_ON != 0
    }

    pub fn sn(&self) -> bool {
        self.control.load(Ordering::SeqCst) & PID_CTL_SN != 0
    }

    /// Sets or clears SN (the VMM does so around preemption).
    pub fn set_sn(&self, suppress: bool) {
        if suppress {
            self.control.fetch_or(PID_CTL_SN, Ordering::SeqCst);
        } else {
            self.control.fetch_and(!PID_CTL_SN, Ordering::SeqCst);
        }
    }

    pub fn nv(&self) -> u8 {
        ((self.control.load(Ordering::SeqCst) & PID_CTL_NV_MASK) >> PID_CTL_NV_SHIFT) as u8
    }

    pub fn ndst(&self) -> u32 {
        (self.control.load(Ordering::SeqCst) >> PID_CTL_NDST_SHIFT) as u32
    }

    /// Sets NV and NDST atomically, leaving ON and SN as they are (KVM retargets the
    /// descriptor this way when a vCPU migrates or blocks).
    pub fn set_notification(&self, nv: u8, ndst: u32) {
        let _ = self
            .control
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some(
                    (c & !(PID_CTL_NV_MASK | PID_CTL_NDST_MASK))
                        | (u64::from(nv) << PID_CTL_NV_SHIFT)
                        | (u64::from(ndst) << PID_CTL_NDST_SHIFT),
                )
            });
    }

    /// The raw control word (bytes 32–39), for tracing and tests.
    pub fn control_word(&self) -> u64 {
        self.control.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let pid = PostedInterruptDescriptor::new(0xf2, 0x1234_5678);
        pid.post(0x41, false);
        let bytes: [u8; 64] = unsafe { std::mem::transmute_copy(&pid) };
        assert_eq!(bytes[0x41 / 8], 1 << (0x41 % 8), "PIR bit n = vector n");
        assert_eq!(bytes[32] & 1, 1, "ON is byte 32 bit 0");
        assert_eq!(bytes[34], 0xf2, "NV is byte 34");
        assert_eq!(
            u32::from_le_bytes(bytes[36..40].try_into().unwrap()),
            0x1234_5678
        );
    }

    #[test]
    fn on_goes_zero_to_one_once() {
        let pid = PostedInterruptDescriptor::new(0xf2, 3);
        assert_eq!(
            pid.post(0x30, false),
            PostOutcome::Notify { nv: 0xf2, ndst: 3 }
        );
        assert_eq!(pid.post(0x31, false), PostOutcome::AlreadyOutstanding);
        let pir = pid.process();
        assert_eq!(pir[0], (1 << 0x30) | (1 << 0x31));
        assert!(!pid.on());
        assert!(!pid.pir_pending());
    }

    #[test]
    fn sn_suppresses_and_urgent_overrides() {
        let pid = PostedInterruptDescriptor::new(0xf2, 0);
        pid.set_sn(true);
        assert_eq!(pid.post(0x50, false), PostOutcome::Suppressed);
        assert!(!pid.on());
        assert!(pid.has_pending(), "SN with a non-empty PIR is pending");
        assert_eq!(
            pid.post(0x51, true),
            PostOutcome::Notify { nv: 0xf2, ndst: 0 }
        );
        assert!(pid.on() && pid.sn());
        assert_eq!(pid.post(0x52, true), PostOutcome::AlreadyOutstanding);
    }

    #[test]
    fn retargeting_keeps_on_and_sn() {
        let pid = PostedInterruptDescriptor::new(0xf2, 1);
        pid.set_sn(true);
        pid.post(0x60, true);
        pid.set_notification(0xf1, ndst_for(7, false));
        assert!(pid.on() && pid.sn());
        assert_eq!((pid.nv(), pid.ndst()), (0xf1, 0x700));
    }
}
