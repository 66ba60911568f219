//! Disassembly of case instructions for the case-file check and `trapdiff show`:
//! guest_payloads' [`Disassembler`] (the one Capstone text wrapper), one per thread.

use guest_payloads::encode::Disassembler;
use trapdiff_arch::case::{Insn, Isa};

pub use guest_payloads::encode::same_text;

thread_local! {
    static DISASSEMBLER: Option<Disassembler> = Disassembler::new().ok();
}

/// Disassemble one case instruction at `addr`; `None` if Capstone cannot decode all of it.
pub fn insn(isa: Isa, insn: &Insn, addr: u64) -> Option<String> {
    DISASSEMBLER.with(|d| d.as_ref()?.disasm_at(isa, insn.w, addr).ok())
}
