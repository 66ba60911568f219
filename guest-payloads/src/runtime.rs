//! The guest runtime's binaries (assembled by build.rs from `runtime/a64.S` and `runtime/a32.S`)
//! and where they live. Both are loaded once per backend (`wire::HostMsg::SetRuntime`, see
//! [`crate::lower::runtime_segments`]); a job's `entry` picks one.

use trapdiff_arch::abi;

/// The A64 runtime, linked at [`abi::RUNTIME_BASE`]; entry at its first word.
pub const A64: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runtime-a64.bin"));
/// The AArch32 runtime (A32), linked at [`abi::RUNTIME_A32_BASE`]; its first word is the reset
/// slot of its vector table and the entry.
pub const A32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runtime-a32.bin"));

/// Offset of the A64 vector table (VBAR_EL1) in [`A64`]: 2 KiB aligned, right after the entry
/// branch (Arm ARM D1.10.2).
pub const A64_VECTORS_OFFSET: u64 = 0x800;

/// Entry point of the runtime for a case in AArch32 (`true`) or AArch64 (`false`).
pub fn entry(aarch32: bool) -> u64 {
    if aarch32 { abi::RUNTIME_A32_BASE } else { abi::RUNTIME_BASE }
}
