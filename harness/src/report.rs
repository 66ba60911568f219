//! Run reports: `report.json` (with a `summary` object), JUnit XML, TAP 13 in kselftest
//! style, Markdown, and one self-contained HTML page (a cases x backends matrix, and for each
//! divergence the disassembly and the outcomes side by side).

use std::fmt::Write as _;
use std::path::Path;

use trapdiff_arch::outcome::End;
use trapdiff_arch::Outcome;

use crate::run::{RunResult, Verdict};

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

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn junit(r: &RunResult) -> String {
    let s = &r.summary;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"trapdiff\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        s.cases, s.diverge, s.errors, s.skipped, s.wall_seconds
    );
    let _ = writeln!(x, "<testsuite name=\"trapdiff\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">", s.cases, s.diverge, s.errors, s.skipped);
    for c in &r.cases {
        let _ = write!(x, "  <testcase classname=\"trapdiff.{}\" name=\"{}\">", xml(&c.family), xml(&c.name));
        match c.verdict {
            Verdict::Diverge => {
                for d in &c.divergences {
                    let _ = write!(x, "<failure message=\"{} vs {}: {}\"/>", xml(&d.left), xml(&d.right), xml(&d.explanation));
                }
            }
            Verdict::Error => {
                let msg: Vec<String> = c.outcomes.iter().filter(|(_, o)| matches!(o.end, End::BackendError { .. })).map(|(b, o)| format!("{b}: {}", end_text(o))).collect();
                let _ = write!(x, "<error message=\"{}\"/>", xml(&msg.join("; ")));
            }
            Verdict::Skipped => {
                let _ = write!(x, "<skipped/>");
            }
            _ => {}
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x
}

/// TAP 13 as kselftest prints it (`ok N name # SKIP reason`), so LKFT/KernelCI parsers read it.
pub fn tap(r: &RunResult) -> String {
    let mut t = String::from("TAP version 13\n");
    let _ = writeln!(t, "1..{}", r.cases.len());
    for (i, c) in r.cases.iter().enumerate() {
        let n = i + 1;
        match c.verdict {
            Verdict::Agree => {
                let _ = writeln!(t, "ok {n} {}", c.name);
            }
            Verdict::Waived => {
                let _ = writeln!(t, "ok {n} {} # waived known divergence", c.name);
            }
            Verdict::Skipped => {
                let why = c.outcomes.values().find_map(|o| if let End::Skipped { reason } = &o.end { Some(reason.clone()) } else { None }).unwrap_or_default();
                let _ = writeln!(t, "ok {n} {} # SKIP {why}", c.name);
            }
            Verdict::Diverge => {
                let _ = writeln!(t, "not ok {n} {}", c.name);
                for d in &c.divergences {
                    let _ = writeln!(t, "# {} vs {} ({:?}): {}", d.left, d.right, d.layer, d.explanation);
                }
            }
            Verdict::Error => {
                let _ = writeln!(t, "not ok {n} {} # error", c.name);
                for (b, o) in &c.outcomes {
                    if matches!(o.end, End::BackendError { .. }) {
                        let first = end_text(o).lines().next().unwrap_or_default().to_string();
                        let _ = writeln!(t, "# {b}: {first}");
                    }
                }
            }
        }
    }
    let s = &r.summary;
    let _ = writeln!(t, "# Totals: pass:{} fail:{} xfail:{} xpass:0 skip:{} error:{}", s.agree, s.diverge, s.waived, s.skipped, s.errors);
    t
}

fn summary_table(r: &RunResult) -> String {
    let s = &r.summary;
    let mut m = String::new();
    let _ = writeln!(m, "| cases | agree | diverge | waived | skipped | errors | load errors | wall |");
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(m, "| {} | {} | {} | {} | {} | {} | {} | {:.1} s |", s.cases, s.agree, s.diverge, s.waived, s.skipped, s.errors, s.load_errors, s.wall_seconds);
    let _ = writeln!(m, "\n| backend | cases | cases/s | skipped | errors |\n|---|---|---|---|---|");
    for (b, st) in &s.backends {
        let _ = writeln!(m, "| {b} | {} | {:.1} | {} | {} |", st.cases, st.cases_per_second, st.skipped, st.errors);
    }
    m
}

pub fn markdown(r: &RunResult) -> String {
    let mut m = String::from("# trapdiff run\n\n");
    m += &summary_table(r);
    let meta = r.cases.iter().flat_map(|c| c.outcomes.values()).find(|o| o.meta.kernel.is_some());
    if let Some(o) = meta {
        let _ = writeln!(m, "\nkernel: {} · CPU MIDR: {} · QEMU: {}", o.meta.kernel.clone().unwrap_or_default(), o.meta.midr.clone().unwrap_or_default(), o.meta.qemu.clone().unwrap_or_default());
    }
    let div: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::Diverge).collect();
    if !div.is_empty() {
        let _ = writeln!(m, "\n## Divergences\n\n| case | backends | layer | explanation |\n|---|---|---|---|");
        for c in div {
            for d in &c.divergences {
                let _ = writeln!(m, "| `{}` | {} vs {} | {:?} | {} |", c.name, d.left, d.right, d.layer, d.explanation.replace('|', "\\|"));
            }
        }
    }
    let errs: Vec<_> = r.cases.iter().filter(|c| c.verdict == Verdict::Error).collect();
    if !errs.is_empty() {
        let _ = writeln!(m, "\n## Backend errors\n");
        for c in errs {
            for (b, o) in &c.outcomes {
                if matches!(o.end, End::BackendError { .. }) {
                    let _ = writeln!(m, "- `{}` on {b}: {}", c.name, end_text(o).lines().next().unwrap_or_default());
                }
            }
        }
    }
    if !r.load_errors.is_empty() {
        let _ = writeln!(m, "\n## Case files that did not load\n");
        for e in &r.load_errors {
            let _ = writeln!(m, "- {e}");
        }
    }
    if !r.unused_waivers.is_empty() {
        let _ = writeln!(m, "\n## Unused waivers\n");
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
.agree{background:#dfd}.diverge{background:#fcc}.waived{background:#ffd}.skipped{background:#eee}.error{background:#f9c}\
pre{font-size:11px;background:#f6f6f6;padding:4px;max-width:60em;overflow:auto}.side{display:flex;gap:1em}</style></head><body>",
    );
    let _ = write!(h, "<h1>trapdiff report</h1><pre>{}</pre>", xml(&summary_table(r)));
    h.push_str("<h2>Cases x backends</h2><table><tr><th>case</th><th>verdict</th>");
    for b in &backends {
        let _ = write!(h, "<th>{}</th>", xml(b));
    }
    h.push_str("</tr>");
    for c in &r.cases {
        let cls = format!("{:?}", c.verdict).to_lowercase();
        let _ = write!(h, "<tr><td><a href=\"#{0}\">{0}</a></td><td class=\"{cls}\">{cls}</td>", xml(&c.name));
        for b in &backends {
            let cell = c.outcomes.get(b).map(|o| format!("{} ev, {}", o.events.len(), end_text(o))).unwrap_or_default();
            let _ = write!(h, "<td>{}</td>", xml(&cell.chars().take(60).collect::<String>()));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h2>Divergences</h2>");
    for c in r.cases.iter().filter(|c| c.verdict == Verdict::Diverge) {
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
