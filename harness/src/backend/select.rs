//! Building backends from command-line names.

use std::path::PathBuf;

use trapdiff_arch::quirk::{Quirk, Quirks};

use crate::run::BackendSpec;

use super::model::ModelBackend;
use super::Backend;

#[derive(Clone, Debug)]
pub struct BackendOptions {
    pub names: Vec<String>,
    pub kernel: Option<PathBuf>,
    pub native: bool,
    pub policy: String,
    pub jobs: usize,
    /// Historical bugs the refhyp re-introduces (`trapdiff quirks`).
    pub quirks: Quirks,
    /// Extra words for the kvm backend's kernel command line.
    pub kernel_append: Vec<String>,
}

impl Default for BackendOptions {
    /// No backend named; the defaults of `trapdiff run` for the rest.
    fn default() -> Self {
        BackendOptions {
            names: Vec::new(),
            kernel: None,
            native: false,
            policy: "linux-6.1".into(),
            jobs: 1,
            quirks: Quirks::default(),
            kernel_append: Vec::new(),
        }
    }
}

/// `--quirk NAME`: a quirk by name or alias, or an error listing the known ones.
pub fn parse_quirk(name: &str) -> Result<Quirk, String> {
    Quirk::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = trapdiff_arch::quirk::QUIRKS.iter().map(|q| q.name).collect();
        format!("unknown quirk `{name}` (known: {}; `trapdiff quirks` describes them)", known.join(", "))
    })
}

pub fn specs(o: &BackendOptions) -> Result<Vec<BackendSpec>, String> {
    let mut v = Vec::new();
    for name in &o.names {
        v.push(spec(name.trim(), o)?);
    }
    Ok(v)
}

fn spec(name: &str, o: &BackendOptions) -> Result<BackendSpec, String> {
    match name {
        "model" => {
            let profile = trapdiff_model::profile(&o.policy).ok_or_else(|| {
                let known: Vec<&str> = trapdiff_model::PROFILES.iter().map(|p| p.name).collect();
                format!("unknown policy profile `{}` (known: {})", o.policy, known.join(", "))
            })?;
            Ok(BackendSpec { name: "model".into(), make: Box::new(move || Ok(Box::new(ModelBackend::new(profile)) as Box<dyn Backend>)), instances: 1 })
        }
        "refhyp" => {
            let opts = super::refhyp::RefhypOptions { quirks: o.quirks, ..super::refhyp::RefhypOptions::default() };
            // Fail early, with the reason, when the image is missing; instances boot lazily.
            super::refhyp::target_config(&opts, None).map_err(|e| e.to_string())?;
            Ok(BackendSpec {
                name: "refhyp".into(),
                make: Box::new(move || super::refhyp::backend(&opts).map(|b| Box::new(b) as Box<dyn Backend>).map_err(|e| e.to_string())),
                instances: o.jobs.max(1),
            })
        }
        "kvm" => {
            let opts = super::kvm::KvmOptions {
                kernel: o.kernel.clone(),
                native: o.native,
                extra_cmdline: o.kernel_append.clone(),
                ..super::kvm::KvmOptions::default()
            };
            super::kvm::target_config(&opts, None).map_err(|e| e.to_string())?;
            Ok(BackendSpec {
                name: "kvm".into(),
                make: Box::new(move || super::kvm::backend(&opts).map(|b| Box::new(b) as Box<dyn Backend>).map_err(|e| e.to_string())),
                instances: o.jobs.max(1),
            })
        }
        other => Err(format!("unknown backend `{other}` (known: model, refhyp, kvm)")),
    }
}
