//! The model oracle as a backend, in process. A panic in the model is a defect in the model,
//! not a verdict on the case: it is caught, recorded as a backend error, and the model rebuilt.

use std::panic::{catch_unwind, AssertUnwindSafe};

use trapdiff_arch::outcome::End;
use trapdiff_arch::{Case, Outcome};
use trapdiff_model::{Model, Profile};

use super::Backend;

pub struct ModelBackend {
    profile: &'static Profile,
    model: Model,
}

impl std::fmt::Debug for ModelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelBackend({})", self.profile.name)
    }
}

impl ModelBackend {
    pub fn new(profile: &'static Profile) -> ModelBackend {
        ModelBackend { profile, model: Model::new(profile) }
    }
}

impl Backend for ModelBackend {
    fn name(&self) -> &str {
        "model"
    }
    fn run(&mut self, case: &Case) -> Outcome {
        match catch_unwind(AssertUnwindSafe(|| self.model.predict(case))) {
            Ok(o) => o,
            Err(p) => {
                let what = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                self.model = Model::new(self.profile);
                Outcome { end: End::BackendError { message: format!("model panicked: {what}") }, ..Outcome::default() }
            }
        }
    }
}
