//! The curated suite's cases through the real-KVM backend (default kernel under nested QEMU,
//! one boot): every family runs, nothing is a backend error, and every outcome carries the
//! kernel release, the MIDR and the QEMU version. The benchmark (ignored by default) reports
//! boot time and cases per second:
//!   cargo test -p trapdiff --test kvm_suite -- --ignored --nocapture
//! (`TRAPDIFF_BENCH_CASES=N` runs N cases spread evenly over the suite). The channel's
//! host-to-guest direction is the bottleneck (QEMU's PL011 delivers about one byte per main
//! loop iteration), so the figure depends on the jobs' size: it prints the mean frame size.

mod kvm_support;

use std::collections::BTreeMap;
use std::time::Instant;

use trapdiff::backend::kvm::{self, KvmOptions};
use trapdiff::backend::Backend;
use trapdiff_arch::outcome::End;

const FAMILIES: [&str; 5] = ["cmo", "devmem", "fp32", "icache", "mmio"];

/// Every `step`-th case of a family (a spread over A64/A32/T32 and region kinds).
fn spread(family: &str, step: usize, max: usize) -> Vec<trapdiff_arch::Case> {
    kvm_support::suite_cases(family, usize::MAX).into_iter().step_by(step).take(max).collect()
}

#[test]
fn every_family_runs_on_the_default_kernel() {
    require_kvm!();
    let mut b = kvm::backend(&KvmOptions::default()).expect("kvm backend");
    let release = std::fs::read_to_string(trapdiff::paths::default_kernel_dir().join("release")).expect("release");
    let mut ran = BTreeMap::new();
    for family in FAMILIES {
        let cases = spread(family, 7, 8);
        if cases.is_empty() {
            eprintln!("note: no {family} cases in corpus/suite yet");
            continue;
        }
        for c in &cases {
            let o = b.run(c);
            eprintln!("{} -> {:?}", c.name, o.end);
            // The channel, the agent and QEMU must never fail a case ("kvm backend: ..." is
            // LiveBackend's failure path). A runtime fault the decoder reports is a finding
            // about the guest side, listed here but not this test's subject.
            if let End::BackendError { message } = &o.end {
                assert!(!message.starts_with("kvm backend:"), "{}: {message}", c.name);
                eprintln!("note: {} decoded as a runtime fault: {message}", c.name);
            }
            assert_eq!(o.meta.backend, "kvm");
            assert_eq!(o.meta.kernel.as_deref(), Some(release.trim()));
            assert!(o.meta.midr.is_some());
            assert!(o.meta.qemu.as_deref().is_some_and(|q| q.starts_with("qemu ")), "{:?}", o.meta.qemu);
            if !o.end.is_infrastructure() {
                *ran.entry(family).or_insert(0) += 1;
            }
        }
    }
    eprintln!("cases that ran per family: {ran:?}");
    for family in ["cmo", "fp32", "mmio"] {
        assert!(ran.get(family).copied().unwrap_or(0) > 0, "no {family} case ran (all skipped?)");
    }
    assert_eq!(b.boots, 1, "one boot for all of them");
    assert!(b.uses_mailbox(), "jobs go through the ivshmem mailbox under QEMU");
}

#[test]
#[ignore = "benchmark: minutes; run with --ignored --nocapture"]
fn benchmark_cases_per_second() {
    require_kvm!();
    let limit = std::env::var("TRAPDIFF_BENCH_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let mut cases = Vec::new();
    for family in FAMILIES {
        cases.extend(kvm_support::suite_cases(family, usize::MAX));
    }
    if limit < cases.len() {
        let step = cases.len() / limit.max(1);
        cases = cases.into_iter().step_by(step.max(1)).take(limit).collect();
    }
    let frame_bytes: usize = cases
        .iter()
        .filter_map(|c| guest_payloads::lower::lower(c, 1).ok())
        .filter_map(|j| trapdiff_arch::wire::encode_frame(&trapdiff_arch::wire::HostMsg::Run(j)).ok())
        .map(|f| f.len())
        .sum();
    let mut b = kvm::backend(&KvmOptions::default()).expect("kvm backend");
    let t = Instant::now();
    b.ensure_up().expect("boot");
    let boot = t.elapsed();
    let t = Instant::now();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut slow = 0;
    for c in &cases {
        let o = b.run(c);
        if matches!(o.end, End::Timeout) {
            slow += 1;
        }
        let kind = format!("{:?}", o.end);
        let kind = kind.split([' ', '{', '(']).next().unwrap_or("").to_string();
        *ends.entry(kind).or_default() += 1;
    }
    let dt = t.elapsed();
    eprintln!("boot (QEMU start to agent ready): {boot:?}");
    eprintln!(
        "{} cases in {dt:?}: {:.1} cases/s ({} timed out); mean job frame {} bytes; ends {ends:?}; boots {}",
        cases.len(),
        cases.len() as f64 / dt.as_secs_f64(),
        slow,
        frame_bytes / cases.len().max(1),
        b.boots
    );
}
