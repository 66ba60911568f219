//! trapdiff KVM agent: runs trapdiff jobs on `/dev/kvm` and reports what KVM did.
//!
//! Two ways to start it (docs/DESIGN.md "Execution"):
//! - as `/init` of the initramfs the harness generates (`harness/src/backend/initramfs.rs`):
//!   it mounts devtmpfs, proc and sysfs itself and talks over the serial console
//!   (`trapdiff.console=`, default ttyAMA0), interleaved with kernel messages;
//! - natively on an arm64 host with `/dev/kvm`, with `--stdio`: frames on stdin/stdout.
//!
//! Protocol (`trapdiff_arch::wire`): the agent sends `Hello`, then answers each `HostMsg`:
//! `SetRuntime` (no reply; kept for every later job), `Run(job)` -> `Result(report)` (preceded
//! by `Log` frames with any kernel warnings the job caused), `Ping` -> `Pong`, `Resend` ->
//! the last reply again, `Shutdown` -> power off. A frame or mailbox message that fails its
//! checksum or does not decode is answered with `BadFrame` and otherwise ignored. A request
//! that came through the ivshmem mailbox (`trapdiff_arch::mailbox`) gets its big replies
//! (`Result`) through the mailbox too, announced by a `@TDR` doorbell; `Resend` writes such a
//! reply into the mailbox again.
//!
//! Kernel command-line options the agent honours (read from /proc/cmdline):
//! - `trapdiff.console=NAME`   serial device under /dev to use (default ttyAMA0);
//! - `trapdiff.panic_after=N`  TEST ONLY, off by default: on the (N+1)-th `Run` after boot,
//!   crash the kernel with `echo c > /proc/sysrq-trigger` instead of running the job, so that
//!   the harness's panic recovery can be tested;
//! - `trapdiff.warn_at=N`      TEST ONLY, off by default: on the (N+1)-th `Run` after boot,
//!   write a WARN-shaped splat to /dev/kmsg before the job, so that the harness's kernel-finding
//!   plumbing can be tested end to end;
//! - `trapdiff.profile=1`        after each `Result`, a `Log` frame with where the job's time
//!   went (profile.rs); `--profile` natively;
//! - `trapdiff.reuse=0`          a fresh VM for every job instead of reusing one (job.rs), for
//!   measuring what reuse saves.

mod boot;
mod console;
mod ivshmem;
mod job;
mod kmsg;
mod memory;
mod profile;
mod target_info;
mod vcpu;
mod watchdog;

use std::process::ExitCode;

use trapdiff_arch::mailbox::{self, Dir, Doorbell, Halves};
use trapdiff_arch::wire::{self, Frame, FrameReader, HostMsg, Line, Segment, TargetMsg};

use crate::console::Channel;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdio = args.iter().any(|a| a == "--stdio");
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: trapdiff-kvm-agent [--stdio]\n  as /init (pid 1): serial console channel\n  --stdio: frames on stdin/stdout (native arm64 host with /dev/kvm)");
        return ExitCode::SUCCESS;
    }
    let is_init = std::process::id() == 1;
    if is_init {
        boot::init_system();
    }
    let mut cmdline = boot::Cmdline::read();
    cmdline.profile |= args.iter().any(|a| a == "--profile");
    let channel = if stdio || !is_init {
        Channel::stdio()
    } else {
        match Channel::serial(&cmdline.console) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("trapdiff-agent: cannot open the console /dev/{}: {e}", cmdline.console);
                boot::halt(is_init);
                return ExitCode::FAILURE;
            }
        }
    };
    let mut agent = Agent::new(channel, cmdline);
    agent.serve();
    boot::halt(is_init);
    ExitCode::SUCCESS
}

/// The last reply, for `Resend`.
enum Last {
    /// A frame line, sent again verbatim.
    Frame(Vec<u8>),
    /// A postcard payload, written into the mailbox again.
    Mailbox(Vec<u8>),
}

struct Agent {
    channel: Channel,
    cmdline: boot::Cmdline,
    kmsg: kmsg::Kmsg,
    kvm: Option<kvm_ioctls::Kvm>,
    kvm_error: Option<String>,
    caps: target_info::Caps,
    runtime: Option<Vec<Segment>>,
    last_reply: Option<Last>,
    /// Which half of the mailbox's reply area the next reply goes to.
    replies: Halves,
    runs: u64,
    /// Device memory for Device-nGnRE slots, when QEMU provides the ivshmem device.
    ivshmem: Option<ivshmem::Ivshmem>,
    /// Makes fresh VMs and tears down spent ones off the job path.
    factory: Option<job::VmFactory>,
    /// VMs kept from clean jobs, reused by later jobs with the same key.
    pool: job::Pool,
}

impl Agent {
    fn new(channel: Channel, cmdline: boot::Cmdline) -> Agent {
        let (kvm, kvm_error) = match kvm_ioctls::Kvm::new() {
            Ok(k) => (Some(k), None),
            Err(e) => (None, Some(format!("cannot open /dev/kvm: {e} (is CONFIG_KVM set, and is the kernel running at EL2?)"))),
        };
        let mut caps = kvm.as_ref().map(target_info::Caps::probe).unwrap_or_default();
        let factory = match &kvm {
            Some(_) => job::VmFactory::start().map_err(|e| eprintln!("trapdiff-agent: {e}; VMs are made inline")).ok(),
            None => None,
        };
        let ivshmem = match ivshmem::Ivshmem::find() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("trapdiff-agent: ivshmem device present but unusable: {e}");
                None
            }
        };
        caps.device_ngnre = ivshmem.is_some();
        caps.mailbox = ivshmem.as_ref().is_some_and(|d| d.has_mailbox());
        watchdog::install();
        Agent {
            channel,
            cmdline,
            kmsg: kmsg::Kmsg::open(),
            kvm,
            kvm_error,
            caps,
            runtime: None,
            last_reply: None,
            replies: Halves::new(Dir::ToHost),
            runs: 0,
            ivshmem,
            factory,
            pool: job::Pool::default(),
        }
    }

    fn serve(&mut self) {
        let hello = TargetMsg::Hello(target_info::hello(&self.caps, self.kvm_error.as_deref()));
        self.reply(&hello, false);
        // Boot-time kernel errors, once, for the harness log.
        if let Some(text) = self.kmsg.drain(kmsg::BOOT_LEVEL) {
            self.send(&TargetMsg::Log { text: format!("kernel messages during boot:\n{text}") });
        }
        let mut reader = FrameReader::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.channel.read(&mut buf) {
                Ok(0) => return, // host closed the channel (native mode)
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("trapdiff-agent: channel read failed: {e}");
                    return;
                }
            };
            for &b in &buf[..n] {
                match reader.push::<HostMsg>(b) {
                    None => {}
                    Some(Line::Noise(_)) => {}
                    Some(Line::Doorbell(d)) => match self.mailbox(&d) {
                        Ok(msg) => {
                            if !self.handle(msg, true) {
                                return;
                            }
                        }
                        Err(reason) => self.send(&TargetMsg::BadFrame { reason }),
                    },
                    Some(Line::Frame(Frame::Corrupt(why))) => {
                        self.send(&TargetMsg::BadFrame { reason: why.to_string() });
                    }
                    Some(Line::Frame(Frame::Msg(msg))) => {
                        if !self.handle(msg, false) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The request a doorbell line points at in the ivshmem mailbox.
    fn mailbox(&self, d: &Doorbell) -> Result<HostMsg, String> {
        if d.dir != Dir::ToTarget {
            return Err("a reply doorbell sent to the agent".into());
        }
        let dev = self.ivshmem.as_ref().filter(|d| d.has_mailbox()).ok_or("mailbox doorbell but no ivshmem mailbox")?;
        let bytes = d.read_with(|r| dev.read_mailbox(r))?;
        wire::decode_payload(&bytes).map_err(|e| format!("mailbox message: {e}"))
    }

    /// Handle one message (`via_mailbox`: it came through the mailbox); false ends the agent.
    fn handle(&mut self, msg: HostMsg, via_mailbox: bool) -> bool {
        match msg {
            HostMsg::SetRuntime { segments } => self.runtime = Some(segments),
            HostMsg::Ping { seq } => self.reply(&TargetMsg::Pong { seq }, via_mailbox),
            HostMsg::Resend => match self.last_reply.take() {
                Some(Last::Frame(bytes)) => {
                    self.channel.write_all(&bytes);
                    self.last_reply = Some(Last::Frame(bytes));
                }
                Some(Last::Mailbox(payload)) => {
                    self.post(&payload);
                    self.last_reply = Some(Last::Mailbox(payload));
                }
                None => {}
            },
            HostMsg::Shutdown => return false,
            HostMsg::Run(job) => {
                if self.cmdline.panic_after.is_some_and(|n| self.runs >= n) {
                    boot::crash_kernel();
                }
                if self.cmdline.warn_at == Some(self.runs) {
                    boot::write_test_warning(job.seq);
                }
                self.runs += 1;
                let mut prof = profile::Profile::new(self.cmdline.profile);
                // The VM: a kept one with this job's key (the closest memory layout), else the
                // factory's.
                let mut took_fresh = false;
                let (report, left) = match (&self.kvm, &self.runtime) {
                    (Some(kvm), Some(rt)) => {
                        let source = match self.pool.take(&job, self.ivshmem.as_ref()) {
                            Some(k) => job::Source::Kept(k),
                            None => match self.factory.as_mut() {
                                Some(f) => {
                                    took_fresh = true;
                                    f.take(&mut prof).map_or(job::Source::Inline, job::Source::Fresh)
                                }
                                None => job::Source::Inline,
                            },
                        };
                        job::run(kvm, &self.caps, self.ivshmem.as_ref(), rt, &job, source, &mut prof)
                    }
                    (None, _) => (job::failed(&job, self.kvm_error.clone().unwrap_or_default()), job::Leftover::default()),
                    (_, None) => (job::failed(&job, "no runtime loaded: send SetRuntime before Run".into()), job::Leftover::default()),
                };
                if let Some(text) = self.kmsg.drain(kmsg::JOB_LEVEL) {
                    self.send(&TargetMsg::Log { text: format!("kernel messages during job seq {}:\n{text}", job.seq) });
                }
                let elapsed_us = report.elapsed_us;
                self.reply(&TargetMsg::Result(report), via_mailbox);
                if self.cmdline.profile {
                    self.send(&TargetMsg::Log { text: prof.line(job.seq, elapsed_us) });
                }
                // Keep a clean VM (scrubbed now, while the harness works); tear the others
                // down, and make the next fresh VM if this job took the factory's.
                let mut scrap = Vec::new();
                match left.keep {
                    Some(k) if !self.cmdline.reuse => scrap.push(job::Spent::from(k)),
                    Some(mut k) => match k.scrub() {
                        Ok(()) => scrap.extend(self.pool.put(k).map(job::Spent::from)),
                        Err(e) => {
                            eprintln!("trapdiff-agent: {e}; the VM is not reused");
                            scrap.push(job::Spent::from(k));
                        }
                    },
                    None => {}
                }
                match self.factory.as_mut() {
                    Some(f) => {
                        f.recycle(left.spent, took_fresh);
                        for s in scrap {
                            f.recycle(Some(s), false);
                        }
                    }
                    None => drop((left.spent, scrap)),
                }
            }
        }
        true
    }

    /// Send a message and remember it for `Resend`: through the mailbox when the request came
    /// that way and the reply is big, otherwise as a frame.
    fn reply(&mut self, msg: &TargetMsg, via_mailbox: bool) {
        let payload = match wire::encode_payload(msg) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("trapdiff-agent: cannot encode a reply: {e}");
                return;
            }
        };
        if via_mailbox && self.caps.mailbox && mailbox::takes(payload.len()) && self.post(&payload) {
            self.last_reply = Some(Last::Mailbox(payload));
            return;
        }
        let bytes = wire::frame_payload(&payload);
        self.channel.write_all(&bytes);
        self.last_reply = Some(Last::Frame(bytes));
    }

    /// Write a reply into the next half of the mailbox's reply area and ring the doorbell.
    fn post(&mut self, payload: &[u8]) -> bool {
        let (Some(dev), Some(off)) = (self.ivshmem.as_ref(), self.replies.place(payload.len())) else { return false };
        if !dev.write_mailbox(off, &mailbox::envelope(payload)) {
            return false;
        }
        self.channel.write_all(&Doorbell { dir: Dir::ToHost, offset: off }.line());
        true
    }

    fn send(&mut self, msg: &TargetMsg) {
        if let Some(bytes) = self.encode(msg) {
            self.channel.write_all(&bytes);
        }
    }

    fn encode(&self, msg: &TargetMsg) -> Option<Vec<u8>> {
        match trapdiff_arch::wire::encode_frame(msg) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("trapdiff-agent: cannot encode a reply: {e}");
                None
            }
        }
    }
}
