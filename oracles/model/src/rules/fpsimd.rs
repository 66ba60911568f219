//! FP/SIMD enable checks: what the guest's own controls (CPACR, FPEXC) make of an FP or
//! Advanced SIMD instruction. The hypervisor's controls (CPTR_EL2.TFP / HCPTR) trap to EL2
//! only after these checks pass, and a correct hypervisor makes that trap invisible (lazy FP
//! switch); so the guest-visible result is decided here alone.

use trapdiff_arch::sysreg::{cpacr, fpexc};
use trapdiff_arch::El;

/// What an FP/SIMD instruction does given the enables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpCheck {
    /// Executes.
    Enabled,
    /// A64: trapped to EL1 with EC 0x07 (ISS 0).
    TrapA64,
    /// AArch32: Undefined Instruction exception.
    Undefined,
    /// CONSTRAINED UNPREDICTABLE (a reserved CPACR value): the model does not decide.
    Unpredictable,
}

/// AArch64 CPACR_EL1.FPEN (ASL `AArch64.CheckFPAdvSIMDEnabled` / `AArch64.CheckFPEnabled`):
/// 0b00 and 0b10 trap EL0 and EL1; 0b01 traps EL0 only; 0b11 traps nothing.
pub fn check_a64(cpacr_el1: u64, el: El) -> FpCheck {
    let fpen = (cpacr_el1 & cpacr::FPEN_MASK) >> cpacr::FPEN_SHIFT;
    let disabled = match fpen {
        0b01 => el == El::El0,
        0b11 => false,
        _ => true,
    };
    if disabled {
        FpCheck::TrapA64
    } else {
        FpCheck::Enabled
    }
}

/// How an AArch32 FP/SIMD instruction uses FPEXC.EN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum A32FpAccess {
    /// Data processing, loads/stores, VMOV, VMRS/VMSR of FPSCR: FPEXC.EN must be 1.
    Normal,
    /// VMRS/VMSR of FPEXC, FPSID, MVFRx: allowed with FPEXC.EN == 0 (ASL VMRS/VMSR:
    /// `CheckVFPEnabled(FALSE)`), but UNDEFINED at EL0.
    ControlRegister,
}

/// AArch32 with EL1 in AArch32 (ASL `AArch32.CheckAdvSIMDOrFPEnabled`), in its order:
/// 1. `advsimd && CPACR.ASEDIS == 1` -> UNDEFINED;
/// 2. CPACR.cp10: 0b00 -> UNDEFINED; 0b01 -> UNDEFINED at EL0; 0b10 -> CONSTRAINED
///    UNPREDICTABLE; 0b11 -> allowed (cp11 must equal cp10, Arm ARM G8.2.30 CPACR);
/// 3. `fpexc_check && FPEXC.EN == 0` -> UNDEFINED;
///
/// then the EL2 controls (HCPTR / CPTR_EL2), which a correct hypervisor hides.
pub fn check_a32(cpacr_val: u32, fpexc_val: u32, el: El, advsimd: bool, access: A32FpAccess) -> FpCheck {
    if access == A32FpAccess::ControlRegister && el == El::El0 {
        // VMRS/VMSR: "if reg != '0001' && PSTATE.EL == EL0 then UNDEFINED".
        return FpCheck::Undefined;
    }
    if advsimd && cpacr_val & cpacr::ASEDIS != 0 {
        return FpCheck::Undefined;
    }
    let cp10 = (cpacr_val >> cpacr::CP10_SHIFT) & 3;
    let cp11 = (cpacr_val >> cpacr::CP11_SHIFT) & 3;
    if cp10 != cp11 {
        return FpCheck::Unpredictable;
    }
    match cp10 {
        0b00 => return FpCheck::Undefined,
        0b01 if el == El::El0 => return FpCheck::Undefined,
        0b10 => return FpCheck::Unpredictable,
        _ => {}
    }
    if access == A32FpAccess::Normal && fpexc_val & fpexc::EN == 0 {
        return FpCheck::Undefined;
    }
    FpCheck::Enabled
}

/// FPEXC bits whose value the architecture leaves IMPLEMENTATION DEFINED on an Armv8 CPU
/// without trapped floating-point exceptions (Arm ARM G8.2.56 FPEXC: EX, DEX, FP2V, VV, TFV,
/// VECITR and the IDF..IOF trap flags); EN is architected and always compared.
pub const FPEXC_IMPDEF: u32 = fpexc::EX
    | fpexc::DEX
    | fpexc::FP2V
    | fpexc::VV
    | fpexc::TFV
    | fpexc::VECITR_MASK
    | fpexc::IDF
    | fpexc::IXF
    | fpexc::UFF
    | fpexc::OFF
    | fpexc::DZF
    | fpexc::IOF;

#[cfg(test)]
mod tests {
    use super::*;
    const FULL: u32 = 0xf << 20;

    #[test]
    fn a64_fpen() {
        assert_eq!(check_a64(3 << 20, El::El0), FpCheck::Enabled);
        assert_eq!(check_a64(1 << 20, El::El1), FpCheck::Enabled);
        assert_eq!(check_a64(1 << 20, El::El0), FpCheck::TrapA64);
        assert_eq!(check_a64(2 << 20, El::El1), FpCheck::TrapA64);
        assert_eq!(check_a64(0, El::El1), FpCheck::TrapA64);
    }

    #[test]
    fn a32_order_cpacr_before_fpexc() {
        let n = A32FpAccess::Normal;
        assert_eq!(check_a32(FULL, fpexc::EN, El::El1, false, n), FpCheck::Enabled);
        assert_eq!(check_a32(FULL, 0, El::El1, false, n), FpCheck::Undefined);
        assert_eq!(check_a32(0, fpexc::EN, El::El1, false, n), FpCheck::Undefined);
        // cp10/cp11 = 0b01: PL1 only.
        assert_eq!(check_a32(0x5 << 20, fpexc::EN, El::El1, false, n), FpCheck::Enabled);
        assert_eq!(check_a32(0x5 << 20, fpexc::EN, El::El0, false, n), FpCheck::Undefined);
        // ASEDIS only affects Advanced SIMD.
        assert_eq!(check_a32(FULL | cpacr::ASEDIS, fpexc::EN, El::El1, true, n), FpCheck::Undefined);
        assert_eq!(check_a32(FULL | cpacr::ASEDIS, fpexc::EN, El::El1, false, n), FpCheck::Enabled);
        // Reserved and mismatched values are not decided.
        assert_eq!(check_a32(0xa << 20, fpexc::EN, El::El1, false, n), FpCheck::Unpredictable);
        assert_eq!(check_a32(0x3 << 20, fpexc::EN, El::El1, false, n), FpCheck::Unpredictable);
    }

    #[test]
    fn a32_fpexc_access_ignores_en_but_not_el0() {
        let c = A32FpAccess::ControlRegister;
        assert_eq!(check_a32(FULL, 0, El::El1, false, c), FpCheck::Enabled);
        assert_eq!(check_a32(0, 0, El::El1, false, c), FpCheck::Undefined);
        assert_eq!(check_a32(FULL, fpexc::EN, El::El0, false, c), FpCheck::Undefined);
    }
}
