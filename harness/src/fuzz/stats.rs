//! The campaign's figures (`stats.json` and the progress line).

use std::time::Instant;

use serde::Serialize;

use super::executor::{BackendStats, BackendsExecutor};
use super::finds::FindReport;

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
    /// Corpus entries received from other clients (other hosts' too) and kept: new to this
    /// client's feedback when it ran them on its own backends.
    pub imported: usize,
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
pub(crate) struct Counts {
    pub initial: usize,
    pub corpus: usize,
    pub imported: usize,
    pub features: usize,
    pub hits: u64,
    pub seed_divergences: u64,
}

pub(crate) fn stats_of(seed: u64, started: Instant, execs: u64, ex: &BackendsExecutor, c: Counts, finds: &[FindReport]) -> Stats {
    let Counts { initial, corpus, imported, features, hits, seed_divergences } = c;
    let el = started.elapsed().as_secs_f64();
    Stats {
        seed,
        elapsed_seconds: el,
        execs,
        execs_per_second: if el > 0.0 { execs as f64 / el } else { 0.0 },
        backends: ex.stats.iter().map(|s| BackendStatsReport { execs_per_second: s.execs_per_sec(), stats: s.clone() }).collect(),
        initial_corpus: initial,
        corpus,
        imported,
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
