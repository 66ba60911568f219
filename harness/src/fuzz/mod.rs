//! `trapdiff fuzz`: a LibAFL fuzzer whose input is a case, whose executor runs it on the
//! model and the live backends, whose feedback is novelty over outcome signatures and whose
//! objective is a divergence (or a backend crash). Finds are minimised and written to
//! `corpus/found/<signature>.json` with their provenance, and the differing outcomes beside
//! them in `<signature>.outcomes.jsonl` (not `.json`: the case loader reads every `.json`).
//!
//! Modules follow LibAFL's concepts: [`input`], [`mutators`] (over the [`catalogue`]),
//! [`executor`], [`observers`], [`feedback`] (over [`signature`]), [`minimise`], and the
//! [`launcher`] for `--cores`, `--broker` and `--connect`; around them the command line
//! ([`cli`]), the loop ([`campaign`]), saved finds ([`finds`]), `stats.json` ([`stats`]) and
//! the process that restarts a client a backend killed ([`supervisor`]).
//!
//! ```text
//! trapdiff fuzz [--time 10m] [--iters N] [--backends model,refhyp,kvm] [--out DIR]
//!               [--found DIR] [--seed N] [--cores N] [--minimise-budget N] [PATHS...]
//!               [--broker ADDR | --connect HOST:PORT]
//!
//!   PATHS          seed cases (default corpus/suite; the built-in seeds if none load)
//!   DIR/stats.json execs/s per backend, corpus size, imports, features, finds (rewritten as it runs)
//!   DIR/queue/     the cases the campaign added to the corpus, as case files
//!   found/<signature>.json            minimised find, provenance.source = "fuzzer"
//!   found/<signature>.outcomes.jsonl  each backend's outcome and the divergences
//! ```
//!
//! Exit status: 0 when nothing new was found, 1 when a new find was saved, 2 on errors.
//! A find replays with `trapdiff replay found/<signature>.json --backends ...`.

pub mod campaign;
pub mod catalogue;
pub mod cli;
pub mod executor;
pub mod feedback;
pub mod finds;
pub mod input;
pub mod launcher;
pub mod minimise;
pub mod mutators;
pub mod observers;
pub mod signature;
pub mod stats;
pub mod supervisor;

use std::path::{Path, PathBuf};

pub use campaign::{campaign, Config};
pub use cli::{main, FuzzArgs};

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
