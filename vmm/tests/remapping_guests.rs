//! Interrupt remapping and posting seen by guests that drive the VT-d model at 0xfed90000:
//! - `ir_remap`, with the VMM's MSI test device as the source: remapped and posted IRTEs,
//!   SN/URG, the interrupt entry cache, faults with fault events, and a halted vCPU woken by
//!   a posted interrupt;
//! - `vf_traffic`, with the NIC: a VF driver sends frames VF 0 → VF 1, whose RX interrupts
//!   go remapped to vCPU 1, then posted to vCPU 0.
//!
//! Same guests, both backends, both APIC modes.

mod support;

use support::{kvm_available, run_guest};

fn run_ir(irqchip: &str, x2apic: bool) {
    let cmdline = if x2apic { "x2apic" } else { "" };
    let r = run_guest(
        "ir_remap",
        &["--irqchip", irqchip, "--cpus", "2", "--cmdline", cmdline],
    );
    r.assert_status(1)
        .assert_stdout_has("checks done, failures=0");
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
}

#[test]
fn emulated_remapping_xapic() {
    if kvm_available("emulated_remapping_xapic") {
        run_ir("emulated", false);
    }
}

#[test]
fn emulated_remapping_x2apic_eim() {
    if kvm_available("emulated_remapping_x2apic_eim") {
        run_ir("emulated", true);
    }
}

#[test]
fn kernel_remapping_xapic() {
    if kvm_available("kernel_remapping_xapic") {
        run_ir("kernel", false);
    }
}

#[test]
fn kernel_remapping_x2apic_eim() {
    if kvm_available("kernel_remapping_x2apic_eim") {
        run_ir("kernel", true);
    }
}

fn run_vf(irqchip: &str, x2apic: bool) {
    let cmdline = if x2apic { "x2apic" } else { "" };
    let r = run_guest(
        "vf_traffic",
        &[
            "--irqchip",
            irqchip,
            "--cpus",
            "2",
            "--vfs",
            "2",
            "--cmdline",
            cmdline,
        ],
    );
    r.assert_status(1)
        .assert_stdout_has("checks done, failures=0");
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
}

#[test]
fn emulated_vf_traffic_xapic() {
    if kvm_available("emulated_vf_traffic_xapic") {
        run_vf("emulated", false);
    }
}

#[test]
fn emulated_vf_traffic_x2apic() {
    if kvm_available("emulated_vf_traffic_x2apic") {
        run_vf("emulated", true);
    }
}

#[test]
fn kernel_vf_traffic_xapic() {
    if kvm_available("kernel_vf_traffic_xapic") {
        run_vf("kernel", false);
    }
}

#[test]
fn kernel_vf_traffic_x2apic() {
    if kvm_available("kernel_vf_traffic_x2apic") {
        run_vf("kernel", true);
    }
}
