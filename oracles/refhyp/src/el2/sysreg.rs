//! `mrs`/`msr` by register name.

/// Read a system register. Reads have no side effects on the registers used here.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a system register at EL2 has no memory effects; every register
        // named at a call site exists on the CPUs the refhyp runs on (Armv8.0 + GICv3).
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Write a system register.
macro_rules! write_sysreg {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: call sites only write EL2 configuration owned by `el2::cpu`/`el2::gic`/
        // `el2::mmu` or the guest's EL1 state, which the EL2 code does not itself depend on.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}
