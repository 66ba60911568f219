//! The fuzzer's mutators keep cases loadable: over many seeds and long mutation chains every
//! mutated case passes `Case::validate` and the case loader (JSON round trip, Capstone text
//! beside every word), every kind of mutation actually applies, and a seed replays exactly.

use std::collections::BTreeMap;
use std::path::Path;

use guest_payloads::encode::Disassembler;
use libafl_bolts::rands::{Rand, StdRand};
use trapdiff::case_file;
use trapdiff::fuzz::input::builtin_seeds;
use trapdiff::fuzz::mutators::{mutate_checked, sync_asm, Mutation};
use trapdiff_arch::Case;

fn seeds() -> Vec<Case> {
    let mut v = builtin_seeds();
    // The curated suite too, when it is there: its cases are what `trapdiff fuzz` starts from.
    let suite = trapdiff::paths::suite_dir();
    let suite: Vec<Case> = case_file::load_all(&[suite]).into_iter().filter_map(Result::ok).map(|(_, c)| c).collect();
    // A spread over every family, not just the first directory.
    assert!(!suite.is_empty(), "no case of corpus/suite loads: a mutation test over the builtin seeds alone proves little");
    let step = (suite.len() / 150).max(1);
    v.extend(suite.into_iter().step_by(step));
    v
}

fn loads(c: &Case) -> Result<(), String> {
    c.validate().map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(c).map_err(|e| e.to_string())?;
    case_file::parse(Path::new("mutated.json"), &text).map(|_| ()).map_err(|e| e.to_string())
}

/// Raw mutations (without the validating guard) produce valid cases by construction.
#[test]
fn every_mutation_keeps_cases_valid() {
    let d = Disassembler::new().expect("capstone");
    let seeds = seeds();
    let mut applied: BTreeMap<&str, u32> = BTreeMap::new();
    let mut failures = Vec::new();
    for seed in 0..150u64 {
        let mut r = StdRand::with_seed(seed);
        let mut case = seeds[seed as usize % seeds.len()].clone();
        for step in 0..40 {
            let m = Mutation::ALL[r.below_or_zero(Mutation::ALL.len())];
            let before = case.clone();
            if !m.apply(&mut r, &mut case, Some(&d)) {
                assert_eq!(case, before, "{m:?} reported no change but changed the case");
                continue;
            }
            sync_asm(&mut case, Some(&d));
            *applied.entry(m.name()).or_default() += 1;
            if let Err(e) = loads(&case) {
                failures.push(format!("seed {seed} step {step} {m:?}: {e}"));
                case = before;
            }
        }
    }
    eprintln!("{} seeds; applied: {applied:?}", seeds.len());
    assert!(failures.is_empty(), "{} invalid mutated cases, e.g.:\n{}", failures.len(), failures[..failures.len().min(15)].join("\n"));
    for m in Mutation::ALL {
        assert!(applied.get(m.name()).copied().unwrap_or(0) >= 20, "mutation {} hardly ever applies: {applied:?}", m.name());
    }
}

/// The LibAFL-facing path (guarded) changes the case most of the time and always loads.
#[test]
fn guarded_mutations_mostly_mutate_and_always_load() {
    let d = Disassembler::new().expect("capstone");
    let seeds = seeds();
    let (mut tried, mut mutated) = (0u32, 0u32);
    for seed in 0..100u64 {
        let mut r = StdRand::with_seed(1000 + seed);
        let mut case = seeds[seed as usize % seeds.len()].clone();
        for _ in 0..30 {
            let m = Mutation::ALL[r.below_or_zero(Mutation::ALL.len())];
            tried += 1;
            let before = case.clone();
            if mutate_checked(m, &mut r, &mut case, Some(&d)) {
                mutated += 1;
                assert_ne!(case, before);
                loads(&case).unwrap_or_else(|e| panic!("{m:?} produced a case the loader rejects: {e}"));
            } else {
                assert_eq!(case, before);
            }
        }
    }
    assert!(mutated * 10 >= tried * 6, "only {mutated} of {tried} mutations changed the case");
}

/// The same seed gives the same chain of cases.
#[test]
fn mutation_is_deterministic_per_seed() {
    let d = Disassembler::new().expect("capstone");
    let chain = |seed: u64| {
        let mut r = StdRand::with_seed(seed);
        let mut case = builtin_seeds()[0].clone();
        let mut out = Vec::new();
        for _ in 0..50 {
            let m = Mutation::ALL[r.below_or_zero(Mutation::ALL.len())];
            mutate_checked(m, &mut r, &mut case, Some(&d));
            out.push(case.clone());
        }
        out
    };
    assert_eq!(chain(7), chain(7));
    assert_ne!(chain(7), chain(8));
}

/// Instructions the mutators write never touch the runtime's registers or leave the code.
#[test]
fn operand_edits_stay_safe() {
    use trapdiff::fuzz::mutators::is_safe_text;
    use trapdiff_arch::Isa;
    for (isa, text) in [
        (Isa::A64, "ldr w1, [x0]"),
        (Isa::A64, "dc civac, x1"),
        (Isa::A64, "msr fpcr, x2"),
        (Isa::A32, "mcr p15, #0, r0, c7, c14, #1"),
        (Isa::A32, "vmsr fpexc, r1"),
        (Isa::T32, "movs r1, #3"),
    ] {
        assert!(is_safe_text(isa, text), "{text} should be allowed");
    }
    for (isa, text) in [
        (Isa::A64, "b #0x40"),
        (Isa::A64, "ret"),
        (Isa::A64, "msr vbar_el1, x0"),
        (Isa::A64, "ldr x0, [sp]"),
        (Isa::A64, "hvc #0"),
        (Isa::A64, "wfi"),
        (Isa::A32, "ldr pc, [r0]"),
        (Isa::A32, "pop {r1, r2}"),
        (Isa::A32, "mcr p15, #0, r0, c1, c0, #0"),
        (Isa::A32, "svc #0x7d"),
        (Isa::T32, "ite eq"),
        (Isa::T32, "cbz r0, #0x10"),
    ] {
        assert!(!is_safe_text(isa, text), "{text} should be refused");
    }
}

#[test]
fn mutations_of_a_case_with_moved_stage1_tables_still_lower() {
    // Page tables in a memslot (s1_table_for): every mutated case must still lower, since the
    // table a region holds is rewritten for the mutated layout.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/suite/mmio/a64-el1-ldr-s1-tables-in-ram.json");
    let seed = case_file::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let d = Disassembler::new().expect("capstone");
    let mut r = StdRand::with_seed(11);
    let mut applied = 0;
    for _ in 0..400 {
        let mut c = seed.clone();
        for _ in 0..4 {
            let m = r.choose(Mutation::ALL).expect("mutations");
            applied += usize::from(mutate_checked(m, &mut r, &mut c, Some(&d)));
        }
        if let Err(e) = guest_payloads::lower::lower(&c, 1) {
            panic!("mutated case does not lower: {e}\n{}", serde_json::to_string_pretty(&c).unwrap_or_default());
        }
    }
    assert!(applied > 400, "only {applied} mutations applied");
}
