//! Assembles the guest runtime (`runtime/a64.S`, `runtime/a32.S`) into flat binaries that the
//! crate includes (`src/runtime.rs`). The ABI constants the assembly uses are generated from
//! `trapdiff_arch::abi` into `abi.inc`, so the runtime and the Rust side share one definition.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use trapdiff_arch::abi;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("runtime");
    println!("cargo:rerun-if-changed=runtime/a64.S");
    println!("cargo:rerun-if-changed=runtime/a32.S");
    println!("cargo:rerun-if-changed=build.rs");
    fs::write(out.join("abi.inc"), abi_inc()).expect("write abi.inc into OUT_DIR");
    // Each runtime gets half of the runtime area: A64 at RUNTIME_BASE, A32 at RUNTIME_A32_BASE.
    let a64_room = abi::RUNTIME_A32_BASE - abi::RUNTIME_BASE;
    let a32_room = abi::RUNTIME_BASE + abi::RUNTIME_SIZE - abi::RUNTIME_A32_BASE;
    assemble("aarch64-linux-gnu-", &dir.join("a64.S"), &out, "runtime-a64", abi::RUNTIME_BASE, a64_room);
    assemble("arm-none-eabi-", &dir.join("a32.S"), &out, "runtime-a32", abi::RUNTIME_A32_BASE, a32_room);
    let syms = format!(
        "/// Text symbols of the A64 runtime (address, name), by address.\npub const A64_SYMBOLS: &[(u64, &str)] = &{:?};\n\
         /// Text symbols of the A32 runtime (address, name), by address.\npub const A32_SYMBOLS: &[(u64, &str)] = &{:?};\n",
        symbols("aarch64-linux-gnu-", &out.join("runtime-a64.elf")),
        symbols("arm-none-eabi-", &out.join("runtime-a32.elf")),
    );
    fs::write(out.join("runtime_symbols.rs"), syms).expect("write runtime_symbols.rs into OUT_DIR");
    // The EL2 stub of the runtime's QEMU smoke test (src/runtime_smoke.rs), in RAM above
    // the DTB QEMU places at the bottom of RAM.
    println!("cargo:rerun-if-changed=runtime/smoke-el2.S");
    println!("cargo:rerun-if-changed=runtime/el2-stub.inc");
    assemble("aarch64-linux-gnu-", &dir.join("smoke-el2.S"), &out, "smoke-el2", 0x4040_0000, 0x1_0000);
    // The standalone QEMU reproducer behind the tcg-aarch32-eret-spsr-not-loaded waiver
    // (src/repro_eret_spsr.rs).
    println!("cargo:rerun-if-changed=runtime/repro-eret-spsr.S");
    assemble("aarch64-linux-gnu-", &dir.join("repro-eret-spsr.S"), &out, "repro-eret-spsr", 0x4040_0000, 0x1_0000);
}

fn run(tool: &str, args: &[&str]) {
    let status = match Command::new(tool).args(args).status() {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot run `{tool}` ({e}): the guest runtime is assembled with binutils for aarch64-linux-gnu and \
             arm-none-eabi; run `bash ci/setup.sh packages` to install them"
        ),
    };
    assert!(status.success(), "`{tool} {}` failed ({status}); see its messages above", args.join(" "));
}

fn assemble(prefix: &str, src: &Path, out: &Path, name: &str, base: u64, room: u64) {
    let s = |p: &Path| p.to_str().expect("build paths are UTF-8").to_string();
    let obj = out.join(format!("{name}.o"));
    let elf = out.join(format!("{name}.elf"));
    let bin = out.join(format!("{name}.bin"));
    let dir = src.parent().expect("runtime sources live in a directory");
    run(&format!("{prefix}as"), &["-I", &s(out), "-I", &s(dir), "-o", &s(&obj), &s(src)]);
    run(&format!("{prefix}ld"), &["-nostdlib", "-static", "--build-id=none", "-N", &format!("-Ttext={base:#x}"), "-e", "_start", "-o", &s(&elf), &s(&obj)]);
    run(&format!("{prefix}objcopy"), &["-O", "binary", "-j", ".text", &s(&elf), &s(&bin)]);
    let len = fs::metadata(&bin).expect("objcopy wrote the binary").len();
    assert!(len > 0 && len <= room, "{name} is {len:#x} bytes; it must fit in {room:#x} bytes at {base:#x}");
}

/// The code labels of a linked runtime, from `nm` (mapping symbols like `$x` left out), so a
/// runtime fault's pc can be named.
fn symbols(prefix: &str, elf: &Path) -> Vec<(u64, String)> {
    let tool = format!("{prefix}nm");
    let out = match Command::new(&tool).arg("-n").arg(elf).output() {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => panic!("`{tool} -n {}` failed ({})", elf.display(), o.status),
        Err(e) => panic!("cannot run `{tool}` ({e}); run `bash ci/setup.sh packages`"),
    };
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            let text = kind.eq_ignore_ascii_case("t") && !name.starts_with('$');
            text.then(|| Some((u64::from_str_radix(addr, 16).ok()?, name.to_string()))).flatten()
        })
        .collect()
}

/// `.equ` lines for every ABI constant the assembly uses.
fn abi_inc() -> String {
    use abi::{params as p, report as r, vector as v};
    let mut s = String::from("// Generated by guest-payloads/build.rs from trapdiff_arch::abi. Do not edit.\n");
    let consts: &[(&str, u64)] = &[
        ("RUNTIME_BASE", abi::RUNTIME_BASE),
        ("RUNTIME_A32_BASE", abi::RUNTIME_A32_BASE),
        ("PARAMS_BASE", abi::PARAMS_BASE),
        ("STACK_BASE", abi::STACK_BASE),
        ("STACK_SIZE", abi::STACK_SIZE),
        ("REPORT_BASE", abi::REPORT_BASE),
        ("HARNESS_MMIO", abi::HARNESS_MMIO),
        ("H_EVENT", abi::EVENT),
        ("H_DONE", abi::DONE),
        ("DONE_OK", abi::DONE_OK.into()),
        ("DONE_EXCEPTION_LIMIT", abi::DONE_EXCEPTION_LIMIT.into()),
        ("DONE_END_ON_EXCEPTION", abi::DONE_END_ON_EXCEPTION.into()),
        ("DONE_RUNTIME_FAULT", abi::DONE_RUNTIME_FAULT.into()),
        ("DONE_BAD_PARAMS", abi::DONE_BAD_PARAMS.into()),
        ("MAX_EXCEPTIONS", abi::MAX_EXCEPTIONS as u64),
        ("PARAMS_MAGIC", p::MAGIC),
        // The 32-bit assembler's expressions may be 32 bits wide: give it the halves.
        ("PARAMS_MAGIC_LO", p::MAGIC & 0xffff_ffff),
        ("PARAMS_MAGIC_HI", p::MAGIC >> 32),
        ("P_MAGIC", p::OFF_MAGIC),
        ("P_ENTRY", p::OFF_ENTRY),
        ("P_EL0", p::OFF_EL0),
        ("P_SCTLR", p::OFF_SCTLR),
        ("P_TCR", p::OFF_TCR),
        ("P_TTBR0", p::OFF_TTBR0),
        ("P_MAIR", p::OFF_MAIR),
        ("P_CPACR", p::OFF_CPACR),
        ("P_FPEXC", p::OFF_FPEXC),
        ("P_FPSCR", p::OFF_FPSCR),
        ("P_ON_EXCEPTION", p::OFF_ON_EXCEPTION),
        ("P_MAX_EXCEPTIONS", p::OFF_MAX_EXCEPTIONS),
        ("P_END_MARKER", p::OFF_END_MARKER),
        ("P_GPRS", p::OFF_GPRS),
        ("P_VREGS", p::OFF_VREGS),
        ("REPORT_MAGIC", r::MAGIC.into()),
        ("R_MAGIC", r::OFF_MAGIC),
        ("R_N", r::OFF_N_EXCEPTIONS),
        ("R_STATUS", r::OFF_STATUS),
        ("R_GPRS", r::OFF_GPRS),
        ("R_FPCR_OR_FPSCR", r::OFF_FPCR_OR_FPSCR),
        ("R_FPSR_OR_FPEXC", r::OFF_FPSR_OR_FPEXC),
        ("R_CPACR", r::OFF_CPACR),
        ("R_SCTLR", r::OFF_SCTLR),
        ("R_VREGS", r::OFF_VREGS),
        ("R_EXC", r::OFF_EXCEPTIONS),
        ("EXC_SIZE", r::EXCEPTION_SIZE),
        ("REC_VECTOR", r::REC_VECTOR),
        ("REC_FLAGS", r::REC_FLAGS),
        ("REC_SYNDROME", r::REC_SYNDROME),
        ("REC_FAR", r::REC_FAR),
        ("REC_PC", r::REC_PC),
        ("REC_SPSR", r::REC_SPSR),
        ("FLAG_FROM_EL0", r::FLAG_FROM_EL0.into()),
        ("FLAG_RUNTIME", r::FLAG_RUNTIME.into()),
        ("FLAG_BAD_SPSR", r::FLAG_BAD_SPSR.into()),
        ("VEC_A64_SYNC", v::A64_SYNC.into()),
        ("VEC_A64_IRQ", v::A64_IRQ.into()),
        ("VEC_A64_FIQ", v::A64_FIQ.into()),
        ("VEC_A64_SERROR", v::A64_SERROR.into()),
        ("VEC_A32_UNDEF", v::A32_UNDEF.into()),
        ("VEC_A32_SVC", v::A32_SVC.into()),
        ("VEC_A32_PABT", v::A32_PABT.into()),
        ("VEC_A32_DABT", v::A32_DABT.into()),
        ("VEC_A32_IRQ", v::A32_IRQ.into()),
        ("VEC_A32_FIQ", v::A32_FIQ.into()),
    ];
    for (name, value) in consts {
        writeln!(s, "    .equ {name}, {value:#x}").expect("writing to a String cannot fail");
    }
    s
}
