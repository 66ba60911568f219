//! End-to-end smoke test of the guest runtime: real jobs from [`crate::lower::lower`] run under
//! QEMU TCG (`-M virt,virtualization=on -cpu max`) on a minimal EL2 stub
//! (`runtime/smoke-el2.S`, not the refhyp), and [`crate::decode::decode`] turns what the stub
//! prints into outcomes. It checks the runtime's side of the ABI — prologue, exception
//! records, skip rules, end marker, epilogue — for A64 and AArch32 (A32/T32, EL1/EL0).
//! Skips (with a message) when `qemu-system-aarch64` is not installed.
//!
//! The stub maps every slot at stage 2 from a blob the test writes (header, stage-2 tables,
//! guest memory) and reports each stage-2 data abort with a valid syndrome; MMIO reads return
//! [`READ`]. Digests are not computed here (the stub has no hash): they are reported as 0.
#![allow(clippy::unwrap_used)] // test-only module: fixed inputs

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trapdiff_arch::abi;
use trapdiff_arch::case::{Case, Reg};
use trapdiff_arch::esr::{Ec, Esr};
use trapdiff_arch::memattr::S2Attr;
use trapdiff_arch::outcome::{End, Event, Outcome, Vector};
use trapdiff_arch::wire::{Exit, Job, Report, ReportEnd, SlotKind};

use crate::decode::decode;
use crate::lower::{lower, runtime_segments};

const BLOB: u64 = 0x4100_0000;
const S2_ROOT: u64 = BLOB + 0x1000;
const S2_MAX_PAGES: u64 = 64;
const MEM: u64 = BLOB + 0x10_0000;
/// What every MMIO read returns.
const READ: u64 = 0x8877_6655_4433_2291;

fn qemu() -> Option<&'static str> {
    let ok = Command::new("qemu-system-aarch64").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    ok.then_some("qemu-system-aarch64")
}

/// Stage-2 tables (4 KiB granule, 39-bit IPA, level-1 start) inside the blob.
struct Blob {
    bytes: Vec<u8>,
    s2_pages: u64,
}

impl Blob {
    fn put(&mut self, pa: u64, data: &[u8]) {
        let o = (pa - BLOB) as usize;
        if self.bytes.len() < o + data.len() {
            self.bytes.resize(o + data.len(), 0);
        }
        self.bytes[o..o + data.len()].copy_from_slice(data);
    }
    fn get64(&self, pa: u64) -> u64 {
        let o = (pa - BLOB) as usize;
        u64::from_le_bytes(self.bytes[o..o + 8].try_into().unwrap())
    }
    fn map(&mut self, ipa: u64, pa: u64, memattr: u8, writable: bool) {
        let mut table = S2_ROOT;
        for level in 1..3u32 {
            let slot = table + 8 * ((ipa >> (12 + 9 * (3 - level))) & 0x1ff);
            let d = self.get64(slot);
            table = if d & 3 == 3 {
                d & 0x0000_ffff_ffff_f000
            } else {
                assert!(self.s2_pages < S2_MAX_PAGES, "smoke-test stage-2 tables full");
                let next = S2_ROOT + 0x1000 * self.s2_pages;
                self.s2_pages += 1;
                self.put(slot, &(next | 3).to_le_bytes());
                next
            };
        }
        // Page: MemAttr [5:2], S2AP [7:6], SH inner [9:8], AF [10].
        let s2ap: u64 = if writable { 0b11 } else { 0b01 };
        let d = 3 | (u64::from(memattr) << 2) | (s2ap << 6) | (0b11 << 8) | (1 << 10) | pa;
        self.put(table + 8 * ((ipa >> 12) & 0x1ff), &d.to_le_bytes());
    }
}

fn build_blob(job: &Job) -> Vec<u8> {
    let mut b = Blob { bytes: vec![0; (MEM - BLOB) as usize], s2_pages: 1 };
    let mut slots = vec![(abi::RUNTIME_SLOT_BASE, abi::RUNTIME_SLOT_SIZE, SlotKind::Ram)];
    slots.extend(job.slots.iter().map(|s| (s.ipa, s.size, s.kind)));
    let mut pa = MEM;
    let mut placed = Vec::new();
    for &(ipa, size, kind) in &slots {
        assert!(ipa + size <= 1 << 39, "the smoke stub maps 39-bit IPAs only");
        let (memattr, writable) = match kind {
            SlotKind::Ram => (S2Attr::Normal.memattr(), true),
            SlotKind::RoRam => (S2Attr::Normal.memattr(), false),
            SlotKind::Device(a) => (a.memattr(), true),
        };
        for off in (0..size).step_by(0x1000) {
            b.map(ipa + off, pa + off, memattr, writable);
        }
        b.put(pa + size - 1, &[0]);
        placed.push((ipa, size, pa));
        pa += size;
    }
    let pa_of = |ipa: u64| placed.iter().find(|(i, s, _)| ipa >= *i && ipa < i + s).map(|(i, _, p)| p + (ipa - i)).unwrap();
    for seg in runtime_segments().iter().chain(&job.segments) {
        b.put(pa_of(seg.ipa), &seg.bytes);
    }
    // VTCR_EL2: T0SZ 25, SL0 = 1 (level 1), IRGN0/ORGN0 WBWA, SH0 inner, 4 KiB, PS 40 bits, RES1 bit 31.
    let vtcr: u64 = 25 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 31);
    let header = [u64::from_le_bytes(*b"TDSMOKE\0"), job.entry, u64::from(job.aarch32), S2_ROOT, vtcr, READ, pa_of(abi::REPORT_BASE)];
    let hb: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
    b.put(BLOB, &hb);
    b.bytes
}

/// Boot the EL2 stub `elf` under QEMU (`-M virt,virtualization=on -cpu max`, `extra` arguments
/// after it) and return what it prints on the UART, up to the first complete line for which
/// `last` holds (or whatever came within `timeout`); QEMU is stopped then.
pub(crate) fn serial_of_stub(qemu: &str, elf: &Path, extra: &[&str], timeout: Duration, last: fn(&str) -> bool) -> String {
    let mut child = Command::new(qemu)
        .args(["-M", "virt,virtualization=on,gic-version=3", "-cpu", "max", "-m", "512M", "-display", "none", "-monitor", "none", "-nic", "none"])
        .args(["-serial", "stdio", "-device"])
        .arg(format!("loader,file={},cpu-num=0", elf.display()))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.ends_with('\n') && text.lines().any(last) {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(timeout).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    text
}

/// Run `case` on the stub and decode the result; `None` when QEMU is missing.
fn run(case: &Case) -> Option<Outcome> {
    run_on_stub(case, Duration::from_secs(30)).map(|r| r.unwrap_or_else(|e| panic!("{e}")))
}

/// Run `case` on the stub: the outcome, or what the stub could not handle (an exit with no
/// valid syndrome, an exception it does not emulate).
fn run_on_stub(case: &Case, timeout: Duration) -> Option<Result<Outcome, String>> {
    let qemu = qemu().or_else(|| {
        crate::skip::live("the runtime smoke test needs qemu-system-aarch64 (bash ci/setup.sh packages)");
        None
    })?;
    let job = lower(case, 1).unwrap();
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("td-runtime-smoke-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let blob = dir.join("blob.bin");
    std::fs::write(&blob, build_blob(&job)).unwrap();
    let stub = PathBuf::from(concat!(env!("OUT_DIR"), "/smoke-el2.elf"));
    let start = Instant::now();
    let blob_arg = format!("loader,file={},addr={BLOB:#x},force-raw=on", blob.display());
    // Stop at the first complete "P" (page dump) or "X" (stub error) line.
    let text = serial_of_stub(qemu, &stub, &["-device", &blob_arg], timeout, |l| l.starts_with("X ") || l.starts_with("P "));
    let _ = std::fs::remove_dir_all(&dir);
    let mut exits = Vec::new();
    let mut page = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"E") => {
                let n: Vec<u64> = f[1..].iter().map(|x| u64::from_str_radix(x, 16).unwrap()).collect();
                exits.push(Exit::Mmio { ipa: n[0], len: n[1] as u8, write: n[2] != 0, data: n[3] });
            }
            Some(&"P") => page = Some((0..f[1].len() / 2).map(|i| u8::from_str_radix(&f[1][2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<u8>>()),
            Some(&"X") => return Some(Err(format!("the smoke stub took an exception it does not handle (esr, elr, far): {line}"))),
            _ => {}
        }
    }
    let end = if page.is_some() { ReportEnd::Done } else { ReportEnd::Timeout };
    let mut readback = vec![page.unwrap_or_default()];
    readback.extend(job.readback[1..].iter().map(|&(_, len)| vec![0; len as usize]));
    let report = Report { seq: job.seq, exits, end, digests: vec![0; job.digests.len()], readback, elapsed_us: start.elapsed().as_micros() as u64 };
    Some(Ok(decode(case, &job, &report)))
}

fn case(isa: &str, el: &str, extra: &str, insns: &[(u32, &str)]) -> Case {
    let insns: Vec<String> = insns.iter().map(|(w, a)| format!(r#"{{ "w": "{w:#x}", "asm": "{a}" }}"#)).collect();
    let json = format!(
        r#"{{
        "schema": 1, "name": "smoke/{isa}-{el}", "family": "misc",
        "state": {{ "isa": "{isa}", "el": "{el}" }},
        "memory": [
          {{ "name": "code", "ipa": "0x40000000", "size": "0x2000", "kind": "ram" }},
          {{ "name": "mmio", "ipa": "0x58000000", "size": "0x1000", "kind": "mmio" }},
          {{ "name": "hole", "ipa": "0x60000000", "size": "0x1000", "kind": "ram", "s1": {{ "attr": "normal_wb", "perm": "unmapped" }} }}
        ],
        "code": {{ "ipa": "0x40000000", "insns": [ {} ] }}
        {extra}
    }}"#,
        insns.join(", ")
    );
    let c: Case = serde_json::from_str(&json).unwrap();
    c.validate().unwrap();
    c
}

fn reg(out: &Outcome, r: &str) -> u128 {
    out.state.as_ref().unwrap().regs[&r.parse::<Reg>().unwrap()].0
}

fn ec(e: &Event) -> u8 {
    match e {
        Event::Exception { syndrome, .. } => Esr(*syndrome).ec().0,
        other => panic!("not an exception: {other:?}"),
    }
}

#[test]
fn a64_el1_mmio_brk_svc_then_end_marker() {
    let c = case(
        "a64",
        "el1",
        r#", "regs": { "x1": "0x58000010", "x30": "0x3030", "sp": "0x40001ff0", "q3": "0x0123456789abcdeffedcba9876543210" },
           "observe": { "regs": ["x0", "x2", "x30", "sp", "q3"], "fp": true }"#,
        &[(0xb940_0020, "ldr w0, [x1]"), (0xb900_0420, "str w0, [x1, #4]"), (0xd420_0000, "brk #0"), (0xd400_0021, "svc #1"), (0xd280_00a2, "mov x2, #5")],
    );
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::Done, "{out:#?}");
    let word = READ & 0xffff_ffff;
    assert_eq!(out.events[0], Event::Mmio { ipa: 0x5800_0010, len: 4, write: false, data: word });
    assert_eq!(out.events[1], Event::Mmio { ipa: 0x5800_0014, len: 4, write: true, data: word });
    assert!(matches!(out.events[2], Event::Exception { vector: Vector::Sync, from_el0: false, far: None, pc: 0x4000_0008, .. }), "{out:#?}");
    assert_eq!(ec(&out.events[2]), Ec::BRK64.0);
    assert!(matches!(out.events[3], Event::Exception { vector: Vector::Sync, from_el0: false, pc: 0x4000_000c, .. }), "{out:#?}");
    assert_eq!(ec(&out.events[3]), Ec::SVC64.0);
    assert_eq!(out.events.len(), 4);
    assert_eq!(reg(&out, "x0"), u128::from(word));
    assert_eq!(reg(&out, "x2"), 5, "execution resumed after the SVC");
    assert_eq!(reg(&out, "x30"), 0x3030);
    assert_eq!(reg(&out, "sp"), 0x4000_1ff0);
    assert_eq!(reg(&out, "q3"), 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    let fp = out.state.as_ref().unwrap().fp.unwrap();
    assert_eq!((fp.cpacr, fp.fpexc), (0x30_0000, None));
}

#[test]
fn a64_el0_translation_fault_and_exception_limit() {
    let c = case(
        "a64",
        "el0",
        r#", "regs": { "x1": "0x60000008" }, "limits": { "max_exceptions": 2 },
           "observe": { "regs": ["x2"] }"#,
        &[(0xf940_0020, "ldr x0, [x1]"), (0xd280_00a2, "mov x2, #5"), (0xd420_0020, "brk #1"), (0xd280_00e2, "mov x2, #7")],
    );
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::ExceptionLimit, "{out:#?}");
    assert_eq!(out.events.len(), 2, "{out:#?}");
    let Event::Exception { vector, from_el0, syndrome, far, pc, bad_spsr: None } = out.events[0] else { panic!("{out:#?}") };
    assert_eq!((vector, from_el0, far, pc), (Vector::Sync, true, Some(0x6000_0008), 0x4000_0000));
    // Data abort from EL0, translation fault level 3 (DFSC 0b000111), a read.
    assert_eq!(Esr(syndrome).ec(), Ec::DABT_LOW);
    assert_eq!(syndrome & 0x3f, 0b00_0111);
    assert_eq!(ec(&out.events[1]), Ec::BRK64.0);
    assert_eq!(reg(&out, "x2"), 5, "the runtime ended the case at the second exception");
}

#[test]
fn a32_el1_runs_in_sys_mode_and_keeps_lr() {
    let c = case(
        "a32",
        "el1",
        r#", "regs": { "r1": "0x58000000", "r13": "0x40001f00", "r14": "0x1414" },
           "observe": { "regs": ["r0", "r2", "r13", "r14"] }"#,
        &[(0xe591_0000, "ldr r0, [r1]"), (0xe7f0_00f0, "udf #0"), (0xef00_0001, "svc #1"), (0xe3a0_2005, "mov r2, #5")],
    );
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::Done, "{out:#?}");
    assert_eq!(out.events[0], Event::Mmio { ipa: 0x5800_0000, len: 4, write: false, data: READ & 0xffff_ffff });
    assert_eq!(out.events[1], Event::Exception { vector: Vector::Undef, from_el0: false, syndrome: 0, far: None, pc: 0x4000_0004, bad_spsr: None });
    assert_eq!(out.events[2], Event::Exception { vector: Vector::Svc, from_el0: false, syndrome: 0, far: None, pc: 0x4000_0008, bad_spsr: None });
    assert_eq!(out.events.len(), 3);
    assert_eq!(reg(&out, "r0"), u128::from(READ & 0xffff_ffff));
    assert_eq!(reg(&out, "r2"), 5);
    assert_eq!(reg(&out, "r13"), 0x4000_1f00);
    assert_eq!(reg(&out, "r14"), 0x1414, "SYS mode: no exception may clobber the case's LR");
}

#[test]
fn t32_el0_skips_by_instruction_size() {
    let c = case(
        "t32",
        "el0",
        r#", "regs": { "r1": "0x58000000" }, "observe": { "regs": ["r0", "r2"] }"#,
        &[(0x6808, "ldr r0, [r1]"), (0xf7f0_a000, "udf.w #0"), (0x2205, "movs r2, #5"), (0xdf01, "svc #1")],
    );
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::Done, "{out:#?}");
    assert_eq!(out.events[0], Event::Mmio { ipa: 0x5800_0000, len: 4, write: false, data: READ & 0xffff_ffff });
    assert_eq!(out.events[1], Event::Exception { vector: Vector::Undef, from_el0: true, syndrome: 0, far: None, pc: 0x4000_0002, bad_spsr: None });
    assert_eq!(out.events[2], Event::Exception { vector: Vector::Svc, from_el0: true, syndrome: 0, far: None, pc: 0x4000_0008, bad_spsr: None });
    assert_eq!(reg(&out, "r2"), 5, "resumed after the 32-bit UDF");
}

#[test]
fn a32_fpexc_disabled_undefs_and_fp_state_is_reported() {
    let c = case(
        "a32",
        "el1",
        r#", "regs": { "d5": "0x5555aaaa5555aaaa", "d20": "0x2020" }, "sysregs": { "fpexc": "0x0", "fpscr": "0x03000000" },
           "observe": { "regs": ["r2", "d5", "d20"], "fp": true }"#,
        &[(0xeef1_0a10, "vmrs r0, fpscr"), (0xe3a0_2005, "mov r2, #5")],
    );
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::Done, "{out:#?}");
    assert_eq!(out.events, vec![Event::Exception { vector: Vector::Undef, from_el0: false, syndrome: 0, far: None, pc: 0x4000_0000, bad_spsr: None }]);
    assert_eq!(reg(&out, "r2"), 5);
    assert_eq!(reg(&out, "d5"), 0x5555_aaaa_5555_aaaa);
    assert_eq!(reg(&out, "d20"), 0x2020);
    let fp = out.state.as_ref().unwrap().fp.unwrap();
    assert_eq!(fp.fpexc, Some(0), "the case's FPEXC, not the runtime's");
    assert_eq!(fp.fpscr, 0x0300_0000);
    assert_eq!(fp.cpacr, 0xf0_0000);
}

/// Every suite case on the stub: none may fault the runtime, reject its parameters or leave
/// the report page unwritten. Slow (a QEMU per case): `cargo test -p guest-payloads -- --ignored`.
#[test]
#[ignore]
fn suite_runs_on_the_stub() {
    if qemu().is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/suite");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    let files = std::sync::Arc::new(std::sync::Mutex::new(files));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let files = files.clone();
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                loop {
                    let Some(path) = files.lock().unwrap().pop() else { break };
                    let case: Case = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                    let what = match run_on_stub(&case, Duration::from_secs(10)) {
                        Some(Ok(out)) => match &out.end {
                            End::BackendError { message } => format!("BACKEND-ERROR {message}"),
                            End::Timeout => "timeout".to_string(),
                            other => format!("{other:?}"),
                        },
                        Some(Err(stub)) => format!("stub-limit {stub}"),
                        None => return lines,
                    };
                    lines.push(format!("{}: {what}", case.name));
                }
                lines
            })
        })
        .collect();
    let mut lines: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    lines.sort();
    let mut kinds = std::collections::BTreeMap::new();
    for l in &lines {
        let kind = l.split(": ").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("").to_string();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    for l in &lines {
        eprintln!("{l}");
    }
    eprintln!("{kinds:?}");
    let bad: Vec<_> = lines.iter().filter(|l| l.contains("BACKEND-ERROR")).collect();
    assert!(bad.is_empty(), "{} cases failed in the runtime or its report: {bad:#?}", bad.len());
}

#[test]
fn a32_data_abort_records_lpae_dfsr_and_dfar_then_ends() {
    let mut c = case(
        "a32",
        "el1",
        r#", "regs": { "r1": "0x60000008" }, "observe": { "regs": ["r1", "r2"] }"#,
        &[(0xe591_0000, "ldr r0, [r1]"), (0xe3a0_2005, "mov r2, #5")],
    );
    c.state.on_exception = trapdiff_arch::case::ExceptionAction::End;
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::EndOnException, "{out:#?}");
    // LPAE-format DFSR (bit 9): translation fault, level 3 (STATUS 0b000111).
    assert_eq!(
        out.events,
        vec![Event::Exception {
            vector: Vector::DataAbort,
            from_el0: false,
            syndrome: (1 << 9) | 0b00_0111,
            far: Some(0x6000_0008),
            pc: 0x4000_0000,
            bad_spsr: None
        }]
    );
    assert_eq!(reg(&out, "r1"), 0x6000_0008);
    assert_eq!(reg(&out, "r2"), 0, "the case ended at the abort");
}

#[test]
fn runtime_works_with_the_mmu_and_caches_off() {
    for (isa, insns) in [
        ("a64", vec![(0xb940_0020u32, "ldr w0, [x1]"), (0xd400_0021, "svc #1"), (0xd280_00a2, "mov x2, #5")]),
        ("a32", vec![(0xe591_0000, "ldr r0, [r1]"), (0xef00_0001, "svc #1"), (0xe3a0_2005, "mov r2, #5")]),
    ] {
        let (r1, r2) = if isa == "a64" { ("x1", "x2") } else { ("r1", "r2") };
        let extra = format!(
            r#", "regs": {{ "{r1}": "0x58000000" }}, "sysregs": {{ "mmu": false, "caches": false }},
               "observe": {{ "regs": ["{r2}"], "fp": true }}"#
        );
        let c = case(isa, "el1", &extra, &insns);
        let Some(out) = run(&c) else { return };
        assert_eq!(out.end, End::Done, "{isa}: {out:#?}");
        assert_eq!(out.events.len(), 2, "{isa}: {out:#?}");
        assert_eq!(reg(&out, r2), 5, "{isa}");
    }
}

#[test]
fn el0_counter_access_traps_to_the_runtime() {
    let c = case("a64", "el0", r#", "observe": { "regs": ["x2"] }"#, &[(0xd53b_e040, "mrs x0, cntvct_el0"), (0xd280_00a2, "mov x2, #5")]);
    let Some(out) = run(&c) else { return };
    assert_eq!(out.end, End::Done, "{out:#?}");
    assert_eq!(out.events.len(), 1, "{out:#?}");
    assert_eq!(ec(&out.events[0]), Ec::SYS64.0, "CNTKCTL_EL1.EL0VCTEN = 0: MRS CNTVCT_EL0 traps");
    assert_eq!(reg(&out, "x2"), 5);
}
