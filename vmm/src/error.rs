//! Errors and the process exit statuses the VMM uses.
//!
//! A guest's own exit (the exit port) gives an odd status `(v << 1) | 1`; the VMM's statuses
//! are even, so the two never collide.

use std::path::PathBuf;

/// The guest ran and the VM ended without a guest-requested status (demo success).
pub const STATUS_OK: i32 = 0;
/// Bad user input: arguments, kernel image, sizes.
pub const STATUS_BAD_INPUT: i32 = 2;
/// The guest crashed the virtual machine (triple fault / shutdown, failed entry).
pub const STATUS_GUEST_CRASH: i32 = 4;
/// The guest caused an exit the VMM does not handle (e.g. an emulation failure).
pub const STATUS_UNHANDLED_EXIT: i32 = 6;
/// The VMM itself failed (KVM unavailable, an ioctl failed).
pub const STATUS_VMM_FAILURE: i32 = 8;
/// The guest ran past `--timeout`.
pub const STATUS_TIMEOUT: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kernel image {path}: {source}")]
    KernelUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read initrd {path}: {source}")]
    InitrdUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadKernel { path: PathBuf, reason: String },
    #[error("{0}")]
    BadConfig(String),
    #[error("{what} does not fit in guest memory ({detail})")]
    DoesNotFit { what: String, detail: String },
    #[error("KVM is not available: {0}")]
    KvmUnavailable(String),
    #[error("KVM: {what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The process exit status for this error.
    pub fn status(&self) -> i32 {
        match self {
            Error::KernelUnreadable { .. }
            | Error::InitrdUnreadable { .. }
            | Error::BadKernel { .. }
            | Error::BadConfig(_)
            | Error::DoesNotFit { .. } => STATUS_BAD_INPUT,
            Error::KvmUnavailable(_)
            | Error::Kvm { .. }
            | Error::Memory(_)
            | Error::Internal(_) => STATUS_VMM_FAILURE,
        }
    }

    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { what, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
