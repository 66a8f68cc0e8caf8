//! The bundled test guests, each booted by the `vmm` binary under KVM.
//!
//! Exit statuses: a guest's own exit-port write of v gives (v << 1) | 1, so a guest that
//! returns 0 ends with status 1. The VMM's own statuses are even (vmm::error).

mod support;

use support::{kvm_available, run_guest, vmm};
use vmm::error::{STATUS_GUEST_CRASH, STATUS_TIMEOUT};

const GUEST_OK: i32 = 1;

macro_rules! kvm_test {
    ($name:ident) => {
        if !kvm_available(stringify!($name)) {
            return;
        }
    };
}

#[test]
fn hello_prints_from_cpl3_and_exits() {
    kvm_test!(hello_prints_from_cpl3_and_exits);
    run_guest("hello", &[])
        .assert_status(GUEST_OK)
        .assert_stdout_has("hello from postbox guest")
        .assert_stdout_has("loader: postbox");
}

#[test]
fn exceptions_are_caught_with_vector_and_rip() {
    kvm_test!(exceptions_are_caught_with_vector_and_rip);
    let r = run_guest("exception", &[]);
    r.assert_status(GUEST_OK)
        .assert_stdout_has("caught vector 6")
        .assert_stdout_has("caught vector 0")
        .assert_stdout_has("failures=0");
    assert!(!r.stdout.contains("WRONG"), "{}", r.stdout);
}

#[test]
fn an_uncaught_exception_is_reported_by_the_runtime() {
    kvm_test!(an_uncaught_exception_is_reported_by_the_runtime);
    // The runtime's exit code 0x7d gives status 0xfb.
    run_guest("unhandled_exception", &[])
        .assert_status(0xfb)
        .assert_stdout_has("unhandled exception vector=0x6");
}

#[test]
fn memory_map_matches_the_configured_memory() {
    kvm_test!(memory_map_matches_the_configured_memory);
    run_guest("memmap", &["--mem-mib", "48"])
        .assert_status(GUEST_OK)
        .assert_stdout_has("mmap base=0x0 length=0x9fc00 type=1")
        .assert_stdout_has("mmap base=0x9fc00 length=0x60400 type=2")
        .assert_stdout_has("mmap base=0x100000 length=0x2f00000 type=1")
        .assert_stdout_has("mem_lower=639KiB mem_upper=48128KiB")
        .assert_stdout_has("top of ram 0x3000000 writable");
}

fn hash(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |s, &b| s.wrapping_mul(31).wrapping_add(u32::from(b)))
}

#[test]
fn multiboot_kernel_gets_cmdline_modules_and_memory_map() {
    kvm_test!(multiboot_kernel_gets_cmdline_modules_and_memory_map);
    let dir = std::env::temp_dir().join(format!("postbox-mb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("initrd.img");
    let content: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&module, &content).unwrap();
    let r = run_guest(
        "multiboot_info",
        &[
            "--initrd",
            module.to_str().unwrap(),
            "--cmdline",
            "console=ttyS0 postbox=1",
            "--mem-mib",
            "32",
        ],
    );
    std::fs::remove_dir_all(&dir).ok();
    r.assert_status(GUEST_OK)
        .assert_stdout_has("cmdline=console=ttyS0 postbox=1")
        .assert_stdout_has("loader=postbox")
        .assert_stdout_has(&format!("aligned=true name={}", module.display()))
        .assert_stdout_has(&format!("hash={:#010x}", hash(&content)))
        .assert_stdout_has("mmap entries=3 mem_upper=31744KiB");
}

#[test]
fn triple_fault_names_vcpu_exit_and_rip() {
    kvm_test!(triple_fault_names_vcpu_exit_and_rip);
    let r = run_guest("triple_fault", &[]);
    r.assert_status(STATUS_GUEST_CRASH)
        .assert_stderr_has("vCPU 0")
        .assert_stderr_has("triple fault (KVM_EXIT_SHUTDOWN)")
        .assert_stderr_has("at RIP 0x")
        // Symbolized from the guest ELF.
        .assert_stderr_has("<postbox_guest::");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn unclaimed_ports_and_mmio_read_all_ones() {
    kvm_test!(unclaimed_ports_and_mmio_read_all_ones);
    run_guest("unclaimed_io", &[])
        .assert_status(GUEST_OK)
        .assert_stdout_has("port8=0xff port32=0xffffffff mmio=0xffffffff");
}

#[test]
fn unimplemented_msrs_raise_gp() {
    kvm_test!(unimplemented_msrs_raise_gp);
    run_guest("msr_probe", &[])
        .assert_status(GUEST_OK)
        .assert_stdout_has("bogus_read=Err(13) bogus_write=Err(13)");
}

#[test]
fn application_processors_stay_parked_until_startup() {
    kvm_test!(application_processors_stay_parked_until_startup);
    // Four vCPUs: the APs wait for a start-up IPI that never comes; the BSP runs and the
    // VM still ends cleanly with all threads joined.
    run_guest("hello", &["--cpus", "4"])
        .assert_status(GUEST_OK)
        .assert_stdout_has("hello from postbox guest");
}

#[test]
fn a_halted_guest_is_stopped_at_the_timeout() {
    kvm_test!(a_halted_guest_is_stopped_at_the_timeout);
    let kernel = support::guest("halt_forever");
    let started = std::time::Instant::now();
    let r = vmm(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--timeout",
        "1",
    ]);
    r.assert_status(STATUS_TIMEOUT)
        .assert_stdout_has("halting")
        .assert_stderr_has("still running after 1s");
    assert!(
        started.elapsed().as_secs() < 30,
        "the VMM did not stop a halted guest promptly"
    );
}

#[test]
fn demo_boots_the_bundled_guest_and_exits_zero() {
    kvm_test!(demo_boots_the_bundled_guest_and_exits_zero);
    vmm(&["demo"])
        .assert_status(0)
        .assert_stdout_has("postbox demo guest: running at CPL3")
        .assert_stdout_has("posted      200 frames, doorbell->handler median")
        .assert_stdout_has("remapped    200 frames, doorbell->handler median")
        .assert_stdout_has("what travelled")
        .assert_stdout_has("posted 200 (notified 200")
        .assert_stdout_has("remapped 200")
        .assert_stdout_has("faulted 0")
        .assert_stdout_has("exits:");
}
