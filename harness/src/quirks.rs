//! `trapdiff quirks`: the mutation check of the suite.
//!
//! Every quirk (`trapdiff_arch::quirk`) makes the refhyp behave like KVM before one historical
//! fix. The check runs the curated suite on the model and the refhyp once without quirks (the
//! baseline) and once per quirk; a case *catches* a quirk when it agrees (or only differs in
//! waived fields) in the baseline and diverges with the quirk on. A quirk no case catches is a
//! hole in the suite. Each quirk's regression cases (`corpus/regressions/`, the quirk named in
//! `provenance.quirk`, the correct outcome pinned in `expect`) must do the same.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use serde::Serialize;
use trapdiff_arch::quirk::{Quirk, Quirks, QUIRKS};
use trapdiff_arch::Case;

use crate::backend::select::{self, BackendOptions};
use crate::known::KnownList;
use crate::run::{self, RunResult, Verdict};

/// What the check found for one quirk.
#[derive(Debug, Serialize)]
pub struct QuirkCatch {
    pub quirk: &'static str,
    /// Why no backend here can see it (`QuirkInfo::tcg_blind`).
    pub blind: Option<&'static str>,
    pub fix: &'static str,
    /// Suite cases that catch it.
    pub suite_cases: Vec<String>,
    /// Its regression cases, and whether each catches it.
    pub regressions: Vec<(String, bool)>,
    /// Cases the quirked refhyp failed on (infrastructure, not a catch).
    pub errors: usize,
}

impl QuirkCatch {
    pub fn caught(&self) -> bool {
        !self.suite_cases.is_empty() && !self.regressions.is_empty() && self.regressions.iter().all(|(_, c)| *c)
    }
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub suite_cases: usize,
    pub baseline_agree: usize,
    pub baseline_diverge: Vec<String>,
    pub catches: Vec<QuirkCatch>,
    pub seconds: f64,
    /// The model's baseline outcome of every case (what a regression case pins).
    #[serde(skip)]
    pub model_outcomes: BTreeMap<String, trapdiff_arch::Outcome>,
}

impl CheckReport {
    /// Every quirk a backend here can observe is caught.
    pub fn all_caught(&self) -> bool {
        self.catches.iter().all(|c| c.caught() || c.blind.is_some())
    }
}

/// Verdicts by case name.
fn verdicts(r: &RunResult) -> BTreeMap<&str, Verdict> {
    r.cases.iter().map(|c| (c.name.as_str(), c.verdict)).collect()
}

fn quiet(v: Verdict) -> bool {
    matches!(v, Verdict::Agree | Verdict::Waived | Verdict::Known)
}

/// Run the mutation check: `suite` and `regressions` on the model and the refhyp (`jobs`
/// instances), without quirks and then with each of `quirks`.
pub fn check(suite: &[(PathBuf, Case)], regressions: &[(PathBuf, Case)], quirks: &[Quirk], jobs: usize, waivers: &KnownList) -> Result<CheckReport, String> {
    let started = std::time::Instant::now();
    let specs = |q: Quirks| {
        select::specs(&BackendOptions {
            names: vec!["model".into(), "refhyp".into()],
            kernel: None,
            native: false,
            policy: "linux-6.1".into(),
            jobs,
            quirks: q,
            kernel_append: Vec::new(),
        })
    };
    let mut all: Vec<(PathBuf, Case)> = suite.to_vec();
    all.extend(regressions.iter().cloned());
    eprintln!("quirks: baseline ({} cases, no quirk)", all.len());
    let base = run::run(all.clone(), Vec::new(), specs(Quirks::NONE)?, waivers, None);
    let base_v = verdicts(&base);
    let suite_names: std::collections::BTreeSet<&str> = suite.iter().map(|(_, c)| c.name.as_str()).collect();
    let mut catches = Vec::new();
    for &q in quirks {
        let info = q.info();
        let mine: Vec<(PathBuf, Case)> =
            regressions.iter().filter(|(_, c)| c.provenance.quirk.as_deref().and_then(Quirk::from_name) == Some(q)).cloned().collect();
        let mut cases: Vec<(PathBuf, Case)> = suite.to_vec();
        cases.extend(mine.iter().cloned());
        eprintln!("quirks: {} ({} cases)", info.name, cases.len());
        let r = run::run(cases, Vec::new(), specs(q.into())?, waivers, None);
        let mut suite_cases = Vec::new();
        let mut regs = Vec::new();
        let mut errors = 0;
        for c in &r.cases {
            if c.verdict == Verdict::Error {
                errors += 1;
            }
            let caught = c.verdict == Verdict::Diverge && base_v.get(c.name.as_str()).copied().is_some_and(quiet);
            if suite_names.contains(c.name.as_str()) {
                if caught {
                    suite_cases.push(c.name.clone());
                }
            } else {
                regs.push((c.name.clone(), caught));
            }
        }
        catches.push(QuirkCatch { quirk: info.name, blind: info.tcg_blind, fix: info.fix, suite_cases, regressions: regs, errors });
    }
    Ok(CheckReport {
        suite_cases: suite.len(),
        baseline_agree: base.cases.iter().filter(|c| quiet(c.verdict)).count(),
        baseline_diverge: base.cases.iter().filter(|c| c.verdict == Verdict::Diverge).map(|c| c.name.clone()).collect(),
        catches,
        seconds: started.elapsed().as_secs_f64(),
        model_outcomes: base
            .cases
            .iter()
            .filter(|c| c.verdict == Verdict::Agree)
            .filter_map(|c| c.outcomes.get("model").map(|o| (c.name.clone(), o.clone())))
            .collect(),
    })
}

/// A regression case for `quirk`: the smallest suite case that catches it (fewest
/// instructions, then regions), renamed, with its provenance and the model's outcome pinned.
pub fn regression_case(r: &CheckReport, suite: &[(PathBuf, Case)], quirk: Quirk) -> Option<Case> {
    let catch = r.catches.iter().find(|c| c.quirk == quirk.name())?;
    let best =
        suite.iter().map(|(_, c)| c).filter(|c| catch.suite_cases.contains(&c.name)).min_by_key(|c| (c.code.insns.len(), c.memory.len(), c.name.len()))?;
    let mut expect = r.model_outcomes.get(&best.name)?.clone();
    expect.meta = trapdiff_arch::outcome::Meta { backend: "model".into(), policy: Some("linux-6.1".into()), ..Default::default() };
    let info = quirk.info();
    let mut c = best.clone();
    c.name = format!("regressions/{}", info.name);
    c.description = format!("{} Catches the refhyp quirk `{}`, which {}.", best.description, info.name, info.behaviour);
    c.expect = Some(expect);
    c.provenance = trapdiff_arch::case::Provenance {
        source: "regression".into(),
        detail: format!("from the suite case {}; fixed in {}", best.name, info.fixed_in),
        commit: Some(info.fix.to_string()),
        quirk: Some(info.name.to_string()),
    };
    Some(c)
}

/// The quirk list: name, what it does, the fix it undoes.
pub fn list() -> String {
    let mut s = String::new();
    for q in QUIRKS {
        let _ = writeln!(s, "{}\n    {}\n    fix: {} ({})", q.name, q.behaviour, q.fix, q.fixed_in);
        if let Some(why) = q.tcg_blind {
            let _ = writeln!(s, "    blind under QEMU TCG: {why}");
        }
    }
    s
}

/// The check's table (Markdown), the cases listed up to `show` per quirk.
pub fn render(r: &CheckReport, show: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| quirk | caught | suite cases that catch it | regression case |");
    let _ = writeln!(s, "|---|---|---|---|");
    for c in &r.catches {
        let mut names: Vec<String> = c.suite_cases.iter().take(show).map(|n| format!("`{n}`")).collect();
        if c.suite_cases.len() > show {
            names.push(format!("... ({} in all)", c.suite_cases.len()));
        }
        let regs: Vec<String> = c.regressions.iter().map(|(n, ok)| format!("`{n}` {}", if *ok { "catches" } else { "MISSES" })).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | {} |",
            c.quirk,
            match (c.caught(), c.blind) {
                (true, _) => "yes",
                (false, Some(_)) => "blind under TCG",
                (false, None) => "NO",
            },
            c.suite_cases.len(),
            names.join(", "),
            if regs.is_empty() { "none".to_string() } else { regs.join(", ") }
        );
    }
    let _ = writeln!(
        s,
        "\n{} suite cases; baseline (no quirk) agrees on {} and diverges on {}; {:.0} s.",
        r.suite_cases,
        r.baseline_agree,
        r.baseline_diverge.len(),
        r.seconds
    );
    for c in &r.catches {
        if let (false, Some(why)) = (c.caught(), c.blind) {
            let _ = writeln!(s, "{} is blind under QEMU TCG: {why}", c.quirk);
        }
        if c.errors > 0 {
            let _ = writeln!(s, "{}: the quirked refhyp failed on {} cases (backend errors, not catches)", c.quirk, c.errors);
        }
    }
    s
}
