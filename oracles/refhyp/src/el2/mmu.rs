//! The EL2 stage-1 translation regime: an identity map of the low 4 GiB in 1 GiB blocks,
//! device memory below 1 GiB (GIC, UART), normal write-back memory above (RAM). With the
//! MMU off every access would be Device-nGnRnE, where unaligned accesses fault and nothing
//! is cached (Arm ARM "Behavior when stage 1 address translation is disabled").

use refhyp::stage2::Table;

#[link_section = ".bss"]
static mut EL2_L1: Table = Table::ZERO;

const BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
/// MAIR_EL2: Attr0 Device-nGnRE, Attr1 Normal write-back.
const MAIR: u64 = 0x04 | (0xff << 8);
const XN: u64 = 1 << 54;

/// # Safety
/// Call once, at boot, before anything depends on memory attributes.
pub unsafe fn enable() {
    let l1 = &raw mut EL2_L1;
    // SAFETY: boot is single-threaded and nothing else references EL2_L1.
    let t = unsafe { &mut *l1 };
    t.0[0] = BLOCK | AF | XN; // 0-1 GiB: Device (AttrIndx 0)
    for i in 1..4u64 {
        t.0[i as usize] = (i << 30) | BLOCK | AF | SH_INNER | (1 << 2); // Normal (AttrIndx 1)
    }
    // TCR_EL2: T0SZ = 32 (4 GiB), inner/outer WB cacheable walks, inner shareable, 4KB,
    // PS = 36 bits; bits 31 and 23 are RES1.
    let tcr = 32 | (1 << 8) | (1 << 10) | (3 << 12) | (0b001 << 16) | (1 << 23) | (1 << 31);
    write_sysreg!("mair_el2", MAIR);
    write_sysreg!("tcr_el2", tcr);
    write_sysreg!("ttbr0_el2", l1 as u64);
    // SAFETY: TLB and barrier maintenance before turning the MMU on.
    unsafe { core::arch::asm!("dsb ish", "tlbi alle2", "dsb ish", "isb", options(nostack)) };
    // SCTLR_EL2 (E2H = 0): RES1 bits, M, C, SA, I.
    let sctlr = 0x30c5_0830u64 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);
    write_sysreg!("sctlr_el2", sctlr);
    // SAFETY: synchronise the new translation regime.
    unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
}
