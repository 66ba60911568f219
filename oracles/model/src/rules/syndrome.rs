//! Data-abort syndromes: which load/store classes have a valid instruction syndrome (ISV)
//! and what it holds, and how a fault is reported to the guest (ESR_EL1, DFSR/IFSR) or to
//! the hypervisor (ESR_EL2).

use trapdiff_arch::esr::{fsr32, DataAbortIss, Ec, Esr, Fsc};

/// ISS[23:14] of a valid instruction syndrome (Arm ARM D24.2.41, ISS encoding for a Data
/// Abort: SAS, SSE, SRT, SF, AR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LsSyndrome {
    /// log2 of the access size in bytes.
    pub sas: u8,
    /// The load sign-extends.
    pub sse: bool,
    /// The register transferred (Rt).
    pub srt: u8,
    /// The register is 64 bits wide (A64 X register).
    pub sf: bool,
    /// Acquire/release semantics.
    pub ar: bool,
}

/// The load/store classes, each with the rule that says whether it has a valid syndrome.
///
/// Arm ARM D24.2.41 ISV: "ISV is 0 except for the following stage 2 aborts: AArch64 loads and
/// stores of a single general-purpose register (including the register specified with 0b11111,
/// including those with Acquire/Release semantics, but excluding Load Exclusive or Store
/// Exclusive and excluding those with writeback); AArch32 instructions where the instruction is
/// an LDR, LDA, LDRT, LDRSH, LDRSHT, LDRH, LDAH, LDRHT, LDRSB, LDRSBT, LDRB, LDAB, LDRBT, STR,
/// STL, STRT, STRH, STLH, STRHT, STRB, STLB, or STRBT, is not performing register writeback,
/// and is not using R15 as a source or destination register."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemClass {
    /// A64 LDR/STR (immediate unsigned offset, unscaled, register offset, literal, LDTR/STTR)
    /// of one general-purpose register: ISV = 1.
    A64GprSingle,
    /// A64 LDAR/STLR/LDLAR/STLLR/LDAPR/LDAPUR/STLUR: single register with acquire/release:
    /// ISV = 1, AR = 1.
    A64GprOrdered,
    /// A64 pre-/post-index writeback forms: ISV = 0.
    A64GprWriteback,
    /// A64 LDP/STP/LDNP/STNP/LDPSW (any addressing): ISV = 0 (two registers).
    A64Pair,
    /// A64 SIMD&FP LDR/STR/LDP/STP/literal: ISV = 0 (not a general-purpose register).
    A64SimdFp,
    /// A64 LD1..LD4/ST1..ST4 and LDnR, multiple or single structures: ISV = 0.
    A64SimdStruct,
    /// A64 LDXR/STXR/LDAXR/STLXR and the pair forms: ISV = 0 (exclusives are excluded).
    A64Exclusive,
    /// A64 LSE atomics (LDADD.., SWP, CAS, CASP): ISV = 0 (not a single load or store).
    A64Atomic,
    /// A32/T32 LDR/STR/LDRB/STRB/LDRH/STRH/LDRSB/LDRSH (and T forms) without writeback,
    /// Rt != R15: ISV = 1.
    A32Single,
    /// A32/T32 LDA/STL/LDAB/STLB/LDAH/STLH: ISV = 1, AR = 1.
    A32Ordered,
    /// A32/T32 single loads/stores with writeback, or with Rt == R15: ISV = 0.
    A32SingleWriteback,
    /// A32/T32 LDRD/STRD: ISV = 0 (not in the list).
    A32Dual,
    /// A32/T32 LDM/STM/PUSH/POP: ISV = 0.
    A32Multiple,
    /// A32/T32 LDREX/STREX and LDAEX/STLEX families: ISV = 0.
    A32Exclusive,
    /// A32/T32 VLDR/VSTR/VLDM/VSTM/VLDn/VSTn: ISV = 0.
    A32Fp,
    /// A32/T32 TBB/TBH: ISV = 0 (a table branch, not in the list).
    A32TableBranch,
    /// An access the decoder does not classify (Capstone reports a memory operand): the model
    /// assumes no valid syndrome.
    Unclassified,
}

impl MemClass {
    pub fn has_syndrome(self) -> bool {
        matches!(self, MemClass::A64GprSingle | MemClass::A64GprOrdered | MemClass::A32Single | MemClass::A32Ordered)
    }
    /// Accesses that must be aligned whatever the memory type and SCTLR.A (ASL
    /// `AArch64.UnalignedAccessFaults` / `CheckAlignment`: exclusives, atomics and
    /// acquire/release accesses; FEAT_LSE2 relaxes the ordered ones only when SCTLR.nAA == 1,
    /// which the runtime leaves 0).
    pub fn needs_alignment(self) -> bool {
        matches!(self, MemClass::A64GprOrdered | MemClass::A64Exclusive | MemClass::A64Atomic | MemClass::A32Ordered | MemClass::A32Exclusive)
    }
    /// Exclusives and atomics: what they do on memory that is not Write-Back is
    /// IMPLEMENTATION DEFINED.
    pub fn needs_write_back(self) -> bool {
        matches!(self, MemClass::A64Exclusive | MemClass::A64Atomic | MemClass::A32Exclusive)
    }
}

/// ESR for a data abort taken to AArch64 EL1 on a stage-1 fault (ASL `AArch64.FaultSyndrome`
/// with `IsSecondStage(fault) == FALSE`: ISV = 0, so ISS[23:14] are RES0; CM and WnR as given).
pub fn a64_stage1_data_abort(from_el0: bool, il: bool, cm: bool, wnr: bool, fsc: Fsc) -> u64 {
    let ec = if from_el0 { Ec::DABT_LOW } else { Ec::DABT_CUR };
    let iss = if cm { DataAbortIss::CM } else { 0 } | if wnr { DataAbortIss::WNR } else { 0 } | u32::from(fsc.0);
    Esr::new(ec, il, iss).0
}

/// ESR for an instruction abort taken to AArch64 EL1 on a stage-1 fault (ISS: IFSC only).
pub fn a64_stage1_instruction_abort(from_el0: bool, fsc: Fsc) -> u64 {
    let ec = if from_el0 { Ec::IABT_LOW } else { Ec::IABT_CUR };
    Esr::new(ec, true, u32::from(fsc.0)).0
}

/// AArch32 DFSR in the long-descriptor format the runtime selects (Arm ARM G8.2.50 DFSR:
/// STATUS, LPAE, WnR, CM).
pub fn a32_dfsr(cm: bool, wnr: bool, fsc: Fsc) -> u64 {
    u64::from(fsr32::LPAE | if wnr { fsr32::WNR } else { 0 } | if cm { fsr32::CM } else { 0 } | u32::from(fsc.0))
}

/// AArch32 IFSR, long-descriptor format (Arm ARM G8.2.77 IFSR: STATUS, LPAE).
pub fn a32_ifsr(fsc: Fsc) -> u64 {
    u64::from(fsr32::LPAE | u32::from(fsc.0))
}

/// ISS of the stage-2 data abort the hypervisor sees (ASL `AArch64.FaultSyndrome` with
/// `IsSecondStage(fault)`: ISS[24:14] = `LSInstructionSyndrome()` when the class has one).
pub fn stage2_iss(syndrome: Option<LsSyndrome>, cm: bool, wnr: bool, fsc: Fsc) -> DataAbortIss {
    let base = match syndrome {
        Some(s) => DataAbortIss::with_syndrome(s.sas, s.sse, s.srt, s.sf, s.ar, wnr, fsc),
        None => DataAbortIss(if wnr { DataAbortIss::WNR } else { 0 } | u32::from(fsc.0)),
    };
    DataAbortIss(base.0 | if cm { DataAbortIss::CM } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_gpr_classes_have_a_syndrome() {
        use MemClass::*;
        for c in [A64GprSingle, A64GprOrdered, A32Single, A32Ordered] {
            assert!(c.has_syndrome(), "{c:?}");
        }
        for c in [
            A64GprWriteback,
            A64Pair,
            A64SimdFp,
            A64SimdStruct,
            A64Exclusive,
            A64Atomic,
            A32SingleWriteback,
            A32Dual,
            A32Multiple,
            A32Exclusive,
            A32Fp,
            A32TableBranch,
            Unclassified,
        ] {
            assert!(!c.has_syndrome(), "{c:?}");
        }
    }

    #[test]
    fn stage1_guest_esr_has_no_instruction_syndrome() {
        // STR to a read-only page at EL1: DABT_CUR, IL, WnR, permission fault level 3.
        assert_eq!(a64_stage1_data_abort(false, true, false, true, Fsc::permission(3)), 0x9600_004f);
        // DC CIVAC at EL0 on an unmapped page: DABT_LOW, CM, WnR, translation level 3.
        assert_eq!(a64_stage1_data_abort(true, true, true, true, Fsc::translation(3)), 0x9200_0147);
        assert_eq!(a64_stage1_instruction_abort(false, Fsc::translation(3)), 0x8600_0007);
    }

    #[test]
    fn aarch32_fsr_long_format() {
        assert_eq!(a32_dfsr(false, true, Fsc::ALIGNMENT), 0xa21);
        assert_eq!(a32_dfsr(true, true, Fsc::permission(3)), 0x2a0f);
        assert_eq!(a32_ifsr(Fsc::translation(3)), 0x207);
    }

    #[test]
    fn stage2_iss_fields() {
        // LDRSH W3, [X0] to a hole: ISV, SAS=1, SSE, SRT=3, translation level 3.
        let s = LsSyndrome { sas: 1, sse: true, srt: 3, sf: false, ar: false };
        let iss = stage2_iss(Some(s), false, false, Fsc::translation(3));
        assert!(iss.isv() && iss.sse() && !iss.sf());
        assert_eq!((iss.sas(), iss.srt()), (1, 3));
        // No syndrome: bits [23:14] stay zero.
        let iss = stage2_iss(None, true, true, Fsc::translation(3));
        assert_eq!(iss.0 & DataAbortIss::SYNDROME_MASK, 0);
        assert_eq!(iss.0, 0x147);
    }
}
