//! Minimisation: shrink a divergent case (fewer instructions, fewer regions and registers,
//! default system registers and VMM choices, simpler values) while the same divergence
//! signature persists, so that a find is a reproducer a kernel developer can read.

use std::time::{Duration, Instant};

use guest_payloads::encode::Disassembler;
use trapdiff_arch::case::{Limits, SysRegs, Vmm};
use trapdiff_arch::{Case, El, Outcome};

use super::mutators::sync_asm;
use super::signature;
use crate::known::KnownList;

/// The smallest case found, its outcomes, and what it took.
#[derive(Debug, Clone)]
pub struct Minimised {
    pub case: Case,
    pub outcomes: Vec<(String, Outcome)>,
    /// Executions spent (each on every backend).
    pub execs: u64,
    /// Simplifications that kept the divergence.
    pub steps: u32,
}

/// Every one-step simplification of `c`, biggest first.
fn candidates(c: &Case) -> Vec<Case> {
    let mut v = Vec::new();
    let mut push = |f: &dyn Fn(&mut Case)| {
        let mut x = c.clone();
        f(&mut x);
        if x != *c {
            v.push(x);
        }
    };
    // Drop instructions, last first (later instructions depend on earlier ones less often).
    for i in (0..c.code.insns.len()).rev() {
        if c.code.insns.len() > 1 {
            push(&|x| {
                x.code.insns.remove(i);
            });
        }
    }
    // Drop regions other than the code's.
    for (j, m) in c.memory.iter().enumerate() {
        if c.code.ipa >= m.ipa && c.code.ipa < m.ipa + m.size {
            continue;
        }
        let name = m.name.clone();
        push(&|x| {
            x.memory.remove(j);
            x.observe.mem.retain(|w| w.region != name);
        });
    }
    for reg in c.regs.keys() {
        push(&|x| {
            x.regs.remove(reg);
        });
    }
    push(&|x| x.observe.regs.clear());
    push(&|x| x.observe.mem.clear());
    push(&|x| x.observe.fp = false);
    push(&|x| x.sysregs = SysRegs::default());
    push(&|x| x.sysregs.cpacr = None);
    push(&|x| x.sysregs.fpexc = None);
    push(&|x| x.sysregs.fpscr = None);
    push(&|x| x.sysregs.align_check = false);
    push(&|x| x.sysregs.mmu = true);
    push(&|x| x.sysregs.caches = true);
    push(&|x| x.sysregs.el0_cache_ops = true);
    push(&|x| x.vmm = Vmm::default());
    push(&|x| x.vmm.reads.clear());
    push(&|x| x.vmm.nisv_to_user = false);
    push(&|x| x.vmm.on_nisv = Default::default());
    push(&|x| x.vmm.on_mmio = Default::default());
    push(&|x| x.state.el = El::El1);
    push(&|x| x.state.on_exception = Default::default());
    push(&|x| x.limits = Limits::default());
    for j in 0..c.memory.len() {
        push(&|x| x.memory[j].init.clear());
        push(&|x| x.memory[j].fill = 0);
        push(&|x| x.memory[j].s1 = None);
        push(&|x| x.memory[j].s2 = None);
        push(&|x| x.memory[j].size = trapdiff_arch::case::PAGE_SIZE);
    }
    // Register values: zero, then only the low byte of the page offset kept.
    for (reg, val) in &c.regs {
        push(&|x| {
            x.regs.insert(*reg, trapdiff_arch::case::RegValue(0));
        });
        let low = val.0 & !0xfff | (val.0 & 0xfff) & 0xff;
        push(&|x| {
            x.regs.insert(*reg, trapdiff_arch::case::RegValue(low));
        });
    }
    v
}

/// Shrink `case` while [`signature::find`] of its outcomes keeps `sig`; at most `budget`
/// executions and about `max_time`. `run` executes a case on the backends the divergence
/// was seen on.
pub fn minimise(
    case: &Case,
    sig: &str,
    known: &KnownList,
    outcomes: Vec<(String, Outcome)>,
    budget: u64,
    max_time: Duration,
    run: &mut dyn FnMut(&Case) -> Vec<(String, Outcome)>,
) -> Minimised {
    let started = Instant::now();
    let d = Disassembler::new().ok();
    let mut best = Minimised { case: case.clone(), outcomes, execs: 0, steps: 0 };
    'outer: while best.execs < budget {
        for mut c in candidates(&best.case) {
            if best.execs >= budget || started.elapsed() >= max_time {
                break 'outer;
            }
            sync_asm(&mut c, d.as_ref());
            if c.validate().is_err() {
                continue;
            }
            best.execs += 1;
            let outs = run(&c);
            if signature::find(&c, &outs, known).is_some_and(|f| f.signature == sig) {
                best.case = c;
                best.outcomes = outs;
                best.steps += 1;
                continue 'outer;
            }
        }
        break;
    }
    best
}
