//! Run reports: `report.json` (with a `summary` object), JUnit XML, TAP 13 in kselftest
//! style, Markdown, and one self-contained HTML page (a cases x backends matrix, and for each
//! divergence the disassembly and the outcomes side by side).

use std::fmt::Write as _;
use std::path::Path;

use trapdiff_arch::outcome::End;
use trapdiff_arch::Outcome;

use crate::run::{CaseResult, RunResult, Verdict};

/// Write every format into `dir`.
pub fn write_all(dir: &Path, r: &RunResult, cases: &[(std::path::PathBuf, trapdiff_arch::Case)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r).unwrap_or_default())?;
    std::fs::write(dir.join("junit.xml"), junit(r))?;
    std::fs::write(dir.join("results.tap"), tap(r))?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    std::fs::write(dir.join("report.html"), html(r, cases))?;
    Ok(())
}

fn end_text(o: &Outcome) -> String {
    match &o.end {
        End::Done => "done".into(),
        End::EndOnException => "ended on exception".into(),
        End::ExceptionLimit => "exception limit".into(),
        End::ExitLimit => "exit limit".into(),
        End::Timeout => "timeout".into(),
        End::RunError { errno } => format!("KVM_RUN errno {errno}"),
        End::Stopped { reason } => format!("stopped: {reason}"),
        End::Skipped { reason } => format!("skipped: {reason}"),
        End::BackendError { message } => format!("backend error: {message}"),
    }
}

pub fn xml(s: &str) -> String {
    clean(s).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Text without control characters (console tails carry escapes and stray bytes), except
/// newlines and tabs.
pub fn clean(s: &str) -> String {
    s.chars().filter(|&c| !c.is_control() || c == '\n' || c == '\t').collect()
}

/// One line of text for a single-line field (a TAP description, a table cell).
fn one_line(s: &str) -> String {
    clean(s).lines().next().unwrap_or_default().to_string()
}

/// The longest time any side took on the case (they ran side by side).
fn case_time(c: &CaseResult) -> std::time::Duration {
    let us = c.outcomes.values().filter_map(|o| o.meta.elapsed_us).max().unwrap_or(0);
    std::time::Duration::from_micros(us)
}

/// Why a case was not compared, for the skip message of every format.
fn not_compared(c: &CaseResult) -> String {
    match c.verdict {
        Verdict::NoComparison => format!("single-backend: no comparison (ran on {})", c.outcomes.keys().cloned().collect::<Vec<_>>().join(", ")),
        _ => c.skip_reasons().join("; "),
    }
}

/// Every line of a case's kernel findings, `backend (kernel): line`.
fn finding_lines(c: &CaseResult) -> Vec<String> {
    let mut v = Vec::new();
    for (b, lines) in c.kernel_findings() {
        let kernel = c.outcomes.get(b).and_then(|o| o.meta.kernel.clone()).unwrap_or_else(|| "?".into());
        for l in lines {
            v.push(format!("{b} ({kernel}): {}", clean(l)));
        }
    }
    v
}

/// JUnit XML through quick-junit: one testcase per case, one `<failure>` per failing case
/// holding all its divergences (or kernel findings), `<error>` for backend errors, `<skipped>`
/// with the reason; control characters are stripped by `XmlString`.
pub fn junit(r: &RunResult) -> String {
    use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("trapdiff");
    suite.set_time(std::time::Duration::from_secs_f64(r.summary.wall_seconds.max(0.0)));
    if r.summary.single_backend {
        suite.add_property(Property::new("comparison", "single-backend: no comparison"));
    }
    for c in &r.cases {
        let status = match c.verdict {
            Verdict::Agree | Verdict::Waived => TestCaseStatus::success(),
            Verdict::Skipped | Verdict::NoComparison => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(not_compared(c));
                s
            }
            // JUnit has no expected failure: a known bug is skipped with its reference, so CI
            // stays green on it and a person still sees it.
            Verdict::Known => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!("known: {}", c.known_issues().join("; ")));
                s
            }
            Verdict::Diverge => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let lines: Vec<String> = c.divergences.iter().map(|d| format!("{} vs {} ({:?}): {}", d.left, d.right, d.layer, d.explanation)).collect();
                s.set_message(format!("{} divergence(s): {}", lines.len(), lines.first().map(|l| one_line(l)).unwrap_or_default()));
                s.set_type("divergence");
                s.set_description(lines.join("\n"));
                s
            }
            Verdict::KernelFinding => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let lines = finding_lines(c);
                s.set_message(format!("kernel finding: {}", lines.first().cloned().unwrap_or_default()));
                s.set_type("kernel-finding");
                let mut text = lines.join("\n");
                for d in &c.divergences {
                    text.push_str(&format!("\n{} vs {} ({:?}): {}", d.left, d.right, d.layer, d.explanation));
                }
                s.set_description(text);
                s
            }
            Verdict::Error => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(c.errors().join("; "));
                s.set_type("backend-error");
                let full: Vec<String> =
                    c.outcomes.iter().filter(|(_, o)| matches!(o.end, End::BackendError { .. })).map(|(b, o)| format!("{b}: {}", end_text(o))).collect();
                s.set_description(full.join("\n"));
                s
            }
        };
        let mut tc = TestCase::new(c.name.as_str(), status);
        tc.set_classname(format!("trapdiff.{}", c.family));
        tc.set_time(case_time(c));
        tc.add_property(Property::new("verdict", c.verdict.name()));
        if c.verdict == Verdict::Waived {
            tc.set_system_out(format!("waived: {}", c.waiver_reasons().join("; ")));
        }
        suite.add_test_case(tc);
    }
    let mut report = Report::new("trapdiff");
    report.set_time(std::time::Duration::from_secs_f64(r.summary.wall_seconds.max(0.0)));
    report.add_test_suite(suite);
    report.to_string().unwrap_or_else(|e| format!("<!-- junit serialisation failed: {e} -->\n"))
}

/// TAP 13 as kselftest prints it (`ok N name # SKIP reason`, `# XFAIL reason` for a waived
/// divergence, `not ok N name # TODO known: ...` for a known kernel bug: TAP's expected
/// failure), so LKFT/KernelCI parsers read it.
pub fn tap(r: &RunResult) -> String {
    let mut t = String::from("TAP version 13\n");
    let _ = writeln!(t, "1..{}", r.cases.len());
    if r.summary.single_backend {
        let _ = writeln!(t, "# single-backend: no comparison");
    }
    for (i, c) in r.cases.iter().enumerate() {
        let n = i + 1;
        let name = one_line(&c.name);
        match c.verdict {
            Verdict::Agree => {
                let _ = writeln!(t, "ok {n} {name}");
            }
            Verdict::Waived => {
                let _ = writeln!(t, "ok {n} {name} # XFAIL {}", one_line(&c.waiver_reasons().join("; ")));
            }
            Verdict::Skipped | Verdict::NoComparison => {
                let _ = writeln!(t, "ok {n} {name} # SKIP {}", one_line(&not_compared(c)));
            }
            Verdict::Known => {
                let _ = writeln!(t, "not ok {n} {name} # TODO known: {}", one_line(&c.known_issues().join("; ")));
            }
            Verdict::Diverge => {
                let _ = writeln!(t, "not ok {n} {name}");
                for d in &c.divergences {
                    let _ = writeln!(t, "# {} vs {} ({:?}): {}", d.left, d.right, d.layer, one_line(&d.explanation));
                }
            }
            Verdict::KernelFinding => {
                let _ = writeln!(t, "not ok {n} {name} # kernel-finding");
                for l in finding_lines(c) {
                    let _ = writeln!(t, "# {l}");
                }
            }
            Verdict::Error => {
                let _ = writeln!(t, "not ok {n} {name} # error");
                for e in c.errors() {
                    let _ = writeln!(t, "# {}", one_line(&e));
                }
            }
        }
    }
    let s = &r.summary;
    let _ = writeln!(
        t,
        "# Totals: pass:{} fail:{} xfail:{} xpass:0 skip:{} error:{}",
        s.agree,
        s.diverge + s.kernel_findings,
        s.waived + s.known,
        s.skipped + s.no_comparison,
        s.errors
    );
    t
}

fn summary_table(r: &RunResult) -> String {
    let s = &r.summary;
    let mut m = String::new();
    let head: Vec<&str> = Verdict::ALL.iter().map(|v| v.name()).collect();
    let _ = writeln!(m, "| cases | {} | load errors | wall |", head.join(" | "));
    let _ = writeln!(m, "|---|{}---|---|", "---|".repeat(head.len()));
    let counts: Vec<String> = Verdict::ALL.iter().map(|&v| s.count(v).to_string()).collect();
    let _ = writeln!(m, "| {} | {} | {} | {:.1} s |", s.cases, counts.join(" | "), s.load_errors, s.wall_seconds);
    if s.single_backend {
        let _ =
            writeln!(m, "\n**single-backend: no comparison** — one backend ran, so no case was compared; select two or more (`--backends model,refhyp,kvm`).");
    }
    let _ = writeln!(m, "\n| backend | cases | cases/s | skipped | errors | kernel findings |\n|---|---|---|---|---|---|");
    for (b, st) in &s.backends {
        let _ = writeln!(m, "| {b} | {} | {:.1} | {} | {} | {} |", st.cases, st.cases_per_second, st.skipped, st.errors, st.kernel_findings);
    }
    m
}

fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

pub fn markdown(r: &RunResult) -> String {
    let mut m = String::from("# trapdiff run\n\n");
    m += &summary_table(r);
    let meta = r.cases.iter().flat_map(|c| c.outcomes.values()).find(|o| o.meta.kernel.is_some());
    if let Some(o) = meta {
        let _ = writeln!(
            m,
            "\nkernel: {} · CPU MIDR: {} · QEMU: {}",
            o.meta.kernel.clone().unwrap_or_default(),
            o.meta.midr.clone().unwrap_or_default(),
            o.meta.qemu.clone().unwrap_or_default()
        );
    }
    let kf: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::KernelFinding).collect();
    if !kf.is_empty() {
        let _ = writeln!(m, "\n## Kernel findings\n");
        for c in kf {
            let _ = writeln!(m, "- `{}`:\n```", c.name);
            for l in finding_lines(c) {
                let _ = writeln!(m, "{l}");
            }
            let _ = writeln!(m, "```");
        }
    }
    let div: Vec<_> = r.cases.iter().filter(|c| !c.divergences.is_empty()).collect();
    if !div.is_empty() {
        let _ = writeln!(m, "\n## Divergences\n\n| case | backends | layer | explanation |\n|---|---|---|---|");
        for c in div {
            for d in &c.divergences {
                let _ = writeln!(m, "| `{}` | {} vs {} | {:?} | {} |", c.name, d.left, d.right, d.layer, cell(&d.explanation));
            }
        }
    }
    let known: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::Known).collect();
    if !known.is_empty() {
        let _ = writeln!(m, "\n## Known issues of this kernel\n\n| case | known issue |\n|---|---|");
        for c in known {
            let _ = writeln!(m, "| `{}` | {} |", c.name, cell(&c.known_issues().join("; ")));
        }
    }
    let errs: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::Error).collect();
    if !errs.is_empty() {
        let _ = writeln!(m, "\n## Backend errors\n");
        for c in errs {
            for e in c.errors() {
                let _ = writeln!(m, "- `{}` on {}", c.name, one_line(&e));
            }
        }
    }
    let skipped: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::Skipped).collect();
    if !skipped.is_empty() {
        let _ = writeln!(m, "\n## Skipped\n\n| case | why |\n|---|---|");
        for c in skipped {
            let _ = writeln!(m, "| `{}` | {} |", c.name, cell(&not_compared(c)));
        }
    }
    if !r.boot_findings.is_empty() {
        let _ = writeln!(m, "\n## Kernel findings while booting (no case)\n");
        for (b, lines) in &r.boot_findings {
            let _ = writeln!(m, "- {b}:\n```\n{}\n```", clean(&lines.join("\n")));
        }
    }
    if !r.load_errors.is_empty() {
        let _ = writeln!(m, "\n## Case files that did not load\n");
        for e in &r.load_errors {
            let _ = writeln!(m, "- {}", one_line(e));
        }
    }
    if !r.unused_waivers.is_empty() {
        let _ = writeln!(m, "\n## Unused waivers and known issues\n");
        for w in &r.unused_waivers {
            let _ = writeln!(m, "- {w}");
        }
    }
    m
}

fn html(r: &RunResult, cases: &[(std::path::PathBuf, trapdiff_arch::Case)]) -> String {
    let backends: Vec<String> = r.summary.backends.keys().cloned().collect();
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>trapdiff report</title><style>\
body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}\
.agree{background:#dfd}.diverge{background:#fcc}.waived{background:#ffd}.known{background:#fdb}.skipped{background:#eee}.no-comparison{background:#eee}.kernel-finding{background:#f66}.error{background:#f9c}\
pre{font-size:11px;background:#f6f6f6;padding:4px;max-width:60em;overflow:auto}.side{display:flex;gap:1em}</style></head><body>",
    );
    let _ = write!(h, "<h1>trapdiff report</h1><pre>{}</pre>", xml(&summary_table(r)));
    h.push_str("<h2>Cases x backends</h2><table><tr><th>case</th><th>verdict</th>");
    for b in &backends {
        let _ = write!(h, "<th>{}</th>", xml(b));
    }
    h.push_str("</tr>");
    for c in &r.cases {
        let cls = c.verdict.name();
        let _ = write!(h, "<tr><td><a href=\"#{0}\">{0}</a></td><td class=\"{cls}\">{cls}</td>", xml(&c.name));
        for b in &backends {
            let cell = c.outcomes.get(b).map(|o| format!("{} ev, {}", o.events.len(), end_text(o))).unwrap_or_default();
            let _ = write!(h, "<td>{}</td>", xml(&cell.chars().take(60).collect::<String>()));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    let kf: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::KernelFinding).collect();
    if !kf.is_empty() {
        h.push_str("<h2>Kernel findings</h2>");
        for c in kf {
            let _ = write!(h, "<h3 id=\"{0}\">{0}</h3><pre>{1}</pre>", xml(&c.name), xml(&finding_lines(c).join("\n")));
        }
    }
    let skipped: Vec<_> = r.cases.iter().filter(|c| matches!(c.verdict, Verdict::Skipped | Verdict::NoComparison | Verdict::Waived)).collect();
    if !skipped.is_empty() {
        h.push_str("<h2>Skipped and waived</h2><table><tr><th>case</th><th>verdict</th><th>why</th></tr>");
        for c in skipped {
            let why = if c.verdict == Verdict::Waived { c.waiver_reasons().join("; ") } else { not_compared(c) };
            let _ = write!(h, "<tr><td>{}</td><td class=\"{1}\">{1}</td><td>{2}</td></tr>", xml(&c.name), c.verdict.name(), xml(&why));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Divergences</h2>");
    for c in r.cases.iter().filter(|c| !c.divergences.is_empty()) {
        let _ = write!(h, "<h3 id=\"{0}\">{0}</h3>", xml(&c.name));
        for d in &c.divergences {
            let _ = write!(h, "<p><b>{} vs {}</b> ({:?}): {}</p>", xml(&d.left), xml(&d.right), d.layer, xml(&d.explanation));
        }
        if let Some((_, case)) = cases.iter().find(|(_, k)| k.name == c.name) {
            let _ = write!(h, "<pre>{}</pre>", xml(&crate::show::render(case)));
        }
        h.push_str("<div class=\"side\">");
        for (b, o) in &c.outcomes {
            let mut o = o.clone();
            o.meta = Default::default();
            let _ = write!(h, "<div><b>{}</b><pre>{}</pre></div>", xml(b), xml(&serde_json::to_string_pretty(&o).unwrap_or_default()));
        }
        h.push_str("</div>");
    }
    h.push_str("</body></html>\n");
    h
}
