//! icache: code written (by the guest or the host) and then executed.
//!
//! Why: after writing instructions, software must clean the D-cache to PoU and invalidate the
//! I-cache to PoU (unless CTR_EL0.IDC/DIC say it need not) before executing them (Arm ARM
//! B2.4.4 "Concurrent modification and execution of instructions" and D7.5.2 "Instruction
//! cache maintenance"). A hypervisor adds its own layer: KVM maps guest pages executable at
//! stage 2 lazily and performs the I-cache maintenance itself when it first grants execute
//! permission (arch/arm64/kvm/mmu.c, user_mem_abort / invalidate_icache_guest_page), so the
//! first execution of a page, and of a page first mapped for a data access, must never run
//! stale instructions. Each case's new code sets x0 to a known value and returns; x0 shows
//! which code ran. Under TCG there are no caches to go stale: there the cases check the trap
//! and permission flow.

use trapdiff_arch::case::{Case, Code, El, Family, Insn, Isa, Reg, RegionKind};
use trapdiff_arch::sysreg::{self, cp15};

use super::{el_name, isa_name};
use crate::encode::{a32, a64, t32, Barrier, Cond, Disassembler, Word};
use crate::suite::builder::{init, region, Builder, TARGET_IPA};
use crate::suite::SuiteError;

const OLD: u16 = 0x0bad;
const NEW: u16 = 0x600d;
const NEW2: u16 = 0x7777;
const MARKER: u16 = 0x600d;

fn movz(rd: u8, imm: u16) -> Word {
    a64::movw(a64::MoveWide::Movz, true, rd, imm, 0)
}

/// The two-instruction function the cases write: `mov x0, #imm; ret`.
fn func(imm: u16) -> [Word; 2] {
    [movz(0, imm), a64::ret()]
}

fn le_bytes(words: &[Word]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// How the written code is made visible to instruction fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// No maintenance at all (architecturally stale code may run).
    None,
    /// DC CVAU + DSB + IC IVAU + DSB + ISB on the line.
    DcIc,
    /// IC IVAU only (sufficient when CTR_EL0.IDC is 1).
    IcOnly,
    /// DC CVAU, then IC IALLU (EL1 only).
    Iallu,
    /// DSB + ISB only (sufficient when CTR_EL0.IDC and DIC are both 1).
    IsbOnly,
    /// A loop over the written range driven by CTR_EL0 (line sizes, IDC, DIC).
    CtrLoop,
}

const STYLES: [Style; 6] = [Style::None, Style::DcIc, Style::IcOnly, Style::Iallu, Style::IsbOnly, Style::CtrLoop];

impl Style {
    fn name(self) -> &'static str {
        match self {
            Style::None => "nomaint",
            Style::DcIc => "dc-ic",
            Style::IcOnly => "ic-only",
            Style::Iallu => "iallu",
            Style::IsbOnly => "isb-only",
            Style::CtrLoop => "ctr-loop",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Style::None => "no maintenance (the result is only guaranteed where the hypervisor's own first-execute maintenance covers it)",
            Style::DcIc => "DC CVAU, DSB ISH, IC IVAU, DSB ISH, ISB",
            Style::IcOnly => "IC IVAU, DSB ISH, ISB without the D-cache clean (enough only when CTR_EL0.IDC=1)",
            Style::Iallu => "DC CVAU then IC IALLU",
            Style::IsbOnly => "DSB ISH + ISB only (enough only when CTR_EL0.IDC=DIC=1)",
            Style::CtrLoop => "a CTR_EL0-driven loop (DminLine/IminLine strides, skipped per IDC/DIC)",
        }
    }
    fn el0_ok(self) -> bool {
        self != Style::Iallu
    }
    /// Maintenance for [x1, x8) (x8 only used by the loop); scratch x4-x7.
    fn words(self) -> Vec<Word> {
        match self {
            Style::None => vec![],
            Style::DcIc => vec![a64::cmo(a64::Cmo::DcCvau, 1), a64::dsb(Barrier::Ish), a64::cmo(a64::Cmo::IcIvau, 1), a64::dsb(Barrier::Ish), a64::isb()],
            Style::IcOnly => vec![a64::dsb(Barrier::Ish), a64::cmo(a64::Cmo::IcIvau, 1), a64::dsb(Barrier::Ish), a64::isb()],
            Style::Iallu => vec![a64::cmo(a64::Cmo::DcCvau, 1), a64::dsb(Barrier::Ish), a64::ic_iallu(), a64::dsb(Barrier::Ish), a64::isb()],
            Style::IsbOnly => vec![a64::dsb(Barrier::Ish), a64::isb()],
            Style::CtrLoop => ctr_loop(),
        }
    }
}

/// Clean [x1, x8) to PoU by DminLine and invalidate it by IminLine, as CTR_EL0 describes
/// (D24.2.34 CTR_EL0: IDC bit 28, DIC bit 29, DminLine [19:16], IminLine [3:0]).
fn ctr_loop() -> Vec<Word> {
    let v = vec![
        a64::mrs(sysreg::CTR_EL0, 4),                    // 0
        a64::tbz(true, 4, 28, 40),                       // 1: IDC -> 11
        a64::ubfx(true, 5, 4, 16, 4),                    // 2
        movz(6, 4),                                      // 3
        a64::lslv(true, 6, 6, 5),                        // 4: x6 = D line bytes
        a64::add_imm(true, false, true, 5, 6, 1, false), // 5
        a64::bic_reg(true, 7, 1, 5),                     // 6: x7 = start aligned down
        a64::cmo(a64::Cmo::DcCvau, 7),                   // 7
        a64::add_reg(true, 7, 7, 6),                     // 8
        a64::cmp_reg(true, 7, 8),                        // 9
        a64::b_cond(Cond::Lo, -12),                      // 10 -> 7
        a64::dsb(Barrier::Ish),                          // 11
        a64::tbz(true, 4, 29, 44),                       // 12: DIC -> 23
        a64::ubfx(true, 5, 4, 0, 4),                     // 13
        movz(6, 4),                                      // 14
        a64::lslv(true, 6, 6, 5),                        // 15: x6 = I line bytes
        a64::add_imm(true, false, true, 5, 6, 1, false), // 16
        a64::bic_reg(true, 7, 1, 5),                     // 17
        a64::cmo(a64::Cmo::IcIvau, 7),                   // 18
        a64::add_reg(true, 7, 7, 6),                     // 19
        a64::cmp_reg(true, 7, 8),                        // 20
        a64::b_cond(Cond::Lo, -12),                      // 21 -> 18
        a64::dsb(Barrier::Ish),                          // 22
        a64::isb(),                                      // 23
    ];
    debug_assert_eq!(v.len(), 24);
    v
}

fn jit(size: u64) -> trapdiff_arch::case::Region {
    region("jit", TARGET_IPA, size, RegionKind::Ram)
}

pub fn generate(dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    let mut out = Vec::new();
    let isa = Isa::A64;
    let [new0, new1] = func(NEW);
    let [old0, old1] = func(OLD);
    for el in [El::El1, El::El0] {
        // 1. Guest writes code into a page never executed before, then runs it.
        for style in STYLES {
            if el == El::El0 && !style.el0_ok() {
                continue;
            }
            for (oname, off) in [("start", 0x0u64), ("mid", 0x7f8), ("straddle", 0xffc)] {
                let c = Builder::new(Family::Icache, &format!("a64-{}-first-exec-{}-{oname}", el_name(el), style.name()), isa, el)
                    .region(jit(0x2000))
                    .describe(format!(
                        "The guest stores `mov x0, #{NEW:#x}; ret` at page offset {off:#x} of a page never executed{}, makes it visible with {}, and branches to it: x0 must be {NEW:#x}.",
                        if off == 0xffc { " (the two instructions straddle two pages)" } else { "" },
                        style.what()
                    ))
                    .detail(format!("scenario=first-exec style={} offset={off:#x} el={}", style.name(), el_name(el)))
                    .reg(Reg::X(1), u128::from(TARGET_IPA + off))
                    .reg(Reg::X(2), new0.into())
                    .reg(Reg::X(3), new1.into())
                    .reg(Reg::X(8), u128::from(TARGET_IPA + off + 8))
                    .code([a64::str(a64::Size::W, 2, 1, 0), a64::str(a64::Size::W, 3, 1, 4)])
                    .code(style.words())
                    .code([a64::blr(1), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)])
                    .observe(&[Reg::X(0), Reg::X(9)]);
                out.push(c.build(dis)?);
            }
        }
        // 2. Code executed once, overwritten, maintained, executed again: stale code shows.
        for style in STYLES {
            if el == El::El0 && !style.el0_ok() {
                continue;
            }
            let mut jr = jit(0x2000);
            jr.init = vec![init(0x100, le_bytes(&[old0, old1]))];
            let c = Builder::new(Family::Icache, &format!("a64-{}-rewrite-{}", el_name(el), style.name()), isa, el)
                .region(jr)
                .describe(format!(
                    "Runs `mov x0, #{OLD:#x}; ret` (x10 keeps the result), overwrites it with `mov x0, #{NEW:#x}; ret`, makes it visible with {}, runs it again: x0 must be {NEW:#x}, not the stale {OLD:#x}.",
                    style.what()
                ))
                .detail(format!("scenario=rewrite style={} offset=0x100 el={}", style.name(), el_name(el)))
                .reg(Reg::X(1), u128::from(TARGET_IPA + 0x100))
                .reg(Reg::X(2), new0.into())
                .reg(Reg::X(3), new1.into())
                .reg(Reg::X(8), u128::from(TARGET_IPA + 0x108))
                .code([a64::blr(1), a64::mov_reg(true, 10, 0), a64::str(a64::Size::W, 2, 1, 0), a64::str(a64::Size::W, 3, 1, 4)])
                .code(style.words())
                .code([a64::blr(1), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)])
                .observe(&[Reg::X(0), Reg::X(9), Reg::X(10)]);
            out.push(c.build(dis)?);
        }
        // 3. Code written by the host (initial memory) and executed: the hypervisor's own
        // first-execute maintenance is all there is. Optionally the page is first mapped by a
        // data read, so execute permission comes later than the mapping.
        for (oname, off) in [("start", 0x0u64), ("straddle", 0xffc)] {
            for read_first in [false, true] {
                let mut jr = jit(0x2000);
                jr.init = vec![init(off, le_bytes(&[new0, new1]))];
                let mut words = Vec::new();
                if read_first {
                    words.push(a64::ldr(a64::Size::W, 5, 1, 0));
                }
                words.extend([a64::blr(1), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)]);
                let c = Builder::new(
                    Family::Icache,
                    &format!("a64-{}-host-written-{oname}{}", el_name(el), if read_first { "-read-first" } else { "" }),
                    isa,
                    el,
                )
                .region(jr)
                .describe(format!(
                    "Code the host placed in guest memory at offset {off:#x} is executed{} with no guest maintenance: the hypervisor must make it visible when it grants execute permission; x0 must be {NEW:#x}.",
                    if read_first { " after a data read mapped the page" } else { " as the first access to the page" }
                ))
                .detail(format!("scenario=host-written offset={off:#x} read_first={read_first} el={}", el_name(el)))
                .reg(Reg::X(1), u128::from(TARGET_IPA + off))
                .code(words)
                .observe(&[Reg::X(0), Reg::X(5), Reg::X(9)]);
                out.push(c.build(dis)?);
            }
        }
        // 4. A large range: functions written at both ends, one maintenance pass over all of it.
        for (sname, size) in [("64k", 0x1_0000u64), ("1m", 0x10_0000)] {
            for style in [Style::CtrLoop, Style::Iallu] {
                if el == El::El0 && !style.el0_ok() {
                    continue;
                }
                let last = TARGET_IPA + size - 8;
                let words = {
                    let mut w = vec![
                        a64::str(a64::Size::W, 2, 1, 0),
                        a64::str(a64::Size::W, 3, 1, 4),
                        a64::str(a64::Size::W, 12, 11, 0),
                        a64::str(a64::Size::W, 3, 11, 4),
                    ];
                    if style == Style::Iallu {
                        // Clean the two written lines, then invalidate everything.
                        w.extend([a64::cmo(a64::Cmo::DcCvau, 1), a64::cmo(a64::Cmo::DcCvau, 11)]);
                        w.extend([a64::dsb(Barrier::Ish), a64::ic_iallu(), a64::dsb(Barrier::Ish), a64::isb()]);
                    } else {
                        w.extend(style.words());
                    }
                    w.extend([a64::blr(1), a64::mov_reg(true, 10, 0), a64::blr(11), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)]);
                    w
                };
                let mut c = Builder::new(Family::Icache, &format!("a64-{}-large-{sname}-{}", el_name(el), style.name()), isa, el)
                    .region(jit(size))
                    .describe(format!(
                        "Functions written at the first and last doubleword of a {sname} range, made visible with one pass of {} over the whole range, both executed: x10 = {NEW:#x}, x0 = {NEW2:#x}; the pass must finish in bounded time.",
                        style.what()
                    ))
                    .detail(format!("scenario=large-range size={size:#x} style={} el={}", style.name(), el_name(el)))
                    .reg(Reg::X(1), u128::from(TARGET_IPA))
                    .reg(Reg::X(11), u128::from(last))
                    .reg(Reg::X(2), new0.into())
                    .reg(Reg::X(12), movz(0, NEW2).into())
                    .reg(Reg::X(3), new1.into())
                    .reg(Reg::X(8), u128::from(TARGET_IPA + size))
                    .code(words)
                    .observe(&[Reg::X(0), Reg::X(9), Reg::X(10)]);
                c.case.limits.timeout_ms = 10_000;
                out.push(c.build(dis)?);
            }
        }
    }
    aarch32(dis, &mut out)?;
    Ok(out)
}

/// AArch32 maintenance styles: none; DCCMVAU + ICIMVAU by MVA; DCCMVAU + ICIALLU
/// (G4.4 "Caches": the CP15 operations; all are UNDEFINED at PL0).
const A32_STYLES: [(&str, &str); 3] = [
    ("nomaint", "no maintenance"),
    ("dccmvau-icimvau", "MCR DCCMVAU, DSB ISH, MCR ICIMVAU, DSB ISH, ISB"),
    ("iciallu", "MCR DCCMVAU, DSB ISH, MCR ICIALLU, DSB ISH, ISB"),
];

/// `mov r0, #imm; bx lr` in the case's instruction set, as two little-endian words the guest
/// stores (T32: MOVW, BX LR, NOP).
fn a32_func(isa: Isa, imm: u16) -> [u32; 2] {
    let words: Vec<Word> = match isa {
        Isa::T32 => vec![t32::movw(0, imm), t32::bx(a32::LR), t32::nop()],
        _ => vec![a32::movw(0, imm), a32::bx(a32::LR)],
    };
    let code = Code { ipa: 0, insns: words.into_iter().map(|w| Insn::new(w, "")).collect() };
    let b = code.bytes(isa);
    [u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]])]
}

fn aarch32(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a32::{Addr, Op, Size};
    for isa in [Isa::A32, Isa::T32] {
        let t = isa == Isa::T32;
        let st = |rt, off: u32| if t { t32::ldst16(Op::Store, Size::W, rt, 1, off) } else { a32::ldst(Op::Store, Size::W, rt, 1, Addr::Offset(off as i16)) };
        let ldr5 = if t { t32::ldst16(Op::Load, Size::W, 5, 1, 0) } else { a32::ldst(Op::Load, Size::W, 5, 1, Addr::Offset(0)) };
        let mcr = |cp, r| if t { t32::mcr(cp, r) } else { a32::mcr(cp, r) };
        let dsb = if t { t32::dsb(Barrier::Ish) } else { a32::dsb(Barrier::Ish) };
        let isb = if t { t32::isb() } else { a32::isb() };
        let blx4 = if t { t32::blx(4) } else { a32::blx(4) };
        let mov10 = if t { t32::mov_reg(10, 0) } else { a32::mov_reg(10, 0) };
        let marker = if t { t32::movw(9, MARKER) } else { a32::movw(9, MARKER) };
        let maint = |style: &str| -> Vec<Word> {
            match style {
                "dccmvau-icimvau" => vec![mcr(cp15::DCCMVAU, 1), dsb, mcr(cp15::ICIMVAU, 1), dsb, isb],
                "iciallu" => vec![mcr(cp15::DCCMVAU, 1), dsb, mcr(cp15::ICIALLU, 0), dsb, isb],
                _ => vec![],
            }
        };
        // BLX to an odd address stays in T32; to an even one, A32.
        let entry = |addr: u64| u128::from(addr | u64::from(t));
        let [new0, new1] = a32_func(isa, NEW);
        let [old0, old1] = a32_func(isa, OLD);
        let func_text = format!("mov r0, #{NEW:#x}; bx lr");
        for (sname, swhat) in A32_STYLES {
            for el in [El::El1, El::El0] {
                // The CP15 operations are UNDEFINED at PL0: only the unmaintained case runs there.
                if el == El::El0 && sname != "nomaint" {
                    continue;
                }
                let c = Builder::new(Family::Icache, &format!("{}-{}-first-exec-{sname}", isa_name(isa), el_name(el)), isa, el)
                    .region(jit(0x2000))
                    .describe(format!(
                        "{isa} guest stores `{func_text}` into a page never executed, makes it visible with {swhat}, and branches to it with BLX: r0 must be {NEW:#x}."
                    ))
                    .detail(format!("scenario=first-exec isa={isa} style={sname} offset=0x0 el={}", el_name(el)))
                    .reg(Reg::R(0), 0xdead_beef)
                    .reg(Reg::R(1), u128::from(TARGET_IPA))
                    .reg(Reg::R(2), new0.into())
                    .reg(Reg::R(3), new1.into())
                    .reg(Reg::R(4), entry(TARGET_IPA))
                    .code([st(2, 0), st(3, 4)])
                    .code(maint(sname))
                    .code([blx4, marker])
                    .observe(&[Reg::R(0), Reg::R(9)]);
                out.push(c.build(dis)?);
            }
            let mut jr = jit(0x2000);
            jr.init = vec![init(0x100, [old0, old1].iter().flat_map(|w| w.to_le_bytes()).collect())];
            let c = Builder::new(Family::Icache, &format!("{}-el1-rewrite-{sname}", isa_name(isa)), isa, El::El1)
                .region(jr)
                .describe(format!(
                    "{isa}: runs `mov r0, #{OLD:#x}; bx lr` (r10 keeps the result), overwrites it with `{func_text}`, makes it visible with {swhat}, runs it again: r0 must be {NEW:#x}, not the stale {OLD:#x}."
                ))
                .detail(format!("scenario=rewrite isa={isa} style={sname} offset=0x100 el=el1"))
                .reg(Reg::R(1), u128::from(TARGET_IPA + 0x100))
                .reg(Reg::R(2), new0.into())
                .reg(Reg::R(3), new1.into())
                .reg(Reg::R(4), entry(TARGET_IPA + 0x100))
                .code([blx4, mov10, st(2, 0), st(3, 4)])
                .code(maint(sname))
                .code([blx4, marker])
                .observe(&[Reg::R(0), Reg::R(9), Reg::R(10)]);
            out.push(c.build(dis)?);
        }
        for read_first in [false, true] {
            let mut jr = jit(0x2000);
            jr.init = vec![init(0, [new0, new1].iter().flat_map(|w| w.to_le_bytes()).collect())];
            let mut words = Vec::new();
            if read_first {
                words.push(ldr5);
            }
            words.extend([blx4, marker]);
            let c = Builder::new(
                Family::Icache,
                &format!("{}-el1-host-written{}", isa_name(isa), if read_first { "-read-first" } else { "" }),
                isa,
                El::El1,
            )
            .region(jr)
            .describe(format!(
                "{isa} code the host placed in guest memory is executed{} with no guest maintenance: the hypervisor must make it visible when it grants execute permission; r0 must be {NEW:#x}.",
                if read_first { " after a data read mapped the page" } else { " as the first access to its page" }
            ))
            .detail(format!("scenario=host-written isa={isa} read_first={read_first} el=el1"))
            .reg(Reg::R(1), u128::from(TARGET_IPA))
            .reg(Reg::R(4), entry(TARGET_IPA))
            .code(words)
            .observe(&[Reg::R(0), Reg::R(5), Reg::R(9)]);
            out.push(c.build(dis)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop's branches land where its comments say (a mis-counted offset would loop
    /// forever or skip the maintenance).
    #[test]
    fn ctr_loop_branches_hit_their_labels() {
        let v = ctr_loop();
        let target = |i: usize, off: i64| (i as i64 + off / 4) as usize;
        assert_eq!(v[1], a64::tbz(true, 4, 28, 40));
        assert_eq!(v[target(1, 40)], a64::dsb(Barrier::Ish));
        assert_eq!(v[target(10, -12)], a64::cmo(a64::Cmo::DcCvau, 7));
        assert_eq!(v[target(12, 44)], a64::isb());
        assert_eq!(v[target(21, -12)], a64::cmo(a64::Cmo::IcIvau, 7));
    }
}
