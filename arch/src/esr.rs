//! ESR_ELx (and the AArch32 LPAE-format DFSR/IFSR): exception classes, the data- and
//! instruction-abort ISS fields, and fault status codes.
//!
//! Source: Arm ARM (DDI 0487) D24.2.41 "ESR_EL1, Exception Syndrome Register (EL1)" and
//! ISS encodings "for an exception from a Data Abort" / "from an Instruction Abort";
//! G8.2.50 "DFSR" (long-descriptor format). Field names follow the Arm ARM.

/// Exception class, ESR_ELx.EC (bits [31:26]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ec(pub u8);

impl Ec {
    pub const UNKNOWN: Ec = Ec(0x00);
    pub const WFX: Ec = Ec(0x01);
    pub const CP15_32: Ec = Ec(0x03);
    pub const CP15_64: Ec = Ec(0x04);
    pub const CP14_MR: Ec = Ec(0x05);
    pub const CP14_LS: Ec = Ec(0x06);
    /// Access to SVE, Advanced SIMD or floating-point trapped by CPACR/CPTR/HCPTR/FPEXC32.
    pub const FP_ASIMD: Ec = Ec(0x07);
    pub const CP10_ID: Ec = Ec(0x08);
    pub const CP14_64: Ec = Ec(0x0C);
    pub const ILLEGAL_STATE: Ec = Ec(0x0E);
    pub const SVC32: Ec = Ec(0x11);
    pub const HVC32: Ec = Ec(0x12);
    pub const SMC32: Ec = Ec(0x13);
    pub const SVC64: Ec = Ec(0x15);
    pub const HVC64: Ec = Ec(0x16);
    pub const SMC64: Ec = Ec(0x17);
    pub const SYS64: Ec = Ec(0x18);
    pub const SVE: Ec = Ec(0x19);
    pub const IABT_LOW: Ec = Ec(0x20);
    pub const IABT_CUR: Ec = Ec(0x21);
    pub const PC_ALIGN: Ec = Ec(0x22);
    pub const DABT_LOW: Ec = Ec(0x24);
    pub const DABT_CUR: Ec = Ec(0x25);
    pub const SP_ALIGN: Ec = Ec(0x26);
    pub const FP_EXC32: Ec = Ec(0x28);
    pub const FP_EXC64: Ec = Ec(0x2C);
    pub const SERROR: Ec = Ec(0x2F);
    pub const BREAKPT_LOW: Ec = Ec(0x30);
    pub const BREAKPT_CUR: Ec = Ec(0x31);
    pub const SOFTSTP_LOW: Ec = Ec(0x32);
    pub const SOFTSTP_CUR: Ec = Ec(0x33);
    pub const WATCHPT_LOW: Ec = Ec(0x34);
    pub const WATCHPT_CUR: Ec = Ec(0x35);
    pub const BKPT32: Ec = Ec(0x38);
    pub const BRK64: Ec = Ec(0x3C);

    /// Short name as Linux's `esr_class_str` spells it, for reports.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "Unknown/Uncategorized",
            0x01 => "WFI/WFE",
            0x03 => "CP15 MCR/MRC",
            0x04 => "CP15 MCRR/MRRC",
            0x05 => "CP14 MCR/MRC",
            0x06 => "CP14 LDC/STC",
            0x07 => "ASIMD/FP access",
            0x08 => "CP10 MRC/VMRS",
            0x0C => "CP14 MCRR/MRRC",
            0x0E => "PSTATE.IL",
            0x11 => "SVC (AArch32)",
            0x12 => "HVC (AArch32)",
            0x13 => "SMC (AArch32)",
            0x15 => "SVC (AArch64)",
            0x16 => "HVC (AArch64)",
            0x17 => "SMC (AArch64)",
            0x18 => "MSR/MRS (AArch64)",
            0x19 => "SVE",
            0x20 => "IABT (lower EL)",
            0x21 => "IABT (current EL)",
            0x22 => "PC Alignment",
            0x24 => "DABT (lower EL)",
            0x25 => "DABT (current EL)",
            0x26 => "SP Alignment",
            0x28 => "FP (AArch32)",
            0x2C => "FP (AArch64)",
            0x2F => "SError",
            0x30 => "Breakpoint (lower EL)",
            0x31 => "Breakpoint (current EL)",
            0x32 => "Software Step (lower EL)",
            0x33 => "Software Step (current EL)",
            0x34 => "Watchpoint (lower EL)",
            0x35 => "Watchpoint (current EL)",
            0x38 => "BKPT (AArch32)",
            0x3C => "BRK (AArch64)",
            _ => "UNRECOGNIZED EC",
        }
    }

    pub fn is_data_abort(self) -> bool {
        self == Self::DABT_LOW || self == Self::DABT_CUR
    }
    pub fn is_instruction_abort(self) -> bool {
        self == Self::IABT_LOW || self == Self::IABT_CUR
    }
}

/// A whole ESR_ELx value with typed accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Esr(pub u64);

impl Esr {
    pub const EC_SHIFT: u32 = 26;
    /// IL, bit [25]: 1 for a 32-bit instruction (and for exceptions where it is RES1).
    pub const IL: u64 = 1 << 25;
    pub const ISS_MASK: u64 = 0x01ff_ffff;

    pub fn new(ec: Ec, il: bool, iss: u32) -> Esr {
        Esr((u64::from(ec.0) << Self::EC_SHIFT) | if il { Self::IL } else { 0 } | (u64::from(iss) & Self::ISS_MASK))
    }
    pub fn ec(self) -> Ec {
        Ec(((self.0 >> Self::EC_SHIFT) & 0x3f) as u8)
    }
    pub fn il(self) -> bool {
        self.0 & Self::IL != 0
    }
    pub fn iss(self) -> u32 {
        (self.0 & Self::ISS_MASK) as u32
    }
    /// ISS2, bits [36:32] (FEAT_LS64 / FEAT_MTE etc.).
    pub fn iss2(self) -> u32 {
        ((self.0 >> 32) & 0x1f) as u32
    }
    pub fn data_abort(self) -> Option<DataAbortIss> {
        self.ec().is_data_abort().then_some(DataAbortIss(self.iss()))
    }
}

/// ISS encoding for a Data Abort (EC 0x24/0x25).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DataAbortIss(pub u32);

impl DataAbortIss {
    pub const ISV: u32 = 1 << 24;
    pub const SAS_SHIFT: u32 = 22;
    pub const SSE: u32 = 1 << 21;
    pub const SRT_SHIFT: u32 = 16;
    pub const SF: u32 = 1 << 15;
    pub const AR: u32 = 1 << 14;
    pub const VNCR: u32 = 1 << 13;
    pub const SET_SHIFT: u32 = 11;
    pub const FNV: u32 = 1 << 10;
    pub const EA: u32 = 1 << 9;
    pub const CM: u32 = 1 << 8;
    pub const S1PTW: u32 = 1 << 7;
    pub const WNR: u32 = 1 << 6;
    pub const DFSC_MASK: u32 = 0x3f;
    /// Bits [23:14] are only valid when ISV is 1 (Arm ARM: "ISV == 0: bits[23:14] RES0").
    pub const SYNDROME_MASK: u32 = 0x00ff_c000;

    pub fn isv(self) -> bool {
        self.0 & Self::ISV != 0
    }
    /// SAS: access size, log2 bytes (0: byte .. 3: doubleword).
    pub fn sas(self) -> u8 {
        ((self.0 >> Self::SAS_SHIFT) & 3) as u8
    }
    pub fn access_len(self) -> usize {
        1 << self.sas()
    }
    pub fn sse(self) -> bool {
        self.0 & Self::SSE != 0
    }
    pub fn srt(self) -> u8 {
        ((self.0 >> Self::SRT_SHIFT) & 0x1f) as u8
    }
    pub fn sf(self) -> bool {
        self.0 & Self::SF != 0
    }
    pub fn ar(self) -> bool {
        self.0 & Self::AR != 0
    }
    pub fn fnv(self) -> bool {
        self.0 & Self::FNV != 0
    }
    pub fn ea(self) -> bool {
        self.0 & Self::EA != 0
    }
    pub fn cm(self) -> bool {
        self.0 & Self::CM != 0
    }
    pub fn s1ptw(self) -> bool {
        self.0 & Self::S1PTW != 0
    }
    pub fn wnr(self) -> bool {
        self.0 & Self::WNR != 0
    }
    pub fn dfsc(self) -> Fsc {
        Fsc((self.0 & Self::DFSC_MASK) as u8)
    }

    /// Build a valid-syndrome ISS for a load/store (ISV=1).
    #[allow(clippy::too_many_arguments)]
    pub fn with_syndrome(sas: u8, sse: bool, srt: u8, sf: bool, ar: bool, wnr: bool, fsc: Fsc) -> DataAbortIss {
        DataAbortIss(
            Self::ISV
                | (u32::from(sas & 3) << Self::SAS_SHIFT)
                | if sse { Self::SSE } else { 0 }
                | (u32::from(srt & 0x1f) << Self::SRT_SHIFT)
                | if sf { Self::SF } else { 0 }
                | if ar { Self::AR } else { 0 }
                | if wnr { Self::WNR } else { 0 }
                | u32::from(fsc.0),
        )
    }
}

/// Fault status code: ESR_ELx.ISS.{D,I}FSC and HPFAR-era long-descriptor status (bits [5:0]).
/// Arm ARM D24.2.41, ISS encoding for a Data Abort, DFSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fsc(pub u8);

// Grouped as the field reads: the fault kind, then the level in bits [1:0] (Arm ARM D17.2.37
// "ISS encoding for an exception from a Data Abort", DFSC).
#[allow(clippy::unusual_byte_groupings)]
impl Fsc {
    pub const fn address_size(level: u8) -> Fsc {
        Fsc(level & 3)
    }
    pub const fn translation(level: u8) -> Fsc {
        Fsc(0b0001_00 | (level & 3))
    }
    pub const fn access_flag(level: u8) -> Fsc {
        Fsc(0b0010_00 | (level & 3))
    }
    pub const fn permission(level: u8) -> Fsc {
        Fsc(0b0011_00 | (level & 3))
    }
    pub const SYNC_EXTERNAL: Fsc = Fsc(0b01_0000);
    pub const SYNC_TAG_CHECK: Fsc = Fsc(0b01_0001);
    pub const fn sync_external_on_walk(level: u8) -> Fsc {
        Fsc(0b0101_00 | (level & 3))
    }
    pub const ALIGNMENT: Fsc = Fsc(0b10_0001);
    /// AArch32 only: debug exception (long-descriptor DFSR/IFSR).
    pub const DEBUG: Fsc = Fsc(0b10_0010);
    pub const TLB_CONFLICT: Fsc = Fsc(0b11_0000);
    pub const UNSUPPORTED_EXCLUSIVE: Fsc = Fsc(0b11_0101);

    /// The fault kind without the level.
    pub fn kind(self) -> FaultKind {
        match self.0 {
            0b0000_00..=0b0000_11 => FaultKind::AddressSize,
            0b0001_00..=0b0001_11 => FaultKind::Translation,
            0b0010_00..=0b0010_11 => FaultKind::AccessFlag,
            0b0011_00..=0b0011_11 => FaultKind::Permission,
            0b01_0000 => FaultKind::SyncExternal,
            0b0101_00..=0b0101_11 => FaultKind::SyncExternalOnWalk,
            0b10_0001 => FaultKind::Alignment,
            0b10_0010 => FaultKind::Debug,
            0b11_0000 => FaultKind::TlbConflict,
            0b11_0101 => FaultKind::UnsupportedExclusive,
            _ => FaultKind::Other,
        }
    }
    /// Translation-table level for the level-encoded kinds.
    pub fn level(self) -> Option<u8> {
        match self.kind() {
            FaultKind::AddressSize | FaultKind::Translation | FaultKind::AccessFlag | FaultKind::Permission | FaultKind::SyncExternalOnWalk => Some(self.0 & 3),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    AddressSize,
    Translation,
    AccessFlag,
    Permission,
    SyncExternal,
    SyncExternalOnWalk,
    Alignment,
    Debug,
    TlbConflict,
    UnsupportedExclusive,
    Other,
}

/// AArch32 DFSR/IFSR in the long-descriptor (LPAE, TTBCR.EAE=1) format, which the guest
/// runtime always uses. Arm ARM G8.2.50 "DFSR, Data Fault Status Register", LPAE format.
pub mod fsr32 {
    use super::Fsc;
    /// STATUS, bits [5:0]: the same codes as [`Fsc`].
    pub const STATUS_MASK: u32 = 0x3f;
    /// LPAE, bit [9]: 1 = long-descriptor format.
    pub const LPAE: u32 = 1 << 9;
    /// WnR, bit [11] (DFSR only).
    pub const WNR: u32 = 1 << 11;
    /// ExT, bit [12]: external abort type.
    pub const EXT: u32 = 1 << 12;
    /// CM, bit [13]: fault on a cache maintenance operation (DFSR only).
    pub const CM: u32 = 1 << 13;
    pub fn status(fsr: u32) -> Fsc {
        Fsc((fsr & STATUS_MASK) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn data_abort_fields_round_trip() {
        // LDR W1, [X0] faulting at stage 2 translation level 1: ISV, SAS=2, SRT=1.
        let iss = DataAbortIss::with_syndrome(2, false, 1, false, false, false, Fsc::translation(1));
        let esr = Esr::new(Ec::DABT_LOW, true, iss.0);
        assert_eq!(esr.0, 0x9380_0005 | (1 << 16));
        let da = esr.data_abort().expect("data abort");
        assert!(da.isv() && !da.wnr() && !da.sse());
        assert_eq!((da.sas(), da.srt(), da.access_len()), (2, 1, 4));
        assert_eq!(da.dfsc().kind(), FaultKind::Translation);
        assert_eq!(da.dfsc().level(), Some(1));
        assert_eq!(esr.ec().name(), "DABT (lower EL)");
    }
    #[test]
    fn fsc_kinds() {
        assert_eq!(Fsc(0x21).kind(), FaultKind::Alignment);
        assert_eq!(Fsc::permission(3).0, 0x0f);
        assert_eq!(Fsc(0x3f).kind(), FaultKind::Other);
        assert_eq!(Fsc::ALIGNMENT.level(), None);
    }
}
