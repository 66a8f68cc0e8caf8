//! Bringing up application processors with INIT and start-up IPIs (Intel SDM vol. 3 §9.4.4,
//! "MP Initialization Example"), and waiting for interrupts without losing a wake-up.

use core::sync::atomic::Ordering;

use crate::apic::{self, ICR_ASSERT, ICR_INIT, ICR_STARTUP};
use crate::arch::{self, AP_MAIN, AP_ONLINE, TRAMPOLINE_BASE};

/// Starts the APs with APIC IDs `1..=count`; each runs `main(cpu)` at CPL3 and then halts.
/// Returns how many came online within `timeout_tsc` cycles.
pub fn start_aps(count: u32, main: fn(usize), timeout_tsc: u64) -> u32 {
    arch::install_trampoline();
    AP_MAIN.store(main as usize, Ordering::SeqCst);
    let vector = (TRAMPOLINE_BASE >> 12) as u64;
    for id in 1..=count {
        let _ = apic::send_ipi(id, ICR_INIT | ICR_ASSERT);
        let _ = apic::send_ipi(id, ICR_STARTUP | ICR_ASSERT | vector);
    }
    let start = arch::rdtsc();
    while AP_ONLINE.load(Ordering::SeqCst) < count && arch::rdtsc() - start < timeout_tsc {
        core::hint::spin_loop();
    }
    AP_ONLINE.load(Ordering::SeqCst)
}

/// Interrupts this CPU has taken so far.
pub fn interrupts_taken() -> u32 {
    arch::IRQ_TOTAL[arch::cpu_index()].load(Ordering::SeqCst)
}

/// How many times `vector` arrived on CPU `cpu`.
pub fn count(cpu: usize, vector: u8) -> u32 {
    arch::IRQ_COUNT[cpu][usize::from(vector)].load(Ordering::SeqCst)
}

/// Halts until this CPU has taken more than `seen` interrupts (no lost wake-up: the check and
/// `sti; hlt` happen with interrupts off, in the gate), or until `timeout_tsc` elapses.
/// Returns whether the interrupt came.
pub fn wait_for_interrupts(seen: u32, timeout_tsc: u64) -> bool {
    let start = arch::rdtsc();
    loop {
        if interrupts_taken() > seen {
            return true;
        }
        if arch::rdtsc() - start > timeout_tsc {
            return false;
        }
        crate::sys::halt_while(&arch::IRQ_TOTAL[arch::cpu_index()], seen);
    }
}

/// APs that finished `start_ap_like_bsp`'s APIC setup.
static AP_APIC_READY: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Starts AP 1 with its APIC set up like the caller's (x2APIC if the BSP switched,
/// software-enabled); returns once that setup is done. (An AP is online before it enables
/// its APIC, and a software-disabled APIC refuses fixed interrupts, SDM §11.4.7.2.)
pub fn start_ap_like_bsp() -> bool {
    let online = start_aps(
        1,
        |_| {
            if apic::is_x2apic() {
                let _ = apic::enable_x2apic();
            }
            let _ = apic::software_enable();
            AP_APIC_READY.fetch_add(1, Ordering::SeqCst);
        },
        crate::testing::TIMEOUT_TSC,
    ) == 1;
    online && crate::testing::wait_until(|| AP_APIC_READY.load(Ordering::SeqCst) >= 1)
}
