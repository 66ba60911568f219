//! mmio: loads and stores to an MMIO hole (no memslot).
//!
//! Accesses with a valid syndrome (ISV=1: single general-purpose register, no writeback; Arm
//! ARM D17.2.40 ESR_EL2 ISS encoding for a Data Abort, "ISV") must become KVM_EXIT_MMIO with
//! the right length, direction, data and sign/zero extension into the right register
//! (api.rst 5 "KVM_EXIT_MMIO"). Accesses without one (pairs, writeback, SIMD&FP, exclusives,
//! atomics, LDRD/STRD, LDM/STM) cannot be emulated from the syndrome: KVM returns ENOSYS, or a
//! KVM_EXIT_ARM_NISV when userspace enabled KVM_CAP_ARM_NISV_TO_USER (api.rst 7.19), and the
//! VMM then injects an abort or stops. Every case ends with a marker move (x9/r9 = 0x600d)
//! so the final state shows whether execution continued past the access.

use trapdiff_arch::case::{Case, El, Family, Isa, MmioAction, NisvAction, Reg, RegionKind};

use super::{el_name, isa_name};
use crate::encode::{a32, a64, t32, Disassembler, Word};
use crate::suite::builder::{region, Builder, TARGET_IPA, TARGET_SIZE};
use crate::suite::SuiteError;

/// MMIO reads the VMM returns: every byte/halfword/word negative, or every one positive, so
/// that the sign- or zero-extension of each load width shows in the destination register.
const READ_NEG: u64 = 0xfedc_ba98_f6e5_d4c3;
const READ_POS: u64 = 0x0123_4567_7654_3210;
/// What destination registers hold before the load: a partial write shows.
const CANARY: u128 = 0xdead_beef_cafe_f00d;
/// Data values stores write (truncated to the access size by the hardware).
const STORE_DATA: [(&str, u64); 4] = [("zero", 0), ("ones", u64::MAX), ("msb", 0x8000_0000_0000_0000), ("pattern", 0x0123_4567_89ab_cdef)];
/// Page offsets of the accessed address: start, middle of the first page, last doubleword of
/// the second page.
const OFFSETS: [u64; 3] = [0x0, 0x808, 0x1ff8];
const MARKER: u16 = 0x600d;

/// The four ways a VMM can be set up for an access without a valid syndrome.
const NISV_MODES: [(&str, bool, NisvAction); 4] = [
    ("nisv-off-inject", false, NisvAction::InjectAbort),
    ("nisv-off-stop", false, NisvAction::Stop),
    ("nisv-on-inject", true, NisvAction::InjectAbort),
    ("nisv-on-stop", true, NisvAction::Stop),
];

fn mmio_case(name: &str, isa: Isa, el: El) -> Builder {
    Builder::new(Family::Mmio, &format!("{}-{}-{name}", isa_name(isa), el_name(el)), isa, el).region(region("mmio", TARGET_IPA, TARGET_SIZE, RegionKind::Mmio))
}

fn marker(isa: Isa) -> Vec<Word> {
    match isa {
        Isa::A64 => vec![a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)],
        Isa::A32 => vec![a32::movw(9, MARKER)],
        Isa::T32 => vec![t32::movw(9, MARKER)],
    }
}

fn marker_reg(isa: Isa) -> Reg {
    if isa == Isa::A64 {
        Reg::X(9)
    } else {
        Reg::R(9)
    }
}

pub fn generate(dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    let mut out = Vec::new();
    a64_syndrome(dis, &mut out)?;
    aarch32_syndrome(dis, &mut out)?;
    a64_no_syndrome(dis, &mut out)?;
    aarch32_no_syndrome(dis, &mut out)?;
    s1_tables_in_memslot(dis, &mut out)?;
    exit_limit(dis, &mut out)?;
    Ok(out)
}

/// `limits.max_exits`: four MMIO loads with a limit of two exits. Exit number
/// max_exits + 1 ends the case as `exit_limit` without being recorded (guest-payloads/src/
/// lower.rs "Exit limit"), the same on the model, the refhyp and the KVM agent, so a VMM
/// that loops on exits is cut off identically everywhere.
fn exit_limit(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a64::{Addr, Op, Size};
    let isa = Isa::A64;
    let ld = |rt: u8| a64::ldst(Op::Load, Size::W, rt, 1, Addr::Offset(0));
    let mut c = mmio_case("ldr-w-exit-limit", isa, El::El1)
        .describe("Four LDRs from an MMIO hole with limits.max_exits = 2: two KVM_EXIT_MMIO reads are recorded, the third exit ends the case as exit_limit, unrecorded.")
        .detail("op=ldr-w exits=4 max_exits=2")
        .reg(Reg::X(1), u128::from(TARGET_IPA))
        .vmm(|v| v.reads = vec![trapdiff_arch::case::RegValue(READ_POS.into())])
        .code([ld(2), ld(3), ld(4), ld(5)])
        .code(marker(isa))
        .observe(&[Reg::X(2), Reg::X(3), Reg::X(4), marker_reg(isa)]);
    c.case.limits.max_exits = 2;
    out.push(c.build(dis)?);
    Ok(())
}

/// A64 loads with a valid syndrome: (name, op, size, X destination).
const A64_LOADS: [(&str, a64::Op, a64::Size, bool); 9] = {
    use a64::Op::*;
    use a64::Size::*;
    [
        ("ldrb", Load, B, false),
        ("ldrh", Load, H, false),
        ("ldr-w", Load, W, false),
        ("ldr-x", Load, X, true),
        ("ldrsb-w", LoadSw, B, false),
        ("ldrsb-x", LoadSx, B, true),
        ("ldrsh-w", LoadSw, H, false),
        ("ldrsh-x", LoadSx, H, true),
        ("ldrsw", LoadSx, W, true),
    ]
};

const A64_STORES: [(&str, a64::Size); 4] = [("strb", a64::Size::B), ("strh", a64::Size::H), ("str-w", a64::Size::W), ("str-x", a64::Size::X)];

fn ext_words(op: a64::Op, size: a64::Size, x: bool) -> String {
    let width = size.bytes() * 8;
    let dest = if x { "X" } else { "W" };
    match op {
        a64::Op::LoadSx | a64::Op::LoadSw => format!("sign-extended from {width} bits into {dest}0 (ISV=1, SSE=1, SF={})", u8::from(x)),
        _ => format!("zero-extended from {width} bits into {dest}0 (ISV=1, SSE=0, SF={})", u8::from(x)),
    }
}

fn a64_syndrome(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a64::{Addr, Op};
    let isa = Isa::A64;
    for (lname, op, size, x) in A64_LOADS {
        // Base register at each sub-page offset, each read pattern.
        for off in OFFSETS {
            for (rname, read) in [("rd-neg", READ_NEG), ("rd-pos", READ_POS)] {
                let c = mmio_case(&format!("{lname}-off{off:x}-{rname}"), isa, El::El1)
                    .describe(format!(
                        "{} from an MMIO hole at offset {off:#x}, VMM returns {read:#x}: a {}-byte KVM_EXIT_MMIO read, value {}.",
                        lname.to_uppercase(),
                        size.bytes(),
                        ext_words(op, size, x)
                    ))
                    .detail(format!("op={lname} offset={off:#x} read={read:#x} addr=base"))
                    .reg(Reg::X(0), CANARY)
                    .reg(Reg::X(1), u128::from(TARGET_IPA + off))
                    .vmm(|v| v.reads = vec![trapdiff_arch::case::RegValue(read.into())])
                    .code([a64::ldst(op, size, 0, 1, Addr::Offset(0))])
                    .code(marker(isa))
                    .observe(&[Reg::X(0), Reg::X(1), marker_reg(isa)]);
                out.push(c.build(dis)?);
            }
        }
        // The other addressing modes that keep ISV=1: scaled immediate, unscaled, register.
        let sz = size.bytes();
        let modes: [(&str, Addr, u64, Option<u64>); 3] = [
            ("imm", Addr::Offset(sz * 3), TARGET_IPA, None),
            ("unscaled", Addr::Unscaled(-8), TARGET_IPA + 0x108, None),
            ("regoff", Addr::Reg(2), TARGET_IPA, Some(0x200)),
        ];
        for (mname, addr, base, xm) in modes {
            let mut c = mmio_case(&format!("{lname}-{mname}"), isa, El::El1)
                .describe(format!(
                    "{} with {mname} addressing (no writeback, so the syndrome stays valid): KVM_EXIT_MMIO at base+offset, {}.",
                    lname.to_uppercase(),
                    ext_words(op, size, x)
                ))
                .detail(format!("op={lname} addressing={mname} read={READ_NEG:#x}"))
                .reg(Reg::X(0), CANARY)
                .reg(Reg::X(1), u128::from(base))
                .vmm(|v| v.reads = vec![trapdiff_arch::case::RegValue(READ_NEG.into())])
                .code([a64::ldst(op, size, 0, 1, addr)])
                .code(marker(isa))
                .observe(&[Reg::X(0), Reg::X(1), marker_reg(isa)]);
            if let Some(m) = xm {
                c = c.reg(Reg::X(2), m.into());
            }
            out.push(c.build(dis)?);
        }
        // EL0: the same exit, taken from EL0.
        let c = mmio_case(lname, isa, El::El0)
            .describe(format!("{} from EL0 to an MMIO hole: the exit and the register write are the same as at EL1.", lname.to_uppercase()))
            .detail(format!("op={lname} el=0 read={READ_NEG:#x}"))
            .reg(Reg::X(0), CANARY)
            .reg(Reg::X(1), u128::from(TARGET_IPA + 0x40))
            .vmm(|v| v.reads = vec![trapdiff_arch::case::RegValue(READ_NEG.into())])
            .code([a64::ldst(op, size, 0, 1, Addr::Offset(0))])
            .code(marker(isa))
            .observe(&[Reg::X(0), marker_reg(isa)]);
        out.push(c.build(dis)?);
    }

    for (sname, size) in A64_STORES {
        for (dname, data) in STORE_DATA {
            let c = mmio_case(&format!("{sname}-{dname}"), isa, El::El1)
                .describe(format!(
                    "{} of {data:#x} to an MMIO hole: a {}-byte KVM_EXIT_MMIO write carrying the low {} bits of X0 (ISV=1, SRT=0).",
                    sname.to_uppercase(),
                    size.bytes(),
                    size.bytes() * 8
                ))
                .detail(format!("op={sname} data={data:#x} offset=0x10"))
                .reg(Reg::X(0), data.into())
                .reg(Reg::X(1), u128::from(TARGET_IPA + 0x10))
                .code([a64::str(size, 0, 1, 0)])
                .code(marker(isa))
                .observe(&[Reg::X(1), marker_reg(isa)]);
            out.push(c.build(dis)?);
        }
        for off in [0x808u64, 0x1ff8] {
            let c = mmio_case(&format!("{sname}-off{off:x}"), isa, El::El1)
                .describe(format!("{} to MMIO page offset {off:#x}: the exit's IPA is the hole base plus the offset.", sname.to_uppercase()))
                .detail(format!("op={sname} offset={off:#x} data=0x0123456789abcdef"))
                .reg(Reg::X(0), 0x0123_4567_89ab_cdef)
                .reg(Reg::X(1), u128::from(TARGET_IPA + off))
                .code([a64::str(size, 0, 1, 0)])
                .code(marker(isa))
                .observe(&[marker_reg(isa)]);
            out.push(c.build(dis)?);
        }
        let sz = size.bytes();
        let modes: [(&str, Addr, u64); 3] =
            [("imm", Addr::Offset(sz * 5), TARGET_IPA), ("unscaled", Addr::Unscaled(-16), TARGET_IPA + 0x110), ("regoff", Addr::Reg(2), TARGET_IPA)];
        for (mname, addr, base) in modes {
            let c = mmio_case(&format!("{sname}-{mname}"), isa, El::El1)
                .describe(format!("{} with {mname} addressing: still a valid syndrome, KVM_EXIT_MMIO write at base+offset.", sname.to_uppercase()))
                .detail(format!("op={sname} addressing={mname}"))
                .reg(Reg::X(0), 0x0123_4567_89ab_cdef)
                .reg(Reg::X(1), u128::from(base))
                .reg(Reg::X(2), 0x300)
                .code([a64::ldst(Op::Store, size, 0, 1, addr)])
                .code(marker(isa))
                .observe(&[Reg::X(1), marker_reg(isa)]);
            out.push(c.build(dis)?);
        }
        let c = mmio_case(sname, isa, El::El0)
            .describe(format!("{} from EL0 to an MMIO hole: same exit as from EL1.", sname.to_uppercase()))
            .detail(format!("op={sname} el=0"))
            .reg(Reg::X(0), 0x0123_4567_89ab_cdef)
            .reg(Reg::X(1), u128::from(TARGET_IPA + 0x20))
            .code([a64::str(size, 0, 1, 0)])
            .code(marker(isa))
            .observe(&[marker_reg(isa)]);
        out.push(c.build(dis)?);
    }

    // Register 31 as the data register is XZR for a load/store, and X30 is the last GPR:
    // both are corner cases of SRT handling.
    let specials: [(&str, Word, &str, Vec<Reg>); 3] = [
        ("str-xzr", a64::str(a64::Size::X, a64::ZR, 1, 0), "STR XZR: SRT=31 means the zero register, so the exit's data must be 0, not SP.", vec![]),
        ("strb-wzr", a64::str(a64::Size::B, a64::ZR, 1, 0), "STRB WZR: a 1-byte write of 0 (SRT=31 is the zero register).", vec![]),
        (
            "ldr-x30",
            a64::ldr(a64::Size::X, 30, 1, 0),
            "LDR X30: the emulated read lands in X30 (SRT=30), the highest register KVM writes back.",
            vec![Reg::X(30)],
        ),
    ];
    for (name, w, desc, obs) in specials {
        let c = mmio_case(name, isa, El::El1)
            .describe(desc)
            .detail(format!("op={name}"))
            .reg(Reg::X(0), CANARY)
            .reg(Reg::X(1), u128::from(TARGET_IPA + 0x30))
            .reg(Reg::X(30), CANARY)
            .code([w])
            .code(marker(isa))
            .observe(&obs)
            .observe(&[marker_reg(isa)]);
        out.push(c.build(dis)?);
    }

    // Acquire/release: ISV=1 with AR=1.
    for size in a64::Size::ALL {
        for (kname, kind) in [("ldar", a64::Ordered::Ldar), ("ldapr", a64::Ordered::Ldapr), ("stlr", a64::Ordered::Stlr)] {
            let name = format!("{kname}-{}", size.name());
            let load = kind != a64::Ordered::Stlr;
            let c = mmio_case(&name, isa, El::El1)
                .describe(format!(
                    "{} ({}-byte) to an MMIO hole: acquire/release accesses keep a valid syndrome (AR=1) and exit as {}-byte MMIO {}.",
                    kname.to_uppercase(),
                    size.bytes(),
                    size.bytes(),
                    if load { "reads" } else { "writes" }
                ))
                .detail(format!("op={kname} size={}", size.bytes()))
                .reg(Reg::X(0), if load { CANARY } else { 0x0123_4567_89ab_cdef })
                .reg(Reg::X(1), u128::from(TARGET_IPA + 0x40))
                .vmm(|v| v.reads = vec![trapdiff_arch::case::RegValue(READ_NEG.into())])
                .code([a64::ordered(kind, size, 0, 1)])
                .code(marker(isa))
                .observe(&[Reg::X(0), marker_reg(isa)]);
            out.push(c.build(dis)?);
        }
    }

    // Unaligned accesses: the hole is Device memory at stage 1, so an unaligned access is an
    // alignment fault taken to EL1 (Arm ARM B2.5.2 "Alignment of data accesses": unaligned
    // Device accesses fault) and never reaches the VMM.
    for (name, w) in [
        ("ldrh-unaligned", a64::ldr(a64::Size::H, 0, 1, 0)),
        ("ldr-w-unaligned", a64::ldr(a64::Size::W, 0, 1, 0)),
        ("ldr-x-unaligned", a64::ldr(a64::Size::X, 0, 1, 0)),
        ("strh-unaligned", a64::str(a64::Size::H, 0, 1, 0)),
        ("str-w-unaligned", a64::str(a64::Size::W, 0, 1, 0)),
        ("str-x-unaligned", a64::str(a64::Size::X, 0, 1, 0)),
    ] {
        let c = mmio_case(name, isa, El::El1)
            .describe("An unaligned access to the MMIO hole, which stage 1 maps as Device: an alignment fault to EL1, no exit.")
            .detail(format!("op={name} offset=0x101"))
            .reg(Reg::X(0), CANARY)
            .reg(Reg::X(1), u128::from(TARGET_IPA + 0x101))
            .code([w])
            .code(marker(isa))
            .observe(&[Reg::X(0), marker_reg(isa)]);
        out.push(c.build(dis)?);
    }

    // A VMM that answers an MMIO exit with an abort instead of data.
    for (name, w) in [("ldr-x-vmm-abort", a64::ldr(a64::Size::X, 0, 1, 0)), ("str-x-vmm-abort", a64::str(a64::Size::X, 0, 1, 0))] {
        let c = mmio_case(name, isa, El::El1)
            .describe(
                "The VMM injects a synchronous external abort for a valid-syndrome MMIO exit: the guest takes it at the access, the register is not written.",
            )
            .detail(format!("op={name} on_mmio=inject_abort"))
            .reg(Reg::X(0), CANARY)
            .reg(Reg::X(1), u128::from(TARGET_IPA + 0x50))
            .vmm(|v| v.on_mmio = MmioAction::InjectAbort)
            .code([w])
            .code(marker(isa))
            .observe(&[Reg::X(0), marker_reg(isa)]);
        out.push(c.build(dis)?);
    }
    Ok(())
}

/// AArch32 loads and stores with a valid syndrome: (name, op, size).
const A32_OPS: [(&str, a32::Op, a32::Size); 8] = {
    use a32::Op::*;
    use a32::Size::*;
    [
        ("ldr", Load, W),
        ("ldrb", Load, B),
        ("ldrh", Load, H),
        ("ldrsb", LoadSx, B),
        ("ldrsh", LoadSx, H),
        ("str", Store, W),
        ("strb", Store, B),
        ("strh", Store, H),
    ]
};

fn aarch32_syndrome(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a32::Addr;
    for isa in [Isa::A32, Isa::T32] {
        let enc = |op, size, addr| if isa == Isa::A32 { a32::ldst(op, size, 0, 1, addr) } else { t32::ldst(op, size, 0, 1, addr) };
        for (name, op, size) in A32_OPS {
            let load = op != a32::Op::Store;
            let what = if load { "read" } else { "write" };
            for off in [0x0u64, 0x1ffc] {
                let values: [(&str, u64); 2] = if load { [("rd-neg", READ_NEG), ("rd-pos", READ_POS)] } else { [("ones", u64::MAX), ("pattern", 0x89ab_cdef)] };
                for (vname, v) in values {
                    let mut c = mmio_case(&format!("{name}-off{off:x}-{vname}"), isa, El::El1)
                        .describe(format!(
                            "{isa} {} at MMIO offset {off:#x}: a {}-byte KVM_EXIT_MMIO {what}{}.",
                            name.to_uppercase(),
                            size.bytes(),
                            if op == a32::Op::LoadSx {
                                ", sign-extended into r0"
                            } else if load {
                                ", zero-extended into r0"
                            } else {
                                " of r0's low bytes"
                            }
                        ))
                        .detail(format!("op={name} isa={isa} offset={off:#x} value={v:#x}"))
                        .reg(Reg::R(1), u128::from(TARGET_IPA + off))
                        .code([enc(op, size, Addr::Offset(0))])
                        .code(marker(isa))
                        .observe(&[Reg::R(0), Reg::R(1), marker_reg(isa)]);
                    c = if load {
                        c.reg(Reg::R(0), 0xdead_beef).vmm(|m| m.reads = vec![trapdiff_arch::case::RegValue(v.into())])
                    } else {
                        c.reg(Reg::R(0), u128::from(v as u32))
                    };
                    out.push(c.build(dis)?);
                }
            }
            // A negative immediate offset (U = 0) keeps the syndrome valid.
            let c = mmio_case(&format!("{name}-negoff"), isa, El::El1)
                .describe(format!("{isa} {} with a negative immediate offset (no writeback): KVM_EXIT_MMIO at base-4.", name.to_uppercase()))
                .detail(format!("op={name} isa={isa} addressing=offset(-4)"))
                .reg(Reg::R(0), 0x89ab_cdef)
                .reg(Reg::R(1), u128::from(TARGET_IPA + 0x104))
                .code([enc(op, size, Addr::Offset(-4))])
                .code(marker(isa))
                .observe(&[Reg::R(0), Reg::R(1), marker_reg(isa)]);
            out.push(c.build(dis)?);
            let c = mmio_case(name, isa, El::El0)
                .describe(format!("{isa} {} from EL0 (USR mode) to an MMIO hole: same exit as at EL1.", name.to_uppercase()))
                .detail(format!("op={name} isa={isa} el=0"))
                .reg(Reg::R(0), 0x89ab_cdef)
                .reg(Reg::R(1), u128::from(TARGET_IPA + 0x20))
                .code([enc(op, size, Addr::Offset(0))])
                .code(marker(isa))
                .observe(&[Reg::R(0), marker_reg(isa)]);
            out.push(c.build(dis)?);
        }
        // Load-acquire / store-release (Armv8 AArch32): valid syndrome with AR=1.
        for (sname, size) in [("b", a32::Size::B), ("h", a32::Size::H), ("", a32::Size::W)] {
            for load in [true, false] {
                let name = format!("{}{sname}", if load { "lda" } else { "stl" });
                let w = match (isa, load) {
                    (Isa::A32, true) => a32::lda(size, 0, 1),
                    (Isa::A32, false) => a32::stl(size, 0, 1),
                    (_, true) => t32::lda(size, 0, 1),
                    (_, false) => t32::stl(size, 0, 1),
                };
                let c = mmio_case(&name, isa, El::El1)
                    .describe(format!("{isa} {}: acquire/release keeps a valid syndrome; a {}-byte MMIO exit.", name.to_uppercase(), size.bytes()))
                    .detail(format!("op={name} isa={isa}"))
                    .reg(Reg::R(0), 0x89ab_cdef)
                    .reg(Reg::R(1), u128::from(TARGET_IPA + 0x40))
                    .vmm(|m| m.reads = vec![trapdiff_arch::case::RegValue(READ_NEG.into())])
                    .code([w])
                    .code(marker(isa))
                    .observe(&[Reg::R(0), marker_reg(isa)]);
                out.push(c.build(dis)?);
            }
        }
    }
    // 16-bit T32 encodings: IL = 0 in the syndrome, and the PC must advance by 2.
    use a32::{Op, Size};
    let t16: [(&str, Word, bool); 8] = [
        ("ldr16", t32::ldst16(Op::Load, Size::W, 0, 1, 4), true),
        ("ldrb16", t32::ldst16(Op::Load, Size::B, 0, 1, 1), true),
        ("ldrh16", t32::ldst16(Op::Load, Size::H, 0, 1, 2), true),
        ("ldrsb16-reg", t32::ldst16_reg(Op::LoadSx, Size::B, 0, 1, 2), true),
        ("ldrsh16-reg", t32::ldst16_reg(Op::LoadSx, Size::H, 0, 1, 2), true),
        ("str16", t32::ldst16(Op::Store, Size::W, 0, 1, 4), false),
        ("strb16", t32::ldst16(Op::Store, Size::B, 0, 1, 1), false),
        ("strh16", t32::ldst16(Op::Store, Size::H, 0, 1, 2), false),
    ];
    for (name, w, load) in t16 {
        for (vname, v) in [("rd-neg", READ_NEG), ("rd-pos", READ_POS)] {
            let c = mmio_case(&format!("{name}-{vname}"), Isa::T32, El::El1)
                .describe(format!(
                    "16-bit T32 {}: the syndrome has IL=0 and KVM must skip 2 bytes, not 4, after emulating the {}.",
                    name.to_uppercase(),
                    if load { "read" } else { "write" }
                ))
                .detail(format!("op={name} isa=T32 encoding=16-bit value={v:#x}"))
                .reg(Reg::R(0), if load { 0xdead_beef } else { u128::from(v as u32) })
                .reg(Reg::R(1), u128::from(TARGET_IPA + 0x80))
                .reg(Reg::R(2), 0x6)
                .vmm(|m| m.reads = vec![trapdiff_arch::case::RegValue(v.into())])
                .code([w])
                .code(marker(Isa::T32))
                .observe(&[Reg::R(0), marker_reg(Isa::T32)]);
            out.push(c.build(dis)?);
        }
    }
    Ok(())
}

/// A no-syndrome access: name, words, registers to set, registers to observe, description.
struct NoSyndrome {
    name: &'static str,
    words: Vec<Word>,
    regs: Vec<(Reg, u128)>,
    observe: Vec<Reg>,
    why: &'static str,
}

fn ns(name: &'static str, words: Vec<Word>, regs: Vec<(Reg, u128)>, observe: Vec<Reg>, why: &'static str) -> NoSyndrome {
    NoSyndrome { name, words, regs, observe, why }
}

fn emit_no_syndrome(dis: &Disassembler, out: &mut Vec<Case>, isa: Isa, forms: Vec<NoSyndrome>) -> Result<(), SuiteError> {
    let base = if isa == Isa::A64 { Reg::X(1) } else { Reg::R(1) };
    for f in forms {
        for (mode, to_user, action) in NISV_MODES {
            let consequence = match (to_user, action) {
                (false, _) => "KVM cannot emulate it and KVM_RUN fails with ENOSYS (the VMM's NISV choice is moot)",
                (true, NisvAction::InjectAbort) => "KVM exits with KVM_EXIT_ARM_NISV and the VMM injects an external abort",
                (true, NisvAction::Stop) => "KVM exits with KVM_EXIT_ARM_NISV and the VMM stops the case",
            };
            let mut c = mmio_case(&format!("{}-{mode}", f.name), isa, El::El1)
                .describe(format!("{} to an MMIO hole has no valid syndrome ({}): {consequence}.", f.name.to_uppercase(), f.why))
                .detail(format!("op={} isa={isa} nisv_to_user={to_user} on_nisv={action:?}", f.name))
                .reg(base, u128::from(TARGET_IPA + 0x100))
                .vmm(|v| {
                    v.nisv_to_user = to_user;
                    v.on_nisv = action;
                })
                .code(f.words.iter().copied())
                .code(marker(isa))
                .observe(&f.observe)
                .observe(&[base, marker_reg(isa)]);
            for (r, v) in &f.regs {
                c = c.reg(*r, *v);
            }
            out.push(c.build(dis)?);
        }
    }
    Ok(())
}

fn a64_no_syndrome(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a64::{Addr, Arr, AtomicOp as A, Exclusive as E, FpSize, Op, PairAddr as P, PairKind as K, Size};
    let x = |n| Reg::X(n);
    let data = vec![(x(0), 0x0123_4567_89ab_cdef), (x(2), 0xfedc_ba98_7654_3210)];
    let canary = vec![(x(0), CANARY), (x(2), CANARY)];
    let q = vec![(Reg::Q(0), 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff), (Reg::Q(2), 0xffee_ddcc_bbaa_9988_7766_5544_3322_1100)];
    let pair = "a load/store pair";
    let wb = "writeback";
    let fp = "a SIMD&FP register";
    let ex = "an exclusive";
    let at = "an atomic read-modify-write";
    let forms = vec![
        ns("ldp-w", vec![a64::pair(true, K::W, 0, 2, 1, P::Offset(0))], canary.clone(), vec![x(0), x(2)], pair),
        ns("ldp-x", vec![a64::pair(true, K::X, 0, 2, 1, P::Offset(0))], canary.clone(), vec![x(0), x(2)], pair),
        ns("ldpsw", vec![a64::pair(true, K::Sw, 0, 2, 1, P::Offset(8))], canary.clone(), vec![x(0), x(2)], pair),
        ns("stp-w", vec![a64::pair(false, K::W, 0, 2, 1, P::Offset(0))], data.clone(), vec![], pair),
        ns("stp-x", vec![a64::pair(false, K::X, 0, 2, 1, P::Offset(16))], data.clone(), vec![], pair),
        ns("ldp-d", vec![a64::pair(true, K::D, 0, 2, 1, P::Offset(0))], vec![], vec![Reg::D(0), Reg::D(2)], pair),
        ns("stp-q", vec![a64::pair(false, K::Q, 0, 2, 1, P::Offset(0))], q.clone(), vec![], pair),
        ns("ldp-x-pre", vec![a64::pair(true, K::X, 0, 2, 1, P::Pre(16))], canary.clone(), vec![x(0), x(2)], "a pair with pre-index writeback"),
        ns("stp-x-post", vec![a64::pair(false, K::X, 0, 2, 1, P::Post(-16))], data.clone(), vec![], "a pair with post-index writeback"),
        ns("ldr-x-pre", vec![a64::ldst(Op::Load, Size::X, 0, 1, Addr::Pre(8))], canary.clone(), vec![x(0)], wb),
        ns("ldr-w-post", vec![a64::ldst(Op::Load, Size::W, 0, 1, Addr::Post(4))], canary.clone(), vec![x(0)], wb),
        ns("ldrsh-x-post", vec![a64::ldst(Op::LoadSx, Size::H, 0, 1, Addr::Post(-2))], canary.clone(), vec![x(0)], wb),
        ns("str-x-pre", vec![a64::ldst(Op::Store, Size::X, 0, 1, Addr::Pre(-8))], data.clone(), vec![], wb),
        ns("strb-post", vec![a64::ldst(Op::Store, Size::B, 0, 1, Addr::Post(1))], data.clone(), vec![], wb),
        ns("ldr-q", vec![a64::ldst_fp(true, FpSize::Q, 0, 1, Addr::Offset(0))], vec![], vec![Reg::Q(0)], fp),
        ns("ldr-s", vec![a64::ldst_fp(true, FpSize::S, 0, 1, Addr::Offset(4))], vec![], vec![Reg::Q(0)], fp),
        ns("str-d", vec![a64::ldst_fp(false, FpSize::D, 0, 1, Addr::Offset(8))], q.clone(), vec![], fp),
        ns("ldr-d-pre", vec![a64::ldst_fp(true, FpSize::D, 0, 1, Addr::Pre(8))], vec![], vec![Reg::D(0)], "a SIMD&FP register with writeback"),
        ns("ld1-4s", vec![a64::ld1_st1(true, Arr::S4, 0, 1, 1, false)], vec![], vec![Reg::Q(0)], "a SIMD structure load"),
        ns("st1-16b", vec![a64::ld1_st1(false, Arr::B16, 0, 1, 1, false)], q.clone(), vec![], "a SIMD structure store"),
        ns("ld1-1d-post", vec![a64::ld1_st1(true, Arr::D1, 0, 1, 1, true)], vec![], vec![Reg::D(0)], "a SIMD structure load with writeback"),
        ns("ld1-2d-x2", vec![a64::ld1_st1(true, Arr::D2, 0, 2, 1, false)], vec![], vec![Reg::Q(0), Reg::Q(1)], "a two-register SIMD structure load"),
        ns("ldxr-x", vec![a64::exclusive(E::Ldxr, Size::X, 0, 1)], canary.clone(), vec![x(0)], ex),
        ns("ldxr-w", vec![a64::exclusive(E::Ldxr, Size::W, 0, 1)], canary.clone(), vec![x(0)], ex),
        ns("ldaxr-x", vec![a64::exclusive(E::Ldaxr, Size::X, 0, 1)], canary.clone(), vec![x(0)], ex),
        ns("stxr-x", vec![a64::exclusive(E::Stxr { rs: 3 }, Size::X, 0, 1)], data.clone(), vec![x(3)], ex),
        ns("stlxr-w", vec![a64::exclusive(E::Stlxr { rs: 3 }, Size::W, 0, 1)], data.clone(), vec![x(3)], ex),
        ns("ldxp-x", vec![a64::exclusive_pair(E::Ldxr, true, 0, 2, 1)], canary.clone(), vec![x(0), x(2)], "an exclusive pair"),
        ns("stxp-x", vec![a64::exclusive_pair(E::Stxr { rs: 3 }, true, 0, 2, 1)], data.clone(), vec![x(3)], "an exclusive pair"),
        ns("ldadd-x", vec![a64::atomic(A::Ldadd, Size::X, false, false, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("ldaddal-w", vec![a64::atomic(A::Ldadd, Size::W, true, true, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("swp-x", vec![a64::atomic(A::Swp, Size::X, false, false, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("swpal-b", vec![a64::atomic(A::Swp, Size::B, true, true, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("ldset-h", vec![a64::atomic(A::Ldset, Size::H, false, false, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("ldclr-w", vec![a64::atomic(A::Ldclr, Size::W, false, false, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("ldeor-x", vec![a64::atomic(A::Ldeor, Size::X, false, false, 2, 0, 1)], data.clone(), vec![x(0)], at),
        ns("cas-x", vec![a64::cas(Size::X, false, false, 2, 0, 1)], data.clone(), vec![x(2)], "a compare-and-swap"),
        ns("casal-w", vec![a64::cas(Size::W, true, true, 2, 0, 1)], data.clone(), vec![x(2)], "a compare-and-swap"),
    ];
    emit_no_syndrome(dis, out, Isa::A64, forms)
}

fn aarch32_no_syndrome(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use a32::{Addr, Block, Op, Size, Wback};
    let r = |n| Reg::R(n);
    let data = vec![(r(2), 0x0123_4567), (r(3), 0x89ab_cdef), (r(0), 0x1357_9bdf)];
    let canary = vec![(r(2), 0xdead_beef), (r(3), 0xdead_beef), (r(0), 0xdead_beef)];
    let d = vec![(Reg::D(0), 0x0011_2233_4455_6677), (Reg::D(1), 0x8899_aabb_ccdd_eeff)];
    let dbl = "a doubleword pair (LDRD/STRD)";
    let blk = "a multiple-register transfer";
    let wb = "writeback";
    let ex = "an exclusive";
    let fp = "a VFP/Advanced SIMD register";
    let a32_forms = vec![
        ns("ldrd", vec![a32::ldst(Op::Load, Size::D, 2, 1, Addr::Offset(0))], canary.clone(), vec![r(2), r(3)], dbl),
        ns("strd", vec![a32::ldst(Op::Store, Size::D, 2, 1, Addr::Offset(8))], data.clone(), vec![], dbl),
        ns("ldrd-pre", vec![a32::ldst(Op::Load, Size::D, 2, 1, Addr::Pre(8))], canary.clone(), vec![r(2), r(3)], "LDRD with writeback"),
        ns("ldm", vec![a32::ldm_stm(true, Block::Ia, 1, false, 0b1100)], canary.clone(), vec![r(2), r(3)], blk),
        ns("ldm-wb", vec![a32::ldm_stm(true, Block::Ia, 1, true, 0b1100)], canary.clone(), vec![r(2), r(3)], blk),
        ns("stm", vec![a32::ldm_stm(false, Block::Ia, 1, false, 0b1100)], data.clone(), vec![], blk),
        ns("stmdb-wb", vec![a32::ldm_stm(false, Block::Db, 1, true, 0b1100)], data.clone(), vec![], blk),
        ns(
            "ldm-one",
            vec![a32::ldm_stm(true, Block::Ia, 1, false, 0b0100)],
            canary.clone(),
            vec![r(2)],
            "LDM of a single register (still a multiple transfer)",
        ),
        ns("ldrex", vec![a32::ldrex(Size::W, 2, 1)], canary.clone(), vec![r(2)], ex),
        ns("strex", vec![a32::strex(Size::W, 0, 2, 1)], data.clone(), vec![r(0)], ex),
        ns("ldrexd", vec![a32::ldrex(Size::D, 2, 1)], canary.clone(), vec![r(2), r(3)], "an exclusive doubleword"),
        ns("ldr-pre", vec![a32::ldst(Op::Load, Size::W, 2, 1, Addr::Pre(4))], canary.clone(), vec![r(2)], wb),
        ns("str-post", vec![a32::ldst(Op::Store, Size::W, 2, 1, Addr::Post(-4))], data.clone(), vec![], wb),
        ns("ldrh-post", vec![a32::ldst(Op::Load, Size::H, 2, 1, Addr::Post(2))], canary.clone(), vec![r(2)], wb),
        ns("ldrsb-pre", vec![a32::ldst(Op::LoadSx, Size::B, 2, 1, Addr::Pre(-1))], canary.clone(), vec![r(2)], wb),
        ns("vldr", vec![a32::vldr_vstr(true, 0, 1, 0)], vec![], vec![Reg::D(0)], fp),
        ns("vstr", vec![a32::vldr_vstr(false, 0, 1, 8)], d.clone(), vec![], fp),
        ns("vldm", vec![a32::vldm_vstm(true, 1, false, 0, 2)], vec![], vec![Reg::D(0), Reg::D(1)], fp),
        ns("vld1", vec![a32::vld1_vst1(true, 32, 0, 1, 1, Wback::None)], vec![], vec![Reg::D(0)], fp),
        ns("vst1", vec![a32::vld1_vst1(false, 8, 0, 2, 1, Wback::None)], d.clone(), vec![], fp),
    ];
    emit_no_syndrome(dis, out, Isa::A32, a32_forms)?;
    let v = t32::from_a32_vfp;
    let s = t32::from_a32_simd;
    let t32_forms = vec![
        ns("ldrd", vec![t32::ldst(Op::Load, Size::D, 2, 1, Addr::Offset(0))], canary.clone(), vec![r(2), r(3)], dbl),
        ns("strd", vec![t32::ldst(Op::Store, Size::D, 2, 1, Addr::Offset(8))], data.clone(), vec![], dbl),
        ns("ldrd-post", vec![t32::ldst(Op::Load, Size::D, 2, 1, Addr::Post(8))], canary.clone(), vec![r(2), r(3)], "LDRD with writeback"),
        ns("ldm-w", vec![t32::ldm_stm(true, false, 1, false, 0b1100)], canary.clone(), vec![r(2), r(3)], blk),
        ns("stm-w-wb", vec![t32::ldm_stm(false, false, 1, true, 0b1100)], data.clone(), vec![], blk),
        ns("stmdb-wb", vec![t32::ldm_stm(false, true, 1, true, 0b1100)], data.clone(), vec![], blk),
        ns("ldm16", vec![t32::ldm_stm16(true, 1, 0b1100)], canary.clone(), vec![r(2), r(3)], "a 16-bit multiple-register load"),
        ns("stm16", vec![t32::ldm_stm16(false, 1, 0b1100)], data.clone(), vec![], "a 16-bit multiple-register store"),
        ns("ldrex", vec![t32::ldrex(2, 1, 0)], canary.clone(), vec![r(2)], ex),
        ns("strex", vec![t32::strex(0, 2, 1, 0)], data.clone(), vec![r(0)], ex),
        ns("ldr-pre", vec![t32::ldst(Op::Load, Size::W, 2, 1, Addr::Pre(4))], canary.clone(), vec![r(2)], wb),
        ns("str-post", vec![t32::ldst(Op::Store, Size::W, 2, 1, Addr::Post(-4))], data.clone(), vec![], wb),
        ns("ldrh-post", vec![t32::ldst(Op::Load, Size::H, 2, 1, Addr::Post(2))], canary.clone(), vec![r(2)], wb),
        ns("vldr", vec![v(a32::vldr_vstr(true, 0, 1, 0))], vec![], vec![Reg::D(0)], fp),
        ns("vstr", vec![v(a32::vldr_vstr(false, 0, 1, 8))], d.clone(), vec![], fp),
        ns("vld1", vec![s(a32::vld1_vst1(true, 32, 0, 1, 1, Wback::None))], vec![], vec![Reg::D(0)], fp),
        ns("vst1", vec![s(a32::vld1_vst1(false, 8, 0, 2, 1, Wback::None))], d, vec![], fp),
    ];
    emit_no_syndrome(dis, out, Isa::T32, t32_forms)
}

/// Stage-1 page tables inside a memslot of the case, read-only or not: a load and a store to
/// a RAM page whose level-3 table lives in the region `s1tables`, which stage 2 has not
/// mapped yet. The walk's read takes a stage-2 translation fault with S1PTW=1; KVM maps the
/// page and the access completes. Before 406504c7b040 ("KVM: arm64: Fix S1PTW handling on RO
/// memslots", Dec 2022) KVM treated every S1PTW fault as a write, so page tables in a
/// read-only memslot (EFI firmware images) got an external abort (quirk `s1ptw-ro-as-write`).
/// The `ram` variants are the control: a write fault there is fine.
fn s1_tables_in_memslot(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    use crate::suite::builder::{init, AUX_IPA, AUX_SIZE};
    const DATA: u64 = 0x8877_6655_4433_2211;
    for isa in [Isa::A64, Isa::A32] {
        for (hname, hkind) in [("roram", RegionKind::RoRam), ("ram", RegionKind::Ram)] {
            for store in [false, true] {
                let access = match (isa, store) {
                    (Isa::A64, false) => a64::ldst(a64::Op::Load, a64::Size::X, 0, 1, a64::Addr::Offset(0)),
                    (Isa::A64, true) => a64::ldst(a64::Op::Store, a64::Size::X, 2, 1, a64::Addr::Offset(0)),
                    (_, false) => a32::ldst(a32::Op::Load, a32::Size::W, 0, 1, a32::Addr::Offset(0)),
                    (_, true) => a32::ldst(a32::Op::Store, a32::Size::W, 2, 1, a32::Addr::Offset(0)),
                };
                let (r0, r1, r2) = if isa == Isa::A64 { (Reg::X(0), Reg::X(1), Reg::X(2)) } else { (Reg::R(0), Reg::R(1), Reg::R(2)) };
                let mut data = region("data", TARGET_IPA, 0x1000, RegionKind::Ram);
                data.init = vec![init(0, DATA.to_le_bytes().to_vec())];
                let mut tables = region("s1tables", AUX_IPA, AUX_SIZE, hkind);
                tables.s1_table_for = Some("data".into());
                let op = if store { "str" } else { "ldr" };
                let name = format!("{}-el1-{op}-s1-tables-in-{hname}", isa_name(isa));
                let mut c = Builder::new(Family::Mmio, &name, isa, El::El1)
                    .region(data)
                    .region(tables)
                    .describe(format!(
                        "{} to a RAM page whose level-3 stage-1 table lives in a {} memslot not yet mapped at stage 2: the walk's stage-2 fault (S1PTW, translation) is a read, so the hypervisor maps the table page and the access completes.",
                        op.to_uppercase(),
                        if hkind == RegionKind::RoRam { "read-only" } else { "writable" }
                    ))
                    .detail(format!("isa={isa} access={op} tables_in={hname}"))
                    .reg(r0, CANARY & 0xffff_ffff)
                    .reg(r1, u128::from(TARGET_IPA))
                    .reg(r2, 0x1234_5678)
                    .code([access])
                    .code(marker(isa))
                    .observe(&[r0, marker_reg(isa)])
                    .window("data", 0, 8)
                    .build(dis)?;
                // The table bytes the harness builds for this layout (lowering checks them).
                for (region_name, bytes) in crate::lower::s1_table_pages(&c).map_err(|e| SuiteError::Lower { case: name.clone(), message: e.to_string() })? {
                    if let Some(r) = c.memory.iter_mut().find(|r| r.name == region_name) {
                        r.init = vec![init(0, bytes)];
                    }
                }
                out.push(c);
            }
        }
    }
    Ok(())
}
