//! Memory types: stage-1 x stage-2 combination (with and without FEAT_S2FWB) and the
//! alignment rules that depend on them.

use trapdiff_arch::memattr::{S1Attr, S2Attr};

/// A resolved memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemType {
    /// Device memory; ordered from most to least restrictive.
    DeviceNGnRnE,
    DeviceNGnRE,
    DeviceNGRE,
    DeviceGRE,
    /// Normal memory; ordered from least to most cacheable.
    NormalNc,
    NormalWt,
    NormalWb,
}

impl MemType {
    pub fn is_device(self) -> bool {
        self <= MemType::DeviceGRE
    }
    /// Inner and Outer Write-Back Normal memory: where exclusives and atomics are required
    /// to work (Arm ARM B2.9.5 "Load-Exclusive and Store-Exclusive instruction usage
    /// restrictions"; B2.2.6 for single-copy atomic RMW on non-WB memory: IMPLEMENTATION DEFINED).
    pub fn is_write_back(self) -> bool {
        self == MemType::NormalWb
    }
}

impl From<S1Attr> for MemType {
    fn from(a: S1Attr) -> MemType {
        match a {
            S1Attr::DeviceNGnRnE => MemType::DeviceNGnRnE,
            S1Attr::DeviceNGnRE => MemType::DeviceNGnRE,
            S1Attr::DeviceNGRE => MemType::DeviceNGRE,
            S1Attr::DeviceGRE => MemType::DeviceGRE,
            S1Attr::NormalNc => MemType::NormalNc,
            S1Attr::NormalWt => MemType::NormalWt,
            S1Attr::NormalWb => MemType::NormalWb,
        }
    }
}

/// The stage-2 type on its own (S2AttrDecode): what a stage-2 alignment check looks at.
pub fn s2_type(s2: S2Attr) -> MemType {
    match s2 {
        S2Attr::DeviceNGnRE => MemType::DeviceNGnRE,
        S2Attr::NormalNc => MemType::NormalNc,
        S2Attr::Normal => MemType::NormalWb,
    }
}

/// The combined type of a stage-1 and a stage-2 attribute.
///
/// Without FWB: the more restrictive of the two (Arm ARM D8.6.5 "Combining the stage 1 and
/// stage 2 attributes", ASL `S2CombineS1MemAttrs`): Device beats Normal, the stronger
/// Device type wins, and the lower cacheability wins.
/// With FWB (HCR_EL2.FWB == 1, ASL `AArch64.S2ApplyFWBMemAttrs`): MemAttr[2:0] == 0b110
/// forces Normal Write-Back whatever stage 1 says; 0b101 gives Normal-NC unless stage 1 is
/// Device; 0b0xx gives the stronger of the stage-2 Device type and stage 1.
pub fn combine(s1: MemType, s2: S2Attr, fwb: bool) -> MemType {
    if fwb {
        match s2.memattr_fwb() {
            0b110 => MemType::NormalWb,
            0b101 if s1.is_device() => s1,
            0b101 => MemType::NormalNc,
            _ => s1.min(s2_type(s2)),
        }
    } else {
        // The enum order makes the more restrictive type the smaller one, for Device and for
        // Normal cacheability alike.
        s1.min(s2_type(s2))
    }
}

/// Whether an access of `size` bytes at `addr` is aligned (ASL `IsAligned`).
pub fn aligned(addr: u64, size: u64) -> bool {
    size <= 1 || addr.is_multiple_of(size)
}

/// Stage-1 alignment fault from the memory type (ASL `AArch64.S1HasAlignmentFault`): a DC
/// ZVA to Device memory always faults; any other unaligned access to Device memory faults.
/// Instruction fetches never take this fault.
pub fn s1_alignment_fault(t: MemType, is_dc_zero: bool, is_aligned: bool) -> bool {
    t.is_device() && (is_dc_zero || !is_aligned)
}

/// Stage-2 alignment fault (ASL `AArch64.S2HasAlignmentFault`): the same rule on the
/// stage-2 type alone, reported to EL2 as a stage-2 fault.
pub fn s2_alignment_fault(s2: S2Attr, is_dc_zero: bool, is_aligned: bool) -> bool {
    s2_type(s2).is_device() && (is_dc_zero || !is_aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combination_without_fwb_takes_the_stronger_type() {
        assert_eq!(combine(MemType::NormalWb, S2Attr::DeviceNGnRE, false), MemType::DeviceNGnRE);
        assert_eq!(combine(MemType::DeviceNGnRnE, S2Attr::DeviceNGnRE, false), MemType::DeviceNGnRnE);
        assert_eq!(combine(MemType::DeviceGRE, S2Attr::DeviceNGnRE, false), MemType::DeviceNGnRE);
        assert_eq!(combine(MemType::NormalWb, S2Attr::NormalNc, false), MemType::NormalNc);
        assert_eq!(combine(MemType::NormalWt, S2Attr::Normal, false), MemType::NormalWt);
        assert_eq!(combine(MemType::DeviceGRE, S2Attr::Normal, false), MemType::DeviceGRE);
    }

    #[test]
    fn fwb_forces_write_back_even_over_stage1_device() {
        assert_eq!(combine(MemType::DeviceNGnRnE, S2Attr::Normal, true), MemType::NormalWb);
        assert_eq!(combine(MemType::NormalNc, S2Attr::Normal, true), MemType::NormalWb);
        // 0b101: Normal-NC, unless stage 1 is Device.
        assert_eq!(combine(MemType::NormalWb, S2Attr::NormalNc, true), MemType::NormalNc);
        assert_eq!(combine(MemType::DeviceGRE, S2Attr::NormalNc, true), MemType::DeviceGRE);
        // Device at stage 2 still wins over Normal at stage 1.
        assert_eq!(combine(MemType::NormalWb, S2Attr::DeviceNGnRE, true), MemType::DeviceNGnRE);
    }

    #[test]
    fn alignment_rules() {
        assert!(aligned(0x1000, 8) && aligned(0x1003, 1) && !aligned(0x1004, 8));
        // Unaligned to Device faults; aligned does not; Normal never does.
        assert!(s1_alignment_fault(MemType::DeviceNGnRE, false, false));
        assert!(!s1_alignment_fault(MemType::DeviceNGnRE, false, true));
        assert!(!s1_alignment_fault(MemType::NormalNc, false, false));
        // DC ZVA to Device faults even when aligned; to Normal it never does.
        assert!(s1_alignment_fault(MemType::DeviceGRE, true, true));
        assert!(!s1_alignment_fault(MemType::NormalWb, true, true));
        assert!(s2_alignment_fault(S2Attr::DeviceNGnRE, true, true));
        assert!(!s2_alignment_fault(S2Attr::NormalNc, false, false));
    }
}
