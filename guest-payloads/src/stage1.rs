//! Stage-1 translation tables for the guest runtime: an identity map built on the host and
//! placed at [`abi::TABLES_BASE`] by the job, in one of two formats:
//!
//! - **A64** (VMSAv8-64, EL1&0 regime): 4 KiB granule, TCR_EL1.T0SZ = 24 (40-bit VA, so every
//!   IPA a case may use, `case::IPA_LIMIT`, is mapped 1:1), lookup starts at level 0.
//! - **LPAE** (AArch32 long-descriptor, TTBCR.EAE = 1): T0SZ = 0 (the whole 32-bit VA space),
//!   lookup starts at level 1.
//!
//! Both use the same descriptor layout (Arm ARM D8.3 "Translation table descriptor formats" and
//! G5.5 "The VMSAv8-32 Long-descriptor translation table format"). Every mapping is a 4 KiB page
//! at level 3, so permission and access-flag faults always report level 3. A region left
//! `unmapped` gets its level-3 tables with invalid entries, so its translation faults report
//! level 3 too; an address outside every region faults at whatever level the walk stops
//! ([`Stage1::walk`] says which).

use std::fmt;

use trapdiff_arch::abi;
use trapdiff_arch::memattr::S1Attr;

pub const PAGE: u64 = 4096;
const ENTRIES: usize = 512;

/// Descriptor bits (Arm ARM D8.3.1 / D8.3.2 "Block and Page descriptor" attribute fields).
pub mod desc {
    /// Bits [1:0]: valid + table (levels 0-2) or page (level 3).
    pub const TABLE_OR_PAGE: u64 = 0b11;
    pub const VALID: u64 = 0b01;
    pub const ATTR_INDX_SHIFT: u32 = 2;
    /// AP[1], bit 6: EL0 (PL0) access.
    pub const AP_EL0: u64 = 1 << 6;
    /// AP[2], bit 7: read-only.
    pub const AP_RO: u64 = 1 << 7;
    /// SH[1:0], bits [9:8]: Inner Shareable.
    pub const SH_INNER: u64 = 0b11 << 8;
    /// AF, bit 10: the access flag, set so no access-flag fault is ever taken.
    pub const AF: u64 = 1 << 10;
    /// PXN, bit 53.
    pub const PXN: u64 = 1 << 53;
    /// UXN (A64 EL1&0) / XN (AArch32), bit 54.
    pub const UXN_XN: u64 = 1 << 54;
    /// Output address bits [47:12] (LPAE: [39:12]).
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
}

/// Which translation-table format the tables are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// VMSAv8-64, 4 KiB granule, 40-bit VA: level 0 start.
    A64,
    /// AArch32 long-descriptor (LPAE), 32-bit VA: level 1 start.
    Lpae,
}

impl Format {
    pub fn start_level(self) -> u8 {
        match self {
            Format::A64 => 0,
            Format::Lpae => 1,
        }
    }
    /// One past the highest VA the tables translate.
    pub fn va_limit(self) -> u64 {
        match self {
            Format::A64 => 1 << VA_BITS_A64,
            Format::Lpae => 1 << 32,
        }
    }
}

/// TCR_EL1.T0SZ = 64 - VA_BITS_A64.
pub const VA_BITS_A64: u32 = 40;

/// What one page mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub attr: S1Attr,
    pub write: bool,
    pub exec: bool,
    /// EL0 (PL0) may access the page (AP[1]).
    pub el0: bool,
}

impl Perm {
    /// The leaf descriptor for a page at `pa`.
    pub fn page_descriptor(self, format: Format, pa: u64) -> u64 {
        let mut d = desc::TABLE_OR_PAGE | desc::AF | desc::SH_INNER | (pa & desc::OA_MASK);
        d |= u64::from(self.attr.index()) << desc::ATTR_INDX_SHIFT;
        if self.el0 {
            d |= desc::AP_EL0;
        }
        if !self.write {
            d |= desc::AP_RO;
        }
        if !self.exec {
            d |= desc::PXN | desc::UXN_XN;
        } else if format == Format::A64 && !self.el0 {
            // A64: EL0 execution is governed by UXN alone (Arm ARM D8.4.1.2 "Instruction
            // access permissions"), so a page EL0 may not touch is UXN as well.
            // AArch32: XN would forbid PL1 too; PL0 cannot fetch without AP[1] there
            // (G5.7.2 "Execute-never restrictions": fetches need read permission).
            d |= desc::UXN_XN;
        }
        d
    }
}

/// The result of walking the tables for one VA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// A valid page: its descriptor and the level it was found at.
    Page { level: u8, descriptor: u64, pa: u64 },
    /// The walk found an invalid descriptor at `level`: a Translation fault at that level.
    TranslationFault { level: u8 },
    /// The VA is beyond what TTBR0 translates (A64: a level-0 translation fault, Arm ARM
    /// D8.2 "Translation table walk": VA outside the TTBR0 range).
    OutOfRange,
}

/// The table pages ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablesFull {
    pub pages: usize,
}

impl fmt::Display for TablesFull {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "the stage-1 tables need more than {} pages ({} KiB at {:#x}); the case's regions are spread over too many \
             2 MiB ranges: move them closer together or make them smaller",
            self.pages,
            abi::TABLES_SIZE / 1024,
            abi::TABLES_BASE
        )
    }
}

/// Translation tables under construction, as 4 KiB pages placed from `base`.
#[derive(Clone, Debug)]
pub struct Stage1 {
    format: Format,
    base: u64,
    max_pages: usize,
    pages: Vec<[u64; ENTRIES]>,
    /// Level-3 tables moved out of the table area: (their IPA, page index).
    moved: Vec<(u64, usize)>,
}

impl Stage1 {
    /// Empty tables (an all-invalid root) at `base`, at most `max_pages` pages.
    pub fn new(format: Format, base: u64, max_pages: usize) -> Stage1 {
        Stage1 { format, base, max_pages, pages: vec![[0; ENTRIES]], moved: Vec::new() }
    }

    pub fn format(&self) -> Format {
        self.format
    }
    /// TTBR0 value: the root table (ASID 0).
    pub fn ttbr0(&self) -> u64 {
        self.base
    }
    /// The tables' bytes, to place at `ttbr0()`.
    pub fn bytes(&self) -> Vec<u8> {
        self.pages.iter().flat_map(|p| p.iter().flat_map(|d| d.to_le_bytes())).collect()
    }
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    fn index(level: u8, va: u64) -> usize {
        ((va >> (12 + 9 * (3 - u32::from(level)))) & 0x1ff) as usize
    }

    /// The level-3 table covering `va`, created (with every entry invalid) if missing.
    fn leaf_table(&mut self, va: u64) -> Result<usize, TablesFull> {
        let mut table = 0usize;
        for level in self.format.start_level()..3 {
            let i = Self::index(level, va);
            let d = self.pages[table][i];
            table = if d & desc::TABLE_OR_PAGE == desc::TABLE_OR_PAGE {
                self.page_at(d & desc::OA_MASK).ok_or(TablesFull { pages: self.max_pages })?
            } else {
                if self.pages.len() >= self.max_pages {
                    return Err(TablesFull { pages: self.max_pages });
                }
                self.pages.push([0; ENTRIES]);
                let next = self.pages.len() - 1;
                self.pages[table][i] = desc::TABLE_OR_PAGE | (self.base + next as u64 * PAGE);
                next
            };
        }
        Ok(table)
    }

    /// Map `[va, va + size)` 1:1 with 4 KiB pages. `va` and `size` are page multiples and the
    /// range lies below the format's VA limit (the caller validated the case).
    pub fn map(&mut self, va: u64, size: u64, perm: Perm) -> Result<(), TablesFull> {
        self.fill(va, size, Some(perm))
    }

    /// Create the level-3 tables for `[va, va + size)` and leave their entries invalid.
    pub fn unmapped(&mut self, va: u64, size: u64) -> Result<(), TablesFull> {
        self.fill(va, size, None)
    }

    fn fill(&mut self, va: u64, size: u64, perm: Option<Perm>) -> Result<(), TablesFull> {
        let mut a = va & !(PAGE - 1);
        while a < va + size {
            let t = self.leaf_table(a)?;
            self.pages[t][Self::index(3, a)] = perm.map_or(0, |p| p.page_descriptor(self.format, a));
            a += PAGE;
        }
        Ok(())
    }

    /// Point the walk for `va`'s 2 MiB block at a level-3 table at `pa` (outside the table
    /// area) and return that table's bytes, which the caller places at `pa`; `None` if no
    /// level-3 table covers `va`. Map the block's pages first: later changes are not moved.
    pub fn move_leaf_table(&mut self, va: u64, pa: u64) -> Option<Vec<u8>> {
        let mut table = 0usize;
        for level in self.format.start_level()..2 {
            let d = self.pages[table][Self::index(level, va)];
            if d & desc::TABLE_OR_PAGE != desc::TABLE_OR_PAGE {
                return None;
            }
            table = self.page_at(d & desc::OA_MASK)?;
        }
        let i = Self::index(2, va);
        let d = self.pages[table][i];
        if d & desc::TABLE_OR_PAGE != desc::TABLE_OR_PAGE {
            return None;
        }
        let leaf = self.page_at(d & desc::OA_MASK)?;
        self.pages[table][i] = desc::TABLE_OR_PAGE | (pa & desc::OA_MASK);
        self.moved.push((pa & desc::OA_MASK, leaf));
        Some(self.pages[leaf].iter().flat_map(|d| d.to_le_bytes()).collect())
    }

    /// The page index of the table at `pa`.
    fn page_at(&self, pa: u64) -> Option<usize> {
        if let Some(&(_, i)) = self.moved.iter().find(|(p, _)| *p == pa) {
            return Some(i);
        }
        let i = pa.checked_sub(self.base)? / PAGE;
        ((i as usize) < self.pages.len()).then_some(i as usize)
    }

    /// Walk the tables for `va` as the MMU would (Arm ARM D8.2 "Translation process").
    pub fn walk(&self, va: u64) -> Walk {
        if va >= self.format.va_limit() {
            return Walk::OutOfRange;
        }
        let mut table = 0usize;
        for level in self.format.start_level()..=3 {
            let d = self.pages[table][Self::index(level, va)];
            if d & desc::VALID == 0 || (level == 3 && d & desc::TABLE_OR_PAGE != desc::TABLE_OR_PAGE) {
                return Walk::TranslationFault { level };
            }
            if level == 3 {
                return Walk::Page { level, descriptor: d, pa: (d & desc::OA_MASK) | (va & (PAGE - 1)) };
            }
            if d & desc::TABLE_OR_PAGE != desc::TABLE_OR_PAGE {
                // This builder writes no blocks; a block here would be a bug.
                return Walk::TranslationFault { level };
            }
            let Some(next) = self.page_at(d & desc::OA_MASK) else {
                return Walk::TranslationFault { level };
            };
            table = next;
        }
        Walk::TranslationFault { level: 3 }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use crate::lower::{tables, testcase};
    use trapdiff_arch::abi;

    fn page(w: Walk) -> (u64, u64) {
        match w {
            Walk::Page { level: 3, descriptor, pa } => (descriptor, pa),
            other => panic!("expected a level-3 page, got {other:?}"),
        }
    }
    fn attr(d: u64) -> u64 {
        (d >> desc::ATTR_INDX_SHIFT) & 7
    }

    #[test]
    fn a64_runtime_pages_are_el1_only_and_identity_mapped() {
        let case = testcase::a64(testcase::EL1);
        let t = tables(&case).unwrap();
        assert_eq!(t.ttbr0(), abi::TABLES_BASE);
        // Runtime code: read-only, executable at EL1, UXN, no EL0 access, Normal-WB.
        let (d, pa) = page(t.walk(abi::RUNTIME_BASE + 0x804));
        assert_eq!(pa, abi::RUNTIME_BASE + 0x804);
        assert_eq!(d & desc::AP_RO, desc::AP_RO);
        assert_eq!(d & desc::AP_EL0, 0);
        assert_eq!(d & desc::PXN, 0);
        assert_eq!(d & desc::UXN_XN, desc::UXN_XN);
        assert_eq!(attr(d), u64::from(S1Attr::NormalWb.index()));
        assert_eq!(d & desc::AF, desc::AF);
        // Report page: writable, never executable.
        let (d, _) = page(t.walk(abi::REPORT_BASE + 0x10));
        assert_eq!(d & (desc::AP_RO | desc::AP_EL0), 0);
        assert_eq!(d & (desc::PXN | desc::UXN_XN), desc::PXN | desc::UXN_XN);
        // Harness page: Device-nGnRnE, writable at EL1.
        let (d, _) = page(t.walk(abi::HARNESS_MMIO + abi::DONE));
        assert_eq!(attr(d), u64::from(S1Attr::DeviceNGnRnE.index()));
        assert_eq!(d & desc::AP_RO, 0);
        // The tables themselves and the rest of the reserved range are not mapped.
        assert!(matches!(t.walk(abi::TABLES_BASE), Walk::TranslationFault { level: 3 }));
        assert!(matches!(t.walk(abi::HARNESS_MMIO - 0x1000), Walk::TranslationFault { level: 3 }));
    }

    #[test]
    fn a_region_can_hold_a_moved_level3_table() {
        // `far` (read-only, at 0xff_0000_0000) holds the table that maps `dev`.
        let mut case = testcase::a64(testcase::EL1);
        let far = case.memory.iter().position(|r| r.name == "far").unwrap();
        case.memory[far].s1_table_for = Some("dev".into());
        case.memory[far].fill = 0;
        let pages = crate::lower::s1_table_pages(&case).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].0, "far");
        let t = tables(&case).unwrap();
        // The walk still finds `dev`, through the table at `far`, whose entry is in the bytes.
        let (d, pa) = page(t.walk(0x5000_0010));
        assert_eq!(pa, 0x5000_0010);
        assert_eq!(pages[0].1[0..8], d.to_le_bytes());
        // Lowering insists on the region holding exactly that table.
        let e = crate::lower::lower(&case, 1).unwrap_err();
        assert!(e.to_string().contains("`far` holds a stage-1 table"), "{e}");
        case.memory[far].init = vec![trapdiff_arch::case::Init { offset: 0, bytes: pages[0].1.clone() }];
        assert!(crate::lower::lower(&case, 1).is_ok());
    }

    #[test]
    fn a64_case_regions_follow_their_s1_fields() {
        let case = testcase::a64(testcase::EL1);
        let t = tables(&case).unwrap();
        // `code`: default Normal-WB, RWX, EL1 case: no EL0 access, so UXN but not PXN.
        let (d, _) = page(t.walk(0x4000_0000));
        assert_eq!(attr(d), u64::from(S1Attr::NormalWb.index()));
        assert_eq!(d & (desc::AP_RO | desc::AP_EL0), 0);
        assert_eq!(d & desc::PXN, 0);
        assert_eq!(d & desc::UXN_XN, desc::UXN_XN);
        // `data`: s1 {normal_nc, r, el0: true}: AP = 0b11, execute-never everywhere.
        let (d, _) = page(t.walk(0x4010_1234));
        assert_eq!(attr(d), u64::from(S1Attr::NormalNc.index()));
        assert_eq!(d & (desc::AP_RO | desc::AP_EL0), desc::AP_RO | desc::AP_EL0);
        assert_eq!(d & (desc::PXN | desc::UXN_XN), desc::PXN | desc::UXN_XN);
        // `dev`: device region defaults to Device-nGnRnE stage 1.
        let (d, _) = page(t.walk(0x5000_0000));
        assert_eq!(attr(d), u64::from(S1Attr::DeviceNGnRnE.index()));
        // `hole`: perm unmapped -> translation fault at level 3, over its whole size.
        assert_eq!(t.walk(0x6000_0000), Walk::TranslationFault { level: 3 });
        assert_eq!(t.walk(0x6000_1ff8), Walk::TranslationFault { level: 3 });
        // `far`: a region above 4 GiB, reachable with the 40-bit VA.
        let (_, pa) = page(t.walk(0xff_0000_0008));
        assert_eq!(pa, 0xff_0000_0008);
        // Nothing there: the walk stops where the tables do.
        assert_eq!(t.walk(0x80_0000_0000), Walk::TranslationFault { level: 1 });
        assert_eq!(t.walk(0x2_0000_0000), Walk::TranslationFault { level: 1 });
        assert_eq!(t.walk(0x7000_0000), Walk::TranslationFault { level: 2 });
        assert_eq!(t.walk(1 << 40), Walk::OutOfRange);
    }

    #[test]
    fn a64_el0_case_pages_are_el0_accessible_and_executable() {
        let case = testcase::a64(testcase::EL0);
        let t = tables(&case).unwrap();
        let (d, _) = page(t.walk(0x4000_0000));
        assert_eq!(d & desc::AP_EL0, desc::AP_EL0);
        assert_eq!(d & desc::UXN_XN, 0);
        // The runtime stays EL1-only.
        let (d, _) = page(t.walk(abi::PARAMS_BASE));
        assert_eq!(d & desc::AP_EL0, 0);
    }

    #[test]
    fn lpae_tables_start_at_level_1_and_keep_pl1_execute() {
        let case = testcase::a32(testcase::EL1);
        let t = tables(&case).unwrap();
        assert_eq!(t.format(), Format::Lpae);
        // Code region, not PL0-accessible: XN must stay clear (it would stop PL1 fetches too).
        let (d, _) = page(t.walk(0x4000_0000));
        assert_eq!(d & (desc::PXN | desc::UXN_XN), 0);
        assert_eq!(d & desc::AP_EL0, 0);
        let (d, _) = page(t.walk(abi::RUNTIME_A32_BASE));
        assert_eq!(d & (desc::PXN | desc::UXN_XN | desc::AP_EL0), 0);
        assert_eq!(t.walk(0x8000_0000), Walk::TranslationFault { level: 1 });
        assert_eq!(t.walk(1 << 32), Walk::OutOfRange);
        // The level-1 table is the first page: only the first four entries can be used.
        let bytes = t.bytes();
        assert!(bytes[32..4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn table_space_runs_out_with_a_clear_error() {
        let mut t = Stage1::new(Format::A64, abi::TABLES_BASE, 8);
        let p = Perm { attr: S1Attr::NormalWb, write: true, exec: false, el0: false };
        let mut err = None;
        for i in 0..16u64 {
            if let Err(e) = t.map(0x4000_0000 + i * 0x20_0000, PAGE, p) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("8 pages cannot hold 16 level-3 tables");
        assert!(e.to_string().contains("more than 8 pages"), "{e}");
    }
}
