//! `trapdiff fuzz`: a LibAFL fuzzer whose input is a case, whose executor runs it on the
//! model and the live backends, whose feedback is novelty over outcome signatures and whose
//! objective is a divergence (or a backend crash). Finds are minimised and written to
//! `corpus/found/<signature>.json` with their provenance, and the differing outcomes beside
//! them in `<signature>.outcomes.jsonl` (not `.json`: the case loader reads every `.json`).
//!
//! Modules follow LibAFL's concepts: [`input`], [`mutators`] (over the [`catalogue`]),
//! [`executor`], [`observers`], [`feedback`] (over [`signature`]), [`minimise`], and the
//! [`launcher`] for `--cores`.
//!
//! ```text
//! trapdiff fuzz [--time 10m] [--iters N] [--backends model,refhyp,kvm] [--out DIR]
//!               [--found DIR] [--seed N] [--cores N] [--minimise-budget N] [PATHS...]
//!
//!   PATHS          seed cases (default corpus/suite; the built-in seeds if none load)
//!   DIR/stats.json execs/s per backend, corpus size, features, finds (rewritten as it runs)
//!   DIR/queue/     the cases the campaign added to the corpus, as case files
//!   found/<signature>.json            minimised find, provenance.source = "fuzzer"
//!   found/<signature>.outcomes.jsonl  each backend's outcome and the divergences
//! ```
//!
//! Exit status: 0 when nothing new was found, 1 when a new find was saved, 2 on errors.
//! A find replays with `trapdiff replay found/<signature>.json --backends ...`.

pub mod catalogue;
pub mod executor;
pub mod feedback;
pub mod input;
pub mod launcher;
pub mod minimise;
pub mod mutators;
pub mod observers;
pub mod signature;

use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libafl::corpus::{Corpus, InMemoryCorpus, Testcase};
use libafl::events::{ProgressReporter, SimpleEventManager};
use libafl::fuzzer::{Evaluator, Fuzzer, HasFeedback, HasObjective, HasScheduler, NopInputFilter, StdFuzzer};
use libafl::inputs::BytesInputConverter;
use libafl::monitors::NopMonitor;
use libafl::mutators::HavocScheduledMutator;
use libafl::schedulers::QueueScheduler;
use libafl::schedulers::Scheduler;
use libafl::stages::StdMutationalStage;
use libafl::state::{HasCorpus, HasExecutions, StdState};
use libafl_bolts::rands::StdRand;
use libafl_bolts::tuples::{tuple_list, tuple_list_type};
use serde::Serialize;
use trapdiff_arch::case::Provenance;
use trapdiff_arch::{Case, Outcome};

use crate::backend::select::{self, BackendOptions};
use crate::backend::Backend;
use crate::known::KnownList;
use crate::{case_file, paths};

use executor::{BackendStats, BackendsExecutor};
use feedback::{DivergenceObjective, NoveltyFeedback, PendingFind};
use input::CaseInput;
use signature::FindKind;

/// The LibAFL state of a campaign: corpus and solutions in memory (the loop writes both out
/// as case files).
pub type FuzzState = StdState<InMemoryCorpus<CaseInput>, CaseInput, StdRand, InMemoryCorpus<CaseInput>>;

/// Command-line arguments of `trapdiff fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// Initial corpus: case files or directories (default: the curated suite). With no
    /// loadable case the built-in seeds (one per instruction set) are used.
    pub paths: Vec<PathBuf>,
    /// How long to fuzz: `90s`, `10m`, `2h`, or seconds.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub time: Duration,
    /// Stop after this many executions (each on every backend), whichever comes first.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Backends to run every case on, comma-separated: model, refhyp, kvm.
    #[arg(long, default_value = "model,refhyp", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Kernel Image for the kvm backend (default: the pinned Debian kernel).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Run the KVM agent natively on this arm64 host instead of under QEMU.
    #[arg(long)]
    pub native: bool,
    /// Policy profile the model predicts with.
    #[arg(long, default_value = "linux-6.1")]
    pub policy: String,
    /// Where stats.json and the grown corpus (queue/) go.
    #[arg(long, default_value = "reports/fuzz")]
    pub out: PathBuf,
    /// Where minimised finds go (default: corpus/found).
    #[arg(long)]
    pub found: Option<PathBuf>,
    /// Seed of every random choice: the same seed, corpus and --iters replay the same run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fuzzing clients to run side by side, each with its own backend instances.
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Executions a minimisation may spend per find.
    #[arg(long, default_value_t = 300)]
    pub minimise_budget: u64,
    /// Plant a historical KVM bug in the refhyp (repeatable): the fuzzer should find it.
    #[arg(long = "quirk", value_name = "NAME", value_parser = select::parse_quirk)]
    pub quirks: Vec<trapdiff_arch::quirk::Quirk>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (try 90s, 10m, 2h)"))?;
    let mult = match unit {
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (s, m, h)")),
    };
    Ok(Duration::from_secs_f64(n * mult))
}

/// Longest a minimisation may take (live backends run a case or a few per second).
pub const MINIMISE_TIME: Duration = Duration::from_secs(120);

/// What a campaign is given besides the backends.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub time: Duration,
    pub iters: Option<u64>,
    /// stats.json and queue/ go here (nothing written when `None`).
    pub out: Option<PathBuf>,
    /// Minimised finds go here (nothing written when `None`).
    pub found: Option<PathBuf>,
    pub minimise_budget: u64,
    /// Print a progress line.
    pub progress: bool,
    /// Waivers and known issues (`paths::known_list`): a divergence they cover is what a run
    /// would judge `waived` or `known`, so it is no find.
    pub known: KnownList,
}

/// One saved (or, without `found`, only reported) find.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    pub kind: FindKind,
    pub signature: String,
    pub explanation: String,
    /// Seconds from the start of the campaign to the first hit.
    pub after_seconds: f64,
    pub execs_before: u64,
    pub instructions_before: usize,
    pub instructions_after: usize,
    pub minimise_execs: u64,
    /// The find shows the planted quirk (`refhyp` and [`REFERENCE`] disagree).
    pub planted: bool,
    pub path: Option<PathBuf>,
    /// A file with this signature was already there (not overwritten).
    pub known: bool,
    #[serde(skip)]
    pub case: Option<Case>,
}

/// The campaign's figures, as written to `stats.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub seed: u64,
    pub elapsed_seconds: f64,
    pub execs: u64,
    pub execs_per_second: f64,
    pub backends: Vec<BackendStatsReport>,
    pub initial_corpus: usize,
    pub corpus: usize,
    pub features: usize,
    pub objective_hits: u64,
    /// Seeds that already diverge (their signatures are not finds).
    pub seed_divergences: u64,
    pub finds: Vec<FindReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatsReport {
    #[serde(flatten)]
    pub stats: BackendStats,
    pub execs_per_second: f64,
}

/// Corpus and feedback counts for [`stats_of`].
struct Counts {
    initial: usize,
    corpus: usize,
    features: usize,
    hits: u64,
    seed_divergences: u64,
}

fn stats_of(seed: u64, started: Instant, execs: u64, ex: &BackendsExecutor, c: Counts, finds: &[FindReport]) -> Stats {
    let Counts { initial, corpus, features, hits, seed_divergences } = c;
    let el = started.elapsed().as_secs_f64();
    Stats {
        seed,
        elapsed_seconds: el,
        execs,
        execs_per_second: if el > 0.0 { execs as f64 / el } else { 0.0 },
        backends: ex.stats.iter().map(|s| BackendStatsReport { execs_per_second: s.execs_per_sec(), stats: s.clone() }).collect(),
        initial_corpus: initial,
        corpus,
        features,
        objective_hits: hits,
        seed_divergences,
        finds: finds.to_vec(),
    }
}

impl Stats {
    pub fn line(&self) -> String {
        let per: Vec<String> = self.backends.iter().map(|b| format!("{} {:.1}/s", b.stats.name, b.execs_per_second)).collect();
        format!(
            "[{:.0}s] execs {} ({:.1}/s; {})  corpus {} (+{})  features {}  finds {}",
            self.elapsed_seconds,
            self.execs,
            self.execs_per_second,
            per.join(", "),
            self.corpus,
            self.corpus.saturating_sub(self.initial_corpus),
            self.features,
            self.finds.len()
        )
    }
}

/// Errors that end a campaign before it starts or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// LibAFL reported an error.
    #[error("fuzzer: {0}")]
    Libafl(#[from] libafl::Error),
    #[error("writing {path}: {source} (is the directory writable?)")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no seed case: give case files or directories, or check that corpus/suite exists")]
    NoSeeds,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FuzzError + '_ {
    move |source| FuzzError::Io { path: path.to_path_buf(), source }
}

/// Today's date (UTC) as YYYY-MM-DD, from the Unix time (Howard Hinnant's days-to-civil).
pub fn utc_date(t: SystemTime) -> String {
    let days = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Write a minimised find: the case (with provenance) and the outcomes that differed.
/// Returns the path and whether a find with this signature was already there.
pub fn save_find(
    dir: &Path,
    seed: u64,
    backends: &[String],
    find: &signature::Find,
    case: &Case,
    outcomes: &[(String, Outcome)],
) -> Result<(PathBuf, bool), FuzzError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("{}.json", find.signature));
    if path.exists() {
        return Ok((path, true));
    }
    let kernel = outcomes.iter().find_map(|(_, o)| o.meta.kernel.clone()).unwrap_or_else(|| "none".into());
    let explanation = find.divergences.first().map(|d| d.explanation.clone()).unwrap_or_else(|| find.key.clone());
    let mut c = case.clone();
    c.name = format!("found/{}", find.signature);
    c.description = if find.kind == FindKind::BackendCrash && !case.description.is_empty() {
        case.description.clone()
    } else {
        format!("Found by trapdiff fuzz: {explanation}")
    };
    c.expect = None;
    c.provenance = Provenance {
        source: "fuzzer".into(),
        detail: format!(
            "date {}; seed {seed}; backends {}; kernel {kernel}; signature {}; from case {}",
            utc_date(SystemTime::now()),
            backends.join(","),
            find.key,
            case.name
        ),
        commit: None,
        quirk: None,
    };
    let text = serde_json::to_string_pretty(&c).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(io(&path))?;
    let side = dir.join(format!("{}.outcomes.jsonl", find.signature));
    let mut lines = String::new();
    for (b, o) in outcomes {
        lines += &serde_json::json!({"case": c.name, "backend": b, "outcome": o}).to_string();
        lines.push('\n');
    }
    for d in &find.divergences {
        lines += &serde_json::json!({"case": c.name, "divergence": d}).to_string();
        lines.push('\n');
    }
    std::fs::write(&side, lines).map_err(io(&side))?;
    Ok((path, false))
}

/// Run a campaign over `backends` from `seeds`. The library entry point: `main` builds the
/// backends from names, tests hand in their own.
pub fn campaign(cfg: &Config, backends: Vec<Box<dyn Backend>>, seeds: Vec<Case>) -> Result<Stats, FuzzError> {
    let mut mgr = SimpleEventManager::new(NopMonitor::new());
    campaign_with(cfg, backends, seeds, &mut mgr, None)
}

/// The fuzzer every campaign runs.
pub type FuzzerT = StdFuzzer<QueueScheduler, NoveltyFeedback, BytesInputConverter, NopInputFilter, DivergenceObjective>;
/// Its one stage: mutate a scheduled case a few times and run each mutant.
pub type Stages<EM> =
    tuple_list_type!(StdMutationalStage<BackendsExecutor, EM, CaseInput, CaseInput, HavocScheduledMutator<mutators::AllMutators>, FuzzState, FuzzerT>);

/// [`campaign`] with any LibAFL event manager (the Launcher's LLMP clients pass theirs, and
/// the state they restart with).
pub fn campaign_with<EM>(cfg: &Config, backends: Vec<Box<dyn Backend>>, seeds: Vec<Case>, mgr: &mut EM, restored: Option<FuzzState>) -> Result<Stats, FuzzError>
where
    FuzzerT: Fuzzer<BackendsExecutor, EM, CaseInput, FuzzState, Stages<EM>> + Evaluator<BackendsExecutor, EM, CaseInput, FuzzState>,
    EM: ProgressReporter<FuzzState>,
{
    if seeds.is_empty() && restored.is_none() {
        return Err(FuzzError::NoSeeds);
    }
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut executor = BackendsExecutor::new(backends);
    let names = executor.names();
    let mut feedback = NoveltyFeedback::new();
    let mut objective = DivergenceObjective::new(cfg.known.clone());
    let fresh = restored.is_none();
    let mut state: FuzzState = match restored {
        Some(s) => s,
        None => StdState::new(StdRand::with_seed(cfg.seed), InMemoryCorpus::<CaseInput>::new(), InMemoryCorpus::new(), &mut feedback, &mut objective)?,
    };
    let mut fuzzer: FuzzerT = StdFuzzer::new(QueueScheduler::new(), feedback, objective);
    // A few stacked mutations per input (2^2 at most), few iterations per scheduled input:
    // live backends run a case or two per second, so the deadline is checked often.
    let mutator = HavocScheduledMutator::with_max_stack_pow(mutators::all_mutators(), 2);
    let iterations = NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN);
    let mut stages: Stages<EM> = tuple_list!(StdMutationalStage::with_max_iterations(mutator, iterations));

    // Every seed joins the corpus, divergent or not (LibAFL's `add_input` would file a
    // divergent seed under solutions only, and the suite's known divergences are good
    // starting points); its outcomes seed the novelty feedback, and its divergence, if any,
    // counts as known (it is the suite's, reported by `trapdiff run`, not a find).
    let n = seeds.len();
    let mut last_tick = Instant::now();
    let planted_mode = names.iter().any(|n| n == REFERENCE);
    let mut dropped = 0usize;
    for (k, case) in seeds.into_iter().enumerate().filter(|_| fresh) {
        let outcomes = executor.run_all(&case);
        *state.executions_mut() += 1;
        if planted_mode && shows_planted(&outcomes) {
            // This seed already catches the planted bug: leave it out (see REFERENCE).
            dropped += 1;
            continue;
        }
        fuzzer.feedback_mut().observe(&outcomes);
        fuzzer.objective_mut().observe_seed(&case, &outcomes);
        let id = state.corpus_mut().add(Testcase::from(CaseInput(case)))?;
        HasScheduler::<CaseInput, FuzzState>::scheduler_mut(&mut fuzzer).on_add(&mut state, id)?;
        if cfg.progress && last_tick.elapsed() >= Duration::from_millis(if tty { 500 } else { 5000 }) {
            last_tick = Instant::now();
            let line = format!("[{:.0}s] seeding {}/{n}", started.elapsed().as_secs_f64(), k + 1);
            if tty {
                eprint!("\r\x1b[K{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    let initial = state.corpus().count();
    if planted_mode {
        eprintln!("trapdiff fuzz: {dropped} seeds already show the planted quirk and were left out; {initial} seeds remain");
    }
    let mut finds: Vec<FindReport> = Vec::new();
    let mut written = 0usize;
    let queue_dir = cfg.out.as_ref().map(|o| o.join("queue"));
    if let Some(q) = &queue_dir {
        std::fs::create_dir_all(q).map_err(io(q))?;
    }
    loop {
        // Minimise and save what the objective found (seeds included).
        let pending: Vec<PendingFind> = fuzzer.objective_mut().pending.drain(..).collect();
        for p in pending {
            let after = started.elapsed().as_secs_f64();
            let execs_before = *state.executions();
            let sig = p.find.signature.clone();
            // Shrink on the backends that disagree (or the one that crashed) only: the
            // others may be the slowest. Crashes shrink the same way (their signature is the
            // backend and message). Then run the result on every backend for the record.
            let involved: Vec<&str> = match p.find.divergences.first() {
                Some(d) => vec![d.left.as_str(), d.right.as_str()],
                None => p.outcomes.iter().filter(|(_, o)| o.end.is_infrastructure()).map(|(n, _)| n.as_str()).take(1).collect(),
            };
            let which = executor.indices(&involved);
            let sub: Vec<(String, Outcome)> = p.outcomes.iter().filter(|(n, _)| involved.contains(&n.as_str())).cloned().collect();
            let sub_sig = signature::find(&p.case, &sub, &cfg.known).map(|f| f.signature).unwrap_or_else(|| sig.clone());
            // --time is kept within a little: near the end, finds are minimised less.
            let cap = MINIMISE_TIME.min(cfg.time.saturating_sub(started.elapsed()) + Duration::from_secs(15));
            let mut m = minimise::minimise(&p.case, &sub_sig, &cfg.known, sub, cfg.minimise_budget, cap, &mut |c| executor.run_some(c, &which));
            m.outcomes = executor.run_all(&m.case);
            // A backend may be flaky: keep the original find if the result no longer diverges.
            let find = signature::find(&m.case, &m.outcomes, &cfg.known).unwrap_or(p.find.clone());
            let sig = find.signature.clone();
            fuzzer.objective_mut().seen.insert(sig.clone());
            let (path, known) = match &cfg.found {
                Some(dir) => {
                    let (p, k) = save_find(dir, cfg.seed, &names, &find, &m.case, &m.outcomes)?;
                    (Some(p), k)
                }
                None => (None, false),
            };
            let explanation = find.divergences.first().map(|d| d.explanation.clone()).unwrap_or_else(|| find.key.clone());
            if cfg.progress {
                eprintln!(
                    "{}find {sig}: {explanation} ({} -> {} instructions in {} execs){}",
                    if tty { "\r\x1b[K" } else { "" },
                    p.case.code.insns.len(),
                    m.case.code.insns.len(),
                    m.execs,
                    path.as_ref().map(|p| format!(" -> {}", p.display())).unwrap_or_default()
                );
            }
            finds.push(FindReport {
                kind: find.kind,
                signature: sig,
                explanation,
                after_seconds: after,
                execs_before,
                instructions_before: p.case.code.insns.len(),
                instructions_after: m.case.code.insns.len(),
                minimise_execs: m.execs,
                planted: shows_planted(&m.outcomes),
                path,
                known,
                case: Some(m.case),
            });
        }
        // The grown corpus, as loadable case files.
        let count = state.corpus().count();
        if let Some(q) = &queue_dir {
            // Only what the campaign added: the seeds are on disk already.
            written = written.max(initial);
            while written < count {
                let id = state.corpus().nth(written);
                let case = state.corpus().cloned_input_for_id(id).map(|i| i.0);
                if let Ok(mut c) = case {
                    c.provenance = Provenance {
                        source: "fuzzer".into(),
                        detail: format!("queue entry {written} of seed {}, grown from the case {}", cfg.seed, c.name),
                        commit: None,
                        quirk: None,
                    };
                    c.name = format!("fuzz/queue/{}/{written:05}", cfg.seed);
                    let p = q.join(format!("{}-{written:05}.json", cfg.seed));
                    std::fs::write(&p, serde_json::to_string_pretty(&c).unwrap_or_default() + "\n").map_err(io(&p))?;
                }
                written += 1;
            }
        }
        let execs = *state.executions();
        let done = started.elapsed() >= cfg.time || cfg.iters.is_some_and(|n| execs >= n);
        if done || last_tick.elapsed() >= Duration::from_millis(if tty { 500 } else { 5000 }) {
            last_tick = Instant::now();
            let counts = Counts {
                initial,
                corpus: count,
                features: fuzzer.feedback().features(),
                hits: fuzzer.objective().hits,
                seed_divergences: fuzzer.objective().seed_finds,
            };
            let st = stats_of(cfg.seed, started, execs, &executor, counts, &finds);
            if cfg.progress {
                if tty {
                    eprint!("\r\x1b[K{}", st.line());
                } else {
                    eprintln!("{}", st.line());
                }
                let _ = std::io::stderr().flush();
            }
            if let Some(o) = &cfg.out {
                if done {
                    for b in &executor.stats {
                        if let Some(c) = &b.slowest_case {
                            let p = o.join(format!("slowest-{}.json", b.name));
                            std::fs::write(&p, serde_json::to_string_pretty(c).unwrap_or_default() + "\n").map_err(io(&p))?;
                        }
                    }
                }
                let p = o.join("stats.json");
                std::fs::write(&p, serde_json::to_string_pretty(&st).unwrap_or_default() + "\n").map_err(io(&p))?;
            }
            if done {
                if cfg.progress && tty {
                    eprintln!();
                }
                return Ok(st);
            }
        }
        fuzzer.fuzz_one(&mut stages, &mut executor, &mut state, mgr)?;
        // Clients of a Launcher tell the broker how they are doing (a no-op otherwise).
        mgr.maybe_report_progress(&mut state, Duration::from_secs(15))?;
    }
}

/// With a planted quirk (`--quirk`), the campaign also runs a quirk-free refhyp under this
/// name: a divergence between it and `refhyp` is the planted bug and nothing else, and seeds
/// that already show it are left out of the corpus, so the fuzzer has to find the bug itself.
pub const REFERENCE: &str = "refhyp-reference";

/// A find shows the planted bug: `refhyp` (quirked) and [`REFERENCE`] disagree.
fn shows_planted(outcomes: &[(String, Outcome)]) -> bool {
    let pick = |n: &str| outcomes.iter().find(|(b, _)| b == n).map(|(_, o)| o);
    match (pick("refhyp"), pick(REFERENCE)) {
        (Some(q), Some(r)) => !q.end.is_infrastructure() && !r.end.is_infrastructure() && !crate::diff::compare(q, r, &[]).is_empty(),
        _ => false,
    }
}

/// Build the named backends (each once: the fuzzer keeps them for the whole campaign).
pub fn make_backends(a: &FuzzArgs) -> Result<Vec<Box<dyn Backend>>, String> {
    let opts = BackendOptions {
        names: a.backends.clone(),
        kernel: a.kernel.clone(),
        native: a.native,
        policy: a.policy.clone(),
        jobs: 1,
        quirks: a.quirks.iter().copied().collect(),
        kernel_append: Vec::new(),
    };
    let mut out = Vec::new();
    for spec in select::specs(&opts)? {
        out.push((spec.make)().map_err(|e| format!("cannot start backend `{}`: {e} (run `trapdiff doctor`)", spec.name))?);
    }
    if !a.quirks.is_empty() && a.backends.iter().any(|b| b.trim() == "refhyp") {
        let mut r = crate::backend::refhyp::backend(&crate::backend::refhyp::RefhypOptions::default()).map_err(|e| e.to_string())?;
        r.set_name(REFERENCE);
        out.push(Box::new(r));
    }
    Ok(out)
}

/// The seed cases under `paths` (default: the curated suite); the built-in seeds if none load.
pub fn load_seeds(paths: &[PathBuf]) -> Vec<Case> {
    let ps = if paths.is_empty() { vec![paths::suite_dir()] } else { paths.to_vec() };
    let mut seeds = Vec::new();
    for r in case_file::load_all(&ps) {
        match r {
            Ok((_, c)) => seeds.push(c),
            Err(e) => eprintln!("warning: skipping seed: {e}"),
        }
    }
    if seeds.is_empty() {
        eprintln!(
            "trapdiff fuzz: no case loaded from {}; starting from the built-in seeds",
            ps.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        seeds = input::builtin_seeds();
    }
    seeds
}

/// Set by the supervisor in the client processes it starts.
const CLIENT_ENV: &str = "TRAPDIFF_FUZZ_CLIENT";
/// Where a client leaves the case a backend panicked on (read by the supervisor when the
/// panic could not unwind and the client died).
const LAST_PANIC: &str = "last-panic.json";

/// Record the backend and case running when any panic happens, in `out/last-panic.json`,
/// then run the previous hook. A panic that unwinds is caught by the backend and becomes a
/// crash find in process; one that aborts (Rust panics inside C bindings cannot unwind)
/// kills the client, and the supervisor saves the case from this file.
pub fn install_panic_hook(out: &Path) {
    let path = out.join(LAST_PANIC);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let current = executor::CURRENT.with(|c| c.try_borrow().ok().and_then(|c| c.clone()));
        if let Some((backend, case)) = current {
            let v = serde_json::json!({"backend": backend, "message": info.to_string(), "case": case});
            let _ = std::fs::write(&path, v.to_string());
        }
        prev(info);
    }));
}

/// `trapdiff fuzz`.
pub fn main(a: FuzzArgs) -> ExitCode {
    let seed = a.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    if a.cores > 1 {
        return launcher::launch(&a, seed);
    }
    if std::env::var_os(CLIENT_ENV).is_none() {
        return supervise(&a, seed);
    }
    let seeds = load_seeds(&a.paths);
    let backends = match make_backends(&a) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        eprintln!("error: cannot create {}: {e}", a.out.display());
        return ExitCode::from(2);
    }
    install_panic_hook(&a.out);
    let known = match crate::paths::known_list() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = Config {
        seed,
        time: a.time,
        iters: a.iters,
        out: Some(a.out.clone()),
        found: Some(found_dir(&a)),
        minimise_budget: a.minimise_budget,
        progress: true,
        known,
    };
    eprintln!("trapdiff fuzz: seed {seed}, {} seed cases, backends {}, for {:?}", seeds.len(), a.backends.join(","), a.time);
    match campaign(&cfg, backends, seeds) {
        Ok(st) => {
            println!("{}", st.line());
            for b in &st.backends {
                println!(
                    "  {}: {} execs, {:.1} execs/s, {} errors, {} timeouts",
                    b.stats.name, b.stats.execs, b.execs_per_second, b.stats.errors, b.stats.timeouts
                );
            }
            for f in &st.finds {
                println!("  find {} after {:.1}s{}: {}", f.signature, f.after_seconds, if f.planted { " (planted quirk)" } else { "" }, f.explanation);
            }
            if !a.quirks.is_empty() {
                match st.finds.iter().filter(|f| f.planted).map(|f| f.after_seconds).reduce(f64::min) {
                    Some(t) => println!("planted quirk first found after {t:.1}s"),
                    None => println!("planted quirk not found"),
                }
            }
            println!("stats in {}", a.out.join("stats.json").display());
            ExitCode::from(u8::from(st.finds.iter().any(|f| !f.known)))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn found_dir(a: &FuzzArgs) -> PathBuf {
    a.found.clone().unwrap_or_else(|| paths::root().join("corpus").join("found"))
}

/// The command line of a client running `a` with this seed, time and output directory.
fn client_command(a: &FuzzArgs, seed: u64, time: Duration, out: &Path) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable to start a fuzzing client: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("fuzz").arg("--cores").arg("1").arg("--seed").arg(seed.to_string());
    cmd.arg("--time").arg(format!("{}s", time.as_secs_f64()));
    if let Some(n) = a.iters {
        cmd.arg("--iters").arg(n.to_string());
    }
    cmd.arg("--backends").arg(a.backends.join(",")).arg("--policy").arg(&a.policy);
    if let Some(k) = &a.kernel {
        cmd.arg("--kernel").arg(k);
    }
    if a.native {
        cmd.arg("--native");
    }
    cmd.arg("--out").arg(out).arg("--found").arg(found_dir(a));
    cmd.arg("--minimise-budget").arg(a.minimise_budget.to_string());
    for q in &a.quirks {
        cmd.arg("--quirk").arg(q.name());
    }
    cmd.args(&a.paths);
    Ok(cmd)
}

/// Save the case a client aborted on (from its `last-panic.json`) as a crash find.
fn save_abort(a: &FuzzArgs, seed: u64, out: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(out.join(LAST_PANIC)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let backend = v["backend"].as_str().unwrap_or("unknown").to_string();
    let message = v["message"].as_str().unwrap_or("").to_string();
    let case: Case = serde_json::from_value(v["case"].clone()).ok()?;
    // The panic location and text, without numbers (values differ from case to case).
    let first = message.lines().take(2).collect::<Vec<_>>().join(" ");
    let key = format!("abort:{backend}:{}", first.chars().filter(|c| !c.is_ascii_digit()).collect::<String>());
    let find = signature::Find {
        kind: FindKind::BackendCrash,
        signature: format!("crash-{backend}-{:016x}", input::fnv1a(key.as_bytes())),
        key,
        divergences: Vec::new(),
    };
    let outcome =
        Outcome { end: trapdiff_arch::outcome::End::BackendError { message: format!("{backend} aborted the fuzzing client: {first}") }, ..Outcome::default() };
    let _ = std::fs::remove_file(out.join(LAST_PANIC));
    let mut case = case;
    case.description = format!("{backend} aborted on this case: {first}");
    save_find(&found_dir(a), seed, &a.backends, &find, &case, &[(backend, outcome)]).ok().map(|(p, _)| p)
}

/// Run the campaign in a client process and start it again (with the next seed) whenever a
/// backend aborts it, as LibAFL's restarting event manager does, until the time is up.
fn supervise(a: &FuzzArgs, seed: u64) -> ExitCode {
    let started = Instant::now();
    let mut seed = seed;
    let mut restarts = 0u32;
    loop {
        let left = a.time.saturating_sub(started.elapsed());
        if restarts > 0 && left < Duration::from_secs(1) {
            return ExitCode::SUCCESS;
        }
        let mut cmd = match client_command(a, seed, left, &a.out) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        cmd.env(CLIENT_ENV, "1");
        let status = match cmd.status() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot start the fuzzing client: {e}");
                return ExitCode::from(2);
            }
        };
        match status.code() {
            Some(c @ 0..=2) => return ExitCode::from(c as u8),
            _ => {
                restarts += 1;
                let saved = save_abort(a, seed, &a.out);
                let _ = std::fs::rename(a.out.join("stats.json"), a.out.join(format!("stats-{seed}.json")));
                eprintln!(
                    "\ntrapdiff fuzz: the client died ({status}){}; restarting with seed {}",
                    saved.map(|p| format!(", case saved as {}", p.display())).unwrap_or_default(),
                    seed + 1
                );
                if restarts > 1000 {
                    eprintln!("error: the client keeps dying; giving up");
                    return ExitCode::from(2);
                }
                seed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14");
    }
}
