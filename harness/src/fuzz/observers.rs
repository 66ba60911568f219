//! The observer: what every backend made of the last case, in backend order. The executor
//! fills it; the feedbacks read it.

use std::borrow::Cow;

use libafl::observers::Observer;
use libafl::Error;
use libafl_bolts::Named;
use serde::{Deserialize, Serialize};
use trapdiff_arch::Outcome;

/// The outcomes of one execution, one per backend.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OutcomesObserver {
    name: Cow<'static, str>,
    /// (backend name, outcome), in the order the backends were given. Not sent to other
    /// clients (their feedback re-runs the case itself).
    #[serde(skip)]
    pub outcomes: Vec<(String, Outcome)>,
}

impl OutcomesObserver {
    pub const NAME: &'static str = "outcomes";

    pub fn new() -> OutcomesObserver {
        OutcomesObserver { name: Cow::Borrowed(Self::NAME), outcomes: Vec::new() }
    }
}

impl Named for OutcomesObserver {
    fn name(&self) -> &Cow<'static, str> {
        &self.name
    }
}

impl<I, S> Observer<I, S> for OutcomesObserver {
    fn pre_exec(&mut self, _state: &mut S, _input: &I) -> Result<(), Error> {
        self.outcomes.clear();
        Ok(())
    }
}
