//! Faults the KVM backend must survive: a guest that hangs (the watchdog), garbage on the
//! channel, and a kernel panic (provoked with the agent's test-only
//! `trapdiff.panic_after=N`, which crashes the kernel through /proc/sysrq-trigger).

mod kvm_support;

use std::time::{Duration, Instant};

use trapdiff::backend::kvm::{self, KvmOptions};
use trapdiff::backend::Backend;
use trapdiff_arch::outcome::End;
use trapdiff_arch::wire::{self, HostMsg, ReportEnd, TargetMsg};

use kvm_support::{boot, job, ping, program, run, set_empty_runtime};

#[test]
fn watchdog_ends_a_hung_guest_and_the_agent_goes_on() {
    require_kvm!();
    let (mut t, _) = boot(&[]);
    set_empty_runtime(&mut t);
    for (seq, timeout_ms) in [(1u32, 200u32), (2, 700)] {
        let mut j = job(seq, &[0x1400_0000 /* b . */]);
        j.timeout_ms = timeout_ms;
        let r = run(&mut t, &j);
        assert_eq!(r.end, ReportEnd::Timeout);
        let ms = r.elapsed_us / 1000;
        assert!(ms >= u64::from(timeout_ms) && ms < u64::from(timeout_ms) + 1000, "watchdog fired after {ms} ms for {timeout_ms} ms");
    }
    // The next job runs normally in a fresh VM.
    let r = run(&mut t, &job(3, &program(&[])));
    assert_eq!(r.end, ReportEnd::Done);
}

#[test]
fn corrupted_frames_are_answered_and_survived() {
    require_kvm!();
    let (mut t, _) = boot(&[]);
    set_empty_runtime(&mut t);
    // A frame with one payload digit flipped: the agent answers BadFrame.
    let mut frame = wire::encode_frame(&HostMsg::Ping { seq: 5 }).expect("encode");
    frame[6] ^= 0x01;
    t.send_raw(&frame);
    // The harness's recv() treats BadFrame as "resend the last frame"; with no last frame it
    // just keeps waiting, so a Ping after it must still be answered.
    ping(&mut t, 6);
    // Noise, a marker with junk, binary bytes, a long line of junk after a marker (the
    // serial link moves ~30 KB/s, so the 2 MiB overflow path is left to unit tests), mailbox
    // doorbells to an envelope that holds no message, outside the mailbox, or not a number:
    // none of it hangs the agent. Batches of at most three rejected frames, because the
    // harness gives up on a channel after three BadFrames in a row.
    t.send_raw(b"hello agent\n@TD zz 00000000\n@TD \n\x00\x01\x02\xff\xfe garbage\n");
    ping(&mut t, 7);
    let mut long = b"@TD ".to_vec();
    long.extend(std::iter::repeat_n(b'q', 8 * 1024));
    long.extend_from_slice(b" 00000000\n");
    t.send_raw(&long);
    ping(&mut t, 8);
    t.send_raw(b"@TDM 0\n@TDM ffffffff\n@TDM x y z\n");
    ping(&mut t, 9);
    let r = run(&mut t, &job(10, &program(&[])));
    assert_eq!(r.end, ReportEnd::Done);
}

#[test]
fn bad_frame_reply_names_the_problem() {
    require_kvm!();
    let (cfg, _) = kvm::target_config(&KvmOptions::default(), None).expect("config");
    let mut t = trapdiff::backend::qemu::Target::spawn(&cfg).expect("spawn");
    loop {
        if let TargetMsg::Hello(_) = t.recv(cfg.boot_timeout).expect("hello") {
            break;
        }
    }
    // Drive the frame reader directly so the BadFrame reply itself is visible: the Target
    // consumes BadFrame in recv(), so send a broken frame and expect the resend machinery
    // not to give up on a healthy target (it resends the last good frame, a Ping).
    t.send(&HostMsg::Ping { seq: 1 }).expect("ping");
    let mut bad = wire::encode_frame(&HostMsg::Ping { seq: 2 }).expect("encode");
    let n = bad.len();
    bad[n - 3] ^= 0x04; // break the checksum
    t.send_raw(&bad);
    let mut pongs = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end && pongs.len() < 2 {
        match t.recv(Duration::from_secs(30)).expect("the target stays healthy") {
            TargetMsg::Pong { seq } => pongs.push(seq),
            _ => continue,
        }
    }
    assert_eq!(pongs[0], 1);
    assert_eq!(pongs.get(1), Some(&1), "BadFrame made the harness resend its last frame (Ping 1)");
}

#[test]
fn kernel_panic_is_recorded_and_the_run_goes_on() {
    require_kvm!();
    let cases = kvm_support::suite_cases("mmio", 4);
    assert!(cases.len() >= 4, "fewer than 4 mmio cases in corpus/suite: regenerate the suite (gen-suite)");
    let opts = KvmOptions { extra_cmdline: vec!["trapdiff.panic_after=2".into()], ..KvmOptions::default() };
    let mut b = kvm::backend(&opts).expect("kvm backend");
    let outcomes: Vec<_> = cases.iter().map(|c| b.run(c)).collect();
    for (i, o) in outcomes.iter().enumerate() {
        eprintln!("case {i} {}: {:?}", cases[i].name, o.end);
    }
    assert!(!outcomes[0].end.is_infrastructure() && !outcomes[1].end.is_infrastructure(), "the first two cases run");
    match &outcomes[2].end {
        End::BackendError { message } => assert!(message.contains("Kernel panic"), "the panic and its console excerpt: {message}"),
        other => panic!("case 3 must hit the provoked panic, got {other:?}"),
    }
    assert!(!outcomes[3].end.is_infrastructure(), "after the panic the kernel is rebooted and the run goes on: {:?}", outcomes[3].end);
    assert_eq!(b.boots, 2);
    // The panic is that case's kernel finding, and no other case's.
    assert!(outcomes[2].meta.kernel_findings.iter().any(|f| f.contains("Kernel panic")), "{:?}", outcomes[2].meta);
    for i in [0, 1, 3] {
        assert!(outcomes[i].meta.kernel_findings.is_empty(), "case {i}: {:?}", outcomes[i].meta.kernel_findings);
    }
}

/// A kernel warning printed while a case runs reaches that case's outcome, and only that
/// case's, through the real guest console: the agent's test mode `trapdiff.warn_at=1` writes
/// a WARN-shaped splat into the kernel log (/dev/kmsg) before the second job; the agent
/// forwards the log after the job as it does for any kernel warning; the harness's kernel-log
/// reader keeps the splat and the runner makes the case a `kernel-finding` (exit status 1)
/// although all backends agree on it.
#[test]
fn a_kernel_warning_is_that_cases_kernel_finding() {
    require_kvm!();
    let cases: Vec<_> = kvm_support::suite_cases("mmio", 3).into_iter().map(|c| (std::path::PathBuf::from(format!("{}.json", c.name)), c)).collect();
    assert_eq!(cases.len(), 3, "three mmio suite cases");
    let opts = KvmOptions { extra_cmdline: vec!["trapdiff.warn_at=1".into()], ..KvmOptions::default() };
    let spec = trapdiff::run::BackendSpec {
        name: "kvm".into(),
        make: Box::new(move || kvm::backend(&opts).map(|b| Box::new(b) as Box<dyn Backend>).map_err(|e| e.to_string())),
        instances: 1,
    };
    let model =
        trapdiff::backend::select::specs(&trapdiff::backend::select::BackendOptions { names: vec!["model".into()], ..Default::default() }).expect("model");
    let mut specs = model;
    specs.push(spec);
    let r = trapdiff::run::run(cases, vec![], specs, &trapdiff::known::KnownList::default(), None);
    let v: Vec<_> = r.cases.iter().map(|c| c.verdict).collect();
    for c in &r.cases {
        eprintln!("{}: {:?} {:?}", c.name, c.verdict, c.outcomes["kvm"].meta.kernel_findings);
    }
    use trapdiff::run::Verdict;
    assert_eq!(v[1], Verdict::KernelFinding, "{v:?}");
    assert_ne!(v[0], Verdict::KernelFinding);
    assert_ne!(v[2], Verdict::KernelFinding);
    let lines = &r.cases[1].outcomes["kvm"].meta.kernel_findings;
    assert!(lines[0].starts_with("WARNING: CPU: 0 PID: 1 at harness/kvm-agent/src/boot.rs:0 trapdiff_test_warning"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "Call trace:") && lines.iter().any(|l| l.contains("trapdiff_test_warning+0x0/0x4")), "{lines:?}");
    assert_eq!(r.cases[1].outcomes["kvm"].meta.kernel.as_deref().map(|k| k.starts_with("6.")), Some(true), "the kernel release is recorded");
    assert!(r.cases[1].divergences.is_empty(), "the outcomes agree; the finding alone fails the case");
    assert_eq!(r.exit_code(), 1);
    let tap = trapdiff::report::tap(&r);
    assert!(tap.contains("not ok 2 ") && tap.contains("# kernel-finding") && tap.contains("trapdiff_test_warning"), "{tap}");
}
