//! Quirks: historical KVM/arm64 bugs the refhyp can re-introduce on request.
//!
//! A conformance suite is only as good as the bugs it catches. Each quirk makes the refhyp
//! behave like KVM did before one fix; `trapdiff quirks` runs the curated suite with each one
//! on and reports which cases catch it (a mutation check of the suite). Quirks are off unless
//! asked for (`--quirk NAME`); the refhyp implements them (oracles/refhyp/src/policy.rs,
//! runner.rs, fp.rs, guest_mem.rs), the harness names and selects them, the KVM agent
//! ignores them.

use serde::{Deserialize, Serialize};

/// One historical bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Quirk {
    /// FPEXC32_EL2.EN forced on every guest entry, also while the guest's FP state is live.
    FpexcEagerEn = 0,
    /// CMOs (ESR.CM=1) that fault on a read-only memslot are skipped.
    SkipCmoRoMemslot = 1,
    /// Device slots are mapped Device-nGnRE at stage 2 even where the VMM asked for Normal-NC.
    DeviceS2AlwaysNGnRE = 2,
    /// An access that exited to the VMM (KVM_EXIT_MMIO) is retired although the VMM answered
    /// with an external abort.
    NisvRetireInstruction = 3,
    /// Every stage-1 walk that faults on a read-only memslot is a write fault.
    S1ptwRoAsWrite = 4,
    /// `arm_nisv.esr_iss` carries the whole ESR_EL2 instead of the sanitised bits.
    NisvEsrUnmasked = 5,
}

/// What a quirk is and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct QuirkInfo {
    pub quirk: Quirk,
    /// The name users type (`--quirk NAME`).
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// What the buggy hypervisor does.
    pub behaviour: &'static str,
    /// The fix: `<sha> ("subject")`, or the document the behaviour breaks.
    pub fix: &'static str,
    /// Kernel release that first had the fix.
    pub fixed_in: &'static str,
    /// Why no backend under QEMU TCG can observe the quirk, if none can (the refhyp only
    /// runs under QEMU): the mutation check reports it as blind there, not as a suite hole.
    pub tcg_blind: Option<&'static str>,
}

/// Every quirk, in [`Quirk`] order.
pub const QUIRKS: [QuirkInfo; 6] = [
    QuirkInfo {
        quirk: Quirk::FpexcEagerEn,
        name: "fpexc-eager-en",
        aliases: &[],
        behaviour: "sets FPEXC32_EL2.EN on every entry, also while the AArch32 guest's FP state is loaded: an exit the guest does not see (a stage-2 fault, an HVC) overwrites the guest's FPEXC",
        fix: "\"arm64: KVM: Only force FPEXC32_EL2.EN if trapping FPSIMD\" (Marc Zyngier)",
        fixed_in: "2018",
        tcg_blind: None,
    },
    QuirkInfo {
        quirk: Quirk::SkipCmoRoMemslot,
        name: "skip-cmo-ro-memslot",
        aliases: &[],
        behaviour: "skips a cache maintenance instruction (ESR.CM=1) that faults on a read-only memslot, as if it were outside every memslot",
        fix: "54dc0d2404dd (\"KVM: arm64: Don't skip cache maintenance for read-only memslots\")",
        fixed_in: "v5.9",
        tcg_blind: None,
    },
    QuirkInfo {
        quirk: Quirk::DeviceS2AlwaysNGnRE,
        name: "device-s2-always-nGnRE",
        aliases: &["device-s2-always-ngnre"],
        behaviour: "maps device memory at stage 2 as Device-nGnRE even where the VMM asked for Normal-NC",
        fix: "8c47ce3e1d2c (\"KVM: arm64: Set io memory s2 pte as normalnc for vfio pci device\")",
        fixed_in: "v6.9",
        tcg_blind: Some(
            "QEMU TCG takes no alignment fault for a stage-2 Device memory type (only for stage 1), and the stage-2 type changes nothing else a guest can see there; e.g. devmem/a64-el1-ldr-wb-s2dev-unaligned-a0 completes under TCG where the architecture faults",
        ),
    },
    QuirkInfo {
        quirk: Quirk::NisvRetireInstruction,
        name: "nisv-retire-instruction",
        aliases: &["mmio-abort-retire-instruction"],
        behaviour: "retires the access when the VMM answers its KVM_EXIT_MMIO with an external abort (KVM_SET_VCPU_EVENTS): the abort's ELR points past the access",
        fix: "e735a5da6442 (\"KVM: arm64: Don't retire aborted MMIO instruction\")",
        fixed_in: "v6.13",
        tcg_blind: None,
    },
    QuirkInfo {
        quirk: Quirk::S1ptwRoAsWrite,
        name: "s1ptw-ro-as-write",
        aliases: &[],
        behaviour: "treats every stage-1 page-table walk that faults on a read-only memslot as a write, so guest page tables in a read-only memslot get an external abort instead of being mapped",
        fix: "406504c7b040 (\"KVM: arm64: Fix S1PTW handling on RO memslots\")",
        fixed_in: "v6.2",
        tcg_blind: None,
    },
    QuirkInfo {
        quirk: Quirk::NisvEsrUnmasked,
        name: "nisv-esr-unmasked",
        aliases: &[],
        behaviour: "passes the whole ESR_EL2 (EC, IL and every ISS bit) in arm_nisv.esr_iss instead of the sanitised bits api.rst promises",
        fix: "api.rst \"KVM_EXIT_ARM_NISV\" (sanitised ESR_EL2, since c726200dd106 \"KVM: arm/arm64: Allow reporting non-ISV data aborts to userspace\")",
        fixed_in: "v5.5",
        tcg_blind: None,
    },
];

impl Quirk {
    pub fn info(self) -> &'static QuirkInfo {
        &QUIRKS[self as usize]
    }
    pub fn name(self) -> &'static str {
        self.info().name
    }
    /// The quirk called `name` (or one of its aliases).
    pub fn from_name(name: &str) -> Option<Quirk> {
        QUIRKS.iter().find(|q| q.name == name || q.aliases.contains(&name)).map(|q| q.quirk)
    }
}

/// A set of quirks, as the refhyp receives it in each job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quirks(pub u32);

impl Quirks {
    pub const NONE: Quirks = Quirks(0);
    pub fn has(self, q: Quirk) -> bool {
        self.0 & (1 << q as u32) != 0
    }
    pub fn with(self, q: Quirk) -> Quirks {
        Quirks(self.0 | 1 << q as u32)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Quirk> {
        QUIRKS.iter().map(|i| i.quirk).filter(move |q| self.has(*q))
    }
}

impl From<Quirk> for Quirks {
    fn from(q: Quirk) -> Quirks {
        Quirks::NONE.with(q)
    }
}

impl FromIterator<Quirk> for Quirks {
    fn from_iter<I: IntoIterator<Item = Quirk>>(it: I) -> Quirks {
        it.into_iter().fold(Quirks::NONE, Quirks::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_names_are_unique() {
        for (i, q) in QUIRKS.iter().enumerate() {
            assert_eq!(q.quirk as usize, i, "{}", q.name);
            assert_eq!(Quirk::from_name(q.name), Some(q.quirk));
            for a in q.aliases {
                assert_eq!(Quirk::from_name(a), Some(q.quirk));
            }
        }
        let mut names: alloc::vec::Vec<&str> = QUIRKS.iter().flat_map(|q| core::iter::once(q.name).chain(q.aliases.iter().copied())).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(Quirk::from_name("no-such-quirk"), None);
    }

    #[test]
    fn sets() {
        let s: Quirks = [Quirk::NisvEsrUnmasked, Quirk::FpexcEagerEn].into_iter().collect();
        assert!(s.has(Quirk::FpexcEagerEn) && s.has(Quirk::NisvEsrUnmasked) && !s.has(Quirk::S1ptwRoAsWrite));
        assert_eq!(s.iter().collect::<alloc::vec::Vec<_>>(), [Quirk::FpexcEagerEn, Quirk::NisvEsrUnmasked]);
        assert!(Quirks::NONE.is_empty());
    }
}
