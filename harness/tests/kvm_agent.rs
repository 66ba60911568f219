//! The KVM agent under the default kernel, driven with hand-built A64 jobs (no guest
//! runtime): MMIO exits and the device model, NISV as ENOSYS / exit / injected abort,
//! read-only memslots, digests, the watchdog, and exit limits. One boot for all of them.
//! And that a reused VM starts a job the way a fresh one does.

mod kvm_support;

use trapdiff_arch::abi;
use trapdiff_arch::case::{MmioAction, NisvAction};
use trapdiff_arch::crc32::fnv1a64;
use trapdiff_arch::wire::{Exit, ReportEnd, Slot, SlotKind};

use kvm_support::{boot, job, ping, program, run, set_empty_runtime, HOLE, RAM};

#[test]
fn agent_runs_hand_built_jobs() {
    require_kvm!();
    let (mut t, info) = boot(&[]);
    let release = std::fs::read_to_string(trapdiff::paths::default_kernel_dir().join("release")).expect("release file");
    assert_eq!(info.backend, "kvm");
    assert_eq!(info.version, release.trim(), "Hello carries the kernel release");
    assert_ne!(info.midr, 0, "Hello carries the MIDR");
    for cap in ["el1_32bit", "nisv_to_user", "inject_ext_dabt", "readonly_mem"] {
        assert!(info.caps.iter().any(|c| c == cap), "cap {cap} in {:?}", info.caps);
    }
    set_empty_runtime(&mut t);
    ping(&mut t, 1);

    // A store to the harness page is an exit the agent reports in order; DONE ends the job.
    let r = run(
        &mut t,
        &job(
            1,
            &program(&[
                0x5280_0542, // mov w2, #42
                0xb900_0022, // str w2, [x1]      (EVENT = 42)
                0xb900_00a2, // str w2, [x5]      (RAM: no exit)
            ]),
        ),
    );
    assert_eq!(r.end, ReportEnd::Done);
    assert_eq!(
        r.exits,
        vec![
            Exit::Mmio { ipa: abi::HARNESS_MMIO + abi::EVENT, len: 4, write: true, data: 42 },
            Exit::Mmio { ipa: abi::HARNESS_MMIO + abi::DONE, len: 4, write: true, data: 0 },
        ]
    );
    let mut ram = vec![0u8; 0x1000];
    ram[..4].copy_from_slice(&42u32.to_le_bytes());
    assert_eq!(r.digests, vec![fnv1a64(&ram)], "digest of the RAM slot after the store");
    assert_eq!(r.readback, vec![ram[..16].to_vec()]);

    // MMIO reads are served from mmio_reads in order, then mmio_read_default; the loaded
    // value comes back in the register (stored to EVENT).
    let mut j = job(
        2,
        &program(&[
            0xf940_0064, // ldr x4, [x3]
            0xf900_0024, // str x4, [x1]
            0x3940_0064, // ldrb w4, [x3]
            0xf900_0024, // str x4, [x1]
            0x7940_0064, // ldrh w4, [x3]
            0xf900_0024, // str x4, [x1]
        ]),
    );
    j.mmio_reads = vec![0x1122_3344_5566_7788, 0xa5];
    let r = run(&mut t, &j);
    assert_eq!(r.end, ReportEnd::Done);
    let ev: Vec<_> = r
        .exits
        .iter()
        .map(|e| match e {
            Exit::Mmio { ipa, len, write, data } => (*ipa, *len, *write, *data),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ev[0], (HOLE, 8, false, 0x1122_3344_5566_7788));
    assert_eq!(ev[1], (abi::HARNESS_MMIO, 8, true, 0x1122_3344_5566_7788));
    assert_eq!(ev[2], (HOLE, 1, false, 0xa5));
    assert_eq!(ev[3], (abi::HARNESS_MMIO, 8, true, 0xa5));
    assert_eq!(ev[4], (HOLE, 2, false, 0x2291), "then the default, truncated to the access size");

    // STP to a hole has no valid syndrome (ISV=0): without KVM_CAP_ARM_NISV_TO_USER,
    // KVM_RUN fails with ENOSYS (api.rst KVM_CAP_ARM_NISV_TO_USER).
    let stp = program(&[0xa900_1064 /* stp x4, x4, [x3] */]);
    let r = run(&mut t, &job(3, &stp));
    assert_eq!(r.end, ReportEnd::RunError { errno: libc_enosys() });
    assert!(r.exits.is_empty());
    // KVM logs the unhandled access (arch/arm64/kvm/mmio.c io_mem_abort, KERN_ERR); the agent
    // forwards it from /dev/kmsg as a Log frame before the result, which the harness keeps.
    assert!(t.tail().contains("[target] kernel messages during job seq 3") && t.tail().contains("Data abort outside memslots"), "{}", t.tail());

    // With the cap: a NISV exit with the IPA; on_nisv: stop ends the job there.
    let mut j = job(4, &stp);
    j.nisv_to_user = true;
    let r = run(&mut t, &j);
    assert!(matches!(r.end, ReportEnd::Stopped { .. }), "{:?}", r.end);
    match r.exits.as_slice() {
        [Exit::Nisv { ipa, .. }] => assert_eq!(*ipa, HOLE),
        other => panic!("expected one NISV exit, got {other:?}"),
    }

    // on_nisv: inject_abort -> KVM injects a data abort; VBAR_EL1 is 0 after reset, so the
    // guest jumps to 0x200 (current EL, SPx, sync), which has no memslot: the vCPU is stuck
    // faulting and the watchdog ends the job. What matters: the NISV exit came once, the
    // abort was accepted (no Failed), and the vCPU never reached DONE.
    let mut j = job(5, &stp);
    j.nisv_to_user = true;
    j.on_nisv = NisvAction::InjectAbort;
    j.timeout_ms = 300;
    let r = run(&mut t, &j);
    assert!(matches!(r.end, ReportEnd::Timeout | ReportEnd::RunError { .. } | ReportEnd::Stopped { .. }), "{:?}", r.end);
    assert_eq!(r.exits.iter().filter(|e| matches!(e, Exit::Nisv { .. })).count(), 1, "{:?}", r.exits);

    // A write to a read-only memslot is an MMIO exit (api.rst KVM_SET_USER_MEMORY_REGION,
    // KVM_MEM_READONLY); reads hit memory, which keeps its initial contents.
    let mut j = job(
        6,
        &program(&[
            0xd2ac_0006, // movz x6, #0x6000, lsl #16
            0xb940_00c4, // ldr w4, [x6]
            0xb900_0024, // str w4, [x1]       (EVENT = what the RO slot holds)
            0xb900_00c2, // str w2, [x6]       (write to RO: MMIO exit)
        ]),
    );
    j.slots.push(Slot { ipa: 0x6000_0000, size: 0x1000, kind: SlotKind::RoRam });
    j.segments.push(trapdiff_arch::wire::Segment { ipa: 0x6000_0000, bytes: vec![0xef, 0xbe, 0xad, 0xde] });
    j.digests = vec![(0x6000_0000, 4)];
    let r = run(&mut t, &j);
    assert_eq!(r.end, ReportEnd::Done);
    assert!(matches!(r.exits[0], Exit::Mmio { ipa: abi::HARNESS_MMIO, write: true, data: 0xdead_beef, .. }), "{:?}", r.exits);
    assert!(matches!(r.exits[1], Exit::Mmio { ipa: 0x6000_0000, write: true, len: 4, .. }), "{:?}", r.exits);
    assert_eq!(r.digests, vec![fnv1a64(&[0xef, 0xbe, 0xad, 0xde])], "the RO slot is unchanged");

    // Nothing leaks: the RAM slot starts zeroed again in the next job.
    let mut j = job(7, &program(&[]));
    j.digests = vec![(RAM, 0x1000)];
    let r = run(&mut t, &j);
    assert_eq!(r.digests, vec![fnv1a64(&[0u8; 0x1000])]);

    // on_mmio: inject_abort still records the access; the guest then takes the abort.
    let mut j = job(8, &program(&[0xf940_0064 /* ldr x4, [x3] */]));
    j.on_mmio = MmioAction::InjectAbort;
    j.timeout_ms = 300;
    let r = run(&mut t, &j);
    assert!(matches!(r.exits.first(), Some(Exit::Mmio { ipa: HOLE, write: false, .. })), "{:?}", r.exits);
    assert!(!r.exits.iter().any(|e| matches!(e, Exit::Mmio { ipa, .. } if *ipa == abi::HARNESS_MMIO + abi::DONE)), "the load must not complete: {:?}", r.exits);

    // max_exits: a loop of MMIO reads ends as ExitLimit.
    let mut j = job(
        9,
        &[
            0xd2a8_0003, // movz x3, #0x4000, lsl #16
            0xf940_0064, // ldr x4, [x3]
            0x17ff_ffff, // b .-4
        ],
    );
    j.max_exits = 10;
    let r = run(&mut t, &j);
    assert_eq!(r.end, ReportEnd::ExitLimit);

    // A job with a device slot this kernel cannot map the way a VMM would is skipped with
    // the reason, never run differently.
    let mut j = job(10, &program(&[]));
    j.slots.push(Slot { ipa: 0x7000_0000, size: 0x1000, kind: SlotKind::Device(trapdiff_arch::memattr::S2Attr::NormalNc) });
    let r = run(&mut t, &j);
    assert!(matches!(&r.end, ReportEnd::Skipped { reason } if reason.contains("Normal-NC")), "{:?}", r.end);

    // Device-nGnRE slots are backed by the ivshmem BAR (VM_PFNMAP of non-RAM): stores land
    // in it and come back in the digest, and KVM refuses to execute from it — a stage-2
    // device mapping is never executable (arch/arm64/kvm/mmu.c user_mem_abort: an exec
    // fault on a device pfn returns -ENOEXEC from KVM_RUN).
    let dev = 0x7000_0000u64;
    let dev_slot = Slot { ipa: dev, size: 0x1000, kind: SlotKind::Device(trapdiff_arch::memattr::S2Attr::DeviceNGnRE) };
    let mut j = job(
        13,
        &program(&[
            0xd2ae_0006, // movz x6, #0x7000, lsl #16
            0x5280_0542, // mov w2, #42
            0xb900_00c2, // str w2, [x6]
        ]),
    );
    j.slots.push(dev_slot.clone());
    j.digests = vec![(dev, 0x1000)];
    let r = run(&mut t, &j);
    if info.caps.iter().any(|c| c == "device_ngnre") {
        assert_eq!(r.end, ReportEnd::Done, "{r:?}");
        let mut want = vec![0u8; 0x1000];
        want[..4].copy_from_slice(&42u32.to_le_bytes());
        assert_eq!(r.digests, vec![fnv1a64(&want)]);
        let mut j = job(14, &program(&[]));
        j.slots.push(dev_slot);
        j.segments.push(trapdiff_arch::wire::Segment { ipa: dev, bytes: program(&[]).iter().flat_map(|w| w.to_le_bytes()).collect() });
        j.entry = dev;
        j.timeout_ms = 300;
        let r = run(&mut t, &j);
        eprintln!("exec from device slot: {r:?}");
        assert_ne!(r.end, ReportEnd::Done, "code in a stage-2 device mapping must not run");
    } else {
        assert!(matches!(r.end, ReportEnd::Skipped { .. }), "{:?}", r.end);
    }

    // A bad job (a slot overlapping the runtime's reserved range) fails with the reason and
    // the agent goes on.
    let mut j = job(11, &program(&[]));
    j.slots.push(Slot { ipa: abi::RESERVED_BASE + 0x10_0000, size: 0x1000, kind: SlotKind::Ram });
    let r = run(&mut t, &j);
    assert!(matches!(&r.end, ReportEnd::Failed { message } if message.contains("reserved")), "{:?}", r.end);
    let r = run(&mut t, &job(12, &program(&[])));
    assert_eq!(r.end, ReportEnd::Done);
}

#[test]
fn aarch32_vcpu_runs() {
    require_kvm!();
    let (mut t, _) = boot(&[]);
    set_empty_runtime(&mut t);
    // A32 at SVC: r1 = HARNESS_MMIO, str r0, [r1, #8] (DONE).
    let code: Vec<u32> = vec![
        0xe3a0_0007, // mov r0, #7
        0xe30f_1000, // movw r1, #0xf000
        0xe341_1fff, // movt r1, #0x1fff
        0xe581_0000, // str r0, [r1]      (EVENT = 7)
        0xe581_0008, // str r0, [r1, #8]  (DONE)
        0xeaff_fffe, // b .
    ];
    let mut j = job(1, &code);
    j.aarch32 = true;
    let r = run(&mut t, &j);
    assert_eq!(r.end, ReportEnd::Done, "{r:?}");
    assert_eq!(r.exits[0], Exit::Mmio { ipa: abi::HARNESS_MMIO, len: 4, write: true, data: 7 });
}

/// The agent reuses a VM for the next job with the same width and NISV setting
/// (kvm-agent/src/job.rs); the job must not tell: what it reads of the registers KVM's reset
/// leaves alone (SP_EL1, ELR_EL1, SPSR_EL1, CNTV_CVAL_EL0) and of memory is what a fresh VM
/// gives, and the DONE exit that ended the last job is not completed on this one (its first
/// instruction, which sets x1 = HARNESS_MMIO, runs).
#[test]
fn reused_vm_starts_like_a_fresh_one() {
    require_kvm!();
    let (mut t, _) = boot(&["trapdiff.profile=1"]);
    set_empty_runtime(&mut t);
    const FP_ON: [u32; 3] = [
        0xd2a0_0606, // mov x6, #0x300000
        0xd518_1046, // msr cpacr_el1, x6 (FPEN: FP/SIMD at EL1)
        0xd503_3fdf, // isb
    ];
    let mut read = FP_ON.to_vec();
    read.extend_from_slice(&[
        0x9100_03e4, // mov x4, sp
        0xf900_0024, // str x4, [x1]
        0xd538_4024, // mrs x4, elr_el1
        0xf900_0024, // str x4, [x1]
        0xd538_4004, // mrs x4, spsr_el1
        0xf900_0024, // str x4, [x1]
        0xd538_c004, // mrs x4, vbar_el1
        0xf900_0024, // str x4, [x1]
        0xd538_d084, // mrs x4, tpidr_el1
        0xf900_0024, // str x4, [x1]
        0x9e66_0004, // fmov x4, d0
        0xf900_0024, // str x4, [x1]
        0xd53b_e344, // mrs x4, cntv_cval_el0
        0xf900_0024, // str x4, [x1]
        0xf940_00a4, // ldr x4, [x5]  (RAM)
        0xf900_0024, // str x4, [x1]
    ]);
    let mut dirty = FP_ON.to_vec();
    dirty.extend_from_slice(&[
        0xd282_4684, // mov x4, #0x1234
        0x9100_009f, // mov sp, x4
        0xd518_4024, // msr elr_el1, x4
        0xd518_4004, // msr spsr_el1, x4
        0xd518_c004, // msr vbar_el1, x4
        0xd518_d084, // msr tpidr_el1, x4
        0x9e67_0080, // fmov d0, x4
        0xd51b_e344, // msr cntv_cval_el0, x4
        0xf900_00a4, // str x4, [x5]  (RAM)
    ]);
    // The first job of the boot gets a fresh VM.
    let fresh = run(&mut t, &job(1, &program(&read)));
    assert_eq!(fresh.end, ReportEnd::Done, "{fresh:?}");
    assert_eq!(fresh.exits.len(), 9, "eight reads and DONE: {:?}", fresh.exits);
    let r = run(&mut t, &job(2, &program(&dirty)));
    assert_eq!(r.end, ReportEnd::Done, "{r:?}");
    let reused = run(&mut t, &job(3, &program(&read)));
    // The profile line comes after the result: a Ping makes sure it is in.
    ping(&mut t, 4);
    let tail = t.tail();
    assert!(tail.lines().any(|l| l.contains("agent profile seq 3: ") && l.contains("vm=reused")), "job 3 ran on a reused VM: {tail}");
    assert_eq!(reused, trapdiff_arch::wire::Report { seq: 3, elapsed_us: reused.elapsed_us, ..fresh }, "a reused VM starts like a fresh one");
}

fn libc_enosys() -> i32 {
    38 // ENOSYS on Linux (all architectures trapdiff runs on)
}
