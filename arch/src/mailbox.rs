//! The shared-memory mailbox between the harness and a live target: one definition of its
//! layout and of the doorbell lines that announce a message in it, for the harness, the
//! refhyp and the KVM agent.
//!
//! A serial link into QEMU is slow (QEMU feeds a PL011 about one byte per main-loop turn; a
//! console into a nested guest moves tens of KB/s), so messages of [`THRESHOLD`] bytes or more
//! go into memory both sides map, and only a short doorbell line, `@TDM <offset>` (to the
//! target) or `@TDR <offset>` (to the harness), hex, goes down the serial link. At the offset
//! is an envelope: the payload's length and CRC-32 (u32 little-endian each, [`HEADER`]), then
//! the postcard payload. A doorbell is at most 12 bytes, under the 16 bytes QEMU moves into a
//! PL011's receive FIFO in one main-loop turn (after that it moves one byte per turn, ~0.1-1 ms
//! each on a busy host; hw/char/pl011.c `pl011_can_receive`). A doorbell garbled on the wire,
//! or a message torn or overwritten in memory, fails the length or checksum check and is
//! handled like a corrupt frame (`BadFrame` / `Resend`).
//!
//! ```text
//!   mailbox offset 0x00_0000  to the target: two halves of 512 KiB, used in turn
//!                  0x10_0000  to the harness: two halves of 512 KiB, used in turn
//!                  0x20_0000  end (SIZE)
//! ```
//! A sender alternates halves so that a new message never overwrites one the other side may
//! still be reading. Where the mailbox is: the last [`SIZE`] bytes of the KVM backend's ivshmem
//! BAR; guest RAM at [`REFHYP_PA`] for the refhyp (QEMU's RAM is a shared file, so the
//! harness reaches it at file offset [`REFHYP_PA`] − [`REFHYP_RAM_BASE`]).
//!
//! A target answers through the mailbox only a request that came through it (the harness that
//! wrote the mailbox is the one that reads it), and only when its Hello listed [`CAP`].

use alloc::vec::Vec;
use core::ops::Range;

use crate::crc32::crc32;

/// Bytes of the mailbox.
pub const SIZE: usize = 2 << 20;
/// Bytes of one direction's area, and of one of its two halves (the largest message).
pub const AREA: usize = SIZE / 2;
pub const HALF: usize = AREA / 2;
/// Messages shorter than this stay frames.
pub const THRESHOLD: usize = 256;
/// The envelope's header: payload length, then its CRC-32, u32 little-endian each.
pub const HEADER: usize = 8;
/// The Hello capability of a target that reads requests from and writes replies to the
/// mailbox.
pub const CAP: &str = "mailbox";

/// QEMU virt's RAM base, where the refhyp's RAM file starts.
pub const REFHYP_RAM_BASE: u64 = 0x4000_0000;
/// The refhyp's mailbox in guest physical memory (right after its guest pool; the refhyp's
/// memory map is in oracles/refhyp/src/el2/mod.rs).
pub const REFHYP_PA: u64 = 0x6400_0000;
/// Offset of the refhyp's mailbox in its RAM file.
pub const REFHYP_FILE_OFFSET: u64 = REFHYP_PA - REFHYP_RAM_BASE;

// The layout, checked when it is compiled: a message fits a half, and the refhyp's mailbox
// is page-aligned inside its 1 GiB of RAM (its guest pool ends at 0x6400_0000; el2/mod.rs
// checks that side).
const _: () = assert!(THRESHOLD + HEADER < HALF);
const _: () = assert!(REFHYP_PA.is_multiple_of(4096) && REFHYP_PA + SIZE as u64 <= REFHYP_RAM_BASE + (1 << 30));

/// Which way a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Harness to target (`HostMsg`).
    ToTarget,
    /// Target to harness (`TargetMsg`).
    ToHost,
}

impl Dir {
    /// The part of the mailbox this direction's messages live in.
    pub const fn area(self) -> Range<usize> {
        match self {
            Dir::ToTarget => 0..AREA,
            Dir::ToHost => AREA..SIZE,
        }
    }
    /// The start of a doorbell line in this direction (not a frame: no `@TD ` marker, so a
    /// receiver without a mailbox never takes it for a message).
    pub const fn marker(self) -> &'static [u8] {
        match self {
            Dir::ToTarget => b"@TDM ",
            Dir::ToHost => b"@TDR ",
        }
    }
}

/// Whether a postcard message of `len` bytes goes through the mailbox.
pub const fn takes(len: usize) -> bool {
    len >= THRESHOLD && len + HEADER <= HALF
}

/// What a sender writes at the doorbell's offset: header, then `payload`.
pub fn envelope(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(&crc32(payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// A sender's side of one direction: which half the next message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Halves {
    dir: Dir,
    next: usize,
}

impl Halves {
    pub const fn new(dir: Dir) -> Halves {
        Halves { dir, next: 0 }
    }
    /// The mailbox offset for the envelope of the next payload of `len` bytes (halves in
    /// turn), or `None` if it does not fit a half.
    pub fn place(&mut self, len: usize) -> Option<usize> {
        if len + HEADER > HALF {
            return None;
        }
        let off = self.dir.area().start + self.next * HALF;
        self.next ^= 1;
        Some(off)
    }
}

/// A message in the mailbox: which way, and where its envelope starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doorbell {
    pub dir: Dir,
    /// From the start of the mailbox.
    pub offset: usize,
}

impl Doorbell {
    /// The doorbell line, with its trailing newline.
    pub fn line(&self) -> Vec<u8> {
        let mut v = self.dir.marker().to_vec();
        v.extend_from_slice(alloc::format!("{:x}\n", self.offset).as_bytes());
        v
    }

    /// Parse what follows the marker (one hex number): the envelope's header must lie inside
    /// the direction's area.
    pub fn parse(dir: Dir, body: &[u8]) -> Result<Doorbell, &'static str> {
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let text = core::str::from_utf8(body).map_err(|_| "mailbox doorbell is not text")?;
        let offset = usize::from_str_radix(text.trim_matches(' '), 16).map_err(|_| "mailbox doorbell is not a hex offset")?;
        let area = dir.area();
        if offset < area.start || offset.checked_add(HEADER).is_none_or(|end| end > area.end) {
            return Err("mailbox doorbell points outside its area of the mailbox");
        }
        Ok(Doorbell { dir, offset })
    }

    /// The payload the doorbell announces, read through `read` (bytes of a mailbox range;
    /// `None` if they cannot be read), with its length and checksum checked.
    pub fn read_with(&self, mut read: impl FnMut(Range<usize>) -> Option<Vec<u8>>) -> Result<Vec<u8>, &'static str> {
        let header = read(self.offset..self.offset + HEADER).ok_or("the mailbox cannot be read")?;
        let word = |i: usize| header.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let (Some(len), Some(crc)) = (word(0), word(4)) else { return Err("the mailbox cannot be read") };
        // Zeroed memory would otherwise pass as an empty message (crc32 of nothing is 0).
        if (len as usize) < THRESHOLD {
            return Err("mailbox message shorter than any sent through the mailbox");
        }
        let start = self.offset + HEADER;
        let end = start.checked_add(len as usize).filter(|&e| e <= self.dir.area().end).ok_or("mailbox message length runs past its area")?;
        let payload = read(start..end).ok_or("the mailbox cannot be read")?;
        if payload.len() != len as usize {
            return Err("the mailbox cannot be read");
        }
        if crc32(&payload) != crc {
            return Err("mailbox checksum mismatch");
        }
        Ok(payload)
    }

    /// [`Doorbell::read_with`] from the mailbox as a byte slice.
    pub fn read(&self, mailbox: &[u8]) -> Result<Vec<u8>, &'static str> {
        self.read_with(|r| mailbox.get(r).map(<[u8]>::to_vec))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;

    #[test]
    fn the_layout_fits_and_the_directions_do_not_overlap() {
        assert_eq!(Dir::ToTarget.area().end, Dir::ToHost.area().start);
        assert_eq!(Dir::ToHost.area().end, SIZE);
        assert_ne!(Dir::ToTarget.marker(), Dir::ToHost.marker());
        for d in [Dir::ToTarget, Dir::ToHost] {
            // A doorbell is never a frame.
            assert!(!d.marker().windows(4).any(|w| w == crate::wire::FRAME_MARKER));
        }
    }

    #[test]
    fn halves_alternate_inside_their_area() {
        for d in [Dir::ToTarget, Dir::ToHost] {
            let mut h = Halves::new(d);
            let a = h.place(100).unwrap();
            let b = h.place(HALF - HEADER).unwrap();
            let c = h.place(1).unwrap();
            assert_eq!((a, b - a, c), (d.area().start, HALF, a));
            assert!(b + HALF <= d.area().end);
            assert_eq!(h.place(HALF - HEADER + 1), None);
        }
        assert!(!takes(THRESHOLD - 1) && takes(THRESHOLD) && takes(HALF - HEADER) && !takes(HALF - HEADER + 1));
    }

    #[test]
    fn doorbells_round_trip_and_bad_ones_are_named() {
        let payload = [7u8; 300];
        let mut mb = alloc::vec![0u8; SIZE];
        let d = Doorbell { dir: Dir::ToHost, offset: AREA + HALF };
        mb[d.offset..d.offset + HEADER + 300].copy_from_slice(&envelope(&payload));
        let line = d.line();
        assert_eq!(line, b"@TDR 180000\n");
        // Every doorbell fits the 16 bytes QEMU moves into the PL011 FIFO at once.
        assert!(Doorbell { dir: Dir::ToHost, offset: SIZE - HEADER }.line().len() <= 16);
        let body = &line[5..line.len() - 1];
        assert_eq!(Doorbell::parse(Dir::ToHost, body), Ok(d));
        assert_eq!(d.read(&mb), Ok(payload.to_vec()));
        mb[d.offset + HEADER + 299] ^= 1;
        assert_eq!(d.read(&mb), Err("mailbox checksum mismatch"));
        // A length that runs past the area; a mailbox that cannot be read.
        mb[d.offset..d.offset + 4].copy_from_slice(&(HALF as u32).to_le_bytes());
        assert_eq!(d.read(&mb), Err("mailbox message length runs past its area"));
        assert_eq!(d.read(&mb[..100]), Err("the mailbox cannot be read"));
        assert_eq!(Doorbell { dir: Dir::ToHost, offset: AREA }.read(&mb), Err("mailbox message shorter than any sent through the mailbox"));
        // The same offset is outside the other direction's area.
        assert!(Doorbell::parse(Dir::ToTarget, body).is_err());
        for bad in [&b"0 40"[..], b"x", b"", b"fffffffc", b"ffffffffffffffffff", b"\xff", b"ffff9"] {
            assert!(Doorbell::parse(Dir::ToTarget, bad).is_err(), "{bad:?}");
        }
        assert!(Doorbell::parse(Dir::ToTarget, b"80000\r").is_ok());
    }
}
