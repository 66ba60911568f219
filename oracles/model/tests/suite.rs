//! Snapshot tests of the model's predictions over the curated suite (`corpus/suite/<family>`),
//! one snapshot per family and policy profile, plus the hand-written cases in `tests/cases/`.
//! Review changes like code: `cargo insta review -p trapdiff-model` (or
//! `INSTA_UPDATE=always cargo test -p trapdiff-model --test suite` and read the diff).

use std::path::{Path, PathBuf};

use trapdiff_arch::outcome::End;
use trapdiff_arch::Case;
use trapdiff_model::{Model, PROFILES};

use guest_payloads::case_files::json_files_in as json_files;

fn load(dir: &Path) -> Vec<Case> {
    json_files(dir)
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect()
}

/// One case's prediction as reviewable text: the name, then the outcome as one JSON line
/// (meta omitted: it only names the backend and policy).
fn render(model: &mut Model, cases: &[Case]) -> String {
    let mut text = String::new();
    for c in cases {
        let mut o = model.predict(c);
        assert!(!matches!(o.end, End::Skipped { .. } | End::BackendError { .. }), "{}: the model could not predict: {:?}", c.name, o.end);
        o.meta = Default::default();
        text.push_str(&c.name);
        text.push('\n');
        text.push_str(&serde_json::to_string(&o).unwrap_or_default());
        text.push('\n');
    }
    text
}

fn snapshot_dir(dir: &Path, prefix: &str) {
    // A missing or empty directory is a failure: a snapshot test of zero cases proves nothing.
    let mut families: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    families.sort();
    let mut snapshots = 0;
    for profile in PROFILES {
        let mut model = Model::new(profile);
        for fam in &families {
            let cases = load(fam);
            if cases.is_empty() {
                continue;
            }
            let name = format!("{prefix}-{}-{}", profile.name, fam.file_name().and_then(|n| n.to_str()).unwrap_or("?"));
            insta::assert_snapshot!(name, render(&mut model, &cases));
            snapshots += 1;
        }
    }
    assert!(snapshots > 0, "{} holds no case", dir.display());
}

#[test]
fn curated_suite() {
    snapshot_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/suite"), "suite");
}

#[test]
fn hand_written_cases() {
    snapshot_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases"), "cases");
}

#[test]
fn predictions_do_not_depend_on_the_previous_case() {
    // Engines are reused case after case: run the suite forwards and backwards (different
    // predecessors for every case) and require identical outcomes.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/suite");
    let mut cases = load(&dir);
    cases.extend(load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")));
    let profile = PROFILES[0];
    let mut forward = Model::new(profile);
    let ahead: Vec<_> = cases.iter().map(|c| forward.predict(c)).collect();
    let mut backward = Model::new(profile);
    let mut behind: Vec<_> = cases.iter().rev().map(|c| backward.predict(c)).collect();
    behind.reverse();
    for ((c, a), b) in cases.iter().zip(&ahead).zip(&behind) {
        assert_eq!(a, b, "{}: the outcome depends on the case run before it", c.name);
    }
}
