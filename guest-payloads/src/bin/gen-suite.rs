//! Regenerate the curated suite: `cargo run -p guest-payloads --bin gen-suite -- corpus/suite`.
//! Writes `<dir>/<family>/<name>.json` for every generated case, removes stale case files, and
//! prints the number of cases per family. `--check` compares instead of writing and exits 1 on
//! the first difference.

use std::path::PathBuf;
use std::process::ExitCode;

use guest_payloads::suite;

fn main() -> ExitCode {
    let mut dir = None;
    let mut check = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: gen-suite [--check] <suite-dir>   (normally corpus/suite)");
                return ExitCode::SUCCESS;
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => {
                eprintln!("gen-suite: unexpected argument `{a}` (usage: gen-suite [--check] <suite-dir>)");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("gen-suite: name the suite directory, e.g. `gen-suite corpus/suite`");
        return ExitCode::from(2);
    };
    match run(&dir, check) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gen-suite: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path, check: bool) -> Result<ExitCode, suite::SuiteError> {
    let cases = suite::generate()?;
    let files = suite::files(&cases)?;
    for (family, n) in suite::counts(&cases) {
        println!("{:<8} {n:>5}", family.name());
    }
    println!("{:<8} {:>5}", "total", cases.len());
    if check {
        return Ok(match suite::compare(dir, &files)? {
            None => {
                println!("{} is up to date", dir.display());
                ExitCode::SUCCESS
            }
            Some(d) => {
                eprintln!("gen-suite: {d}");
                ExitCode::FAILURE
            }
        });
    }
    let (written, removed) = suite::write(dir, &files)?;
    println!("{}: {written} files written, {removed} stale files removed", dir.display());
    Ok(ExitCode::SUCCESS)
}
