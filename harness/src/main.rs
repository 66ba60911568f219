//! The `trapdiff` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use trapdiff::backend::select::{self, BackendOptions};
use trapdiff::{case_file, doctor, known::KnownList, paths, report, run, show};

/// Differential conformance test suite and trap fuzzer for KVM on arm64.
///
/// Exit status: 0 when every case agrees on every backend (or the divergence is waived),
/// 1 when there are divergences, 2 on infrastructure errors (case files that do not load,
/// a backend that cannot start or fails on a case).
#[derive(Debug, Parser)]
#[command(name = "trapdiff", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct BackendArgs {
    /// Backends to run, comma-separated: model, refhyp, kvm.
    #[arg(long, default_value = "model,refhyp,kvm", value_delimiter = ',')]
    backends: Vec<String>,
    /// Kernel Image for the kvm backend (default: the pinned Debian kernel from ci/setup.sh).
    /// `run` takes it more than once for a kernel matrix: one run per kernel in DIR/<kernel>/
    /// (the model and refhyp run once) and DIR/matrix.{md,html,json}.
    #[arg(long)]
    kernel: Vec<PathBuf>,
    /// Run the KVM agent natively on this arm64 host instead of under QEMU.
    #[arg(long)]
    native: bool,
    /// Policy profile the model predicts with (linux-6.1, reference).
    #[arg(long, default_value = "linux-6.1")]
    policy: String,
    /// Persistent instances per live backend, side by side (default: the machine's CPUs; they
    /// take cases from one shared queue).
    #[arg(long, default_value_t = trapdiff::kernel::default_jobs())]
    jobs: usize,
    /// Re-introduce a historical KVM bug into the refhyp (repeatable; `trapdiff quirks` lists them).
    #[arg(long = "quirk", value_name = "NAME", value_parser = select::parse_quirk)]
    quirks: Vec<trapdiff_arch::quirk::Quirk>,
    /// Extra words for the kvm backend's kernel command line (repeatable), e.g.
    /// `--kernel-append kvm-arm.mode=nvhe`.
    #[arg(long = "kernel-append", value_name = "WORD")]
    kernel_append: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Report what is present or missing: QEMU, cross toolchains, default kernel, /dev/kvm,
    /// built refhyp and agent images, the suite.
    Doctor,
    /// Show a case with the Capstone disassembly of its code.
    Show {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
    /// Run cases on every backend, diff the outcomes, write reports.
    Run {
        /// Case files or directories (default: the curated suite).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        backend: BackendArgs,
        /// Only cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Run shard I of N (1-based), e.g. `--shard 2/4`, for CI matrices.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
        /// Write report.json, junit.xml, results.tap, report.md and report.html here.
        #[arg(long, default_value = "reports/run")]
        report: PathBuf,
        /// Continue the killed run whose reports go to DIR: its plan (DIR/run.json) and the
        /// outcomes it recorded (DIR/outcomes.jsonl) are read back, only the missing
        /// (case, backend) pairs run, and the reports cover the whole run. Other arguments
        /// are ignored.
        #[arg(long, value_name = "DIR", conflicts_with = "paths")]
        resume: Option<PathBuf>,
        /// Compare with an earlier report (directory or report.json) and write
        /// DIR/compare.{md,html,json}; the exit status is then the comparison's: 1 only for
        /// new divergences, errors or kernel findings.
        #[arg(long, value_name = "OLD")]
        baseline: Option<PathBuf>,
    },
    /// Compare two reports (directories or report.json): new divergence, fixed, still
    /// diverging, still agreeing, new case, gone. Exit 1 only when something newly fails.
    Compare {
        old: PathBuf,
        new: PathBuf,
        /// Also write compare.{md,html,json} here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// One report (all formats) from the report directories of a sharded run's shards
    /// (`run --shard I/N` each), judged together as one unsharded run.
    Merge {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long, default_value = "reports/merged")]
        report: PathBuf,
    },
    /// Fuzz: mutate cases, run them on every backend, keep what shows new behaviour,
    /// minimise divergences into corpus/found/.
    Fuzz(trapdiff::fuzz::FuzzArgs),
    /// The headline speed figure: cases/s per backend, persistent vs one boot per case.
    Bench {
        /// Case files or directories (default: the curated suite).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        backend: BackendArgs,
        /// How many cases (spread evenly over the suite).
        #[arg(long, default_value_t = 50)]
        cases: usize,
        /// Cases for the one-boot-per-case pass (boots are slow).
        #[arg(long, default_value_t = 5)]
        per_boot: usize,
        /// Generated cases for the memory figure (RSS after a tenth and at the end).
        #[arg(long, default_value_t = 100_000)]
        memory_cases: usize,
        /// Leave out parts of the bench: `suite` (the whole suite on every backend), `fuzz` (30 s
        /// of the fuzz loop on the mmio seeds), `memory`.
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
    },
    /// List the refhyp's quirks (historical KVM bugs it re-introduces on request); with
    /// --check, run the mutation check: the suite with each quirk on, and which cases catch it.
    Quirks {
        /// Run the mutation check (the suite on model and refhyp, once per quirk).
        #[arg(long)]
        check: bool,
        /// Only these quirks (default: all).
        #[arg(long = "quirk", value_name = "NAME", value_parser = select::parse_quirk)]
        quirks: Vec<trapdiff_arch::quirk::Quirk>,
        /// Suite case files or directories (default: the curated suite).
        paths: Vec<PathBuf>,
        /// Only suite cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Refhyp instances side by side.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Write a regression case into corpus/regressions/ for each quirk that has none.
        #[arg(long)]
        pin: bool,
        /// Also write the check's result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run one case on the chosen backends and show the outcomes side by side.
    Replay {
        case: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Kernel trees: `kernel build SRC` cross-builds an arm64 Image for the kvm backend.
    Kernel {
        #[command(subcommand)]
        cmd: KernelCmd,
    },
    /// Find the kernel commit that broke cases: `git bisect run` in TREE, each step a kernel
    /// build (incremental, one build directory) and a run of CASE... on the backends, judged
    /// as `trapdiff run` judges (waivers and known issues apply).
    ///
    /// A commit is bad when any case's verdict is `diverge` or `kernel-finding`; good when
    /// every case agrees (or is waived or known); skipped (exit 125) when its kernel does not
    /// build or a case cannot be judged (error, skipped, no comparison). GOOD and BAD are
    /// checked first. TREE must be clean and is left as found. Prints each step and the
    /// first bad commit; OUT holds the kernel build (kernel/), each step's reports
    /// (steps/<commit>/), steps.jsonl and git-bisect.log. Exit 0 when a first bad commit was
    /// found, 2 otherwise.
    Bisect {
        /// A commit where the cases pass.
        #[arg(long)]
        good: String,
        /// A later commit where they fail.
        #[arg(long)]
        bad: String,
        /// Case files or directories.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// The kernel git tree (default: the current directory).
        #[arg(long, default_value = ".")]
        src: PathBuf,
        /// Output directory (default: build/bisect/<name of TREE>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        step: StepArgs,
    },
    /// One bisect step in the checked-out TREE (run by `git bisect run`): exit 0 good, 1 bad,
    /// 125 skip, 128 abort.
    #[command(hide = true)]
    BisectStep {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        #[arg(long)]
        src: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        step: StepArgs,
    },
}

#[derive(Debug, clap::Args)]
struct StepArgs {
    /// Backends each step runs the cases on.
    #[arg(long, default_value = "model,kvm", value_delimiter = ',')]
    backends: Vec<String>,
    /// Policy profile the model predicts with.
    #[arg(long, default_value = "linux-6.1")]
    policy: String,
    /// make -j for the kernel builds (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum KernelCmd {
    /// Cross-build SRC (an arm64-capable kernel tree) out of tree with
    /// `make O=DIR ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-`, configured from
    /// ci/kernel.config on top of allnoconfig; incremental on rebuild. The build log is
    /// DIR/build.log; the Image path is the last line on stdout
    /// (for `trapdiff run --kernel`).
    Build {
        src: PathBuf,
        /// Build directory (default: build/kernels/<name of SRC>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// make -j (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
    },
}

/// A bisect step's settings with absolute paths (git runs the steps in TREE).
fn step_config(src: &std::path::Path, out: &std::path::Path, cases: &[PathBuf], a: &StepArgs) -> Result<trapdiff::bisect::StepConfig, String> {
    let abs = |p: &std::path::Path| p.canonicalize().map_err(|e| format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(trapdiff::bisect::StepConfig {
        src: abs(src)?,
        out: abs(out)?,
        cases: cases.iter().map(|c| abs(c)).collect::<Result<_, _>>()?,
        backends: a.backends.clone(),
        policy: a.policy.clone(),
        jobs: a.jobs.unwrap_or_else(trapdiff::kernel::default_jobs),
    })
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N")?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| "bad I")?, n.parse().map_err(|_| "bad N")?);
    if n == 0 || i == 0 || i > n {
        return Err(format!("shard {i}/{n}: need 1 <= I <= N"));
    }
    Ok((i, n))
}

fn options(b: &BackendArgs) -> BackendOptions {
    BackendOptions {
        names: b.backends.clone(),
        kernel: b.kernel.first().cloned(),
        native: b.native,
        policy: b.policy.clone(),
        jobs: b.jobs,
        quirks: b.quirks.iter().copied().collect(),
        kernel_append: b.kernel_append.clone(),
    }
}

/// Load the plan's cases, run them (continuing `dir`'s outcomes when `resuming`), write the
/// reports; the exit status of the run.
fn run_plan(plan: &run::Plan, dir: &std::path::Path, resuming: bool) -> u8 {
    let mut cases = Vec::new();
    let mut load_errors = Vec::new();
    for r in case_file::load_all(&plan.paths) {
        match r {
            Ok(c) => cases.push(c),
            Err(e) => {
                eprintln!("error: {e}");
                load_errors.push(e.to_string());
            }
        }
    }
    let cases = run::select(cases, plan.filter.as_deref(), plan.shard);
    let waivers = match paths::known_list() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let opts = match plan.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let specs = match select::specs(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| plan.save(dir)) {
        eprintln!("error: cannot write the run plan into {}: {e}", dir.display());
        return 2;
    }
    let stream_path = dir.join("outcomes.jsonl");
    let (done, keep) = match resuming.then(|| run::read_stream(&stream_path)) {
        Some(Ok(c)) => {
            let n = c.records.len();
            if c.bad_lines > 0 {
                eprintln!("trapdiff: {} torn or unreadable line(s) in {} ignored", c.bad_lines, stream_path.display());
            }
            let keep = Some(c.good_len);
            let done = run::outcomes_done(&cases, c.records);
            let pairs: usize = done.iter().map(|d| d.len()).sum();
            eprintln!("trapdiff: resuming {}: {n} recorded outcomes, {pairs} of {} (case, backend) pairs done", dir.display(), cases.len() * specs.len());
            (done, keep)
        }
        // Killed before the first record: nothing to keep.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => (cases.iter().map(|_| Default::default()).collect(), None),
        Some(Err(e)) => {
            eprintln!("error: cannot read {}: {e}", stream_path.display());
            return 2;
        }
        None => (cases.iter().map(|_| Default::default()).collect(), None),
    };
    eprintln!("trapdiff: {} cases on {}", cases.len(), plan.backends.join(", "));
    let stream = run::Stream { path: stream_path, keep };
    let result = run::run_resumable(cases.clone(), load_errors, specs, &waivers, Some(stream), done);
    if let Err(e) = report::write_all(dir, &result, &cases) {
        eprintln!("error: writing reports to {}: {e}", dir.display());
    }
    print!("{}", report::markdown(&result));
    println!("\nreports in {}", dir.display());
    result.exit_code()
}

/// `compare OLD NEW`: print the Markdown, write the files when asked; the exit status.
fn compare_reports(old: &std::path::Path, new: &std::path::Path, out: Option<&std::path::Path>) -> ExitCode {
    let (a, b) = match (trapdiff::compare::load(old), trapdiff::compare::load(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let c = trapdiff::compare::compare(&old.display().to_string(), &a, &new.display().to_string(), &b);
    print!("{}", trapdiff::compare::markdown(&c));
    if let Some(dir) = out {
        if let Err(e) = trapdiff::compare::write(dir, &c) {
            eprintln!("error: writing the comparison to {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::from(c.exit_code())
}

/// A merged run's reports, its plan (unsharded) and its outcomes, so it can be compared,
/// resumed or merged again like any run directory.
fn write_merged(dir: &std::path::Path, m: &trapdiff::merge::Merged) -> std::io::Result<()> {
    report::write_all(dir, &m.result, &m.cases)?;
    m.plan.save(dir)?;
    let records: Vec<run::Record> = m
        .result
        .cases
        .iter()
        .flat_map(|c| {
            c.outcomes.iter().filter(|(b, _)| *b != run::EXPECT).map(|(b, o)| run::Record {
                case: c.name.clone(),
                path: Some(c.path.clone()),
                backend: b.clone(),
                outcome: o.clone(),
            })
        })
        .collect();
    run::write_records(&dir.join("outcomes.jsonl"), &records)
}

/// The name of a kernel's column and sub-directory: the Debian package directory
/// (`build/kernel/linux-image-6.12...`), or a build's output directory
/// (`DIR/arch/arm64/boot/Image` -> DIR's name).
fn kernel_label(image: &std::path::Path) -> String {
    let dir = image.parent().unwrap_or(std::path::Path::new("."));
    let dir = if dir.ends_with("arch/arm64/boot") { dir.parent().and_then(|p| p.parent()).and_then(|p| p.parent()).unwrap_or(dir) } else { dir };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "kernel".into());
    name.strip_prefix("linux-image-").map(str::to_string).unwrap_or(name)
}

/// `run --kernel A --kernel B ...`: the first kernel's run is a whole run; every further one
/// reuses its outcomes of the kernel-independent backends (model, refhyp) and runs only kvm,
/// then one matrix over all. The exit status is the worst of the runs.
fn kernel_matrix(plan: &run::Plan, kernels: &[PathBuf], dir: &std::path::Path) -> ExitCode {
    let mut worst = 0u8;
    let mut columns = Vec::new();
    let mut first: Option<PathBuf> = None;
    for k in kernels {
        let label = kernel_label(k);
        let sub = dir.join(&label);
        let p = run::Plan { kernel: Some(k.clone()), ..plan.clone() };
        let resuming = match &first {
            Some(f) => {
                // Seed the stream with the first run's kernel-independent outcomes.
                let kept = run::read_stream(&f.join("outcomes.jsonl")).map(|c| c.records).unwrap_or_default();
                let kept = kept.iter().filter(|r| r.backend != "kvm");
                if let Err(e) = std::fs::create_dir_all(&sub).and_then(|_| run::write_records(&sub.join("outcomes.jsonl"), kept)) {
                    eprintln!("error: {}: {e}", sub.display());
                    return ExitCode::from(2);
                }
                true
            }
            None => false,
        };
        eprintln!("trapdiff: kernel {label} ({})", k.display());
        worst = worst.max(run_plan(&p, &sub, resuming));
        match trapdiff::compare::load(&sub) {
            Ok(r) => columns.push((label, r)),
            Err(e) => {
                eprintln!("error: {e}");
                worst = 2;
            }
        }
        first.get_or_insert(sub);
    }
    let m = trapdiff::compare::matrix(&columns);
    if let Err(e) = trapdiff::compare::write_matrix(dir, &m) {
        eprintln!("error: writing the matrix to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    print!("{}", trapdiff::compare::matrix_markdown(&m));
    println!("\nmatrix in {}", dir.join("matrix.md").display());
    ExitCode::from(worst)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Doctor => {
            if doctor::report(&doctor::checks()) {
                ExitCode::SUCCESS
            } else {
                println!("\nsome required pieces are missing: run `bash ci/setup.sh` (as root it installs them)");
                ExitCode::from(2)
            }
        }
        Cmd::Show { cases } => {
            let mut status = ExitCode::SUCCESS;
            for p in cases {
                match case_file::load(&p) {
                    Ok(case) => print!("{}", show::render(&case)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        status = ExitCode::from(2);
                    }
                }
            }
            status
        }
        Cmd::Run { paths: ps, backend, filter, shard, report: dir, resume, baseline } => {
            let resuming = resume.is_some();
            let (plan, dir) = match resume {
                Some(dir) => match run::Plan::load(&dir) {
                    Ok(p) => (p, dir),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => {
                    let ps = if ps.is_empty() { vec![paths::suite_dir()] } else { ps };
                    let o = options(&backend);
                    let plan = run::Plan {
                        paths: ps,
                        backends: o.names,
                        kernel: o.kernel,
                        native: o.native,
                        policy: o.policy,
                        jobs: o.jobs,
                        quirks: o.quirks.iter().map(|q| q.name().to_string()).collect(),
                        kernel_append: o.kernel_append,
                        filter,
                        shard,
                    };
                    if backend.kernel.len() > 1 {
                        return kernel_matrix(&plan, &backend.kernel, &dir);
                    }
                    (plan, dir)
                }
            };
            let status = run_plan(&plan, &dir, resuming);
            match baseline {
                Some(old) => compare_reports(&old, &dir, Some(&dir)),
                None => ExitCode::from(status),
            }
        }
        Cmd::Compare { old, new, out } => compare_reports(&old, &new, out.as_deref()),
        Cmd::Merge { dirs, report: dir } => {
            let known = match paths::known_list() {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let m = match trapdiff::merge::merge(&dirs, &known) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = write_merged(&dir, &m) {
                eprintln!("error: writing reports to {}: {e}", dir.display());
                return ExitCode::from(2);
            }
            print!("{}", report::markdown(&m.result));
            println!("\nmerged {} shard report(s) into {}", dirs.len(), dir.display());
            ExitCode::from(m.result.exit_code())
        }
        Cmd::Fuzz(args) => trapdiff::fuzz::main(args),
        Cmd::Bench { paths: ps, backend, cases: n, per_boot, memory_cases, skip } => {
            let ps = if ps.is_empty() { vec![paths::suite_dir()] } else { ps };
            let loaded: Vec<_> = case_file::load_all(&ps).into_iter().filter_map(Result::ok).collect();
            let all: Vec<_> = loaded.iter().map(|(_, c)| c.clone()).collect();
            if all.is_empty() {
                eprintln!("error: no cases to run");
                return ExitCode::from(2);
            }
            let known = match paths::known_list() {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let step = (all.len() / n.max(1)).max(1);
            let picked: Vec<_> = all.iter().step_by(step).take(n).cloned().collect();
            let opts = options(&backend);
            let specs = match select::specs(&BackendOptions { jobs: 1, ..opts.clone() }) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let lines = trapdiff::bench::bench(&picked, &specs, per_boot);
            print!("{}", trapdiff::bench::render(&lines));
            let mut targets = Vec::new();
            let line = |name: &str| lines.iter().find(|l| l.backend == name);
            for (name, min) in [("refhyp", 300.0), ("kvm", 150.0)] {
                if let Some(l) = line(name) {
                    targets.push(trapdiff::bench::Target::at_least(
                        &format!("{name}, one persistent instance, {} cases", l.cases),
                        l.persistent_cps,
                        min,
                        "cases/s",
                    ));
                    if l.per_boot_cases > 0 {
                        let ratio = l.persistent_cps / l.per_boot_cps.max(1e-9);
                        targets.push(trapdiff::bench::Target::info(
                            &format!("{name}, persistent vs one boot per case (kvm-unit-tests style)"),
                            format!("{ratio:.0}x"),
                        ));
                    }
                }
            }
            let policy = trapdiff_model::profile(&opts.policy).unwrap_or(trapdiff_model::PROFILES[0]);
            if opts.names.is_empty() || opts.names.iter().any(|b| b == "model") {
                let (wall, cpu) = trapdiff::bench::model_suite(&all, policy, std::time::Duration::from_secs(2));
                targets.push(trapdiff::bench::Target::at_least(
                    &format!("model, the {} cases, one core (per CPU second; {wall:.0}/s wall)", all.len()),
                    cpu,
                    10_000.0,
                    "cases/s",
                ));
            }
            if !skip.iter().any(|s| s == "suite") {
                let jobs = trapdiff::kernel::default_jobs();
                match select::specs(&BackendOptions { jobs, ..opts.clone() }) {
                    Ok(specs) => {
                        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
                        let r = run::run(loaded.clone(), Vec::new(), specs, &known, None);
                        let s = &r.summary;
                        eprintln!(
                            "suite: {} cases, {} agree, {} waived, {} known, {} diverge, {} errors in {:.1} s",
                            s.cases, s.agree, s.waived, s.known, s.diverge, s.errors, s.wall_seconds
                        );
                        let what = format!("the whole suite ({} cases) on {}, --jobs {jobs}, wall ({} errors)", s.cases, names.join("+"), s.errors);
                        targets.push(trapdiff::bench::Target::at_most(&what, s.wall_seconds, 30.0, "s"));
                    }
                    Err(e) => eprintln!("suite: {e}"),
                }
            }
            if !skip.iter().any(|s| s == "fuzz") {
                // The fuzz loop on the mmio family, every chosen backend (an exec runs them at once).
                let seeds: Vec<_> = loaded.iter().filter(|(_, c)| c.family == trapdiff_arch::case::Family::Mmio).map(|(_, c)| c.clone()).collect();
                let made: Result<Vec<_>, String> = match select::specs(&BackendOptions { jobs: 1, ..opts.clone() }) {
                    Ok(specs) => specs.iter().map(|s| (s.make)().map_err(|e| e.to_string())).collect(),
                    Err(e) => Err(e.to_string()),
                };
                let cfg = trapdiff::fuzz::Config {
                    seed: 1,
                    time: std::time::Duration::from_secs(30),
                    iters: None,
                    out: None,
                    found: None,
                    minimise_budget: 0,
                    progress: false,
                    known: known.clone(),
                };
                match made.and_then(|b| trapdiff::fuzz::campaign(&cfg, b, seeds).map_err(|e| e.to_string())) {
                    Ok(st) => targets.push(trapdiff::bench::Target::at_least(
                        &format!("fuzz loop, mmio seeds, {} backends, 30 s (seeding included)", st.backends.len()),
                        st.execs_per_second,
                        100.0,
                        "execs/s",
                    )),
                    Err(e) => eprintln!("fuzz: {e}"),
                }
            }
            if !skip.iter().any(|s| s == "memory") && memory_cases > 0 {
                let samples = trapdiff::bench::memory_soak(&all, policy, memory_cases, &known);
                targets.extend(trapdiff::bench::memory_target(&samples));
            }
            println!();
            print!("{}", trapdiff::bench::render_targets(&targets));
            if lines.iter().any(|l| l.errors > 0) {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Quirks { check, quirks, paths: ps, filter, jobs, pin, json } => {
            if !check {
                print!("{}", trapdiff::quirks::list());
                return ExitCode::SUCCESS;
            }
            let ps = if ps.is_empty() { vec![paths::suite_dir()] } else { ps };
            let load = |ps: &[PathBuf]| -> Result<Vec<(PathBuf, trapdiff_arch::Case)>, String> {
                case_file::load_all(ps).into_iter().map(|r| r.map_err(|e| e.to_string())).collect()
            };
            let (suite, regressions) = match (load(&ps), if paths::regressions_dir().is_dir() { load(&[paths::regressions_dir()]) } else { Ok(Vec::new()) }) {
                (Ok(s), Ok(r)) => (run::select(s, filter.as_deref(), None), r),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let waivers = match paths::known_list() {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let which: Vec<_> = if quirks.is_empty() { trapdiff_arch::quirk::QUIRKS.iter().map(|q| q.quirk).collect() } else { quirks };
            let report = match trapdiff::quirks::check(&suite, &regressions, &which, jobs, &waivers) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            print!("{}", trapdiff::quirks::render(&report, 4));
            if let Some(p) = json {
                if let Err(e) = std::fs::write(&p, serde_json::to_string_pretty(&report).unwrap_or_default()) {
                    eprintln!("error: writing {}: {e}", p.display());
                }
            }
            if pin {
                let dir = paths::regressions_dir();
                let _ = std::fs::create_dir_all(&dir);
                for &q in &which {
                    if report.catches.iter().any(|c| c.quirk == q.name() && !c.regressions.is_empty()) {
                        continue;
                    }
                    match trapdiff::quirks::regression_case(&report, &suite, q) {
                        Some(c) => {
                            let p = dir.join(format!("{}.json", q.name()));
                            match std::fs::write(&p, serde_json::to_string_pretty(&c).unwrap_or_default() + "\n") {
                                Ok(()) => println!("pinned {}", p.display()),
                                Err(e) => eprintln!("error: writing {}: {e}", p.display()),
                            }
                        }
                        None => eprintln!("{}: no suite case catches it with a clean baseline; nothing to pin", q.name()),
                    }
                }
            }
            if report.all_caught() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Cmd::Kernel { cmd: KernelCmd::Build { src, out, jobs } } => {
            let out = out.unwrap_or_else(|| trapdiff::kernel::default_out(&src));
            match trapdiff::kernel::build(&src, &out, jobs.unwrap_or_else(trapdiff::kernel::default_jobs)) {
                Ok(b) => {
                    eprintln!(
                        "kernel: {} built in {:.0} s{}",
                        if b.release.is_empty() { "?" } else { &b.release },
                        b.seconds,
                        if b.configured { " (configured)" } else { "" }
                    );
                    println!("{}", b.image.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Bisect { good, bad, cases, src, out, step } => {
            let out = out.unwrap_or_else(|| trapdiff::bisect::default_out(&src.canonicalize().unwrap_or(src.clone())));
            let cfg = match step_config(&src, &out, &cases, &step) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            // Every case must load before the first build.
            for r in case_file::load_all(&cfg.cases) {
                if let Err(e) = r {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: cannot find the trapdiff binary: {e}");
                    return ExitCode::from(2);
                }
            };
            match trapdiff::bisect::bisect(&cfg, &good, &bad, &exe) {
                Ok(f) => {
                    println!("steps ({} builds and runs, {:.0} s in all):", f.steps.len(), f.seconds);
                    for s in &f.steps {
                        println!("  {}", trapdiff::bisect::render_step(s));
                    }
                    println!("reports in {}", cfg.out.display());
                    println!("first bad commit: {} {}", f.commit, f.subject);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    for s in trapdiff::bisect::read_steps(&cfg.steps_file()) {
                        eprintln!("  {}", trapdiff::bisect::render_step(&s));
                    }
                    ExitCode::from(2)
                }
            }
        }
        Cmd::BisectStep { cases, src, out, step } => {
            // A panic would exit 101, which git bisect run takes for "bad": abort instead.
            let r = std::panic::catch_unwind(|| step_config(&src, &out, &cases, &step).and_then(|cfg| trapdiff::bisect::step(&cfg, "bisect")));
            match r {
                Ok(Ok(s)) => ExitCode::from(s.judgement.exit_code()),
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(trapdiff::bisect::ABORT)
                }
                Err(_) => ExitCode::from(trapdiff::bisect::ABORT),
            }
        }
        Cmd::Replay { case, backend } => {
            let case = match case_file::load(&case) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            print!("{}", show::render(&case));
            let specs = match select::specs(&options(&backend)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = run::run(vec![(PathBuf::from("replay"), case)], Vec::new(), specs, &KnownList::default(), None);
            print!("{}", trapdiff::replay::side_by_side(&result));
            ExitCode::from(result.exit_code())
        }
    }
}
