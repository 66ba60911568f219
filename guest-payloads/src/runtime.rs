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

include!(concat!(env!("OUT_DIR"), "/runtime_symbols.rs"));

/// Name an address inside either runtime as `label+offset` (for runtime-fault messages).
pub fn symbolize(addr: u64) -> Option<String> {
    let (syms, base, len) =
        if addr >= abi::RUNTIME_A32_BASE { (A32_SYMBOLS, abi::RUNTIME_A32_BASE, A32.len() as u64) } else { (A64_SYMBOLS, abi::RUNTIME_BASE, A64.len() as u64) };
    if addr < base || addr >= base + len {
        return None;
    }
    let (at, name) = syms.iter().rev().find(|(a, _)| *a <= addr)?;
    Some(if addr == *at { (*name).to_string() } else { format!("{name}+{:#x}", addr - at) })
}

/// Entry point of the runtime for a case in AArch32 (`true`) or AArch64 (`false`).
pub fn entry(aarch32: bool) -> u64 {
    if aarch32 {
        abi::RUNTIME_A32_BASE
    } else {
        abi::RUNTIME_BASE
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use capstone::arch::{arm, arm64, BuildsCapstone};
    use capstone::Capstone;

    /// Disassemble `bin` word by word (every word of the runtimes' .text is an instruction:
    /// they use no literal pools and pad with NOPs) and return the words capstone rejects.
    fn undecodable(cs: &Capstone, bin: &[u8], base: u64) -> Vec<(u64, u32)> {
        bin.chunks(4)
            .enumerate()
            .filter_map(|(i, w)| {
                let addr = base + 4 * i as u64;
                let ok = cs.disasm_count(w, addr, 1).map(|insns| insns.len() == 1).unwrap_or(false);
                (!ok).then(|| (addr, u32::from_le_bytes(w.try_into().unwrap_or([0; 4]))))
            })
            .collect()
    }

    #[test]
    fn a64_runtime_is_all_instructions() {
        let cs = Capstone::new().arm64().mode(arm64::ArchMode::Arm).build().unwrap();
        assert_eq!(A64.len() % 4, 0);
        // The check can fail: an unallocated word is reported.
        assert_eq!(undecodable(&cs, &[0xff; 4], 0), vec![(0, 0xffff_ffff)]);
        assert_eq!(undecodable(&cs, A64, abi::RUNTIME_BASE), vec![]);
        // Entry: a branch; vectors 2 KiB aligned, each entry starting `sub sp, sp, #FRAME`.
        let entry = cs.disasm_count(&A64[..4], abi::RUNTIME_BASE, 1).unwrap();
        assert_eq!(entry.iter().next().unwrap().mnemonic(), Some("b"));
        for v in 0..16 {
            let o = (A64_VECTORS_OFFSET + 0x80 * v) as usize;
            let i = cs.disasm_count(&A64[o..o + 4], 0, 1).unwrap();
            let i = i.iter().next().unwrap();
            assert_eq!((i.mnemonic(), i.op_str()), (Some("sub"), Some("sp, sp, #0x100")), "vector {v}");
        }
    }

    #[test]
    fn runtime_addresses_are_named() {
        assert_eq!(symbolize(abi::RUNTIME_BASE).as_deref(), Some("_start"));
        assert_eq!(symbolize(abi::RUNTIME_BASE + A64_VECTORS_OFFSET + 0x84).as_deref(), Some("vectors+0x84"));
        assert_eq!(symbolize(abi::RUNTIME_A32_BASE + 4).as_deref(), Some("_start+0x4"));
        assert!(symbolize(abi::RUNTIME_A32_BASE + 0x10).is_some());
        assert_eq!(symbolize(abi::RUNTIME_BASE + A64.len() as u64), None);
        assert_eq!(symbolize(0x4000_0000), None);
    }

    #[test]
    fn a32_runtime_is_all_instructions() {
        let cs = Capstone::new().arm().mode(arm::ArchMode::Arm).build().unwrap();
        assert_eq!(A32.len() % 4, 0);
        assert_eq!(undecodable(&cs, &0xffff_ffffu32.to_le_bytes(), 0), vec![(0, 0xffff_ffff)]);
        assert_eq!(undecodable(&cs, A32, abi::RUNTIME_A32_BASE), vec![]);
        // The vector table: eight branches, the first (reset) being the entry.
        for v in 0..8 {
            let i = cs.disasm_count(&A32[4 * v..4 * v + 4], 0, 1).unwrap();
            assert_eq!(i.iter().next().unwrap().mnemonic(), Some("b"), "vector slot {v}");
        }
    }
}
