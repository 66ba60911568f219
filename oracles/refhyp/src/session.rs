//! The refhyp's side of the harness channel (`trapdiff_arch::wire`): frames and mailbox
//! doorbells in, replies out.
//!
//! Every line that carries the `@TD ` marker or a doorbell marker gets exactly one reply, so
//! the harness never waits for nothing: a message's answer, or `BadFrame` for a frame or
//! mailbox message that fails its checksum or does not decode (the harness resends). Console
//! noise without a marker is ignored. A request that came through the mailbox
//! (`trapdiff_arch::mailbox`) is answered through it when the answer is big; `Resend` repeats
//! the last reply, writing a mailbox reply into the mailbox again (so a reply torn in memory
//! is repaired, not re-announced).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use trapdiff_arch::abi;
use trapdiff_arch::mailbox::{self, Dir, Doorbell, Halves};
use trapdiff_arch::wire::{self, Frame, FrameReader, HostMsg, Line, Segment, TargetInfo, TargetMsg};

use crate::hw::Hw;
use crate::runner::{self, Machine};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the main loop does after a byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send.
    Idle,
    /// Send these bytes (one frame line).
    Reply(Vec<u8>),
    /// Send these bytes, then power off.
    Shutdown(Vec<u8>),
}

/// The last reply, for `Resend`.
#[derive(Debug, Default)]
enum Last {
    #[default]
    None,
    /// A frame line, sent again verbatim.
    Frame(Vec<u8>),
    /// A postcard payload, written into the mailbox again.
    Mailbox(Vec<u8>),
}

#[derive(Debug)]
pub struct Session<'a> {
    reader: FrameReader,
    runtime: Vec<Segment>,
    last: Last,
    /// The shared-memory mailbox (`mailbox::SIZE` bytes), when there is one.
    mailbox: Option<&'a mut [u8]>,
    replies: Halves,
    pub jobs: u64,
}

/// The Hello the refhyp sends after boot.
pub fn hello(midr: u64, fwb: bool) -> TargetInfo {
    let mut caps: Vec<String> = ["el1_32bit", "nisv_to_user", "inject_ext_dabt", mailbox::CAP].iter().map(|s| String::from(*s)).collect();
    if fwb {
        caps.push(String::from("s2fwb"));
    }
    TargetInfo { protocol: wire::PROTOCOL_VERSION, backend: String::from("refhyp"), version: String::from(VERSION), midr, caps }
}

/// Encode a reply; a message that cannot be encoded becomes a `Log` saying so.
pub fn encode(msg: &TargetMsg) -> Vec<u8> {
    match wire::encode_frame(msg) {
        Ok(f) => f,
        Err(e) => wire::encode_frame(&TargetMsg::Log { text: format!("refhyp could not encode a reply: {e}") }).unwrap_or_default(),
    }
}

impl Default for Session<'_> {
    fn default() -> Self {
        Session { reader: FrameReader::new(), runtime: Vec::new(), last: Last::None, mailbox: None, replies: Halves::new(Dir::ToHost), jobs: 0 }
    }
}

/// A `BadFrame` reply (never remembered as the last reply: a Resend after it must repeat the
/// real answer).
fn bad(reason: &str) -> Step {
    Step::Reply(encode(&TargetMsg::BadFrame { reason: String::from(reason) }))
}

impl<'a> Session<'a> {
    /// A session with frames only.
    pub fn new() -> Session<'a> {
        Session::default()
    }

    /// A session that also reads doorbells into `mailbox` (`mailbox::SIZE` bytes) and
    /// answers them there.
    pub fn with_mailbox(mailbox: &'a mut [u8]) -> Session<'a> {
        Session { mailbox: (mailbox.len() >= mailbox::SIZE).then_some(mailbox), ..Session::default() }
    }

    /// The mailbox, for the other side's view of it (host tests play the harness).
    pub fn mailbox(&mut self) -> Option<&mut [u8]> {
        self.mailbox.as_deref_mut()
    }

    /// Remember a reply for `Resend` and hand it out: through the mailbox when the request
    /// came that way and the reply is big, otherwise as a frame.
    fn reply(&mut self, msg: &TargetMsg, via_mailbox: bool) -> Vec<u8> {
        let payload = match wire::encode_payload(msg) {
            Ok(p) => p,
            Err(_) => return encode(msg), // the Log that says why
        };
        if via_mailbox && self.mailbox.is_some() && mailbox::takes(payload.len()) {
            self.last = Last::Mailbox(payload);
            return self.post_last();
        }
        self.last = Last::Frame(wire::frame_payload(&payload));
        match &self.last {
            Last::Frame(f) => f.clone(),
            _ => Vec::new(),
        }
    }

    /// Write the last (mailbox) reply into the next reply half; its doorbell line.
    fn post_last(&mut self) -> Vec<u8> {
        let (Last::Mailbox(p), Some(mb)) = (&self.last, self.mailbox.as_deref_mut()) else { return Vec::new() };
        let Some(off) = self.replies.place(p.len()) else { return Vec::new() };
        let env = mailbox::envelope(p);
        mb[off..off + env.len()].copy_from_slice(&env);
        // The message is in memory before the doorbell leaves (a store to the UART, Device
        // memory): ordered by a DMB (Arm ARM B2.3 "Definition of the Arm memory model").
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        Doorbell { dir: Dir::ToHost, offset: off }.line()
    }

    /// The request a doorbell points at.
    fn fetch(&self, d: &Doorbell) -> Result<HostMsg, &'static str> {
        let mb = self.mailbox.as_deref().ok_or("mailbox doorbell but the refhyp has no mailbox")?;
        wire::decode_payload(&d.read(mb)?)
    }

    /// Feed one byte from the channel.
    pub fn push(&mut self, byte: u8, hw: &mut impl Hw, m: &mut Machine<'_>) -> Step {
        let Some(line) = self.reader.push::<HostMsg>(byte) else { return Step::Idle };
        match line {
            Line::Noise(_) => Step::Idle,
            Line::Frame(Frame::Corrupt(reason)) => bad(reason),
            Line::Frame(Frame::Msg(msg)) => self.handle(msg, false, hw, m),
            Line::Doorbell(d) if d.dir == Dir::ToTarget => match self.fetch(&d) {
                Ok(msg) => self.handle(msg, true, hw, m),
                Err(reason) => bad(reason),
            },
            Line::Doorbell(_) => bad("a reply doorbell sent to the target"),
        }
    }

    fn handle(&mut self, msg: HostMsg, via_mailbox: bool, hw: &mut impl Hw, m: &mut Machine<'_>) -> Step {
        match msg {
            HostMsg::SetRuntime { segments } => {
                let end = abi::RUNTIME_SLOT_BASE + abi::RUNTIME_SLOT_SIZE;
                if let Some(s) = segments.iter().find(|s| s.ipa < abi::RUNTIME_SLOT_BASE || s.ipa.saturating_add(s.bytes.len() as u64) > end) {
                    let text = format!("runtime segment {:#x}+{:#x} is outside the runtime slot; runtime not changed", s.ipa, s.bytes.len());
                    return Step::Reply(self.reply(&TargetMsg::Log { text }, via_mailbox));
                }
                let bytes: usize = segments.iter().map(|s| s.bytes.len()).sum();
                self.runtime = segments;
                Step::Reply(self.reply(&TargetMsg::Log { text: format!("runtime set: {} segments, {bytes} bytes", self.runtime.len()) }, via_mailbox))
            }
            HostMsg::Run(job) => {
                let report = runner::run_job(hw, m, &self.runtime, &job);
                self.jobs += 1;
                Step::Reply(self.reply(&TargetMsg::Result(report), via_mailbox))
            }
            HostMsg::Ping { seq } => Step::Reply(self.reply(&TargetMsg::Pong { seq }, via_mailbox)),
            HostMsg::Resend => match &self.last {
                Last::None => bad("nothing to resend yet"),
                Last::Frame(f) => Step::Reply(f.clone()),
                Last::Mailbox(_) => Step::Reply(self.post_last()),
            },
            HostMsg::Shutdown => Step::Shutdown(encode(&TargetMsg::Log { text: String::from("refhyp shutting down") })),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    extern crate std;
    use super::*;
    use crate::stage2::Table;
    use crate::testing::ScriptedCpu;
    use std::vec;
    use trapdiff_arch::wire::{Job, ReportEnd};

    fn feed(s: &mut Session<'_>, cpu: &mut ScriptedCpu, bytes: &[u8]) -> Vec<Step> {
        let mut pool = vec![0u8; 1 << 20];
        let mut tables = vec![Table::ZERO; 16];
        let mut m = Machine { pool: &mut pool, pool_pa: 0x4400_0000, tables: &mut tables, tables_pa: 0x4300_0000, fwb: false };
        bytes.iter().map(|&b| s.push(b, cpu, &mut m)).filter(|s| *s != Step::Idle).collect()
    }

    fn decode(step: &Step) -> TargetMsg {
        let Step::Reply(bytes) = step else { panic!("not a reply: {step:?}") };
        let mut r = FrameReader::new();
        match bytes.iter().find_map(|&b| r.push::<TargetMsg>(b)) {
            Some(Line::Frame(Frame::Msg(m))) => m,
            other => panic!("bad reply {other:?}"),
        }
    }

    #[test]
    fn garbage_gets_bad_frame_and_the_channel_resyncs() {
        let mut s = Session::new();
        let mut cpu = ScriptedCpu::default();
        let mut bytes = b"random console noise\n@TD 00zz 1234\n".to_vec();
        let mut ping = wire::encode_frame(&HostMsg::Ping { seq: 9 }).unwrap();
        let mut broken = ping.clone();
        broken[5] ^= 1;
        bytes.append(&mut broken);
        bytes.extend_from_slice(b"\x00\xff garbage without newline ");
        bytes.append(&mut ping);
        bytes.extend_from_slice(&wire::encode_frame(&HostMsg::Resend).unwrap());
        let steps = feed(&mut s, &mut cpu, &bytes);
        assert_eq!(steps.len(), 4);
        assert!(matches!(decode(&steps[0]), TargetMsg::BadFrame { .. }));
        assert!(matches!(decode(&steps[1]), TargetMsg::BadFrame { .. }));
        assert_eq!(decode(&steps[2]), TargetMsg::Pong { seq: 9 });
        assert_eq!(decode(&steps[3]), TargetMsg::Pong { seq: 9 });
    }

    #[test]
    fn runs_jobs_with_the_runtime_it_was_given() {
        let mut s = Session::new();
        let mut cpu = ScriptedCpu { irq_is_watchdog: true, ..Default::default() };
        let rt = HostMsg::SetRuntime { segments: vec![Segment { ipa: abi::RUNTIME_BASE, bytes: vec![1, 2, 3, 4] }] };
        let job = HostMsg::Run(Job {
            seq: 5,
            aarch32: false,
            entry: abi::RUNTIME_BASE,
            slots: vec![],
            segments: vec![],
            mmio_reads: vec![],
            mmio_read_default: 0,
            nisv_to_user: false,
            on_nisv: Default::default(),
            on_mmio: Default::default(),
            timeout_ms: 10,
            max_exits: 4,
            digests: vec![],
            readback: vec![(abi::RUNTIME_BASE, 4)],
            quirks: Default::default(),
        });
        let mut bytes = wire::encode_frame(&rt).unwrap();
        bytes.extend(wire::encode_frame(&job).unwrap());
        let steps = feed(&mut s, &mut cpu, &bytes);
        assert!(matches!(decode(&steps[0]), TargetMsg::Log { .. }));
        let TargetMsg::Result(r) = decode(&steps[1]) else { panic!("no result") };
        assert_eq!((r.seq, r.end, r.readback), (5, ReportEnd::Timeout, vec![vec![1, 2, 3, 4]]));
        let bad = HostMsg::SetRuntime { segments: vec![Segment { ipa: 0, bytes: vec![1] }] };
        let steps = feed(&mut s, &mut cpu, &wire::encode_frame(&bad).unwrap());
        let TargetMsg::Log { text } = decode(&steps[0]) else { panic!() };
        assert!(text.contains("outside"));
    }

    fn job(seq: u32) -> HostMsg {
        HostMsg::Run(Job {
            seq,
            aarch32: false,
            entry: abi::RUNTIME_BASE,
            slots: vec![],
            segments: vec![Segment { ipa: abi::RUNTIME_BASE + 0x100, bytes: vec![0xaa; 400] }],
            mmio_reads: vec![],
            mmio_read_default: 0,
            nisv_to_user: false,
            on_nisv: Default::default(),
            on_mmio: Default::default(),
            timeout_ms: 10,
            max_exits: 4,
            digests: vec![],
            readback: vec![(abi::RUNTIME_BASE + 0x100, 400)],
            quirks: Default::default(),
        })
    }

    /// Put `msg` in the mailbox's request area; its doorbell line.
    fn post(mb: &mut [u8], off: usize, msg: &HostMsg) -> Vec<u8> {
        let env = mailbox::envelope(&wire::encode_payload(msg).unwrap());
        mb[off..off + env.len()].copy_from_slice(&env);
        Doorbell { dir: Dir::ToTarget, offset: off }.line()
    }

    /// The reply a doorbell step announces, read from the mailbox, or why it does not check.
    fn mailbox_reply(mb: &[u8], step: &Step) -> Result<TargetMsg, &'static str> {
        let Step::Reply(bytes) = step else { panic!("not a reply: {step:?}") };
        let mut r = FrameReader::new();
        let Some(Line::Doorbell(d)) = bytes.iter().find_map(|&b| r.push::<TargetMsg>(b)) else { panic!("not a doorbell: {bytes:?}") };
        assert_eq!(d.dir, Dir::ToHost);
        wire::decode_payload(&d.read(mb)?)
    }

    #[test]
    fn a_mailbox_request_is_answered_through_the_mailbox_and_resend_repairs_it() {
        let mut mb = vec![0u8; mailbox::SIZE];
        let mut cpu = ScriptedCpu { irq_is_watchdog: true, ..Default::default() };
        let rt = wire::encode_frame(&HostMsg::SetRuntime { segments: vec![Segment { ipa: abi::RUNTIME_BASE, bytes: vec![1; 0x200] }] }).unwrap();
        let mut s = Session::with_mailbox(&mut mb);
        assert!(matches!(decode(&feed(&mut s, &mut cpu, &rt)[0]), TargetMsg::Log { .. }));
        let bell = post(s.mailbox().unwrap(), 0, &job(6));
        let steps = feed(&mut s, &mut cpu, &bell);
        let TargetMsg::Result(r) = mailbox_reply(s.mailbox().unwrap(), &steps[0]).unwrap() else { panic!() };
        assert_eq!((r.seq, r.readback[0].len()), (6, 400));
        // The reply is torn in memory: the harness sees the checksum fail and asks for a
        // resend, which writes it again (into the other half) rather than re-announcing it.
        let Step::Reply(line) = &steps[0] else { panic!() };
        let off = usize::from_str_radix(core::str::from_utf8(&line[5..]).unwrap().trim(), 16).unwrap();
        s.mailbox().unwrap()[off + mailbox::HEADER + 10] ^= 0xff;
        assert_eq!(mailbox_reply(s.mailbox().unwrap(), &steps[0]), Err("mailbox checksum mismatch"));
        let again = feed(&mut s, &mut cpu, &wire::encode_frame(&HostMsg::Resend).unwrap());
        assert_eq!(mailbox_reply(s.mailbox().unwrap(), &again[0]), Ok(TargetMsg::Result(r)));
        // A small answer (a Log) to a mailbox request stays a frame.
        let rt = HostMsg::SetRuntime { segments: vec![Segment { ipa: abi::RUNTIME_BASE, bytes: vec![2; 0x200] }] };
        let bell = post(s.mailbox().unwrap(), mailbox::HALF, &rt);
        assert!(matches!(decode(&feed(&mut s, &mut cpu, &bell)[0]), TargetMsg::Log { .. }));
    }

    #[test]
    fn bad_doorbells_get_bad_frame() {
        let mut mb = vec![0u8; mailbox::SIZE];
        let mut cpu = ScriptedCpu::default();
        let mut s = Session::with_mailbox(&mut mb);
        // An empty envelope, a header outside the request area, a reply doorbell, a checked
        // payload that is no message: each gets a BadFrame, and a Ping after them a Pong.
        let env = mailbox::envelope(&[0xff; 300]);
        s.mailbox().unwrap()[0x1000..0x1000 + env.len()].copy_from_slice(&env);
        let mut bytes = b"@TDM 0\n@TDM ffffc\n@TDR 100000\n@TDM 1000\n".to_vec();
        bytes.extend(wire::encode_frame(&HostMsg::Ping { seq: 2 }).unwrap());
        let steps = feed(&mut s, &mut cpu, &bytes);
        assert_eq!(steps.len(), 5);
        for st in &steps[..4] {
            assert!(matches!(decode(st), TargetMsg::BadFrame { .. }), "{st:?}");
        }
        assert_eq!(decode(&steps[4]), TargetMsg::Pong { seq: 2 });
        // Without a mailbox a doorbell is rejected, not followed.
        let mut s = Session::new();
        let steps = feed(&mut s, &mut cpu, &Doorbell { dir: Dir::ToTarget, offset: 0 }.line());
        let TargetMsg::BadFrame { reason } = decode(&steps[0]) else { panic!() };
        assert!(reason.contains("no mailbox"), "{reason}");
    }
}
