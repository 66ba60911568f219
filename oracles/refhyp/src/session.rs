//! The refhyp's side of the harness channel (`trapdiff_arch::wire`): frames in, replies out.
//!
//! Every line that carries the `@TD ` marker gets exactly one reply, so the harness never
//! waits for nothing: a message's answer, or `BadFrame` for a frame that fails its checksum
//! or does not decode (the harness resends). Console noise without the marker is ignored.
//! `Resend` repeats the last reply verbatim.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use trapdiff_arch::abi;
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

#[derive(Debug, Default)]
pub struct Session {
    reader: FrameReader,
    runtime: Vec<Segment>,
    last: Vec<u8>,
    pub jobs: u64,
}

/// The Hello the refhyp sends after boot.
pub fn hello(midr: u64, fwb: bool) -> TargetInfo {
    let mut caps: Vec<String> = ["el1_32bit", "nisv_to_user", "inject_ext_dabt"].iter().map(|s| String::from(*s)).collect();
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

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// Remember a reply for `Resend` and hand it out.
    fn reply(&mut self, msg: &TargetMsg) -> Vec<u8> {
        self.last = encode(msg);
        self.last.clone()
    }

    /// Feed one byte from the channel.
    pub fn push(&mut self, byte: u8, hw: &mut impl Hw, m: &mut Machine<'_>) -> Step {
        let Some(line) = self.reader.push::<HostMsg>(byte) else { return Step::Idle };
        match line {
            Line::Noise(_) => Step::Idle,
            // Not remembered as the last reply: a Resend after it must repeat the real answer.
            Line::Frame(Frame::Corrupt(reason)) => Step::Reply(encode(&TargetMsg::BadFrame { reason: String::from(reason) })),
            Line::Frame(Frame::Msg(msg)) => self.handle(msg, hw, m),
        }
    }

    fn handle(&mut self, msg: HostMsg, hw: &mut impl Hw, m: &mut Machine<'_>) -> Step {
        match msg {
            HostMsg::SetRuntime { segments } => {
                let end = abi::RUNTIME_SLOT_BASE + abi::RUNTIME_SLOT_SIZE;
                if let Some(s) = segments.iter().find(|s| s.ipa < abi::RUNTIME_SLOT_BASE || s.ipa.saturating_add(s.bytes.len() as u64) > end) {
                    let text = format!("runtime segment {:#x}+{:#x} is outside the runtime slot; runtime not changed", s.ipa, s.bytes.len());
                    return Step::Reply(self.reply(&TargetMsg::Log { text }));
                }
                let bytes: usize = segments.iter().map(|s| s.bytes.len()).sum();
                self.runtime = segments;
                Step::Reply(self.reply(&TargetMsg::Log { text: format!("runtime set: {} segments, {bytes} bytes", self.runtime.len()) }))
            }
            HostMsg::Run(job) => {
                let report = runner::run_job(hw, m, &self.runtime, &job);
                self.jobs += 1;
                Step::Reply(self.reply(&TargetMsg::Result(report)))
            }
            HostMsg::Ping { seq } => Step::Reply(self.reply(&TargetMsg::Pong { seq })),
            HostMsg::Resend if self.last.is_empty() => Step::Reply(encode(&TargetMsg::BadFrame { reason: String::from("nothing to resend yet") })),
            HostMsg::Resend => Step::Reply(self.last.clone()),
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

    fn feed(s: &mut Session, cpu: &mut ScriptedCpu, bytes: &[u8]) -> Vec<Step> {
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
}
