//! System-register encodings and the bit fields trapdiff's parts read or write.
//!
//! AArch64 registers are named by (op0, op1, CRn, CRm, op2) as in the Arm ARM's
//! "MRS/MSR encoding" tables (D24); AArch32 CP15 registers and operations by
//! (coproc, opc1, CRn, CRm, opc2) as in G8 ("The AArch32 System register encodings").

/// An AArch64 system register encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysReg {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    pub name: &'static str,
}

macro_rules! sysregs {
    ($($name:ident = ($op0:expr, $op1:expr, $crn:expr, $crm:expr, $op2:expr);)*) => {
        $(pub const $name: SysReg = SysReg { op0: $op0, op1: $op1, crn: $crn, crm: $crm, op2: $op2, name: stringify!($name) };)*
        /// Every register this module names.
        pub const ALL: &[SysReg] = &[$($name),*];
    };
}

sysregs! {
    MIDR_EL1 = (3, 0, 0, 0, 0);
    MPIDR_EL1 = (3, 0, 0, 0, 5);
    ID_AA64PFR0_EL1 = (3, 0, 0, 4, 0);
    ID_AA64ISAR0_EL1 = (3, 0, 0, 6, 0);
    ID_AA64ISAR1_EL1 = (3, 0, 0, 6, 1);
    ID_AA64MMFR0_EL1 = (3, 0, 0, 7, 0);
    ID_AA64MMFR1_EL1 = (3, 0, 0, 7, 1);
    ID_AA64MMFR2_EL1 = (3, 0, 0, 7, 2);
    SCTLR_EL1 = (3, 0, 1, 0, 0);
    CPACR_EL1 = (3, 0, 1, 0, 2);
    TTBR0_EL1 = (3, 0, 2, 0, 0);
    TTBR1_EL1 = (3, 0, 2, 0, 1);
    TCR_EL1 = (3, 0, 2, 0, 2);
    SPSR_EL1 = (3, 0, 4, 0, 0);
    ELR_EL1 = (3, 0, 4, 0, 1);
    SP_EL0 = (3, 0, 4, 1, 0);
    ESR_EL1 = (3, 0, 5, 2, 0);
    FAR_EL1 = (3, 0, 6, 0, 0);
    PAR_EL1 = (3, 0, 7, 4, 0);
    MAIR_EL1 = (3, 0, 10, 2, 0);
    VBAR_EL1 = (3, 0, 12, 0, 0);
    CTR_EL0 = (3, 3, 0, 0, 1);
    DCZID_EL0 = (3, 3, 0, 0, 7);
    FPCR = (3, 3, 4, 4, 0);
    FPSR = (3, 3, 4, 4, 1);
    CNTFRQ_EL0 = (3, 3, 14, 0, 0);
    CNTPCT_EL0 = (3, 3, 14, 0, 1);
    DACR32_EL2 = (3, 4, 3, 0, 0);
    IFSR32_EL2 = (3, 4, 5, 0, 1);
    FPEXC32_EL2 = (3, 4, 5, 3, 0);
    SCTLR_EL2 = (3, 4, 1, 0, 0);
    HCR_EL2 = (3, 4, 1, 1, 0);
    CPTR_EL2 = (3, 4, 1, 1, 2);
    HSTR_EL2 = (3, 4, 1, 1, 3);
    VTTBR_EL2 = (3, 4, 2, 1, 0);
    VTCR_EL2 = (3, 4, 2, 1, 2);
    SPSR_EL2 = (3, 4, 4, 0, 0);
    ELR_EL2 = (3, 4, 4, 0, 1);
    SP_EL1 = (3, 4, 4, 1, 0);
    ESR_EL2 = (3, 4, 5, 2, 0);
    FAR_EL2 = (3, 4, 6, 0, 0);
    HPFAR_EL2 = (3, 4, 6, 0, 4);
    VBAR_EL2 = (3, 4, 12, 0, 0);
    CNTHCTL_EL2 = (3, 4, 14, 1, 0);
    CNTHP_TVAL_EL2 = (3, 4, 14, 2, 0);
    CNTHP_CTL_EL2 = (3, 4, 14, 2, 1);
}

impl SysReg {
    /// The 16-bit encoding KVM's ONE_REG API packs into `KVM_REG_ARM64_SYSREG` ids
    /// (Documentation/virt/kvm/api.rst, "ARM64 system registers").
    pub const fn kvm_sysreg_index(self) -> u64 {
        ((self.op0 as u64) << 14) | ((self.op1 as u64) << 11) | ((self.crn as u64) << 7) | ((self.crm as u64) << 3) | self.op2 as u64
    }
    /// The full KVM ONE_REG id (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | index).
    pub const fn kvm_one_reg_id(self) -> u64 {
        0x6000_0000_0000_0000 | 0x0030_0000_0000_0000 | (0x0013 << 16) | self.kvm_sysreg_index()
    }
    /// Instruction word of `MRS Xt, <reg>` (Arm ARM C6.2.245).
    pub const fn mrs(self, xt: u8) -> u32 {
        0xd530_0000 | self.fields() | (xt as u32 & 31)
    }
    /// Instruction word of `MSR <reg>, Xt` (Arm ARM C6.2.247).
    pub const fn msr(self, xt: u8) -> u32 {
        0xd510_0000 | self.fields() | (xt as u32 & 31)
    }
    const fn fields(self) -> u32 {
        (((self.op0 & 1) as u32) << 19) | ((self.op1 as u32) << 16) | ((self.crn as u32) << 12) | ((self.crm as u32) << 8) | ((self.op2 as u32) << 5)
    }
}

/// An AArch32 coprocessor register or operation, accessed with MCR/MRC (or MCRR/MRRC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cp15 {
    pub opc1: u8,
    pub crn: u8,
    pub crm: u8,
    pub opc2: u8,
    pub name: &'static str,
}

/// CP15 encodings used by the families (Arm ARM G8.2 register and operation summaries).
pub mod cp15 {
    use super::Cp15;
    macro_rules! cp15 {
        ($($name:ident = ($opc1:expr, $crn:expr, $crm:expr, $opc2:expr);)*) => {
            $(pub const $name: Cp15 = Cp15 { opc1: $opc1, crn: $crn, crm: $crm, opc2: $opc2, name: stringify!($name) };)*
        };
    }
    cp15! {
        MIDR = (0, 0, 0, 0);
        CTR = (0, 0, 0, 1);
        SCTLR = (0, 1, 0, 0);
        CPACR = (0, 1, 0, 2);
        TTBCR = (0, 2, 0, 2);
        DACR = (0, 3, 0, 0);
        DFSR = (0, 5, 0, 0);
        IFSR = (0, 5, 0, 1);
        DFAR = (0, 6, 0, 0);
        IFAR = (0, 6, 0, 2);
        ICIALLU = (0, 7, 5, 0);
        ICIMVAU = (0, 7, 5, 1);
        BPIALL = (0, 7, 5, 6);
        DCIMVAC = (0, 7, 6, 1);
        DCISW = (0, 7, 6, 2);
        DCCMVAC = (0, 7, 10, 1);
        DCCSW = (0, 7, 10, 2);
        DCCMVAU = (0, 7, 11, 1);
        DCCMVAP = (0, 7, 12, 1);
        DCCIMVAC = (0, 7, 14, 1);
        DCCISW = (0, 7, 14, 2);
        TLBIALL = (0, 8, 7, 0);
        MAIR0 = (0, 10, 2, 0);
        MAIR1 = (0, 10, 2, 1);
        VBAR = (0, 12, 0, 0);
    }
}

/// CPACR_EL1 (Arm ARM D24.2.30) and AArch32 CPACR (G8.2.30).
pub mod cpacr {
    /// CPACR_EL1.FPEN, bits [21:20]: 0b11 = no trap; 0b01 = trap EL0 only; 0bx0 = trap EL0 and EL1.
    pub const FPEN_SHIFT: u32 = 20;
    pub const FPEN_MASK: u64 = 3 << FPEN_SHIFT;
    /// AArch32 CPACR.cp10, bits [21:20] (same encoding as FPEN).
    pub const CP10_SHIFT: u32 = 20;
    /// AArch32 CPACR.cp11, bits [23:22]; must equal cp10 or the behaviour is UNPREDICTABLE.
    pub const CP11_SHIFT: u32 = 22;
    /// AArch32 CPACR.ASEDIS, bit [31]: Advanced SIMD disabled (FP still allowed).
    pub const ASEDIS: u32 = 1 << 31;
    /// Access-permission values of a 2-bit field.
    pub const NONE: u32 = 0b00;
    pub const PL1_ONLY: u32 = 0b01;
    pub const FULL: u32 = 0b11;
}

/// AArch32 FPEXC (Arm ARM G8.2.56).
pub mod fpexc {
    pub const EX: u32 = 1 << 31;
    /// EN, bit [30]: enables Advanced SIMD and floating-point.
    pub const EN: u32 = 1 << 30;
    pub const DEX: u32 = 1 << 29;
    pub const FP2V: u32 = 1 << 28;
    pub const VV: u32 = 1 << 27;
    pub const TFV: u32 = 1 << 26;
    pub const VECITR_MASK: u32 = 7 << 8;
    pub const IDF: u32 = 1 << 7;
    pub const IXF: u32 = 1 << 4;
    pub const UFF: u32 = 1 << 3;
    pub const OFF: u32 = 1 << 2;
    pub const DZF: u32 = 1 << 1;
    pub const IOF: u32 = 1 << 0;
}

/// AArch32 VMRS/VMSR special-register numbers (the `reg` field, Arm ARM F6.1.236 VMRS).
pub mod vfp_sysreg {
    pub const FPSID: u8 = 0;
    pub const FPSCR: u8 = 1;
    pub const MVFR2: u8 = 5;
    pub const MVFR1: u8 = 6;
    pub const MVFR0: u8 = 7;
    pub const FPEXC: u8 = 8;
}

/// CPTR_EL2 with HCR_EL2.E2H == 0 (Arm ARM D24.2.33), and its AArch32 view HCPTR.
pub mod cptr_el2 {
    /// TFP, bit [10]: trap SVE/SIMD/FP accesses from EL0-EL2 to EL2.
    pub const TFP: u64 = 1 << 10;
    /// TZ, bit [8]: trap SVE.
    pub const TZ: u64 = 1 << 8;
    /// TTA, bit [20]: trap trace-register accesses.
    pub const TTA: u64 = 1 << 20;
    /// TCPAC, bit [31]: trap CPACR accesses from EL1.
    pub const TCPAC: u64 = 1 << 31;
    /// RES1 bits with E2H == 0: [13:12], [9:0] (with TZ clear when SVE is implemented).
    pub const RES1: u64 = 0x0000_32ff;
}

/// SCTLR_EL1 (Arm ARM D24.2.168) and the AArch32 SCTLR bits at the same positions.
pub mod sctlr {
    pub const M: u64 = 1 << 0;
    /// A, bit [1]: alignment checking.
    pub const A: u64 = 1 << 1;
    pub const C: u64 = 1 << 2;
    pub const SA: u64 = 1 << 3;
    pub const SA0: u64 = 1 << 4;
    pub const I: u64 = 1 << 12;
    /// DZE, bit [14]: EL0 may execute DC ZVA.
    pub const DZE: u64 = 1 << 14;
    /// UCT, bit [15]: EL0 may read CTR_EL0.
    pub const UCT: u64 = 1 << 15;
    pub const WXN: u64 = 1 << 19;
    /// UCI, bit [26]: EL0 may execute DC CVAU/CIVAC/CVAC/CVAP and IC IVAU.
    pub const UCI: u64 = 1 << 26;
    /// RES1 bits of SCTLR_EL1 for an Armv8.0 guest: [29:28], [23:22], [20], [11].
    pub const EL1_RES1: u64 = (3 << 28) | (3 << 22) | (1 << 20) | (1 << 11);
    /// AArch32 SCTLR.TE, bit [30]: exceptions taken to T32.
    pub const A32_TE: u32 = 1 << 30;
    /// AArch32 SCTLR.AFE, bit [29].
    pub const A32_AFE: u32 = 1 << 29;
    /// AArch32 SCTLR RES1 bits in Armv8: [23:22], [4:3].
    pub const A32_RES1: u32 = (3 << 22) | (3 << 3);
}

/// HCR_EL2 (Arm ARM D24.2.48): the bits the refhyp sets.
pub mod hcr_el2 {
    pub const VM: u64 = 1 << 0;
    pub const SWIO: u64 = 1 << 1;
    pub const FMO: u64 = 1 << 3;
    pub const IMO: u64 = 1 << 4;
    pub const AMO: u64 = 1 << 5;
    pub const TSC: u64 = 1 << 19;
    pub const TIDCP: u64 = 1 << 20;
    /// TPCP, bit [23] (TPC before FEAT_DPB): trap DC IVAC/CIVAC/CVAC/CVAP/CVADP and the
    /// AArch32 DCIMVAC/DCCIMVAC/DCCMVAC/DCCMVAP to EL2.
    pub const TPCP: u64 = 1 << 23;
    /// TPU, bit [24]: trap DC CVAU, IC IVAU, IC IALLU(IS) and the AArch32 DCCMVAU, ICIMVAU,
    /// ICIALLU(IS) to EL2.
    pub const TPU: u64 = 1 << 24;
    /// RW, bit [31]: EL1 is AArch64.
    pub const RW: u64 = 1 << 31;
    pub const E2H: u64 = 1 << 34;
    /// FWB, bit [46]: stage-2 forced write-back (FEAT_S2FWB).
    pub const FWB: u64 = 1 << 46;
}

/// CTR_EL0 (Arm ARM D24.2.34): cache geometry and coherence.
pub mod ctr {
    /// IminLine, bits [3:0]: log2 of words in the smallest I-cache line.
    pub fn iminline_bytes(ctr: u64) -> u64 {
        4 << (ctr & 0xf)
    }
    /// DminLine, bits [19:16].
    pub fn dminline_bytes(ctr: u64) -> u64 {
        4 << ((ctr >> 16) & 0xf)
    }
    /// IDC, bit [28]: D-cache clean to PoU not required for I/D coherence.
    pub fn idc(ctr: u64) -> bool {
        ctr & (1 << 28) != 0
    }
    /// DIC, bit [29]: I-cache invalidation to PoU not required.
    pub fn dic(ctr: u64) -> bool {
        ctr & (1 << 29) != 0
    }
}

/// SPSR/PSTATE mode encodings (Arm ARM C5.2.18 SPSR_EL1 and G8.2.129 for AArch32).
pub mod pstate {
    pub const EL0T: u64 = 0b0000;
    pub const EL1T: u64 = 0b0100;
    pub const EL1H: u64 = 0b0101;
    pub const EL2H: u64 = 0b1001;
    /// M[4]: 1 = AArch32.
    pub const NRW: u64 = 1 << 4;
    pub const A32_USR: u64 = 0b1_0000;
    pub const A32_FIQ: u64 = 0b1_0001;
    pub const A32_IRQ: u64 = 0b1_0010;
    pub const A32_SVC: u64 = 0b1_0011;
    pub const A32_ABT: u64 = 0b1_0111;
    pub const A32_UND: u64 = 0b1_1011;
    pub const A32_SYS: u64 = 0b1_1111;
    /// T, bit [5]: T32 state (AArch32 only).
    pub const T: u64 = 1 << 5;
    pub const F: u64 = 1 << 6;
    pub const I: u64 = 1 << 7;
    pub const A: u64 = 1 << 8;
    pub const D: u64 = 1 << 9;
    pub const DAIF: u64 = 0xf << 6;
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn mrs_msr_words_match_the_assembler() {
        // mrs x0, midr_el1 / msr sctlr_el1, x1 / mrs x3, ctr_el0 (as GNU as encodes them)
        assert_eq!(MIDR_EL1.mrs(0), 0xd538_0000);
        assert_eq!(SCTLR_EL1.msr(1), 0xd518_1001);
        assert_eq!(CTR_EL0.mrs(3), 0xd53b_0023);
    }
    #[test]
    fn kvm_ids_match_kernel_headers() {
        // arch/arm64/include/uapi/asm/kvm.h: ARM64_SYS_REG(3,0,1,0,0) for SCTLR_EL1.
        assert_eq!(SCTLR_EL1.kvm_one_reg_id(), 0x6030_0000_0013_c080);
        assert_eq!(CPACR_EL1.kvm_one_reg_id(), 0x6030_0000_0013_c082);
    }
}
