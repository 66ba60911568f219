//! The nightly loop's commands on real backends: shards merged into one report equal an
//! unsharded run; `compare` fails only on what is newly failing; the corpus's waivers and
//! known issues load and are class entries.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ has a parent").to_path_buf()
}

fn trapdiff(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trapdiff")).args(args).current_dir(root()).output().expect("trapdiff runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn verdicts(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).expect("json");
    let mut v: Vec<(String, String, Vec<String>)> = r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let d =
                c["divergences"].as_array().map(|a| a.iter().map(|d| d["explanation"].as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default();
            (c["name"].as_str().unwrap_or_default().to_string(), c["verdict"].as_str().unwrap_or_default().to_string(), d)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn merged_shards_equal_the_unsharded_run_and_compare_flags_only_news() {
    if trapdiff::backend::qemu::qemu_version().is_none() || !trapdiff::backend::refhyp::image_path().is_file() {
        guest_payloads::skip::live("qemu-system-aarch64 or the refhyp image is missing (bash ci/setup.sh)");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("trapdiff-nightly-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let d = |n: &str| tmp.join(n).display().to_string();
    // mmio/a64-el1-ldr*: plain loads, sign-extending ones (a known kernel issue, not seen by
    // model vs refhyp) and ones the refhyp and the model disagree on under TCG.
    let common = ["run", "--backends", "model,refhyp", "--filter", "mmio/a64-el1-ldr"];
    let (full_code, out) = trapdiff(&[&common[..], &["--report", &d("full")]].concat());
    assert!(full_code == 0 || full_code == 1, "{out}");
    for s in ["1/3", "2/3", "3/3"] {
        let (_, out) = trapdiff(&[&common[..], &["--shard", s, "--report", &d(&format!("shard{}", &s[..1]))]].concat());
        assert!(out.contains("cases on"), "{out}");
    }
    let (code, out) = trapdiff(&["merge", &d("shard1"), &d("shard2"), &d("shard3"), "--report", &d("merged")]);
    assert_eq!(code, full_code, "{out}");
    let (full, merged) = (verdicts(&tmp.join("full")), verdicts(&tmp.join("merged")));
    assert!(full.len() >= 20, "the filter selects the mmio loads: {}", full.len());
    assert_eq!(merged, full, "merged shards differ from the unsharded run");
    for f in ["junit.xml", "results.tap", "report.md", "report.html", "run.json", "outcomes.jsonl"] {
        assert!(tmp.join("merged").join(f).is_file(), "merged report lacks {f}");
    }
    // A missing shard is refused, naming it.
    let (code, out) = trapdiff(&["merge", &d("shard1"), &d("shard3"), "--report", &d("bad")]);
    assert_eq!(code, 2);
    assert!(out.contains("2/3 missing"), "{out}");

    // compare: the same report is no news; a case turned diverging is.
    let (code, out) = trapdiff(&["compare", &d("full"), &d("merged"), "--out", &d("cmp")]);
    assert_eq!(code, 0, "{out}");
    assert!(tmp.join("cmp/compare.html").is_file() && tmp.join("cmp/compare.json").is_file());
    let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.join("full/report.json")).expect("full/report.json")).expect("json");
    let agreeing = r["cases"].as_array_mut().expect("cases").iter_mut().find(|c| c["verdict"] == "agree").expect("an agreeing case");
    let name = agreeing["name"].as_str().expect("name").to_string();
    agreeing["verdict"] = "diverge".into();
    std::fs::create_dir_all(tmp.join("tonight")).expect("mkdir");
    std::fs::write(tmp.join("tonight/report.json"), serde_json::to_string(&r).expect("json")).expect("write");
    let (code, out) = trapdiff(&["compare", &d("full"), &d("tonight")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("## new divergence (1)") && out.contains(&name), "{out}");
    // And the other way round it is a fix, which passes.
    let (code, out) = trapdiff(&["compare", &d("tonight"), &d("full")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("## fixed (1)"), "{out}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_corpus_waivers_and_known_issues_load_as_classes() {
    let l = trapdiff::known::KnownList::load(&root().join("corpus/waivers.json"), &root().join("corpus/known-issues.json")).expect("corpus files load");
    let issues: Vec<_> = l.entries.iter().filter(|(k, _)| *k == trapdiff::known::Kind::Issue).collect();
    assert!(issues.len() >= 2, "known issues: {}", issues.len());
    assert!(
        l.entries.iter().all(|(_, e)| e.class.is_some() && !e.id.is_empty() && !e.reference.is_empty()),
        "every corpus entry is a class with an id and a reference"
    );
    assert!(l.entries.iter().filter(|(k, _)| *k == trapdiff::known::Kind::Waiver).all(|(_, e)| e.only_under_qemu), "every waiver is a TCG limitation");
}
