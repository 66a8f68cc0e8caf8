//! Hybrid interrupt-controller virtualization (ETRI, 2016): per interrupt source (a PCI
//! function, by requester ID), partial virtualization while one guest owns it — its posted
//! interrupts go straight to the guest, no trap — and full virtualization once others share
//! it: the VMM traps each interrupt, handles it, and injects it into every sharer. The
//! switch is automatic, both ways.
//!
//! A guest reads each source's mode through the virtual interrupt configuration register,
//! MSR [`MSR_VICR`] (advertised in EDX of CPUID leaf 0x40000100): write a requester ID to
//! select the source; a read returns bits 15:0 the selected requester ID, bits 23:16 the
//! number of other sharers, bit 31 the mode (0 partial/posted, 1 full/trapped).
//!
//! Limitation: Postbox runs one VM per process, so the other sharers here are stand-ins —
//! VMM-side consumers attached by `--share-source RID:START_MS:END_MS` — which receive and
//! count their copies. The mode table, the switching, the trapped delivery into the guest
//! and the register are real; a second VM is not.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::dispatch::{MsrResult, VcpuDevices};

pub const MSR_VICR: u32 = 0x4000_0101;
const VICR_SHARERS_SHIFT: u32 = 16;
const VICR_TRAPPED: u64 = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMode {
    /// Partial virtualization: posted straight to the owner.
    Posted,
    /// Full virtualization: trapped by the VMM and injected into each sharer.
    Trapped,
}

/// `--share-source RID:START_MS:END_MS`: a stand-in sharer attaches to the source with
/// requester ID RID (hex allowed with 0x) at START_MS and detaches at END_MS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareSchedule {
    pub requester_id: u16,
    pub start: Duration,
    pub end: Duration,
}

impl FromStr for ShareSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [rid, start, end] = parts.as_slice() else {
            return Err(format!(
                "--share-source {s:?}: expected RID:START_MS:END_MS"
            ));
        };
        let rid = match rid.strip_prefix("0x") {
            Some(hex) => u16::from_str_radix(hex, 16),
            None => rid.parse(),
        }
        .map_err(|_| format!("--share-source {s:?}: bad requester ID {rid:?}"))?;
        let ms = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("--share-source {s:?}: {v:?} is not a number of ms"))
        };
        let (start, end) = (ms(start)?, ms(end)?);
        if end <= start {
            return Err(format!(
                "--share-source {s:?}: the end must come after the start"
            ));
        }
        Ok(Self {
            requester_id: rid,
            start,
            end,
        })
    }
}

#[derive(Debug, Default)]
pub struct HybridCounters {
    pub straight: AtomicU64,
    pub trapped: AtomicU64,
    /// Copies injected into the stand-in sharers.
    pub copies: AtomicU64,
    pub switches: AtomicU64,
}

/// The per-source mode table.
#[derive(Debug, Default)]
pub struct Hybrid {
    sharers: Mutex<HashMap<u16, u32>>,
    /// The requester ID the VICR reads report, per vCPU.
    selected: Mutex<HashMap<usize, u16>>,
    pub counters: HybridCounters,
}

impl Hybrid {
    pub fn mode(&self, requester_id: u16) -> SourceMode {
        let sharers = self.sharers(requester_id);
        if sharers == 0 {
            SourceMode::Posted
        } else {
            SourceMode::Trapped
        }
    }

    fn sharers(&self, requester_id: u16) -> u32 {
        *self
            .sharers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&requester_id)
            .unwrap_or(&0)
    }

    /// Another sharer attaches; the first switches the source to trapped delivery.
    pub fn share(&self, requester_id: u16) {
        let mut map = self.sharers.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(requester_id).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.counters.switches.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                requester_id,
                "hybrid: source shared, switched to trapped delivery"
            );
        }
    }

    /// A sharer detaches; the last switches the source back to posted delivery.
    pub fn unshare(&self, requester_id: u16) {
        let mut map = self.sharers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&requester_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&requester_id);
                self.counters.switches.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    requester_id,
                    "hybrid: sharing ended, back to posted delivery"
                );
            }
        }
    }

    /// A trapped interrupt of `requester_id`: the copies for the other sharers.
    pub fn deliver_copies(&self, requester_id: u16) {
        self.counters.trapped.fetch_add(1, Ordering::Relaxed);
        self.counters
            .copies
            .fetch_add(u64::from(self.sharers(requester_id)), Ordering::Relaxed);
    }

    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "hybrid: straight {}, trapped {}, copies to other sharers {}, mode switches {}",
            g(&self.counters.straight),
            g(&self.counters.trapped),
            g(&self.counters.copies),
            g(&self.counters.switches)
        )
    }
}

impl VcpuDevices for Hybrid {
    fn rdmsr(&self, vcpu: usize, msr: u32) -> Option<MsrResult> {
        if msr != MSR_VICR {
            return None;
        }
        let rid = *self
            .selected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vcpu)
            .unwrap_or(&0);
        let sharers = u64::from(self.sharers(rid).min(0xff));
        let mode = if self.mode(rid) == SourceMode::Trapped {
            VICR_TRAPPED
        } else {
            0
        };
        Some(MsrResult::Ok(
            u64::from(rid) | (sharers << VICR_SHARERS_SHIFT) | mode,
        ))
    }

    fn wrmsr(&self, vcpu: usize, msr: u32, value: u64) -> Option<MsrResult> {
        if msr != MSR_VICR {
            return None;
        }
        if value >> 16 != 0 {
            return Some(MsrResult::GeneralProtection);
        }
        self.selected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vcpu, value as u16);
        Some(MsrResult::Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_sharing_both_ways() {
        let h = Hybrid::default();
        assert_eq!(h.mode(0x88), SourceMode::Posted);
        h.share(0x88);
        h.share(0x88);
        assert_eq!(h.mode(0x88), SourceMode::Trapped);
        assert_eq!(h.mode(0x8a), SourceMode::Posted, "per source");
        h.deliver_copies(0x88);
        assert_eq!(h.counters.copies.load(Ordering::Relaxed), 2);
        h.unshare(0x88);
        assert_eq!(h.mode(0x88), SourceMode::Trapped);
        h.unshare(0x88);
        assert_eq!(h.mode(0x88), SourceMode::Posted);
        h.unshare(0x88);
        assert_eq!(h.counters.switches.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn vicr_reports_the_selected_source() {
        let h = Hybrid::default();
        assert_eq!(
            h.wrmsr(0, MSR_VICR, 0x1_0000),
            Some(MsrResult::GeneralProtection)
        );
        assert_eq!(h.wrmsr(0, MSR_VICR, 0x88), Some(MsrResult::Ok(0)));
        assert_eq!(h.rdmsr(0, MSR_VICR), Some(MsrResult::Ok(0x88)));
        h.share(0x88);
        assert_eq!(
            h.rdmsr(0, MSR_VICR),
            Some(MsrResult::Ok(0x8000_0088 | (1 << 16)))
        );
        assert_eq!(
            h.rdmsr(1, MSR_VICR),
            Some(MsrResult::Ok(0)),
            "per-vCPU selection"
        );
        assert_eq!(h.rdmsr(0, 0x10), None);
    }

    #[test]
    fn schedule_parses() {
        let s: ShareSchedule = "0x100:50:150".parse().unwrap();
        assert_eq!(s.requester_id, 0x100);
        assert_eq!(
            (s.start, s.end),
            (Duration::from_millis(50), Duration::from_millis(150))
        );
        assert!("0x100:150:50".parse::<ShareSchedule>().is_err());
        assert!("zz:1:2".parse::<ShareSchedule>().is_err());
    }
}
