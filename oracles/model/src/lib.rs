//! The model oracle: predicts a case's outcome from written architecture rules and a named
//! hypervisor policy profile, with Unicorn for instruction semantics and Capstone to classify.
//!
//! ```text
//!   case ──► Model::predict
//!              │ per instruction, in program order:
//!              ├─ decode (decode::a64 / decode::a32, Capstone cross-check)
//!              ├─ architecture rules (rules::*): FP enables, alignment, stage-1 and stage-2
//!              │  permissions, memory types, syndromes          ──► guest exception
//!              ├─ policy profile (profile::Profile): what the hypervisor does with a
//!              │  stage-2 abort                                  ──► MMIO / NISV / errno
//!              └─ Unicorn (engine::Cpu): register and memory results when nothing faults
//!            ──► Outcome { events, end, state, unknown, meta }
//! ```
//!
//! `Model` holds one Unicorn instance per architecture and reuses them case after case.

pub mod decode;
pub mod engine;
pub mod machine;
pub mod profile;
pub mod rules;
mod run;

pub use profile::{profile, Profile, PROFILES};

use decode::capstone_check::Disassemblers;
use engine::Cpu;
use trapdiff_arch::outcome::{End, Meta};
use trapdiff_arch::{Case, Isa, Outcome};

/// Setting up Unicorn or Capstone failed.
#[derive(Debug)]
pub enum ModelError {
    /// Unicorn could not be initialised: {0}. Rebuild unicorn-engine (cmake, libclang).
    Engine(String),
    /// Capstone could not be initialised: {0}.
    Capstone(String),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Engine(m) => write!(f, "Unicorn could not be initialised ({m}); rebuild the unicorn-engine crate (needs cmake and libclang)"),
            ModelError::Capstone(m) => write!(f, "Capstone could not be initialised ({m})"),
        }
    }
}

impl std::error::Error for ModelError {}

/// The model oracle with its reusable engines.
pub struct Model {
    profile: &'static Profile,
    a64: Cpu,
    a32: Cpu,
    ctx64: unicorn_engine::Context,
    ctx32: unicorn_engine::Context,
    dis: Disassemblers,
    /// Digests of initial region contents, which repeat across cases.
    digests: std::collections::HashMap<engine::ContentKey, u64>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("profile", &self.profile.name).finish()
    }
}

// SAFETY: the Unicorn handles inside `Cpu` keep `Rc`s that are only ever cloned into the
// hooks the same `Cpu` owns; nothing outside a `Model` holds one, so moving the whole
// `Model` to another thread moves every clone with it. Capstone handles are plain pointers
// to state owned by the `Model`. A `Model` is never shared between threads (no `Sync`).
unsafe impl Send for Model {}

impl Model {
    /// A model for `profile`. Panics only if Unicorn or Capstone cannot be initialised at
    /// all (a broken build); use [`Model::try_new`] to handle that.
    pub fn new(profile: &'static Profile) -> Model {
        match Model::try_new(profile) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn try_new(profile: &'static Profile) -> Result<Model, ModelError> {
        let a64 = Cpu::new(true).map_err(|e| ModelError::Engine(e.0))?;
        let a32 = Cpu::new(false).map_err(|e| ModelError::Engine(e.0))?;
        let ctx64 = a64.context().map_err(|e| ModelError::Engine(e.0))?;
        let ctx32 = a32.context().map_err(|e| ModelError::Engine(e.0))?;
        let dis = Disassemblers::new().map_err(|e| ModelError::Capstone(e.0))?;
        Ok(Model { profile, a64, a32, ctx64, ctx32, dis, digests: Default::default() })
    }

    pub fn profile(&self) -> &'static Profile {
        self.profile
    }

    /// The outcome the architecture and this model's policy profile require for `case`.
    /// Never panics on a bad case: a case the model cannot express comes back as
    /// `End::Skipped` with the reason.
    pub fn predict(&mut self, case: &Case) -> Outcome {
        let meta = Meta { backend: "model".into(), policy: Some(self.profile.name.into()), ..Meta::default() };
        if let Err(e) = case.validate() {
            return Outcome { end: End::Skipped { reason: format!("invalid case: {e}") }, meta, ..Outcome::default() };
        }
        let (cpu, ctx) = if case.state.isa == Isa::A64 { (&mut self.a64, &mut self.ctx64) } else { (&mut self.a32, &mut self.ctx32) };
        let mut outcome = match run::Run::new(case, self.profile, cpu, ctx, &self.dis, &mut self.digests) {
            Ok(mut r) => r.run(),
            Err(reason) => Outcome { end: End::Skipped { reason }, ..Outcome::default() },
        };
        outcome.meta = meta;
        outcome
    }
}
