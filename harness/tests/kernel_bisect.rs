//! `trapdiff kernel build` + `trapdiff bisect` end to end, on a real kernel tree (ignored: it
//! builds kernels; see README "Kernel builds and bisect"):
//!
//!   cargo test --release -p trapdiff --test kernel_bisect -- --ignored --nocapture
//!
//! The tree is made at run time from Debian's linux-source-6.1 (`bash ci/setup.sh
//! kernel-source`; never committed here): commit 1 is the release, then four commits of
//! which one is a KVM change the cmo suite sees — it drops kvm_handle_guest_abort()'s "cache
//! maintenance outside any memslot: skip the instruction" branch, so DC CIVAC on an MMIO
//! hole no longer completes but fails KVM_RUN (no syndrome: ENOSYS) — and the others are
//! benign (documentation, a comment). `trapdiff bisect` must name the KVM commit. The tree
//! and the kernel build (build/kernel-bisect/) are kept, so a rerun is incremental.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The case the KVM commit changes (agrees on the Debian 6.1 kernel).
const CASE: &str = "corpus/suite/cmo/a64-el1-dc-civac-mmio.json";
/// Bump when the fixture's commits change, so a kept tree is made again.
const FIXTURE: &str = "kernel-bisect fixture v1";

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
    git(tree, &["add", "-A"]);
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

/// The KVM change: kvm_handle_guest_abort() no longer skips a CMO outside every memslot;
/// such a CMO goes to io_mem_abort() like any access there (a revert of "arm/arm64: KVM:
/// Handle out-of-RAM cache maintenance as a NOP").
const CM_SKIP: &str = "\t\t/*
\t\t * Check for a cache maintenance operation. Since we
\t\t * ended-up here, we know it is outside of any memory
\t\t * slot. But we can't find out if that is for a device,
\t\t * or if the guest is just being stupid. The only thing
\t\t * we know for sure is that this range cannot be cached.
\t\t *
\t\t * So let's assume that the guest is just being
\t\t * cautious, and skip the instruction.
\t\t */
\t\tif (kvm_is_error_hva(hva) && kvm_vcpu_dabt_is_cm(vcpu)) {
\t\t\tkvm_incr_pc(vcpu);
\t\t\tret = 1;
\t\t\tgoto out_unlock;
\t\t}

";

/// The fixture tree; returns (commits oldest first as (hash, subject), the KVM commit).
fn fixture(tree: &Path) -> (Vec<(String, String)>, String) {
    let marker = tree.with_extension("fixture");
    let kept = std::fs::read_to_string(&marker).ok().filter(|m| m.starts_with(FIXTURE));
    if let Some(m) = kept {
        let clean = Command::new("git").arg("-C").arg(tree).args(["status", "--porcelain", "--untracked-files=no"]).output().is_ok_and(|o| o.status.success() && o.stdout.is_empty());
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

    edit(tree, "Documentation/virt/kvm/api.rst", "and the faulting IPA in the fault_ipa field.", "and the faulting IPA (HPFAR_EL2 with the page offset from FAR_EL2) in the\nfault_ipa field.");
    let s = "Documentation: KVM: Say where the NISV fault IPA comes from";
    add(commit(tree, 2, s, "Documentation only."), s);

    edit(tree, "arch/arm64/kvm/mmu.c", CM_SKIP, "");
    let s = "KVM: arm64: Stop skipping cache maintenance outside memslots";
    let bad = commit(tree, 3, s, "A CMO to an IPA outside every memslot was silently skipped. Let io_mem_abort()\nhandle it like any other access there instead (revert of \"arm/arm64: KVM:\nHandle out-of-RAM cache maintenance as a NOP\").");
    add(bad.clone(), s);

    edit(tree, "arch/arm64/kvm/mmio.c", "/* Now prepare kvm_run for the potential return to userland. */", "/* Now prepare kvm_run for the potential return to userspace. */");
    let s = "KVM: arm64: mmio: Say userspace, not userland";
    add(commit(tree, 4, s, "Comment only."), s);

    edit(tree, "Documentation/virt/kvm/api.rst", "decoding the instruction from guest memory (if it's very brave)", "decoding the instruction from guest memory (if it is very brave)");
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
    let head_before = git(&tree, &["rev-parse", "HEAD"]);
    let t0 = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_trapdiff"))
        .current_dir(root())
        .args(["bisect", "--good", &commits[0].0, "--bad", &commits[4].0, "--src"])
        .arg(&tree)
        .arg("--out")
        .arg(&out)
        .arg(root().join(CASE))
        .output()
        .expect("trapdiff bisect runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{}\n{stdout}\nbisect took {:.0} s", String::from_utf8_lossy(&run.stderr), t0.elapsed().as_secs_f64());
    assert!(run.status.success(), "trapdiff bisect failed: {}", run.status);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("first bad commit: {bad} ")), "want the KVM commit {bad}, got: {last}");

    // The endpoints as judged: the case diverges at BAD and agrees at GOOD.
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(out.join("steps.jsonl")).expect("steps.jsonl").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
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
