//! The committed suite (`corpus/suite`) is exactly what the generators produce, and every
//! committed case loads, validates, is named after its path and carries Capstone's
//! disassembly beside each word.

use std::path::PathBuf;

use guest_payloads::encode::Disassembler;
use guest_payloads::suite;
use trapdiff_arch::case::Case;

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/suite")
}

#[test]
fn committed_suite_matches_the_generators() {
    let cases = suite::generate().unwrap_or_else(|e| panic!("generating the suite failed: {e}"));
    let files = suite::files(&cases).unwrap_or_else(|e| panic!("{e}"));
    match suite::compare(&suite_dir(), &files) {
        Ok(None) => {}
        Ok(Some(drift)) => panic!("corpus/suite is stale: {drift}"),
        Err(e) => panic!("reading corpus/suite failed: {e}"),
    }
}

#[test]
fn generation_is_deterministic() {
    let a = suite::files(&suite::generate().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
    let b = suite::files(&suite::generate().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(a == b, "two generations of the suite differ");
}

#[test]
fn every_committed_case_loads_and_validates() {
    let dir = suite_dir();
    let files = suite::existing_files(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(files.len() >= 600, "the suite should hold at least 600 cases, found {}", files.len());
    let dis = Disassembler::new().unwrap_or_else(|e| panic!("{e}"));
    let mut problems = Vec::new();
    for rel in &files {
        let path = dir.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", rel.display()));
                continue;
            }
        };
        let case: Case = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{}: does not parse: {e}", rel.display()));
                continue;
            }
        };
        if let Err(e) = case.validate() {
            problems.push(format!("{}: {e}", rel.display()));
        }
        let want_name = rel.with_extension("").to_string_lossy().replace('\\', "/");
        if case.name != want_name {
            problems.push(format!("{}: names itself `{}`", rel.display(), case.name));
        }
        if case.description.trim().is_empty() || !case.provenance.source.starts_with("generator:") || case.provenance.detail.is_empty() {
            problems.push(format!("{}: needs a description and generator provenance with parameters", rel.display()));
        }
        let isa = case.state.isa;
        for (insn, pc) in case.code.insns.iter().zip(case.code.addresses(isa)) {
            match dis.disasm_at(isa, insn.w, pc) {
                Ok(t) if t == insn.asm => {}
                Ok(t) => problems.push(format!("{}: {:#x} disassembles as `{t}`, asm says `{}`", rel.display(), insn.w, insn.asm)),
                Err(e) => problems.push(format!("{}: {e}", rel.display())),
            }
        }
    }
    assert!(problems.is_empty(), "{} problems in corpus/suite:\n{}", problems.len(), problems.join("\n"));
}
