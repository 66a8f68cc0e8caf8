//! Bad user input: a one-line error naming the problem, status 2, no panic or backtrace.

mod support;

use support::{guest, kvm_available, vmm};
use vmm::error::STATUS_BAD_INPUT;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("postbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn missing_kernel() {
    vmm(&["run", "--kernel", "/nonexistent/kernel.elf"])
        .assert_status(STATUS_BAD_INPUT)
        .assert_one_line_error()
        .assert_stderr_has("cannot read kernel image /nonexistent/kernel.elf");
}

#[test]
fn kernel_of_the_wrong_format() {
    let path = temp_file("not-a-kernel.txt", b"just some text, not a kernel\n");
    vmm(&["run", "--kernel", path.to_str().unwrap()])
        .assert_status(STATUS_BAD_INPUT)
        .assert_one_line_error()
        .assert_stderr_has("neither an ELF64 kernel nor a multiboot kernel");
}

#[test]
fn truncated_elf() {
    let elf = vmm::loader::elf::minimal_elf64(0x100000, 0x100000, &[0xf4; 64]);
    let path = temp_file("truncated.elf", &elf[..100]);
    vmm(&["run", "--kernel", path.to_str().unwrap()])
        .assert_status(STATUS_BAD_INPUT)
        .assert_one_line_error()
        .assert_stderr_has("truncated ELF file");
}

#[test]
fn kernel_that_does_not_fit_in_memory() {
    if !kvm_available("kernel_that_does_not_fit_in_memory") {
        return;
    }
    // A segment at 16 MiB in an 8 MiB guest.
    let elf = vmm::loader::elf::minimal_elf64(0x100_0000, 0x100_0000, &[0xf4; 64]);
    let path = temp_file("too-high.elf", &elf);
    vmm(&["run", "--kernel", path.to_str().unwrap(), "--mem-mib", "8"])
        .assert_status(STATUS_BAD_INPUT)
        .assert_one_line_error()
        .assert_stderr_has("does not fit in guest memory");
}

#[test]
fn zero_cpus() {
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--cpus",
        "0",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("--cpus must be at least 1");
}

#[test]
fn more_cpus_than_kvm_allows() {
    if !kvm_available("more_cpus_than_kvm_allows") {
        return;
    }
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--cpus",
        "100000",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("vCPUs this host's KVM allows");
}

#[test]
fn too_little_memory() {
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--mem-mib",
        "1",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("too small");
}

#[test]
fn more_memory_than_the_host_has() {
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--mem-mib",
        "999999999",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("exceeds this host's");
}

#[test]
fn malformed_numbers_and_missing_arguments() {
    vmm(&["run", "--kernel", "k", "--cpus", "two"])
        .assert_status(STATUS_BAD_INPUT)
        .assert_one_line_error()
        .assert_stderr_has("invalid value 'two'");
    vmm(&["run"])
        .assert_status(STATUS_BAD_INPUT)
        .assert_one_line_error()
        .assert_stderr_has("required");
}

#[test]
fn missing_initrd() {
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--initrd",
        "/nonexistent/initrd",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("cannot read initrd");
}

#[test]
fn bypass_without_host_support_names_what_is_missing() {
    if !kvm_available("bypass_without_host_support_names_what_is_missing") {
        return;
    }
    if vmm::bypass::detect(std::path::Path::new("/")).available() {
        eprintln!("this host supports bypass; the refusal path is covered by the unit tests");
        return;
    }
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--irqchip",
        "bypass",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("--irqchip bypass is not possible on this host");
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--vfio-device",
        "0000:03:10.0",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("--vfio-device needs the bypass backend");
}

#[test]
fn unknown_irqchip() {
    vmm(&[
        "run",
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--irqchip",
        "pic",
    ])
    .assert_status(STATUS_BAD_INPUT)
    .assert_one_line_error()
    .assert_stderr_has("unknown irqchip");
}
