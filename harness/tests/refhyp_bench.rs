//! Throughput of one refhyp instance: boot time, then cases per second over the curated mmio
//! family (one QEMU, one boot). Ignored by default (it measures, it does not check):
//!
//! ```text
//! cargo test --release -p trapdiff --test refhyp_bench -- --ignored --nocapture
//! ```
//! `REFHYP_BENCH_CASES=N` limits the number of cases (default 300).

use std::path::Path;
use std::time::Instant;

use trapdiff::backend::refhyp::{self, RefhypOptions};
use trapdiff::backend::Backend;
use trapdiff::case_file;

#[test]
#[ignore]
fn cases_per_second_through_one_instance() {
    if trapdiff::backend::qemu::qemu_version().is_none() || !refhyp::image_path().is_file() {
        guest_payloads::skip::live("needs qemu-system-aarch64 and the refhyp image (bash ci/setup.sh)");
        return;
    }
    let n: usize = std::env::var("REFHYP_BENCH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/suite/mmio");
    let files = guest_payloads::case_files::json_files_in(&dir);
    let cases: Vec<_> = files.iter().take(n).map(|p| case_file::load(p).expect("case")).collect();
    let mut b = refhyp::backend(&RefhypOptions::default()).expect("backend");
    let t = Instant::now();
    b.ensure_up().expect("boot");
    let boot = t.elapsed();
    let t = Instant::now();
    let mut errors = 0;
    for c in &cases {
        if b.run(c).end.is_infrastructure() {
            errors += 1;
        }
    }
    let dt = t.elapsed();
    println!(
        "refhyp: boot (QEMU start to Hello + runtime loaded) {boot:?}; {} cases in {dt:?} = {:.1} cases/s; {errors} backend errors; boots {}",
        cases.len(),
        cases.len() as f64 / dt.as_secs_f64(),
        b.boots
    );
    assert_eq!(b.boots, 1);
}
