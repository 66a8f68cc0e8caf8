//! Per-hop latency of the delivery path, sampled on the host with the TSC: each hop keeps a
//! bounded reservoir of samples (cycles) from which the demo and benchmarks print medians.

use std::sync::Mutex;

/// Samples kept per hop; later samples replace earlier ones round-robin.
const CAPACITY: usize = 4096;

/// The hops the VMM can time on the host side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// MSI raised → remapped or posted (IOMMU work, including the descriptor update).
    Remap,
    /// Accepted by the target APIC (or notified) → injected with KVM_INTERRUPT.
    AcceptToInject,
    /// Injected → EOI written by the guest handler.
    InjectToEoi,
}

pub const HOPS: [Hop; 3] = [Hop::Remap, Hop::AcceptToInject, Hop::InjectToEoi];

impl Hop {
    pub fn name(self) -> &'static str {
        match self {
            Hop::Remap => "MSI -> remapped/posted (VT-d)",
            Hop::AcceptToInject => "accepted -> injected (vCPU)",
            Hop::InjectToEoi => "injected -> EOI (guest handler)",
        }
    }
}

#[derive(Debug, Default)]
struct Reservoir {
    samples: Vec<u64>,
    next: usize,
    total: u64,
}

/// Latency samples of every hop.
#[derive(Debug, Default)]
pub struct HopStats {
    hops: [Mutex<Reservoir>; 3],
}

impl HopStats {
    pub fn record(&self, hop: Hop, cycles: u64) {
        let mut r = self.hops[hop as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        r.total += 1;
        if r.samples.len() < CAPACITY {
            r.samples.push(cycles);
        } else {
            let i = r.next;
            r.samples[i] = cycles;
            r.next = (i + 1) % CAPACITY;
        }
    }

    /// (count, median cycles) of `hop`.
    pub fn median(&self, hop: Hop) -> (u64, Option<u64>) {
        let r = self.hops[hop as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut s = r.samples.clone();
        s.sort_unstable();
        (r.total, s.get(s.len() / 2).copied())
    }
}

/// The host TSC.
pub fn now() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_recorded_samples() {
        let stats = HopStats::default();
        assert_eq!(stats.median(Hop::Remap), (0, None));
        for c in [5, 1, 9, 3, 7] {
            stats.record(Hop::Remap, c);
        }
        assert_eq!(stats.median(Hop::Remap), (5, Some(5)));
        for c in 0..(CAPACITY as u64 + 10) {
            stats.record(Hop::InjectToEoi, c);
        }
        let (n, m) = stats.median(Hop::InjectToEoi);
        assert_eq!(n, CAPACITY as u64 + 10);
        assert!(m.is_some());
    }
}
