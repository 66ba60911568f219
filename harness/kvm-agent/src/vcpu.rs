//! vCPU set-up: KVM_ARM_VCPU_INIT with the preferred target (api.rst 4.82) and the entry
//! state through ONE_REG core registers (api.rst 4.68, "ARM64 core/FP-SIMD registers").

use std::mem::offset_of;

use kvm_bindings::{
    kvm_regs, kvm_vcpu_events, kvm_vcpu_init, user_pt_regs, KVM_ARM_VCPU_EL1_32BIT, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64,
};
use kvm_ioctls::{VcpuFd, VmFd};

/// PSTATE for the A64 runtime: EL1h with D, A, I, F masked — the value KVM itself resets a
/// 64-bit vCPU to (arch/arm64/kvm/reset.c, VCPU_RESET_PSTATE_EL1).
pub const PSTATE_A64_EL1H: u64 = 0x3c5;
/// CPSR for the A32 runtime: SVC mode with A, I, F masked (VCPU_RESET_PSTATE_SVC).
pub const PSTATE_A32_SVC: u64 = 0x1d3;
/// CPSR.T: the entry is Thumb (bit 0 of the entry address set).
pub const PSTATE_A32_T: u64 = 0x20;

/// ONE_REG id of a `struct kvm_regs` field at byte `offset` (the id counts 32-bit words).
const fn core_reg(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

pub const REG_PC: u64 = core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pc));
pub const REG_PSTATE: u64 = core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pstate));
pub const REG_SP_EL1: u64 = core_reg(offset_of!(kvm_regs, sp_el1));
pub const REG_ELR_EL1: u64 = core_reg(offset_of!(kvm_regs, elr_el1));
/// spsr[KVM_SPSR_EL1]: SPSR_EL1, which is also AArch32's SPSR_svc.
pub const REG_SPSR_EL1: u64 = core_reg(offset_of!(kvm_regs, spsr));
/// CNTV_CVAL_EL0. The uapi name's encoding is (3, 3, 14, 0, 2), swapped with TIMER_CNT's by an
/// old mistake kept for the ABI (arch/arm64/include/uapi/asm/kvm.h, KVM_REG_ARM_TIMER_CVAL).
pub const REG_TIMER_CVAL: u64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG as u64 | (3 << 14) | (3 << 11) | (14 << 7) | 2;

/// What KVM_ARM_VCPU_INIT leaves as it was when it resets a vCPU that has run (Linux 6.1,
/// arch/arm64/kvm/reset.c kvm_reset_vcpu): it zeroes the user_pt_regs (x0-x30, sp_el0, pc,
/// pstate), the FP/SIMD registers with FPSR/FPCR and SPSR_abt/und/irq/fiq, and resets every
/// register of sys_regs.c's table that has a reset function; but SP_EL1, ELR_EL1 and SPSR_EL1
/// live in the vCPU's sys_regs array without a table entry (guest.c core_reg_addr), and the
/// timer reset (arch_timer.c kvm_timer_vcpu_reset) clears CNTx_CTL but not CNTx_CVAL. A new
/// vCPU has all of them zero (allocated zeroed), so a reused one gets zeros written here.
/// The physical timer's CVAL has no ONE_REG in 6.1 (the sys_regs entry has no storage); it is
/// UNKNOWN at reset architecturally and no case reads it.
///
/// And the kvm_run page: a job ends on an exit (the DONE store is an MMIO exit), and the next
/// KVM_RUN with exit_reason still KVM_EXIT_MMIO would complete that access on the new job
/// (arm.c kvm_arch_vcpu_ioctl_run -> mmio.c kvm_handle_mmio_return: a register write and the
/// PC stepped past it). A fresh vCPU's kvm_run is zero (KVM_EXIT_UNKNOWN), so reset it to that,
/// and clear immediate_exit. Pending exceptions and PC steps are never left over: KVM commits
/// them before KVM_RUN returns (arm.c kvm_arch_vcpu_ioctl_run, `out:` __kvm_adjust_pc).
pub fn clear_reset_residue(vcpu: &mut VcpuFd) -> Result<(), String> {
    for (id, name) in [(REG_SP_EL1, "sp_el1"), (REG_ELR_EL1, "elr_el1"), (REG_SPSR_EL1, "spsr_el1"), (REG_TIMER_CVAL, "cntv_cval_el0")] {
        vcpu.set_one_reg(id, &0u64.to_le_bytes()).map_err(|e| format!("KVM_SET_ONE_REG {name}: {e}"))?;
    }
    let run = vcpu.get_kvm_run();
    run.exit_reason = kvm_bindings::KVM_EXIT_UNKNOWN;
    run.immediate_exit = 0;
    Ok(())
}

/// Initialise a new vCPU and put it at `entry` in the runtime's start state.
pub fn init(vm: &VmFd, vcpu: &VcpuFd, aarch32: bool, entry: u64) -> Result<(), String> {
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi).map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: {e}"))?;
    if aarch32 {
        kvi.features[0] |= 1 << KVM_ARM_VCPU_EL1_32BIT;
    }
    vcpu.vcpu_init(&kvi).map_err(|e| format!("KVM_ARM_VCPU_INIT (aarch32: {aarch32}): {e}"))?;
    let (pc, pstate) = if aarch32 {
        let t = if entry & 1 != 0 { PSTATE_A32_T } else { 0 };
        (entry & !1, PSTATE_A32_SVC | t)
    } else {
        (entry, PSTATE_A64_EL1H)
    };
    vcpu.set_one_reg(REG_PC, &pc.to_le_bytes()).map_err(|e| format!("KVM_SET_ONE_REG pc: {e}"))?;
    vcpu.set_one_reg(REG_PSTATE, &pstate.to_le_bytes()).map_err(|e| format!("KVM_SET_ONE_REG pstate: {e}"))?;
    Ok(())
}

/// Ask KVM to inject a synchronous external data abort at the access that exited
/// (api.rst 4.31 KVM_SET_VCPU_EVENTS, ARM64: "ext_dabt_pending ... after an exit which was
/// either KVM_EXIT_MMIO or KVM_EXIT_ARM_NISV"), as QEMU does for NISV exits.
pub fn inject_ext_dabt(vcpu: &VcpuFd) -> Result<(), String> {
    let mut ev = kvm_vcpu_events::default();
    ev.exception.ext_dabt_pending = 1;
    vcpu.set_vcpu_events(&ev).map_err(|e| format!("KVM_SET_VCPU_EVENTS ext_dabt_pending: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn core_reg_ids_match_the_uapi() {
        // arch/arm64/include/uapi/asm/kvm.h: pc is regs.pc, word 64; pstate word 66.
        assert_eq!(REG_PC, 0x6030_0000_0010_0040);
        assert_eq!(REG_PSTATE, 0x6030_0000_0010_0042);
        // sp_el1 word 68, elr_el1 70, spsr[0] 72.
        assert_eq!(REG_SP_EL1, 0x6030_0000_0010_0044);
        assert_eq!(REG_ELR_EL1, 0x6030_0000_0010_0046);
        assert_eq!(REG_SPSR_EL1, 0x6030_0000_0010_0048);
        // ARM64_SYS_REG(3, 3, 14, 0, 2) (uapi asm/kvm.h).
        assert_eq!(REG_TIMER_CVAL, 0x6030_0000_0013_df02);
    }
}
