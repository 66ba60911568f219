//! A live backend: a persistent target (refhyp or KVM agent) that boots once and then runs
//! case after case. The case is lowered onto the guest runtime here, sent as a `Job`, and the
//! raw `Report` decoded into an `Outcome` — the same code for both live backends, so a
//! divergence between them is about the hypervisor, not the harness.
//!
//! Failures never lose the run: a target that dies, hangs, panics or garbles the channel is
//! recorded in that case's outcome as `End::BackendError` (with the console tail), killed,
//! and booted again for the next case.

use std::time::{Duration, Instant};

use trapdiff_arch::outcome::{End, Meta};
use trapdiff_arch::quirk::Quirks;
use trapdiff_arch::wire::{HostMsg, TargetInfo, TargetMsg};
use trapdiff_arch::{Case, Outcome};

use super::qemu::{Target, TargetConfig, TargetError};
use super::Backend;

/// Extra time on top of a case's own watchdog before the harness gives up on the target.
const REPLY_MARGIN: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LiveBackend {
    name: String,
    config: TargetConfig,
    target: Option<Target>,
    info: Option<TargetInfo>,
    seq: u32,
    /// QEMU version or "native", for outcome metadata.
    platform: Option<String>,
    /// Boots so far and the time they took.
    pub boots: u32,
    pub boot_time: Duration,
    /// Kernel warnings/oopses seen on the console, with the case that was running.
    pub findings: Vec<(String, String)>,
    /// Quirks sent with every job (the refhyp re-introduces them; the KVM agent ignores them).
    pub quirks: Quirks,
}

impl LiveBackend {
    pub fn new(name: &str, config: TargetConfig, platform: Option<String>) -> LiveBackend {
        LiveBackend {
            name: name.to_string(),
            config,
            target: None,
            info: None,
            seq: 0,
            platform,
            boots: 0,
            boot_time: Duration::ZERO,
            findings: Vec::new(),
            quirks: Quirks::NONE,
        }
    }

    /// Report under another name (the fuzzer's quirk-free `refhyp-reference`).
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }

    pub fn info(&self) -> Option<&TargetInfo> {
        self.info.as_ref()
    }

    /// Boot the target if it is not up, and load the runtime into it.
    pub fn ensure_up(&mut self) -> Result<(), TargetError> {
        if self.target.is_some() {
            return Ok(());
        }
        let start = Instant::now();
        let mut t = Target::spawn(&self.config)?;
        let info = loop {
            match t.recv(self.config.boot_timeout)? {
                TargetMsg::Hello(info) => break info,
                _ => continue,
            }
        };
        t.send(&HostMsg::SetRuntime { segments: guest_payloads::lower::runtime_segments() })?;
        self.seq = self.seq.wrapping_add(1);
        let ping = self.seq;
        t.send(&HostMsg::Ping { seq: ping })?;
        loop {
            match t.recv(self.config.boot_timeout)? {
                TargetMsg::Pong { seq } if seq == ping => break,
                _ => continue,
            }
        }
        self.boots += 1;
        self.boot_time += start.elapsed();
        self.info = Some(info);
        self.target = Some(t);
        Ok(())
    }

    /// Stop the target (the next case boots a new one).
    pub fn restart(&mut self) {
        if let Some(mut t) = self.target.take() {
            t.kill();
        }
    }

    /// Send raw bytes to the target (tests use this to inject garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TargetError> {
        self.ensure_up()?;
        if let Some(t) = self.target.as_mut() {
            t.send_raw(bytes);
        }
        Ok(())
    }

    fn meta(&self, elapsed: Duration) -> Meta {
        Meta {
            backend: self.name.clone(),
            // A quirked refhyp is not the reference: say which bugs it carries.
            policy: (!self.quirks.is_empty()).then(|| {
                let names: Vec<&str> = self.quirks.iter().map(|q| q.name()).collect();
                format!("reference+{}", names.join("+"))
            }),
            kernel: self.info.as_ref().map(|i| i.version.clone()),
            midr: self.info.as_ref().map(|i| format!("{:#010x}", i.midr)),
            qemu: self.platform.clone(),
            elapsed_us: Some(elapsed.as_micros() as u64),
        }
    }

    fn failure(&mut self, case: &Case, e: TargetError, started: Instant) -> Outcome {
        if let Some(t) = self.target.as_mut() {
            for f in t.take_findings() {
                self.findings.push((case.name.clone(), f));
            }
        }
        self.restart();
        Outcome {
            end: End::BackendError { message: format!("{} backend: {e}", self.name) },
            meta: self.meta(started.elapsed()),
            ..Outcome::default()
        }
    }
}

impl Backend for LiveBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, case: &Case) -> Outcome {
        let started = Instant::now();
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let job = match guest_payloads::lower::lower(case, seq) {
            Ok(j) => trapdiff_arch::wire::Job { quirks: self.quirks, ..j },
            Err(e) => {
                return Outcome {
                    end: End::BackendError { message: format!("cannot lower the case onto the runtime: {e}") },
                    meta: self.meta(started.elapsed()),
                    ..Outcome::default()
                }
            }
        };
        if let Err(e) = self.ensure_up() {
            return self.failure(case, e, started);
        }
        let timeout = Duration::from_millis(u64::from(job.timeout_ms)) + REPLY_MARGIN;
        let reply = {
            let Some(t) = self.target.as_mut() else {
                return self.failure(case, TargetError::Died("not started".into(), String::new()), started);
            };
            t.send(&HostMsg::Run(job.clone())).and_then(|_| loop {
                match t.recv(timeout)? {
                    TargetMsg::Result(r) if r.seq == seq => break Ok(r),
                    _ => continue,
                }
            })
        };
        match reply {
            Ok(report) => {
                let mut out = guest_payloads::decode::decode(case, &job, &report);
                if let Some(t) = self.target.as_mut() {
                    for f in t.take_findings() {
                        self.findings.push((case.name.clone(), f));
                    }
                }
                out.meta = self.meta(started.elapsed());
                out
            }
            Err(e) => self.failure(case, e, started),
        }
    }
}
