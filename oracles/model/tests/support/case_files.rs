//! The case files under a path (a file, or a directory searched recursively), in sorted order.
//! Shared by the model's tests, bench and example (each includes it with `#[path]`; the model
//! library itself reads no files).

use std::path::{Path, PathBuf};

/// Every `.json` file at or below `p`, sorted per directory; unreadable directories are skipped.
pub fn json_files(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect(p, &mut out);
    out
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            collect(&e, out);
        }
    } else if p.extension().is_some_and(|e| e == "json") {
        out.push(p.to_path_buf());
    }
}
