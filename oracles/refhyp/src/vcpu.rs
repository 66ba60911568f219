//! The vCPU as the trap handlers see it: general-purpose registers, PC and PSTATE saved on
//! guest exit, the AArch32 register banks, instruction skipping, and exception injection
//! into the guest's own vectors.
//!
//! Injection follows Linux `arch/arm64/kvm/hyp/exception.c` (`enter_exception64`,
//! `enter_exception32`) and `arch/arm64/kvm/inject_fault.c` (`inject_abt64`,
//! `inject_abt32`, `inject_undef64`, `inject_undef32`), which implement the Arm ARM's
//! `AArch64.TakeException` / `AArch32.EnterMode` for the cases KVM needs.

use trapdiff_arch::esr::{fsr32, DataAbortIss, Ec, Esr, FaultKind, Fsc};
use trapdiff_arch::sysreg::pstate;

/// Guest registers saved by the EL2 exit path, in the layout the assembly uses
/// (`x[0..31]`, then ELR_EL2 and SPSR_EL2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub x: [u64; 31],
    /// ELR_EL2: the guest PC.
    pub pc: u64,
    /// SPSR_EL2: the guest PSTATE.
    pub pstate: u64,
}

/// CPSR mode field (AArch32 state), bits [4:0].
const MODE_MASK: u64 = 0x1f;

impl GuestRegs {
    pub fn is_aarch32(&self) -> bool {
        self.pstate & pstate::NRW != 0
    }
    pub fn is_thumb(&self) -> bool {
        self.is_aarch32() && self.pstate & pstate::T != 0
    }

    /// The X register that holds AArch32 register `r` in the current mode.
    /// Arm ARM "Mapping of AArch32 registers to AArch64 registers" (the table Linux
    /// encodes in `arch/arm64/kvm/regmap.c`, `vcpu_reg_offsets`). `None` for r15 (the PC).
    pub fn aarch32_reg_index(&self, r: u8) -> Option<usize> {
        let r = usize::from(r & 15);
        if r == 15 {
            return None;
        }
        let mode = self.pstate & MODE_MASK;
        Some(match (mode, r) {
            (pstate::A32_FIQ, 8..=14) => 24 + (r - 8),
            (pstate::A32_IRQ, 13) => 17,
            (pstate::A32_IRQ, 14) => 16,
            (pstate::A32_SVC, 13) => 19,
            (pstate::A32_SVC, 14) => 18,
            (pstate::A32_ABT, 13) => 21,
            (pstate::A32_ABT, 14) => 20,
            (pstate::A32_UND, 13) => 23,
            (pstate::A32_UND, 14) => 22,
            _ => r,
        })
    }

    /// Read the register a syndrome's SRT names, in the guest's current state.
    /// Register 31 reads as zero in AArch64 (XZR: Arm ARM C1.2.5, "SRT == 31 means XZR" for
    /// loads/stores that report a syndrome).
    pub fn read_rt(&self, rt: u8) -> u64 {
        if self.is_aarch32() {
            match self.aarch32_reg_index(rt) {
                Some(i) => self.x[i] & 0xffff_ffff,
                None => self.pc & 0xffff_ffff,
            }
        } else if rt >= 31 {
            0
        } else {
            self.x[usize::from(rt)]
        }
    }

    /// Write the register a syndrome's SRT names. Writes to XZR are dropped; AArch32
    /// registers are 32 bits wide (the upper half of the X register becomes zero).
    pub fn write_rt(&mut self, rt: u8, value: u64) {
        if self.is_aarch32() {
            match self.aarch32_reg_index(rt) {
                Some(i) => self.x[i] = value & 0xffff_ffff,
                None => self.pc = value & 0xffff_ffff,
            }
        } else if rt < 31 {
            self.x[usize::from(rt)] = value;
        }
    }

    /// Retire the trapped instruction: PC += 4, or 2 for a 16-bit T32 instruction (ESR.IL
    /// clear), then advance the IT state. Linux `kvm_skip_instr` / `kvm_skip_instr32`.
    pub fn skip_instr(&mut self, il32: bool) {
        if self.is_aarch32() {
            let step = if self.is_thumb() && !il32 { 2 } else { 4 };
            self.pc = (self.pc + step) & 0xffff_ffff;
            self.pstate = it_advance(self.pstate);
        } else {
            self.pc = self.pc.wrapping_add(4);
        }
        if !self.is_aarch32() {
            // PSTATE.BTYPE (bits [11:10]) is zero after a retired instruction (Linux
            // `kvm_skip_instr` clears it too).
            self.pstate &= !(3 << 10);
        }
    }
}

/// AArch32 `ITAdvance()` (Arm ARM, AArch32 pseudocode `AArch32.ITAdvance`), on a PSTATE
/// whose IT[1:0] are bits [26:25] and IT[7:2] bits [15:10].
pub fn it_advance(cpsr: u64) -> u64 {
    if cpsr & pstate::T == 0 {
        return cpsr;
    }
    let it = ((cpsr >> 25) & 3) | (((cpsr >> 10) & 0x3f) << 2);
    if it == 0 {
        return cpsr;
    }
    let new_it = if it & 7 == 0 { 0 } else { (it & 0xe0) | ((it << 1) & 0x1f) };
    let cleared = cpsr & !((3 << 25) | (0x3f << 10));
    cleared | ((new_it & 3) << 25) | (((new_it >> 2) & 0x3f) << 10)
}

/// EL1 system registers exception injection reads or writes. The EL2 binary loads them
/// from the hardware before an injection and stores them back after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Regs {
    pub sctlr: u64,
    pub tcr: u64,
    pub vbar: u64,
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
    pub spsr: u64,
    /// AArch32 banked SPSRs (AArch64 SPSR_abt / SPSR_und at EL2).
    pub spsr_abt: u64,
    pub spsr_und: u64,
    pub ifsr32: u64,
}

/// What is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Synchronous external data abort at `addr` (FAR).
    DataAbort { addr: u64 },
    /// Synchronous external instruction abort at `addr`.
    PrefetchAbort { addr: u64 },
    /// A data abort with fault status `fsc` at `addr` (FAR), CM and WnR as given: a stage-1
    /// fault the refhyp found for the guest while emulating a trapped instruction.
    DataFault { addr: u64, fsc: Fsc, cm: bool, wnr: bool },
    /// UNDEFINED instruction (EC 0x00 in AArch64).
    Undefined,
}

const PSTATE_PAN: u64 = 1 << 22;
const PSTATE_DIT: u64 = 1 << 24;
const PSTATE_SSBS: u64 = 1 << 12;
const PSTATE_NZCV: u64 = 0xf << 28;
const SCTLR_SPAN: u64 = 1 << 23;
const SCTLR_DSSBS: u64 = 1 << 44;
/// AArch32 SCTLR.V (high vectors), TE, EE, DSSBS.
const SCTLR32_V: u64 = 1 << 13;
const SCTLR32_TE: u64 = 1 << 30;
const SCTLR32_EE: u64 = 1 << 25;
const SCTLR32_DSSBS: u64 = 1 << 31;
/// TTBCR.EAE: the guest uses the long-descriptor format (DFSR/IFSR layout follows it).
const TTBCR_EAE: u64 = 1 << 31;
/// DFSR fault status values for a synchronous external abort (Arm ARM G8.2.50).
const FSR_LPAE: u64 = 1 << 9;
const FSR_EXTABT_LPAE: u64 = 0x10;
const FSR_EXTABT_SHORT: u64 = 0x08;

/// Inject `what` into the guest; `il32` is the trapped instruction's ESR_EL2.IL.
pub fn inject(regs: &mut GuestRegs, el1: &mut El1Regs, what: Injection, il32: bool) {
    if regs.is_aarch32() {
        inject32(regs, el1, what)
    } else {
        inject64(regs, el1, what, il32)
    }
}

fn inject64(regs: &mut GuestRegs, el1: &mut El1Regs, what: Injection, il32: bool) {
    let mode = regs.pstate & 0xf;
    let from_el1 = mode == pstate::EL1H || mode == pstate::EL1T;
    let il = if il32 { Esr::IL } else { 0 };
    let (esr, far) = match what {
        // inject_abt64: EC IABT/DABT "current" when taken from EL1, "lower" from EL0.
        Injection::DataAbort { addr } => {
            let ec = if from_el1 { Ec::DABT_CUR } else { Ec::DABT_LOW };
            (Esr::new(ec, false, u32::from(Fsc::SYNC_EXTERNAL.0)).0 | il, Some(addr))
        }
        // ISS: CM [8], WnR [6], DFSC [5:0] (ASL AArch64.FaultSyndrome).
        Injection::DataFault { addr, fsc, cm, wnr } => {
            let ec = if from_el1 { Ec::DABT_CUR } else { Ec::DABT_LOW };
            let iss = if cm { DataAbortIss::CM } else { 0 } | if wnr { DataAbortIss::WNR } else { 0 } | u32::from(fsc.0);
            (Esr::new(ec, false, iss).0 | il, Some(addr))
        }
        Injection::PrefetchAbort { addr } => {
            let ec = if from_el1 { Ec::IABT_CUR } else { Ec::IABT_LOW };
            (Esr::new(ec, false, u32::from(Fsc::SYNC_EXTERNAL.0)).0 | il, Some(addr))
        }
        // inject_undef64: EC_UNKNOWN with IL from the trap.
        Injection::Undefined => (Esr::new(Ec::UNKNOWN, false, 0).0 | il, None),
    };
    el1.esr = esr;
    if let Some(far) = far {
        el1.far = far;
    }
    // enter_exception64: vector offset by where the exception comes from.
    let offset = match mode {
        pstate::EL1H => 0x200,
        pstate::EL1T => 0x000,
        _ => 0x400,
    };
    let old = regs.pstate;
    let mut new = old & (PSTATE_NZCV | PSTATE_DIT);
    new |= if el1.sctlr & SCTLR_SPAN == 0 { PSTATE_PAN } else { old & PSTATE_PAN };
    if el1.sctlr & SCTLR_DSSBS != 0 {
        new |= PSTATE_SSBS;
    }
    new |= pstate::DAIF | pstate::EL1H;
    el1.elr = regs.pc;
    el1.spsr = old;
    regs.pstate = new;
    regs.pc = el1.vbar.wrapping_add(offset);
}

/// The short-descriptor DFSR status (FS[4] at bit 10, FS[3:0] at bits [3:0], Domain 0) for a
/// long-descriptor fault status (Arm ARM G5.9 "Short-descriptor format fault status codes":
/// translation 0b00101/0b00111, access flag 0b00011/0b00110, permission 0b01101/0b01111 at
/// level 1/2); anything else is reported as a synchronous external abort.
fn short_fsr(fsc: Fsc) -> u64 {
    let level2 = fsc.0 & 3 >= 2;
    match (fsc.kind(), level2) {
        (FaultKind::Translation, false) => 0b00101,
        (FaultKind::Translation, true) => 0b00111,
        (FaultKind::AccessFlag, false) => 0b00011,
        (FaultKind::AccessFlag, true) => 0b00110,
        (FaultKind::Permission, false) => 0b01101,
        (FaultKind::Permission, true) => 0b01111,
        _ => FSR_EXTABT_SHORT,
    }
}

fn inject32(regs: &mut GuestRegs, el1: &mut El1Regs, what: Injection) {
    let (mode, vect, offsets): (u64, u64, [u64; 2]) = match what {
        Injection::Undefined => (pstate::A32_UND, 0x04, [4, 2]),
        Injection::PrefetchAbort { .. } => (pstate::A32_ABT, 0x0c, [4, 4]),
        Injection::DataAbort { .. } | Injection::DataFault { .. } => (pstate::A32_ABT, 0x10, [8, 8]),
    };
    // inject_abt32: the fault status in the format TTBCR.EAE selects.
    let fsr = if el1.tcr & TTBCR_EAE != 0 { FSR_LPAE | FSR_EXTABT_LPAE } else { FSR_EXTABT_SHORT };
    match what {
        Injection::DataAbort { addr } => {
            el1.far = (el1.far & !0xffff_ffff) | (addr & 0xffff_ffff);
            el1.esr = fsr;
        }
        Injection::DataFault { addr, fsc, cm, wnr } => {
            el1.far = (el1.far & !0xffff_ffff) | (addr & 0xffff_ffff);
            let status = if el1.tcr & TTBCR_EAE != 0 { FSR_LPAE | u64::from(fsc.0) } else { short_fsr(fsc) };
            el1.esr = status | if cm { u64::from(fsr32::CM) } else { 0 } | if wnr { u64::from(fsr32::WNR) } else { 0 };
        }
        Injection::PrefetchAbort { addr } => {
            el1.far = (el1.far & 0xffff_ffff) | ((addr & 0xffff_ffff) << 32);
            el1.ifsr32 = fsr;
        }
        Injection::Undefined => {}
    }
    let old = regs.pstate;
    let ret = (regs.pc + offsets[usize::from(regs.is_thumb())]) & 0xffff_ffff;
    // get_except32_cpsr (AArch32.EnterMode): IT and J cleared, I set, A set for Abort
    // mode, T from SCTLR.TE, E from SCTLR.EE, PAN set unless SCTLR.SPAN, SSBS from DSSBS.
    let mut new = old & (PSTATE_NZCV | (1 << 27) | (0xf << 16) | pstate::A | pstate::F | PSTATE_DIT);
    new |= mode | pstate::I;
    if mode == pstate::A32_ABT {
        new |= pstate::A;
    }
    if el1.sctlr & SCTLR32_TE != 0 {
        new |= pstate::T;
    }
    if el1.sctlr & SCTLR32_EE != 0 {
        new |= 1 << 9;
    }
    new |= if el1.sctlr & SCTLR_SPAN == 0 { PSTATE_PAN } else { old & PSTATE_PAN };
    if el1.sctlr & SCTLR32_DSSBS != 0 {
        new |= 1 << 23;
    }
    // host_spsr_to_spsr32: DIT is bit 24 in SPSR_EL2's AArch32 view, bit 21 in SPSR_<mode>.
    let spsr32 = (old & !((1 << 24) | (1 << 21))) | if old & PSTATE_DIT != 0 { 1 << 21 } else { 0 };
    if mode == pstate::A32_ABT {
        el1.spsr_abt = spsr32;
        regs.x[20] = ret; // LR_abt
    } else {
        el1.spsr_und = spsr32;
        regs.x[22] = ret; // LR_und
    }
    let base = if el1.sctlr & SCTLR32_V != 0 { 0xffff_0000 } else { el1.vbar & 0xffff_ffff };
    regs.pstate = new;
    regs.pc = base + vect;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a32(mode: u64) -> GuestRegs {
        GuestRegs { pstate: mode, ..Default::default() }
    }

    #[test]
    fn aarch32_banks_follow_the_mode() {
        let svc = a32(pstate::A32_SVC);
        assert_eq!(svc.aarch32_reg_index(13), Some(19));
        assert_eq!(svc.aarch32_reg_index(14), Some(18));
        assert_eq!(svc.aarch32_reg_index(3), Some(3));
        assert_eq!(a32(pstate::A32_ABT).aarch32_reg_index(14), Some(20));
        assert_eq!(a32(pstate::A32_FIQ).aarch32_reg_index(8), Some(24));
        assert_eq!(a32(pstate::A32_FIQ).aarch32_reg_index(14), Some(30));
        assert_eq!(a32(pstate::A32_USR).aarch32_reg_index(13), Some(13));
        assert_eq!(a32(pstate::A32_USR).aarch32_reg_index(15), None);
    }

    #[test]
    fn xzr_and_32_bit_writes() {
        let mut r = GuestRegs { pstate: pstate::EL1H, ..Default::default() };
        r.write_rt(31, 5);
        assert_eq!(r.read_rt(31), 0);
        r.write_rt(2, u64::MAX);
        assert_eq!(r.x[2], u64::MAX);
        let mut r = a32(pstate::A32_SVC);
        r.write_rt(13, u64::MAX);
        assert_eq!(r.x[19], 0xffff_ffff);
    }

    #[test]
    fn skip_steps_by_instruction_size() {
        let mut r = GuestRegs { pc: 0x1000, pstate: pstate::EL1H, ..Default::default() };
        r.skip_instr(true);
        assert_eq!(r.pc, 0x1004);
        let mut t = GuestRegs { pc: 0x1000, pstate: pstate::A32_SVC | pstate::T, ..Default::default() };
        t.skip_instr(false);
        assert_eq!(t.pc, 0x1002);
        t.skip_instr(true);
        assert_eq!(t.pc, 0x1006);
    }

    #[test]
    fn it_state_advances_and_ends() {
        // IT[7:0] = 0b0000_0110: two more instructions in the block.
        let it: u64 = 0b0000_0110;
        let cpsr = pstate::A32_SVC | pstate::T | ((it & 3) << 25) | ((it >> 2) << 10);
        let next = it_advance(cpsr);
        let it2 = ((next >> 25) & 3) | (((next >> 10) & 0x3f) << 2);
        assert_eq!(it2, 0b0000_1100);
        let last = it_advance(it_advance(next));
        assert_eq!(((last >> 25) & 3) | (((last >> 10) & 0x3f) << 2), 0);
        // A32 state is untouched.
        assert_eq!(it_advance(pstate::A32_SVC | (1 << 25)), pstate::A32_SVC | (1 << 25));
    }

    #[test]
    fn a64_data_abort_goes_to_current_el_vector() {
        let mut r = GuestRegs { pc: 0x4000_0010, pstate: pstate::EL1H | (1 << 30), ..Default::default() };
        let mut el1 = El1Regs { vbar: 0x1000_0800, ..Default::default() };
        inject(&mut r, &mut el1, Injection::DataAbort { addr: 0x5000 }, true);
        assert_eq!(r.pc, 0x1000_0a00);
        assert_eq!(el1.elr, 0x4000_0010);
        assert_eq!(el1.far, 0x5000);
        assert_eq!(el1.esr, 0x9600_0010 | Esr::IL);
        assert_eq!(r.pstate & 0xf, pstate::EL1H);
        assert_eq!(r.pstate & pstate::DAIF, pstate::DAIF);
        assert_eq!(el1.spsr, pstate::EL1H | (1 << 30));
        // From EL0: lower-EL vector and EC "lower".
        let mut r = GuestRegs { pc: 0x100, pstate: pstate::EL0T, ..Default::default() };
        inject(&mut r, &mut el1, Injection::DataAbort { addr: 1 }, true);
        assert_eq!(r.pc, 0x1000_0c00);
        assert_eq!(Esr(el1.esr).ec(), Ec::DABT_LOW);
    }

    #[test]
    fn a32_data_abort_enters_abort_mode() {
        let mut r = GuestRegs { pc: 0x4000_0000, pstate: pstate::A32_SVC | pstate::T, ..Default::default() };
        let mut el1 = El1Regs { vbar: 0x1000_8000, tcr: TTBCR_EAE, sctlr: 0, far: 0xdead_0000_0000_0000, ..Default::default() };
        inject(&mut r, &mut el1, Injection::DataAbort { addr: 0x2000 }, false);
        assert_eq!(r.pc, 0x1000_8010);
        assert_eq!(r.x[20], 0x4000_0008);
        assert_eq!(r.pstate & 0x1f, pstate::A32_ABT);
        assert_eq!(r.pstate & pstate::T, 0);
        assert_eq!(el1.esr, 0x210);
        assert_eq!(el1.far, 0xdead_0000_0000_2000);
        assert_eq!(el1.spsr_abt & 0x3f, pstate::A32_SVC | pstate::T);
        let mut u = GuestRegs { pc: 0x4000_0000, pstate: pstate::A32_SVC, ..Default::default() };
        inject(&mut u, &mut el1, Injection::Undefined, true);
        assert_eq!((u.pc, u.x[22], u.pstate & 0x1f), (0x1000_8004, 0x4000_0004, pstate::A32_UND));
    }
}
