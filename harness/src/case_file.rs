//! Loading case files: JSON syntax errors name the file, line and column; meaning errors name
//! the file and the field; code words must disassemble as the `asm` beside them says in the
//! case's instruction set. Nothing here panics on bad input.

use std::path::{Path, PathBuf};

use trapdiff_arch::Case;

use crate::disasm;

#[derive(Debug, thiserror::Error)]
pub enum CaseFileError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

impl CaseFileError {
    pub fn path(&self) -> &Path {
        match self {
            CaseFileError::Io { path, .. } | CaseFileError::Syntax { path, .. } | CaseFileError::Invalid { path, .. } => path,
        }
    }
}

/// Parse and validate a case from JSON text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Case, CaseFileError> {
    let case: Case = serde_json::from_str(text).map_err(|e| CaseFileError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    case.validate().map_err(|e| CaseFileError::Invalid { path: path.to_path_buf(), field: e.field, message: e.message })?;
    check_disassembly(&case).map_err(|(field, message)| CaseFileError::Invalid { path: path.to_path_buf(), field, message })?;
    Ok(case)
}

/// serde_json appends " at line L column C"; the error already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Each word's `asm`, when given, must be what Capstone makes of the word in the case's ISA:
/// this catches words of one instruction set filed under another, and stale comments.
fn check_disassembly(case: &Case) -> Result<(), (String, String)> {
    let isa = case.state.isa;
    let addrs = case.code.addresses(isa);
    for (k, (insn, addr)) in case.code.insns.iter().zip(addrs).enumerate() {
        if insn.asm.trim().is_empty() {
            continue;
        }
        let got = disasm::insn(isa, insn, addr);
        let field = format!("code.insns[{k}]");
        match got {
            None => {
                return Err((field, format!("{:#x} does not decode as {isa} (asm says `{}`): wrong instruction set?", insn.w, insn.asm)));
            }
            Some(d) if !disasm::same_text(&d, &insn.asm) => {
                return Err((field, format!("{:#x} disassembles as `{d}` in {isa}, but asm says `{}`", insn.w, insn.asm)));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub fn load(path: &Path) -> Result<Case, CaseFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| CaseFileError::Io { path: path.to_path_buf(), source: e })?;
    parse(path, &text)
}

/// Every `*.json` case under `paths` (files or directories, recursively, sorted), except
/// waiver files. Each file loads or fails on its own: one bad file loses nothing else.
pub fn load_all(paths: &[PathBuf]) -> Vec<Result<(PathBuf, Case), CaseFileError>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files);
    }
    files.sort();
    files.dedup();
    files.into_iter().map(|f| load(&f).map(|c| (f, c))).collect()
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let Ok(rd) = std::fs::read_dir(p) else {
            out.push(p.to_path_buf());
            return;
        };
        for e in rd.flatten() {
            collect(&e.path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "json") || !p.exists() {
        let is_waiver = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("waivers"));
        if !is_waiver {
            out.push(p.to_path_buf());
        }
    }
}
