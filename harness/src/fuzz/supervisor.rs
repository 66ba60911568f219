//! The supervisor: `trapdiff fuzz` runs each campaign in a client process and starts it again
//! (with the next seed) when a backend aborts it, saving the case it died on as a crash find,
//! as LibAFL's restarting event manager does. The client gets its arguments as serialised
//! [`FuzzArgs`] in its environment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use trapdiff_arch::{Case, Outcome};

use super::cli::{found_dir, FuzzArgs};
use super::executor;
use super::finds::save_find;
use super::signature::{self, FindKind};

/// Set by the supervisor in the client processes it starts: their [`FuzzArgs`] as JSON.
pub(crate) const CLIENT_ENV: &str = "TRAPDIFF_FUZZ_CLIENT";
/// Where a client leaves the case a backend panicked on (read by the supervisor when the
/// panic could not unwind and the client died).
const LAST_PANIC: &str = "last-panic.json";

/// Record the backend and case running when any panic happens, in `out/last-panic.json`,
/// then run the previous hook. A panic that unwinds is caught by the backend and becomes a
/// crash find in process; one that aborts (Rust panics inside C bindings cannot unwind)
/// kills the client, and the supervisor saves the case from this file.
pub fn install_panic_hook(out: &Path) {
    let path = out.join(LAST_PANIC);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let current = executor::CURRENT.with(|c| c.try_borrow().ok().and_then(|c| c.clone()));
        if let Some((backend, case)) = current {
            let v = serde_json::json!({"backend": backend, "message": info.to_string(), "case": &*case});
            let _ = std::fs::write(&path, v.to_string());
        }
        prev(info);
    }));
}

/// The client process for `a` with this seed and time left: this executable's `fuzz`, with
/// the arguments serialised in [`CLIENT_ENV`] (one campaign, no supervisor of its own).
fn client_command(a: &FuzzArgs, seed: u64, time: Duration) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable to start a fuzzing client: {e}"))?;
    let args = FuzzArgs { seed: Some(seed), time, cores: 1, broker: None, connect: None, found: Some(found_dir(a)), ..a.clone() };
    let json = serde_json::to_string(&args).map_err(|e| format!("cannot serialise the client's arguments: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("fuzz").env(CLIENT_ENV, json);
    Ok(cmd)
}

/// Save the case a client aborted on (from its `last-panic.json`) as a crash find.
fn save_abort(a: &FuzzArgs, seed: u64, out: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(out.join(LAST_PANIC)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let backend = v["backend"].as_str().unwrap_or("unknown").to_string();
    let message = v["message"].as_str().unwrap_or("").to_string();
    let case: Case = serde_json::from_value(v["case"].clone()).ok()?;
    // The panic location and text, without numbers (values differ from case to case).
    let first = message.lines().take(2).collect::<Vec<_>>().join(" ");
    let key = format!("abort:{backend}:{}", first.chars().filter(|c| !c.is_ascii_digit()).collect::<String>());
    let find = signature::Find {
        kind: FindKind::BackendCrash,
        signature: format!("crash-{backend}-{:016x}", trapdiff_arch::crc32::fnv1a64(key.as_bytes())),
        key,
        divergences: Vec::new(),
    };
    let outcome =
        Outcome { end: trapdiff_arch::outcome::End::BackendError { message: format!("{backend} aborted the fuzzing client: {first}") }, ..Outcome::default() };
    let _ = std::fs::remove_file(out.join(LAST_PANIC));
    let mut case = case;
    case.description = format!("{backend} aborted on this case: {first}");
    save_find(&found_dir(a), seed, &a.backends, &find, &case, &[(backend, outcome)]).ok().map(|(p, _)| p)
}

/// Run the campaign in a client process and start it again (with the next seed) whenever a
/// backend aborts it, as LibAFL's restarting event manager does, until the time is up.
pub(crate) fn supervise(a: &FuzzArgs, seed: u64) -> ExitCode {
    let started = Instant::now();
    let mut seed = seed;
    let mut restarts = 0u32;
    loop {
        let left = a.time.saturating_sub(started.elapsed());
        if restarts > 0 && left < Duration::from_secs(1) {
            return ExitCode::SUCCESS;
        }
        let mut cmd = match client_command(a, seed, left) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let status = match cmd.status() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot start the fuzzing client: {e}");
                return ExitCode::from(2);
            }
        };
        match status.code() {
            Some(c @ 0..=2) => return ExitCode::from(c as u8),
            _ => {
                restarts += 1;
                let saved = save_abort(a, seed, &a.out);
                let _ = std::fs::rename(a.out.join("stats.json"), a.out.join(format!("stats-{seed}.json")));
                eprintln!(
                    "\ntrapdiff fuzz: the client died ({status}){}; restarting with seed {}",
                    saved.map(|p| format!(", case saved as {}", p.display())).unwrap_or_default(),
                    seed + 1
                );
                if restarts > 1000 {
                    eprintln!("error: the client keeps dying; giving up");
                    return ExitCode::from(2);
                }
                seed += 1;
            }
        }
    }
}
