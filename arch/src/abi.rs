//! The guest runtime's ABI: where it lives in the guest's IPA space, how the harness hands it
//! a case's parameters, and the report page it fills in. The runtime (guest-payloads), the
//! harness's lowering and decoding, the refhyp and the agent all read these constants.
//!
//! ```text
//!   0x1000_0000  RUNTIME_BASE   runtime code: A64 (and A32 at +0x8000)           (64 KiB, RX)
//!   0x1001_0000  PARAMS_BASE    case parameters written by the harness           (4 KiB, RW)
//!   0x1001_1000  STACK_BASE     runtime stacks                                   (16 KiB, RW)
//!   0x1002_0000  REPORT_BASE    report page: exceptions and final state          (4 KiB, RW)
//!   0x1003_0000  TABLES_BASE    stage-1 translation tables built by the harness  (256 KiB)
//!   0x1fff_f000  HARNESS_MMIO   no memory: a store is an exit (KVM) / S2 fault (refhyp)
//!   [0x1000_0000, 0x1007_0000)  RUNTIME_SLOT: one RAM slot covering all of the above
//!   [0x1000_0000, 0x2000_0000)  reserved: no case region may overlap it
//! ```
//! Protocol: the runtime records exception N in the report page, then stores N to
//! `HARNESS_MMIO + EVENT`; at the end it fills in the final state and stores a status to
//! `HARNESS_MMIO + DONE`. The backend stops the vCPU on DONE and returns the report page, so
//! exceptions keep their place in the ordered event stream among the VMM exits.

use crate::case::Isa;

pub const RESERVED_BASE: u64 = 0x1000_0000;
pub const RESERVED_END: u64 = 0x2000_0000;
pub const RUNTIME_BASE: u64 = 0x1000_0000;
pub const RUNTIME_SIZE: u64 = 0x1_0000;
/// The A64 runtime starts at RUNTIME_BASE, the AArch32 (A32) runtime here; both are loaded
/// once (`wire::HostMsg::SetRuntime`) and the job's entry picks one.
pub const RUNTIME_A32_BASE: u64 = 0x1000_8000;
pub const PARAMS_BASE: u64 = 0x1001_0000;
pub const PARAMS_SIZE: u64 = 0x1000;
pub const STACK_BASE: u64 = 0x1001_1000;
pub const STACK_SIZE: u64 = 0x4000;
pub const REPORT_BASE: u64 = 0x1002_0000;
pub const REPORT_SIZE: u64 = 0x1000;
pub const TABLES_BASE: u64 = 0x1003_0000;
pub const TABLES_SIZE: u64 = 0x4_0000;
pub const HARNESS_MMIO: u64 = 0x1fff_f000;
/// The runtime's own memory, one RAM slot every backend maps before the job's slots.
pub const RUNTIME_SLOT_BASE: u64 = RESERVED_BASE;
pub const RUNTIME_SLOT_SIZE: u64 = TABLES_BASE + TABLES_SIZE - RESERVED_BASE;

/// Offsets in the harness MMIO page.
pub const EVENT: u64 = 0x00;
pub const DONE: u64 = 0x08;

/// Status values stored to DONE.
pub const DONE_OK: u32 = 0;
pub const DONE_EXCEPTION_LIMIT: u32 = 1;
pub const DONE_END_ON_EXCEPTION: u32 = 2;
/// The runtime itself took an exception (its last record has `report::FLAG_RUNTIME`): a bug in
/// the runtime, its tables or the backend, never a verdict on the case.
pub const DONE_RUNTIME_FAULT: u32 = 3;
/// The parameter block's magic was wrong: the job's parameter segment did not arrive.
pub const DONE_BAD_PARAMS: u32 = 4;

/// Exceptions the report page holds.
pub const MAX_EXCEPTIONS: usize = 16;
/// Largest memory window a case may observe.
pub const MAX_WINDOW: u32 = 256;

/// The SVC immediate of the end marker the harness places right after the case's code.
pub const END_SVC_IMM: u32 = 0x7d;

/// The end marker: an SVC the runtime recognises by its address.
pub fn code_trailer(isa: Isa) -> alloc::vec::Vec<u8> {
    match isa {
        // svc #0x7d
        Isa::A64 => (0xd400_0001 | (END_SVC_IMM << 5)).to_le_bytes().to_vec(),
        // svc #0x7d (cond AL)
        Isa::A32 => (0xef00_0000 | END_SVC_IMM).to_le_bytes().to_vec(),
        // svc #0x7d
        Isa::T32 => ((0xdf00 | END_SVC_IMM) as u16).to_le_bytes().to_vec(),
    }
}

pub fn code_trailer_size(isa: Isa) -> u64 {
    if isa == Isa::T32 {
        2
    } else {
        4
    }
}

/// Parameter block at PARAMS_BASE (all fields u64, little-endian), written by the harness.
pub mod params {
    pub const MAGIC: u64 = 0x5444_5041_5241_4d53; // "TDPARAMS"
    pub const OFF_MAGIC: u64 = 0x000;
    /// Case entry address (bit 0 set for T32).
    pub const OFF_ENTRY: u64 = 0x008;
    /// 0: EL1, 1: EL0.
    pub const OFF_EL0: u64 = 0x010;
    /// SCTLR value for the case (A64 SCTLR_EL1 or AArch32 SCTLR).
    pub const OFF_SCTLR: u64 = 0x018;
    pub const OFF_TCR: u64 = 0x020;
    pub const OFF_TTBR0: u64 = 0x028;
    pub const OFF_MAIR: u64 = 0x030;
    pub const OFF_CPACR: u64 = 0x038;
    pub const OFF_FPEXC: u64 = 0x040;
    /// AArch32 FPSCR or A64 FPCR.
    pub const OFF_FPSCR: u64 = 0x048;
    /// 0: skip the faulting instruction, 1: end the case.
    pub const OFF_ON_EXCEPTION: u64 = 0x050;
    pub const OFF_MAX_EXCEPTIONS: u64 = 0x058;
    /// Address of the end-marker SVC.
    pub const OFF_END_MARKER: u64 = 0x060;
    /// Initial general-purpose registers: 32 slots (x0..x30, sp / r0..r14).
    pub const OFF_GPRS: u64 = 0x100;
    /// Initial V/Q registers: 32 x 16 bytes.
    pub const OFF_VREGS: u64 = 0x200;
}

/// Report page at REPORT_BASE (little-endian), filled in by the runtime.
pub mod report {
    pub const MAGIC: u32 = 0x5052_4454; // "TDRP"
    pub const OFF_MAGIC: u64 = 0x000;
    pub const OFF_N_EXCEPTIONS: u64 = 0x008;
    pub const OFF_STATUS: u64 = 0x00c;
    /// Final general-purpose registers, 32 x u64 (x0..x30, sp / r0..r14, slot 15: CPSR).
    pub const OFF_GPRS: u64 = 0x040;
    /// FPCR, FPSR (A64) / FPSCR, FPEXC (AArch32), then CPACR, SCTLR, each u64.
    pub const OFF_FPCR_OR_FPSCR: u64 = 0x140;
    pub const OFF_FPSR_OR_FPEXC: u64 = 0x148;
    pub const OFF_CPACR: u64 = 0x150;
    pub const OFF_SCTLR: u64 = 0x158;
    /// Final V/Q registers: 32 x 16 bytes.
    pub const OFF_VREGS: u64 = 0x180;
    /// Exception records.
    pub const OFF_EXCEPTIONS: u64 = 0x380;
    pub const EXCEPTION_SIZE: u64 = 40;
    /// Record fields: vector (u32: see `vector`), flags (u32: bit 0 from EL0/USR),
    /// syndrome (u64: ESR_EL1 or DFSR/IFSR), far (u64), pc (u64), spsr (u64).
    pub const REC_VECTOR: u64 = 0;
    pub const REC_FLAGS: u64 = 4;
    pub const REC_SYNDROME: u64 = 8;
    pub const REC_FAR: u64 = 16;
    pub const REC_PC: u64 = 24;
    pub const REC_SPSR: u64 = 32;
    /// Record flag: taken from EL0 (A64 lower-EL vector) / USR mode.
    pub const FLAG_FROM_EL0: u32 = 1 << 0;
    /// Record flag: taken from the runtime itself (A64 current-EL-SPx or lower-EL-AArch32
    /// vector; AArch32 from a mode other than USR/SYS).
    pub const FLAG_RUNTIME: u32 = 1 << 1;
    /// Record flag (AArch32): the exception mode's SPSR held no valid mode on entry, which no
    /// exception entry can write (it copies CPSR, whose M field is always a valid mode: Arm
    /// ARM G1.9.1; and the AArch64 SPSR_abt/SPSR_und a hypervisor writes when it injects are
    /// architecturally mapped to AArch32 SPSR_abt/SPSR_und: Arm ARM C5.2 "SPSR_abt",
    /// "SPSR_und", Configurations). The runtime recorded
    /// the SPSR as read and resumed the case with its entry CPSR (NZCV, GE, IT cleared).
    pub const FLAG_BAD_SPSR: u32 = 1 << 2;
    /// Bytes of the page the backends read back.
    pub const USED: u64 = OFF_EXCEPTIONS + EXCEPTION_SIZE * super::MAX_EXCEPTIONS as u64;
}

/// Vector ids in exception records.
pub mod vector {
    pub const A64_SYNC: u32 = 0;
    pub const A64_IRQ: u32 = 1;
    pub const A64_FIQ: u32 = 2;
    pub const A64_SERROR: u32 = 3;
    pub const A32_UNDEF: u32 = 0x11;
    pub const A32_SVC: u32 = 0x12;
    pub const A32_PABT: u32 = 0x13;
    pub const A32_DABT: u32 = 0x14;
    pub const A32_IRQ: u32 = 0x15;
    pub const A32_FIQ: u32 = 0x16;
}

const _: () = assert!(report::USED <= REPORT_SIZE);
