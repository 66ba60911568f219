//! cmo: cache maintenance by VA (DC IVAC/CIVAC/CVAC/CVAU/CVAP/ZVA, IC IVAU, and the AArch32
//! MCR forms) on every kind of memory a guest can point them at.
//!
//! Why: a CMO is a data abort with CM=1 when it misses stage 2 (Arm ARM D17.2.40, ISS "CM");
//! KVM must skip it on an MMIO hole (kvm_handle_guest_abort: "cache maintenance on a
//! non-memslot: skip", arch/arm64/kvm/mmu.c), treat it as a read on a read-only memslot, fault
//! in an unmapped page, and never turn it into an MMIO exit. DC ZVA is a store (WnR=1, no
//! CM), so it exits or faults like one. At EL0 the CMOs obey SCTLR_EL1.UCI/DZE (D7.5.9;
//! DC IVAC is always UNDEFINED at EL0); AArch32 CP15 CMOs are UNDEFINED at PL0 (G4.4.2).

use trapdiff_arch::case::{Case, El, Family, Isa, Reg, RegionKind, S1Perm, S1};
use trapdiff_arch::memattr::{S1Attr, S2Attr};
use trapdiff_arch::sysreg::{cp15, Cp15};

use super::{el_name, isa_name};
use crate::encode::{a32, a64, t32, Barrier, Disassembler, Word};
use crate::suite::builder::{region, Builder, TARGET_IPA, TARGET_SIZE};
use crate::suite::SuiteError;

/// Byte the target's memory starts with, so zeroing and corruption show in the window.
const FILL: u8 = 0xa5;
/// Page offset the CMO addresses: cache-line aligned for any line size up to 64 bytes.
const OFF: u64 = 0x40;
const MARKER: u16 = 0x600d;

/// What the CMO is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Writable memslot, page not yet touched (not mapped at stage 2 yet).
    Ram,
    /// Writable memslot, page mapped by a load earlier in the case.
    RamTouched,
    /// Read-only memslot, not touched.
    RoRam,
    /// Read-only memslot, mapped by a prior load.
    RoRamTouched,
    /// No memslot.
    Mmio,
    /// Memory with a Device-nGnRE stage-2 attribute.
    Device,
    /// Writable memslot mapped read-only at stage 1.
    RamS1Ro,
}

/// Targets where the hypervisor may see the CMO as an access without a valid syndrome.
const NISV_TARGETS: [Target; 3] = [Target::RoRam, Target::RoRamTouched, Target::Mmio];

const TARGETS: [Target; 7] = [Target::Ram, Target::RamTouched, Target::RoRam, Target::RoRamTouched, Target::Mmio, Target::Device, Target::RamS1Ro];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ram => "ram",
            Target::RamTouched => "ram-touched",
            Target::RoRam => "roram",
            Target::RoRamTouched => "roram-touched",
            Target::Mmio => "mmio",
            Target::Device => "device",
            Target::RamS1Ro => "ram-s1-ro",
        }
    }
    fn touched(self) -> bool {
        matches!(self, Target::RamTouched | Target::RoRamTouched)
    }
    fn what(self) -> &'static str {
        match self {
            Target::Ram => "an untouched page of a writable memslot (first access faults it in at stage 2)",
            Target::RamTouched => "a writable memslot page already mapped by a prior load",
            Target::RoRam => "an untouched page of a read-only memslot",
            Target::RoRamTouched => "a read-only memslot page already mapped by a prior load",
            Target::Mmio => "an MMIO hole (no memslot)",
            Target::Device => "memory with a Device-nGnRE stage-2 attribute",
            Target::RamS1Ro => "a writable memslot that stage 1 maps read-only",
        }
    }
    fn region(self) -> trapdiff_arch::case::Region {
        let (kind, s2) = match self {
            Target::Ram | Target::RamTouched | Target::RamS1Ro => (RegionKind::Ram, None),
            Target::RoRam | Target::RoRamTouched => (RegionKind::RoRam, None),
            Target::Mmio => (RegionKind::Mmio, None),
            Target::Device => (RegionKind::Device, Some(S2Attr::DeviceNGnRE)),
        };
        let mut r = region("target", TARGET_IPA, TARGET_SIZE, kind);
        r.s2 = s2;
        if kind.has_memory() {
            r.fill = FILL;
        }
        if self == Target::RamS1Ro {
            r.s1 = Some(S1 { attr: S1Attr::NormalWb, perm: S1Perm::R, el0: None });
        }
        r
    }
}

/// EL configurations: EL1, EL0 with SCTLR_EL1.UCI/UCT/DZE set, EL0 with them clear.
const ELS: [(&str, El, bool); 3] = [("el1", El::El1, true), ("el0", El::El0, true), ("el0-nouci", El::El0, false)];

fn a64_what(op: a64::Cmo) -> &'static str {
    match op {
        a64::Cmo::DcIvac => "DC IVAC (invalidate to PoC; needs write permission, UNDEFINED at EL0)",
        a64::Cmo::DcCivac => "DC CIVAC (clean+invalidate to PoC)",
        a64::Cmo::DcCvac => "DC CVAC (clean to PoC)",
        a64::Cmo::DcCvau => "DC CVAU (clean to PoU)",
        a64::Cmo::DcCvap => "DC CVAP (clean to PoP, FEAT_DPB)",
        a64::Cmo::DcZva => "DC ZVA (zero a DCZID-sized block: a store, not a CMO)",
        a64::Cmo::IcIvau => "IC IVAU (invalidate I-cache to PoU)",
    }
}

pub fn generate(dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    let mut out = Vec::new();
    a64_cases(dis, &mut out)?;
    aarch32_cases(dis, &mut out)?;
    Ok(out)
}

fn base(name: String, isa: Isa, el: El, t: Target) -> Builder {
    let b = Builder::new(Family::Cmo, &name, isa, el).region(t.region());
    if t.region().kind.has_memory() {
        b.window("target", 0, 256)
    } else {
        b
    }
}

fn a64_cases(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    let isa = Isa::A64;
    for op in a64::Cmo::ALL {
        for t in TARGETS {
            for (elname, el, uci) in ELS {
                let mut words = Vec::new();
                if t.touched() {
                    words.push(a64::ldr(a64::Size::X, 2, 1, 0));
                }
                words.push(a64::cmo(op, 1));
                words.push(a64::dsb(Barrier::Sy));
                words.push(a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0));
                let el_note = match (el, uci) {
                    (El::El1, _) => String::new(),
                    (El::El0, true) if op.el0_allowed() => " from EL0 with SCTLR_EL1.UCI/DZE set".into(),
                    (El::El0, true) => " from EL0, where it is UNDEFINED whatever UCI says".into(),
                    (El::El0, false) => " from EL0 with SCTLR_EL1.UCI/DZE clear (trapped to EL1, EC=0x18, or UNDEFINED)".into(),
                };
                let c = base(format!("a64-{elname}-{}-{}", op.name(), t.name()), isa, el, t)
                    .describe(format!("{} on {}{el_note}; observe exceptions, exits and the memory after.", a64_what(op), t.what()))
                    .detail(format!("op={} target={} el={elname} el0_cache_ops={uci} offset={OFF:#x}", op.name(), t.name()))
                    .sysregs(|s| s.el0_cache_ops = uci)
                    .reg(Reg::X(1), u128::from(TARGET_IPA + OFF))
                    .reg(Reg::X(2), 0xdead_beef_cafe_f00d)
                    .code(words)
                    .observe(&[Reg::X(2), Reg::X(9)]);
                out.push(c.build(dis)?);
            }
        }
        // Where a hypervisor may answer with a NISV exit (Linux 6.1 treats a CMO that misses a
        // read-only memslot as an access without a valid syndrome, and DC ZVA to a hole is a
        // store without one), the same case with KVM_CAP_ARM_NISV_TO_USER enabled.
        for t in NISV_TARGETS {
            let mut words = Vec::new();
            if t.touched() {
                words.push(a64::ldr(a64::Size::X, 2, 1, 0));
            }
            words.extend([a64::cmo(op, 1), a64::dsb(Barrier::Sy), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)]);
            let c = base(format!("a64-el1-{}-{}-nisv-on", op.name(), t.name()), isa, El::El1, t)
                .describe(format!(
                    "{} on {} with NISV delivery to userspace enabled (the VMM injects an abort on a NISV exit): shows whether the hypervisor skips, emulates, or reports it as an access without a syndrome.",
                    a64_what(op),
                    t.what()
                ))
                .detail(format!("op={} target={} el=el1 nisv_to_user=true on_nisv=InjectAbort offset={OFF:#x}", op.name(), t.name()))
                .vmm(|v| v.nisv_to_user = true)
                .reg(Reg::X(1), u128::from(TARGET_IPA + OFF))
                .reg(Reg::X(2), 0xdead_beef_cafe_f00d)
                .code(words)
                .observe(&[Reg::X(2), Reg::X(9)]);
            out.push(c.build(dis)?);
        }
        // A VA in the middle of a line: the operation applies to the whole line (DC ZVA to the
        // whole aligned block), never faults for alignment.
        let t = Target::Ram;
        let c = base(format!("a64-el1-{}-ram-midline", op.name()), isa, El::El1, t)
            .describe(format!("{} with a VA in the middle of a cache line: no alignment fault, the whole line/block is affected.", a64_what(op)))
            .detail(format!("op={} target=ram el=el1 offset=0x7b", op.name()))
            .reg(Reg::X(1), u128::from(TARGET_IPA + 0x7b))
            .code([a64::cmo(op, 1), a64::dsb(Barrier::Sy), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)])
            .observe(&[Reg::X(9)]);
        out.push(c.build(dis)?);
    }
    // IC IALLU: not by VA, EL1 only (UNDEFINED at EL0: D7.5.9).
    for (elname, el) in [("el1", El::El1), ("el0", El::El0)] {
        let c = Builder::new(Family::Cmo, &format!("a64-{elname}-ic-iallu"), isa, el)
            .describe(format!("IC IALLU at {}: invalidates all I-caches to PoU at EL1, UNDEFINED at EL0.", elname.to_uppercase()))
            .detail(format!("op=ic-iallu el={elname}"))
            .code([a64::ic_iallu(), a64::dsb(Barrier::Ish), a64::isb(), a64::movw(a64::MoveWide::Movz, true, 9, MARKER, 0)])
            .observe(&[Reg::X(9)]);
        out.push(c.build(dis)?);
    }
    Ok(())
}

/// AArch32 CP15 CMOs by MVA (G8.2 "Cache maintenance system instructions").
const A32_OPS: [(&str, Cp15, &str); 6] = [
    ("dcimvac", cp15::DCIMVAC, "DCIMVAC (invalidate to PoC)"),
    ("dccmvac", cp15::DCCMVAC, "DCCMVAC (clean to PoC)"),
    ("dccmvau", cp15::DCCMVAU, "DCCMVAU (clean to PoU)"),
    ("dccimvac", cp15::DCCIMVAC, "DCCIMVAC (clean+invalidate to PoC)"),
    ("dccmvap", cp15::DCCMVAP, "DCCMVAP (clean to PoP, FEAT_DPB)"),
    ("icimvau", cp15::ICIMVAU, "ICIMVAU (invalidate I-cache to PoU)"),
];

/// The per-ISA words an AArch32 CMO case is made of: a prior load, the MCR builder, DSB, marker.
type A32Kit = (Word, fn(Cp15, u8) -> Word, Word, Word);

fn aarch32_cases(dis: &Disassembler, out: &mut Vec<Case>) -> Result<(), SuiteError> {
    for isa in [Isa::A32, Isa::T32] {
        let (ldr, mcr, dsb, marker): A32Kit = match isa {
            Isa::A32 => (a32::ldst(a32::Op::Load, a32::Size::W, 2, 1, a32::Addr::Offset(0)), a32::mcr, a32::dsb(Barrier::Sy), a32::movw(9, MARKER)),
            _ => (t32::ldst16(a32::Op::Load, a32::Size::W, 2, 1, 0), t32::mcr, t32::dsb(Barrier::Sy), t32::movw(9, MARKER)),
        };
        for (name, cp, what) in A32_OPS {
            for t in TARGETS {
                let mut words = Vec::new();
                if t.touched() {
                    words.push(ldr);
                }
                words.extend([mcr(cp, 1), dsb, marker]);
                let c = base(format!("{}-el1-{name}-{}", isa_name(isa), t.name()), isa, El::El1, t)
                    .describe(format!("{isa} MCR {what} on {}: same stage-2 handling as the A64 form.", t.what()))
                    .detail(format!("op={name} isa={isa} target={} el=el1 offset={OFF:#x}", t.name()))
                    .reg(Reg::R(1), u128::from(TARGET_IPA + OFF))
                    .reg(Reg::R(2), 0xdead_beef)
                    .code(words)
                    .observe(&[Reg::R(2), Reg::R(9)]);
                out.push(c.build(dis)?);
            }
            for t in NISV_TARGETS {
                let mut words = Vec::new();
                if t.touched() {
                    words.push(ldr);
                }
                words.extend([mcr(cp, 1), dsb, marker]);
                let c = base(format!("{}-el1-{name}-{}-nisv-on", isa_name(isa), t.name()), isa, El::El1, t)
                    .describe(format!("{isa} MCR {what} on {} with NISV delivery to userspace enabled (the VMM injects an abort on a NISV exit).", t.what()))
                    .detail(format!("op={name} isa={isa} target={} el=el1 nisv_to_user=true on_nisv=InjectAbort offset={OFF:#x}", t.name()))
                    .vmm(|v| v.nisv_to_user = true)
                    .reg(Reg::R(1), u128::from(TARGET_IPA + OFF))
                    .reg(Reg::R(2), 0xdead_beef)
                    .code(words)
                    .observe(&[Reg::R(2), Reg::R(9)]);
                out.push(c.build(dis)?);
            }
            let c = base(format!("{}-{}-{name}-ram", isa_name(isa), el_name(El::El0)), isa, El::El0, Target::Ram)
                .describe(format!("{isa} MCR {what} from PL0: CP15 cache maintenance is UNDEFINED in User mode."))
                .detail(format!("op={name} isa={isa} target=ram el=el0"))
                .reg(Reg::R(1), u128::from(TARGET_IPA + OFF))
                .code([mcr(cp, 1), dsb, marker])
                .observe(&[Reg::R(9)]);
            out.push(c.build(dis)?);
        }
        for (elname, el) in [("el1", El::El1), ("el0", El::El0)] {
            let c = Builder::new(Family::Cmo, &format!("{}-{elname}-iciallu", isa_name(isa)), isa, el)
                .describe(format!("{isa} MCR ICIALLU at {}: EL1 only.", elname.to_uppercase()))
                .detail(format!("op=iciallu isa={isa} el={elname}"))
                .code([mcr(cp15::ICIALLU, 0), dsb, marker])
                .observe(&[Reg::R(9)]);
            out.push(c.build(dis)?);
        }
    }
    Ok(())
}
