//! Shared by the kvm_* integration tests: probe for what the real-KVM backend needs (and
//! skip with the reason when it is absent), start the agent under QEMU, and hand-built A64
//! jobs that exercise the agent without the guest runtime.
#![allow(dead_code)]

use std::time::Duration;

use trapdiff::backend::kvm::{self, KvmOptions};
use trapdiff::backend::qemu::Target;
use trapdiff::paths;
use trapdiff_arch::abi;
use trapdiff_arch::case::{MmioAction, NisvAction};
use trapdiff_arch::wire::{HostMsg, Job, Report, Segment, Slot, SlotKind, TargetInfo, TargetMsg};

/// Why the kvm tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    if trapdiff::backend::qemu::qemu_version().is_none() {
        return Some("qemu-system-aarch64 is not installed (bash ci/setup.sh packages)".into());
    }
    let k = kvm::default_kernel();
    if !k.is_file() {
        return Some(format!("default kernel {} is missing (bash ci/setup.sh)", k.display()));
    }
    let a = paths::agent_binary();
    if !a.is_file() {
        return Some(format!("KVM agent {} is missing (bash ci/setup.sh)", a.display()));
    }
    None
}

/// Return early from a test, saying why, when the backend cannot run here.
#[macro_export]
macro_rules! require_kvm {
    () => {
        if let Some(why) = kvm_support::missing() {
            guest_payloads::skip::live(&why);
            return;
        }
    };
}

pub const REPLY: Duration = Duration::from_secs(60);

/// Boot the default kernel with the agent and wait for Hello.
pub fn boot(extra_cmdline: &[&str]) -> (Target, TargetInfo) {
    let opts = KvmOptions { extra_cmdline: extra_cmdline.iter().map(|s| s.to_string()).collect(), ..KvmOptions::default() };
    let (cfg, _) = kvm::target_config(&opts, None).expect("kvm target config");
    let mut t = Target::spawn(&cfg).expect("start QEMU");
    loop {
        match t.recv(cfg.boot_timeout).expect("the agent says Hello") {
            TargetMsg::Hello(info) => return (t, info),
            _ => continue,
        }
    }
}

/// Send a job and wait for its result.
pub fn run(t: &mut Target, job: &Job) -> Report {
    t.send(&HostMsg::Run(job.clone())).expect("send job");
    loop {
        match t.recv(REPLY).unwrap_or_else(|e| panic!("no result for job {}: {e}", job.seq)) {
            TargetMsg::Result(r) if r.seq == job.seq => return r,
            _ => continue,
        }
    }
}

pub fn ping(t: &mut Target, seq: u32) {
    t.send(&HostMsg::Ping { seq }).expect("send ping");
    loop {
        match t.recv(REPLY).expect("pong") {
            TargetMsg::Pong { seq: s } if s == seq => return,
            _ => continue,
        }
    }
}

/// Where hand-built code runs: the start of the runtime slot (the runtime image is empty
/// in these tests; job segments are written after it).
pub const CODE: u64 = abi::RUNTIME_BASE;
/// An IPA with no memslot: every access is an MMIO or NISV exit.
pub const HOLE: u64 = 0x4000_0000;
/// A RAM slot the code can write.
pub const RAM: u64 = 0x5000_0000;

/// x1 = HARNESS_MMIO, x3 = HOLE, x5 = RAM, then `body`, then a DONE store and a spin.
pub fn program(body: &[u32]) -> Vec<u32> {
    let mut w = vec![
        0xd2a3_ffe1, // movz x1, #0x1fff, lsl #16
        0xf29e_0001, // movk x1, #0xf000          -> x1 = 0x1fff_f000 (HARNESS_MMIO)
        0xd2a8_0003, // movz x3, #0x4000, lsl #16 -> x3 = HOLE
        0xd2aa_0005, // movz x5, #0x5000, lsl #16 -> x5 = RAM
    ];
    w.extend_from_slice(body);
    w.extend_from_slice(&[
        0xb900_083f, // str wzr, [x1, #8]   (DONE)
        0x1400_0000, // b .
    ]);
    w
}

pub fn job(seq: u32, code: &[u32]) -> Job {
    Job {
        seq,
        aarch32: false,
        entry: CODE,
        slots: vec![Slot { ipa: RAM, size: 0x1000, kind: SlotKind::Ram }],
        segments: vec![Segment { ipa: CODE, bytes: code.iter().flat_map(|w| w.to_le_bytes()).collect() }],
        mmio_reads: vec![],
        mmio_read_default: 0x8877_6655_4433_2291,
        nisv_to_user: false,
        on_nisv: NisvAction::Stop,
        on_mmio: MmioAction::Emulate,
        timeout_ms: 1000,
        max_exits: 64,
        digests: vec![(RAM, 0x1000)],
        readback: vec![(RAM, 16)],
        quirks: Default::default(),
    }
}

/// Load the runtime the harness would (tests that use hand-built code send an empty one).
pub fn set_empty_runtime(t: &mut Target) {
    t.send(&HostMsg::SetRuntime { segments: vec![] }).expect("send runtime");
}

/// Up to `n` cases from corpus/suite/<family>, in file order; none is a failure (a test of
/// zero cases proves nothing).
pub fn suite_cases(family: &str, n: usize) -> Vec<trapdiff_arch::Case> {
    let dir = paths::suite_dir().join(family);
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    let files = guest_payloads::case_files::json_files_in(&dir);
    assert!(!files.is_empty(), "{} holds no case", dir.display());
    files
        .iter()
        .take(n)
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}
