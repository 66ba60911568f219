//! `trapdiff bisect --good REV --bad REV CASE... [--src TREE] [--out DIR]`: find the kernel
//! commit that broke a case, with `git bisect run`.
//!
//! Each step (the hidden `trapdiff bisect-step`, run by git in TREE) builds the checked-out
//! tree with `kernel::build` into one build directory (incremental between steps), runs the
//! cases on the chosen backends (default kvm and model) and judges them as `trapdiff run`
//! does, waivers and known issues included. A commit is **bad** when any case's verdict is
//! `diverge` or `kernel-finding`, **good** when every case agrees (or is waived or known),
//! and **skipped** (exit 125) when its kernel does not build or a case cannot be judged
//! (`error`, `skipped`, no comparison). GOOD and BAD are checked first, so a bisect whose
//! endpoints do not differ stops before it starts. TREE is left as found: clean tree
//! required, `git bisect reset` at the end, whatever happens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::select::BackendOptions;
use crate::run::Verdict;
use crate::{case_file, kernel, paths, report, run};

/// What a step says to `git bisect run` (its exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judgement {
    Good,
    Bad,
    /// Cannot tell: the kernel did not build, or a case could not be judged.
    Skip,
}

impl Judgement {
    pub fn name(self) -> &'static str {
        match self {
            Judgement::Good => "good",
            Judgement::Bad => "bad",
            Judgement::Skip => "skip",
        }
    }

    /// git bisect run: 0 good, 1-127 bad except 125, 125 skip.
    pub fn exit_code(self) -> u8 {
        match self {
            Judgement::Good => 0,
            Judgement::Bad => 1,
            Judgement::Skip => 125,
        }
    }
}

/// Exit status that makes `git bisect run` stop: the step itself failed (not the kernel).
pub const ABORT: u8 = 128;

/// The one definition of a bad commit: a case diverges or the kernel printed a splat; a
/// build failure or a verdict that compares nothing is a skip; otherwise good.
pub fn judge(built: bool, verdicts: &[Verdict]) -> Judgement {
    if !built || verdicts.is_empty() {
        return Judgement::Skip;
    }
    if verdicts.iter().any(|v| matches!(v, Verdict::Diverge | Verdict::KernelFinding)) {
        return Judgement::Bad;
    }
    if verdicts.iter().all(|v| matches!(v, Verdict::Agree | Verdict::Waived | Verdict::Known)) {
        Judgement::Good
    } else {
        Judgement::Skip
    }
}

/// How every step runs its cases.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepConfig {
    pub src: PathBuf,
    pub out: PathBuf,
    pub cases: Vec<PathBuf>,
    pub backends: Vec<String>,
    pub policy: String,
    pub jobs: usize,
}

impl StepConfig {
    pub fn kernel_dir(&self) -> PathBuf {
        self.out.join("kernel")
    }
    pub fn steps_file(&self) -> PathBuf {
        self.out.join("steps.jsonl")
    }
}

/// One step's record (a line of OUT/steps.jsonl).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// "check GOOD", "check BAD" or "bisect".
    pub role: String,
    pub commit: String,
    pub subject: String,
    pub build_seconds: f64,
    /// Whether the configuration step ran (false: incremental).
    pub configured: bool,
    pub build_error: Option<String>,
    pub release: String,
    /// Per case: name, verdict, the first divergence's explanation (or error).
    pub cases: Vec<(String, Verdict, String)>,
    pub judgement: Judgement,
    pub seconds: f64,
}

fn git(tree: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git").arg("-C").arg(tree).args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("git {} in {}: {}", args.join(" "), tree.display(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `git bisect run` exit status 0, 1 or 125 for the commit checked out in `cfg.src`.
pub fn step(cfg: &StepConfig, role: &str) -> Result<Step, String> {
    let started = Instant::now();
    let commit = git(&cfg.src, &["rev-parse", "HEAD"])?;
    let subject = git(&cfg.src, &["log", "-1", "--format=%s"])?;
    eprintln!("bisect: {role} {} {subject}", &commit[..12.min(commit.len())]);
    let built = kernel::build(&cfg.src, &cfg.kernel_dir(), cfg.jobs);
    let mut s = Step {
        role: role.into(),
        commit: commit.clone(),
        subject,
        build_seconds: 0.0,
        configured: false,
        build_error: None,
        release: String::new(),
        cases: Vec::new(),
        judgement: Judgement::Skip,
        seconds: 0.0,
    };
    match built {
        Err(e @ (kernel::BuildError::MissingTool { .. } | kernel::BuildError::Fragment(..) | kernel::BuildError::NotATree(_))) => return Err(e.to_string()),
        Err(e) => {
            eprintln!("bisect: the kernel at {commit} does not build: skipped\n{e}");
            s.build_error = Some(e.summary());
            s.build_seconds = started.elapsed().as_secs_f64();
        }
        Ok(b) => {
            s.build_seconds = b.seconds;
            s.configured = b.configured;
            s.release = b.release.clone();
            let result = run_cases(cfg, &b.image, &commit)?;
            s.cases = result
                .cases
                .iter()
                .map(|c| {
                    let why = c
                        .divergences
                        .first()
                        .map(|d| format!("{} vs {}: {}", d.left, d.right, d.explanation))
                        .or_else(|| c.errors().first().cloned())
                        .or_else(|| c.skip_reasons().first().cloned())
                        .unwrap_or_default();
                    (c.name.clone(), c.verdict, why)
                })
                .collect();
        }
    }
    let verdicts: Vec<Verdict> = s.cases.iter().map(|c| c.1).collect();
    s.judgement = judge(s.build_error.is_none(), &verdicts);
    s.seconds = started.elapsed().as_secs_f64();
    let line = serde_json::to_string(&s).map_err(|e| e.to_string())?;
    let path = cfg.steps_file();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("bisect: {}", render_step(&s));
    Ok(s)
}

/// Run the cases on the built kernel; reports go to OUT/steps/<commit>/.
fn run_cases(cfg: &StepConfig, image: &Path, commit: &str) -> Result<run::RunResult, String> {
    let mut cases = Vec::new();
    for r in case_file::load_all(&cfg.cases) {
        cases.push(r.map_err(|e| e.to_string())?);
    }
    let known = paths::known_list()?;
    let opts = BackendOptions {
        names: cfg.backends.clone(),
        kernel: Some(image.to_path_buf()),
        native: false,
        policy: cfg.policy.clone(),
        jobs: 1,
        quirks: Default::default(),
        kernel_append: Vec::new(),
    };
    let specs = crate::backend::select::specs(&opts)?;
    let dir = cfg.out.join("steps").join(&commit[..12.min(commit.len())]);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("outcomes.jsonl"));
    let result = run::run(cases.clone(), Vec::new(), specs, &known, Some(dir.join("outcomes.jsonl")));
    report::write_all(&dir, &result, &cases).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(result)
}

/// One line for people: role, commit, subject, build, verdicts, judgement.
pub fn render_step(s: &Step) -> String {
    let build = match &s.build_error {
        Some(e) => format!("build failed ({e})"),
        None => format!("build {:.0} s{}", s.build_seconds, if s.configured { " (configured)" } else { "" }),
    };
    let cases: String = s.cases.iter().map(|(n, v, _)| format!(", {n}={}", v.name())).collect();
    format!(
        "{:<10} {} {:<50} {build}{cases}; {:.0} s -> {}",
        s.role,
        &s.commit[..12.min(s.commit.len())],
        truncate(&s.subject, 50),
        s.seconds,
        s.judgement.name()
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// Read OUT/steps.jsonl.
pub fn read_steps(path: &Path) -> Vec<Step> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// What a bisect found.
#[derive(Debug)]
pub struct Found {
    pub commit: String,
    pub subject: String,
    pub steps: Vec<Step>,
    pub seconds: f64,
}

/// Puts TREE back: `git bisect reset` (if started) and the original checkout.
struct Restore {
    tree: PathBuf,
    head: String,
    bisecting: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.bisecting {
            if let Err(e) = git(&self.tree, &["bisect", "reset"]) {
                eprintln!("bisect: {e}");
            }
        }
        if let Err(e) = git(&self.tree, &["checkout", "--quiet", &self.head]) {
            eprintln!("bisect: could not restore {} in {}: {e}", self.head, self.tree.display());
        }
    }
}

/// The whole bisect; `exe` is the trapdiff binary git runs for each step.
pub fn bisect(cfg: &StepConfig, good: &str, bad: &str, exe: &Path) -> Result<Found, String> {
    let started = Instant::now();
    let tree = &cfg.src;
    git(tree, &["rev-parse", "--git-dir"]).map_err(|_| format!("{} is not a git tree", tree.display()))?;
    if !git(tree, &["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        return Err(format!("{} has uncommitted changes: commit or stash them first", tree.display()));
    }
    // --git-path is relative to TREE (or absolute, which join keeps).
    if tree.join(git(tree, &["rev-parse", "--git-path", "BISECT_START"])?).is_file() {
        return Err(format!("a bisect is already in progress in {}: `git -C {} bisect reset` first", tree.display(), tree.display()));
    }
    let good = git(tree, &["rev-parse", "--verify", &format!("{good}^{{commit}}")])?;
    let bad = git(tree, &["rev-parse", "--verify", &format!("{bad}^{{commit}}")])?;
    if git(tree, &["merge-base", "--is-ancestor", &good, &bad]).is_err() {
        return Err(format!("--good {good} is not an ancestor of --bad {bad}"));
    }
    // Branch name when on one, else the commit: what `checkout` puts back.
    let head = git(tree, &["symbolic-ref", "-q", "--short", "HEAD"]).or_else(|_| git(tree, &["rev-parse", "HEAD"]))?;
    let mut restore = Restore { tree: tree.clone(), head, bisecting: false };
    std::fs::create_dir_all(&cfg.out).map_err(|e| format!("{}: {e}", cfg.out.display()))?;
    let _ = std::fs::remove_file(cfg.steps_file());
    let _ = std::fs::remove_dir_all(cfg.out.join("steps"));

    // The endpoints first: BAD must be bad and GOOD good, or bisecting means nothing.
    for (rev, role, want) in [(&bad, "check-bad", Judgement::Bad), (&good, "check-good", Judgement::Good)] {
        git(tree, &["checkout", "--quiet", "--detach", rev])?;
        let s = step(cfg, role)?;
        if s.judgement != want {
            return Err(format!(
                "the cases are {} at {} {}, not {}: nothing to bisect (reports in {})",
                s.judgement.name(),
                &rev[..12],
                s.subject,
                want.name(),
                cfg.out.join("steps").join(&rev[..12]).display()
            ));
        }
    }

    git(tree, &["bisect", "start", &bad, &good])?;
    restore.bisecting = true;
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(tree).args(["bisect", "run"]).arg(exe).arg("bisect-step");
    cmd.arg("--src")
        .arg(tree)
        .arg("--out")
        .arg(&cfg.out)
        .arg("--backends")
        .arg(cfg.backends.join(","))
        .arg("--policy")
        .arg(&cfg.policy)
        .arg("--jobs")
        .arg(cfg.jobs.to_string());
    cmd.args(&cfg.cases);
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run git bisect run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    let _ = std::fs::write(cfg.out.join("git-bisect.log"), git(tree, &["bisect", "log"]).unwrap_or_default());
    if !out.status.success() || !text.contains("is the first bad commit") {
        return Err(format!("git bisect run did not name a first bad commit (exit {}); see {}", out.status, cfg.out.join("git-bisect.log").display()));
    }
    let commit = git(tree, &["rev-parse", "refs/bisect/bad"])?;
    let subject = git(tree, &["log", "-1", "--format=%s", &commit])?;
    drop(restore);
    Ok(Found { commit, subject, steps: read_steps(&cfg.steps_file()), seconds: started.elapsed().as_secs_f64() })
}

/// Default bisect output: build/bisect/<name of TREE>.
pub fn default_out(tree: &Path) -> PathBuf {
    let name = tree.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tree".into());
    paths::build_dir().join("bisect").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_exit_mapping() {
        use Verdict::*;
        assert_eq!(judge(true, &[Agree, Agree]), Judgement::Good);
        assert_eq!(judge(true, &[Agree, Waived, Known]), Judgement::Good);
        assert_eq!(judge(true, &[Agree, Diverge]), Judgement::Bad);
        assert_eq!(judge(true, &[KernelFinding]), Judgement::Bad);
        // A regression seen on one case outweighs another that could not be judged.
        assert_eq!(judge(true, &[Error, Diverge]), Judgement::Bad);
        assert_eq!(judge(true, &[Agree, Error]), Judgement::Skip);
        assert_eq!(judge(true, &[Skipped]), Judgement::Skip);
        assert_eq!(judge(true, &[NoComparison]), Judgement::Skip);
        assert_eq!(judge(true, &[]), Judgement::Skip);
        assert_eq!(judge(false, &[Diverge]), Judgement::Skip);
        assert_eq!(Judgement::Good.exit_code(), 0);
        assert_eq!(Judgement::Bad.exit_code(), 1);
        assert_eq!(Judgement::Skip.exit_code(), 125);
        // git bisect run aborts on exit > 127.
        const { assert!(ABORT > 127) };
    }

    #[test]
    fn a_step_renders_on_one_line() {
        let s = Step {
            role: "bisect".into(),
            commit: "0123456789abcdef".into(),
            subject: "KVM: arm64: something".into(),
            build_seconds: 61.4,
            configured: false,
            build_error: None,
            release: "6.1.192".into(),
            cases: vec![("a64-el1-dc-civac-mmio".into(), Verdict::Diverge, "kvm vs model: x".into())],
            judgement: Judgement::Bad,
            seconds: 70.0,
        };
        let l = render_step(&s);
        assert!(l.contains("0123456789ab") && l.contains("build 61 s") && l.contains("a64-el1-dc-civac-mmio=diverge") && l.ends_with("-> bad"), "{l}");
        assert!(!l.contains('\n'));
        let failed = Step { build_error: Some("`make -j2 Image` failed (exit 2), log x".into()), cases: Vec::new(), judgement: Judgement::Skip, ..s };
        let l = render_step(&failed);
        assert!(l.contains("build failed (`make -j2 Image` failed (exit 2), log x); 70 s -> skip"), "{l}");
    }
}
