//! Backends: each turns a case into an outcome.
//!
//! - `model`: the model oracle, in process.
//! - `refhyp`: the reference EL2 hypervisor booted by QEMU (`qemu` + `live`).
//! - `kvm`: the KVM agent inside a Linux kernel booted by QEMU, or native on arm64.
//!
//! Live backends share `live`: lower the case onto the guest runtime
//! (`guest_payloads::lower`), send the job over the framed channel (`trapdiff_arch::wire`),
//! and decode the report into an outcome (`guest_payloads::decode`).

use trapdiff_arch::{Case, Outcome};

/// A backend that runs cases.
pub trait Backend: Send {
    /// Short name used in reports: "model", "refhyp", "kvm".
    fn name(&self) -> &str;
    /// Run one case. Never panics on a bad case or a broken backend: infrastructure problems
    /// come back as `End::BackendError` (and the backend restarts itself for the next case),
    /// cases the backend cannot express here as `End::Skipped` with the reason.
    fn run(&mut self, case: &Case) -> Outcome;
    /// Why the backend will run no more cases (its boot circuit breaker tripped, its image is
    /// stale); the runner then marks the remaining cases at once instead of waiting on each.
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// Kernel findings printed while the backend booted (they belong to no case).
    fn take_boot_findings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Where the time of the cases so far went (live backends; `trapdiff bench` prints it).
    fn phases(&self) -> Option<Phases> {
        None
    }
}

/// Time and bytes of a live backend's cases, summed over the cases it ran: what `trapdiff
/// bench` breaks a case's milliseconds into.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Phases {
    pub cases: u64,
    /// Lowering the case onto the runtime (`guest_payloads::lower`).
    pub lower_us: u64,
    /// Sending the job until its `Result` arrived (channel both ways + the target's work).
    pub round_trip_us: u64,
    /// The target's own time for the jobs (`Report::elapsed_us`).
    pub target_us: u64,
    /// Decoding the report into an outcome.
    pub decode_us: u64,
    /// Encoded job bytes sent (postcard, before any hex framing) and how many went through the
    /// shared-memory mailbox.
    pub job_bytes: u64,
    pub mailbox_jobs: u64,
    /// Encoded report bytes received (postcard), and how many reports came through the mailbox.
    pub report_bytes: u64,
    pub mailbox_reports: u64,
}

pub mod initramfs;
pub mod kernel_config;
pub mod kernel_log;
pub mod kvm;
pub mod live;
pub mod mailbox;
pub mod model;
pub mod qemu;
pub mod refhyp;
pub mod select;
