//! Human-readable rendering of a case: its state, memory map and disassembled code.

use std::fmt::Write;

use trapdiff_arch::Case;

use crate::disasm;

pub fn render(case: &Case) -> String {
    let mut s = String::new();
    let isa = case.state.isa;
    let _ = writeln!(s, "case {}  [{}; {} at {:?}]", case.name, case.family, isa, case.state.el);
    if !case.description.is_empty() {
        let _ = writeln!(s, "  {}", case.description);
    }
    if !case.provenance.source.is_empty() {
        let _ = writeln!(s, "  provenance: {} {}", case.provenance.source, case.provenance.detail);
    }
    let _ = writeln!(s, "memory:");
    for r in &case.memory {
        let s2 = r.s2.map(|a| format!(" s2={}", a.name())).unwrap_or_default();
        let s1 = r.s1.map(|a| format!(" s1={} {:?}", a.attr.name(), a.perm)).unwrap_or_default();
        let _ = writeln!(s, "  {:<12} {:#012x}..{:#012x} {}{s2}{s1}", r.name, r.ipa, r.ipa + r.size, r.kind.name());
    }
    if !case.regs.is_empty() {
        let regs: Vec<String> = case.regs.iter().map(|(r, v)| format!("{r}={:#x}", v.0)).collect();
        let _ = writeln!(s, "regs: {}", regs.join(" "));
    }
    let sr = &case.sysregs;
    let _ = writeln!(
        s,
        "sysregs: cpacr={} fpexc={} mmu={} align_check={}",
        sr.cpacr.map(|v| format!("{v:#x}")).unwrap_or("default".into()),
        sr.fpexc.map(|v| format!("{v:#x}")).unwrap_or("default".into()),
        sr.mmu,
        sr.align_check
    );
    let v = &case.vmm;
    let _ = writeln!(s, "vmm: nisv_to_user={} on_nisv={:?} on_mmio={:?}", v.nisv_to_user, v.on_nisv, v.on_mmio);
    let _ = writeln!(s, "code:");
    for (insn, addr) in case.code.insns.iter().zip(case.code.addresses(isa)) {
        let d = disasm::insn(isa, insn, addr).unwrap_or_else(|| "<undecodable>".into());
        let width = if insn.size(isa) == 2 { 4 } else { 8 };
        let note = if !insn.asm.is_empty() && !disasm::same_text(&d, &insn.asm) { format!("   (file says: {})", insn.asm) } else { String::new() };
        let _ = writeln!(s, "  {addr:#010x}:  {:0width$x}  {d}{note}", insn.w);
    }
    s
}
