//! The outcome: what one backend observed for one case, as an ordered event stream plus a
//! final state. Every backend produces this same type, so outcomes diff field by field.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::case::{Reg, RegValue};
use crate::hex;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub end: End,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FinalState>,
    /// Fields the architecture leaves UNKNOWN or IMPLEMENTATION DEFINED (set by the model);
    /// the diff ignores exactly these bits and nothing else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<Unknown>,
    /// Where the outcome came from; never compared.
    #[serde(default)]
    pub meta: Meta,
}

/// One observable event, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// An exception the guest took to its own vectors (reported by the guest runtime).
    Exception {
        vector: Vector,
        /// Taken from EL0 (A64 lower-EL vector; AArch32 from USR mode).
        from_el0: bool,
        /// ESR_EL1 (A64) or the LPAE-format DFSR/IFSR (AArch32 aborts; 0 for UNDEF/SVC).
        #[serde(with = "hex::u64")]
        syndrome: u64,
        /// FAR_EL1 / DFAR / IFAR when the exception sets it.
        #[serde(default, with = "hex::opt_u64", skip_serializing_if = "Option::is_none")]
        far: Option<u64>,
        /// Address of the instruction that took the exception (preferred return address).
        #[serde(with = "hex::u64")]
        pc: u64,
        /// AArch32: the SPSR as the exception's mode read it, when it held no valid mode
        /// (`abi::report::FLAG_BAD_SPSR`); the runtime resumed the case with its entry CPSR.
        /// Never set on a correct entry, so outcomes without it stay as they were.
        #[serde(default, with = "hex::opt_u64", skip_serializing_if = "Option::is_none")]
        bad_spsr: Option<u64>,
    },
    /// KVM_EXIT_MMIO (or the refhyp's equivalent) for a case region.
    Mmio {
        #[serde(with = "hex::u64")]
        ipa: u64,
        len: u8,
        write: bool,
        /// Data written, or the value the VMM returned for a read.
        #[serde(with = "hex::u64")]
        data: u64,
    },
    /// KVM_EXIT_ARM_NISV: a data abort without a valid syndrome outside every memslot.
    Nisv {
        /// The ESR bits KVM passes (api.rst 5: "esr_iss" holds ESR_EL2 without the ISS2/EC).
        #[serde(with = "hex::u64")]
        esr_iss: u64,
        #[serde(with = "hex::u64")]
        ipa: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vector {
    Sync,
    Irq,
    Fiq,
    Serror,
    Undef,
    Svc,
    PrefetchAbort,
    DataAbort,
}

impl Vector {
    pub fn from_abi(id: u32) -> Option<Vector> {
        use crate::abi::vector as v;
        Some(match id {
            v::A64_SYNC => Vector::Sync,
            v::A64_IRQ | v::A32_IRQ => Vector::Irq,
            v::A64_FIQ | v::A32_FIQ => Vector::Fiq,
            v::A64_SERROR => Vector::Serror,
            v::A32_UNDEF => Vector::Undef,
            v::A32_SVC => Vector::Svc,
            v::A32_PABT => Vector::PrefetchAbort,
            v::A32_DABT => Vector::DataAbort,
            _ => return None,
        })
    }
}

/// How the case ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum End {
    /// The code reached its end marker and the runtime reported the final state.
    #[default]
    Done,
    /// The runtime ended the case on an exception (`on_exception: end`).
    EndOnException,
    /// More exceptions than `limits.max_exceptions`.
    ExceptionLimit,
    /// More VMM exits than `limits.max_exits`.
    ExitLimit,
    /// The watchdog fired.
    Timeout,
    /// KVM_RUN failed with this errno (e.g. ENOSYS for an unhandled NISV).
    RunError { errno: i32 },
    /// The VMM stopped the case (a NISV exit with `on_nisv: stop`, a system event).
    Stopped { reason: String },
    /// The backend cannot run this case here (e.g. no Normal-NC stage 2 on this kernel).
    Skipped { reason: String },
    /// The backend failed (QEMU died, kernel panic, channel broke). Not a verdict on the case.
    BackendError { message: String },
}

impl End {
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, End::Skipped { .. } | End::BackendError { .. })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalState {
    /// The registers the case observes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regs: BTreeMap<Reg, RegValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<FpState>,
    /// Every region with memory, in case order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<RegionState>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FpState {
    /// AArch32 FPEXC.
    #[serde(default, with = "hex::opt_u32", skip_serializing_if = "Option::is_none")]
    pub fpexc: Option<u32>,
    /// AArch32 FPSCR, or A64 FPCR.
    #[serde(with = "hex::u32")]
    pub fpscr: u32,
    /// A64 FPSR (0 for AArch32).
    #[serde(default, with = "hex::u32")]
    pub fpsr: u32,
    #[serde(with = "hex::u64")]
    pub cpacr: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionState {
    pub region: String,
    /// FNV-1a 64 of the region's final bytes.
    #[serde(with = "hex::u64")]
    pub digest: u64,
    /// The case's observed windows in this region, in case order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(with = "hex::u64")]
    pub offset: u64,
    #[serde(with = "hex::bytes")]
    pub bytes: Vec<u8>,
}

/// A field (by path, e.g. `events[0].far` or `state.fp.fpexc`) whose bits in `mask` the
/// architecture does not define; `why` cites the rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unknown {
    pub path: String,
    #[serde(with = "hex::u64")]
    pub mask: u64,
    pub why: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// MIDR_EL1 of the CPU the case ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub midr: Option<String>,
    /// QEMU version, or "native".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_us: Option<u64>,
    /// Kernel WARN/BUG/Oops/lockdep/RCU-stall lines (and their call traces) the backend's
    /// kernel printed while this case ran; any makes the case a `kernel-finding` verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_findings: Vec<String>,
}
