//! Where the agent's time per job goes (`trapdiff.profile=1` on the kernel command line, or
//! `--profile` natively): each job's phases on CLOCK_MONOTONIC (`Instant`), sent to the
//! harness as a `Log` frame after the result. Off by default: the line costs channel time.

use std::fmt::Write as _;
use std::time::Instant;

/// The phases of one job, in the order they run (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the factory's VM (zero when it was ready).
    TakeVm,
    /// Host mappings for the memslots (mmap, or zeroing kept ones).
    Alloc,
    /// Copying the runtime and the job's segments into guest memory.
    Copy,
    /// KVM_SET_USER_MEMORY_REGION (and deleting the last job's slots on a reused VM).
    Memslots,
    /// KVM_ENABLE_CAP NISV_TO_USER.
    Cap,
    /// KVM_ARM_PREFERRED_TARGET, KVM_ARM_VCPU_INIT, the entry registers.
    VcpuInit,
    /// Inside KVM_RUN (guest time, stage-2 faults, exits taken in the kernel).
    Run,
    /// Between KVM_RUNs: the VMM's exit handling and injections.
    Exits,
    /// Digests and readback of guest memory.
    Readback,
}

const PHASES: [(Phase, &str); 9] = [
    (Phase::TakeVm, "take_vm"),
    (Phase::Alloc, "alloc"),
    (Phase::Copy, "copy"),
    (Phase::Memslots, "memslots"),
    (Phase::Cap, "cap"),
    (Phase::VcpuInit, "vcpu_init"),
    (Phase::Run, "kvm_run"),
    (Phase::Exits, "exits"),
    (Phase::Readback, "readback"),
];

/// Accumulated time per phase for one job, plus the KVM_RUN count and how the VM was got.
#[derive(Debug)]
pub struct Profile {
    us: [u64; PHASES.len()],
    mark: Instant,
    pub runs: u32,
    /// "fresh" (made by the factory), "inline" (made on the job path) or "reused".
    pub vm: &'static str,
    /// The factory's teardown and creation times for this job's VM.
    pub factory: Option<crate::job::FactoryCost>,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile { us: [0; PHASES.len()], mark: Instant::now(), runs: 0, vm: "none", factory: None }
    }
}

impl Profile {
    /// Charge the time since the last mark to `phase` and start a new mark.
    pub fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        self.us[phase as usize] += now.duration_since(self.mark).as_micros() as u64;
        self.mark = now;
    }

    /// One line: `vm=reused runs=3 take_vm=0 alloc=120 ...` (microseconds).
    pub fn line(&self, seq: u32, total_us: u64) -> String {
        let mut s = format!("agent profile seq {seq}: total={total_us}us vm={} runs={}", self.vm, self.runs);
        for (i, (_, name)) in PHASES.iter().enumerate() {
            let _ = write!(s, " {name}={}", self.us[i]);
        }
        if let Some(c) = self.factory {
            let _ = write!(s, " factory_teardown={} factory_create={}", c.teardown_us, c.create_us);
        }
        s
    }
}
