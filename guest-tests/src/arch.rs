//! CPU setup: entry paths, GDT and TSS, IDT with IST stacks, trap dispatch, and the
//! `int3` gate through which CPL3 test bodies reach CPL0.
//!
//! Everything in this file that runs at CPL0 avoids libcore calls and SSE.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::serial;

/// Most CPUs a test guest supports.
pub const MAX_CPUS: usize = 8;

/// Selectors, in Linux's x86-64 layout (some hypervisors, kvm_pvm among them, expect exactly
/// these user selectors).
pub const KERNEL_CS: u16 = 0x10;
pub const KERNEL_DS: u16 = 0x18;
pub const USER_CS32: u16 = 0x20 | 3;
pub const USER_DS: u16 = 0x28 | 3;
pub const USER_CS: u16 = 0x30 | 3;
/// TSS selector of CPU 0; CPU n's is `TSS_SEL + 16 * n`.
pub const TSS_SEL: u16 = 0x40;

/// The gate from CPL3 into CPL0: the breakpoint vector, whose IDT gate has DPL 3. `int3` is
/// used rather than `int n` or SYSCALL because it reaches a guest's IDT on every host this
/// project runs on (kvm_pvm emulates neither `int n` in long mode nor SYSCALL privilege).
pub const GATE_VECTOR: u8 = 3;

/// RFLAGS for test bodies: IOPL = 3, IF set, reserved bit 1. Test bodies run with interrupts
/// enabled (some hosts, kvm_pvm among them, force IF = 1 in user mode anyway); they mask
/// interrupts with the APIC's TPR or by staying in the gate.
const USER_RFLAGS: u64 = (3 << 12) | (1 << 9) | 0x2;

const IST_STACK_SIZE: usize = 16 * 1024;
const USER_STACK_SIZE: usize = 64 * 1024;
/// IST slots: 1 interrupts, 2 exceptions, 3 NMI/#DF/#MC, 4 the CPL3 → CPL0 gate (so that an
/// exception inside the gate does not overwrite the gate's own frame).
const IST_INTERRUPT: u8 = 1;
const IST_EXCEPTION: u8 = 2;
const IST_CRITICAL: u8 = 3;
const IST_GATE: u8 = 4;
const IST_COUNT: usize = 4;

/// Interior-mutable static storage, for tables the CPU reads.
#[repr(C, align(4096))]
pub struct Global<T>(UnsafeCell<T>);
// Test-guest statics of this type are written by one CPU at a time, as documented at
// each use.
// SAFETY: each table is written by one CPU during its own bring-up, before use.
unsafe impl<T> Sync for Global<T> {}
impl<T> Global<T> {
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}

const GDT_FIRST_TSS: usize = TSS_SEL as usize / 8;
const GDT_ENTRIES: usize = GDT_FIRST_TSS + 2 * MAX_CPUS;
static GDT: Global<[u64; GDT_ENTRIES]> = Global::new({
    let mut g = [0u64; GDT_ENTRIES];
    g[KERNEL_CS as usize / 8] = 0x00af_9a00_0000_ffff; // kernel code, 64-bit
    g[KERNEL_DS as usize / 8] = 0x00cf_9200_0000_ffff; // kernel data
    g[USER_CS32 as usize / 8] = 0x00cf_fa00_0000_ffff; // user code, 32-bit (unused)
    g[USER_DS as usize / 8] = 0x00cf_f200_0000_ffff; // user data
    g[USER_CS as usize / 8] = 0x00af_fa00_0000_ffff; // user code, 64-bit
    g
});

/// A 64-bit TSS (SDM vol. 3 §8.7) as 26 dwords (RSP0 at byte 4, IST1 at byte 36, the I/O map
/// base in the top half of the last dword), followed by an I/O permission bitmap that allows
/// every port (SDM vol. 1 §19.5.2) and its all-ones terminator byte.
///
/// IOPL = 3 alone would do on hardware; the bitmap makes CPL3 port I/O work on hosts whose
/// virtualization does not keep IOPL in user mode but emulates the I/O instruction's
/// permission check against the TSS (this project's kvm_pvm hosts).
#[repr(C, align(16))]
struct Tss {
    words: [u32; 26],
    io_bitmap: [u8; IO_BITMAP_BYTES + 1],
}
const IO_BITMAP_BYTES: usize = 65536 / 8;
const TSS_IO_MAP_BASE: u32 = 104;
const TSS_LIMIT: u64 = TSS_IO_MAP_BASE as u64 + IO_BITMAP_BYTES as u64;
static TSS: Global<[Tss; MAX_CPUS]> = Global::new(
    [const {
        Tss {
            words: [0; 26],
            io_bitmap: [0; IO_BITMAP_BYTES + 1],
        }
    }; MAX_CPUS],
);
static IDT: Global<[u64; 512]> = Global::new([0; 512]);

#[repr(C, align(16))]
struct Stacks<const N: usize>([u8; N]);
static IST_STACKS: Global<Stacks<{ IST_STACK_SIZE * IST_COUNT * MAX_CPUS }>> =
    Global::new(Stacks([0; IST_STACK_SIZE * IST_COUNT * MAX_CPUS]));
static USER_STACKS: Global<Stacks<{ USER_STACK_SIZE * MAX_CPUS }>> =
    Global::new(Stacks([0; USER_STACK_SIZE * MAX_CPUS]));

/// Per-CPU state shared between the CPL0 trap handlers and CPL3 test bodies.
#[derive(Default)]
pub struct PerCpu {
    /// Where a CPL3 exception resumes (0: nowhere, the exception is fatal).
    pub recover_rip: AtomicU64,
    pub recover_rsp: AtomicU64,
    /// Where a CPL0 exception inside a gate resumes (0: fatal).
    pub kernel_fixup: AtomicU64,
    /// The last exception taken: vector, error code, RIP.
    pub last_vector: AtomicU64,
    pub last_error: AtomicU64,
    pub last_rip: AtomicU64,
    pub exceptions: AtomicU64,
    pub interrupts: AtomicU64,
}

pub static PER_CPU: [PerCpu; MAX_CPUS] = {
    const INIT: PerCpu = PerCpu {
        recover_rip: AtomicU64::new(0),
        recover_rsp: AtomicU64::new(0),
        kernel_fixup: AtomicU64::new(0),
        last_vector: AtomicU64::new(0),
        last_error: AtomicU64::new(0),
        last_rip: AtomicU64::new(0),
        exceptions: AtomicU64::new(0),
        interrupts: AtomicU64::new(0),
    };
    [INIT; MAX_CPUS]
};

/// Interrupt handlers for vectors 32–255, called at CPL0 (they must be SSE- and libcore-free).
static IRQ_HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Interrupts taken, per CPU and vector.
pub static IRQ_COUNT: [[AtomicU32; 256]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_CPUS];
/// Total interrupts taken per CPU (what `sys::halt_while` waits on).
pub static IRQ_TOTAL: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// The order in which vectors arrived, per CPU (the first `ORDER_LEN`).
pub const ORDER_LEN: usize = 64;
pub static IRQ_ORDER: [[AtomicU8; ORDER_LEN]; MAX_CPUS] =
    [const { [const { AtomicU8::new(0) }; ORDER_LEN] }; MAX_CPUS];
/// TSC at the last interrupt's arrival, per CPU.
pub static IRQ_LAST_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// TSC cycles the last automatic EOI write took, per CPU.
pub static IRQ_EOI_CYCLES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Vectors whose handler writes EOI itself (bit n = vector n); the rest get EOI on return.
pub static NO_AUTO_EOI: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// CR3 of the bootstrap CPU, for the APs' trampoline.
static BOOT_CR3: AtomicU64 = AtomicU64::new(0);
/// Next CPU index an AP takes, and how many APs are up.
pub static AP_NEXT_INDEX: AtomicU32 = AtomicU32::new(1);
pub static AP_ONLINE: AtomicU32 = AtomicU32::new(0);
/// `fn(cpu)` the APs run at CPL3.
pub static AP_MAIN: AtomicUsize = AtomicUsize::new(0);

/// Saved state of a trap, in the order the common stub pushes it.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Entry paths. `start32_multiboot`: 32-bit protected mode per Multiboot v1 (EAX = magic,
// EBX = information); it turns on long mode with the static identity map below and joins
// `start64`, which the ELF64 loader enters directly with RDI = information, RSI = magic.
global_asm!(
    ".pushsection .text.entry, \"ax\"",
    ".code32",
    ".globl start32_multiboot",
    "start32_multiboot:",
    "mov edi, ebx",
    "mov esi, eax",
    "mov eax, offset boot_pml4",
    "mov cr3, eax",
    "mov eax, cr4",
    "or eax, 0x20",
    "mov cr4, eax",
    "mov ecx, 0xC0000080",
    "rdmsr",
    "or eax, 0x100",
    "wrmsr",
    "mov eax, cr0",
    "or eax, 0x80000001",
    "mov cr0, eax",
    "lgdt [boot_gdt_ptr]",
    // ljmp 0x08:start64_from32
    ".byte 0xea",
    ".long start64_from32",
    ".word 0x08",
    ".code64",
    "start64_from32:",
    "mov eax, 0x10",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov edi, edi",
    "mov esi, esi",
    ".globl start64",
    "start64:",
    "cli",
    "lea rsp, [rip + boot_stack_top]",
    "call {entry}",
    "2: hlt",
    "jmp 2b",
    ".popsection",
    ".pushsection .data.boot, \"aw\"",
    ".balign 8",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00af9a000000ffff",
    ".quad 0x00cf92000000ffff",
    "boot_gdt_ptr:",
    ".word 23",
    ".long boot_gdt",
    ".balign 4096",
    "boot_pml4:",
    ".quad boot_pdpt + 7",
    ".fill 511, 8, 0",
    "boot_pdpt:",
    ".quad boot_pd + 7",
    ".quad boot_pd + 0x1007",
    ".quad boot_pd + 0x2007",
    ".quad boot_pd + 0x3007",
    ".fill 508, 8, 0",
    "boot_pd:",
    ".set pd_index, 0",
    ".rept 2048",
    ".quad (pd_index << 21) | 0x87",
    ".set pd_index, pd_index + 1",
    ".endr",
    ".popsection",
    ".pushsection .bss.boot_stack, \"aw\", @nobits",
    ".balign 16",
    ".skip 16384",
    "boot_stack_top:",
    ".popsection",
    entry = sym rust_entry,
);

// 256 trap stubs, 16 bytes apart: push a zero error code where the CPU pushes none, push the
// vector, and join the common path, which saves registers and calls `trap_dispatch`.
global_asm!(
    ".pushsection .text.traps, \"ax\"",
    ".balign 16",
    ".globl trap_stubs",
    "trap_stubs:",
    ".set vec, 0",
    ".rept 256",
    ".balign 16",
    ".if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)",
    ".else",
    "push 0",
    ".endif",
    "push vec",
    "jmp trap_common",
    ".set vec, vec + 1",
    ".endr",
    "trap_common:",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "cld",
    "call {dispatch}",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    ".popsection",
    dispatch = sym trap_dispatch,
);

extern "C" {
    static trap_stubs: u8;
    fn guest_main(info: &crate::BootInfo) -> u32;
}

pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects; test bodies run with IOPL = 3.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    }
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as `outb`.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    }
    v
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

fn rsp() -> u64 {
    let v: u64;
    // SAFETY: reads the stack pointer.
    unsafe { asm!("mov {}, rsp", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// The CPU the caller runs on, derived from its stack: each CPU has its own user stack and
/// IST stacks, so no privileged instruction is needed.
pub fn cpu_index() -> usize {
    let sp = rsp() as usize;
    let user = USER_STACKS.get() as usize;
    let ist = IST_STACKS.get() as usize;
    if sp > user && sp <= user + USER_STACK_SIZE * MAX_CPUS {
        (sp - user - 1) / USER_STACK_SIZE
    } else if sp > ist && sp <= ist + IST_STACK_SIZE * IST_COUNT * MAX_CPUS {
        (sp - ist - 1) / (IST_STACK_SIZE * IST_COUNT)
    } else {
        0
    }
}

pub fn this_cpu() -> &'static PerCpu {
    &PER_CPU[cpu_index()]
}

/// Registers `handler` for interrupt `vector` (32–255). It runs at CPL0 with interrupts off.
pub fn set_irq_handler(vector: u8, handler: fn(&mut TrapFrame)) {
    IRQ_HANDLERS[usize::from(vector)].store(handler as usize, Ordering::SeqCst);
}

fn idt_entry(handler: u64, ist: u8, dpl: u8) -> (u64, u64) {
    let low = (handler & 0xffff)
        | (u64::from(KERNEL_CS) << 16)
        | (u64::from(ist) << 32)
        | (u64::from(0x8e | (dpl << 5)) << 40)
        | (((handler >> 16) & 0xffff) << 48);
    (low, handler >> 32)
}

/// Builds the IDT (once, on the bootstrap CPU).
fn init_idt() {
    // SAFETY: the stubs are 16 bytes apart from `trap_stubs`; the IDT is written before any
    // CPU loads it.
    let stubs = core::ptr::addr_of!(trap_stubs) as u64;
    let idt = IDT.get() as *mut u64;
    let mut vector = 0u64;
    while vector < 256 {
        let ist = match vector {
            v if v == u64::from(GATE_VECTOR) => IST_GATE,
            2 | 8 | 18 => IST_CRITICAL,
            0..=31 => IST_EXCEPTION,
            _ => IST_INTERRUPT,
        };
        let dpl = if vector == u64::from(GATE_VECTOR) {
            3
        } else {
            0
        };
        let (lo, hi) = idt_entry(stubs + 16 * vector, ist, dpl);
        // SAFETY: within the 512-qword table.
        unsafe {
            idt.add(2 * vector as usize).write_volatile(lo);
            idt.add(2 * vector as usize + 1).write_volatile(hi);
        }
        vector += 1;
    }
}

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// Lets CPL3 code use SSE (libcore's formatting does): SDM vol. 3 §14.1.3.
fn enable_sse() {
    // SAFETY: CPL0 control-register updates that only enable SSE state handling.
    unsafe {
        asm!(
            "mov {t}, cr0",
            "and {t}, {not_em}",
            "or {t}, {mp}",
            "mov cr0, {t}",
            "mov {t}, cr4",
            "or {t}, {osfx}",
            "mov cr4, {t}",
            t = out(reg) _,
            not_em = in(reg) !CR0_EM,
            mp = const CR0_MP,
            osfx = const CR4_OSFXSR | CR4_OSXMMEXCPT,
            options(nomem, nostack)
        )
    };
}

/// Sets up CPU `cpu`'s GDT entry, TSS and IDT, and loads them.
fn init_cpu(cpu: usize) {
    enable_sse();
    let tss = TSS.get() as *mut Tss;
    let ist_base = IST_STACKS.get() as u64 + (cpu * IST_STACK_SIZE * IST_COUNT) as u64;
    // SAFETY: `cpu` < MAX_CPUS; each CPU writes only its own TSS and GDT slot.
    unsafe {
        let tss = &mut *tss.add(cpu);
        tss.io_bitmap[IO_BITMAP_BYTES] = 0xff;
        let t = &mut tss.words;
        let mut slot = 0;
        while slot < IST_COUNT {
            let top = ist_base + ((slot + 1) * IST_STACK_SIZE) as u64;
            t[9 + 2 * slot] = top as u32;
            t[10 + 2 * slot] = (top >> 32) as u32;
            slot += 1;
        }
        // RSP0: the exception stack (unused: every gate has an IST).
        let rsp0 = ist_base + (IST_EXCEPTION as u64) * IST_STACK_SIZE as u64;
        t[1] = rsp0 as u32;
        t[2] = (rsp0 >> 32) as u32;
        t[25] = TSS_IO_MAP_BASE << 16;
        let base = tss as *mut Tss as u64;
        let limit = TSS_LIMIT;
        let gdt = GDT.get() as *mut u64;
        let index = GDT_FIRST_TSS + 2 * cpu;
        gdt.add(index).write_volatile(
            (limit & 0xffff)
                | ((base & 0xff_ffff) << 16)
                | (0x89 << 40)
                | (((limit >> 16) & 0xf) << 48)
                | (((base >> 24) & 0xff) << 56),
        );
        gdt.add(index + 1).write_volatile(base >> 32);

        let gdtr = DescriptorPointer {
            limit: (GDT_ENTRIES * 8 - 1) as u16,
            base: GDT.get() as u64,
        };
        let idtr = DescriptorPointer {
            limit: 4095,
            base: IDT.get() as u64,
        };
        asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:e}",
            "mov gs, {tmp:e}",
            "ltr {tss:x}",
            "lidt [{idtr}]",
            gdtr = in(reg) &gdtr,
            idtr = in(reg) &idtr,
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) u32::from(KERNEL_DS),
            tss = in(reg) TSS_SEL + 16 * cpu as u16,
            tmp = out(reg) _,
        );
    }
}

/// Drops to CPL3 on CPU `cpu`'s user stack and runs `f(arg)` there.
fn enter_user(cpu: usize, f: extern "C" fn(u64) -> !, arg: u64) -> ! {
    // Entered as if called: RSP + 8 is 16-byte aligned (System V ABI §3.2.2).
    let stack_top = USER_STACKS.get() as u64 + ((cpu + 1) * USER_STACK_SIZE) as u64 - 8;
    // SAFETY: builds an IRETQ frame to user code with a user stack of its own.
    unsafe {
        asm!(
            "push {ss}",
            "push {rsp}",
            "push {rflags}",
            "push {cs}",
            "push {rip}",
            "iretq",
            ss = in(reg) u64::from(USER_DS),
            rsp = in(reg) stack_top,
            rflags = in(reg) USER_RFLAGS,
            cs = in(reg) u64::from(USER_CS),
            rip = in(reg) f as u64,
            in("rdi") arg,
            options(noreturn)
        )
    }
}

/// RDMSR at CPL0 (no fixup: for registers that exist).
pub fn rdmsr_cpl0(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: CPL0 only; the caller names an MSR that exists.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// WRMSR at CPL0 (no fixup).
pub fn wrmsr_cpl0(msr: u32, value: u64) {
    // SAFETY: CPL0 only; the caller names an MSR that exists.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack))
    };
}

/// First Rust code on the bootstrap CPU, at CPL0.
extern "C" fn rust_entry(info: u64, _magic: u64) -> ! {
    let cr3: u64;
    // SAFETY: reads CR3 at CPL0.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    BOOT_CR3.store(cr3, Ordering::SeqCst);
    init_idt();
    init_cpu(0);

    enter_user(0, user_entry, info)
}

extern "C" fn user_entry(info: u64) -> ! {
    // SAFETY: the loader passes the address of the multiboot information structure.
    let code = unsafe { guest_main(&*(info as *const crate::BootInfo)) };
    crate::sys::exit(code)
}

/// The trap path's single entry, at CPL0.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector == u64::from(GATE_VECTOR) && frame.cs & 3 == 3 {
        crate::sys::syscall(frame);
    } else if vector < 32 {
        exception(frame);
    } else {
        interrupt(frame);
    }
}

fn interrupt(frame: &mut TrapFrame) {
    let index = cpu_index();
    let vector = frame.vector as usize;
    IRQ_LAST_TSC[index].store(rdtsc(), Ordering::Relaxed);
    let seen = IRQ_TOTAL[index].load(Ordering::Relaxed) as usize;
    if seen < ORDER_LEN {
        IRQ_ORDER[index][seen].store(vector as u8, Ordering::Relaxed);
    }
    IRQ_COUNT[index][vector].fetch_add(1, Ordering::Relaxed);
    PER_CPU[index].interrupts.fetch_add(1, Ordering::Relaxed);
    let handler = IRQ_HANDLERS[vector].load(Ordering::Relaxed);
    if handler != 0 {
        // SAFETY: only `set_irq_handler` stores into the table, from a `fn(&mut TrapFrame)`.
        let handler: fn(&mut TrapFrame) = unsafe { core::mem::transmute(handler) };
        handler(frame);
    }
    let own_eoi = NO_AUTO_EOI[vector / 64].load(Ordering::Relaxed) & (1 << (vector % 64)) != 0;
    // The spurious vector is not in service: no EOI (SDM §11.9).
    if vector != usize::from(crate::apic::SPURIOUS_VECTOR) && !own_eoi {
        let start = rdtsc();
        crate::apic::eoi();
        IRQ_EOI_CYCLES[index].store(rdtsc() - start, Ordering::Relaxed);
    }
    // Counted last, so a waiter that sees the total also sees the handler's effects.
    IRQ_TOTAL[index].fetch_add(1, Ordering::SeqCst);
}

fn exception(frame: &mut TrapFrame) {
    let cpu = this_cpu();
    cpu.last_vector.store(frame.vector, Ordering::SeqCst);
    cpu.last_error.store(frame.error, Ordering::SeqCst);
    cpu.last_rip.store(frame.rip, Ordering::SeqCst);
    cpu.exceptions.fetch_add(1, Ordering::SeqCst);
    if frame.cs & 3 == 3 {
        let rip = cpu.recover_rip.swap(0, Ordering::SeqCst);
        if rip != 0 {
            frame.rip = rip;
            frame.rsp = cpu.recover_rsp.load(Ordering::SeqCst);
            return;
        }
    } else {
        let rip = cpu.kernel_fixup.swap(0, Ordering::SeqCst);
        if rip != 0 {
            frame.rip = rip;
            return;
        }
    }
    serial::write_bytes(b"guest: unhandled exception vector=");
    serial::raw_hex(frame.vector);
    serial::write_bytes(b" error=");
    serial::raw_hex(frame.error);
    serial::write_bytes(b" rip=");
    serial::raw_hex(frame.rip);
    serial::write_bytes(b" cs=");
    serial::raw_hex(frame.cs);
    serial::write_bytes(b" rflags=");
    serial::raw_hex(frame.rflags);
    serial::write_bytes(b"\n");
    outl(crate::sys::EXIT_PORT, crate::EXIT_UNHANDLED_EXCEPTION);
    loop {
        // SAFETY: parks the CPU; the VMM ends the VM on the exit-port write.
        unsafe { asm!("cli", "hlt") };
    }
}

/// Where the APs' real-mode trampoline is copied: SIPI vector `TRAMPOLINE_BASE >> 12`.
pub const TRAMPOLINE_BASE: u64 = 0x30000;
const AP_BOOT_STACK_SIZE: usize = 4096;
static AP_BOOT_STACKS: Global<Stacks<{ AP_BOOT_STACK_SIZE * MAX_CPUS }>> =
    Global::new(Stacks([0; AP_BOOT_STACK_SIZE * MAX_CPUS]));

// The AP trampoline, assembled here and copied to TRAMPOLINE_BASE at run time; its code
// addresses itself as TRAMPOLINE_BASE + (label - ap_trampoline). An AP starts in real mode
// at CS = TRAMPOLINE_BASE >> 4, IP = 0 (SDM vol. 3 §9.4.4), and climbs to long mode with the
// bootstrap CPU's page tables (patched into `tramp_cr3`) before jumping to `ap_start64`.
global_asm!(
    ".pushsection .rodata.trampoline, \"a\"",
    ".globl ap_trampoline",
    ".globl ap_trampoline_end",
    ".globl tramp_cr3",
    ".globl tramp_entry",
    ".set TB, {base}",
    ".code16",
    // Data first, at fixed offsets (the assembler cannot subtract labels inside a memory
    // operand): 8 CR3, 16 the 64-bit entry, 24 a GDT, 56 its pointer; code from 64.
    "ap_trampoline:",
    ".byte 0xeb, 62",
    ".balign 8, 0",
    "tramp_cr3: .quad 0",
    "tramp_entry: .quad 0",
    ".quad 0",
    ".quad 0x00af9a000000ffff",
    ".quad 0x00cf92000000ffff",
    ".quad 0x00cf9a000000ffff",
    ".word 31",
    ".long TB + 24",
    ".word 0",
    "cli",
    "mov ax, cs",
    "mov ds, ax",
    "lgdt [56]",
    "mov eax, cr0",
    "or eax, 1",
    "mov cr0, eax",
    ".byte 0x66, 0xea",
    ".long TB + (tramp32 - ap_trampoline)",
    ".word 0x18",
    ".code32",
    "tramp32:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov eax, [TB + 8]",
    "mov cr3, eax",
    "mov eax, cr4",
    "or eax, 0x20",
    "mov cr4, eax",
    "mov ecx, 0xC0000080",
    "rdmsr",
    "or eax, 0x100",
    "wrmsr",
    "mov eax, cr0",
    "or eax, 0x80000001",
    "mov cr0, eax",
    ".byte 0xea",
    ".long TB + (tramp64 - ap_trampoline)",
    ".word 0x08",
    ".code64",
    "tramp64:",
    "mov rax, [TB + 16]",
    "jmp rax",
    "ap_trampoline_end:",
    ".popsection",
    ".pushsection .text.entry, \"ax\"",
    ".globl ap_start64",
    "ap_start64:",
    "mov eax, 1",
    "lock xadd [rip + {next}], eax",
    "mov edi, eax",
    "lea rsp, [rip + {stacks}]",
    "lea rax, [rdi + 1]",
    "imul rax, rax, {stack_size}",
    "add rsp, rax",
    "call {entry}",
    "3: hlt",
    "jmp 3b",
    ".popsection",
    base = const TRAMPOLINE_BASE,
    next = sym AP_NEXT_INDEX,
    stacks = sym AP_BOOT_STACKS,
    stack_size = const AP_BOOT_STACK_SIZE,
    entry = sym ap_rust_entry,
);

extern "C" {
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
    static tramp_cr3: u8;
    static tramp_entry: u8;
    fn ap_start64();
}

/// Copies the trampoline to TRAMPOLINE_BASE and patches CR3 and the 64-bit entry.
pub fn install_trampoline() {
    let start = core::ptr::addr_of!(ap_trampoline) as usize;
    let end = core::ptr::addr_of!(ap_trampoline_end) as usize;
    let cr3_off = core::ptr::addr_of!(tramp_cr3) as usize - start;
    let entry_off = core::ptr::addr_of!(tramp_entry) as usize - start;
    let dst = TRAMPOLINE_BASE as usize as *mut u8;
    // SAFETY: TRAMPOLINE_BASE is free RAM below the kernel, identity- and user-mapped.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, dst, end - start);
        (dst.add(cr3_off) as *mut u64).write_volatile(BOOT_CR3.load(Ordering::SeqCst));
        (dst.add(entry_off) as *mut u64).write_volatile(ap_start64 as *const () as u64);
    }
}

/// First Rust code on an AP, at CPL0, on its boot stack.
extern "C" fn ap_rust_entry(cpu: u64) -> ! {
    let cpu = cpu as usize;
    if cpu >= MAX_CPUS {
        loop {
            // SAFETY: parks an AP the runtime has no room for.
            unsafe { asm!("cli", "hlt") };
        }
    }
    init_cpu(cpu);
    AP_ONLINE.fetch_add(1, Ordering::SeqCst);
    enter_user(cpu, ap_user_entry, cpu as u64)
}

extern "C" fn ap_user_entry(cpu: u64) -> ! {
    let main = AP_MAIN.load(Ordering::SeqCst);
    if main != 0 {
        // SAFETY: `smp::start_aps` stores a `fn(usize)` here.
        let main: fn(usize) = unsafe { core::mem::transmute(main) };
        main(cpu as usize);
    }
    loop {
        crate::sys::halt();
    }
}
