//! APIC behaviour seen by guests: IPIs (physical, logical, shorthands, lowest priority),
//! the timer in its three modes, priority and EOI ordering, and the switch to x2APIC.
//!
//! Each runs on both irqchip backends that implement the APIC: `kernel` (KVM's
//! in-kernel LAPIC), the reference, and `emulated` (Postbox's APIC model in userspace,
//! injecting with KVM_INTERRUPT).

mod support;

use support::{kvm_available, run_guest};

const GUEST_OK: i32 = 1;

fn run_checks(guest: &str, irqchip: &str, cpus: u32, x2apic: bool) {
    let cmdline = format!("cpus={cpus}{}", if x2apic { " x2apic" } else { "" });
    let cpus = cpus.to_string();
    let r = run_guest(
        guest,
        &["--irqchip", irqchip, "--cpus", &cpus, "--cmdline", &cmdline],
    );
    r.assert_status(GUEST_OK)
        .assert_stdout_has("checks done, failures=0");
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
}

macro_rules! apic_test {
    ($name:ident, $guest:literal, $irqchip:literal, $cpus:literal, $x2apic:literal) => {
        #[test]
        fn $name() {
            if kvm_available(stringify!($name)) {
                run_checks($guest, $irqchip, $cpus, $x2apic);
            }
        }
    };
}

apic_test!(kernel_ipis_xapic, "apic_ipi", "kernel", 3, false);
apic_test!(kernel_ipis_x2apic, "apic_ipi", "kernel", 3, true);
apic_test!(kernel_timer_xapic, "apic_timer", "kernel", 1, false);
apic_test!(kernel_timer_x2apic, "apic_timer", "kernel", 1, true);
apic_test!(kernel_priority_xapic, "apic_priority", "kernel", 1, false);
apic_test!(kernel_priority_x2apic, "apic_priority", "kernel", 1, true);
apic_test!(kernel_x2apic_switch, "x2apic_switch", "kernel", 1, false);

apic_test!(emulated_ipis_xapic, "apic_ipi", "emulated", 3, false);
apic_test!(emulated_ipis_x2apic, "apic_ipi", "emulated", 3, true);
apic_test!(emulated_timer_xapic, "apic_timer", "emulated", 1, false);
apic_test!(emulated_timer_x2apic, "apic_timer", "emulated", 1, true);
apic_test!(
    emulated_priority_xapic,
    "apic_priority",
    "emulated",
    1,
    false
);
apic_test!(
    emulated_priority_x2apic,
    "apic_priority",
    "emulated",
    1,
    true
);
apic_test!(
    emulated_x2apic_switch,
    "x2apic_switch",
    "emulated",
    1,
    false
);

// Storms: an IPI storm and an MSI burst at one vCPU; the VM stays responsive.
apic_test!(emulated_storm, "storm", "emulated", 2, true);
apic_test!(kernel_storm, "storm", "kernel", 2, true);
