//! A fuzzing campaign on the live backends (model + refhyp + KVM under QEMU), for the
//! execs/s figures and to see divergences flow end to end. Needs the images `ci/setup.sh`
//! builds and minutes of CPU, so it is ignored by default:
//! `cargo test -p trapdiff --test fuzz_live -- --ignored --nocapture`
//! (`TRAPDIFF_FUZZ_LIVE_SECS`, default 90; `TRAPDIFF_FUZZ_LIVE_BACKENDS`, default refhyp,kvm).

use std::time::Duration;

use trapdiff::backend::{kvm, refhyp, Backend};
use trapdiff::fuzz::{self, Config};
use trapdiff_arch::Case;

#[test]
#[ignore = "boots QEMU; run with --ignored"]
fn live_campaign_reports_its_figures() {
    let secs: u64 = std::env::var("TRAPDIFF_FUZZ_LIVE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    let wanted = std::env::var("TRAPDIFF_FUZZ_LIVE_BACKENDS").unwrap_or_else(|_| "refhyp,kvm".into());
    let profile = trapdiff_model::profile("linux-6.1").expect("profile");
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(trapdiff::backend::model::ModelBackend::new(profile))];
    for name in wanted.split(',') {
        match name {
            "refhyp" if refhyp::image_path().exists() => match refhyp::backend(&refhyp::RefhypOptions::default()) {
                Ok(b) => backends.push(Box::new(b)),
                Err(e) => eprintln!("skipping refhyp: {e}"),
            },
            "kvm" => match kvm::backend(&kvm::KvmOptions::default()) {
                Ok(b) => backends.push(Box::new(b)),
                Err(e) => eprintln!("skipping kvm: {e}"),
            },
            other => eprintln!("skipping {other}: not built (run ci/setup.sh)"),
        }
    }
    if backends.len() < 2 {
        guest_payloads::skip::live("no live backend is available");
        return;
    }
    // Every 10th suite case: the seed phase runs each on every backend.
    let seeds: Vec<Case> =
        trapdiff::case_file::load_all(&[trapdiff::paths::suite_dir()]).into_iter().filter_map(Result::ok).map(|(_, c)| c).step_by(10).collect();
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-live-{}", std::process::id()));
    let cfg = Config {
        seed: 1,
        time: Duration::from_secs(secs),
        iters: None,
        out: Some(dir.clone()),
        found: Some(dir.join("found")),
        minimise_budget: 40,
        progress: true,
        known: trapdiff::paths::known_list().expect("corpus/waivers.json and known-issues.json load"),
    };
    let st = fuzz::campaign(&cfg, backends, seeds).expect("campaign runs");
    eprintln!("{}", st.line());
    for b in &st.backends {
        eprintln!("  {}: {} execs, {:.1} execs/s ({} errors, {} timeouts)", b.stats.name, b.stats.execs, b.execs_per_second, b.stats.errors, b.stats.timeouts);
    }
    for f in &st.finds {
        eprintln!("  find {} after {:.0}s ({} -> {} insns): {}", f.signature, f.after_seconds, f.instructions_before, f.instructions_after, f.explanation);
    }
    eprintln!("output in {}", dir.display());
    assert!(st.execs > 0);
}
