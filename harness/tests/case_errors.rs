//! Malformed case files each get a precise error naming the file and the place, and none
//! panics. The files are in tests/malformed/; `valid.json` is the base each one breaks.

use std::path::PathBuf;

use trapdiff::case_file::{self, CaseFileError};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed")
}

/// (file, where the error must point, words the message must contain)
const EXPECTED: &[(&str, &str, &str)] = &[
    ("unknown-field", ":", "unknown field `colour`"),
    ("unknown-top-field", ":", "unknown field `expectations`"),
    ("overlapping-regions", "memory[2].ipa", "overlaps region `code`"),
    ("code-outside-ram", "code.ipa", "outside every region"),
    ("code-in-mmio", "code.ipa", "must be in `ram` or `ro_ram`"),
    ("size-not-page-aligned", "memory[1].size", "not a multiple of the 4096-byte page"),
    ("ipa-not-page-aligned", "memory[1].ipa", "not aligned to the 4096-byte page"),
    ("aarch32-with-a64-words", "code.insns[0]", "A64 assembly but the case is A32"),
    ("schema-version", "schema", "unsupported schema version 99"),
    ("bad-number", ":", "`big` is not a number"),
    ("reserved-window", "memory[2].ipa", "reserved for the guest runtime"),
    ("init-past-end", "memory[0].init[0]", "extends past the end"),
    ("asm-mismatch", "code.insns[0]", "disassembles as `ldr w1, [x0]`"),
    ("duplicate-region-name", "memory[2].name", "used twice"),
    ("fpexc-in-a64", "sysregs.fpexc", "only exists for AArch32"),
    ("observe-unknown-region", "observe.mem[0]", "no region named `nope`"),
    ("bad-register", ":", "`x31` is not a register"),
    ("value-too-wide", "regs.x1", "does not fit in 64 bits"),
    ("empty-code", "code.insns", "at least one instruction"),
    ("bad-kind", ":", "unknown variant `rom`"),
    ("s2-on-ram", "memory[0].s2", "only a `device` region"),
    ("t32-half-instruction", "code.insns[0]", "first half of a 32-bit T32 instruction"),
    ("memory-too-large", "memory:", "a case may use at most 0x4000000"),
    ("syntax-error", ":5:3:", "expected `,` or `}`"),
    ("truncated", ":", "EOF while parsing"),
    ("empty", ":1:0:", "EOF while parsing"),
    ("binary-garbage", ":2:", "not UTF-8 at byte offset 128"),
    ("non-utf8-in-string", ":3:", "not UTF-8 at byte offset 30"),
    ("register-non-ascii", ":", "`é1` is not a register"),
    ("register-non-ascii-digit", ":", "`x١` is not a register"),
    ("observe-register-non-ascii", ":", "`ß1` is not a register"),
    ("number-non-ascii", ":", "`0x５0000000` is not a number"),
    ("init-bytes-non-ascii", ":", "`00é1` is not bytes in hex"),
    ("number-past-u64", ":19:", "0x10000000000000000 does not fit in 64 bits"),
    ("number-negative", ":", "negative number"),
    ("region-end-overflows", "memory[1].size", "ipa 0xfffffffffffff000 + size 0x1000 overflows 64 bits"),
    ("init-offset-overflows", "memory[0].init[0].offset", "offset 0xffffffffffffffff + 2 bytes overflows 64 bits"),
    ("observe-window-overflows", "observe.mem[0].offset", "0xffffffffffffffff plus len 2 overflows 64 bits"),
    ("code-end-overflows", "code.ipa", "0xfffffffffffffffc plus the code's size and end marker overflows 64 bits"),
];

#[test]
fn the_base_case_is_valid() {
    let c = case_file::load(&dir().join("valid.json")).expect("valid.json loads");
    assert_eq!(c.name, "t/base");
}

#[test]
fn each_malformed_file_gets_its_precise_error() {
    let mut failures = Vec::new();
    for (file, place, words) in EXPECTED {
        let path = dir().join(format!("{file}.json"));
        let result = std::panic::catch_unwind(|| case_file::load(&path));
        let msg = match result {
            Err(_) => {
                failures.push(format!("{file}: panicked"));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{file}: was accepted"));
                continue;
            }
            Ok(Err(e)) => {
                // Every error names the file.
                assert!(e.path().ends_with(format!("{file}.json")), "{e}");
                if matches!(e, CaseFileError::Io { .. }) {
                    failures.push(format!("{file}: unexpected I/O error {e}"));
                }
                e.to_string()
            }
        };
        if !msg.contains(place) || !msg.contains(words) {
            failures.push(format!("{file}: expected `{place}` and `{words}` in: {msg}"));
        }
    }
    // Every malformed file on disk is covered by the table.
    for entry in std::fs::read_dir(dir()).expect("malformed dir") {
        let name = entry.expect("entry").file_name().to_string_lossy().trim_end_matches(".json").to_string();
        if name != "valid" && !EXPECTED.iter().any(|(f, _, _)| *f == name) {
            failures.push(format!("{name}.json has no expected error in the table"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = case_file::load(&dir().join("syntax-error.json")).expect_err("must fail");
    match e {
        CaseFileError::Syntax { line, column, .. } => assert!(line == 5 && column > 0, "line {line} column {column}"),
        other => panic!("expected a syntax error, got {other}"),
    }
}

/// Written at run time (a sparse file: no disk used), not committed.
#[test]
fn a_file_past_the_size_limit_is_refused_by_name() {
    let tmp = std::env::temp_dir().join(format!("trapdiff-case-errors-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let (big, at_limit) = (tmp.join("too-large.json"), tmp.join("at-limit.json"));
    std::fs::File::create(&big).and_then(|f| f.set_len(case_file::MAX_CASE_FILE + 1)).expect("write too-large.json");
    std::fs::File::create(&at_limit).and_then(|f| f.set_len(case_file::MAX_CASE_FILE)).expect("write at-limit.json");
    let big_err = case_file::load(&big).expect_err("must fail");
    let at_limit_err = case_file::load(&at_limit).expect_err("NUL bytes are not JSON");
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(matches!(big_err, CaseFileError::TooLarge { .. }), "{big_err}");
    let msg = big_err.to_string();
    assert!(msg.contains("too-large.json") && msg.contains("file is larger than the 16 MiB a case may be"), "{msg}");
    // Exactly the limit is read and parsed (and fails as JSON, not as too large).
    assert!(matches!(at_limit_err, CaseFileError::Syntax { .. }), "{at_limit_err}");
}

#[test]
fn one_bad_file_loses_nothing_else() {
    let results = case_file::load_all(&[dir()]);
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "only valid.json loads");
    assert_eq!(results.len(), EXPECTED.len() + 1);
}
