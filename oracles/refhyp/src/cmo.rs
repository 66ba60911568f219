//! Cache maintenance by VA, trapped to EL2 (HCR_EL2.TPCP and TPU) and emulated: the refhyp
//! does what the CPU would have done without the trap, so the guest and the VMM see the same
//! faults and exits as on a hypervisor that does not trap them (KVM).
//!
//! Why trap at all: QEMU's TCG implements DC IVAC/CVAC/CIVAC/CVAU and IC IVAU as no-ops that
//! never translate their address (and probes DC CVAP as a read), so under TCG the stage-1 and
//! stage-2 faults these operations take on silicon — the ones KVM's `kvm_handle_guest_abort`
//! turns into a skip, a lazy map or a NISV exit — never happen. TCG does honour the EL2 traps
//! (QEMU target/arm `aa64_cacheop_poc_access`, `do_cacheop_pou_access`), so the refhyp
//! translates the address itself:
//!
//! 1. stage 1 with `AT S1E1R` (`AT S1E1W` for A64 DC IVAC, `AT S1E0R` from EL0) executed at
//!    EL2 ([`Hw::translate_s1`]); a fault there is injected into the guest as the data abort
//!    the CPU would have taken (CM = 1, WnR = 1, FAR = the VA);
//! 2. stage 2 with the refhyp's own tables ([`Stage2::lookup`]); a page that is not mapped (or
//!    mapped read-only for an operation that needs write permission) becomes the stage-2 data
//!    abort the CPU would have reported (EC 0x24, ISV = 0, CM = 1, WnR = 1, FAR = VA, HPFAR =
//!    IPA), and [`policy::decide`] handles it like any other: skip outside every slot, map the
//!    page and re-execute (the operation traps again and then completes), NISV on a read-only
//!    slot — quirks included;
//! 3. otherwise the operation completes: the refhyp performs it on the physical line through
//!    its own mapping of the guest pool ([`Hw::cache_maintain`]; a no-op under TCG) and retires
//!    the instruction.
//!
//! Which operation needs which permission (Arm ARM, ASL `AArch64.S1CheckPermission`,
//! `AArch64.S2CheckPermission`, mirrored by the model in oracles/model/src/rules/cmo.rs):
//! at stage 1, A64 DC IVAC needs write permission, the others need read permission at EL0
//! only, and an AArch32 stage 1 never faults a CMO on permissions; at stage 2, only A64 DC
//! IVAC needs write permission (FEAT_CMOW is off), and an EL0 read check never fails here
//! because the refhyp maps every page readable. All of them report CM = 1, WnR = 1
//! (ASL `AArch64.FaultSyndrome`).

use trapdiff_arch::esr::{DataAbortIss, Ec, Esr, Fsc};
use trapdiff_arch::quirk::Quirks;
use trapdiff_arch::sysreg::pstate;

use crate::hw::Hw;
use crate::policy::{self, Backing, Decision, ExitKind, Trap};
use crate::stage2::{self, Stage2};
use crate::vcpu::{GuestRegs, Injection};

/// A cache maintenance operation the refhyp traps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmoOp {
    /// DC IVAC / DCIMVAC: invalidate to PoC.
    DcIvac,
    /// DC CVAC / DCCMVAC: clean to PoC.
    DcCvac,
    /// DC CVAU / DCCMVAU: clean to PoU.
    DcCvau,
    /// DC CVAP / DCCMVAP: clean to PoP (FEAT_DPB).
    DcCvap,
    /// DC CVADP: clean to the point of deep persistence (FEAT_DPB2).
    DcCvadp,
    /// DC CIVAC / DCCIMVAC: clean and invalidate to PoC.
    DcCivac,
    /// IC IVAU / ICIMVAU: invalidate the instruction cache to PoU by VA.
    IcIvau,
    /// IC IALLU(IS) / ICIALLU(IS): invalidate all instruction caches to PoU (no address;
    /// trapped by TPU along with the others).
    IcIallu,
}

/// Which stage-1 check the AT instruction makes (`AT S1E1R`, `AT S1E1W`, `AT S1E0R`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S1Walk {
    El1Read,
    El1Write,
    El0Read,
}

/// PAR_EL1 after an AT instruction (Arm ARM D24.2.110, PAR_EL1): F [0]; on success PA
/// [51:12]; on a fault FST [6:1], PTW [8] (a stage-2 fault on the stage-1 walk), S [9].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Par(pub u64);

impl Par {
    pub const F: u64 = 1 << 0;
    pub const PTW: u64 = 1 << 8;
    pub const S: u64 = 1 << 9;
    const PA_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// A successful translation to `pa` (its page).
    pub fn ok(pa: u64) -> Par {
        Par(pa & Self::PA_MASK)
    }
    /// A stage-1 fault with status `fsc`.
    pub fn fault(fsc: Fsc) -> Par {
        Par(Self::F | (u64::from(fsc.0) << 1))
    }
    pub fn faulted(self) -> bool {
        self.0 & Self::F != 0
    }
    pub fn fst(self) -> Fsc {
        Fsc(((self.0 >> 1) & 0x3f) as u8)
    }
    /// The output address for `va` (the page from PAR, the offset from the VA).
    pub fn address(self, va: u64) -> u64 {
        (self.0 & Self::PA_MASK) | (va & 0xfff)
    }
}

/// A trapped CMO: the operation, the register that holds its address, and IL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrappedCmo {
    pub op: CmoOp,
    pub rt: u8,
    pub il32: bool,
}

/// The CMO a trap reports, if it is one the refhyp traps (TPCP/TPU). AArch32 forms that fail
/// their condition are left to the policy (which skips them).
pub fn decode(trap: &Trap, pstate: u64) -> Option<TrappedCmo> {
    if trap.kind != ExitKind::Sync {
        return None;
    }
    let esr = Esr(trap.esr);
    let iss = esr.iss();
    // Both ISS layouts: Rt [9:5], CRm [4:1], Direction [0] (0: a write, i.e. SYS/MCR).
    let (rt, crm, read) = (((iss >> 5) & 31) as u8, (iss >> 1) & 15, iss & 1 == 1);
    let op = match esr.ec() {
        // EC 0x18: Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10] (Arm ARM D24.2.41).
        Ec::SYS64 => {
            let (op0, op2, op1, crn) = ((iss >> 20) & 3, (iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 15);
            if op0 != 1 || crn != 7 || read {
                return None;
            }
            a64_op(op1, crm, op2)?
        }
        // EC 0x03: CV [24], COND [23:20], Opc2 [19:17], Opc1 [16:14], CRn [13:10].
        Ec::CP15_32 => {
            let (opc2, opc1, crn) = ((iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 15);
            if opc1 != 0 || crn != 7 || read || !policy::condition_passed32(iss, pstate) {
                return None;
            }
            a32_op(crm, opc2)?
        }
        _ => return None,
    };
    Some(TrappedCmo { op, rt, il32: esr.il() })
}

/// A64 `SYS #op1, C7, Cm, #op2` encodings TPCP/TPU trap (Arm ARM C5.3, "DC <op>", "IC <op>").
/// The FEAT_MTE tag forms (DC IGVAC, CGVAC, CGDVAC, CGVAP, CGVADP, CIGVAC, ...; op2 3 or 5)
/// are trapped by TPCP too and treated as their data-only forms: the refhyp gives the guest
/// no tag access (HCR_EL2.ATA = 0).
fn a64_op(op1: u32, crm: u32, op2: u32) -> Option<CmoOp> {
    Some(match (op1, crm, op2) {
        (0, 6, 1 | 3 | 5) => CmoOp::DcIvac,
        (3, 10, 1 | 3 | 5) => CmoOp::DcCvac,
        (3, 11, 1) => CmoOp::DcCvau,
        (3, 12, 1 | 3 | 5) => CmoOp::DcCvap,
        (3, 13, 1 | 3 | 5) => CmoOp::DcCvadp,
        (3, 14, 1 | 3 | 5) => CmoOp::DcCivac,
        (3, 5, 1) => CmoOp::IcIvau,
        (0, 5 | 1, 0) => CmoOp::IcIallu,
        _ => return None,
    })
}

/// AArch32 `MCR p15, 0, Rt, c7, CRm, opc2` encodings TPCP/TPU trap (Arm ARM G8.2.x: DCIMVAC,
/// DCCMVAC, DCCMVAU, DCCMVAP, DCCIMVAC, ICIMVAU, ICIALLU, ICIALLUIS).
fn a32_op(crm: u32, opc2: u32) -> Option<CmoOp> {
    Some(match (crm, opc2) {
        (6, 1) => CmoOp::DcIvac,
        (10, 1) => CmoOp::DcCvac,
        (11, 1) => CmoOp::DcCvau,
        (12, 1) => CmoOp::DcCvap,
        (14, 1) => CmoOp::DcCivac,
        (5, 1) => CmoOp::IcIvau,
        (5 | 1, 0) => CmoOp::IcIallu,
        _ => return None,
    })
}

/// What the CPU would have done with a CMO had it not trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulation {
    /// It completed: retire it.
    Done { il32: bool },
    /// It took a stage-1 fault, to be injected.
    Stage1Fault(Injection),
    /// It took this stage-2 fault (a synthetic trap, as the CPU would have reported it).
    Stage2Fault(Trap),
    /// The refhyp cannot tell what the CPU would have done.
    Unsupported(&'static str),
}

/// Emulate `cmo` for the guest in `regs` against stage 2 `s2`.
pub fn emulate(hw: &mut impl Hw, cmo: TrappedCmo, regs: &GuestRegs, s2: &Stage2<'_>) -> Emulation {
    let il32 = cmo.il32;
    if cmo.op == CmoOp::IcIallu {
        hw.cache_maintain(cmo.op, 0);
        return Emulation::Done { il32 };
    }
    let aarch32 = regs.is_aarch32();
    let el0 = if aarch32 { regs.pstate & 0x1f == pstate::A32_USR } else { regs.pstate & 0xf == pstate::EL0T };
    let va = regs.read_rt(cmo.rt);
    // Stage 1: which permission the AT instruction checks (module comment).
    let walk = match (aarch32, el0, cmo.op) {
        (true, _, _) => S1Walk::El1Read,
        (false, true, _) => S1Walk::El0Read,
        (false, false, CmoOp::DcIvac) => S1Walk::El1Write,
        (false, false, _) => S1Walk::El1Read,
    };
    let par = Par(hw.translate_s1(va, walk));
    if par.faulted() {
        if par.0 & Par::S != 0 {
            // AT at EL2 reports a stage-2 fault on the stage-1 walk without the table's IPA
            // (HPFAR_EL2 is not written), so the refhyp cannot build the S1PTW abort. The
            // runtime's tables live in its own slot, mapped before the guest starts.
            return Emulation::Unsupported("stage-2 fault on the stage-1 walk of a trapped CMO: AT does not report the table's IPA");
        }
        return Emulation::Stage1Fault(Injection::DataFault { addr: va, fsc: par.fst(), cm: true, wnr: true });
    }
    let ipa = par.address(va);
    // Stage 2: ASL AArch64.S2CheckPermission, AccessType_DC with CacheOp_Invalidate.
    let needs_write = cmo.op == CmoOp::DcIvac && !aarch32;
    let fsc = match s2.lookup(ipa) {
        Ok(desc) if needs_write && !stage2::desc_writable(desc) => Fsc::permission(3),
        Ok(desc) => {
            hw.cache_maintain(cmo.op, stage2::desc_pa(desc) | (ipa & 0xfff));
            return Emulation::Done { il32 };
        }
        Err(level) => Fsc::translation(level),
    };
    let iss = DataAbortIss::CM | DataAbortIss::WNR | u32::from(fsc.0);
    Emulation::Stage2Fault(Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::DABT_LOW, il32, iss).0, far: va, hpfar: (ipa >> 12) << 4 })
}

/// The decision for one exit, with the trap it is about: a trapped CMO is emulated, and the
/// stage-2 fault it would have taken replaces the trap; every other exit goes to
/// [`policy::decide`] as it is.
pub fn decide(hw: &mut impl Hw, trap: Trap, regs: &GuestRegs, s2: &Stage2<'_>, quirks: Quirks, backing: impl Fn(u64) -> Backing) -> (Trap, Decision) {
    let Some(cmo) = decode(&trap, regs.pstate) else {
        return (trap, policy::decide(&trap, regs.pstate, quirks, backing));
    };
    match emulate(hw, cmo, regs, s2) {
        Emulation::Done { il32 } => (trap, Decision::Skip { il32 }),
        Emulation::Stage1Fault(what) => (trap, Decision::Inject { what, il32: cmo.il32 }),
        Emulation::Stage2Fault(fault) => (fault, policy::decide(&fault, regs.pstate, quirks, backing)),
        Emulation::Unsupported(why) => (trap, Decision::Stop(why)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    extern crate std;
    use super::*;
    use crate::runner::{run_job, Machine};
    use crate::stage2::Table;
    use crate::testing::ScriptedCpu;
    use std::collections::VecDeque;
    use std::vec;
    use std::vec::Vec;
    use trapdiff_arch::abi;
    use trapdiff_arch::case::{MmioAction, NisvAction};
    use trapdiff_arch::esr::fsr32;
    use trapdiff_arch::quirk::Quirk;
    use trapdiff_arch::wire::{Exit, Job, Report, ReportEnd, Segment, Slot, SlotKind};

    const RAM: u64 = 0x4000_0000;
    const RO: u64 = 0x5000_0000;
    const HOLE: u64 = 0x9000_0000;
    const POOL_PA: u64 = 0x4400_0000;

    fn job(aarch32: bool) -> Job {
        Job {
            seq: 1,
            aarch32,
            entry: if aarch32 { abi::RUNTIME_A32_BASE } else { abi::RUNTIME_BASE },
            slots: vec![Slot { ipa: RAM, size: 0x1000, kind: SlotKind::Ram }, Slot { ipa: RO, size: 0x2000, kind: SlotKind::RoRam }],
            segments: vec![],
            mmio_reads: vec![],
            mmio_read_default: 0,
            nisv_to_user: true,
            on_nisv: NisvAction::InjectAbort,
            on_mmio: MmioAction::Emulate,
            timeout_ms: 100,
            max_exits: 16,
            digests: vec![],
            readback: vec![],
            quirks: Default::default(),
        }
    }

    /// `SYS #op1, C7, Cm, #op2, X<rt>` trapped with EC 0x18 (ISS: Op0 1, Direction 0).
    fn sys(op1: u32, crm: u32, op2: u32, rt: u32) -> Trap {
        let iss = (1 << 20) | (op2 << 17) | (op1 << 14) | (7 << 10) | (rt << 5) | (crm << 1);
        Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::SYS64, true, iss).0, far: 0, hpfar: 0 }
    }
    fn dc_civac(rt: u32) -> Trap {
        sys(3, 14, 1, rt)
    }
    fn dc_ivac(rt: u32) -> Trap {
        sys(0, 6, 1, rt)
    }
    /// `MCR p15, 0, R<rt>, c7, CRm, opc2` trapped with EC 0x03, condition `cond` (CV = 1).
    fn mcr(crm: u32, opc2: u32, rt: u32, cond: u32) -> Trap {
        let iss = (1 << 24) | (cond << 20) | (opc2 << 17) | (7 << 10) | (rt << 5) | (crm << 1);
        Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::CP15_32, true, iss).0, far: 0, hpfar: 0 }
    }
    fn load(ipa: u64) -> Trap {
        let iss = DataAbortIss::with_syndrome(2, false, 3, false, false, false, Fsc::translation(3));
        Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::DABT_LOW, true, iss.0).0, far: ipa, hpfar: (ipa >> 12) << 4 }
    }
    fn done() -> Trap {
        let iss = DataAbortIss::with_syndrome(2, false, 0, false, false, true, Fsc::translation(3));
        let ipa = abi::HARNESS_MMIO + abi::DONE;
        Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::DABT_LOW, true, iss.0).0, far: ipa, hpfar: (ipa >> 12) << 4 }
    }

    fn cpu(traps: Vec<Trap>, x1: u64) -> ScriptedCpu {
        let mut c = ScriptedCpu { traps: VecDeque::from(traps), x_at_exit: vec![(1, x1)], ..Default::default() };
        c.el1.vbar = 0x1000_0800;
        c
    }

    fn run(cpu: &mut ScriptedCpu, job: &Job) -> Report {
        let mut pool = vec![0u8; 1 << 20];
        let mut tables = vec![Table::ZERO; 64];
        let mut m = Machine { pool: &mut pool, pool_pa: POOL_PA, tables: &mut tables, tables_pa: 0x4300_0000, fwb: true };
        let rt = [Segment { ipa: abi::RUNTIME_BASE, bytes: vec![0xaa; 8] }];
        run_job(cpu, &mut m, &rt, job)
    }

    /// Exits other than the runtime's DONE store.
    fn case_exits(r: &Report) -> Vec<Exit> {
        r.exits.iter().filter(|e| !matches!(e, Exit::Mmio { ipa, .. } if *ipa == abi::HARNESS_MMIO + abi::DONE)).cloned().collect()
    }

    #[test]
    fn decodes_the_trapped_encodings_only() {
        let d = |t: Trap| decode(&t, 0).map(|c| c.op);
        assert_eq!(d(dc_civac(1)), Some(CmoOp::DcCivac));
        assert_eq!(d(dc_ivac(1)), Some(CmoOp::DcIvac));
        assert_eq!(d(sys(3, 10, 1, 0)), Some(CmoOp::DcCvac));
        assert_eq!(d(sys(3, 11, 1, 0)), Some(CmoOp::DcCvau));
        assert_eq!(d(sys(3, 12, 1, 0)), Some(CmoOp::DcCvap));
        assert_eq!(d(sys(3, 5, 1, 0)), Some(CmoOp::IcIvau));
        assert_eq!(d(sys(0, 1, 0, 31)), Some(CmoOp::IcIallu));
        // DC CISW (set/way, TSW) and DC ZVA (not trapped) are not emulated here.
        assert_eq!(d(sys(0, 14, 2, 0)), None);
        assert_eq!(d(sys(3, 4, 1, 0)), None);
        // A read-direction access with the same fields is no CMO.
        let mut read = dc_civac(1);
        read.esr |= 1;
        assert_eq!(d(read), None);
        assert_eq!(d(mcr(6, 1, 1, 0xe)), Some(CmoOp::DcIvac));
        assert_eq!(d(mcr(14, 1, 1, 0xe)), Some(CmoOp::DcCivac));
        assert_eq!(d(mcr(11, 1, 1, 0xe)), Some(CmoOp::DcCvau));
        assert_eq!(d(mcr(5, 0, 0, 0xe)), Some(CmoOp::IcIallu));
        // MCRNE with Z set failed its condition: the policy skips it.
        assert_eq!(decode(&mcr(14, 1, 1, 1), 1 << 30), None);
        assert_eq!(decode(&mcr(14, 1, 1, 1), 0).map(|c| (c.op, c.rt)), Some((CmoOp::DcCivac, 1)));
    }

    #[test]
    fn cmo_outside_every_slot_is_skipped() {
        let mut c = cpu(vec![dc_civac(1), done()], HOLE + 0x40);
        let r = run(&mut c, &job(false));
        assert_eq!(r.end, ReportEnd::Done);
        assert_eq!(case_exits(&r), vec![]);
        assert_eq!(c.seen[1].pc, abi::RUNTIME_BASE + 4);
        assert_eq!((c.maps, c.cache_ops.len()), (0, 0));
        assert_eq!(c.translations, vec![(HOLE + 0x40, S1Walk::El1Read)]);
    }

    #[test]
    fn cmo_to_unmapped_ram_maps_the_page_then_completes() {
        let mut c = cpu(vec![dc_civac(1), dc_civac(1), done()], RAM + 0x40);
        let r = run(&mut c, &job(false));
        assert_eq!(r.end, ReportEnd::Done);
        assert_eq!(case_exits(&r), vec![]);
        assert_eq!(c.maps, 1);
        // Not retired by the map: the guest re-executes it, and it completes on the line of
        // the slot's page (the RAM slot follows the runtime's in the pool).
        assert_eq!(c.seen[1].pc, abi::RUNTIME_BASE);
        assert_eq!(c.seen[2].pc, abi::RUNTIME_BASE + 4);
        assert_eq!(c.cache_ops, vec![(CmoOp::DcCivac, POOL_PA + abi::RUNTIME_SLOT_SIZE + 0x40)]);
    }

    #[test]
    fn cmo_to_an_untouched_read_only_slot_is_a_nisv_exit() {
        let mut c = cpu(vec![dc_civac(1), done()], RO + 0x40);
        let r = run(&mut c, &job(false));
        // Stage 2 has no table for RO's GiB yet: translation fault, level 1 (0x05).
        let iss = u64::from(DataAbortIss::CM | DataAbortIss::WNR) | 0x05;
        assert_eq!(case_exits(&r), vec![Exit::Nisv { esr_iss: iss, ipa: RO + 0x40 }]);
        // The VMM injected an abort at FAR = the VA, without retiring the CMO.
        assert_eq!((c.el1.far, c.el1.elr), (RO + 0x40, abi::RUNTIME_BASE));
        assert_eq!(c.seen[1].pc, 0x1000_0a00);
        assert_eq!(c.maps, 0);
        // Without NISV delivery KVM_RUN fails with ENOSYS.
        let mut j = job(false);
        j.nisv_to_user = false;
        let r = run(&mut cpu(vec![dc_civac(1)], RO + 0x40), &j);
        assert_eq!(r.end, ReportEnd::RunError { errno: policy::ENOSYS });
    }

    #[test]
    fn read_only_slot_after_a_read_only_invalidate_faults() {
        // A load maps the page read-only; DC CIVAC then completes, DC IVAC (needs stage-2
        // write permission in AArch64) takes a permission fault, level 3 (0x0f).
        let mut c = cpu(vec![load(RO + 0x40), dc_civac(1), dc_ivac(1), done()], RO + 0x40);
        let r = run(&mut c, &job(false));
        let iss = u64::from(DataAbortIss::CM | DataAbortIss::WNR) | 0x0f;
        assert_eq!(case_exits(&r), vec![Exit::Nisv { esr_iss: iss, ipa: RO + 0x40 }]);
        assert_eq!(c.cache_ops, vec![(CmoOp::DcCivac, POOL_PA + abi::RUNTIME_SLOT_SIZE + 0x1000 + 0x40)]);
        assert_eq!(c.translations[1], (RO + 0x40, S1Walk::El1Write));
    }

    #[test]
    fn quirk_skip_cmo_ro_memslot_skips_instead() {
        let mut j = job(false);
        j.quirks = Quirk::SkipCmoRoMemslot.into();
        let mut c = cpu(vec![dc_civac(1), done()], RO + 0x40);
        let r = run(&mut c, &j);
        assert_eq!(case_exits(&r), vec![]);
        assert_eq!(c.seen[1].pc, abi::RUNTIME_BASE + 4);
    }

    #[test]
    fn stage1_fault_is_injected_with_cm_and_wnr() {
        let mut c = cpu(vec![dc_civac(1), done()], 0x7000_0040);
        c.pars = VecDeque::from([Par::fault(Fsc::translation(3)).0]);
        let r = run(&mut c, &job(false));
        assert_eq!(case_exits(&r), vec![]);
        let iss = DataAbortIss::CM | DataAbortIss::WNR | 0x07;
        assert_eq!(c.el1.esr, Esr::new(Ec::DABT_CUR, true, iss).0);
        assert_eq!((c.el1.far, c.el1.elr), (0x7000_0040, abi::RUNTIME_BASE));
        assert_eq!(c.seen[1].pc, 0x1000_0a00);
        // A stage-2 fault on the walk is beyond what AT reports: the job stops, loudly.
        let mut c = cpu(vec![dc_civac(1)], 0x7000_0040);
        c.pars = VecDeque::from([Par::fault(Fsc::translation(2)).0 | Par::S | Par::PTW]);
        assert!(matches!(run(&mut c, &job(false)).end, ReportEnd::Stopped { .. }));
    }

    #[test]
    fn el0_cmos_check_el0_read_permission() {
        // DC CVAC x1 from EL0t (SCTLR_EL1.UCI set): AT S1E0R, whose permission fault is the
        // guest's.
        let mut c = ScriptedCpu { pars: VecDeque::from([Par::fault(Fsc::permission(3)).0]), ..Default::default() };
        let mut tables = vec![Table::ZERO; 8];
        let s2 = Stage2::new(&mut tables, 0x4300_0000, true).unwrap();
        let mut regs = GuestRegs { pstate: pstate::EL0T, pc: RAM, ..Default::default() };
        regs.x[1] = HOLE;
        let cmo = decode(&sys(3, 10, 1, 1), regs.pstate).unwrap();
        let e = emulate(&mut c, cmo, &regs, &s2);
        assert_eq!(e, Emulation::Stage1Fault(Injection::DataFault { addr: HOLE, fsc: Fsc::permission(3), cm: true, wnr: true }));
        assert_eq!(c.translations, vec![(HOLE, S1Walk::El0Read)]);
        // Injected from EL0: the lower-EL vector, EC "lower".
        let mut el1 = crate::vcpu::El1Regs { vbar: 0x1000_0800, ..Default::default() };
        let Emulation::Stage1Fault(what) = e else { unreachable!() };
        crate::vcpu::inject(&mut regs, &mut el1, what, true);
        assert_eq!((regs.pc, Esr(el1.esr).ec()), (0x1000_0c00, Ec::DABT_LOW));
    }

    #[test]
    fn aarch32_forms_follow_the_same_path() {
        // DCCIMVAC r1 to an untouched read-only page: NISV; an AArch32 DCIMVAC needs no
        // stage-2 write permission, so after a load it completes.
        let mut c = cpu(vec![mcr(14, 1, 1, 0xe), done()], RO + 0x40);
        let r = run(&mut c, &job(true));
        let iss = u64::from(DataAbortIss::CM | DataAbortIss::WNR) | 0x05;
        assert_eq!(case_exits(&r), vec![Exit::Nisv { esr_iss: iss, ipa: RO + 0x40 }]);
        let mut c = cpu(vec![load(RO + 0x40), mcr(6, 1, 1, 0xe), done()], RO + 0x40);
        let r = run(&mut c, &job(true));
        assert_eq!(case_exits(&r), vec![]);
        assert_eq!(c.cache_ops.len(), 1);
        assert_eq!(c.translations, vec![(RO + 0x40, S1Walk::El1Read)]);
        // A stage-1 fault goes to Abort mode with a long-descriptor DFSR (TTBCR.EAE).
        let mut c = cpu(vec![mcr(10, 1, 1, 0xe), done()], 0x7000_0040);
        c.el1.tcr = 1 << 31;
        c.pars = VecDeque::from([Par::fault(Fsc::translation(3)).0]);
        run(&mut c, &job(true));
        assert_eq!(c.el1.esr, u64::from(fsr32::LPAE | fsr32::CM | fsr32::WNR | 0x07));
        assert_eq!(c.el1.far & 0xffff_ffff, 0x7000_0040);
        assert_eq!(c.seen[1].pstate & 0x1f, pstate::A32_ABT);
    }

    #[test]
    fn instruction_cache_invalidate_all_completes() {
        let mut c = cpu(vec![sys(0, 5, 0, 31), done()], 0);
        run(&mut c, &job(false));
        assert_eq!(c.cache_ops, vec![(CmoOp::IcIallu, 0)]);
        assert_eq!(c.seen[1].pc, abi::RUNTIME_BASE + 4);
        assert!(c.translations.is_empty());
    }
}
