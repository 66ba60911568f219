//! Instruction encoders: typed builders that return instruction words for A64, A32 and T32.
//!
//! Every builder returns the word exactly as `trapdiff_arch::case::Insn::w` stores it (a 32-bit
//! T32 instruction as `first_halfword << 16 | second_halfword`). Immediates out of range are
//! programming errors of the generator that called the builder, so builders panic with a
//! message naming the field instead of silently truncating it.
//!
//! [`disasm`] prints a word the way Capstone does; the tests of each encoder check every
//! builder against it, and the family generators store it beside each word.

pub mod a32;
pub mod a64;
pub mod disasm;
pub mod t32;

pub use disasm::{normalise, same_text, DisasmError, Disassembler};

/// An instruction word (T32 32-bit: `hw1 << 16 | hw2`; T32 16-bit: the halfword).
pub type Word = u32;

/// Check that `v` fits in an unsigned field of `bits` bits, then return it as a u32.
#[track_caller]
pub(crate) fn ufield(v: u64, bits: u32, what: &str) -> u32 {
    assert!(v < (1u64 << bits), "{what} = {v:#x} does not fit in {bits} unsigned bits");
    v as u32
}

/// Check that `v` fits in a signed field of `bits` bits, then return its two's-complement
/// low `bits` bits.
#[track_caller]
pub(crate) fn sfield(v: i64, bits: u32, what: &str) -> u32 {
    let lim = 1i64 << (bits - 1);
    assert!((-lim..lim).contains(&v), "{what} = {v} does not fit in {bits} signed bits");
    (v as u32) & ((1u32 << bits) - 1)
}

/// Check a byte offset is a multiple of `scale` and return offset / scale.
#[track_caller]
pub(crate) fn scaled(off: i64, scale: i64, what: &str) -> i64 {
    assert!(off % scale == 0, "{what} = {off} is not a multiple of the access size {scale}");
    off / scale
}

/// Condition codes (Arm ARM C1.2.4 / F1.3): the same numbering in A64, A32 and T32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq = 0,
    Ne = 1,
    Hs = 2,
    Lo = 3,
    Mi = 4,
    Pl = 5,
    Vs = 6,
    Vc = 7,
    Hi = 8,
    Ls = 9,
    Ge = 10,
    Lt = 11,
    Gt = 12,
    Le = 13,
    Al = 14,
}

/// Memory-barrier domain/type option (CRm of DSB/DMB; Arm ARM C6.2.110 DSB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Barrier {
    Sy = 0b1111,
    St = 0b1110,
    Ld = 0b1101,
    Ish = 0b1011,
    Ishst = 0b1010,
    Ishld = 0b1001,
    Nsh = 0b0111,
    Osh = 0b0011,
}

/// Check every `(word, expected Capstone text)` pair and report all disagreements at once.
#[cfg(test)]
pub(crate) fn check_disasm(isa: trapdiff_arch::case::Isa, cases: &[(Word, &str)]) {
    let d = Disassembler::new().expect("capstone must build with arch_arm and arch_arm64");
    let mut bad = Vec::new();
    for (w, want) in cases {
        match d.disasm(isa, *w) {
            Ok(got) if got == *want => {}
            got => bad.push(format!("{w:#010x}: want `{want}`, capstone says {got:?}")),
        }
    }
    assert!(bad.is_empty(), "{} of {} {isa} encodings disagree with Capstone:\n{}", bad.len(), cases.len(), bad.join("\n"));
}
