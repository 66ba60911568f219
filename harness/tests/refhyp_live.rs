//! The refhyp backend end to end: QEMU boots the refhyp once, and cases from every family,
//! a hanging case (the EL2 watchdog) and garbage on the channel all go through that one boot.
//!
//! Needs qemu-system-aarch64 and the refhyp image (`bash ci/setup.sh`); without them each test
//! prints why it is skipped and passes.

use std::path::{Path, PathBuf};

use trapdiff::backend::refhyp::{self, RefhypOptions};
use trapdiff::backend::Backend;
use trapdiff::case_file;
use trapdiff_arch::case::{Insn, Reg, RegValue};
use trapdiff_arch::outcome::{End, Event};
use trapdiff_arch::Case;

fn skip_reason() -> Option<String> {
    if trapdiff::backend::qemu::qemu_version().is_none() {
        return Some("qemu-system-aarch64 is not installed (bash ci/setup.sh packages)".into());
    }
    let img = refhyp::image_path();
    if !img.is_file() {
        return Some(format!("refhyp image {} is missing (bash ci/setup.sh)", img.display()));
    }
    None
}

macro_rules! require_refhyp {
    () => {
        if let Some(why) = skip_reason() {
            guest_payloads::skip::live(&why);
            return;
        }
    };
}

fn suite(rel: &str) -> Case {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/suite").join(rel);
    case_file::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn backend() -> trapdiff::backend::live::LiveBackend {
    refhyp::backend(&RefhypOptions::default()).expect("refhyp backend")
}

#[test]
fn one_case_per_family_in_one_boot() {
    require_refhyp!();
    let mut b = backend();
    // mmio: LDRH from a hole, VMM returns 0xfedcba98f6e5d4c3: one 2-byte read, zero-extended.
    let o = b.run(&suite("mmio/a64-el1-ldrh-off1ff8-rd-neg.json"));
    assert_eq!(o.end, End::Done, "{o:?}");
    assert_eq!(o.events, vec![Event::Mmio { ipa: 0x5000_1ff8, len: 2, write: false, data: 0xd4c3 }]);
    assert_eq!(o.state.as_ref().and_then(|s| s.regs.get(&Reg::X(0)).copied()), Some(RegValue(0xd4c3)));
    for rel in [
        "cmo/a64-el1-dc-civac-mmio.json",
        "cmo/a64-el1-dc-civac-roram-nisv-on.json",
        "fp32/a32-el1-ctxsw-mmio-read-fpexc-en-fpscr-busy.json",
        "devmem/a64-el1-dczva-gre-ram-aligned-a0.json",
        "icache/a32-el1-first-exec-iciallu.json",
    ] {
        let case = suite(rel);
        let o = b.run(&case);
        assert!(!o.end.is_infrastructure(), "{rel}: {o:?}");
    }
    // A DC CIVAC to a hole is skipped by the hypervisor: no exit, no guest exception.
    let o = b.run(&suite("cmo/a64-el1-dc-civac-mmio.json"));
    assert_eq!((o.end.clone(), o.events.len()), (End::Done, 0), "{o:?}");
    // DC ZVA to an untouched read-only slot is a write without a syndrome: with NISV delivery
    // off, KVM_RUN fails with ENOSYS. (DC CIVAC there would be a NISV exit under KVM, but
    // QEMU's TCG treats DC CIVAC as a no-op that never faults, so it is not asserted here.)
    let o = b.run(&suite("cmo/a64-el1-dc-zva-roram.json"));
    assert_eq!(o.end, End::RunError { errno: 38 }, "{o:?}");
    assert_eq!(b.boots, 1);
}

#[test]
fn a_hanging_case_times_out_and_the_next_case_runs_in_the_same_boot() {
    require_refhyp!();
    let mut b = backend();
    let mut hang = suite("mmio/a64-el1-ldrh-off1ff8-rd-neg.json");
    hang.name = "test/hang".into();
    hang.code.insns = vec![Insn { w: 0x1400_0000, asm: "b #0".into() }];
    hang.limits.timeout_ms = 200;
    let o = b.run(&hang);
    assert_eq!(o.end, End::Timeout, "{o:?}");
    let o = b.run(&suite("mmio/a64-el1-ldrh-off1ff8-rd-neg.json"));
    assert_eq!(o.end, End::Done, "{o:?}");
    assert_eq!(b.boots, 1, "the watchdog must not cost a reboot");
}

#[test]
fn garbage_on_the_channel_is_survived() {
    require_refhyp!();
    let mut b = backend();
    let case = suite("mmio/a64-el1-ldrh-off1ff8-rd-neg.json");
    assert_eq!(b.run(&case).end, End::Done);
    // A frame with a bad checksum, one that is not hex, a huge line, binary noise.
    let mut junk = b"@TD 0102 00000000\n@TD zz 1\n".to_vec();
    junk.extend(std::iter::repeat_n(b'A', 100_000));
    junk.extend_from_slice(b"\n\x00\xff\xfe random bytes without a newline ");
    b.send_raw(&junk).expect("send");
    let o = b.run(&case);
    assert_eq!(o.end, End::Done, "{o:?}");
    assert_eq!(o.state.as_ref().and_then(|s| s.regs.get(&Reg::X(0)).copied()), Some(RegValue(0xd4c3)));
    assert_eq!(b.boots, 1, "garbage must not cost a reboot");
}
