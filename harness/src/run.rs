//! `trapdiff run`: every case on every chosen backend, outcomes streamed to disk as they
//! arrive, then diffed pairwise, waivers and known issues applied (`known.rs`), and the
//! verdicts summarised.
//!
//! Each backend runs `instances` persistent instances in threads of their own, taking cases
//! from one shared queue per backend (a rebooting instance strands nothing). Judging is
//! honest: a selected backend that never reports a case makes it an error, one side alone is
//! `no-comparison`, a kernel splat is a `kernel-finding`. A backend that gives up (its boot
//! circuit breaker, a stale image) has its remaining cases marked at once. Outcomes stream to
//! `outcomes.jsonl` (written per record, fsync'd within 100 ms), so `--resume` continues a killed run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use trapdiff_arch::outcome::End;
use trapdiff_arch::{Case, Outcome};

use crate::backend::Backend;
use crate::diff::{self, Divergence, FieldDiff};
use crate::known::{self, KnownList};

/// What a `trapdiff run` was asked to do, saved as `run.json` in its report directory so that
/// `--resume DIR` continues exactly that run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub paths: Vec<PathBuf>,
    pub backends: Vec<String>,
    pub kernel: Option<PathBuf>,
    pub native: bool,
    pub policy: String,
    pub jobs: usize,
    pub quirks: Vec<String>,
    pub kernel_append: Vec<String>,
    pub filter: Option<String>,
    pub shard: Option<(usize, usize)>,
}

impl Plan {
    pub const FILE: &'static str = "run.json";

    pub fn load(dir: &std::path::Path) -> Result<Plan, String> {
        let p = dir.join(Plan::FILE);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| format!("{}: cannot read the run plan: {e} (was the run started with --report {}?)", p.display(), dir.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let p = dir.join(Plan::FILE);
        let tmp = dir.join(".run.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).unwrap_or_default() + "\n")?;
        std::fs::rename(tmp, p)
    }

    pub fn options(&self) -> Result<crate::backend::select::BackendOptions, String> {
        let quirks = self.quirks.iter().map(|q| crate::backend::select::parse_quirk(q)).collect::<Result<Vec<_>, _>>()?;
        Ok(crate::backend::select::BackendOptions {
            names: self.backends.clone(),
            kernel: self.kernel.clone(),
            native: self.native,
            policy: self.policy.clone(),
            jobs: self.jobs,
            quirks: quirks.into_iter().collect(),
            kernel_append: self.kernel_append.clone(),
        })
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every side (two or more) that ran the case agrees.
    Agree,
    /// Some pair disagrees on a field no waiver covers.
    Diverge,
    /// Disagreements exist but every one is waived.
    Waived,
    /// Every disagreement is a known issue of the kernel that ran (`corpus/known-issues.json`).
    Known,
    /// Fewer than two sides could run the case (the others skipped it).
    Skipped,
    /// Only one side was asked (a single-backend run): nothing to compare, not agreement.
    NoComparison,
    /// The kernel printed a WARN/BUG/Oops/lockdep/RCU-stall splat while the case ran.
    KernelFinding,
    /// A backend failed on the case or never reported it (infrastructure, not a verdict).
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 8] =
        [Verdict::Agree, Verdict::Diverge, Verdict::Waived, Verdict::Known, Verdict::Skipped, Verdict::NoComparison, Verdict::KernelFinding, Verdict::Error];

    /// The name reports use (`kernel-finding`, `no-comparison`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Diverge => "diverge",
            Verdict::Waived => "waived",
            Verdict::Known => "known",
            Verdict::Skipped => "skipped",
            Verdict::NoComparison => "no-comparison",
            Verdict::KernelFinding => "kernel-finding",
            Verdict::Error => "error",
        }
    }
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

impl CaseResult {
    /// Kernel findings per side that has any.
    pub fn kernel_findings(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.outcomes.iter().filter(|(_, o)| !o.meta.kernel_findings.is_empty()).map(|(b, o)| (b, &o.meta.kernel_findings))
    }

    /// Why sides skipped the case, `backend: reason` each.
    pub fn skip_reasons(&self) -> Vec<String> {
        self.outcomes.iter().filter_map(|(b, o)| if let End::Skipped { reason } = &o.end { Some(format!("{b}: {reason}")) } else { None }).collect()
    }

    /// Backend errors, `backend: first line of the message` each.
    pub fn errors(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter_map(
                |(b, o)| if let End::BackendError { message } = &o.end { Some(format!("{b}: {}", message.lines().next().unwrap_or_default())) } else { None },
            )
            .collect()
    }

    /// The reasons of the waivers that apply, each once.
    pub fn waiver_reasons(&self) -> Vec<String> {
        let mut v: Vec<String> = self.waived.iter().filter(|w| w.kind == known::Kind::Waiver).map(|w| w.reason.clone()).collect();
        v.dedup();
        v
    }

    /// The known issues that cover this case, `id (reference)` each once.
    pub fn known_issues(&self) -> Vec<String> {
        let mut v: Vec<String> = self.waived.iter().filter(|w| w.kind == known::Kind::Issue).map(|w| format!("{} ({})", w.id, w.reference)).collect();
        v.dedup();
        v
    }
}

#[derive(Debug, Serialize)]
pub struct WaivedField {
    /// Waiver or known issue.
    pub kind: known::Kind,
    /// The entry's id (or its case/fields label for an entry without one).
    pub id: String,
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
    /// Cases whose outcome on this backend carries kernel findings.
    pub kernel_findings: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub cases: usize,
    pub agree: usize,
    pub diverge: usize,
    pub waived: usize,
    #[serde(default)]
    pub known: usize,
    pub skipped: usize,
    pub no_comparison: usize,
    pub kernel_findings: usize,
    pub errors: usize,
    pub load_errors: usize,
    /// Fewer than two backends were selected: no case could be compared.
    pub single_backend: bool,
    pub wall_seconds: f64,
    pub backends: BTreeMap<String, BackendStats>,
}

impl Summary {
    pub fn count(&self, v: Verdict) -> usize {
        match v {
            Verdict::Agree => self.agree,
            Verdict::Diverge => self.diverge,
            Verdict::Waived => self.waived,
            Verdict::Known => self.known,
            Verdict::Skipped => self.skipped,
            Verdict::NoComparison => self.no_comparison,
            Verdict::KernelFinding => self.kernel_findings,
            Verdict::Error => self.errors,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub summary: Summary,
    pub load_errors: Vec<String>,
    pub unused_waivers: Vec<String>,
    /// Kernel findings printed while a backend booted, per backend (they belong to no case).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub boot_findings: BTreeMap<String, Vec<String>>,
    pub cases: Vec<CaseResult>,
}

impl RunResult {
    /// 2: infrastructure errors (a backend failed on or never reported a case, a case file did
    /// not load); 1: divergences or kernel findings; 0: everything agrees or is waived,
    /// skipped, or (single-backend run) had nothing to compare.
    pub fn exit_code(&self) -> u8 {
        exit_code(&self.summary)
    }
}

pub fn exit_code(s: &Summary) -> u8 {
    if s.errors > 0 || s.load_errors > 0 {
        2
    } else if s.diverge > 0 || s.kernel_findings > 0 {
        1
    } else {
        0
    }
}

struct Progress {
    line: crate::progress::ProgressLine,
    total: usize,
    /// Cases done per backend, and when the last one finished.
    done: BTreeMap<String, (usize, Instant)>,
    started: Instant,
    diverged: usize,
}

impl Progress {
    fn tick(&mut self, backend: &str, force: bool) {
        if !force {
            let e = self.done.entry(backend.to_string()).or_insert((0, Instant::now()));
            e.0 += 1;
            e.1 = Instant::now();
        }
        if !force && !self.line.due() {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(b, (n, last))| format!("{b} {n}/{} ({:.1}/s)", self.total, *n as f64 / last.duration_since(self.started).as_secs_f64().max(1e-6)))
            .collect();
        self.line.show(&format!("{}  divergences {}  [{:.0}s]", parts.join("  "), self.diverged, secs));
    }
}

/// Run `cases` on `backends`, streaming outcomes to `stream` (JSON lines) if given.
pub fn run(cases: Vec<(PathBuf, Case)>, load_errors: Vec<String>, backends: Vec<BackendSpec>, known: &KnownList, stream: Option<PathBuf>) -> RunResult {
    let done = cases.iter().map(|_| BTreeMap::new()).collect();
    run_resumable(cases, load_errors, backends, known, stream.map(|p| Stream { path: p, keep: None }), done)
}

/// Where outcomes are streamed: one JSON line per (case, backend), written as it arrives and
/// fsync'd within 100 ms ([`Journal`]), so a killed run loses at most the record being written
/// (`--resume` reads them back).
#[derive(Clone, Debug)]
pub struct Stream {
    pub path: PathBuf,
    /// Resume: keep the first this many bytes of the existing stream (its good records, as
    /// [`read_stream`] found them; a torn last line goes) and append. None: start a new one.
    pub keep: Option<u64>,
}

/// One line of `outcomes.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub case: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
    pub backend: String,
    pub outcome: Outcome,
}

/// What a stream holds: its good records, and the length of the file up to the end of the
/// last good line (a torn last line, from a kill mid-write, is cut off before appending).
#[derive(Debug, Default)]
pub struct StreamContents {
    pub records: Vec<Record>,
    pub good_len: u64,
    /// Lines that did not parse (only a torn last one is expected).
    pub bad_lines: usize,
}

/// Read back `outcomes.jsonl`.
pub fn read_stream(path: &std::path::Path) -> std::io::Result<StreamContents> {
    let bytes = std::fs::read(path)?;
    let mut c = StreamContents::default();
    let mut pos = 0usize;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let complete = line.ends_with(b"\n");
        match serde_json::from_slice::<Record>(line) {
            Ok(r) if complete => {
                c.records.push(r);
                pos += line.len();
                c.good_len = pos as u64;
            }
            _ => {
                c.bad_lines += 1;
                pos += line.len();
            }
        }
    }
    Ok(c)
}

/// Outcomes already recorded in a stream, per case (by path, else by name), for resuming.
pub fn outcomes_done(cases: &[(PathBuf, Case)], records: Vec<Record>) -> Vec<BTreeMap<String, Outcome>> {
    let mut done: Vec<BTreeMap<String, Outcome>> = cases.iter().map(|_| BTreeMap::new()).collect();
    let by_path: BTreeMap<&PathBuf, usize> = cases.iter().enumerate().map(|(i, (p, _))| (p, i)).collect();
    let by_name: BTreeMap<&str, usize> = cases.iter().enumerate().map(|(i, (_, c))| (c.name.as_str(), i)).collect();
    for r in records {
        let i = r.path.as_ref().and_then(|p| by_path.get(p)).or_else(|| by_name.get(r.case.as_str()));
        if let Some(&i) = i {
            // The first record of a (case, backend) wins: a case is never counted twice.
            done[i].entry(r.backend).or_insert(r.outcome);
        }
    }
    done
}

/// What a backend thread hands back when it ends.
struct InstanceEnd {
    name: String,
    elapsed: Duration,
    boot_findings: Vec<String>,
}

/// Run the cases each backend has not yet reported (`done[i]` holds case i's outcomes from an
/// earlier, interrupted run), then judge every case on all its outcomes. Each backend's
/// instances take cases from one shared queue, so an instance that reboots strands nothing.
pub fn run_resumable(
    cases: Vec<(PathBuf, Case)>,
    load_errors: Vec<String>,
    backends: Vec<BackendSpec>,
    known: &KnownList,
    stream: Option<Stream>,
    done: Vec<BTreeMap<String, Outcome>>,
) -> RunResult {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let started = Instant::now();
    let n = cases.len();
    let cases = Arc::new(cases);
    let (tx, rx) = mpsc::channel::<(usize, String, Outcome)>();
    let mut stats: BTreeMap<String, BackendStats> = BTreeMap::new();
    let selected: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
    let mut handles = Vec::new();
    for spec in backends {
        stats.insert(spec.name.clone(), BackendStats::default());
        let todo: Arc<Vec<usize>> = Arc::new((0..n).filter(|&i| !done[i].contains_key(&spec.name)).collect());
        // Nothing left for it (a resumed or merged run): never start it.
        if todo.is_empty() {
            continue;
        }
        let instances = spec.instances.max(1).min(todo.len().max(1));
        let next = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(AtomicUsize::new(instances));
        let spec = Arc::new(spec);
        for _ in 0..instances {
            let (spec, cases, tx, todo, next, alive) = (spec.clone(), cases.clone(), tx.clone(), todo.clone(), next.clone(), alive.clone());
            handles.push(std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut backend = (spec.make)();
                let mut boot_findings = Vec::new();
                let send = |i: usize, o: Outcome| tx.send((i, spec.name.clone(), o)).is_ok();
                loop {
                    if let Some(why) = backend.as_ref().ok().and_then(|b| b.unavailable()) {
                        // The last instance standing marks what is left, at once.
                        if alive.fetch_sub(1, Ordering::SeqCst) == 1 {
                            loop {
                                let k = next.fetch_add(1, Ordering::SeqCst);
                                let Some(&i) = todo.get(k) else { break };
                                let o = Outcome { end: End::BackendError { message: format!("backend unavailable ({why})") }, ..Outcome::default() };
                                if !send(i, o) {
                                    break;
                                }
                            }
                        }
                        break;
                    }
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { break };
                    let outcome = match backend.as_mut() {
                        Ok(b) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.run(&cases[i].1))) {
                            Ok(o) => o,
                            Err(p) => {
                                // A harness bug on one case: record it, and start afresh.
                                let what = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                                backend = (spec.make)();
                                Outcome { end: End::BackendError { message: format!("the harness panicked running this case: {what}") }, ..Outcome::default() }
                            }
                        },
                        Err(e) => Outcome { end: End::BackendError { message: e.clone() }, ..Outcome::default() },
                    };
                    if let Ok(b) = backend.as_mut() {
                        boot_findings.extend(b.take_boot_findings());
                    }
                    if !send(i, outcome) {
                        break;
                    }
                }
                if let Ok(b) = backend.as_mut() {
                    boot_findings.extend(b.take_boot_findings());
                }
                InstanceEnd { name: spec.name.clone(), elapsed: t0.elapsed(), boot_findings }
            }));
        }
    }
    drop(tx);
    let n_sides = selected.len();
    let mut used = vec![false; known.entries.len()];
    let mut judged: Vec<Option<CaseResult>> = (0..n).map(|_| None).collect();
    let mut outcomes = done;
    let mut out_file = stream.and_then(|s| match open_stream(&s) {
        Ok(f) => Some(Journal::new(f)),
        Err(e) => {
            eprintln!("error: cannot write {}: {e} (outcomes are not streamed)", s.path.display());
            None
        }
    });
    let line = crate::progress::ProgressLine::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut progress = Progress { line, total: n, done: BTreeMap::new(), started, diverged: 0 };
    // Cases complete from the earlier run are judged up front.
    for i in 0..n {
        if outcomes[i].len() == n_sides && n_sides > 0 {
            let (path, case) = &cases[i];
            judged[i] = Some(judge(path, case, std::mem::take(&mut outcomes[i]), &selected, known, &mut used));
        }
    }
    loop {
        let (i, name, o) = match rx.recv_timeout(Journal::SYNC_EVERY) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Idle: what was written is made durable now, not at the next outcome.
                if let Some(Err(e)) = out_file.as_mut().map(Journal::sync) {
                    eprintln!("error: syncing the outcome stream: {e}");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(f) = out_file.as_mut() {
            let rec = Record { case: cases[i].1.name.clone(), path: Some(cases[i].0.clone()), backend: name.clone(), outcome: o.clone() };
            if let Err(e) = f.append(&rec) {
                eprintln!("error: writing the outcome stream: {e}");
            }
        }
        outcomes[i].insert(name.clone(), o);
        // A case is judged once, as soon as every backend has reported ("divergences so far").
        if outcomes[i].len() == n_sides {
            let (path, case) = &cases[i];
            let r = judge(path, case, std::mem::take(&mut outcomes[i]), &selected, known, &mut used);
            progress.diverged += usize::from(r.verdict == Verdict::Diverge);
            judged[i] = Some(r);
        }
        progress.tick(&name, false);
    }
    if let Some(Err(e)) = out_file.as_mut().map(Journal::sync) {
        eprintln!("error: syncing the outcome stream: {e}");
    }
    progress.tick("", true);
    progress.line.finish();
    let mut per_backend_time: BTreeMap<String, Duration> = BTreeMap::new();
    let mut boot_findings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in handles {
        if let Ok(end) = h.join() {
            let e = per_backend_time.entry(end.name.clone()).or_default();
            *e = (*e).max(end.elapsed);
            if !end.boot_findings.is_empty() {
                boot_findings.entry(end.name).or_default().extend(end.boot_findings);
            }
        }
    }
    // Cases some backend never reported (its thread died) are errors for that backend.
    let mut results = Vec::with_capacity(n);
    for (i, (outs, done)) in outcomes.into_iter().zip(judged).enumerate() {
        let (path, case) = &cases[i];
        results.push(done.unwrap_or_else(|| judge(path, case, outs, &selected, known, &mut used)));
    }
    let mut summary = Summary { cases: n, load_errors: load_errors.len(), single_backend: n_sides < 2, ..Summary::default() };
    for r in &results {
        match r.verdict {
            Verdict::Agree => summary.agree += 1,
            Verdict::Diverge => summary.diverge += 1,
            Verdict::Waived => summary.waived += 1,
            Verdict::Known => summary.known += 1,
            Verdict::Skipped => summary.skipped += 1,
            Verdict::NoComparison => summary.no_comparison += 1,
            Verdict::KernelFinding => summary.kernel_findings += 1,
            Verdict::Error => summary.errors += 1,
        }
        for (b, o) in r.outcomes.iter().filter(|(b, _)| *b != EXPECT) {
            let s = stats.entry(b.clone()).or_default();
            s.cases += 1;
            s.kernel_findings += usize::from(!o.meta.kernel_findings.is_empty());
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
    // An entry is unused only if a case of its class (or its case) ran: a filtered run does
    // not report the rest.
    let unused_waivers = known
        .entries
        .iter()
        .zip(&used)
        .filter(|((_, k), u)| {
            // A known issue of other kernels (or fixed in this one) is not expected here.
            let on_kernel = |r: &CaseResult| k.applies_to_kernel(r.outcomes.values().find_map(|o| o.meta.kernel.as_deref()));
            !**u && results.iter().zip(cases.iter()).any(|(r, (_, c))| on_kernel(r) && k.covers_case(c, r.outcomes.get("model")))
        })
        .map(|((kind, k), _)| format!("{} {}", if *kind == known::Kind::Issue { "known issue" } else { "waiver" }, k.label()))
        .collect();
    RunResult { summary, load_errors, unused_waivers, boot_findings, cases: results }
}

fn open_stream(s: &Stream) -> std::io::Result<std::fs::File> {
    match s.keep {
        Some(good) => {
            // Cut a torn last line off so the next record starts on a line of its own.
            let f = std::fs::OpenOptions::new().append(true).open(&s.path)?;
            f.set_len(good)?;
            Ok(f)
        }
        None => std::fs::File::create(&s.path),
    }
}

/// Write `records` as a fresh `outcomes.jsonl` (a merged run, a matrix column seeded with
/// another column's outcomes), in the format `Journal::append` streams.
pub fn write_records<'a>(path: &std::path::Path, records: impl IntoIterator<Item = &'a Record>) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    for r in records {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
    }
    f.sync_data()
}

/// One record, one write, then fdatasync: after a kill (or power loss) every record before it
/// is on disk and this one is either whole or a torn last line that resume ignores.
/// `outcomes.jsonl` being written: each record is written as it arrives (one `write`, so a
/// killed harness loses nothing: the kernel holds it) and made durable (fdatasync) at most
/// [`Journal::SYNC_EVERY`] later, so a power loss loses at most that much. One fdatasync per
/// record cost more than the model's whole run (1611 records: 6 s of 7 s).
struct Journal {
    file: std::fs::File,
    dirty: bool,
    last_sync: Instant,
}

impl Journal {
    const SYNC_EVERY: Duration = Duration::from_millis(100);

    fn new(file: std::fs::File) -> Journal {
        Journal { file, dirty: false, last_sync: Instant::now() }
    }

    fn append(&mut self, r: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.dirty = true;
        if self.last_sync.elapsed() >= Self::SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// The name a case's pinned `expect` outcome goes by in verdicts and reports.
pub const EXPECT: &str = "expect";

/// What a selected backend that never reported a case gets in its place.
pub const NEVER_REPORTED: &str = "never reported: its runner ended before this case (a harness thread died, or the backend stopped for good)";

/// Diff every pair of outcomes of one case and decide its verdict. `selected` are the
/// backends the run asked for: one that did not report the case is an error, never agreement.
fn judge(path: &std::path::Path, case: &Case, mut outs: BTreeMap<String, Outcome>, selected: &[String], known: &KnownList, used: &mut [bool]) -> CaseResult {
    for b in selected {
        outs.entry(b.clone()).or_insert_with(|| Outcome { end: End::BackendError { message: NEVER_REPORTED.into() }, ..Outcome::default() });
    }
    // A regression case's pinned outcome is one more side to agree with.
    if let Some(e) = &case.expect {
        if !outs.is_empty() {
            outs.insert(EXPECT.to_string(), e.clone());
        }
    }
    let runnable = outs.values().filter(|o| !o.end.is_infrastructure()).count();
    let errored = outs.values().any(|o| matches!(o.end, End::BackendError { .. }));
    let kernel_finding = outs.values().any(|o| !o.meta.kernel_findings.is_empty());
    let ordered: Vec<(&str, &Outcome)> = outs.iter().map(|(n, o)| (n.as_str(), o)).collect();
    let (divergences, waived) = diff_pairs(case, &ordered, known, used);
    let known_hit = waived.iter().any(|w| w.kind == known::Kind::Issue);
    let waived_hit = waived.iter().any(|w| w.kind == known::Kind::Waiver);
    let verdict = decide(kernel_finding, !divergences.is_empty(), errored, outs.len(), runnable, known_hit, waived_hit);
    CaseResult { name: case.name.clone(), path: path.to_path_buf(), family: case.family.name().to_string(), verdict, outcomes: outs, divergences, waived }
}

/// Diff every pair of `outs` (in the order given; sides that did not run are left out) and
/// match each pair's differing fields against `known`: the divergences left, regressions of
/// known issues marked, and the covered fields. `used[i]` is set for every entry that
/// covered or regressed. One definition for judging a case and for the fuzzer's objective,
/// so a TCG limitation or a known kernel bug is never a fuzzer find.
pub fn diff_pairs(case: &Case, outs: &[(&str, &Outcome)], known: &KnownList, used: &mut [bool]) -> (Vec<Divergence>, Vec<WaivedField>) {
    let side = |name: &str| outs.iter().find(|(n, _)| *n == name).map(|(_, o)| *o);
    let unknown = side("model").or(side(EXPECT)).map(|m| m.unknown.clone()).unwrap_or_default();
    let runnable: Vec<(&str, &Outcome)> = outs.iter().filter(|(_, o)| !o.end.is_infrastructure()).copied().collect();
    // Live outcomes record the QEMU version, or "native" on silicon.
    let under_qemu = outs.iter().any(|(n, o)| *n != "model" && o.meta.qemu.as_deref().is_some_and(|q| q != "native"));
    let subject = known::Subject { case, model: side("model"), under_qemu };
    let mut divergences = Vec::new();
    let mut waived = Vec::new();
    for (i, (an, a)) in runnable.iter().enumerate() {
        for (bn, b) in &runnable[i + 1..] {
            let fields = diff::compare(a, b, &unknown);
            if fields.is_empty() {
                continue;
            }
            // The kernel a known issue is judged against: the side that ran one.
            let kernel = a.meta.kernel.as_deref().or(b.meta.kernel.as_deref());
            let applied = known.apply(&subject, an, bn, kernel, fields);
            for (f, idx) in applied.covered {
                used[idx] = true;
                let (kind, k) = &known.entries[idx];
                waived.push(WaivedField {
                    kind: *kind,
                    id: k.label(),
                    backends: [an.to_string(), bn.to_string()],
                    field: f,
                    reason: k.reason.clone(),
                    reference: k.reference.clone(),
                });
            }
            if !applied.left.is_empty() {
                let mut d = diff::explain(an, a, bn, b, applied.left);
                for idx in applied.regressions {
                    used[idx] = true;
                    let k = &known.entries[idx].1;
                    let fixed = k.kernel.as_ref().and_then(|r| r.fixed_in.clone()).unwrap_or_default();
                    d.regression_of.push(k.label());
                    d.explanation = format!("REGRESSION of known issue {} (fixed in {fixed}) on {}: {}", k.label(), kernel.unwrap_or("?"), d.explanation);
                }
                divergences.push(d);
            }
        }
    }
    (divergences, waived)
}

/// The verdict from what judging found, most serious first: a kernel finding fails the case
/// even when the outcomes agree; agreement needs at least two sides that ran.
fn decide(kernel_finding: bool, diverged: bool, errored: bool, sides: usize, runnable: usize, known: bool, waived: bool) -> Verdict {
    if kernel_finding {
        Verdict::KernelFinding
    } else if diverged {
        Verdict::Diverge
    } else if errored {
        Verdict::Error
    } else if sides < 2 {
        Verdict::NoComparison
    } else if runnable < 2 {
        Verdict::Skipped
    } else if known {
        Verdict::Known
    } else if waived {
        Verdict::Waived
    } else {
        Verdict::Agree
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    //! Judging and the runner, with scripted backends (a mock stands in for a live target
    //! here only: the real ones are tested in tests/).
    use super::*;
    use crate::backend::live::{LiveBackend, MAX_BOOT_FAILURES};
    use crate::backend::qemu::TargetConfig;
    use crate::backend::Backend;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use trapdiff_arch::outcome::Event;

    fn case(name: &str) -> (PathBuf, Case) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed/valid.json");
        let mut c = crate::case_file::load(&path).expect("valid.json loads");
        c.name = name.into();
        (PathBuf::from(format!("{name}.json")), c)
    }

    fn done() -> Outcome {
        Outcome::default()
    }

    fn mmio(data: u64) -> Outcome {
        Outcome { events: vec![Event::Mmio { ipa: 0x5000_0000, len: 4, write: false, data }], ..Outcome::default() }
    }

    /// A backend that answers from a script: `f(case index)`; `None` panics (a harness bug).
    struct Scripted {
        name: String,
        calls: Arc<AtomicUsize>,
        f: fn(usize) -> Option<Outcome>,
        unavailable_after: Option<usize>,
    }

    impl Backend for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        fn run(&mut self, case: &Case) -> Outcome {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let i: usize = case.name.trim_start_matches("c").parse().unwrap_or(0);
            (self.f)(i).expect("scripted panic")
        }
        fn unavailable(&self) -> Option<String> {
            self.unavailable_after.filter(|&k| self.calls.load(Ordering::SeqCst) >= k).map(|k| format!("gave up after {k}"))
        }
    }

    fn spec(name: &str, f: fn(usize) -> Option<Outcome>, unavailable_after: Option<usize>, calls: Arc<AtomicUsize>) -> BackendSpec {
        let name2 = name.to_string();
        BackendSpec {
            name: name.into(),
            make: Box::new(move || Ok(Box::new(Scripted { name: name2.clone(), calls: calls.clone(), f, unavailable_after }) as Box<dyn Backend>)),
            instances: 1,
        }
    }

    fn cases(n: usize) -> Vec<(PathBuf, Case)> {
        (0..n).map(|i| case(&format!("c{i}"))).collect()
    }

    fn verdicts(r: &RunResult) -> Vec<Verdict> {
        r.cases.iter().map(|c| c.verdict).collect()
    }

    #[test]
    fn verdict_precedence() {
        // (kernel finding, diverged, errored, sides, runnable, waived)
        assert_eq!(decide(true, false, false, 3, 3, false, false), Verdict::KernelFinding);
        assert_eq!(decide(true, true, true, 3, 3, false, false), Verdict::KernelFinding);
        assert_eq!(decide(false, true, true, 3, 2, false, false), Verdict::Diverge);
        assert_eq!(decide(false, false, true, 3, 2, false, true), Verdict::Error);
        assert_eq!(decide(false, false, false, 1, 1, false, false), Verdict::NoComparison);
        assert_eq!(decide(false, false, false, 3, 1, false, false), Verdict::Skipped);
        assert_eq!(decide(false, false, false, 3, 3, false, true), Verdict::Waived);
        assert_eq!(decide(false, false, false, 2, 2, false, false), Verdict::Agree);
        assert_eq!(decide(false, false, false, 3, 3, true, true), Verdict::Known);
        assert_eq!(decide(false, true, false, 3, 3, true, false), Verdict::Diverge);
    }

    #[test]
    fn a_backend_that_never_reports_is_an_error_not_agreement() {
        let w = KnownList::default();
        let (path, c) = case("c0");
        let mut used = vec![];
        let outs: BTreeMap<String, Outcome> = [("model".to_string(), done()), ("refhyp".to_string(), done())].into();
        let selected = ["model".to_string(), "refhyp".to_string(), "kvm".to_string()];
        let r = judge(&path, &c, outs, &selected, &w, &mut used);
        assert_eq!(r.verdict, Verdict::Error);
        assert!(matches!(&r.outcomes["kvm"].end, End::BackendError { message } if message == NEVER_REPORTED));
        let s = Summary { errors: 1, ..Summary::default() };
        assert_eq!(exit_code(&s), 2);
    }

    #[test]
    fn a_panicking_backend_thread_loses_nothing_else() {
        let calls = Arc::new(AtomicUsize::new(0));
        let specs =
            vec![spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))), spec("kvm", |i| if i == 1 { None } else { Some(done()) }, None, calls)];
        let r = run(cases(3), vec![], specs, &KnownList::default(), None);
        assert_eq!(verdicts(&r), [Verdict::Agree, Verdict::Error, Verdict::Agree]);
        assert!(r.cases[1].errors()[0].contains("panicked"), "{:?}", r.cases[1].errors());
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn one_backend_is_no_comparison() {
        let r = run(cases(2), vec![], vec![spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0)))], &KnownList::default(), None);
        assert!(r.summary.single_backend);
        assert_eq!(verdicts(&r), [Verdict::NoComparison, Verdict::NoComparison]);
        assert_eq!((r.summary.agree, r.summary.no_comparison), (0, 2));
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn skips_are_counted_per_backend_with_their_reason() {
        let specs = vec![
            spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))),
            spec(
                "kvm",
                |i| Some(if i == 0 { Outcome { end: End::Skipped { reason: "no ivshmem".into() }, ..done() } } else { done() }),
                None,
                Arc::new(AtomicUsize::new(0)),
            ),
        ];
        let r = run(cases(2), vec![], specs, &KnownList::default(), None);
        assert_eq!(verdicts(&r), [Verdict::Skipped, Verdict::Agree]);
        assert_eq!(r.summary.backends["kvm"].skipped, 1);
        assert_eq!(r.cases[0].skip_reasons(), ["kvm: no ivshmem"]);
    }

    #[test]
    fn a_kernel_finding_fails_even_when_outcomes_agree() {
        let specs = vec![
            spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))),
            spec(
                "kvm",
                |i| {
                    Some(Outcome {
                        meta: trapdiff_arch::outcome::Meta {
                            kernel_findings: if i == 1 { vec!["WARNING: CPU: 0 PID: 1 at x".into()] } else { vec![] },
                            ..Default::default()
                        },
                        ..done()
                    })
                },
                None,
                Arc::new(AtomicUsize::new(0)),
            ),
        ];
        let r = run(cases(2), vec![], specs, &KnownList::default(), None);
        assert_eq!(verdicts(&r), [Verdict::Agree, Verdict::KernelFinding]);
        assert_eq!(r.summary.kernel_findings, 1);
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn a_divergence_is_exit_1() {
        let specs =
            vec![spec("model", |_| Some(mmio(1)), None, Arc::new(AtomicUsize::new(0))), spec("kvm", |_| Some(mmio(2)), None, Arc::new(AtomicUsize::new(0)))];
        let r = run(cases(1), vec![], specs, &KnownList::default(), None);
        assert_eq!(verdicts(&r), [Verdict::Diverge]);
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn an_unavailable_backend_marks_the_rest_at_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let specs = vec![spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))), spec("kvm", |_| Some(done()), Some(2), calls.clone())];
        let r = run(cases(6), vec![], specs, &KnownList::default(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no case runs after the backend gave up");
        assert_eq!(&verdicts(&r)[..2], [Verdict::Agree, Verdict::Agree]);
        for c in &r.cases[2..] {
            assert_eq!(c.verdict, Verdict::Error);
            assert!(c.errors()[0].contains("backend unavailable (gave up after 2)"), "{:?}", c.errors());
        }
    }

    /// The boot circuit breaker on a real (if useless) target: `/bin/false` exits at once, so
    /// every boot fails; after MAX_BOOT_FAILURES the backend gives up and the remaining cases
    /// are marked without a boot each.
    #[test]
    fn the_boot_circuit_breaker_trips_after_k_failures() {
        let boots = Arc::new(AtomicUsize::new(0));
        let b2 = boots.clone();
        let make = move || {
            b2.fetch_add(1, Ordering::SeqCst);
            let cfg = TargetConfig { program: "/bin/false".into(), args: vec![], boot_timeout: Duration::from_secs(5) };
            Ok(Box::new(LiveBackend::new("kvm", cfg, None)) as Box<dyn Backend>)
        };
        let specs =
            vec![spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))), BackendSpec { name: "kvm".into(), make: Box::new(make), instances: 1 }];
        let t0 = Instant::now();
        let r = run(cases(10), vec![], specs, &KnownList::default(), None);
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        let errs: Vec<String> = r.cases.iter().map(|c| c.errors().join(";")).collect();
        for e in &errs[..MAX_BOOT_FAILURES as usize] {
            assert!(e.contains("target exited"), "{e}");
        }
        for e in &errs[MAX_BOOT_FAILURES as usize..] {
            assert!(e.contains("backend unavailable (3 boots failed in a row"), "{e}");
        }
        assert_eq!(r.summary.errors, 10);
    }

    #[test]
    fn resume_runs_only_what_is_missing_and_a_torn_line_is_ignored() {
        let dir = std::env::temp_dir().join(format!("trapdiff-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outcomes.jsonl");
        let all = cases(4);
        let mk =
            || vec![spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))), spec("kvm", |_| Some(done()), None, Arc::new(AtomicUsize::new(0)))];
        let full = run(all.clone(), vec![], mk(), &KnownList::default(), Some(path.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 8);
        // Keep 5 records and half of the sixth, as a kill mid-write leaves them.
        let lines: Vec<&str> = text.lines().collect();
        let mut torn = lines[..5].join("\n") + "\n";
        torn.push_str(&lines[5][..lines[5].len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let c = read_stream(&path).unwrap();
        assert_eq!((c.records.len(), c.bad_lines), (5, 1));
        let kvm_calls = Arc::new(AtomicUsize::new(0));
        let specs = vec![spec("model", |_| Some(done()), None, Arc::new(AtomicUsize::new(0))), spec("kvm", |_| Some(done()), None, kvm_calls.clone())];
        let keep = Some(c.good_len);
        let done = outcomes_done(&all, c.records);
        let resumed = run_resumable(all.clone(), vec![], specs, &KnownList::default(), Some(Stream { path: path.clone(), keep }), done);
        assert_eq!(verdicts(&resumed), verdicts(&full));
        let after = read_stream(&path).unwrap();
        assert_eq!((after.records.len(), after.bad_lines), (8, 0), "each (case, backend) once, the torn line gone");
        assert!(kvm_calls.load(Ordering::SeqCst) <= 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
