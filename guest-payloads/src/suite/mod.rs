//! The curated suite: every family generator's cases, rendered as the files of
//! `corpus/suite/<family>/<name>.json`, written deterministically and compared with what is
//! committed.
//!
//! A case's name is its path under `corpus/suite` without `.json` (`mmio/a64-ldr-x-off0`),
//! so a file names its case and the other way round.

pub mod builder;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use trapdiff_arch::case::{Case, CaseError, Family};

use crate::encode::{DisasmError, Disassembler};
use crate::families;

pub use builder::Builder;

/// Why the suite could not be generated, written or compared.
#[derive(Debug)]
pub enum SuiteError {
    /// Capstone failed on a generated word: an encoder bug.
    Disasm { case: String, source: DisasmError },
    /// A generated case does not validate: a generator bug.
    Invalid { case: String, source: CaseError },
    /// Two generated cases have the same name.
    Duplicate(String),
    /// Serialising a case failed.
    Json { case: String, source: serde_json::Error },
    /// A file operation under the suite directory failed.
    Io { path: PathBuf, source: io::Error },
    /// A generated case does not lower onto the runtime: a generator bug.
    Lower { case: String, message: String },
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SuiteError::Disasm { case, source } => write!(f, "case {case}: {source}"),
            SuiteError::Invalid { case, source } => write!(f, "generated case {case} is invalid: {source} (fix its generator)"),
            SuiteError::Duplicate(n) => write!(f, "two generated cases are named {n}: give one a distinguishing parameter"),
            SuiteError::Json { case, source } => write!(f, "case {case} does not serialise: {source}"),
            SuiteError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SuiteError::Lower { case, message } => write!(f, "generated case {case} does not lower: {message} (fix its generator)"),
        }
    }
}

impl std::error::Error for SuiteError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SuiteError + '_ {
    move |source| SuiteError::Io { path: path.to_path_buf(), source }
}

/// Every case of the curated suite, family by family, in a fixed order.
pub fn generate() -> Result<Vec<Case>, SuiteError> {
    let dis = Disassembler::new().map_err(|source| SuiteError::Disasm { case: "(setup)".into(), source })?;
    let mut all = Vec::new();
    for fam in families::ALL {
        all.extend(families::generate(fam, &dis)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &all {
        if !seen.insert(c.name.as_str()) {
            return Err(SuiteError::Duplicate(c.name.clone()));
        }
    }
    Ok(all)
}

/// Case count per family.
pub fn counts(cases: &[Case]) -> BTreeMap<Family, usize> {
    let mut m = BTreeMap::new();
    for c in cases {
        *m.entry(c.family).or_insert(0) += 1;
    }
    m
}

/// The file text of a case: pretty JSON and a final newline.
pub fn render(case: &Case) -> Result<String, SuiteError> {
    let mut s = serde_json::to_string_pretty(case).map_err(|source| SuiteError::Json { case: case.name.clone(), source })?;
    s.push('\n');
    Ok(s)
}

/// The suite as files: relative path (`<family>/<name>.json`) -> text.
pub fn files(cases: &[Case]) -> Result<BTreeMap<PathBuf, String>, SuiteError> {
    cases.iter().map(|c| Ok((PathBuf::from(format!("{}.json", c.name)), render(c)?))).collect()
}

/// Every `.json` file under `dir`, as paths relative to it.
pub fn existing_files(dir: &Path) -> Result<Vec<PathBuf>, SuiteError> {
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SuiteError> {
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

/// Write the suite under `dir`: changed files are rewritten, stale `.json` files removed (and
/// the directories they leave empty). Returns (written, removed).
pub fn write(dir: &Path, files: &BTreeMap<PathBuf, String>) -> Result<(usize, usize), SuiteError> {
    let mut written = 0;
    for (rel, text) in files {
        let p = dir.join(rel);
        if fs::read_to_string(&p).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::write(&p, text).map_err(io_err(&p))?;
        written += 1;
    }
    let mut removed = 0;
    for rel in existing_files(dir)? {
        if !files.contains_key(&rel) {
            let p = dir.join(&rel);
            fs::remove_file(&p).map_err(io_err(&p))?;
            removed += 1;
            let mut d = p.parent();
            while let Some(parent) = d.filter(|d| *d != dir) {
                if fs::remove_dir(parent).is_err() {
                    break; // not empty
                }
                d = parent.parent();
            }
        }
    }
    Ok((written, removed))
}

/// How the committed suite differs from the generated one (first difference in path order).
#[derive(Debug, PartialEq, Eq)]
pub enum Drift {
    /// Generated but not committed.
    Missing(PathBuf),
    /// Committed but not generated any more.
    Extra(PathBuf),
    /// Both exist with different contents; the first differing line (1-based).
    Differs { path: PathBuf, line: usize, committed: String, generated: String },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let fix = "regenerate with `cargo run -p guest-payloads --bin gen-suite -- corpus/suite` and commit the result";
        match self {
            Drift::Missing(p) => write!(f, "{} is generated but not in the committed suite: {fix}", p.display()),
            Drift::Extra(p) => write!(f, "{} is committed but no generator produces it: {fix}", p.display()),
            Drift::Differs { path, line, committed, generated } => {
                write!(f, "{} differs from the generated case at line {line}:\n  committed: {committed}\n  generated: {generated}\n{fix}", path.display())
            }
        }
    }
}

/// Compare the files under `dir` with `files`; `Ok(None)` when identical.
pub fn compare(dir: &Path, files: &BTreeMap<PathBuf, String>) -> Result<Option<Drift>, SuiteError> {
    let existing = existing_files(dir)?;
    let mut drifts = Vec::new();
    for rel in &existing {
        if !files.contains_key(rel) {
            drifts.push(Drift::Extra(rel.clone()));
        }
    }
    for (rel, text) in files {
        let p = dir.join(rel);
        if !existing.contains(rel) {
            drifts.push(Drift::Missing(rel.clone()));
            continue;
        }
        let got = fs::read_to_string(&p).map_err(io_err(&p))?;
        if got != *text {
            let mut a = got.lines();
            let mut b = text.lines();
            let mut line = 1;
            let (committed, generated) = loop {
                match (a.next(), b.next()) {
                    (x, y) if x != y => break (x.unwrap_or("<end of file>").to_string(), y.unwrap_or("<end of file>").to_string()),
                    (None, None) => break ("(trailing whitespace)".into(), String::new()),
                    _ => line += 1,
                }
            };
            drifts.push(Drift::Differs { path: rel.clone(), line, committed, generated });
        }
    }
    let key = |d: &Drift| match d {
        Drift::Missing(p) | Drift::Extra(p) | Drift::Differs { path: p, .. } => p.clone(),
    };
    drifts.sort_by_key(key);
    Ok(drifts.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trapdiff-suite-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn sample() -> BTreeMap<PathBuf, String> {
        [("cmo/a.json", "{\n  \"a\": 1\n}\n"), ("mmio/b.json", "{\n  \"b\": 2\n}\n"), ("mmio/c.json", "{}\n")]
            .into_iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    #[test]
    fn write_then_compare_is_clean_and_rewrites_nothing() {
        let dir = scratch("clean");
        let files = sample();
        assert_eq!(write(&dir, &files).expect("write"), (3, 0));
        assert_eq!(compare(&dir, &files).expect("compare"), None);
        assert_eq!(write(&dir, &files).expect("rewrite"), (0, 0));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compare_names_the_first_drift() {
        let dir = scratch("drift");
        let files = sample();
        write(&dir, &files).expect("write");
        fs::write(dir.join("mmio/b.json"), "{\n  \"b\": 3\n}\n").expect("edit");
        match compare(&dir, &files).expect("compare") {
            Some(Drift::Differs { path, line, committed, generated }) => {
                assert_eq!(path, PathBuf::from("mmio/b.json"));
                assert_eq!(line, 2);
                assert_eq!((committed.as_str(), generated.as_str()), ("  \"b\": 3", "  \"b\": 2"));
            }
            other => panic!("expected a content drift, got {other:?}"),
        }
        fs::remove_file(dir.join("cmo/a.json")).expect("remove");
        assert_eq!(compare(&dir, &files).expect("compare"), Some(Drift::Missing(PathBuf::from("cmo/a.json"))));
        write(&dir, &files).expect("repair");
        fs::create_dir_all(dir.join("aaa")).expect("mkdir");
        fs::write(dir.join("aaa/stale.json"), "{}\n").expect("extra");
        assert_eq!(compare(&dir, &files).expect("compare"), Some(Drift::Extra(PathBuf::from("aaa/stale.json"))));
        // Writing removes the stale file and the directory it leaves empty.
        assert_eq!(write(&dir, &files).expect("write"), (0, 1));
        assert!(!dir.join("aaa").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
