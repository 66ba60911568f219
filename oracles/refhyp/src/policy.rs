//! The `reference` trap policy: what the refhyp does with each exit from the guest.
//!
//! It follows what Linux/KVM documents and does (the 6.1 `arch/arm64/kvm` code and
//! `Documentation/virt/kvm/api.rst`), so that a divergence between the refhyp and a KVM
//! kernel points at that kernel, and a divergence between the refhyp and the model points at
//! one of the two. Rule by rule:
//!
//! | trap | decision | source |
//! |---|---|---|
//! | stage-2 translation fault in a memory slot | map the page (read-only for a read-only slot) and re-execute: stage 2 is filled lazily, as KVM does, so the first access to a page decides what a later CMO sees | `user_mem_abort` (mmu.c) |
//! | stage-2 fault that is not translation/permission/access-flag (e.g. an alignment fault reported at stage 2 for Device stage-2 memory) | `KVM_RUN` fails with EFAULT | `kvm_handle_guest_abort`: "Unsupported FSC" -> `-EFAULT` |
//! | instruction abort outside memory | inject a synchronous external prefetch abort at FAR | `kvm_handle_guest_abort`: "Prefetch Abort on I/O address" -> `kvm_inject_pabt` |
//! | stage-1 walk (S1PTW) outside memory | inject a synchronous external data abort | `kvm_handle_guest_abort`: `kvm_vcpu_abt_iss1tw` -> `kvm_inject_dabt` |
//! | stage-1 walk (S1PTW) into a read-only slot | a translation fault is a read: map the page; a permission fault (hardware AF/DB update) is a write, handled as a write to a read-only slot | `kvm_is_write_fault`; 406504c7b040 "KVM: arm64: Fix S1PTW handling on RO memslots" |
//! | cache maintenance (CM=1) outside every slot | skip the instruction | `kvm_handle_guest_abort`: "assume that the guest is just being cautious, and skip the instruction" |
//! | data abort outside memory, or a write (WnR=1, CMOs included) to a read-only slot, ISV=1 | `KVM_EXIT_MMIO` served by the VMM's device model, load result sign-extended per SSE and truncated per SF, then the instruction is retired | `io_mem_abort`, `kvm_handle_mmio_return`; api.rst "KVM_EXIT_MMIO" |
//! | same, ISV=0 | `KVM_EXIT_ARM_NISV` with `esr_iss` = ESR_EL2 & (CM, WnR, DFSC) and the full IPA if the VMM enabled KVM_CAP_ARM_NISV_TO_USER, else `KVM_RUN` fails with ENOSYS | `io_mem_abort`, `kvm_vcpu_dabt_iss_nisv_sanitized`; api.rst "KVM_EXIT_ARM_NISV", "KVM_CAP_ARM_NISV_TO_USER" |
//! | VMM answers an MMIO/NISV exit with an external abort | inject a synchronous external data abort; the instruction is not retired | api.rst "KVM_SET_VCPU_EVENTS" (ext_dabt_pending); commit "KVM: arm64: Don't retire aborted MMIO instruction" |
//! | FP/SIMD access with CPTR_EL2.TFP set | load the guest FP state, restore the guest's FPEXC32_EL2, clear TFP, re-execute | `kvm_hyp_handle_fpsimd` (hyp/include/hyp/switch.h) |
//! | HVC / SMC | SMCCC "not supported" (x0 = -1); SMC is skipped (its preferred return is itself) | `handle_hvc`, `handle_smc` (handle_exit.c); the refhyp implements no PSCI |
//! | DC ISW/CSW/CISW (HCR_EL2.TSW) | skipped: with FWB (or under TCG) there is nothing to flush | `access_dcsw` (sys_regs.c) |
//! | DC/IC by VA (HCR_EL2.TPCP, TPU; `crate::cmo`) | emulated: a stage-1 fault is injected, a stage-2 fault becomes the data abort the CPU would report and is decided by the rows above, otherwise the operation is done and retired | Arm ARM D24.2.48 HCR_EL2.TPCP/TPU; ASL `AArch64.S1CheckPermission`, `AArch64.S2CheckPermission` |
//! | trapped AArch32 MCR/MRC that fails its condition | skipped | `kvm_condition_valid32` |
//! | SVE/SME/other trapped instructions, unknown EC | inject UNDEFINED | `handle_sve`, `kvm_handle_unknown_ec` |
//! | physical IRQ (the EL2 watchdog timer) | end the job as a timeout | refhyp's own; KVM's equivalent is the VMM's own timer |
//! | SError from the guest | stop the job | KVM injects a virtual SError; the refhyp has no RAS story |
//!
//! Quirks (`trapdiff_arch::quirk`, off unless a job asks) re-introduce historical KVM bugs
//! into these decisions, each next to the rule its fix changed.
//!
//! Deliberate differences from KVM, none visible to the guest's architectural state: the
//! runtime's own slot is mapped up front and pages are mapped executable at once (KVM grants
//! execute permission lazily, with an I-cache invalidation, `user_mem_abort`); and there is no
//! in-kernel device, so every MMIO access reaches the VMM's device model (KVM would route the
//! GIC's range to the vGIC). DC/IC by VA to PoC/PoP/PoU are trapped (TPCP, TPU; KVM does not
//! trap them) and emulated by `crate::cmo`: on silicon the emulation gives what the hardware
//! would, and under QEMU TCG, where they are no-ops, it restores the stage-1 and stage-2
//! faults TCG leaves out.

use trapdiff_arch::esr::{DataAbortIss, Ec, Esr, FaultKind};
use trapdiff_arch::quirk::{Quirk, Quirks};

use crate::vcpu::Injection;

/// Why the guest stopped running, as the EL2 vectors saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Sync,
    Irq,
    Fiq,
    SError,
}

/// One exit from the guest: which vector, and the EL2 fault registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap {
    pub kind: ExitKind,
    pub esr: u64,
    pub far: u64,
    pub hpfar: u64,
}

impl Trap {
    /// The faulting IPA: HPFAR_EL2.FIPA (bits [43:4] = IPA[51:12]) with the page offset from
    /// FAR_EL2 ("The IPA is reported as [MAX:12] ... complement it with the bottom 12 bits
    /// from the faulting VA", `kvm_handle_guest_abort`).
    pub fn fault_ipa(&self) -> u64 {
        ((self.hpfar & 0x0000_0fff_ffff_fff0) << 8) | (self.far & 0xfff)
    }
}

/// What backs an IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    Ram,
    RoRam,
    Device,
    /// Not in any slot: MMIO.
    Hole,
}

/// An MMIO access with a valid syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub ipa: u64,
    pub len: u8,
    pub write: bool,
    pub sse: bool,
    pub sf: bool,
    pub srt: u8,
    pub il32: bool,
}

/// What to do with one exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Mmio(MmioAccess),
    Nisv {
        esr_iss: u64,
        ipa: u64,
        il32: bool,
    },
    /// Map the stage-2 page at `ipa` (page-aligned) from its slot and re-execute.
    MapPage {
        ipa: u64,
    },
    /// Retire the instruction without doing anything.
    Skip {
        il32: bool,
    },
    Inject {
        what: Injection,
        il32: bool,
    },
    /// Load the guest's FP state and re-execute.
    FpTrap,
    /// HVC/SMC: answer SMCCC_RET_NOT_SUPPORTED; `skip` for SMC.
    Smccc {
        skip: bool,
        il32: bool,
    },
    /// The EL2 watchdog (or another physical interrupt) fired.
    Irq,
    /// `KVM_RUN` would fail with this errno.
    RunError {
        errno: i32,
        why: &'static str,
    },
    /// The guest did something the refhyp has no answer for (or the refhyp is wrong).
    Stop(&'static str),
}

pub const EFAULT: i32 = 14;
pub const ENOSYS: i32 = 38;

/// ESR bits KVM passes to userspace in `kvm_run.arm_nisv.esr_iss`
/// (`kvm_vcpu_dabt_iss_nisv_sanitized`: CM, WnR and the fault status code).
pub const NISV_ISS_MASK: u64 = (DataAbortIss::CM | DataAbortIss::WNR | DataAbortIss::DFSC_MASK) as u64;

/// Decide what one exit means. `pstate` is the guest's (for AArch32 condition checks),
/// `quirks` the historical bugs to re-introduce (`trapdiff_arch::quirk`), `backing` says what
/// is at an IPA.
pub fn decide(trap: &Trap, pstate: u64, quirks: Quirks, backing: impl Fn(u64) -> Backing) -> Decision {
    match trap.kind {
        ExitKind::Irq | ExitKind::Fiq => return Decision::Irq,
        ExitKind::SError => return Decision::Stop("SError taken from the guest"),
        ExitKind::Sync => {}
    }
    let esr = Esr(trap.esr);
    let il32 = esr.il();
    let iss = esr.iss();
    match esr.ec() {
        Ec::DABT_LOW | Ec::IABT_LOW => guest_abort(trap, quirks, backing),
        Ec::FP_ASIMD => Decision::FpTrap,
        Ec::HVC64 | Ec::HVC32 => Decision::Smccc { skip: false, il32 },
        Ec::SMC64 | Ec::SMC32 => Decision::Smccc { skip: true, il32 },
        Ec::SYS64 => {
            // ISS: Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10], CRm [4:1].
            let (op0, op2, op1, crn, crm) = ((iss >> 20) & 3, (iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 15, (iss >> 1) & 15);
            if op0 == 1 && op1 == 0 && crn == 7 && op2 == 2 && matches!(crm, 6 | 10 | 14) {
                Decision::Skip { il32 }
            } else {
                Decision::Inject { what: Injection::Undefined, il32 }
            }
        }
        Ec::CP15_32 => {
            if !condition_passed32(iss, pstate) {
                return Decision::Skip { il32 };
            }
            let (opc2, opc1, crn, crm) = ((iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 15, (iss >> 1) & 15);
            if opc1 == 0 && crn == 7 && opc2 == 2 && matches!(crm, 6 | 10 | 14) {
                Decision::Skip { il32 }
            } else {
                Decision::Inject { what: Injection::Undefined, il32 }
            }
        }
        Ec::CP15_64 | Ec::CP14_MR | Ec::CP14_LS | Ec::CP14_64 if !condition_passed32(iss, pstate) => Decision::Skip { il32 },
        _ => Decision::Inject { what: Injection::Undefined, il32 },
    }
}

/// `kvm_condition_valid32` for a trapped AArch32 instruction: ISS.CV [24] says COND
/// [23:20] is valid; the flags come from the guest's PSTATE (Arm ARM `ConditionHolds`).
/// Without CV the instruction is treated as having passed.
pub(crate) fn condition_passed32(iss: u32, cpsr: u64) -> bool {
    if iss & (1 << 24) == 0 {
        return true;
    }
    let cond = (iss >> 20) & 0xf;
    let (n, z, c, v) = (cpsr >> 31 & 1 == 1, cpsr >> 30 & 1 == 1, cpsr >> 29 & 1 == 1, cpsr >> 28 & 1 == 1);
    let base = match cond >> 1 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => n == v && !z,
        _ => true,
    };
    if cond & 1 == 1 && cond != 0xf {
        !base
    } else {
        base
    }
}

fn guest_abort(trap: &Trap, quirks: Quirks, backing: impl Fn(u64) -> Backing) -> Decision {
    let esr = Esr(trap.esr);
    let il32 = esr.il();
    let is_iabt = esr.ec() == Ec::IABT_LOW;
    // The same ISS bit layout serves both aborts for the fields read here.
    let iss = DataAbortIss(esr.iss());
    match iss.dfsc().kind() {
        FaultKind::Translation | FaultKind::Permission | FaultKind::AccessFlag => {}
        _ => return Decision::RunError { errno: EFAULT, why: "stage-2 fault with a status KVM does not handle (Unsupported FSC)" },
    }
    let ipa = trap.fault_ipa();
    // kvm_is_write_fault: a data abort with WnR (CMOs report WnR=1), or a stage-1 walk that
    // took a permission fault (406504c7b040 "KVM: arm64: Fix S1PTW handling on RO memslots":
    // a walk's translation fault is a read, so page tables may live in a read-only memslot).
    // Quirk `s1ptw-ro-as-write`: every S1PTW is a write, as before that fix.
    let s1ptw_write = iss.s1ptw() && (iss.dfsc().kind() == FaultKind::Permission || quirks.has(Quirk::S1ptwRoAsWrite));
    // The S1PTW check comes before the instruction-abort one, as in kvm_is_write_fault.
    let write_fault = s1ptw_write || (!is_iabt && iss.wnr() && !iss.s1ptw());
    let at = backing(ipa);
    let outside = match at {
        Backing::Hole => true,
        Backing::RoRam => write_fault,
        Backing::Ram | Backing::Device => false,
    };
    if !outside {
        if iss.dfsc().kind() == FaultKind::Translation {
            return Decision::MapPage { ipa: ipa & !0xfff };
        }
        return Decision::Stop("stage-2 permission or access-flag fault on memory the refhyp mapped (refhyp stage-2 bug)");
    }
    if is_iabt {
        return Decision::Inject { what: Injection::PrefetchAbort { addr: trap.far }, il32 };
    }
    if iss.s1ptw() {
        return Decision::Inject { what: Injection::DataAbort { addr: trap.far }, il32 };
    }
    // Only outside every slot since 54dc0d2404dd ("KVM: arm64: Don't skip cache maintenance
    // for read-only memslots"); quirk `skip-cmo-ro-memslot` restores the skip on RO slots.
    if iss.cm() && (at == Backing::Hole || quirks.has(Quirk::SkipCmoRoMemslot)) {
        return Decision::Skip { il32 };
    }
    if !iss.isv() {
        // Quirk `nisv-esr-unmasked`: the whole ESR_EL2 instead of the bits api.rst promises.
        let esr_iss = if quirks.has(Quirk::NisvEsrUnmasked) { trap.esr } else { trap.esr & NISV_ISS_MASK };
        return Decision::Nisv { esr_iss, ipa, il32 };
    }
    Decision::Mmio(MmioAccess { ipa, len: iss.access_len() as u8, write: iss.wnr(), sse: iss.sse(), sf: iss.sf(), srt: iss.srt(), il32 })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use trapdiff_arch::esr::Fsc;

    fn dabt(iss: u32, il: bool, ipa: u64) -> Trap {
        Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::DABT_LOW, il, iss).0, far: 0xffff_0000_0000_0000 | (ipa & 0xfff), hpfar: (ipa >> 12) << 4 }
    }
    fn decide_t(t: &Trap, b: impl Fn(u64) -> Backing) -> Decision {
        decide(t, 0, Quirks::NONE, b)
    }
    fn holes(_: u64) -> Backing {
        Backing::Hole
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        let t = dabt(0, true, 0x12_3456_7abc);
        assert_eq!(t.fault_ipa(), 0x12_3456_7abc);
    }

    #[test]
    fn load_with_syndrome_is_mmio() {
        // ldrsh w3, [x0]: ISV, SAS=1, SSE, SRT=3, SF=0, translation fault level 3.
        let iss = DataAbortIss::with_syndrome(1, true, 3, false, false, false, Fsc::translation(3));
        let d = decide_t(&dabt(iss.0, true, 0x9000_0004), holes);
        assert_eq!(d, Decision::Mmio(MmioAccess { ipa: 0x9000_0004, len: 2, write: false, sse: true, sf: false, srt: 3, il32: true }));
    }

    #[test]
    fn no_syndrome_is_nisv_with_sanitized_iss() {
        // stp with writeback: ISV=0, WnR, translation fault level 2; FnV and EA must not leak.
        let iss = DataAbortIss::WNR | DataAbortIss::FNV | u32::from(Fsc::translation(2).0);
        let d = decide_t(&dabt(iss, true, 0x9000_0000), holes);
        assert_eq!(d, Decision::Nisv { esr_iss: u64::from(DataAbortIss::WNR | 0x06), ipa: 0x9000_0000, il32: true });
    }

    #[test]
    fn cmo_to_a_hole_is_skipped_but_to_ro_ram_is_nisv() {
        let iss = DataAbortIss::CM | DataAbortIss::WNR | u32::from(Fsc::translation(3).0);
        assert_eq!(decide_t(&dabt(iss, true, 0x9000_0000), holes), Decision::Skip { il32: true });
        let perm = DataAbortIss::CM | DataAbortIss::WNR | u32::from(Fsc::permission(3).0);
        let d = decide_t(&dabt(perm, true, 0x9000_0000), |_| Backing::RoRam);
        assert_eq!(d, Decision::Nisv { esr_iss: u64::from(perm), ipa: 0x9000_0000, il32: true });
    }

    #[test]
    fn write_to_ro_ram_with_syndrome_is_mmio_and_a_read_fault_there_is_a_bug() {
        let w = DataAbortIss::with_syndrome(3, false, 1, true, false, true, Fsc::permission(3));
        assert!(matches!(decide_t(&dabt(w.0, true, 0x8000), |_| Backing::RoRam), Decision::Mmio(MmioAccess { write: true, len: 8, .. })));
        let r = DataAbortIss::with_syndrome(3, false, 1, true, false, false, Fsc::permission(3));
        assert!(matches!(decide_t(&dabt(r.0, true, 0x8000), |_| Backing::RoRam), Decision::Stop(_)));
    }

    #[test]
    fn first_touch_of_a_slot_page_maps_it_lazily() {
        // A read (or a CMO to RAM) of a page not mapped yet: map and re-execute.
        let r = DataAbortIss::with_syndrome(2, false, 1, false, false, false, Fsc::translation(3));
        assert_eq!(decide_t(&dabt(r.0, true, 0x8123), |_| Backing::RoRam), Decision::MapPage { ipa: 0x8000 });
        let cmo = DataAbortIss::CM | DataAbortIss::WNR | u32::from(Fsc::translation(3).0);
        assert_eq!(decide_t(&dabt(cmo, true, 0x8010), |_| Backing::Ram), Decision::MapPage { ipa: 0x8000 });
        // The same CMO to an untouched read-only slot is a write fault there: NISV (Linux 6.1).
        assert!(matches!(decide_t(&dabt(cmo, true, 0x8010), |_| Backing::RoRam), Decision::Nisv { .. }));
        let t = Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::IABT_LOW, true, 0x07).0, far: 0x8000, hpfar: 0x8 << 4 };
        assert_eq!(decide_t(&t, |_| Backing::RoRam), Decision::MapPage { ipa: 0x8000 });
    }

    #[test]
    fn stage2_alignment_fault_is_efault() {
        let d = decide_t(&dabt(u32::from(Fsc::ALIGNMENT.0), true, 0x8000), |_| Backing::Device);
        assert!(matches!(d, Decision::RunError { errno: EFAULT, .. }));
    }

    #[test]
    fn instruction_fetch_from_a_hole_injects_a_prefetch_abort() {
        let t = Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::IABT_LOW, true, 0x07).0, far: 0x9000_0000, hpfar: 0x0009_0000 << 4 };
        assert_eq!(decide_t(&t, holes), Decision::Inject { what: Injection::PrefetchAbort { addr: 0x9000_0000 }, il32: true });
    }

    #[test]
    fn s1ptw_outside_memory_injects_a_data_abort() {
        let iss = DataAbortIss::S1PTW | u32::from(Fsc::translation(3).0);
        assert!(matches!(decide_t(&dabt(iss, true, 0x9000_0000), holes), Decision::Inject { what: Injection::DataAbort { .. }, .. }));
    }

    #[test]
    fn s1ptw_into_a_read_only_slot_is_a_read_unless_quirked() {
        let walk = DataAbortIss::S1PTW | u32::from(Fsc::translation(3).0);
        let ro = |_: u64| Backing::RoRam;
        assert_eq!(decide_t(&dabt(walk, true, 0x8000), ro), Decision::MapPage { ipa: 0x8000 });
        let q = Quirks::NONE.with(Quirk::S1ptwRoAsWrite);
        assert!(matches!(decide(&dabt(walk, true, 0x8000), 0, q, ro), Decision::Inject { what: Injection::DataAbort { .. }, .. }));
        // A walk's permission fault (hardware AF/DB update) is a write either way.
        let perm = DataAbortIss::S1PTW | u32::from(Fsc::permission(3).0);
        assert!(matches!(decide_t(&dabt(perm, true, 0x8000), ro), Decision::Inject { .. }));
    }

    #[test]
    fn quirks_change_cmo_and_nisv_decisions() {
        let cmo = DataAbortIss::CM | DataAbortIss::WNR | u32::from(Fsc::translation(3).0);
        let ro = |_: u64| Backing::RoRam;
        assert!(matches!(decide_t(&dabt(cmo, true, 0x8000), ro), Decision::Nisv { .. }));
        let q = Quirks::NONE.with(Quirk::SkipCmoRoMemslot);
        assert_eq!(decide(&dabt(cmo, true, 0x8000), 0, q, ro), Decision::Skip { il32: true });
        let stp = DataAbortIss::WNR | DataAbortIss::FNV | u32::from(Fsc::translation(2).0);
        let t = dabt(stp, true, 0x9000_0000);
        let q = Quirks::NONE.with(Quirk::NisvEsrUnmasked);
        assert_eq!(decide(&t, 0, q, holes), Decision::Nisv { esr_iss: t.esr, ipa: 0x9000_0000, il32: true });
    }

    #[test]
    fn other_traps() {
        let t = |ec: Ec, iss: u32| Trap { kind: ExitKind::Sync, esr: Esr::new(ec, true, iss).0, far: 0, hpfar: 0 };
        assert_eq!(decide_t(&t(Ec::FP_ASIMD, 0), holes), Decision::FpTrap);
        assert_eq!(decide_t(&t(Ec::SMC64, 0), holes), Decision::Smccc { skip: true, il32: true });
        // DC CISW, x0: op0=1 op1=0 CRn=7 CRm=14 op2=2.
        let dccisw = (1 << 20) | (2 << 17) | (7 << 10) | (14 << 1);
        assert_eq!(decide_t(&t(Ec::SYS64, dccisw), holes), Decision::Skip { il32: true });
        assert!(matches!(decide_t(&t(Ec::SVE, 0), holes), Decision::Inject { what: Injection::Undefined, .. }));
        // MCRNE p15 (CV=1, COND=NE) with Z set: failed its condition, skipped.
        let mcrne = (1 << 24) | (1 << 20) | (5 << 10); // Direction (bit 0) clear: MCR
        assert_eq!(decide(&t(Ec::CP15_32, mcrne), 1 << 30, Quirks::NONE, holes), Decision::Skip { il32: true });
        assert!(matches!(decide(&t(Ec::CP15_32, mcrne), 0, Quirks::NONE, holes), Decision::Inject { .. }));
        let irq = Trap { kind: ExitKind::Irq, esr: 0, far: 0, hpfar: 0 };
        assert_eq!(decide_t(&irq, holes), Decision::Irq);
    }
}
