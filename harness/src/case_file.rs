//! Loading case files: JSON syntax errors name the file, line and column; meaning errors name
//! the file and the field; code words must disassemble as the `asm` beside them says in the
//! case's instruction set. Nothing here panics on bad input.

use std::io::Read;
use std::path::{Path, PathBuf};

use trapdiff_arch::Case;

use crate::disasm;

#[derive(Debug, thiserror::Error)]
pub enum CaseFileError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: file is larger than the {} MiB a case may be", MAX_CASE_FILE >> 20)]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}: not UTF-8 at byte offset {offset}")]
    NotUtf8 { path: PathBuf, line: usize, offset: usize },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

impl CaseFileError {
    pub fn path(&self) -> &Path {
        match self {
            CaseFileError::Io { path, .. }
            | CaseFileError::TooLarge { path }
            | CaseFileError::NotUtf8 { path, .. }
            | CaseFileError::Syntax { path, .. }
            | CaseFileError::Invalid { path, .. } => path,
        }
    }
}

/// Largest case file `load` reads, so a stray huge file is an error, not all of memory. The
/// biggest committed case is 11 KiB, and a job carries at most 1 MiB of initial bytes
/// (`wire::MAX_PAYLOAD`), 2 MiB as hex: no case that can run comes near.
pub const MAX_CASE_FILE: u64 = 16 << 20;

/// Parse and validate a case from a file's bytes (`path` names it in errors).
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Case, CaseFileError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let line = 1 + bytes[..offset].iter().filter(|b| **b == b'\n').count();
        CaseFileError::NotUtf8 { path: path.to_path_buf(), line, offset }
    })?;
    parse(path, text)
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
    let io = |e| CaseFileError::Io { path: path.to_path_buf(), source: e };
    let file = std::fs::File::open(path).map_err(io)?;
    // One byte past the limit tells a file of exactly the limit from a larger one.
    let mut bytes = Vec::new();
    file.take(MAX_CASE_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_CASE_FILE {
        return Err(CaseFileError::TooLarge { path: path.to_path_buf() });
    }
    parse_bytes(path, &bytes)
}

/// Every `*.json` case under `paths` (files or directories, recursively, sorted), except
/// waiver files. Each file loads or fails on its own: one bad file loses nothing else.
pub fn load_all(paths: &[PathBuf]) -> Vec<Result<(PathBuf, Case), CaseFileError>> {
    guest_payloads::case_files::json_files(paths).into_iter().map(|f| load(&f).map(|c| (f, c))).collect()
}
