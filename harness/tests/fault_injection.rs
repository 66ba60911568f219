//! The fault-injection suite: one run of a suite subset on model, refhyp and kvm with, while
//! it runs, SIGKILL of a refhyp QEMU, SIGKILL of a kvm QEMU, SIGSTOP of a kvm QEMU for longer
//! than the watchdog, garbage bytes written into a refhyp's serial channel (both directions),
//! guest kernel panics (`trapdiff.panic_after`), a case that hangs the guest, and finally
//! SIGKILL of the harness itself followed by `run --resume`. Passes when every case that no
//! fault hit has the verdict of an uninterrupted run of the same subset, every case a fault
//! hit is recorded as what happened to it, no QEMU outlives the killed harness, and
//! outcomes.jsonl holds each (case, backend) exactly once. Prints the table of faults.
//!
//! It runs in `ci/test.sh` (about 45 s on 2 cores; it needs QEMU, the kernel, the refhyp and
//! the agent that `bash ci/setup.sh` provides, and says skipped without them). With the table:
//!   cargo test --release -p trapdiff --test fault_injection -- --nocapture

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trapdiff::paths;

fn missing() -> Option<String> {
    if trapdiff::backend::qemu::qemu_version().is_none() {
        return Some("qemu-system-aarch64 is not installed (bash ci/setup.sh packages)".into());
    }
    for (what, p) in [("default kernel", trapdiff::backend::kvm::default_kernel()), ("KVM agent", paths::agent_binary()), ("refhyp", paths::refhyp_image())] {
        if !p.is_file() {
            return Some(format!("{what} {} is missing (bash ci/setup.sh)", p.display()));
        }
    }
    None
}

/// Child processes of `pid`, with their command lines.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return v };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            v.push((p, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    v
}

fn qemus(harness: u32, which: &str) -> Vec<u32> {
    children(harness)
        .into_iter()
        .filter(|(_, c)| c.contains("qemu-system-aarch64") && if which == "kvm" { c.contains("-initrd") } else { !c.contains("-initrd") })
        .map(|(p, _)| p)
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we just read; a stale pid only gets ESRCH.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// (case path, backend) of every complete record of a stream, and the backend counts.
fn records(path: &Path) -> (Vec<(String, String)>, BTreeMap<String, usize>) {
    let text = std::fs::read(path).unwrap_or_default();
    let mut v = Vec::new();
    let mut per = BTreeMap::new();
    for line in text.split_inclusive(|&b| b == b'\n').filter(|l| l.ends_with(b"\n")) {
        if let Ok(r) = serde_json::from_slice::<serde_json::Value>(line) {
            let b = r["backend"].as_str().unwrap_or_default().to_string();
            *per.entry(b.clone()).or_insert(0) += 1;
            v.push((r["path"].as_str().unwrap_or_default().to_string(), b));
        }
    }
    (v, per)
}

fn trapdiff(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trapdiff"));
    c.args(args).current_dir(paths::root()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn finish(child: Child, what: &str) -> i32 {
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{what}: exit {:?}; last stderr lines:\n{}",
        out.status.code(),
        err.lines().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    out.status.code().unwrap_or(-1)
}

/// verdict per case name, and per case the outcome of each backend, from report.json.
fn report(dir: &Path) -> BTreeMap<String, (String, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).expect("json");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or_default().to_string(), (c["verdict"].as_str().unwrap_or_default().to_string(), c["outcomes"].clone())))
        .collect()
}

/// What happened to a case on a backend, from its outcome (None: it ran normally).
fn fault_of(o: &serde_json::Value) -> Option<String> {
    let findings = o["meta"]["kernel_findings"].as_array().map(|a| a.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n")).unwrap_or_default();
    let msg = o["end"]["message"].as_str().unwrap_or_default();
    if o["end"]["kind"] != "backend_error" && findings.is_empty() {
        return None;
    }
    let all = format!("{msg}\n{findings}");
    Some(
        if all.contains("Kernel panic") {
            "guest kernel panic"
        } else if all.contains("signal: 9") || all.contains("SIGKILL") {
            "SIGKILL of a QEMU"
        } else if all.contains("no reply within") {
            "SIGSTOP (hang) of a QEMU"
        } else if all.contains("corrupt") {
            "garbage in the serial channel"
        } else {
            "other backend error"
        }
        .to_string(),
    )
}

#[test]
fn every_fault_is_recorded_and_nothing_is_lost() {
    if let Some(why) = missing() {
        guest_payloads::skip::live(&why);
        return;
    }
    let t0 = Instant::now();
    let tmp = std::env::temp_dir().join(format!("trapdiff-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("extra")).expect("tmp");
    // A case that hangs the guest: `b .` until the 500 ms watchdog.
    let hang = serde_json::json!({
        "schema": 1, "name": "faults/hang", "family": "misc",
        "description": "b . forever: every backend's watchdog ends it",
        "state": {"isa": "a64", "el": "el1"},
        "memory": [{"name": "code", "ipa": "0x40000000", "size": "0x1000", "kind": "ram"}],
        "code": {"ipa": "0x40000000", "insns": [{"w": "0x14000000", "asm": ""}]},
        "limits": {"timeout_ms": 500}
    });
    std::fs::write(tmp.join("extra/hang.json"), serde_json::to_string_pretty(&hang).expect("json")).expect("hang case");
    let suite = paths::suite_dir().join("mmio");
    let extra = tmp.join("extra");
    let (base_dir, fault_dir) = (tmp.join("base"), tmp.join("fault"));
    let common = |dir: &Path| -> Vec<String> {
        vec![
            "run".into(),
            suite.display().to_string(),
            extra.display().to_string(),
            "--shard".into(),
            "1/2".into(),
            "--jobs".into(),
            "2".into(),
            "--report".into(),
            dir.display().to_string(),
        ]
    };

    // 1. The uninterrupted run.
    let a = common(&base_dir);
    let base_code = finish(trapdiff(&a.iter().map(String::as_str).collect::<Vec<_>>()).spawn().expect("spawn"), "uninterrupted run");
    let base = report(&base_dir);
    let n = base.len();
    assert!(n > 100, "the subset has {n} cases");
    assert_eq!(base.get("faults/hang").map(|(v, _)| v.as_str()), Some("agree"), "the hang case times out alike everywhere");
    let base_secs = t0.elapsed().as_secs_f64();

    // 2. The faulted run: every kvm kernel panics on its 31st case after boot.
    let mut a = common(&fault_dir);
    a.extend(["--kernel-append".into(), "trapdiff.panic_after=30".into()]);
    let mut child = trapdiff(&a.iter().map(String::as_str).collect::<Vec<_>>()).spawn().expect("spawn");
    let pid = child.id();
    let stream = fault_dir.join("outcomes.jsonl");
    let mut injected: Vec<(String, String)> = Vec::new();
    let mut step = 0;
    let mut stopped: Option<(u32, Instant)> = None;
    let mut seen_qemus: BTreeSet<u32> = BTreeSet::new();
    let at_kill;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "the faulted run took too long");
        if let Ok(Some(_)) = child.try_wait() {
            panic!("the faulted run ended before every fault was injected (step {step}): make the subset bigger");
        }
        std::thread::sleep(Duration::from_millis(100));
        seen_qemus.extend(qemus(pid, "kvm"));
        seen_qemus.extend(qemus(pid, "refhyp"));
        let (_, per) = records(&stream);
        let (k, r) = (per.get("kvm").copied().unwrap_or(0), per.get("refhyp").copied().unwrap_or(0));
        if let Some((p, since)) = stopped {
            if since.elapsed() > Duration::from_secs(15) {
                signal(p, libc::SIGCONT);
                stopped = None;
            }
        }
        // The refhyp's faults and the kvm's, each in order, then the harness.
        let rstep = injected.iter().filter(|(_, w)| w.starts_with("refhyp")).count();
        let kstep = injected.iter().filter(|(_, w)| w.starts_with("kvm")).count();
        if rstep == 0 && r >= 15 {
            if let Some(&p) = qemus(pid, "refhyp").first() {
                signal(p, libc::SIGKILL);
                injected.push(("SIGKILL of a QEMU".into(), format!("refhyp QEMU {p} at refhyp record {r}")));
            }
        } else if rstep == 1 && r >= 40 {
            if let Some(&p) = qemus(pid, "refhyp").last() {
                // Into the harness's side (QEMU's stdout pipe) and the target's (stdin).
                let junk: &[u8] = b"\n@TD 00zz 12345678\n\x00\x01\xff\xfe junk \x1b[31m\n@TD \n";
                for fd in [1, 0] {
                    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(format!("/proc/{p}/fd/{fd}")) {
                        let _ = std::io::Write::write_all(&mut f, junk);
                    }
                }
                injected.push(("garbage in the serial channel".into(), format!("refhyp QEMU {p} stdin+stdout at refhyp record {r}")));
            }
        }
        if kstep == 0 && k >= 15 {
            if let Some(&p) = qemus(pid, "kvm").first() {
                signal(p, libc::SIGKILL);
                injected.push(("SIGKILL of a QEMU".into(), format!("kvm QEMU {p} at kvm record {k}")));
            }
        } else if kstep == 1 && k >= 40 {
            // The oldest kvm QEMU: booted, so it is running cases (pids grow).
            if let Some(p) = qemus(pid, "kvm").into_iter().min() {
                signal(p, libc::SIGSTOP);
                stopped = Some((p, Instant::now()));
                injected.push(("SIGSTOP (hang) of a QEMU".into(), format!("kvm QEMU {p} stopped 15 s at kvm record {k}")));
            }
        }
        step = injected.len();
        match step {
            4 if k >= n / 2 || k >= n - 40 => {
                // The harness itself, while both live backends still have work.
                let live: Vec<u32> = qemus(pid, "kvm").into_iter().chain(qemus(pid, "refhyp")).collect();
                signal(pid, libc::SIGKILL);
                let _ = child.wait();
                at_kill = records(&stream).0.len();
                injected.push(("SIGKILL of the harness, then --resume".into(), format!("trapdiff {pid} at {at_kill} records, {} QEMU running", live.len())));
                // PR_SET_PDEATHSIG: every QEMU dies with it.
                let t = Instant::now();
                while live.iter().any(|&p| alive(p)) && t.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let orphans: Vec<u32> = live.iter().copied().filter(|&p| alive(p)).collect();
                for &p in &orphans {
                    signal(p, libc::SIGKILL);
                }
                assert!(orphans.is_empty(), "QEMU outlived the killed harness: {orphans:?}");
                break;
            }
            _ => {}
        }
    }
    if let Some((p, _)) = stopped {
        signal(p, libc::SIGCONT);
    }
    // 3. Resume.
    let resume_code = finish(trapdiff(&["run", "--resume", &fault_dir.display().to_string()]).spawn().expect("spawn"), "resumed run");
    let faulted = report(&fault_dir);

    // Each (case, backend) exactly once in the stream, and all of them.
    let (recs, _) = records(&stream);
    let unique: BTreeSet<&(String, String)> = recs.iter().collect();
    let duplicated = recs.len() - unique.len();
    let lost = n * 3 - unique.len();
    assert_eq!(faulted.len(), n, "every case is in the final report");

    // Compare case by case. A fault counts for a (case, backend) only where the uninterrupted
    // run had no such error (the suite's known backend errors are the same in both).
    let mut affected: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (name, (v, outs)) in &faulted {
        let (bv, bouts) = &base[name];
        let mut faults = BTreeSet::new();
        for (b, o) in outs.as_object().into_iter().flatten() {
            if let Some(f) = fault_of(o) {
                if fault_of(&bouts[b]).as_ref() != Some(&f) {
                    faults.insert(f.clone());
                    affected.entry(f).or_default().push((name.clone(), b.clone()));
                }
            }
        }
        if v != bv && faults.is_empty() {
            unexplained.push(format!("{name}: {bv} uninterrupted, {v} here, and no fault recorded"));
        }
    }
    // Recovered: after the faulted case, its backend ran a later case normally.
    let normal_after = |case: &str, backend: &str| -> bool {
        let order: Vec<&(String, String)> = recs.iter().collect();
        let Some(at) = order.iter().position(|(p, b)| b == backend && p.ends_with(&format!("{}.json", case.rsplit('/').next().unwrap_or(case)))) else {
            return false;
        };
        order[at + 1..].iter().any(|(p, b)| {
            b == backend
                && faulted.iter().any(|(n, (_, o))| p.ends_with(&format!("{}.json", n.rsplit('/').next().unwrap_or(n))) && fault_of(&o[backend]).is_none())
        })
    };
    let resumed_pairs = n * 3 - at_kill;
    eprintln!("\nfault-injection suite: {n} cases x 3 backends; uninterrupted run {base_secs:.0} s (exit {base_code}), whole suite {:.0} s; resumed run exit {resume_code}", t0.elapsed().as_secs_f64());
    eprintln!("| fault | injected | (case, backend) affected | recovered | lost |\n|---|---|---|---|---|");
    let mut kinds: Vec<String> = Vec::new();
    for k in injected.iter().map(|(k, _)| k.clone()).chain(["guest kernel panic".to_string()]).chain(affected.keys().cloned()) {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    for k in &kinds {
        let what: Vec<&str> = injected.iter().filter(|(f, _)| f == k).map(|(_, w)| w.as_str()).collect();
        let what = if what.is_empty() && k == "guest kernel panic" {
            "trapdiff.panic_after=30 on every kvm boot".to_string()
        } else if what.is_empty() {
            "(not injected)".into()
        } else {
            what.join("; ")
        };
        if k.starts_with("SIGKILL of the harness") {
            eprintln!("| {k} | {what} | {resumed_pairs} not yet recorded | {} run by --resume | {lost} |", resumed_pairs - lost);
        } else {
            let hit = affected.get(k).map(Vec::as_slice).unwrap_or_default();
            let rec = hit.iter().filter(|(c, b)| normal_after(c, b)).count();
            eprintln!("| {k} | {what} | {} | {rec} | 0 |", hit.len());
        }
    }
    eprintln!("outcomes.jsonl: {} records, {duplicated} duplicated, {lost} lost", recs.len());
    assert!(unexplained.is_empty(), "verdicts changed without a fault:\n{}", unexplained.join("\n"));
    assert_eq!((duplicated, lost), (0, 0));
    assert!(affected.get("guest kernel panic").is_some_and(|c| !c.is_empty()), "a kernel panic was recorded: {affected:?}");
    assert!(!affected.contains_key("other backend error"), "errors no fault explains: {affected:?}");
    for (k, hit) in &affected {
        for (c, b) in hit {
            assert!(normal_after(c, b) || !recs.iter().skip_while(|(_, rb)| rb != b).any(|_| true), "{b} did not recover after {k} on {c}");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
