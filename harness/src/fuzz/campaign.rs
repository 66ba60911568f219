//! The fuzzing loop: LibAFL's state, fuzzer and stages over the backends, the seed phase, and
//! the minimisation and saving of each new find.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libafl::corpus::{Corpus, InMemoryCorpus, Testcase};
use libafl::events::{ProgressReporter, SimpleEventManager};
use libafl::fuzzer::{Evaluator, Fuzzer, HasFeedback, HasObjective, HasScheduler, NopInputFilter, StdFuzzer};
use libafl::inputs::BytesInputConverter;
use libafl::monitors::NopMonitor;
use libafl::mutators::HavocScheduledMutator;
use libafl::schedulers::QueueScheduler;
use libafl::schedulers::Scheduler;
use libafl::stages::StdMutationalStage;
use libafl::state::{HasCorpus, HasExecutions, HasImported, StdState};
use libafl_bolts::rands::StdRand;
use libafl_bolts::tuples::{tuple_list, tuple_list_type};
use trapdiff_arch::case::Provenance;
use trapdiff_arch::{Case, Outcome};

use super::executor::BackendsExecutor;
use super::feedback::{DivergenceObjective, NoveltyFeedback, PendingFind};
use super::finds::{save_find, FindReport};
use super::input::CaseInput;
use super::stats::{stats_of, Counts, Stats};
use super::{io, minimise, mutators, signature, FuzzError};
use crate::backend::Backend;
use crate::known::KnownList;
use crate::progress::ProgressLine;

/// The LibAFL state of a campaign: corpus and solutions in memory (the loop writes both out
/// as case files).
pub type FuzzState = StdState<InMemoryCorpus<CaseInput>, CaseInput, StdRand, InMemoryCorpus<CaseInput>>;

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

/// [`campaign`] with any LibAFL event manager (the LLMP clients of `launcher` pass theirs, and
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
    let mut progress = ProgressLine::new(Duration::from_millis(500), Duration::from_secs(5));
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
    let planted_mode = names.iter().any(|n| n == REFERENCE);
    let mut dropped = 0usize;
    for (k, case) in seeds.into_iter().enumerate().filter(|_| fresh) {
        // --time holds for the seed phase too (live backends may take longer than --time
        // over a whole family): the seeds not run yet stay out of the corpus.
        if started.elapsed() >= cfg.time {
            eprintln!("trapdiff fuzz: --time ran out after {k} of {n} seeds; the rest stay out of the corpus");
            break;
        }
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
        if cfg.progress && progress.due() {
            progress.show(&format!("[{:.0}s] seeding {}/{n}", started.elapsed().as_secs_f64(), k + 1));
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
                progress.note(&format!(
                    "find {sig}: {explanation} ({} -> {} instructions in {} execs){}",
                    p.case.code.insns.len(),
                    m.case.code.insns.len(),
                    m.execs,
                    path.as_ref().map(|p| format!(" -> {}", p.display())).unwrap_or_default()
                ));
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
        if done || progress.due() {
            let counts = Counts {
                initial,
                corpus: count,
                imported: *state.imported(),
                features: fuzzer.feedback().features(),
                hits: fuzzer.objective().hits,
                seed_divergences: fuzzer.objective().seed_finds,
            };
            let st = stats_of(cfg.seed, started, execs, &executor, counts, &finds);
            if cfg.progress {
                progress.show(&st.line());
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
                progress.finish();
                return Ok(st);
            }
        }
        fuzzer.fuzz_one(&mut stages, &mut executor, &mut state, mgr)?;
        // LLMP clients tell their broker how they are doing (a no-op otherwise).
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
