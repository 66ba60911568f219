//! Model throughput: `cargo bench -p trapdiff-model` predicts every case of the curated suite
//! (or the directory in TRAPDIFF_SUITE) on one core, repeatedly for about two seconds, and
//! prints cases per second for each policy profile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guest_payloads::case_files::json_files_in as json_files;

/// This process's user+system CPU time in seconds (Linux /proc/self/stat, fields 14 and 15, in
/// clock ticks of 1/100 s): on a shared machine the wall clock also counts other processes.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn main() {
    let dir = std::env::var("TRAPDIFF_SUITE").map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/suite"));
    let files = json_files(&dir);
    let cases: Vec<trapdiff_arch::Case> = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).filter_map(|t| serde_json::from_str(&t).ok()).collect();
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
        let cpu0 = cpu_seconds();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            for c in &cases {
                std::hint::black_box(model.predict(c));
                n += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a).filter(|c| *c > 0.0);
        println!(
            "model[{}]: {} cases ({} distinct, {}) in {:.2} s wall: {:.0} cases/s; {}",
            profile.name,
            n,
            cases.len(),
            dir.display(),
            secs,
            n as f64 / secs,
            match cpu {
                Some(c) => format!("{:.2} s CPU: {:.0} cases per CPU-second (one core)", c, n as f64 / c),
                None => "CPU time unavailable".into(),
            }
        );
    }
}
