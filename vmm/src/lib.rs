//! The Postbox VMM library.
