//! A small builder the family generators share: the standard memory layout, the code region,
//! and the last step that disassembles every word and validates the case.
//!
//! ```text
//!   0x4000_0000  CODE_IPA    "code": RAM, 4 KiB, the case's instructions (+ end marker)
//!   0x5000_0000  TARGET_IPA  "target": the region under test (kind varies), 8 KiB
//!   0x6000_0000  AUX_IPA     "aux": a second region (an MMIO hole or data RAM) when needed
//! ```
//! All below 4 GiB (AArch32 cases) and outside the runtime's reserved 0x1000_0000..0x2000_0000.

use std::collections::BTreeMap;

use trapdiff_arch::case::{
    Case, Code, El, ExceptionAction, ExecState, Family, Init, Isa, Limits, MemWindow, Observe, Provenance, Reg, RegValue, Region, RegionKind, SysRegs, Vmm, S1,
    SCHEMA_VERSION,
};

use super::SuiteError;
use crate::encode::{Disassembler, Word};

pub const CODE_IPA: u64 = 0x4000_0000;
pub const CODE_SIZE: u64 = 0x1000;
pub const TARGET_IPA: u64 = 0x5000_0000;
pub const TARGET_SIZE: u64 = 0x2000;
pub const AUX_IPA: u64 = 0x6000_0000;
pub const AUX_SIZE: u64 = 0x1000;

/// A region with no stage-1 override, no fill and no initial contents.
pub fn region(name: &str, ipa: u64, size: u64, kind: RegionKind) -> Region {
    Region { name: name.into(), ipa, size, kind, s2: None, s1: None, fill: 0, init: Vec::new(), s1_table_for: None }
}

/// A region's initial bytes at `offset`.
pub fn init(offset: u64, bytes: Vec<u8>) -> Init {
    Init { offset, bytes }
}

/// A stage-1 mapping with `attr`, default permissions.
pub fn s1(attr: trapdiff_arch::memattr::S1Attr) -> S1 {
    S1 { attr, perm: Default::default(), el0: None }
}

/// A case under construction. Fields are public: generators set what the helpers don't cover.
#[derive(Debug)]
pub struct Builder {
    pub case: Case,
    pub words: Vec<Word>,
}

impl Builder {
    /// A case named `<family>/<name>` whose code sits at [`CODE_IPA`] in a 4 KiB RAM region.
    pub fn new(family: Family, name: &str, isa: Isa, el: El) -> Builder {
        let case = Case {
            schema: SCHEMA_VERSION,
            name: format!("{}/{name}", family.name()),
            family,
            description: String::new(),
            state: ExecState { isa, el, on_exception: ExceptionAction::Skip },
            memory: vec![region("code", CODE_IPA, CODE_SIZE, RegionKind::Ram)],
            code: Code { ipa: CODE_IPA, insns: Vec::new() },
            regs: BTreeMap::new(),
            sysregs: SysRegs::default(),
            vmm: Vmm::default(),
            observe: Observe::default(),
            limits: Limits::default(),
            expect: None,
            provenance: Provenance { source: format!("generator:{}", family.name()), detail: String::new(), commit: None, quirk: None },
        };
        Builder { case, words: Vec::new() }
    }

    pub fn describe(mut self, text: impl Into<String>) -> Builder {
        self.case.description = text.into();
        self
    }

    /// The generator's parameters, for `provenance.detail`.
    pub fn detail(mut self, text: impl Into<String>) -> Builder {
        self.case.provenance.detail = text.into();
        self
    }

    pub fn region(mut self, r: Region) -> Builder {
        self.case.memory.push(r);
        self
    }

    pub fn code(mut self, words: impl IntoIterator<Item = Word>) -> Builder {
        self.words.extend(words);
        self
    }

    pub fn reg(mut self, r: Reg, v: u128) -> Builder {
        self.case.regs.insert(r, RegValue(v));
        self
    }

    pub fn observe(mut self, regs: &[Reg]) -> Builder {
        for r in regs {
            if !self.case.observe.regs.contains(r) {
                self.case.observe.regs.push(*r);
            }
        }
        self
    }

    pub fn observe_fp(mut self) -> Builder {
        self.case.observe.fp = true;
        self
    }

    pub fn window(mut self, region: &str, offset: u64, len: u32) -> Builder {
        self.case.observe.mem.push(MemWindow { region: region.into(), offset, len });
        self
    }

    pub fn sysregs(mut self, f: impl FnOnce(&mut SysRegs)) -> Builder {
        f(&mut self.case.sysregs);
        self
    }

    pub fn vmm(mut self, f: impl FnOnce(&mut Vmm)) -> Builder {
        f(&mut self.case.vmm);
        self
    }

    pub fn on_exception(mut self, a: ExceptionAction) -> Builder {
        self.case.state.on_exception = a;
        self
    }

    /// Disassemble the words (at their addresses) and validate the case.
    pub fn build(mut self, dis: &Disassembler) -> Result<Case, SuiteError> {
        let isa = self.case.state.isa;
        self.case.code.insns = dis.insns(isa, self.case.code.ipa, &self.words).map_err(|source| SuiteError::Disasm { case: self.case.name.clone(), source })?;
        self.case.validate().map_err(|source| SuiteError::Invalid { case: self.case.name.clone(), source })?;
        Ok(self.case)
    }
}
