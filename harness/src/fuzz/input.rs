//! The fuzzer's input: a whole case (`trapdiff_arch::Case`), structured and serialisable,
//! so that every corpus entry and every find is a case file `trapdiff run`/`replay` load.

use std::hash::{Hash, Hasher};

use libafl::corpus::CorpusId;
use libafl::inputs::Input;
use serde::{Deserialize, Serialize};
use trapdiff_arch::case::{Code, ExecState, Insn, Limits, Observe, Provenance, Reg, RegValue, SysRegs, Vmm, SCHEMA_VERSION};
use trapdiff_arch::memattr::S2Attr;
use trapdiff_arch::{Case, El, Family, Isa, Region, RegionKind};

/// A case as a LibAFL input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseInput(pub Case);

/// Serialised as the case's JSON text: LibAFL moves inputs between clients with postcard,
/// which cannot read the outcome's internally tagged enums (a pinned `expect`), and JSON is
/// what every other tool reads anyway.
impl Serialize for CaseInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for CaseInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CaseInput, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map(CaseInput).map_err(serde::de::Error::custom)
    }
}

impl Hash for CaseInput {
    /// `Case` holds no floats or maps with unstable order, so its JSON bytes identify it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match serde_json::to_vec(&self.0) {
            Ok(b) => b.hash(state),
            Err(_) => self.0.name.hash(state),
        }
    }
}

impl Input for CaseInput {
    fn generate_name(&self, id: Option<CorpusId>) -> String {
        match id {
            Some(id) => format!("{}-{}", id.0, self.0.name.replace('/', "_")),
            None => self.0.name.replace('/', "_"),
        }
    }
}

impl CaseInput {
    pub fn case(&self) -> &Case {
        &self.0
    }
}

/// IPAs of the built-in seeds' regions (below 4 GiB so AArch32 cases can use them, above the
/// runtime's reserved window; see `trapdiff_arch::abi`).
pub const SEED_CODE: u64 = 0x4010_0000;
pub const SEED_DATA: u64 = 0x4020_0000;
pub const SEED_MMIO: u64 = 0x5000_0000;
pub const SEED_DEVICE: u64 = 0x5010_0000;

/// Small cases covering every ISA and region kind, for when no corpus is given (and for the
/// tests). Each has code in RAM, a RAM data page, an MMIO hole and a device page, with x0/r0
/// pointing into the MMIO hole and x1/r1 into RAM.
pub fn builtin_seeds() -> Vec<Case> {
    let d = guest_payloads::encode::Disassembler::new().ok();
    let mut out = Vec::new();
    for isa in [Isa::A64, Isa::A32, Isa::T32] {
        use guest_payloads::encode::{a32, a64, t32};
        let words: Vec<u32> = match isa {
            Isa::A64 => vec![a64::ldr(a64::Size::W, 2, 0, 0), a64::str(a64::Size::X, 2, 1, 8), a64::cmo(a64::Cmo::DcCivac, 1)],
            Isa::A32 => vec![
                a32::ldst(a32::Op::Load, a32::Size::W, 2, 0, a32::Addr::Offset(0)),
                a32::ldst(a32::Op::Store, a32::Size::W, 2, 1, a32::Addr::Offset(8)),
                a32::vmrs(3, trapdiff_arch::sysreg::vfp_sysreg::FPEXC),
            ],
            Isa::T32 => vec![t32::ldst16(a32::Op::Load, a32::Size::W, 2, 0, 0), t32::ldst16(a32::Op::Store, a32::Size::W, 2, 1, 8), t32::nop()],
        };
        let insns = words.iter().map(|w| Insn::new(*w, d.as_ref().and_then(|d| d.disasm(isa, *w).ok()).unwrap_or_default())).collect();
        let (a, b, obs) = if isa == Isa::A64 { (Reg::X(0), Reg::X(1), Reg::X(2)) } else { (Reg::R(0), Reg::R(1), Reg::R(2)) };
        let region =
            |name: &str, ipa, kind| Region { name: name.into(), ipa, size: 0x1000, kind, s2: None, s1: None, fill: 0, init: Vec::new(), s1_table_for: None };
        let mut device = region("dev", SEED_DEVICE, RegionKind::Device);
        device.s2 = Some(S2Attr::DeviceNGnRE);
        out.push(Case {
            schema: SCHEMA_VERSION,
            name: format!("fuzz/seed/{}", isa.to_string().to_ascii_lowercase()),
            family: Family::Misc,
            description: "built-in fuzzer seed".into(),
            state: ExecState { isa, el: El::El1, on_exception: Default::default() },
            memory: vec![
                region("code", SEED_CODE, RegionKind::Ram),
                region("data", SEED_DATA, RegionKind::Ram),
                region("mmio", SEED_MMIO, RegionKind::Mmio),
                device,
            ],
            code: Code { ipa: SEED_CODE, insns },
            regs: [(a, RegValue(u128::from(SEED_MMIO))), (b, RegValue(u128::from(SEED_DATA)))].into_iter().collect(),
            sysregs: SysRegs::default(),
            vmm: Vmm::default(),
            observe: Observe { regs: vec![obs], fp: isa.is_aarch32(), mem: Vec::new() },
            limits: Limits::default(),
            expect: None,
            provenance: Provenance { source: "fuzzer".into(), detail: "built-in seed".into(), commit: None, quirk: None },
        });
    }
    out
}
