//! Delivery policies. Redirect-preempted and running-state run under a reproducible preemption schedule (vCPU 1 descheduled for 70 %
//! of every 20 ms, SN set in its descriptors meanwhile): the baseline leaves every posted
//! interrupt to vCPU 1, while redirect-preempted and running-state deliver those that arrive
//! during its preemption to running vCPU 0. Nothing is lost or duplicated either way.

mod support;

use support::{kvm_available, run_guest};

/// (interrupts on vCPU 0, on vCPU 1) from the guest's report.
fn landed(stdout: &str) -> (u32, u32) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("POLICY "))
        .expect("POLICY line");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    (field("vcpu0="), field("vcpu1="))
}

fn run_policy(irqchip: &str, policy: &str) -> (u32, u32) {
    let r = run_guest(
        "policy_redirect",
        &[
            "--irqchip",
            irqchip,
            "--cpus",
            "2",
            "--policy",
            policy,
            "--preempt",
            "1:20:70",
            "--cmdline",
            "rounds=60",
        ],
    );
    r.assert_status(1)
        .assert_stdout_has("checks done, failures=0");
    landed(&r.stdout)
}

/// One test per backend running `run(backend)`.
macro_rules! on_both_backends {
    ($emulated:ident, $kernel:ident, $run:ident) => {
        #[test]
        fn $emulated() {
            if kvm_available(stringify!($emulated)) {
                $run("emulated");
            }
        }

        #[test]
        fn $kernel() {
            if kvm_available(stringify!($kernel)) {
                $run("kernel");
            }
        }
    };
}

macro_rules! policy_test {
    ($name:ident, $irqchip:literal, $policy:literal, $redirects:literal) => {
        #[test]
        fn $name() {
            if !kvm_available(stringify!($name)) {
                return;
            }
            let (on0, on1) = run_policy($irqchip, $policy);
            assert_eq!(on0 + on1, 60);
            if $redirects {
                assert!(on0 > 0, "{}: nothing was redirected ({on0}/{on1})", $policy);
            } else {
                assert_eq!(on0, 0, "the baseline must not move interrupts");
            }
        }
    };
}

policy_test!(
    emulated_baseline_keeps_posted_interrupts,
    "emulated",
    "posted",
    false
);
policy_test!(
    emulated_redirect_preempted,
    "emulated",
    "redirect-preempted",
    true
);
policy_test!(emulated_running_state, "emulated", "running-state", true);
policy_test!(
    kernel_baseline_keeps_posted_interrupts,
    "kernel",
    "posted",
    false
);
policy_test!(
    kernel_redirect_preempted,
    "kernel",
    "redirect-preempted",
    true
);
policy_test!(kernel_running_state, "kernel", "running-state", true);

/// Mask-and-drain: a burst of six frames costs at most two interrupts instead of six.
fn run_mask_drain(irqchip: &str) {
    let r = run_guest("mask_drain", &["--irqchip", irqchip, "--vfs", "2"]);
    r.assert_status(1)
        .assert_stdout_has("per-frame-interrupts=6")
        .assert_stdout_has("checks done, failures=0");
}

/// Hinting: the guest reads the hint page and moves VF 1's interrupt to the hinted vCPU.
fn run_hinting(irqchip: &str) {
    let r = run_guest(
        "hinting",
        &[
            "--irqchip",
            irqchip,
            "--cpus",
            "2",
            "--vfs",
            "2",
            "--policy",
            "hinting",
            "--pin",
        ],
    );
    r.assert_status(1)
        .assert_stdout_has("moved_after_frame=Some(0)")
        .assert_stdout_has("checks done, failures=0");
}

/// Hybrid: the source's mode reads posted, trapped while a stand-in sharer is attached,
/// then posted again; every interrupt arrives exactly once.
fn run_hybrid(irqchip: &str) {
    let r = run_guest(
        "hybrid",
        &[
            "--irqchip",
            irqchip,
            "--policy",
            "hybrid",
            "--share-source",
            "0x100:200:500",
        ],
    );
    r.assert_status(1)
        .assert_stdout_has("checks done, failures=0");
}

/// Hybrid with a real second VM in the same process: it shares the first VM's source
/// through its VICR, receives 30 copies of the trapped interrupts, and stops sharing; the
/// first VM sees posted, trapped, posted, and every interrupt exactly once.
fn run_hybrid_pair(irqchip: &str) {
    let peer = support::guest("hybrid_peer");
    let r = run_guest(
        "hybrid",
        &[
            "--irqchip",
            irqchip,
            "--policy",
            "hybrid",
            "--share-with",
            peer.to_str().unwrap(),
        ],
    );
    r.assert_status(1)
        .assert_stdout_has("checks done, failures=0")
        .assert_stdout_has("peer: HYBRID_PEER copies=")
        .assert_stdout_has("peer: checks done, failures=0");
}

on_both_backends!(
    emulated_mask_and_drain,
    kernel_mask_and_drain,
    run_mask_drain
);

on_both_backends!(emulated_hinting, kernel_hinting, run_hinting);

on_both_backends!(emulated_hybrid, kernel_hybrid, run_hybrid);

on_both_backends!(
    emulated_hybrid_with_a_second_vm,
    kernel_hybrid_with_a_second_vm,
    run_hybrid_pair
);
