//! Reports side by side: `trapdiff compare OLD NEW` (tonight against last night or the last
//! release: what is new, what got fixed) and the matrix of one suite over several kernels
//! (`run --kernel A --kernel B`: per case, the verdict on each).
//!
//! Both read only `report.json`'s case names, verdicts and divergence explanations, so a
//! trimmed published report compares as well as a full one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{clean, xml};
use crate::run::Verdict;

#[derive(Clone, Debug, Deserialize)]
pub struct ReportFile {
    pub cases: Vec<ReportCase>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReportCase {
    pub name: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub divergences: Vec<ReportDivergence>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReportDivergence {
    pub left: String,
    pub right: String,
    pub explanation: String,
}

impl ReportCase {
    fn explanation(&self) -> String {
        self.divergences.iter().map(|d| format!("{} vs {}: {}", d.left, d.right, d.explanation)).collect::<Vec<_>>().join("; ")
    }
}

/// Read `report.json` from a report directory or the file itself.
pub fn load(path: &Path) -> Result<ReportFile, String> {
    let file = if path.is_dir() { path.join("report.json") } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}:{}:{}: {e}", file.display(), e.line(), e.column()))
}

/// A verdict a nightly must look at.
fn failing(v: Verdict) -> bool {
    matches!(v, Verdict::Diverge | Verdict::Error | Verdict::KernelFinding)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Failing now, not before: a divergence, error or kernel finding that is new (also a
    /// case that went from diverging to a kernel finding or an error).
    NewDivergence,
    /// Failing before, not now.
    Fixed,
    /// Failing in both (the explanation may have changed: see `detail`).
    StillDiverging,
    /// Passing (agree, waived, known, skipped) in both.
    StillAgreeing,
    /// Only in the new report (it fails the comparison when it fails).
    NewCase,
    /// Only in the old report.
    Gone,
}

impl Change {
    pub const ALL: [Change; 6] = [Change::NewDivergence, Change::Fixed, Change::StillDiverging, Change::StillAgreeing, Change::NewCase, Change::Gone];
    pub fn name(self) -> &'static str {
        match self {
            Change::NewDivergence => "new divergence",
            Change::Fixed => "fixed",
            Change::StillDiverging => "still diverging",
            Change::StillAgreeing => "still agreeing",
            Change::NewCase => "new case",
            Change::Gone => "gone",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseChange {
    pub name: String,
    pub change: Change,
    pub old: Option<Verdict>,
    pub new: Option<Verdict>,
    /// The new explanation (or the old one for a fixed or gone case).
    pub detail: String,
    /// Whether this change fails the comparison.
    pub fails: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub old: String,
    pub new: String,
    pub counts: BTreeMap<String, usize>,
    pub failing: usize,
    pub cases: Vec<CaseChange>,
}

impl Comparison {
    /// 1 when something is newly failing, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failing > 0)
    }
}

pub fn compare(old_name: &str, old: &ReportFile, new_name: &str, new: &ReportFile) -> Comparison {
    let o: BTreeMap<&str, &ReportCase> = old.cases.iter().map(|c| (c.name.as_str(), c)).collect();
    let n: BTreeMap<&str, &ReportCase> = new.cases.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut names: Vec<&str> = o.keys().chain(n.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut cases = Vec::new();
    for name in names {
        let (a, b) = (o.get(name), n.get(name));
        let (change, detail) = match (a, b) {
            (None, Some(b)) => (Change::NewCase, b.explanation()),
            (Some(a), None) => (Change::Gone, a.explanation()),
            (Some(a), Some(b)) => {
                let (fa, fb) = (failing(a.verdict), failing(b.verdict));
                // A failure of a new kind (diverge -> kernel-finding or error) is news too.
                let worse = fa && fb && a.verdict != b.verdict && b.verdict != Verdict::Diverge;
                if (fb && !fa) || worse {
                    (Change::NewDivergence, b.explanation())
                } else if fa && !fb {
                    (Change::Fixed, a.explanation())
                } else if fa {
                    let (ea, eb) = (a.explanation(), b.explanation());
                    (Change::StillDiverging, if ea == eb { eb } else { format!("now: {eb} (was: {ea})") })
                } else {
                    (Change::StillAgreeing, String::new())
                }
            }
            (None, None) => continue,
        };
        let fails = change == Change::NewDivergence || (change == Change::NewCase && b.is_some_and(|b| failing(b.verdict)));
        cases.push(CaseChange { name: name.to_string(), change, old: a.map(|c| c.verdict), new: b.map(|c| c.verdict), detail, fails });
    }
    let mut counts = BTreeMap::new();
    for c in Change::ALL {
        counts.insert(c.name().to_string(), cases.iter().filter(|x| x.change == c).count());
    }
    let failing = cases.iter().filter(|c| c.fails).count();
    Comparison { old: old_name.to_string(), new: new_name.to_string(), counts, failing, cases }
}

fn verdict_name(v: Option<Verdict>) -> &'static str {
    v.map(Verdict::name).unwrap_or("-")
}

pub fn markdown(c: &Comparison) -> String {
    let mut m = format!("# trapdiff compare\n\nold: `{}` · new: `{}`\n\n", c.old, c.new);
    let _ = writeln!(m, "| {} |", Change::ALL.map(|x| x.name()).join(" | "));
    let _ = writeln!(m, "|{}", "---|".repeat(Change::ALL.len()));
    let _ = writeln!(m, "| {} |", Change::ALL.map(|x| c.counts.get(x.name()).copied().unwrap_or(0).to_string()).join(" | "));
    let _ = writeln!(m, "\n{} newly failing case(s){}", c.failing, if c.failing > 0 { ": the comparison fails" } else { "" });
    for ch in [Change::NewDivergence, Change::NewCase, Change::Fixed, Change::StillDiverging, Change::Gone] {
        let rows: Vec<&CaseChange> = c.cases.iter().filter(|x| x.change == ch && (ch != Change::NewCase || x.fails || !x.detail.is_empty())).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(m, "\n## {} ({})\n\n| case | old | new | detail |\n|---|---|---|---|", ch.name(), rows.len());
        for r in rows {
            let _ = writeln!(m, "| `{}` | {} | {} | {} |", r.name, verdict_name(r.old), verdict_name(r.new), clean(&r.detail).replace('|', "\\|"));
        }
    }
    m
}

pub fn html(c: &Comparison) -> String {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>trapdiff compare</title><style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}.fails{background:#fcc}.fixed{background:#dfd}</style></head><body>");
    let _ = write!(
        h,
        "<h1>trapdiff compare</h1><p>old: <code>{}</code> · new: <code>{}</code> · {} newly failing</p><table><tr>",
        xml(&c.old),
        xml(&c.new),
        c.failing
    );
    for x in Change::ALL {
        let _ = write!(h, "<th>{}</th>", x.name());
    }
    h.push_str("</tr><tr>");
    for x in Change::ALL {
        let _ = write!(h, "<td>{}</td>", c.counts.get(x.name()).copied().unwrap_or(0));
    }
    h.push_str("</tr></table><h2>Changes</h2><table><tr><th>case</th><th>change</th><th>old</th><th>new</th><th>detail</th></tr>");
    for r in c.cases.iter().filter(|r| r.change != Change::StillAgreeing) {
        let class = if r.fails {
            " class=\"fails\""
        } else if r.change == Change::Fixed {
            " class=\"fixed\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            xml(&r.name),
            r.change.name(),
            verdict_name(r.old),
            verdict_name(r.new),
            xml(&clean(&r.detail))
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// Write compare.json, compare.md and compare.html into `dir`.
pub fn write(dir: &Path, c: &Comparison) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("compare.json"), serde_json::to_string_pretty(c).unwrap_or_default())?;
    std::fs::write(dir.join("compare.md"), markdown(c))?;
    std::fs::write(dir.join("compare.html"), html(c))
}

/// One suite over several kernels (or CPUs): per case, the verdict in each column.
#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    pub columns: Vec<String>,
    /// Per column: verdict name -> count.
    pub totals: Vec<BTreeMap<String, usize>>,
    pub rows: Vec<MatrixRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatrixRow {
    pub name: String,
    pub verdicts: Vec<Option<Verdict>>,
    /// The explanation per column (empty when the case passes there).
    pub explanations: Vec<String>,
    /// The verdicts or explanations differ between columns.
    pub differs: bool,
}

pub fn matrix(columns: &[(String, ReportFile)]) -> Matrix {
    let mut names: Vec<&str> = columns.iter().flat_map(|(_, r)| r.cases.iter().map(|c| c.name.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    let maps: Vec<BTreeMap<&str, &ReportCase>> = columns.iter().map(|(_, r)| r.cases.iter().map(|c| (c.name.as_str(), c)).collect()).collect();
    let rows: Vec<MatrixRow> = names
        .iter()
        .map(|n| {
            let cells: Vec<Option<&&ReportCase>> = maps.iter().map(|m| m.get(n)).collect();
            let verdicts: Vec<Option<Verdict>> = cells.iter().map(|c| c.map(|c| c.verdict)).collect();
            let explanations: Vec<String> = cells.iter().map(|c| c.map(|c| c.explanation()).unwrap_or_default()).collect();
            let differs = verdicts.windows(2).any(|w| w[0] != w[1]) || explanations.windows(2).any(|w| w[0] != w[1]);
            MatrixRow { name: n.to_string(), verdicts, explanations, differs }
        })
        .collect();
    let totals = columns
        .iter()
        .map(|(_, r)| {
            let mut t = BTreeMap::new();
            for c in &r.cases {
                *t.entry(c.verdict.name().to_string()).or_insert(0) += 1;
            }
            t
        })
        .collect();
    Matrix { columns: columns.iter().map(|(l, _)| l.clone()).collect(), totals, rows }
}

pub fn matrix_markdown(m: &Matrix) -> String {
    let mut s = String::from("# trapdiff matrix\n\n| verdict | ");
    let _ = writeln!(s, "{} |\n|---|{}", m.columns.join(" | "), "---|".repeat(m.columns.len()));
    for v in Verdict::ALL {
        let _ =
            writeln!(s, "| {} | {} |", v.name(), m.totals.iter().map(|t| t.get(v.name()).copied().unwrap_or(0).to_string()).collect::<Vec<_>>().join(" | "));
    }
    let differing: Vec<&MatrixRow> = m.rows.iter().filter(|r| r.differs).collect();
    let _ = writeln!(
        s,
        "\n## Cases whose result differs between columns ({})\n\n| case | {} |\n|---|{}",
        differing.len(),
        m.columns.join(" | "),
        "---|".repeat(m.columns.len())
    );
    for r in differing {
        let cells: Vec<String> = r
            .verdicts
            .iter()
            .zip(&r.explanations)
            .map(|(v, e)| if e.is_empty() { verdict_name(*v).to_string() } else { format!("{}: {}", verdict_name(*v), clean(e).replace('|', "\\|")) })
            .collect();
        let _ = writeln!(s, "| `{}` | {} |", r.name, cells.join(" | "));
    }
    s
}

pub fn matrix_html(m: &Matrix) -> String {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>trapdiff matrix</title><style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}.agree{background:#dfd}.diverge{background:#fcc}.waived{background:#ffd}.known{background:#fdb}.skipped,.no-comparison{background:#eee}.kernel-finding{background:#f66}.error{background:#f9c}tr.differs td:first-child{font-weight:bold}</style></head><body><h1>trapdiff matrix</h1><table><tr><th>case</th>");
    for c in &m.columns {
        let _ = write!(h, "<th>{}</th>", xml(c));
    }
    h.push_str("</tr>");
    // Differing rows first: they are what a reader came for.
    for r in m.rows.iter().filter(|r| r.differs).chain(m.rows.iter().filter(|r| !r.differs)) {
        let _ = write!(h, "<tr{}><td>{}</td>", if r.differs { " class=\"differs\"" } else { "" }, xml(&r.name));
        for (v, e) in r.verdicts.iter().zip(&r.explanations) {
            let _ = write!(h, "<td class=\"{}\" title=\"{}\">{}</td>", verdict_name(*v), xml(&clean(e)), verdict_name(*v));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></body></html>\n");
    h
}

pub fn write_matrix(dir: &Path, m: &Matrix) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("matrix.json"), serde_json::to_string_pretty(m).unwrap_or_default())?;
    std::fs::write(dir.join("matrix.md"), matrix_markdown(m))?;
    std::fs::write(dir.join("matrix.html"), matrix_html(m))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;

    fn rep(cases: &[(&str, Verdict, &str)]) -> ReportFile {
        ReportFile {
            cases: cases
                .iter()
                .map(|(n, v, e)| ReportCase {
                    name: n.to_string(),
                    verdict: *v,
                    divergences: if e.is_empty() {
                        vec![]
                    } else {
                        vec![ReportDivergence { left: "kvm".into(), right: "model".into(), explanation: e.to_string() }]
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn every_change_is_classified_and_only_new_failures_fail() {
        use Verdict::*;
        let old =
            rep(&[("a", Agree, ""), ("b", Diverge, "x"), ("c", Diverge, "x"), ("d", Agree, ""), ("gone", Agree, ""), ("e", Diverge, "x"), ("k", Agree, "")]);
        let new = rep(&[
            ("a", Diverge, "y"),
            ("b", Agree, ""),
            ("c", Diverge, "x"),
            ("d", Waived, ""),
            ("new", Agree, ""),
            ("newbad", Error, ""),
            ("e", KernelFinding, ""),
            ("k", Known, ""),
        ]);
        let c = compare("old", &old, "new", &new);
        let get = |n: &str| c.cases.iter().find(|x| x.name == n).unwrap();
        assert_eq!(get("a").change, Change::NewDivergence);
        assert_eq!(get("b").change, Change::Fixed);
        assert_eq!(get("c").change, Change::StillDiverging);
        assert_eq!(get("d").change, Change::StillAgreeing);
        assert_eq!(get("k").change, Change::StillAgreeing);
        assert_eq!(get("gone").change, Change::Gone);
        assert_eq!(get("new").change, Change::NewCase);
        assert_eq!(get("e").change, Change::NewDivergence, "diverge -> kernel finding is news");
        let failing: Vec<&str> = c.cases.iter().filter(|x| x.fails).map(|x| x.name.as_str()).collect();
        assert_eq!(failing, vec!["a", "e", "newbad"]);
        assert_eq!(c.exit_code(), 1);
        assert_eq!(compare("o", &old, "o", &old).exit_code(), 0);
        assert!(markdown(&c).contains("## new divergence (2)"));
    }

    #[test]
    fn the_matrix_marks_rows_that_differ() {
        use Verdict::*;
        let a = rep(&[("x", Diverge, "e"), ("y", Agree, "")]);
        let b = rep(&[("x", Agree, ""), ("y", Agree, "")]);
        let m = matrix(&[("6.1".into(), a), ("6.12".into(), b)]);
        assert_eq!(m.rows.iter().filter(|r| r.differs).map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["x"]);
        assert!(matrix_markdown(&m).contains("| `x` | diverge: kvm vs model: e | agree |"));
    }
}
