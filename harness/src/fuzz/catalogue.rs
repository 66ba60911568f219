//! The catalogue of trap-prone encodings the mutators draw from: every load/store class
//! (sizes, sign extension, acquire/release, exclusives, atomics, pairs, SIMD structures,
//! writeback forms), cache maintenance by VA, FP/SIMD data processing and transfers, and
//! system-register/coprocessor moves, for A64, A32 and T32.
//!
//! Words come from the payload engineer's encoders (`guest_payloads::encode`), which are
//! checked against Capstone, so every catalogue word decodes as the instruction it names.
//! Only registers the guest runtime leaves to the case are used: data and address registers
//! below 8 (the T32 16-bit forms need low registers anyway), never SP, LR or PC as a
//! destination, and no system-register write that would take the runtime's own state away
//! (only FPCR/FPSR in A64 and FPSCR/FPEXC in AArch32, which the fp32 family is about).

use guest_payloads::encode::{a32, a64, t32, Barrier, Word};
use trapdiff_arch::case::Isa;
use trapdiff_arch::sysreg::{self, cp15, vfp_sysreg};

/// What kind of instruction an entry is; mutators that change operands keep the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Single-register loads and stores (every size, extension and addressing mode).
    LoadStore,
    /// Forms that never carry a valid syndrome (ISV = 0): pairs, multiples, writeback,
    /// exclusives, atomics, SIMD structures (Arm ARM D17.2.37 ISS encoding for a Data
    /// Abort: "ISV is 0 for ... load/store pair, with writeback, SIMD&FP structure").
    NoSyndrome,
    /// Acquire/release (they do carry a syndrome, with AR set).
    Ordered,
    /// Cache maintenance and DC ZVA by VA.
    Cmo,
    /// FP/SIMD data processing and register transfers (CPACR/FPEXC traps).
    Fp,
    /// FP/SIMD loads and stores.
    FpMem,
    /// System-register or coprocessor moves.
    Sys,
    /// Barriers, NOP, SVC.
    Misc,
}

/// One encoding and its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub class: Class,
    pub w: Word,
}

/// Registers a catalogue instruction uses: `rn` holds an address, `rt` and `rt2` take data.
/// All below 8; `rt`, `rt2` and `rn` are distinct (exclusive stores need Rs != Rt, Rn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operands {
    pub rn: u8,
    pub rt: u8,
    pub rt2: u8,
    /// A small signed byte offset (multiple of 8, in -64..=56) for immediate forms.
    pub off: i16,
}

impl Operands {
    /// Whether the operands are what the catalogue expects.
    pub fn ok(&self) -> bool {
        self.rn < 8
            && self.rt < 8
            && self.rt2 < 8
            && self.rn != self.rt
            && self.rn != self.rt2
            && self.rt != self.rt2
            && self.off % 8 == 0
            && (-64..=56).contains(&self.off)
    }
}

fn push(v: &mut Vec<Entry>, class: Class, w: Word) {
    v.push(Entry { class, w });
}

/// Every catalogue encoding of `isa` with operands `o` (which must satisfy [`Operands::ok`]).
pub fn entries(isa: Isa, o: Operands) -> Vec<Entry> {
    assert!(o.ok(), "catalogue operands out of range: {o:?}");
    match isa {
        Isa::A64 => entries_a64(o),
        Isa::A32 => entries_a32(o),
        Isa::T32 => entries_t32(o),
    }
}

fn entries_a64(o: Operands) -> Vec<Entry> {
    use a64::{Addr, AtomicOp, Exclusive, FpSize, Op, Ordered, PairAddr, PairKind, Size};
    let Operands { rn, rt, rt2, off } = o;
    let mut v = Vec::new();
    for size in Size::ALL {
        let b = size.bytes() as i16;
        let mut ops = vec![Op::Load, Op::Store];
        if size != Size::X {
            ops.push(Op::LoadSx);
        }
        if matches!(size, Size::B | Size::H) {
            ops.push(Op::LoadSw);
        }
        for op in ops {
            for addr in [Addr::Offset(0), Addr::Offset(b as u32), Addr::Unscaled(off.wrapping_add(1))] {
                push(&mut v, Class::LoadStore, a64::ldst(op, size, rt, rn, addr));
            }
            for addr in [Addr::Pre(off), Addr::Post(b), Addr::Reg(rt2)] {
                push(&mut v, Class::NoSyndrome, a64::ldst(op, size, rt, rn, addr));
            }
        }
        for kind in [Ordered::Ldar, Ordered::Stlr, Ordered::Ldapr] {
            push(&mut v, Class::Ordered, a64::ordered(kind, size, rt, rn));
        }
        for kind in [Exclusive::Ldxr, Exclusive::Ldaxr, Exclusive::Stxr { rs: rt2 }, Exclusive::Stlxr { rs: rt2 }] {
            push(&mut v, Class::NoSyndrome, a64::exclusive(kind, size, rt, rn));
        }
        for op in [AtomicOp::Ldadd, AtomicOp::Ldclr, AtomicOp::Ldeor, AtomicOp::Ldset, AtomicOp::Swp] {
            push(&mut v, Class::NoSyndrome, a64::atomic(op, size, false, false, rt2, rt, rn));
        }
        push(&mut v, Class::NoSyndrome, a64::cas(size, true, true, rt2, rt, rn));
    }
    for x in [false, true] {
        push(&mut v, Class::NoSyndrome, a64::exclusive_pair(Exclusive::Ldxr, x, rt, rt2, rn));
    }
    for (load, kind) in
        [(true, PairKind::W), (false, PairKind::W), (true, PairKind::X), (false, PairKind::X), (true, PairKind::Sw), (true, PairKind::D), (false, PairKind::Q)]
    {
        for addr in [PairAddr::Offset(0), PairAddr::Pre(16), PairAddr::Post(-16)] {
            push(&mut v, Class::NoSyndrome, a64::pair(load, kind, rt, rt2, rn, addr));
        }
    }
    for size in [FpSize::B, FpSize::H, FpSize::S, FpSize::D, FpSize::Q] {
        for load in [true, false] {
            push(&mut v, Class::FpMem, a64::ldst_fp(load, size, rt, rn, Addr::Offset(0)));
            push(&mut v, Class::NoSyndrome, a64::ldst_fp(load, size, rt, rn, Addr::Post(16)));
        }
    }
    for (arr, regs) in [(a64::Arr::B16, 1), (a64::Arr::D1, 2), (a64::Arr::S4, 4)] {
        for load in [true, false] {
            push(&mut v, Class::NoSyndrome, a64::ld1_st1(load, arr, rt, regs, rn, false));
            push(&mut v, Class::NoSyndrome, a64::ld1_st1(load, arr, rt, regs, rn, true));
        }
    }
    for op in a64::Cmo::ALL {
        push(&mut v, Class::Cmo, a64::cmo(op, rn));
    }
    push(&mut v, Class::Cmo, a64::ic_iallu());
    for reg in [sysreg::CTR_EL0, sysreg::DCZID_EL0, sysreg::MIDR_EL1, sysreg::FPCR, sysreg::FPSR, sysreg::CNTPCT_EL0] {
        push(&mut v, Class::Sys, a64::mrs(reg, rt));
    }
    for reg in [sysreg::FPCR, sysreg::FPSR] {
        push(&mut v, Class::Sys, a64::msr(reg, rt));
    }
    push(&mut v, Class::Fp, a64::fadd(a64::Fp::D, rt, rt2, rt));
    push(&mut v, Class::Fp, a64::fadd(a64::Fp::S, rt, rt2, rt));
    push(&mut v, Class::Fp, a64::fmov_gpr(true, rt, rt2));
    push(&mut v, Class::Fp, a64::fmov_gpr(false, rt, rt2));
    push(&mut v, Class::Fp, a64::add_vec(a64::Arr::S4, rt, rt2, rt));
    for w in [a64::nop(), a64::dsb(Barrier::Sy), a64::dmb(Barrier::Ish), a64::isb(), a64::svc(0)] {
        push(&mut v, Class::Misc, w);
    }
    v
}

fn entries_a32(o: Operands) -> Vec<Entry> {
    use a32::{Addr, Block, Op, Size};
    let Operands { rn, rt, rt2, off } = o;
    // LDRD/STRD and the exclusive doubleword forms need an even Rt below r14 (F5.1.82).
    let rd_even = rt & !1;
    let mut v = Vec::new();
    for (op, size) in [
        (Op::Load, Size::W),
        (Op::Store, Size::W),
        (Op::Load, Size::B),
        (Op::Store, Size::B),
        (Op::Load, Size::H),
        (Op::Store, Size::H),
        (Op::LoadSx, Size::B),
        (Op::LoadSx, Size::H),
    ] {
        push(&mut v, Class::LoadStore, a32::ldst(op, size, rt, rn, Addr::Offset(0)));
        push(&mut v, Class::LoadStore, a32::ldst(op, size, rt, rn, Addr::Offset(off.wrapping_add(1))));
        push(&mut v, Class::NoSyndrome, a32::ldst(op, size, rt, rn, Addr::Pre(off)));
        push(&mut v, Class::NoSyndrome, a32::ldst(op, size, rt, rn, Addr::Post(8)));
    }
    if rd_even != rn && rd_even + 1 != rn {
        for op in [Op::Load, Op::Store] {
            push(&mut v, Class::NoSyndrome, a32::ldst(op, Size::D, rd_even, rn, Addr::Offset(0)));
            push(&mut v, Class::NoSyndrome, a32::ldst(op, Size::D, rd_even, rn, Addr::Post(8)));
        }
        push(&mut v, Class::NoSyndrome, a32::ldrex(Size::D, rd_even, rn));
    }
    let list = (1u16 << rt) | (1u16 << rt2);
    for mode in [Block::Ia, Block::Ib, Block::Da, Block::Db] {
        push(&mut v, Class::NoSyndrome, a32::ldm_stm(true, mode, rn, false, list));
        push(&mut v, Class::NoSyndrome, a32::ldm_stm(false, mode, rn, true, list));
    }
    for size in [Size::W, Size::B, Size::H] {
        push(&mut v, Class::NoSyndrome, a32::ldrex(size, rt, rn));
        push(&mut v, Class::NoSyndrome, a32::strex(size, rt2, rt, rn));
        push(&mut v, Class::Ordered, a32::lda(size, rt, rn));
        push(&mut v, Class::Ordered, a32::stl(size, rt, rn));
    }
    for op in [cp15::DCIMVAC, cp15::DCCMVAC, cp15::DCCMVAU, cp15::DCCIMVAC, cp15::ICIMVAU, cp15::ICIALLU, cp15::BPIALL] {
        push(&mut v, Class::Cmo, a32::mcr(op, rn));
    }
    for reg in [cp15::MIDR, cp15::CTR, cp15::CPACR, cp15::SCTLR] {
        push(&mut v, Class::Sys, a32::mrc(reg, rt));
    }
    for spec in [vfp_sysreg::FPSID, vfp_sysreg::FPSCR, vfp_sysreg::FPEXC, vfp_sysreg::MVFR0, vfp_sysreg::MVFR1] {
        push(&mut v, Class::Fp, a32::vmrs(rt, spec));
    }
    push(&mut v, Class::Fp, a32::vmsr(vfp_sysreg::FPSCR, rt));
    push(&mut v, Class::Fp, a32::vmsr(vfp_sysreg::FPEXC, rt));
    push(&mut v, Class::Fp, a32::vadd_f64(rt, rt2, rt));
    push(&mut v, Class::Fp, a32::vadd_f32(rt, rt2, rt));
    push(&mut v, Class::Fp, a32::vmul_f64(rt, rt2, rt));
    push(&mut v, Class::Fp, a32::vmov_f64(rt, rt2));
    push(&mut v, Class::Fp, a32::vmov_d_from_core(rt, rt, rt2));
    push(&mut v, Class::Fp, a32::vmov_core_from_d(rt, rt2, rt));
    push(&mut v, Class::Fp, a32::vmov_s_from_core(rt, rt));
    push(&mut v, Class::Fp, a32::vadd_int_q(32, rt / 2, rt2 / 2, rt / 2));
    for load in [true, false] {
        push(&mut v, Class::FpMem, a32::vldr_vstr(load, rt, rn, 0));
        push(&mut v, Class::FpMem, a32::vldr_vstr(load, rt, rn, off.wrapping_add(0) & !3));
        push(&mut v, Class::NoSyndrome, a32::vldm_vstm(load, rn, true, rt, 2));
        push(&mut v, Class::NoSyndrome, a32::vld1_vst1(load, 8, rt, 1, rn, a32::Wback::None));
        push(&mut v, Class::NoSyndrome, a32::vld1_vst1(load, 64, rt, 2, rn, a32::Wback::Imm));
    }
    for w in [a32::nop(), a32::dsb(Barrier::Sy), a32::dmb(Barrier::Ish), a32::isb(), a32::svc(0)] {
        push(&mut v, Class::Misc, w);
    }
    v
}

fn entries_t32(o: Operands) -> Vec<Entry> {
    use a32::{Addr, Op, Size};
    let Operands { rn, rt, rt2, off } = o;
    let mut v = Vec::new();
    for (op, size) in [(Op::Load, Size::W), (Op::Store, Size::W), (Op::Load, Size::B), (Op::Store, Size::B), (Op::Load, Size::H), (Op::Store, Size::H)] {
        push(&mut v, Class::LoadStore, t32::ldst16(op, size, rt, rn, 0));
        push(&mut v, Class::LoadStore, t32::ldst16(op, size, rt, rn, size.bytes()));
        push(&mut v, Class::LoadStore, t32::ldst16_reg(op, size, rt, rn, rt2));
    }
    for (op, size) in [
        (Op::Load, Size::W),
        (Op::Store, Size::W),
        (Op::Load, Size::B),
        (Op::LoadSx, Size::B),
        (Op::Load, Size::H),
        (Op::LoadSx, Size::H),
        (Op::Store, Size::H),
    ] {
        push(&mut v, Class::LoadStore, t32::ldst(op, size, rt, rn, Addr::Offset(off.wrapping_add(1))));
        push(&mut v, Class::NoSyndrome, t32::ldst(op, size, rt, rn, Addr::Pre(off)));
        push(&mut v, Class::NoSyndrome, t32::ldst(op, size, rt, rn, Addr::Post(8)));
    }
    // The sign-extending loads have only the register-offset 16-bit form.
    push(&mut v, Class::LoadStore, t32::ldst16_reg(Op::LoadSx, Size::B, rt, rn, rt2));
    push(&mut v, Class::LoadStore, t32::ldst16_reg(Op::LoadSx, Size::H, rt, rn, rt2));
    for op in [Op::Load, Op::Store] {
        push(&mut v, Class::NoSyndrome, t32::ldst(op, Size::D, rt, rn, Addr::Offset(off & !3)));
    }
    let list = (1u16 << rt) | (1u16 << rt2);
    for db in [false, true] {
        push(&mut v, Class::NoSyndrome, t32::ldm_stm(true, db, rn, false, list));
        push(&mut v, Class::NoSyndrome, t32::ldm_stm(false, db, rn, true, list));
    }
    push(&mut v, Class::NoSyndrome, t32::ldm_stm16(true, rn, list as u8));
    push(&mut v, Class::NoSyndrome, t32::ldm_stm16(false, rn, list as u8));
    push(&mut v, Class::NoSyndrome, t32::ldrex(rt, rn, 0));
    push(&mut v, Class::NoSyndrome, t32::strex(rt2, rt, rn, 0));
    for size in [Size::B, Size::H] {
        push(&mut v, Class::NoSyndrome, t32::ldrex_bhd(size, rt, rn));
    }
    for size in [Size::W, Size::B, Size::H] {
        push(&mut v, Class::Ordered, t32::lda(size, rt, rn));
        push(&mut v, Class::Ordered, t32::stl(size, rt, rn));
    }
    for op in [cp15::DCIMVAC, cp15::DCCMVAC, cp15::DCCMVAU, cp15::DCCIMVAC, cp15::ICIMVAU, cp15::ICIALLU] {
        push(&mut v, Class::Cmo, t32::mcr(op, rn));
    }
    for reg in [cp15::MIDR, cp15::CTR, cp15::CPACR] {
        push(&mut v, Class::Sys, t32::mrc(reg, rt));
    }
    for spec in [vfp_sysreg::FPSID, vfp_sysreg::FPSCR, vfp_sysreg::FPEXC, vfp_sysreg::MVFR0] {
        push(&mut v, Class::Fp, t32::vmrs(rt, spec));
    }
    push(&mut v, Class::Fp, t32::vmsr(vfp_sysreg::FPSCR, rt));
    push(&mut v, Class::Fp, t32::vmsr(vfp_sysreg::FPEXC, rt));
    push(&mut v, Class::Fp, t32::from_a32_vfp(a32::vadd_f64(rt, rt2, rt)));
    push(&mut v, Class::Fp, t32::from_a32_vfp(a32::vmov_d_from_core(rt, rt, rt2)));
    push(&mut v, Class::Fp, t32::from_a32_vfp(a32::vmov_s_from_core(rt, rt)));
    push(&mut v, Class::Fp, t32::from_a32_simd(a32::vadd_int_q(32, rt / 2, rt2 / 2, rt / 2)));
    for load in [true, false] {
        push(&mut v, Class::FpMem, t32::from_a32_vfp(a32::vldr_vstr(load, rt, rn, 0)));
        push(&mut v, Class::NoSyndrome, t32::from_a32_vfp(a32::vldm_vstm(load, rn, true, rt, 2)));
        push(&mut v, Class::NoSyndrome, t32::from_a32_simd(a32::vld1_vst1(load, 8, rt, 1, rn, a32::Wback::None)));
        push(&mut v, Class::NoSyndrome, t32::from_a32_simd(a32::vld1_vst1(load, 64, rt, 2, rn, a32::Wback::Imm)));
    }
    for w in [t32::nop(), t32::dsb(Barrier::Sy), t32::dmb(Barrier::Ish), t32::isb(), t32::svc(0)] {
        push(&mut v, Class::Misc, w);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_payloads::encode::Disassembler;

    /// Every catalogue word decodes (Capstone) as one whole instruction of its ISA, for
    /// every operand choice the mutators can make.
    #[test]
    fn every_entry_decodes_in_its_isa() {
        let d = Disassembler::new().expect("capstone");
        let mut bad = Vec::new();
        let mut n = 0;
        for isa in [Isa::A64, Isa::A32, Isa::T32] {
            for rn in 0..8u8 {
                for rt in 0..8u8 {
                    let rt2 = (0..8u8).find(|r| *r != rn && *r != rt).unwrap_or(0);
                    let o = Operands { rn, rt, rt2, off: -64 + 8 * i16::from(rt) };
                    if !o.ok() {
                        continue;
                    }
                    for e in entries(isa, o) {
                        n += 1;
                        if let Err(err) = d.disasm(isa, e.w) {
                            bad.push(format!("{isa} {o:?} {:#x} ({:?}): {err}", e.w, e.class));
                        }
                    }
                }
            }
        }
        assert!(n > 10_000, "catalogue unexpectedly small: {n}");
        assert!(bad.is_empty(), "{} undecodable:\n{}", bad.len(), bad[..bad.len().min(20)].join("\n"));
    }
}
