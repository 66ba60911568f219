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
//!   EL0 cases in USR mode. A case that leaves its mode (AArch32 CPS/MSR to another mode, A64
//!   `msr spsel, #1`) makes its next exception look like the runtime's own: it ends as a
//!   backend error.
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
//! - **CNTKCTL** is set to 0 by the runtime: EL0 counter and timer accesses trap to EL1 (as
//!   after a KVM vCPU reset; architecturally its reset value is UNKNOWN).
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
//! - **Exit limit.** `limits.max_exits` counts VMM exits for case regions (MMIO and NISV
//!   exits); the runtime's stores to the harness page never count. The case ends with
//!   `End::ExitLimit` when exit number `max_exits + 1` would happen; that exit is not in the
//!   event stream (the model oracle's rule).
//! - **Final state.** Only when the runtime's epilogue ran (`End::Done`, `ExceptionLimit`,
//!   `EndOnException`): the observed registers and FP state at the end marker or at the
//!   exception that ended the case, and every region's digest and windows. A case cut off by a
//!   timeout, an exit limit, a KVM_RUN error or a VMM stop has no final state.

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
    /// A region holding a stage-1 table (`s1_table_for`) does not start with that table.
    S1Table { region: String },
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LowerError::Case(e) => write!(f, "invalid case: {e}"),
            LowerError::S1Table { region } => write!(
                f,
                "region `{region}` holds a stage-1 table (s1_table_for) but its first page is not the table the harness builds: regenerate the case (gen-suite) or fix its init"
            ),
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
    vec![Segment { ipa: abi::RUNTIME_BASE, bytes: runtime::A64.to_vec() }, Segment { ipa: abi::RUNTIME_A32_BASE, bytes: runtime::A32.to_vec() }]
}

/// Lower `case` into job number `seq`.
pub fn lower(case: &Case, seq: u32) -> Result<Job, LowerError> {
    case.validate()?;
    let isa = case.state.isa;
    let mut reads = Vec::with_capacity(case.vmm.reads.len());
    for (index, v) in case.vmm.reads.iter().enumerate() {
        reads.push(u64::try_from(v.0).map_err(|_| LowerError::MmioRead { index, value: v.0 })?);
    }
    let (tables, moved) = build_tables(case)?;
    for (i, bytes) in &moved {
        let r = &case.memory[*i];
        if case.initial_bytes(r).get(..bytes.len()) != Some(bytes.as_slice()) {
            return Err(LowerError::S1Table { region: r.name.clone() });
        }
    }
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
        quirks: Default::default(),
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

/// The case's stage-1 tables, at [`abi::TABLES_BASE`] (a level-3 table a region holds,
/// `s1_table_for`, in that region).
pub fn tables(case: &Case) -> Result<Stage1, LowerError> {
    build_tables(case).map(|(t, _)| t)
}

/// The level-3 table each `s1_table_for` region must start with: (region name, bytes).
/// The generators write these into the region's `init`.
pub fn s1_table_pages(case: &Case) -> Result<Vec<(String, Vec<u8>)>, LowerError> {
    Ok(build_tables(case)?.1.into_iter().map(|(i, b)| (case.memory[i].name.clone(), b)).collect())
}

/// Bytes of a level-3 table moved into a case region, by the index of that region.
type MovedTables = Vec<(usize, Vec<u8>)>;

/// The tables, and the bytes of each moved level-3 table by holding region index.
fn build_tables(case: &Case) -> Result<(Stage1, MovedTables), LowerError> {
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
    let mut moved = Vec::new();
    for (i, r) in case.memory.iter().enumerate() {
        // validate() checked that the target exists and lies in one 2 MiB block.
        if let Some(target) = r.s1_table_for.as_deref().and_then(|n| case.region(n)) {
            if let Some(bytes) = t.move_leaf_table(target.ipa, r.ipa) {
                moved.push((i, bytes));
            }
        }
    }
    Ok((t, moved))
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

/// Cases for this crate's unit tests, written as JSON like the corpus.
#[cfg(test)]
pub(crate) mod testcase {
    use trapdiff_arch::case::Case;

    pub const EL1: &str = "el1";
    pub const EL0: &str = "el0";

    fn parse(s: &str) -> Case {
        let c: Case = serde_json::from_str(s).expect("test case JSON parses");
        c.validate().expect("test case is valid");
        c
    }

    /// An A64 case with every kind of region: code, a read-only NC data region with initial
    /// bytes, a device region, an unmapped RAM region, one above 4 GiB, and an MMIO hole.
    pub fn a64(el: &str) -> Case {
        parse(&format!(
            r#"{{
            "schema": 1, "name": "test/a64", "family": "misc",
            "state": {{ "isa": "a64", "el": "{el}" }},
            "memory": [
              {{ "name": "code", "ipa": "0x40000000", "size": "0x1000", "kind": "ram" }},
              {{ "name": "data", "ipa": "0x40100000", "size": "0x2000", "kind": "ram",
                 "s1": {{ "attr": "normal_nc", "perm": "r", "el0": true }},
                 "init": [ {{ "offset": "0x10", "bytes": "0102030400000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000005" }} ] }},
              {{ "name": "dev", "ipa": "0x50000000", "size": "0x1000", "kind": "device" }},
              {{ "name": "mmio", "ipa": "0x58000000", "size": "0x1000", "kind": "mmio" }},
              {{ "name": "hole", "ipa": "0x60000000", "size": "0x2000", "kind": "ram", "s1": {{ "attr": "normal_wb", "perm": "unmapped" }} }},
              {{ "name": "far", "ipa": "0xff00000000", "size": "0x1000", "kind": "ro_ram", "fill": 170 }}
            ],
            "code": {{ "ipa": "0x40000000", "insns": [
              {{ "w": "0xb9400020", "asm": "ldr w0, [x1]" }},
              {{ "w": "0xd4000001", "asm": "svc #0" }} ] }},
            "regs": {{ "x1": "0x58000010", "x30": "0x1e", "sp": "0x40000ff0", "q3": "0x00112233445566778899aabbccddeeff", "d4": "0x4444" }},
            "sysregs": {{ "fpscr": "0x3000000" }},
            "vmm": {{ "reads": [ "0x1234" ] }},
            "observe": {{ "regs": [ "x0", "x30", "sp", "q3", "d4" ], "fp": true,
                          "mem": [ {{ "region": "data", "offset": "0x10", "len": 4 }}, {{ "region": "far", "offset": "0", "len": 8 }} ] }},
            "limits": {{ "max_exceptions": 3 }}
        }}"#
        ))
    }

    /// A T32 case (AArch32) with a 16-bit and a 32-bit instruction.
    pub fn a32(el: &str) -> Case {
        parse(&format!(
            r#"{{
            "schema": 1, "name": "test/t32", "family": "fp32",
            "state": {{ "isa": "t32", "el": "{el}", "on_exception": "end" }},
            "memory": [
              {{ "name": "code", "ipa": "0x40000000", "size": "0x1000", "kind": "ram" }},
              {{ "name": "mmio", "ipa": "0x50000000", "size": "0x1000", "kind": "mmio" }}
            ],
            "code": {{ "ipa": "0x40000010", "insns": [
              {{ "w": "0x6808", "asm": "ldr r0, [r1]" }},
              {{ "w": "0xeef10a10", "asm": "vmrs r0, fpscr" }} ] }},
            "regs": {{ "r1": "0x50000000", "r13": "0x40000800", "q1": "0x0123456789abcdef0011223344556677", "d3": "0xd3d3" }},
            "sysregs": {{ "fpexc": "0x0", "cpacr": "0x500000" }},
            "observe": {{ "regs": [ "r0", "r13", "q1", "d2", "d3" ], "fp": true }}
        }}"#
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use abi::params as p;

    fn u64_at(b: &[u8], off: u64) -> u64 {
        let o = off as usize;
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// Rebuild a region's bytes from the job's segments.
    fn rebuild(job: &Job, ipa: u64, size: u64) -> Vec<u8> {
        let mut mem = vec![0u8; size as usize];
        for s in &job.segments {
            if s.ipa >= ipa && s.ipa < ipa + size {
                let o = (s.ipa - ipa) as usize;
                mem[o..o + s.bytes.len()].copy_from_slice(&s.bytes);
            }
        }
        mem
    }

    #[test]
    fn a64_parameter_block_holds_the_case() {
        let case = testcase::a64(testcase::EL0);
        let job = lower(&case, 9).unwrap();
        let page = rebuild(&job, abi::PARAMS_BASE, abi::PARAMS_SIZE);
        assert_eq!(u64_at(&page, p::OFF_MAGIC), p::MAGIC);
        assert_eq!(u64_at(&page, p::OFF_ENTRY), 0x4000_0000);
        assert_eq!(u64_at(&page, p::OFF_EL0), 1);
        // RES1 | M | C | I | UCI | UCT | DZE; A clear.
        assert_eq!(u64_at(&page, p::OFF_SCTLR), 0x34d0_d805);
        // T0SZ 24, IRGN0/ORGN0 WBWA, SH0 inner, 4 KiB granule, EPD1, IPS 40 bits.
        assert_eq!(u64_at(&page, p::OFF_TCR), 0x2_0080_3518);
        assert_eq!(u64_at(&page, p::OFF_TTBR0), abi::TABLES_BASE);
        assert_eq!(u64_at(&page, p::OFF_MAIR), 0x00ff_bb44_0c08_0400);
        assert_eq!(u64_at(&page, p::OFF_CPACR), 0x30_0000);
        assert_eq!(u64_at(&page, p::OFF_FPEXC), 0);
        assert_eq!(u64_at(&page, p::OFF_FPSCR), 0x300_0000);
        assert_eq!(u64_at(&page, p::OFF_ON_EXCEPTION), 0);
        assert_eq!(u64_at(&page, p::OFF_MAX_EXCEPTIONS), 3);
        // Two instructions: the end marker sits right after them, and the bytes are there.
        assert_eq!(u64_at(&page, p::OFF_END_MARKER), 0x4000_0008);
        let code = rebuild(&job, 0x4000_0000, 0x1000);
        assert_eq!(&code[8..12], &abi::code_trailer(Isa::A64)[..]);
        assert_eq!(u64_at(&page, p::OFF_GPRS + 8), 0x5800_0010);
        assert_eq!(u64_at(&page, p::OFF_GPRS + 30 * 8), 0x1e);
        assert_eq!(u64_at(&page, p::OFF_GPRS + 31 * 8), 0x4000_0ff0);
        // V3 whole, D4 = low half of V4.
        let v = p::OFF_VREGS;
        assert_eq!(u64_at(&page, v + 48), 0x8899_aabb_ccdd_eeff);
        assert_eq!(u64_at(&page, v + 56), 0x0011_2233_4455_6677);
        assert_eq!(u64_at(&page, v + 64), 0x4444);
        assert_eq!(u64_at(&page, v + 72), 0);
    }

    #[test]
    fn aarch32_parameter_block_uses_its_defaults_and_register_layout() {
        let case = testcase::a32(testcase::EL1);
        let pr = Params::for_case(&case, abi::TABLES_BASE);
        assert_eq!(pr.entry, 0x4000_0011, "T32 entry has bit 0 set");
        assert_eq!(pr.end_marker, 0x4000_0010 + 2 + 4);
        assert!(!pr.el0);
        assert!(pr.on_exception_end);
        assert_eq!(pr.cpacr, 0x50_0000, "the case's CPACR");
        assert_eq!(pr.fpexc, 0, "the case's FPEXC");
        // RES1 [23:22], [4:3] | CP15BEN | M | C | I; no UCI/UCT/DZE in AArch32.
        assert_eq!(pr.sctlr, 0x00c0_103d);
        // EAE, EPD1, walks inner-shareable WBWA, T0SZ 0.
        assert_eq!(pr.tcr, 0x8080_3500);
        assert_eq!(pr.gprs[13], 0x4000_0800);
        // Q1 is D3:D2; then D3 overrides its half.
        assert_eq!(&pr.vregs[16..24], &0x0011_2233_4455_6677u64.to_le_bytes());
        assert_eq!(&pr.vregs[24..32], &0xd3d3u64.to_le_bytes());
        let mut defaults = testcase::a32(testcase::EL0);
        defaults.sysregs.cpacr = None;
        defaults.sysregs.fpexc = None;
        let pr = Params::for_case(&defaults, abi::TABLES_BASE);
        assert_eq!((pr.cpacr, pr.fpexc, pr.el0), (0xf0_0000, 0x4000_0000, true));
    }

    #[test]
    fn job_lists_case_slots_digests_and_readback() {
        let case = testcase::a64(testcase::EL1);
        let job = lower(&case, 4).unwrap();
        assert_eq!(job.seq, 4);
        assert!(!job.aarch32);
        assert_eq!(job.entry, abi::RUNTIME_BASE);
        let want = vec![
            Slot { ipa: 0x4000_0000, size: 0x1000, kind: SlotKind::Ram },
            Slot { ipa: 0x4010_0000, size: 0x2000, kind: SlotKind::Ram },
            Slot { ipa: 0x5000_0000, size: 0x1000, kind: SlotKind::Device(S2Attr::DeviceNGnRE) },
            Slot { ipa: 0x6000_0000, size: 0x2000, kind: SlotKind::Ram },
            Slot { ipa: 0xff_0000_0000, size: 0x1000, kind: SlotKind::RoRam },
        ];
        assert_eq!(job.slots, want, "mmio has no slot; the runtime slot is implied");
        assert_eq!(job.digests, want.iter().map(|s| (s.ipa, s.size)).collect::<Vec<_>>());
        assert_eq!(job.readback, vec![(abi::REPORT_BASE, abi::report::USED as u32), (0x4010_0010, 4), (0xff_0000_0000, 8)]);
        assert_eq!(job.mmio_reads, vec![0x1234]);
        assert_eq!(job.mmio_read_default, trapdiff_arch::case::DEFAULT_MMIO_READ);
        assert_eq!((job.timeout_ms, job.max_exits), (2000, 64));
        // Every region's initial bytes, the params and the tables come back from the segments.
        for r in case.memory.iter().filter(|r| r.kind.has_memory()) {
            assert_eq!(rebuild(&job, r.ipa, r.size), case.initial_bytes(r), "region {}", r.name);
        }
        let t = tables(&case).unwrap();
        assert_eq!(rebuild(&job, abi::TABLES_BASE, t.bytes().len() as u64), t.bytes());
        // No segment lands in the runtime's code: that comes with SetRuntime.
        assert!(job.segments.iter().all(|s| s.ipa >= abi::PARAMS_BASE || s.ipa < abi::RUNTIME_BASE));
    }

    #[test]
    fn runtime_segments_place_both_runtimes() {
        let segs = runtime_segments();
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].ipa, segs[1].ipa), (abi::RUNTIME_BASE, abi::RUNTIME_A32_BASE));
        assert!(segs[0].ipa + segs[0].bytes.len() as u64 <= segs[1].ipa);
        assert!(segs[1].ipa + segs[1].bytes.len() as u64 <= abi::RUNTIME_BASE + abi::RUNTIME_SIZE);
        assert_eq!(lower(&testcase::a32(testcase::EL0), 1).unwrap().entry, abi::RUNTIME_A32_BASE);
    }

    #[test]
    fn compaction_splits_on_long_zero_runs_only() {
        assert!(compact(0x1000, &[0; 300]).is_empty());
        let mut b = vec![0u8; 400];
        b[3] = 1;
        b[3 + SEGMENT_MIN_GAP - 1] = 2; // gap of MIN_GAP - 2 zeros: same segment
        b[200] = 3; // long gap: new segment
        b[201] = 4;
        let segs = compact(0x1000, &b);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].ipa, 0x1003);
        assert_eq!(segs[0].bytes.len(), SEGMENT_MIN_GAP);
        assert_eq!((segs[0].bytes[0], *segs[0].bytes.last().unwrap()), (1, 2));
        assert_eq!(segs[1], Segment { ipa: 0x1000 + 200, bytes: vec![3, 4] });
        assert_eq!(compact(0, &[5, 0, 6]), vec![Segment { ipa: 0, bytes: vec![5, 0, 6] }]);
    }

    #[test]
    fn lowering_refuses_what_cannot_run() {
        let mut case = testcase::a64(testcase::EL1);
        case.vmm.reads.push(trapdiff_arch::case::RegValue(1 << 64));
        assert_eq!(lower(&case, 0), Err(LowerError::MmioRead { index: 1, value: 1 << 64 }));
        let mut case = testcase::a64(testcase::EL1);
        case.memory[5].size = 0x20_0000; // `far`, filled with 0xaa: 2 MiB of non-zero bytes
        let e = lower(&case, 0).unwrap_err();
        assert!(matches!(e, LowerError::TooLarge { .. }), "{e}");
        let mut case = testcase::a64(testcase::EL1);
        case.limits.max_exceptions = 17;
        let e = lower(&case, 0).unwrap_err();
        assert!(e.to_string().contains("limits.max_exceptions"), "{e}");
    }

    /// Every case of the committed suite lowers.
    #[test]
    fn the_suite_lowers() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/suite");
        let mut n = 0;
        for path in crate::case_files::json_files_in(&root) {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let case: Case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            lower(&case, n).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n > 1000, "only {n} suite cases under {}", root.display());
        eprintln!("lowered {n} suite cases");
    }
}
