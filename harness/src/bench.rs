//! `trapdiff bench`: the headline speed figure. The same cases run through each live backend
//! twice — persistent (one boot, many cases) and one boot per case, the way kvm-unit-tests
//! runs its tests — and the model's cases/s is measured over the same cases.

use std::fmt::Write;
use std::time::Instant;

use trapdiff_arch::outcome::End;
use trapdiff_arch::Case;

use crate::run::BackendSpec;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchLine {
    pub backend: String,
    pub cases: usize,
    /// Cases/s with one persistent instance, boot excluded.
    pub persistent_cps: f64,
    /// Seconds the persistent instance took to boot (first case's extra time).
    pub boot_seconds: f64,
    /// Cases/s booting a fresh instance per case (0 for the model).
    pub per_boot_cps: f64,
    pub per_boot_cases: usize,
    pub errors: usize,
    /// Where the persistent instance's time went (live backends).
    pub phases: Option<crate::backend::Phases>,
}

/// Run `cases` on every spec; `per_boot` caps how many cases the one-boot-per-case pass runs
/// (it is slow by design).
pub fn bench(cases: &[Case], specs: &[BackendSpec], per_boot: usize) -> Vec<BenchLine> {
    let mut out = Vec::new();
    for spec in specs {
        let mut line = BenchLine {
            backend: spec.name.clone(),
            cases: cases.len(),
            persistent_cps: 0.0,
            boot_seconds: 0.0,
            per_boot_cps: 0.0,
            per_boot_cases: 0,
            errors: 0,
            phases: None,
        };
        let t_boot = Instant::now();
        let Ok(mut b) = (spec.make)() else {
            line.errors = cases.len();
            out.push(line);
            continue;
        };
        // Warm up: the first case boots the target (live) or builds engines (model).
        if let Some(c) = cases.first() {
            let o = b.run(c);
            line.errors += usize::from(matches!(o.end, End::BackendError { .. }));
        }
        line.boot_seconds = t_boot.elapsed().as_secs_f64();
        let t = Instant::now();
        for c in cases {
            let o = b.run(c);
            line.errors += usize::from(matches!(o.end, End::BackendError { .. }));
        }
        line.persistent_cps = cases.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
        line.phases = b.phases();
        drop(b);
        if spec.name != "model" {
            let n = per_boot.min(cases.len());
            let t = Instant::now();
            for c in &cases[..n] {
                match (spec.make)() {
                    Ok(mut b) => {
                        let o = b.run(c);
                        line.errors += usize::from(matches!(o.end, End::BackendError { .. }));
                    }
                    Err(_) => line.errors += 1,
                }
            }
            line.per_boot_cases = n;
            line.per_boot_cps = n as f64 / t.elapsed().as_secs_f64().max(1e-9);
        }
        out.push(line);
    }
    out
}

pub fn render(lines: &[BenchLine]) -> String {
    let mut s =
        String::from("| backend | cases | persistent cases/s | boot s | one boot per case, cases/s | speed-up | errors |\n|---|---|---|---|---|---|---|\n");
    for l in lines {
        let (pb, ratio) = if l.per_boot_cases > 0 {
            (format!("{:.2} ({} cases)", l.per_boot_cps, l.per_boot_cases), format!("{:.0}x", l.persistent_cps / l.per_boot_cps.max(1e-9)))
        } else {
            ("-".into(), "-".into())
        };
        let _ = writeln!(s, "| {} | {} | {:.1} | {:.1} | {pb} | {ratio} | {} |", l.backend, l.cases, l.persistent_cps, l.boot_seconds, l.errors);
    }
    let live: Vec<_> = lines.iter().filter_map(|l| l.phases.filter(|p| p.cases > 0).map(|p| (l, p))).collect();
    if !live.is_empty() {
        s.push_str("\nPer case (mean over the persistent pass, warm-up included):\n\n| backend | lower ms | round trip ms | target ms | channel + harness ms | decode ms | job bytes | via mailbox | report bytes |\n|---|---|---|---|---|---|---|---|---|\n");
        for (l, p) in live {
            let n = p.cases as f64;
            let ms = |us: u64| us as f64 / n / 1000.0;
            let _ = writeln!(
                s,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {}/{} jobs, {}/{} reports | {:.0} |",
                l.backend,
                ms(p.lower_us),
                ms(p.round_trip_us),
                ms(p.target_us),
                ms(p.round_trip_us.saturating_sub(p.target_us)),
                ms(p.decode_us),
                p.job_bytes as f64 / n,
                p.mailbox_jobs,
                p.cases,
                p.mailbox_reports,
                p.cases,
                p.report_bytes as f64 / n,
            );
        }
    }
    s
}

/// This process's resident set, MiB (Linux /proc/self/status VmRSS).
pub fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

/// This process's user+system CPU seconds (/proc/self/stat fields 14 and 15, in ticks of
/// 1/100 s): on a shared machine the wall clock also counts other processes.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The model over every case of `cases` on one core (this thread), after a warm-up pass, for
/// at least `min` of wall time. Returns (cases per wall second, cases per CPU second).
pub fn model_suite(cases: &[Case], policy: &'static trapdiff_model::Profile, min: std::time::Duration) -> (f64, f64) {
    let mut model = trapdiff_model::Model::new(policy);
    for c in cases {
        std::hint::black_box(model.predict(c));
    }
    let (t, cpu0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while t.elapsed() < min || n == 0 {
        for c in cases {
            std::hint::black_box(model.predict(c));
            n += 1;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a).filter(|c| *c > 0.0).unwrap_or(wall);
    (n as f64 / wall, n as f64 / cpu)
}

/// Resident memory while `n` generated cases (suite cases with 1-3 of the fuzzer's mutations
/// each) go through the model and are judged against the unmutated case's prediction the
/// way a run judges a pair. Returns (cases, RSS MiB) after each tenth.
pub fn memory_soak(seeds: &[Case], policy: &'static trapdiff_model::Profile, n: usize, known: &crate::known::KnownList) -> Vec<(usize, f64)> {
    use crate::fuzz::mutators::{mutate_checked, Mutation};
    use libafl_bolts::rands::{Rand, StdRand};
    let mut model = trapdiff_model::Model::new(policy);
    let d = guest_payloads::encode::Disassembler::new().ok();
    let mut rand = StdRand::with_seed(0x7d1f);
    let mut used = vec![false; known.entries.len()];
    let mut samples = Vec::new();
    let tenth = (n / 10).max(1);
    for done in 1..=n {
        let seed = &seeds[rand.below_or_zero(seeds.len())];
        let mut c = seed.clone();
        for _ in 0..1 + rand.below_or_zero(3) {
            let m = Mutation::ALL[rand.below_or_zero(Mutation::ALL.len())];
            mutate_checked(m, &mut rand, &mut c, d.as_ref());
        }
        let a = model.predict(&c);
        let b = model.predict(seed);
        std::hint::black_box(crate::run::diff_pairs(&c, &[("model", &a), ("refhyp", &b)], known, &mut used));
        if done % tenth == 0 {
            samples.push((done, rss_mib().unwrap_or(0.0)));
        }
    }
    samples
}

/// The memory figure: RSS after the first tenth, at half and at the end; flat when the
/// second half grew it by under 5%.
pub fn memory_target(samples: &[(usize, f64)]) -> Option<Target> {
    let (first, last) = (samples.first()?, samples.last()?);
    let half = samples.get(samples.len() / 2 - 1).unwrap_or(first);
    Some(Target {
        figure: "harness RSS over generated cases (model + judging)".into(),
        measured: format!("{:.0} MiB at {}, {:.0} at {}, {:.0} at {}", first.1, first.0, half.1, half.0, last.1, last.0),
        target: "flat (< 5% growth over the second half)".into(),
        met: Some(last.1 <= half.1 * 1.05),
    })
}

/// One headline figure beside its target (issue 15's table).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    pub figure: String,
    pub measured: String,
    pub target: String,
    /// None: a figure without a pass/fail target (a ratio, a note).
    pub met: Option<bool>,
}

impl Target {
    pub fn at_least(figure: &str, v: f64, min: f64, unit: &str) -> Target {
        Target { figure: figure.into(), measured: format!("{v:.1} {unit}"), target: format!(">= {min} {unit}"), met: Some(v >= min) }
    }
    pub fn at_most(figure: &str, v: f64, max: f64, unit: &str) -> Target {
        Target { figure: figure.into(), measured: format!("{v:.1} {unit}"), target: format!("< {max} {unit}"), met: Some(v < max) }
    }
    pub fn info(figure: &str, measured: String) -> Target {
        Target { figure: figure.into(), measured, target: "-".into(), met: None }
    }
}

pub fn render_targets(t: &[Target]) -> String {
    let mut s = String::from("| figure | measured | target | met |\n|---|---|---|---|\n");
    for x in t {
        let met = match x.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(s, "| {} | {} | {} | {met} |", x.figure, x.measured, x.target);
    }
    s
}
