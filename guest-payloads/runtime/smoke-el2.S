// A minimal EL2 stub for the runtime's own smoke test (src/runtime_smoke.rs): NOT the refhyp.
// It runs one job prepared by the test as a blob at BLOB (header, stage-2 tables, guest memory),
// reports every stage-2 data abort with a valid syndrome as a line on the PL011 UART
//   "E <ipa> <len> <write> <data>"
// (reads return the header's value), and when the runtime stores to HARNESS_MMIO+DONE it dumps
// the report page as "P <hex bytes>" and stops. Anything else prints "X <esr> <elr> <far>".

    .include "abi.inc"
    .include "el2-stub.inc"
    .arch armv8-a
    .text
    .equ BLOB, 0x41000000
    // Header fields (u64).
    .equ H_ENTRY, 0x08
    .equ H_AARCH32, 0x10
    .equ H_VTTBR, 0x18
    .equ H_VTCR, 0x20
    .equ H_READ, 0x28
    .equ H_REPORT_PA, 0x30
    .equ REPORT_USED, (R_EXC + EXC_SIZE * MAX_EXCEPTIONS)


    .global _start
_start:
    mov32   x0, 0x40600000
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el2, x0
    mov32   x9, BLOB
    ldr     x0, [x9, #H_VTCR]
    msr     vtcr_el2, x0
    ldr     x0, [x9, #H_VTTBR]
    msr     vttbr_el2, x0
    ldr     x1, [x9, #H_AARCH32]
    mov     x0, #1                          // HCR_EL2.VM
    cbnz    x1, 1f
    orr     x0, x0, #(1 << 31)              // HCR_EL2.RW: EL1 is AArch64
1:  msr     hcr_el2, x0
    mov     x0, #0x33ff                     // CPTR_EL2: RES1 bits, no traps
    msr     cptr_el2, x0
    msr     hstr_el2, xzr
    mov32   x0, 0x30d00800                  // SCTLR_EL1 RES1, MMU off
    msr     sctlr_el1, x0
    mov     x0, #0x3c5                      // EL1h, DAIF masked
    mov     x2, #0x1d3                      // AArch32 SVC, A/I/F masked
    cmp     x1, #0
    csel    x0, x0, x2, eq
    msr     spsr_el2, x0
    ldr     x0, [x9, #H_ENTRY]
    msr     elr_el2, x0
    isb
    eret

    .balign 0x800
vectors:
    .rept 8
    .balign 0x80
    b       unexpected
    .endr
    .balign 0x80
    b       guest_sync                      // lower EL, AArch64, sync
    .rept 3
    .balign 0x80
    b       unexpected
    .endr
    .balign 0x80
    b       guest_sync                      // lower EL, AArch32, sync
    .rept 3
    .balign 0x80
    b       unexpected
    .endr
    .balign 0x80

guest_sync:
    sub     sp, sp, #256
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    str     xzr, [sp, #248]                 // slot 31: the zero register
    mrs     x19, esr_el2
    lsr     x20, x19, #26
    cmp     x20, #0x24                      // data abort from a lower EL
    b.ne    unexpected
    tbz     x19, #24, unexpected            // ISV
    mrs     x21, hpfar_el2
    lsr     x21, x21, #4
    lsl     x21, x21, #12
    mrs     x22, far_el2
    and     x22, x22, #0xfff
    orr     x21, x21, x22                   // IPA
    ubfx    x23, x19, #22, #2               // SAS
    mov     x24, #1
    lsl     x24, x24, x23                   // len
    ubfx    x25, x19, #16, #5               // SRT
    ubfx    x26, x19, #6, #1                // WnR
    // mask = len == 8 ? ~0 : (1 << 8*len) - 1
    mov     x28, #-1
    cmp     x24, #8
    b.eq    1f
    lsl     x0, x24, #3
    mov     x28, #1
    lsl     x28, x28, x0
    sub     x28, x28, #1
1:  cbz     x26, 2f
    ldr     x27, [sp, x25, lsl #3]
    and     x27, x27, x28
    b       3f
2:  mov32   x9, BLOB
    ldr     x27, [x9, #H_READ]
    and     x27, x27, x28
    cmp     x25, #31
    b.eq    3f
    str     x27, [sp, x25, lsl #3]
3:  mov     w0, #'E'
    bl      putc
    mov     x0, x21
    bl      puthex_sp
    mov     x0, x24
    bl      puthex_sp
    mov     x0, x26
    bl      puthex_sp
    mov     x0, x27
    bl      puthex_sp
    mov     w0, #'\n'
    bl      putc
    // Step over the access: 4 bytes, or 2 for a 16-bit T32 instruction (ESR_EL2.IL = 0).
    mrs     x0, elr_el2
    tst     x19, #(1 << 25)
    mov     x1, #2
    mov     x2, #4
    csel    x1, x2, x1, ne
    add     x0, x0, x1
    msr     elr_el2, x0
    mov32   x1, (HARNESS_MMIO + H_DONE)
    cmp     x21, x1
    b.eq    dump
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #256
    eret

dump:
    mov     w0, #'P'
    bl      putc
    mov     w0, #' '
    bl      putc
    mov32   x9, BLOB
    ldr     x20, [x9, #H_REPORT_PA]
    mov     x21, #0
4:  ldrb    w22, [x20, x21]
    lsr     w0, w22, #4
    bl      putnib
    and     w0, w22, #0xf
    bl      putnib
    add     x21, x21, #1
    cmp     x21, #REPORT_USED
    b.lo    4b
    mov     w0, #'\n'
    bl      putc
    b       halt

unexpected:
    mov     w0, #'X'
    bl      putc
    mrs     x0, esr_el2
    bl      puthex_sp
    mrs     x0, elr_el2
    bl      puthex_sp
    mrs     x0, far_el2
    bl      puthex_sp
    mov     w0, #'\n'
    bl      putc
halt:
    wfi
    b       halt

    uart_routines
