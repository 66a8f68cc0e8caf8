//! Hybrid interrupt-controller virtualization (ETRI, 2016): per interrupt source (a PCI
//! function, by requester ID), partial virtualization while one guest owns it — its posted
//! interrupts go straight to the guest, no trap — and full virtualization once others share
//! it: the VMM traps each interrupt, handles it, and injects it into every sharer. The
//! switch is automatic, both ways.
//!
//! A guest reads each source's mode through the virtual interrupt configuration register,
//! MSR [`MSR_VICR`] (advertised in EDX of CPUID leaf 0x40000100):
//! - write `rid`: select the source `rid`; a read then returns bits 15:0 the selected
//!   requester ID, bits 23:16 the number of other sharers, bit 31 the mode (0 partial /
//!   posted, 1 full / trapped);
//! - write `rid | vector << 16 | 1 << 31`: this VM shares source `rid` (owned by another VM
//!   of the same [`ShareHub`]) and receives its interrupts as `vector` on vCPU 0;
//! - write `rid | 1 << 30`: this VM stops sharing it.
//!
//! Sharers are other VMs of the same process joined by a [`ShareHub`] (`vmm run
//! --share-with KERNEL` boots one next to the main VM), or stand-ins attached by
//! `--share-source RID:START_MS:END_MS` that only receive and count their copies.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dispatch::{MsrResult, VcpuDevices};

pub const MSR_VICR: u32 = 0x4000_0101;
const VICR_SHARERS_SHIFT: u32 = 16;
const VICR_TRAPPED: u64 = 1 << 31;
const VICR_SUBSCRIBE: u64 = 1 << 31;
const VICR_UNSUBSCRIBE: u64 = 1 << 30;
const VICR_VECTOR_SHIFT: u32 = 16;
const VICR_RID_MASK: u64 = 0xffff;

/// Injects an interrupt vector into a VM (its vCPU 0).
pub type Injector = Arc<dyn Fn(u8) + Send + Sync>;

struct Subscriber {
    vm: u64,
    vector: u8,
    inject: Injector,
}

/// VMs of one process that may share each other's interrupt sources.
#[derive(Default)]
pub struct ShareHub {
    subscribers: Mutex<HashMap<u16, Vec<Subscriber>>>,
    next_vm: AtomicU64,
}

impl std::fmt::Debug for ShareHub {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let map = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let shared: Vec<(u16, usize)> = map.iter().map(|(rid, l)| (*rid, l.len())).collect();
        f.debug_struct("ShareHub").field("shared", &shared).finish()
    }
}

impl ShareHub {
    /// A new member's identity.
    pub fn join(&self) -> u64 {
        self.next_vm.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn subscribe(&self, rid: u16, sub: Subscriber) {
        let mut map = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(rid).or_default();
        list.retain(|s| s.vm != sub.vm);
        list.push(sub);
        tracing::info!(requester_id = rid, "hybrid: a VM shares the source");
    }

    fn unsubscribe(&self, rid: u16, vm: u64) {
        let mut map = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(&rid) {
            list.retain(|s| s.vm != vm);
            if list.is_empty() {
                map.remove(&rid);
            }
        }
        tracing::info!(
            requester_id = rid,
            "hybrid: a VM stopped sharing the source"
        );
    }

    /// Removes every subscription of `vm` (it ended).
    pub fn leave(&self, vm: u64) {
        let mut map = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for list in map.values_mut() {
            list.retain(|s| s.vm != vm);
        }
        map.retain(|_, l| !l.is_empty());
    }

    /// Sharers of `rid` other than `vm`.
    fn others(&self, rid: u16, vm: u64) -> u32 {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&rid)
            .map_or(0, |l| l.iter().filter(|s| s.vm != vm).count() as u32)
    }

    /// Injects a copy of a trapped interrupt of `rid` into every other sharer.
    fn inject_copies(&self, rid: u16, vm: u64) -> u32 {
        let targets: Vec<(u8, Injector)> = self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&rid)
            .map(|l| {
                l.iter()
                    .filter(|s| s.vm != vm)
                    .map(|s| (s.vector, s.inject.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (vector, inject) in &targets {
            inject(*vector);
        }
        targets.len() as u32
    }
}

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

/// The per-source mode table of one VM.
#[derive(Default)]
pub struct Hybrid {
    /// Stand-in sharers per source.
    sharers: Mutex<HashMap<u16, u32>>,
    /// The mode each source was last delivered in (to count and log switches).
    last_mode: Mutex<HashMap<u16, SourceMode>>,
    /// The requester ID the VICR reads report, per vCPU.
    selected: Mutex<HashMap<usize, u16>>,
    /// Other VMs of this process, and this VM's identity and injector among them.
    hub: Option<(Arc<ShareHub>, u64)>,
    injector: Mutex<Option<Injector>>,
    pub counters: HybridCounters,
}

impl Hybrid {
    /// A mode table joined to `hub` (other VMs may share this VM's sources, and it theirs).
    pub fn with_hub(hub: Arc<ShareHub>) -> Self {
        let vm = hub.join();
        Self {
            hub: Some((hub, vm)),
            ..Self::default()
        }
    }

    /// How this VM receives the interrupts of sources it shares.
    pub fn set_injector(&self, inject: Injector) {
        *self.injector.lock().unwrap_or_else(|e| e.into_inner()) = Some(inject);
    }

    /// This VM ends: it stops sharing other VMs' sources.
    pub fn leave(&self) {
        if let Some((hub, vm)) = &self.hub {
            hub.leave(*vm);
        }
    }

    /// The mode an interrupt of `requester_id` is delivered in now; a change from the last
    /// delivery is a mode switch (counted and logged).
    pub fn delivery_mode(&self, requester_id: u16) -> SourceMode {
        let mode = self.mode(requester_id);
        let mut last = self.last_mode.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last
            .insert(requester_id, mode)
            .unwrap_or(SourceMode::Posted);
        if previous != mode {
            self.counters.switches.fetch_add(1, Ordering::Relaxed);
            tracing::info!(requester_id, ?mode, "hybrid: delivery mode switched");
        }
        mode
    }

    pub fn mode(&self, requester_id: u16) -> SourceMode {
        let sharers = self.sharers(requester_id);
        if sharers == 0 {
            SourceMode::Posted
        } else {
            SourceMode::Trapped
        }
    }

    fn stand_ins(&self, requester_id: u16) -> u32 {
        *self
            .sharers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&requester_id)
            .unwrap_or(&0)
    }

    /// Other sharers of `requester_id`: stand-ins and other VMs.
    fn sharers(&self, requester_id: u16) -> u32 {
        let stand_ins = self.stand_ins(requester_id);
        let vms = self
            .hub
            .as_ref()
            .map_or(0, |(hub, vm)| hub.others(requester_id, *vm));
        stand_ins + vms
    }

    /// A stand-in sharer attaches (the source is trapped while any sharer is attached).
    pub fn share(&self, requester_id: u16) {
        let mut map = self.sharers.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(requester_id).or_insert(0) += 1;
        tracing::info!(requester_id, "hybrid: a stand-in shares the source");
    }

    /// A stand-in sharer detaches.
    pub fn unshare(&self, requester_id: u16) {
        let mut map = self.sharers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&requester_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&requester_id);
            }
            tracing::info!(
                requester_id,
                "hybrid: a stand-in stopped sharing the source"
            );
        }
    }

    /// A trapped interrupt of `requester_id`: a copy for each other sharer (injected into
    /// other VMs; counted for stand-ins).
    pub fn deliver_copies(&self, requester_id: u16) {
        self.counters.trapped.fetch_add(1, Ordering::Relaxed);
        let stand_ins = self.stand_ins(requester_id);
        let vms = self
            .hub
            .as_ref()
            .map_or(0, |(hub, vm)| hub.inject_copies(requester_id, *vm));
        self.counters
            .copies
            .fetch_add(u64::from(stand_ins + vms), Ordering::Relaxed);
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
        let rid = (value & VICR_RID_MASK) as u16;
        let vector = ((value >> VICR_VECTOR_SHIFT) & 0xff) as u8;
        match value & !(VICR_RID_MASK | (0xff << VICR_VECTOR_SHIFT)) {
            0 if vector == 0 => {
                self.selected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(vcpu, rid);
            }
            VICR_SUBSCRIBE if vector >= 0x20 => {
                let inject = self
                    .injector
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let (Some((hub, vm)), Some(inject)) = (&self.hub, inject) else {
                    // No other VM to share with: the request names nothing.
                    return Some(MsrResult::GeneralProtection);
                };
                hub.subscribe(
                    rid,
                    Subscriber {
                        vm: *vm,
                        vector,
                        inject,
                    },
                );
            }
            VICR_UNSUBSCRIBE if vector == 0 => {
                if let Some((hub, vm)) = &self.hub {
                    hub.unsubscribe(rid, *vm);
                }
            }
            _ => return Some(MsrResult::GeneralProtection),
        }
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
        // Deliveries see posted, trapped, trapped, posted: two switches.
        let g = Hybrid::default();
        g.delivery_mode(1);
        g.share(1);
        g.delivery_mode(1);
        g.delivery_mode(1);
        g.unshare(1);
        g.delivery_mode(1);
        assert_eq!(g.counters.switches.load(Ordering::Relaxed), 2);
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
    fn a_second_vm_sharing_traps_the_source_and_gets_copies() {
        let hub = Arc::new(ShareHub::default());
        let owner = Hybrid::with_hub(hub.clone());
        let peer = Hybrid::with_hub(hub.clone());
        let got = Arc::new(AtomicU64::new(0));
        let g = got.clone();
        peer.set_injector(Arc::new(move |v| {
            g.store(u64::from(v), Ordering::SeqCst);
        }));
        assert_eq!(owner.mode(0x100), SourceMode::Posted);
        let subscribe = 0x100 | (0x63 << VICR_VECTOR_SHIFT) | VICR_SUBSCRIBE;
        assert_eq!(peer.wrmsr(0, MSR_VICR, subscribe), Some(MsrResult::Ok(0)));
        assert_eq!(owner.mode(0x100), SourceMode::Trapped);
        assert_eq!(
            peer.mode(0x100),
            SourceMode::Posted,
            "the peer does not own it"
        );
        owner.deliver_copies(0x100);
        assert_eq!(got.load(Ordering::SeqCst), 0x63);
        assert_eq!(
            peer.wrmsr(0, MSR_VICR, 0x100 | VICR_UNSUBSCRIBE),
            Some(MsrResult::Ok(0))
        );
        assert_eq!(owner.mode(0x100), SourceMode::Posted);
        // Without a hub or with a bad vector, a subscription is refused.
        let alone = Hybrid::default();
        assert_eq!(
            alone.wrmsr(0, MSR_VICR, subscribe),
            Some(MsrResult::GeneralProtection)
        );
        assert_eq!(
            peer.wrmsr(0, MSR_VICR, 0x100 | (0x05 << 16) | VICR_SUBSCRIBE),
            Some(MsrResult::GeneralProtection)
        );
        peer.wrmsr(0, MSR_VICR, subscribe);
        peer.leave();
        assert_eq!(
            owner.mode(0x100),
            SourceMode::Posted,
            "a VM that ends stops sharing"
        );
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
