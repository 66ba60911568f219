//! Memory attributes: stage-1 MAIR encodings and stage-2 MemAttr, with and without FWB.
//!
//! Arm ARM D8.6 "Memory region attributes" (MAIR_ELx Attr<n> encodings, D24.2.105 MAIR_EL1)
//! and D8.6.5 "Stage 2 memory region type and Cacheability attributes" (MemAttr[3:0], and
//! the FEAT_S2FWB encoding). The values Linux uses are in arch/arm64/include/asm/memory.h
//! (MT_S2_*, MT_S2_FWB_*).

use serde::{Deserialize, Serialize};

/// A stage-1 memory type, as programmed in MAIR (the guest runtime's MAIR holds one slot
/// per variant, in declaration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S1Attr {
    DeviceNGnRnE,
    DeviceNGnRE,
    DeviceNGRE,
    DeviceGRE,
    NormalNc,
    NormalWt,
    NormalWb,
}

impl S1Attr {
    pub const ALL: [S1Attr; 7] = [Self::DeviceNGnRnE, Self::DeviceNGnRE, Self::DeviceNGRE, Self::DeviceGRE, Self::NormalNc, Self::NormalWt, Self::NormalWb];

    /// The MAIR Attr<n> byte.
    pub const fn mair(self) -> u8 {
        match self {
            Self::DeviceNGnRnE => 0x00,
            Self::DeviceNGnRE => 0x04,
            Self::DeviceNGRE => 0x08,
            Self::DeviceGRE => 0x0c,
            Self::NormalNc => 0x44,
            Self::NormalWt => 0xbb,
            Self::NormalWb => 0xff,
        }
    }
    /// AttrIndx of this type in the runtime's MAIR.
    pub const fn index(self) -> u8 {
        self as u8
    }
    /// The runtime's MAIR_EL1 (AArch32: MAIR0 = low word, MAIR1 = high word).
    pub const fn runtime_mair() -> u64 {
        let mut v = 0u64;
        let mut i = 0;
        while i < Self::ALL.len() {
            v |= (Self::ALL[i].mair() as u64) << (8 * i);
            i += 1;
        }
        v
    }
    pub fn is_device(self) -> bool {
        matches!(self, Self::DeviceNGnRnE | Self::DeviceNGnRE | Self::DeviceNGRE | Self::DeviceGRE)
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::DeviceNGnRnE => "Device-nGnRnE",
            Self::DeviceNGnRE => "Device-nGnRE",
            Self::DeviceNGRE => "Device-nGRE",
            Self::DeviceGRE => "Device-GRE",
            Self::NormalNc => "Normal-NC",
            Self::NormalWt => "Normal-WT",
            Self::NormalWb => "Normal-WB",
        }
    }
}

/// A stage-2 memory type a memslot or device mapping can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S2Attr {
    /// What KVM gives device (VM_PFNMAP) mappings by default.
    DeviceNGnRE,
    /// What KVM gives VM_ALLOW_ANY_UNCACHED mappings since the 2024 Normal-NC series.
    NormalNc,
    /// Ordinary RAM.
    Normal,
}

impl S2Attr {
    /// Stage-2 descriptor MemAttr[3:0] with HCR_EL2.FWB == 0 (Linux MT_S2_*).
    pub const fn memattr(self) -> u8 {
        match self {
            Self::DeviceNGnRE => 0b0001,
            Self::NormalNc => 0b0101,
            Self::Normal => 0b1111,
        }
    }
    /// MemAttr[2:0] with HCR_EL2.FWB == 1 (Linux MT_S2_FWB_*).
    pub const fn memattr_fwb(self) -> u8 {
        match self {
            Self::DeviceNGnRE => 0b001,
            Self::NormalNc => 0b101,
            Self::Normal => 0b110,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::DeviceNGnRE => "Device-nGnRE",
            Self::NormalNc => "Normal-NC",
            Self::Normal => "Normal-WB",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn mair_layout() {
        assert_eq!(S1Attr::runtime_mair(), 0x00ff_bb44_0c08_0400);
        assert_eq!(S1Attr::NormalWb.index(), 6);
    }
}
