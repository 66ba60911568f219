// trapdiff guest runtime, A64. Linked at RUNTIME_BASE; the ABI (parameter block, report page,
// harness MMIO page) is in arch/src/abi.rs and its constants come from abi.inc (build.rs).
//
// The vCPU enters at _start at EL1h with the MMU off. The prologue applies the case's system
// registers from the parameter block (the host computed every value; this code only copies),
// then ERETs to the case's code at EL1t or EL0t. Running the case on SP_EL0 keeps SP_EL1 for
// the runtime, so an exception never lands on the case's stack. Every exception comes back
// here: it is recorded in the report page and announced with a store to HARNESS_MMIO+EVENT,
// then the case is resumed after the faulting instruction or ended. The end-marker SVC right
// after the case's code runs the epilogue, which reports the final state and stores the status
// to HARNESS_MMIO+DONE. No literal pools: every word in .text is an instruction.

    .include "abi.inc"
    .arch armv8-a
    .text

    // Frame on SP_EL1 for an exception: x0..x30 in slots 0..30, SP_EL0 in slot 31.
    .equ FRAME, 256
    // Where an exception came from (vector group).
    .equ ORIGIN_CASE_EL1, 0
    .equ ORIGIN_CASE_EL0, 1
    .equ ORIGIN_RUNTIME, 2
    .equ EC_SVC64, 0x15
    // SPSR_EL1 for the case: D, A, I, F masked (the case gets no interrupts), M = EL1t / EL0t
    // (Arm ARM C5.2.18 SPSR_EL1).
    .equ SPSR_CASE_EL1, 0x3c4
    .equ SPSR_CASE_EL0, 0x3c0
    .equ CPACR_FPEN_ON, (3 << 20)

    // Load a 32-bit constant (every runtime address is below 4 GiB).
    .macro mov32 reg, val
    movz \reg, #((\val) & 0xffff)
    movk \reg, #(((\val) >> 16) & 0xffff), lsl #16
    .endm

    .global _start
_start:
    b       prologue

// ---- vectors (Arm ARM D1.10.2 "Exception vectors": 16 entries of 0x80 bytes, 2 KiB aligned) --
    .macro ventry vec, origin
    .balign 0x80
    sub     sp, sp, #FRAME
    stp     x0, x1, [sp]
    mov     x0, #\vec
    mov     x1, #\origin
    b       handler
    .endm

    .balign 0x800
vectors:
    // Current EL with SP_EL0: the case's code at EL1t.
    ventry  VEC_A64_SYNC, ORIGIN_CASE_EL1
    ventry  VEC_A64_IRQ, ORIGIN_CASE_EL1
    ventry  VEC_A64_FIQ, ORIGIN_CASE_EL1
    ventry  VEC_A64_SERROR, ORIGIN_CASE_EL1
    // Current EL with SP_ELx: the runtime itself faulted.
    ventry  VEC_A64_SYNC, ORIGIN_RUNTIME
    ventry  VEC_A64_IRQ, ORIGIN_RUNTIME
    ventry  VEC_A64_FIQ, ORIGIN_RUNTIME
    ventry  VEC_A64_SERROR, ORIGIN_RUNTIME
    // Lower EL using AArch64: the case's code at EL0t.
    ventry  VEC_A64_SYNC, ORIGIN_CASE_EL0
    ventry  VEC_A64_IRQ, ORIGIN_CASE_EL0
    ventry  VEC_A64_FIQ, ORIGIN_CASE_EL0
    ventry  VEC_A64_SERROR, ORIGIN_CASE_EL0
    // Lower EL using AArch32: never used (AArch32 cases run the A32 runtime); a runtime fault.
    ventry  VEC_A64_SYNC, ORIGIN_RUNTIME
    ventry  VEC_A64_IRQ, ORIGIN_RUNTIME
    ventry  VEC_A64_FIQ, ORIGIN_RUNTIME
    ventry  VEC_A64_SERROR, ORIGIN_RUNTIME
    .balign 0x80

// ---- exception handler ------------------------------------------------------------------
// In: x0 = vector id, x1 = origin, x0/x1 of the case saved at [sp].
handler:
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
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #240]

    mrs     x2, esr_el1
    mrs     x3, far_el1
    mrs     x4, elr_el1
    mrs     x5, spsr_el1
    // x6 = pc to record, x7 = where to resume when skipping.
    // Synchronous exceptions other than SVC: ELR is the faulting instruction (Arm ARM D1.10.1
    // "Preferred exception return address"); every A64 instruction is 4 bytes.
    mov     x6, x4
    add     x7, x4, #4
    cmp     x0, #VEC_A64_SYNC
    b.eq    1f
    // IRQ/FIQ/SError are asynchronous: ELR is the next instruction to run, so resume there.
    // ESR_EL1 is only written for SError (D24.2.41); record 0 for IRQ/FIQ.
    mov     x7, x4
    cmp     x0, #VEC_A64_SERROR
    csel    x2, x2, xzr, eq
    b       2f
1:  lsr     x8, x2, #26
    cmp     x8, #EC_SVC64
    b.ne    2f
    // SVC: ELR is the instruction after the SVC (D1.10.1); record the SVC, resume after it.
    sub     x6, x4, #4
    mov     x7, x4
    cmp     x1, #ORIGIN_RUNTIME
    b.eq    2f
    // The end marker is not an event: it runs the epilogue.
    mov32   x9, PARAMS_BASE
    ldr     x10, [x9, #P_END_MARKER]
    mov     w20, #DONE_OK
    cmp     x6, x10
    b.eq    finish
2:  // Record the exception. x9 = report page, w10 = its index.
    mov32   x9, REPORT_BASE
    ldr     w10, [x9, #R_N]
    mov     w20, #DONE_EXCEPTION_LIMIT
    cmp     w10, #MAX_EXCEPTIONS
    b.hs    finish                          // never write past the records (cannot happen)
    mov     x11, #EXC_SIZE
    madd    x11, x10, x11, x9
    add     x11, x11, #R_EXC
    mov     w12, #FLAG_RUNTIME
    cmp     x1, #ORIGIN_RUNTIME
    b.eq    3f
    cmp     x1, #ORIGIN_CASE_EL0
    cset    w12, eq                         // FLAG_FROM_EL0 is bit 0
3:  str     w0, [x11, #REC_VECTOR]
    str     w12, [x11, #REC_FLAGS]
    str     x2, [x11, #REC_SYNDROME]
    str     x3, [x11, #REC_FAR]
    str     x6, [x11, #REC_PC]
    str     x5, [x11, #REC_SPSR]
    add     w13, w10, #1
    str     w13, [x9, #R_N]
    // The record is in memory before the exit that announces it.
    dsb     sy
    mov32   x14, HARNESS_MMIO
    str     w10, [x14, #H_EVENT]            // plain 32-bit STR: ISV=1 for KVM and the refhyp
    mov     w20, #DONE_RUNTIME_FAULT
    cmp     x1, #ORIGIN_RUNTIME
    b.eq    finish
    mov32   x9, PARAMS_BASE
    ldr     x15, [x9, #P_MAX_EXCEPTIONS]
    mov     w20, #DONE_EXCEPTION_LIMIT
    cmp     x13, x15
    b.hs    finish
    ldr     x15, [x9, #P_ON_EXCEPTION]
    mov     w20, #DONE_END_ON_EXCEPTION
    cbnz    x15, finish
    // Resume the case (ERET restores PSTATE from SPSR_EL1, D1.11 "Exception return").
    msr     elr_el1, x7
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
    ldp     x0, x1, [sp]
    add     sp, sp, #FRAME
    eret

// ---- epilogue -----------------------------------------------------------------------------
// In: w20 = status, sp = the frame holding the case's registers at the end marker (or at the
// exception that ended the case).
finish:
    mov32   x9, REPORT_BASE
    mov     x10, sp
    add     x11, x9, #R_GPRS
    mov     x12, #16
1:  ldp     x13, x14, [x10], #16
    stp     x13, x14, [x11], #16
    subs    x12, x12, #1
    b.ne    1b
    // Report the case's CPACR_EL1 before turning FP on to read FPCR/FPSR/V (which CPACR traps).
    mrs     x13, cpacr_el1
    str     x13, [x9, #R_CPACR]
    orr     x13, x13, #CPACR_FPEN_ON
    msr     cpacr_el1, x13
    isb
    mrs     x13, fpcr
    str     x13, [x9, #R_FPCR_OR_FPSCR]
    mrs     x13, fpsr
    str     x13, [x9, #R_FPSR_OR_FPEXC]
    mrs     x13, sctlr_el1
    str     x13, [x9, #R_SCTLR]
    add     x11, x9, #R_VREGS
    stp     q0, q1, [x11, #0]
    stp     q2, q3, [x11, #32]
    stp     q4, q5, [x11, #64]
    stp     q6, q7, [x11, #96]
    stp     q8, q9, [x11, #128]
    stp     q10, q11, [x11, #160]
    stp     q12, q13, [x11, #192]
    stp     q14, q15, [x11, #224]
    stp     q16, q17, [x11, #256]
    stp     q18, q19, [x11, #288]
    stp     q20, q21, [x11, #320]
    stp     q22, q23, [x11, #352]
    stp     q24, q25, [x11, #384]
    stp     q26, q27, [x11, #416]
    stp     q28, q29, [x11, #448]
    stp     q30, q31, [x11, #480]
    mov32   x13, REPORT_MAGIC
    str     x13, [x9, #R_MAGIC]
    str     w20, [x9, #R_STATUS]
    dsb     sy
done:
    mov32   x14, HARNESS_MMIO
    str     w20, [x14, #H_DONE]
    // The backend stops the vCPU on DONE; never run past it.
2:  wfi
    b       2b

// ---- prologue -----------------------------------------------------------------------------
prologue:
    msr     daifset, #0xf
    mov32   x19, PARAMS_BASE
    mov32   x0, (STACK_BASE + STACK_SIZE)
    mov     sp, x0                          // SP_EL1: we are at EL1h
    ldr     x0, [x19, #P_MAGIC]
    movz    x1, #(PARAMS_MAGIC & 0xffff)
    movk    x1, #((PARAMS_MAGIC >> 16) & 0xffff), lsl #16
    movk    x1, #((PARAMS_MAGIC >> 32) & 0xffff), lsl #32
    movk    x1, #((PARAMS_MAGIC >> 48) & 0xffff), lsl #48
    mov     w20, #DONE_BAD_PARAMS
    cmp     x0, x1
    b.ne    done
    // Magic first: a report page with it shows the runtime started and its count is valid.
    mov32   x9, REPORT_BASE
    mov32   x0, REPORT_MAGIC
    str     x0, [x9, #R_MAGIC]
    str     wzr, [x9, #R_N]

    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x0, [x19, #P_MAIR]
    msr     mair_el1, x0
    ldr     x0, [x19, #P_TCR]
    msr     tcr_el1, x0
    ldr     x0, [x19, #P_TTBR0]
    msr     ttbr0_el1, x0
    isb
    // The backend may reuse the VM (same VMID, same TTBR0) for the previous job: drop its
    // stage-1 TLB entries before the MMU goes on, and the I-cache since the host rewrote code.
    dsb     ish
    tlbi    vmalle1
    ic      iallu
    dsb     ish
    isb
    ldr     x0, [x19, #P_SCTLR]
    msr     sctlr_el1, x0
    isb
    // EL0 counter/timer access off (CNTKCTL_EL1 resets to an UNKNOWN value, and KVM gives 0):
    // the same for every job on every backend.
    msr     cntkctl_el1, xzr

    // FP/SIMD on while the runtime loads the initial V registers and FPCR.
    mov     x0, #CPACR_FPEN_ON
    msr     cpacr_el1, x0
    isb
    add     x1, x19, #P_VREGS
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    ldr     x0, [x19, #P_FPSCR]
    msr     fpcr, x0
    msr     fpsr, xzr
    // Now the case's CPACR_EL1 (it may trap FP from here on).
    ldr     x0, [x19, #P_CPACR]
    msr     cpacr_el1, x0

    ldr     x0, [x19, #P_ENTRY]
    msr     elr_el1, x0
    ldr     x0, [x19, #P_EL0]
    mov     x1, #SPSR_CASE_EL1
    mov     x2, #SPSR_CASE_EL0
    cmp     x0, #0
    csel    x1, x1, x2, eq
    msr     spsr_el1, x1
    ldr     x0, [x19, #(P_GPRS + 31 * 8)]
    msr     sp_el0, x0
    isb
    add     x30, x19, #P_GPRS
    ldp     x0, x1, [x30, #0]
    ldp     x2, x3, [x30, #16]
    ldp     x4, x5, [x30, #32]
    ldp     x6, x7, [x30, #48]
    ldp     x8, x9, [x30, #64]
    ldp     x10, x11, [x30, #80]
    ldp     x12, x13, [x30, #96]
    ldp     x14, x15, [x30, #112]
    ldp     x16, x17, [x30, #128]
    ldp     x18, x19, [x30, #144]
    ldp     x20, x21, [x30, #160]
    ldp     x22, x23, [x30, #176]
    ldp     x24, x25, [x30, #192]
    ldp     x26, x27, [x30, #208]
    ldp     x28, x29, [x30, #224]
    ldr     x30, [x30, #240]
    // To the case: PSTATE from SPSR_EL1, PC from ELR_EL1 (D1.11 "Exception return").
    eret
