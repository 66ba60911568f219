//! `trapdiff doctor`: what is present and what is missing, checked, not assumed.

use std::path::Path;
use std::process::Command;

use crate::{backend::qemu, paths};

#[derive(Debug)]
pub struct Check {
    pub what: &'static str,
    /// `Ok(detail)` when present, `Err(what to do)` when missing.
    pub result: Result<String, String>,
    /// Needed for the default run (else it only limits what can run, e.g. native KVM).
    pub required: bool,
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    String::from_utf8_lossy(&text).lines().next().map(|s| s.trim().to_string())
}

fn file(p: &Path, hint: &str) -> Result<String, String> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(format!("{} ({} KiB)", p.display(), m.len() / 1024)),
        _ => Err(format!("{} missing: {hint}", p.display())),
    }
}

const SETUP: &str = "run `bash ci/setup.sh`";

pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    let arch = std::env::consts::ARCH;
    v.push(Check { what: "host architecture", result: Ok(arch.to_string()), required: false });
    let kvm = Path::new("/dev/kvm");
    v.push(Check {
        what: "/dev/kvm (native KVM)",
        result: match (arch, std::fs::OpenOptions::new().read(true).write(true).open(kvm)) {
            ("aarch64", Ok(_)) => Ok("usable: native KVM mode available".into()),
            ("aarch64", Err(e)) => Err(format!("not usable ({e}): native mode off, nested QEMU is used")),
            (_, Ok(_)) => Ok(format!("present but this host is {arch}: KVM on arm64 runs nested under QEMU")),
            (_, Err(_)) => Err(format!("absent; not needed on {arch}: KVM on arm64 runs nested under QEMU")),
        },
        required: false,
    });
    v.push(Check {
        what: "qemu-system-aarch64",
        result: match qemu::qemu_version() {
            Some(ver) => {
                let major: u32 = ver.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
                if major >= 8 {
                    Ok(ver)
                } else {
                    Err(format!("{ver} is too old (TCG lacks Device alignment checks); {SETUP}"))
                }
            }
            None => Err(format!("not found; {SETUP}")),
        },
        required: true,
    });
    v.push(Check {
        what: "Debian rustc (cross builds)",
        result: match first_line("/usr/bin/rustc", &["--version"]) {
            Some(s) if s.contains("1.96") || s.contains("1.9") => Ok(s),
            Some(s) => Err(format!("{s}: need rustc-web 1.96; {SETUP}")),
            None => Err(format!("/usr/bin/rustc not found; {SETUP}")),
        },
        required: true,
    });
    v.push(Check {
        what: "Rust library source (build-std)",
        result: ["/usr/lib/rustlib/src/rust/library/core/Cargo.toml", "/usr/lib/rust-web/lib/rustlib/src/rust/library/core/Cargo.toml"]
            .iter()
            .find(|p| Path::new(p).exists())
            .map(|p| p.to_string())
            .ok_or_else(|| format!("rust-web-src not installed; {SETUP}")),
        required: true,
    });
    for (what, tool) in [
        ("ld.lld (refhyp linker)", "ld.lld"),
        ("aarch64-linux-gnu-gcc (agent linker)", "aarch64-linux-gnu-gcc"),
        ("aarch64-linux-gnu-as (A64 runtime)", "aarch64-linux-gnu-as"),
        ("arm-none-eabi-as (A32 runtime)", "arm-none-eabi-as"),
    ] {
        v.push(Check { what, result: first_line(tool, &["--version"]).ok_or_else(|| format!("{tool} not found; {SETUP}")), required: true });
    }
    v.push(Check {
        what: "aarch64 Rust std (agent)",
        result: ["/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib", "/usr/lib/rust-web/lib/rustlib/aarch64-unknown-linux-gnu/lib"]
            .iter()
            .find(|p| Path::new(p).is_dir())
            .map(|p| p.to_string())
            .ok_or_else(|| format!("libstd-rust-web-dev:arm64 not installed; {SETUP}")),
        required: true,
    });
    let kdir = paths::default_kernel_dir();
    v.push(Check {
        what: "default kernel",
        result: match (std::fs::read_to_string(kdir.join("release")), file(&kdir.join("Image"), SETUP)) {
            (Ok(rel), Ok(img)) => {
                let lock = std::fs::read_to_string(paths::kernel_lock()).unwrap_or_default();
                let rel = rel.trim().to_string();
                if lock.contains(&format!("release={rel}")) {
                    Ok(format!("{rel}, {img}"))
                } else {
                    Err(format!("{rel} does not match ci/kernel.lock; {SETUP}"))
                }
            }
            (_, Err(e)) => Err(e),
            (Err(_), Ok(_)) => Err(format!("{} has no release file; {SETUP}", kdir.display())),
        },
        required: true,
    });
    v.push(Check { what: "refhyp image", result: file(&paths::refhyp_image(), SETUP), required: true });
    v.push(Check { what: "kvm agent", result: file(&paths::agent_binary(), SETUP), required: true });
    let suite = paths::suite_dir();
    let n = count_json(&suite);
    v.push(Check {
        what: "curated suite",
        result: if n > 0 { Ok(format!("{n} cases in {}", suite.display())) } else { Err(format!("no cases in {}", suite.display())) },
        required: true,
    });
    v
}

fn count_json(p: &Path) -> usize {
    guest_payloads::case_files::json_files_in(p).iter().filter(|f| f.is_file()).count()
}

/// Print the checks; returns whether everything required is present.
pub fn report(checks: &[Check]) -> bool {
    let mut ok = true;
    for c in checks {
        let (mark, text) = match &c.result {
            Ok(s) => ("ok     ", s.as_str()),
            Err(s) if c.required => {
                ok = false;
                ("MISSING", s.as_str())
            }
            Err(s) => ("note   ", s.as_str()),
        };
        println!("{mark}  {:<38} {text}", c.what);
    }
    ok
}
