//! Running one job: reset everything a case could observe, build the guest, enter it, and
//! handle its exits per [`crate::policy`] until the runtime says DONE, the VMM stops, the
//! exit budget runs out or the watchdog fires.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use trapdiff_arch::abi;
use trapdiff_arch::case::{MmioAction, NisvAction};
use trapdiff_arch::memattr::S2Attr;
use trapdiff_arch::quirk::Quirk;
use trapdiff_arch::sysreg::pstate;
use trapdiff_arch::wire::{Exit, Job, Report, ReportEnd, Segment, Slot, SlotKind};

use crate::cmo;
use crate::fp::{self, LazyFp};
use crate::guest_mem::{GuestMap, JobError};
use crate::hw::Hw;
use crate::mmio::{load_result, truncate, DeviceModel};
use crate::policy::{self, Decision, MmioAccess};
use crate::stage2::{self, Stage2, Table};
use crate::vcpu::{self, GuestRegs, Injection};

/// The memory the refhyp hands to guests: the guest pool and the stage-2 table pool, with
/// the physical addresses the MMU sees for them.
#[derive(Debug)]
pub struct Machine<'m> {
    pub pool: &'m mut [u8],
    pub pool_pa: u64,
    pub tables: &'m mut [Table],
    pub tables_pa: u64,
    /// HCR_EL2.FWB is set (the CPU has FEAT_S2FWB; Linux uses it when present).
    pub fwb: bool,
}

/// SMCCC_RET_NOT_SUPPORTED (SMC Calling Convention, DEN0028, "Return codes").
const SMCCC_NOT_SUPPORTED: u64 = u64::MAX;

/// Set up and run `job` on `hw`.
pub fn run_job(hw: &mut impl Hw, m: &mut Machine<'_>, runtime: &[Segment], job: &Job) -> Report {
    let mut report = Report { seq: job.seq, ..Default::default() };
    let prepared = prepare(hw, m.pool, m.pool_pa, m.tables, m.tables_pa, m.fwb, runtime, job);
    let (map, mut s2) = match prepared {
        Ok(p) => p,
        Err(e) => {
            report.end = ReportEnd::Failed { message: e.0 };
            return report;
        }
    };
    let t0 = hw.now_us();
    report.end = execute(hw, &map, &mut s2, m.pool_pa, job, &mut report.exits);
    report.elapsed_us = hw.now_us().saturating_sub(t0);
    report.digests = job.digests.iter().map(|&(ipa, len)| map.digest(m.pool, ipa, len)).collect();
    report.readback = job.readback.iter().map(|&(ipa, len)| map.read(m.pool, ipa, len)).collect();
    report
}

/// Reset guest memory, stage 2 (only the runtime's slot mapped; the rest is faulted in as the
/// guest touches it) and the vCPU.
#[allow(clippy::too_many_arguments)]
fn prepare<'t>(
    hw: &mut impl Hw,
    pool: &mut [u8],
    pool_pa: u64,
    tables: &'t mut [Table],
    tables_pa: u64,
    fwb: bool,
    runtime: &[Segment],
    job: &Job,
) -> Result<(GuestMap, Stage2<'t>), JobError> {
    if job.aarch32 && job.entry >> 32 != 0 {
        return Err(JobError(format!("AArch32 entry {:#x} is above 4 GiB", job.entry)));
    }
    let map = GuestMap::place(&stage2_slots(job), pool.len())?;
    map.load(pool, runtime, &job.segments)?;
    let mut s2 = Stage2::new(tables, tables_pa, fwb)?;
    map.map_runtime(&mut s2, pool_pa)?;
    hw.install_stage2(s2.vttbr(), stage2::vtcr());
    hw.reset_vcpu(job.aarch32);
    Ok((map, s2))
}

/// The job's slots as stage 2 maps them. Quirk `device-s2-always-nGnRE`: device memory is
/// Device-nGnRE whatever the VMM asked for (KVM before 8c47ce3e1d2c, "KVM: arm64: Set io
/// memory s2 pte as normalnc for vfio pci device").
fn stage2_slots(job: &Job) -> Vec<Slot> {
    let mut slots = job.slots.clone();
    if job.quirks.has(Quirk::DeviceS2AlwaysNGnRE) {
        for s in &mut slots {
            if let SlotKind::Device(_) = s.kind {
                s.kind = SlotKind::Device(S2Attr::DeviceNGnRE);
            }
        }
    }
    slots
}

/// The vCPU's state at the runtime's entry: EL1h (AArch64) or SVC (AArch32, T32 when bit 0
/// of the entry is set), interrupts masked, registers zero.
pub fn initial_regs(job: &Job) -> GuestRegs {
    let mut regs = GuestRegs::default();
    if job.aarch32 {
        regs.pc = job.entry & !1;
        regs.pstate = pstate::A32_SVC | pstate::A | pstate::I | pstate::F | if job.entry & 1 != 0 { pstate::T } else { 0 };
    } else {
        regs.pc = job.entry;
        regs.pstate = pstate::EL1H | pstate::DAIF;
    }
    regs
}

fn execute(hw: &mut impl Hw, map: &GuestMap, s2: &mut Stage2<'_>, pool_pa: u64, job: &Job, exits: &mut Vec<Exit>) -> ReportEnd {
    let mut regs = initial_regs(job);
    let mut fp = LazyFp::default();
    let mut device = DeviceModel::new(&job.mmio_reads, job.mmio_read_default);
    let mut case_exits = 0u32;
    let mut after_fp_load = false;
    hw.watchdog_arm(job.timeout_ms);
    let end = loop {
        // The quirk's write sat in __activate_traps, which the FP trap's fast path (handled
        // inside the world switch, __hyp_handle_fpsimd) does not run again.
        let eager = job.quirks.has(Quirk::FpexcEagerEn) && !after_fp_load;
        let (tfp, force) = fp::entry_config(fp.loaded, job.aarch32, eager);
        after_fp_load = false;
        // FPEXC32_EL2 itself is trapped by TFP (also at EL2): write it before trapping.
        if let Some(v) = force {
            hw.write_fpexc32(v);
        }
        hw.set_fp_trap(tfp);
        let trap = hw.enter(&mut regs);
        if fp.loaded && job.aarch32 {
            fp.state.fpexc32 = hw.read_fpexc32();
        }
        // A trapped CMO becomes the stage-2 fault the CPU would have reported, if any.
        let (trap, decision) = cmo::decide(hw, trap, &regs, s2, job.quirks, |ipa| map.backing(ipa));
        let vmm_exit = matches!(decision, Decision::Mmio(_) | Decision::Nisv { .. });
        if vmm_exit {
            // `max_exits` counts exits for case regions only; the runtime's harness-page stores
            // never count, and exit number max_exits + 1 ends the job unrecorded (the contract in
            // guest-payloads/src/lower.rs, the model's rule).
            let harness_page = matches!(decision, Decision::Mmio(a) if a.ipa & !0xfff == abi::HARNESS_MMIO);
            if !harness_page {
                if case_exits >= job.max_exits {
                    break ReportEnd::ExitLimit;
                }
                case_exits += 1;
            }
            // Returning to the VMM puts the guest's FP state back in memory.
            if fp.loaded {
                hw.fp_save(&mut fp.state);
                fp.loaded = false;
            }
        }
        match decision {
            Decision::Mmio(a) => {
                if let Some(end) = mmio(hw, &mut regs, &mut device, job, a, trap.far, exits) {
                    break end;
                }
            }
            Decision::Nisv { esr_iss, ipa, il32 } => {
                if !job.nisv_to_user {
                    break ReportEnd::RunError { errno: policy::ENOSYS };
                }
                exits.push(Exit::Nisv { esr_iss, ipa });
                match job.on_nisv {
                    NisvAction::InjectAbort => inject(hw, &mut regs, Injection::DataAbort { addr: trap.far }, il32),
                    NisvAction::Stop => break ReportEnd::Stopped { reason: format!("VMM stopped on a NISV exit at IPA {ipa:#x}") },
                }
            }
            Decision::MapPage { ipa } => {
                if let Err(e) = map.map_page(s2, pool_pa, ipa) {
                    break ReportEnd::Failed { message: e.0 };
                }
                hw.stage2_mapped();
            }
            Decision::Skip { il32 } => regs.skip_instr(il32),
            Decision::Inject { what, il32 } => inject(hw, &mut regs, what, il32),
            Decision::FpTrap => {
                if fp.loaded {
                    break ReportEnd::Failed { message: String::from("FP trap while the guest FP state was loaded (refhyp bug)") };
                }
                hw.fp_load(&fp.state);
                if job.aarch32 {
                    hw.write_fpexc32(fp.state.fpexc32);
                }
                fp.loaded = true;
                fp.loads += 1;
                after_fp_load = true;
            }
            Decision::Smccc { skip, il32 } => {
                regs.write_rt(0, SMCCC_NOT_SUPPORTED);
                if skip {
                    regs.skip_instr(il32);
                }
            }
            Decision::Irq => {
                if hw.ack_irq() {
                    break ReportEnd::Timeout;
                }
            }
            Decision::RunError { errno, .. } => break ReportEnd::RunError { errno },
            Decision::Stop(why) => {
                break ReportEnd::Stopped { reason: format!("{why} (ESR_EL2 {:#x}, FAR_EL2 {:#x}, PC {:#x})", trap.esr, trap.far, regs.pc) }
            }
        }
    };
    hw.watchdog_disarm();
    if fp.loaded {
        hw.fp_save(&mut fp.state);
    }
    end
}

fn inject(hw: &mut impl Hw, regs: &mut GuestRegs, what: Injection, il32: bool) {
    let mut el1 = hw.read_el1();
    vcpu::inject(regs, &mut el1, what, il32);
    hw.write_el1(&el1);
}

/// The VMM answered an MMIO exit with an external abort (KVM_SET_VCPU_EVENTS): inject it
/// without retiring the access (e735a5da6442, "KVM: arm64: Don't retire aborted MMIO
/// instruction"); quirk `nisv-retire-instruction` retires it first, as before that fix.
fn abort_mmio(hw: &mut impl Hw, regs: &mut GuestRegs, job: &Job, far: u64, il32: bool) {
    if job.quirks.has(Quirk::NisvRetireInstruction) {
        regs.skip_instr(il32);
    }
    inject(hw, regs, Injection::DataAbort { addr: far }, il32);
}

/// One MMIO exit; `Some(end)` when the job ends with it.
fn mmio(
    hw: &mut impl Hw,
    regs: &mut GuestRegs,
    device: &mut DeviceModel<'_>,
    job: &Job,
    a: MmioAccess,
    far: u64,
    exits: &mut Vec<Exit>,
) -> Option<ReportEnd> {
    let harness = a.ipa & !0xfff == abi::HARNESS_MMIO;
    if a.write {
        let data = truncate(regs.read_rt(a.srt), a.len);
        exits.push(Exit::Mmio { ipa: a.ipa, len: a.len, write: true, data });
        if harness && a.ipa == abi::HARNESS_MMIO + abi::DONE {
            return Some(ReportEnd::Done);
        }
        if !harness && job.on_mmio == MmioAction::InjectAbort {
            abort_mmio(hw, regs, job, far, a.il32);
            return None;
        }
    } else if !harness && job.on_mmio == MmioAction::InjectAbort {
        // The VMM answers with an abort instead of data: nothing reaches the register.
        exits.push(Exit::Mmio { ipa: a.ipa, len: a.len, write: false, data: 0 });
        abort_mmio(hw, regs, job, far, a.il32);
        return None;
    } else {
        let raw = device.read();
        exits.push(Exit::Mmio { ipa: a.ipa, len: a.len, write: false, data: truncate(raw, a.len) });
        regs.write_rt(a.srt, load_result(raw, a.len, a.sse, a.sf));
    }
    regs.skip_instr(a.il32);
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::policy::{ExitKind, Trap};
    use crate::testing::ScriptedCpu;
    use std::collections::VecDeque;
    use std::vec;
    use trapdiff_arch::esr::{DataAbortIss, Ec, Esr, Fsc};
    use trapdiff_arch::memattr::S2Attr;
    use trapdiff_arch::wire::{Slot, SlotKind};

    fn job() -> Job {
        Job {
            seq: 1,
            aarch32: false,
            entry: abi::RUNTIME_BASE,
            slots: vec![
                Slot { ipa: 0x4000_0000, size: 0x1000, kind: SlotKind::Ram },
                Slot { ipa: 0x5000_0000, size: 0x1000, kind: SlotKind::Device(S2Attr::DeviceNGnRE) },
            ],
            segments: vec![Segment { ipa: 0x4000_0000, bytes: vec![7; 4] }],
            mmio_reads: vec![0x80],
            mmio_read_default: 0x1234,
            nisv_to_user: true,
            on_nisv: NisvAction::InjectAbort,
            on_mmio: MmioAction::Emulate,
            timeout_ms: 100,
            max_exits: 16,
            digests: vec![(0x4000_0000, 4)],
            readback: vec![(0x4000_0000, 2)],
            quirks: Default::default(),
        }
    }

    fn dabt(iss: u32, ipa: u64) -> Trap {
        Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::DABT_LOW, true, iss).0, far: ipa, hpfar: (ipa >> 12) << 4 }
    }
    fn store(srt: u8, ipa: u64) -> Trap {
        dabt(DataAbortIss::with_syndrome(2, false, srt, false, false, true, Fsc::translation(3)).0, ipa)
    }
    fn done() -> Trap {
        store(0, abi::HARNESS_MMIO + abi::DONE)
    }

    fn run(cpu: &mut ScriptedCpu, job: &Job) -> Report {
        let mut pool = vec![0u8; 1 << 20];
        let mut tables = vec![Table::ZERO; 64];
        let mut m = Machine { pool: &mut pool, pool_pa: 0x4400_0000, tables: &mut tables, tables_pa: 0x4300_0000, fwb: true };
        let rt = [Segment { ipa: abi::RUNTIME_BASE, bytes: vec![0xaa; 8] }];
        run_job(cpu, &mut m, &rt, job)
    }

    #[test]
    fn mmio_load_is_emulated_then_done_ends_the_job() {
        // ldrsb w5, [x1] at 0x9000_0000, then the runtime's DONE store.
        let ldrsb = DataAbortIss::with_syndrome(0, true, 5, false, false, false, Fsc::translation(1));
        let mut cpu = ScriptedCpu { traps: VecDeque::from([dabt(ldrsb.0, 0x9000_0000), done()]), ..Default::default() };
        let r = run(&mut cpu, &job());
        assert_eq!(r.end, ReportEnd::Done);
        assert_eq!(r.exits[0], Exit::Mmio { ipa: 0x9000_0000, len: 1, write: false, data: 0x80 });
        assert_eq!(r.exits[1], Exit::Mmio { ipa: abi::HARNESS_MMIO + abi::DONE, len: 4, write: true, data: 0 });
        let after = cpu.seen[1];
        assert_eq!(after.x[5], 0xffff_ff80);
        assert_eq!(after.pc, abi::RUNTIME_BASE + 4);
        assert_eq!(r.digests, vec![trapdiff_arch::crc32::fnv1a64(&[7; 4])]);
        assert_eq!(r.readback, vec![vec![7, 7]]);
        assert_eq!(r.elapsed_us, 20);
    }

    #[test]
    fn nisv_paths() {
        let stp = DataAbortIss::WNR | u32::from(Fsc::translation(3).0);
        // Delivered to the VMM, which injects an abort: PC goes to the guest's vector.
        let mut cpu = ScriptedCpu { traps: VecDeque::from([dabt(stp, 0x9000_0008), done()]), ..Default::default() };
        cpu.el1.vbar = 0x1000_0800;
        let r = run(&mut cpu, &job());
        assert_eq!(r.exits[0], Exit::Nisv { esr_iss: u64::from(stp), ipa: 0x9000_0008 });
        assert_eq!(cpu.seen[1].pc, 0x1000_0a00);
        assert_eq!(Esr(cpu.el1.esr).ec(), Ec::DABT_CUR);
        // Not delivered: KVM_RUN fails with ENOSYS and no exit is recorded.
        let mut j = job();
        j.nisv_to_user = false;
        let mut cpu = ScriptedCpu { traps: VecDeque::from([dabt(stp, 0x9000_0008)]), ..Default::default() };
        let r = run(&mut cpu, &j);
        assert_eq!((r.end, r.exits.len()), (ReportEnd::RunError { errno: 38 }, 0));
        // Stop.
        j.nisv_to_user = true;
        j.on_nisv = NisvAction::Stop;
        let mut cpu = ScriptedCpu { traps: VecDeque::from([dabt(stp, 0x9000_0008)]), ..Default::default() };
        assert!(matches!(run(&mut cpu, &j).end, ReportEnd::Stopped { .. }));
    }

    #[test]
    fn vmm_abort_does_not_retire_the_access() {
        let mut j = job();
        j.on_mmio = MmioAction::InjectAbort;
        let mut cpu = ScriptedCpu { traps: VecDeque::from([store(3, 0x9000_0000), done()]), ..Default::default() };
        cpu.el1.vbar = 0x2000;
        let r = run(&mut cpu, &j);
        assert_eq!(r.end, ReportEnd::Done);
        assert_eq!(cpu.el1.elr, abi::RUNTIME_BASE);
        assert_eq!(cpu.seen[1].pc, 0x2200);
    }

    #[test]
    fn quirks_retire_aborted_mmio_and_clobber_live_fpexc() {
        let mut j = job();
        j.on_mmio = MmioAction::InjectAbort;
        j.quirks = Quirk::NisvRetireInstruction.into();
        let mut cpu = ScriptedCpu { traps: VecDeque::from([store(3, 0x9000_0000), done()]), ..Default::default() };
        run(&mut cpu, &j);
        assert_eq!(cpu.el1.elr, abi::RUNTIME_BASE + 4);
        // fpexc-eager-en: EN is written on the entry after a stage-2 fault while loaded.
        let mut j = job();
        j.aarch32 = true;
        j.entry = abi::RUNTIME_A32_BASE;
        j.quirks = Quirk::FpexcEagerEn.into();
        let fp_trap = Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::FP_ASIMD, true, 0).0, far: 0, hpfar: 0 };
        let ldr = DataAbortIss::with_syndrome(2, false, 1, false, false, false, Fsc::translation(3));
        let mut cpu = ScriptedCpu { traps: VecDeque::from([fp_trap, dabt(ldr.0, 0x4000_0010), done()]), ..Default::default() };
        run(&mut cpu, &j);
        // Trap (EN), load (guest value), fast-path re-entry (nothing), the S2 fault's re-entry (EN).
        assert_eq!(cpu.fpexc_writes, vec![fp::FPEXC_EN, fp::FPEXC32_RESET, fp::FPEXC_EN]);
    }

    #[test]
    fn device_slots_keep_their_stage2_type_unless_quirked() {
        let mut j = job();
        j.slots[1].kind = SlotKind::Device(S2Attr::NormalNc);
        assert_eq!(stage2_slots(&j)[1].kind, SlotKind::Device(S2Attr::NormalNc));
        j.quirks = Quirk::DeviceS2AlwaysNGnRE.into();
        assert_eq!(stage2_slots(&j)[1].kind, SlotKind::Device(S2Attr::DeviceNGnRE));
    }

    #[test]
    fn slot_pages_are_faulted_in_and_the_access_re_executed() {
        let ldr = DataAbortIss::with_syndrome(2, false, 1, false, false, false, Fsc::translation(3));
        let mut cpu = ScriptedCpu { traps: VecDeque::from([dabt(ldr.0, 0x4000_0010), done()]), ..Default::default() };
        let r = run(&mut cpu, &job());
        assert_eq!(r.end, ReportEnd::Done);
        assert_eq!(cpu.maps, 1);
        assert_eq!(r.exits.len(), 1);
        // Not retired: the guest re-executes the load on the page now mapped.
        assert_eq!(cpu.seen[1].pc, abi::RUNTIME_BASE);
    }

    #[test]
    fn watchdog_exit_limit_and_bad_jobs() {
        let mut cpu = ScriptedCpu { irq_is_watchdog: true, ..Default::default() };
        assert_eq!(run(&mut cpu, &job()).end, ReportEnd::Timeout);
        let mut j = job();
        j.max_exits = 1;
        let event = store(0, abi::HARNESS_MMIO + abi::EVENT);
        let mut cpu =
            ScriptedCpu { traps: VecDeque::from([event, store(1, 0x9000_0000), event, store(1, 0x9000_0000), done()]), ..Default::default() };
        let r = run(&mut cpu, &j);
        // Harness-page stores are recorded but never count against the limit.
        assert_eq!((r.end, r.exits.len()), (ReportEnd::ExitLimit, 3));
        let mut cpu = ScriptedCpu { traps: VecDeque::from([event, event, store(1, 0x9000_0000), done()]), ..Default::default() };
        assert_eq!(run(&mut cpu, &j).end, ReportEnd::Done);
        let mut j = job();
        j.segments.push(Segment { ipa: 0x7000_0000, bytes: vec![1] });
        assert!(matches!(run(&mut ScriptedCpu::default(), &j).end, ReportEnd::Failed { .. }));
    }

    #[test]
    fn fp_is_loaded_lazily_and_put_back_on_vmm_exits() {
        let mut j = job();
        j.aarch32 = true;
        j.entry = abi::RUNTIME_A32_BASE;
        let fp_trap = Trap { kind: ExitKind::Sync, esr: Esr::new(Ec::FP_ASIMD, true, 0).0, far: 0, hpfar: 0 };
        let mut cpu = ScriptedCpu { traps: VecDeque::from([fp_trap, store(0, abi::HARNESS_MMIO), fp_trap, done()]), ..Default::default() };
        let r = run(&mut cpu, &j);
        assert_eq!(r.end, ReportEnd::Done);
        assert_eq!(cpu.fp_loads, 2);
        assert_eq!(cpu.fp_saves, 2);
        // Trap, no trap after the load, trap again after the VMM exit, then no trap.
        assert_eq!(cpu.tfp, vec![true, false, true, false]);
        // EN is forced only while trapping; the load writes the guest's own value (reset 0x700).
        assert_eq!(cpu.fpexc_writes, vec![fp::FPEXC_EN, fp::FPEXC32_RESET, fp::FPEXC_EN, fp::FPEXC32_RESET]);
        assert_eq!(cpu.seen[0].pstate, pstate::A32_SVC | pstate::A | pstate::I | pstate::F);
    }
}
