//! vCPU scheduling state that delivery policies read: running, preempted or halted, the host
//! CPU each vCPU last ran on, and a short history of its preemptions. Preemption is made
//! reproducible on a small machine by a schedule (`--preempt VCPU:PERIOD_MS:PERCENT`): a
//! thread deschedules the vCPU for PERCENT of every period — the vCPU leaves KVM_RUN and
//! waits before its next entry, and the fabric sets SN in its posted-interrupt descriptors,
//! as KVM does for a preempted vCPU.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Preemptions remembered per vCPU.
const HISTORY: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    Running = 0,
    Preempted = 1,
    Halted = 2,
}

impl RunState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Preempted,
            2 => Self::Halted,
            _ => Self::Running,
        }
    }
}

/// `--preempt VCPU:PERIOD_MS:PERCENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreemptSchedule {
    pub vcpu: usize,
    pub period: Duration,
    pub percent: u32,
}

impl FromStr for PreemptSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [vcpu, period, percent] = parts.as_slice() else {
            return Err(format!("--preempt {s:?}: expected VCPU:PERIOD_MS:PERCENT"));
        };
        let num = |v: &str, what: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("--preempt {s:?}: {what} {v:?} is not a number"))
        };
        let (vcpu, period, percent) = (
            num(vcpu, "vCPU")?,
            num(period, "period")?,
            num(percent, "percent")?,
        );
        if period == 0 || period > 10_000 || !(1..=99).contains(&percent) {
            return Err(format!(
                "--preempt {s:?}: the period must be 1–10000 ms and the share 1–99 %"
            ));
        }
        Ok(Self {
            vcpu: vcpu as usize,
            period: Duration::from_millis(period),
            percent: percent as u32,
        })
    }
}

/// Pins the calling thread to host CPU `index` mod the number of online CPUs.
pub fn pin_current_thread(index: usize) {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET indexes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(index % cpus, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(index, "cannot pin the vCPU thread");
        }
    }
}

#[derive(Default)]
struct History {
    /// When the current preemption began.
    since: Option<Instant>,
    /// Lengths of past preemptions.
    lengths: VecDeque<Duration>,
}

struct VcpuSched {
    state: AtomicU8,
    preempted: AtomicBool,
    host_cpu: AtomicU32,
    history: Mutex<History>,
}

/// Scheduling state of every vCPU of one VM.
pub struct Scheduler {
    vcpus: Vec<VcpuSched>,
    resume: Mutex<()>,
    resumed: Condvar,
}

impl Scheduler {
    pub fn new(cpus: usize) -> Self {
        Self {
            vcpus: (0..cpus)
                .map(|_| VcpuSched {
                    state: AtomicU8::new(RunState::Running as u8),
                    preempted: AtomicBool::new(false),
                    host_cpu: AtomicU32::new(u32::MAX),
                    history: Mutex::default(),
                })
                .collect(),
            resume: Mutex::new(()),
            resumed: Condvar::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.vcpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vcpus.is_empty()
    }

    pub fn state(&self, vcpu: usize) -> RunState {
        self.vcpus.get(vcpu).map_or(RunState::Preempted, |v| {
            RunState::from_u8(v.state.load(Ordering::SeqCst))
        })
    }

    pub fn is_preempted(&self, vcpu: usize) -> bool {
        self.vcpus
            .get(vcpu)
            .is_some_and(|v| v.preempted.load(Ordering::SeqCst))
    }

    /// The host CPU `vcpu` last entered the guest on.
    pub fn host_cpu(&self, vcpu: usize) -> Option<u32> {
        let cpu = self.vcpus.get(vcpu)?.host_cpu.load(Ordering::Relaxed);
        (cpu != u32::MAX).then_some(cpu)
    }

    /// The vCPU thread, before entry: waits while descheduled, then marks itself running.
    pub fn enter(&self, vcpu: usize, stopping: impl Fn() -> bool) {
        let v = &self.vcpus[vcpu];
        if v.preempted.load(Ordering::SeqCst) {
            let mut guard = self.resume.lock().unwrap_or_else(|e| e.into_inner());
            while v.preempted.load(Ordering::SeqCst) && !stopping() {
                guard = self
                    .resumed
                    .wait_timeout(guard, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 {
            v.host_cpu.store(cpu as u32, Ordering::Relaxed);
        }
        v.state.store(RunState::Running as u8, Ordering::SeqCst);
    }

    /// The vCPU thread blocks in HLT.
    pub fn halt(&self, vcpu: usize) {
        self.vcpus[vcpu]
            .state
            .store(RunState::Halted as u8, Ordering::SeqCst);
    }

    /// Deschedules `vcpu` (the caller kicks it out of KVM_RUN).
    pub fn preempt(&self, vcpu: usize) {
        let v = &self.vcpus[vcpu];
        v.preempted.store(true, Ordering::SeqCst);
        v.state.store(RunState::Preempted as u8, Ordering::SeqCst);
        v.history.lock().unwrap_or_else(|e| e.into_inner()).since = Some(Instant::now());
    }

    /// Lets `vcpu` run again.
    pub fn resume(&self, vcpu: usize) {
        let v = &self.vcpus[vcpu];
        {
            let mut h = v.history.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(since) = h.since.take() {
                if h.lengths.len() == HISTORY {
                    h.lengths.pop_front();
                }
                h.lengths.push_back(since.elapsed());
            }
        }
        v.preempted.store(false, Ordering::SeqCst);
        v.state.store(RunState::Running as u8, Ordering::SeqCst);
        let _guard = self.resume.lock().unwrap_or_else(|e| e.into_inner());
        self.resumed.notify_all();
    }

    /// How long until `vcpu` is expected to run: zero when it is not preempted, else the
    /// mean of its past preemptions minus the time this one has lasted (at least zero).
    pub fn expected_wait(&self, vcpu: usize) -> Duration {
        let Some(v) = self.vcpus.get(vcpu) else {
            return Duration::MAX;
        };
        if !v.preempted.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let h = v.history.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = h.since.map_or(Duration::ZERO, |s| s.elapsed());
        let mean = if h.lengths.is_empty() {
            // No history: assume it lasts as long again.
            elapsed * 2
        } else {
            h.lengths.iter().sum::<Duration>() / h.lengths.len() as u32
        };
        mean.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_parses_and_refuses_nonsense() {
        let s: PreemptSchedule = "1:20:80".parse().unwrap();
        assert_eq!(
            (s.vcpu, s.period, s.percent),
            (1, Duration::from_millis(20), 80)
        );
        for bad in ["1:20", "x:20:50", "1:0:50", "1:20:100", "1:20:0"] {
            assert!(bad.parse::<PreemptSchedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn states_and_prediction_follow_preemption() {
        let s = Scheduler::new(2);
        assert_eq!(s.state(0), RunState::Running);
        s.halt(1);
        assert_eq!(s.state(1), RunState::Halted);
        s.preempt(1);
        assert!(s.is_preempted(1));
        assert_eq!(s.state(1), RunState::Preempted);
        std::thread::sleep(Duration::from_millis(5));
        s.resume(1);
        assert!(!s.is_preempted(1));
        assert_eq!(s.expected_wait(1), Duration::ZERO);
        s.preempt(1);
        // One past preemption of ≥ 5 ms: the expected wait is what is left of it.
        assert!(s.expected_wait(1) <= Duration::from_millis(200));
        assert!(s.expected_wait(1) > Duration::ZERO);
        assert_eq!(s.expected_wait(7), Duration::MAX);
        s.enter(0, || false);
        assert!(s.host_cpu(0).is_some());
    }
}
