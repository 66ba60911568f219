//! What the job runner needs from the CPU. The EL2 binary implements it with system
//! registers and assembly; host tests implement it with a script.

use crate::cmo::{CmoOp, S1Walk};
use crate::fp::FpState;
use crate::policy::Trap;
use crate::vcpu::{El1Regs, GuestRegs};

pub trait Hw {
    /// Put the vCPU's EL1 system registers and HCR_EL2 in their reset state for a new job
    /// (`aarch32`: EL1 is AArch32, HCR_EL2.RW = 0).
    fn reset_vcpu(&mut self, aarch32: bool);
    /// Switch to the stage-2 tables at `vttbr` (with `vtcr`) and invalidate every stage-1 and
    /// stage-2 TLB entry of the guest's VMID and the instruction cache (the guest's memory was
    /// rewritten).
    fn install_stage2(&mut self, vttbr: u64, vtcr: u64);
    /// A stage-2 entry went from invalid to valid: make the table write visible to the
    /// walker (no TLB entry can hold an invalid translation, so no invalidation is needed).
    fn stage2_mapped(&mut self);
    /// Run the guest from `regs` until it exits; `regs` holds its state afterwards.
    fn enter(&mut self, regs: &mut GuestRegs) -> Trap;
    fn read_el1(&mut self) -> El1Regs;
    fn write_el1(&mut self, regs: &El1Regs);
    /// CPTR_EL2.TFP.
    fn set_fp_trap(&mut self, trap: bool);
    fn read_fpexc32(&mut self) -> u64;
    fn write_fpexc32(&mut self, value: u64);
    /// Load V0-V31, FPCR and FPSR into the CPU.
    fn fp_load(&mut self, state: &FpState);
    /// Save V0-V31, FPCR and FPSR from the CPU.
    fn fp_save(&mut self, state: &mut FpState);
    /// Arm the EL2 watchdog to fire `ms` milliseconds from now.
    fn watchdog_arm(&mut self, ms: u32);
    fn watchdog_disarm(&mut self);
    /// Acknowledge a pending physical interrupt; true if it was the watchdog.
    fn ack_irq(&mut self) -> bool;
    /// Microseconds since an arbitrary epoch.
    fn now_us(&mut self) -> u64;
    /// Translate `va` with the guest's stage 1 as `AT S1E1R`/`S1E1W`/`S1E0R` executed at EL2
    /// does, and return PAR_EL1; the guest's own PAR_EL1 is left as it was.
    fn translate_s1(&mut self, va: u64, walk: S1Walk) -> u64;
    /// Perform a trapped cache maintenance operation on the line at physical address `pa`
    /// (ignored for `IcIallu`), through the refhyp's own mapping of the guest pool.
    fn cache_maintain(&mut self, op: CmoOp, pa: u64);
}
