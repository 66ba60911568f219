//! Capstone disassembly of single words, as stored beside them in cases (`Insn::asm`).

use std::fmt;

use capstone::arch::{self, BuildsCapstone, BuildsCapstoneExtraMode};
use capstone::Capstone;
use trapdiff_arch::case::{Insn, Isa};

use super::Word;

/// Why a word could not be disassembled.
#[derive(Debug)]
pub enum DisasmError {
    /// Capstone could not be set up for {0}: {1}
    Setup(Isa, capstone::Error),
    /// Capstone does not decode the word at all.
    Undecodable(Isa, Word),
    /// Capstone decoded a different length than the word has (a T32 halfword/word mix-up).
    Length { isa: Isa, w: Word, decoded: usize, expected: usize },
}

impl fmt::Display for DisasmError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DisasmError::Setup(isa, e) => write!(f, "cannot set up Capstone for {isa}: {e} (was capstone built with arch_arm/arch_arm64?)"),
            DisasmError::Undecodable(isa, w) => {
                write!(f, "Capstone does not decode {w:#010x} as {isa}: check the encoder that produced it")
            }
            DisasmError::Length { isa, w, decoded, expected } => write!(
                f,
                "Capstone decodes {w:#010x} as a {decoded}-byte {isa} instruction, not {expected} bytes: \
                 a 32-bit T32 word must be stored as hw1 << 16 | hw2"
            ),
        }
    }
}

impl std::error::Error for DisasmError {}

/// One Capstone handle per instruction set (building a handle is not free; keep one around).
pub struct Disassembler {
    a64: Capstone,
    a32: Capstone,
    t32: Capstone,
}

impl fmt::Debug for Disassembler {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Disassembler(capstone: a64, a32, t32)")
    }
}

impl Disassembler {
    pub fn new() -> Result<Disassembler, DisasmError> {
        let a64 = Capstone::new().arm64().mode(arch::arm64::ArchMode::Arm).build().map_err(|e| DisasmError::Setup(Isa::A64, e))?;
        // V8: the Armv8 AArch32 additions (LDA/STL, LDAEX, DMB/DSB options).
        let v8 = || [arch::arm::ArchExtraMode::V8].into_iter();
        let a32 = Capstone::new().arm().mode(arch::arm::ArchMode::Arm).extra_mode(v8()).build().map_err(|e| DisasmError::Setup(Isa::A32, e))?;
        let t32 = Capstone::new().arm().mode(arch::arm::ArchMode::Thumb).extra_mode(v8()).build().map_err(|e| DisasmError::Setup(Isa::T32, e))?;
        Ok(Disassembler { a64, a32, t32 })
    }

    /// The word's bytes as they sit in memory.
    pub fn bytes(isa: Isa, w: Word) -> Vec<u8> {
        match isa {
            Isa::T32 if w <= 0xffff => (w as u16).to_le_bytes().to_vec(),
            Isa::T32 => {
                let mut b = ((w >> 16) as u16).to_le_bytes().to_vec();
                b.extend_from_slice(&(w as u16).to_le_bytes());
                b
            }
            _ => w.to_le_bytes().to_vec(),
        }
    }

    /// `mnemonic operands` as Capstone prints it, for a word at address `pc` (PC-relative
    /// targets print as absolute addresses).
    pub fn disasm_at(&self, isa: Isa, w: Word, pc: u64) -> Result<String, DisasmError> {
        let cs = match isa {
            Isa::A64 => &self.a64,
            Isa::A32 => &self.a32,
            Isa::T32 => &self.t32,
        };
        let bytes = Self::bytes(isa, w);
        let insns = cs.disasm_count(&bytes, pc, 1).map_err(|_| DisasmError::Undecodable(isa, w))?;
        let Some(i) = insns.iter().next() else {
            return Err(DisasmError::Undecodable(isa, w));
        };
        if i.bytes().len() != bytes.len() {
            return Err(DisasmError::Length { isa, w, decoded: i.bytes().len(), expected: bytes.len() });
        }
        let m = i.mnemonic().unwrap_or("");
        let o = i.op_str().unwrap_or("");
        Ok(if o.is_empty() { m.to_string() } else { format!("{m} {o}") })
    }

    /// Disassembly of a word at address 0.
    pub fn disasm(&self, isa: Isa, w: Word) -> Result<String, DisasmError> {
        self.disasm_at(isa, w, 0)
    }

    /// Words laid out from `base`, each with its disassembly.
    pub fn insns(&self, isa: Isa, base: u64, words: &[Word]) -> Result<Vec<Insn>, DisasmError> {
        let mut pc = base;
        let mut out = Vec::with_capacity(words.len());
        for &w in words {
            out.push(Insn::new(w, self.disasm_at(isa, w, pc)?));
            pc += if isa == Isa::T32 && w <= 0xffff { 2 } else { 4 };
        }
        Ok(out)
    }
}

/// Disassembly text in a comparable form: lower case, no `#`, single spaces, no space after a
/// comma. Case files' `asm`, Capstone's text and waiver patterns all meet in this form.
pub fn normalise(asm: &str) -> String {
    asm.to_ascii_lowercase().replace('#', "").split_whitespace().collect::<Vec<_>>().join(" ").replace(", ", ",")
}

/// Whether two disassembly texts say the same instruction (see [`normalise`]).
pub fn same_text(a: &str, b: &str) -> bool {
    normalise(a) == normalise(b)
}
