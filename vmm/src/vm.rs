//! A KVM virtual machine: guest memory, the kernel, devices on the buses, and one thread per
//! vCPU; `run` returns how the VM ended.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use devices::legacy::{ExitPort, ExitRequest, SerialPort, COM1_BASE, COM1_LEN, EXIT_PORT_BASE};
use kvm_bindings::{
    kvm_enable_cap, kvm_userspace_memory_region, KVM_CAP_X86_USER_SPACE_MSR, KVM_MAX_CPUID_ENTRIES,
    KVM_MSR_EXIT_REASON_VALID_MASK,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_device::bus::{MmioAddress, MmioRange, PioAddress, PioRange};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::dispatch::{Dispatcher, ExitCounters};
use crate::emulated::{self, EmulatedIrqchip};
use crate::error::{self, Error, Result};
use crate::fabric::{Backend, Fabric, IommuRegisters};
use crate::irqchip::IrqchipKind;
use crate::loader::{self, elf::Symbols, Module};
use crate::testdev::{MsiTestDevice, TESTDEV_BASE, TESTDEV_LEN};
use crate::vcpu::{self, VcpuHandle};
use crate::{boot, layout};

/// Where the kernel image comes from.
#[derive(Clone, Debug)]
pub enum KernelImage {
    File(PathBuf),
    /// A guest built into the VMM binary (the demo).
    Embedded {
        name: &'static str,
        bytes: &'static [u8],
    },
}

#[derive(Clone, Debug)]
pub struct VmConfig {
    pub kernel: KernelImage,
    pub cpus: u32,
    pub mem_mib: u64,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub timeout: Option<Duration>,
    pub irqchip: IrqchipKind,
    /// A VFIO-bound VF to assign (`--vfio-device`), for the bypass backend.
    pub vfio_device: Option<PathBuf>,
    /// VFs of the NIC to enable before the guest starts (`--vfs N`).
    pub vfs: u16,
    /// Where the serial console goes: standard output, or a buffer (benchmarks parse it).
    pub console: Option<Arc<Mutex<Vec<u8>>>>,
    /// The delivery policy (`--policy`).
    pub policy: crate::policy::PolicyKind,
    /// A preemption schedule (`--preempt`).
    pub preempt: Option<crate::sched::PreemptSchedule>,
    /// Pin vCPU i's thread to host CPU i mod (host CPUs) (`--pin`).
    pub pin: bool,
    /// A stand-in sharer attaching to a source for a while (`--share-source`).
    pub share: Option<crate::hybrid::ShareSchedule>,
    /// Other VMs of this process that may share this VM's interrupt sources (hybrid).
    pub share_hub: Option<Arc<crate::hybrid::ShareHub>>,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            kernel: KernelImage::File(PathBuf::new()),
            cpus: 1,
            mem_mib: 128,
            initrd: None,
            cmdline: String::new(),
            timeout: None,
            irqchip: IrqchipKind::default(),
            vfio_device: None,
            vfs: 0,
            console: None,
            policy: crate::policy::PolicyKind::default(),
            preempt: None,
            pin: false,
            share: None,
            share_hub: None,
        }
    }
}

/// How a VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest wrote the exit port; the status is `(v << 1) | 1`.
    GuestExit(u32),
    /// The guest crashed the machine (triple fault, failed entry).
    Crash(String),
    /// The guest caused an exit the VMM does not handle.
    Unhandled(String),
    /// The guest ran past the configured timeout.
    Timeout(Duration),
    /// The VMM failed while running the guest.
    Failure(String),
}

impl VmEnd {
    /// The process exit status for this end.
    pub fn status(&self) -> i32 {
        match self {
            VmEnd::GuestExit(s) => (*s & 0xff) as i32,
            VmEnd::Crash(_) => error::STATUS_GUEST_CRASH,
            VmEnd::Unhandled(_) => error::STATUS_UNHANDLED_EXIT,
            VmEnd::Timeout(_) => error::STATUS_TIMEOUT,
            VmEnd::Failure(_) => error::STATUS_VMM_FAILURE,
        }
    }

    /// A one-line description for the user, or `None` for a guest's own exit.
    pub fn message(&self) -> Option<String> {
        match self {
            VmEnd::GuestExit(_) => None,
            VmEnd::Crash(d) => Some(format!("guest crashed: {d}")),
            VmEnd::Unhandled(d) => Some(format!(
                "guest stopped on an exit the VMM does not handle: {d}"
            )),
            VmEnd::Timeout(t) => Some(format!("guest still running after {t:?}; stopped")),
            VmEnd::Failure(d) => Some(format!("VMM failure: {d}")),
        }
    }
}

/// State the vCPU threads share.
pub struct VmContext {
    pub dispatch: Dispatcher,
    pub memory: GuestMemoryMmap,
    pub symbols: Symbols,
    pub vcpus: Arc<Vec<VcpuHandle>>,
    /// The emulated interrupt controller (`--irqchip emulated`).
    pub emulated: Option<Arc<EmulatedIrqchip>>,
    /// The interrupt fabric (VT-d and delivery to the interrupt controller).
    pub fabric: Arc<Fabric>,
    stopping: AtomicBool,
    end: Mutex<Option<VmEnd>>,
    ended: Condvar,
}

impl VmContext {
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Ends the VM; the first reason wins.
    pub fn end(&self, reason: VmEnd) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        if end.is_none() {
            tracing::info!(?reason, "VM ending");
            *end = Some(reason);
        }
        self.stopping.store(true, Ordering::Release);
        self.ended.notify_all();
    }
}

/// The exit port's link to the VM.
#[derive(Clone)]
struct ExitLink(Arc<Mutex<Option<std::sync::Weak<VmContext>>>>);

impl ExitRequest for ExitLink {
    fn request_exit(&self, status: u32) {
        let ctx = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(ctx) = ctx.and_then(|w| w.upgrade()) {
            ctx.end(VmEnd::GuestExit(status));
        }
    }
}

/// The serial port's interrupt line; COM1's IRQ 4 has no interrupt controller to reach yet.
struct NoIrq;
impl vm_superio::Trigger for NoIrq {
    type E = std::convert::Infallible;
    fn trigger(&self) -> std::result::Result<(), Self::E> {
        Ok(())
    }
}

/// The guest's serial console: line-buffered standard output, or a capture buffer.
struct Console(Option<Arc<Mutex<Vec<u8>>>>);
impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(capture) = &self.0 {
            capture
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            return Ok(buf.len());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        if buf.contains(&b'\n') {
            out.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.0.is_some() {
            return Ok(());
        }
        std::io::stdout().flush()
    }
}

/// A snapshot the guest asked for through the test device's mark register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub label: u32,
    /// Userspace exits so far.
    pub exits: u64,
    /// Interrupts injected so far (emulated backend).
    pub injected: u64,
}

/// What a finished run reports.
pub struct RunReport {
    pub end: VmEnd,
    pub counters: Arc<ExitCounters>,
    pub elapsed: Duration,
    /// The emulated APIC path's counters, when that backend ran.
    pub apic_summary: Option<String>,
    /// The interrupt fabric's counters.
    pub fabric_summary: String,
    /// Per-hop latency samples (host TSC cycles).
    pub hops: Arc<crate::hops::HopStats>,
    /// The guest TSC frequency, to turn cycles into time.
    pub tsc_khz: Option<u32>,
    /// Snapshots the guest asked for (test device mark register), in order.
    pub marks: Vec<Mark>,
}

fn host_memory_mib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || size <= 0 {
        return u64::MAX;
    }
    (pages as u64 * size as u64) >> 20
}

/// Checks what can be checked before touching KVM.
pub fn validate(config: &VmConfig) -> Result<()> {
    if config.cpus == 0 {
        return Err(Error::BadConfig("--cpus must be at least 1".into()));
    }
    if config.mem_mib < layout::MIN_MEM_MIB {
        return Err(Error::BadConfig(format!(
            "--mem-mib {} is too small: the VM needs at least {} MiB",
            config.mem_mib,
            layout::MIN_MEM_MIB
        )));
    }
    if usize::from(config.vfs) > devices::nic::MAX_VFS {
        return Err(Error::BadConfig(format!(
            "--vfs {} exceeds the NIC's {} virtual functions",
            config.vfs,
            devices::nic::MAX_VFS
        )));
    }
    if let Some(p) = config.preempt {
        if p.vcpu >= config.cpus as usize {
            return Err(Error::BadConfig(format!(
                "--preempt names vCPU {} but the VM has {} vCPUs",
                p.vcpu, config.cpus
            )));
        }
    }
    let host = host_memory_mib();
    if config.mem_mib > host {
        return Err(Error::BadConfig(format!(
            "--mem-mib {} exceeds this host's {host} MiB of memory",
            config.mem_mib
        )));
    }
    Ok(())
}

fn open_kvm() -> Result<Kvm> {
    Kvm::new().map_err(|e| Error::KvmUnavailable(format!("/dev/kvm: {e}")))
}

fn create_memory(vm: &VmFd, mem_mib: u64) -> Result<GuestMemoryMmap> {
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(mem_mib << 20)
        .into_iter()
        .map(|(start, len)| (GuestAddress(start), len as usize))
        .collect();
    let memory = GuestMemoryMmap::from_ranges(&ranges)
        .map_err(|e| Error::Memory(format!("cannot allocate {mem_mib} MiB: {e}")))?;
    for (slot, region) in memory.iter().enumerate() {
        let host = memory
            .get_host_address(region.start_addr())
            .map_err(|e| Error::Memory(e.to_string()))?;
        let mr = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is mapped for the lifetime of `memory`, which outlives the VM's
        // vCPUs (they are joined before `run` returns).
        unsafe { vm.set_user_memory_region(mr) }
            .map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(memory)
}

/// Starts a named VMM thread.
fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Internal(format!("cannot start the {name} thread: {e}")))
}

/// Deschedules the scheduled vCPU for its share of every period, until the VM stops.
fn preempt_loop(ctx: &VmContext, schedule: crate::sched::PreemptSchedule) {
    let off = schedule.period * schedule.percent / 100;
    let on = schedule.period - off;
    while !ctx.stopping() {
        std::thread::sleep(on);
        if ctx.stopping() {
            break;
        }
        ctx.fabric.preempt(schedule.vcpu);
        ctx.vcpus[schedule.vcpu].kick();
        std::thread::sleep(off);
        ctx.fabric.resume(schedule.vcpu);
        ctx.vcpus[schedule.vcpu].kick();
    }
    ctx.fabric.resume(schedule.vcpu);
}

/// Attaches a stand-in sharer to a source for the scheduled window (or until the VM stops).
fn share_window(ctx: &VmContext, share: crate::hybrid::ShareSchedule) {
    let started = Instant::now();
    let sleep_until = |t: Duration| {
        while started.elapsed() < t && !ctx.stopping() {
            std::thread::sleep(Duration::from_millis(1).min(t - started.elapsed().min(t)));
        }
    };
    sleep_until(share.start);
    if ctx.stopping() {
        return;
    }
    ctx.fabric.hybrid.share(share.requester_id);
    sleep_until(share.end);
    ctx.fabric.hybrid.unshare(share.requester_id);
}

/// Boots the configured kernel and runs it to the end.
pub fn run(config: &VmConfig) -> Result<RunReport> {
    validate(config)?;
    let (image, kernel_path): (std::borrow::Cow<[u8]>, PathBuf) = match &config.kernel {
        KernelImage::File(path) => (
            std::fs::read(path)
                .map_err(|source| Error::KernelUnreadable {
                    path: path.clone(),
                    source,
                })?
                .into(),
            path.clone(),
        ),
        KernelImage::Embedded { name, bytes } => ((*bytes).into(), PathBuf::from(name)),
    };
    let initrd = match &config.initrd {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| Error::InitrdUnreadable {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };

    let kvm = open_kvm()?;
    let max = kvm.get_max_vcpus();
    if config.cpus as usize > max {
        return Err(Error::BadConfig(format!(
            "--cpus {} exceeds the {max} vCPUs this host's KVM allows",
            config.cpus
        )));
    }
    let vm = Arc::new(kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?);
    if let Err(e) = vm.set_tss_address(0xfffb_d000) {
        tracing::warn!(%e, "KVM_SET_TSS_ADDR failed");
    }
    let msr_cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        args: [u64::from(KVM_MSR_EXIT_REASON_VALID_MASK), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&msr_cap)
        .map_err(Error::kvm("enabling KVM_CAP_X86_USER_SPACE_MSR"))?;

    if config.vfio_device.is_some() && config.irqchip != IrqchipKind::Bypass {
        return Err(Error::BadConfig(format!(
            "--vfio-device needs the bypass backend, which is not possible on this host: {}",
            crate::bypass::detect(std::path::Path::new("/")).missing()
        )));
    }
    if config.irqchip == IrqchipKind::Bypass {
        let root = std::path::Path::new("/");
        let host = crate::bypass::detect(root);
        if !host.available() {
            return Err(Error::BadConfig(format!(
                "--irqchip bypass is not possible on this host: {}",
                host.missing()
            )));
        }
        let Some(device) = &config.vfio_device else {
            return Err(Error::BadConfig(
                "--irqchip bypass needs --vfio-device".into(),
            ));
        };
        let device = crate::bypass::assignable(root, device).map_err(Error::BadConfig)?;
        return Err(Error::BadConfig(format!(
            "this host supports bypass and {} is assignable, but Postbox's VFIO wiring is not built yet",
            device.sysfs.display()
        )));
    }
    config.irqchip.setup_vm(&vm)?;
    if config.irqchip == IrqchipKind::Emulated {
        emulated::install_msr_filter(&vm)?;
    }
    let memory = create_memory(&vm, config.mem_mib)?;
    let kernel = loader::load_kernel(&memory, &image, &kernel_path)?;
    let initrd_name = config
        .initrd
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let modules: Vec<Module> = initrd
        .as_deref()
        .map(|bytes| Module {
            name: &initrd_name,
            bytes,
        })
        .into_iter()
        .collect();
    let ram = layout::ram_ranges(config.mem_mib << 20);
    let info = loader::write_boot_info(&memory, &ram, kernel.end, &config.cmdline, &modules)?;
    boot::write_tables(&memory)?;
    tracing::info!(protocol = ?kernel.protocol, entry = format_args!("{:#x}", kernel.entry),
                   cpus = config.cpus, mem_mib = config.mem_mib, "kernel loaded");

    // Devices.
    let exit_link = ExitLink(Arc::new(Mutex::new(None)));
    let serial = Arc::new(SerialPort::new(NoIrq, Console(config.console.clone())));
    let mut io = IoManager::new();
    let pio = |base: u16, len: u16| PioRange::new(PioAddress(base), len).expect("static range");
    io.register_pio(pio(COM1_BASE, COM1_LEN), serial.clone())
        .map_err(|e| Error::Internal(format!("serial: {e}")))?;
    io.register_pio(
        pio(EXIT_PORT_BASE, 4),
        Arc::new(ExitPort::new(exit_link.clone())),
    )
    .map_err(|e| Error::Internal(format!("exit port: {e}")))?;

    // vCPUs.
    let cpuid_base = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut fds = Vec::new();
    for index in 0..config.cpus {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(Error::kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid = cpuid_base.clone();
        crate::cpuid::patch(&mut cpuid, index, config.cpus);
        crate::hint::advertise(&mut cpuid);
        fd.set_cpuid2(&cpuid)
            .map_err(Error::kvm("KVM_SET_CPUID2"))?;
        fds.push(fd);
    }
    boot::setup_bsp(&fds[0], kernel.protocol, kernel.entry, info)?;
    let tsc_khz = fds[0].get_tsc_khz().ok();

    let handles: Arc<Vec<VcpuHandle>> =
        Arc::new((0..config.cpus).map(|_| VcpuHandle::default()).collect());
    let mut dispatch = Dispatcher::new(io);
    let hop_stats = Arc::new(crate::hops::HopStats::default());
    let emulated = match config.irqchip {
        IrqchipKind::Emulated => {
            let tsc_khz = fds[0]
                .get_tsc_khz()
                .map_err(Error::kvm("KVM_GET_TSC_KHZ"))?;
            let chip = Arc::new(EmulatedIrqchip::new(
                config.cpus,
                tsc_khz,
                handles.clone(),
                hop_stats.clone(),
            ));
            dispatch.per_vcpu.push(chip.clone());
            Some(chip)
        }
        _ => None,
    };
    let backend = match &emulated {
        Some(chip) => Backend::Emulated(chip.clone()),
        None => Backend::Kernel(vm.clone(), crate::msi_routes::MsiRoutes::default()),
    };
    let marks: Arc<Mutex<Vec<Mark>>> = Arc::default();
    let fabric = Arc::new(Fabric::new(
        memory.clone(),
        backend,
        config.cpus,
        hop_stats.clone(),
        crate::policy::Policy::new(config.policy),
        config
            .share_hub
            .clone()
            .map(crate::hybrid::Hybrid::with_hub)
            .unwrap_or_default(),
        config.preempt.is_some() || config.policy != crate::policy::PolicyKind::Posted,
    ));
    dispatch
        .io
        .register_mmio(
            MmioRange::new(
                MmioAddress(iommu::regs::DEFAULT_BASE),
                iommu::regs::REG_PAGE_SIZE,
            )
            .expect("static range"),
            Arc::new(IommuRegisters(fabric.clone())),
        )
        .map_err(|e| Error::Internal(format!("VT-d registers: {e}")))?;
    dispatch
        .io
        .register_pio(
            PioRange::new(PioAddress(TESTDEV_BASE), TESTDEV_LEN).expect("static range"),
            Arc::new(MsiTestDevice::new(fabric.clone(), {
                let marks = marks.clone();
                let exits = dispatch.counters.clone();
                let chip = emulated.clone();
                Box::new(move |label| {
                    let mark = Mark {
                        label,
                        exits: exits.total(),
                        injected: chip
                            .as_ref()
                            .map_or(0, |c| c.counters.injected.load(Ordering::Relaxed)),
                    };
                    marks.lock().unwrap_or_else(|e| e.into_inner()).push(mark);
                })
            })),
        )
        .map_err(|e| Error::Internal(format!("MSI test device: {e}")))?;
    {
        // Interrupts of sources this VM shares arrive on its vCPU 0.
        let weak = Arc::downgrade(&fabric);
        fabric.hybrid.set_injector(Arc::new(move |vector| {
            if let Some(fabric) = weak.upgrade() {
                fabric.deliver(
                    &apic::InterruptRequest::fixed(vector, 0),
                    apic::DestinationFormat::X2Apic,
                );
            }
        }));
    }
    dispatch.per_vcpu.push(fabric.hints.clone());
    dispatch.per_vcpu.push(fabric.hybrid.clone());
    let pci = crate::pci::Pci::new(&memory, fabric.clone(), config.vfs)?;
    let ports = Arc::new(crate::pci::PciPorts(pci.clone()));
    let pci_err = |e: vm_device::bus::Error| Error::Internal(format!("PCI: {e}"));
    dispatch
        .io
        .register_pio(
            PioRange::new(
                PioAddress(crate::pci::CONFIG_PORTS),
                crate::pci::CONFIG_PORTS_LEN,
            )
            .expect("static range"),
            ports.clone(),
        )
        .map_err(pci_err)?;
    dispatch
        .io
        .register_mmio(
            MmioRange::new(MmioAddress(crate::pci::ECAM_BASE), crate::pci::ECAM_SIZE)
                .expect("static range"),
            ports.clone(),
        )
        .map_err(pci_err)?;
    dispatch
        .io
        .register_mmio(
            MmioRange::new(
                MmioAddress(crate::pci::MMIO_WINDOW.0),
                crate::pci::MMIO_WINDOW.1,
            )
            .expect("static range"),
            ports,
        )
        .map_err(pci_err)?;
    let ctx = Arc::new(VmContext {
        dispatch,
        memory: memory.clone(),
        symbols: kernel.symbols.clone(),
        vcpus: handles,
        emulated,
        fabric,
        stopping: AtomicBool::new(false),
        end: Mutex::new(None),
        ended: Condvar::new(),
    });
    *exit_link.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&ctx));

    let started = Instant::now();
    let kvm_starts_aps = config.irqchip.kvm_starts_aps();
    let pin = config.pin;
    let mut threads = Vec::new();
    let preempt_thread = match config.preempt {
        Some(schedule) => {
            let ctx = ctx.clone();
            Some(spawn_named("preempt", move || {
                preempt_loop(&ctx, schedule)
            })?)
        }
        None => None,
    };
    let share_thread = match config.share {
        Some(share) => {
            let ctx = ctx.clone();
            Some(spawn_named("share", move || share_window(&ctx, share))?)
        }
        None => None,
    };
    let pci_thread = {
        let pci = pci.clone();
        spawn_named("pci-poll", move || pci.run_poll())?
    };
    let timer_thread = match &ctx.emulated {
        Some(chip) => {
            let chip = chip.clone();
            Some(spawn_named("apic-timers", move || chip.run_timers())?)
        }
        None => None,
    };
    for (index, fd) in fds.into_iter().enumerate() {
        let ctx = ctx.clone();
        let thread = spawn_named(&format!("vcpu{index}"), move || {
            if pin {
                crate::sched::pin_current_thread(index);
            }
            vcpu::run(index, fd, ctx, index != 0 && !kvm_starts_aps)
        })?;
        threads.push(thread);
    }

    let end = {
        let mut end = ctx.end.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(reason) = end.clone() {
                break reason;
            }
            match config.timeout {
                Some(limit) => {
                    let elapsed = started.elapsed();
                    if elapsed >= limit {
                        break VmEnd::Timeout(limit);
                    }
                    end = ctx
                        .ended
                        .wait_timeout(end, limit - elapsed)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => end = ctx.ended.wait(end).unwrap_or_else(|e| e.into_inner()),
            }
        }
    };
    ctx.end(end.clone());
    for handle in ctx.vcpus.iter() {
        handle.kick();
    }
    for thread in threads {
        if thread.join().is_err() {
            return Err(Error::Internal("a vCPU thread panicked".into()));
        }
    }
    if let Some(chip) = &ctx.emulated {
        chip.stop();
        tracing::info!("{}", chip.counters.summary());
    }
    if let Some(t) = timer_thread {
        let _ = t.join();
    }
    pci.stop();
    let _ = pci_thread.join();
    if let Some(t) = preempt_thread {
        let _ = t.join();
    }
    if let Some(t) = share_thread {
        let _ = t.join();
    }
    ctx.fabric.hybrid.leave();
    serial.flush();
    let taken_marks = std::mem::take(&mut *marks.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(RunReport {
        end,
        counters: ctx.dispatch.counters.clone(),
        elapsed: started.elapsed(),
        apic_summary: ctx.emulated.as_ref().map(|c| c.counters.summary()),
        fabric_summary: format!(
            "{}\n  {}\n  {}",
            ctx.fabric.counters.summary(),
            ctx.fabric.policy.summary(),
            ctx.fabric.hybrid.summary()
        ),
        hops: hop_stats,
        tsc_khz,
        marks: taken_marks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_has_its_own_status_and_guest_exits_are_odd() {
        let ends = [
            VmEnd::Crash("x".into()),
            VmEnd::Unhandled("x".into()),
            VmEnd::Timeout(Duration::from_secs(1)),
            VmEnd::Failure("x".into()),
        ];
        let statuses: Vec<i32> = ends.iter().map(VmEnd::status).collect();
        assert_eq!(statuses, [4, 6, 10, 8]);
        assert!(ends.iter().all(|e| e.message().is_some()));
        assert_eq!(
            VmEnd::GuestExit(devices::legacy::ExitPort::<ExitLink>::status_for(0x10)).status(),
            0x21
        );
        assert_eq!(VmEnd::GuestExit(1).message(), None);
    }

    #[test]
    fn impossible_sizes_are_refused_before_kvm() {
        let bad = |cpus, mem_mib| {
            validate(&VmConfig {
                cpus,
                mem_mib,
                ..VmConfig::default()
            })
        };
        assert!(matches!(bad(0, 128), Err(Error::BadConfig(_))));
        assert!(matches!(bad(1, 2), Err(Error::BadConfig(_))));
        assert!(matches!(bad(1, u64::MAX >> 21), Err(Error::BadConfig(_))));
        assert!(bad(2, 64).is_ok());
    }
}
