//! The PL011 UART of QEMU virt (ARM DDI 0183 "PrimeCell UART (PL011)"): the harness channel.
//! Waiting for input sleeps in WFI on the UART's receive interrupt instead of spinning on
//! the flag register, so an idle refhyp costs the host no CPU.

use core::ptr::{read_volatile, write_volatile};

const BASE: usize = 0x0900_0000;
const DR: usize = 0x000;
const FR: usize = 0x018;
const LCR_H: usize = 0x02c;
const CR: usize = 0x030;
const IMSC: usize = 0x038;
const ICR: usize = 0x044;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
/// Receive and receive-timeout interrupts.
const INT_RX: u32 = (1 << 4) | (1 << 6);

fn reg(off: usize) -> *mut u32 {
    (BASE + off) as *mut u32
}

fn rd(off: usize) -> u32 {
    // SAFETY: BASE is the PL011's MMIO frame on QEMU virt, mapped Device by `mmu::enable`;
    // reading these registers has no effect beyond the UART.
    unsafe { read_volatile(reg(off)) }
}

fn wr(off: usize, v: u32) {
    // SAFETY: as in `rd`; the refhyp is the UART's only user.
    unsafe { write_volatile(reg(off), v) }
}

pub fn init() {
    wr(CR, 0);
    // 8 bits, FIFOs on (QEMU raises the receive interrupt as soon as the FIFO is not empty).
    wr(LCR_H, (3 << 5) | (1 << 4));
    wr(IMSC, 0);
    wr(ICR, 0x7ff);
    // UARTEN, TXE, RXE.
    wr(CR, (1 << 0) | (1 << 8) | (1 << 9));
}

pub fn write(bytes: &[u8]) {
    for &b in bytes {
        while rd(FR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        wr(DR, u32::from(b));
    }
}

/// The next received byte; sleeps until one arrives.
pub fn getc() -> u8 {
    loop {
        if rd(FR) & FR_RXFE == 0 {
            return rd(DR) as u8;
        }
        // Unmask the receive interrupt only while sleeping, so it never fires while a guest
        // runs (it would be taken to EL2 with HCR_EL2.IMO set and steal the guest's time).
        wr(IMSC, INT_RX);
        super::gic::set_spi_enabled(super::gic::INTID_UART, true);
        if rd(FR) & FR_RXFE != 0 {
            // SAFETY: WFI only waits; PSTATE.I is set at EL2 so nothing is taken, the pending
            // UART interrupt merely wakes the CPU.
            unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
        }
        super::gic::set_spi_enabled(super::gic::INTID_UART, false);
        wr(IMSC, 0);
    }
}
