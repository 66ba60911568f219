//! Cache maintenance by VA: which operations exist at which EL, which permission each needs
//! at each stage, and how a fault on one is reported.

use trapdiff_arch::El;

/// A cache maintenance (or DC ZVA) operation by virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmoKind {
    /// DC IVAC / DCIMVAC: invalidate to PoC.
    DcIvac,
    /// DC CVAC / DCCMVAC: clean to PoC.
    DcCvac,
    /// DC CVAU / DCCMVAU: clean to PoU.
    DcCvau,
    /// DC CVAP / DCCMVAP: clean to PoP (FEAT_DPB).
    DcCvap,
    /// DC CIVAC / DCCIMVAC: clean and invalidate to PoC.
    DcCivac,
    /// DC ZVA: zero a block; a store for every check (AccessType_DCZero).
    DcZva,
    /// IC IVAU / ICIMVAU: invalidate instruction cache to PoU.
    IcIvau,
}

impl CmoKind {
    pub fn name(self) -> &'static str {
        match self {
            CmoKind::DcIvac => "DC IVAC",
            CmoKind::DcCvac => "DC CVAC",
            CmoKind::DcCvau => "DC CVAU",
            CmoKind::DcCvap => "DC CVAP",
            CmoKind::DcCivac => "DC CIVAC",
            CmoKind::DcZva => "DC ZVA",
            CmoKind::IcIvau => "IC IVAU",
        }
    }
    /// DC ZVA is a store: AccessType_DCZero, not a cache maintenance access (ASL
    /// `AArch64.DC` with CacheOp ZVA calls `AArch64.DataMemZero`).
    pub fn is_zero(self) -> bool {
        self == CmoKind::DcZva
    }
    /// A64 EL0 may execute it when SCTLR_EL1.UCI (or DZE for DC ZVA) is set; DC IVAC is
    /// EL1-only (Arm ARM C5.3 "DC IVAC": "UNDEFINED at EL0").
    pub fn el0_allowed_a64(self) -> bool {
        self != CmoKind::DcIvac
    }
}

/// Whether the operation needs stage-1 permission it lacks (ASL `AArch64.S1CheckPermission`):
/// - DC ZVA is a write (AccessType_DCZero): needs write permission;
/// - DC IVAC needs write permission when stage 1 is AArch64 (an invalidate discards data);
/// - other DC ops by VA need read permission only at EL0 (AArch64);
/// - IC IVAU at EL0 without read permission: IMPLEMENTATION DEFINED ("Permission fault on
///   EL0 IC_IVAU execution"); the model reports it as `None` (undecided).
///
/// AArch32 stage 1 never faults a CMO on permissions (`ELUsingAArch32(S1TranslationRegime())`).
pub fn s1_permission_fault(kind: CmoKind, aarch32: bool, el: El, readable: bool, writable: bool) -> Option<bool> {
    match kind {
        CmoKind::DcZva => Some(!writable),
        _ if aarch32 => Some(false),
        CmoKind::DcIvac => Some(!writable),
        CmoKind::IcIvau if el == El::El0 && !readable => None,
        CmoKind::IcIvau => Some(false),
        _ => Some(el == El::El0 && !readable),
    }
}

/// Whether the operation needs stage-2 write permission (ASL `AArch64.S2CheckPermission`,
/// AccessType_DC with CacheOp_Invalidate: `!ELUsingAArch32(EL1) && !w` faults). FEAT_CMOW
/// (HCRX_EL2.CMOW) is off for every profile here, so DC CIVAC and IC IVAU never need it.
/// DC ZVA is a write and always needs it.
pub fn s2_needs_write(kind: CmoKind, aarch32: bool) -> bool {
    match kind {
        CmoKind::DcZva => true,
        CmoKind::DcIvac => !aarch32,
        _ => false,
    }
}

/// Whether stage 2 checks read permission for the operation (ASL `AArch64.S2CheckPermission`:
/// DC ops other than IVAC fault on `!r` only at EL0; IC IVAU only IMPLEMENTATION DEFINED at EL0).
pub fn s2_needs_read(kind: CmoKind, aarch32: bool, el: El) -> bool {
    !aarch32 && el == El::El0 && !matches!(kind, CmoKind::DcZva | CmoKind::IcIvau)
}

/// CM and WnR of a fault on the operation (ASL `AArch64.FaultSyndrome`: for AccessType_DC /
/// AccessType_IC, ISS[8] (CM) = 1 and ISS[6] (WnR) = 1; DC ZVA is a store: CM = 0, WnR = 1).
pub fn fault_cm_wnr(kind: CmoKind) -> (bool, bool) {
    (!kind.is_zero(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s1_permissions() {
        // DC IVAC needs write permission at stage 1 (AArch64 only).
        assert_eq!(s1_permission_fault(CmoKind::DcIvac, false, El::El1, true, false), Some(true));
        assert_eq!(s1_permission_fault(CmoKind::DcIvac, true, El::El1, true, false), Some(false));
        // Clean ops need nothing at EL1, read permission at EL0.
        assert_eq!(s1_permission_fault(CmoKind::DcCivac, false, El::El1, false, false), Some(false));
        assert_eq!(s1_permission_fault(CmoKind::DcCvac, false, El::El0, false, false), Some(true));
        assert_eq!(s1_permission_fault(CmoKind::DcCvau, false, El::El0, true, false), Some(false));
        // DC ZVA is a store everywhere.
        assert_eq!(s1_permission_fault(CmoKind::DcZva, false, El::El1, true, false), Some(true));
        // IC IVAU at EL0 without read permission is IMPLEMENTATION DEFINED.
        assert_eq!(s1_permission_fault(CmoKind::IcIvau, false, El::El0, false, false), None);
    }

    #[test]
    fn s2_permissions() {
        assert!(s2_needs_write(CmoKind::DcIvac, false));
        assert!(!s2_needs_write(CmoKind::DcIvac, true));
        assert!(!s2_needs_write(CmoKind::DcCivac, false));
        assert!(!s2_needs_write(CmoKind::IcIvau, false));
        assert!(s2_needs_write(CmoKind::DcZva, true));
        assert!(s2_needs_read(CmoKind::DcCvac, false, El::El0));
        assert!(!s2_needs_read(CmoKind::DcCvac, false, El::El1));
    }

    #[test]
    fn syndrome_bits() {
        assert_eq!(fault_cm_wnr(CmoKind::DcCvac), (true, true));
        assert_eq!(fault_cm_wnr(CmoKind::IcIvau), (true, true));
        assert_eq!(fault_cm_wnr(CmoKind::DcZva), (false, true));
    }
}
