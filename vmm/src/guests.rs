//! The bundled bare-metal guests, built from guest-tests/ by build.rs.

use std::path::PathBuf;

/// Directory holding every guest binary of guest-tests/.
pub const GUEST_DIR: &str = env!("POSTBOX_GUEST_DIR");

/// The demo guest, embedded so that `vmm demo` needs no files.
pub static DEMO: &[u8] = include_bytes!(concat!(env!("POSTBOX_GUEST_DIR"), "/demo"));

/// Path of guest binary `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(GUEST_DIR).join(name)
}
