//! Minimisation keeps the divergence: a planted difference between two backends (inside this
//! test: a reference that turns every instruction into an MMIO read of its word, and a
//! "buggy" copy that reports an abort for DC CIVAC instead) is shrunk to the one instruction
//! that triggers it, and the campaign finds, minimises and saves it with its provenance.

use std::time::Duration;

use trapdiff::backend::Backend;
use trapdiff::fuzz::{self, input::builtin_seeds, minimise, signature, Config};
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
                if self.bug && case.state.isa == Isa::A64 && i.w == DC_CIVAC_X1 {
                    // DABT_CUR, DFSC 0x10 (synchronous external abort), CM set.
                    Event::Exception { vector: Vector::Sync, from_el0: false, syndrome: (0x25 << 26) | (1 << 25) | (1 << 8) | 0x10, far: None, pc }
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
    let f = signature::find(&outs).expect("the planted bug diverges on the seed");
    let m = minimise::minimise(&case, &f.signature, outs, 500, Duration::from_secs(60), &mut run);
    assert_eq!(m.case.code.insns.len(), 1, "{:?}", m.case.code.insns);
    assert_eq!(m.case.code.insns[0].w, DC_CIVAC_X1);
    assert_eq!(m.case.memory.len(), 1, "only the code's region is needed");
    assert!(m.case.regs.is_empty());
    assert!(m.case.validate().is_ok());
    let again = signature::find(&run(&m.case)).expect("still diverges");
    assert_eq!(again.signature, f.signature);
    assert!(m.steps >= 5 && m.execs <= 500, "steps {} execs {}", m.steps, m.execs);
}

#[test]
fn minimisation_respects_its_budget() {
    let case = builtin_seeds().into_iter().find(|c| c.state.isa == Isa::A64).expect("an A64 seed");
    let mut backends = pair();
    let mut run = |c: &Case| backends.iter_mut().map(|b| (b.name().to_string(), b.run(c))).collect::<Vec<_>>();
    let outs = run(&case);
    let f = signature::find(&outs).expect("diverges");
    let m = minimise::minimise(&case, &f.signature, outs, 2, Duration::from_secs(60), &mut run);
    assert_eq!(m.execs, 2);
}

#[test]
fn campaign_finds_minimises_and_saves_the_planted_bug() {
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-minimise-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = Config {
        seed: 3,
        time: std::time::Duration::from_secs(60),
        iters: Some(300),
        out: Some(dir.join("out")),
        found: Some(dir.join("found")),
        minimise_budget: 300,
        progress: false,
    };
    let st = fuzz::campaign(&cfg, pair(), builtin_seeds()).expect("campaign runs");
    let f = st.finds.iter().find(|f| f.kind == signature::FindKind::Divergence).expect("the planted divergence is found");
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
    assert_eq!(signature::find(&outs).map(|x| x.signature), Some(f.signature.clone()));
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out/stats.json")).expect("stats.json")).expect("json");
    assert!(stats["execs"].as_u64().unwrap_or(0) >= 300);
    let _ = std::fs::remove_dir_all(&dir);
}
