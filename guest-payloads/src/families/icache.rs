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

use trapdiff_arch::case::{Case, El, Family, Isa, Reg, RegionKind};
use trapdiff_arch::sysreg;

use super::el_name;
use crate::encode::{a64, Barrier, Cond, Disassembler, Word};
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
            Style::DcIc => vec![
                a64::cmo(a64::Cmo::DcCvau, 1),
                a64::dsb(Barrier::Ish),
                a64::cmo(a64::Cmo::IcIvau, 1),
                a64::dsb(Barrier::Ish),
                a64::isb(),
            ],
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
        a64::mrs(sysreg::CTR_EL0, 4),                       // 0
        a64::tbz(true, 4, 28, 40),                          // 1: IDC -> 11
        a64::ubfx(true, 5, 4, 16, 4),                       // 2
        movz(6, 4),                                         // 3
        a64::lslv(true, 6, 6, 5),                           // 4: x6 = D line bytes
        a64::add_imm(true, false, true, 5, 6, 1, false),    // 5
        a64::bic_reg(true, 7, 1, 5),                        // 6: x7 = start aligned down
        a64::cmo(a64::Cmo::DcCvau, 7),                      // 7
        a64::add_reg(true, 7, 7, 6),                        // 8
        a64::cmp_reg(true, 7, 8),                           // 9
        a64::b_cond(Cond::Lo, -12),                         // 10 -> 7
        a64::dsb(Barrier::Ish),                             // 11
        a64::tbz(true, 4, 29, 44),                          // 12: DIC -> 23
        a64::ubfx(true, 5, 4, 0, 4),                        // 13
        movz(6, 4),                                         // 14
        a64::lslv(true, 6, 6, 5),                           // 15: x6 = I line bytes
        a64::add_imm(true, false, true, 5, 6, 1, false),    // 16
        a64::bic_reg(true, 7, 1, 5),                        // 17
        a64::cmo(a64::Cmo::IcIvau, 7),                      // 18
        a64::add_reg(true, 7, 7, 6),                        // 19
        a64::cmp_reg(true, 7, 8),                           // 20
        a64::b_cond(Cond::Lo, -12),                         // 21 -> 18
        a64::dsb(Barrier::Ish),                             // 22
        a64::isb(),                                         // 23
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
    Ok(out)
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
