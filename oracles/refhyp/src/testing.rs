//! A scripted CPU for host tests: exits with the traps it is given and records what the
//! runner asked of it.
extern crate std;
use std::collections::VecDeque;
use std::vec::Vec;

use crate::cmo::{CmoOp, Par, S1Walk};
use crate::fp::FpState;
use crate::hw::Hw;
use crate::policy::{ExitKind, Trap};
use crate::vcpu::{El1Regs, GuestRegs};

/// A CPU that exits with scripted traps and records what the runner asked of it.
#[derive(Default)]
pub struct ScriptedCpu {
    pub traps: VecDeque<Trap>,
    pub seen: Vec<GuestRegs>,
    pub el1: El1Regs,
    pub tfp: Vec<bool>,
    pub fpexc32: u64,
    pub fpexc_writes: Vec<u64>,
    pub fp_loads: u32,
    pub fp_saves: u32,
    pub irq_is_watchdog: bool,
    pub now: u64,
    pub maps: u32,
    /// PAR_EL1 values the AT instructions return, in order; once exhausted, stage 1 is flat
    /// (the IPA is the VA).
    pub pars: VecDeque<u64>,
    pub translations: Vec<(u64, S1Walk)>,
    pub cache_ops: Vec<(CmoOp, u64)>,
    /// General registers the guest holds at every exit (what its code put there).
    pub x_at_exit: Vec<(usize, u64)>,
}

impl Hw for ScriptedCpu {
    fn reset_vcpu(&mut self, _aarch32: bool) {}
    fn install_stage2(&mut self, _vttbr: u64, _vtcr: u64) {}
    fn stage2_mapped(&mut self) {
        self.maps += 1;
    }
    fn enter(&mut self, regs: &mut GuestRegs) -> Trap {
        self.seen.push(*regs);
        self.now += 10;
        for &(i, v) in &self.x_at_exit {
            regs.x[i] = v;
        }
        // An exhausted script hangs: the watchdog fires.
        self.traps.pop_front().unwrap_or(Trap { kind: ExitKind::Irq, esr: 0, far: 0, hpfar: 0 })
    }
    fn read_el1(&mut self) -> El1Regs {
        self.el1
    }
    fn write_el1(&mut self, regs: &El1Regs) {
        self.el1 = *regs;
    }
    fn set_fp_trap(&mut self, trap: bool) {
        self.tfp.push(trap);
    }
    fn read_fpexc32(&mut self) -> u64 {
        self.fpexc32
    }
    fn write_fpexc32(&mut self, value: u64) {
        self.fpexc32 = value;
        self.fpexc_writes.push(value);
    }
    fn fp_load(&mut self, _state: &FpState) {
        self.fp_loads += 1;
    }
    fn fp_save(&mut self, _state: &mut FpState) {
        self.fp_saves += 1;
    }
    fn watchdog_arm(&mut self, _ms: u32) {}
    fn watchdog_disarm(&mut self) {}
    fn ack_irq(&mut self) -> bool {
        self.irq_is_watchdog
    }
    fn now_us(&mut self) -> u64 {
        self.now
    }
    fn translate_s1(&mut self, va: u64, walk: S1Walk) -> u64 {
        self.translations.push((va, walk));
        self.pars.pop_front().unwrap_or(Par::ok(va).0)
    }
    fn cache_maintain(&mut self, op: CmoOp, pa: u64) {
        self.cache_ops.push((op, pa));
    }
}
