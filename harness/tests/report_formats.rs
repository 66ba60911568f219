//! The reports of a run that holds every verdict kind, read back by real consumers: JUnit XML
//! by quick-junit's reader and by Python's xml.etree, TAP by Perl's TAP::Parser (Debian's
//! perl-modules; what `prove` uses), report.json by serde. The backends here are scripted:
//! what is under test is the reports, not the backends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use trapdiff::backend::Backend;
use trapdiff::known::{Kind, KnownList};
use trapdiff::run::{self, BackendSpec, Verdict};
use trapdiff_arch::outcome::{End, Event, Meta};
use trapdiff_arch::{Case, Outcome};

/// Case i's outcome on a side: the names say which verdict each case must get.
const CASES: [&str; 7] = ["agree", "diverge", "waived", "skipped", "kernel-finding", "error", "control-chars"];

fn outcome(side: &str, case: &str) -> Outcome {
    let mmio = |data| Outcome { events: vec![Event::Mmio { ipa: 0x5000_0000, len: 4, write: false, data }], ..Outcome::default() };
    match (case, side) {
        ("diverge", "kvm") | ("waived", "kvm") => mmio(2),
        ("diverge", _) | ("waived", _) => mmio(1),
        ("skipped", "kvm") => Outcome { end: End::Skipped { reason: "no Normal-NC stage 2 on this kernel".into() }, ..Outcome::default() },
        ("kernel-finding", "kvm") => Outcome {
            meta: Meta {
                kernel: Some("6.1.0-56-arm64".into()),
                kernel_findings: vec!["WARNING: CPU: 0 PID: 1 at arch/arm64/kvm/mmu.c:1 f+0x0/0x4".into(), "Call trace:".into(), " f+0x0/0x4".into()],
                ..Meta::default()
            },
            ..Outcome::default()
        },
        ("error", "kvm") => Outcome {
            end: End::BackendError { message: "kvm backend: target exited (signal: 9)\n--- last console lines ---\n[    1.0] x".into() },
            ..Outcome::default()
        },
        ("control-chars", "kvm") => {
            Outcome { end: End::BackendError { message: "console \u{1b}[31mred\u{1b}[0m \u{7} bell \u{0} nul".into() }, ..Outcome::default() }
        }
        _ => Outcome::default(),
    }
}

struct Scripted(&'static str);

impl Backend for Scripted {
    fn name(&self) -> &str {
        self.0
    }
    fn run(&mut self, case: &Case) -> Outcome {
        let mut o = outcome(self.0, case.name.trim_start_matches("t/"));
        o.meta.elapsed_us = Some(1500);
        o
    }
}

fn cases() -> Vec<(PathBuf, Case)> {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed/valid.json");
    let c = trapdiff::case_file::load(&base).expect("valid.json");
    CASES.iter().map(|n| (PathBuf::from(format!("t/{n}.json")), Case { name: format!("t/{n}"), ..c.clone() })).collect()
}

fn spec(name: &'static str) -> BackendSpec {
    BackendSpec { name: name.into(), make: Box::new(move || Ok(Box::new(Scripted(name)) as Box<dyn Backend>)), instances: 1 }
}

fn waivers() -> KnownList {
    let mut l = KnownList::default();
    let w = serde_json::from_value(serde_json::json!(
        {"case": "t/waived", "backends": [["kvm", "model"]], "fields": ["events[0].data"], "reason": "a known QEMU TCG limitation", "reference": "test"}
    ))
    .expect("waiver");
    l.push(Kind::Waiver, w).expect("valid waiver");
    l
}

fn write_reports(tag: &str) -> (PathBuf, run::RunResult) {
    let dir = std::env::temp_dir().join(format!("trapdiff-report-formats-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let all = cases();
    let r = run::run(all.clone(), vec!["t/bad.json: cannot read".into()], vec![spec("model"), spec("kvm")], &waivers(), None);
    trapdiff::report::write_all(&dir, &r, &all).expect("reports");
    (dir, r)
}

#[test]
fn the_run_holds_every_verdict_kind() {
    let (_, r) = write_reports("verdicts");
    let got: BTreeMap<&str, Verdict> = r.cases.iter().map(|c| (c.name.as_str(), c.verdict)).collect();
    let want = [
        ("t/agree", Verdict::Agree),
        ("t/diverge", Verdict::Diverge),
        ("t/waived", Verdict::Waived),
        ("t/skipped", Verdict::Skipped),
        ("t/kernel-finding", Verdict::KernelFinding),
        ("t/error", Verdict::Error),
        ("t/control-chars", Verdict::Error),
    ];
    for (n, v) in want {
        assert_eq!(got[n], v, "{n}");
    }
    // no-comparison comes from a single-backend run.
    let single = run::run(cases()[..1].to_vec(), vec![], vec![spec("model")], &KnownList::default(), None);
    assert_eq!(single.cases[0].verdict, Verdict::NoComparison);
    assert!(trapdiff::report::markdown(&single).contains("single-backend: no comparison"));
    assert!(trapdiff::report::tap(&single).contains("ok 1 t/agree # SKIP single-backend: no comparison"));
}

#[test]
fn junit_parses_with_quick_junit_and_python() {
    let (dir, _) = write_reports("junit");
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    assert!(!xml.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'), "control characters stripped");
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("quick-junit reads it back");
    let suite = &report.test_suites[0];
    assert_eq!(suite.test_cases.len(), CASES.len(), "one testcase per case");
    let by_name: BTreeMap<&str, &quick_junit::TestCase> = suite.test_cases.iter().map(|t| (t.name.as_str(), t)).collect();
    use quick_junit::{NonSuccessKind, TestCaseStatus};
    assert!(matches!(by_name["t/agree"].status, TestCaseStatus::Success { .. }));
    assert!(matches!(by_name["t/waived"].status, TestCaseStatus::Success { .. }));
    match &by_name["t/diverge"].status {
        TestCaseStatus::NonSuccess { kind: NonSuccessKind::Failure, description, .. } => {
            assert!(description.as_ref().is_some_and(|d| d.as_str().contains("kvm vs model")), "{description:?}")
        }
        s => panic!("diverge: {s:?}"),
    }
    match &by_name["t/kernel-finding"].status {
        TestCaseStatus::NonSuccess { kind: NonSuccessKind::Failure, ty, description, .. } => {
            assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("kernel-finding"));
            assert!(description.as_ref().is_some_and(|d| d.as_str().contains("WARNING: CPU: 0")), "{description:?}");
        }
        s => panic!("kernel-finding: {s:?}"),
    }
    assert!(matches!(by_name["t/error"].status, TestCaseStatus::NonSuccess { kind: NonSuccessKind::Error, .. }));
    match &by_name["t/skipped"].status {
        TestCaseStatus::Skipped { message, .. } => assert!(message.as_ref().is_some_and(|m| m.as_str().contains("no Normal-NC"))),
        s => panic!("skipped: {s:?}"),
    }
    assert!(by_name.values().all(|t| t.time.is_some()), "every testcase has a time");
    // A second, independent reader: Python's standard library.
    let py = "import sys, xml.etree.ElementTree as E\nr = E.parse(sys.argv[1]).getroot()\ncs = r.findall('.//testcase')\nprint(len(cs), len(r.findall('.//failure')), len(r.findall('.//error')), len(r.findall('.//skipped')))\n";
    match Command::new("python3").arg("-c").arg(py).arg(dir.join("junit.xml")).output() {
        Ok(o) if o.status.success() => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "7 2 2 1"),
        Ok(o) => panic!("python3 could not parse junit.xml: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("skipped the python3 reader: {e}"),
    }
}

#[test]
fn tap_parses_with_perl_tap_parser() {
    let (dir, _) = write_reports("tap");
    let tap = std::fs::read_to_string(dir.join("results.tap")).expect("results.tap");
    assert!(tap.contains("ok 3 t/waived # XFAIL a known QEMU TCG limitation"), "{tap}");
    assert!(tap.contains("ok 4 t/skipped # SKIP kvm: no Normal-NC stage 2 on this kernel"), "{tap}");
    // TAP::Parser: the plan, every test line, and which passed, failed and skipped.
    let perl = r#"use TAP::Parser; my $p = TAP::Parser->new({ source => $ARGV[0] });
        while (my $r = $p->next) { die "unparsed: " . $r->as_string . "\n" if $r->is_unknown; }
        printf "%d %d %d %d %s\n", $p->tests_run, scalar($p->passed), scalar($p->failed), scalar($p->skipped), $p->is_good_plan ? "plan" : "badplan";"#;
    let o = Command::new("perl").arg("-e").arg(perl).arg(dir.join("results.tap")).output().expect("perl is on every Debian machine");
    assert!(o.status.success(), "TAP::Parser: {}", String::from_utf8_lossy(&o.stderr));
    // 7 tests; agree, waived, skipped pass; diverge, kernel-finding, two errors fail; one skip.
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "7 3 4 1 plan");
}

#[test]
fn report_json_reads_back() {
    let (dir, r) = write_reports("json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).expect("json");
    let s = &v["summary"];
    assert_eq!((s["cases"].as_u64(), s["agree"].as_u64(), s["diverge"].as_u64(), s["waived"].as_u64()), (Some(7), Some(1), Some(1), Some(1)));
    assert_eq!((s["skipped"].as_u64(), s["kernel_findings"].as_u64(), s["errors"].as_u64(), s["load_errors"].as_u64()), (Some(1), Some(1), Some(2), Some(1)));
    assert_eq!(s["backends"]["kvm"]["skipped"].as_u64(), Some(1));
    let verdicts: Vec<&str> = v["cases"].as_array().expect("cases").iter().map(|c| c["verdict"].as_str().unwrap_or("")).collect();
    assert!(verdicts.contains(&"kernel-finding"), "{verdicts:?}");
    assert_eq!(r.exit_code(), 2);
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(md.contains("## Kernel findings") && md.contains("no Normal-NC") && md.contains("## Backend errors"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("kernel-finding") && html.contains("no Normal-NC"));
}
