//! Guest memory: where each slot of a job lives in the refhyp's guest pool, and the
//! operations on it (reset, loading segments, digests, readback).
//!
//! The runtime slot (`abi::RUNTIME_SLOT_*`) comes first, then the job's slots in order, each
//! at the next page of the pool. Nothing survives from one job to the next: every slot is
//! zeroed before the segments are copied in.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use trapdiff_arch::abi;
use trapdiff_arch::case::{IPA_LIMIT, PAGE_SIZE};
use trapdiff_arch::crc32::fnv1a64;
use trapdiff_arch::memattr::S2Attr;
use trapdiff_arch::wire::{Segment, Slot, SlotKind};

use crate::policy::Backing;
use crate::stage2::{S2Perm, Stage2, Stage2Error};

/// A slot placed in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub ipa: u64,
    pub size: u64,
    pub kind: SlotKind,
    /// Byte offset in the guest pool.
    pub off: usize,
}

/// A job's guest memory map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestMap {
    pub slots: Vec<Placed>,
}

/// A job the refhyp cannot set up; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError(pub String);

impl From<Stage2Error> for JobError {
    fn from(e: Stage2Error) -> JobError {
        JobError(format!("{e}"))
    }
}

impl GuestMap {
    /// Place the runtime slot and `slots` in a pool of `pool_len` bytes.
    pub fn place(slots: &[Slot], pool_len: usize) -> Result<GuestMap, JobError> {
        let runtime = Slot { ipa: abi::RUNTIME_SLOT_BASE, size: abi::RUNTIME_SLOT_SIZE, kind: SlotKind::Ram };
        let mut placed: Vec<Placed> = Vec::with_capacity(slots.len() + 1);
        let mut off = 0usize;
        for (i, s) in core::iter::once(&runtime).chain(slots).enumerate() {
            let end = s.ipa.checked_add(s.size).filter(|e| *e <= IPA_LIMIT);
            if s.size == 0 || s.ipa % PAGE_SIZE != 0 || s.size % PAGE_SIZE != 0 || end.is_none() {
                return Err(JobError(format!("slot {i} ({:#x}+{:#x}) must be a non-empty, page-aligned range below {IPA_LIMIT:#x}", s.ipa, s.size)));
            }
            if let Some(o) = placed.iter().find(|o| s.ipa < o.ipa + o.size && o.ipa < s.ipa + s.size) {
                return Err(JobError(format!("slot {i} ({:#x}+{:#x}) overlaps the slot at {:#x}", s.ipa, s.size, o.ipa)));
            }
            let size = usize::try_from(s.size).map_err(|_| JobError(format!("slot {i} is too large")))?;
            if off + size > pool_len {
                return Err(JobError(format!("slots need more than the refhyp's {pool_len:#x}-byte guest pool: use smaller regions")));
            }
            placed.push(Placed { ipa: s.ipa, size: s.size, kind: s.kind, off });
            off += size;
        }
        Ok(GuestMap { slots: placed })
    }

    /// Bytes of the pool the map uses (from offset 0).
    pub fn used(&self) -> usize {
        self.slots.last().map_or(0, |s| s.off + s.size as usize)
    }

    pub fn slot_at(&self, ipa: u64) -> Option<&Placed> {
        self.slots.iter().find(|s| ipa >= s.ipa && ipa - s.ipa < s.size)
    }

    /// What backs `ipa` (the policy's view).
    pub fn backing(&self, ipa: u64) -> Backing {
        match self.slot_at(ipa).map(|s| s.kind) {
            None => Backing::Hole,
            Some(SlotKind::Ram) => Backing::Ram,
            Some(SlotKind::RoRam) => Backing::RoRam,
            Some(SlotKind::Device(_)) => Backing::Device,
        }
    }

    /// Pool offset of `[ipa, ipa + len)` if it lies inside one slot.
    pub fn locate(&self, ipa: u64, len: u64) -> Option<usize> {
        let s = self.slot_at(ipa)?;
        let rel = ipa - s.ipa;
        (len <= s.size - rel).then_some(s.off + rel as usize)
    }

    /// Zero every slot, then copy the runtime image and the job's segments in.
    pub fn load(&self, pool: &mut [u8], runtime: &[Segment], segments: &[Segment]) -> Result<(), JobError> {
        let used = self.used();
        pool.get_mut(..used).ok_or_else(|| JobError(String::from("guest pool smaller than the map")))?.fill(0);
        for (what, seg) in runtime.iter().map(|s| ("runtime", s)).chain(segments.iter().map(|s| ("job", s))) {
            let off = self
                .locate(seg.ipa, seg.bytes.len() as u64)
                .ok_or_else(|| JobError(format!("{what} segment {:#x}+{:#x} is not inside one slot", seg.ipa, seg.bytes.len())))?;
            pool[off..off + seg.bytes.len()].copy_from_slice(&seg.bytes);
        }
        Ok(())
    }

    /// Stage-2 permission and memory type of a slot: RAM read-write, read-only RAM read-only,
    /// device slots read-write with their stage-2 memory type.
    fn s2_kind(kind: SlotKind) -> (S2Perm, S2Attr) {
        match kind {
            SlotKind::Ram => (S2Perm::ReadWrite, S2Attr::Normal),
            SlotKind::RoRam => (S2Perm::ReadOnly, S2Attr::Normal),
            SlotKind::Device(a) => (S2Perm::ReadWrite, a),
        }
    }

    /// Map the runtime's slot (the first one) in full: the runtime touches it all anyway.
    pub fn map_runtime(&self, s2: &mut Stage2<'_>, pool_pa: u64) -> Result<(), JobError> {
        let s = &self.slots[0];
        let (perm, attr) = Self::s2_kind(s.kind);
        Ok(s2.map_range(s.ipa, pool_pa + s.off as u64, s.size, perm, attr)?)
    }

    /// Map the page at `ipa` from the slot that holds it (lazy fault-in). Everything outside
    /// every slot stays unmapped (MMIO).
    pub fn map_page(&self, s2: &mut Stage2<'_>, pool_pa: u64, ipa: u64) -> Result<(), JobError> {
        let page = ipa & !0xfff;
        let s = self.slot_at(page).ok_or_else(|| JobError(format!("no slot holds IPA {ipa:#x}")))?;
        let (perm, attr) = Self::s2_kind(s.kind);
        Ok(s2.map_page(page, pool_pa + s.off as u64 + (page - s.ipa), perm, attr)?)
    }

    /// Map every slot at once (tests; the runner maps lazily).
    pub fn build_stage2(&self, s2: &mut Stage2<'_>, pool_pa: u64) -> Result<(), JobError> {
        for s in &self.slots {
            let (perm, attr) = Self::s2_kind(s.kind);
            s2.map_range(s.ipa, pool_pa + s.off as u64, s.size, perm, attr)?;
        }
        Ok(())
    }

    /// FNV-1a of `[ipa, ipa + len)`; bytes outside every slot count as zero.
    pub fn digest(&self, pool: &[u8], ipa: u64, len: u64) -> u64 {
        match self.locate(ipa, len) {
            Some(off) => fnv1a64(&pool[off..off + len as usize]),
            None => fnv1a64(&self.read(pool, ipa, len.min(1 << 24) as u32)),
        }
    }

    /// Bytes of `[ipa, ipa + len)`; bytes outside every slot read as zero.
    pub fn read(&self, pool: &[u8], ipa: u64, len: u32) -> Vec<u8> {
        if let Some(off) = self.locate(ipa, u64::from(len)) {
            return pool[off..off + len as usize].to_vec();
        }
        let mut out = vec![0u8; len as usize];
        for (i, b) in out.iter_mut().enumerate() {
            if let Some(off) = self.locate(ipa + i as u64, 1) {
                *b = pool[off];
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use crate::stage2::{desc_pa, desc_writable, Table};

    fn slots() -> Vec<Slot> {
        vec![
            Slot { ipa: 0x4000_0000, size: 0x2000, kind: SlotKind::Ram },
            Slot { ipa: 0x5000_0000, size: 0x1000, kind: SlotKind::RoRam },
            Slot { ipa: 0x6000_0000, size: 0x1000, kind: SlotKind::Device(S2Attr::NormalNc) },
        ]
    }

    #[test]
    fn places_runtime_first_and_classifies() {
        let m = GuestMap::place(&slots(), 1 << 20).unwrap();
        assert_eq!(m.slots[0].ipa, abi::RUNTIME_SLOT_BASE);
        assert_eq!(m.slots[1].off, abi::RUNTIME_SLOT_SIZE as usize);
        assert_eq!(m.backing(0x4000_1fff), Backing::Ram);
        assert_eq!(m.backing(0x5000_0000), Backing::RoRam);
        assert_eq!(m.backing(0x6000_0010), Backing::Device);
        assert_eq!(m.backing(0x4000_2000), Backing::Hole);
        assert_eq!(m.backing(abi::HARNESS_MMIO), Backing::Hole);
        assert_eq!(m.locate(0x4000_1ff0, 0x10), Some(abi::RUNTIME_SLOT_SIZE as usize + 0x1ff0));
        assert_eq!(m.locate(0x4000_1ff0, 0x11), None);
    }

    #[test]
    fn rejects_bad_maps() {
        let mut s = slots();
        s.push(Slot { ipa: 0x4000_1000, size: 0x1000, kind: SlotKind::Ram });
        assert!(GuestMap::place(&s, 1 << 20).unwrap_err().0.contains("overlaps"));
        let s = [Slot { ipa: 0x1000_0000, size: 0x1000, kind: SlotKind::Ram }];
        assert!(GuestMap::place(&s, 1 << 20).is_err());
        let s = [Slot { ipa: 0x4000_0800, size: 0x1000, kind: SlotKind::Ram }];
        assert!(GuestMap::place(&s, 1 << 20).is_err());
        assert!(GuestMap::place(&slots(), 0x1000).unwrap_err().0.contains("pool"));
    }

    #[test]
    fn load_zeroes_then_copies_and_reads_back() {
        let m = GuestMap::place(&slots(), 1 << 20).unwrap();
        let mut pool = vec![0xaau8; 1 << 20];
        let rt = [Segment { ipa: abi::RUNTIME_BASE, bytes: vec![1, 2, 3, 4] }];
        let seg = [Segment { ipa: 0x5000_0ffe, bytes: vec![9, 8] }];
        m.load(&mut pool, &rt, &seg).unwrap();
        assert_eq!(m.read(&pool, abi::RUNTIME_BASE, 6), vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(m.read(&pool, 0x5000_0ffe, 4), vec![9, 8, 0, 0]);
        assert_eq!(pool[m.used()], 0xaa);
        assert_eq!(m.digest(&pool, 0x4000_0000, 0), fnv1a64(b""));
        assert_eq!(m.digest(&pool, 0x4000_0000, 3), fnv1a64(&[0, 0, 0]));
        let bad = [Segment { ipa: 0x4000_1fff, bytes: vec![1, 2] }];
        assert!(m.load(&mut pool, &rt, &bad).is_err());
    }

    #[test]
    fn stage2_matches_the_slots() {
        let m = GuestMap::place(&slots(), 1 << 20).unwrap();
        let mut tables = vec![Table::ZERO; 16];
        let mut s2 = Stage2::new(&mut tables, 0x4300_0000, true).unwrap();
        m.build_stage2(&mut s2, 0x4400_0000).unwrap();
        let ro = s2.walk(0x5000_0000).unwrap();
        assert!(!desc_writable(ro));
        assert_eq!(desc_pa(ro), 0x4400_0000 + m.slots[2].off as u64);
        assert!(s2.walk(abi::HARNESS_MMIO).is_none());
        assert!(s2.walk(abi::TABLES_BASE + abi::TABLES_SIZE - 0x1000).is_some());
    }

    #[test]
    fn lazy_mapping_maps_one_page_of_the_right_slot() {
        let m = GuestMap::place(&slots(), 1 << 20).unwrap();
        let mut tables = vec![Table::ZERO; 16];
        let mut s2 = Stage2::new(&mut tables, 0x4300_0000, false).unwrap();
        m.map_runtime(&mut s2, 0x4400_0000).unwrap();
        assert!(s2.walk(0x4000_1000).is_none());
        m.map_page(&mut s2, 0x4400_0000, 0x4000_1234).unwrap();
        assert_eq!(desc_pa(s2.walk(0x4000_1000).unwrap()), 0x4400_0000 + m.slots[1].off as u64 + 0x1000);
        assert!(s2.walk(0x4000_0000).is_none());
        assert!(m.map_page(&mut s2, 0x4400_0000, 0x7000_0000).is_err());
    }
}
