//! The shared-memory mailbox between the harness and a live target: one definition of its
//! layout and of the doorbell lines that announce a message in it, for the harness, the
//! refhyp and the KVM agent.
//!
//! A serial link into QEMU is slow (QEMU feeds a PL011 about one byte per main-loop turn; a
//! console into a nested guest moves tens of KB/s), so messages of [`THRESHOLD`] bytes or more
//! go into memory both sides map, and only a short doorbell line,
//! `@TDM <offset> <len> <crc32>` (to the target) or `@TDR <offset> <len> <crc32>` (to the
//! harness), hex, goes down the serial link. The checksum covers the postcard payload in the
//! mailbox, so a message torn or overwritten in memory is caught like a corrupt frame
//! (`BadFrame` / `Resend`).
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
/// Messages shorter than this stay frames: their hex fits a doorbell's few lines anyway.
pub const THRESHOLD: usize = 256;
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
    len >= THRESHOLD && len <= HALF
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
    /// The mailbox offset for the next message of `len` bytes (halves in turn), or `None` if
    /// it does not fit a half.
    pub fn place(&mut self, len: usize) -> Option<usize> {
        if len > HALF {
            return None;
        }
        let off = self.dir.area().start + self.next * HALF;
        self.next ^= 1;
        Some(off)
    }
}

/// A message in the mailbox: where, how long, its CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doorbell {
    pub dir: Dir,
    /// From the start of the mailbox.
    pub offset: usize,
    pub len: usize,
    pub crc: u32,
}

impl Doorbell {
    /// The doorbell for `payload`, written at `offset`.
    pub fn for_payload(dir: Dir, offset: usize, payload: &[u8]) -> Doorbell {
        Doorbell { dir, offset, len: payload.len(), crc: crc32(payload) }
    }

    /// The doorbell line, with its trailing newline.
    pub fn line(&self) -> Vec<u8> {
        let mut v = self.dir.marker().to_vec();
        v.extend_from_slice(alloc::format!("{:x} {:x} {:08x}\n", self.offset, self.len, self.crc).as_bytes());
        v
    }

    /// Parse what follows the marker (three hex numbers): the message must lie inside its
    /// direction's area.
    pub fn parse(dir: Dir, body: &[u8]) -> Result<Doorbell, &'static str> {
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let text = core::str::from_utf8(body).map_err(|_| "mailbox doorbell is not text")?;
        let mut words = text.split(' ').filter(|w| !w.is_empty()).map(|w| u64::from_str_radix(w, 16));
        let (Some(Ok(offset)), Some(Ok(len)), Some(Ok(crc)), None) = (words.next(), words.next(), words.next(), words.next()) else {
            return Err("mailbox doorbell is not three hex numbers");
        };
        let area = dir.area();
        let (Ok(offset), Ok(len), Ok(crc)) = (usize::try_from(offset), usize::try_from(len), u32::try_from(crc)) else {
            return Err("mailbox doorbell numbers out of range");
        };
        if offset < area.start || offset.checked_add(len).is_none_or(|end| end > area.end) {
            return Err("mailbox doorbell points outside its area of the mailbox");
        }
        Ok(Doorbell { dir, offset, len, crc })
    }

    /// The bytes of the mailbox the message occupies.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    /// `bytes` (read from [`Doorbell::range`]) if they are the message the doorbell announced.
    pub fn check<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], &'static str> {
        if bytes.len() != self.len {
            return Err("mailbox message shorter than its doorbell says");
        }
        if crc32(bytes) != self.crc {
            return Err("mailbox checksum mismatch");
        }
        Ok(bytes)
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
        assert!(THRESHOLD < HALF);
        // The refhyp's mailbox sits after its guest pool and inside 1 GiB of RAM.
        assert!(REFHYP_PA >= 0x4400_0000 + (512 << 20));
        assert!(REFHYP_PA + SIZE as u64 <= REFHYP_RAM_BASE + (1 << 30));
        assert_eq!(REFHYP_PA % 4096, 0);
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
            let b = h.place(HALF).unwrap();
            let c = h.place(1).unwrap();
            assert_eq!((a, b - a, c), (d.area().start, HALF, a));
            assert!(b + HALF <= d.area().end);
            assert_eq!(h.place(HALF + 1), None);
        }
        assert!(!takes(THRESHOLD - 1) && takes(THRESHOLD) && takes(HALF) && !takes(HALF + 1));
    }

    #[test]
    fn doorbells_round_trip_and_bad_ones_are_named() {
        let payload = [7u8; 300];
        let d = Doorbell::for_payload(Dir::ToHost, AREA + HALF, &payload);
        let line = d.line();
        assert!(line.starts_with(b"@TDR ") && line.ends_with(b"\n"));
        let body = &line[5..line.len() - 1];
        assert_eq!(Doorbell::parse(Dir::ToHost, body), Ok(d));
        assert_eq!(d.check(&payload), Ok(&payload[..]));
        let mut torn = payload;
        torn[299] ^= 1;
        assert_eq!(d.check(&torn), Err("mailbox checksum mismatch"));
        assert!(d.check(&payload[..299]).is_err());
        // The same offsets are outside the other direction's area.
        assert!(Doorbell::parse(Dir::ToTarget, body).is_err());
        for bad in [&b"0 40"[..], b"x y z", b"0 40 deadbeef 1", b"ffffffff 10 0", b"ffffffffffffffff 2 0", b"0 100001 0", b"\xff"] {
            assert!(Doorbell::parse(Dir::ToTarget, bad).is_err(), "{bad:?}");
        }
        assert!(Doorbell::parse(Dir::ToTarget, b"0 40 deadbeef\r").is_ok());
    }
}
