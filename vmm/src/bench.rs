//! `vmm bench`: the delivery path measured on KVM, Postbox's emulated backend side by side
//! with KVM's in-kernel LAPIC, in one run on the same machine; plus the pure model pipeline.
//!
//! Each (backend, scenario) boots the bench guest (`guest-tests/src/bin/bench.rs`) on two
//! vCPUs; the guest times every interrupt with the TSC from its send to the receiving
//! handler and prints the samples, which the VMM captures from the serial console. The
//! guest marks the measured phase (test device mark register), so the VMM can count the
//! userspace exits inside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::irqchip::IrqchipKind;
use crate::vm::{self, KernelImage, VmConfig, VmEnd};

/// The bench guest, embedded so that `vmm bench` needs no files.
pub static BENCH_GUEST: &[u8] = include_bytes!(concat!(env!("POSTBOX_GUEST_DIR"), "/bench"));

/// Latency scenarios: (name, what it measures).
pub const LATENCY_SCENARIOS: [(&str, &str); 7] = [
    (
        "msi-remapped-running",
        "MSI, remapped IRTE, to a running vCPU",
    ),
    ("msi-posted-running", "MSI, posted IRTE, to a running vCPU"),
    (
        "msi-remapped-halted",
        "MSI, remapped IRTE, to a halted vCPU",
    ),
    ("msi-posted-halted", "MSI, posted IRTE, to a halted vCPU"),
    ("ipi-running", "IPI to a running vCPU"),
    ("ipi-halted", "IPI to a halted vCPU"),
    ("self-ipi", "self-IPI (x2APIC SELF IPI)"),
];
/// Throughput scenarios.
pub const RATE_SCENARIOS: [(&str, &str); 2] = [
    ("sustained-one", "back-to-back MSIs into one vCPU"),
    (
        "sustained-spread",
        "back-to-back MSIs spread over two vCPUs",
    ),
];
pub const BACKENDS: [IrqchipKind; 2] = [IrqchipKind::Emulated, IrqchipKind::Kernel];

/// Goals shown beside the measurements (never asserted).
pub const TARGET_RUNNING_RATIO: f64 = 1.5;
pub const TARGET_EXITS_PER_INTERRUPT: f64 = 2.0;
pub const TARGET_PIPELINE_PER_SECOND: f64 = 10e6;
/// Interrupts through the model pipeline, by default.
pub const PIPELINE_ITERATIONS: u64 = 5_000_000;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub rounds: u32,
    pub pipeline_iterations: u64,
    pub out_dir: PathBuf,
}

/// Distribution of one series, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Distribution {
    pub samples_us: Vec<f64>,
}

impl Distribution {
    fn from_cycles(cycles: &[u64], tsc_khz: u32) -> Self {
        let mut samples_us: Vec<f64> = cycles
            .iter()
            .map(|&c| c as f64 / f64::from(tsc_khz) * 1e3)
            .collect();
        samples_us.sort_by(f64::total_cmp);
        Self { samples_us }
    }

    /// The `q` quantile (0–1), nearest rank.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.samples_us.len();
        (n > 0).then(|| self.samples_us[((n - 1) as f64 * q).round() as usize])
    }
}

#[derive(Clone, Debug)]
pub struct LatencyResult {
    pub backend: IrqchipKind,
    pub scenario: &'static str,
    pub latency: Distribution,
    pub eoi: Distribution,
    /// Userspace exits per delivered interrupt, not counting the sender's one doorbell exit.
    pub exits_per_interrupt: f64,
}

#[derive(Clone, Debug)]
pub struct RateResult {
    pub backend: IrqchipKind,
    pub scenario: &'static str,
    pub per_second: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub latency: Vec<LatencyResult>,
    pub rates: Vec<RateResult>,
    pub pipeline_posted_per_second: f64,
    pub pipeline_remapped_per_second: f64,
    pub tsc_khz: u32,
    pub host: String,
}

struct GuestRun {
    output: String,
    exits_in_phase: u64,
    tsc_khz: u32,
}

/// Runs `config` with its console captured; the guest must end with exit code 0.
fn run_captured(mut config: VmConfig, what: &str) -> Result<(String, vm::RunReport)> {
    let console: Arc<Mutex<Vec<u8>>> = Arc::default();
    config.console = Some(console.clone());
    config.timeout = Some(Duration::from_secs(300));
    let report = vm::run(&config)?;
    let output =
        String::from_utf8_lossy(&console.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    if report.end != VmEnd::GuestExit(1) {
        return Err(Error::Internal(format!(
            "{what} ended with {:?}: {}",
            report.end,
            output
                .lines()
                .filter(|l| l.contains("error"))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok((output, report))
}

fn boot(backend: IrqchipKind, scenario: &str, rounds: u32) -> Result<GuestRun> {
    let config = VmConfig {
        kernel: KernelImage::Embedded {
            name: "bench",
            bytes: BENCH_GUEST,
        },
        cpus: 2,
        mem_mib: 64,
        cmdline: format!("scenario={scenario} rounds={rounds}"),
        irqchip: backend,
        ..VmConfig::default()
    };
    let (output, report) = run_captured(config, &format!("bench guest ({backend}, {scenario})"))?;
    let exits_in_phase = match report.marks.as_slice() {
        // The closing mark's own port write is counted in `end`; it is not the path's.
        [start, end, ..] if start.label == 1 && end.label == 2 => {
            (end.exits - start.exits).saturating_sub(1)
        }
        _ => 0,
    };
    Ok(GuestRun {
        output,
        exits_in_phase,
        tsc_khz: report.tsc_khz.unwrap_or(1),
    })
}

/// The samples of `series` in the guest's output.
fn parse_series(output: &str, series: &str) -> Vec<u64> {
    let tag = format!("series={series} samples=");
    output
        .lines()
        .find_map(|l| l.split_once(&tag).map(|(_, s)| s))
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// (delivered, cycles) of a rate scenario.
fn parse_rate(output: &str) -> Option<(u64, u64)> {
    let line = output.lines().find(|l| l.contains(" rate "))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    Some((field("delivered=")?, field("cycles=")?))
}

/// Runs every scenario on both backends, and the model pipeline.
pub fn run(options: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<Report> {
    let mut report = Report {
        host: host_description(),
        ..Report::default()
    };
    for backend in BACKENDS {
        for (scenario, _) in LATENCY_SCENARIOS {
            progress(&format!("{backend} {scenario}"));
            let run = boot(backend, scenario, options.rounds)?;
            report.tsc_khz = run.tsc_khz;
            let latency = parse_series(&run.output, "latency");
            let n = latency.len().max(1) as f64;
            report.latency.push(LatencyResult {
                backend,
                scenario,
                latency: Distribution::from_cycles(&latency, run.tsc_khz),
                eoi: Distribution::from_cycles(&parse_series(&run.output, "eoi"), run.tsc_khz),
                exits_per_interrupt: (run.exits_in_phase as f64 - n).max(0.0) / n,
            });
        }
        for (scenario, _) in RATE_SCENARIOS {
            progress(&format!("{backend} {scenario}"));
            let run = boot(backend, scenario, options.rounds)?;
            let (delivered, cycles) = parse_rate(&run.output).unwrap_or((0, 1));
            report.rates.push(RateResult {
                backend,
                scenario,
                per_second: delivered as f64
                    / (cycles.max(1) as f64 / (f64::from(run.tsc_khz) * 1e3)),
            });
        }
    }
    progress("model pipeline");
    report.pipeline_posted_per_second =
        crate::model_bench::pipeline(options.pipeline_iterations).per_second;
    report.pipeline_remapped_per_second =
        crate::model_bench::pipeline_remapped(options.pipeline_iterations).per_second;
    Ok(report)
}

fn host_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("{cpu}, {cpus} host CPUs")
}

impl Report {
    fn find(&self, backend: IrqchipKind, scenario: &str) -> Option<&LatencyResult> {
        self.latency
            .iter()
            .find(|r| r.backend == backend && r.scenario == scenario)
    }

    fn median(&self, backend: IrqchipKind, scenario: &str) -> Option<f64> {
        self.find(backend, scenario)?.latency.quantile(0.5)
    }

    /// The goals of issue 9, each with the measured value and whether it was met.
    pub fn targets(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        let pair = |s: &str| {
            (
                self.median(IrqchipKind::Emulated, s),
                self.median(IrqchipKind::Kernel, s),
            )
        };
        if let (Some(e), Some(k)) = pair("msi-posted-running") {
            out.push((
                format!("emulated posted delivery to a running vCPU ≤ {TARGET_RUNNING_RATIO}× kernel median"),
                format!("{:.1} µs vs {:.1} µs ({:.2}×)", e, k, e / k),
                e <= TARGET_RUNNING_RATIO * k,
            ));
        }
        if let (Some(e), Some(k)) = pair("msi-posted-halted") {
            out.push((
                "emulated posted delivery to a halted vCPU no slower than kernel".into(),
                format!("{:.1} µs vs {:.1} µs", e, k),
                e <= k,
            ));
        }
        let worst = self
            .latency
            .iter()
            .filter(|r| r.backend == IrqchipKind::Emulated && r.scenario.starts_with("msi-"))
            .map(|r| r.exits_per_interrupt)
            .fold(0.0, f64::max);
        out.push((
            format!("≤ {TARGET_EXITS_PER_INTERRUPT} userspace exits per delivered interrupt (emulated, MSI scenarios)"),
            format!("worst {worst:.3}"),
            worst <= TARGET_EXITS_PER_INTERRUPT,
        ));
        out.push((
            "model pipeline > 10 M interrupts/s per core".into(),
            format!("{:.1} M/s", self.pipeline_posted_per_second / 1e6),
            self.pipeline_posted_per_second > TARGET_PIPELINE_PER_SECOND,
        ));
        out
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "host: {}; guest TSC {} MHz",
            self.host,
            self.tsc_khz / 1000
        );
        let _ = writeln!(
            t,
            "{:<22} {:<9} {:>5} {:>10} {:>10} {:>10} {:>9} {:>10}",
            "scenario", "backend", "n", "median µs", "p99 µs", "p99.9 µs", "EOI µs", "exits/irq"
        );
        for r in &self.latency {
            let q =
                |d: &Distribution, p: f64| d.quantile(p).map_or("-".into(), |v| format!("{v:.1}"));
            let _ = writeln!(
                t,
                "{:<22} {:<9} {:>5} {:>10} {:>10} {:>10} {:>9} {:>10.3}",
                r.scenario,
                r.backend.to_string(),
                r.latency.samples_us.len(),
                q(&r.latency, 0.5),
                q(&r.latency, 0.99),
                q(&r.latency, 0.999),
                q(&r.eoi, 0.5),
                r.exits_per_interrupt
            );
        }
        for r in &self.rates {
            let _ = writeln!(
                t,
                "{:<22} {:<9} {:>10.0} interrupts/s",
                r.scenario,
                r.backend.to_string(),
                r.per_second
            );
        }
        let _ = writeln!(
            t,
            "model pipeline, no KVM (one core): posted {:.1} M/s, remapped {:.1} M/s",
            self.pipeline_posted_per_second / 1e6,
            self.pipeline_remapped_per_second / 1e6
        );
        let _ = writeln!(t, "targets (goals, not assertions):");
        for (goal, measured, met) in self.targets() {
            let _ = writeln!(
                t,
                "  [{}] {goal}: {measured}",
                if met { "met" } else { "missed" }
            );
        }
        t
    }

    pub fn json(&self) -> serde_json::Value {
        let latency: Vec<_> = self
            .latency
            .iter()
            .map(|r| {
                json!({
                    "backend": r.backend.to_string(),
                    "scenario": r.scenario,
                    "n": r.latency.samples_us.len(),
                    "median_us": r.latency.quantile(0.5),
                    "p99_us": r.latency.quantile(0.99),
                    "p999_us": r.latency.quantile(0.999),
                    "eoi_median_us": r.eoi.quantile(0.5),
                    "exits_per_interrupt": r.exits_per_interrupt,
                })
            })
            .collect();
        let rates: Vec<_> = self
            .rates
            .iter()
            .map(|r| json!({"backend": r.backend.to_string(), "scenario": r.scenario, "per_second": r.per_second}))
            .collect();
        let targets: Vec<_> = self
            .targets()
            .into_iter()
            .map(|(goal, measured, met)| json!({"goal": goal, "measured": measured, "met": met}))
            .collect();
        json!({
            "host": self.host,
            "tsc_khz": self.tsc_khz,
            "latency": latency,
            "rates": rates,
            "pipeline": {
                "posted_per_second": self.pipeline_posted_per_second,
                "remapped_per_second": self.pipeline_remapped_per_second,
            },
            "targets": targets,
        })
    }

    /// Writes one latency CDF chart per receiver state (running, halted).
    pub fn plots(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        for state in ["running", "halted"] {
            let series: Vec<crate::plot::Series> = self
                .latency
                .iter()
                .filter(|r| r.scenario.ends_with(state))
                .map(|r| crate::plot::Series {
                    label: format!("{} ({})", r.scenario, r.backend),
                    samples_us: r.latency.samples_us.clone(),
                })
                .collect();
            let path = dir.join(format!("latency-{state}.svg"));
            crate::plot::latency_histogram_svg(
                &path,
                &format!("Send-to-handler latency, receiver {state}"),
                &series,
            )?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_output_parses() {
        let out = "noise\nBENCH scenario=x series=latency samples=3,1,2\nBENCH scenario=x series=eoi samples=7\nBENCH scenario=y rate delivered=10 cycles=2000\n";
        assert_eq!(parse_series(out, "latency"), vec![3, 1, 2]);
        assert_eq!(parse_series(out, "eoi"), vec![7]);
        assert_eq!(parse_series(out, "missing"), Vec::<u64>::new());
        assert_eq!(parse_rate(out), Some((10, 2000)));
    }

    #[test]
    fn quantiles_of_converted_cycles() {
        // At 1000 kHz one cycle is one microsecond.
        let d = Distribution::from_cycles(&[5, 1, 3, 2, 4], 1000);
        assert_eq!(d.quantile(0.5), Some(3.0));
        assert_eq!(d.quantile(0.0), Some(1.0));
        assert_eq!(d.quantile(1.0), Some(5.0));
        assert_eq!(Distribution::default().quantile(0.5), None);
    }

    #[test]
    fn targets_compare_backends() {
        let mk = |backend, scenario, us: f64, exits| LatencyResult {
            backend,
            scenario,
            latency: Distribution {
                samples_us: vec![us],
            },
            eoi: Distribution::default(),
            exits_per_interrupt: exits,
        };
        let report = Report {
            latency: vec![
                mk(IrqchipKind::Emulated, "msi-posted-running", 30.0, 2.0),
                mk(IrqchipKind::Kernel, "msi-posted-running", 25.0, 0.0),
                mk(IrqchipKind::Emulated, "msi-posted-halted", 40.0, 3.0),
                mk(IrqchipKind::Kernel, "msi-posted-halted", 30.0, 0.0),
            ],
            pipeline_posted_per_second: 12e6,
            ..Report::default()
        };
        let met: Vec<bool> = report.targets().iter().map(|t| t.2).collect();
        assert_eq!(met, vec![true, false, false, true]);
    }
}

/// The RTT guest of `vmm bench policies`.
pub static RTT_GUEST: &[u8] = include_bytes!(concat!(env!("POSTBOX_GUEST_DIR"), "/rtt"));

/// Policies compared by `vmm bench policies`, the first being the baseline.
pub const POLICY_RUNS: [crate::policy::PolicyKind; 3] = [
    crate::policy::PolicyKind::Posted,
    crate::policy::PolicyKind::RedirectPreempted,
    crate::policy::PolicyKind::RunningState,
];
/// The overcommit of the experiment: vCPU 1 descheduled 70 % of every 20 ms.
pub const POLICY_PREEMPTION: &str = "1:20:70";
/// The published effect of redirection under preemption (ICT/Loongson 2024).
pub const PUBLISHED_RTT_CHANGE: f64 = -34.1;
pub const PUBLISHED_THROUGHPUT_CHANGE: f64 = 7.9;

#[derive(Clone, Debug)]
pub struct RttResult {
    pub backend: IrqchipKind,
    pub policy: crate::policy::PolicyKind,
    pub rtt: Distribution,
    pub mean_us: f64,
    pub per_second: f64,
}

/// `vmm bench policies`: request/response RTT between two VFs under vCPU preemption, per
/// policy and backend.
pub fn run_policies(rounds: u32, mut progress: impl FnMut(&str)) -> Result<Vec<RttResult>> {
    let mut out = Vec::new();
    for backend in BACKENDS {
        for policy in POLICY_RUNS {
            progress(&format!("{backend} {policy}"));
            let config = VmConfig {
                kernel: KernelImage::Embedded {
                    name: "rtt",
                    bytes: RTT_GUEST,
                },
                cpus: 2,
                mem_mib: 64,
                cmdline: format!("rounds={rounds}"),
                irqchip: backend,
                vfs: 2,
                policy,
                preempt: Some(POLICY_PREEMPTION.parse().map_err(Error::BadConfig)?),
                pin: true,
                ..VmConfig::default()
            };
            let (output, report) =
                run_captured(config, &format!("RTT guest ({backend}, {policy})"))?;
            let khz = report.tsc_khz.unwrap_or(1);
            let line = output.lines().find(|l| l.starts_with("RTT ")).unwrap_or("");
            let field = |k: &str| -> u64 {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let (n, cycles) = (field("rounds="), field("cycles=").max(1));
            let samples: Vec<u64> = line
                .split_once("samples=")
                .map(|(_, s)| s.split(',').filter_map(|v| v.parse().ok()).collect())
                .unwrap_or_default();
            let rtt = Distribution::from_cycles(&samples, khz);
            let mean_us = rtt.samples_us.iter().sum::<f64>() / rtt.samples_us.len().max(1) as f64;
            out.push(RttResult {
                backend,
                policy,
                rtt,
                mean_us,
                per_second: n as f64 / (cycles as f64 / (f64::from(khz) * 1e3)),
            });
        }
    }
    Ok(out)
}

/// The policies table: each policy beside the baseline of its backend.
pub fn policies_table(results: &[RttResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "request/response VF 0 <-> VF 1; VF 1's interrupt posted to vCPU 1, descheduled {POLICY_PREEMPTION} (vCPU:period ms:%), vCPUs pinned"
    );
    let _ = writeln!(
        t,
        "{:<20} {:<9} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "policy", "backend", "n", "mean µs", "median µs", "p99 µs", "req/s", "Δ mean", "Δ req/s"
    );
    for r in results {
        let base = results
            .iter()
            .find(|b| b.backend == r.backend && b.policy == POLICY_RUNS[0]);
        let (d_rtt, d_tput) = base.map_or((0.0, 0.0), |b| {
            (
                100.0 * (r.mean_us / b.mean_us - 1.0),
                100.0 * (r.per_second / b.per_second - 1.0),
            )
        });
        let q = |p| r.rtt.quantile(p).map_or("-".into(), |v| format!("{v:.1}"));
        let _ = writeln!(
            t,
            "{:<20} {:<9} {:>5} {:>10.1} {:>10} {:>10} {:>10.0} {:>8.1}% {:>8.1}%",
            r.policy.to_string(),
            r.backend.to_string(),
            r.rtt.samples_us.len(),
            r.mean_us,
            q(0.5),
            q(0.99),
            r.per_second,
            d_rtt,
            d_tput
        );
    }
    let _ = writeln!(
        t,
        "published (redirection under preemption, ICT/Loongson 2024): {PUBLISHED_RTT_CHANGE}% mean RTT, +{PUBLISHED_THROUGHPUT_CHANGE}% throughput"
    );
    t
}

/// A bar chart of mean RTT per policy and backend.
pub fn policies_plot(results: &[RttResult], dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let bars: Vec<(String, f64)> = results
        .iter()
        .map(|r| {
            let tag = match r.backend {
                IrqchipKind::Emulated => "emu",
                IrqchipKind::Kernel => "kvm",
                IrqchipKind::Bypass => "hw",
            };
            (format!("{} {tag}", r.policy), r.mean_us)
        })
        .collect();
    let path = dir.join("policies-rtt.svg");
    crate::plot::bar_chart_svg(
        &path,
        &format!("Mean request/response RTT, vCPU 1 preempted {POLICY_PREEMPTION}"),
        "mean RTT (µs)",
        &bars,
    )?;
    Ok(path)
}
