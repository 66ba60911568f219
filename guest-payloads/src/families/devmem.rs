//! devmem: stage-1 attribute x stage-2 attribute x alignment x access type, with SCTLR.A on
//! and off.
//!
//! Why: the memory type an access sees is the combination of both stages (Arm ARM D8.6.6
//! "Combining the stage 1 and stage 2 attributes": the more restrictive wins), and the
//! combined type decides alignment behaviour: an unaligned access to any Device type faults
//! whatever SCTLR.A says (B2.5.2 "Alignment of data accesses"), exclusives fault when
//! unaligned on any type, DC ZVA faults on Device memory (C6.2.81 DC ZVA: "Alignment fault
//! ... if the memory is Device"), and the fault must be reported from the right stage with the
//! right FSC. KVM maps VM_PFNMAP regions Device-nGnRE at stage 2 and, since the 2024
//! Normal-NC series, VM_ALLOW_ANY_UNCACHED regions Normal-NC.

use trapdiff_arch::case::{Case, El, Family, Isa, Reg, Region, RegionKind, S1Perm, S1};
use trapdiff_arch::memattr::{S1Attr, S2Attr};

use crate::encode::{a64, Barrier, Disassembler, Word};
use crate::suite::builder::{init, region, Builder, TARGET_IPA, TARGET_SIZE};
use crate::suite::SuiteError;

const S1_ATTRS: [S1Attr; 5] = [S1Attr::DeviceNGnRnE, S1Attr::DeviceNGnRE, S1Attr::DeviceGRE, S1Attr::NormalNc, S1Attr::NormalWb];

/// Stage-2 side: a device region with each S2 attribute, or an ordinary RAM memslot.
const S2_KINDS: [(&str, Option<S2Attr>); 4] =
    [("s2dev", Some(S2Attr::DeviceNGnRE)), ("s2nc", Some(S2Attr::NormalNc)), ("s2normal", Some(S2Attr::Normal)), ("ram", None)];

/// Where the accessed data sits, and where the unaligned access points.
const DATA_OFF: u64 = 0x100;
const UNALIGNED: u64 = 1;
const MARKER: u16 = 0x600d;

fn s1_name(a: S1Attr) -> &'static str {
    match a {
        S1Attr::DeviceNGnRnE => "ngnrne",
        S1Attr::DeviceNGnRE => "ngnre",
        S1Attr::DeviceNGRE => "ngre",
        S1Attr::DeviceGRE => "gre",
        S1Attr::NormalNc => "nc",
        S1Attr::NormalWt => "wt",
        S1Attr::NormalWb => "wb",
    }
}

/// The access types: name, words (x1 = address), what it shows.
fn accesses() -> [(&'static str, Word, &'static str); 4] {
    [
        ("ldr", a64::ldr(a64::Size::X, 0, 1, 0), "LDR X0"),
        ("ldp", a64::pair(true, a64::PairKind::X, 0, 2, 1, a64::PairAddr::Offset(0)), "LDP X0, X2"),
        ("dczva", a64::cmo(a64::Cmo::DcZva, 1), "DC ZVA (faults on any Device type)"),
        ("ldxr", a64::exclusive(a64::Exclusive::Ldxr, a64::Size::X, 0, 1), "LDXR X0 (exclusives need alignment on every type)"),
    ]
}

fn target(s1: S1Attr, s2: Option<S2Attr>) -> Region {
    let mut r = region("target", TARGET_IPA, TARGET_SIZE, if s2.is_some() { RegionKind::Device } else { RegionKind::Ram });
    r.s2 = s2;
    r.s1 = Some(S1 { attr: s1, perm: S1Perm::Rw, el0: None });
    r.fill = 0x5a;
    // Distinct bytes where the accesses land, so an unaligned load shows which bytes it read.
    r.init = vec![init(DATA_OFF, (0u8..32).map(|b| 0x10 + b).collect())];
    r
}

pub fn generate(dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    let mut out = Vec::new();
    for s1 in S1_ATTRS {
        for (s2name, s2) in S2_KINDS {
            for (alname, off) in [("aligned", 0), ("unaligned", UNALIGNED)] {
                for (aname, w, awhat) in accesses() {
                    for align_check in [false, true] {
                        let s2desc = match s2 {
                            Some(a) => format!("a device region mapped {} at stage 2", a.name()),
                            None => "ordinary RAM (Normal-WB at stage 2)".to_string(),
                        };
                        let name = format!("a64-el1-{aname}-{}-{s2name}-{alname}-a{}", s1_name(s1), u8::from(align_check));
                        let c = Builder::new(Family::Devmem, &name, Isa::A64, El::El1)
                            .region(target(s1, s2))
                            .describe(format!(
                                "{awhat}, {alname}, to {} at stage 1 over {s2desc}, SCTLR_EL1.A={}: the combined type decides success or an alignment fault (and which stage reports it).",
                                s1.name(),
                                u8::from(align_check)
                            ))
                            .detail(format!(
                                "access={aname} s1={} s2={} alignment={alname} offset={:#x} align_check={align_check}",
                                s1.name(),
                                s2.map_or("ram", |a| a.name()),
                                DATA_OFF + off
                            ))
                            .sysregs(|s| s.align_check = align_check)
                            .reg(Reg::X(0), 0xdead_beef_cafe_f00d)
                            .reg(Reg::X(1), u128::from(TARGET_IPA + DATA_OFF + off))
                            .reg(Reg::X(2), 0xdead_beef_cafe_f00d)
                            .code([w, a64::dsb(Barrier::Sy), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)])
                            .observe(&[Reg::X(0), Reg::X(2), Reg::X(9)])
                            .window("target", DATA_OFF, 64);
                        out.push(c.build(dis)?);
                    }
                }
            }
        }
    }
    Ok(out)
}
