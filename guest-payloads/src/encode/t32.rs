//! T32 encoders (Arm ARM F3 "T32 Instruction Set Encoding" and the T32 encodings in F5/F6).
//! A 32-bit instruction is returned as `hw1 << 16 | hw2`, as `Insn::w` stores it; a 16-bit
//! one as the halfword.
//!
//! The coprocessor, VFP and system-register encodings (MCR/MRC, VMRS/VMSR, VADD.F64, VLDR,
//! VLDM, VMOV) are the A32 words with cond = AL (F3.1: T32 coprocessor instructions use the
//! A32 encoding with 0b1110 in place of cond), so [`from_a32_vfp`] reuses the A32 builders.

use super::a32::{self, Addr, Op, Size};
use super::{sfield, ufield, Barrier, Cond, Word};

fn lo(r: u8, what: &str) -> u32 {
    ufield(r.into(), 3, what)
}
fn reg(r: u8, what: &str) -> u32 {
    ufield(r.into(), 4, what)
}
fn hw(hw1: u32, hw2: u32) -> Word {
    hw1 << 16 | hw2
}

/// A coprocessor/VFP A32 word (cond = AL) as the equivalent T32 word.
pub fn from_a32_vfp(w: Word) -> Word {
    assert!(w >> 28 == 0xe && (w >> 25) & 0b111 >= 0b110, "{w:#010x} is not an unconditional A32 coprocessor/VFP word");
    w
}

/// An Advanced SIMD A32 word as T32: data processing `1111 001U` becomes `111U 1111`,
/// element/structure loads and stores `1111 0100` become `1111 1001` (F3.3 / F4.1 "Advanced
/// SIMD" encoding spaces).
pub fn from_a32_simd(w: Word) -> Word {
    match w >> 24 {
        0xf2 | 0xf3 => 0xef00_0000 | (w & 0x0100_0000) << 4 | (w & 0x00ff_ffff),
        0xf4 => 0xf900_0000 | (w & 0x00ff_ffff),
        _ => panic!("{w:#010x} is not an A32 Advanced SIMD word"),
    }
}

/// 16-bit loads/stores with an immediate offset (F5.1.72 LDR (immediate) T1 and friends):
/// low registers, offset a multiple of the size up to 31 * size.
pub fn ldst16(op: Op, size: Size, rt: u8, rn: u8, off: u32) -> Word {
    let base = match (op, size) {
        (Op::Store, Size::W) => 0x6000,
        (Op::Load, Size::W) => 0x6800,
        (Op::Store, Size::B) => 0x7000,
        (Op::Load, Size::B) => 0x7800,
        (Op::Store, Size::H) => 0x8000,
        (Op::Load, Size::H) => 0x8800,
        _ => panic!("no 16-bit T32 {op:?} of size {size:?} with an immediate (sign-extending loads have only register forms)"),
    };
    let bytes = size.bytes();
    assert!(off.is_multiple_of(bytes), "offset {off} is not a multiple of the access size {bytes}");
    base | ufield((off / bytes).into(), 5, "imm5") << 6 | lo(rn, "Rn") << 3 | lo(rt, "Rt")
}

/// 16-bit register-offset loads/stores `[Rn, Rm]` (F5.1.74 LDR (register) T1 and friends).
pub fn ldst16_reg(op: Op, size: Size, rt: u8, rn: u8, rm: u8) -> Word {
    let base = match (op, size) {
        (Op::Store, Size::W) => 0x5000,
        (Op::Store, Size::H) => 0x5200,
        (Op::Store, Size::B) => 0x5400,
        (Op::LoadSx, Size::B) => 0x5600,
        (Op::Load, Size::W) => 0x5800,
        (Op::Load, Size::H) => 0x5a00,
        (Op::Load, Size::B) => 0x5c00,
        (Op::LoadSx, Size::H) => 0x5e00,
        _ => panic!("no 16-bit T32 register-offset {op:?} of size {size:?}"),
    };
    base | lo(rm, "Rm") << 6 | lo(rn, "Rn") << 3 | lo(rt, "Rt")
}

/// 32-bit loads/stores (F5.1.72 LDR (immediate) T3/T4 and the B/H/SB/SH/D forms):
/// a non-negative offset uses the 12-bit form, a negative one and the writeback forms the
/// 8-bit form; `Size::D` is LDRD/STRD (offset a multiple of 4, any Rt/Rt2 = Rt + 1).
pub fn ldst(op: Op, size: Size, rt: u8, rn: u8, addr: Addr) -> Word {
    // T32 marks post-index with W = 1 (P = 0, W = 0 is UNDEFINED), unlike A32.
    let (p, w, off) = match addr {
        Addr::Post(o) => (0, 1, o),
        _ => addr.pw(),
    };
    let u = u32::from(off >= 0);
    let mag = u32::from(off.unsigned_abs());
    if size == Size::D {
        assert!(op != Op::LoadSx, "there is no sign-extending LDRD");
        assert!(mag % 4 == 0, "LDRD/STRD offset {off} is not a multiple of 4");
        let h1 = 0xe840 | p << 8 | u << 7 | w << 5 | u32::from(op == Op::Load) << 4 | reg(rn, "Rn");
        return hw(h1, reg(rt, "Rt") << 12 | reg(rt + 1, "Rt2") << 8 | ufield((mag / 4).into(), 8, "imm8"));
    }
    // size bits [22:21] of the first halfword, S bit [24], L bit [20].
    let (s, sz) = match size {
        Size::B => (u32::from(op == Op::LoadSx), 0b00),
        Size::H => (u32::from(op == Op::LoadSx), 0b01),
        Size::W => {
            assert!(op != Op::LoadSx, "there is no sign-extending 32-bit LDR");
            (0, 0b10)
        }
        Size::D => unreachable!(),
    };
    let l = u32::from(op != Op::Store);
    let h1 = 0xf800 | s << 8 | sz << 5 | l << 4 | reg(rn, "Rn");
    if let Addr::Offset(o) = addr {
        if o >= 0 {
            return hw(h1 | 0x80, reg(rt, "Rt") << 12 | ufield(mag.into(), 12, "imm12"));
        }
    }
    hw(h1, reg(rt, "Rt") << 12 | 0x800 | p << 10 | u << 9 | w << 8 | ufield(mag.into(), 8, "imm8"))
}

/// 32-bit LDM/STM (F5.1.65 LDM T2, F5.1.66 LDMDB, F5.1.219 STM T2, F5.1.221 STMDB).
pub fn ldm_stm(load: bool, db: bool, rn: u8, wback: bool, list: u16) -> Word {
    assert!(list != 0 && list & (1 << 13) == 0, "T32 LDM/STM lists must be non-empty and exclude SP");
    let h1 = if db { 0xe900 } else { 0xe880 } | u32::from(wback) << 5 | u32::from(load) << 4 | reg(rn, "Rn");
    hw(h1, u32::from(list))
}

/// 16-bit `LDM Rn{!}, {list}` (T1: writeback unless Rn is in the list) and `STM Rn!, {list}`
/// (T1: always writeback). Low registers only.
pub fn ldm_stm16(load: bool, rn: u8, list: u8) -> Word {
    assert!(list != 0, "LDM/STM need at least one register");
    (if load { 0xc800 } else { 0xc000 }) | lo(rn, "Rn") << 8 | u32::from(list)
}

/// `LDREX Rt, [Rn, #off]` (F5.1.75 T1).
pub fn ldrex(rt: u8, rn: u8, off: u32) -> Word {
    assert!(off.is_multiple_of(4), "LDREX offset {off} is not a multiple of 4");
    hw(0xe850 | reg(rn, "Rn"), reg(rt, "Rt") << 12 | 0xf00 | ufield((off / 4).into(), 8, "imm8"))
}

/// `STREX Rd, Rt, [Rn, #off]` (F5.1.231 T1).
pub fn strex(rd: u8, rt: u8, rn: u8, off: u32) -> Word {
    assert!(off.is_multiple_of(4), "STREX offset {off} is not a multiple of 4");
    hw(0xe840 | reg(rn, "Rn"), reg(rt, "Rt") << 12 | reg(rd, "Rd") << 8 | ufield((off / 4).into(), 8, "imm8"))
}

/// `LDREXB/LDREXH Rt, [Rn]` and `LDREXD Rt, Rt2, [Rn]` (F5.1.76-78).
pub fn ldrex_bhd(size: Size, rt: u8, rn: u8) -> Word {
    let (op, rt2) = match size {
        Size::B => (0x4, 0xf),
        Size::H => (0x5, 0xf),
        Size::D => (0x7, reg(rt + 1, "Rt2")),
        Size::W => panic!("use ldrex for the word form"),
    };
    hw(0xe8d0 | reg(rn, "Rn"), reg(rt, "Rt") << 12 | rt2 << 8 | op << 4 | 0xf)
}

/// `LDA{B,H} Rt, [Rn]` (F5.1.55 T1).
pub fn lda(size: Size, rt: u8, rn: u8) -> Word {
    hw(0xe8d0 | reg(rn, "Rn"), reg(rt, "Rt") << 12 | 0xf00 | acq_op(size) << 4 | 0xf)
}

/// `STL{B,H} Rt, [Rn]` (F5.1.211 T1).
pub fn stl(size: Size, rt: u8, rn: u8) -> Word {
    hw(0xe8c0 | reg(rn, "Rn"), reg(rt, "Rt") << 12 | 0xf00 | acq_op(size) << 4 | 0xf)
}

fn acq_op(size: Size) -> u32 {
    match size {
        Size::B => 0x8,
        Size::H => 0x9,
        Size::W => 0xa,
        Size::D => panic!("LDA/STL have no doubleword form"),
    }
}

/// `MOVW Rd, #imm16` (F5.1.107 T3).
pub fn movw(rd: u8, imm: u16) -> Word {
    let imm = u32::from(imm);
    hw(0xf240 | (imm >> 11 & 1) << 10 | imm >> 12, (imm >> 8 & 7) << 12 | reg(rd, "Rd") << 8 | (imm & 0xff))
}

/// `MOVT Rd, #imm16` (F5.1.110 T1).
pub fn movt(rd: u8, imm: u16) -> Word {
    movw(rd, imm) | 0x0080 << 16
}

/// MOVW (+ MOVT when the high half is not zero) putting `value` in Rd.
pub fn mov_imm32(rd: u8, value: u32) -> Vec<Word> {
    let mut v = vec![movw(rd, value as u16)];
    if value >> 16 != 0 {
        v.push(movt(rd, (value >> 16) as u16));
    }
    v
}

/// `MOVS Rd, #imm8` (16-bit, sets flags outside an IT block).
pub fn movs_imm8(rd: u8, imm: u8) -> Word {
    0x2000 | lo(rd, "Rd") << 8 | u32::from(imm)
}

/// `ADDS Rdn, #imm8` / `SUBS Rdn, #imm8` (16-bit T2).
pub fn adds_imm8(sub: bool, rdn: u8, imm: u8) -> Word {
    (if sub { 0x3800 } else { 0x3000 }) | lo(rdn, "Rdn") << 8 | u32::from(imm)
}

/// `CMP Rn, #imm8` (16-bit).
pub fn cmp_imm8(rn: u8, imm: u8) -> Word {
    0x2800 | lo(rn, "Rn") << 8 | u32::from(imm)
}

/// `MOV Rd, Rm` (16-bit T1, any registers).
pub fn mov_reg(rd: u8, rm: u8) -> Word {
    let rd = reg(rd, "Rd");
    0x4600 | (rd >> 3) << 7 | reg(rm, "Rm") << 3 | (rd & 7)
}

/// `B <label>` (16-bit T2), offset in bytes from this instruction (PC reads as +4).
pub fn b(off: i64) -> Word {
    assert!(off % 2 == 0, "T32 branch offset {off} is odd");
    0xe000 | sfield((off - 4) / 2, 11, "imm11")
}

/// `B<cond> <label>` (16-bit T1).
pub fn b_cond(cond: Cond, off: i64) -> Word {
    assert!(cond != Cond::Al && off % 2 == 0, "B<cond> T1 needs a real condition and an even offset");
    0xd000 | (cond as u32) << 8 | sfield((off - 4) / 2, 8, "imm8")
}

/// `BX Rm` (16-bit).
pub fn bx(rm: u8) -> Word {
    0x4700 | reg(rm, "Rm") << 3
}

/// `BLX Rm` (16-bit).
pub fn blx(rm: u8) -> Word {
    0x4780 | reg(rm, "Rm") << 3
}

/// `DSB <option>` (F5.1.44 T1).
pub fn dsb(opt: Barrier) -> Word {
    0xf3bf_8f40 | opt as u32
}

/// `DMB <option>`.
pub fn dmb(opt: Barrier) -> Word {
    0xf3bf_8f50 | opt as u32
}

/// `ISB SY`.
pub fn isb() -> Word {
    0xf3bf_8f6f
}

/// `NOP` (16-bit).
pub fn nop() -> Word {
    0xbf00
}

/// `SVC #imm8` (16-bit).
pub fn svc(imm: u8) -> Word {
    0xdf00 | u32::from(imm)
}

/// Helpers mirroring the A32 coprocessor builders, for readability at call sites.
pub fn mcr(cp: trapdiff_arch::sysreg::Cp15, rt: u8) -> Word {
    from_a32_vfp(a32::mcr(cp, rt))
}
pub fn mrc(cp: trapdiff_arch::sysreg::Cp15, rt: u8) -> Word {
    from_a32_vfp(a32::mrc(cp, rt))
}
pub fn vmrs(rt: u8, spec: u8) -> Word {
    from_a32_vfp(a32::vmrs(rt, spec))
}
pub fn vmsr(spec: u8, rt: u8) -> Word {
    from_a32_vfp(a32::vmsr(spec, rt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::check_disasm as check;
    use trapdiff_arch::case::Isa;
    use trapdiff_arch::sysreg::{cp15, vfp_sysreg};

    #[test]
    fn loads_and_stores() {
        check(
            Isa::T32,
            &[
                (ldst16(Op::Load, Size::W, 0, 1, 4), "ldr r0, [r1, #4]"),
                (ldst16(Op::Store, Size::B, 0, 1, 3), "strb r0, [r1, #3]"),
                (ldst16(Op::Load, Size::H, 2, 1, 2), "ldrh r2, [r1, #2]"),
                (ldst16(Op::Store, Size::H, 2, 1, 0), "strh r2, [r1]"),
                (ldst16_reg(Op::LoadSx, Size::B, 0, 1, 2), "ldrsb r0, [r1, r2]"),
                (ldst16_reg(Op::LoadSx, Size::H, 0, 1, 2), "ldrsh r0, [r1, r2]"),
                (ldst16_reg(Op::Load, Size::W, 0, 1, 2), "ldr r0, [r1, r2]"),
                (ldst(Op::Load, Size::W, 0, 1, Addr::Offset(4)), "ldr.w r0, [r1, #4]"),
                (ldst(Op::Store, Size::W, 8, 1, Addr::Offset(0)), "str.w r8, [r1]"),
                (ldst(Op::Load, Size::B, 0, 1, Addr::Offset(1)), "ldrb.w r0, [r1, #1]"),
                (ldst(Op::Load, Size::H, 0, 1, Addr::Offset(2)), "ldrh.w r0, [r1, #2]"),
                (ldst(Op::LoadSx, Size::B, 0, 1, Addr::Offset(0)), "ldrsb.w r0, [r1]"),
                (ldst(Op::LoadSx, Size::H, 0, 1, Addr::Offset(2)), "ldrsh.w r0, [r1, #2]"),
                (ldst(Op::Store, Size::H, 0, 1, Addr::Offset(6)), "strh.w r0, [r1, #6]"),
                (ldst(Op::Load, Size::W, 0, 1, Addr::Offset(-4)), "ldr r0, [r1, #-0x4]"),
                (ldst(Op::Load, Size::W, 0, 1, Addr::Pre(4)), "ldr r0, [r1, #4]!"),
                (ldst(Op::Store, Size::W, 0, 1, Addr::Post(-4)), "str r0, [r1], #-4"),
                (ldst(Op::Load, Size::D, 2, 1, Addr::Offset(8)), "ldrd r2, r3, [r1, #8]"),
                (ldst(Op::Store, Size::D, 2, 1, Addr::Pre(-8)), "strd r2, r3, [r1, #-0x8]!"),
                (ldst(Op::Load, Size::D, 2, 1, Addr::Post(8)), "ldrd r2, r3, [r1], #8"),
                (ldm_stm(true, false, 1, false, 0b1100), "ldm.w r1, {r2, r3}"),
                (ldm_stm(false, false, 1, true, 0b1100), "stm.w r1!, {r2, r3}"),
                (ldm_stm(false, true, 1, true, 0b1100), "stmdb r1!, {r2, r3}"),
                (ldm_stm16(true, 1, 0b1100), "ldm r1!, {r2, r3}"),
                (ldm_stm16(false, 1, 0b1100), "stm r1!, {r2, r3}"),
                (ldrex(0, 1, 0), "ldrex r0, [r1]"),
                (strex(3, 0, 1, 0), "strex r3, r0, [r1]"),
                (ldrex_bhd(Size::B, 0, 1), "ldrexb r0, [r1]"),
                (ldrex_bhd(Size::D, 2, 1), "ldrexd r2, r3, [r1]"),
                (lda(Size::W, 0, 1), "lda r0, [r1]"),
                (lda(Size::H, 0, 1), "ldah r0, [r1]"),
                (stl(Size::B, 0, 1), "stlb r0, [r1]"),
            ],
        );
    }

    /// Every (op, size, addressing) combination of the 32-bit forms decodes as the load/store
    /// it should be, with the offset and index form it was given.
    #[test]
    fn every_32bit_load_store_combination_decodes_as_itself() {
        let d = crate::encode::Disassembler::new().expect("capstone");
        let mut n = 0;
        for (op, size, mn) in [
            (Op::Store, Size::W, "str"),
            (Op::Load, Size::W, "ldr"),
            (Op::Store, Size::B, "strb"),
            (Op::Load, Size::B, "ldrb"),
            (Op::Store, Size::H, "strh"),
            (Op::Load, Size::H, "ldrh"),
            (Op::LoadSx, Size::B, "ldrsb"),
            (Op::LoadSx, Size::H, "ldrsh"),
            (Op::Load, Size::D, "ldrd"),
            (Op::Store, Size::D, "strd"),
        ] {
            for addr in [Addr::Offset(8), Addr::Offset(-8), Addr::Pre(8), Addr::Pre(-8), Addr::Post(8), Addr::Post(-8)] {
                let got = d.disasm(Isa::T32, ldst(op, size, 4, 1, addr)).expect("decodes");
                let regs = if size == Size::D { "r4, r5" } else { "r4" };
                let (mnem, rest) = got.split_once(' ').expect("operands");
                assert_eq!(mnem.trim_end_matches(".w"), mn, "{got}");
                assert!(rest.starts_with(regs), "{got}: registers");
                let (o, form) = match addr {
                    Addr::Offset(o) => (o, "offset"),
                    Addr::Pre(o) => (o, "pre"),
                    Addr::Post(o) => (o, "post"),
                };
                let imm = if o < 0 { ["#-8", "#-0x8"] } else { ["#8", "#8"] };
                let ok = match form {
                    "offset" => imm.iter().any(|i| rest.ends_with(&format!("[r1, {i}]"))),
                    "pre" => imm.iter().any(|i| rest.ends_with(&format!("[r1, {i}]!"))),
                    _ => imm.iter().any(|i| rest.ends_with(&format!("[r1], {i}"))),
                };
                assert!(ok, "{got}: expected {form} addressing with offset {o}");
                n += 1;
            }
        }
        assert_eq!(n, 60);
    }

    #[test]
    fn coprocessor_fp_simd() {
        check(
            Isa::T32,
            &[
                (mcr(cp15::DCCIMVAC, 0), "mcr p15, #0, r0, c7, c14, #1"),
                (mrc(cp15::CPACR, 2), "mrc p15, #0, r2, c1, c0, #2"),
                (vmrs(0, vfp_sysreg::FPEXC), "vmrs r0, fpexc"),
                (vmsr(vfp_sysreg::FPSCR, 3), "vmsr fpscr, r3"),
                (from_a32_vfp(a32::vadd_f64(0, 1, 2)), "vadd.f64 d0, d1, d2"),
                (from_a32_vfp(a32::vadd_f32(0, 1, 3)), "vadd.f32 s0, s1, s3"),
                (from_a32_vfp(a32::vmov_d_from_core(3, 0, 1)), "vmov d3, r0, r1"),
                (from_a32_vfp(a32::vldr_vstr(true, 0, 1, 8)), "vldr d0, [r1, #8]"),
                (from_a32_vfp(a32::vldm_vstm(false, 1, true, 4, 1)), "vstmia r1!, {d4}"),
                (from_a32_simd(a32::vadd_int_q(32, 0, 1, 2)), "vadd.i32 q0, q1, q2"),
                (from_a32_simd(a32::vld1_vst1(true, 32, 0, 1, 1, a32::Wback::None)), "vld1.32 {d0}, [r1]"),
                (from_a32_simd(a32::vld1_vst1(false, 8, 0, 2, 1, a32::Wback::Imm)), "vst1.8 {d0, d1}, [r1]!"),
            ],
        );
    }

    #[test]
    fn moves_branches_barriers() {
        check(
            Isa::T32,
            &[
                (movw(0, 0x1234), "movw r0, #0x1234"),
                (movw(9, 0xffff), "movw sb, #0xffff"),
                (movt(0, 0x4000), "movt r0, #0x4000"),
                (movs_imm8(1, 7), "movs r1, #7"),
                (adds_imm8(false, 1, 4), "adds r1, #4"),
                (adds_imm8(true, 1, 4), "subs r1, #4"),
                (cmp_imm8(3, 1), "cmp r3, #1"),
                (mov_reg(8, 1), "mov r8, r1"),
                (b(8), "b #8"),
                (b_cond(Cond::Ne, -4), "bne #0xfffffffc"),
                (bx(2), "bx r2"),
                (blx(2), "blx r2"),
                (dsb(Barrier::Sy), "dsb sy"),
                (dmb(Barrier::Ish), "dmb ish"),
                (isb(), "isb sy"),
                (nop(), "nop"),
                (svc(0x7d), "svc #0x7d"),
            ],
        );
    }
}
