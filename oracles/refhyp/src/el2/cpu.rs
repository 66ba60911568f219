//! `refhyp::hw::Hw` on the real (or TCG) CPU: EL2 system registers and the guest
//! entry/exit assembly in `el2/mod.rs`.

use refhyp::cmo::{CmoOp, S1Walk};
use refhyp::fp::{FpState, FPEXC32_RESET};
use refhyp::hw::Hw;
use refhyp::policy::{ExitKind, Trap};
use refhyp::vcpu::{El1Regs, GuestRegs};
use trapdiff_arch::sysreg::{cptr_el2, hcr_el2, sctlr};

use super::gic;

extern "C" {
    fn __guest_enter(regs: *mut GuestRegs) -> u64;
}

/// HCR_EL2 bits beyond VM/IMO/FMO/AMO/SWIO/TSC/TIDCP (Arm ARM D24.2.48), as KVM's
/// HCR_GUEST_FLAGS sets them: PTW [2], FB [9], BSU inner shareable [11:10], TSW [22].
const HCR_PTW: u64 = 1 << 2;
const HCR_FB: u64 = 1 << 9;
const HCR_BSU_IS: u64 = 1 << 10;
const HCR_TSW: u64 = 1 << 22;

/// AArch32 SCTLR reset value KVM gives a 32-bit vCPU (`reset_val(SCTLR_EL1, 0x00C50078)`).
const SCTLR32_RESET: u64 = 0x00c5_0078;

/// Whether the CPU implements FEAT_S2FWB (ID_AA64MMFR2_EL1.FWB, bits [43:40]).
pub fn has_s2fwb() -> bool {
    (read_sysreg!("id_aa64mmfr2_el1") >> 40) & 0xf != 0
}

pub fn system_off() -> ! {
    // PSCI SYSTEM_OFF (DEN0022): QEMU implements PSCI over SMC for a guest started at EL2.
    // SAFETY: powers the machine off; nothing runs after it.
    unsafe { core::arch::asm!("mov x0, #0x0008", "movk x0, #0x8400, lsl #16", "smc #0", out("x0") _, options(nostack)) };
    loop {
        core::hint::spin_loop();
    }
}

pub struct Cpu {
    fwb: bool,
    /// CPTR_EL2.TFP as last written: FP registers and FPEXC32_EL2 are only accessible at EL2
    /// while it is clear.
    tfp: bool,
    hcr: u64,
    freq: u64,
}

impl Cpu {
    pub fn new(fwb: bool) -> Cpu {
        let freq = read_sysreg!("cntfrq_el0").max(1);
        // Virtual IDs: the guest sees this CPU's MIDR and MPIDR (VPIDR_EL2, VMPIDR_EL2 reset
        // to UNKNOWN values).
        write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
        write_sysreg!("vmpidr_el2", read_sysreg!("mpidr_el1"));
        // EL1 may read the physical counter and use its physical timer (CNTHCTL_EL2
        // EL1PCTEN [0], EL1PCEN [1]); no virtual offset.
        write_sysreg!("cnthctl_el2", 0b11);
        write_sysreg!("cntvoff_el2", 0);
        // All PMU counters to EL1 (MDCR_EL2.HPMN = PMCR_EL0.N), no debug traps.
        write_sysreg!("mdcr_el2", (read_sysreg!("pmcr_el0") >> 11) & 0x1f);
        write_sysreg!("hstr_el2", 0);
        write_sysreg!("cnthp_ctl_el2", 0);
        let mut cpu = Cpu { fwb, tfp: true, hcr: 0, freq };
        cpu.set_fp_trap(false);
        cpu
    }
}

impl Hw for Cpu {
    fn reset_vcpu(&mut self, aarch32: bool) {
        let mut hcr = hcr_el2::VM | hcr_el2::SWIO | hcr_el2::FMO | hcr_el2::IMO | hcr_el2::AMO | hcr_el2::TSC | hcr_el2::TIDCP;
        hcr |= HCR_PTW | HCR_FB | HCR_BSU_IS | HCR_TSW;
        // Cache maintenance by VA is trapped and emulated (refhyp::cmo): QEMU's TCG would
        // otherwise never fault it at either stage.
        hcr |= hcr_el2::TPCP | hcr_el2::TPU;
        if !aarch32 {
            hcr |= hcr_el2::RW;
        }
        if self.fwb {
            hcr |= hcr_el2::FWB;
        }
        self.hcr = hcr;
        write_sysreg!("hcr_el2", hcr);
        write_sysreg!("sctlr_el1", if aarch32 { SCTLR32_RESET } else { sctlr::EL1_RES1 });
        write_sysreg!("cpacr_el1", 0);
        write_sysreg!("tcr_el1", 0);
        write_sysreg!("ttbr0_el1", 0);
        write_sysreg!("ttbr1_el1", 0);
        write_sysreg!("mair_el1", 0);
        write_sysreg!("amair_el1", 0);
        write_sysreg!("vbar_el1", 0);
        write_sysreg!("esr_el1", 0);
        write_sysreg!("far_el1", 0);
        write_sysreg!("afsr0_el1", 0);
        write_sysreg!("afsr1_el1", 0);
        write_sysreg!("par_el1", 0);
        write_sysreg!("contextidr_el1", 0);
        write_sysreg!("tpidr_el0", 0);
        write_sysreg!("tpidrro_el0", 0);
        write_sysreg!("tpidr_el1", 0);
        write_sysreg!("sp_el0", 0);
        write_sysreg!("sp_el1", 0);
        write_sysreg!("elr_el1", 0);
        write_sysreg!("spsr_el1", 0);
        write_sysreg!("spsr_abt", 0);
        write_sysreg!("spsr_und", 0);
        write_sysreg!("spsr_irq", 0);
        write_sysreg!("spsr_fiq", 0);
        write_sysreg!("dacr32_el2", 0);
        write_sysreg!("ifsr32_el2", 0);
        self.set_fp_trap(false);
        write_sysreg!("fpexc32_el2", FPEXC32_RESET);
        write_sysreg!("csselr_el1", 0);
        write_sysreg!("cntkctl_el1", 0);
        write_sysreg!("cntp_ctl_el0", 0);
        write_sysreg!("cntv_ctl_el0", 0);
        write_sysreg!("mdscr_el1", 0);
        // SAFETY: synchronise the new EL1 context before the guest runs.
        unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
    }

    fn install_stage2(&mut self, vttbr: u64, vtcr: u64) {
        write_sysreg!("vtcr_el2", vtcr);
        write_sysreg!("vttbr_el2", vttbr);
        // SAFETY: make the table and guest-memory writes visible, then drop every cached
        // stage-1 and stage-2 translation of the guest's VMID (the VMID is now current) and
        // the instruction cache (the guest's code was rewritten).
        unsafe {
            core::arch::asm!("dsb ish", "isb", "tlbi vmalls12e1is", "ic ialluis", "dsb ish", "isb", options(nostack));
        }
    }

    fn stage2_mapped(&mut self) {
        // SAFETY: barriers only.
        unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
    }

    fn enter(&mut self, regs: &mut GuestRegs) -> Trap {
        // SAFETY: `regs` is a valid, exclusive GuestRegs for the duration of the call; the
        // assembly saves and restores every callee-saved register and the stack pointer, and
        // the guest cannot touch EL2 state (stage 2 maps only the guest pool).
        let kind = unsafe { __guest_enter(regs) };
        let kind = match kind {
            0 => ExitKind::Sync,
            1 => ExitKind::Irq,
            2 => ExitKind::Fiq,
            _ => ExitKind::SError,
        };
        let (esr, far, hpfar) = match kind {
            ExitKind::Sync => (read_sysreg!("esr_el2"), read_sysreg!("far_el2"), read_sysreg!("hpfar_el2")),
            _ => (0, 0, 0),
        };
        Trap { kind, esr, far, hpfar }
    }

    fn read_el1(&mut self) -> El1Regs {
        El1Regs {
            sctlr: read_sysreg!("sctlr_el1"),
            tcr: read_sysreg!("tcr_el1"),
            vbar: read_sysreg!("vbar_el1"),
            esr: read_sysreg!("esr_el1"),
            far: read_sysreg!("far_el1"),
            elr: read_sysreg!("elr_el1"),
            spsr: read_sysreg!("spsr_el1"),
            spsr_abt: read_sysreg!("spsr_abt"),
            spsr_und: read_sysreg!("spsr_und"),
            ifsr32: read_sysreg!("ifsr32_el2"),
        }
    }

    fn write_el1(&mut self, r: &El1Regs) {
        write_sysreg!("esr_el1", r.esr);
        write_sysreg!("far_el1", r.far);
        write_sysreg!("elr_el1", r.elr);
        write_sysreg!("spsr_el1", r.spsr);
        write_sysreg!("spsr_abt", r.spsr_abt);
        write_sysreg!("spsr_und", r.spsr_und);
        write_sysreg!("ifsr32_el2", r.ifsr32);
    }

    fn set_fp_trap(&mut self, trap: bool) {
        // TZ: SVE stays trapped (the refhyp offers no SVE); TFP per the lazy-FP state.
        if trap == self.tfp {
            return;
        }
        self.tfp = trap;
        let v = cptr_el2::RES1 | cptr_el2::TZ | if trap { cptr_el2::TFP } else { 0 };
        write_sysreg!("cptr_el2", v);
        // SAFETY: synchronise CPTR_EL2 before FP registers are touched or the guest entered.
        unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
    }

    fn read_fpexc32(&mut self) -> u64 {
        self.set_fp_trap(false);
        read_sysreg!("fpexc32_el2")
    }

    fn write_fpexc32(&mut self, value: u64) {
        self.set_fp_trap(false);
        write_sysreg!("fpexc32_el2", value);
    }

    fn fp_load(&mut self, s: &FpState) {
        // TFP traps EL2's own FP accesses too.
        self.set_fp_trap(false);
        let p = s as *const FpState;
        // SAFETY: `p` points at a whole FpState (32 x 16-byte V registers, then FPCR and
        // FPSR); TFP was cleared just above.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "ldp q0, q1, [{p}, #0]",
                "ldp q2, q3, [{p}, #32]",
                "ldp q4, q5, [{p}, #64]",
                "ldp q6, q7, [{p}, #96]",
                "ldp q8, q9, [{p}, #128]",
                "ldp q10, q11, [{p}, #160]",
                "ldp q12, q13, [{p}, #192]",
                "ldp q14, q15, [{p}, #224]",
                "ldp q16, q17, [{p}, #256]",
                "ldp q18, q19, [{p}, #288]",
                "ldp q20, q21, [{p}, #320]",
                "ldp q22, q23, [{p}, #352]",
                "ldp q24, q25, [{p}, #384]",
                "ldp q26, q27, [{p}, #416]",
                "ldp q28, q29, [{p}, #448]",
                "ldp q30, q31, [{p}, #480]",
                "add {p}, {p}, #512",
                "ldp {a}, {b}, [{p}]",
                "msr fpcr, {a}",
                "msr fpsr, {b}",
                p = inout(reg) p => _,
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            )
        };
    }

    fn fp_save(&mut self, s: &mut FpState) {
        self.set_fp_trap(false);
        let p = s as *mut FpState;
        // SAFETY: `p` points at a whole, exclusively borrowed FpState; TFP was cleared just
        // above.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "stp q0, q1, [{p}, #0]",
                "stp q2, q3, [{p}, #32]",
                "stp q4, q5, [{p}, #64]",
                "stp q6, q7, [{p}, #96]",
                "stp q8, q9, [{p}, #128]",
                "stp q10, q11, [{p}, #160]",
                "stp q12, q13, [{p}, #192]",
                "stp q14, q15, [{p}, #224]",
                "stp q16, q17, [{p}, #256]",
                "stp q18, q19, [{p}, #288]",
                "stp q20, q21, [{p}, #320]",
                "stp q22, q23, [{p}, #352]",
                "stp q24, q25, [{p}, #384]",
                "stp q26, q27, [{p}, #416]",
                "stp q28, q29, [{p}, #448]",
                "stp q30, q31, [{p}, #480]",
                "mrs {a}, fpcr",
                "mrs {b}, fpsr",
                "add {p}, {p}, #512",
                "stp {a}, {b}, [{p}]",
                p = inout(reg) p => _,
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            )
        };
    }

    fn watchdog_arm(&mut self, ms: u32) {
        let ticks = (u64::from(ms.max(1)) * self.freq / 1000).min(u64::from(u32::MAX >> 1));
        write_sysreg!("cnthp_tval_el2", ticks);
        // ENABLE, interrupt not masked.
        write_sysreg!("cnthp_ctl_el2", 1);
    }

    fn watchdog_disarm(&mut self) {
        write_sysreg!("cnthp_ctl_el2", 0);
    }

    fn ack_irq(&mut self) -> bool {
        match gic::ack() {
            Some(gic::INTID_HYP_TIMER) => {
                write_sysreg!("cnthp_ctl_el2", 0);
                true
            }
            _ => false,
        }
    }

    fn now_us(&mut self) -> u64 {
        let t = read_sysreg!("cntpct_el0");
        ((u128::from(t) * 1_000_000) / u128::from(self.freq)) as u64
    }

    fn translate_s1(&mut self, va: u64, walk: S1Walk) -> u64 {
        let saved = read_sysreg!("par_el1");
        // SAFETY: AT only writes PAR_EL1 (restored below); the guest's EL1 translation regime
        // and VTTBR_EL2 are current, so it walks the guest's tables through its stage 2.
        unsafe {
            match walk {
                S1Walk::El1Read => core::arch::asm!("at s1e1r, {}", "isb", in(reg) va, options(nostack, preserves_flags)),
                S1Walk::El1Write => core::arch::asm!("at s1e1w, {}", "isb", in(reg) va, options(nostack, preserves_flags)),
                S1Walk::El0Read => core::arch::asm!("at s1e0r, {}", "isb", in(reg) va, options(nostack, preserves_flags)),
            }
        }
        let par = read_sysreg!("par_el1");
        write_sysreg!("par_el1", saved);
        par
    }

    fn cache_maintain(&mut self, op: CmoOp, pa: u64) {
        // The EL2 map is the identity, Normal write-back, over the guest pool (el2/mmu.rs), so
        // a DC by VA here reaches the guest's physical line. An invalidate is upgraded to
        // clean and invalidate (a hypervisor must not discard data it cannot see is stale);
        // IC by VA becomes IC IALLUIS (EL2 cannot name the guest's VA).
        // SAFETY: cache maintenance on guest-pool memory the refhyp owns; no data changes.
        unsafe {
            match op {
                CmoOp::DcIvac | CmoOp::DcCivac => core::arch::asm!("dc civac, {}", "dsb ish", in(reg) pa, options(nostack, preserves_flags)),
                CmoOp::DcCvac => core::arch::asm!("dc cvac, {}", "dsb ish", in(reg) pa, options(nostack, preserves_flags)),
                CmoOp::DcCvau => core::arch::asm!("dc cvau, {}", "dsb ish", in(reg) pa, options(nostack, preserves_flags)),
                // DC CVAP / CVADP (sys #3, c7, c12/c13, #1): only trapped when implemented.
                CmoOp::DcCvap => core::arch::asm!("sys #3, c7, c12, #1, {}", "dsb ish", in(reg) pa, options(nostack, preserves_flags)),
                CmoOp::DcCvadp => core::arch::asm!("sys #3, c7, c13, #1, {}", "dsb ish", in(reg) pa, options(nostack, preserves_flags)),
                CmoOp::IcIvau | CmoOp::IcIallu => core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack, preserves_flags)),
            }
        }
    }
}
