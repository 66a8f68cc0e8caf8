//! The test body's view of privileged work: the `int3` gate (MSRs, HLT), the exit port,
//! and catching exceptions raised at CPL3.

use core::arch::asm;
use core::sync::atomic::Ordering;

use crate::arch::{self, this_cpu, TrapFrame};

/// The exit port: writing `v` ends the VM with status `(v << 1) | 1`.
pub const EXIT_PORT: u16 = 0xf4;

/// Gate operations (RAX). Results come back in RAX (value) and RDX (0, or vector + 1 of the
/// exception the operation raised at CPL0).
const SYS_RDMSR: u64 = 1;
const SYS_WRMSR: u64 = 2;
const SYS_HALT: u64 = 3;
const SYS_TRIPLE_FAULT: u64 = 4;
const SYS_HALT_WHILE: u64 = 5;

/// An exception taken while running a test body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
}

pub fn exit(code: u32) -> ! {
    arch::outl(EXIT_PORT, code);
    // The VMM stops every vCPU on the write; spin in case it takes a moment.
    loop {
        core::hint::spin_loop();
    }
}

fn gate(op: u64, a: u64, b: u64) -> (u64, u64) {
    let (rax, rdx): (u64, u64);
    // SAFETY: the gate preserves every register but RAX and RDX.
    unsafe { asm!("int3", inout("rax") op => rax, in("rdi") a, in("rsi") b, lateout("rdx") rdx) };
    (rax, rdx)
}

/// Reads an MSR; `Err(vector)` if RDMSR raised an exception (#GP is 13).
pub fn rdmsr(msr: u32) -> Result<u64, u64> {
    match gate(SYS_RDMSR, u64::from(msr), 0) {
        (value, 0) => Ok(value),
        (_, fault) => Err(fault - 1),
    }
}

/// Writes an MSR; `Err(vector)` if WRMSR raised an exception.
pub fn wrmsr(msr: u32, value: u64) -> Result<(), u64> {
    match gate(SYS_WRMSR, u64::from(msr), value) {
        (_, 0) => Ok(()),
        (_, fault) => Err(fault - 1),
    }
}

/// `sti; hlt` at CPL0: waits for the next interrupt, which is handled before this returns.
pub fn halt() {
    gate(SYS_HALT, 0, 0);
}

/// Halts until an interrupt if `*counter == value` when checked with interrupts off: no
/// wake-up is lost between a caller's check and the halt.
pub fn halt_while(counter: &core::sync::atomic::AtomicU32, value: u32) {
    gate(SYS_HALT_WHILE, counter.as_ptr() as u64, u64::from(value));
}

/// Loads an empty IDT and raises #UD: #UD, #GP and #DF cannot be delivered, so the CPU
/// shuts down (triple fault).
pub fn triple_fault() -> ! {
    gate(SYS_TRIPLE_FAULT, 0, 0);
    exit(crate::EXIT_PANIC)
}

/// Runs `f` at CPL3 and returns the exception it raised, if any; execution resumes here.
pub fn catch_exception(f: extern "C" fn()) -> Option<Exception> {
    let cpu = this_cpu();
    let faulted: u64;
    // SAFETY: a setjmp-style frame: callee-saved registers are saved on the stack, whose
    // address the exception path restores together with the resume address.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "mov rax, rsp",
            "and rsp, -16",
            "sub rsp, 16",
            "mov [rsp], rax",
            "mov [{rsp_slot}], rsp",
            "mov rbx, {rip_slot}",
            "lea rax, [rip + 2f]",
            "mov [rbx], rax",
            "call {f}",
            "mov qword ptr [rbx], 0",
            "xor eax, eax",
            "jmp 3f",
            "2:",
            "mov eax, 1",
            "3:",
            "mov rsp, [rsp]",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbp",
            "pop rbx",
            f = in(reg) f,
            rip_slot = in(reg) cpu.recover_rip.as_ptr(),
            rsp_slot = in(reg) cpu.recover_rsp.as_ptr(),
            out("rax") faulted,
            clobber_abi("C"),
        );
    }
    (faulted != 0).then(|| Exception {
        vector: cpu.last_vector.load(Ordering::SeqCst),
        error: cpu.last_error.load(Ordering::SeqCst),
        rip: cpu.last_rip.load(Ordering::SeqCst),
    })
}

/// The gate's CPL0 side.
pub(crate) fn syscall(frame: &mut TrapFrame) {
    match frame.rax {
        SYS_RDMSR => {
            let (value, fault) = kernel_rdmsr(frame.rdi as u32);
            frame.rax = value;
            frame.rdx = fault;
        }
        SYS_WRMSR => {
            frame.rdx = kernel_wrmsr(frame.rdi as u32, frame.rsi);
        }
        SYS_HALT => {
            // SAFETY: interrupts are taken on their own IST stack and return here.
            unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            frame.rdx = 0;
        }
        SYS_HALT_WHILE => {
            // SAFETY: the caller passed a pointer to an AtomicU32 it owns.
            let current = unsafe {
                (*(frame.rdi as *const core::sync::atomic::AtomicU32)).load(Ordering::SeqCst)
            };
            if u64::from(current) == frame.rsi {
                // SAFETY: STI's shadow covers HLT, so a pending interrupt wakes it.
                unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            }
            frame.rdx = 0;
        }
        SYS_TRIPLE_FAULT => {
            let null = [0u64; 2];
            // SAFETY: deliberately ends the VM.
            unsafe { asm!("lidt [{}]", "ud2", in(reg) &null, options(noreturn)) };
        }
        _ => frame.rdx = u64::from(u8::MAX) + 1,
    }
}

/// RDMSR with a fixup: returns (value, 0) or (0, vector + 1).
fn kernel_rdmsr(msr: u32) -> (u64, u64) {
    let cpu = this_cpu();
    let (lo, hi, faulted): (u32, u32, u64);
    // SAFETY: an exception on RDMSR resumes at label 2 through `kernel_fixup`.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{fix}], {t}",
            "rdmsr",
            "mov qword ptr [{fix}], 0",
            "xor {t:e}, {t:e}",
            "jmp 3f",
            "2:",
            "xor eax, eax",
            "xor edx, edx",
            "mov {t:e}, 1",
            "3:",
            fix = in(reg) cpu.kernel_fixup.as_ptr(),
            t = out(reg) faulted,
            in("ecx") msr,
            out("eax") lo,
            out("edx") hi,
        );
    }
    if faulted != 0 {
        (0, cpu.last_vector.load(Ordering::SeqCst) + 1)
    } else {
        ((u64::from(hi) << 32) | u64::from(lo), 0)
    }
}

/// WRMSR with a fixup: returns 0 or vector + 1.
fn kernel_wrmsr(msr: u32, value: u64) -> u64 {
    let cpu = this_cpu();
    let faulted: u64;
    // SAFETY: as `kernel_rdmsr`.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{fix}], {t}",
            "wrmsr",
            "mov qword ptr [{fix}], 0",
            "xor {t:e}, {t:e}",
            "jmp 3f",
            "2:",
            "mov {t:e}, 1",
            "3:",
            fix = in(reg) cpu.kernel_fixup.as_ptr(),
            t = out(reg) faulted,
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
        );
    }
    if faulted != 0 {
        cpu.last_vector.load(Ordering::SeqCst) + 1
    } else {
        0
    }
}
