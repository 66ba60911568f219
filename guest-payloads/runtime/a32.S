@ trapdiff guest runtime, AArch32 (A32). Linked at RUNTIME_A32_BASE; the ABI is in
@ arch/src/abi.rs and its constants come from abi.inc (build.rs).
@
@ The vCPU enters at _start (the reset slot of the vector table) in SVC mode, A32, MMU off.
@ The prologue sets a stack for every exception mode, applies the case's system registers
@ from the parameter block (LPAE tables, MAIR0/1, SCTLR, CPACR, FPEXC, FPSCR: the host computed
@ every value), then returns to the case in SYS mode (EL1 cases) or USR mode (EL0 cases), A32
@ or T32. SYS rather than SVC: SYS shares r13/r14 with USR and has no SPSR, so no exception
@ (the end-marker SVC included) can overwrite a register of the case.
@ Every exception mode saves the case's r0-r14 (the USR/SYS bank, with STM ^), records the
@ exception in the report page, stores its index to HARNESS_MMIO+EVENT, and resumes the case
@ after the faulting instruction or ends it. The end-marker SVC runs the epilogue, which reports
@ the final state and stores the status to HARNESS_MMIO+DONE. No literal pools: every word in
@ .text is an instruction.

    .include "abi.inc"
    .syntax unified
    .arch armv7-a
    .arch_extension sec
    .fpu neon-vfpv4
    .arm
    .text

    @ Frame on the exception mode's stack: the case's r0-r14, then one spare word.
    .equ FRAME, 64
    @ CPSR.M values (Arm ARM G1.9.1 "AArch32 processor modes").
    .equ M_USR, 0x10
    .equ M_FIQ, 0x11
    .equ M_IRQ, 0x12
    .equ M_SVC, 0x13
    .equ M_ABT, 0x17
    .equ M_UND, 0x1b
    .equ M_SYS, 0x1f
    .equ PSR_T, 0x20
    .equ PSR_AIF, 0x1c0
    .equ FPEXC_EN, 0x40000000
    @ CPACR cp10 and cp11 full access; D32DIS (bit 30) and ASEDIS (bit 31) clear.
    .equ CPACR_FP_ON, (0xf << 20)
    .equ CPACR_D32DIS_ASEDIS, 0xc0000000
    @ How the common handler finds the resume address (r5).
    .equ RESUME_AFTER_INSN, 0               @ skip the instruction at the recorded pc
    .equ RESUME_AT_R6, 1                    @ r6 already holds it

    .macro mov32 reg, val
    movw    \reg, #((\val) & 0xffff)
    movt    \reg, #(((\val) >> 16) & 0xffff)
    .endm

    @ Save the case's r0-r14 (USR/SYS bank: STM with ^ stores User registers, Arm ARM
    @ F5.1.227 "STM (User registers)").
    .macro save_case
    sub     sp, sp, #FRAME
    stmia   sp, {r0-r14}^
    .endm

@ ---- vector table (VBAR = RUNTIME_A32_BASE; Arm ARM G1.11.1 "Exception vectors") -------------
    .global _start
_start:
    b       prologue                        @ 0x00 reset slot: the job's entry point
    b       undef_entry                     @ 0x04 Undefined Instruction
    b       svc_entry                       @ 0x08 Supervisor Call
    b       pabt_entry                      @ 0x0c Prefetch Abort
    b       dabt_entry                      @ 0x10 Data Abort
    b       unused_entry                    @ 0x14 Hyp trap: never taken to PL1
    b       irq_entry                       @ 0x18 IRQ
    b       fiq_entry                       @ 0x1c FIQ

@ LR on exception entry = preferred return address + an offset per exception and state
@ (Arm ARM G1.12.3, Table G1-10 in DDI 0487B.b; KVM's return_offsets[] in hyp/exception.c):
@   Undefined  +4 (A32) / +2 (T32)  preferred = the UNDEFINED instruction
@   SVC        +0                   preferred = the instruction after the SVC
@   Prefetch   +4                   preferred = the aborted instruction
@   Data       +8                   preferred = the instruction that aborted
@   IRQ/FIQ    +4                   preferred = the next instruction to execute
@ Each entry leaves: r0 = vector id, r1 = SPSR, r2 = pc to record, r3 = syndrome, r4 = far,
@ r5/r6 = how to resume.
undef_entry:
    save_case
    mov     r0, #VEC_A32_UNDEF
    mrs     r1, spsr
    tst     r1, #PSR_T
    subne   r2, lr, #2
    subeq   r2, lr, #4
    mov     r3, #0                          @ AArch32 PL1 has no syndrome for UNDEF
    mov     r4, #0
    mov     r5, #RESUME_AFTER_INSN
    b       common

svc_entry:
    save_case
    mov     r0, #VEC_A32_SVC
    mrs     r1, spsr
    tst     r1, #PSR_T                      @ SVC is 2 bytes in T32, 4 in A32
    subne   r2, lr, #2
    subeq   r2, lr, #4
    mov     r3, #0
    mov     r4, #0
    mov     r5, #RESUME_AT_R6
    mov     r6, lr                          @ already after the SVC
    b       common

pabt_entry:
    save_case
    mov     r0, #VEC_A32_PABT
    mrs     r1, spsr
    sub     r2, lr, #4
    mrc     p15, 0, r3, c5, c0, 1           @ IFSR
    mrc     p15, 0, r4, c6, c0, 2           @ IFAR
    @ The instruction could not be fetched, so it cannot be measured: skip 2 bytes in T32
    @ (the next fetch from the same page faults again anyway) and 4 in A32.
    mov     r5, #RESUME_AT_R6
    tst     r1, #PSR_T
    addne   r6, r2, #2
    addeq   r6, r2, #4
    b       common

dabt_entry:
    save_case
    mov     r0, #VEC_A32_DABT
    mrs     r1, spsr
    sub     r2, lr, #8
    mrc     p15, 0, r3, c5, c0, 0           @ DFSR
    mrc     p15, 0, r4, c6, c0, 0           @ DFAR
    mov     r5, #RESUME_AFTER_INSN
    b       common

irq_entry:
    save_case
    mov     r0, #VEC_A32_IRQ
    b       async_common

fiq_entry:
    save_case
    mov     r0, #VEC_A32_FIQ
async_common:
    mrs     r1, spsr
    sub     r2, lr, #4                      @ asynchronous: resume where the case was
    mov     r3, #0
    mov     r4, #0
    mov     r5, #RESUME_AT_R6
    mov     r6, r2
    b       common

unused_entry:
    @ Cannot happen at PL1; end the job rather than loop.
    save_case
    mrs     r1, spsr
    mov     r11, #DONE_RUNTIME_FAULT
    b       finish

@ ---- common handler ------------------------------------------------------------------------
@ In the exception's mode, sp = the frame; r0-r6 as above.
common:
    @ r11 = the SPSR as read, for the record. An SPSR with no valid mode cannot come from an
    @ exception entry (it copies CPSR; modes at Non-secure PL1: Arm ARM G1.9.1); QEMU TCG
    @ gives one after an ERET from AArch64 EL2 into an AArch32 mode, the way KVM and the
    @ refhyp deliver an injected abort (README "What the default run finds"). Record it with
    @ FLAG_BAD_SPSR and resume the case with its entry CPSR, as the prologue built it.
    mov     r11, r1
    and     r7, r1, #0x1f
    mov     r8, #0
    cmp     r7, #M_USR
    cmpne   r7, #M_FIQ
    cmpne   r7, #M_IRQ
    cmpne   r7, #M_SVC
    cmpne   r7, #M_ABT
    cmpne   r7, #M_UND
    cmpne   r7, #M_SYS
    beq     3f
    mov32   r9, PARAMS_BASE
    ldr     r10, [r9, #P_EL0]
    cmp     r10, #0
    movweq  r1, #(PSR_AIF | M_SYS)
    movwne  r1, #(PSR_AIF | M_USR)
    ldr     r10, [r9, #P_ENTRY]
    tst     r10, #1
    orrne   r1, r1, #PSR_T
    msr     spsr_cxsf, r1                   @ MOVS PC, LR below returns with it
    mov     r8, #FLAG_BAD_SPSR
3:  @ r8 |= record flags: from USR, from SYS (the case at EL1), or from the runtime.
    and     r7, r1, #0x1f
    cmp     r7, #M_USR
    orreq   r8, r8, #FLAG_FROM_EL0
    cmpne   r7, #M_SYS
    orrne   r8, r8, #FLAG_RUNTIME
    @ The end marker is not an event: it runs the epilogue.
    cmp     r0, #VEC_A32_SVC
    bne     1f
    tst     r8, #FLAG_RUNTIME
    bne     1f
    mov32   r9, PARAMS_BASE
    ldr     r9, [r9, #P_END_MARKER]
    cmp     r2, r9
    moveq   r11, #DONE_OK
    beq     finish
1:  @ Record the exception. r9 = report page, r10 = its index.
    mov32   r9, REPORT_BASE
    ldr     r10, [r9, #R_N]
    cmp     r10, #MAX_EXCEPTIONS
    movhs   r11, #DONE_EXCEPTION_LIMIT
    bhs     finish                          @ never write past the records (cannot happen)
    mov     r7, #EXC_SIZE
    mla     r7, r10, r7, r9
    add     r7, r7, #R_EXC
    mov     r12, #0                         @ high words of the u64 fields
    str     r0, [r7, #REC_VECTOR]
    str     r8, [r7, #REC_FLAGS]
    str     r3, [r7, #REC_SYNDROME]
    str     r12, [r7, #(REC_SYNDROME + 4)]
    str     r4, [r7, #REC_FAR]
    str     r12, [r7, #(REC_FAR + 4)]
    str     r2, [r7, #REC_PC]
    str     r12, [r7, #(REC_PC + 4)]
    str     r11, [r7, #REC_SPSR]
    str     r12, [r7, #(REC_SPSR + 4)]
    add     r12, r10, #1
    str     r12, [r9, #R_N]
    dsb     sy                              @ the record is in memory before the exit
    mov32   r9, HARNESS_MMIO
    str     r10, [r9, #H_EVENT]             @ plain 32-bit STR: ISV=1 for KVM and the refhyp
    tst     r8, #FLAG_RUNTIME
    movne   r11, #DONE_RUNTIME_FAULT
    bne     finish
    mov32   r9, PARAMS_BASE
    ldr     r7, [r9, #P_MAX_EXCEPTIONS]
    cmp     r12, r7
    movhs   r11, #DONE_EXCEPTION_LIMIT
    bhs     finish
    ldr     r7, [r9, #P_ON_EXCEPTION]
    cmp     r7, #0
    movne   r11, #DONE_END_ON_EXCEPTION
    bne     finish
    @ Resume address.
    cmp     r5, #RESUME_AT_R6
    beq     2f
    tst     r1, #PSR_T
    addeq   r6, r2, #4
    beq     2f
    @ T32: 32-bit if the first halfword starts 0b11101/0b11110/0b11111 (Arm ARM F3.1).
    ldrh    r7, [r2]
    lsr     r7, r7, #11
    cmp     r7, #0x1d
    addhs   r6, r2, #4
    addlo   r6, r2, #2
2:  mov     lr, r6
    @ Restore the USR/SYS bank (F5.1.85 "LDM (User registers)"), then return: MOVS PC, LR
    @ copies SPSR to CPSR, so the case gets its mode and T bit back (F5.1.241 "SUBS PC, LR").
    ldmia   sp, {r0-r14}^
    nop
    add     sp, sp, #FRAME
    movs    pc, lr

@ ---- epilogue ------------------------------------------------------------------------------
@ In: r11 = status, r1 = the case's CPSR (SPSR of this mode), sp = the frame.
finish:
    mov32   r9, REPORT_BASE
    add     r7, r9, #R_GPRS
    mov     r12, #0
    mov     r8, #0
1:  ldr     r10, [sp, r8, lsl #2]
    str     r10, [r7], #4
    str     r12, [r7], #4
    add     r8, r8, #1
    cmp     r8, #15
    blo     1b
    str     r1, [r7], #4                    @ slot 15: the case's CPSR
    str     r12, [r7]
    @ The case's CPACR and FPEXC go into the report before the runtime enables FP to read
    @ FPSCR and D0-D31.
    mrc     p15, 0, r10, c1, c0, 2
    str     r10, [r9, #R_CPACR]
    str     r12, [r9, #(R_CPACR + 4)]
    orr     r10, r10, #CPACR_FP_ON
    bic     r10, r10, #CPACR_D32DIS_ASEDIS
    mcr     p15, 0, r10, c1, c0, 2
    isb
    vmrs    r10, fpexc
    str     r10, [r9, #R_FPSR_OR_FPEXC]
    str     r12, [r9, #(R_FPSR_OR_FPEXC + 4)]
    mov     r10, #FPEXC_EN                  @ EN only: EX/DEX from the case could trap VMRS
    vmsr    fpexc, r10
    isb
    vmrs    r10, fpscr
    str     r10, [r9, #R_FPCR_OR_FPSCR]
    str     r12, [r9, #(R_FPCR_OR_FPSCR + 4)]
    mrc     p15, 0, r10, c1, c0, 0
    str     r10, [r9, #R_SCTLR]
    str     r12, [r9, #(R_SCTLR + 4)]
    add     r7, r9, #R_VREGS
    vstmia  r7!, {d0-d15}
    vstmia  r7, {d16-d31}
    mov32   r10, REPORT_MAGIC
    str     r10, [r9, #R_MAGIC]
    str     r12, [r9, #(R_MAGIC + 4)]
    str     r11, [r9, #R_STATUS]
    dsb     sy
done:
    mov32   r9, HARNESS_MMIO
    str     r11, [r9, #H_DONE]
    @ The backend stops the vCPU on DONE; never run past it.
2:  wfi
    b       2b

@ ---- prologue ------------------------------------------------------------------------------
prologue:
    cpsid   aif
    @ A stack for every exception mode, in the runtime's stack area (2 KiB each).
    cps     #M_ABT
    mov32   sp, (STACK_BASE + STACK_SIZE - 0x800)
    cps     #M_UND
    mov32   sp, (STACK_BASE + STACK_SIZE - 0x1000)
    cps     #M_IRQ
    mov32   sp, (STACK_BASE + STACK_SIZE - 0x1800)
    cps     #M_FIQ
    mov32   sp, (STACK_BASE + STACK_SIZE - 0x2000)
    cps     #M_SVC
    mov32   sp, (STACK_BASE + STACK_SIZE)

    mov32   r11, DONE_BAD_PARAMS
    mov32   r8, PARAMS_BASE
    ldr     r0, [r8, #P_MAGIC]
    ldr     r1, [r8, #(P_MAGIC + 4)]
    mov32   r2, PARAMS_MAGIC_LO
    mov32   r3, PARAMS_MAGIC_HI
    cmp     r0, r2
    cmpeq   r1, r3
    bne     done
    @ Magic first: a report page with it shows the runtime started and its count is valid.
    mov32   r9, REPORT_BASE
    mov32   r0, REPORT_MAGIC
    mov     r1, #0
    str     r0, [r9, #R_MAGIC]
    str     r1, [r9, #(R_MAGIC + 4)]
    str     r1, [r9, #R_N]

    mov32   r0, RUNTIME_A32_BASE
    mcr     p15, 0, r0, c12, c0, 0          @ VBAR (SCTLR.V is 0: vectors at VBAR)
    ldr     r0, [r8, #P_MAIR]
    mcr     p15, 0, r0, c10, c2, 0          @ MAIR0: Attr0..3
    ldr     r0, [r8, #(P_MAIR + 4)]
    mcr     p15, 0, r0, c10, c2, 1          @ MAIR1: Attr4..7
    ldr     r0, [r8, #P_TCR]
    mcr     p15, 0, r0, c2, c0, 2           @ TTBCR (EAE=1: long descriptors)
    ldr     r0, [r8, #P_TTBR0]
    ldr     r1, [r8, #(P_TTBR0 + 4)]
    mcrr    p15, 0, r0, r1, c2              @ TTBR0, 64-bit with LPAE
    isb
    @ The backend may reuse the VM for the previous job: drop its TLB entries before the MMU
    @ goes on, and the I-cache since the host rewrote code.
    mov     r0, #0
    dsb     sy
    mcr     p15, 0, r0, c8, c7, 0           @ TLBIALL
    mcr     p15, 0, r0, c7, c5, 0           @ ICIALLU
    dsb     sy
    isb
    ldr     r0, [r8, #P_SCTLR]
    mcr     p15, 0, r0, c1, c0, 0           @ SCTLR
    isb
    @ PL0 counter/timer access off (CNTKCTL resets to an UNKNOWN value, and KVM gives 0).
    mov     r0, #0
    mcr     p15, 0, r0, c14, c1, 0          @ CNTKCTL

    @ FP/SIMD on while the runtime loads D0-D31 and FPSCR.
    mov32   r0, CPACR_FP_ON
    mcr     p15, 0, r0, c1, c0, 2
    isb
    mov     r0, #FPEXC_EN
    vmsr    fpexc, r0
    isb
    add     r1, r8, #P_VREGS
    vldmia  r1!, {d0-d15}
    vldmia  r1, {d16-d31}
    ldr     r0, [r8, #P_FPSCR]
    vmsr    fpscr, r0
    @ Then the case's FPEXC (needs CPACR access, so before CPACR), then its CPACR.
    ldr     r0, [r8, #P_FPEXC]
    vmsr    fpexc, r0
    ldr     r0, [r8, #P_CPACR]
    mcr     p15, 0, r0, c1, c0, 2
    isb

    @ The case's CPSR: SYS or USR, T for T32 (entry bit 0), A/I/F masked.
    ldr     r0, [r8, #P_ENTRY]
    ldr     r1, [r8, #P_EL0]
    cmp     r1, #0
    movweq  r2, #(PSR_AIF | M_SYS)
    movwne  r2, #(PSR_AIF | M_USR)
    tst     r0, #1
    orrne   r2, r2, #PSR_T
    bic     lr, r0, #1
    msr     spsr_cxsf, r2
    @ The case's r0-r14: the low words of the 64-bit slots, gathered on the SVC stack.
    sub     sp, sp, #FRAME
    add     r1, r8, #P_GPRS
    mov     r2, #0
1:  ldr     r3, [r1, r2, lsl #3]
    str     r3, [sp, r2, lsl #2]
    add     r2, r2, #1
    cmp     r2, #15
    blo     1b
    ldmia   sp, {r0-r14}^
    nop
    add     sp, sp, #FRAME
    @ To the case: CPSR from SPSR_svc, PC from LR_svc (G1.13 "Exception return").
    movs    pc, lr
