//! Instruction classification: which rule applies to an instruction word. The decoders look
//! at the encoding fields the Arm ARM's decode tables (C4.1 for A64, F4/F3 for A32/T32) name;
//! Capstone (`capstone_check`) cross-checks that nothing with a memory operand slips through
//! unclassified.

pub mod a32;
pub mod a64;
pub mod capstone_check;

use crate::rules::cmo::CmoKind;
use crate::rules::fpsimd::A32FpAccess;
use crate::rules::syndrome::{LsSyndrome, MemClass};

/// A load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOp {
    pub class: MemClass,
    pub load: bool,
    pub store: bool,
    /// Bytes of each single access (the alignment unit); 0 when it varies (structures).
    pub size: u8,
    /// The valid syndrome, when the class has one.
    pub syndrome: Option<LsSyndrome>,
    /// An FP/SIMD register is transferred: the FP enable checks apply (Some(advsimd)).
    pub fp: Option<bool>,
    /// The base register when the address is exactly `[Rn]` (exclusives, atomics, ordered).
    pub base: Option<u8>,
    /// LDTR/STTR/LDRT/STRT: checked with EL0 permissions.
    pub unpriv: bool,
}

/// A system register or coprocessor register the model tracks or must not take from Unicorn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysTarget {
    /// CPACR_EL1 / CPACR: the model keeps the guest's value.
    Cpacr,
    /// AArch32 FPEXC (VMRS/VMSR).
    Fpexc,
    /// FPCR/FPSR or FPSCR: FP-enabled state, Unicorn keeps the value.
    FpStatus,
    /// CTR_EL0 / CTR: IMPLEMENTATION DEFINED cache geometry (EL0 access needs SCTLR_EL1.UCT).
    Ctr,
    /// DCZID_EL0: IMPLEMENTATION DEFINED block size.
    Dczid,
    /// MIDR, ID registers, FPSID/MVFRx: IMPLEMENTATION DEFINED identification.
    Id,
    /// Any other EL1 system register.
    El1Other,
    /// Registers EL0 may use (NZCV, TPIDR_EL0, DAIF when UMA, ...).
    El0Other,
}

/// What kind of rule an instruction falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// SVC #imm (the runtime's end marker is recognised by address, not here).
    Svc {
        imm: u32,
    },
    /// BRK #imm (A64) / BKPT #imm (AArch32): a Breakpoint Instruction exception.
    Brk {
        imm: u32,
    },
    /// WFI: wait for an interrupt.
    Wfi,
    /// WFE: wait for an event (a hint unless trapped).
    Wfe,
    /// HVC: a hypervisor call.
    Hvc,
    /// SMC: a secure monitor call (trapped to the hypervisor by HCR_EL2.TSC).
    Smc,
    Mem(MemOp),
    /// Cache maintenance or DC ZVA by VA in register `reg`.
    Cmo {
        kind: CmoKind,
        reg: u8,
    },
    /// Cache maintenance by set/way or for the whole cache: EL1 only, never faults.
    CmoNoAddress,
    /// FP/SIMD data processing or register moves (not memory).
    Fp {
        advsimd: bool,
        access: A32FpAccess,
    },
    /// Read of a system register into `rt`.
    SysRead {
        target: SysTarget,
        rt: u8,
    },
    /// Write of a system register from `rt`.
    SysWrite {
        target: SysTarget,
        rt: u8,
    },
    /// An instruction that is UNDEFINED at EL0 (EL1-only system instructions, MCR/MRC to
    /// CP15 from USR mode, ...).
    Privileged,
    /// UNDEFINED everywhere (unallocated or permanently undefined encodings).
    Undefined,
    /// Anything else: Unicorn executes it.
    Other,
}
