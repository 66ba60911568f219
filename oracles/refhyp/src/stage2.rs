//! Stage-2 translation tables for the guest, built from scratch for every job.
//!
//! 4 KiB granule, 40-bit IPA space (KVM's default: api.rst "KVM_VM_TYPE_ARM_IPA_SIZE"),
//! starting at level 1 with two concatenated level-1 tables (Arm ARM "Concatenated
//! translation tables for the initial lookup": 40-bit IPA, 4KB granule, SL0 = 1 -> 2 tables).
//! Only level-3 page descriptors are used: the maps are small and per-page permissions are
//! what the read-only and device slots need.
//!
//! ```text
//!   VTTBR ──► L1 (2 pages, 1024 entries x 1 GiB) ──► L2 (512 x 2 MiB) ──► L3 (512 x 4 KiB pages)
//! ```
//! Descriptor fields: Arm ARM D8.3 "Translation table descriptor formats", stage 2:
//! MemAttr [5:2], S2AP [7:6], SH [9:8], AF [10], XN [54:53].

use trapdiff_arch::memattr::S2Attr;

/// One translation table (4 KiB, 512 descriptors).
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug)]
pub struct Table(pub [u64; 512]);

impl Table {
    pub const ZERO: Table = Table([0; 512]);
}

pub const IPA_BITS: u32 = 40;
/// Level-1 tables concatenated at the root.
pub const ROOT_TABLES: usize = 2;

const DESC_VALID: u64 = 1 << 0;
/// Table descriptor (levels 1-2) and page descriptor (level 3) both have bit 1 set.
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const S2AP_R: u64 = 1 << 6;
const S2AP_W: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Access a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S2Perm {
    ReadOnly,
    ReadWrite,
}

/// VTCR_EL2 for these tables (Arm ARM "VTCR_EL2, Virtualization Translation Control Register"): T0SZ = 64 - 40, SL0 = 1 (start at
/// level 1 for 4KB), inner/outer write-back cacheable, inner shareable walks, TG0 = 4KB,
/// PS = 40 bits, bit 31 RES1.
pub const fn vtcr() -> u64 {
    (64 - IPA_BITS as u64) | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (0b010 << 16) | (1 << 31)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// The table pool is exhausted: the job maps too many distinct 2 MiB ranges.
    OutOfTables,
    /// The IPA is not below 2^40.
    IpaOutOfRange(u64),
    /// The page is already mapped (overlapping slots).
    AlreadyMapped(u64),
}

impl core::fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Stage2Error::OutOfTables => write!(f, "stage-2 table pool exhausted: map fewer or more compact slots"),
            Stage2Error::IpaOutOfRange(ipa) => write!(f, "IPA {ipa:#x} is beyond the 40-bit IPA space"),
            Stage2Error::AlreadyMapped(ipa) => write!(f, "IPA {ipa:#x} is mapped twice: slots overlap"),
        }
    }
}

/// Builds stage-2 tables in a pool of pages whose physical address is `pool_pa`.
#[derive(Debug)]
pub struct Stage2<'a> {
    pool: &'a mut [Table],
    pool_pa: u64,
    used: usize,
    fwb: bool,
}

impl<'a> Stage2<'a> {
    /// Start an empty map. `fwb`: HCR_EL2.FWB will be set, so MemAttr uses the FWB encoding.
    pub fn new(pool: &'a mut [Table], pool_pa: u64, fwb: bool) -> Result<Stage2<'a>, Stage2Error> {
        if pool.len() < ROOT_TABLES || !pool_pa.is_multiple_of(8192) {
            return Err(Stage2Error::OutOfTables);
        }
        for t in pool[..ROOT_TABLES].iter_mut() {
            *t = Table::ZERO;
        }
        Ok(Stage2 { pool, pool_pa, used: ROOT_TABLES, fwb })
    }

    /// VTTBR_EL2: root table address, VMID 1.
    pub fn vttbr(&self) -> u64 {
        self.pool_pa | (1 << 48)
    }

    /// Tables used so far (for the job's statistics and tests).
    pub fn tables_used(&self) -> usize {
        self.used
    }

    fn alloc(&mut self) -> Result<usize, Stage2Error> {
        if self.used >= self.pool.len() {
            return Err(Stage2Error::OutOfTables);
        }
        let i = self.used;
        self.used += 1;
        self.pool[i] = Table::ZERO;
        Ok(i)
    }

    fn index_of(&self, desc: u64) -> usize {
        (((desc & ADDR_MASK) - self.pool_pa) / 4096) as usize
    }

    /// Descriptor slot (table index, entry index) for `ipa` at level 3, creating tables.
    fn leaf_slot(&mut self, ipa: u64) -> Result<(usize, usize), Stage2Error> {
        let l1 = (ipa >> 30) as usize; // 0..1024 across the two root tables
        let (mut t, mut e) = (l1 / 512, l1 % 512);
        for shift in [21u32, 12] {
            let desc = self.pool[t].0[e];
            let next = if desc & DESC_VALID != 0 {
                self.index_of(desc)
            } else {
                let n = self.alloc()?;
                self.pool[t].0[e] = (self.pool_pa + n as u64 * 4096) | DESC_TABLE_OR_PAGE | DESC_VALID;
                n
            };
            t = next;
            e = ((ipa >> shift) & 511) as usize;
        }
        Ok((t, e))
    }

    /// Map one 4 KiB page.
    pub fn map_page(&mut self, ipa: u64, pa: u64, perm: S2Perm, attr: S2Attr) -> Result<(), Stage2Error> {
        if ipa >> IPA_BITS != 0 {
            return Err(Stage2Error::IpaOutOfRange(ipa));
        }
        let (t, e) = self.leaf_slot(ipa)?;
        if self.pool[t].0[e] & DESC_VALID != 0 {
            return Err(Stage2Error::AlreadyMapped(ipa));
        }
        let memattr = u64::from(if self.fwb { attr.memattr_fwb() } else { attr.memattr() });
        let ap = match perm {
            S2Perm::ReadOnly => S2AP_R,
            S2Perm::ReadWrite => S2AP_R | S2AP_W,
        };
        self.pool[t].0[e] = (pa & ADDR_MASK) | (memattr << 2) | ap | SH_INNER | AF | DESC_TABLE_OR_PAGE | DESC_VALID;
        Ok(())
    }

    /// Map `size` bytes (page multiple) at `ipa` to `pa`.
    pub fn map_range(&mut self, ipa: u64, pa: u64, size: u64, perm: S2Perm, attr: S2Attr) -> Result<(), Stage2Error> {
        let mut off = 0;
        while off < size {
            self.map_page(ipa + off, pa + off, perm, attr)?;
            off += 4096;
        }
        Ok(())
    }

    /// Walk the tables like the MMU would: the level-3 descriptor for `ipa`, if mapped.
    pub fn walk(&self, ipa: u64) -> Option<u64> {
        self.lookup(ipa).ok()
    }

    /// Walk the tables like the MMU would: the level-3 descriptor for `ipa`, or the level of
    /// the invalid descriptor that ends the walk, which a stage-2 translation fault reports
    /// (Arm ARM D8.3; an IPA beyond the 40-bit input range faults at the start level, 1).
    pub fn lookup(&self, ipa: u64) -> Result<u64, u8> {
        if ipa >> IPA_BITS != 0 {
            return Err(1);
        }
        let l1 = (ipa >> 30) as usize;
        let mut desc = self.pool[l1 / 512].0[l1 % 512];
        for (level, shift) in [(1u8, 21u32), (2, 12)] {
            if desc & (DESC_VALID | DESC_TABLE_OR_PAGE) != DESC_VALID | DESC_TABLE_OR_PAGE {
                return Err(level);
            }
            desc = self.pool[self.index_of(desc)].0[((ipa >> shift) & 511) as usize];
        }
        if desc & DESC_VALID != 0 {
            Ok(desc)
        } else {
            Err(3)
        }
    }
}

/// Output address of a page descriptor.
pub fn desc_pa(desc: u64) -> u64 {
    desc & ADDR_MASK
}
/// Whether a page descriptor allows writes.
pub fn desc_writable(desc: u64) -> bool {
    desc & S2AP_W != 0
}
/// MemAttr [5:2] of a page descriptor.
pub fn desc_memattr(desc: u64) -> u8 {
    ((desc >> 2) & 0xf) as u8
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn maps_and_walks_pages_with_attributes() {
        let mut pool = vec![Table::ZERO; 16];
        let pa0 = 0x4300_0000;
        let mut s2 = Stage2::new(&mut pool, pa0, false).unwrap();
        s2.map_range(0x1000_0000, 0x4400_0000, 0x2000, S2Perm::ReadWrite, S2Attr::Normal).unwrap();
        s2.map_page(0xff_ffff_f000, 0x4500_0000, S2Perm::ReadOnly, S2Attr::DeviceNGnRE).unwrap();
        let d = s2.walk(0x1000_1000).unwrap();
        assert_eq!(desc_pa(d), 0x4400_1000);
        assert!(desc_writable(d));
        assert_eq!(desc_memattr(d), 0b1111);
        let d = s2.walk(0xff_ffff_f000).unwrap();
        assert_eq!((desc_pa(d), desc_writable(d), desc_memattr(d)), (0x4500_0000, false, 0b0001));
        assert_eq!(s2.walk(0x1000_2000), None);
        assert_eq!(s2.walk(0x2000_0000), None);
        // The level a translation fault reports: the first invalid descriptor.
        assert_eq!(s2.lookup(0x1000_2000), Err(3));
        assert_eq!(s2.lookup(0x1020_0000), Err(2));
        assert_eq!(s2.lookup(0x8000_0000), Err(1));
        assert_eq!(s2.lookup(1 << 40), Err(1));
        // Two roots, plus L2 and L3 for each of the two regions.
        assert_eq!(s2.tables_used(), 6);
        assert_eq!(s2.map_page(0x1000_0000, 0, S2Perm::ReadOnly, S2Attr::Normal), Err(Stage2Error::AlreadyMapped(0x1000_0000)));
        assert_eq!(s2.map_page(1 << 40, 0, S2Perm::ReadOnly, S2Attr::Normal), Err(Stage2Error::IpaOutOfRange(1 << 40)));
    }

    #[test]
    fn fwb_encoding_and_pool_exhaustion() {
        let mut pool = vec![Table::ZERO; 4];
        let mut s2 = Stage2::new(&mut pool, 0x8000, true).unwrap();
        s2.map_page(0x4000_0000, 0x9000, S2Perm::ReadWrite, S2Attr::Normal).unwrap();
        assert_eq!(desc_memattr(s2.walk(0x4000_0000).unwrap()), 0b0110);
        assert_eq!(s2.map_page(0x8000_0000, 0x9000, S2Perm::ReadWrite, S2Attr::NormalNc), Err(Stage2Error::OutOfTables));
    }

    #[test]
    fn vtcr_fields() {
        let v = vtcr();
        assert_eq!(v & 0x3f, 24);
        assert_eq!((v >> 6) & 3, 1);
        assert_eq!((v >> 16) & 7, 0b010);
    }
}
