//! Mutated case files never panic the loader, the validator or lowering.
//!
//! Every suite case (and every regression case) is a seed; each input is one seed with one to
//! three mutations: byte-level ones (flips, deleted and duplicated spans, truncation, numbers
//! replaced by huge, negative or overflowing ones, strings replaced by non-ASCII ones, bytes
//! that are not UTF-8) and JSON-aware ones (a random node of the parsed case replaced, nudged,
//! removed, duplicated or swapped for one from another case, then reserialised), so that many
//! inputs get past the syntax into `Case::validate` and `lower`. Each input goes through
//! `case_file::parse_bytes` (what `case_file::load` does after reading) and, when it is a valid
//! case, `guest_payloads::lower::lower`, under `catch_unwind`. A panicking input is saved to a
//! temporary file (the failure names it): `case_file::load` and `lower` of that file panic
//! the same way.
//!
//! Deterministic: input `i` depends only on the seed and `i`. `TRAPDIFF_CASE_FUZZ_SEED` and
//! `TRAPDIFF_CASE_FUZZ_INPUTS` override the defaults.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use trapdiff::case_file::{self, CaseFileError};

/// About 7 s in release on two cores.
const DEFAULT_INPUTS: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x7d1f_c0de_0013;
/// Saved reproducers at most (the failure count is always exact).
const MAX_SAVED: usize = 50;

/// Numbers that have broken parsers: past u64 and u128, negative, not integers, page and
/// block boundaries, the limits a case may reach, and almost-numbers.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "0x0",
    "0x1",
    "0x2",
    "0xfff",
    "0x1000",
    "0x1001",
    "0x200000",
    "0x1fffff",
    "0x4000000",
    "0x4001000",
    "0x10000000",
    "0x20000000",
    "0xffffffff",
    "0x100000000",
    "0xffffffffff",
    "0x10000000000",
    "0xfffffffffffff000",
    "0xfffffffffffffffc",
    "0xffffffffffffffff",
    "18446744073709551615",
    "18446744073709551616",
    "0x10000000000000000",
    "340282366920938463463374607431768211455",
    "340282366920938463463374607431768211456",
    "-9223372036854775808",
    "4294967296",
    "1e400",
    "0.5",
    "0x",
    "0x_",
    "+1",
    "0x+1",
    "",
    " 0x10 ",
];

/// Strings that have broken hand-written parsers: multi-byte characters first, Unicode
/// digits, full-width letters, combining marks, zero-width spaces, NUL.
const NON_ASCII: &[&str] =
    &["é1", "x١", "ｘ0", "ß", "0x５0", "\u{301}x0", "😀", "r\u{200b}1", "Ω", "ａｓｍ", "ld\u{0}r", "x1é", "é", "0xé", "٠x10", "ldr w1, [x0]é", "\u{feff}"];

/// Byte sequences that are not UTF-8: a stray continuation byte, a truncated sequence, a
/// surrogate, an overlong NUL, a 5-byte form, 0xff.
const NOT_UTF8: &[&[u8]] = &[b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xc0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"];

/// xorshift64* (Vigna), seeded through splitmix64 so nearby seeds give unrelated streams.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        // xorshift's state must not be zero.
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// A seed case: its file, bytes, parsed JSON and every path to a node in it.
struct Seed {
    path: PathBuf,
    bytes: Vec<u8>,
    json: Value,
    nodes: Vec<Vec<Step>>,
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn node_paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(Step::Key(k.clone()));
                node_paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(Step::Index(i));
                node_paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut v = v;
    for s in path {
        v = match s {
            Step::Key(k) => v.get_mut(k.as_str())?,
            Step::Index(i) => v.get_mut(*i)?,
        };
    }
    Some(v)
}

fn node<'a>(v: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut v = v;
    for s in path {
        v = match s {
            Step::Key(k) => v.get(k.as_str())?,
            Step::Index(i) => v.get(*i)?,
        };
    }
    Some(v)
}

/// Everything the mutators draw from: the seeds, and every short string and key they hold
/// (enum variants, region and register names), so a swap often yields another valid case.
struct Corpus {
    seeds: Vec<Seed>,
    strings: Vec<String>,
}

fn load_corpus() -> Corpus {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let suite = guest_payloads::case_files::json_files_in(&root.join("suite"));
    assert!(!suite.is_empty(), "no case files under {}: the fuzz test would test nothing", root.join("suite").display());
    let mut files = suite;
    files.extend(guest_payloads::case_files::json_files_in(&root.join("regressions")));
    let mut strings = BTreeSet::new();
    let mut seeds = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut nodes = Vec::new();
        node_paths(&json, &mut Vec::new(), &mut nodes);
        for p in &nodes {
            if let Some(Step::Key(k)) = p.last() {
                strings.insert(k.clone());
            }
            if let Some(Value::String(s)) = node(&json, p) {
                if s.len() <= 32 {
                    strings.insert(s.clone());
                }
            }
        }
        seeds.push(Seed { path, bytes, json, nodes });
    }
    Corpus { seeds, strings: strings.into_iter().collect() }
}

/// A number as a case file may hold one: hex string, decimal string or JSON number.
fn number_value(rng: &mut Rng, s: &str) -> Value {
    match rng.below(3) {
        0 => serde_json::from_str::<Value>(s).ok().filter(Value::is_number).unwrap_or_else(|| Value::String(s.to_string())),
        _ => Value::String(s.to_string()),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// A small, plausible change to a number: a step of an instruction, a page or a block either
/// way, a flipped bit, or a neighbouring boundary. Wrapping on purpose: the result may overflow.
fn nudge(rng: &mut Rng, n: u64) -> u64 {
    let step = *rng.pick(&[1u64, 2, 4, 8, 0x10, 0x100, 0x1000, 0x2000, 0x10_0000, 0x20_0000]);
    match rng.below(4) {
        0 => n.wrapping_add(step),
        1 => n.wrapping_sub(step),
        2 => n ^ (1 << rng.below(64)),
        _ => n.wrapping_mul(2),
    }
}

/// One JSON-aware mutation of `v` (a clone of `seed.json`), described for the failure report.
fn mutate_json(rng: &mut Rng, corpus: &Corpus, seed: &Seed, v: &mut Value) -> String {
    let path = rng.pick(&seed.nodes).clone();
    let Some(target) = node_mut(v, &path) else { return "json: node gone".into() };
    // Weighted towards changes that keep the case well-typed, so that it reaches validate.
    let what = match rng.below(20) {
        0..=4 => match as_u64(target) {
            Some(n) => {
                let m = nudge(rng, n);
                *target = if rng.percent(80) { Value::String(format!("{m:#x}")) } else { Value::from(m) };
                format!("nudge {n:#x} -> {m:#x}")
            }
            None => match target {
                Value::Bool(b) => {
                    *b = !*b;
                    "flip bool".into()
                }
                _ => {
                    *target = Value::String(rng.pick(&corpus.strings).clone());
                    "swap for a corpus string".into()
                }
            },
        },
        5 | 6 => {
            let s = *rng.pick(NUMBERS);
            *target = number_value(rng, s);
            format!("number {s:?}")
        }
        7 => {
            let s = *rng.pick(NON_ASCII);
            *target = Value::String(s.to_string());
            format!("non-ASCII {s:?}")
        }
        8 | 9 => {
            let s = rng.pick(&corpus.strings).clone();
            let what = format!("corpus string {s:?}");
            *target = Value::String(s);
            what
        }
        10..=12 => {
            // Splice in a node from another case (a whole region, insn, register map...),
            // from the same place when it has one, so the types mostly agree.
            let other = rng.pick(&corpus.seeds);
            let same = node(&other.json, &path).filter(|_| rng.percent(75));
            let from = match same {
                Some(x) => x,
                None => {
                    let p: &Vec<Step> = rng.pick(&other.nodes);
                    node(&other.json, p).unwrap_or(&Value::Null)
                }
            };
            *target = from.clone();
            format!("splice from {}", other.path.display())
        }
        13 | 14 => match target {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                let e = a[i].clone();
                let times = 1 + rng.below(3);
                for _ in 0..times {
                    a.insert(i, e.clone());
                }
                format!("duplicate array element {times}x")
            }
            Value::Object(m) if !m.is_empty() => {
                // Rename a key: register names, field names (some non-ASCII).
                let keys: Vec<String> = m.keys().cloned().collect();
                let old = rng.pick(&keys).clone();
                let new = if rng.percent(50) { rng.pick(NON_ASCII).to_string() } else { rng.pick(&corpus.strings).clone() };
                if let Some(x) = m.remove(&old) {
                    m.insert(new.clone(), x);
                }
                format!("rename key {old:?} -> {new:?}")
            }
            _ => {
                *target = Value::Null;
                "null".into()
            }
        },
        15 | 16 => match target {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                a.remove(i);
                "remove array element".into()
            }
            Value::Object(m) if !m.is_empty() => {
                let keys: Vec<String> = m.keys().cloned().collect();
                let k = rng.pick(&keys).clone();
                m.remove(&k);
                format!("remove key {k:?}")
            }
            _ => {
                *target = Value::Array(Vec::new());
                "empty array".into()
            }
        },
        17 => {
            *target = rng.pick(&[Value::Null, Value::Bool(true), Value::Array(Vec::new()), Value::Object(Default::default()), Value::from(-1)]).clone();
            "odd type".into()
        }
        _ => match target {
            Value::String(s) if !s.is_empty() => {
                // A non-ASCII char in the middle of a string hand parsers slice.
                let at = s.char_indices().map(|(i, _)| i).nth(rng.below(s.chars().count())).unwrap_or(0);
                let c = *rng.pick(&["é", "١", "\u{301}", "😀", "ｘ"]);
                s.insert_str(at, c);
                format!("insert {c:?} in a string")
            }
            _ => {
                *target = Value::String(rng.pick(NON_ASCII).to_string());
                "non-ASCII string".into()
            }
        },
    };
    format!("json {}: {what}", show_path(&path))
}

fn show_path(p: &[Step]) -> String {
    let mut s = String::new();
    for step in p {
        match step {
            Step::Key(k) => s.push_str(&format!(".{k}")),
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The byte span of a quoted string at or after `from`, without its quotes.
fn string_at(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let open = from + b.get(from..)?.iter().position(|&c| c == b'"')?;
    let close = open + 1 + b[open + 1..].iter().position(|&c| c == b'"')?;
    Some((open + 1, close))
}

/// The span of a number-like token (digits, hex, `x`, `_`, `-`) at or after `from`.
fn number_at(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let start = from + b.get(from..)?.iter().position(|c| c.is_ascii_digit())?;
    let is_num = |c: &u8| c.is_ascii_hexdigit() || matches!(c, b'x' | b'X' | b'_' | b'-');
    let start = (0..start).rev().take_while(|&i| is_num(&b[i])).last().unwrap_or(start);
    let end = start + b[start..].iter().take_while(|c| is_num(c)).count();
    Some((start, end))
}

/// One byte-level mutation of `b`, described for the failure report.
fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) -> String {
    if b.is_empty() {
        b.extend_from_slice(b"{}");
    }
    let at = rng.below(b.len());
    match rng.below(8) {
        0 => {
            let bit = rng.below(8);
            b[at] ^= 1 << bit;
            format!("flip bit {bit} of byte {at}")
        }
        1 => {
            let len = 1 + rng.below(64.min(b.len() - at));
            b.drain(at..at + len);
            format!("delete {len} bytes at {at}")
        }
        2 => {
            let len = 1 + rng.below(256.min(b.len() - at));
            let span = b[at..at + len].to_vec();
            let to = rng.below(b.len() + 1);
            b.splice(to..to, span);
            format!("duplicate {len} bytes from {at} to {to}")
        }
        3 | 4 => match number_at(b, at) {
            Some((s, e)) => {
                let n = rng.pick(NUMBERS);
                b.splice(s..e, n.bytes());
                format!("number at {s} -> {n:?}")
            }
            None => {
                b.truncate(at);
                format!("truncate at {at}")
            }
        },
        5 => match string_at(b, at) {
            Some((s, e)) => {
                let n = rng.pick(NON_ASCII);
                b.splice(s..e, n.bytes());
                format!("string at {s} -> {n:?}")
            }
            None => {
                b.truncate(at);
                format!("truncate at {at}")
            }
        },
        6 => {
            b.truncate(at);
            format!("truncate at {at}")
        }
        _ => {
            let x = rng.pick(NOT_UTF8);
            b.splice(at..at, x.iter().copied());
            format!("insert {x:02x?} at {at}")
        }
    }
}

/// Input `i`: its seed, its bytes and what was done to them.
fn input(corpus: &Corpus, seed: u64, i: u64) -> (usize, Vec<u8>, Vec<String>) {
    let mut rng = Rng::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let s = rng.below(corpus.seeds.len());
    let seed_case = &corpus.seeds[s];
    let n = *rng.pick(&[1, 1, 1, 1, 1, 2, 2, 2, 3, 3]);
    let mut ops = Vec::new();
    // Mostly JSON-aware (they reach validate and lower); byte-level last, on the result.
    let mut json = None;
    let mut bytes = None;
    for _ in 0..n {
        if bytes.is_none() && rng.percent(75) {
            let v = json.get_or_insert_with(|| seed_case.json.clone());
            ops.push(mutate_json(&mut rng, corpus, seed_case, v));
        } else {
            let b = bytes.get_or_insert_with(|| match &json {
                Some(v) => serde_json::to_vec_pretty(v).unwrap_or_default(),
                None => seed_case.bytes.clone(),
            });
            ops.push(mutate_bytes(&mut rng, b));
        }
    }
    let bytes = match (bytes, json) {
        (Some(b), _) => b,
        (None, Some(v)) => serde_json::to_vec_pretty(&v).unwrap_or_default(),
        (None, None) => seed_case.bytes.clone(),
    };
    (s, bytes, ops)
}

#[derive(Clone, Debug, Default)]
struct Stages {
    not_utf8: u64,
    /// Not JSON at all.
    syntax: u64,
    /// JSON, but not a case: a wrong type, an unknown field, a bad number or register name.
    shape: u64,
    invalid: u64,
    validated: u64,
    lower_refused: u64,
    lowered: u64,
    /// Invalid inputs by the field validate named (indices dropped): how deep they got.
    invalid_fields: BTreeMap<String, u64>,
}

impl Stages {
    fn add(&mut self, o: &Stages) {
        self.not_utf8 += o.not_utf8;
        self.syntax += o.syntax;
        self.shape += o.shape;
        self.invalid += o.invalid;
        self.validated += o.validated;
        self.lower_refused += o.lower_refused;
        self.lowered += o.lowered;
        for (f, k) in &o.invalid_fields {
            *self.invalid_fields.entry(f.clone()).or_default() += k;
        }
    }
}

/// Run one input through the loader and, if valid, lowering; counts where it stopped.
fn run_one(path: &Path, bytes: &[u8], stages: &mut Stages) {
    match case_file::parse_bytes(path, bytes) {
        Err(CaseFileError::NotUtf8 { .. }) => stages.not_utf8 += 1,
        Err(CaseFileError::Syntax { .. }) if serde_json::from_slice::<Value>(bytes).is_ok() => stages.shape += 1,
        Err(CaseFileError::Syntax { .. }) => stages.syntax += 1,
        Err(CaseFileError::Invalid { field, .. }) => {
            stages.invalid += 1;
            *stages.invalid_fields.entry(field_kind(&field)).or_default() += 1;
        }
        Err(e) => panic!("parse_bytes gave an error only load can give: {e}"),
        Ok(case) => {
            stages.validated += 1;
            match guest_payloads::lower::lower(&case, 1) {
                Ok(_) => stages.lowered += 1,
                Err(_) => stages.lower_refused += 1,
            }
        }
    }
}

/// A field path without its indices and register names: `memory[1].init[0]` -> `memory[].init[]`.
fn field_kind(field: &str) -> String {
    if field.starts_with("regs.") {
        return "regs.<reg>".into();
    }
    let mut out = String::new();
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if in_index => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

thread_local! {
    /// The message of the last panic on this thread (the hook records it; the default hook
    /// would print every caught panic).
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

struct Failure {
    index: u64,
    seed_file: PathBuf,
    ops: Vec<String>,
    message: String,
    bytes: Vec<u8>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn mutated_cases_never_panic_the_loader_or_lowering() {
    let seed = env_u64("TRAPDIFF_CASE_FUZZ_SEED", DEFAULT_SEED);
    let inputs = env_u64("TRAPDIFF_CASE_FUZZ_INPUTS", DEFAULT_INPUTS);
    let corpus = load_corpus();
    let start = Instant::now();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;

    panic::set_hook(Box::new(|info| LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string())));
    let results: Vec<(Stages, Vec<Failure>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let corpus = &corpus;
                s.spawn(move || {
                    let mut stages = Stages::default();
                    let mut failures = Vec::new();
                    let mut i = w;
                    while i < inputs {
                        let (from, bytes, ops) = input(corpus, seed, i);
                        let path = PathBuf::from(format!("fuzz-{i}.json"));
                        let mut st = Stages::default();
                        match panic::catch_unwind(AssertUnwindSafe(|| run_one(&path, &bytes, &mut st))) {
                            Ok(()) => stages.add(&st),
                            Err(_) => {
                                let message = LAST_PANIC.with(|p| p.borrow().clone());
                                failures.push(Failure { index: i, seed_file: corpus.seeds[from].path.clone(), ops, message, bytes });
                            }
                        }
                        i += workers;
                    }
                    (stages, failures)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker thread")).collect()
    });
    drop(panic::take_hook());
    let elapsed = start.elapsed();

    let mut stages = Stages::default();
    let mut failures = Vec::new();
    for (s, f) in results {
        stages.add(&s);
        failures.extend(f);
    }
    failures.sort_by_key(|f| f.index);
    let n = inputs as f64 / 100.0;
    eprintln!("case fuzz: {inputs} inputs from {} seed files (seed {seed:#x}, {workers} threads) in {:.1} s", corpus.seeds.len(), elapsed.as_secs_f64());
    eprintln!("  not UTF-8       {:>7} ({:.1}%)", stages.not_utf8, stages.not_utf8 as f64 / n);
    eprintln!("  not JSON        {:>7} ({:.1}%)", stages.syntax, stages.syntax as f64 / n);
    eprintln!("  not a case      {:>7} ({:.1}%)  (types, fields, numbers, register names)", stages.shape, stages.shape as f64 / n);
    eprintln!("  invalid         {:>7} ({:.1}%)  (Case::validate or the disassembly check)", stages.invalid, stages.invalid as f64 / n);
    eprintln!("  validated       {:>7} ({:.1}%)", stages.validated, stages.validated as f64 / n);
    eprintln!("    lower refused {:>7} ({:.1}%)", stages.lower_refused, stages.lower_refused as f64 / n);
    eprintln!("    lowered       {:>7} ({:.1}%)", stages.lowered, stages.lowered as f64 / n);
    eprintln!("  panicked        {:>7}", failures.len());
    let mut fields: Vec<_> = stages.invalid_fields.iter().collect();
    fields.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let fields: Vec<String> = fields.iter().map(|(f, k)| format!("{f} {k}")).collect();
    eprintln!("  invalid, by field ({}): {}", fields.len(), fields.join(", "));

    if !failures.is_empty() {
        let dir = std::env::temp_dir().join(format!("trapdiff-case-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut report = Vec::new();
        for f in failures.iter().take(MAX_SAVED) {
            let file = dir.join(format!("input-{}.json", f.index));
            let saved = match std::fs::write(&file, &f.bytes) {
                Ok(()) => file.display().to_string(),
                Err(e) => format!("(not saved: {e})"),
            };
            report.push(format!("input {} from {} [{}]: {}\n    saved as {saved}", f.index, f.seed_file.display(), f.ops.join("; "), f.message));
        }
        panic!("{} of {inputs} inputs panicked (first {} shown):\n{}", failures.len(), report.len(), report.join("\n"));
    }
    let counted = stages.not_utf8 + stages.syntax + stages.shape + stages.invalid + stages.validated;
    assert_eq!(counted, inputs, "every input is counted once");
    // The test is only worth its time if inputs reach every stage, and many get deep: past
    // the parser into validate, and past validate into lowering.
    assert!(stages.not_utf8 > 0 && stages.syntax > 0 && stages.shape > 0, "a parsing stage was never reached: {stages:?}");
    assert!((stages.invalid + stages.validated) as f64 >= 10.0 * n, "under 10% of inputs reached validate: {stages:?}");
    assert!(stages.lowered as f64 >= 5.0 * n, "under 5% of inputs were lowered: {stages:?}");
}
