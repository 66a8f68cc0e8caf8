//! Virtual device interrupt hinting (Red Hat, US 9411624): on a device event, the VMM tells
//! the guest which of its vCPUs run on the host CPU where the event arrived, so that the
//! guest can move the device's interrupt affinity there.
//!
//! The paravirtual interface:
//! - CPUID leaf [`HINT_CPUID_LEAF`] (0x40000100): EAX = [`HINT_SIGNATURE`] ("PbHt"),
//!   EBX = the hint MSR's index, ECX = [`HINT_VERSION`], EDX = the hybrid mode register's
//!   index (`hybrid.rs`);
//! - MSR [`MSR_HINT_PAGE`] (0x40000100): the guest writes the guest-physical address of a
//!   4 KiB-aligned page (0 turns hints off); a misaligned address, or one outside RAM, is
//!   refused with #GP; reads return what was written;
//! - the page (little-endian): offset 0 `seq` (u32, odd while the VMM writes it, a seqlock),
//!   4 `events` (u32, device events hinted so far), 8 `requester_id` (u32, the function
//!   that raised the event), 12 `host_cpu` (u32), 16 `vcpu_mask` (u64: bit n set when vCPU n
//!   last ran on that host CPU).
//!
//! Hints are written under `--policy hinting` only; the interface is always advertised.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kvm_bindings::{kvm_cpuid_entry2, CpuId};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::dispatch::{MsrResult, VcpuDevices};
use crate::sched::Scheduler;

pub const HINT_CPUID_LEAF: u32 = 0x4000_0100;
pub const HINT_SIGNATURE: u32 = u32::from_le_bytes(*b"PbHt");
pub const HINT_VERSION: u32 = 1;
pub const MSR_HINT_PAGE: u32 = 0x4000_0100;
const PAGE_SIZE: u64 = 4096;
const OFF_SEQ: u64 = 0;
const OFF_EVENTS: u64 = 4;
const OFF_RID: u64 = 8;
const OFF_HOST_CPU: u64 = 12;
const OFF_MASK: u64 = 16;

/// Adds the hint leaf to a vCPU's CPUID.
pub fn advertise(cpuid: &mut CpuId) {
    let entry = kvm_cpuid_entry2 {
        function: HINT_CPUID_LEAF,
        eax: HINT_SIGNATURE,
        ebx: MSR_HINT_PAGE,
        ecx: HINT_VERSION,
        edx: crate::hybrid::MSR_VICR,
        ..Default::default()
    };
    if let Err(e) = cpuid.push(entry) {
        tracing::warn!(?e, "no room for the hint CPUID leaf");
    }
}

pub struct Hints {
    memory: GuestMemoryMmap,
    /// The registered page (0: none).
    page: AtomicU64,
    seq: AtomicU32,
    events: AtomicU32,
}

impl Hints {
    pub fn new(memory: GuestMemoryMmap) -> Self {
        Self {
            memory,
            page: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            events: AtomicU32::new(0),
        }
    }

    /// A device event raised by `requester_id` on the calling thread: hint the vCPUs that
    /// last ran on this thread's host CPU.
    pub fn device_event(&self, requester_id: u16, sched: &Scheduler) {
        let page = self.page.load(Ordering::Acquire);
        if page == 0 {
            return;
        }
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu < 0 {
            return;
        }
        let cpu = cpu as u32;
        let mask = (0..sched.len().min(64))
            .filter(|&v| sched.host_cpu(v) == Some(cpu))
            .fold(0u64, |m, v| m | (1 << v));
        let events = self.events.fetch_add(1, Ordering::Relaxed) + 1;
        let seq = self.seq.fetch_add(2, Ordering::AcqRel);
        let at = |off| GuestAddress(page + off);
        // The page was checked to be RAM when registered; writes cannot fail there.
        let _ = self.memory.write_obj(seq + 1, at(OFF_SEQ));
        let _ = self.memory.write_obj(events, at(OFF_EVENTS));
        let _ = self.memory.write_obj(u32::from(requester_id), at(OFF_RID));
        let _ = self.memory.write_obj(cpu, at(OFF_HOST_CPU));
        let _ = self.memory.write_obj(mask, at(OFF_MASK));
        let _ = self.memory.write_obj(seq + 2, at(OFF_SEQ));
        tracing::trace!(requester_id, cpu, mask, "interrupt hint");
    }
}

impl VcpuDevices for Hints {
    fn rdmsr(&self, _vcpu: usize, msr: u32) -> Option<MsrResult> {
        (msr == MSR_HINT_PAGE).then(|| MsrResult::Ok(self.page.load(Ordering::Acquire)))
    }

    fn wrmsr(&self, _vcpu: usize, msr: u32, value: u64) -> Option<MsrResult> {
        if msr != MSR_HINT_PAGE {
            return None;
        }
        let in_ram = value.checked_add(PAGE_SIZE - 1).is_some_and(|end| {
            self.memory.address_in_range(GuestAddress(value))
                && self.memory.address_in_range(GuestAddress(end))
        });
        if value != 0 && (!value.is_multiple_of(PAGE_SIZE) || !in_ram) {
            return Some(MsrResult::GeneralProtection);
        }
        self.page.store(value, Ordering::Release);
        Some(MsrResult::Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_checks_and_page_layout() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let hints = Hints::new(mem.clone());
        let sched = Scheduler::new(2);
        hints.device_event(0x88, &sched);
        assert_eq!(hints.events.load(Ordering::Relaxed), 0, "no page, no hint");
        assert_eq!(
            hints.wrmsr(0, MSR_HINT_PAGE, 0x1234),
            Some(MsrResult::GeneralProtection)
        );
        assert_eq!(
            hints.wrmsr(0, MSR_HINT_PAGE, 2 << 20),
            Some(MsrResult::GeneralProtection)
        );
        assert_eq!(
            hints.wrmsr(0, MSR_HINT_PAGE, 0x8000),
            Some(MsrResult::Ok(0))
        );
        assert_eq!(hints.rdmsr(1, MSR_HINT_PAGE), Some(MsrResult::Ok(0x8000)));
        assert_eq!(hints.rdmsr(1, 0x10), None);
        sched.enter(1, || false);
        hints.device_event(0x8a, &sched);
        let rd = |off| mem.read_obj::<u32>(GuestAddress(0x8000 + off)).unwrap();
        assert_eq!(rd(OFF_SEQ), 2, "even: complete");
        assert_eq!(rd(OFF_EVENTS), 1);
        assert_eq!(rd(OFF_RID), 0x8a);
        let mask = mem
            .read_obj::<u64>(GuestAddress(0x8000 + OFF_MASK))
            .unwrap();
        assert_eq!(mask, 0b10, "vCPU 1 last ran on this thread's CPU");
    }
}
