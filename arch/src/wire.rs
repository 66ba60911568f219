//! The channel between the harness and a live backend (refhyp or KVM agent).
//!
//! Messages are postcard-encoded and carried one per line as
//! `@TD <hex payload> <crc32 of the payload, 8 hex digits>\n`. The line form survives a
//! serial console that also carries kernel or firmware messages: a receiver scans for the
//! `@TD ` marker, ignores everything else, and drops a frame whose checksum fails (reporting
//! it so the sender can resend). Big messages go through a shared-memory mailbox instead,
//! announced by a doorbell line ([`crate::mailbox`]; [`FrameReader`] recognises both). The
//! backend never sees a case file, only a [`Job`]: the harness has already lowered the case
//! onto the guest runtime.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::case::{MmioAction, NisvAction};
use crate::crc32::crc32;
use crate::hex as hexfmt;
use crate::mailbox::{Dir, Doorbell};
use crate::memattr::S2Attr;
use crate::quirk::Quirks;

pub const FRAME_MARKER: &[u8] = b"@TD ";
/// Largest payload a receiver accepts (after hex decoding).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Version of the message set; `Hello` carries it so mismatched builds say so. 2: the KVM
/// agent ends a job at exit `max_exits + 1` without recording it, as the refhyp does. 3: the
/// mailbox (`crate::mailbox`) carries replies too, and the refhyp has one.
pub const PROTOCOL_VERSION: u32 = 3;
/// Why a frame did not decode, when it looks like a `Hello` of another protocol version
/// (`protocol` is the first field of [`TargetInfo`], so every version can read it).
pub const STALE_HELLO: &str = "frame does not decode: a Hello of another protocol version";

/// Harness to backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    /// Load the runtime image; the backend keeps it and restores it before every job.
    SetRuntime {
        segments: Vec<Segment>,
    },
    Run(Job),
    Ping {
        seq: u32,
    },
    /// Resend the last reply (the harness got a corrupt frame).
    Resend,
    Shutdown,
}

/// Backend to harness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetMsg {
    /// Sent once after boot, and after a reset.
    Hello(TargetInfo),
    Result(Report),
    Pong {
        seq: u32,
    },
    /// A frame from the harness failed its checksum or did not decode.
    BadFrame {
        reason: String,
    },
    /// Something the backend wants in the log (kernel warnings, refhyp notes).
    Log {
        text: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub protocol: u32,
    /// "refhyp" or "kvm".
    pub backend: String,
    /// Kernel release (KVM) or refhyp version.
    pub version: String,
    pub midr: u64,
    /// Capabilities that decide skips (e.g. "el1_32bit", "nisv_to_user").
    pub caps: Vec<String>,
}

/// Bytes to place at an IPA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub ipa: u64,
    #[serde(with = "hexfmt::bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotKind {
    Ram,
    RoRam,
    Device(S2Attr),
}

/// A piece of guest memory backed by host memory (a memslot under KVM).
/// Everything outside every slot is MMIO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub ipa: u64,
    pub size: u64,
    pub kind: SlotKind,
}

/// One case, lowered onto the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub seq: u32,
    /// The runtime runs AArch32 (A32) at EL1 for AArch32 cases.
    pub aarch32: bool,
    /// Runtime entry point (EL1, MMU off).
    pub entry: u64,
    /// Slots for the case's regions (the runtime's own slots are implied).
    pub slots: Vec<Slot>,
    /// Non-zero initial contents (slots start zeroed).
    pub segments: Vec<Segment>,
    pub mmio_reads: Vec<u64>,
    pub mmio_read_default: u64,
    pub nisv_to_user: bool,
    pub on_nisv: NisvAction,
    pub on_mmio: MmioAction,
    pub timeout_ms: u32,
    pub max_exits: u32,
    /// Ranges to return the FNV-1a digest of, in order.
    pub digests: Vec<(u64, u64)>,
    /// Ranges to return the bytes of, in order (the report page among them).
    pub readback: Vec<(u64, u32)>,
    /// Historical bugs the refhyp re-introduces for this job (the KVM agent ignores them).
    pub quirks: Quirks,
}

/// What happened to a [`Job`], raw: the harness turns it into an [`crate::Outcome`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub seq: u32,
    /// VMM-visible exits in order, harness-page stores included.
    pub exits: Vec<Exit>,
    pub end: ReportEnd,
    pub digests: Vec<u64>,
    pub readback: Vec<Vec<u8>>,
    pub elapsed_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    Mmio { ipa: u64, len: u8, write: bool, data: u64 },
    Nisv { esr_iss: u64, ipa: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportEnd {
    /// The runtime stored to DONE.
    #[default]
    Done,
    Timeout,
    ExitLimit,
    RunError {
        errno: i32,
    },
    Stopped {
        reason: String,
    },
    Skipped {
        reason: String,
    },
    /// The backend could not run the job (bad job, resource failure).
    Failed {
        message: String,
    },
}

/// Encode a message as one frame line (with the trailing newline).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, postcard::Error> {
    Ok(frame_payload(&encode_payload(msg)?))
}

/// One frame line around already-encoded payload bytes (tests use it for payloads no message
/// encodes to, such as an older build's `Hello`).
pub fn frame_payload(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() * 2 + 16);
    out.extend_from_slice(FRAME_MARKER);
    out.extend_from_slice(hexfmt::encode(payload).as_bytes());
    out.push(b' ');
    out.extend_from_slice(alloc::format!("{:08x}", crc32(payload)).as_bytes());
    out.push(b'\n');
    out
}

/// What a receiver made of one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<T> {
    Msg(T),
    /// A marker was found but the frame is broken: say so and ask for a resend.
    Corrupt(&'static str),
}

/// Incremental frame finder over a byte stream: feed bytes, get frames; everything that is
/// not a frame (console noise) is handed back as text lines for logging.
#[derive(Debug, Default)]
pub struct FrameReader {
    line: Vec<u8>,
    overflow: bool,
}

/// What [`FrameReader::push`] produced for one completed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<T> {
    Frame(Frame<T>),
    /// A mailbox doorbell line (`crate::mailbox`), well formed; the receiver checks that it
    /// goes its way and reads the message.
    Doorbell(Doorbell),
    /// A console line without a frame.
    Noise(Vec<u8>),
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }
    /// Feed one byte; returns a completed line, if this byte ended one.
    pub fn push<T: for<'de> Deserialize<'de>>(&mut self, b: u8) -> Option<Line<T>> {
        if b != b'\n' {
            if self.line.len() < MAX_PAYLOAD * 2 + 64 {
                self.line.push(b);
            } else {
                self.overflow = true;
            }
            return None;
        }
        let line = core::mem::take(&mut self.line);
        let overflow = core::mem::replace(&mut self.overflow, false);
        let Some(start) = find(&line, FRAME_MARKER) else {
            for dir in [Dir::ToTarget, Dir::ToHost] {
                if let Some(at) = find(&line, dir.marker()) {
                    return Some(match Doorbell::parse(dir, &line[at + dir.marker().len()..]) {
                        _ if overflow => Line::Frame(Frame::Corrupt("doorbell line too long")),
                        Ok(d) => Line::Doorbell(d),
                        Err(why) => Line::Frame(Frame::Corrupt(why)),
                    });
                }
            }
            return Some(Line::Noise(line));
        };
        if overflow {
            return Some(Line::Frame(Frame::Corrupt("frame longer than the largest payload")));
        }
        Some(Line::Frame(decode_frame_body(&line[start + FRAME_MARKER.len()..])))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn decode_frame_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Frame<T> {
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let Some(sp) = body.iter().rposition(|&c| c == b' ') else {
        return Frame::Corrupt("frame has no checksum");
    };
    let (hex, crc) = (&body[..sp], &body[sp + 1..]);
    let Ok(hex) = core::str::from_utf8(hex) else { return Frame::Corrupt("frame payload is not text") };
    let Some(payload) = hexfmt::decode(hex) else { return Frame::Corrupt("frame payload is not hex") };
    let Some(want) = core::str::from_utf8(crc).ok().and_then(|c| u32::from_str_radix(c, 16).ok()) else {
        return Frame::Corrupt("frame checksum is not hex");
    };
    if crc32(&payload) != want {
        return Frame::Corrupt("frame checksum mismatch");
    }
    match decode_payload(&payload) {
        Ok(m) => Frame::Msg(m),
        Err(why) => Frame::Corrupt(why),
    }
}

/// The postcard payload of a message: what a frame carries in hex, or the mailbox as it is.
pub fn encode_payload<T: Serialize>(msg: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(msg)
}

/// A message from its postcard payload (a frame's, checked, or a mailbox message's).
pub fn decode_payload<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, &'static str> {
    match postcard::from_bytes(payload) {
        Ok(m) => Ok(m),
        Err(_) if hello_protocol(payload).is_some_and(|v| v != PROTOCOL_VERSION) => Err(STALE_HELLO),
        Err(_) => Err("frame does not decode as a message"),
    }
}

/// The protocol version of a postcard-encoded `TargetMsg::Hello` (variant 0, then the
/// varint `protocol`), read without decoding the rest.
pub fn hello_protocol(payload: &[u8]) -> Option<u32> {
    let (&variant, rest) = payload.split_first()?;
    if variant != 0 {
        return None;
    }
    let mut v: u32 = 0;
    for (i, &b) in rest.iter().take(5).enumerate() {
        v |= u32::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use alloc::vec;

    fn feed(r: &mut FrameReader, bytes: &[u8]) -> Vec<Line<HostMsg>> {
        bytes.iter().filter_map(|&b| r.push(b)).collect()
    }

    #[test]
    fn frames_survive_console_noise() {
        let msg = HostMsg::Ping { seq: 7 };
        let frame = encode_frame(&msg).unwrap();
        let mut stream = b"[    1.234] random kernel line\n".to_vec();
        stream.extend_from_slice(b"partial noise before ");
        stream.extend_from_slice(&frame);
        let mut r = FrameReader::new();
        let lines = feed(&mut r, &stream);
        assert_eq!(lines.len(), 2);
        assert!(matches!(&lines[0], Line::Noise(_)));
        assert_eq!(lines[1], Line::Frame(Frame::Msg(msg)));
    }

    #[test]
    fn corrupt_frames_are_reported_not_decoded() {
        let mut frame = encode_frame(&HostMsg::Ping { seq: 1 }).unwrap();
        frame[6] ^= 0x01; // flip a payload digit
        let mut r = FrameReader::new();
        let lines = feed(&mut r, &frame);
        assert!(matches!(lines[0], Line::Frame(Frame::Corrupt(_))));
        let lines = feed(&mut r, b"@TD zz 00000000\n@TD \n");
        assert!(lines.iter().all(|l| matches!(l, Line::Frame(Frame::Corrupt(_)))));
    }

    #[test]
    fn a_hello_of_another_protocol_is_named() {
        let hello = TargetMsg::Hello(TargetInfo { protocol: 300, backend: "kvm".into(), ..TargetInfo::default() });
        let payload = postcard::to_allocvec(&hello).unwrap();
        assert_eq!(hello_protocol(&payload), Some(300));
        // An older build whose Hello has fewer fields: the version is still readable.
        let mut old = payload.clone();
        old.truncate(3);
        let frame = frame_payload(&old);
        let mut r = FrameReader::new();
        let lines: Vec<Line<TargetMsg>> = frame.iter().filter_map(|&b| r.push(b)).collect();
        assert_eq!(lines, vec![Line::Frame(Frame::Corrupt(STALE_HELLO))]);
        assert_eq!(hello_protocol(&postcard::to_allocvec(&TargetMsg::Pong { seq: 1 }).unwrap()), None);
    }

    #[test]
    fn doorbell_lines_are_recognised_amid_noise() {
        let d = Doorbell { dir: Dir::ToTarget, offset: 0x80000 };
        let mut stream = b"[ 3.1] noise\n".to_vec();
        stream.extend_from_slice(b"junk before ");
        stream.extend_from_slice(&d.line());
        stream.extend_from_slice(b"@TDR 0\n@TDM x\n");
        let mut r = FrameReader::new();
        let lines = feed(&mut r, &stream);
        assert!(matches!(lines[0], Line::Noise(_)));
        assert_eq!(lines[1], Line::Doorbell(d));
        // A reply doorbell pointing into the requests' area, and a garbled doorbell: corrupt.
        assert!(matches!(lines[2], Line::Frame(Frame::Corrupt(_))));
        assert!(matches!(lines[3], Line::Frame(Frame::Corrupt(_))));
    }

    #[test]
    fn job_round_trips() {
        let job = HostMsg::Run(Job {
            seq: 3,
            aarch32: false,
            entry: 0x1000_0000,
            slots: vec![Slot { ipa: 0x4000_0000, size: 0x1000, kind: SlotKind::Device(S2Attr::NormalNc) }],
            segments: vec![Segment { ipa: 0x4000_0000, bytes: vec![1, 2, 3] }],
            mmio_reads: vec![5],
            mmio_read_default: 9,
            nisv_to_user: true,
            on_nisv: NisvAction::Stop,
            on_mmio: MmioAction::Emulate,
            timeout_ms: 100,
            max_exits: 4,
            digests: vec![(0x4000_0000, 0x1000)],
            readback: vec![(0x1002_0000, 64)],
            quirks: crate::quirk::Quirks(0b101),
        });
        let f = encode_frame(&job).unwrap();
        let mut r = FrameReader::new();
        let lines = feed(&mut r, &f);
        assert_eq!(lines, vec![Line::Frame(Frame::Msg(job))]);
    }
}
