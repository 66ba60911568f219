//! fp32: VFP and Advanced SIMD from AArch32 EL1 and EL0 under every CPACR cp10/cp11 and
//! FPEXC.EN combination, and FP state preserved across VMM exits.
//!
//! Why: in AArch32 an FP/SIMD instruction is enabled only if CPACR.cp10/cp11 grant the
//! current PL access *and* FPEXC.EN is set (Arm ARM G1.20.3 "Enabling Advanced SIMD and
//! floating-point support"; ASL AArch32.CheckAdvSIMDOrFPEnabled), except that VMRS/VMSR of
//! FPEXC at PL1 only need CPACR. CPACR.ASEDIS disables Advanced SIMD alone. A hypervisor that
//! lazily switches FP context on a trap must restore the guest's FPEXC exactly: the seed bug is
//! a hypervisor that forces FPEXC.EN when it restores (or on every entry), so that a guest that
//! cleared EN sees VFP instructions succeed after an MMIO exit (KVM: the 32-bit guest FPEXC32_EL2
//! handling in arch/arm64/kvm/hyp/include/hyp/switch.h, __activate_traps_fpsimd32).

use trapdiff_arch::case::{Case, El, Family, Isa, Reg, RegionKind};
use trapdiff_arch::sysreg::{cpacr, fpexc, vfp_sysreg};

use super::{el_name, isa_name};
use crate::encode::{a32, t32, Disassembler, Word};
use crate::suite::builder::{init, region, Builder, AUX_IPA, AUX_SIZE, TARGET_IPA, TARGET_SIZE};
use crate::suite::SuiteError;

const D1: u128 = 0x3ff8_0000_0000_0000; // 1.5
const D2: u128 = 0x4002_0000_0000_0000; // 2.25
const D16: u128 = 0x4037_0000_0000_0000; // 23.0
const D31: u128 = 0xc05e_dd2f_1a9f_be77; // -123.456
const Q1: u128 = 0x0000_0004_0000_0003_0000_0002_0000_0001;
const Q2: u128 = 0x7fff_ffff_0000_0010_0000_0020_ffff_ffff;
const MARKER: u16 = 0x600d;

/// CPACR cp10 and cp11 both set to an access value (they must match: G8.2.30).
fn cpacr_both(v: u32) -> u64 {
    u64::from(v << cpacr::CP10_SHIFT | v << cpacr::CP11_SHIFT)
}

const CPACRS: [(&str, u32); 3] = [("cpacr-none", cpacr::NONE), ("cpacr-pl1", cpacr::PL1_ONLY), ("cpacr-full", cpacr::FULL)];

/// FPEXC values: EN clear/set, with and without other bits (DEX and cumulative flags; on
/// cores without trapped FP exceptions they are RES0, and must read back as such).
const OTHER: u32 = fpexc::DEX | fpexc::IXF | fpexc::IOF;
const FPEXCS: [(&str, u32); 4] = [("fpexc-0", 0), ("fpexc-en", fpexc::EN), ("fpexc-en-other", fpexc::EN | OTHER), ("fpexc-other", OTHER)];

/// The instructions the enable matrix runs: name, A32 word, what it is, observed registers.
fn insns() -> Vec<(&'static str, Word, &'static str, Vec<Reg>)> {
    vec![
        ("vadd-f64", a32::vadd_f64(0, 1, 2), "VFP data processing (VADD.F64 d0 = d1 + d2)", vec![Reg::D(0)]),
        ("vadd-i32q", a32::vadd_int_q(32, 0, 1, 2), "Advanced SIMD data processing (VADD.I32 q0 = q1 + q2)", vec![Reg::Q(0)]),
        ("vmrs-fpscr", a32::vmrs(0, vfp_sysreg::FPSCR), "VMRS r0, FPSCR", vec![Reg::R(0)]),
        ("vmrs-fpexc", a32::vmrs(0, vfp_sysreg::FPEXC), "VMRS r0, FPEXC (at PL1 needs only CPACR, not FPEXC.EN; UNDEFINED at PL0)", vec![Reg::R(0)]),
        ("vldr", a32::vldr_vstr(true, 3, 1, 0), "VLDR d3 from RAM", vec![Reg::D(3)]),
    ]
}

fn to_isa(isa: Isa, w: Word) -> Word {
    match isa {
        Isa::T32 if w >> 28 == 0xf => t32::from_a32_simd(w),
        Isa::T32 => t32::from_a32_vfp(w),
        _ => w,
    }
}

fn marker(isa: Isa) -> Word {
    if isa == Isa::T32 {
        t32::movw(9, MARKER)
    } else {
        a32::movw(9, MARKER)
    }
}

fn data_region() -> trapdiff_arch::case::Region {
    let mut r = region("data", AUX_IPA, AUX_SIZE, RegionKind::Ram);
    r.init = vec![init(0, 0x4045_0000_0000_0000u64.to_le_bytes().to_vec())]; // 42.0
    r
}

pub fn generate(dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    let mut out = Vec::new();
    enable_matrix(dis, &mut out)?;
    asedis(dis, &mut out)?;
    context_switch(dis, &mut out)?;
    hyp_exit(dis, &mut out)?;
    Ok(out)
}

fn enable_matrix(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    for isa in [Isa::A32, Isa::T32] {
        for el in [El::El1, El::El0] {
            for (cname, cp) in CPACRS {
                for (fname, fx) in FPEXCS {
                    for (iname, w, iwhat, obs) in insns() {
                        let name = format!("{}-{}-{iname}-{cname}-{fname}", isa_name(isa), el_name(el));
                        let mut c = Builder::new(Family::Fp32, &name, isa, el)
                            .region(data_region())
                            .describe(format!(
                                "{iwhat} at {} with CPACR.cp10/cp11={cp:#04b} and FPEXC={fx:#010x}: enabled only if CPACR grants this PL and FPEXC.EN is set; otherwise UNDEFINED, with nothing written.",
                                if el == El::El1 { "PL1" } else { "PL0" }
                            ))
                            .detail(format!("insn={iname} isa={isa} el={} cpacr_cp10_cp11={cp:#04b} fpexc={fx:#x}", el_name(el)))
                            .sysregs(|s| {
                                s.cpacr = Some(cpacr_both(cp));
                                s.fpexc = Some(fx);
                            })
                            .reg(Reg::R(0), 0xdead_beef)
                            .reg(Reg::R(1), u128::from(AUX_IPA))
                            .reg(Reg::D(0), 0)
                            .reg(if iname == "vadd-i32q" { Reg::Q(1) } else { Reg::D(1) }, if iname == "vadd-i32q" { Q1 } else { D1 })
                            .reg(if iname == "vadd-i32q" { Reg::Q(2) } else { Reg::D(2) }, if iname == "vadd-i32q" { Q2 } else { D2 })
                            .code([to_isa(isa, w), marker(isa)])
                            .observe(&obs)
                            .observe(&[Reg::R(9)])
                            .observe_fp();
                        if iname == "vldr" {
                            // D3 overlaps Q1, which only the SIMD add sets.
                            c = c.reg(Reg::D(3), 0);
                        }
                        out.push(c.build(dis)?);
                    }
                }
            }
        }
    }
    Ok(())
}

/// CPACR.ASEDIS: Advanced SIMD UNDEFINED, VFP still enabled (G8.2.30 CPACR.ASEDIS).
fn asedis(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    let forms: [(&str, Word, Reg); 3] = [
        ("vadd-f64", a32::vadd_f64(0, 1, 2), Reg::D(0)),
        ("vadd-i32q", a32::vadd_int_q(32, 0, 1, 2), Reg::Q(0)),
        ("vld1", a32::vld1_vst1(true, 32, 0, 1, 1, a32::Wback::None), Reg::D(0)),
    ];
    for isa in [Isa::A32, Isa::T32] {
        for el in [El::El1, El::El0] {
            for (iname, w, obs) in forms {
                let name = format!("{}-{}-{iname}-asedis", isa_name(isa), el_name(el));
                let c = Builder::new(Family::Fp32, &name, isa, el)
                    .region(data_region())
                    .describe("CPACR.ASEDIS=1 with cp10/cp11 full and FPEXC.EN=1: Advanced SIMD instructions are UNDEFINED (if ASEDIS is implemented), VFP ones are not.")
                    .detail(format!("insn={iname} isa={isa} el={} cpacr=full|asedis fpexc=EN", el_name(el)))
                    .sysregs(|s| {
                        s.cpacr = Some(cpacr_both(cpacr::FULL) | u64::from(cpacr::ASEDIS));
                        s.fpexc = Some(fpexc::EN);
                    })
                    .reg(Reg::R(1), u128::from(AUX_IPA))
                    .reg(if iname == "vadd-i32q" { Reg::Q(1) } else { Reg::D(1) }, if iname == "vadd-i32q" { Q1 } else { D1 })
                    .reg(if iname == "vadd-i32q" { Reg::Q(2) } else { Reg::D(2) }, if iname == "vadd-i32q" { Q2 } else { D2 })
                    .code([to_isa(isa, w), marker(isa)])
                    .observe(&[obs, Reg::R(9)])
                    .observe_fp();
                out.push(c.build(dis)?);
            }
        }
    }
    Ok(())
}

/// FPSCR values: all clear, and NZCV + DN + FZ + RMode=0b11 + every cumulative flag.
const FPSCRS: [(&str, u32); 2] = [("fpscr-0", 0), ("fpscr-busy", 0xf3c0_009f)];

/// FP state across exits to the VMM (the seed bug).
fn context_switch(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a32::{Addr, Op, Size};
    for isa in [Isa::A32, Isa::T32] {
        let ld = |rt| if isa == Isa::A32 { a32::ldst(Op::Load, Size::W, rt, 1, Addr::Offset(0)) } else { t32::ldst16(Op::Load, Size::W, rt, 1, 0) };
        let st = |rt| if isa == Isa::A32 { a32::ldst(Op::Store, Size::W, rt, 1, Addr::Offset(4)) } else { t32::ldst16(Op::Store, Size::W, rt, 1, 4) };
        let exits: [(&str, Vec<Word>, &str); 3] = [
            ("mmio-read", vec![ld(0)], "an MMIO read exit"),
            ("mmio-write", vec![st(6)], "an MMIO write exit"),
            ("two-exits", vec![ld(0), st(6)], "two MMIO exits in a row"),
        ];
        for el in [El::El1, El::El0] {
            for (fname, fx) in FPEXCS {
                for (sname, fpscr) in FPSCRS {
                    for (xname, xwords, xwhat) in &exits {
                        // EL0 runs a reduced sweep: one FPSCR value, the read exit.
                        if el == El::El0 && (sname != "fpscr-busy" || *xname != "mmio-read") {
                            continue;
                        }
                        let mut words = xwords.clone();
                        if el == El::El1 {
                            words.push(to_isa(isa, a32::vmrs(4, vfp_sysreg::FPEXC)));
                        }
                        words.push(to_isa(isa, a32::vmrs(5, vfp_sysreg::FPSCR)));
                        words.push(to_isa(isa, a32::vadd_f64(0, 1, 2)));
                        words.push(marker(isa));
                        let name = format!("{}-{}-ctxsw-{xname}-{fname}-{sname}", isa_name(isa), el_name(el));
                        let c = Builder::new(Family::Fp32, &name, isa, el)
                            .region(region("mmio", TARGET_IPA, TARGET_SIZE, RegionKind::Mmio))
                            .describe(format!(
                                "FPEXC={fx:#010x}, FPSCR={fpscr:#010x} and D1/D2/D16/D31 set, then {xwhat} (the host may switch FP context), then read FPEXC/FPSCR and run a VFP add: every FP register and control value must be exactly as before the exit (a hypervisor forcing FPEXC.EN would make the add succeed with EN clear)."
                            ))
                            .detail(format!("isa={isa} el={} exits={xname} fpexc={fx:#x} fpscr={fpscr:#x} cpacr=full", el_name(el)))
                            .sysregs(|s| {
                                s.cpacr = Some(cpacr_both(cpacr::FULL));
                                s.fpexc = Some(fx);
                                s.fpscr = Some(fpscr);
                            })
                            .reg(Reg::R(1), u128::from(TARGET_IPA + 0x10))
                            .reg(Reg::R(4), 0xdead_beef)
                            .reg(Reg::R(5), 0xdead_beef)
                            .reg(Reg::R(6), 0x1234_5678)
                            .reg(Reg::D(0), 0)
                            .reg(Reg::D(1), D1)
                            .reg(Reg::D(2), D2)
                            .reg(Reg::D(16), D16)
                            .reg(Reg::D(31), D31)
                            .code(words)
                            .observe(&[Reg::R(0), Reg::R(4), Reg::R(5), Reg::R(9), Reg::D(0), Reg::D(1), Reg::D(2), Reg::D(16), Reg::D(31)])
                            .observe_fp();
                        out.push(c.build(dis)?);
                    }
                }
            }
        }
    }
    Ok(())
}

/// FPEXC across an exit the hypervisor handles itself while the guest's FP state is loaded:
/// the first touch of a RAM page (a stage-2 fault that KVM and the refhyp both fill lazily).
/// The guest never sees that exit, so FPEXC must come back exactly as written; KVM before
/// "arm64: KVM: Only force FPEXC32_EL2.EN if trapping FPSIMD" (2018) set FPEXC32_EL2.EN on
/// every entry, so FPEXC read back as EN alone and a VFP add ran with EN clear (quirk
/// `fpexc-eager-en`). `VMRS r4, FPEXC` first loads the FP state (at PL1 it needs only CPACR,
/// Arm ARM G1.20.3), so the later exit happens with the state live.
fn hyp_exit(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a32::{Addr, Op, Size};
    for isa in [Isa::A32, Isa::T32] {
        let ld = if isa == Isa::A32 { a32::ldst(Op::Load, Size::W, 0, 1, Addr::Offset(0)) } else { t32::ldst16(Op::Load, Size::W, 0, 1, 0) };
        for (fname, fx) in FPEXCS {
            let name = format!("{}-el1-fpexc-across-s2-fault-{fname}", isa_name(isa));
            let c = Builder::new(Family::Fp32, &name, isa, El::El1)
                .region(data_region())
                .describe(format!(
                    "FPEXC={fx:#010x}; VMRS r4, FPEXC (loads the FP state), then the first load from a RAM page (a stage-2 fault the hypervisor handles without telling the guest), then VMRS r5, FPEXC and a VFP add: r5 must equal r4 and the add must be UNDEFINED exactly when EN is clear (a hypervisor forcing FPEXC32_EL2.EN on every entry breaks both)."
                ))
                .detail(format!("isa={isa} el=el1 exit=s2-fault fpexc={fx:#x} cpacr=full"))
                .sysregs(|s| {
                    s.cpacr = Some(cpacr_both(cpacr::FULL));
                    s.fpexc = Some(fx);
                })
                .reg(Reg::R(0), 0xdead_beef)
                .reg(Reg::R(1), u128::from(AUX_IPA))
                .reg(Reg::R(4), 0xdead_beef)
                .reg(Reg::R(5), 0xdead_beef)
                .reg(Reg::D(0), 0)
                .reg(Reg::D(1), D1)
                .reg(Reg::D(2), D2)
                .code([
                    to_isa(isa, a32::vmrs(4, vfp_sysreg::FPEXC)),
                    ld,
                    to_isa(isa, a32::vmrs(5, vfp_sysreg::FPEXC)),
                    to_isa(isa, a32::vadd_f64(0, 1, 2)),
                    marker(isa),
                ])
                .observe(&[Reg::R(0), Reg::R(4), Reg::R(5), Reg::R(9), Reg::D(0)])
                .observe_fp();
            out.push(c.build(dis)?);
        }
    }
    Ok(())
}
