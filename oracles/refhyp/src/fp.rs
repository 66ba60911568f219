//! Lazy FP/SIMD context switching, KVM's way.
//!
//! The guest's FP registers are loaded into the CPU only when the guest first touches them:
//! CPTR_EL2.TFP traps the access, the refhyp loads the state and clears TFP
//! (`kvm_hyp_handle_fpsimd`, arch/arm64/kvm/hyp/include/hyp/switch.h). They are saved and
//! trapping resumes when the vCPU returns to the VMM (`kvm_arch_vcpu_put_fp`), which is what an
//! MMIO or NISV exit is here: every such exit forces an FP context switch, as under KVM.
//!
//! AArch32 guests: an FP access is only trapped to EL2 if it would not first trap to EL1, and
//! FPEXC.EN=0 makes it UNDEFINED at EL1. So while trapping, FPEXC32_EL2 is forced to EN=1
//! (`__activate_traps_fpsimd32`), and the guest's own FPEXC is kept in the vCPU state and
//! written back when the FP state is loaded. It is forced only while trapping — commit
//! "arm64: KVM: Only force FPEXC32_EL2.EN if trapping FPSIMD" (2018) fixed KVM clobbering the
//! guest's live FPEXC on every entry — and the register is read back into the vCPU state on
//! exit only while the guest's state is loaded (`__sysreg32_save_state`).

/// FPEXC.EN.
pub const FPEXC_EN: u64 = 1 << 30;
/// FPEXC32_EL2's value after a vCPU reset (KVM `sys_reg_descs`: reset_val(FPEXC32_EL2, 0x700)).
pub const FPEXC32_RESET: u64 = 0x700;

/// The guest's FP/SIMD state while it is not in the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpState {
    pub v: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
    /// The guest's FPEXC (AArch32 guests only).
    pub fpexc32: u64,
}

impl Default for FpState {
    fn default() -> FpState {
        FpState { v: [0; 32], fpcr: 0, fpsr: 0, fpexc32: FPEXC32_RESET }
    }
}

/// Where the guest's FP state is.
#[derive(Clone, Debug, Default)]
pub struct LazyFp {
    pub state: FpState,
    /// The state is in the CPU (TFP clear).
    pub loaded: bool,
    /// Times the state was loaded (each one a trap), for reports and tests.
    pub loads: u32,
}

/// What to program before entering the guest: (CPTR_EL2.TFP, value to force into FPEXC32_EL2).
/// `eager_en` is the quirk `fpexc-eager-en`: EN forced on every entry, also over the guest's
/// live FPEXC (KVM before "arm64: KVM: Only force FPEXC32_EL2.EN if trapping FPSIMD").
pub fn entry_config(loaded: bool, aarch32: bool, eager_en: bool) -> (bool, Option<u64>) {
    if loaded {
        (false, (aarch32 && eager_en).then_some(FPEXC_EN))
    } else {
        (true, aarch32.then_some(FPEXC_EN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn fpexc_is_forced_only_while_trapping_aarch32() {
        assert_eq!(entry_config(false, true, false), (true, Some(FPEXC_EN)));
        assert_eq!(entry_config(false, false, false), (true, None));
        assert_eq!(entry_config(true, true, false), (false, None));
        // The quirk clobbers the live FPEXC too, AArch32 guests only.
        assert_eq!(entry_config(true, true, true), (false, Some(FPEXC_EN)));
        assert_eq!(entry_config(true, false, true), (false, None));
    }
}
