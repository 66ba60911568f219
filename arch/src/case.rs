//! The case: one guest payload, its memory map, its initial state and the VMM's side.
//! Stored as JSON (`corpus/**.json`); see docs/DESIGN.md "Case and outcome".

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::abi;
use crate::hex;
use crate::memattr::{S1Attr, S2Attr};
use crate::outcome::Outcome;

/// Version of the case and outcome schema. Bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Translation granule the backends map memory with; region bounds must be multiples of it.
pub const PAGE_SIZE: u64 = 4096;
/// Highest IPA + 1 a case may use: KVM's default 40-bit IPA space (api.rst, KVM_CREATE_VM
/// "KVM_VM_TYPE_ARM_IPA_SIZE": 40 bits when the type is 0).
pub const IPA_LIMIT: u64 = 1 << 40;
/// Most guest memory (all regions with memory together) a case may ask for: every backend
/// materialises it (the harness builds the initial bytes, the refhyp carves it from a 1 GiB
/// pool, the agent maps it in a 512 MiB VM), so an absurd size must be a clear error, not an
/// allocation failure.
pub const MAX_CASE_MEMORY: u64 = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Schema version; must equal [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Unique, path-like name (`mmio/a64/ldr-w-sext`).
    pub name: String,
    pub family: Family,
    /// What the case tests and why, for people.
    #[serde(default)]
    pub description: String,
    pub state: ExecState,
    pub memory: Vec<Region>,
    pub code: Code,
    /// Initial register values; registers not named start at zero.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regs: BTreeMap<Reg, RegValue>,
    #[serde(default)]
    pub sysregs: SysRegs,
    #[serde(default)]
    pub vmm: Vmm,
    #[serde(default)]
    pub observe: Observe,
    #[serde(default)]
    pub limits: Limits,
    /// A pinned expected outcome (regression cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Outcome>,
    #[serde(default)]
    pub provenance: Provenance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Cmo,
    Fp32,
    Mmio,
    Devmem,
    Icache,
    /// Anything else (fuzzer finds that left their family, hand-written cases).
    Misc,
}

impl Family {
    pub const ALL: [Family; 6] = [Family::Cmo, Family::Fp32, Family::Mmio, Family::Devmem, Family::Icache, Family::Misc];
    pub fn name(self) -> &'static str {
        match self {
            Family::Cmo => "cmo",
            Family::Fp32 => "fp32",
            Family::Mmio => "mmio",
            Family::Devmem => "devmem",
            Family::Icache => "icache",
            Family::Misc => "misc",
        }
    }
}

/// Instruction set the case's code is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isa {
    A64,
    A32,
    T32,
}

impl Isa {
    pub fn is_aarch32(self) -> bool {
        self != Isa::A64
    }
    /// Required alignment of an instruction address.
    pub fn insn_align(self) -> u64 {
        if self == Isa::T32 {
            2
        } else {
            4
        }
    }
}

/// Exception level the case's code runs at (the runtime itself always runs at EL1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum El {
    El0,
    El1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecState {
    pub isa: Isa,
    pub el: El,
    /// What the runtime does after recording a guest exception.
    #[serde(default)]
    pub on_exception: ExceptionAction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionAction {
    /// Resume after the faulting instruction (ELR + instruction size).
    #[default]
    Skip,
    /// End the case.
    End,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    #[serde(with = "hex::u64")]
    pub ipa: u64,
    #[serde(with = "hex::u64")]
    pub size: u64,
    pub kind: RegionKind,
    /// Stage-2 attribute of a `device` region (default Device-nGnRE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s2: Option<S2Attr>,
    /// Stage-1 mapping; default Normal-WB (Device-nGnRnE for mmio/device), RWX, EL0 access
    /// when the case runs at EL0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s1: Option<S1>,
    /// Byte every location starts with, before `init` (RAM kinds only).
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub fill: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<Init>,
    /// This region's first page holds the level-3 stage-1 table that maps the named region
    /// (which must lie in one 2 MiB block), instead of the runtime's table area: the stage-1
    /// walk for that region reads this region's memory, as a guest whose page tables are
    /// baked into a read-only firmware image does. The page's `init` must hold exactly the
    /// table the harness builds (`gen-suite` writes it; lowering checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s1_table_for: Option<String>,
}

/// Span of one level-3 stage-1 table with the 4 KiB granule: 512 entries of one page each
/// (Arm ARM D8.2.7 "Translation using the 4KB granule"; LPAE G5.4, the same at level 3).
pub const S1_LEAF_TABLE_SPAN: u64 = 2 << 20;

fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// Writable memslot.
    Ram,
    /// Read-only memslot (`KVM_MEM_READONLY`): reads hit memory, writes exit as MMIO.
    RoRam,
    /// No memslot: every access is an MMIO (or NISV) exit.
    Mmio,
    /// Memory with a device stage-2 attribute (`s2`).
    Device,
}

impl RegionKind {
    pub fn has_memory(self) -> bool {
        self != RegionKind::Mmio
    }
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Ram => "ram",
            RegionKind::RoRam => "ro_ram",
            RegionKind::Mmio => "mmio",
            RegionKind::Device => "device",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S1 {
    pub attr: S1Attr,
    #[serde(default)]
    pub perm: S1Perm,
    /// Accessible from EL0 (AP[1]); default: when the case runs at EL0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub el0: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S1Perm {
    #[default]
    Rwx,
    Rw,
    Rx,
    R,
    /// No stage-1 mapping: accesses take a translation fault at stage 1.
    Unmapped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Init {
    #[serde(with = "hex::u64")]
    pub offset: u64,
    #[serde(with = "hex::bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    /// Where the first instruction is; must lie in a `ram` or `ro_ram` region.
    #[serde(with = "hex::u64")]
    pub ipa: u64,
    pub insns: Vec<Insn>,
}

impl Code {
    /// Size in bytes of the code in `isa`.
    pub fn size(&self, isa: Isa) -> u64 {
        self.insns.iter().map(|i| u64::from(i.size(isa))).sum()
    }
    /// The code's bytes as they sit in memory (little-endian; T32 halfword by halfword).
    pub fn bytes(&self, isa: Isa) -> Vec<u8> {
        let mut out = Vec::new();
        for i in &self.insns {
            match i.size(isa) {
                2 => out.extend_from_slice(&(i.w as u16).to_le_bytes()),
                _ if isa == Isa::T32 => {
                    out.extend_from_slice(&((i.w >> 16) as u16).to_le_bytes());
                    out.extend_from_slice(&(i.w as u16).to_le_bytes());
                }
                _ => out.extend_from_slice(&i.w.to_le_bytes()),
            }
        }
        out
    }
    /// Address of each instruction.
    pub fn addresses(&self, isa: Isa) -> Vec<u64> {
        let mut a = self.ipa;
        self.insns
            .iter()
            .map(|i| {
                let here = a;
                a += u64::from(i.size(isa));
                here
            })
            .collect()
    }
}

/// One instruction: the word is authoritative, `asm` is for people.
/// A 32-bit T32 instruction is stored as `first_halfword << 16 | second_halfword`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insn {
    #[serde(with = "hex::u32")]
    pub w: u32,
    #[serde(default)]
    pub asm: String,
}

impl Insn {
    pub fn new(w: u32, asm: impl Into<String>) -> Insn {
        Insn { w, asm: asm.into() }
    }
    /// Size in bytes. T32: 16-bit unless the (first) halfword starts 0b11101/0b11110/0b11111
    /// (Arm ARM F3.1 "T32 instruction set encoding").
    pub fn size(&self, isa: Isa) -> u8 {
        if isa == Isa::T32 && self.w <= 0xffff {
            2
        } else {
            4
        }
    }
}

/// T32: whether a first halfword begins a 32-bit instruction.
pub fn t32_is_32bit(hw1: u16) -> bool {
    (hw1 >> 11) >= 0b11101
}

/// A register a case sets or observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reg {
    /// A64 X0..X30.
    X(u8),
    /// A64 SP of the case's EL.
    Sp,
    /// AArch32 R0..R14 (R13 = SP, R14 = LR of the case's mode).
    R(u8),
    /// V0..V31 (A64) or Q0..Q15 (AArch32): 128 bits.
    Q(u8),
    /// D0..D31: 64 bits (the low half of V<n> in A64; AArch32 D<n>).
    D(u8),
}

impl Reg {
    pub fn valid_for(self, isa: Isa) -> bool {
        match self {
            Reg::X(n) => isa == Isa::A64 && n <= 30,
            Reg::Sp => isa == Isa::A64,
            Reg::R(n) => isa.is_aarch32() && n <= 14,
            Reg::Q(n) => n <= if isa == Isa::A64 { 31 } else { 15 },
            Reg::D(n) => n <= 31,
        }
    }
    /// Bits the register holds.
    pub fn bits(self) -> u32 {
        match self {
            Reg::Q(_) => 128,
            Reg::R(_) => 32,
            _ => 64,
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Reg::X(n) => write!(f, "x{n}"),
            Reg::Sp => f.write_str("sp"),
            Reg::R(n) => write!(f, "r{n}"),
            Reg::Q(n) => write!(f, "q{n}"),
            Reg::D(n) => write!(f, "d{n}"),
        }
    }
}

impl FromStr for Reg {
    type Err = String;
    fn from_str(s: &str) -> Result<Reg, String> {
        let err = || format!("`{s}` is not a register (x0-x30, sp, r0-r14, q0-q31, d0-d31)");
        if s == "sp" {
            return Ok(Reg::Sp);
        }
        // Split after the first char, not the first byte: "é1" must be an error, not a panic.
        let Some(first) = s.chars().next() else { return Err(err()) };
        let (p, n) = s.split_at(first.len_utf8());
        // Digits only: u8's parser also takes a leading '+'.
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: u8 = n.parse().map_err(|_| err())?;
        let r = match p {
            "x" => Reg::X(n),
            "r" => Reg::R(n),
            "q" | "v" => Reg::Q(n),
            "d" => Reg::D(n),
            _ => return Err(err()),
        };
        let ok = match r {
            Reg::X(n) => n <= 30,
            Reg::R(n) => n <= 14,
            Reg::Q(n) | Reg::D(n) => n <= 31,
            Reg::Sp => true,
        };
        if ok {
            Ok(r)
        } else {
            Err(err())
        }
    }
}

impl Serialize for Reg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reg, D::Error> {
        let s: String = Deserialize::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A register value up to 128 bits, written as hex in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegValue(pub u128);

impl Serialize for RegValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&format_args!("{:#x}", self.0))
        } else {
            s.serialize_u128(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for RegValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RegValue, D::Error> {
        if d.is_human_readable() {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum V {
                N(u64),
                S(String),
            }
            match V::deserialize(d)? {
                V::N(n) => Ok(RegValue(u128::from(n))),
                V::S(s) => hex::parse_u128(&s).map(RegValue).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a number"))),
            }
        } else {
            Ok(RegValue(u128::deserialize(d)?))
        }
    }
}

/// System registers the runtime's prologue applies before entering the case's code.
/// `None` means the runtime's default: FP/SIMD enabled, no alignment checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysRegs {
    /// CPACR_EL1 (A64) or CPACR (AArch32). Default: FP/SIMD enabled at EL0 and EL1.
    #[serde(default, with = "hex::opt_u64", skip_serializing_if = "Option::is_none")]
    pub cpacr: Option<u64>,
    /// AArch32 FPEXC. Default: EN set.
    #[serde(default, with = "hex::opt_u32", skip_serializing_if = "Option::is_none")]
    pub fpexc: Option<u32>,
    /// AArch32 FPSCR, or A64 FPCR.
    #[serde(default, with = "hex::opt_u32", skip_serializing_if = "Option::is_none")]
    pub fpscr: Option<u32>,
    /// SCTLR.A: alignment checking.
    #[serde(default)]
    pub align_check: bool,
    /// SCTLR.M: stage-1 translation on (the case's S1 attributes apply only then).
    #[serde(default = "yes")]
    pub mmu: bool,
    /// SCTLR.C/I: caches on.
    #[serde(default = "yes")]
    pub caches: bool,
    /// SCTLR_EL1.UCI/UCT/DZE: EL0 may do cache maintenance, read CTR_EL0, use DC ZVA.
    #[serde(default = "yes")]
    pub el0_cache_ops: bool,
}

fn yes() -> bool {
    true
}

impl Default for SysRegs {
    fn default() -> SysRegs {
        SysRegs { cpacr: None, fpexc: None, fpscr: None, align_check: false, mmu: true, caches: true, el0_cache_ops: true }
    }
}

/// The VMM's side of the case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vmm {
    /// Values successive MMIO reads return (low `len` bytes, little-endian); then `read_default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<RegValue>,
    #[serde(default = "default_read", with = "hex::u64")]
    pub read_default: u64,
    /// Enable KVM_CAP_ARM_NISV_TO_USER (api.rst 7.19).
    #[serde(default)]
    pub nisv_to_user: bool,
    /// What the VMM does with a KVM_EXIT_ARM_NISV.
    #[serde(default)]
    pub on_nisv: NisvAction,
    /// What the VMM does with a KVM_EXIT_MMIO.
    #[serde(default)]
    pub on_mmio: MmioAction,
}

/// Pattern returned by MMIO reads the case does not script: distinct bytes, so that the
/// width and sign-extension of a load show in the destination register.
pub const DEFAULT_MMIO_READ: u64 = 0x8877_6655_4433_2291;

fn default_read() -> u64 {
    DEFAULT_MMIO_READ
}

impl Default for Vmm {
    fn default() -> Vmm {
        Vmm { reads: Vec::new(), read_default: DEFAULT_MMIO_READ, nisv_to_user: false, on_nisv: NisvAction::default(), on_mmio: MmioAction::default() }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NisvAction {
    /// Inject a synchronous external data abort (KVM_SET_VCPU_EVENTS, ext_dabt_pending),
    /// as QEMU does.
    #[default]
    InjectAbort,
    /// Stop the case (a VMM that cannot emulate the access).
    Stop,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MmioAction {
    /// Emulate the access with the case's device model.
    #[default]
    Emulate,
    /// Inject a synchronous external data abort instead of completing the access.
    InjectAbort,
}

/// What the final state reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    /// Registers whose final values are compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regs: Vec<Reg>,
    /// Report FP control/status (FPEXC, FPSCR or FPCR/FPSR, CPACR) at the end.
    #[serde(default)]
    pub fp: bool,
    /// Byte windows whose final contents are reported (every region's digest always is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mem: Vec<MemWindow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemWindow {
    pub region: String,
    #[serde(with = "hex::u64")]
    pub offset: u64,
    pub len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock watchdog for the case, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
    /// Exceptions the runtime records before ending the case.
    #[serde(default = "default_max_exceptions")]
    pub max_exceptions: u32,
    /// VMM exits (MMIO, NISV) before the case is stopped.
    #[serde(default = "default_max_exits")]
    pub max_exits: u32,
}

fn default_timeout() -> u32 {
    2000
}
fn default_max_exceptions() -> u32 {
    abi::MAX_EXCEPTIONS as u32
}
fn default_max_exits() -> u32 {
    64
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { timeout_ms: default_timeout(), max_exceptions: default_max_exceptions(), max_exits: default_max_exits() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// `generator:<family>`, `fuzzer`, `regression`, `manual`.
    #[serde(default)]
    pub source: String,
    /// Free text: the generator's parameters, the bug report, the fix commit's subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// A commit this case comes from or checks (`<sha> ("subject")`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Regression cases: the refhyp quirk (`crate::quirk`) this case catches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quirk: Option<String>,
}

/// A problem with a case's meaning, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseError {
    /// JSON path of the offending field (`memory[1].size`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> CaseError {
    CaseError { field: field.into(), message: message.into() }
}

/// Register names that only exist in A64 / only in AArch32 assembly, to catch words of one
/// instruction set filed under the other.
/// (Each token is ASCII alphanumeric, so `t[1..]` never splits a character.)
fn mentions_a64_regs(asm: &str) -> bool {
    asm.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| (t.starts_with('x') || t.starts_with('w')) && t.len() > 1 && t[1..].parse::<u8>().is_ok_and(|n| n <= 30) || t == "xzr" || t == "wzr")
}
fn mentions_a32_regs(asm: &str) -> bool {
    asm.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| t.starts_with('r') && t.len() > 1 && t[1..].parse::<u8>().is_ok_and(|n| n <= 15))
}

impl Case {
    /// Check the case's meaning. Syntax and unknown fields are the parser's job.
    pub fn validate(&self) -> Result<(), CaseError> {
        if self.schema != SCHEMA_VERSION {
            return Err(err("schema", format!("unsupported schema version {} (this trapdiff reads version {SCHEMA_VERSION})", self.schema)));
        }
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            return Err(err("name", "must be non-empty and use only letters, digits, '-', '_', '.', '/'"));
        }
        if let Some(q) = &self.provenance.quirk {
            if crate::quirk::Quirk::from_name(q).is_none() {
                return Err(err("provenance.quirk", format!("unknown quirk `{q}` (`trapdiff quirks` lists them)")));
            }
        }
        let isa = self.state.isa;
        let limit = if isa.is_aarch32() { 1u64 << 32 } else { IPA_LIMIT };
        for (i, r) in self.memory.iter().enumerate() {
            let f = |s: &str| format!("memory[{i}].{s}");
            if r.name.is_empty() {
                return Err(err(f("name"), "must not be empty"));
            }
            if self.memory[..i].iter().any(|o| o.name == r.name) {
                return Err(err(f("name"), format!("region name `{}` is used twice", r.name)));
            }
            if r.size == 0 {
                return Err(err(f("size"), "must not be zero"));
            }
            if r.ipa % PAGE_SIZE != 0 {
                return Err(err(f("ipa"), format!("{:#x} is not aligned to the {PAGE_SIZE}-byte page the backends map", r.ipa)));
            }
            if r.size % PAGE_SIZE != 0 {
                return Err(err(f("size"), format!("{:#x} is not a multiple of the {PAGE_SIZE}-byte page the backends map", r.size)));
            }
            let Some(end) = r.ipa.checked_add(r.size) else {
                return Err(err(f("size"), format!("ipa {:#x} + size {:#x} overflows 64 bits", r.ipa, r.size)));
            };
            if end > limit {
                return Err(err(f("size"), format!("region ends past {limit:#x}, the highest address a {isa:?} case can use")));
            }
            if r.ipa < abi::RESERVED_END && end > abi::RESERVED_BASE {
                return Err(err(f("ipa"), format!("overlaps {:#x}..{:#x}, reserved for the guest runtime", abi::RESERVED_BASE, abi::RESERVED_END)));
            }
            if let Some((j, o)) = self.memory[..i].iter().enumerate().find(|(_, o)| r.ipa < o.ipa + o.size && o.ipa < end) {
                return Err(err(f("ipa"), format!("region `{}` overlaps region `{}` (memory[{j}])", r.name, o.name)));
            }
            if r.s2.is_some() && r.kind != RegionKind::Device {
                return Err(err(f("s2"), "only a `device` region has a stage-2 attribute of its own"));
            }
            if !r.kind.has_memory() && (!r.init.is_empty() || r.fill != 0) {
                return Err(err(f("init"), "an `mmio` region has no memory to initialise (reads come from vmm.reads)"));
            }
            for (k, init) in r.init.iter().enumerate() {
                let Some(end) = init.offset.checked_add(init.bytes.len() as u64) else {
                    let m = format!("offset {:#x} + {} bytes overflows 64 bits", init.offset, init.bytes.len());
                    return Err(err(f(&format!("init[{k}].offset")), m));
                };
                if end > r.size {
                    return Err(err(f(&format!("init[{k}]")), "extends past the end of the region"));
                }
            }
        }
        for (i, r) in self.memory.iter().enumerate() {
            let Some(t) = &r.s1_table_for else { continue };
            let f = format!("memory[{i}].s1_table_for");
            let Some(target) = self.region(t) else {
                return Err(err(f, format!("no region is called `{t}`")));
            };
            if target.name == r.name || !matches!(r.kind, RegionKind::Ram | RegionKind::RoRam) || !self.sysregs.mmu {
                return Err(err(f, "a `ram` or `ro_ram` region can hold the stage-1 table of another region, with the MMU on"));
            }
            // No overflow: the loop above checked every region's ipa + size.
            if target.ipa / S1_LEAF_TABLE_SPAN != (target.ipa + target.size - 1) / S1_LEAF_TABLE_SPAN {
                return Err(err(f, format!("region `{t}` spans more than one {S1_LEAF_TABLE_SPAN:#x}-byte block, so more than one level-3 table")));
            }
            let same_block = |o: &Region| o.ipa / S1_LEAF_TABLE_SPAN == target.ipa / S1_LEAF_TABLE_SPAN;
            if self.memory[..i].iter().any(|o| o.s1_table_for.as_deref().and_then(|n| self.region(n)).is_some_and(same_block)) {
                return Err(err(f, "another region already holds the table for that block"));
            }
        }
        let total: u64 = self.memory.iter().filter(|r| r.kind.has_memory()).map(|r| r.size).fold(0, u64::saturating_add);
        if total > MAX_CASE_MEMORY {
            return Err(err("memory", format!("regions with memory total {total:#x} bytes; a case may use at most {MAX_CASE_MEMORY:#x}")));
        }
        // Code.
        if self.code.insns.is_empty() {
            return Err(err("code.insns", "a case needs at least one instruction"));
        }
        if !self.code.ipa.is_multiple_of(isa.insn_align()) {
            return Err(err("code.ipa", format!("{:#x} is not {}-byte aligned as {isa:?} code must be", self.code.ipa, isa.insn_align())));
        }
        let code_end = self.code.ipa.checked_add(self.code.size(isa)).and_then(|e| e.checked_add(abi::code_trailer_size(isa)));
        let Some(code_end) = code_end else {
            return Err(err("code.ipa", format!("{:#x} plus the code's size and end marker overflows 64 bits", self.code.ipa)));
        };
        match self.region_at(self.code.ipa) {
            Some(r) if matches!(r.kind, RegionKind::Ram | RegionKind::RoRam) => {
                if code_end > r.ipa + r.size {
                    return Err(err("code", format!("code (with the runtime's end marker) runs past the end of region `{}`", r.name)));
                }
            }
            Some(r) => {
                return Err(err("code.ipa", format!("code is in region `{}` of kind {}; it must be in `ram` or `ro_ram`", r.name, r.kind.name())));
            }
            None => return Err(err("code.ipa", format!("{:#x} is outside every region: code must be in RAM", self.code.ipa))),
        }
        for (k, insn) in self.code.insns.iter().enumerate() {
            let f = format!("code.insns[{k}]");
            match isa {
                Isa::A64 if mentions_a32_regs(&insn.asm) => {
                    return Err(err(f, format!("`{}` names AArch32 registers but the case is A64", insn.asm)));
                }
                Isa::A32 | Isa::T32 if mentions_a64_regs(&insn.asm) => {
                    return Err(err(f, format!("`{}` is A64 assembly but the case is {isa:?}: A64 words in an AArch32 case?", insn.asm)));
                }
                Isa::T32 if insn.w > 0xffff && !t32_is_32bit((insn.w >> 16) as u16) => {
                    return Err(err(f, format!("{:#x} is not a T32 instruction: its first halfword does not start a 32-bit encoding", insn.w)));
                }
                Isa::T32 if insn.w <= 0xffff && t32_is_32bit(insn.w as u16) => {
                    return Err(err(f, format!("{:#06x} is the first half of a 32-bit T32 instruction; write both halfwords", insn.w)));
                }
                _ => {}
            }
        }
        for (reg, v) in &self.regs {
            if !reg.valid_for(isa) {
                return Err(err(format!("regs.{reg}"), format!("not a register of a {isa:?} case")));
            }
            if reg.bits() < 128 && v.0 >> reg.bits() != 0 {
                return Err(err(format!("regs.{reg}"), format!("{:#x} does not fit in {} bits", v.0, reg.bits())));
            }
        }
        for (k, reg) in self.observe.regs.iter().enumerate() {
            if !reg.valid_for(isa) {
                return Err(err(format!("observe.regs[{k}]"), format!("`{reg}` is not a register of a {isa:?} case")));
            }
        }
        for (k, w) in self.observe.mem.iter().enumerate() {
            let f = format!("observe.mem[{k}]");
            let Some(r) = self.memory.iter().find(|r| r.name == w.region) else {
                return Err(err(f, format!("no region named `{}`", w.region)));
            };
            if !r.kind.has_memory() {
                return Err(err(f, format!("region `{}` is mmio: it has no memory to observe", r.name)));
            }
            let Some(end) = w.offset.checked_add(u64::from(w.len)) else {
                return Err(err(format!("{f}.offset"), format!("{:#x} plus len {} overflows 64 bits", w.offset, w.len)));
            };
            if end > r.size || w.len > abi::MAX_WINDOW {
                return Err(err(f, format!("window must lie inside the region and be at most {} bytes", abi::MAX_WINDOW)));
            }
        }
        if self.sysregs.fpexc.is_some() && isa == Isa::A64 {
            return Err(err("sysregs.fpexc", "FPEXC only exists for AArch32 cases"));
        }
        if self.limits.max_exceptions as usize > abi::MAX_EXCEPTIONS {
            return Err(err("limits.max_exceptions", format!("at most {} (the runtime's report page holds that many)", abi::MAX_EXCEPTIONS)));
        }
        if self.limits.timeout_ms == 0 {
            return Err(err("limits.timeout_ms", "must not be zero"));
        }
        Ok(())
    }

    pub fn region_at(&self, ipa: u64) -> Option<&Region> {
        self.memory.iter().find(|r| ipa >= r.ipa && ipa - r.ipa < r.size)
    }
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.memory.iter().find(|r| r.name == name)
    }

    /// Initial bytes of a region with memory (fill, then init, then the code if it lies there).
    pub fn initial_bytes(&self, r: &Region) -> Vec<u8> {
        let mut mem = alloc::vec![r.fill; r.size as usize];
        for i in &r.init {
            let o = i.offset as usize;
            mem[o..o + i.bytes.len()].copy_from_slice(&i.bytes);
        }
        if self.code.ipa >= r.ipa && self.code.ipa < r.ipa + r.size {
            let off = (self.code.ipa - r.ipa) as usize;
            let mut code = self.code.bytes(self.state.isa);
            code.extend_from_slice(&abi::code_trailer(self.state.isa));
            let n = code.len().min(mem.len() - off);
            mem[off..off + n].copy_from_slice(&code[..n]);
        }
        mem
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Isa::A64 => "A64",
            Isa::A32 => "A32",
            Isa::T32 => "T32",
        })
    }
}

impl Family {
    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[allow(dead_code)]
fn _assert_to_string(r: Reg) -> String {
    r.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_names_parse_strictly_and_never_panic() {
        assert_eq!("x30".parse::<Reg>(), Ok(Reg::X(30)));
        assert_eq!("v31".parse::<Reg>(), Ok(Reg::Q(31)));
        assert_eq!("sp".parse::<Reg>(), Ok(Reg::Sp));
        for bad in ["", "x", "x31", "x+1", "x-1", "é1", "x١", "ｘ0", "\u{301}", "r15", "q32"] {
            assert!(bad.parse::<Reg>().is_err(), "{bad:?} parsed");
        }
    }
}
