//! A64 encoders (Arm ARM C4 "A64 Instruction Set Encoding", C6 "A64 Base Instruction
//! Descriptions", C7 "A64 Advanced SIMD and Floating-point Instruction Descriptions").
//!
//! Registers are numbers: 0..=30, and 31 means XZR/WZR or SP as the instruction defines.

use trapdiff_arch::sysreg::SysReg;

use super::{scaled, sfield, ufield, Barrier, Cond, Word};

/// The zero register / SP number.
pub const ZR: u8 = 31;
pub const SP: u8 = 31;

/// Access size of a general-purpose load/store (the `size` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    B = 0,
    H = 1,
    W = 2,
    X = 3,
}

impl Size {
    pub const ALL: [Size; 4] = [Size::B, Size::H, Size::W, Size::X];
    pub fn bytes(self) -> u32 {
        1 << self as u32
    }
    pub fn name(self) -> &'static str {
        match self {
            Size::B => "b",
            Size::H => "h",
            Size::W => "w",
            Size::X => "x",
        }
    }
}

/// What a general-purpose load/store does with the data (the `opc` field, C4.1.66).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Store,
    /// Zero-extending load (W destination for B/H/W, X for X).
    Load,
    /// Sign-extending load into an X register (LDRSB/LDRSH/LDRSW Xt).
    LoadSx,
    /// Sign-extending load into a W register (LDRSB/LDRSH Wt).
    LoadSw,
}

impl Op {
    fn opc(self, size: Size) -> u32 {
        match self {
            Op::Store => 0b00,
            Op::Load => 0b01,
            Op::LoadSx => {
                assert!(size != Size::X, "there is no sign-extending 64-bit load");
                0b10
            }
            Op::LoadSw => {
                assert!(matches!(size, Size::B | Size::H), "only LDRSB/LDRSH have a W-destination form");
                0b11
            }
        }
    }
}

/// Addressing mode of a single-register load/store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// `[Xn, #imm]`, unsigned offset scaled by the access size (LDR/STR immediate).
    Offset(u32),
    /// `[Xn, #simm]`, unscaled signed 9-bit offset (LDUR/STUR).
    Unscaled(i16),
    /// `[Xn, #simm]!`, pre-index with writeback.
    Pre(i16),
    /// `[Xn], #simm`, post-index with writeback.
    Post(i16),
    /// `[Xn, Xm]`, register offset, no shift.
    Reg(u8),
}

fn rt_rn(rt: u8, rn: u8) -> u32 {
    ufield(rt.into(), 5, "Rt") | ufield(rn.into(), 5, "Rn") << 5
}

/// Load/store register, every size, extension and addressing mode (C4.1.66 "Loads and Stores":
/// LDR/STR (immediate, register), LDUR/STUR, LDRB/LDRH/LDRSB/LDRSH/LDRSW).
pub fn ldst(op: Op, size: Size, rt: u8, rn: u8, addr: Addr) -> Word {
    let head = (size as u32) << 30 | op.opc(size) << 22 | rt_rn(rt, rn);
    match addr {
        Addr::Offset(off) => {
            let imm = scaled(off.into(), size.bytes().into(), "offset");
            0x3900_0000 | head | ufield(imm as u64, 12, "imm12") << 10
        }
        Addr::Unscaled(o) => 0x3800_0000 | head | sfield(o.into(), 9, "imm9") << 12,
        Addr::Post(o) => 0x3800_0400 | head | sfield(o.into(), 9, "imm9") << 12,
        Addr::Pre(o) => 0x3800_0c00 | head | sfield(o.into(), 9, "imm9") << 12,
        // option = 011 (LSL/UXTX), S = 0.
        Addr::Reg(rm) => 0x3820_6800 | head | ufield(rm.into(), 5, "Rm") << 16,
    }
}

/// `LDR Xt/Wt, [Xn, #off]` (zero-extending), the common case.
pub fn ldr(size: Size, rt: u8, rn: u8, off: u32) -> Word {
    ldst(Op::Load, size, rt, rn, Addr::Offset(off))
}

/// `STR Xt/Wt, [Xn, #off]`.
pub fn str(size: Size, rt: u8, rn: u8, off: u32) -> Word {
    ldst(Op::Store, size, rt, rn, Addr::Offset(off))
}

/// Load-acquire / store-release / load-acquire RCpc (C6.2.119 LDAR, C6.2.337 STLR,
/// C6.2.116 LDAPR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ordered {
    Ldar,
    Stlr,
    Ldapr,
}

pub fn ordered(kind: Ordered, size: Size, rt: u8, rn: u8) -> Word {
    let base = match kind {
        Ordered::Ldar => 0x08df_fc00,
        Ordered::Stlr => 0x089f_fc00,
        Ordered::Ldapr => 0x38bf_c000,
    };
    base | (size as u32) << 30 | rt_rn(rt, rn)
}

/// Exclusive single-register accesses (C6.2.134 LDXR, C6.2.121 LDAXR, C6.2.363 STXR,
/// C6.2.347 STLXR). `rs` is the status register of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exclusive {
    Ldxr,
    Ldaxr,
    Stxr { rs: u8 },
    Stlxr { rs: u8 },
}

pub fn exclusive(kind: Exclusive, size: Size, rt: u8, rn: u8) -> Word {
    let (base, rs) = match kind {
        Exclusive::Ldxr => (0x085f_7c00, 31),
        Exclusive::Ldaxr => (0x085f_fc00, 31),
        Exclusive::Stxr { rs } => (0x0800_7c00, rs),
        Exclusive::Stlxr { rs } => (0x0800_fc00, rs),
    };
    base | (size as u32) << 30 | ufield(rs.into(), 5, "Rs") << 16 | rt_rn(rt, rn)
}

/// Exclusive pairs (C6.2.135 LDXP, C6.2.122 LDAXP, C6.2.364 STXP, C6.2.348 STLXP); `x`
/// selects 64-bit registers.
pub fn exclusive_pair(kind: Exclusive, x: bool, rt: u8, rt2: u8, rn: u8) -> Word {
    let (base, rs) = match kind {
        Exclusive::Ldxr => (0x887f_0000, 31),
        Exclusive::Ldaxr => (0x887f_8000, 31),
        Exclusive::Stxr { rs } => (0x8820_0000, rs),
        Exclusive::Stlxr { rs } => (0x8820_8000, rs),
    };
    base | u32::from(x) << 30 | ufield(rs.into(), 5, "Rs") << 16 | ufield(rt2.into(), 5, "Rt2") << 10 | rt_rn(rt, rn)
}

/// Addressing mode of a pair (C4.1.66 "Load/store register pair").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairAddr {
    Offset(i16),
    Pre(i16),
    Post(i16),
}

/// Register class of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairKind {
    W,
    X,
    /// LDPSW: two sign-extended words (loads only).
    Sw,
    /// SIMD&FP D registers.
    D,
    /// SIMD&FP Q registers.
    Q,
}

/// LDP/STP in every class and addressing mode (C6.2.129 LDP, C6.2.321 STP, C7.2.190 LDP (SIMD&FP)).
pub fn pair(load: bool, kind: PairKind, rt: u8, rt2: u8, rn: u8, addr: PairAddr) -> Word {
    let (opc, v, scale) = match kind {
        PairKind::W => (0b00, 0, 4),
        PairKind::Sw => {
            assert!(load, "LDPSW has no store form");
            (0b01, 0, 4)
        }
        PairKind::X => (0b10, 0, 8),
        PairKind::D => (0b01, 1, 8),
        PairKind::Q => (0b10, 1, 16),
    };
    let (idx, off) = match addr {
        PairAddr::Post(o) => (0b001, o),
        PairAddr::Offset(o) => (0b010, o),
        PairAddr::Pre(o) => (0b011, o),
    };
    let imm7 = sfield(scaled(off.into(), scale, "pair offset"), 7, "imm7");
    opc << 30 | 0x2800_0000 | v << 26 | idx << 23 | u32::from(load) << 22 | imm7 << 15 | ufield(rt2.into(), 5, "Rt2") << 10 | rt_rn(rt, rn)
}

/// Size of a SIMD&FP register load/store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FpSize {
    B,
    H,
    S,
    D,
    Q,
}

impl FpSize {
    pub fn bytes(self) -> u32 {
        match self {
            FpSize::B => 1,
            FpSize::H => 2,
            FpSize::S => 4,
            FpSize::D => 8,
            FpSize::Q => 16,
        }
    }
}

/// LDR/STR (SIMD&FP) (C7.2.193 LDR (immediate, SIMD&FP), C7.2.331 STR (immediate, SIMD&FP)),
/// immediate addressing modes only.
pub fn ldst_fp(load: bool, size: FpSize, rt: u8, rn: u8, addr: Addr) -> Word {
    let (sz, opc_hi) = match size {
        FpSize::B => (0, 0),
        FpSize::H => (1, 0),
        FpSize::S => (2, 0),
        FpSize::D => (3, 0),
        FpSize::Q => (0, 1),
    };
    let head = sz << 30 | 0x0400_0000 | (opc_hi << 1 | u32::from(load)) << 22 | rt_rn(rt, rn);
    match addr {
        Addr::Offset(off) => {
            let imm = scaled(off.into(), size.bytes().into(), "offset");
            0x3900_0000 | head | ufield(imm as u64, 12, "imm12") << 10
        }
        Addr::Unscaled(o) => 0x3800_0000 | head | sfield(o.into(), 9, "imm9") << 12,
        Addr::Post(o) => 0x3800_0400 | head | sfield(o.into(), 9, "imm9") << 12,
        Addr::Pre(o) => 0x3800_0c00 | head | sfield(o.into(), 9, "imm9") << 12,
        Addr::Reg(rm) => 0x3820_6800 | head | ufield(rm.into(), 5, "Rm") << 16,
    }
}

/// Arrangement of a vector register (`size`, `Q`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arr {
    B8,
    B16,
    H4,
    H8,
    S2,
    S4,
    D1,
    D2,
}

impl Arr {
    fn size_q(self) -> (u32, u32) {
        match self {
            Arr::B8 => (0, 0),
            Arr::B16 => (0, 1),
            Arr::H4 => (1, 0),
            Arr::H8 => (1, 1),
            Arr::S2 => (2, 0),
            Arr::S4 => (2, 1),
            Arr::D1 => (3, 0),
            Arr::D2 => (3, 1),
        }
    }
    pub fn bytes(self) -> u32 {
        if self.size_q().1 == 1 {
            16
        } else {
            8
        }
    }
}

/// LD1/ST1 (multiple structures) with `regs` consecutive registers from `rt`
/// (C7.2.175 LD1, C7.2.307 ST1); `post` adds the immediate post-index form
/// (`[Xn], #bytes`, Rm = 31).
pub fn ld1_st1(load: bool, arr: Arr, rt: u8, regs: u8, rn: u8, post: bool) -> Word {
    let opcode = match regs {
        1 => 0b0111,
        2 => 0b1010,
        3 => 0b0110,
        4 => 0b0010,
        _ => panic!("LD1/ST1 take 1 to 4 registers, not {regs}"),
    };
    let (size, q) = arr.size_q();
    let base = if post { 0x0c9f_0000 } else { 0x0c00_0000 };
    base | q << 30 | u32::from(load) << 22 | opcode << 12 | size << 10 | rt_rn(rt, rn)
}

/// LSE atomic memory operations (C6.2.87 LDADD, C6.2.380 SWP, C6.2.93 LDCLR, C6.2.99 LDEOR,
/// C6.2.110 LDSET).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    Ldadd,
    Ldclr,
    Ldeor,
    Ldset,
    Swp,
}

/// `<op>{A}{L}{size} Rs, Rt, [Xn]`.
pub fn atomic(op: AtomicOp, size: Size, acquire: bool, release: bool, rs: u8, rt: u8, rn: u8) -> Word {
    let (o3, opc) = match op {
        AtomicOp::Ldadd => (0, 0b000),
        AtomicOp::Ldclr => (0, 0b001),
        AtomicOp::Ldeor => (0, 0b010),
        AtomicOp::Ldset => (0, 0b011),
        AtomicOp::Swp => (1, 0b000),
    };
    0x3820_0000
        | (size as u32) << 30
        | u32::from(acquire) << 23
        | u32::from(release) << 22
        | ufield(rs.into(), 5, "Rs") << 16
        | o3 << 15
        | opc << 12
        | rt_rn(rt, rn)
}

/// `CAS{A}{L}{size} Rs, Rt, [Xn]` (C6.2.44 CAS).
pub fn cas(size: Size, acquire: bool, release: bool, rs: u8, rt: u8, rn: u8) -> Word {
    0x08a0_7c00 | (size as u32) << 30 | u32::from(acquire) << 22 | ufield(rs.into(), 5, "Rs") << 16 | u32::from(release) << 15 | rt_rn(rt, rn)
}

/// Cache-maintenance and zeroing operations by VA (C5.3 "A64 System instructions for cache
/// maintenance": DC <op>, IC <op> are SYS #op1, C7, Cm, #op2, Xt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmo {
    DcIvac,
    DcCivac,
    DcCvac,
    DcCvau,
    /// FEAT_DPB: clean to the point of persistence.
    DcCvap,
    DcZva,
    IcIvau,
}

impl Cmo {
    pub const ALL: [Cmo; 7] = [Cmo::DcIvac, Cmo::DcCivac, Cmo::DcCvac, Cmo::DcCvau, Cmo::DcCvap, Cmo::DcZva, Cmo::IcIvau];
    /// (op1, CRm, op2) of `SYS #op1, C7, Cm, #op2`.
    pub fn sys(self) -> (u32, u32, u32) {
        match self {
            Cmo::DcIvac => (0, 6, 1),
            Cmo::DcZva => (3, 4, 1),
            Cmo::DcCvac => (3, 10, 1),
            Cmo::DcCvau => (3, 11, 1),
            Cmo::DcCvap => (3, 12, 1),
            Cmo::DcCivac => (3, 14, 1),
            Cmo::IcIvau => (3, 5, 1),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Cmo::DcIvac => "dc-ivac",
            Cmo::DcCivac => "dc-civac",
            Cmo::DcCvac => "dc-cvac",
            Cmo::DcCvau => "dc-cvau",
            Cmo::DcCvap => "dc-cvap",
            Cmo::DcZva => "dc-zva",
            Cmo::IcIvau => "ic-ivau",
        }
    }
    /// EL0 may execute it when SCTLR_EL1.UCI (or DZE for ZVA) is set; DC IVAC is EL1-only
    /// (Arm ARM D7.5.9 "Cache maintenance instructions": DC IVAC UNDEFINED at EL0).
    pub fn el0_allowed(self) -> bool {
        self != Cmo::DcIvac
    }
}

pub fn cmo(op: Cmo, rt: u8) -> Word {
    let (op1, crm, op2) = op.sys();
    sys(op1, 7, crm, op2, rt)
}

/// `SYS #op1, Cn, Cm, #op2, Xt` (C6.2.388).
pub fn sys(op1: u32, crn: u32, crm: u32, op2: u32, rt: u8) -> Word {
    0xd508_0000
        | ufield(op1.into(), 3, "op1") << 16
        | ufield(crn.into(), 4, "CRn") << 12
        | ufield(crm.into(), 4, "CRm") << 8
        | ufield(op2.into(), 3, "op2") << 5
        | ufield(rt.into(), 5, "Rt")
}

/// `IC IALLU` (invalidate all instruction caches to PoU, EL1 only).
pub fn ic_iallu() -> Word {
    sys(0, 7, 5, 0, ZR)
}

/// `IC IALLUIS` (inner-shareable broadcast form).
pub fn ic_ialluis() -> Word {
    sys(0, 7, 1, 0, ZR)
}

/// `MRS Xt, <reg>` (C6.2.245).
pub fn mrs(reg: SysReg, rt: u8) -> Word {
    reg.mrs(rt)
}

/// `MSR <reg>, Xt` (C6.2.247).
pub fn msr(reg: SysReg, rt: u8) -> Word {
    reg.msr(rt)
}

/// `DSB <option>` (C6.2.110).
pub fn dsb(opt: Barrier) -> Word {
    0xd503_309f | (opt as u32) << 8
}

/// `DMB <option>` (C6.2.108).
pub fn dmb(opt: Barrier) -> Word {
    0xd503_30bf | (opt as u32) << 8
}

/// `ISB` (C6.2.131).
pub fn isb() -> Word {
    0xd503_3fdf
}

pub fn nop() -> Word {
    0xd503_201f
}

/// `SVC #imm` (C6.2.388).
pub fn svc(imm: u16) -> Word {
    0xd400_0001 | u32::from(imm) << 5
}

/// `HVC #imm`.
pub fn hvc(imm: u16) -> Word {
    0xd400_0002 | u32::from(imm) << 5
}

/// `B <label>`, offset in bytes from this instruction (C6.2.26).
pub fn b(off: i64) -> Word {
    0x1400_0000 | sfield(scaled(off, 4, "branch offset"), 26, "imm26")
}

/// `BL <label>`.
pub fn bl(off: i64) -> Word {
    0x9400_0000 | sfield(scaled(off, 4, "branch offset"), 26, "imm26")
}

/// `B.<cond> <label>`.
pub fn b_cond(cond: Cond, off: i64) -> Word {
    0x5400_0000 | sfield(scaled(off, 4, "branch offset"), 19, "imm19") << 5 | cond as u32
}

/// `CBZ/CBNZ Xt|Wt, <label>`.
pub fn cbz(nonzero: bool, x: bool, rt: u8, off: i64) -> Word {
    0x3400_0000 | u32::from(x) << 31 | u32::from(nonzero) << 24 | sfield(scaled(off, 4, "branch offset"), 19, "imm19") << 5 | ufield(rt.into(), 5, "Rt")
}

/// `TBZ/TBNZ Xt|Wt, #bit, <label>` (C6.2.403 TBNZ): test one bit and branch.
pub fn tbz(nonzero: bool, rt: u8, bit: u32, off: i64) -> Word {
    let bit = ufield(bit.into(), 6, "bit");
    (bit >> 5) << 31
        | 0x3600_0000
        | u32::from(nonzero) << 24
        | (bit & 31) << 19
        | sfield(scaled(off, 4, "branch offset"), 14, "imm14") << 5
        | ufield(rt.into(), 5, "Rt")
}

/// `BR Xn`.
pub fn br(rn: u8) -> Word {
    0xd61f_0000 | ufield(rn.into(), 5, "Rn") << 5
}

/// `BLR Xn`.
pub fn blr(rn: u8) -> Word {
    0xd63f_0000 | ufield(rn.into(), 5, "Rn") << 5
}

/// `RET` (X30).
pub fn ret() -> Word {
    0xd65f_03c0
}

/// Move-wide (C6.2.226 MOVZ, C6.2.225 MOVK, C6.2.224 MOVN): `imm16 << shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MoveWide {
    Movn,
    Movz,
    Movk,
}

pub fn movw(kind: MoveWide, x: bool, rd: u8, imm16: u16, shift: u32) -> Word {
    assert!(shift.is_multiple_of(16) && shift < if x { 64 } else { 32 }, "move-wide shift {shift} is not 0/16 (W) or 0/16/32/48 (X)");
    let opc = match kind {
        MoveWide::Movn => 0b00,
        MoveWide::Movz => 0b10,
        MoveWide::Movk => 0b11,
    };
    u32::from(x) << 31 | opc << 29 | 0x1280_0000 | (shift / 16) << 21 | u32::from(imm16) << 5 | ufield(rd.into(), 5, "Rd")
}

/// The MOVZ + MOVK sequence that puts `value` in Xd (zero halfwords skipped, at least one
/// instruction).
pub fn mov_imm64(rd: u8, value: u64) -> Vec<Word> {
    let mut out = Vec::new();
    for hw in 0..4 {
        let part = (value >> (16 * hw)) as u16;
        if part != 0 || (hw == 3 && out.is_empty()) {
            let kind = if out.is_empty() { MoveWide::Movz } else { MoveWide::Movk };
            out.push(movw(kind, true, rd, part, 16 * hw));
        }
    }
    if out.is_empty() {
        out.push(movw(MoveWide::Movz, true, rd, 0, 0));
    }
    out
}

/// ADD/SUB (immediate) with optional LSL #12 (C6.2.4 ADD (immediate)); `flags` makes it
/// ADDS/SUBS (CMP/CMN when Rd = ZR).
pub fn add_imm(sub: bool, flags: bool, x: bool, rd: u8, rn: u8, imm12: u32, lsl12: bool) -> Word {
    u32::from(x) << 31
        | u32::from(sub) << 30
        | u32::from(flags) << 29
        | 0x1100_0000
        | u32::from(lsl12) << 22
        | ufield(imm12.into(), 12, "imm12") << 10
        | ufield(rn.into(), 5, "Rn") << 5
        | ufield(rd.into(), 5, "Rd")
}

/// `CMP Xn, Xm` (SUBS XZR, Xn, Xm; C6.2.67).
pub fn cmp_reg(x: bool, rn: u8, rm: u8) -> Word {
    u32::from(x) << 31 | 0x6b00_001f | ufield(rm.into(), 5, "Rm") << 16 | ufield(rn.into(), 5, "Rn") << 5
}

/// `ADD Xd, Xn, Xm` (shifted register, no shift).
pub fn add_reg(x: bool, rd: u8, rn: u8, rm: u8) -> Word {
    u32::from(x) << 31 | 0x0b00_0000 | ufield(rm.into(), 5, "Rm") << 16 | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

/// `MOV Xd, Xm` (ORR Xd, XZR, Xm; C6.2.229).
pub fn mov_reg(x: bool, rd: u8, rm: u8) -> Word {
    u32::from(x) << 31 | 0x2a00_03e0 | ufield(rm.into(), 5, "Rm") << 16 | ufield(rd.into(), 5, "Rd")
}

/// `UBFX Xd, Xn, #lsb, #width` (UBFM; C6.2.416).
pub fn ubfx(x: bool, rd: u8, rn: u8, lsb: u32, width: u32) -> Word {
    let bits = if x { 64 } else { 32 };
    assert!(width >= 1 && lsb + width <= bits, "ubfx #{lsb}, #{width} does not fit in {bits} bits");
    u32::from(x) << 31 | u32::from(x) << 22 | 0x5300_0000 | lsb << 16 | (lsb + width - 1) << 10 | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

/// `LSL Xd, Xn, Xm` (LSLV; C6.2.212).
pub fn lslv(x: bool, rd: u8, rn: u8, rm: u8) -> Word {
    u32::from(x) << 31 | 0x1ac0_2000 | ufield(rm.into(), 5, "Rm") << 16 | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

/// `SUB Xd, Xn, #1` style decrement is `add_imm(true, ..)`; `BIC Xd, Xn, Xm` (C6.2.33)
/// aligns an address down to a line.
pub fn bic_reg(x: bool, rd: u8, rn: u8, rm: u8) -> Word {
    u32::from(x) << 31 | 0x0a20_0000 | ufield(rm.into(), 5, "Rm") << 16 | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

/// Floating-point precision of a scalar FP instruction (`ftype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fp {
    S,
    D,
}

/// `FADD Sd/Dd, Sn/Dn, Sm/Dm` (C7.2.58).
pub fn fadd(fp: Fp, rd: u8, rn: u8, rm: u8) -> Word {
    let ty = if fp == Fp::D { 1 } else { 0 };
    0x1e20_2800 | ty << 22 | ufield(rm.into(), 5, "Rm") << 16 | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

/// `FMOV Dd, Xn` (to_fp) or `FMOV Xd, Dn` (C7.2.131 FMOV (general)).
pub fn fmov_gpr(to_fp: bool, rd: u8, rn: u8) -> Word {
    (if to_fp { 0x9e67_0000 } else { 0x9e66_0000 }) | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

/// `ADD Vd.<T>, Vn.<T>, Vm.<T>` (vector integer add, C7.2.2).
pub fn add_vec(arr: Arr, rd: u8, rn: u8, rm: u8) -> Word {
    let (size, q) = arr.size_q();
    assert!(arr != Arr::D1, "ADD (vector) has no 1D form");
    0x0e20_8400 | q << 30 | size << 22 | ufield(rm.into(), 5, "Rm") << 16 | ufield(rn.into(), 5, "Rn") << 5 | ufield(rd.into(), 5, "Rd")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::check_disasm;
    use trapdiff_arch::case::Isa;
    use trapdiff_arch::sysreg;

    #[test]
    fn loads_and_stores() {
        check_disasm(
            Isa::A64,
            &[
                (ldr(Size::X, 0, 1, 8), "ldr x0, [x1, #8]"),
                (ldr(Size::W, 2, 3, 0), "ldr w2, [x3]"),
                (ldr(Size::H, 2, 3, 6), "ldrh w2, [x3, #6]"),
                (ldr(Size::B, 2, 3, 1), "ldrb w2, [x3, #1]"),
                (str(Size::X, 4, 5, 16), "str x4, [x5, #0x10]"),
                (str(Size::B, 4, 5, 0), "strb w4, [x5]"),
                (str(Size::H, 4, 5, 2), "strh w4, [x5, #2]"),
                (ldst(Op::LoadSx, Size::B, 0, 1, Addr::Offset(0)), "ldrsb x0, [x1]"),
                (ldst(Op::LoadSw, Size::B, 0, 1, Addr::Offset(0)), "ldrsb w0, [x1]"),
                (ldst(Op::LoadSx, Size::H, 0, 1, Addr::Offset(0)), "ldrsh x0, [x1]"),
                (ldst(Op::LoadSw, Size::H, 0, 1, Addr::Offset(0)), "ldrsh w0, [x1]"),
                (ldst(Op::LoadSx, Size::W, 0, 1, Addr::Offset(4)), "ldrsw x0, [x1, #4]"),
                (ldst(Op::Load, Size::X, 0, 1, Addr::Unscaled(-3)), "ldur x0, [x1, #-3]"),
                (ldst(Op::Store, Size::W, 0, 1, Addr::Unscaled(1)), "stur w0, [x1, #1]"),
                (ldst(Op::Load, Size::X, 0, 1, Addr::Pre(16)), "ldr x0, [x1, #0x10]!"),
                (ldst(Op::Store, Size::X, 0, 1, Addr::Post(-8)), "str x0, [x1], #0xfffffffffffffff8"),
                (ldst(Op::Load, Size::B, 0, 1, Addr::Post(1)), "ldrb w0, [x1], #1"),
                (ldst(Op::Load, Size::X, 0, 1, Addr::Reg(2)), "ldr x0, [x1, x2]"),
                (ordered(Ordered::Ldar, Size::X, 0, 1), "ldar x0, [x1]"),
                (ordered(Ordered::Ldar, Size::B, 0, 1), "ldarb w0, [x1]"),
                (ordered(Ordered::Stlr, Size::W, 0, 1), "stlr w0, [x1]"),
                (ordered(Ordered::Stlr, Size::H, 0, 1), "stlrh w0, [x1]"),
                (ordered(Ordered::Ldapr, Size::X, 0, 1), "ldapr x0, [x1]"),
                (ordered(Ordered::Ldapr, Size::W, 0, 1), "ldapr w0, [x1]"),
                (exclusive(Exclusive::Ldxr, Size::X, 0, 1), "ldxr x0, [x1]"),
                (exclusive(Exclusive::Ldaxr, Size::W, 0, 1), "ldaxr w0, [x1]"),
                (exclusive(Exclusive::Stxr { rs: 2 }, Size::X, 0, 1), "stxr w2, x0, [x1]"),
                (exclusive(Exclusive::Stlxr { rs: 2 }, Size::B, 0, 1), "stlxrb w2, w0, [x1]"),
                (exclusive_pair(Exclusive::Ldxr, true, 0, 3, 1), "ldxp x0, x3, [x1]"),
                (exclusive_pair(Exclusive::Ldaxr, false, 0, 3, 1), "ldaxp w0, w3, [x1]"),
                (exclusive_pair(Exclusive::Stxr { rs: 2 }, true, 0, 3, 1), "stxp w2, x0, x3, [x1]"),
                (exclusive_pair(Exclusive::Stlxr { rs: 2 }, false, 0, 3, 1), "stlxp w2, w0, w3, [x1]"),
                (pair(true, PairKind::X, 0, 2, 1, PairAddr::Offset(16)), "ldp x0, x2, [x1, #0x10]"),
                (pair(false, PairKind::W, 0, 2, 1, PairAddr::Offset(-8)), "stp w0, w2, [x1, #-8]"),
                (pair(true, PairKind::Sw, 0, 2, 1, PairAddr::Offset(0)), "ldpsw x0, x2, [x1]"),
                (pair(true, PairKind::X, 0, 2, 1, PairAddr::Pre(16)), "ldp x0, x2, [x1, #0x10]!"),
                (pair(false, PairKind::X, 0, 2, 1, PairAddr::Post(-16)), "stp x0, x2, [x1], #-0x10"),
                (pair(true, PairKind::D, 0, 2, 1, PairAddr::Offset(8)), "ldp d0, d2, [x1, #8]"),
                (pair(false, PairKind::Q, 0, 2, 1, PairAddr::Offset(32)), "stp q0, q2, [x1, #0x20]"),
                (ldst_fp(true, FpSize::B, 0, 1, Addr::Offset(1)), "ldr b0, [x1, #1]"),
                (ldst_fp(true, FpSize::H, 0, 1, Addr::Offset(2)), "ldr h0, [x1, #2]"),
                (ldst_fp(true, FpSize::S, 0, 1, Addr::Offset(4)), "ldr s0, [x1, #4]"),
                (ldst_fp(true, FpSize::D, 0, 1, Addr::Offset(8)), "ldr d0, [x1, #8]"),
                (ldst_fp(false, FpSize::Q, 0, 1, Addr::Offset(16)), "str q0, [x1, #0x10]"),
                (ldst_fp(false, FpSize::D, 3, 1, Addr::Post(8)), "str d3, [x1], #8"),
                (ldst_fp(true, FpSize::Q, 3, 1, Addr::Pre(-16)), "ldr q3, [x1, #-0x10]!"),
                (ld1_st1(true, Arr::S4, 0, 1, 1, false), "ld1 {v0.4s}, [x1]"),
                (ld1_st1(false, Arr::B16, 0, 1, 1, false), "st1 {v0.16b}, [x1]"),
                (ld1_st1(true, Arr::D2, 2, 2, 1, false), "ld1 {v2.2d, v3.2d}, [x1]"),
                (ld1_st1(true, Arr::D1, 0, 1, 1, true), "ld1 {v0.1d}, [x1], #8"),
                (ld1_st1(false, Arr::S4, 0, 4, 1, true), "st1 {v0.4s, v1.4s, v2.4s, v3.4s}, [x1], #64"),
                (atomic(AtomicOp::Ldadd, Size::X, false, false, 2, 0, 1), "ldadd x2, x0, [x1]"),
                (atomic(AtomicOp::Ldadd, Size::W, true, true, 2, 0, 1), "ldaddal w2, w0, [x1]"),
                (atomic(AtomicOp::Swp, Size::X, false, false, 2, 0, 1), "swp x2, x0, [x1]"),
                (atomic(AtomicOp::Swp, Size::B, true, false, 2, 0, 1), "swpab w2, w0, [x1]"),
                (atomic(AtomicOp::Ldset, Size::H, false, true, 2, 0, 1), "ldsetlh w2, w0, [x1]"),
                (atomic(AtomicOp::Ldclr, Size::W, false, false, 2, 0, 1), "ldclr w2, w0, [x1]"),
                (atomic(AtomicOp::Ldeor, Size::X, false, false, 2, 0, 1), "ldeor x2, x0, [x1]"),
                (cas(Size::X, false, false, 2, 0, 1), "cas x2, x0, [x1]"),
                (cas(Size::W, true, true, 2, 0, 1), "casal w2, w0, [x1]"),
                (cas(Size::B, true, false, 2, 0, 1), "casab w2, w0, [x1]"),
            ],
        );
    }

    #[test]
    fn system_and_control_flow() {
        check_disasm(
            Isa::A64,
            &[
                (cmo(Cmo::DcIvac, 1), "dc ivac, x1"),
                (cmo(Cmo::DcCivac, 1), "dc civac, x1"),
                (cmo(Cmo::DcCvac, 1), "dc cvac, x1"),
                (cmo(Cmo::DcCvau, 1), "dc cvau, x1"),
                (cmo(Cmo::DcCvap, 1), "dc cvap, x1"),
                (cmo(Cmo::DcZva, 1), "dc zva, x1"),
                (cmo(Cmo::IcIvau, 1), "ic ivau, x1"),
                (ic_iallu(), "ic iallu"),
                (ic_ialluis(), "ic ialluis"),
                (mrs(sysreg::CTR_EL0, 3), "mrs x3, ctr_el0"),
                (msr(sysreg::SCTLR_EL1, 1), "msr sctlr_el1, x1"),
                (mrs(sysreg::FPCR, 0), "mrs x0, fpcr"),
                (dsb(Barrier::Ish), "dsb ish"),
                (dsb(Barrier::Sy), "dsb sy"),
                (dmb(Barrier::Ishld), "dmb ishld"),
                (isb(), "isb"),
                (nop(), "nop"),
                (svc(0x7d), "svc #0x7d"),
                (hvc(0), "hvc #0"),
                (b(8), "b #8"),
                (b(-4), "b #0xfffffffffffffffc"),
                (bl(16), "bl #0x10"),
                (b_cond(Cond::Lo, -8), "b.lo #0xfffffffffffffff8"),
                (cbz(true, true, 3, 12), "cbnz x3, #0xc"),
                (cbz(false, false, 3, 12), "cbz w3, #0xc"),
                (tbz(true, 4, 28, 16), "tbnz w4, #0x1c, #0x10"),
                (tbz(false, 4, 33, 8), "tbz x4, #0x21, #8"),
                (br(2), "br x2"),
                (blr(2), "blr x2"),
                (ret(), "ret"),
                (movw(MoveWide::Movz, true, 1, 0x1234, 16), "mov x1, #0x12340000"),
                (movw(MoveWide::Movk, true, 1, 0x5678, 0), "movk x1, #0x5678"),
                (movw(MoveWide::Movk, true, 1, 0x5678, 32), "movk x1, #0x5678, lsl #32"),
                (movw(MoveWide::Movz, false, 1, 7, 0), "mov w1, #7"),
                (add_imm(false, false, true, 1, 2, 64, false), "add x1, x2, #0x40"),
                (add_imm(true, false, true, 1, 2, 1, false), "sub x1, x2, #1"),
                (add_imm(true, true, true, ZR, 2, 1, true), "cmp x2, #1, lsl #12"),
                (cmp_reg(true, 3, 4), "cmp x3, x4"),
                (add_reg(true, 3, 3, 2), "add x3, x3, x2"),
                (mov_reg(true, 3, 4), "mov x3, x4"),
                (ubfx(true, 1, 1, 0, 4), "ubfx x1, x1, #0, #4"),
                (ubfx(true, 1, 1, 16, 4), "ubfx x1, x1, #0x10, #4"),
                (lslv(true, 2, 2, 1), "lsl x2, x2, x1"),
                (bic_reg(true, 3, 3, 5), "bic x3, x3, x5"),
                (fadd(Fp::D, 0, 1, 2), "fadd d0, d1, d2"),
                (fadd(Fp::S, 0, 1, 2), "fadd s0, s1, s2"),
                (fmov_gpr(true, 0, 1), "fmov d0, x1"),
                (fmov_gpr(false, 1, 0), "fmov x1, d0"),
                (add_vec(Arr::S4, 0, 1, 2), "add v0.4s, v1.4s, v2.4s"),
            ],
        );
    }

    /// Every valid (op, size, addressing) combination decodes as the load/store it should be,
    /// with the right destination width and, for writeback, the right index form.
    #[test]
    fn every_load_store_combination_decodes_as_itself() {
        let d = crate::encode::Disassembler::new().expect("capstone");
        let mut n = 0;
        for size in Size::ALL {
            for op in [Op::Store, Op::Load, Op::LoadSx, Op::LoadSw] {
                let valid = match op {
                    Op::LoadSx => size != Size::X,
                    Op::LoadSw => matches!(size, Size::B | Size::H),
                    _ => true,
                };
                if !valid {
                    continue;
                }
                let sz = size.bytes();
                for (addr, tail) in [
                    // Capstone prints immediates above 9 in hex.
                    (Addr::Offset(sz * 7), if sz * 7 > 9 { format!("[x1, #{:#x}]", sz * 7) } else { format!("[x1, #{}]", sz * 7) }),
                    (Addr::Unscaled(-3), "[x1, #-3]".to_string()),
                    (Addr::Pre(5), "[x1, #5]!".to_string()),
                    (Addr::Post(7), "[x1], #7".to_string()),
                    (Addr::Reg(2), "[x1, x2]".to_string()),
                ] {
                    let base = match (op, addr) {
                        (Op::Store, Addr::Unscaled(_)) => "stur",
                        (Op::Store, _) => "str",
                        (_, Addr::Unscaled(_)) => "ldur",
                        _ => "ldr",
                    };
                    let suffix = match (op, size) {
                        (Op::Store | Op::Load, Size::B) => "b",
                        (Op::Store | Op::Load, Size::H) => "h",
                        (Op::Store | Op::Load, _) => "",
                        (_, Size::B) => "sb",
                        (_, Size::H) => "sh",
                        (_, _) => "sw",
                    };
                    let reg = if size == Size::X || op == Op::LoadSx { "x" } else { "w" };
                    let want = format!("{base}{suffix} {reg}0, {tail}");
                    let got = d.disasm(Isa::A64, ldst(op, size, 0, 1, addr)).expect("decodes");
                    assert_eq!(got, want, "{op:?} {size:?} {addr:?}");
                    n += 1;
                }
            }
        }
        assert_eq!(n, 13 * 5);
    }

    #[test]
    fn mov_imm64_builds_the_value() {
        let w = mov_imm64(1, 0x4001_0000);
        assert_eq!(w, vec![movw(MoveWide::Movz, true, 1, 0x4001, 16)]);
        assert_eq!(mov_imm64(2, 0).len(), 1);
        assert_eq!(mov_imm64(2, 0x1_0000_0001).len(), 2);
    }
}
