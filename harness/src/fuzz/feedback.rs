//! Feedbacks: novelty over outcome signatures (the corpus grows toward behaviour no backend
//! has shown yet), and the objective: a divergence between backends or a backend crash,
//! each deduplicated by its signature.

use std::borrow::Cow;
use std::collections::BTreeSet;

use libafl::executors::ExitKind;
use libafl::feedbacks::{Feedback, StateInitializer};
use libafl::Error;
use libafl_bolts::tuples::{Handle, Handled, MatchName, MatchNameRef};
use libafl_bolts::Named;
use trapdiff_arch::{Case, Outcome};

use super::input::CaseInput;
use super::observers::OutcomesObserver;
use super::signature::{self, Find};
use crate::known::KnownList;
use trapdiff_arch::crc32::fnv1a64;

fn outcomes_handle() -> Handle<OutcomesObserver> {
    OutcomesObserver::new().handle()
}

/// Interesting when some backend's outcome shows a feature (event class, pair of classes,
/// end, whole sequence) never seen before.
#[derive(Debug)]
pub struct NoveltyFeedback {
    name: Cow<'static, str>,
    handle: Handle<OutcomesObserver>,
    seen: BTreeSet<u64>,
}

impl NoveltyFeedback {
    pub fn new() -> NoveltyFeedback {
        NoveltyFeedback { name: Cow::Borrowed("outcome-novelty"), handle: outcomes_handle(), seen: BTreeSet::new() }
    }
    /// Distinct features seen so far.
    pub fn features(&self) -> usize {
        self.seen.len()
    }
    /// Record the features of a set of outcomes; true if any is new.
    pub fn observe(&mut self, outcomes: &[(String, Outcome)]) -> bool {
        let mut new = false;
        for (b, o) in outcomes {
            for f in signature::features(b, o) {
                new |= self.seen.insert(fnv1a64(f.as_bytes()));
            }
        }
        new
    }
}

impl Default for NoveltyFeedback {
    fn default() -> Self {
        Self::new()
    }
}

impl Named for NoveltyFeedback {
    fn name(&self) -> &Cow<'static, str> {
        &self.name
    }
}

impl<S> StateInitializer<S> for NoveltyFeedback {}

impl<EM, OT: MatchName, S> Feedback<EM, CaseInput, OT, S> for NoveltyFeedback {
    fn is_interesting(&mut self, _state: &mut S, _mgr: &mut EM, _input: &CaseInput, observers: &OT, _exit: &ExitKind) -> Result<bool, Error> {
        let obs = observers.get(&self.handle).ok_or_else(|| Error::illegal_state("the outcomes observer is missing"))?;
        Ok(self.observe(&obs.outcomes))
    }
}

/// A find waiting for the loop to minimise and save it.
#[derive(Debug, Clone)]
pub struct PendingFind {
    pub find: Find,
    pub case: Case,
    pub outcomes: Vec<(String, Outcome)>,
}

/// Interesting when the backends disagree, or one of them crashed, in a way not seen before
/// (by signature). Finds queue up in `pending` for the loop to minimise.
#[derive(Debug)]
pub struct DivergenceObjective {
    name: Cow<'static, str>,
    handle: Handle<OutcomesObserver>,
    pub seen: BTreeSet<String>,
    pub pending: Vec<PendingFind>,
    /// Every objective hit, duplicates included.
    pub hits: u64,
    /// Seeds that diverge or crash a backend already.
    pub seed_finds: u64,
    /// What a run would waive or know: not a find.
    known: KnownList,
}

impl DivergenceObjective {
    pub fn new(known: KnownList) -> DivergenceObjective {
        DivergenceObjective {
            name: Cow::Borrowed("divergence"),
            handle: outcomes_handle(),
            seen: BTreeSet::new(),
            pending: Vec::new(),
            hits: 0,
            seed_finds: 0,
            known,
        }
    }
    /// Note what a seed shows: its divergence is the suite's own (`trapdiff run` reports
    /// it), so it only joins the signatures already seen. True if the seed diverges.
    pub fn observe_seed(&mut self, case: &Case, outcomes: &[(String, Outcome)]) -> bool {
        match signature::find(case, outcomes, &self.known) {
            Some(f) => {
                self.seen.insert(f.signature);
                self.seed_finds += 1;
                true
            }
            None => false,
        }
    }

    /// Judge a set of outcomes; true for a new find (queued in `pending`).
    pub fn observe(&mut self, case: &Case, outcomes: &[(String, Outcome)]) -> bool {
        let Some(find) = signature::find(case, outcomes, &self.known) else { return false };
        self.hits += 1;
        if !self.seen.insert(find.signature.clone()) {
            return false;
        }
        self.pending.push(PendingFind { find, case: case.clone(), outcomes: outcomes.to_vec() });
        true
    }
}

impl Named for DivergenceObjective {
    fn name(&self) -> &Cow<'static, str> {
        &self.name
    }
}

impl<S> StateInitializer<S> for DivergenceObjective {}

impl<EM, OT: MatchName, S> Feedback<EM, CaseInput, OT, S> for DivergenceObjective {
    fn is_interesting(&mut self, _state: &mut S, _mgr: &mut EM, input: &CaseInput, observers: &OT, _exit: &ExitKind) -> Result<bool, Error> {
        let obs = observers.get(&self.handle).ok_or_else(|| Error::illegal_state("the outcomes observer is missing"))?;
        Ok(self.observe(&input.0, &obs.outcomes))
    }
}
