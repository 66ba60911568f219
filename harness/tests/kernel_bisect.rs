//! `trapdiff kernel build` + `trapdiff bisect` end to end, on a real kernel tree (ignored: it
//! builds kernels; see README "Kernel builds and bisect"):
//!
//!   cargo test --release -p trapdiff --test kernel_bisect -- --ignored --nocapture
//!
//! The tree is made at run time from Debian's linux-source-6.1 (`bash ci/setup.sh
//! kernel-source`; never committed here): commit 1 is the release, then four commits of
//! which one is a KVM change an fp32 suite case sees — the VHE world switch sets
//! FPEXC32_EL2.EN on every entry, re-introducing a 2018 bug, so an AArch32 guest's FPEXC.EN=0
//! is lost after a stage-2 fault and VADD runs instead of being UNDEFINED — and the others
//! are benign (documentation, a comment). `trapdiff bisect` must name the KVM commit. The
//! tree and the kernel build (build/kernel-bisect/) are kept, so a rerun is incremental.
//! (A cmo change would not do: QEMU's TCG performs DC CIVAC/CVAC/IVAC and IC IVAU without a
//! translation, so the nested KVM never sees their stage-2 aborts.)

use std::path::{Path, PathBuf};
use std::process::Command;

const TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The case the KVM commit changes (agrees on the Debian 6.1 kernel): VADD.F64 at EL0 with
/// FPEXC.EN clear must be UNDEFINED.
const CASE: &str = "corpus/suite/fp32/a32-el0-vadd-f64-cpacr-full-fpexc-0.json";
/// Bump when the fixture's commits change, so a kept tree is made again (and the kernel build
/// with it: the unpacked files keep the archive's mtimes, older than objects built from an
/// earlier fixture's edits).
const FIXTURE: &str = "kernel-bisect fixture v2";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo root")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// What is missing for this test, if anything.
fn missing() -> Option<String> {
    if !Path::new(TARBALL).is_file() {
        return Some(format!("{TARBALL} (bash ci/setup.sh kernel-source)"));
    }
    for t in ["git", "make", "gcc", "aarch64-linux-gnu-gcc", "flex", "bison", "bc", "xz"] {
        if !on_path(t) {
            return Some(format!("`{t}` (bash ci/setup.sh kernel-tools)"));
        }
    }
    if !on_path("qemu-system-aarch64") {
        return Some("qemu-system-aarch64 (bash ci/setup.sh packages)".into());
    }
    let agent = root().join("build/cross-target/aarch64-unknown-linux-gnu/release/kvm-agent");
    if !agent.is_file() {
        return Some(format!("the KVM agent {} (bash ci/setup.sh agent)", agent.display()));
    }
    None
}

fn git(tree: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(["-c", "user.name=trapdiff fixture", "-c", "user.email=fixture@trapdiff.invalid", "-c", "gc.auto=0", "-c", "core.autocrlf=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replace `old` by `new` in a file of the tree, once; fail clearly when the anchor is gone.
fn edit(tree: &Path, file: &str, old: &str, new: &str) {
    let p = tree.join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let n = text.matches(old).count();
    assert_eq!(n, 1, "fixture anchor found {n} times (want 1) in {file}: {old:?} — has linux-source-6.1 changed?");
    std::fs::write(&p, text.replacen(old, new, 1)).expect("write");
}

/// Commit everything with a fixed date (so the fixture's hashes are the same every time).
fn commit(tree: &Path, n: u32, subject: &str, body: &str) -> String {
    // -f: Debian's packaging appends `/*` to the tree's .gitignore.
    git(tree, &["add", "-A", "-f"]);
    let date = format!("2026-01-{:02}T12:00:00+0000", n);
    let out = Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(["-c", "user.name=trapdiff fixture", "-c", "user.email=fixture@trapdiff.invalid", "-c", "gc.auto=0", "commit", "-q", "-m", subject, "-m", body])
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .expect("git commit");
    assert!(out.status.success(), "commit {subject}: {}", String::from_utf8_lossy(&out.stderr));
    git(tree, &["rev-parse", "HEAD"])
}

/// The KVM change, in the VHE world switch: FPEXC32_EL2.EN is set on every entry instead of
/// only when the guest's FP state is not loaded (so FP traps come to EL2) — the bug "arm64:
/// KVM: Only force FPEXC32_EL2.EN if trapping FPSIMD" (2018) fixed. An entry after an exit the
/// guest never sees (a stage-2 fault on RAM, handled in the kernel) then overwrites the FPEXC
/// an AArch32 guest wrote while it owned the FP registers.
const FPEXC_ANCHOR: &str = "\tif (guest_owns_fp_regs(vcpu)) {
\t\tif (vcpu_has_sve(vcpu))
\t\t\tval |= CPACR_EL1_ZEN_EL0EN | CPACR_EL1_ZEN_EL1EN;
\t} else {
\t\tval &= ~(CPACR_EL1_FPEN_EL0EN | CPACR_EL1_FPEN_EL1EN);
\t\t__activate_traps_fpsimd32(vcpu);
\t}
";
const FPEXC_EAGER: &str = "\t/* AArch32 guests: FPEXC.EN set, so FP traps reach EL2. */
\t__activate_traps_fpsimd32(vcpu);

\tif (guest_owns_fp_regs(vcpu)) {
\t\tif (vcpu_has_sve(vcpu))
\t\t\tval |= CPACR_EL1_ZEN_EL0EN | CPACR_EL1_ZEN_EL1EN;
\t} else {
\t\tval &= ~(CPACR_EL1_FPEN_EL0EN | CPACR_EL1_FPEN_EL1EN);
\t}
";

/// The fixture tree; returns (commits oldest first as (hash, subject), the KVM commit).
fn fixture(tree: &Path) -> (Vec<(String, String)>, String) {
    let marker = tree.parent().expect("parent").join(format!("{}.fixture", tree.file_name().expect("name").to_string_lossy()));
    let kept = std::fs::read_to_string(&marker).ok().filter(|m| m.starts_with(FIXTURE));
    if let Some(m) = kept {
        let clean = Command::new("git")
            .arg("-C")
            .arg(tree)
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.is_empty());
        let bisecting = tree.join(".git/BISECT_START").exists();
        if clean && !bisecting {
            let mut lines = m.lines().skip(1);
            let bad = lines.next().unwrap_or_default().to_string();
            let commits: Vec<(String, String)> = lines.filter_map(|l| l.split_once(' ')).map(|(h, s)| (h.to_string(), s.to_string())).collect();
            if commits.len() == 5 && git(tree, &["rev-parse", "HEAD"]) == commits[4].0 {
                eprintln!("fixture: reusing {}", tree.display());
                return (commits, bad);
            }
        }
    }
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_dir_all(tree);
    let parent = tree.parent().expect("parent");
    std::fs::create_dir_all(parent).expect("mkdir");
    let t0 = std::time::Instant::now();
    // tar keeps the archive's mtimes, so a rebuilt tree does not make every object stale;
    // the files the commits touch get new ones.
    let st = Command::new("tar").arg("-C").arg(parent).arg("-xf").arg(TARBALL).status().expect("tar");
    assert!(st.success(), "tar -xf {TARBALL}");
    std::fs::rename(parent.join("linux-source-6.1"), tree).expect("rename the unpacked tree");
    git(tree, &["init", "-q", "-b", "main"]);
    let mut commits = Vec::new();
    let mut add = |hash: String, subject: &str| commits.push((hash, subject.to_string()));

    let s = "Linux 6.1 (Debian linux-source-6.1)";
    add(commit(tree, 1, s, "The tree of /usr/src/linux-source-6.1.tar.xz."), s);

    edit(
        tree,
        "Documentation/virt/kvm/api.rst",
        "and the faulting IPA in the fault_ipa field.",
        "and the faulting IPA (HPFAR_EL2 with the page offset from FAR_EL2) in the\nfault_ipa field.",
    );
    let s = "Documentation: KVM: Say where the NISV fault IPA comes from";
    add(commit(tree, 2, s, "Documentation only."), s);

    edit(tree, "arch/arm64/kvm/hyp/vhe/switch.c", FPEXC_ANCHOR, FPEXC_EAGER);
    let s = "KVM: arm64: Set FPEXC32_EL2.EN on every guest entry";
    let bad = commit(tree, 3, s, "Simplify __activate_traps(): enable AArch32 FP/SIMD in FPEXC32_EL2 whether or not\nthe guest's FP state is loaded.");
    add(bad.clone(), s);

    edit(
        tree,
        "arch/arm64/kvm/mmio.c",
        "/* Now prepare kvm_run for the potential return to userland. */",
        "/* Now prepare kvm_run for the potential return to userspace. */",
    );
    let s = "KVM: arm64: mmio: Say userspace, not userland";
    add(commit(tree, 4, s, "Comment only."), s);

    edit(
        tree,
        "Documentation/virt/kvm/api.rst",
        "decoding the instruction from guest memory (if it's very brave)",
        "decoding the instruction from guest memory (if it is very brave)",
    );
    let s = "Documentation: KVM: Spell out \"it is\"";
    add(commit(tree, 5, s, "Documentation only."), s);

    let mut m = format!("{FIXTURE}\n{bad}\n");
    for (h, s) in &commits {
        m.push_str(&format!("{h} {s}\n"));
    }
    std::fs::write(&marker, m).expect("marker");
    eprintln!("fixture: {} made in {:.0} s", tree.display(), t0.elapsed().as_secs_f64());
    (commits, bad)
}

#[test]
#[ignore = "builds Linux kernels (minutes): cargo test --release -p trapdiff --test kernel_bisect -- --ignored"]
fn bisect_names_the_kvm_commit() {
    if let Some(what) = missing() {
        eprintln!("skipped: missing {what}");
        return;
    }
    let work = root().join("build/kernel-bisect");
    let tree = work.join("linux-6.1");
    let out = work.join("out");
    let (commits, bad) = fixture(&tree);
    // A build from another fixture version may hold objects newer than the files it edited.
    let stamp = out.join("fixture-version");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(FIXTURE) {
        let _ = std::fs::remove_dir_all(out.join("kernel"));
        std::fs::create_dir_all(&out).expect("mkdir out");
        std::fs::write(&stamp, FIXTURE).expect("write the fixture stamp");
    }
    let head_before = git(&tree, &["rev-parse", "HEAD"]);
    let t0 = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_trapdiff"))
        .current_dir(root())
        .args(["bisect", "--good", &commits[0].0, "--bad", &commits[4].0, "--src"])
        .arg(&tree)
        .arg("--out")
        .arg(&out)
        .arg(root().join(CASE))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("trapdiff bisect runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}\nbisect took {:.0} s", t0.elapsed().as_secs_f64());
    assert!(run.status.success(), "trapdiff bisect failed: {}", run.status);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("first bad commit: {bad} ")), "want the KVM commit {bad}, got: {last}");

    // The endpoints as judged: the case diverges at BAD and agrees at GOOD.
    let steps: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("steps.jsonl")).expect("steps.jsonl").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let verdict = |role: &str| steps.iter().find(|s| s["role"] == role).map(|s| s["cases"][0][1].as_str().unwrap_or_default().to_string());
    assert_eq!(verdict("check-bad").as_deref(), Some("diverge"));
    assert_eq!(verdict("check-good").as_deref(), Some("agree"));
    // Every bisect step agrees with where it is relative to the KVM commit.
    let index = |h: &str| commits.iter().position(|(c, _)| c == h).expect("a fixture commit");
    let kvm = index(&bad);
    for s in steps.iter().filter(|s| s["role"] == "bisect") {
        let i = index(s["commit"].as_str().unwrap_or_default());
        assert_eq!(s["judgement"], if i >= kvm { "bad" } else { "good" }, "step at commit {} ({}): {s}", i + 1, commits[i].1);
    }

    // TREE is left as found.
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(git(&tree, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert!(git(&tree, &["status", "--porcelain", "--untracked-files=no"]).is_empty());
    assert!(!tree.join(".git/BISECT_START").exists(), "bisect not reset");
}
