//! A32 encoders (Arm ARM F4 "A32 Instruction Set Encoding", F5 "T32 and A32 Base Instruction
//! Descriptions", F6 "T32 and A32 Advanced SIMD and Floating-point Instruction Descriptions").
//! Every instruction is unconditional (cond = AL) unless it takes a [`Cond`].

use trapdiff_arch::sysreg::Cp15;

use super::{sfield, ufield, Barrier, Cond, Word};

const AL: u32 = 0xe << 28;
pub const SP: u8 = 13;
pub const LR: u8 = 14;
pub const PC: u8 = 15;

fn reg(r: u8, what: &str) -> u32 {
    ufield(r.into(), 4, what)
}

/// Access size of a general-purpose load/store; `D` is a doubleword register pair (Rt, Rt+1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    B,
    H,
    W,
    D,
}

impl Size {
    pub fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::D => 8,
        }
    }
}

/// What a load/store does with the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Store,
    Load,
    /// LDRSB / LDRSH.
    LoadSx,
}

/// Immediate addressing: a signed byte offset (the U bit carries the sign).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// `[Rn, #off]`
    Offset(i16),
    /// `[Rn, #off]!`
    Pre(i16),
    /// `[Rn], #off`
    Post(i16),
}

impl Addr {
    /// (P, W, offset)
    pub(crate) fn pw(self) -> (u32, u32, i16) {
        match self {
            Addr::Offset(o) => (1, 0, o),
            Addr::Pre(o) => (1, 1, o),
            Addr::Post(o) => (0, 0, o),
        }
    }
}

/// Loads and stores of every size (F5.1.73 LDR (immediate), F5.1.79 LDRB, F5.1.86 LDRH,
/// F5.1.90 LDRSB, F5.1.94 LDRSH, F5.1.82 LDRD, and the STR forms). `Size::D` needs an even
/// Rt (< 14): Rt2 = Rt + 1.
pub fn ldst(op: Op, size: Size, rt: u8, rn: u8, addr: Addr) -> Word {
    let (p, w, off) = addr.pw();
    let u = u32::from(off >= 0);
    let mag = u32::from(off.unsigned_abs());
    let rr = reg(rn, "Rn") << 16 | reg(rt, "Rt") << 12;
    match (op, size) {
        (Op::Store | Op::Load, Size::W | Size::B) => {
            let b = u32::from(size == Size::B);
            AL | 0x0400_0000 | p << 24 | u << 23 | b << 22 | w << 21 | u32::from(op == Op::Load) << 20 | rr | ufield(mag.into(), 12, "imm12")
        }
        _ => {
            // "Extra load/store" encodings: imm8 split in imm4H:imm4L, op2 in bits [6:5].
            let (l, sh) = match (op, size) {
                (Op::Store, Size::H) => (0, 0b01),
                (Op::Load, Size::H) => (1, 0b01),
                (Op::LoadSx, Size::B) => (1, 0b10),
                (Op::LoadSx, Size::H) => (1, 0b11),
                (Op::Load, Size::D) => (0, 0b10),
                (Op::Store, Size::D) => (0, 0b11),
                _ => panic!("no A32 {op:?} of size {size:?}"),
            };
            if size == Size::D {
                assert!(rt.is_multiple_of(2) && rt < 14, "LDRD/STRD need an even Rt below r14, not r{rt}");
            }
            let imm = ufield(mag.into(), 8, "imm8");
            AL | p << 24 | u << 23 | 1 << 22 | w << 21 | l << 20 | rr | (imm >> 4) << 8 | 1 << 7 | sh << 5 | 1 << 4 | (imm & 0xf)
        }
    }
}

/// Block-transfer addressing (increment/decrement, after/before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Block {
    Ia,
    Ib,
    Da,
    Db,
}

/// LDM/STM (F5.1.65 LDM, F5.1.219 STM and the IB/DA/DB forms).
pub fn ldm_stm(load: bool, mode: Block, rn: u8, wback: bool, list: u16) -> Word {
    assert!(list != 0, "LDM/STM need at least one register");
    let (p, u) = match mode {
        Block::Ia => (0, 1),
        Block::Ib => (1, 1),
        Block::Da => (0, 0),
        Block::Db => (1, 0),
    };
    AL | 0x0800_0000 | p << 24 | u << 23 | u32::from(wback) << 21 | u32::from(load) << 20 | reg(rn, "Rn") << 16 | u32::from(list)
}

/// Size field of the exclusive and acquire/release encodings (bits [22:21]).
fn xsz(size: Size) -> u32 {
    match size {
        Size::W => 0b00,
        Size::D => 0b01,
        Size::B => 0b10,
        Size::H => 0b11,
    }
}

/// `LDREX{B,H,D} Rt, [Rn]` (F5.1.75); `Size::D` loads Rt, Rt+1.
pub fn ldrex(size: Size, rt: u8, rn: u8) -> Word {
    AL | 0x0190_0f9f | xsz(size) << 21 | reg(rn, "Rn") << 16 | reg(rt, "Rt") << 12
}

/// `STREX{B,H,D} Rd, Rt, [Rn]` (F5.1.231): Rd receives the status.
pub fn strex(size: Size, rd: u8, rt: u8, rn: u8) -> Word {
    AL | 0x0180_0f90 | xsz(size) << 21 | reg(rn, "Rn") << 16 | reg(rd, "Rd") << 12 | reg(rt, "Rt")
}

/// `LDA{B,H} Rt, [Rn]` (Armv8 load-acquire, F5.1.55).
pub fn lda(size: Size, rt: u8, rn: u8) -> Word {
    assert!(size != Size::D, "LDA has no doubleword form (use LDAEXD)");
    AL | 0x0190_0c9f | xsz(size) << 21 | reg(rn, "Rn") << 16 | reg(rt, "Rt") << 12
}

/// `STL{B,H} Rt, [Rn]` (Armv8 store-release, F5.1.211).
pub fn stl(size: Size, rt: u8, rn: u8) -> Word {
    assert!(size != Size::D, "STL has no doubleword form (use STLEXD)");
    AL | 0x0180_fc90 | xsz(size) << 21 | reg(rn, "Rn") << 16 | reg(rt, "Rt")
}

/// `MCR p15, opc1, Rt, CRn, CRm, opc2` (F5.1.100): write a CP15 register or run a CP15
/// operation (cache maintenance) with Rt.
pub fn mcr(cp: Cp15, rt: u8) -> Word {
    AL | 0x0e00_0010 | coproc_fields(cp, 15) | reg(rt, "Rt") << 12
}

/// `MRC p15, opc1, Rt, CRn, CRm, opc2` (F5.1.103).
pub fn mrc(cp: Cp15, rt: u8) -> Word {
    AL | 0x0e10_0010 | coproc_fields(cp, 15) | reg(rt, "Rt") << 12
}

fn coproc_fields(cp: Cp15, coproc: u32) -> u32 {
    ufield(cp.opc1.into(), 3, "opc1") << 21
        | ufield(cp.crn.into(), 4, "CRn") << 16
        | coproc << 8
        | ufield(cp.opc2.into(), 3, "opc2") << 5
        | ufield(cp.crm.into(), 4, "CRm")
}

/// `VMRS Rt, <spec_reg>` (F6.1.236); `spec` from `trapdiff_arch::sysreg::vfp_sysreg`.
pub fn vmrs(rt: u8, spec: u8) -> Word {
    AL | 0x0ef0_0a10 | ufield(spec.into(), 4, "reg") << 16 | reg(rt, "Rt") << 12
}

/// `VMSR <spec_reg>, Rt` (F6.1.238).
pub fn vmsr(spec: u8, rt: u8) -> Word {
    AL | 0x0ee0_0a10 | ufield(spec.into(), 4, "reg") << 16 | reg(rt, "Rt") << 12
}

/// D-register number split into (Vd, D): D is the top bit (F6.1.1 "register encoding").
fn dreg(d: u8) -> (u32, u32) {
    let d = ufield(d.into(), 5, "Dn");
    (d & 0xf, d >> 4)
}

/// S-register number split into (Vd, D): D is the bottom bit.
fn sreg(s: u8) -> (u32, u32) {
    let s = ufield(s.into(), 5, "Sn");
    (s >> 1, s & 1)
}

/// Fields `D:Vd` at [22],[15:12], `N:Vn` at [7],[19:16], `M:Vm` at [5],[3:0].
fn dnm((vd, d): (u32, u32), (vn, n): (u32, u32), (vm, m): (u32, u32)) -> u32 {
    d << 22 | vn << 16 | vd << 12 | n << 7 | m << 5 | vm
}

/// `VADD.F64 Dd, Dn, Dm` (F6.1.186).
pub fn vadd_f64(dd: u8, dn: u8, dm: u8) -> Word {
    AL | 0x0e30_0b00 | dnm(dreg(dd), dreg(dn), dreg(dm))
}

/// `VADD.F32 Sd, Sn, Sm`.
pub fn vadd_f32(sd: u8, sn: u8, sm: u8) -> Word {
    AL | 0x0e30_0a00 | dnm(sreg(sd), sreg(sn), sreg(sm))
}

/// `VMUL.F64 Dd, Dn, Dm` (F6.1.226).
pub fn vmul_f64(dd: u8, dn: u8, dm: u8) -> Word {
    AL | 0x0e20_0b00 | dnm(dreg(dd), dreg(dn), dreg(dm))
}

/// `VMOV.F64 Dd, Dm` (F6.1.216 VMOV (register)).
pub fn vmov_f64(dd: u8, dm: u8) -> Word {
    AL | 0x0eb0_0b40 | dnm(dreg(dd), (0, 0), dreg(dm))
}

/// `VMOV Dm, Rt, Rt2` (two core registers to a D register, F6.1.220).
pub fn vmov_d_from_core(dm: u8, rt: u8, rt2: u8) -> Word {
    let (vm, m) = dreg(dm);
    AL | 0x0c40_0b10 | reg(rt2, "Rt2") << 16 | reg(rt, "Rt") << 12 | m << 5 | vm
}

/// `VMOV Rt, Rt2, Dm` (a D register to two core registers).
pub fn vmov_core_from_d(rt: u8, rt2: u8, dm: u8) -> Word {
    vmov_d_from_core(dm, rt, rt2) | 1 << 20
}

/// `VMOV Sn, Rt` (F6.1.219).
pub fn vmov_s_from_core(sn: u8, rt: u8) -> Word {
    let (vn, n) = sreg(sn);
    AL | 0x0e00_0a10 | vn << 16 | reg(rt, "Rt") << 12 | n << 7
}

/// `VLDR/VSTR Dd, [Rn, #off]` (F6.1.201 VLDR, F6.1.296 VSTR); off a multiple of 4 in
/// -1020..=1020.
pub fn vldr_vstr(load: bool, dd: u8, rn: u8, off: i16) -> Word {
    assert!(off % 4 == 0, "VLDR/VSTR offset {off} is not a multiple of 4");
    let (vd, d) = dreg(dd);
    let u = u32::from(off >= 0);
    AL | 0x0d00_0b00 | u << 23 | d << 22 | u32::from(load) << 20 | reg(rn, "Rn") << 16 | vd << 12 | ufield(u64::from(off.unsigned_abs() / 4), 8, "imm8")
}

/// `VLDMIA/VSTMIA Rn{!}, {Dd-Dd+count-1}` (F6.1.200 VLDM, F6.1.295 VSTM).
pub fn vldm_vstm(load: bool, rn: u8, wback: bool, dd: u8, count: u8) -> Word {
    assert!((1..=16).contains(&count), "VLDM/VSTM transfer 1 to 16 D registers, not {count}");
    let (vd, d) = dreg(dd);
    AL | 0x0c80_0b00 | d << 22 | u32::from(wback) << 21 | u32::from(load) << 20 | reg(rn, "Rn") << 16 | vd << 12 | (u32::from(count) * 2)
}

/// `VADD.I<size> Qd, Qn, Qm` (Advanced SIMD integer add, F6.1.185); `esize` 8/16/32/64.
pub fn vadd_int_q(esize: u32, qd: u8, qn: u8, qm: u8) -> Word {
    assert!(qd < 16 && qn < 16 && qm < 16, "Q registers are q0..q15");
    let size = match esize {
        8 => 0,
        16 => 1,
        32 => 2,
        64 => 3,
        _ => panic!("VADD.I{esize} does not exist"),
    };
    0xf200_0840 | size << 20 | dnm(dreg(qd * 2), dreg(qn * 2), dreg(qm * 2))
}

/// Writeback of a VLD1/VST1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wback {
    None,
    /// `[Rn]!`: Rn += bytes transferred.
    Imm,
    /// `[Rn], Rm`.
    Reg(u8),
}

/// `VLD1/VST1.<esize> {Dd..}, [Rn]` (multiple single elements, F6.1.196 VLD1, F6.1.290 VST1),
/// 1 to 4 consecutive D registers.
pub fn vld1_vst1(load: bool, esize: u32, dd: u8, regs: u8, rn: u8, wb: Wback) -> Word {
    let ty = match regs {
        1 => 0b0111,
        2 => 0b1010,
        3 => 0b0110,
        4 => 0b0010,
        _ => panic!("VLD1/VST1 take 1 to 4 registers, not {regs}"),
    };
    let size = match esize {
        8 => 0,
        16 => 1,
        32 => 2,
        64 => 3,
        _ => panic!("VLD1.{esize} does not exist"),
    };
    let rm = match wb {
        Wback::None => 15,
        Wback::Imm => 13,
        Wback::Reg(r) => {
            assert!(r != 13 && r != 15, "r13/r15 as Rm select the other writeback forms");
            u32::from(r)
        }
    };
    let (vd, d) = dreg(dd);
    0xf400_0000 | d << 22 | u32::from(load) << 21 | reg(rn, "Rn") << 16 | vd << 12 | ty << 8 | size << 6 | rm
}

/// `MOVW Rd, #imm16` (F5.1.107 MOV (immediate) A2).
pub fn movw(rd: u8, imm: u16) -> Word {
    AL | 0x0300_0000 | u32::from(imm >> 12) << 16 | reg(rd, "Rd") << 12 | u32::from(imm & 0xfff)
}

/// `MOVT Rd, #imm16` (F5.1.110).
pub fn movt(rd: u8, imm: u16) -> Word {
    movw(rd, imm) | 0x0040_0000
}

/// MOVW (+ MOVT when the high half is not zero) putting `value` in Rd.
pub fn mov_imm32(rd: u8, value: u32) -> Vec<Word> {
    let mut v = vec![movw(rd, value as u16)];
    if value >> 16 != 0 {
        v.push(movt(rd, (value >> 16) as u16));
    }
    v
}

/// An A32 modified immediate (F4.2.4 "Modified immediate constants"): 8 bits rotated right by
/// an even amount. `None` if `v` has no such form.
pub fn modified_imm(v: u32) -> Option<u32> {
    (0..16u32).find_map(|rot| {
        let unrot = v.rotate_left(2 * rot);
        (unrot <= 0xff).then_some(rot << 8 | unrot)
    })
}

/// Data-processing operations with an immediate (F4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dp {
    And = 0b0000,
    Eor = 0b0001,
    Sub = 0b0010,
    Add = 0b0100,
    Tst = 0b1000,
    Cmp = 0b1010,
    Orr = 0b1100,
    Mov = 0b1101,
    Bic = 0b1110,
}

/// `<op> Rd, Rn, #imm` (TST/CMP set flags and have no Rd; MOV has no Rn).
pub fn dp_imm(op: Dp, rd: u8, rn: u8, imm: u32) -> Word {
    let Some(enc) = modified_imm(imm) else { panic!("{imm:#x} is not an A32 modified immediate") };
    let s = u32::from(matches!(op, Dp::Tst | Dp::Cmp));
    let (rd, rn) = match op {
        Dp::Tst | Dp::Cmp => (0, rn),
        Dp::Mov => (rd, 0),
        _ => (rd, rn),
    };
    AL | 0x0200_0000 | (op as u32) << 21 | s << 20 | reg(rn, "Rn") << 16 | reg(rd, "Rd") << 12 | enc
}

/// `MOV Rd, Rm` (F5.1.108 MOV (register)).
pub fn mov_reg(rd: u8, rm: u8) -> Word {
    AL | 0x01a0_0000 | reg(rd, "Rd") << 12 | reg(rm, "Rm")
}

/// `B<cond> <label>`, offset in bytes from this instruction (PC reads as +8, F1.3.3).
pub fn b(cond: Cond, off: i64) -> Word {
    assert!(off % 4 == 0, "A32 branch offset {off} is not a multiple of 4");
    (cond as u32) << 28 | 0x0a00_0000 | sfield((off - 8) / 4, 24, "imm24")
}

/// `BX Rm`.
pub fn bx(rm: u8) -> Word {
    AL | 0x012f_ff10 | reg(rm, "Rm")
}

/// `BLX Rm`.
pub fn blx(rm: u8) -> Word {
    AL | 0x012f_ff30 | reg(rm, "Rm")
}

/// `DSB <option>` (F5.1.44).
pub fn dsb(opt: Barrier) -> Word {
    0xf57f_f040 | opt as u32
}

/// `DMB <option>`.
pub fn dmb(opt: Barrier) -> Word {
    0xf57f_f050 | opt as u32
}

/// `ISB SY`.
pub fn isb() -> Word {
    0xf57f_f06f
}

pub fn nop() -> Word {
    AL | 0x0320_f000
}

/// `SVC #imm24`.
pub fn svc(imm: u32) -> Word {
    AL | 0x0f00_0000 | ufield(imm.into(), 24, "imm24")
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
            Isa::A32,
            &[
                (ldst(Op::Load, Size::W, 0, 1, Addr::Offset(4)), "ldr r0, [r1, #4]"),
                (ldst(Op::Load, Size::W, 0, 1, Addr::Offset(-4)), "ldr r0, [r1, #-4]"),
                (ldst(Op::Store, Size::W, 0, 1, Addr::Offset(0)), "str r0, [r1]"),
                (ldst(Op::Load, Size::B, 0, 1, Addr::Offset(1)), "ldrb r0, [r1, #1]"),
                (ldst(Op::Store, Size::B, 0, 1, Addr::Offset(1)), "strb r0, [r1, #1]"),
                (ldst(Op::Load, Size::H, 0, 1, Addr::Offset(2)), "ldrh r0, [r1, #2]"),
                (ldst(Op::Store, Size::H, 0, 1, Addr::Offset(2)), "strh r0, [r1, #2]"),
                (ldst(Op::LoadSx, Size::B, 0, 1, Addr::Offset(0)), "ldrsb r0, [r1]"),
                (ldst(Op::LoadSx, Size::H, 0, 1, Addr::Offset(-2)), "ldrsh r0, [r1, #-2]"),
                (ldst(Op::Load, Size::D, 2, 1, Addr::Offset(8)), "ldrd r2, r3, [r1, #8]"),
                (ldst(Op::Store, Size::D, 2, 1, Addr::Offset(0)), "strd r2, r3, [r1]"),
                (ldst(Op::Load, Size::W, 0, 1, Addr::Pre(4)), "ldr r0, [r1, #4]!"),
                (ldst(Op::Store, Size::W, 0, 1, Addr::Post(-4)), "str r0, [r1], #-4"),
                (ldst(Op::Load, Size::H, 0, 1, Addr::Post(2)), "ldrh r0, [r1], #2"),
                (ldst(Op::Load, Size::D, 2, 1, Addr::Pre(8)), "ldrd r2, r3, [r1, #8]!"),
                (ldm_stm(true, Block::Ia, 1, false, 0b1100), "ldm r1, {r2, r3}"),
                (ldm_stm(true, Block::Ia, 1, true, 0b1100), "ldm r1!, {r2, r3}"),
                (ldm_stm(false, Block::Db, 1, true, 0b1100), "stmdb r1!, {r2, r3}"),
                (ldm_stm(false, Block::Ib, 1, false, 0b101), "stmib r1, {r0, r2}"),
                (ldm_stm(true, Block::Da, 1, false, 0b101), "ldmda r1, {r0, r2}"),
                (ldrex(Size::W, 0, 1), "ldrex r0, [r1]"),
                (ldrex(Size::B, 0, 1), "ldrexb r0, [r1]"),
                (ldrex(Size::H, 0, 1), "ldrexh r0, [r1]"),
                (ldrex(Size::D, 2, 1), "ldrexd r2, r3, [r1]"),
                (strex(Size::W, 3, 0, 1), "strex r3, r0, [r1]"),
                (strex(Size::D, 4, 2, 1), "strexd r4, r2, r3, [r1]"),
                (lda(Size::W, 0, 1), "lda r0, [r1]"),
                (lda(Size::B, 0, 1), "ldab r0, [r1]"),
                (lda(Size::H, 0, 1), "ldah r0, [r1]"),
                (stl(Size::W, 0, 1), "stl r0, [r1]"),
                (stl(Size::H, 0, 1), "stlh r0, [r1]"),
            ],
        );
    }

    /// Every (op, size, addressing) combination decodes as the load/store it should be.
    #[test]
    fn every_load_store_combination_decodes_as_itself() {
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
            for (addr, tail) in [
                (Addr::Offset(8), "[r1, #8]"),
                (Addr::Offset(-8), "[r1, #-8]"),
                (Addr::Pre(8), "[r1, #8]!"),
                (Addr::Pre(-8), "[r1, #-8]!"),
                (Addr::Post(8), "[r1], #8"),
                (Addr::Post(-8), "[r1], #-8"),
            ] {
                let regs = if size == Size::D { "r4, r5" } else { "r4" };
                let got = d.disasm(Isa::A32, ldst(op, size, 4, 1, addr)).expect("decodes");
                assert_eq!(got, format!("{mn} {regs}, {tail}"), "{op:?} {size:?} {addr:?}");
                n += 1;
            }
        }
        assert_eq!(n, 60);
    }

    #[test]
    fn coprocessor_and_fp() {
        check(
            Isa::A32,
            &[
                (mcr(cp15::DCCIMVAC, 0), "mcr p15, #0, r0, c7, c14, #1"),
                (mcr(cp15::DCIMVAC, 1), "mcr p15, #0, r1, c7, c6, #1"),
                (mcr(cp15::ICIMVAU, 1), "mcr p15, #0, r1, c7, c5, #1"),
                (mrc(cp15::CPACR, 2), "mrc p15, #0, r2, c1, c0, #2"),
                (mcr(cp15::CPACR, 2), "mcr p15, #0, r2, c1, c0, #2"),
                (vmrs(0, vfp_sysreg::FPEXC), "vmrs r0, fpexc"),
                (vmsr(vfp_sysreg::FPEXC, 0), "vmsr fpexc, r0"),
                (vmrs(3, vfp_sysreg::FPSCR), "vmrs r3, fpscr"),
                (vmsr(vfp_sysreg::FPSCR, 3), "vmsr fpscr, r3"),
                (vadd_f64(0, 1, 2), "vadd.f64 d0, d1, d2"),
                (vadd_f64(16, 17, 31), "vadd.f64 d16, d17, d31"),
                (vadd_f32(0, 1, 3), "vadd.f32 s0, s1, s3"),
                (vmul_f64(2, 3, 4), "vmul.f64 d2, d3, d4"),
                (vmov_f64(5, 17), "vmov.f64 d5, d17"),
                (vmov_d_from_core(3, 0, 1), "vmov d3, r0, r1"),
                (vmov_core_from_d(0, 1, 20), "vmov r0, r1, d20"),
                (vmov_s_from_core(3, 2), "vmov s3, r2"),
                (vldr_vstr(true, 0, 1, 8), "vldr d0, [r1, #8]"),
                (vldr_vstr(false, 17, 1, -8), "vstr d17, [r1, #-8]"),
                (vldr_vstr(true, 0, 1, 0), "vldr d0, [r1]"),
                (vldm_vstm(true, 1, false, 0, 2), "vldmia r1, {d0, d1}"),
                (vldm_vstm(false, 1, true, 4, 1), "vstmia r1!, {d4}"),
                (vadd_int_q(32, 0, 1, 2), "vadd.i32 q0, q1, q2"),
                (vadd_int_q(8, 8, 9, 15), "vadd.i8 q8, q9, q15"),
                (vld1_vst1(true, 32, 0, 1, 1, Wback::None), "vld1.32 {d0}, [r1]"),
                (vld1_vst1(false, 8, 0, 2, 1, Wback::None), "vst1.8 {d0, d1}, [r1]"),
                (vld1_vst1(true, 64, 2, 1, 1, Wback::Imm), "vld1.64 {d2}, [r1]!"),
                (vld1_vst1(false, 16, 2, 1, 1, Wback::Reg(3)), "vst1.16 {d2}, [r1], r3"),
            ],
        );
    }

    #[test]
    fn moves_branches_barriers() {
        check(
            Isa::A32,
            &[
                (movw(0, 0x1234), "movw r0, #0x1234"),
                (movt(0, 0x4000), "movt r0, #0x4000"),
                (dp_imm(Dp::Orr, 0, 0, 0x4000_0000), "orr r0, r0, #0x40000000"),
                (dp_imm(Dp::Add, 1, 1, 4), "add r1, r1, #4"),
                (dp_imm(Dp::Sub, 1, 2, 0x20), "sub r1, r2, #0x20"),
                (dp_imm(Dp::Cmp, 0, 3, 1), "cmp r3, #1"),
                (dp_imm(Dp::Mov, 4, 0, 0xff), "mov r4, #0xff"),
                (dp_imm(Dp::Bic, 0, 0, 0x4000_0000), "bic r0, r0, #0x40000000"),
                (mov_reg(2, 3), "mov r2, r3"),
                (b(Cond::Al, 8), "b #8"),
                (b(Cond::Ne, -8), "bne #0xfffffff8"),
                (bx(2), "bx r2"),
                (blx(2), "blx r2"),
                (dsb(Barrier::Sy), "dsb sy"),
                (dsb(Barrier::Ish), "dsb ish"),
                (dmb(Barrier::Ish), "dmb ish"),
                (isb(), "isb sy"),
                (nop(), "nop"),
                (svc(0x7d), "svc #0x7d"),
            ],
        );
        assert_eq!(mov_imm32(0, 0x1234).len(), 1);
        assert_eq!(modified_imm(0x101), None);
    }
}
