//! A live backend: a persistent target (refhyp or KVM agent) that boots once and then runs
//! case after case. The case is lowered onto the guest runtime here, sent as a `Job`, and the
//! raw `Report` decoded into an `Outcome` — the same code for both live backends, so a
//! divergence between them is about the hypervisor, not the harness.
//!
//! Jobs and results travel over the target's serial console as frames, or, when the backend
//! has a shared-memory [`Mailbox`] (the refhyp's RAM, the KVM agent's ivshmem BAR) and the
//! target's Hello lists `mailbox`, through it, announced by doorbell lines
//! (`trapdiff_arch::mailbox`): QEMU feeds a serial port about a byte per main-loop turn.
//!
//! Failures never lose the run: a target that dies, hangs, panics or garbles the channel is
//! recorded in that case's outcome as `End::BackendError` (with the console tail), killed,
//! and booted again for the next case.

use std::time::{Duration, Instant};

use trapdiff_arch::mailbox;
use trapdiff_arch::outcome::{End, Meta};
use trapdiff_arch::quirk::Quirks;
use trapdiff_arch::wire::{HostMsg, TargetInfo, TargetMsg};
use trapdiff_arch::{Case, Outcome};

use super::qemu::{Target, TargetConfig, TargetError};
use super::{Backend, Phases};

/// Extra time on top of a case's own watchdog before the harness gives up on the target.
pub const REPLY_MARGIN: Duration = Duration::from_secs(10);
/// Boots that fail in a row before the backend stops trying (the boot circuit breaker).
pub const MAX_BOOT_FAILURES: u32 = 3;

/// A shared-memory side channel for big messages (`trapdiff_arch::mailbox`): the message goes
/// into memory and a short doorbell line down the serial link, both ways.
pub trait Mailbox: Send + std::fmt::Debug {
    /// Write a request `payload`; returns the doorbell line to send instead of the message.
    fn post(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>>;
    /// The bytes of a range of the mailbox (a reply doorbell's envelope; the caller checks it).
    fn fetch(&self, range: std::ops::Range<usize>) -> std::io::Result<Vec<u8>>;
    /// Before a boot: fresh memory.
    fn reset(&mut self) -> std::io::Result<()>;
}

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
    /// Kernel findings of boots (not of any case): the lines, until `take_boot_findings`.
    boot_findings: Vec<String>,
    /// Boots that failed since the last one that worked.
    boot_failures: u32,
    /// Why the backend gave up (the circuit breaker tripped, or the image is stale).
    gave_up: Option<String>,
    /// After this many boot failures in a row the backend gives up.
    pub max_boot_failures: u32,
    /// Quirks sent with every job (the refhyp re-introduces them; the KVM agent ignores them).
    pub quirks: Quirks,
    mailbox: Option<Box<dyn Mailbox>>,
    /// The target said it reads the mailbox (`mailbox` in its Hello caps).
    mailbox_on: bool,
    phases: Phases,
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
            boot_findings: Vec::new(),
            boot_failures: 0,
            gave_up: None,
            max_boot_failures: MAX_BOOT_FAILURES,
            quirks: Quirks::NONE,
            mailbox: None,
            mailbox_on: false,
            phases: Phases::default(),
        }
    }

    /// Offer `m` to the target; it is used once the target's Hello lists `mailbox`.
    pub fn with_mailbox(mut self, m: Box<dyn Mailbox>) -> LiveBackend {
        self.mailbox = Some(m);
        self
    }

    /// Jobs go through the mailbox (the target took it).
    pub fn uses_mailbox(&self) -> bool {
        self.mailbox_on
    }

    /// Send a message: through the mailbox when the target takes it and the message is big.
    fn send(&mut self, msg: &HostMsg) -> Result<(), TargetError> {
        let Some(t) = self.target.as_mut() else {
            return Err(TargetError::Died("not started".into(), String::new()));
        };
        if let (true, Some(m)) = (self.mailbox_on, self.mailbox.as_mut()) {
            let payload = trapdiff_arch::wire::encode_payload(msg).map_err(|e| TargetError::Encode(e.to_string()))?;
            if mailbox::takes(payload.len()) {
                self.phases.mailbox_jobs += u64::from(matches!(msg, HostMsg::Run(_)));
                let doorbell = m.post(&payload).map_err(|e| TargetError::Encode(format!("mailbox write: {e}")))?;
                t.send_line(doorbell);
                return Ok(());
            }
        }
        t.send(msg)
    }

    fn recv(&mut self, timeout: Duration) -> Result<TargetMsg, TargetError> {
        let mailbox = if self.mailbox_on { self.mailbox.as_deref() } else { None };
        let Some(t) = self.target.as_mut() else {
            return Err(TargetError::Died("not started".into(), String::new()));
        };
        let m = t.recv_via(timeout, mailbox)?;
        if matches!(m, TargetMsg::Result(_)) && t.last_via_mailbox {
            self.phases.mailbox_reports += 1;
        }
        Ok(m)
    }

    /// Kernel findings since the last call (the lines of this case's WARN/BUG/... splats).
    fn take_findings(&mut self) -> Vec<String> {
        self.target.as_mut().map(|t| t.take_findings()).unwrap_or_default()
    }

    fn collect_boot_findings(&mut self) {
        let f = self.take_findings();
        self.boot_findings.extend(f);
    }

    /// A target error as the user reads it: a stale image says how to rebuild it.
    fn describe(&self, e: &TargetError) -> String {
        match e {
            TargetError::Protocol(_) => {
                let what = if self.name.starts_with("refhyp") { "refhyp" } else { "agent" };
                format!("{e}: rebuild with `bash ci/setup.sh {what}`")
            }
            _ => e.to_string(),
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
        if let Some(m) = self.mailbox.as_mut() {
            m.reset().map_err(|e| TargetError::Spawn("the shared-memory file".into(), e))?;
        }
        let r = Target::spawn(&self.config).and_then(|t| {
            self.target = Some(t);
            self.handshake()
        });
        // What the kernel said while booting belongs to no case.
        self.collect_boot_findings();
        if let Err(e) = r {
            self.restart();
            self.boot_failures += 1;
            if e.is_permanent() {
                self.gave_up = Some(self.describe(&e));
            } else if self.boot_failures >= self.max_boot_failures {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                self.gave_up = Some(format!("{} boots failed in a row, the last: {first}", self.boot_failures));
            }
            return Err(e);
        }
        self.boot_failures = 0;
        self.boots += 1;
        self.boot_time += start.elapsed();
        Ok(())
    }

    /// Hello (which says whether the target takes the mailbox), the runtime, a ping.
    fn handshake(&mut self) -> Result<(), TargetError> {
        let boot_timeout = self.config.boot_timeout;
        let info = loop {
            if let TargetMsg::Hello(info) = self.recv(boot_timeout)? {
                break info;
            }
        };
        self.mailbox_on = self.mailbox.is_some() && info.caps.iter().any(|c| c == mailbox::CAP);
        self.info = Some(info);
        self.send(&HostMsg::SetRuntime { segments: guest_payloads::lower::runtime_segments() })?;
        self.seq = self.seq.wrapping_add(1);
        let ping = self.seq;
        self.send(&HostMsg::Ping { seq: ping })?;
        loop {
            if let TargetMsg::Pong { seq } = self.recv(boot_timeout)? {
                if seq == ping {
                    return Ok(());
                }
            }
        }
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
            kernel_findings: Vec::new(),
        }
    }

    fn failure(&mut self, e: TargetError, started: Instant) -> Outcome {
        let findings = self.take_findings();
        self.restart();
        let message = format!("{} backend: {}", self.name, self.describe(&e));
        let mut meta = self.meta(started.elapsed());
        meta.kernel_findings = findings;
        Outcome { end: End::BackendError { message }, meta, ..Outcome::default() }
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
        let lowered = guest_payloads::lower::lower(case, seq);
        let lowered_at = Instant::now();
        let job = match lowered {
            Ok(j) => trapdiff_arch::wire::Job { quirks: self.quirks, ..j },
            Err(e) => {
                return Outcome {
                    end: End::BackendError { message: format!("cannot lower the case onto the runtime: {e}") },
                    meta: self.meta(started.elapsed()),
                    ..Outcome::default()
                }
            }
        };
        if let Some(why) = &self.gave_up {
            return Outcome {
                end: End::BackendError { message: format!("backend unavailable ({why})") },
                meta: self.meta(started.elapsed()),
                ..Outcome::default()
            };
        }
        if let Err(e) = self.ensure_up() {
            // A failed boot is this case's error; what the kernel said stays with the boots.
            return self.failure(e, started);
        }
        let timeout = Duration::from_millis(u64::from(job.timeout_ms)) + REPLY_MARGIN;
        let msg = HostMsg::Run(job);
        let sent_at = Instant::now();
        let reply = self.send(&msg).and_then(|_| loop {
            match self.recv(timeout)? {
                TargetMsg::Result(r) if r.seq == seq => break Ok(r),
                _ => continue,
            }
        });
        let HostMsg::Run(job) = msg else { unreachable!("built above") };
        match reply {
            Ok(report) => {
                let replied_at = Instant::now();
                let mut out = guest_payloads::decode::decode(case, &job, &report);
                out.meta = self.meta(started.elapsed());
                out.meta.kernel_findings = self.take_findings();
                let p = &mut self.phases;
                p.cases += 1;
                p.lower_us += (lowered_at - started).as_micros() as u64;
                p.round_trip_us += (replied_at - sent_at).as_micros() as u64;
                p.target_us += report.elapsed_us;
                p.decode_us += replied_at.elapsed().as_micros() as u64;
                p.job_bytes += postcard::to_allocvec(&job).map_or(0, |v| v.len()) as u64;
                p.report_bytes += postcard::to_allocvec(&report).map_or(0, |v| v.len()) as u64;
                out
            }
            Err(e) => self.failure(e, started),
        }
    }

    fn unavailable(&self) -> Option<String> {
        self.gave_up.clone()
    }

    fn take_boot_findings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.boot_findings)
    }

    fn phases(&self) -> Option<Phases> {
        Some(self.phases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn case() -> Case {
        crate::case_file::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed/valid.json")).expect("valid.json")
    }

    /// A target that prints `payload` as one frame, then idles: a stale build's Hello.
    fn target_printing(tag: &str, payload: &[u8]) -> TargetConfig {
        let mut frame = trapdiff_arch::wire::frame_payload(payload);
        frame.pop(); // the newline; printf adds it
        let script = std::env::temp_dir().join(format!("trapdiff-stale-{tag}-{}.sh", std::process::id()));
        std::fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' '{}'\nsleep 5\n", String::from_utf8_lossy(&frame))).expect("script");
        TargetConfig { program: "/bin/sh".into(), args: vec![script.display().to_string()], boot_timeout: Duration::from_secs(5) }
    }

    #[test]
    fn a_stale_build_is_told_to_rebuild_and_not_retried() {
        let old = TargetMsg::Hello(TargetInfo { protocol: 1, backend: "refhyp".into(), ..TargetInfo::default() });
        let decodable = postcard::to_allocvec(&old).expect("encode");
        // A Hello of the same layout but another version, and one of a layout this build
        // cannot decode: both say which protocol and how to rebuild.
        for (tag, payload, name) in [("same-layout", decodable.clone(), "refhyp"), ("other-layout", decodable[..2].to_vec(), "kvm")] {
            let mut b = LiveBackend::new(name, target_printing(tag, &payload), None);
            let o = b.run(&case());
            let End::BackendError { message } = &o.end else { panic!("{tag}: {:?}", o.end) };
            let what = if name == "refhyp" { "refhyp" } else { "agent" };
            assert!(message.contains(&format!("rebuild with `bash ci/setup.sh {what}`")), "{tag}: {message}");
            assert!(message.contains("protocol"), "{tag}: {message}");
            assert!(b.unavailable().is_some_and(|w| w.contains("rebuild")), "a stale image is not booted again");
            assert_eq!(b.boots, 0);
        }
    }

    use super::super::mailbox::SharedFile;
    use std::os::unix::fs::FileExt;
    use trapdiff_arch::mailbox::{envelope, Dir, Doorbell, AREA, HALF};
    use trapdiff_arch::wire::Report;

    /// A target that, for each entry of `replies`, prints that line and then waits for one
    /// line from the harness (a Resend), and finally idles.
    fn scripted(tag: &str, replies: &[Vec<u8>]) -> TargetConfig {
        let mut script = String::from("#!/bin/sh\n");
        for r in replies {
            let line = String::from_utf8_lossy(r);
            script.push_str(&format!("printf '%s\\n' '{}'\nread l\n", line.trim_end()));
        }
        script.push_str("sleep 5\n");
        let path = std::env::temp_dir().join(format!("trapdiff-mailbox-{tag}-{}.sh", std::process::id()));
        std::fs::write(&path, script).expect("script");
        TargetConfig { program: "/bin/sh".into(), args: vec![path.display().to_string()], boot_timeout: Duration::from_secs(5) }
    }

    fn result(seq: u32) -> (TargetMsg, Vec<u8>) {
        let m = TargetMsg::Result(Report { seq, readback: vec![vec![0xab; 400]], ..Report::default() });
        let p = trapdiff_arch::wire::encode_payload(&m).expect("encode");
        (m, p)
    }

    #[test]
    fn a_torn_reply_in_the_mailbox_is_asked_for_again() {
        let file = SharedFile::create("reply-test", 4 << 20, 0).expect("file");
        let (msg, payload) = result(7);
        // The first reply half holds a torn copy (one byte flipped), the second the real one:
        // as if the target's first write was damaged and its answer to Resend was whole.
        let mut torn = envelope(&payload);
        torn[20] ^= 0x40;
        let f = std::fs::File::options().write(true).open(&file.path).expect("open");
        f.write_all_at(&torn, AREA as u64).expect("write");
        f.write_all_at(&envelope(&payload), (AREA + HALF) as u64).expect("write");
        let first = Doorbell { dir: Dir::ToHost, offset: AREA }.line();
        let second = Doorbell { dir: Dir::ToHost, offset: AREA + HALF }.line();
        let mut t = Target::spawn(&scripted("torn", &[first, second])).expect("spawn");
        let got = t.recv_via(Duration::from_secs(5), Some(&file)).expect("the resent reply");
        assert_eq!(got, msg);
        assert!(t.last_via_mailbox);
        assert!(t.tail().contains("mailbox checksum mismatch"), "{}", t.tail());
    }

    #[test]
    fn a_reply_that_stays_torn_or_has_no_mailbox_is_an_error_not_a_hang() {
        let file = SharedFile::create("reply-test", 4 << 20, 0).expect("file");
        let (_, payload) = result(8);
        // An envelope whose checksum never matches its payload.
        let mut env = envelope(&payload);
        env[4] ^= 1;
        std::fs::File::options().write(true).open(&file.path).expect("open").write_all_at(&env, AREA as u64).expect("write");
        let bell = Doorbell { dir: Dir::ToHost, offset: AREA }.line();
        let t0 = Instant::now();
        let mut t = Target::spawn(&scripted("stays-torn", &vec![bell.clone(); 5])).expect("spawn");
        let e = t.recv_via(Duration::from_secs(20), Some(&file)).expect_err("corrupt");
        assert!(matches!(e, TargetError::Corrupt(..)), "{e}");
        assert!(e.to_string().contains("mailbox checksum mismatch"), "{e}");
        // A reply doorbell to a harness that offered no mailbox: never followed.
        let mut t = Target::spawn(&scripted("no-mailbox", &vec![bell; 5])).expect("spawn");
        let e = t.recv_via(Duration::from_secs(20), None).expect_err("corrupt");
        assert!(e.to_string().contains("offered the target no mailbox"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10), "gave up promptly");
    }
}
