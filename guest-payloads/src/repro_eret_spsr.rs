//! The QEMU TCG behaviour behind the `tcg-aarch32-eret-spsr-not-loaded` waiver, pinned by a
//! standalone reproducer (`runtime/repro-eret-spsr.S`, no runtime, no refhyp): EL2 writes
//! the AArch64 SPSR_abt, ERETs into AArch32 Abort mode, and the AArch32 code reads its SPSR.
//! Architecturally it reads what EL2 wrote (Arm ARM C5.2 "SPSR_abt": mapped to AArch32
//! SPSR_abt). QEMU 10.0 gives the stale SPSR of the previous mode instead (0 here). When a
//! QEMU delivers it correctly this test fails, so the waiver goes with it.
#![allow(clippy::unwrap_used)] // test-only module: fixed inputs

use std::process::Command;
use std::time::Duration;

/// What the stub writes to SPSR_abt (`SPSR_WRITTEN` in the .S file).
const WRITTEN: u32 = 0x6000_01df;

#[test]
fn qemu_eret_into_aarch32_abort_mode_does_not_load_spsr_abt() {
    let Ok(v) = Command::new("qemu-system-aarch64").arg("--version").output() else {
        crate::skip::live("qemu-system-aarch64 is not installed (bash ci/setup.sh packages)");
        return;
    };
    let version = String::from_utf8_lossy(&v.stdout).lines().next().unwrap_or_default().to_string();
    let stub = std::path::Path::new(concat!(env!("OUT_DIR"), "/repro-eret-spsr.elf"));
    eprintln!("reproducer: qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -nographic -device loader,file={},cpu-num=0", stub.display());
    let text = crate::runtime_smoke::serial_of_stub("qemu-system-aarch64", stub, &[], Duration::from_secs(30), |l| l.starts_with("R "));
    let line = text.lines().find(|l| l.starts_with("R ")).unwrap_or_else(|| panic!("the stub printed no result line: {text:?}"));
    let v: Vec<u32> = line[2..].split_whitespace().map(|x| u32::from_str_radix(x, 16).unwrap()).collect();
    let (written, read_a32, read_el2) = (v[0], v[1], v[2]);
    eprintln!("{version}: SPSR_abt written {written:#x}, AArch32 MRS SPSR read {read_a32:#x}, EL2 reads SPSR_abt {read_el2:#x}");
    assert_eq!(written, WRITTEN);
    assert_eq!(read_el2, WRITTEN, "SPSR_abt must hold what EL2 wrote");
    assert_ne!(
        read_a32, WRITTEN,
        "{version} loads SPSR_abt on an ERET into Abort mode: the QEMU bug is fixed, so remove the waiver \
         tcg-aarch32-eret-spsr-not-loaded (corpus/waivers.json) and this test"
    );
    assert_eq!(read_a32, 0, "the stale SPSR should be the one of the mode before (none at reset: 0)");
}
