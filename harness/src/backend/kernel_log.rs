//! The guest kernel's log, read for findings: WARN/BUG/Oops splats, KVM's "Unsupported FSC",
//! lockdep reports, RCU stalls, soft lockups and hung tasks, each with the lines of its splat
//! (registers, call trace) up to its end marker. A case that makes the kernel print one is a
//! `kernel-finding`, whatever the outcomes say.
//!
//! Lines arrive two ways: the serial console (printk at or above `loglevel=`, so panics), and
//! the agent's `/dev/kmsg` forwarding after each job (`Log` frames, warnings and worse). The
//! same line may come both ways; [`KernelLog::take`] returns each once.

/// Patterns that start a finding. Sources: include/asm-generic/bug.h and kernel/panic.c
/// (`__warn`: "WARNING: CPU: %d PID: %d at %pS"; `BUG:`/"kernel BUG at"), arch/arm64/kernel/
/// traps.c (`die`: "Internal error: %s"), arch/arm64/mm/fault.c ("Unable to handle kernel"),
/// arch/arm64/kvm/mmu.c `kvm_handle_guest_abort` (kvm_err "Unsupported FSC: EC=..."),
/// kernel/locking/lockdep.c (its reports open with "WARNING: possible circular locking..." or
/// "WARNING: inconsistent lock state", and "BUG: " lines), kernel/rcu/tree_stall.h
/// ("rcu: INFO: rcu_sched detected stalls", "self-detected stall"), kernel/watchdog.c
/// ("BUG: soft lockup"), kernel/hung_task.c ("INFO: task %s:%d blocked for more than").
const TRIGGERS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "kernel BUG at",
    "Internal error:",
    "Oops",
    "Unable to handle kernel",
    "Kernel panic",
    "Unsupported FSC",
    "detected stall",
    "self-detected stall",
    "rcu: INFO:",
    "blocked for more than",
    "Call trace:",
];

/// Lines that continue a splat once one has started (arch/arm64/kernel/process.c `__show_regs`,
/// lib/dump_stack.c, arch/arm64/kernel/stacktrace.c).
const CONTINUATIONS: &[&str] = &[
    "Modules linked in",
    "CPU:",
    "Hardware name:",
    "pstate:",
    "pc :",
    "lr :",
    "sp :",
    "Call trace:",
    "Code:",
    "---[ end trace",
    "irq event stamp",
    "hardirqs ",
    "softirqs ",
    "lock(",
    "Chain exists",
    "other info",
    "Possible unsafe",
    "*** DEADLOCK",
    "stack backtrace",
    "Task dump",
    "rcu:",
];

/// Most lines kept from one splat (a call trace is rarely longer).
const MAX_SPLAT: usize = 64;

/// Finds kernel findings in a stream of log lines.
#[derive(Debug, Default)]
pub struct KernelLog {
    lines: Vec<String>,
    /// Inside a splat: following lines that look like part of it are kept.
    in_splat: usize,
}

/// A log line without its printk timestamp (`[   12.345678] `) or a raw `<N>` level prefix.
pub fn strip_prefix(line: &str) -> &str {
    let mut l = line.trim_end();
    if let Some(rest) = l.strip_prefix('<') {
        if let Some((lvl, rest)) = rest.split_once('>') {
            if !lvl.is_empty() && lvl.bytes().all(|b| b.is_ascii_digit()) {
                l = rest;
            }
        }
    }
    if let Some(rest) = l.trim_start().strip_prefix('[') {
        if let Some((ts, rest)) = rest.split_once(']') {
            if ts.trim().bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return rest.strip_prefix(' ').unwrap_or(rest);
            }
        }
    }
    l
}

/// Whether a line starts a finding.
pub fn is_trigger(line: &str) -> bool {
    triggers(strip_prefix(line))
}

/// `l` without its prefix starts a finding.
fn triggers(l: &str) -> bool {
    TRIGGERS.iter().any(|t| l.contains(t))
}

/// `l` without its prefix continues a splat.
fn continues(l: &str) -> bool {
    // Frames (" kvm_handle_guest_abort+0x2c/0x5a0"), register dumps ("x29: ..."), indented text.
    l.starts_with(' ') || l.starts_with('\t') || l.contains("+0x") || (l.starts_with('x') && l.contains(": ")) || CONTINUATIONS.iter().any(|c| l.starts_with(c))
}

impl KernelLog {
    pub fn new() -> KernelLog {
        KernelLog::default()
    }

    /// Look at one line; returns whether it was kept as (part of) a finding.
    pub fn push(&mut self, line: &str) -> bool {
        let l = strip_prefix(line);
        if l.trim().is_empty() {
            return false;
        }
        if triggers(l) {
            self.keep(l);
            self.in_splat = MAX_SPLAT;
            return true;
        }
        if self.in_splat > 0 && continues(l) {
            self.keep(l);
            self.in_splat = if l.starts_with("---[ end trace") { 0 } else { self.in_splat - 1 };
            return true;
        }
        self.in_splat = 0;
        false
    }

    /// Look at every line of a multi-line text (a `Log` frame).
    pub fn push_text(&mut self, text: &str) {
        for l in text.lines() {
            // The agent's header line ("kernel messages during job seq 7:") is not kernel text.
            if l.starts_with("kernel messages during ") {
                self.in_splat = 0;
                continue;
            }
            self.push(l);
        }
    }

    fn keep(&mut self, l: &str) {
        // The console and /dev/kmsg can both carry the same line.
        if !self.lines.iter().any(|k| k == l) {
            self.lines.push(l.to_string());
        }
    }

    /// The findings seen since the last call, in order, each line once.
    pub fn take(&mut self) -> Vec<String> {
        self.in_splat = 0;
        std::mem::take(&mut self.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real arm64 WARN splat (kernel/panic.c `__warn` + `__show_regs` +
    /// `dump_backtrace`), as the console prints it, followed by an unrelated line.
    const WARN_SPLAT: &str = "[   12.345678] ------------[ cut here ]------------
[   12.345679] WARNING: CPU: 0 PID: 1 at arch/arm64/kvm/mmu.c:1234 kvm_handle_guest_abort+0x2c/0x5a0
[   12.345680] Modules linked in:
[   12.345681] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-arm64 #1  Debian 6.1.192-2
[   12.345682] Hardware name: linux,dummy-virt (DT)
[   12.345683] pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)
[   12.345684] pc : kvm_handle_guest_abort+0x2c/0x5a0
[   12.345685] lr : handle_exit+0x70/0x1c0
[   12.345686] sp : ffff80000a0bbb50
[   12.345687] x29: ffff80000a0bbb50 x28: ffff000002f1c000 x27: 0000000000000000
[   12.345688] Call trace:
[   12.345689]  kvm_handle_guest_abort+0x2c/0x5a0
[   12.345690]  handle_exit+0x70/0x1c0
[   12.345691]  kvm_arch_vcpu_ioctl_run+0x2d8/0x850
[   12.345692] ---[ end trace 0000000000000000 ]---
[   12.400000] virtio_blk virtio0: [vda] 2048 512-byte logical blocks";

    #[test]
    fn a_warn_splat_is_kept_whole_and_nothing_after_it() {
        let mut k = KernelLog::new();
        for l in WARN_SPLAT.lines() {
            k.push(l);
        }
        let got = k.take();
        assert_eq!(got.first().map(String::as_str), Some("WARNING: CPU: 0 PID: 1 at arch/arm64/kvm/mmu.c:1234 kvm_handle_guest_abort+0x2c/0x5a0"));
        assert!(got.iter().any(|l| l == " handle_exit+0x70/0x1c0"), "{got:#?}");
        assert_eq!(got.last().map(String::as_str), Some("---[ end trace 0000000000000000 ]---"));
        assert!(!got.iter().any(|l| l.contains("virtio_blk") || l.contains("cut here")), "{got:#?}");
        assert!(k.take().is_empty());
    }

    #[test]
    fn each_kind_of_finding_triggers() {
        for l in [
            "[    3.1] BUG: soft lockup - CPU#0 stuck for 22s! [init:1]",
            "kernel BUG at arch/arm64/kvm/hyp/pgtable.c:100!",
            "Internal error: Oops: 0000000096000004 [#1] SMP",
            "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008",
            "Kernel panic - not syncing: sysrq triggered crash",
            "kvm [1]: Unsupported FSC: EC=0x24 xFSC=0x31 ESR_EL2=0x92000071",
            "rcu: INFO: rcu_sched self-detected stall on CPU",
            "WARNING: possible circular locking dependency detected",
            "INFO: task init:1 blocked for more than 120 seconds.",
        ] {
            assert!(is_trigger(l), "{l}");
        }
        for l in ["[    1.0] Booting Linux on physical CPU 0x0000000000 [0x000f0510]", "kvm [1]: VHE mode initialized successfully", "random: crng init done"] {
            assert!(!is_trigger(l), "{l}");
        }
    }

    #[test]
    fn the_same_line_from_console_and_kmsg_counts_once() {
        let mut k = KernelLog::new();
        k.push("[    5.000000] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x4");
        k.push_text("kernel messages during job seq 3:\nWARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x4\n");
        assert_eq!(k.take().len(), 1);
    }

    #[test]
    fn prefixes_are_stripped() {
        assert_eq!(strip_prefix("[   12.3] WARNING: x"), "WARNING: x");
        assert_eq!(strip_prefix("<4>WARNING: x"), "WARNING: x");
        assert_eq!(strip_prefix("[abc] y"), "[abc] y");
        assert_eq!(strip_prefix("<x>y"), "<x>y");
    }
}
