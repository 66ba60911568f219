//! The mutation check of the curated suite (`trapdiff quirks --check`): every refhyp quirk
//! that a backend under QEMU can observe must be caught by some suite case and by its
//! regression case in corpus/regressions/, and the baseline (no quirk) must not diverge.
//!
//! Runs the suite on the model and the refhyp once per quirk plus a baseline (about 6 minutes
//! on 2 cores). Needs qemu-system-aarch64 and the refhyp image (`bash ci/setup.sh`); without
//! them it prints why it is skipped and passes.

use std::path::{Path, PathBuf};

use trapdiff::{case_file, known::KnownList, quirks};
use trapdiff_arch::quirk::QUIRKS;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_observable_quirk_is_caught_by_the_suite_and_its_regression_case() {
    if trapdiff::backend::qemu::qemu_version().is_none() || !trapdiff::backend::refhyp::image_path().is_file() {
        guest_payloads::skip::live("qemu-system-aarch64 or the refhyp image is missing (bash ci/setup.sh)");
        return;
    }
    let load = |dir: &str| -> Vec<_> { case_file::load_all(&[root().join(dir)]).into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect() };
    let suite = load("corpus/suite");
    let regressions = load("corpus/regressions");
    let waivers = KnownList::load(&root().join("corpus/waivers.json"), &root().join("corpus/known-issues.json")).expect("waivers");
    let all: Vec<_> = QUIRKS.iter().map(|q| q.quirk).collect();
    let report = quirks::check(&suite, &regressions, &all, 2, &waivers).expect("backends start");
    eprintln!("{}", quirks::render(&report, 3));
    assert!(report.baseline_diverge.is_empty(), "the suite diverges without any quirk: {:?}", report.baseline_diverge);
    for c in &report.catches {
        if c.blind.is_some() {
            continue;
        }
        assert!(!c.suite_cases.is_empty(), "no suite case catches quirk {}", c.quirk);
        assert!(!c.regressions.is_empty(), "quirk {} has no regression case in corpus/regressions", c.quirk);
        for (name, caught) in &c.regressions {
            assert!(caught, "regression case {name} does not catch quirk {}", c.quirk);
        }
    }
    assert!(report.all_caught());
}
