//! The five families' generators: parameter sweeps that produce the curated suite's cases.
//! Each module's `generate` returns its cases in a fixed order (the suite is deterministic).

pub mod cmo;
pub mod devmem;
pub mod fp32;
pub mod icache;
pub mod mmio;

use trapdiff_arch::case::{Case, El, Family, Isa};

use crate::encode::Disassembler;
use crate::suite::SuiteError;

/// The families that have generators, in suite order.
pub const ALL: [Family; 5] = [Family::Cmo, Family::Fp32, Family::Mmio, Family::Devmem, Family::Icache];

/// The cases of one family.
pub fn generate(family: Family, dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    match family {
        Family::Cmo => cmo::generate(dis),
        Family::Fp32 => fp32::generate(dis),
        Family::Mmio => mmio::generate(dis),
        Family::Devmem => devmem::generate(dis),
        Family::Icache => icache::generate(dis),
        Family::Misc => Ok(Vec::new()),
    }
}

/// Short names used in case names.
pub(crate) fn el_name(el: El) -> &'static str {
    match el {
        El::El0 => "el0",
        El::El1 => "el1",
    }
}

pub(crate) fn isa_name(isa: Isa) -> &'static str {
    match isa {
        Isa::A64 => "a64",
        Isa::A32 => "a32",
        Isa::T32 => "t32",
    }
}
