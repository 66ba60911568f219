//! The EL2 side: entry, exception vectors, guest entry/exit, devices. Memory map (QEMU virt,
//! `-m 1G`):
//!
//! ```text
//!   0x0800_0000  GICv3 distributor, 0x080a_0000 redistributors
//!   0x0900_0000  PL011 UART: frames and mailbox doorbells (the harness channel)
//!   0x4000_0000  DTB (QEMU), then the refhyp image at 0x4020_0000 (text, data, bss, stack)
//!   0x4100_0000  heap (32 MiB)
//!   0x4300_0000  stage-2 table pool (1024 tables)
//!   0x4400_0000  guest pool (512 MiB): every job's slots, placed from its base
//!   0x6400_0000  mailbox (2 MiB, `trapdiff_arch::mailbox::REFHYP_PA`): requests and replies;
//!                the harness reaches it through the file behind QEMU's RAM
//! ```

#[macro_use]
mod sysreg;
mod cpu;
mod gic;
mod heap;
mod mmu;
mod uart;

use core::panic::PanicInfo;

use refhyp::runner::Machine;
use refhyp::session::{self, Session, Step};
use refhyp::stage2::Table;
use trapdiff_arch::mailbox;
use trapdiff_arch::wire::TargetMsg;

pub const HEAP_BASE: usize = 0x4100_0000;
pub const HEAP_SIZE: usize = 32 << 20;
pub const TABLES_BASE: usize = 0x4300_0000;
pub const TABLES_COUNT: usize = 1024;
pub const POOL_BASE: usize = 0x4400_0000;
pub const POOL_SIZE: usize = 512 << 20;
pub const MAILBOX_BASE: usize = mailbox::REFHYP_PA as usize;
const _: () = assert!(POOL_BASE + POOL_SIZE <= MAILBOX_BASE, "the mailbox overlaps the guest pool");

core::arch::global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mrs x1, CurrentEL
    cmp x1, #8
    b.ne 9f
    ldr x1, =__stack_top
    mov sp, x1
    ldr x1, =__bss_start
    ldr x2, =__bss_end
1:  cmp x1, x2
    b.hs 2f
    str xzr, [x1], #8
    b 1b
2:  ldr x1, =el2_vectors
    msr vbar_el2, x1
    isb
    bl rust_main
9:  wfe
    b 9b
"#
);

// Guest entry and exit, and the EL2 vector table. `__guest_enter(regs)` saves the host's
// callee-saved registers on the EL2 stack, loads the guest's x0-x30, ELR_EL2 and SPSR_EL2 from
// `regs` (layout of `refhyp::vcpu::GuestRegs`: x[31], pc, pstate) and ERETs. An exception
// from the guest lands in a lower-EL vector, which stores the guest's registers back through
// TPIDR_EL2 (= regs), restores the host registers from the same stack and returns the exit
// kind (0 sync, 1 IRQ, 2 FIQ, 3 SError) to the caller of `__guest_enter`.
core::arch::global_asm!(
    r#"
.section .text
.global __guest_enter
__guest_enter:
    stp x29, x30, [sp, #-16]!
    stp x27, x28, [sp, #-16]!
    stp x25, x26, [sp, #-16]!
    stp x23, x24, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    msr tpidr_el2, x0
    ldp x1, x2, [x0, #248]
    msr elr_el2, x1
    msr spsr_el2, x2
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0, #0]
    eret
    dsb nsh
    isb

__guest_exit:
    mrs x0, tpidr_el2
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str x30, [x0, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0, #0]
    mrs x2, elr_el2
    mrs x3, spsr_el2
    stp x2, x3, [x0, #248]
    mov x0, x1
    ldp x19, x20, [sp], #16
    ldp x21, x22, [sp], #16
    ldp x23, x24, [sp], #16
    ldp x25, x26, [sp], #16
    ldp x27, x28, [sp], #16
    ldp x29, x30, [sp], #16
    ret

.macro guest_vector kind
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x1, #\kind
    b __guest_exit
.endm

.macro el2_vector kind
    .balign 0x80
    mov x0, #\kind
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    b el2_unexpected
.endm

.balign 0x800
.global el2_vectors
el2_vectors:
    el2_vector 0
    el2_vector 1
    el2_vector 2
    el2_vector 3
    el2_vector 4
    el2_vector 5
    el2_vector 6
    el2_vector 7
    guest_vector 0
    guest_vector 1
    guest_vector 2
    guest_vector 3
    guest_vector 0
    guest_vector 1
    guest_vector 2
    guest_vector 3
"#
);

/// An exception taken at EL2 itself: a refhyp bug. Say what it was and stop.
#[no_mangle]
extern "C" fn el2_unexpected(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    let text = alloc::format!("refhyp: panic: unexpected EL2 exception (vector {kind}, ESR_EL2 {esr:#x}, ELR_EL2 {elr:#x}, FAR_EL2 {far:#x})");
    die(&text)
}

fn die(text: &str) -> ! {
    let mut line = alloc::vec::Vec::from(text.as_bytes());
    line.push(b'\n');
    uart::write(&line);
    uart::write(&session::encode(&TargetMsg::Log { text: alloc::string::String::from(text) }));
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let text = alloc::format!("refhyp: panic: {info}");
    die(&text)
}

extern crate alloc;

#[no_mangle]
extern "C" fn rust_main() -> ! {
    // SAFETY: first thing at boot, single CPU, nothing else uses the EL2 translation regime.
    unsafe { mmu::enable() };
    // SAFETY: the heap range is RAM the image and the pools do not use (memory map above).
    unsafe { heap::init(HEAP_BASE, HEAP_SIZE) };
    uart::init();
    gic::init();
    let fwb = cpu::has_s2fwb();
    // SAFETY: the pool and mailbox ranges are RAM reserved for them (memory map above), identity-mapped
    // by `mmu::enable`, and these are the only references to them.
    let (pool, tables, mailbox) = unsafe {
        (
            core::slice::from_raw_parts_mut(POOL_BASE as *mut u8, POOL_SIZE),
            core::slice::from_raw_parts_mut(TABLES_BASE as *mut Table, TABLES_COUNT),
            core::slice::from_raw_parts_mut(MAILBOX_BASE as *mut u8, mailbox::SIZE),
        )
    };
    let mut machine = Machine { pool, pool_pa: POOL_BASE as u64, tables, tables_pa: TABLES_BASE as u64, fwb };
    let mut hw = cpu::Cpu::new(fwb);
    let hello = session::hello(read_sysreg!("midr_el1"), fwb);
    uart::write(b"\n");
    uart::write(&session::encode(&TargetMsg::Hello(hello)));
    let mut s = Session::with_mailbox(mailbox);
    loop {
        let b = uart::getc();
        match s.push(b, &mut hw, &mut machine) {
            Step::Idle => {}
            Step::Reply(bytes) => uart::write(&bytes),
            Step::Shutdown(bytes) => {
                uart::write(&bytes);
                cpu::system_off();
            }
        }
    }
}
