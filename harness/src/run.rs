//! `trapdiff run`: every case on every chosen backend, outcomes streamed to disk as they
//! arrive, then diffed pairwise, waivers applied, and the verdicts summarised.
//!
//! Live backends (refhyp, kvm) each run in their own threads (`jobs` persistent instances per
//! backend, each taking every `jobs`-th case); the model runs in-process. A backend that fails
//! to start turns its cases into backend errors; the run goes on.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use trapdiff_arch::outcome::End;
use trapdiff_arch::{Case, Outcome};

use crate::backend::Backend;
use crate::diff::{self, Divergence, FieldDiff};
use crate::waivers::WaiverFile;

/// A backend to run, and how to make an instance of it.
pub struct BackendSpec {
    pub name: String,
    /// Makes one instance; an error (e.g. missing image) is recorded for every case.
    pub make: Box<dyn Fn() -> Result<Box<dyn Backend>, String> + Send + Sync>,
    /// Persistent instances to run side by side.
    pub instances: usize,
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendSpec({} x{})", self.name, self.instances)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every backend that ran the case agrees.
    Agree,
    /// Some pair disagrees on a field no waiver covers.
    Diverge,
    /// Disagreements exist but every one is waived.
    Waived,
    /// Fewer than two backends could run the case (skips).
    Skipped,
    /// A backend failed on the case (infrastructure, not a verdict).
    Error,
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub path: PathBuf,
    pub family: String,
    pub verdict: Verdict,
    pub outcomes: BTreeMap<String, Outcome>,
    pub divergences: Vec<Divergence>,
    pub waived: Vec<WaivedField>,
}

#[derive(Debug, Serialize)]
pub struct WaivedField {
    pub backends: [String; 2],
    pub field: FieldDiff,
    pub reason: String,
    pub reference: String,
}

#[derive(Debug, Default, Serialize)]
pub struct BackendStats {
    pub cases: usize,
    pub seconds: f64,
    pub cases_per_second: f64,
    pub errors: usize,
    pub skipped: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub cases: usize,
    pub agree: usize,
    pub diverge: usize,
    pub waived: usize,
    pub skipped: usize,
    pub errors: usize,
    pub load_errors: usize,
    pub wall_seconds: f64,
    pub backends: BTreeMap<String, BackendStats>,
}

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub summary: Summary,
    pub load_errors: Vec<String>,
    pub unused_waivers: Vec<String>,
    pub cases: Vec<CaseResult>,
}

impl RunResult {
    /// 0: all agree or waived; 1: divergences; 2: infrastructure errors.
    pub fn exit_code(&self) -> u8 {
        if self.summary.errors > 0 || self.summary.load_errors > 0 {
            2
        } else if self.summary.diverge > 0 {
            1
        } else {
            0
        }
    }
}

struct Progress {
    tty: bool,
    total: usize,
    /// Cases done per backend, and when the last one finished.
    done: BTreeMap<String, (usize, Instant)>,
    started: Instant,
    last: Instant,
    diverged: usize,
}

impl Progress {
    fn tick(&mut self, backend: &str, force: bool) {
        if !force {
            let e = self.done.entry(backend.to_string()).or_insert((0, Instant::now()));
            e.0 += 1;
            e.1 = Instant::now();
        }
        if !force && self.last.elapsed() < Duration::from_millis(if self.tty { 200 } else { 5000 }) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(b, (n, last))| format!("{b} {n}/{} ({:.1}/s)", self.total, *n as f64 / last.duration_since(self.started).as_secs_f64().max(1e-6)))
            .collect();
        let line = format!("{}  divergences {}  [{:.0}s]", parts.join("  "), self.diverged, secs);
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Run `cases` on `backends`, streaming outcomes to `stream` (JSON lines) if given.
pub fn run(
    cases: Vec<(PathBuf, Case)>,
    load_errors: Vec<String>,
    backends: Vec<BackendSpec>,
    waivers: &WaiverFile,
    stream: Option<PathBuf>,
) -> RunResult {
    let started = Instant::now();
    let n = cases.len();
    let cases = std::sync::Arc::new(cases);
    let (tx, rx) = mpsc::channel::<(usize, String, Outcome)>();
    let mut stats: BTreeMap<String, BackendStats> = BTreeMap::new();
    let mut handles = Vec::new();
    for spec in backends {
        stats.insert(spec.name.clone(), BackendStats::default());
        let spec = std::sync::Arc::new(spec);
        for inst in 0..spec.instances.max(1) {
            let (spec, cases, tx) = (spec.clone(), cases.clone(), tx.clone());
            handles.push(std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut backend = (spec.make)();
                let mut count = 0usize;
                for i in (inst..cases.len()).step_by(spec.instances.max(1)) {
                    let outcome = match backend.as_mut() {
                        Ok(b) => b.run(&cases[i].1),
                        Err(e) => Outcome { end: End::BackendError { message: e.clone() }, ..Outcome::default() },
                    };
                    count += 1;
                    if tx.send((i, spec.name.clone(), outcome)).is_err() {
                        break;
                    }
                }
                (spec.name.clone(), count, t0.elapsed())
            }));
        }
    }
    drop(tx);
    let n_backends = stats.len();
    let mut used = vec![false; waivers.waivers.len()];
    let mut judged: Vec<Option<CaseResult>> = (0..n).map(|_| None).collect();
    let mut outcomes: Vec<BTreeMap<String, Outcome>> = (0..n).map(|_| BTreeMap::new()).collect();
    let mut out_file = stream.and_then(|p| std::fs::File::create(p).ok()).map(std::io::BufWriter::new);
    let tty = std::io::stderr().is_terminal();
    let mut progress = Progress { tty, total: n, done: BTreeMap::new(), started, last: Instant::now(), diverged: 0 };
    for (i, name, o) in rx {
        if let Some(f) = out_file.as_mut() {
            let line = serde_json::json!({"case": cases[i].1.name, "backend": name, "outcome": o});
            let _ = writeln!(f, "{line}");
        }
        outcomes[i].insert(name.clone(), o);
        // A case is judged once, as soon as every backend has reported ("divergences so far").
        if outcomes[i].len() == n_backends {
            let (path, case) = &cases[i];
            let r = judge(path, case, std::mem::take(&mut outcomes[i]), waivers, &mut used);
            progress.diverged += usize::from(r.verdict == Verdict::Diverge);
            judged[i] = Some(r);
        }
        progress.tick(&name, false);
    }
    progress.tick("", true);
    if tty {
        eprintln!();
    }
    if let Some(mut f) = out_file {
        let _ = f.flush();
    }
    let mut per_backend_time: BTreeMap<String, Duration> = BTreeMap::new();
    for h in handles {
        if let Ok((name, _count, d)) = h.join() {
            let e = per_backend_time.entry(name).or_default();
            *e = (*e).max(d);
        }
    }
    // Cases some backend never reported (its thread ended early) are judged on what arrived.
    let mut results = Vec::with_capacity(n);
    for (i, (outs, done)) in outcomes.into_iter().zip(judged).enumerate() {
        let (path, case) = &cases[i];
        results.push(done.unwrap_or_else(|| judge(path, case, outs, waivers, &mut used)));
    }
    let mut summary = Summary { cases: n, load_errors: load_errors.len(), ..Summary::default() };
    for r in &results {
        match r.verdict {
            Verdict::Agree => summary.agree += 1,
            Verdict::Diverge => summary.diverge += 1,
            Verdict::Waived => summary.waived += 1,
            Verdict::Skipped => summary.skipped += 1,
            Verdict::Error => summary.errors += 1,
        }
        for (b, o) in &r.outcomes {
            let s = stats.entry(b.clone()).or_default();
            s.cases += 1;
            match o.end {
                End::BackendError { .. } => s.errors += 1,
                End::Skipped { .. } => s.skipped += 1,
                _ => {}
            }
        }
    }
    for (b, s) in stats.iter_mut() {
        s.seconds = per_backend_time.get(b).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        s.cases_per_second = if s.seconds > 0.0 { s.cases as f64 / s.seconds } else { 0.0 };
    }
    summary.backends = stats;
    summary.wall_seconds = started.elapsed().as_secs_f64();
    let unused_waivers = waivers
        .waivers
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(w, _)| format!("{} [{} vs {}] {}", w.case, w.backends[0], w.backends[1], w.fields.join(", ")))
        .collect();
    RunResult { summary, load_errors, unused_waivers, cases: results }
}

/// The name a case's pinned `expect` outcome goes by in verdicts and reports.
pub const EXPECT: &str = "expect";

/// Diff every pair of outcomes of one case and decide its verdict.
fn judge(path: &std::path::Path, case: &Case, mut outs: BTreeMap<String, Outcome>, waivers: &WaiverFile, used: &mut [bool]) -> CaseResult {
    // A regression case's pinned outcome is one more side to agree with.
    if let Some(e) = &case.expect {
        if !outs.is_empty() {
            outs.insert(EXPECT.to_string(), e.clone());
        }
    }
    let unknown = outs.get("model").or(outs.get(EXPECT)).map(|m| m.unknown.clone()).unwrap_or_default();
    let runnable: Vec<(&String, &Outcome)> = outs.iter().filter(|(_, o)| !o.end.is_infrastructure()).collect();
    let errored = outs.values().any(|o| matches!(o.end, End::BackendError { .. }));
    // Live outcomes record the QEMU version, or "native" on silicon.
    let under_qemu = outs.iter().any(|(n, o)| n != "model" && o.meta.qemu.as_deref().is_some_and(|q| q != "native"));
    let mut divergences = Vec::new();
    let mut waived = Vec::new();
    for (i, (an, a)) in runnable.iter().enumerate() {
        for (bn, b) in &runnable[i + 1..] {
            let fields = diff::compare(a, b, &unknown);
            if fields.is_empty() {
                continue;
            }
            let (left, w) = waivers.apply(&case.name, an, bn, under_qemu, fields);
            for (f, idx) in w {
                used[idx] = true;
                let wv = &waivers.waivers[idx];
                waived.push(WaivedField {
                    backends: [an.to_string(), bn.to_string()],
                    field: f,
                    reason: wv.reason.clone(),
                    reference: wv.reference.clone(),
                });
            }
            if !left.is_empty() {
                divergences.push(diff::explain(an, a, bn, b, left));
            }
        }
    }
    let verdict = if !divergences.is_empty() {
        Verdict::Diverge
    } else if errored {
        Verdict::Error
    } else if runnable.len() < 2 && outs.len() >= 2 {
        Verdict::Skipped
    } else if !waived.is_empty() {
        Verdict::Waived
    } else {
        Verdict::Agree
    };
    CaseResult {
        name: case.name.clone(),
        path: path.to_path_buf(),
        family: case.family.name().to_string(),
        verdict,
        outcomes: outs,
        divergences,
        waived,
    }
}

/// Keep the cases whose name contains `filter` and that fall in shard `i` of `n` (1-based).
pub fn select(cases: Vec<(PathBuf, Case)>, filter: Option<&str>, shard: Option<(usize, usize)>) -> Vec<(PathBuf, Case)> {
    cases
        .into_iter()
        .filter(|(_, c)| filter.is_none_or(|f| c.name.contains(f)))
        .enumerate()
        .filter(|(k, _)| shard.is_none_or(|(i, n)| k % n == i - 1))
        .map(|(_, c)| c)
        .collect()
}
