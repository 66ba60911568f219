//! Where things are: the repository, the build outputs of `ci/setup.sh`, the corpus.
//! `TRAPDIFF_ROOT` overrides the repository root (default: the checkout this binary was
//! built from).

use std::path::PathBuf;

pub fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("TRAPDIFF_ROOT") {
        return PathBuf::from(r);
    }
    // harness/ is one level below the repository root.
    let r = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    r.canonicalize().unwrap_or(r)
}

pub fn build_dir() -> PathBuf {
    root().join("build")
}

/// The default guest kernel unpacked by `ci/setup.sh` (Image, config, release).
pub fn default_kernel_dir() -> PathBuf {
    build_dir().join("kernel").join("default")
}

pub fn kernel_lock() -> PathBuf {
    root().join("ci").join("kernel.lock")
}

pub fn cross_target() -> PathBuf {
    build_dir().join("cross-target")
}

/// The refhyp ELF built by `ci/setup.sh` (soft-float target: EL2 code never touches the FP
/// registers, which hold the guest's state).
pub fn refhyp_image() -> PathBuf {
    cross_target().join("aarch64-unknown-none-softfloat").join("release").join("refhyp")
}

/// The static KVM agent built by `ci/setup.sh`.
pub fn agent_binary() -> PathBuf {
    cross_target().join("aarch64-unknown-linux-gnu").join("release").join("kvm-agent")
}

pub fn suite_dir() -> PathBuf {
    root().join("corpus").join("suite")
}

/// `corpus/regressions/`: one minimal case per quirk, its correct outcome pinned.
pub fn regressions_dir() -> PathBuf {
    root().join("corpus/regressions")
}

pub fn waivers_file() -> PathBuf {
    root().join("corpus").join("waivers.json")
}

/// Documented bugs of released kernels (`known::Kind::Issue`).
pub fn known_issues_file() -> PathBuf {
    root().join("corpus").join("known-issues.json")
}

/// The waivers and the known issues, as one list.
pub fn known_list() -> Result<crate::known::KnownList, String> {
    crate::known::KnownList::load(&waivers_file(), &known_issues_file())
}
