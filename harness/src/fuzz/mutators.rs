//! Mutators that know the families: instructions from the trap-prone catalogue, operands and
//! addressing modes, addresses moved across region/page/alignment boundaries, region kinds
//! and stage-1/stage-2 attributes, FP enables (CPACR/FPEXC), SCTLR bits, the instruction set
//! and exception level, and the VMM's NISV/MMIO choices.
//!
//! Each [`Mutation`] is a plain function on a `Case` (so it is tested on `trapdiff-arch`
//! types alone) that keeps the case valid by construction; [`CaseMutator`] wraps one as a
//! LibAFL `Mutator`, re-derives the `asm` beside every word with Capstone, and as a last
//! guard checks `Case::validate` (the loader's check), putting the case back if it fails.

use std::borrow::Cow;

use guest_payloads::encode::Disassembler;
use libafl::corpus::CorpusId;
use libafl::mutators::{MutationResult, Mutator};
use libafl::state::HasRand;
use libafl::Error;
use libafl_bolts::rands::Rand;
use libafl_bolts::Named;
use trapdiff_arch::case::{ExceptionAction, MmioAction, NisvAction, Reg, RegValue, S1Perm, PAGE_SIZE, S1};
use trapdiff_arch::memattr::{S1Attr, S2Attr};
use trapdiff_arch::sysreg::{cpacr, fpexc};
use trapdiff_arch::{Case, El, Isa, RegionKind};

use super::catalogue::{self, Operands};
use super::input::CaseInput;

/// Most instructions a mutated case holds: short cases run fast and minimise quickly.
pub const MAX_INSNS: usize = 24;
/// Largest region a mutation makes (pages).
const MAX_REGION_PAGES: u64 = 4;

/// One kind of mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// Replace an instruction with one from the catalogue.
    ReplaceInsn,
    /// Insert a catalogue instruction.
    InsertInsn,
    /// Drop an instruction (never the last one).
    DeleteInsn,
    /// Change a register, offset or addressing-mode field of an instruction in place.
    Operands,
    /// Point an address register at a region, page or alignment boundary, into a gap, or
    /// into another region.
    MoveAddress,
    /// Give a data register an interesting value.
    RegValue,
    /// Change a region's kind (ram, ro_ram, mmio, device).
    RegionKind,
    /// Change a region's stage-1 attribute and permissions.
    RegionS1,
    /// Change a device region's stage-2 attribute.
    RegionS2,
    /// Grow or shrink a region by pages (moves the boundary the addresses straddle).
    RegionSize,
    /// Change CPACR / FPEXC / FPSCR (the FP enable checks).
    FpControl,
    /// Toggle SCTLR.A, SCTLR.M, SCTLR.C/I or the EL0 cache-operation enables.
    Sctlr,
    /// Switch between A64, A32 and T32, rewriting the code with that set's instructions.
    SwitchIsa,
    /// Switch between EL0 and EL1, or the runtime's action on an exception.
    SwitchEl,
    /// Change the VMM's side: NISV to user, its NISV and MMIO actions, MMIO read values.
    Vmm,
}

impl Mutation {
    pub const ALL: [Mutation; 15] = [
        Mutation::ReplaceInsn,
        Mutation::InsertInsn,
        Mutation::DeleteInsn,
        Mutation::Operands,
        Mutation::MoveAddress,
        Mutation::RegValue,
        Mutation::RegionKind,
        Mutation::RegionS1,
        Mutation::RegionS2,
        Mutation::RegionSize,
        Mutation::FpControl,
        Mutation::Sctlr,
        Mutation::SwitchIsa,
        Mutation::SwitchEl,
        Mutation::Vmm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::ReplaceInsn => "replace-insn",
            Mutation::InsertInsn => "insert-insn",
            Mutation::DeleteInsn => "delete-insn",
            Mutation::Operands => "operands",
            Mutation::MoveAddress => "move-address",
            Mutation::RegValue => "reg-value",
            Mutation::RegionKind => "region-kind",
            Mutation::RegionS1 => "region-s1",
            Mutation::RegionS2 => "region-s2",
            Mutation::RegionSize => "region-size",
            Mutation::FpControl => "fp-control",
            Mutation::Sctlr => "sctlr",
            Mutation::SwitchIsa => "switch-isa",
            Mutation::SwitchEl => "switch-el",
            Mutation::Vmm => "vmm",
        }
    }

    /// Apply to `case`; false when this mutation does not apply (nothing changed).
    /// The result is valid whenever `case` was, except for the rare operand edit whose word
    /// no longer decodes safely (then false and `case` is unchanged).
    pub fn apply<R: Rand>(self, r: &mut R, case: &mut Case, d: Option<&Disassembler>) -> bool {
        match self {
            Mutation::ReplaceInsn => replace_insn(r, case),
            Mutation::InsertInsn => insert_insn(r, case),
            Mutation::DeleteInsn => delete_insn(r, case),
            Mutation::Operands => operands(r, case, d),
            Mutation::MoveAddress => move_address(r, case),
            Mutation::RegValue => reg_value(r, case),
            Mutation::RegionKind => region_kind(r, case),
            Mutation::RegionS1 => region_s1(r, case),
            Mutation::RegionS2 => region_s2(r, case),
            Mutation::RegionSize => region_size(r, case),
            Mutation::FpControl => fp_control(r, case),
            Mutation::Sctlr => sctlr(r, case),
            Mutation::SwitchIsa => switch_isa(r, case),
            Mutation::SwitchEl => switch_el(r, case),
            Mutation::Vmm => vmm(r, case),
        }
    }
}

fn pick<R: Rand, T: Copy>(r: &mut R, v: &[T]) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[r.below_or_zero(v.len())])
    }
}

/// The general-purpose register `n` of the case's instruction set.
fn gpr(isa: Isa, n: u8) -> Reg {
    if isa == Isa::A64 {
        Reg::X(n)
    } else {
        Reg::R(n)
    }
}

fn gpr_index(reg: Reg) -> Option<u8> {
    match reg {
        Reg::X(n) | Reg::R(n) => Some(n),
        _ => None,
    }
}

/// Registers (below 8) whose initial value points at or next to a region: the case's
/// address registers.
fn address_regs(case: &Case) -> Vec<u8> {
    case.regs
        .iter()
        .filter_map(|(reg, v)| {
            let n = gpr_index(*reg).filter(|n| *n < 8)?;
            let a = u64::try_from(v.0).ok()?;
            case.memory.iter().any(|m| a.wrapping_add(PAGE_SIZE) >= m.ipa && a < m.ipa + m.size + PAGE_SIZE).then_some(n)
        })
        .collect()
}

/// Operands for a catalogue instruction: the base is an address register when the case has
/// one, data registers are distinct from it and from each other.
fn choose_operands<R: Rand>(r: &mut R, case: &Case) -> Operands {
    let addrs = address_regs(case);
    let rn = pick(r, &addrs).unwrap_or_else(|| r.below_or_zero(8) as u8);
    let others: Vec<u8> = (0..8u8).filter(|x| *x != rn && !addrs.contains(x)).collect();
    let others = if others.len() >= 2 { others } else { (0..8u8).filter(|x| *x != rn).collect() };
    let rt = pick(r, &others).unwrap_or(0);
    let rest: Vec<u8> = others.iter().copied().filter(|x| *x != rt).collect();
    let rt2 = pick(r, &rest).unwrap_or((rt + 1) % 8);
    let off = 8 * r.below_or_zero(16) as i16 - 64;
    Operands { rn, rt, rt2, off }
}

fn catalogue_word<R: Rand>(r: &mut R, case: &Case) -> u32 {
    let o = choose_operands(r, case);
    let e = catalogue::entries(case.state.isa, o);
    pick(r, &e).map(|e| e.w).unwrap_or(0)
}

fn replace_insn<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let i = r.below_or_zero(case.code.insns.len());
    let w = catalogue_word(r, case);
    set_word(case, i, w)
}

/// Set instruction `i`'s word; the code may grow by 2 bytes (T32), so check it still fits.
fn set_word(case: &mut Case, i: usize, w: u32) -> bool {
    let Some(insn) = case.code.insns.get_mut(i) else { return false };
    let old = insn.w;
    insn.w = w;
    insn.asm.clear();
    if !code_fits(case) {
        case.code.insns[i].w = old;
        return false;
    }
    true
}

fn code_fits(case: &Case) -> bool {
    let isa = case.state.isa;
    let end = case.code.ipa + case.code.size(isa) + trapdiff_arch::abi::code_trailer_size(isa);
    case.region_at(case.code.ipa).is_some_and(|m| end <= m.ipa + m.size)
}

fn insert_insn<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    if case.code.insns.len() >= MAX_INSNS {
        return false;
    }
    let i = r.below_or_zero(case.code.insns.len() + 1);
    let w = catalogue_word(r, case);
    case.code.insns.insert(i, trapdiff_arch::case::Insn::new(w, ""));
    if !code_fits(case) {
        case.code.insns.remove(i);
        return false;
    }
    true
}

fn delete_insn<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    if case.code.insns.len() <= 1 {
        return false;
    }
    let i = r.below_or_zero(case.code.insns.len());
    case.code.insns.remove(i);
    true
}

/// Fields an operand edit may change: (lsb, width). A64 (C4.1 load/store encodings): Rt
/// [4:0], Rn [9:5], imm9/Rm [20:12]/[20:16], the index bits [11:10], the size [31:30], opc
/// [23:22]. A32 and 32-bit T32 (F4.1 / F3.1): Rt [15:12], Rn [19:16], imm [7:0], and the
/// P/U/W bits [24],[23],[21] (T32 32-bit: hw2 P/U/W [10:8]). 16-bit T32: Rt [2:0], Rn
/// [5:3], imm5 [10:6].
fn operand_fields(isa: Isa, w: u32) -> &'static [(u32, u32)] {
    match isa {
        Isa::A64 => &[(0, 5), (5, 5), (12, 9), (16, 5), (10, 2), (30, 2), (22, 2)],
        Isa::A32 => &[(12, 4), (16, 4), (0, 8), (24, 1), (23, 1), (21, 1)],
        Isa::T32 if w <= 0xffff => &[(0, 3), (3, 3), (6, 5)],
        Isa::T32 => &[(12, 4), (16, 4), (0, 8), (8, 3), (21, 1), (23, 1)],
    }
}

/// Whether a decoded instruction leaves the runtime alone: no branches or PC/SP/LR writes,
/// no system-register writes beyond the FP controls, no WFI/WFE (nothing would wake the
/// vCPU), no HVC/SMC (KVM answers them itself: PSCI could stop the VM), no IT blocks or
/// SETEND/CPS (they change how the runtime's own code runs), and not the end marker.
pub fn is_safe_text(isa: Isa, text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    let (m, ops) = text.split_once(' ').unwrap_or((&text, ""));
    let m = m.trim_end_matches(".w").trim_end_matches(".n");
    let regs = ops.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| match isa {
        Isa::A64 => matches!(t, "sp" | "wsp" | "x29" | "x30" | "w29" | "w30" | "lr" | "fp"),
        _ => matches!(t, "sp" | "lr" | "pc" | "r13" | "r14" | "r15"),
    });
    let end_marker = m == "svc" && (ops.contains("0x7d") || ops == "#125");
    if regs || end_marker {
        return false;
    }
    // MSR only to the FP controls (fpcr/fpsr/fpscr/fpexc are what fp32 varies); MCR only to
    // c7 (the AArch32 cache-maintenance operations); DC/IC by VA (the cmo family).
    let fp_ctl = ["fpcr", "fpsr", "fpscr", "fpexc"].iter().any(|r| ops.starts_with(r));
    if (matches!(m, "msr" | "vmsr") && fp_ctl) || (m == "mcr" && ops.starts_with("p15") && ops.contains("c7,")) || matches!(m, "dc" | "ic") {
        return true;
    }
    let simd_b = ["bic", "bf", "bsl", "bif", "bit", "brk"].iter().any(|p| m.starts_with(p));
    let branch = m.starts_with('b') && !simd_b || matches!(m, "cbz" | "cbnz" | "tbz" | "tbnz" | "tbb" | "tbh") || m.starts_with("ret") || m.starts_with("eret");
    let it_block = m.starts_with("it") && m.len() <= 5 && m[1..].chars().all(|c| c == 't' || c == 'e');
    let denied = [
        "wfi", "wfe", "wfit", "wfet", "hvc", "smc", "setend", "cps", "cpsie", "cpsid", "srs", "rfe", "hlt", "dcps1", "dcps2", "dcps3", "drps", "msr", "mcr",
        "mcrr", "mcr2", "mcrr2", "ldc", "stc", "ldc2", "stc2", "cdp", "cdp2", "sys", "tlbi", "at", "push", "pop", "vpush", "vpop",
    ];
    !(branch || it_block || denied.contains(&m) || m.starts_with("srs") || m.starts_with("rfe"))
}

fn operands<R: Rand>(r: &mut R, case: &mut Case, d: Option<&Disassembler>) -> bool {
    let Some(d) = d else { return false };
    let isa = case.state.isa;
    let i = r.below_or_zero(case.code.insns.len());
    let old = case.code.insns[i].w;
    let fields = operand_fields(isa, old);
    let Some((lsb, width)) = pick(r, fields) else { return false };
    let mask = ((1u64 << width) - 1) as u32;
    // Register fields take a low register (an address register for Rn); others any value.
    let value = if (3..=5).contains(&width) && matches!(lsb, 0 | 3 | 5 | 12 | 16) {
        let addrs = address_regs(case);
        let is_rn = matches!((isa, lsb), (Isa::A64, 5) | (Isa::A32, 16) | (Isa::T32, 16) | (Isa::T32, 3));
        if is_rn {
            pick(r, &addrs).map(u32::from).unwrap_or_else(|| r.below_or_zero(8) as u32)
        } else {
            r.below_or_zero(8) as u32
        }
    } else {
        r.next() as u32 & mask
    };
    let w = (old & !(mask << lsb)) | (value & mask) << lsb;
    if w == old || (isa == Isa::T32 && w > 0xffff && !trapdiff_arch::case::t32_is_32bit((w >> 16) as u16)) {
        return false;
    }
    let pc = case.code.addresses(isa).get(i).copied().unwrap_or(case.code.ipa);
    match d.disasm_at(isa, w, pc) {
        Ok(text) if is_safe_text(isa, &text) => set_word(case, i, w),
        _ => false,
    }
}

/// Interesting addresses around region `m`: its edges, page boundaries inside it, misaligned
/// offsets, one past its end, just below its start.
fn boundary_address<R: Rand>(r: &mut R, base: u64, size: u64) -> u64 {
    let delta = [0u64, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64][r.below_or_zero(11)];
    match r.below_or_zero(6) {
        0 => base + delta,
        1 => (base + size).wrapping_sub(delta.max(1)),
        2 => base + size + delta,
        3 => base.wrapping_sub(delta.max(1)),
        4 => {
            let pages = size / PAGE_SIZE;
            let p = 1 + r.below_or_zero(pages.max(1) as usize) as u64;
            (base + p * PAGE_SIZE).wrapping_sub(delta)
        }
        _ => base + (r.next() % size.max(1)),
    }
}

fn move_address<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let isa = case.state.isa;
    let addrs = address_regs(case);
    let n = match pick(r, &addrs) {
        Some(n) if r.coinflip(0.8) => n,
        _ => r.below_or_zero(8) as u8,
    };
    let limit = if isa.is_aarch32() { 1u64 << 32 } else { trapdiff_arch::case::IPA_LIMIT };
    let a = if r.coinflip(0.1) {
        // A gap no region covers: an access outside every memslot.
        let top = case.memory.iter().map(|m| m.ipa + m.size).max().unwrap_or(0x4000_0000);
        top + PAGE_SIZE * (1 + r.below_or_zero(16) as u64)
    } else {
        let Some(m) = pick(r, &(0..case.memory.len()).collect::<Vec<_>>()) else { return false };
        let m = &case.memory[m];
        boundary_address(r, m.ipa, m.size)
    };
    if a >= limit {
        return false;
    }
    case.regs.insert(gpr(isa, n), RegValue(u128::from(a)));
    true
}

fn reg_value<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let isa = case.state.isa;
    let addrs = address_regs(case);
    let data: Vec<u8> = (0..8u8).filter(|n| !addrs.contains(n)).collect();
    let (reg, bits) = if r.coinflip(0.2) {
        let n = r.below_or_zero(if isa == Isa::A64 { 32 } else { 16 }) as u8;
        (Reg::Q(n), 128)
    } else {
        let Some(n) = pick(r, &data) else { return false };
        let reg = gpr(isa, n);
        (reg, reg.bits())
    };
    let interesting: [u128; 8] = [0, 1, 0x7f, 0x80, 0xffff, 0x8000_0000, 0x7fff_ffff_ffff_ffff, u128::MAX];
    let v = if r.coinflip(0.5) { interesting[r.below_or_zero(8)] } else { u128::from(r.next()) | u128::from(r.next()) << 64 };
    let v = if bits >= 128 { v } else { v & ((1u128 << bits) - 1) };
    case.regs.insert(reg, RegValue(v));
    true
}

fn code_region(case: &Case) -> Option<usize> {
    case.memory.iter().position(|m| case.code.ipa >= m.ipa && case.code.ipa < m.ipa + m.size)
}

fn region_kind<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let code = code_region(case);
    let candidates: Vec<usize> = (0..case.memory.len()).filter(|i| Some(*i) != code).collect();
    let Some(i) = pick(r, &candidates) else { return false };
    let kinds = [RegionKind::Ram, RegionKind::RoRam, RegionKind::Mmio, RegionKind::Device];
    let old = case.memory[i].kind;
    let others: Vec<RegionKind> = kinds.into_iter().filter(|k| *k != old).collect();
    let Some(kind) = pick(r, &others) else { return false };
    let m = &mut case.memory[i];
    m.kind = kind;
    m.s2 = (kind == RegionKind::Device).then(|| [S2Attr::DeviceNGnRE, S2Attr::NormalNc, S2Attr::Normal][r.below_or_zero(3)]);
    if kind == RegionKind::Mmio {
        m.fill = 0;
        m.init.clear();
        let name = m.name.clone();
        case.observe.mem.retain(|w| w.region != name);
    }
    true
}

fn region_s1<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    if case.memory.is_empty() {
        return false;
    }
    let i = r.below_or_zero(case.memory.len());
    let is_code = Some(i) == code_region(case);
    let s1 = if r.coinflip(0.15) {
        None
    } else {
        // The code's own region stays executable Normal memory, or the case never runs.
        let attr =
            if is_code { [S1Attr::NormalWb, S1Attr::NormalNc, S1Attr::NormalWt][r.below_or_zero(3)] } else { S1Attr::ALL[r.below_or_zero(S1Attr::ALL.len())] };
        let perms = if is_code { &[S1Perm::Rwx, S1Perm::Rx][..] } else { &[S1Perm::Rwx, S1Perm::Rw, S1Perm::Rx, S1Perm::R, S1Perm::Unmapped][..] };
        let perm = perms[r.below_or_zero(perms.len())];
        let el0 = match r.below_or_zero(3) {
            0 => None,
            1 => Some(true),
            _ if is_code => None,
            _ => Some(false),
        };
        Some(S1 { attr, perm, el0 })
    };
    if case.memory[i].s1 == s1 {
        return false;
    }
    case.memory[i].s1 = s1;
    true
}

fn region_s2<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let devs: Vec<usize> = (0..case.memory.len()).filter(|i| case.memory[*i].kind == RegionKind::Device).collect();
    let Some(i) = pick(r, &devs) else { return false };
    let attrs = [None, Some(S2Attr::DeviceNGnRE), Some(S2Attr::NormalNc), Some(S2Attr::Normal)];
    let new = attrs[r.below_or_zero(4)];
    if case.memory[i].s2 == new {
        return false;
    }
    case.memory[i].s2 = new;
    true
}

fn region_size<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    if case.memory.is_empty() {
        return false;
    }
    let i = r.below_or_zero(case.memory.len());
    let pages = 1 + r.below_or_zero(MAX_REGION_PAGES as usize) as u64;
    let size = pages * PAGE_SIZE;
    let m = &case.memory[i];
    if size == m.size {
        return false;
    }
    let end = m.ipa + size;
    // No overlap with the other regions, contents and windows still inside, code still fits.
    let overlaps = case.memory.iter().enumerate().any(|(j, o)| j != i && m.ipa < o.ipa + o.size && o.ipa < end);
    let inits_fit = m.init.iter().all(|x| x.offset + x.bytes.len() as u64 <= size);
    let windows_fit = case.observe.mem.iter().filter(|w| w.region == m.name).all(|w| w.offset + u64::from(w.len) <= size);
    if overlaps || !inits_fit || !windows_fit || end > trapdiff_arch::abi::RESERVED_BASE && m.ipa < trapdiff_arch::abi::RESERVED_END {
        return false;
    }
    let old = m.size;
    case.memory[i].size = size;
    if !code_fits(case) {
        case.memory[i].size = old;
        return false;
    }
    true
}

fn fp_control<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let isa = case.state.isa;
    match r.below_or_zero(3) {
        0 => {
            // CPACR_EL1.FPEN / CPACR.cp10,cp11 (kept equal: a mismatch is CONSTRAINED
            // UNPREDICTABLE, Arm ARM G8.2.30) and ASEDIS.
            let field = u64::from([cpacr::NONE, cpacr::PL1_ONLY, 0b10, cpacr::FULL][r.below_or_zero(4)]);
            let v = if isa == Isa::A64 {
                field << cpacr::FPEN_SHIFT
            } else {
                let asedis = if r.coinflip(0.25) { u64::from(cpacr::ASEDIS) } else { 0 };
                field << cpacr::CP10_SHIFT | field << cpacr::CP11_SHIFT | asedis
            };
            let v = if r.coinflip(0.15) { None } else { Some(v) };
            let changed = case.sysregs.cpacr != v;
            case.sysregs.cpacr = v;
            changed
        }
        1 if isa.is_aarch32() => {
            let mut v = if r.coinflip(0.5) { fpexc::EN } else { 0 };
            for bit in [fpexc::EX, fpexc::DEX, fpexc::FP2V, fpexc::VV, fpexc::TFV, fpexc::IDF, fpexc::IXF, fpexc::UFF, fpexc::OFF, fpexc::DZF, fpexc::IOF] {
                if r.coinflip(0.1) {
                    v |= bit;
                }
            }
            let v = if r.coinflip(0.1) { None } else { Some(v) };
            let changed = case.sysregs.fpexc != v;
            case.sysregs.fpexc = v;
            changed
        }
        _ => {
            // FPSCR/FPCR rounding mode, flush-to-zero, default NaN, and the cumulative flags.
            let v = [0u32, 0x0040_0000, 0x0080_0000, 0x0100_0000, 0x0200_0000, 0x0000_009f, 0x0800_0000][r.below_or_zero(7)];
            let v = if r.coinflip(0.1) { None } else { Some(v) };
            let changed = case.sysregs.fpscr != v;
            case.sysregs.fpscr = v;
            changed
        }
    }
}

fn sctlr<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let s = &mut case.sysregs;
    match r.below_or_zero(4) {
        0 => s.align_check = !s.align_check,
        1 => s.mmu = !s.mmu,
        2 => s.caches = !s.caches,
        _ => s.el0_cache_ops = !s.el0_cache_ops,
    }
    true
}

/// A register of one instruction set as the other names it: X<n>/R<n> for n <= 12 (r13+
/// are SP/LR/PC in AArch32), Q<n> for n < 16, D<n> unchanged, A64 SP has no counterpart.
fn convert_reg(reg: Reg, to: Isa) -> Option<Reg> {
    match (reg, to.is_aarch32()) {
        (Reg::X(n), true) | (Reg::R(n), true) if n <= 12 => Some(Reg::R(n)),
        (Reg::R(n), false) | (Reg::X(n), false) => Some(Reg::X(n)),
        (Reg::Q(n), true) if n < 16 => Some(Reg::Q(n)),
        (Reg::Q(n), false) => Some(Reg::Q(n)),
        (Reg::D(n), _) => Some(Reg::D(n)),
        _ => None,
    }
}

fn switch_isa<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let from = case.state.isa;
    let others: Vec<Isa> = [Isa::A64, Isa::A32, Isa::T32].into_iter().filter(|i| *i != from).collect();
    let Some(to) = pick(r, &others) else { return false };
    if to.is_aarch32() && case.memory.iter().any(|m| m.ipa + m.size > 1 << 32) {
        return false;
    }
    let old = case.clone();
    case.state.isa = to;
    case.regs = std::mem::take(&mut case.regs)
        .into_iter()
        .filter_map(|(reg, v)| {
            let reg = convert_reg(reg, to)?;
            let v = if reg.bits() < 128 { RegValue(v.0 & ((1u128 << reg.bits()) - 1)) } else { v };
            Some((reg, v))
        })
        .collect();
    let mut seen = Vec::new();
    case.observe.regs = std::mem::take(&mut case.observe.regs)
        .into_iter()
        .filter_map(|reg| convert_reg(reg, to))
        .filter(|r| {
            !seen.contains(r) && {
                seen.push(*r);
                true
            }
        })
        .collect();
    if to == Isa::A64 {
        case.sysregs.fpexc = None;
    }
    // CPACR's layout differs (FPEN vs cp10/cp11): back to the runtime's default.
    case.sysregs.cpacr = None;
    case.code.ipa &= !(to.insn_align() - 1);
    let n = case.code.insns.len();
    case.code.insns.clear();
    for _ in 0..n {
        let w = catalogue_word(r, case);
        case.code.insns.push(trapdiff_arch::case::Insn::new(w, ""));
    }
    if case.code.ipa < old.code.ipa && code_region(case) != code_region(&old) || !code_fits(case) {
        *case = old;
        return false;
    }
    true
}

fn switch_el<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    if r.coinflip(0.7) {
        case.state.el = if case.state.el == El::El0 { El::El1 } else { El::El0 };
    } else {
        case.state.on_exception = match case.state.on_exception {
            ExceptionAction::Skip => ExceptionAction::End,
            ExceptionAction::End => ExceptionAction::Skip,
        };
    }
    true
}

fn vmm<R: Rand>(r: &mut R, case: &mut Case) -> bool {
    let v = &mut case.vmm;
    match r.below_or_zero(5) {
        0 => v.nisv_to_user = !v.nisv_to_user,
        1 => {
            v.on_nisv = match v.on_nisv {
                NisvAction::InjectAbort => NisvAction::Stop,
                NisvAction::Stop => NisvAction::InjectAbort,
            }
        }
        2 => {
            v.on_mmio = match v.on_mmio {
                MmioAction::Emulate => MmioAction::InjectAbort,
                MmioAction::InjectAbort => MmioAction::Emulate,
            }
        }
        3 if v.reads.len() < 8 => v.reads.push(RegValue(u128::from(r.next()))),
        3 => v.reads.clear(),
        _ => v.read_default = [0, u64::MAX, 0x8000_0000_0000_0000, trapdiff_arch::case::DEFAULT_MMIO_READ, r.next()][r.below_or_zero(5)],
    }
    true
}

/// Re-derive the Capstone text beside every word (addresses matter: PC-relative operands
/// print as absolute targets). Words Capstone cannot decode get an empty `asm`, which the
/// loader accepts.
pub fn sync_asm(case: &mut Case, d: Option<&Disassembler>) {
    let Some(d) = d else {
        case.code.insns.iter_mut().for_each(|i| i.asm.clear());
        return;
    };
    let isa = case.state.isa;
    let addrs = case.code.addresses(isa);
    // A mutation changes a word or two: the rest were disassembled at the same address the
    // last time (Capstone was 40% of the fuzzing thread's own time before this memo).
    ASM_MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() > ASM_MEMO_MAX {
            m.clear();
        }
        for (insn, pc) in case.code.insns.iter_mut().zip(addrs) {
            insn.asm = m.entry((isa, insn.w, pc)).or_insert_with(|| d.disasm_at(isa, insn.w, pc).unwrap_or_default()).clone();
        }
    });
}

/// Entries the memo may hold before it starts again (a few MB at most).
const ASM_MEMO_MAX: usize = 1 << 16;

thread_local! {
    /// Capstone's text for (instruction set, word, address): the same for every Disassembler.
    static ASM_MEMO: std::cell::RefCell<std::collections::HashMap<(Isa, u32, u64), String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Apply `m` to a copy, sync the disassembly, and accept it only if the loader would.
pub fn mutate_checked<R: Rand>(m: Mutation, r: &mut R, case: &mut Case, d: Option<&Disassembler>) -> bool {
    let mut c = case.clone();
    if !m.apply(r, &mut c, d) {
        return false;
    }
    sync_asm(&mut c, d);
    if c.validate().is_err() || c == *case || !sync_s1_tables(&mut c) {
        return false;
    }
    *case = c;
    true
}

/// A region holding a stage-1 table (`s1_table_for`) must start with the table for the case
/// as mutated (lowering checks it): rewrite it, as gen-suite does. False if the case no
/// longer lowers.
pub fn sync_s1_tables(case: &mut Case) -> bool {
    if case.memory.iter().all(|r| r.s1_table_for.is_none()) {
        return true;
    }
    let Ok(pages) = guest_payloads::lower::s1_table_pages(case) else { return false };
    for (name, bytes) in pages {
        if let Some(r) = case.memory.iter_mut().find(|r| r.name == name) {
            let len = bytes.len() as u64;
            r.init.retain(|i| i.offset >= len);
            r.init.insert(0, trapdiff_arch::case::Init { offset: 0, bytes });
        }
    }
    true
}

/// One [`Mutation`] as a LibAFL mutator.
pub struct CaseMutator {
    mutation: Mutation,
    name: Cow<'static, str>,
    disasm: Option<Disassembler>,
}

impl std::fmt::Debug for CaseMutator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaseMutator({})", self.mutation.name())
    }
}

impl CaseMutator {
    pub fn new(mutation: Mutation) -> CaseMutator {
        CaseMutator { mutation, name: Cow::Borrowed(mutation.name()), disasm: Disassembler::new().ok() }
    }
}

impl Named for CaseMutator {
    fn name(&self) -> &Cow<'static, str> {
        &self.name
    }
}

impl<S: HasRand> Mutator<CaseInput, S> for CaseMutator {
    fn mutate(&mut self, state: &mut S, input: &mut CaseInput) -> Result<MutationResult, Error> {
        if mutate_checked(self.mutation, state.rand_mut(), &mut input.0, self.disasm.as_ref()) {
            Ok(MutationResult::Mutated)
        } else {
            Ok(MutationResult::Skipped)
        }
    }

    fn post_exec(&mut self, _state: &mut S, _new_corpus_id: Option<CorpusId>) -> Result<(), Error> {
        Ok(())
    }
}

/// The tuple of every mutation.
pub type AllMutators = libafl_bolts::tuples::tuple_list_type!(
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator,
    CaseMutator
);

/// Every mutation, as the tuple LibAFL's scheduled mutators take.
pub fn all_mutators() -> AllMutators {
    use Mutation as M;
    libafl_bolts::tuples::tuple_list!(
        CaseMutator::new(M::ReplaceInsn),
        CaseMutator::new(M::InsertInsn),
        CaseMutator::new(M::DeleteInsn),
        CaseMutator::new(M::Operands),
        CaseMutator::new(M::MoveAddress),
        CaseMutator::new(M::RegValue),
        CaseMutator::new(M::RegionKind),
        CaseMutator::new(M::RegionS1),
        CaseMutator::new(M::RegionS2),
        CaseMutator::new(M::RegionSize),
        CaseMutator::new(M::FpControl),
        CaseMutator::new(M::Sctlr),
        CaseMutator::new(M::SwitchIsa),
        CaseMutator::new(M::SwitchEl),
        CaseMutator::new(M::Vmm),
    )
}
