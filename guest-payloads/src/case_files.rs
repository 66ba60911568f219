//! The one walk from paths to case files, for the harness's loader, the model's tests, bench
//! and example, the suite checks and `trapdiff doctor`.

use std::path::{Path, PathBuf};

/// Every `.json` file at or below each of `paths` (files, or directories searched
/// recursively), sorted and deduplicated. `waivers*.json` files are not cases and are left
/// out. A path that does not exist, or a directory that cannot be read, is returned as it is,
/// so loading it says why: a run never silently drops a path it was given.
pub fn json_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        collect(p, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// [`json_files`] of one path.
pub fn json_files_in(p: &Path) -> Vec<PathBuf> {
    json_files(&[p.to_path_buf()])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_recursive_json_only_and_missing_paths_kept() {
        let d = std::env::temp_dir().join(format!("trapdiff-case-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("b")).expect("temp dir");
        for f in ["b/z.json", "a.json", "notes.txt", "waivers.json", "b/waivers-tcg.json"] {
            std::fs::write(d.join(f), "{}").expect("temp file");
        }
        let missing = d.join("gone.json");
        let got = json_files(&[d.clone(), d.join("a.json"), missing.clone()]);
        assert_eq!(got, vec![d.join("a.json"), d.join("b/z.json"), missing]);
        assert_eq!(json_files_in(&d), vec![d.join("a.json"), d.join("b/z.json")]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
