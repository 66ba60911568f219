//! Lowering: a [`Case`] becomes a [`Job`] for the guest runtime — its slots, its initial bytes,
//! the runtime's parameter block and stage-1 tables, what to digest and read back, and the
//! VMM's side. The runtime stays dumb: every system-register value is computed here.
//!
//! # Defaults and conventions (what every backend and the model can rely on)
//!
//! - **Entry.** The case starts at `code.ipa` (bit 0 set in the parameter block for T32) with
//!   DAIF (AArch32: A, I, F) masked. A64 cases run at EL1t or EL0t, so the case's `sp` is
//!   SP_EL0 and SP_EL1 belongs to the runtime. AArch32 EL1 cases run in **SYS** mode (not SVC:
//!   SYS has no SPSR and shares r13/r14 with USR, so no exception clobbers a case register),
//!   EL0 cases in USR mode.
//! - **Registers** not named in `case.regs` start at zero. V/Q/D registers: the parameter
//!   block's and report's V area is 32 x 16 bytes; A64 V<n> is at 16n (D<n> is its low half);
//!   AArch32 D<n> is at 8n (so Q<n> is at 16n). AArch32 `q` values are applied before `d` values.
//! - **CPACR** default: FP/SIMD enabled at EL0 and EL1 — A64 CPACR_EL1.FPEN = 0b11
//!   ([`DEFAULT_CPACR_A64`]), AArch32 CPACR.cp10 = cp11 = 0b11 ([`DEFAULT_CPACR_A32`]).
//! - **FPEXC** default (AArch32): EN = 1 ([`DEFAULT_FPEXC`]). **FPSCR/FPCR** default 0, FPSR 0.
//! - **SCTLR** ([`sctlr`]): the RES1 bits, M (`sysregs.mmu`), C and I (`sysregs.caches`),
//!   A (`sysregs.align_check`); A64 also UCI, UCT, DZE (`sysregs.el0_cache_ops`); AArch32 also
//!   CP15BEN (so CP15 barrier operations work, as after a KVM vCPU reset). Everything else is
//!   0: no SA/SA0 stack-alignment checks, no WXN, EL0 WFI/WFE trap (nTWI/nTWE = 0), little
//!   endian, AArch32 TE = 0 (exceptions taken in A32), V = 0 (vectors at VBAR).
//! - **Stage 1** ([`crate::stage1`]): identity map of every region (4 KiB pages at level 3),
//!   MAIR = `S1Attr::runtime_mair()`, AttrIndx = `S1Attr::index()`, Inner Shareable, AF set.
//!   Default per region (see `case::Region::s1`): Normal-WB for `ram`/`ro_ram`, Device-nGnRnE
//!   for `mmio`/`device`; RWX; EL0 access when the case runs at EL0. A64 pages EL0 may not
//!   access are also UXN. `perm: unmapped` leaves the region's level-3 entries invalid: a
//!   Translation fault, level 3. The runtime's own pages are EL1-only; the harness MMIO page
//!   is Device-nGnRnE, EL1 read/write, execute-never. A64: TCR_EL1.T0SZ = 24 (40-bit VA),
//!   4 KiB granule, IPS = 40 bits, walks Inner-Shareable WB; AArch32: TTBCR.EAE = 1, T0SZ = 0.
//! - **Exceptions.** Each exception the case takes is recorded and becomes one
//!   `Event::Exception` in order among the VMM exits. The end-marker SVC is not an event.
//!   After recording, the runtime ends the case with `End::ExceptionLimit` once the number of
//!   records reaches `limits.max_exceptions` (with 0, at the first exception), else with
//!   `End::EndOnException` if `on_exception: end`, else resumes after the faulting
//!   instruction: A64 +4 (SVC: at the instruction after it, where ELR already points); A32 +4;
//!   T32 +2 or +4 from the first halfword; a T32 prefetch abort +2; IRQ/FIQ/SError resume
//!   where they interrupted. `pc` is the faulting instruction's address (for SVC, the SVC).
//! - **Final state.** Registers and FP state are reported by the runtime's epilogue, at the
//!   end marker or at the exception that ended the case. Memory digests and windows come from
//!   the backend whenever it returns them.

use std::fmt;

use trapdiff_arch::abi;
use trapdiff_arch::case::{Case, CaseError, El, ExceptionAction, Isa, Reg, Region, RegionKind, S1Perm};
use trapdiff_arch::memattr::{S1Attr, S2Attr};
use trapdiff_arch::sysreg::{cpacr, fpexc, sctlr as sctlr_bits};
use trapdiff_arch::wire::{Job, Segment, Slot, SlotKind};

use crate::runtime;
use crate::stage1::{Format, Perm, Stage1, TablesFull, VA_BITS_A64};

/// CPACR_EL1 default: FPEN = 0b11, no FP/SIMD traps at EL0 or EL1 (Arm ARM D24.2.30).
pub const DEFAULT_CPACR_A64: u64 = (cpacr::FULL as u64) << cpacr::FPEN_SHIFT;
/// AArch32 CPACR default: cp10 = cp11 = full access (Arm ARM G8.2.30).
pub const DEFAULT_CPACR_A32: u64 = ((cpacr::FULL << cpacr::CP10_SHIFT) | (cpacr::FULL << cpacr::CP11_SHIFT)) as u64;
/// AArch32 FPEXC default: EN set (Arm ARM G8.2.56).
pub const DEFAULT_FPEXC: u32 = fpexc::EN;
/// AArch32 SCTLR.CP15BEN, bit 5: CP15 DMB/DSB/ISB operations enabled (Arm ARM G8.2.126).
pub const SCTLR_A32_CP15BEN: u64 = 1 << 5;
/// Zero runs at least this long split a segment (shorter ones are cheaper to send).
pub const SEGMENT_MIN_GAP: usize = 64;
/// Room for a job's framing besides its segments' bytes.
const JOB_OVERHEAD: usize = 64 * 1024;

/// Why a case cannot be lowered onto the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LowerError {
    /// The case is invalid (fix the named field).
    Case(CaseError),
    /// The stage-1 tables do not fit in the runtime's table area.
    Tables(TablesFull),
    /// A scripted MMIO read value is wider than the 64 bits an access can return.
    MmioRead { index: usize, value: u128 },
    /// The job's initial bytes exceed what one channel frame carries.
    TooLarge { bytes: usize },
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LowerError::Case(e) => write!(f, "invalid case: {e}"),
            LowerError::Tables(e) => e.fmt(f),
            LowerError::MmioRead { index, value } => {
                write!(f, "vmm.reads[{index}] = {value:#x} is wider than 64 bits; an MMIO read returns at most 8 bytes")
            }
            LowerError::TooLarge { bytes } => write!(
                f,
                "the case's non-zero initial bytes ({bytes} bytes) do not fit in one channel frame ({} bytes): \
                 use smaller regions or a zero fill",
                trapdiff_arch::wire::MAX_PAYLOAD
            ),
        }
    }
}

impl std::error::Error for LowerError {}

impl From<CaseError> for LowerError {
    fn from(e: CaseError) -> LowerError {
        LowerError::Case(e)
    }
}
impl From<TablesFull> for LowerError {
    fn from(e: TablesFull) -> LowerError {
        LowerError::Tables(e)
    }
}

/// Both runtimes, to send once with `HostMsg::SetRuntime`.
pub fn runtime_segments() -> Vec<Segment> {
    vec![
        Segment { ipa: abi::RUNTIME_BASE, bytes: runtime::A64.to_vec() },
        Segment { ipa: abi::RUNTIME_A32_BASE, bytes: runtime::A32.to_vec() },
    ]
}

/// Lower `case` into job number `seq`.
pub fn lower(case: &Case, seq: u32) -> Result<Job, LowerError> {
    case.validate()?;
    let isa = case.state.isa;
    let mut reads = Vec::with_capacity(case.vmm.reads.len());
    for (index, v) in case.vmm.reads.iter().enumerate() {
        reads.push(u64::try_from(v.0).map_err(|_| LowerError::MmioRead { index, value: v.0 })?);
    }
    let tables = tables(case)?;
    let params = Params::for_case(case, tables.ttbr0());

    let mut slots = Vec::new();
    let mut segments = Vec::new();
    let mut digests = Vec::new();
    for r in &case.memory {
        let kind = match r.kind {
            RegionKind::Ram => SlotKind::Ram,
            RegionKind::RoRam => SlotKind::RoRam,
            RegionKind::Device => SlotKind::Device(r.s2.unwrap_or(S2Attr::DeviceNGnRE)),
            RegionKind::Mmio => continue,
        };
        slots.push(Slot { ipa: r.ipa, size: r.size, kind });
        segments.extend(compact(r.ipa, &case.initial_bytes(r)));
        digests.push((r.ipa, r.size));
    }
    segments.extend(compact(abi::PARAMS_BASE, &params.to_bytes()));
    segments.extend(compact(tables.ttbr0(), &tables.bytes()));
    let bytes: usize = segments.iter().map(|s| s.bytes.len()).sum();
    if bytes + JOB_OVERHEAD > trapdiff_arch::wire::MAX_PAYLOAD {
        return Err(LowerError::TooLarge { bytes });
    }

    let mut readback = vec![(abi::REPORT_BASE, abi::report::USED as u32)];
    for w in &case.observe.mem {
        // validate() checked that the window's region exists.
        if let Some(r) = case.region(&w.region) {
            readback.push((r.ipa + w.offset, w.len));
        }
    }

    Ok(Job {
        seq,
        aarch32: isa.is_aarch32(),
        entry: runtime::entry(isa.is_aarch32()),
        slots,
        segments,
        mmio_reads: reads,
        mmio_read_default: case.vmm.read_default,
        nisv_to_user: case.vmm.nisv_to_user,
        on_nisv: case.vmm.on_nisv,
        on_mmio: case.vmm.on_mmio,
        timeout_ms: case.limits.timeout_ms,
        max_exits: case.limits.max_exits,
        digests,
        readback,
    })
}

/// The stage-1 mapping a region gets (`None`: left unmapped), per `case::Region::s1`.
pub fn region_perm(case: &Case, r: &Region) -> Option<Perm> {
    let default_attr = match r.kind {
        RegionKind::Ram | RegionKind::RoRam => S1Attr::NormalWb,
        RegionKind::Mmio | RegionKind::Device => S1Attr::DeviceNGnRnE,
    };
    let el0_default = case.state.el == El::El0;
    let (attr, perm, el0) = match r.s1 {
        Some(s1) => (s1.attr, s1.perm, s1.el0.unwrap_or(el0_default)),
        None => (default_attr, S1Perm::Rwx, el0_default),
    };
    let (write, exec) = match perm {
        S1Perm::Rwx => (true, true),
        S1Perm::Rw => (true, false),
        S1Perm::Rx => (false, true),
        S1Perm::R => (false, false),
        S1Perm::Unmapped => return None,
    };
    Some(Perm { attr, write, exec, el0 })
}

/// The case's stage-1 tables, at [`abi::TABLES_BASE`].
pub fn tables(case: &Case) -> Result<Stage1, LowerError> {
    let format = if case.state.isa.is_aarch32() { Format::Lpae } else { Format::A64 };
    let mut t = Stage1::new(format, abi::TABLES_BASE, (abi::TABLES_SIZE / crate::stage1::PAGE) as usize);
    let el1 = |attr, write, exec| Perm { attr, write, exec, el0: false };
    t.map(abi::RUNTIME_BASE, abi::RUNTIME_SIZE, el1(S1Attr::NormalWb, false, true))?;
    t.map(abi::PARAMS_BASE, abi::PARAMS_SIZE, el1(S1Attr::NormalWb, true, false))?;
    t.map(abi::STACK_BASE, abi::STACK_SIZE, el1(S1Attr::NormalWb, true, false))?;
    t.map(abi::REPORT_BASE, abi::REPORT_SIZE, el1(S1Attr::NormalWb, true, false))?;
    t.map(abi::HARNESS_MMIO, crate::stage1::PAGE, el1(S1Attr::DeviceNGnRnE, true, false))?;
    for r in &case.memory {
        match region_perm(case, r) {
            Some(p) => t.map(r.ipa, r.size, p)?,
            None => t.unmapped(r.ipa, r.size)?,
        }
    }
    Ok(t)
}

/// SCTLR_EL1 (A64) or SCTLR (AArch32) for the case (Arm ARM D24.2.168 / G8.2.126).
pub fn sctlr(case: &Case) -> u64 {
    let s = &case.sysregs;
    let mut v = if case.state.isa.is_aarch32() { u64::from(sctlr_bits::A32_RES1) | SCTLR_A32_CP15BEN } else { sctlr_bits::EL1_RES1 };
    if s.mmu {
        v |= sctlr_bits::M;
    }
    if s.align_check {
        v |= sctlr_bits::A;
    }
    if s.caches {
        v |= sctlr_bits::C | sctlr_bits::I;
    }
    if s.el0_cache_ops && !case.state.isa.is_aarch32() {
        v |= sctlr_bits::UCI | sctlr_bits::UCT | sctlr_bits::DZE;
    }
    v
}

/// TCR_EL1 (A64, Arm ARM D24.2.186) or TTBCR (AArch32 LPAE, G8.2.167).
pub fn tcr(isa: Isa) -> u64 {
    // Walks: IRGN0 = ORGN0 = 0b01 (Write-Back Write-Allocate), SH0 = 0b11 (Inner Shareable).
    let walk = (0b01 << 8) | (0b01 << 10) | (0b11 << 12);
    if isa.is_aarch32() {
        // EAE (bit 31) = 1: long descriptors; T0SZ = 0; EPD1 (bit 23) = 1: no TTBR1 walks.
        (1 << 31) | (1 << 23) | walk
    } else {
        // T0SZ = 64 - 40; TG0 = 0b00 (4 KiB); EPD1 (bit 23) = 1; IPS (bits [34:32]) = 0b010 (40 bits).
        u64::from(64 - VA_BITS_A64) | walk | (1 << 23) | (0b010 << 32)
    }
}

/// The parameter block (`abi::params`), field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub entry: u64,
    pub el0: bool,
    pub sctlr: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub mair: u64,
    pub cpacr: u64,
    pub fpexc: u32,
    pub fpscr: u32,
    pub on_exception_end: bool,
    pub max_exceptions: u32,
    pub end_marker: u64,
    /// x0..x30, sp / r0..r14.
    pub gprs: [u64; 32],
    /// 32 x 16 bytes: A64 V<n> at 16n; AArch32 D<n> at 8n.
    pub vregs: [u8; 512],
}

impl Params {
    pub fn for_case(case: &Case, ttbr0: u64) -> Params {
        let isa = case.state.isa;
        let a32 = isa.is_aarch32();
        let mut gprs = [0u64; 32];
        let mut vregs = [0u8; 512];
        // Q before D (the map's order), so an AArch32 D value overrides the Q holding it.
        for (reg, v) in &case.regs {
            match *reg {
                Reg::X(n) | Reg::R(n) => gprs[usize::from(n)] = v.0 as u64,
                Reg::Sp => gprs[31] = v.0 as u64,
                Reg::Q(n) => {
                    let o = 16 * usize::from(n);
                    vregs[o..o + 16].copy_from_slice(&v.0.to_le_bytes());
                }
                Reg::D(n) => {
                    let o = if a32 { 8 } else { 16 } * usize::from(n);
                    vregs[o..o + 8].copy_from_slice(&(v.0 as u64).to_le_bytes());
                }
            }
        }
        Params {
            entry: case.code.ipa | u64::from(isa == Isa::T32),
            el0: case.state.el == El::El0,
            sctlr: sctlr(case),
            tcr: tcr(isa),
            ttbr0,
            mair: S1Attr::runtime_mair(),
            cpacr: case.sysregs.cpacr.unwrap_or(if a32 { DEFAULT_CPACR_A32 } else { DEFAULT_CPACR_A64 }),
            fpexc: if a32 { case.sysregs.fpexc.unwrap_or(DEFAULT_FPEXC) } else { 0 },
            fpscr: case.sysregs.fpscr.unwrap_or(0),
            on_exception_end: case.state.on_exception == ExceptionAction::End,
            max_exceptions: case.limits.max_exceptions,
            end_marker: case.code.ipa + case.code.size(isa),
            gprs,
            vregs,
        }
    }

    /// The page placed at [`abi::PARAMS_BASE`].
    pub fn to_bytes(&self) -> Vec<u8> {
        use abi::params as p;
        let mut page = vec![0u8; abi::PARAMS_SIZE as usize];
        let mut put = |off: u64, v: u64| page[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
        put(p::OFF_MAGIC, p::MAGIC);
        put(p::OFF_ENTRY, self.entry);
        put(p::OFF_EL0, u64::from(self.el0));
        put(p::OFF_SCTLR, self.sctlr);
        put(p::OFF_TCR, self.tcr);
        put(p::OFF_TTBR0, self.ttbr0);
        put(p::OFF_MAIR, self.mair);
        put(p::OFF_CPACR, self.cpacr);
        put(p::OFF_FPEXC, u64::from(self.fpexc));
        put(p::OFF_FPSCR, u64::from(self.fpscr));
        put(p::OFF_ON_EXCEPTION, u64::from(self.on_exception_end));
        put(p::OFF_MAX_EXCEPTIONS, u64::from(self.max_exceptions));
        put(p::OFF_END_MARKER, self.end_marker);
        for (i, g) in self.gprs.iter().enumerate() {
            put(p::OFF_GPRS + 8 * i as u64, *g);
        }
        let v = p::OFF_VREGS as usize;
        page[v..v + 512].copy_from_slice(&self.vregs);
        page
    }
}

/// The non-zero parts of `bytes` (placed at `ipa`) as segments; zero runs shorter than
/// [`SEGMENT_MIN_GAP`] stay inside a segment. Slots start zeroed, so nothing is lost.
pub fn compact(ipa: u64, bytes: &[u8]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0 {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i; // one past the last non-zero byte so far
        while i < bytes.len() {
            if bytes[i] != 0 {
                i += 1;
                end = i;
            } else {
                let zeros = bytes[i..].iter().take_while(|&&b| b == 0).count();
                if zeros >= SEGMENT_MIN_GAP || i + zeros == bytes.len() {
                    break;
                }
                i += zeros;
            }
        }
        out.push(Segment { ipa: ipa + start as u64, bytes: bytes[start..end].to_vec() });
        i = end;
    }
    out
}
