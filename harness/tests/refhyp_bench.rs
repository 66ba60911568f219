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

/// The channel alone: Ping/Pong round trips (two ~20-byte frames on the PL011, no job), the
/// floor under a case's "channel + harness" time in `trapdiff bench`.
#[test]
#[ignore]
fn ping_round_trip() {
    if trapdiff::backend::qemu::qemu_version().is_none() || !refhyp::image_path().is_file() {
        guest_payloads::skip::live("needs qemu-system-aarch64 and the refhyp image (bash ci/setup.sh)");
        return;
    }
    use trapdiff_arch::wire::{HostMsg, TargetMsg};
    let (cfg, _) = refhyp::target_config(&RefhypOptions::default(), None).expect("config");
    let mut t = trapdiff::backend::qemu::Target::spawn(&cfg).expect("spawn");
    while !matches!(t.recv(cfg.boot_timeout).expect("hello"), TargetMsg::Hello(_)) {}
    let n = 200u32;
    let mut rtts = Vec::new();
    for seq in 0..n {
        let s = Instant::now();
        t.send(&HostMsg::Ping { seq }).expect("ping");
        while !matches!(t.recv(std::time::Duration::from_secs(10)).expect("pong"), TargetMsg::Pong { seq: s } if s == seq) {}
        rtts.push(s.elapsed().as_micros() as u64);
    }
    rtts.sort_unstable();
    println!("refhyp ping round trip over {n}: median {} us, p10 {} us, p90 {} us", rtts[n as usize / 2], rtts[n as usize / 10], rtts[n as usize * 9 / 10]);
}
