// Standalone reproducer: an ERET from AArch64 EL2 into an AArch32 EL1 mode that has an SPSR
// (Abort here) must leave in that mode's SPSR what EL2 wrote to the AArch64 SPSR_abt: the
// two are architecturally mapped (Arm ARM C5.2 "SPSR_abt", Configurations). This is how KVM
// (arch/arm64/kvm/hyp/exception.c, enter_exception32) and the refhyp deliver an abort they
// inject into an AArch32 guest. Run under QEMU (src/repro_eret_spsr.rs has the command line):
//   qemu-system-aarch64 -M virt,virtualization=on -cpu max -nographic \
//       -device loader,file=repro-eret-spsr.elf,cpu-num=0
// It prints one line, then idles:
//   "R <SPSR_abt written at EL2> <SPSR read by MRS in Abort mode> <SPSR_abt read back at EL2>"
// (each as 16 hex digits)
// A correct CPU prints the first value three times.

    .include "el2-stub.inc"
    .arch armv8-a
    .text
    // NZCV = 0b0110, A/I/F masked, SYS mode: a CPSR an abort entry from SYS could save.
    .equ SPSR_WRITTEN, 0x600001df
    // SPSR_EL2 for the ERET: AArch32 (M[4] = 1), Abort mode, A/I/F masked, A32.
    .equ SPSR_EL2_ABT, 0x1d7


    .global _start
_start:
    mov32   x0, 0x40600000
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el2, x0
    msr     hcr_el2, xzr                    // RW = 0: EL1 is AArch32; no stage 2, no traps
    mov     x0, #0x33ff                     // CPTR_EL2: RES1 bits, no traps
    msr     cptr_el2, x0
    msr     hstr_el2, xzr
    mov32   x0, 0x00c50838                  // SCTLR: RES1 bits, MMU and caches off
    msr     sctlr_el1, x0
    mov32   x0, SPSR_WRITTEN
    msr     spsr_abt, x0
    mov     x0, #SPSR_EL2_ABT
    msr     spsr_el2, x0
    adr     x0, a32
    msr     elr_el2, x0
    isb
    eret

    // AArch32, Abort mode (A32 encodings: this file is assembled for AArch64).
    .balign 4
a32:
    .word   0xe14f0000                      // mrs r0, spsr
    .word   0xe1400070                      // hvc #0 -> EL2, lower-EL AArch32 vector

    .balign 0x800
vectors:
    .rept 12
    .balign 0x80
    b       halt
    .endr
    .balign 0x80                            // 0x600: synchronous, lower EL, AArch32
    mov     x19, x0                         // r0 of the guest: what MRS SPSR read
    mov     w0, #'R'
    bl      putc
    mov32   x0, SPSR_WRITTEN
    bl      puthex_sp
    mov     x0, x19
    bl      puthex_sp
    mrs     x0, spsr_abt
    bl      puthex_sp
    mov     w0, #'\n'
    bl      putc
halt:
    wfi
    b       halt

    uart_routines
