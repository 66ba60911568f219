//! A64 classification (Arm ARM C4.1 "A64 instruction set encoding": the Loads and Stores,
//! System, and Data Processing -- Scalar FP and Advanced SIMD groups).

use super::{MemOp, Op, SysTarget};
use crate::rules::cmo::CmoKind;
use crate::rules::fpsimd::A32FpAccess;
use crate::rules::syndrome::{LsSyndrome, MemClass};

fn bits(w: u32, hi: u32, lo: u32) -> u32 {
    (w >> lo) & ((1 << (hi - lo + 1)) - 1)
}

fn mem(class: MemClass, load: bool, store: bool, size: u8) -> MemOp {
    MemOp { class, load, store, size, syndrome: None, fp: None, base: None, unpriv: false }
}

/// Classify one A64 instruction word.
pub fn decode(w: u32) -> Op {
    // SVC #imm16 (C6.2.365).
    if w & 0xffe0_001f == 0xd400_0001 {
        return Op::Svc { imm: bits(w, 20, 5) };
    }
    // HVC #imm16 (C6.2.132), SMC #imm16 (C6.2.319).
    if w & 0xffe0_001f == 0xd400_0002 {
        return Op::Hvc;
    }
    if w & 0xffe0_001f == 0xd400_0003 {
        return Op::Smc;
    }
    // BRK #imm16 (C6.2.40).
    if w & 0xffe0_001f == 0xd420_0000 {
        return Op::Brk { imm: bits(w, 20, 5) };
    }
    // WFI (C6.2.391).
    if w == 0xd503_207f {
        return Op::Wfi;
    }
    if w == 0xd503_205f {
        return Op::Wfe;
    }
    // UDF #imm16 (C6.2.388): permanently undefined.
    if w & 0xffff_0000 == 0 {
        return Op::Undefined;
    }
    // System instructions: 1101 0101 00 L op0 op1 CRn CRm op2 Rt (C4.1.66 "System").
    if w & 0xffc0_0000 == 0xd500_0000 {
        return system(w);
    }
    let op0 = bits(w, 28, 25);
    if op0 & 0b0101 == 0b0100 {
        return load_store(w);
    }
    // Data Processing -- Scalar Floating-Point and Advanced SIMD: op0 = x111 (C4.1.96).
    if op0 & 0b0111 == 0b0111 {
        if let Some(false) = fp16_two_reg_misc_allocated(w) {
            return Op::Undefined;
        }
        return Op::Fp { advsimd: true, access: A32FpAccess::Normal };
    }
    Op::Other
}

/// Advanced SIMD (scalar) two-register miscellaneous (FP16) (C4.1.96.10 / C4.1.96.23): whether
/// the (U, a, opcode) combination is allocated; None when `w` is not in that group. The
/// unallocated combinations are UNDEFINED, and must never reach Unicorn, whose TCG front end
/// aborts on them (disas_simd_two_reg_misc_fp16: g_assert_not_reached).
fn fp16_two_reg_misc_allocated(w: u32) -> Option<bool> {
    let vector = w & 0x9f7e_0c00 == 0x0e78_0800;
    let scalar = w & 0xdf7e_0c00 == 0x5e78_0800;
    if !vector && !scalar {
        return None;
    }
    let fpop = bits(w, 16, 12) | (bits(w, 23, 23) << 5) | (bits(w, 29, 29) << 6);
    const VECTOR: &[u32] = &[
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x2c, 0x2d, 0x2e, 0x2f, 0x38, 0x39, 0x3a, 0x3b, 0x3d, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x6c, 0x6d, 0x6f, 0x79,
        0x7a, 0x7b, 0x7d, 0x7f,
    ];
    const SCALAR: &[u32] = &[0x1a, 0x1b, 0x1c, 0x1d, 0x2c, 0x2d, 0x2e, 0x3a, 0x3b, 0x3d, 0x3f, 0x5a, 0x5b, 0x5c, 0x5d, 0x6c, 0x6d, 0x7a, 0x7b, 0x7d];
    Some(if vector { VECTOR.contains(&fpop) } else { SCALAR.contains(&fpop) })
}

fn system(w: u32) -> Op {
    let l = bits(w, 21, 21) == 1;
    let op0 = bits(w, 20, 19);
    let op1 = bits(w, 18, 16);
    let crn = bits(w, 15, 12);
    let crm = bits(w, 11, 8);
    let op2 = bits(w, 7, 5);
    let rt = bits(w, 4, 0) as u8;
    match op0 {
        // Hints, barriers, PSTATE moves: MSR DAIFSet etc. (op1 != 3 for PAN/SPSel: EL1 only).
        0 => {
            if crn == 4 && op1 != 3 {
                Op::Privileged
            } else {
                Op::Other
            }
        }
        // SYS: cache maintenance, AT, TLBI (C5.3).
        1 if !l => {
            if crn == 7 {
                let kind = match (op1, crm, op2) {
                    (0, 6, 1) => Some(CmoKind::DcIvac),
                    (3, 4, 1) => Some(CmoKind::DcZva),
                    (3, 10, 1) => Some(CmoKind::DcCvac),
                    (3, 11, 1) => Some(CmoKind::DcCvau),
                    (3, 12, 1) => Some(CmoKind::DcCvap),
                    (3, 14, 1) => Some(CmoKind::DcCivac),
                    (3, 5, 1) => Some(CmoKind::IcIvau),
                    _ => None,
                };
                if let Some(kind) = kind {
                    return Op::Cmo { kind, reg: rt };
                }
                // DC ISW/CSW/CISW, IC IALLU(IS): no address, EL1 only.
                if matches!((op1, crm, op2), (0, 6, 2) | (0, 10, 2) | (0, 14, 2) | (0, 5, 0) | (0, 1, 0)) {
                    return Op::CmoNoAddress;
                }
            }
            Op::Privileged
        }
        1 => Op::Privileged,
        // MRS/MSR (register), op0 = 2 (debug) or 3.
        _ => {
            let target = sysreg_target(op0, op1, crn, crm, op2);
            if l {
                Op::SysRead { target, rt }
            } else {
                Op::SysWrite { target, rt }
            }
        }
    }
}

fn sysreg_target(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> SysTarget {
    match (op0, op1, crn, crm, op2) {
        (3, 0, 1, 0, 2) => SysTarget::Cpacr,
        (3, 3, 4, 4, 0) | (3, 3, 4, 4, 1) => SysTarget::FpStatus,
        (3, 3, 0, 0, 1) => SysTarget::Ctr,
        (3, 3, 0, 0, 7) => SysTarget::Dczid,
        // MIDR_EL1, MPIDR_EL1, REVIDR, ID_* (op1 = 0, CRn = 0) and CCSIDR/CLIDR (op1 = 1).
        (3, 0 | 1, 0, _, _) => SysTarget::Id,
        (3, 3, _, _, _) => SysTarget::El0Other,
        _ => SysTarget::El1Other,
    }
}

/// Loads and stores (C4.1.88 "Loads and Stores").
fn load_store(w: u32) -> Op {
    let rt = bits(w, 4, 0) as u8;
    let rn = bits(w, 9, 5) as u8;
    let v = bits(w, 26, 26) == 1;
    let size = bits(w, 31, 30);

    // Load/store exclusive, ordered, compare-and-swap: xx00 1000 ... (C4.1.88.8).
    if w & 0x3f00_0000 == 0x0800_0000 {
        let o2 = bits(w, 23, 23);
        let l = bits(w, 22, 22) == 1;
        let o1 = bits(w, 21, 21);
        let mut m = match (o2, o1) {
            // LDAR/STLR (o0 = 1) and LDLAR/STLLR (o0 = 0): a single register, ordered.
            (1, 0) => {
                let mut m = mem(MemClass::A64GprOrdered, l, !l, 1 << size);
                m.syndrome = Some(LsSyndrome { sas: size as u8, sse: false, srt: rt, sf: size == 3, ar: true });
                m
            }
            // LDXR/STXR/LDAXR/STLXR.
            (0, 0) => mem(MemClass::A64Exclusive, l, !l, 1 << size),
            // LDXP/STXP (size 1x) or CASP (size 0x).
            (0, 1) if size >= 2 => mem(MemClass::A64Exclusive, l, !l, 1 << size),
            (0, 1) => mem(MemClass::A64Atomic, true, true, 4 << size),
            // CAS, CASA, CASL, CASAL (B/H/W/X).
            _ => mem(MemClass::A64Atomic, true, true, 1 << size),
        };
        m.base = Some(rn);
        return Op::Mem(m);
    }
    // LDAPUR/STLUR (FEAT_LRCPC2): xx01 1001 xx0 imm9 00 (C4.1.88.11).
    if w & 0x3f20_0c00 == 0x1900_0000 {
        let opc = bits(w, 23, 22);
        let (load, sse, sf) = match opc {
            0 => (false, false, size == 3),
            1 => (true, false, size == 3),
            2 => (true, true, true),
            _ => (true, true, false),
        };
        if (opc == 2 && size == 3) || (opc == 3 && size >= 2) {
            return Op::Undefined;
        }
        let mut m = mem(MemClass::A64GprOrdered, load, !load, 1 << size);
        m.syndrome = Some(LsSyndrome { sas: size as u8, sse, srt: rt, sf, ar: true });
        return Op::Mem(m);
    }
    // Load register (literal): xx01 1x00 (C4.1.88.10).
    if w & 0x3b00_0000 == 0x1800_0000 {
        let opc = size;
        if v {
            if opc == 3 {
                return Op::Undefined;
            }
            let mut m = mem(MemClass::A64SimdFp, true, false, 4 << opc);
            m.fp = Some(false);
            return Op::Mem(m);
        }
        return match opc {
            // PRFM (literal): a hint, no access.
            3 => Op::Other,
            _ => {
                let (sz, sse, sf) = match opc {
                    0 => (2u8, false, false),
                    1 => (3, false, true),
                    _ => (2, true, true),
                };
                let mut m = mem(MemClass::A64GprSingle, true, false, 1 << sz);
                m.syndrome = Some(LsSyndrome { sas: sz, sse, srt: rt, sf, ar: false });
                Op::Mem(m)
            }
        };
    }
    // Load/store pair (all addressing modes): xx10 1xxx (C4.1.88.14-17).
    if w & 0x3800_0000 == 0x2800_0000 {
        let opc = size;
        let l = bits(w, 22, 22) == 1;
        if v {
            if opc == 3 {
                return Op::Undefined;
            }
            let mut m = mem(MemClass::A64SimdFp, l, !l, 4 << opc);
            m.fp = Some(false);
            return Op::Mem(m);
        }
        let sz = if opc == 2 { 8 } else { 4 };
        return Op::Mem(mem(MemClass::A64Pair, l, !l, sz));
    }
    // Advanced SIMD load/store multiple / single structure: 0x00 110x (C4.1.88.1-4).
    if w & 0xbe00_0000 == 0x0c00_0000 {
        let l = bits(w, 22, 22) == 1;
        let mut m = mem(MemClass::A64SimdStruct, l, !l, 0);
        m.fp = Some(true);
        return Op::Mem(m);
    }
    // Load/store register: xx11 1xxx (C4.1.88.18-28).
    if w & 0x3800_0000 == 0x3800_0000 {
        return load_store_register(w, size, v, rt, rn);
    }
    Op::Other
}

fn load_store_register(w: u32, size: u32, v: bool, rt: u8, rn: u8) -> Op {
    let opc = bits(w, 23, 22);
    let unsigned_imm = bits(w, 24, 24) == 1;
    let b21 = bits(w, 21, 21) == 1;
    let mode = bits(w, 11, 10);
    enum Form {
        NoWriteback { unpriv: bool },
        Writeback,
    }
    let form = if unsigned_imm {
        Form::NoWriteback { unpriv: false }
    } else if !b21 {
        match mode {
            0b00 => Form::NoWriteback { unpriv: false },
            0b10 => Form::NoWriteback { unpriv: true },
            _ => Form::Writeback,
        }
    } else if mode == 0b10 {
        Form::NoWriteback { unpriv: false }
    } else if mode == 0b00 && !v {
        // Atomic memory operations (LDADD.., SWP, LDAPR) (C4.1.88.13).
        let o3 = bits(w, 15, 15);
        let aop = bits(w, 14, 12);
        if o3 == 1 && aop == 0b100 {
            // LDAPR/LDAPRB/LDAPRH (FEAT_LRCPC): a single register load-acquire.
            let mut m = mem(MemClass::A64GprOrdered, true, false, 1 << size);
            m.syndrome = Some(LsSyndrome { sas: size as u8, sse: false, srt: rt, sf: size == 3, ar: true });
            m.base = Some(rn);
            return Op::Mem(m);
        }
        let mut m = mem(MemClass::A64Atomic, true, true, 1 << size);
        m.base = Some(rn);
        return Op::Mem(m);
    } else if !v && size == 3 && mode & 1 == 1 {
        // LDRAA/LDRAB (FEAT_PAuth): bit 11 selects writeback.
        return Op::Mem(mem(if mode == 0b11 { MemClass::A64GprWriteback } else { MemClass::Unclassified }, true, false, 8));
    } else {
        return Op::Undefined;
    };
    if v {
        // SIMD&FP: size:opc<1> selects 8..128 bits.
        let bytes: u8 = match (size, opc >> 1) {
            (0, 1) => 16,
            (s, 0) => 1 << s,
            _ => return Op::Undefined,
        };
        let load = opc & 1 == 1;
        let mut m = mem(MemClass::A64SimdFp, load, !load, bytes);
        m.fp = Some(false);
        return Op::Mem(m);
    }
    // General-purpose register (ASL "integer regsize; ... if opc<1> == '0' ... else ...").
    let (load, sse, regsize64) = match opc {
        0b00 => (false, false, size == 3),
        0b01 => (true, false, size == 3),
        _ if size == 3 => {
            // PRFM / PRFUM (opc 10) are hints; opc 11 is unallocated.
            return if opc == 0b10 { Op::Other } else { Op::Undefined };
        }
        0b10 => (true, true, true),
        _ if size == 2 => return Op::Undefined,
        _ => (true, true, false),
    };
    let (class, unpriv) = match form {
        Form::NoWriteback { unpriv } => (MemClass::A64GprSingle, unpriv),
        Form::Writeback => (MemClass::A64GprWriteback, false),
    };
    let mut m = mem(class, load, !load, 1 << size);
    m.unpriv = unpriv;
    if class.has_syndrome() {
        m.syndrome = Some(LsSyndrome { sas: size as u8, sse, srt: rt, sf: regsize64, ar: false });
    }
    Op::Mem(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memop(w: u32) -> MemOp {
        match decode(w) {
            Op::Mem(m) => m,
            other => panic!("{w:#x}: {other:?}"),
        }
    }
    fn syn(w: u32) -> LsSyndrome {
        memop(w).syndrome.unwrap_or_else(|| panic!("{w:#x} has no syndrome"))
    }

    #[test]
    fn single_gpr_loads_and_stores_have_a_syndrome() {
        // ldr w1, [x0]
        assert_eq!(syn(0xb940_0001), LsSyndrome { sas: 2, sse: false, srt: 1, sf: false, ar: false });
        // ldr x2, [x0, #8]
        assert_eq!(syn(0xf940_0402), LsSyndrome { sas: 3, sse: false, srt: 2, sf: true, ar: false });
        // ldrsb x3, [x0]
        assert_eq!(syn(0x3980_0003), LsSyndrome { sas: 0, sse: true, srt: 3, sf: true, ar: false });
        // ldrsh w4, [x0]
        assert_eq!(syn(0x79c0_0004), LsSyndrome { sas: 1, sse: true, srt: 4, sf: false, ar: false });
        // ldrsw x5, [x0]
        assert_eq!(syn(0xb980_0005), LsSyndrome { sas: 2, sse: true, srt: 5, sf: true, ar: false });
        // strb w6, [x0]
        let m = memop(0x3900_0006);
        assert!(m.store && !m.load);
        assert_eq!(m.syndrome, Some(LsSyndrome { sas: 0, sse: false, srt: 6, sf: false, ar: false }));
        // str xzr, [x0]: register 31 is the zero register, still a valid syndrome.
        assert_eq!(syn(0xf900_001f).srt, 31);
        // ldur w1, [x0, #-4]; ldr w1, [x0, x2]; ldtr x1, [x0]; ldr x1, label
        assert_eq!(syn(0xb85f_c001).sas, 2);
        assert_eq!(syn(0xb862_6801).sas, 2);
        assert!(memop(0xf840_0801).unpriv);
        assert_eq!(syn(0x5800_0041), LsSyndrome { sas: 3, sse: false, srt: 1, sf: true, ar: false });
    }

    #[test]
    fn ordered_accesses_have_ar() {
        // ldar w1, [x0]; stlr x2, [x0]; ldapr x3, [x0]
        assert_eq!(syn(0x88df_fc01), LsSyndrome { sas: 2, sse: false, srt: 1, sf: false, ar: true });
        let m = memop(0xc89f_fc02);
        assert!(m.store && m.syndrome.is_some_and(|s| s.ar && s.sf));
        assert!(syn(0xf8bf_c003).ar);
    }

    #[test]
    fn forms_without_a_syndrome() {
        // ldr x1, [x0], #8 (post-index); ldr x1, [x0, #8]! (pre-index)
        assert_eq!(memop(0xf840_8401).class, MemClass::A64GprWriteback);
        assert_eq!(memop(0xf840_8c01).class, MemClass::A64GprWriteback);
        // ldp x1, x2, [x0]; stp w1, w2, [x0]
        assert_eq!(memop(0xa940_0801).class, MemClass::A64Pair);
        assert_eq!(memop(0x2900_0801).class, MemClass::A64Pair);
        // ldr q0, [x0]; ldr d1, [x0]; str s2, [x0]
        assert_eq!(memop(0x3dc0_0000).size, 16);
        assert_eq!(memop(0xfd40_0001).class, MemClass::A64SimdFp);
        assert!(memop(0xbd00_0002).store);
        // ld1 {v0.16b}, [x0]
        assert_eq!(memop(0x4c40_7000).class, MemClass::A64SimdStruct);
        // ldxr x1, [x0]; stxr w2, x1, [x0]
        assert_eq!(memop(0xc85f_7c01).class, MemClass::A64Exclusive);
        assert_eq!(memop(0xc802_7c01).class, MemClass::A64Exclusive);
        // ldadd x1, x2, [x0]; swp w1, w2, [x0]; cas x1, x2, [x0]
        assert_eq!(memop(0xf821_0002).class, MemClass::A64Atomic);
        assert_eq!(memop(0xb821_8002).class, MemClass::A64Atomic);
        assert_eq!(memop(0xc8a1_7c02).class, MemClass::A64Atomic);
        for w in [0xf840_8401u32, 0xa940_0801, 0x3dc0_0000, 0x4c40_7000, 0xc85f_7c01, 0xf821_0002] {
            assert!(memop(w).syndrome.is_none(), "{w:#x}");
        }
    }

    #[test]
    fn cache_maintenance_and_system() {
        assert_eq!(decode(0xd508_7620), Op::Cmo { kind: CmoKind::DcIvac, reg: 0 });
        assert_eq!(decode(0xd50b_7e21), Op::Cmo { kind: CmoKind::DcCivac, reg: 1 });
        assert_eq!(decode(0xd50b_7a22), Op::Cmo { kind: CmoKind::DcCvac, reg: 2 });
        assert_eq!(decode(0xd50b_7b23), Op::Cmo { kind: CmoKind::DcCvau, reg: 3 });
        assert_eq!(decode(0xd50b_7c24), Op::Cmo { kind: CmoKind::DcCvap, reg: 4 });
        assert_eq!(decode(0xd50b_7425), Op::Cmo { kind: CmoKind::DcZva, reg: 5 });
        assert_eq!(decode(0xd50b_7526), Op::Cmo { kind: CmoKind::IcIvau, reg: 6 });
        assert_eq!(decode(0xd508_751f), Op::CmoNoAddress);
        // mrs x0, ctr_el0; msr cpacr_el1, x1; mrs x2, fpcr; svc #0x7d; prfm pldl1keep, [x0]
        assert_eq!(decode(0xd53b_0020), Op::SysRead { target: SysTarget::Ctr, rt: 0 });
        assert_eq!(decode(0xd518_1041), Op::SysWrite { target: SysTarget::Cpacr, rt: 1 });
        assert_eq!(decode(0xd53b_4402), Op::SysRead { target: SysTarget::FpStatus, rt: 2 });
        assert_eq!(decode(0xd400_0fa1), Op::Svc { imm: 0x7d });
        assert_eq!(decode(0xd420_0020), Op::Brk { imm: 1 });
        assert_eq!(decode(0xd503_207f), Op::Wfi);
        assert_eq!(decode(0xf980_0000), Op::Other);
        // fadd d0, d1, d2; add x0, x1, x2
        assert!(matches!(decode(0x1e62_2820), Op::Fp { .. }));
        assert_eq!(decode(0x8b02_0020), Op::Other);
    }
}
