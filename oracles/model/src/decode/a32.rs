//! A32 and T32 classification (Arm ARM F4 "The A32 instruction set encoding" and F3 "The
//! T32 instruction set encoding"): the load/store classes the syndrome rules distinguish,
//! CP15 cache maintenance and CPACR, VFP/Advanced SIMD.

use super::{MemOp, Op, SysTarget};
use crate::rules::cmo::CmoKind;
use crate::rules::fpsimd::A32FpAccess;
use crate::rules::syndrome::{LsSyndrome, MemClass};

fn bits(w: u32, hi: u32, lo: u32) -> u32 {
    (w >> lo) & ((1 << (hi - lo + 1)) - 1)
}

fn mem(class: MemClass, load: bool, size: u8) -> MemOp {
    MemOp { class, load, store: !load, size, syndrome: None, fp: None, base: None, unpriv: false }
}

/// A single load/store of a general-purpose register (LDR/STR/LDRB/STRB/LDRH/STRH/LDRSB/
/// LDRSH and their T forms): valid syndrome unless it writes back or transfers R15.
fn single(load: bool, size: u8, signed: bool, rt: u8, writeback: bool, unpriv: bool) -> Op {
    let class = if writeback || rt == 15 { MemClass::A32SingleWriteback } else { MemClass::A32Single };
    let mut m = mem(class, load, size);
    m.unpriv = unpriv;
    if class.has_syndrome() {
        let sas = size.trailing_zeros() as u8;
        m.syndrome = Some(LsSyndrome { sas, sse: signed, srt: rt, sf: false, ar: false });
    }
    Op::Mem(m)
}

fn ordered(load: bool, size: u8, rt: u8, rn: u8) -> Op {
    let mut m = mem(MemClass::A32Ordered, load, size);
    m.syndrome = Some(LsSyndrome { sas: size.trailing_zeros() as u8, sse: false, srt: rt, sf: false, ar: true });
    m.base = Some(rn);
    Op::Mem(m)
}

fn exclusive(load: bool, size: u8, rn: u8) -> Op {
    let mut m = mem(MemClass::A32Exclusive, load, size);
    m.base = Some(rn);
    Op::Mem(m)
}

fn fp_mem(load: bool) -> Op {
    let mut m = mem(MemClass::A32Fp, load, 0);
    m.fp = Some(false);
    Op::Mem(m)
}

/// MCR/MRC: CP15 operations the families use, VMRS/VMSR (cp10 with opc1 = 7), and VMOV
/// between core and FP registers.
fn coproc_move(coproc: u32, l: bool, opc1: u32, crn: u32, rt: u8, opc2: u32, crm: u32) -> Op {
    match coproc {
        15 => {
            if l {
                return match (opc1, crn, crm, opc2) {
                    (0, 1, 0, 2) => Op::SysRead { target: SysTarget::Cpacr, rt },
                    (0, 0, 0, 1) => Op::SysRead { target: SysTarget::Ctr, rt },
                    (0, 0, _, _) | (1, 0, _, _) => Op::SysRead { target: SysTarget::Id, rt },
                    _ => Op::SysRead { target: SysTarget::El1Other, rt },
                };
            }
            let kind = match (opc1, crn, crm, opc2) {
                (0, 7, 6, 1) => Some(CmoKind::DcIvac),
                (0, 7, 10, 1) => Some(CmoKind::DcCvac),
                (0, 7, 11, 1) => Some(CmoKind::DcCvau),
                (0, 7, 12, 1) => Some(CmoKind::DcCvap),
                (0, 7, 14, 1) => Some(CmoKind::DcCivac),
                (0, 7, 5, 1) => Some(CmoKind::IcIvau),
                _ => None,
            };
            if let Some(kind) = kind {
                return Op::Cmo { kind, reg: rt };
            }
            match (opc1, crn, crm, opc2) {
                (0, 1, 0, 2) => Op::SysWrite { target: SysTarget::Cpacr, rt },
                (0, 7, 5, 0) | (0, 7, 5, 6) | (0, 7, 6, 2) | (0, 7, 10, 2) | (0, 7, 14, 2) => Op::CmoNoAddress,
                _ => Op::SysWrite { target: SysTarget::El1Other, rt },
            }
        }
        10 | 11 => {
            if opc1 == 7 && coproc == 10 && crm == 0 && opc2 == 0 {
                // VMRS/VMSR: "reg" is CRn (F6.1 VMRS). FPSCR needs FPEXC.EN; the others do not.
                let target = match crn {
                    1 => SysTarget::FpStatus,
                    8 => SysTarget::Fpexc,
                    _ => SysTarget::Id,
                };
                return match (target, l) {
                    (SysTarget::FpStatus, true) => Op::SysRead { target, rt },
                    (SysTarget::FpStatus, false) => Op::SysWrite { target, rt },
                    (_, true) => Op::SysRead { target, rt },
                    (_, false) => Op::SysWrite { target, rt },
                };
            }
            // VMOV core <-> scalar / single (and VDUP): FP or Advanced SIMD data movement.
            Op::Fp { advsimd: false, access: A32FpAccess::Normal }
        }
        14 => Op::Other,
        _ => Op::Undefined,
    }
}

/// Classify one A32 instruction word.
pub fn decode_a32(w: u32) -> Op {
    let cond = bits(w, 31, 28);
    if cond == 0xf {
        // Unconditional space (F4.1.18): Advanced SIMD data processing 1111 001x, element or
        // structure load/store 1111 0100 xxx0.
        if bits(w, 27, 25) == 0b001 {
            return Op::Fp { advsimd: true, access: A32FpAccess::Normal };
        }
        if bits(w, 27, 24) == 0b0100 && bits(w, 20, 20) == 0 {
            let mut m = mem(MemClass::A32Fp, bits(w, 21, 21) == 1, 0);
            m.fp = Some(true);
            return Op::Mem(m);
        }
        return Op::Other;
    }
    // BKPT #imm16 (F5.1.23; unconditional) and WFI (F5.1.313).
    if w & 0x0ff0_00f0 == 0x0120_0070 {
        return Op::Brk { imm: (bits(w, 19, 8) << 4) | bits(w, 3, 0) };
    }
    if w & 0x0fff_ffff == 0x0320_f003 {
        return Op::Wfi;
    }
    if w & 0x0fff_ffff == 0x0320_f002 {
        return Op::Wfe;
    }
    // HVC #imm16 (F5.1.74), SMC #imm4 (F5.1.198).
    if w & 0x0ff0_00f0 == 0x0140_0070 {
        return Op::Hvc;
    }
    if w & 0x0ff0_00f0 == 0x0160_0070 {
        return Op::Smc;
    }
    let op1 = bits(w, 27, 25);
    let rn = bits(w, 19, 16) as u8;
    let rt = bits(w, 15, 12) as u8;
    let l = bits(w, 20, 20) == 1;
    let p = bits(w, 24, 24) == 1;
    let wb = bits(w, 21, 21) == 1;
    match op1 {
        // LDR/STR/LDRB/STRB (immediate 010, register 011 with bit 4 = 0) (F4.1.10).
        0b010 | 0b011 => {
            if op1 == 0b011 && bits(w, 4, 4) == 1 {
                // Media instructions; UDF is 1110 0111 1111 ... 1111.
                return if w & 0x0ff0_00f0 == 0x07f0_00f0 { Op::Undefined } else { Op::Other };
            }
            let byte = bits(w, 22, 22) == 1;
            let unpriv = !p && wb;
            single(l, if byte { 1 } else { 4 }, false, rt, !p || wb, unpriv)
        }
        0b000 => {
            // Synchronisation primitives and load-acquire/store-release: 0001 1xxx ... 1001.
            if w & 0x0f80_00f0 == 0x0180_0090 {
                let sz = match bits(w, 22, 21) {
                    0b00 => 4u8,
                    0b01 => 8,
                    0b10 => 1,
                    _ => 2,
                };
                let trt = if l { rt } else { bits(w, 3, 0) as u8 };
                return match bits(w, 9, 8) {
                    0b00 if sz != 8 => ordered(l, sz, trt, rn),
                    0b00 => Op::Undefined,
                    _ => exclusive(l, sz, rn),
                };
            }
            // SWP/SWPB (0001 0x00 ... 1001): not in Armv8 AArch32 by default.
            if w & 0x0fb0_0ff0 == 0x0100_0090 {
                return Op::Undefined;
            }
            // Extra load/store: bit 7 and bit 4 set, op2 = bits[6:5] != 00 (F4.1.8).
            if bits(w, 7, 7) == 1 && bits(w, 4, 4) == 1 && bits(w, 6, 5) != 0 {
                let op2 = bits(w, 6, 5);
                let writeback = !p || wb;
                let unpriv = !p && wb;
                return match (op2, l) {
                    (0b01, _) => single(l, 2, false, rt, writeback, unpriv),
                    (0b10, true) => single(true, 1, true, rt, writeback, unpriv),
                    (0b11, true) => single(true, 2, true, rt, writeback, unpriv),
                    // LDRD (op2 10, L 0) and STRD (op2 11, L 0).
                    (0b10, false) => Op::Mem(mem(MemClass::A32Dual, true, 4)),
                    _ => Op::Mem(mem(MemClass::A32Dual, false, 4)),
                };
            }
            Op::Other
        }
        // LDM/STM (F4.1.12).
        0b100 => Op::Mem(mem(MemClass::A32Multiple, l, 4)),
        // Data processing (immediate) and branches.
        0b001 | 0b101 => Op::Other,
        // Coprocessor load/store and 64-bit moves: VLDR/VSTR/VLDM/VSTM/VMOV (two registers).
        0b110 => {
            if bits(w, 11, 9) == 0b101 {
                if bits(w, 24, 21) == 0b0010 {
                    return Op::Fp { advsimd: false, access: A32FpAccess::Normal };
                }
                return fp_mem(l);
            }
            Op::Undefined
        }
        _ => {
            // 111: SVC (1111) or coprocessor data processing / register moves (1110).
            if bits(w, 24, 24) == 1 {
                return Op::Svc { imm: bits(w, 23, 0) };
            }
            let coproc = bits(w, 11, 8);
            if bits(w, 4, 4) == 1 {
                return coproc_move(coproc, l, bits(w, 23, 21), bits(w, 19, 16), rt, bits(w, 7, 5), bits(w, 3, 0));
            }
            if coproc & 0b1110 == 0b1010 {
                return Op::Fp { advsimd: false, access: A32FpAccess::Normal };
            }
            Op::Undefined
        }
    }
}

/// Classify one T32 instruction (`w` as stored in a case: a 16-bit instruction, or
/// `hw1 << 16 | hw2`).
pub fn decode_t32(w: u32) -> Op {
    if w <= 0xffff {
        return decode_t16(w as u16);
    }
    let hw1 = (w >> 16) as u16 as u32;
    let hw2 = w & 0xffff;
    let rn = bits(hw1, 3, 0) as u8;
    let rt = bits(hw2, 15, 12) as u8;
    // Load/store single: 1111 100x (F3.1.12 onwards).
    if hw1 & 0xfe00 == 0xf800 {
        let signed = bits(hw1, 8, 8) == 1;
        let imm12 = bits(hw1, 7, 7) == 1;
        let size = 1u8 << bits(hw1, 6, 5);
        let l = bits(hw1, 4, 4) == 1;
        if bits(hw1, 6, 5) == 3 {
            return Op::Undefined;
        }
        if !l && signed {
            // 1111 1001 xxx0: Advanced SIMD element or structure load/store.
            let mut m = mem(MemClass::A32Fp, bits(hw1, 5, 5) == 1, 0);
            m.fp = Some(true);
            return Op::Mem(m);
        }
        if l && rt == 15 && size < 4 {
            // PLD/PLI (and their unallocated neighbours): hints without an access.
            return Op::Other;
        }
        if imm12 || rn == 15 {
            return single(l, size, signed, rt, false, false);
        }
        if bits(hw2, 11, 11) == 1 {
            let p = bits(hw2, 10, 10) == 1;
            let u = bits(hw2, 9, 9) == 1;
            let wbit = bits(hw2, 8, 8) == 1;
            let unpriv = p && u && !wbit;
            return single(l, size, signed, rt, wbit, unpriv);
        }
        if bits(hw2, 11, 6) == 0 {
            return single(l, size, signed, rt, false, false);
        }
        return Op::Undefined;
    }
    // Load/store dual, exclusive, acquire/release, table branch: 1110 100x x1xx.
    if hw1 & 0xfe40 == 0xe840 {
        let l = bits(hw1, 4, 4) == 1;
        if hw1 & 0xffe0 == 0xe840 {
            return exclusive(l, 4, rn);
        }
        if hw1 & 0xffe0 == 0xe8c0 {
            let op = bits(hw2, 7, 4);
            return match op {
                0b0000 | 0b0001 if l => Op::Mem(mem(MemClass::A32TableBranch, true, if op == 0 { 1 } else { 2 })),
                0b0100 => exclusive(l, 1, rn),
                0b0101 => exclusive(l, 2, rn),
                0b0111 => exclusive(l, 8, rn),
                0b1000 => ordered(l, 1, rt, rn),
                0b1001 => ordered(l, 2, rt, rn),
                0b1010 => ordered(l, 4, rt, rn),
                0b1100 => exclusive(l, 1, rn),
                0b1101 => exclusive(l, 2, rn),
                0b1110 => exclusive(l, 4, rn),
                0b1111 => exclusive(l, 8, rn),
                _ => Op::Undefined,
            };
        }
        return Op::Mem(mem(MemClass::A32Dual, l, 4));
    }
    // Load/store multiple: 1110 100x x0xx.
    if hw1 & 0xfe40 == 0xe800 {
        return Op::Mem(mem(MemClass::A32Multiple, bits(hw1, 4, 4) == 1, 4));
    }
    // Advanced SIMD data processing: 111x 1111.
    if hw1 & 0xef00 == 0xef00 {
        return Op::Fp { advsimd: true, access: A32FpAccess::Normal };
    }
    // Coprocessor, FP: 111x 11xx.
    if hw1 & 0xec00 == 0xec00 {
        let coproc = bits(hw2, 11, 8);
        if hw1 & 0x0f00 == 0x0e00 {
            if bits(hw2, 4, 4) == 1 {
                return coproc_move(coproc, bits(hw1, 4, 4) == 1, bits(hw1, 7, 5), bits(hw1, 3, 0), rt, bits(hw2, 7, 5), bits(hw2, 3, 0));
            }
            return if coproc & 0b1110 == 0b1010 { Op::Fp { advsimd: false, access: A32FpAccess::Normal } } else { Op::Undefined };
        }
        if coproc & 0b1110 == 0b1010 {
            if bits(hw1, 8, 5) == 0b0010 {
                return Op::Fp { advsimd: false, access: A32FpAccess::Normal };
            }
            return fp_mem(bits(hw1, 4, 4) == 1);
        }
        return Op::Undefined;
    }
    // HVC.W 1111 0111 1110 imm4 1000 imm12; SMC 1111 0111 1111 imm4 1000 0000 0000 0000.
    if hw1 & 0xfff0 == 0xf7e0 && hw2 & 0xf000 == 0x8000 {
        return Op::Hvc;
    }
    if hw1 & 0xfff0 == 0xf7f0 && hw2 == 0x8000 {
        return Op::Smc;
    }
    // WFI.W.
    if w == 0xf3af_8003 {
        return Op::Wfi;
    }
    if w == 0xf3af_8002 {
        return Op::Wfe;
    }
    // UDF.W: 1111 0111 1111 xxxx 1010 xxxx.
    if hw1 & 0xfff0 == 0xf7f0 && hw2 & 0xf000 == 0xa000 {
        return Op::Undefined;
    }
    Op::Other
}

fn decode_t16(h: u16) -> Op {
    let h = u32::from(h);
    let rt = bits(h, 2, 0) as u8;
    match h >> 11 {
        // LDR (literal).
        0b01001 => single(true, 4, false, bits(h, 10, 8) as u8, false, false),
        // Load/store register offset: 0101 opB.
        0b01010 | 0b01011 => {
            let (l, size, signed) = match bits(h, 11, 9) {
                0b000 => (false, 4, false),
                0b001 => (false, 2, false),
                0b010 => (false, 1, false),
                0b011 => (true, 1, true),
                0b100 => (true, 4, false),
                0b101 => (true, 2, false),
                0b110 => (true, 1, false),
                _ => (true, 2, true),
            };
            single(l, size, signed, rt, false, false)
        }
        // STR/LDR (immediate), STRB/LDRB (immediate), STRH/LDRH (immediate).
        0b01100 | 0b01101 => single(h >> 11 & 1 == 1, 4, false, rt, false, false),
        0b01110 | 0b01111 => single(h >> 11 & 1 == 1, 1, false, rt, false, false),
        0b10000 | 0b10001 => single(h >> 11 & 1 == 1, 2, false, rt, false, false),
        // STR/LDR (SP-relative).
        0b10010 | 0b10011 => single(h >> 11 & 1 == 1, 4, false, bits(h, 10, 8) as u8, false, false),
        // STM/LDM.
        0b11000 | 0b11001 => Op::Mem(mem(MemClass::A32Multiple, h >> 11 & 1 == 1, 4)),
        _ => {
            // PUSH 1011 010x, POP 1011 110x.
            if h & 0xfe00 == 0xb400 || h & 0xfe00 == 0xbc00 {
                return Op::Mem(mem(MemClass::A32Multiple, h & 0x0800 != 0, 4));
            }
            if h & 0xff00 == 0xdf00 {
                return Op::Svc { imm: h & 0xff };
            }
            // BKPT #imm8; WFI (16-bit).
            if h & 0xff00 == 0xbe00 {
                return Op::Brk { imm: h & 0xff };
            }
            if h == 0xbf30 {
                return Op::Wfi;
            }
            if h == 0xbf20 {
                return Op::Wfe;
            }
            if h & 0xff00 == 0xde00 {
                return Op::Undefined;
            }
            Op::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memop(op: Op) -> MemOp {
        match op {
            Op::Mem(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a32_single_loads_and_stores() {
        // ldr r1, [r0]; ldrb r2, [r0, #1]; strh r3, [r0]; ldrsb r4, [r0]; ldrsh r5, [r0]
        assert_eq!(memop(decode_a32(0xe590_1000)).syndrome, Some(LsSyndrome { sas: 2, sse: false, srt: 1, sf: false, ar: false }));
        assert_eq!(memop(decode_a32(0xe5d0_2001)).syndrome.map(|s| s.sas), Some(0));
        assert_eq!(memop(decode_a32(0xe1c0_30b0)).syndrome.map(|s| (s.sas, s.srt)), Some((1, 3)));
        assert_eq!(memop(decode_a32(0xe1d0_40d0)).syndrome.map(|s| (s.sas, s.sse)), Some((0, true)));
        assert_eq!(memop(decode_a32(0xe1d0_50f0)).syndrome.map(|s| (s.sas, s.sse)), Some((1, true)));
        // lda r1, [r0]; stl r1, [r0]
        assert_eq!(memop(decode_a32(0xe190_1c9f)).syndrome.map(|s| s.ar), Some(true));
        assert_eq!(memop(decode_a32(0xe180_fc91)).syndrome.map(|s| (s.ar, s.srt)), Some((true, 1)));
    }

    #[test]
    fn a32_forms_without_a_syndrome() {
        // ldr r1, [r0], #4 (post); ldr r1, [r0, #4]! (pre); ldrt r1, [r0]; ldrd r2, r3, [r0];
        // ldm r0, {r1, r2}; ldrex r1, [r0]; ldr pc, [r0]; vldr d0, [r0]
        for w in [0xe490_1004u32, 0xe5b0_1004, 0xe4b0_1000, 0xe1c0_20d0, 0xe890_0006, 0xe190_1f9f, 0xe590_f000, 0xed90_0b00] {
            let m = memop(decode_a32(w));
            assert!(m.syndrome.is_none(), "{w:#x}: {m:?}");
        }
        assert_eq!(memop(decode_a32(0xe1c0_20d0)).class, MemClass::A32Dual);
        assert_eq!(memop(decode_a32(0xed90_0b00)).fp, Some(false));
    }

    #[test]
    fn a32_cp15_and_vfp() {
        // mcr p15, 0, r0, c7, c14, 1 (DCCIMVAC); mcr p15, 0, r1, c7, c6, 1 (DCIMVAC);
        // mcr p15, 0, r2, c7, c5, 1 (ICIMVAU); mcr p15, 0, r3, c1, c0, 2 (CPACR)
        assert_eq!(decode_a32(0xee07_0f3e), Op::Cmo { kind: CmoKind::DcCivac, reg: 0 });
        assert_eq!(decode_a32(0xee07_1f36), Op::Cmo { kind: CmoKind::DcIvac, reg: 1 });
        assert_eq!(decode_a32(0xee07_2f35), Op::Cmo { kind: CmoKind::IcIvau, reg: 2 });
        assert_eq!(decode_a32(0xee01_3f50), Op::SysWrite { target: SysTarget::Cpacr, rt: 3 });
        // vmrs r0, fpexc; vmsr fpexc, r1; vmrs r2, fpscr; vadd.f64 d0, d1, d2; vadd.i32 q0, q1, q2
        assert_eq!(decode_a32(0xeef8_0a10), Op::SysRead { target: SysTarget::Fpexc, rt: 0 });
        assert_eq!(decode_a32(0xeee8_1a10), Op::SysWrite { target: SysTarget::Fpexc, rt: 1 });
        assert_eq!(decode_a32(0xeef1_2a10), Op::SysRead { target: SysTarget::FpStatus, rt: 2 });
        assert_eq!(decode_a32(0xee31_0b02), Op::Fp { advsimd: false, access: A32FpAccess::Normal });
        assert_eq!(decode_a32(0xf222_0844), Op::Fp { advsimd: true, access: A32FpAccess::Normal });
        assert_eq!(decode_a32(0xef00_007d), Op::Svc { imm: 0x7d });
    }

    #[test]
    fn t32_classes() {
        // ldr r1, [r0] (16-bit); ldrh r2, [r0, #2]; ldrsb r3, [r0, r1]; push {r4, lr}
        assert_eq!(memop(decode_t32(0x6801)).syndrome.map(|s| (s.sas, s.srt)), Some((2, 1)));
        assert_eq!(memop(decode_t32(0x8842)).syndrome.map(|s| s.sas), Some(1));
        assert_eq!(memop(decode_t32(0x5643)).syndrome.map(|s| (s.sas, s.sse)), Some((0, true)));
        assert_eq!(memop(decode_t32(0xb510)).class, MemClass::A32Multiple);
        // ldr.w r1, [r0, #4]; ldr r1, [r0], #4; ldrd r2, r3, [r0]; ldrex r1, [r0]; lda r1, [r0]
        assert!(memop(decode_t32(0xf8d0_1004)).syndrome.is_some());
        assert_eq!(memop(decode_t32(0xf850_1b04)).class, MemClass::A32SingleWriteback);
        assert_eq!(memop(decode_t32(0xe9d0_2300)).class, MemClass::A32Dual);
        assert_eq!(memop(decode_t32(0xe850_1f00)).class, MemClass::A32Exclusive);
        assert_eq!(memop(decode_t32(0xe8d0_1faf)).class, MemClass::A32Ordered);
        // svc #0x7d; vmrs r0, fpexc; mcr p15, 0, r0, c7, c14, 1
        assert_eq!(decode_t32(0xdf7d), Op::Svc { imm: 0x7d });
        assert_eq!(decode_t32(0xeef8_0a10), Op::SysRead { target: SysTarget::Fpexc, rt: 0 });
        assert_eq!(decode_t32(0xee07_0f3e), Op::Cmo { kind: CmoKind::DcCivac, reg: 0 });
    }
}
