//! vCPU set-up: KVM_ARM_VCPU_INIT with the preferred target (api.rst 4.82) and the entry
//! state through ONE_REG core registers (api.rst 4.68, "ARM64 core/FP-SIMD registers").

use std::mem::offset_of;

use kvm_bindings::{kvm_regs, kvm_vcpu_events, kvm_vcpu_init, user_pt_regs, KVM_ARM_VCPU_EL1_32BIT, KVM_REG_ARM64, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64};
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
    }
}
