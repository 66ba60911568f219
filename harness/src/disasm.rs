//! Capstone disassembly of case code, one engine per instruction set and thread.

use std::cell::RefCell;

use capstone::prelude::*;
use trapdiff_arch::case::{Insn, Isa};

thread_local! {
    static ENGINES: RefCell<Option<[Capstone; 3]>> = const { RefCell::new(None) };
}

fn engines() -> Option<[Capstone; 3]> {
    let a64 = Capstone::new().arm64().mode(arch::arm64::ArchMode::Arm).build().ok()?;
    let a32 = Capstone::new().arm().mode(arch::arm::ArchMode::Arm).extra_mode([arch::arm::ArchExtraMode::V8].into_iter()).build().ok()?;
    let t32 = Capstone::new().arm().mode(arch::arm::ArchMode::Thumb).extra_mode([arch::arm::ArchExtraMode::V8].into_iter()).build().ok()?;
    Some([a64, a32, t32])
}

/// Disassemble `bytes` at `addr`: one `mnemonic operands` text per instruction decoded.
pub fn bytes(isa: Isa, bytes: &[u8], addr: u64) -> Option<Vec<String>> {
    sized(isa, bytes, addr).map(|v| v.into_iter().map(|(t, _)| t).collect())
}

/// Like [`bytes`], with each instruction's size.
fn sized(isa: Isa, bytes: &[u8], addr: u64) -> Option<Vec<(String, usize)>> {
    ENGINES.with(|e| {
        let mut e = e.borrow_mut();
        if e.is_none() {
            *e = engines();
        }
        let cs = &e.as_ref()?[match isa {
            Isa::A64 => 0,
            Isa::A32 => 1,
            Isa::T32 => 2,
        }];
        let insns = cs.disasm_all(bytes, addr).ok()?;
        Some(
            insns
                .iter()
                .map(|i| {
                    let m = i.mnemonic().unwrap_or("?");
                    let text = match i.op_str() {
                        Some(o) if !o.is_empty() => format!("{m} {o}"),
                        _ => m.to_string(),
                    };
                    (text, i.bytes().len())
                })
                .collect(),
        )
    })
}

/// Disassemble one case instruction; `None` if Capstone cannot decode all of it.
pub fn insn(isa: Isa, insn: &Insn, addr: u64) -> Option<String> {
    let code = trapdiff_arch::case::Code { ipa: addr, insns: vec![insn.clone()] };
    let b = code.bytes(isa);
    let mut v = sized(isa, &b, addr)?;
    // A word that decodes as more or less than one whole instruction is not one instruction.
    if v.len() != 1 || v[0].1 != b.len() {
        return None;
    }
    v.pop().map(|(t, _)| t)
}

/// Compare two disassembly texts ignoring case and spacing.
pub fn same_text(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase().replace(", ", ",");
    norm(a) == norm(b)
}
