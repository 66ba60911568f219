//! Known divergences, one matcher for two uses:
//! - **waivers** (`corpus/waivers.json`): accepted limitations of the platform the live
//!   backends ran on (QEMU TCG), verdict `waived`;
//! - **known issues** (`corpus/known-issues.json`): documented bugs of released kernels,
//!   verdict `known`, and a regression when the divergence comes back on a kernel at or past
//!   the fix.
//!
//! An entry covers a divergence by its *class* (what the case does: instructions, memory
//! types, what the model predicts), the backend pair, the fields (glob patterns, optionally a
//! relation between the two values) and its conditions (under QEMU, kernel versions), or, in
//! the exact form, by case name. A field an entry does not cover still diverges. Entries
//! that met a case of their class and covered nothing are reported unused.

use std::path::Path;

use serde::{Deserialize, Serialize};
use trapdiff_arch::case::{Isa, RegionKind};
use trapdiff_arch::esr::{Esr, Fsc};
use trapdiff_arch::outcome::{Event, Vector};
use trapdiff_arch::{Case, Outcome};

use crate::diff::FieldDiff;

/// What accepting a divergence means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A limitation of the test platform: the divergence says nothing about the hypervisor.
    Waiver,
    /// A documented bug of the kernels in `kernel`: reported as `known`, not as new.
    Issue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// Short stable name (`tcg-dczva-device-no-alignment-fault`); reports cite it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Exact case name (the per-case form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// The divergence class: every predicate given must hold for the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    /// Backend pairs; a pair matches in either order, but `relation` reads the values as
    /// (first, second) of the pair as written.
    pub backends: Vec<[String; 2]>,
    /// Outcome field paths as `diff::compare` spells them; `*` matches any run of characters
    /// (`events[*].syndrome`, `state.*`).
    pub fields: Vec<String>,
    /// How the two values must relate for the entry to cover a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<Relation>,
    /// Applies only when the live backends ran under QEMU TCG (a TCG limitation must not
    /// hide a divergence on real silicon).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_under_qemu: bool,
    /// Known issues: the kernels that have the bug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelRange>,
    pub reason: String,
    /// Where the behaviour is documented (QEMU source, api.rst section, commit).
    pub reference: String,
}

/// Case predicates of a divergence class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// The case's instruction set is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isa: Vec<Isa>,
    /// Some instruction of the case matches one of these (see [`asm_matches`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insn: Vec<String>,
    /// A data region of the case has this memory type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryClass>,
    /// The model predicts one of these faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_fault: Vec<FaultClass>,
    /// These CPACR bits are set in the case's sysregs (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpacr_set: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryClass {
    /// Device memory at stage 1 (any Device-* MAIR type) or stage 2 (a `device` region).
    Device,
    /// No memslot: accesses exit to the VMM.
    Mmio,
    /// A read-only memslot.
    RoRam,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// An AArch64 data or instruction abort with FSC = alignment fault (0b100001, Arm ARM
    /// ESR_ELx ISS encoding for a Data/Instruction Abort, DFSC/IFSC) taken by the guest.
    Alignment,
    /// An alignment fault at stage 2, which KVM does not forward: the model's run ends in
    /// KVM_RUN -EFAULT ("Unsupported FSC", arch/arm64/kvm/mmu.c kvm_handle_guest_abort) on a
    /// case with Device memory at stage 2.
    Stage2Alignment,
    /// An abort the hypervisor injects at the VMM's request: a guest data abort right after an
    /// MMIO or NISV exit (Documentation/virt/kvm/api.rst, KVM_SET_VCPU_EVENTS: ext_dabt_pending; KVM then enters
    /// the guest at its abort vector: arch/arm64/kvm/hyp/exception.c).
    Injected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The first value is the second truncated to 8, 16 or 32 bits (a lost sign extension).
    ZeroExtended,
    /// The first value is the second with bits [63:32] all set (a sign-extended 32-bit
    /// shift stored into a 64-bit register).
    UpperHalfSet,
}

/// Kernel versions (`major.minor[.patch]`, compared numerically) an issue affects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRange {
    /// First affected version (default: every version before `fixed_in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// First version with the fix; the divergence on it or later is a regression. Absent:
    /// not fixed in any kernel we know of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_in: Option<String>,
    /// The fixing commit, when known (for people; the version decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// `6.12.118+deb12-arm64` -> (6, 12, 118); `6.1.0-56-arm64` -> (6, 1, 0). Debian's ABI
/// releases carry no sublevel, so ranges are best written at minor granularity.
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let head: String = s.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut it = head.split('.').filter(|p| !p.is_empty()).map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next()?.ok()?;
    let patch = it.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether one instruction's disassembly matches a pattern: both normalised
/// (`guest_payloads::encode::normalise`), `*` matching any run of characters (`dc zva*`,
/// `mcr p15, 0, *, c7, c14, 1`). The pattern is anchored at both ends.
pub fn asm_matches(asm: &str, pattern: &str) -> bool {
    use guest_payloads::encode::normalise;
    glob(&normalise(pattern), &normalise(asm))
}

/// `*`-only glob, anchored.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

impl Class {
    pub fn covers(&self, case: &Case, model: Option<&Outcome>) -> bool {
        if !self.isa.is_empty() && !self.isa.contains(&case.state.isa) {
            return false;
        }
        if !self.insn.is_empty() && !case.code.insns.iter().any(|i| self.insn.iter().any(|p| asm_matches(&i.asm, p))) {
            return false;
        }
        if let Some(m) = self.memory {
            let data = case.memory.iter().filter(|r| r.ipa != case.code.ipa);
            let hit = |r: &trapdiff_arch::case::Region| match m {
                MemoryClass::Device => r.kind == RegionKind::Device || r.s1.as_ref().is_some_and(|s| s.attr.is_device()),
                MemoryClass::Mmio => r.kind == RegionKind::Mmio,
                MemoryClass::RoRam => r.kind == RegionKind::RoRam,
            };
            if !data.into_iter().any(hit) {
                return false;
            }
        }
        if let Some(bits) = &self.cpacr_set {
            let bits = hex(bits).unwrap_or(u64::MAX);
            if case.sysregs.cpacr.is_none_or(|c| c & bits != bits) {
                return false;
            }
        }
        if !self.model_fault.is_empty() && !self.model_fault.iter().any(|f| f.predicted(case, model)) {
            return false;
        }
        true
    }
}

impl FaultClass {
    fn predicted(self, case: &Case, model: Option<&Outcome>) -> bool {
        let Some(model) = model else { return false };
        match self {
            FaultClass::Alignment => {
                let aligned = |e: &Event| match e {
                    Event::Exception { vector: Vector::Sync, syndrome, .. } => {
                        let esr = Esr(*syndrome);
                        esr.data_abort().is_some_and(|d| d.dfsc() == Fsc::ALIGNMENT)
                            || (matches!(esr.ec(), trapdiff_arch::esr::Ec::IABT_LOW | trapdiff_arch::esr::Ec::IABT_CUR)
                                && esr.iss() & 0x3f == u32::from(Fsc::ALIGNMENT.0))
                    }
                    _ => false,
                };
                model.events.iter().any(aligned)
            }
            FaultClass::Stage2Alignment => {
                // include/uapi/asm-generic/errno-base.h: EFAULT = 14.
                matches!(model.end, trapdiff_arch::outcome::End::RunError { errno: 14 }) && case.memory.iter().any(|r| r.kind == RegionKind::Device)
            }
            FaultClass::Injected => {
                let abort = |e: &Event| match e {
                    Event::Exception { vector: Vector::DataAbort, .. } => true,
                    Event::Exception { vector: Vector::Sync, syndrome, .. } => Esr(*syndrome).data_abort().is_some(),
                    _ => false,
                };
                model.events.windows(2).any(|w| matches!(w[0], Event::Mmio { .. } | Event::Nisv { .. }) && abort(&w[1]))
            }
        }
    }
}

/// Where an entry stands for one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KernelFit {
    /// No kernel condition, or the kernel is in the affected range.
    Applies,
    /// The kernel is at or past the fix: the divergence is a regression.
    Fixed,
    /// Before `from`, or no kernel version to check against.
    Outside,
}

impl Known {
    fn pair(&self, a: &str, b: &str) -> Option<bool> {
        // Some(false): in the written order; Some(true): swapped.
        self.backends.iter().find_map(|[x, y]| {
            if x == a && y == b {
                Some(false)
            } else if x == b && y == a {
                Some(true)
            } else {
                None
            }
        })
    }

    /// The case side of the match: name or class.
    pub fn covers_case(&self, case: &Case, model: Option<&Outcome>) -> bool {
        self.case.as_ref().is_none_or(|n| *n == case.name) && self.class.as_ref().is_none_or(|c| c.covers(case, model))
    }

    /// Whether the entry can apply on this kernel (always, without a kernel condition).
    pub fn applies_to_kernel(&self, kernel: Option<&str>) -> bool {
        self.kernel_fit(kernel) == KernelFit::Applies
    }

    fn kernel_fit(&self, kernel: Option<&str>) -> KernelFit {
        let Some(range) = &self.kernel else { return KernelFit::Applies };
        let Some(v) = kernel.and_then(parse_version) else { return KernelFit::Outside };
        if range.from.as_deref().and_then(parse_version).is_some_and(|f| v < f) {
            return KernelFit::Outside;
        }
        if range.fixed_in.as_deref().and_then(parse_version).is_some_and(|f| v >= f) {
            return KernelFit::Fixed;
        }
        KernelFit::Applies
    }

    fn covers_field(&self, f: &FieldDiff, swapped: bool) -> bool {
        if !self.fields.iter().any(|p| glob(p, &f.field)) {
            return false;
        }
        let Some(rel) = self.relation else { return true };
        let (first, second) = if swapped { (&f.right, &f.left) } else { (&f.left, &f.right) };
        match (hex(first), hex(second)) {
            (Some(x), Some(y)) => match rel {
                Relation::ZeroExtended => x != y && [0xff, 0xffff, 0xffff_ffff].iter().any(|m| x == y & m),
                Relation::UpperHalfSet => x != y && x == y | 0xffff_ffff_0000_0000,
            },
            _ => false,
        }
    }

    /// A one-line name for reports.
    pub fn label(&self) -> String {
        if !self.id.is_empty() {
            return self.id.clone();
        }
        let pairs: Vec<String> = self.backends.iter().map(|[a, b]| format!("{a} vs {b}")).collect();
        format!("{} [{}] {}", self.case.as_deref().unwrap_or("(class)"), pairs.join(", "), self.fields.join(", "))
    }
}

/// A case and what the run knows about it, for matching.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub case: &'a Case,
    pub model: Option<&'a Outcome>,
    pub under_qemu: bool,
}

/// The result of matching one pair's differing fields.
#[derive(Debug, Default)]
pub struct Applied {
    /// Fields no entry covers.
    pub left: Vec<FieldDiff>,
    /// Covered fields with the index of the entry (into [`KnownList::entries`]).
    pub covered: Vec<(FieldDiff, usize)>,
    /// Entries (indices) whose divergence is back on a kernel at or past their fix.
    pub regressions: Vec<usize>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    waivers: Vec<Known>,
    #[serde(default)]
    issues: Vec<Known>,
}

/// Every entry of the waiver and known-issue files.
#[derive(Clone, Debug, Default)]
pub struct KnownList {
    pub entries: Vec<(Kind, Known)>,
}

impl KnownList {
    /// Load `corpus/waivers.json` and `corpus/known-issues.json` (either may be missing);
    /// a malformed file or entry is an error naming the place.
    pub fn load(waivers: &Path, issues: &Path) -> Result<KnownList, String> {
        let mut list = KnownList::default();
        for (path, kind) in [(waivers, Kind::Waiver), (issues, Kind::Issue)] {
            let file: File = match std::fs::read_to_string(path) {
                Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            for k in file.waivers.into_iter().chain(file.issues) {
                list.push(kind, k).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(list)
    }

    /// Add one entry after checking it can only match what it says.
    pub fn push(&mut self, kind: Kind, k: Known) -> Result<(), String> {
        let name = k.label();
        if k.case.is_none() && k.class.is_none() {
            return Err(format!("{name}: names neither a case nor a class: it would cover every case"));
        }
        if k.backends.is_empty() || k.fields.is_empty() {
            return Err(format!("{name}: needs backend pairs and fields"));
        }
        if k.class.is_some() && k.id.is_empty() {
            return Err("a class entry needs an `id` that reports can cite".into());
        }
        if kind == Kind::Issue && (k.class.is_none() || k.kernel.is_none()) {
            return Err(format!("{name}: a known issue names its divergence by class (not by case name alone) and the kernels it affects"));
        }
        if let Some(c) = k.class.as_ref().and_then(|c| c.cpacr_set.as_ref()) {
            hex(c).ok_or(format!("{name}: cpacr_set {c:?} is not hex"))?;
        }
        if let Some(r) = &k.kernel {
            for v in [&r.from, &r.fixed_in].into_iter().flatten() {
                parse_version(v).ok_or(format!("{name}: kernel version {v:?} is not major.minor[.patch]"))?;
            }
        }
        self.entries.push((kind, k));
        Ok(())
    }

    /// Split one pair's differing fields into covered and left, for kernel `kernel` (the
    /// live side's `meta.kernel`).
    pub fn apply(&self, s: &Subject, a: &str, b: &str, kernel: Option<&str>, fields: Vec<FieldDiff>) -> Applied {
        let mut out = Applied::default();
        // Entries that fit this case and pair, with their kernel fit.
        let fitting: Vec<(usize, bool, KernelFit)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (_, k))| s.under_qemu || !k.only_under_qemu)
            .filter_map(|(i, (_, k))| k.pair(a, b).map(|sw| (i, sw, k)))
            .filter(|(_, _, k)| k.covers_case(s.case, s.model))
            .map(|(i, sw, k)| (i, sw, k.kernel_fit(kernel)))
            .filter(|(_, _, fit)| *fit != KernelFit::Outside)
            .collect();
        for f in fields {
            let hit = |want: KernelFit| fitting.iter().find(|(i, sw, fit)| *fit == want && self.entries[*i].1.covers_field(&f, *sw)).map(|(i, _, _)| *i);
            if let Some(i) = hit(KernelFit::Applies) {
                out.covered.push((f, i));
            } else {
                if let Some(i) = hit(KernelFit::Fixed) {
                    if !out.regressions.contains(&i) {
                        out.regressions.push(i);
                    }
                }
                out.left.push(f);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;

    fn fd(field: &str, l: &str, r: &str) -> FieldDiff {
        FieldDiff { field: field.into(), left: l.into(), right: r.into() }
    }

    fn case(asm: &str) -> Case {
        let mut c: Case = serde_json::from_str(include_str!("../../corpus/suite/devmem/a64-el1-dczva-gre-ram-aligned-a0.json")).unwrap();
        c.code.insns[0].asm = asm.into();
        c
    }

    fn per_case() -> Known {
        Known {
            id: String::new(),
            case: Some("devmem/a64-el1-dczva-gre-ram-aligned-a0".into()),
            class: None,
            backends: vec![["kvm".into(), "model".into()]],
            fields: vec!["events[0].far".into()],
            relation: None,
            only_under_qemu: true,
            kernel: None,
            reason: "r".into(),
            reference: "ref".into(),
        }
    }

    #[test]
    fn an_injected_abort_is_an_exception_right_after_an_exit() {
        let c = case("dc zva, x1");
        let exc = Event::Exception { vector: Vector::DataAbort, from_el0: false, syndrome: 0x210, far: Some(0x5000_0040), pc: 0x4000_0000, bad_spsr: None };
        let nisv = Event::Nisv { esr_iss: 0x147, ipa: 0x5000_0040 };
        let with = |events: Vec<Event>| Outcome { events, ..Outcome::default() };
        assert!(FaultClass::Injected.predicted(&c, Some(&with(vec![nisv.clone(), exc.clone()]))));
        assert!(!FaultClass::Injected.predicted(&c, Some(&with(vec![exc.clone()]))), "a fault the guest takes itself");
        let undef = Event::Exception { vector: Vector::Undef, from_el0: false, syndrome: 0, far: None, pc: 0x4000_0004, bad_spsr: None };
        assert!(!FaultClass::Injected.predicted(&c, Some(&with(vec![nisv.clone(), undef]))), "an UNDEF after an exit is the guest's own");
        assert!(!FaultClass::Injected.predicted(&c, Some(&with(vec![exc, nisv]))));
        assert!(!FaultClass::Injected.predicted(&c, None));
    }

    #[test]
    fn the_exact_form_hides_only_its_own_field_case_and_pair() {
        let mut l = KnownList::default();
        l.push(Kind::Waiver, per_case()).unwrap();
        let c = case("dc zva, x1");
        let s = Subject { case: &c, model: None, under_qemu: true };
        let r = l.apply(&s, "model", "kvm", None, vec![fd("events[0].far", "1", "2"), fd("events[0].pc", "1", "2")]);
        assert_eq!(r.covered.len(), 1);
        assert_eq!(r.left, vec![fd("events[0].pc", "1", "2")]);
        assert!(l.apply(&s, "model", "refhyp", None, vec![fd("events[0].far", "1", "2")]).covered.is_empty());
        let mut other = c.clone();
        other.name = "devmem/other".into();
        assert!(l.apply(&Subject { case: &other, ..s }, "model", "kvm", None, vec![fd("events[0].far", "1", "2")]).covered.is_empty());
        // A TCG-only waiver does not apply on silicon.
        assert!(l.apply(&Subject { under_qemu: false, ..s }, "model", "kvm", None, vec![fd("events[0].far", "1", "2")]).covered.is_empty());
    }

    #[test]
    fn a_class_covers_every_case_that_fits_and_nothing_else() {
        let mut k = per_case();
        k.case = None;
        k.id = "tcg-dczva".into();
        k.class = Some(Class { insn: vec!["dc zva*".into()], memory: Some(MemoryClass::Device), ..Class::default() });
        k.fields = vec!["events*".into(), "state.*".into()];
        let mut l = KnownList::default();
        l.push(Kind::Waiver, k).unwrap();
        let c = case("dc zva, x1");
        let s = Subject { case: &c, model: None, under_qemu: true };
        let r = l.apply(&s, "kvm", "model", None, vec![fd("events.len", "1", "2"), fd("state.regs.x0", "1", "2"), fd("end.kind", "a", "b")]);
        assert_eq!(r.covered.len(), 2);
        assert_eq!(r.left, vec![fd("end.kind", "a", "b")], "a field outside the class's fields still diverges");
        // Another instruction is outside the class.
        let c2 = case("dc civac, x1");
        assert!(l.apply(&Subject { case: &c2, ..s }, "kvm", "model", None, vec![fd("events.len", "1", "2")]).covered.is_empty());
        // Normal memory is outside the class.
        let mut c3 = case("dc zva, x1");
        c3.memory[1].s1 = None;
        assert!(l.apply(&Subject { case: &c3, ..s }, "kvm", "model", None, vec![fd("events.len", "1", "2")]).covered.is_empty());
    }

    #[test]
    fn a_known_issue_applies_to_its_kernels_and_is_a_regression_past_the_fix() {
        let k = Known {
            id: "kvm-esr-upper".into(),
            case: None,
            class: Some(Class { insn: vec!["dc zva*".into()], ..Class::default() }),
            backends: vec![["kvm".into(), "model".into()]],
            fields: vec!["events[*].syndrome".into()],
            relation: Some(Relation::UpperHalfSet),
            only_under_qemu: false,
            kernel: Some(KernelRange { from: Some("5.17".into()), fixed_in: Some("6.12".into()), fix: None }),
            reason: "r".into(),
            reference: "ref".into(),
        };
        let mut l = KnownList::default();
        l.push(Kind::Issue, k.clone()).unwrap();
        let c = case("dc zva, x1");
        let s = Subject { case: &c, model: None, under_qemu: true };
        // Written as (kvm, model); the diff may list the pair the other way round.
        let f = || vec![fd("events[1].syndrome", "0x96000010", "0xffffffff96000010")];
        let on61 = l.apply(&s, "model", "kvm", Some("6.1.0-56-arm64"), f());
        assert_eq!((on61.covered.len(), on61.left.len(), on61.regressions.len()), (1, 0, 0));
        let on612 = l.apply(&s, "model", "kvm", Some("6.12.118+deb12-arm64"), f());
        assert_eq!((on612.covered.len(), on612.left.len(), on612.regressions), (0, 1, vec![0]));
        let before = l.apply(&s, "model", "kvm", Some("5.10.0-30-arm64"), f());
        assert_eq!((before.covered.len(), before.regressions.len()), (0, 0));
        // Other values are another divergence.
        let other = l.apply(&s, "model", "kvm", Some("6.1.0-56-arm64"), vec![fd("events[1].syndrome", "0x96000010", "0x96000011")]);
        assert_eq!(other.left.len(), 1);
        // No kernel version: the issue cannot be claimed.
        assert_eq!(l.apply(&s, "model", "kvm", None, f()).covered.len(), 0);
        // A known issue by case name alone is refused.
        let mut bad = k;
        bad.class = None;
        bad.case = Some("x".into());
        assert!(l.push(Kind::Issue, bad).is_err());
    }

    #[test]
    fn zero_extension_relation() {
        let mut k = per_case();
        k.fields = vec!["state.regs.*".into()];
        k.relation = Some(Relation::ZeroExtended);
        assert!(k.covers_field(&fd("state.regs.x0", "0xc3", "0xffffffffffffffc3"), false));
        assert!(k.covers_field(&fd("state.regs.r0", "0xd4c3", "0xffffd4c3"), false));
        assert!(!k.covers_field(&fd("state.regs.x0", "0xc4", "0xffffffffffffffc3"), false));
        assert!(k.covers_field(&fd("state.regs.x0", "0xffffffffffffffc3", "0xc3"), true));
    }

    #[test]
    fn globs_versions_and_asm() {
        assert!(glob("events[*].syndrome", "events[12].syndrome"));
        assert!(!glob("events[*].syndrome", "events[1].far"));
        assert!(glob("state.*", "state.regs.x0"));
        assert!(glob("events*", "events.len"));
        assert!(!glob("a*b", "ab-"));
        assert_eq!(parse_version("6.12.118+deb12-arm64"), Some((6, 12, 118)));
        assert_eq!(parse_version("6.1.0-56-arm64"), Some((6, 1, 0)));
        assert_eq!(parse_version("6.13"), Some((6, 13, 0)));
        assert_eq!(parse_version("arm64"), None);
        assert!(asm_matches("mcr p15, #0, r1, c7, c14, #1", "mcr p15, 0, *, c7, c14, 1"));
        assert!(!asm_matches("mcr p15, #0, r1, c7, c14, #0", "mcr p15, 0, *, c7, c14, 1"));
        assert!(asm_matches("DC  ZVA, x1", "dc zva*"));
    }
}
