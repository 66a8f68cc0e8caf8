//! `vmm bench` runs every scenario on both backends and reports them (a functional test
//! with few rounds: the figures themselves belong to the README, not to assertions).

mod support;

use support::{kvm_available, vmm};

#[test]
fn bench_reports_every_scenario_on_both_backends() {
    if !kvm_available("bench_reports_every_scenario_on_both_backends") {
        return;
    }
    let out = std::env::temp_dir().join(format!("postbox-bench-{}", std::process::id()));
    let r = vmm(&[
        "bench",
        "--rounds",
        "5",
        "--pipeline-iterations",
        "20000",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    r.assert_status(0);
    let report: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("JSON report");
    let latency = report["latency"].as_array().unwrap();
    for backend in ["emulated", "kernel"] {
        for (scenario, _) in vmm::bench::LATENCY_SCENARIOS {
            let row = latency
                .iter()
                .find(|row| row["backend"] == backend && row["scenario"] == scenario)
                .unwrap_or_else(|| panic!("no row for {backend} {scenario}"));
            assert_eq!(row["n"], 5, "{backend} {scenario}: {row}");
            assert!(row["median_us"].as_f64().unwrap() > 0.0);
        }
    }
    let rates = report["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 4);
    assert!(rates
        .iter()
        .all(|r| r["per_second"].as_f64().unwrap() > 0.0));
    assert!(report["pipeline"]["posted_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["targets"].as_array().unwrap().len(), 4);
    for plot in ["latency-running.svg", "latency-halted.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("msi-posted"),
            "{plot}"
        );
    }
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn bench_policies_compares_each_policy_with_the_baseline() {
    if !kvm_available("bench_policies_compares_each_policy_with_the_baseline") {
        return;
    }
    let out = std::env::temp_dir().join(format!("postbox-bench-policies-{}", std::process::id()));
    let r = vmm(&[
        "bench",
        "policies",
        "--rounds",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    r.assert_status(0);
    for backend in ["emulated", "kernel"] {
        for policy in vmm::bench::POLICY_RUNS {
            let row = r
                .stdout
                .lines()
                .find(|l| l.starts_with(&policy.to_string()) && l.contains(backend))
                .unwrap_or_else(|| panic!("no row for {policy} {backend}:\n{}", r.stdout));
            let n: u32 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_eq!(n, 10, "{row}");
        }
    }
    let svg = std::fs::read_to_string(out.join("policies-rtt.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("redirect-preempted emu"));
    std::fs::remove_dir_all(out).ok();
}
