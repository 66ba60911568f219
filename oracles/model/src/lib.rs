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
//! `Model` keeps a few Unicorn instances per architecture, one per memory layout seen lately,
//! and reuses them case after case: remapping costs more than the rest of a small case.

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
use trapdiff_arch::{Case, Outcome};

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
    /// Unicorn instances, most recently used last; at most [`ENGINES_PER_ARCH`] per architecture.
    engines: Vec<Engine>,
    dis: Disassemblers,
    /// Digests of initial region contents, which repeat across cases.
    digests: rustc_hash::FxHashMap<engine::ContentKey, u64>,
}

/// Engines kept per architecture. The suite has 9 layouts (4 A64, 5 AArch32); an engine costs
/// about N MiB (`cargo bench -p trapdiff-model` prints the RSS).
pub const ENGINES_PER_ARCH: usize = 6;

/// One Unicorn instance and its undo context.
struct Engine {
    cpu: Cpu,
    ctx: unicorn_engine::Context,
    aarch64: bool,
}

impl Engine {
    fn new(aarch64: bool) -> Result<Engine, ModelError> {
        let cpu = Cpu::new(aarch64).map_err(|e| ModelError::Engine(e.0))?;
        let ctx = cpu.context().map_err(|e| ModelError::Engine(e.0))?;
        Ok(Engine { cpu, ctx, aarch64 })
    }
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
        let engines = vec![Engine::new(true)?, Engine::new(false)?];
        let dis = Disassemblers::new().map_err(|e| ModelError::Capstone(e.0))?;
        Ok(Model { profile, engines, dis, digests: Default::default() })
    }

    /// Make the engine for a case the last of `engines` (most recently used): one already
    /// holding its layout, else a new one while there is room, else the least recently used of
    /// its architecture (remapped by `Run::new`).
    fn pick_engine(&mut self, case: &Case) -> Result<(), ModelError> {
        let aarch64 = engine::is_aarch64(case.state.isa);
        let layout = run::layout(case);
        let same_arch = || self.engines.iter().filter(|e| e.aarch64 == aarch64).count();
        let pick = match self.engines.iter().position(|e| e.aarch64 == aarch64 && e.cpu.has_layout(&layout)) {
            Some(i) => i,
            None if same_arch() < ENGINES_PER_ARCH => {
                self.engines.push(Engine::new(aarch64)?);
                self.engines.len() - 1
            }
            None => self.engines.iter().position(|e| e.aarch64 == aarch64).unwrap_or(0),
        };
        let e = self.engines.remove(pick);
        self.engines.push(e);
        Ok(())
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
        let profile = self.profile;
        let mut outcome = match self.pick_engine(case) {
            Ok(()) => {
                let last = self.engines.len() - 1;
                let Engine { cpu, ctx, .. } = &mut self.engines[last];
                match run::Run::new(case, profile, cpu, ctx, &self.dis, &mut self.digests) {
                    Ok(mut r) => r.run(),
                    Err(reason) => Outcome { end: End::Skipped { reason }, ..Outcome::default() },
                }
            }
            Err(e) => Outcome { end: End::Skipped { reason: format!("the model could not start an engine: {e}") }, ..Outcome::default() },
        };
        outcome.meta = meta;
        outcome
    }
}
