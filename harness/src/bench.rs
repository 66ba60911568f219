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
