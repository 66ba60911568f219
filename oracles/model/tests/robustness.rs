//! The model must answer every valid case without panicking and in bounded time, whatever
//! the instruction words: mutate curated cases with random words (a deterministic xorshift,
//! as the fuzzer's instruction mutator would) and predict each.

use std::path::Path;
use std::time::{Duration, Instant};

use trapdiff_arch::case::Insn;
use trapdiff_arch::{Case, Isa};
use trapdiff_model::{Model, PROFILES};

use guest_payloads::case_files::json_files_in as json_files;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_instruction_words_never_panic() {
    let mut files = json_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases"));
    files.extend(json_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/suite")));
    let cases: Vec<Case> = files.iter().filter_map(|f| serde_json::from_str(&std::fs::read_to_string(f).ok()?).ok()).collect();
    assert!(!cases.is_empty());
    let seed = std::env::var("ROBUSTNESS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut rng = XorShift(seed);
    let mut model = Model::new(PROFILES[0]);
    let start = Instant::now();
    let n: usize = std::env::var("ROBUSTNESS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    for i in 0..n {
        let mut c = cases[(rng.next() as usize) % cases.len()].clone();
        let k = (rng.next() as usize) % c.code.insns.len();
        let w = rng.next() as u32;
        let w = match c.state.isa {
            // Keep a T32 word's size what its first halfword says, so the case stays valid.
            Isa::T32 if trapdiff_arch::case::t32_is_32bit((w >> 16) as u16) => w,
            Isa::T32 => w & 0xffff,
            _ => w,
        };
        if c.state.isa == Isa::T32 && w <= 0xffff && trapdiff_arch::case::t32_is_32bit(w as u16) {
            continue;
        }
        c.code.insns[k] = Insn::new(w, "");
        if c.validate().is_err() {
            continue;
        }
        let t = Instant::now();
        let o = model.predict(&c);
        assert!(t.elapsed() < Duration::from_secs(10), "case {i} ({} with {w:#x}) took {:?}", c.name, t.elapsed());
        std::hint::black_box(o);
    }
    eprintln!("{n} mutated cases in {:?}", start.elapsed());
}
