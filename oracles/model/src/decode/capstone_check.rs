//! Capstone as a second opinion: an instruction the decoders call `Other` but Capstone sees a
//! memory operand in is treated as an unclassified access (no valid syndrome), so a gap in
//! the decoders shows as a conservative prediction, never as a silently ignored access.
//!
//! Only operand *types* are inspected: Debug-printing an A64 system-register operand crashes
//! Capstone 0.14 (docs/DESIGN.md "Dependencies").

use capstone::arch::arm::ArmOperandType;
use capstone::arch::arm64::Arm64OperandType;
use capstone::arch::{ArchOperand, BuildsCapstone};
use capstone::Capstone;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use trapdiff_arch::Isa;

/// (instruction set, instruction bytes (at most 4, little-endian), length) -> Capstone's answer.
/// Looked up for every instruction the model steps: no allocation, a cheap hash.
type Memo = FxHashMap<(Isa, u32, u8), Option<bool>>;

/// Memo entries kept before it starts over (about 1 MiB).
const MEMO_LIMIT: usize = 1 << 16;

/// Capstone handles for the three instruction sets.
pub struct Disassemblers {
    a64: Capstone,
    a32: Capstone,
    t32: Capstone,
    /// Answers already computed: suites repeat the same words case after case.
    memo: RefCell<Memo>,
}

impl std::fmt::Debug for Disassemblers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Disassemblers")
    }
}

/// Capstone could not be set up.
#[derive(Debug)]
pub struct CapstoneError(pub String);

impl Disassemblers {
    pub fn new() -> Result<Disassemblers, CapstoneError> {
        use capstone::arch::{arm, arm64};
        let e = |x: capstone::Error| CapstoneError(x.to_string());
        Ok(Disassemblers {
            a64: Capstone::new().arm64().mode(arm64::ArchMode::Arm).detail(true).build().map_err(e)?,
            a32: Capstone::new().arm().mode(arm::ArchMode::Arm).detail(true).build().map_err(e)?,
            t32: Capstone::new().arm().mode(arm::ArchMode::Thumb).detail(true).build().map_err(e)?,
            memo: RefCell::new(Memo::default()),
        })
    }

    /// Whether Capstone decodes `bytes` (one instruction, in memory order) to something with a
    /// memory operand. `None` when Capstone does not decode it at all.
    pub fn has_memory_operand(&self, isa: Isa, bytes: &[u8]) -> Option<bool> {
        if bytes.len() > 4 {
            return self.ask(isa, bytes);
        }
        let mut w = [0u8; 4];
        w[..bytes.len()].copy_from_slice(bytes);
        let key = (isa, u32::from_le_bytes(w), bytes.len() as u8);
        if let Some(v) = self.memo.borrow().get(&key) {
            return *v;
        }
        let v = self.ask(isa, bytes);
        let mut memo = self.memo.borrow_mut();
        // Bounded: a fuzzing campaign meets new words without end.
        if memo.len() >= MEMO_LIMIT {
            memo.clear();
        }
        memo.insert(key, v);
        v
    }

    fn ask(&self, isa: Isa, bytes: &[u8]) -> Option<bool> {
        let cs = match isa {
            Isa::A64 => &self.a64,
            Isa::A32 => &self.a32,
            Isa::T32 => &self.t32,
        };
        let insns = cs.disasm_count(bytes, 0, 1).ok()?;
        let insn = insns.iter().next()?;
        if isa == Isa::A64 && bytes.len() == 4 {
            let w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if w & 0xffc0_0000 == 0xd500_0000 {
                // System instructions have no memory operand, and converting their operands
                // builds an Arm64Sysreg enum from values it may not list (undefined behaviour
                // in capstone 0.14's arch/arm64.rs, a crash in practice).
                return Some(false);
            }
        }
        let detail = cs.insn_detail(insn).ok()?;
        let ops = detail.arch_detail().operands();
        Some(ops.iter().any(|op| match op {
            ArchOperand::Arm64Operand(o) => matches!(o.op_type, Arm64OperandType::Mem(_)),
            ArchOperand::ArmOperand(o) => matches!(o.op_type, ArmOperandType::Mem(_)),
            _ => false,
        }))
    }

    /// Mnemonic and operands, for messages.
    pub fn text(&self, isa: Isa, bytes: &[u8]) -> String {
        let cs = match isa {
            Isa::A64 => &self.a64,
            Isa::A32 => &self.a32,
            Isa::T32 => &self.t32,
        };
        match cs.disasm_count(bytes, 0, 1) {
            Ok(insns) => {
                insns.iter().next().map(|i| format!("{} {}", i.mnemonic().unwrap_or("?"), i.op_str().unwrap_or(""))).unwrap_or_else(|| "<undecodable>".into())
            }
            Err(_) => "<undecodable>".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn memory_operands_are_seen() {
        let d = Disassemblers::new().expect("capstone");
        // ldr w1, [x0] / add x0, x1, x2 / dc civac, x1 (no memory operand in Capstone's view)
        assert_eq!(d.has_memory_operand(Isa::A64, &0xb940_0001u32.to_le_bytes()), Some(true));
        assert_eq!(d.has_memory_operand(Isa::A64, &0x8b02_0020u32.to_le_bytes()), Some(false));
        // ldr r1, [r0] (A32) / ldr r1, [r0] (T32 16-bit)
        assert_eq!(d.has_memory_operand(Isa::A32, &0xe590_1000u32.to_le_bytes()), Some(true));
        assert_eq!(d.has_memory_operand(Isa::T32, &0x6801u16.to_le_bytes()), Some(true));
        assert!(d.text(Isa::A64, &0xb940_0001u32.to_le_bytes()).starts_with("ldr"));
    }
}
