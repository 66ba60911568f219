//! Model throughput: `cargo bench -p trapdiff-model` predicts every case of the curated suite
//! (or the directory in TRAPDIFF_SUITE) on one core, repeatedly for about two seconds, and
//! prints cases per second for each policy profile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

fn main() {
    let dir = std::env::var("TRAPDIFF_SUITE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/suite"));
    let mut files = Vec::new();
    collect(&dir, &mut files);
    let cases: Vec<trapdiff_arch::Case> =
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).filter_map(|t| serde_json::from_str(&t).ok()).collect();
    if cases.is_empty() {
        eprintln!("no cases under {}: set TRAPDIFF_SUITE to a directory of case files", dir.display());
        std::process::exit(2);
    }
    for profile in trapdiff_model::PROFILES {
        let mut model = trapdiff_model::Model::new(profile);
        // Warm-up pass (Unicorn's translation caches, page allocations).
        for c in &cases {
            std::hint::black_box(model.predict(c));
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            for c in &cases {
                std::hint::black_box(model.predict(c));
                n += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!("model[{}]: {} cases from {} in {:.2} s: {:.0} cases/s on one core", profile.name, n, dir.display(), secs, n as f64 / secs);
    }
}
