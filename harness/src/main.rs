//! The `trapdiff` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use trapdiff::{case_file, disasm, doctor};

/// Differential conformance test suite and trap fuzzer for KVM on arm64.
///
/// Exit status: 0 when every case agrees on every backend (or is waived), 1 when there are
/// divergences, 2 on infrastructure errors (bad case files, a backend that cannot start).
#[derive(Debug, Parser)]
#[command(name = "trapdiff", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Report what is present or missing: QEMU, cross toolchains, default kernel, /dev/kvm,
    /// built refhyp and agent images, the suite.
    Doctor,
    /// Show a case with the Capstone disassembly of its code.
    Show {
        /// Case file(s).
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Doctor => {
            if doctor::report(&doctor::checks()) {
                ExitCode::SUCCESS
            } else {
                println!("\nsome required pieces are missing: run `bash ci/setup.sh` (as root it installs them)");
                ExitCode::from(2)
            }
        }
        Cmd::Show { cases } => {
            let mut status = ExitCode::SUCCESS;
            for p in cases {
                match case_file::load(&p) {
                    Ok(case) => print!("{}", trapdiff::show::render(&case)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        status = ExitCode::from(2);
                    }
                }
            }
            let _ = disasm::same_text("", "");
            status
        }
    }
}
