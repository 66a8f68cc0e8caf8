//! Devices (placeholder; see issue 6).
