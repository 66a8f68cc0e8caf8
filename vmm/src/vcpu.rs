//! One thread per vCPU: the KVM_RUN loop, exit dispatch, HLT and wait-for-SIPI parking,
//! and kicks that make a running vCPU leave KVM_RUN.
//!
//! A kick is a real-time signal sent to the vCPU's thread; its handler sets `immediate_exit`
//! in that thread's `kvm_run`, so a kick that lands just before KVM_RUN is not lost.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress};

use crate::boot;
use crate::dispatch::MsrResult;
use crate::vm::{VmContext, VmEnd};

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A const-initialized thread-local Cell is async-signal-safe to read.
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own mapped kvm_run, valid while it runs.
        unsafe { (*run).immediate_exit = 1 };
    }
}

/// The signal used for kicks.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler) {
            tracing::error!(%e, "cannot install the vCPU kick handler");
        }
    });
}

/// What a parked or halted vCPU is waiting for.
#[derive(Debug, Default)]
struct Mailbox {
    /// A start-up IPI's vector, for an AP in wait-for-SIPI.
    sipi: Option<u8>,
    /// Something happened that may let a halted vCPU continue.
    wake: bool,
}

/// The part of a vCPU other threads talk to.
#[derive(Debug, Default)]
pub struct VcpuHandle {
    mailbox: Mutex<Mailbox>,
    cv: Condvar,
    thread: OnceLock<libc::pthread_t>,
    /// Set from just before the pre-entry injection until KVM_RUN returns: only then does
    /// a kick need a signal. Outside it, the thread is in userspace and will look at its
    /// APIC before it next enters; a signal would only abort that entry (a wasted exit).
    in_guest: AtomicBool,
}

impl VcpuHandle {
    /// Makes the vCPU leave KVM_RUN (if running) or its wait (if halted or parked).
    pub fn kick(&self) {
        {
            let mut m = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            m.wake = true;
        }
        self.cv.notify_all();
        if !self.in_guest.load(Ordering::SeqCst) {
            return;
        }
        if let Some(&thread) = self.thread.get() {
            // SAFETY: the thread id belongs to a vCPU thread that is joined only after the VM
            // stops; a kick to a thread that already left its loop is harmless.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }

    /// Delivers a start-up IPI to an AP waiting for one.
    pub fn start_up(&self, vector: u8) {
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner()).sipi = Some(vector);
        self.cv.notify_all();
    }

    /// Waits until woken (or until the VM stops). Returns a SIPI vector if one arrived.
    fn wait(&self, ctx: &VmContext, want_sipi: bool) -> Option<u8> {
        let mut m = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ctx.stopping() {
                return None;
            }
            if want_sipi {
                if let Some(v) = m.sipi.take() {
                    return Some(v);
                }
            } else if std::mem::take(&mut m.wake) {
                return None;
            }
            m = self.cv.wait(m).unwrap_or_else(|e| e.into_inner());
        }
    }
}

enum Next {
    Continue,
    Halt,
    End(VmEnd),
}

/// Runs vCPU `index` until the VM stops. APs (`parked`) first wait for a start-up IPI.
pub fn run(index: usize, mut fd: VcpuFd, ctx: Arc<VmContext>, parked: bool) {
    install_kick_handler();
    let handle = &ctx.vcpus[index];
    // SAFETY: pthread_self has no preconditions.
    let _ = handle.thread.set(unsafe { libc::pthread_self() });
    KVM_RUN.with(|c| c.set(fd.get_kvm_run() as *mut kvm_run));
    let span = tracing::debug_span!("vcpu", index);
    let _guard = span.enter();

    if let Some(chip) = &ctx.emulated {
        chip.vcpu_started(index, &fd);
    }
    if parked {
        tracing::debug!("parked in wait-for-SIPI");
        match handle.wait(&ctx, true) {
            Some(vector) => {
                if let Err(e) = boot::setup_ap_startup(&fd, vector) {
                    ctx.end(VmEnd::Failure(format!("vCPU {index}: {e}")));
                }
            }
            None => return,
        }
    }

    while !ctx.stopping() {
        ctx.fabric.sched.enter(index, || ctx.stopping());
        // Publish before looking for work or for a stop: a kick that finds this flag clear
        // has already made its change visible to the checks below; one that finds it set
        // signals, and the signal's `immediate_exit` ends the KVM_RUN below.
        handle.in_guest.store(true, Ordering::SeqCst);
        if ctx.stopping() {
            handle.in_guest.store(false, Ordering::SeqCst);
            break;
        }
        if let Some(chip) = &ctx.emulated {
            ctx.fabric.before_entry(index);
            chip.before_entry(index, &mut fd);
        }
        let result = fd.run();
        handle.in_guest.store(false, Ordering::SeqCst);
        let next = match result {
            Ok(exit) => handle_exit(index, exit, &ctx),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                ctx.dispatch
                    .counters
                    .interrupted
                    .fetch_add(1, Ordering::Relaxed);
                fd.set_kvm_immediate_exit(0);
                Next::Continue
            }
            Err(e) => Next::End(VmEnd::Failure(format!("vCPU {index}: KVM_RUN failed: {e}"))),
        };
        match next {
            Next::Continue => {}
            Next::Halt => {
                if !ctx.emulated.as_ref().is_some_and(|c| c.has_work(index)) {
                    ctx.fabric.sched.halt(index);
                    handle.wait(&ctx, false);
                }
            }
            Next::End(end) => {
                let end = describe_crash(index, &fd, &ctx, end);
                ctx.end(end);
            }
        }
    }
    KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
}

fn handle_exit(index: usize, exit: VcpuExit, ctx: &VmContext) -> Next {
    let d = &ctx.dispatch;
    match exit {
        VcpuExit::IoIn(port, data) => d.pio_read(index, port, data),
        VcpuExit::IoOut(port, data) => d.pio_write(index, port, data),
        VcpuExit::MmioRead(addr, data) => d.mmio_read(index, addr, data),
        VcpuExit::MmioWrite(addr, data) => d.mmio_write(index, addr, data),
        VcpuExit::X86Rdmsr(msr) => match d.rdmsr(index, msr.index) {
            MsrResult::Ok(v) => *msr.data = v,
            MsrResult::GeneralProtection => *msr.error = 1,
        },
        VcpuExit::X86Wrmsr(msr) => {
            if d.wrmsr(index, msr.index, msr.data) == MsrResult::GeneralProtection {
                *msr.error = 1;
            }
        }
        VcpuExit::IrqWindowOpen => {
            d.counters.other.fetch_add(1, Ordering::Relaxed);
        }
        VcpuExit::Hlt => {
            d.counters.hlt.fetch_add(1, Ordering::Relaxed);
            return Next::Halt;
        }
        VcpuExit::Shutdown => {
            d.counters.other.fetch_add(1, Ordering::Relaxed);
            return Next::End(VmEnd::Crash("triple fault (KVM_EXIT_SHUTDOWN)".into()));
        }
        VcpuExit::FailEntry(reason, cpu) => {
            d.counters.other.fetch_add(1, Ordering::Relaxed);
            return Next::End(VmEnd::Crash(format!(
                "VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason {reason:#x}, host CPU {cpu})"
            )));
        }
        VcpuExit::InternalError => {
            d.counters.other.fetch_add(1, Ordering::Relaxed);
            return Next::End(VmEnd::Unhandled(
                "emulation failure (KVM_EXIT_INTERNAL_ERROR)".into(),
            ));
        }
        VcpuExit::SystemEvent(kind, _) => {
            d.counters.other.fetch_add(1, Ordering::Relaxed);
            return Next::End(VmEnd::Crash(format!(
                "system event {kind} (KVM_EXIT_SYSTEM_EVENT)"
            )));
        }
        other => {
            d.counters.other.fetch_add(1, Ordering::Relaxed);
            return Next::End(VmEnd::Unhandled(format!("unhandled exit {other:?}")));
        }
    }
    Next::Continue
}

/// Adds vCPU, guest RIP (symbolized), and for emulation failures the instruction bytes.
fn describe_crash(index: usize, fd: &VcpuFd, ctx: &VmContext, end: VmEnd) -> VmEnd {
    let (what, crash) = match end {
        VmEnd::Crash(w) => (w, true),
        VmEnd::Unhandled(w) => (w, false),
        other => return other,
    };
    let mut detail = format!("vCPU {index}: {what}");
    if let Ok(regs) = fd.get_regs() {
        detail.push_str(&format!(" at RIP {:#x}", regs.rip));
        if let Some(sym) = ctx.symbols.describe(regs.rip) {
            detail.push_str(&format!(" <{sym}>"));
        }
        let phys = fd
            .translate_gva(regs.rip)
            .ok()
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address);
        if !crash {
            if let Some(pa) = phys {
                let mut bytes = [0u8; 15];
                if ctx.memory.read_slice(&mut bytes, GuestAddress(pa)).is_ok() {
                    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    detail.push_str(&format!(", instruction bytes {}", hex.join(" ")));
                }
            }
        }
    }
    if crash {
        VmEnd::Crash(detail)
    } else {
        VmEnd::Unhandled(detail)
    }
}
