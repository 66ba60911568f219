//! A live target process — QEMU running the refhyp or a kernel with the KVM agent, or the
//! agent itself on a native arm64 host — and the framed channel over its stdin/stdout.
//!
//! A reader thread splits the target's output into frames, mailbox doorbells and console
//! lines (a doorbell's message is read from the backend's [`Mailbox`]); a writer thread
//! feeds its input, so a guest that stops reading can never block the harness. Console lines
//! are kept (the tail goes into error messages) and scanned for kernel panics and oopses.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use trapdiff_arch::mailbox::{Dir, Doorbell};
use trapdiff_arch::wire::{self, Frame, FrameReader, HostMsg, Line, TargetMsg};

use super::kernel_log::KernelLog;
use super::live::Mailbox;

/// How to start a target.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Program (qemu-system-aarch64, or the agent binary in native mode).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// How long to wait for `Hello` after starting.
    pub boot_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Could not start {0}: {1}
    #[error("could not start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("no reply within {0:?}{1}")]
    Timeout(Duration, String),
    #[error("target exited ({0}){1}")]
    Died(String, String),
    #[error("kernel panic or oops on the console:{0}")]
    Panic(String),
    #[error("could not encode a message: {0}")]
    Encode(String),
    #[error("the channel stays corrupt after {0} resends{1}")]
    Corrupt(u32, String),
    /// The target's `Hello` is from another protocol version (a stale build).
    #[error("{}", protocol_message(*.0))]
    Protocol(Option<u32>),
}

fn protocol_message(theirs: Option<u32>) -> String {
    match theirs {
        Some(v) => format!("the target speaks protocol {v}, this harness {}", wire::PROTOCOL_VERSION),
        None => format!("the target's Hello does not decode as protocol {}", wire::PROTOCOL_VERSION),
    }
}

impl TargetError {
    /// Retrying cannot help: the target image itself is wrong.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TargetError::Protocol(_) | TargetError::Spawn(..))
    }
}

/// The target dies with the harness, even on SIGKILL: PR_SET_PDEATHSIG (prctl(2)) sends it
/// SIGKILL when the thread that spawned it exits, so a LiveBackend must be driven from the
/// thread that owns it (run.rs gives each instance its own thread for its whole life).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe; captured before fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only calls the async-signal-safe
    // prctl, getppid and kill.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl took effect: no signal will come.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

enum FromTarget {
    Frame(Frame<TargetMsg>),
    Doorbell(Doorbell),
    Console(String),
    Eof,
}

/// Lines of console output kept for error messages.
const CONSOLE_TAIL: usize = 40;
/// Console patterns that mean the target kernel or hypervisor is gone: stop waiting for it.
const DEAD_PATTERNS: &[&str] = &["Kernel panic", "refhyp: panic"];

/// A running target.
#[derive(Debug)]
pub struct Target {
    child: Child,
    to_target: Sender<Vec<u8>>,
    from_target: Receiver<FromTarget>,
    console: VecDeque<String>,
    /// Kernel findings (WARN, BUG, Oops, ...) seen since the last call to `take_findings`.
    kernel_log: KernelLog,
    last_sent: Option<Vec<u8>>,
    /// The last message `recv` returned came through the mailbox.
    pub last_via_mailbox: bool,
}

impl Target {
    pub fn spawn(cfg: &TargetConfig) -> Result<Target, TargetError> {
        let mut cmd = Command::new(&cfg.program);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .args(&cfg.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TargetError::Spawn(cfg.program.display().to_string(), e))?;
        let (tx_out, from_target) = mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let stdin: Option<ChildStdin> = child.stdin.take();
        if let Some(mut out) = stdout {
            let tx = tx_out.clone();
            thread::spawn(move || {
                let mut reader = FrameReader::new();
                let mut buf = [0u8; 8192];
                loop {
                    match out.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(FromTarget::Eof);
                            return;
                        }
                        Ok(n) => {
                            for &b in &buf[..n] {
                                let item = match reader.push::<TargetMsg>(b) {
                                    Some(Line::Frame(f)) => FromTarget::Frame(f),
                                    Some(Line::Doorbell(d)) => FromTarget::Doorbell(d),
                                    Some(Line::Noise(l)) => FromTarget::Console(String::from_utf8_lossy(&l).trim_end().to_string()),
                                    None => continue,
                                };
                                if tx.send(item).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
        if let Some(mut err) = stderr {
            let tx = tx_out;
            thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                for l in s.lines() {
                    let _ = tx.send(FromTarget::Console(format!("[stderr] {l}")));
                }
            });
        }
        let (to_target, rx_in) = mpsc::channel::<Vec<u8>>();
        if let Some(mut input) = stdin {
            thread::spawn(move || {
                for bytes in rx_in {
                    if input.write_all(&bytes).and_then(|_| input.flush()).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Target { child, to_target, from_target, console: VecDeque::new(), kernel_log: KernelLog::new(), last_sent: None, last_via_mailbox: false })
    }

    pub fn send(&mut self, msg: &HostMsg) -> Result<(), TargetError> {
        let bytes = wire::encode_frame(msg).map_err(|e| TargetError::Encode(e.to_string()))?;
        self.last_sent = Some(bytes.clone());
        // A send error means the writer thread is gone (target died); recv reports it.
        let _ = self.to_target.send(bytes);
        Ok(())
    }

    /// Send a line the caller made (a mailbox doorbell), kept for a resend like a frame.
    pub fn send_line(&mut self, line: Vec<u8>) {
        self.last_sent = Some(line.clone());
        let _ = self.to_target.send(line);
    }

    /// Send raw bytes (tests use this to inject garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.to_target.send(bytes.to_vec());
    }

    /// Wait for the next message, resending or asking for a resend when a frame is corrupt.
    pub fn recv(&mut self, timeout: Duration) -> Result<TargetMsg, TargetError> {
        self.recv_via(timeout, None)
    }

    /// The message a reply doorbell points at in `mailbox`, as a frame: a message whose bytes
    /// fail the doorbell's checks is a corrupt frame (so it is asked for again).
    fn fetch(&mut self, d: &Doorbell, mailbox: Option<&dyn Mailbox>) -> Frame<TargetMsg> {
        let Some(m) = mailbox else { return Frame::Corrupt("a reply doorbell, but this harness offered the target no mailbox") };
        let mut io_error = None;
        let read = d.read_with(|r| m.fetch(r).map_err(|e| io_error = Some(e)).ok());
        if let Some(e) = io_error {
            self.note(format!("cannot read the mailbox file: {e}"));
        }
        match read.and_then(|bytes| wire::decode_payload(&bytes)) {
            Ok(msg) => Frame::Msg(msg),
            Err(why) => Frame::Corrupt(why),
        }
    }

    /// [`Target::recv`], reading reply doorbells' messages from `mailbox`.
    pub fn recv_via(&mut self, timeout: Duration, mailbox: Option<&dyn Mailbox>) -> Result<TargetMsg, TargetError> {
        let deadline = Instant::now() + timeout;
        let mut resends = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut via_mailbox = false;
            let item = match self.from_target.recv_timeout(left) {
                Ok(FromTarget::Doorbell(d)) if d.dir == Dir::ToHost => {
                    via_mailbox = true;
                    Ok(FromTarget::Frame(self.fetch(&d, mailbox)))
                }
                Ok(FromTarget::Doorbell(d)) => Ok(FromTarget::Console(String::from_utf8_lossy(&d.line()).trim_end().to_string())),
                other => other,
            };
            match item {
                Ok(FromTarget::Frame(Frame::Msg(TargetMsg::BadFrame { reason }))) => {
                    self.note(format!("target rejected a frame: {reason}"));
                    resends += 1;
                    if resends > 3 {
                        return Err(TargetError::Corrupt(resends, self.tail()));
                    }
                    if let Some(b) = self.last_sent.clone() {
                        let _ = self.to_target.send(b);
                    }
                }
                // The agent's per-job timing (`--kernel-append trapdiff.profile=1`): for the
                // developer who asked for it, never kernel text.
                Ok(FromTarget::Frame(Frame::Msg(TargetMsg::Log { text }))) if text.starts_with("agent profile ") => {
                    eprintln!("[target] {text}");
                    self.note(format!("[target] {text}"));
                }
                Ok(FromTarget::Frame(Frame::Msg(TargetMsg::Log { text }))) => {
                    self.note(format!("[target] {text}"));
                    self.kernel_log.push_text(&text);
                }
                Ok(FromTarget::Frame(Frame::Msg(TargetMsg::Hello(info)))) if info.protocol != wire::PROTOCOL_VERSION => {
                    return Err(TargetError::Protocol(Some(info.protocol)));
                }
                Ok(FromTarget::Frame(Frame::Msg(m))) => {
                    self.last_via_mailbox = via_mailbox;
                    return Ok(m);
                }
                Ok(FromTarget::Frame(Frame::Corrupt(why))) if why == wire::STALE_HELLO => {
                    return Err(TargetError::Protocol(None));
                }
                Ok(FromTarget::Frame(Frame::Corrupt(why))) => {
                    self.note(format!("corrupt frame from target: {why}"));
                    resends += 1;
                    if resends > 3 {
                        return Err(TargetError::Corrupt(resends, self.tail()));
                    }
                    if let Ok(b) = wire::encode_frame(&HostMsg::Resend) {
                        let _ = self.to_target.send(b);
                    }
                }
                Ok(FromTarget::Console(line)) => {
                    let panicked = self.scan(&line);
                    self.note(line);
                    if panicked {
                        // Let the rest of the panic message arrive for the excerpt.
                        self.drain_for(Duration::from_millis(300));
                        return Err(TargetError::Panic(self.tail()));
                    }
                }
                Ok(FromTarget::Eof) => {
                    let status = self.wait_exit();
                    return Err(TargetError::Died(status, self.tail()));
                }
                Ok(FromTarget::Doorbell(_)) => {} // became a frame or a console line above
                Err(RecvTimeoutError::Timeout) => return Err(TargetError::Timeout(timeout, self.tail())),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit();
                    return Err(TargetError::Died(status, self.tail()));
                }
            }
        }
    }

    /// Note a console line as a kernel finding if it is one; true if the target is gone.
    fn scan(&mut self, line: &str) -> bool {
        self.kernel_log.push(line);
        DEAD_PATTERNS.iter().any(|p| line.contains(p))
    }

    fn drain_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Ok(FromTarget::Console(l)) = self.from_target.recv_timeout(end.saturating_duration_since(Instant::now())) {
            self.kernel_log.push(&l);
            self.note(l);
        }
    }

    fn note(&mut self, line: String) {
        if self.console.len() == CONSOLE_TAIL {
            self.console.pop_front();
        }
        self.console.push_back(line);
    }

    /// The last console lines, formatted for an error message.
    pub fn tail(&self) -> String {
        if self.console.is_empty() {
            return String::new();
        }
        let mut s = String::from("\n--- last console lines ---");
        for l in &self.console {
            s.push('\n');
            s.push_str(l);
        }
        s
    }

    /// Kernel findings (lines of WARN/BUG/Oops/... splats) seen since the last call.
    pub fn take_findings(&mut self) -> Vec<String> {
        self.kernel_log.take()
    }

    fn wait_exit(&mut self) -> String {
        for _ in 0..20 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.to_string();
            }
            thread::sleep(Duration::from_millis(10));
        }
        "still running, output closed".into()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The QEMU to run: `$QEMU` (like kvm-unit-tests' `QEMU=`), else `qemu-system-aarch64` on PATH.
pub fn qemu_program() -> PathBuf {
    std::env::var_os("QEMU").filter(|q| !q.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("qemu-system-aarch64"))
}

/// `$QEMU --version`'s first line, if that QEMU is there.
pub fn qemu_version() -> Option<String> {
    let out = Command::new(qemu_program()).arg("--version").output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().next()?;
    Some(line.trim_start_matches("QEMU emulator version ").to_string())
}

/// Common QEMU arguments: the virt machine with EL2, no devices we did not ask for, the
/// serial console on stdio.
pub fn qemu_base_args(memory_mib: u32) -> Vec<String> {
    [
        "-M",
        "virt,virtualization=on,gic-version=3",
        "-cpu",
        "max",
        "-m",
        &memory_mib.to_string(),
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
