//! Hypervisor policy profiles: what a given hypervisor promises to do with each trap the
//! architecture hands it. Data plus small functions; add a kernel release by adding a const.
//!
//! Every field cites where the behaviour comes from. The architecture layer (`rules`) decides
//! *that* a stage-2 fault happens and what its syndrome is; a profile decides what the VMM and
//! the guest then see.

/// What a hypervisor does with a stage-2 data abort that no memslot can satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmoOutsideMemory {
    /// Retire the CMO as if it had completed (the guest sees nothing).
    Skip,
    /// Treat it like any other no-syndrome abort.
    AsNisv,
}

/// What a hypervisor does with a stage-2 fault whose fault status it does not handle
/// (alignment faults on a stage-2 Device mapping, for example).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnhandledS2Fault {
    /// KVM_RUN fails with this errno.
    RunError(i32),
    /// The hypervisor injects a synchronous external abort into the guest.
    InjectAbort,
}

/// A hypervisor policy profile.
#[derive(Debug)]
pub struct Profile {
    /// Name used on the command line (`--policy`) and in outcomes (`meta.policy`).
    pub name: &'static str,
    /// One line: what this profile describes and where it comes from.
    pub summary: &'static str,
    /// HCR_EL2.FWB: the hypervisor maps stage 2 with forced write-back where the CPU has
    /// FEAT_S2FWB (Linux: `stage2_has_fwb()`, arch/arm64/kvm/hyp/pgtable.c; QEMU `-cpu max`
    /// implements FEAT_S2FWB).
    pub fwb: bool,
    /// Read-only memslot pages are mapped at stage 2 only after a first read or fetch touches
    /// them (Linux: user_mem_abort() maps on demand), so a CMO to an untouched page takes a
    /// stage-2 translation fault.
    pub lazy_s2: bool,
    /// A CMO whose stage-2 fault lands outside every memslot.
    pub cmo_outside_memory: CmoOutsideMemory,
    /// A stage-2 alignment fault (Device at stage 2).
    pub s2_alignment: UnhandledS2Fault,
    /// errno of KVM_RUN for a no-syndrome abort when NISV-to-user is off.
    pub nisv_errno: i32,
    /// When the VMM injects an abort after an MMIO exit, the faulting instruction is retired
    /// first (the PC advances and a load writes its register) before the abort is taken.
    pub mmio_abort_retires: bool,
    /// Bits of ESR_EL2 that reach userspace in `kvm_run.arm_nisv.esr_iss`.
    pub nisv_iss_mask: u64,
    /// A write to a read-only memslot with a valid syndrome is an MMIO exit.
    pub ro_write_is_mmio: bool,
    /// The hypervisor implements PSCI and SMCCC discovery calls over HVC (whose results the
    /// model does not predict); other function IDs get SMCCC_RET_NOT_SUPPORTED.
    pub psci: bool,
    /// An unsupported HVC also zeroes x1..x3 (r1..r3).
    pub hvc_clears_x1_x3: bool,
}

const ENOSYS: i32 = 38;
const EFAULT: i32 = 14;

/// ESR_ELx.CM | ESR_ELx.WnR | ESR_ELx.FSC (arch/arm64/include/asm/esr.h).
const NISV_SANITIZED: u64 = (1 << 8) | (1 << 6) | 0x3f;

/// The default guest kernel's KVM: Debian 12's 6.1.y (stable fixes included).
pub const LINUX_6_1: Profile = Profile {
    name: "linux-6.1",
    summary: "KVM/arm64 in Linux 6.1.y (arch/arm64/kvm/mmu.c kvm_handle_guest_abort, mmio.c io_mem_abort; api.rst 4.1 KVM_EXIT_MMIO, KVM_EXIT_ARM_NISV, 7.19 KVM_CAP_ARM_NISV_TO_USER)",
    // arch/arm64/kvm/hyp/pgtable.c: stage2_has_fwb() -> cpus_have_const_cap(ARM64_HAS_STAGE2_FWB).
    fwb: true,
    // arch/arm64/kvm/mmu.c user_mem_abort(): pages are mapped at fault time.
    lazy_s2: true,
    // mmu.c kvm_handle_guest_abort(): "if (kvm_is_error_hva(hva) && kvm_vcpu_dabt_is_cm(vcpu)) { kvm_incr_pc(vcpu); ... }".
    cmo_outside_memory: CmoOutsideMemory::Skip,
    // mmu.c kvm_handle_guest_abort(): FSC not translation/permission/access -> "Unsupported FSC", return -EFAULT.
    s2_alignment: UnhandledS2Fault::RunError(EFAULT),
    // mmio.c io_mem_abort(): "Data abort outside memslots with no valid syndrome info", return -ENOSYS.
    nisv_errno: ENOSYS,
    // e735a5da6442 "KVM: arm64: Don't retire aborted MMIO instruction", in 6.1.y as ea6b5d98fea4.
    mmio_abort_retires: false,
    // kvm_emulate.h kvm_vcpu_dabt_iss_nisv_sanitized(): esr & (ESR_ELx_CM | ESR_ELx_WNR | ESR_ELx_FSC).
    nisv_iss_mask: NISV_SANITIZED,
    // api.rst 4.35 KVM_SET_USER_MEMORY_REGION: "writes [to a KVM_MEM_READONLY slot] will be posted to userspace as KVM_EXIT_MMIO exits".
    ro_write_is_mmio: true,
    // hypercalls.c kvm_hvc_call_handler() -> psci.c kvm_psci_call(): PSCI 1.1 and SMCCC 1.1.
    psci: true,
    // psci.c kvm_psci_0_2_call(): "val = PSCI_RET_NOT_SUPPORTED" then smccc_set_retval(vcpu, val, 0, 0, 0).
    hvc_clears_x1_x3: true,
};

/// What the in-repo refhyp implements (oracles/refhyp/src/policy.rs, its rule table). It
/// follows Linux 6.1 wherever Linux's choice is a promise to userspace, so that a
/// refhyp-vs-KVM divergence points at KVM; like KVM it fills stage 2 lazily (runner.rs
/// `Decision::MapPage`). Where it differs: no PSCI, and HVC writes x0 only.
pub const REFERENCE: Profile = Profile {
    name: "reference",
    summary: "the refhyp (oracles/refhyp/src/policy.rs): Linux 6.1 promises, lazy stage 2, no PSCI",
    // oracles/refhyp/src/el2/mod.rs: `fwb = cpu::has_s2fwb()`; QEMU -cpu max has FEAT_S2FWB.
    fwb: true,
    // oracles/refhyp/src/runner.rs: only the runtime's slot is mapped up front; a case's pages
    // are mapped on their first stage-2 fault (policy.rs "map the page ... lazily, as KVM does").
    lazy_s2: true,
    cmo_outside_memory: CmoOutsideMemory::Skip,
    s2_alignment: UnhandledS2Fault::RunError(EFAULT),
    nisv_errno: ENOSYS,
    mmio_abort_retires: false,
    nisv_iss_mask: NISV_SANITIZED,
    ro_write_is_mmio: true,
    // oracles/refhyp/src/policy.rs: "HVC / SMC: SMCCC not supported (x0 = -1) ... the refhyp
    // implements no PSCI"; runner.rs writes x0 only.
    psci: false,
    hvc_clears_x1_x3: false,
};

/// Every profile, default first.
pub const PROFILES: &[&Profile] = &[&LINUX_6_1, &REFERENCE];

/// The profile called `name`.
pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().copied().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_resolve_and_are_unique() {
        assert_eq!(profile("linux-6.1").map(|p| p.fwb), Some(LINUX_6_1.fwb));
        assert_eq!(profile("reference").map(|p| p.lazy_s2), Some(true));
        assert!(profile("linux-9.9").is_none());
        for (i, p) in PROFILES.iter().enumerate() {
            assert!(PROFILES[..i].iter().all(|q| q.name != p.name));
        }
    }
    #[test]
    fn nisv_mask_keeps_only_cm_wnr_fsc() {
        // A DC CIVAC stage-2 translation fault at level 3: CM, WnR, FSC 0x07 survive; ISV/SAS don't.
        let esr_iss: u64 = (1 << 24) | (3 << 22) | (1 << 8) | (1 << 6) | 0x07;
        assert_eq!(esr_iss & LINUX_6_1.nisv_iss_mask, 0x147);
    }
}
