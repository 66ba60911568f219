//! Minimisation keeps the divergence: a planted difference between two backends (inside this
//! test: a reference that turns every instruction into an MMIO read of its word, and a
//! "buggy" copy that reports an abort for DC CIVAC instead) is shrunk to the one instruction
//! that triggers it, and the campaign finds, minimises and saves it with its provenance.

use std::time::Duration;

use trapdiff::backend::Backend;
use trapdiff::fuzz::{self, input::builtin_seeds, minimise, signature, Config};
use trapdiff::known::KnownList;
use trapdiff_arch::outcome::{End, Event, Vector};
use trapdiff_arch::{Case, Isa, Outcome};

const DC_CIVAC_X1: u32 = 0xd50b_7e21;

struct Planted {
    name: &'static str,
    bug: bool,
}

impl Backend for Planted {
    fn name(&self) -> &str {
        self.name
    }
    fn run(&mut self, case: &Case) -> Outcome {
        let addrs = case.code.addresses(case.state.isa);
        let events = case
            .code
            .insns
            .iter()
            .zip(addrs)
            .map(|(i, pc)| {
                // Every A64 cache-maintenance instruction (SYS #op1, C7, ...: Arm ARM C5.3).
                if self.bug && case.state.isa == Isa::A64 && i.w & 0xfff8_f000 == 0xd508_7000 {
                    // DABT_CUR, DFSC 0x10 (synchronous external abort), CM set.
                    Event::Exception {
                        vector: Vector::Sync,
                        from_el0: false,
                        syndrome: (0x25 << 26) | (1 << 25) | (1 << 8) | 0x10,
                        far: None,
                        pc,
                        bad_spsr: None,
                    }
                } else {
                    Event::Mmio { ipa: u64::from(i.w), len: 4, write: false, data: 0 }
                }
            })
            .collect();
        Outcome { events, end: End::Done, ..Outcome::default() }
    }
}

fn pair() -> Vec<Box<dyn Backend>> {
    vec![Box::new(Planted { name: "reference", bug: false }), Box::new(Planted { name: "buggy", bug: true })]
}

#[test]
fn minimisation_keeps_the_divergence_and_drops_the_rest() {
    // The A64 seed: LDR, STR, DC CIVAC x1; four regions; x0, x1 set.
    let case = builtin_seeds().into_iter().find(|c| c.state.isa == Isa::A64).expect("an A64 seed");
    assert!(case.code.insns.iter().any(|i| i.w == DC_CIVAC_X1), "the A64 seed must hold DC CIVAC x1");
    let mut backends = pair();
    let mut run = |c: &Case| backends.iter_mut().map(|b| (b.name().to_string(), b.run(c))).collect::<Vec<_>>();
    let outs = run(&case);
    let f = signature::find(&case, &outs, &KnownList::default()).expect("the planted bug diverges on the seed");
    let m = minimise::minimise(&case, &f.signature, &KnownList::default(), outs, 500, Duration::from_secs(60), &mut run);
    assert_eq!(m.case.code.insns.len(), 1, "{:?}", m.case.code.insns);
    assert_eq!(m.case.code.insns[0].w, DC_CIVAC_X1);
    assert_eq!(m.case.memory.len(), 1, "only the code's region is needed");
    assert!(m.case.regs.is_empty());
    assert!(m.case.validate().is_ok());
    let again = signature::find(&m.case, &run(&m.case), &KnownList::default()).expect("still diverges");
    assert_eq!(again.signature, f.signature);
    assert!(m.steps >= 5 && m.execs <= 500, "steps {} execs {}", m.steps, m.execs);
}

#[test]
fn minimisation_respects_its_budget() {
    let case = builtin_seeds().into_iter().find(|c| c.state.isa == Isa::A64).expect("an A64 seed");
    let mut backends = pair();
    let mut run = |c: &Case| backends.iter_mut().map(|b| (b.name().to_string(), b.run(c))).collect::<Vec<_>>();
    let outs = run(&case);
    let f = signature::find(&case, &outs, &KnownList::default()).expect("diverges");
    let m = minimise::minimise(&case, &f.signature, &KnownList::default(), outs, 2, Duration::from_secs(60), &mut run);
    assert_eq!(m.execs, 2);
}

#[test]
fn campaign_finds_minimises_and_saves_the_planted_bug() {
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-minimise-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = Config {
        seed: 3,
        time: std::time::Duration::from_secs(60),
        iters: Some(3000),
        out: Some(dir.join("out")),
        found: Some(dir.join("found")),
        minimise_budget: 300,
        progress: false,
        known: KnownList::default(),
    };
    // Seeds on which the pair agrees: the A64 seed's DC CIVAC becomes a NOP, so the fuzzer
    // has to put a cache-maintenance instruction into an A64 case itself.
    let mut seeds = builtin_seeds();
    for c in seeds.iter_mut().filter(|c| c.state.isa == Isa::A64) {
        for i in c.code.insns.iter_mut().filter(|i| i.w == DC_CIVAC_X1) {
            *i = trapdiff_arch::case::Insn::new(0xd503_201f, "nop");
        }
    }
    let st = fuzz::campaign(&cfg, pair(), seeds).expect("campaign runs");
    assert_eq!(st.seed_divergences, 0);
    let f = st.finds.iter().find(|f| f.kind == signature::FindKind::Divergence).expect("the planted divergence is found");
    eprintln!("found after {} execs: {}", f.execs_before, f.explanation);
    assert_eq!(f.instructions_after, 1);
    let path = f.path.clone().expect("saved");
    let saved = trapdiff::case_file::load(&path).expect("the saved find loads as a case");
    assert_eq!(saved.provenance.source, "fuzzer");
    assert!(saved.provenance.detail.contains("seed 3") && saved.provenance.detail.contains("backends reference,buggy"), "{}", saved.provenance.detail);
    let side = path.with_extension("outcomes.jsonl");
    let lines = std::fs::read_to_string(&side).expect("outcomes beside the find");
    assert!(lines.contains("\"backend\":\"buggy\"") && lines.contains("\"divergence\""), "{lines}");
    // The saved case reproduces the same signature.
    let mut b = pair();
    let outs: Vec<_> = b.iter_mut().map(|b| (b.name().to_string(), b.run(&saved))).collect();
    assert_eq!(signature::find(&saved, &outs, &KnownList::default()).map(|x| x.signature), Some(f.signature.clone()));
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out/stats.json")).expect("stats.json")).expect("json");
    assert!(stats["execs"].as_u64().unwrap_or(0) >= 3000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend under another name (two model instances with different policy profiles).
struct Renamed(&'static str, Box<dyn Backend>);

impl Backend for Renamed {
    fn name(&self) -> &str {
        self.0
    }
    fn run(&mut self, case: &Case) -> Outcome {
        self.1.run(case)
    }
}

fn model(profile: &str) -> Box<dyn Backend> {
    let p = trapdiff_model::profile(profile).unwrap_or_else(|| panic!("profile {profile}"));
    Box::new(trapdiff::backend::model::ModelBackend::new(p))
}

/// Linux 6.1's policy with stage 2 mapped up front instead of lazily: a hypervisor that
/// differs from KVM in one documented way (the refhyp did, before it filled stage 2 lazily).
static EAGER_S2: trapdiff_model::Profile = trapdiff_model::Profile {
    name: "linux-6.1-eager-s2",
    summary: "linux-6.1 with every slot mapped at stage 2 before the guest runs",
    lazy_s2: false,
    ..trapdiff_model::profile::LINUX_6_1
};

/// A real divergent pair without live backends: the model under the Linux 6.1 policy and
/// under the same policy with stage 2 mapped up front disagree on CMOs to untouched pages of
/// read-only slots; the campaign finds that from the curated suite's cmo cases on which they
/// agree, and minimises it, and the minimised case still diverges the same way.
///
/// The campaign runs in a child process, as `trapdiff fuzz`'s supervisor runs its client:
/// the model can abort the process (capstone-rs 0.14 meets AArch64 operand types it cannot
/// represent and aborts rather than panics), and then the next seed is tried.
#[test]
fn two_policy_profiles_diverge_and_the_find_is_minimised() {
    if let Ok(seed) = std::env::var("TRAPDIFF_TEST_PROFILES_SEED") {
        return profiles_campaign(seed.parse().unwrap_or(3));
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut tried = Vec::new();
    for seed in 3..9u64 {
        let status = std::process::Command::new(&exe)
            .args(["two_policy_profiles_diverge_and_the_find_is_minimised", "--exact", "--nocapture"])
            .env("TRAPDIFF_TEST_PROFILES_SEED", seed.to_string())
            .status()
            .expect("the test binary runs");
        match status.code() {
            Some(0) => return,
            // A failed assertion is a real failure; only an abort moves on to the next seed.
            Some(c) => panic!("the campaign with seed {seed} failed (exit {c})"),
            None => tried.push(format!("seed {seed}: {status}")),
        }
    }
    panic!("the model aborted every campaign: {tried:?}");
}

fn profiles_campaign(seed: u64) {
    let suite = trapdiff::paths::suite_dir().join("cmo");
    let seeds: Vec<Case> = trapdiff::case_file::load_all(&[suite]).into_iter().filter_map(Result::ok).map(|(_, c)| c).collect();
    assert!(!seeds.is_empty(), "no cmo cases in corpus/suite: a test with zero cases proves nothing (regenerate the suite: cargo run --release -p guest-payloads --bin gen-suite -- corpus/suite)");
    let pair = || -> Vec<Box<dyn Backend>> {
        vec![
            Box::new(Renamed("model", model("linux-6.1"))),
            Box::new(Renamed("model-eager-s2", Box::new(trapdiff::backend::model::ModelBackend::new(&EAGER_S2)))),
        ]
    };
    // Start from the cases the two profiles agree on: the divergence must be the fuzzer's.
    let mut judge = pair();
    let seeds: Vec<Case> = seeds
        .into_iter()
        .filter(|c| signature::find(c, &judge.iter_mut().map(|b| (b.name().to_string(), b.run(c))).collect::<Vec<_>>(), &KnownList::default()).is_none())
        .collect();
    assert!(!seeds.is_empty(), "the profiles disagree on every cmo case");
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-profiles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = Config {
        seed,
        time: std::time::Duration::from_secs(120),
        iters: Some(seeds.len() as u64 + 3000),
        out: None,
        found: Some(dir.clone()),
        minimise_budget: 200,
        progress: false,
        known: KnownList::default(),
    };
    let st = fuzz::campaign(&cfg, pair(), seeds).expect("campaign runs");
    eprintln!("{}", st.line());
    assert_eq!(st.seed_divergences, 0);
    for f in &st.finds {
        eprintln!("{} ({} -> {} insns): {}", f.signature, f.instructions_before, f.instructions_after, f.explanation);
    }
    let f = st.finds.iter().find(|f| f.kind == signature::FindKind::Divergence).expect("the two profiles diverge somewhere in the cmo family");
    assert!(f.instructions_after <= f.instructions_before);
    let saved = trapdiff::case_file::load(f.path.as_ref().expect("saved")).expect("loads");
    let mut b = pair();
    let outs: Vec<_> = b.iter_mut().map(|b| (b.name().to_string(), b.run(&saved))).collect();
    assert_eq!(signature::find(&saved, &outs, &KnownList::default()).map(|x| x.signature), Some(f.signature.clone()), "the saved find reproduces");
    let _ = std::fs::remove_dir_all(&dir);
}
