//! Builds the bare-metal test guests (guest-tests/) with a nested cargo, in a target dir of
//! their own and with the flags they need, and tells the VMM where they are.
//!
//! The guests are no_std binaries for the host target, linked freestanding at 1 MiB. They
//! are compiled without SSE because this project's KVM hosts emulate guest CPL0 code without
//! most SSE (DESIGN.md); `--target` keeps those flags off build scripts.

use std::path::PathBuf;
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
const GUEST_RUSTFLAGS: &[&str] = &[
    "-Ctarget-feature=-sse,-sse2,-sse3,-ssse3,-sse4.1,-sse4.2,-avx,-avx2",
    "-Crelocation-model=static",
    "-Ccode-model=small",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let guest_dir = manifest_dir.parent().unwrap().join("guest-tests");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guest-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--quiet")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(guest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings must not leak into the guest build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key == "CARGO_ENCODED_RUSTFLAGS"
            || key == "CARGO_BUILD_RUSTFLAGS"
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_TARGET_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("DEP_")
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", GUEST_RUSTFLAGS.join("\u{1f}"));
    let status = cmd.status().expect("failed to run cargo for guest-tests");
    if !status.success() {
        panic!("building guest-tests failed: {status}");
    }
    let bin_dir = target_dir.join(GUEST_TARGET).join("release");
    println!("cargo:rustc-env=POSTBOX_GUEST_DIR={}", bin_dir.display());
    println!("cargo:rerun-if-changed={}", guest_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        guest_dir.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guest_dir.join("link.ld").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guest_dir.join("build.rs").display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
