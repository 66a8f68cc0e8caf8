//! Shared by the VMM's integration tests: running the `vmm` binary and the KVM gate.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Whether KVM tests can run. Without /dev/kvm they skip loudly, unless
/// `POSTBOX_REQUIRE_KVM=1` (set by CI), which turns the skip into a failure.
pub fn kvm_available(test: &str) -> bool {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    match usable {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("POSTBOX_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: /dev/kvm is required (POSTBOX_REQUIRE_KVM=1) but unusable: {e}");
            }
            eprintln!("SKIPPED {test}: /dev/kvm is unusable ({e}); set POSTBOX_REQUIRE_KVM=1 to fail instead");
            false
        }
    }
}

/// A bundled guest binary.
pub fn guest(name: &str) -> PathBuf {
    vmm::guests::path(name)
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_status(&self, expected: i32) -> &Self {
        assert_eq!(
            self.status, expected,
            "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn assert_stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn assert_stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    /// A clean failure: one line on stderr, no panic, no backtrace.
    pub fn assert_one_line_error(&self) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr, got:\n{}",
            self.stderr
        );
        assert!(lines[0].starts_with("vmm: "), "stderr: {}", self.stderr);
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "stderr: {}",
            self.stderr
        );
        self
    }
}

/// Runs `vmm` with `args`; every guest run gets a timeout so a hung guest fails the test.
pub fn vmm(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_vmm"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("POSTBOX_LOG")
        .output()
        .expect("cannot start the vmm binary");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `vmm run --kernel <guest> --timeout 60 <extra>`.
pub fn run_guest(name: &str, extra: &[&str]) -> Run {
    let kernel = guest(name);
    let mut args = vec![
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    vmm(&args)
}
