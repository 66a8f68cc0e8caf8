//! `vmm`: boot a kernel (`vmm run`) or the bundled demo guest (`vmm demo`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vmm::error::{self, Error};
use vmm::vm::{self, KernelImage, VmConfig, VmEnd};

#[derive(Parser)]
#[command(
    name = "vmm",
    version,
    about = "Postbox: a VMM whose interrupt delivery path runs in software"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a kernel: an ELF64 bare-metal kernel or a multiboot v1 kernel.
    Run {
        /// Kernel image.
        #[arg(long, value_name = "PATH")]
        kernel: PathBuf,
        /// Number of vCPUs.
        #[arg(long, default_value_t = 1, value_name = "N")]
        cpus: u32,
        /// Guest memory in MiB.
        #[arg(long = "mem-mib", default_value_t = 128, value_name = "M")]
        mem_mib: u64,
        /// A file loaded as the first multiboot module.
        #[arg(long, value_name = "PATH")]
        initrd: Option<PathBuf>,
        /// The kernel command line.
        #[arg(long, default_value = "", value_name = "STR")]
        cmdline: String,
        /// Stop the guest after this many seconds (exit status 10).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Interrupt controller backend: emulated (Postbox's models), kernel (KVM's LAPIC)
        /// or bypass (VFIO + posted interrupts in hardware).
        #[arg(long, value_name = "BACKEND")]
        irqchip: Option<vmm::irqchip::IrqchipKind>,
        /// A VF bound to vfio-pci (sysfs path or PCI address) to assign to the guest; with
        /// it, the bypass backend is chosen when the host supports it.
        #[arg(long = "vfio-device", value_name = "PATH")]
        vfio_device: Option<PathBuf>,
        /// Enable N virtual functions of the NIC before the guest starts (0–8), with the
        /// built-in PF agent answering their mailboxes.
        #[arg(long, default_value_t = 0, value_name = "N")]
        vfs: u16,
        /// Delivery policy for posted interrupts: posted (baseline), redirect-preempted,
        /// running-state, hinting, hybrid.
        #[arg(long, default_value = "posted", value_name = "POLICY")]
        policy: vmm::policy::PolicyKind,
        /// Deschedule a vCPU for PERCENT of every PERIOD_MS (reproducible preemption).
        #[arg(long, value_name = "VCPU:PERIOD_MS:PERCENT")]
        preempt: Option<vmm::sched::PreemptSchedule>,
        /// Pin vCPU i's thread to host CPU i (mod the host's CPUs).
        #[arg(long)]
        pin: bool,
        /// Hybrid policy: a stand-in sharer attaches to the source with requester ID RID
        /// from START_MS to END_MS (Postbox runs one VM per process).
        #[arg(long = "share-source", value_name = "RID:START_MS:END_MS")]
        share_source: Option<vmm::hybrid::ShareSchedule>,
        /// Boot a second VM (1 vCPU, 64 MiB) from KERNEL next to this one, in the same
        /// process, able to share this VM's interrupt sources (hybrid policy).
        #[arg(long = "share-with", value_name = "KERNEL")]
        share_with: Option<PathBuf>,
    },
    /// Boot the bundled demo guest and print what it did.
    Demo,
    /// Measure the delivery path on the emulated and the kernel backend, and the model
    /// pipeline; print a table (or JSON) and write latency plots.
    Bench {
        /// `latency` (the delivery path on both backends) or `policies` (request/response
        /// RTT per delivery policy under vCPU preemption).
        #[arg(default_value = "latency", value_name = "SUITE")]
        suite: String,
        /// Interrupts (or round trips) per scenario.
        #[arg(long, default_value_t = 500, value_name = "N")]
        rounds: u32,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Directory for the SVG plots.
        #[arg(long, default_value = "bench-results", value_name = "DIR")]
        out: PathBuf,
        /// Interrupts through the pure model pipeline.
        #[arg(long, default_value_t = vmm::bench::PIPELINE_ITERATIONS, value_name = "N")]
        pipeline_iterations: u64,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTBOX_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("vmm: error: {e}");
    ExitCode::from(e.status() as u8)
}

fn report(end: &VmEnd) -> ExitCode {
    if let Some(msg) = end.message() {
        eprintln!("vmm: {msg}");
    }
    ExitCode::from(end.status() as u8)
}

fn timeout(seconds: Option<f64>) -> Result<Option<Duration>, Error> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| Error::BadConfig(format!("--timeout {s} is not a valid duration")))
        })
        .transpose()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's first line names the problem.
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("vmm: {}", line.trim_start_matches("error: "));
            return ExitCode::from(error::STATUS_BAD_INPUT as u8);
        }
    };
    init_tracing();
    match cli.command {
        Command::Run {
            kernel,
            cpus,
            mem_mib,
            initrd,
            cmdline,
            timeout: t,
            irqchip,
            vfio_device,
            vfs,
            policy,
            preempt,
            pin,
            share_source,
            share_with,
        } => {
            // Default: bypass when a VF is given and the host can post in hardware.
            let irqchip = irqchip.unwrap_or_else(|| {
                let bypass = vfio_device.is_some()
                    && vmm::bypass::detect(std::path::Path::new("/")).available();
                if bypass {
                    vmm::irqchip::IrqchipKind::Bypass
                } else {
                    vmm::irqchip::IrqchipKind::Emulated
                }
            });
            let timeout = match timeout(t) {
                Ok(t) => t,
                Err(e) => return fail(&e),
            };
            let config = VmConfig {
                kernel: KernelImage::File(kernel),
                cpus,
                mem_mib,
                initrd,
                cmdline,
                timeout,
                irqchip,
                vfio_device,
                vfs,
                console: None,
                policy,
                preempt,
                pin,
                share: share_source,
                share_hub: None,
            };
            if let Some(peer) = share_with {
                return run_pair(config, peer);
            }
            match vm::run(&config) {
                Ok(r) => {
                    tracing::info!("{}", r.counters.summary());
                    tracing::info!("{}", r.fabric_summary);
                    if let Some(apic) = &r.apic_summary {
                        tracing::info!("{apic}");
                    }
                    report(&r.end)
                }
                Err(e) => fail(&e),
            }
        }
        Command::Demo => demo(),
        Command::Bench {
            suite,
            rounds,
            json,
            out,
            pipeline_iterations,
        } => match suite.as_str() {
            "latency" => bench(rounds, json, out, pipeline_iterations),
            "policies" => bench_policies(rounds, out),
            other => fail(&Error::BadConfig(format!(
                "unknown bench suite {other:?} (expected latency or policies)"
            ))),
        },
    }
}

fn demo() -> ExitCode {
    let config = VmConfig {
        kernel: KernelImage::Embedded {
            name: "demo",
            bytes: vmm::guests::DEMO,
        },
        cpus: 2,
        mem_mib: 64,
        cmdline: "demo".into(),
        timeout: Some(Duration::from_secs(120)),
        vfs: 2,
        ..VmConfig::default()
    };
    println!(
        "postbox demo: booting the bundled guest on {} vCPUs, {} MiB, irqchip {}, NIC with {} VFs",
        config.cpus, config.mem_mib, config.irqchip, config.vfs
    );
    let r = match vm::run(&config) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    println!(
        "postbox demo: guest ended: {:?} after {:.1} ms",
        r.end,
        r.elapsed.as_secs_f64() * 1e3
    );
    println!("postbox demo: what travelled");
    println!("  {:<34} {:>8} {:>12}", "hop", "count", "median");
    for hop in vmm::hops::HOPS {
        let (n, median) = r.hops.median(hop);
        let median = match (median, r.tsc_khz) {
            (Some(c), Some(khz)) => format!("{:.2} us", c as f64 / f64::from(khz) * 1e3),
            (Some(c), None) => format!("{c} cycles"),
            (None, _) => "-".into(),
        };
        println!("  {:<34} {:>8} {:>12}", hop.name(), n, median);
    }
    println!("  {}", r.fabric_summary);
    if let Some(apic) = &r.apic_summary {
        println!("  {apic}");
    }
    println!("  {}", r.counters.summary());
    match r.end {
        // The guest wrote 0 to the exit port: success.
        VmEnd::GuestExit(1) => ExitCode::SUCCESS,
        other => report(&other),
    }
}

fn bench(rounds: u32, json: bool, out: PathBuf, pipeline_iterations: u64) -> ExitCode {
    if !(1..=2000).contains(&rounds) {
        return fail(&Error::BadConfig(format!(
            "--rounds {rounds} must be between 1 and 2000"
        )));
    }
    if pipeline_iterations == 0 {
        return fail(&Error::BadConfig(
            "--pipeline-iterations must be at least 1".into(),
        ));
    }
    let options = vmm::bench::BenchOptions {
        rounds,
        pipeline_iterations,
        out_dir: out,
    };
    let report = match vmm::bench::run(&options, |step| eprintln!("vmm bench: {step}")) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    match report.plots(&options.out_dir) {
        Ok(paths) => {
            for p in paths {
                eprintln!("vmm bench: wrote {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&Error::Internal(format!("writing plots: {e}"))),
    }
}

fn bench_policies(rounds: u32, out: PathBuf) -> ExitCode {
    if !(1..=1000).contains(&rounds) {
        return fail(&Error::BadConfig(format!(
            "--rounds {rounds} must be between 1 and 1000 for the policies suite"
        )));
    }
    let results = match vmm::bench::run_policies(rounds, |step| eprintln!("vmm bench: {step}")) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    print!("{}", vmm::bench::policies_table(&results));
    match vmm::bench::policies_plot(&results, &out) {
        Ok(path) => {
            eprintln!("vmm bench: wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&Error::Internal(format!("writing the plot: {e}"))),
    }
}

/// Runs `config` and a peer VM from `peer` side by side, joined by a share hub; the peer's
/// console is printed after it ends, prefixed with `peer: `.
fn run_pair(mut config: VmConfig, peer: PathBuf) -> ExitCode {
    let hub = std::sync::Arc::new(vmm::hybrid::ShareHub::default());
    config.share_hub = Some(hub.clone());
    let console: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = std::sync::Arc::default();
    let peer_config = VmConfig {
        kernel: KernelImage::File(peer),
        cpus: 1,
        mem_mib: 64,
        timeout: config.timeout,
        irqchip: config.irqchip,
        policy: vmm::policy::PolicyKind::Hybrid,
        console: Some(console.clone()),
        share_hub: Some(hub),
        ..VmConfig::default()
    };
    let peer = std::thread::spawn(move || vm::run(&peer_config));
    let main = vm::run(&config);
    let peer = peer.join();
    let output =
        String::from_utf8_lossy(&console.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    for line in output.lines() {
        println!("peer: {line}");
    }
    let main = match main {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    tracing::info!("{}", main.fabric_summary);
    match peer {
        Ok(Ok(p)) if p.end == VmEnd::GuestExit(1) => report(&main.end),
        Ok(Ok(p)) => {
            eprintln!("vmm: peer VM: {:?}", p.end);
            report(&p.end)
        }
        Ok(Err(e)) => fail(&e),
        Err(_) => fail(&Error::Internal("the peer VM's thread panicked".into())),
    }
}
