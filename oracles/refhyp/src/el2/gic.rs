//! GICv3 (Arm IHI 0069): just enough to receive two interrupts at EL2 — the EL2 physical
//! timer's PPI (the watchdog, INTID 26 on QEMU virt) and the UART's SPI (INTID 33, used to
//! wake from WFI). Single security state: QEMU's GIC without EL3 has GICD_CTLR.DS = 1.

use core::ptr::{read_volatile, write_volatile};

const GICD: usize = 0x0800_0000;
const GICR: usize = 0x080a_0000;
const GICR_SGI: usize = GICR + 0x1_0000;

pub const INTID_HYP_TIMER: u32 = 26;
pub const INTID_UART: u32 = 33;

fn rd(addr: usize) -> u32 {
    // SAFETY: addresses are GIC registers of QEMU virt's memory map, mapped Device.
    unsafe { read_volatile(addr as *const u32) }
}
fn wr(addr: usize, v: u32) {
    // SAFETY: as in `rd`; the refhyp is the GIC's only user.
    unsafe { write_volatile(addr as *mut u32, v) }
}
fn wr8(addr: usize, v: u8) {
    // SAFETY: as in `rd`; GICD/GICR_IPRIORITYR are byte-accessible.
    unsafe { write_volatile(addr as *mut u8, v) }
}

pub fn init() {
    // Distributor: affinity routing, group 1 enabled (ARE [4], EnableGrp1 [1]); wait for RWP.
    wr(GICD, (1 << 4) | (1 << 1));
    while rd(GICD) & (1 << 31) != 0 {}
    // Redistributor: wake it (GICR_WAKER.ProcessorSleep), wait for ChildrenAsleep to clear.
    wr(GICR + 0x14, rd(GICR + 0x14) & !(1 << 1));
    while rd(GICR + 0x14) & (1 << 2) != 0 {}
    // The timer PPI: group 1, priority 0x80, enabled.
    wr(GICR_SGI + 0x80, rd(GICR_SGI + 0x80) | (1 << INTID_HYP_TIMER));
    wr8(GICR_SGI + 0x400 + INTID_HYP_TIMER as usize, 0x80);
    wr(GICR_SGI + 0x100, 1 << INTID_HYP_TIMER);
    // The UART SPI (woken on while waiting for input).
    setup_spi(INTID_UART);
    // CPU interface: system-register access at EL2 and below (ICC_SRE_EL2.SRE | Enable),
    // every priority unmasked, group 1 on.
    write_sysreg!("icc_sre_el2", 0b1001);
    // SAFETY: ISB only synchronises context.
    unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
    write_sysreg!("icc_pmr_el1", 0xff);
    write_sysreg!("icc_bpr1_el1", 0);
    write_sysreg!("icc_igrpen1_el1", 1);
    // SAFETY: as above.
    unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
}

/// Acknowledge the highest-priority pending interrupt and signal its end; its INTID, or
/// None if there was none (1023, spurious).
pub fn ack() -> Option<u32> {
    let iar = read_sysreg!("icc_iar1_el1") as u32 & 0xff_ffff;
    if iar >= 1020 {
        return None;
    }
    write_sysreg!("icc_eoir1_el1", u64::from(iar));
    Some(iar)
}

/// Make SPI `intid` group 1, priority 0x80, routed to this CPU (affinity 0), disabled.
pub fn setup_spi(intid: u32) {
    let n = intid as usize;
    wr(GICD + 0x80 + 4 * (n / 32), rd(GICD + 0x80 + 4 * (n / 32)) | (1 << (n % 32)));
    wr8(GICD + 0x400 + n, 0x80);
    // SAFETY: GICD_IROUTER<n> is a 64-bit register of the distributor.
    unsafe { write_volatile((GICD + 0x6000 + 8 * n) as *mut u64, 0) };
    set_spi_enabled(intid, false);
}

/// GICD_ISENABLER / GICD_ICENABLER for an SPI. The channel's interrupts are enabled only
/// while the refhyp sleeps waiting for input, so they never interrupt a guest.
pub fn set_spi_enabled(intid: u32, on: bool) {
    let n = intid as usize;
    let reg = if on { 0x100 } else { 0x180 };
    wr(GICD + reg + 4 * (n / 32), 1 << (n % 32));
    if !on {
        // GICD_CTLR.RWP: wait until the disable has taken effect.
        while rd(GICD) & (1 << 31) != 0 {}
    }
}
