//! One case through the model: the fetch/decode/check/execute loop, the guest runtime's
//! conventions (exception records, skip or end, limits) and the final state.

use std::collections::HashSet;

use trapdiff_arch::abi;
use trapdiff_arch::case::{ExceptionAction, MmioAction, NisvAction, Reg, RegValue, RegionKind, S1Perm};
use trapdiff_arch::crc32::fnv1a64;
use trapdiff_arch::esr::{Ec, Esr, Fsc};
use trapdiff_arch::memattr::{S1Attr, S2Attr};
use trapdiff_arch::outcome::{End, Event, FinalState, FpState, RegionState, Unknown, Vector, Window};
use trapdiff_arch::sysreg::fpexc;
use trapdiff_arch::{Case, El, Isa, Outcome, Region};

use crate::decode::capstone_check::Disassemblers;
use crate::decode::{a32, a64, MemOp, Op, SysTarget};
use crate::engine::{Access, ContentKey, Cpu, StepError};
use crate::machine;
use crate::profile::{CmoOutsideMemory, Profile, UnhandledS2Fault};
use crate::rules::cmo::{self, CmoKind};
use crate::rules::fpsimd::{self, A32FpAccess, FpCheck};
use crate::rules::memtype::{self, MemType};
use crate::rules::syndrome::{self, LsSyndrome, MemClass};

/// Instructions after which a case that has not reached its end marker is a timeout (the live
/// backends' watchdog; a correct case runs far fewer).
const STEP_LIMIT: u64 = 500_000;
const PAGE: u64 = trapdiff_arch::case::PAGE_SIZE;
const UNCLASSIFIED: MemOp = MemOp { class: MemClass::Unclassified, load: true, store: true, size: 0, syndrome: None, fp: None, base: None, unpriv: false };

/// A stage-2 fault, as the hypervisor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum S2Fault {
    /// No memslot at the IPA (an `mmio` region or no region at all).
    NoMemslot,
    /// A write (or a write-faulting CMO) to a read-only memslot, or a CMO to one of its pages
    /// stage 2 has not mapped yet.
    ReadOnly,
    /// An alignment fault from a Device stage-2 attribute.
    Alignment,
}

/// Where an access faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A stage-1 fault (or an alignment fault), taken by the guest itself. `level_known` is
    /// false when the faulting address lies outside every region, so the runtime's tables
    /// decide the level.
    Stage1 {
        fsc: Fsc,
        level_known: bool,
    },
    Stage2(S2Fault),
    /// The address lies in the guest runtime's reserved range (abi::RESERVED_BASE..END): what
    /// happens there depends on the runtime's own mappings, which the model does not hold.
    Reserved,
}

/// What one instruction did to control flow.
enum Flow {
    /// Continue at this address.
    At(u64),
    End(End),
}

pub(crate) struct Run<'a> {
    case: &'a Case,
    profile: &'static Profile,
    cpu: &'a mut Cpu,
    ctx: &'a mut unicorn_engine::Context,
    dis: &'a Disassemblers,
    isa: Isa,
    el: El,
    events: Vec<Event>,
    unknown: Vec<Unknown>,
    exceptions: u32,
    exits: u32,
    next_read: usize,
    /// The guest's CPACR_EL1 / CPACR (Unicorn keeps FP enabled; the rules use this).
    cpacr: u64,
    /// The guest's FPEXC (AArch32).
    fpexc: u32,
    /// Pages of read-only memslots stage 2 has mapped (profile.lazy_s2).
    ro_mapped: HashSet<u64>,
    /// Registers holding IMPLEMENTATION DEFINED values (and which bits).
    impdef_regs: Vec<(Reg, u64, &'static str)>,
    /// Regions whose final bytes are UNKNOWN (a multi-access store aborted part-way).
    unknown_regions: HashSet<usize>,
    /// Regions a store (or DC ZVA) wrote: the others still hold their initial bytes.
    dirty: HashSet<usize>,
    /// Content key of each region with memory (None for mmio), and its slot in the engine.
    keys: Vec<Option<ContentKey>>,
    slot_of: Vec<Option<usize>>,
    digests: &'a mut rustc_hash::FxHashMap<ContentKey, u64>,
    gpr_save: Vec<u64>,
    accesses: Vec<Access>,
    /// The address the local exclusive monitor is armed for (model's view).
    monitor: Option<u64>,
    /// The instruction word being executed (for fields the classes do not carry).
    word: u32,
    /// The case's code holds a word Unicorn must never translate ahead of time (see
    /// `single_step`).
    risky_code: bool,
    /// The region (case order) holding the code, and the code with its end marker.
    code_region: Option<usize>,
    code_bytes: Vec<u8>,
}

fn reserved(addr: u64) -> bool {
    (abi::RESERVED_BASE..abi::RESERVED_END).contains(&addr)
}

fn reserved_end(addr: u64) -> End {
    End::Skipped {
        reason: format!(
            "the case touches {addr:#x}, inside the guest runtime's reserved range {:#x}..{:#x}; the model does not hold the runtime's memory",
            abi::RESERVED_BASE,
            abi::RESERVED_END
        ),
    }
}

fn mask(len: u8) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * u32::from(len))) - 1
    }
}

/// The regions Unicorn maps for `case` (those with memory), as (base, size) in case order:
/// what `Run::new` maps, so an engine holding it needs no remap.
pub(crate) fn layout(case: &Case) -> Vec<(u64, u64)> {
    case.memory.iter().filter(|r| r.kind.has_memory()).map(|r| (r.ipa, r.size)).collect()
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        case: &'a Case,
        profile: &'static Profile,
        cpu: &'a mut Cpu,
        ctx: &'a mut unicorn_engine::Context,
        dis: &'a Disassemblers,
        digests: &'a mut rustc_hash::FxHashMap<ContentKey, u64>,
    ) -> Result<Run<'a>, String> {
        let isa = case.state.isa;
        let code_bytes = {
            let mut b = case.code.bytes(isa);
            b.extend_from_slice(&abi::code_trailer(isa));
            b
        };
        let mut slots = Vec::new();
        let mut slot_of = vec![None; case.memory.len()];
        let mut keys: Vec<Option<ContentKey>> = vec![None; case.memory.len()];
        for (i, r) in case.memory.iter().enumerate() {
            if !r.kind.has_memory() {
                continue;
            }
            let code = (case.code.ipa >= r.ipa && case.code.ipa < r.ipa + r.size).then(|| (case.code.ipa - r.ipa, code_bytes.clone()));
            let key = ContentKey { size: r.size, fill: r.fill, init: r.init.iter().map(|b| (b.offset, b.bytes.clone())).collect(), code };
            slot_of[i] = Some(slots.len());
            slots.push((r.ipa, r.size, key.clone()));
            keys[i] = Some(key);
        }
        let with_memory: Vec<&Region> = case.memory.iter().filter(|r| r.kind.has_memory()).collect();
        cpu.map(&slots, |k| case.initial_bytes(with_memory[k])).map_err(|e| format!("the model could not map the case's memory: {}", e.0))?;
        cpu.reset(case.sysregs.fpscr.unwrap_or(0), case.state.el == El::El0);
        for (reg, v) in &case.regs {
            match *reg {
                Reg::X(n) => cpu.set_gpr(n, v.0 as u64),
                Reg::Sp => cpu.set_gpr(31, v.0 as u64),
                Reg::R(n) => cpu.set_gpr(n, v.0 as u64 & 0xffff_ffff),
                Reg::Q(n) if isa == Isa::A64 => cpu.set_vreg(n, v.0),
                Reg::Q(n) => {
                    cpu.set_dreg(2 * n, v.0 as u64);
                    cpu.set_dreg(2 * n + 1, (v.0 >> 64) as u64);
                }
                Reg::D(n) if isa == Isa::A64 => {
                    let hi = cpu.vreg(n) & !u128::from(u64::MAX);
                    cpu.set_vreg(n, hi | (v.0 & u128::from(u64::MAX)));
                }
                Reg::D(n) => cpu.set_dreg(n, v.0 as u64),
            }
        }
        let default_cpacr = if isa == Isa::A64 { 3 << 20 } else { 0xf << 20 };
        Ok(Run {
            case,
            profile,
            cpu,
            ctx,
            dis,
            isa,
            el: case.state.el,
            events: Vec::new(),
            unknown: Vec::new(),
            exceptions: 0,
            exits: 0,
            next_read: 0,
            cpacr: case.sysregs.cpacr.unwrap_or(default_cpacr),
            fpexc: case.sysregs.fpexc.unwrap_or(fpexc::EN),
            ro_mapped: HashSet::new(),
            impdef_regs: Vec::new(),
            unknown_regions: HashSet::new(),
            dirty: HashSet::new(),
            keys,
            slot_of,
            digests,
            gpr_save: Vec::with_capacity(33),
            accesses: Vec::with_capacity(8),
            monitor: None,
            word: 0,
            risky_code: false,
            code_region: case.memory.iter().position(|r| r.kind.has_memory() && case.code.ipa >= r.ipa && case.code.ipa - r.ipa < r.size),
            code_bytes,
        }
        .with_risk_scan())
    }

    /// Scan the case's code for words Unicorn's translator must not see ahead of execution:
    /// words the rules call UNDEFINED (Capstone cannot decode them, or they are known
    /// unallocated) and A64 FP/SIMD data processing, where Unicorn's decoders assert on
    /// unallocated encodings.
    fn with_risk_scan(mut self) -> Run<'a> {
        let isa = self.isa;
        let mut risky = false;
        for insn in &self.case.code.insns {
            let size = u64::from(insn.size(isa));
            let op = match isa {
                Isa::A64 => a64::decode(insn.w),
                Isa::A32 => a32::decode_a32(insn.w),
                Isa::T32 => a32::decode_t32(insn.w),
            };
            let undecodable = self.dis.has_memory_operand(isa, &self.insn_bytes(insn.w, size)).is_none();
            let simd = isa == Isa::A64 && matches!(op, Op::Fp { .. });
            if undecodable || simd || op == Op::Undefined {
                risky = true;
                break;
            }
        }
        self.risky_code = risky;
        self
    }

    /// Whether Unicorn must translate only the instruction at `pc`: always outside the case's
    /// own (scanned) code, and inside it when the scan found a risky word.
    fn single_step(&self, pc: u64) -> bool {
        self.risky_code || !self.in_code(pc)
    }

    /// Whether `addr` lies in the case's code (with the end marker).
    fn in_code(&self, addr: u64) -> bool {
        let start = self.case.code.ipa;
        let end = start + self.case.code.size(self.isa) + abi::code_trailer_size(self.isa);
        (start..end).contains(&addr)
    }

    pub(crate) fn run(&mut self) -> Outcome {
        let end_marker = self.case.code.ipa + self.case.code.size(self.isa);
        let mut pc = self.case.code.ipa;
        let mut steps = 0u64;
        let end = loop {
            if pc == end_marker {
                break End::Done;
            }
            steps += 1;
            if steps > STEP_LIMIT {
                break End::Timeout;
            }
            match self.step(pc) {
                Flow::At(next) => pc = next,
                Flow::End(e) => break e,
            }
        };
        let state = matches!(end, End::Done | End::EndOnException | End::ExceptionLimit).then(|| self.final_state());
        // What the engine holds for written regions is no longer their initial content.
        for &i in &self.dirty {
            if let Some(slot) = self.slot_of[i] {
                self.cpu.dirty(slot);
            }
        }
        self.mark_state_unknowns(state.as_ref());
        Outcome { events: std::mem::take(&mut self.events), end, state, unknown: std::mem::take(&mut self.unknown), meta: Default::default() }
    }

    fn aarch32(&self) -> bool {
        self.isa.is_aarch32()
    }

    // ---- instruction fetch -------------------------------------------------------------

    fn step(&mut self, pc: u64) -> Flow {
        if self.isa == Isa::A64 && !pc.is_multiple_of(4) {
            // Misaligned PC: a PC alignment fault, EC 0x22, FAR = the PC (Arm ARM "PC alignment
            // checking"; ESR_EL1 EC 0x22). The runtime resumes at ELR + 4, misaligned again, so
            // this repeats until the exception limit.
            return self.exception(Vector::Sync, Esr::new(Ec::PC_ALIGN, true, 0).0, Some(pc), pc, 4);
        }
        // Instruction fetch: stage 1 execute permission, then stage 2 (Arm ARM D8.4, ASL
        // AArch64.S1CheckPermission / S2CheckPermission for AccessType_IFETCH).
        if let Some(f) = self.fetch_fault(pc) {
            return self.instruction_abort(pc, f);
        }
        let (word, size) = self.fetch_word(pc);
        let op = match self.isa {
            Isa::A64 => a64::decode(word),
            Isa::A32 => a32::decode_a32(word),
            Isa::T32 => a32::decode_t32(word),
        };
        self.execute(pc, size, word, op)
    }

    fn fetch_word(&self, pc: u64) -> (u32, u64) {
        let read = |addr: u64| -> [u8; 4] {
            // The case's code as written, while nothing has stored into its region (the icache
            // family does): no round trip through Unicorn's memory API.
            let off = addr.wrapping_sub(self.case.code.ipa) as usize;
            if self.code_region.is_some_and(|i| !self.dirty.contains(&i)) {
                if let Some(b) = self.code_bytes.get(off..off + 4) {
                    return [b[0], b[1], b[2], b[3]];
                }
            }
            self.cpu.read_u32(addr).to_le_bytes()
        };
        let b = read(pc);
        if self.isa == Isa::T32 {
            let hw1 = u16::from_le_bytes([b[0], b[1]]);
            if trapdiff_arch::case::t32_is_32bit(hw1) {
                let hw2 = u16::from_le_bytes([b[2], b[3]]);
                return ((u32::from(hw1) << 16) | u32::from(hw2), 4);
            }
            return (u32::from(hw1), 2);
        }
        (u32::from_le_bytes(b), 4)
    }

    fn region_index(&self, addr: u64) -> Option<usize> {
        self.case.memory.iter().position(|r| addr >= r.ipa && addr - r.ipa < r.size)
    }

    fn el0_accessible(&self, r: &Region) -> bool {
        r.s1.and_then(|s| s.el0).unwrap_or(self.el == El::El0)
    }

    fn fetch_fault(&mut self, pc: u64) -> Option<Fault> {
        if reserved(pc) {
            return Some(Fault::Reserved);
        }
        let idx = self.region_index(pc);
        if self.case.sysregs.mmu {
            let Some(i) = idx else {
                return Some(Fault::Stage1 { fsc: Fsc::translation(3), level_known: false });
            };
            let r = &self.case.memory[i];
            let perm = r.s1.map(|s| s.perm).unwrap_or_default();
            if perm == S1Perm::Unmapped {
                return Some(Fault::Stage1 { fsc: Fsc::translation(3), level_known: true });
            }
            let exec = matches!(perm, S1Perm::Rwx | S1Perm::Rx);
            let el0 = self.el0_accessible(r);
            // EL1 may not execute what EL0 can write (Arm ARM D8.4.1.2: AP[1] == 1 with write
            // permission implies PXN); EL0 needs EL0 access.
            let ok = match self.el {
                El::El0 => exec && el0,
                El::El1 => exec && !(el0 && matches!(perm, S1Perm::Rwx | S1Perm::Rw)),
            };
            if !ok {
                return Some(Fault::Stage1 { fsc: Fsc::permission(3), level_known: true });
            }
        }
        match idx.map(|i| self.case.memory[i].kind) {
            None | Some(RegionKind::Mmio) => Some(Fault::Stage2(S2Fault::NoMemslot)),
            Some(RegionKind::RoRam) => {
                self.ro_mapped.insert(pc / PAGE);
                None
            }
            _ => None,
        }
    }

    fn instruction_abort(&mut self, pc: u64, f: Fault) -> Flow {
        let from_el0 = self.el == El::El0;
        match f {
            Fault::Reserved => Flow::End(reserved_end(pc)),
            Fault::Stage1 { fsc, level_known } => {
                let (vector, syndrome) = if self.aarch32() {
                    (Vector::PrefetchAbort, syndrome::a32_ifsr(fsc))
                } else {
                    (Vector::Sync, syndrome::a64_stage1_instruction_abort(from_el0, fsc))
                };
                let n = self.events.len();
                let flow = self.exception(vector, syndrome, Some(pc), pc, 0);
                if !level_known {
                    self.unknown_level(n);
                }
                // A fetch fault cannot be skipped past: the runtime's skip lands on the next
                // instruction only if it is fetchable; the model follows the same rule.
                match flow {
                    Flow::At(_) => Flow::At(pc + self.isa.insn_align().max(if self.isa == Isa::T32 { 2 } else { 4 })),
                    e => e,
                }
            }
            // mmu.c kvm_handle_guest_abort(): "if (is_iabt) { ret = -ENOEXEC; ... }" then
            // kvm_inject_pabt(): the guest takes an external abort on instruction fetch.
            Fault::Stage2(_) => {
                let size = if self.isa == Isa::T32 { 2 } else { 4 };
                self.injected_abort(pc, pc, true, size)
            }
        }
    }

    // ---- exceptions, as the runtime reports them ----------------------------------------

    /// Record a guest exception; then the runtime ends the case once the records reach
    /// `limits.max_exceptions`, or on `on_exception: end`, or skips the instruction (`size`
    /// bytes) (guest-payloads lower.rs "Exceptions"; runtime a64.S / a32.S).
    fn exception(&mut self, vector: Vector, syndrome: u64, far: Option<u64>, pc: u64, size: u64) -> Flow {
        self.exceptions += 1;
        self.clear_monitor();
        self.events.push(Event::Exception { vector, from_el0: self.el == El::El0, syndrome, far, pc, bad_spsr: None });
        if self.exceptions >= self.case.limits.max_exceptions {
            return Flow::End(End::ExceptionLimit);
        }
        match self.case.state.on_exception {
            ExceptionAction::End => Flow::End(End::EndOnException),
            ExceptionAction::Skip => Flow::At(pc + size),
        }
    }

    fn undefined(&mut self, pc: u64, size: u64) -> Flow {
        if self.aarch32() {
            // AArch32 Undefined Instruction exception: the runtime records syndrome 0.
            self.exception(Vector::Undef, 0, None, pc, size)
        } else {
            // ESR_EL1.EC == 0 (Unknown reason), IL = 1 (Arm ARM D24.2.41: EC 0x00).
            self.exception(Vector::Sync, Esr::new(Ec::UNKNOWN, true, 0).0, None, pc, size)
        }
    }

    /// A synchronous external abort the hypervisor injects (inject_fault.c inject_abt64(): ESR
    /// = EC {I,D}ABT_{CUR,LOW} | IL (32-bit instruction) | FSC_EXTABT, FAR = the faulting VA;
    /// inject_abt32(): LPAE-format FSR 0x210, DFAR/IFAR = the VA).
    fn injected_abort(&mut self, pc: u64, far: u64, is_iabt: bool, size: u64) -> Flow {
        let from_el0 = self.el == El::El0;
        if self.aarch32() {
            let vector = if is_iabt { Vector::PrefetchAbort } else { Vector::DataAbort };
            let fsr = u64::from(trapdiff_arch::esr::fsr32::LPAE) | u64::from(Fsc::SYNC_EXTERNAL.0);
            return self.exception(vector, fsr, Some(far), pc, size);
        }
        let ec = match (is_iabt, from_el0) {
            (true, true) => Ec::IABT_LOW,
            (true, false) => Ec::IABT_CUR,
            (false, true) => Ec::DABT_LOW,
            (false, false) => Ec::DABT_CUR,
        };
        let il = size == 4;
        self.exception(Vector::Sync, Esr::new(ec, il, u32::from(Fsc::SYNC_EXTERNAL.0)).0, Some(far), pc, size)
    }

    /// A stage-1 (or alignment) data abort the guest takes.
    #[allow(clippy::too_many_arguments)]
    fn data_abort_s1(&mut self, pc: u64, size: u64, va: u64, fsc: Fsc, cm: bool, wnr: bool, level_known: bool) -> Flow {
        let (vector, syndrome) = if self.aarch32() {
            (Vector::DataAbort, syndrome::a32_dfsr(cm, wnr, fsc))
        } else {
            (Vector::Sync, syndrome::a64_stage1_data_abort(self.el == El::El0, true, cm, wnr, fsc))
        };
        let n = self.events.len();
        let flow = self.exception(vector, syndrome, Some(va), pc, size);
        if !level_known {
            self.unknown_level(n);
        }
        flow
    }

    fn unknown_level(&mut self, n: usize) {
        if n < self.events.len() {
            self.unknown.push(Unknown {
                path: format!("events[{n}].syndrome"),
                mask: 0x3,
                why: "fault level of an address outside every region depends on the runtime's stage-1 table layout (Arm ARM D8.3: level of the invalid descriptor)".into(),
            });
        }
    }

    // ---- execution -----------------------------------------------------------------------

    fn execute(&mut self, pc: u64, size: u64, word: u32, op: Op) -> Flow {
        let el0 = self.el == El::El0;
        self.word = word;
        // An encoding Capstone (LLVM's decode tables) does not decode is unallocated: UNDEFINED.
        // Checked before Unicorn ever sees it: Unicorn's TCG front end aborts the process on
        // some unallocated encodings instead of raising UNDEFINED.
        let bytes = self.insn_bytes(word, size);
        let operand = self.dis.has_memory_operand(self.isa, &bytes);
        if operand.is_none() && !matches!(op, Op::Svc { .. } | Op::Undefined) {
            return self.undefined(pc, size);
        }
        match op {
            Op::Svc { imm } => {
                if self.aarch32() {
                    self.exception(Vector::Svc, 0, None, pc, size)
                } else {
                    // ESR_EL1: EC 0x15, IL, ISS = imm16 (Arm ARM D24.2.41, EC 0x15).
                    self.exception(Vector::Sync, Esr::new(Ec::SVC64, true, imm & 0xffff).0, None, pc, size)
                }
            }
            Op::Brk { imm } => {
                if self.aarch32() {
                    // BKPT: a Prefetch Abort with a debug-event status (Arm ARM, AArch32
                    // "Breakpoint instruction exceptions"; LPAE IFSR STATUS 0b100010), no IFAR.
                    self.exception(Vector::PrefetchAbort, syndrome::a32_ifsr(Fsc::DEBUG), None, pc, size)
                } else {
                    // ESR_EL1.EC 0x3C, IL, ISS = imm16 (Arm ARM D24.2.41, EC 0x3C).
                    self.exception(Vector::Sync, Esr::new(Ec::BRK64, true, imm & 0xffff).0, None, pc, size)
                }
            }
            // At EL0 the runtime leaves SCTLR.nTWI/nTWE = 0 (guest-payloads lower.rs "SCTLR"):
            // A64 traps to EL1 with EC 0x01, ISS CV=1, COND=0xE, TI = 0 (WFI) / 1 (WFE) (Arm ARM
            // D24.2.41, EC 0x01); AArch32 EL0 under an AArch32 EL1: UNDEFINED (G8.2.126 SCTLR.nTWI).
            Op::Wfi | Op::Wfe if el0 && self.aarch32() => self.undefined(pc, size),
            Op::Wfi | Op::Wfe if el0 => {
                let ti = u32::from(op == Op::Wfe);
                self.exception(Vector::Sync, Esr::new(Ec::WFX, true, (1 << 24) | (0xe << 20) | ti).0, None, pc, size)
            }
            // At EL1, KVM traps WFI (HCR_EL2.TWI) and blocks the vCPU until an interrupt is
            // pending (handle_exit.c kvm_handle_wfx -> kvm_vcpu_wfi); no case enables one, so the
            // watchdog ends the case. WFE is retired (kvm_handle_wfx -> kvm_vcpu_on_spin).
            Op::Wfi => Flow::End(End::Timeout),
            Op::Wfe => Flow::At(pc + size),
            // HVC/SMC at EL0 are UNDEFINED (Arm ARM C6.2.132 HVC, C6.2.319 SMC).
            Op::Hvc | Op::Smc if el0 => self.undefined(pc, size),
            Op::Hvc | Op::Smc => self.smccc(pc, size, op == Op::Hvc),
            Op::Undefined => self.undefined(pc, size),
            Op::Privileged if el0 => self.undefined(pc, size),
            Op::Fp { advsimd, access } => {
                if let Some(f) = self.fp_check(pc, size, advsimd, access) {
                    return f;
                }
                self.unicorn_step(pc, size, word)
            }
            Op::Mem(m) => self.memory_op(pc, size, m),
            Op::Cmo { kind, reg } => self.cmo(pc, size, kind, reg),
            Op::CmoNoAddress if el0 => self.undefined(pc, size),
            Op::CmoNoAddress => Flow::At(pc + size),
            Op::SysRead { target, rt } => self.sys_read(pc, size, word, target, rt),
            Op::SysWrite { target, rt } => self.sys_write(pc, size, word, target, rt),
            Op::Other if operand == Some(true) => {
                // Capstone sees a memory operand the decoders did not classify: the access
                // goes through the rules with no valid syndrome.
                self.memory_op(pc, size, UNCLASSIFIED)
            }
            Op::Privileged | Op::Other => self.unicorn_step(pc, size, word),
        }
    }

    /// HVC and SMC at EL1: the hypervisor answers (handle_exit.c handle_hvc / handle_smc). SMC
    /// is trapped by HCR_EL2.TSC and answered SMCCC_RET_NOT_SUPPORTED with the PC advanced
    /// ("We need to advance the PC after the trap"); HVC per the profile's SMCCC services.
    fn smccc(&mut self, pc: u64, size: u64, hvc: bool) -> Flow {
        let func = self.reg_value(0) as u32;
        // SMCCC owning entities: Arm architecture (0x80/0x00), standard secure/PSCI (0x84/0xc4),
        // standard hypervisor (0x85/0xc5), vendor hypervisor (0x86/0xc6) (DEN0028 "Function
        // Identifier").
        let served = matches!(func >> 24, 0x80 | 0x84 | 0xc4 | 0x85 | 0xc5 | 0x86 | 0xc6);
        if hvc && self.profile.psci && served {
            return Flow::End(End::Skipped { reason: format!("HVC function {func:#x}: PSCI/SMCCC services are not modelled") });
        }
        self.set_reg_result(0, u64::MAX);
        if hvc && self.profile.hvc_clears_x1_x3 {
            for r in 1..=3 {
                self.set_reg_result(r, 0);
            }
        }
        self.cpu.set_pc(pc + size);
        Flow::At(pc + size)
    }

    /// Let Unicorn run an instruction the rules have nothing to say about. Nothing is saved
    /// first: the decoders and Capstone have already routed every instruction with a memory
    /// operand to `memory_op`, and Unicorn leaves the state untouched when it refuses one.
    fn unicorn_step(&mut self, pc: u64, size: u64, word: u32) -> Flow {
        let r = self.cpu.step(pc, self.isa == Isa::T32, self.single_step(pc));
        if !self.cpu.log().accesses.is_empty() {
            // An access nothing classified could have armed the monitor.
            self.cpu.note_exclusive();
            let text = self.dis.text(self.isa, &self.insn_bytes(word, size));
            return Flow::End(End::Skipped {
                reason: format!("model gap: `{text}` at {pc:#x} accessed memory but neither the decoders nor Capstone classify it as an access"),
            });
        }
        match r {
            Ok(()) => Flow::At(self.cpu.pc() & !1),
            Err(StepError::InvalidInstruction) => self.undefined(pc, size),
            Err(e) => {
                let text = self.dis.text(self.isa, &self.insn_bytes(word, size));
                Flow::End(End::Skipped { reason: format!("the model cannot execute `{text}` at {pc:#x} ({e:?} in Unicorn)") })
            }
        }
    }

    fn insn_bytes(&self, word: u32, size: u64) -> Vec<u8> {
        match (self.isa, size) {
            (Isa::T32, 2) => (word as u16).to_le_bytes().to_vec(),
            (Isa::T32, _) => {
                let mut v = ((word >> 16) as u16).to_le_bytes().to_vec();
                v.extend_from_slice(&(word as u16).to_le_bytes());
                v
            }
            _ => word.to_le_bytes().to_vec(),
        }
    }

    fn fp_check(&mut self, pc: u64, size: u64, advsimd: bool, access: A32FpAccess) -> Option<Flow> {
        let check =
            if self.aarch32() { fpsimd::check_a32(self.cpacr as u32, self.fpexc, self.el, advsimd, access) } else { fpsimd::check_a64(self.cpacr, self.el) };
        match check {
            FpCheck::Enabled => None,
            // ESR_EL1.EC 0x07, IL = 1, ISS RES0 for a trap from AArch64 (Arm ARM D24.2.41).
            FpCheck::TrapA64 => Some(self.exception(Vector::Sync, Esr::new(Ec::FP_ASIMD, true, 0).0, None, pc, size)),
            FpCheck::Undefined => Some(self.undefined(pc, size)),
            FpCheck::Unpredictable => Some(Flow::End(End::Skipped {
                reason: format!("CPACR {:#x}: cp10/cp11 reserved or unequal, CONSTRAINED UNPREDICTABLE (Arm ARM G8.2.30)", self.cpacr),
            })),
        }
    }

    // ---- system registers ----------------------------------------------------------------

    fn sys_read(&mut self, pc: u64, size: u64, word: u32, target: SysTarget, rt: u8) -> Flow {
        let el0 = self.el == El::El0;
        match target {
            SysTarget::Cpacr | SysTarget::El1Other | SysTarget::Id if el0 => self.undefined(pc, size),
            SysTarget::Cpacr => {
                self.set_reg_result(rt, self.cpacr);
                Flow::At(pc + size)
            }
            SysTarget::Fpexc => {
                if let Some(f) = self.fp_check(pc, size, false, A32FpAccess::ControlRegister) {
                    return f;
                }
                self.set_reg_result(rt, u64::from(self.fpexc));
                self.note_impdef_bits(rt, u64::from(fpsimd::FPEXC_IMPDEF), "FPEXC bits other than EN are IMPLEMENTATION DEFINED (Arm ARM G8.2.56)");
                Flow::At(pc + size)
            }
            SysTarget::FpStatus => {
                if let Some(f) = self.fp_check(pc, size, false, A32FpAccess::Normal) {
                    return f;
                }
                self.unicorn_step(pc, size, word)
            }
            // AArch32 CTR is PL1-only (Arm ARM G8.2.33 CTR: "accessible at PL1 and above").
            SysTarget::Ctr if el0 && self.aarch32() => self.undefined(pc, size),
            SysTarget::Ctr if el0 && !self.case.sysregs.el0_cache_ops => self.sys64_trap(pc, size, word),
            SysTarget::Ctr | SysTarget::Dczid | SysTarget::Id => {
                if self.aarch32() && target == SysTarget::Id && (word >> 8) & 0xf == 10 {
                    // VMRS of FPSID/MVFRx: an FP control-register access.
                    if let Some(f) = self.fp_check(pc, size, false, A32FpAccess::ControlRegister) {
                        return f;
                    }
                }
                let flow = self.unicorn_step(pc, size, word);
                self.note_impdef(rt, "ID and cache-geometry registers are IMPLEMENTATION DEFINED (Arm ARM D24.2 MIDR_EL1, CTR_EL0, DCZID_EL0)");
                flow
            }
            SysTarget::El1Other => {
                // SCTLR, TCR, MAIR, TTBR, VBAR, ... hold the guest runtime's values (guest-payloads
                // lower.rs), which the model does not keep; the result is not predicted.
                let flow = self.unicorn_step(pc, size, word);
                self.note_impdef(rt, "the guest runtime's own system-register values (SCTLR, TCR, MAIR, TTBR, VBAR, ...) are not modelled");
                flow
            }
            SysTarget::El0Other => {
                let flow = self.unicorn_step(pc, size, word);
                // CRn == 14: the generic timer's counters, which advance in real time.
                if !self.aarch32() && (word >> 12) & 0xf == 14 {
                    self.note_impdef(rt, "generic timer counters advance in real time (Arm ARM D11 \"The Generic Timer\")");
                }
                flow
            }
        }
    }

    fn sys_write(&mut self, pc: u64, size: u64, word: u32, target: SysTarget, rt: u8) -> Flow {
        let el0 = self.el == El::El0;
        match target {
            SysTarget::Cpacr | SysTarget::El1Other | SysTarget::Id if el0 => self.undefined(pc, size),
            SysTarget::Cpacr => {
                let v = self.reg_value(rt);
                // Only FPEN (A64) or cp10/cp11/ASEDIS (AArch32) are implemented here; the
                // other fields are RES0 / RAZ/WI on an Armv8 CPU without SVE/SME/trace.
                self.cpacr = if self.aarch32() { v & 0x80f0_0000 } else { v & (3 << 20) };
                Flow::At(pc + size)
            }
            SysTarget::Fpexc => {
                if let Some(f) = self.fp_check(pc, size, false, A32FpAccess::ControlRegister) {
                    return f;
                }
                self.fpexc = self.reg_value(rt) as u32;
                Flow::At(pc + size)
            }
            SysTarget::FpStatus => {
                if let Some(f) = self.fp_check(pc, size, false, A32FpAccess::Normal) {
                    return f;
                }
                self.unicorn_step(pc, size, word)
            }
            // Writes to ID registers are ignored or UNDEFINED; the runtime owns SCTLR/TTBR/...,
            // and the model keeps its view of them from the case.
            _ => Flow::At(pc + size),
        }
    }

    /// An EL0 access trapped by SCTLR_EL1.UCT/UCI/DZE: EC 0x18 with the MRS/MSR/SYS fields
    /// (Arm ARM D24.2.41, ISS encoding for EC 0x18: Op0, Op2, Op1, CRn, Rt, CRm, Direction).
    fn sys64_trap(&mut self, pc: u64, size: u64, word: u32) -> Flow {
        let f = |hi: u32, lo: u32| (word >> lo) & ((1 << (hi - lo + 1)) - 1);
        let iss = (f(20, 19) << 20) | (f(7, 5) << 17) | (f(18, 16) << 14) | (f(15, 12) << 10) | (f(4, 0) << 5) | (f(11, 8) << 1) | f(21, 21);
        self.exception(Vector::Sync, Esr::new(Ec::SYS64, true, iss).0, None, pc, size)
    }

    fn reg_value(&self, n: u8) -> u64 {
        if !self.aarch32() && n == 31 {
            return 0;
        }
        let v = self.cpu.gpr(n);
        if self.aarch32() {
            v & 0xffff_ffff
        } else {
            v
        }
    }

    fn set_reg_result(&mut self, n: u8, v: u64) {
        if !self.aarch32() && n == 31 {
            return;
        }
        self.cpu.set_gpr(n, if self.aarch32() { v & 0xffff_ffff } else { v });
    }

    fn gpr_name(&self, n: u8) -> Reg {
        if self.aarch32() {
            Reg::R(n)
        } else {
            Reg::X(n)
        }
    }

    fn note_impdef(&mut self, rt: u8, why: &'static str) {
        self.note_impdef_bits(rt, u64::MAX, why);
    }

    fn note_impdef_bits(&mut self, rt: u8, mask: u64, why: &'static str) {
        let reg = self.gpr_name(rt);
        self.impdef_regs.retain(|(r, _, _)| *r != reg);
        self.impdef_regs.push((reg, mask, why));
    }

    // ---- memory accesses -----------------------------------------------------------------

    /// Check one data access against the rules, in the order the ASL applies them
    /// (AArch64.MemSingle -> alignment pre-checks, then AArch64.S1Translate: walk, memory-type
    /// alignment, permissions; then AArch64.S2Translate: walk, alignment, permissions).
    fn check_access(&mut self, a: &Access, unit: u64, m: &MemOp, first_part: bool) -> Result<MemType, Fault> {
        let (class, unpriv) = (m.class, m.unpriv);
        if reserved(a.addr) {
            return Err(Fault::Reserved);
        }
        let is_aligned = !first_part || memtype::aligned(a.addr, unit);
        // AArch64.UnalignedAccessFaults / AArch32 CheckAlignment: exclusives, atomics,
        // ordered accesses, SCTLR.A; AArch32 LDM/STM/LDRD/STRD and the VFP VLDR/VSTR/VLDM/VSTM
        // (A32Fp without Advanced SIMD) need word alignment whatever SCTLR.A says.
        let word_only = matches!(class, MemClass::A32Dual | MemClass::A32Multiple) || (class == MemClass::A32Fp && m.fp == Some(false));
        let a32_word = word_only && first_part && !a.addr.is_multiple_of(4);
        if (!is_aligned && (class.needs_alignment() || self.case.sysregs.align_check)) || a32_word {
            return Err(Fault::Stage1 { fsc: Fsc::ALIGNMENT, level_known: true });
        }
        let idx = self.region_index(a.addr);
        let s1type = if self.case.sysregs.mmu {
            let Some(i) = idx else {
                return Err(Fault::Stage1 { fsc: Fsc::translation(3), level_known: false });
            };
            let r = &self.case.memory[i];
            let perm = r.s1.map(|s| s.perm).unwrap_or_default();
            if perm == S1Perm::Unmapped {
                return Err(Fault::Stage1 { fsc: Fsc::translation(3), level_known: true });
            }
            let attr = self.s1_attr(r);
            // AArch64.S1HasAlignmentFault: Device memory needs aligned accesses.
            if memtype::s1_alignment_fault(attr, false, is_aligned) {
                return Err(Fault::Stage1 { fsc: Fsc::ALIGNMENT, level_known: true });
            }
            // AArch64.S1CheckPermission: EL0 (and LDTR/STTR at EL1) need AP[1]; writes need
            // write permission.
            let as_el0 = self.el == El::El0 || unpriv;
            let writable = matches!(perm, S1Perm::Rwx | S1Perm::Rw);
            if (as_el0 && !self.el0_accessible(r)) || (a.write && !writable) {
                return Err(Fault::Stage1 { fsc: Fsc::permission(3), level_known: true });
            }
            attr
        } else {
            // SCTLR.M == 0: data accesses are Device-nGnRnE (Arm ARM D8.2.10 "The effects of
            // disabling an address translation stage").
            if !is_aligned {
                return Err(Fault::Stage1 { fsc: Fsc::ALIGNMENT, level_known: true });
            }
            MemType::DeviceNGnRnE
        };
        self.check_s2(idx, a.addr, a.write, false, is_aligned).map(|s2| match s2 {
            Some(s2) => memtype::combine(s1type, s2, self.profile.fwb),
            None => s1type,
        })
    }

    fn s1_attr(&self, r: &Region) -> MemType {
        let default = match r.kind {
            RegionKind::Mmio | RegionKind::Device => S1Attr::DeviceNGnRnE,
            _ => S1Attr::NormalWb,
        };
        MemType::from(r.s1.map(|s| s.attr).unwrap_or(default))
    }

    /// Stage 2 for region `idx`: the stage-2 attribute on success.
    fn check_s2(&mut self, idx: Option<usize>, addr: u64, write: bool, dc_zero: bool, is_aligned: bool) -> Result<Option<S2Attr>, Fault> {
        let Some(i) = idx else {
            return Err(Fault::Stage2(S2Fault::NoMemslot));
        };
        let r = &self.case.memory[i];
        match r.kind {
            RegionKind::Mmio => Err(Fault::Stage2(S2Fault::NoMemslot)),
            RegionKind::RoRam => {
                if write {
                    return Err(Fault::Stage2(S2Fault::ReadOnly));
                }
                self.ro_mapped.insert(addr / PAGE);
                Ok(Some(S2Attr::Normal))
            }
            RegionKind::Device => {
                let s2 = r.s2.unwrap_or(S2Attr::DeviceNGnRE);
                if memtype::s2_alignment_fault(s2, dc_zero, is_aligned) {
                    return Err(Fault::Stage2(S2Fault::Alignment));
                }
                Ok(Some(s2))
            }
            RegionKind::Ram => Ok(Some(S2Attr::Normal)),
        }
    }

    fn memory_op(&mut self, pc: u64, size: u64, m: MemOp) -> Flow {
        if let Some(advsimd) = m.fp {
            if let Some(f) = self.fp_check(pc, size, advsimd, A32FpAccess::Normal) {
                return f;
            }
        }
        // Undo information: a whole-CPU context when FP/SIMD registers may change, else only
        // the general-purpose registers (an order of magnitude cheaper).
        let full = m.fp.is_some() || m.class == MemClass::Unclassified;
        if full {
            self.cpu.save(self.ctx);
        } else {
            self.cpu.save_gprs(&mut self.gpr_save);
        }
        if matches!(m.class, MemClass::A64Exclusive | MemClass::A32Exclusive | MemClass::Unclassified) {
            self.cpu.note_exclusive();
        }
        let r = self.cpu.step(pc, self.isa == Isa::T32, self.single_step(pc));
        let mut accesses = std::mem::take(&mut self.accesses);
        accesses.clear();
        accesses.extend_from_slice(&self.cpu.log().accesses);
        let flow = self.memory_op_checked(pc, size, m, r, &mut accesses, full);
        self.accesses = accesses;
        flow
    }

    fn undo(&mut self, full: bool) {
        if full {
            self.cpu.rollback(self.ctx);
        } else {
            self.cpu.restore_gprs(&self.gpr_save);
        }
    }

    fn memory_op_checked(&mut self, pc: u64, size: u64, m: MemOp, r: Result<(), StepError>, accesses: &mut Vec<Access>, full: bool) -> Flow {
        if accesses.is_empty() {
            match r {
                Ok(()) => return Flow::At(self.cpu.pc() & !1),
                Err(StepError::InvalidInstruction) => {
                    self.undo(full);
                    return self.undefined(pc, size);
                }
                Err(e) => {
                    // Unicorn refused before touching memory (its own alignment check on an
                    // exclusive, say): the address is the base register for those forms.
                    self.undo(full);
                    let Some(b) = m.base else {
                        return Flow::End(End::Skipped { reason: format!("the model cannot execute the access at {pc:#x} ({e:?} in Unicorn)") });
                    };
                    let addr = if self.aarch32() { self.cpu.gpr(b) & 0xffff_ffff } else { self.cpu.gpr(b) };
                    accesses.push(Access { addr, size: m.size, write: m.store && !m.load, value: 0, mapped: true });
                }
            }
        }
        let mut wrote_memory = false;
        let mut combined = Vec::new();
        for (k, a) in accesses.iter().enumerate() {
            // Unicorn may split one architectural access (LDR Q as two 8-byte halves): the
            // alignment unit is the architectural size, checked on the first part only.
            let split_part = m.size > a.size && k > 0 && accesses[k - 1].addr + u64::from(accesses[k - 1].size) == a.addr;
            let unit = match m.class {
                MemClass::A32Dual | MemClass::A32Multiple => 4,
                MemClass::A32Fp if m.fp == Some(false) => 4,
                _ if m.size > 0 => u64::from(m.size),
                _ => u64::from(a.size),
            };
            match self.check_access(a, unit, &m, !split_part) {
                Ok(t) => {
                    combined.push(t);
                    wrote_memory |= a.write;
                    if a.write {
                        if let Some(i) = self.region_index(a.addr) {
                            self.dirty.insert(i);
                        }
                        // New code was written into the scanned range: it has not been scanned.
                        if self.in_code(a.addr) {
                            self.risky_code = true;
                        }
                    }
                }
                Err(f) => {
                    self.undo(full);
                    if wrote_memory {
                        // Arm ARM B2.? "a store that generates an abort may have written some
                        // of its locations": the earlier stores' effect is UNKNOWN.
                        for prev in &accesses[..k] {
                            if prev.write {
                                if let Some(i) = self.region_index(prev.addr) {
                                    self.unknown_regions.insert(i);
                                }
                            }
                        }
                    }
                    let a = *a;
                    return self.data_fault(pc, size, &m, &a, f);
                }
            }
        }
        if matches!(m.class, MemClass::A64Exclusive | MemClass::A32Exclusive) {
            self.exclusive_done(&m, accesses);
        }
        if m.class.needs_write_back() && combined.iter().any(|t| !t.is_write_back()) {
            self.unknown.push(Unknown {
                path: "events".into(),
                mask: u64::MAX,
                why: format!("exclusive or atomic access at {pc:#x} to memory that is not Write-Back: IMPLEMENTATION DEFINED (Arm ARM B2.9.5, B2.2.6)"),
            });
            self.unknown.push(Unknown {
                path: "state".into(),
                mask: u64::MAX,
                why: "follows from the IMPLEMENTATION DEFINED exclusive or atomic access".into(),
            });
        }
        Flow::At(self.cpu.pc() & !1)
    }

    fn clear_monitor(&mut self) {
        if self.monitor.take().is_some() {
            self.cpu.clear_exclusive();
        }
    }

    /// Load-/Store-Exclusive bookkeeping (Arm ARM B2.9 "Synchronization and semaphores").
    fn exclusive_done(&mut self, m: &MemOp, accesses: &[Access]) {
        if m.load {
            self.monitor = accesses.first().map(|a| a.addr);
            return;
        }
        let w = self.word;
        let status = match self.isa {
            Isa::A64 => ((w >> 16) & 31) as u8,
            Isa::A32 => ((w >> 12) & 15) as u8,
            // T32 STREX (word): Rd = hw2[11:8]; the byte/half/dual and STLEX forms: hw2[3:0].
            Isa::T32 if (w >> 16) & 0xffe0 == 0xe840 => ((w >> 8) & 15) as u8,
            Isa::T32 => (w & 15) as u8,
        };
        let armed = self.monitor.take().is_some();
        self.note_impdef(
            status,
            "a Store-Exclusive may fail whenever the local monitor was cleared, e.g. by the hypervisor's exception return after a stage-2 fault it handled (Arm ARM B2.9.5)",
        );
        if accesses.iter().any(|a| a.write) {
            for a in accesses.iter().filter(|a| a.write) {
                if let Some(i) = self.region_index(a.addr) {
                    self.unknown_regions.insert(i);
                }
            }
        } else if !armed {
            // No access was made because the monitor was not armed; whether the address's
            // aborts are detected first is IMPLEMENTATION DEFINED.
            for path in ["events", "end"] {
                self.unknown.push(Unknown {
                    path: path.into(),
                    mask: u64::MAX,
                    why: "Store-Exclusive without an armed monitor: IMPLEMENTATION DEFINED whether memory aborts are detected before the monitor check (ASL AArch64.ExclusiveMonitorsPass)".into(),
                });
            }
        }
        if !self.aarch32() || status != 15 {
            // Unicorn may have cleared its own monitor; keep both views equal.
            self.cpu.clear_exclusive();
        }
    }

    fn data_fault(&mut self, pc: u64, size: u64, m: &MemOp, a: &Access, f: Fault) -> Flow {
        // Atomics read and write: "WnR is 0 if a read of the address would have generated the
        // fault which is being reported, otherwise 1" (Arm ARM D24.2.41, WnR). So a
        // translation fault reports a read; only a write-permission fault reports a write.
        let atomic = m.class == MemClass::A64Atomic;
        let wnr = if atomic {
            match f {
                Fault::Stage1 { fsc, .. } if fsc == Fsc::permission(3) => {
                    let as_el0 = self.el == El::El0 || m.unpriv;
                    self.region_index(a.addr).is_some_and(|i| !as_el0 || self.el0_accessible(&self.case.memory[i]))
                }
                Fault::Stage2(S2Fault::ReadOnly) => {
                    // The read half faults first on an unmapped page; the hypervisor maps it
                    // read-only (invisible), and the retry faults on the write permission.
                    self.ro_mapped.insert(a.addr / PAGE);
                    true
                }
                _ => false,
            }
        } else {
            a.write
        };
        match f {
            Fault::Reserved => Flow::End(reserved_end(a.addr)),
            Fault::Stage1 { fsc, level_known } => self.data_abort_s1(pc, size, a.addr, fsc, false, wnr, level_known),
            Fault::Stage2(kind) => self.stage2_abort(pc, size, a, m.syndrome, false, wnr, kind),
        }
    }

    /// The hypervisor's handling of a stage-2 data abort (the profile decides).
    #[allow(clippy::too_many_arguments)]
    fn stage2_abort(&mut self, pc: u64, size: u64, a: &Access, syn: Option<LsSyndrome>, cm: bool, wnr: bool, kind: S2Fault) -> Flow {
        let fsc = match kind {
            S2Fault::Alignment => Fsc::ALIGNMENT,
            // A lazily mapped page faults on translation; a mapped read-only page on permission.
            S2Fault::ReadOnly if self.profile.lazy_s2 && !self.ro_mapped.contains(&(a.addr / PAGE)) => Fsc::translation(3),
            S2Fault::ReadOnly => Fsc::permission(3),
            S2Fault::NoMemslot => Fsc::translation(3),
        };
        if kind == S2Fault::Alignment {
            return match self.profile.s2_alignment {
                UnhandledS2Fault::RunError(errno) => Flow::End(End::RunError { errno }),
                UnhandledS2Fault::InjectAbort => self.injected_abort(pc, a.addr, false, size),
            };
        }
        if cm && kind == S2Fault::NoMemslot && self.profile.cmo_outside_memory == CmoOutsideMemory::Skip {
            // The CMO is retired without effect.
            return Flow::At(pc + size);
        }
        let iss = syndrome::stage2_iss(syn, cm, wnr, fsc);
        match syn {
            Some(s) if kind == S2Fault::NoMemslot || self.profile.ro_write_is_mmio => self.mmio_exit(pc, size, a, s),
            _ => self.nisv(pc, size, a.addr, u64::from(iss.0)),
        }
    }

    fn count_exit(&mut self) -> bool {
        // The hypervisor's return to the guest clears the local monitor (ERET).
        self.clear_monitor();
        self.exits += 1;
        self.exits <= self.case.limits.max_exits
    }

    /// KVM_EXIT_MMIO (api.rst 5 "KVM_EXIT_MMIO"; mmio.c io_mem_abort / kvm_handle_mmio_return).
    fn mmio_exit(&mut self, pc: u64, size: u64, a: &Access, s: LsSyndrome) -> Flow {
        if !self.count_exit() {
            return Flow::End(End::ExitLimit);
        }
        let len = 1u8 << s.sas;
        let write = a.write;
        let abort = self.case.vmm.on_mmio == MmioAction::InjectAbort;
        let data = if write {
            a.value & mask(len)
        } else if abort {
            0
        } else {
            let v = self.case.vmm.reads.get(self.next_read).map(|v| v.0 as u64).unwrap_or(self.case.vmm.read_default);
            self.next_read += 1;
            v & mask(len)
        };
        let n = self.events.len();
        self.events.push(Event::Mmio { ipa: a.addr, len, write, data });
        if abort {
            if !write {
                self.unknown.push(Unknown {
                    path: format!("events[{n}].data"),
                    mask: u64::MAX,
                    why: "the VMM answered the read with an abort, not data (api.rst KVM_SET_VCPU_EVENTS ext_dabt_pending)".into(),
                });
            }
            if self.profile.mmio_abort_retires {
                self.mmio_complete(s, write, 0);
                return self.injected_abort(pc + size, a.addr, false, size);
            }
            // e735a5da6442: the abort is taken on the MMIO instruction, not after it.
            return self.injected_abort(pc, a.addr, false, size);
        }
        self.mmio_complete(s, write, data);
        self.cpu.set_pc(pc + size);
        Flow::At(pc + size)
    }

    /// kvm_handle_mmio_return(): sign-extend per SSE, truncate to 32 bits unless SF, write Rt.
    fn mmio_complete(&mut self, s: LsSyndrome, write: bool, data: u64) {
        if write {
            return;
        }
        let len = 1u32 << s.sas;
        let mut v = data;
        if s.sse && len < 8 {
            let sign = 1u64 << (len * 8 - 1);
            v = (v ^ sign).wrapping_sub(sign);
        }
        if !s.sf {
            v &= 0xffff_ffff;
        }
        self.set_reg_result(s.srt, v);
    }

    /// A stage-2 abort without a valid syndrome outside memory (mmio.c io_mem_abort():
    /// KVM_EXIT_ARM_NISV with KVM_CAP_ARM_NISV_TO_USER, api.rst 7.19; else -ENOSYS).
    fn nisv(&mut self, pc: u64, size: u64, ipa: u64, iss: u64) -> Flow {
        if !self.case.vmm.nisv_to_user {
            return Flow::End(End::RunError { errno: self.profile.nisv_errno });
        }
        if !self.count_exit() {
            return Flow::End(End::ExitLimit);
        }
        let n = self.events.len();
        self.events.push(Event::Nisv { esr_iss: iss & self.profile.nisv_iss_mask, ipa });
        if trapdiff_arch::esr::Fsc((iss & 0x3f) as u8).kind() == trapdiff_arch::esr::FaultKind::Translation {
            // The level at which the stage-2 walk found no entry depends on the hypervisor's
            // own stage-2 tables (Arm ARM D8.3: the level of the invalid descriptor).
            self.unknown.push(Unknown {
                path: format!("events[{n}].esr_iss"),
                mask: 0x3,
                why: "stage-2 translation fault level depends on the hypervisor's stage-2 table layout (Arm ARM D8.3)".into(),
            });
        }
        match self.case.vmm.on_nisv {
            // The VMM injects an external abort (KVM_SET_VCPU_EVENTS, ext_dabt_pending); the
            // instruction is not retired.
            NisvAction::InjectAbort => self.injected_abort(pc, ipa, false, size),
            NisvAction::Stop => Flow::End(End::Stopped { reason: "the VMM stopped on a NISV exit".into() }),
        }
    }

    // ---- cache maintenance ---------------------------------------------------------------

    fn cmo(&mut self, pc: u64, size: u64, kind: CmoKind, reg: u8) -> Flow {
        let el0 = self.el == El::El0;
        let aarch32 = self.aarch32();
        if el0 {
            // AArch32 EL0 has no cache maintenance by VA (CP15 c7 ops are PL1-only); A64 DC
            // IVAC is EL1-only; the others trap to EL1 when SCTLR_EL1.UCI/DZE is 0 (EC 0x18).
            if aarch32 || !kind.el0_allowed_a64() {
                return self.undefined(pc, size);
            }
            if !self.case.sysregs.el0_cache_ops {
                let (word, _) = self.fetch_word(pc);
                return self.sys64_trap(pc, size, word);
            }
        }
        let regval = self.reg_value(reg);
        let va = if kind.is_zero() { regval & !(machine::DCZ_BLOCK - 1) } else { regval };
        if reserved(va) {
            return Flow::End(reserved_end(va));
        }
        let (cm, wnr) = cmo::fault_cm_wnr(kind);
        let idx = self.region_index(va);
        // Stage 1.
        if self.case.sysregs.mmu {
            let Some(i) = idx else {
                return self.data_abort_s1(pc, size, regval, Fsc::translation(3), cm, wnr, false);
            };
            let r = &self.case.memory[i];
            let perm = r.s1.map(|s| s.perm).unwrap_or_default();
            if perm == S1Perm::Unmapped {
                return self.cmo_s1_fault(pc, size, kind, regval, Fsc::translation(3));
            }
            if memtype::s1_alignment_fault(self.s1_attr(r), kind.is_zero(), true) {
                return self.cmo_s1_fault(pc, size, kind, regval, Fsc::ALIGNMENT);
            }
            let readable = !el0 || self.el0_accessible(r);
            let writable = readable && matches!(perm, S1Perm::Rwx | S1Perm::Rw);
            match cmo::s1_permission_fault(kind, aarch32, self.el, readable, writable) {
                Some(true) => return self.cmo_s1_fault(pc, size, kind, regval, Fsc::permission(3)),
                Some(false) => {}
                None => {
                    return Flow::End(End::Skipped {
                        reason: format!(
                            "{} at EL0 without read permission: IMPLEMENTATION DEFINED whether it faults (ASL AArch64.S1CheckPermission)",
                            kind.name()
                        ),
                    })
                }
            }
        } else if kind.is_zero() {
            // MMU off: Device-nGnRnE, so DC ZVA takes an alignment fault.
            return self.cmo_s1_fault(pc, size, kind, regval, Fsc::ALIGNMENT);
        }
        // Stage 2.
        let access = Access { addr: va, size: 0, write: kind.is_zero(), value: 0, mapped: true };
        let s2 = match idx.map(|i| self.case.memory[i].kind) {
            None | Some(RegionKind::Mmio) => Err(S2Fault::NoMemslot),
            Some(RegionKind::RoRam) => {
                let mapped = !self.profile.lazy_s2 || self.ro_mapped.contains(&(va / PAGE));
                if cmo::s2_needs_write(kind, aarch32) || !mapped {
                    // Unmapped: a translation fault whose WnR (1 for every CMO) makes KVM see a
                    // write to a read-only slot; mapped: a permission fault (DC IVAC, DC ZVA).
                    Err(S2Fault::ReadOnly)
                } else {
                    Ok(())
                }
            }
            Some(RegionKind::Device) => {
                let s2 = self.case.memory[idx.unwrap_or(0)].s2.unwrap_or(S2Attr::DeviceNGnRE);
                if memtype::s2_alignment_fault(s2, kind.is_zero(), true) {
                    Err(S2Fault::Alignment)
                } else {
                    Ok(())
                }
            }
            Some(RegionKind::Ram) => Ok(()),
        };
        if let Err(k) = s2 {
            return self.stage2_abort(pc, size, &Access { addr: regval, ..access }, None, cm, wnr, k);
        }
        if kind.is_zero() {
            // DC ZVA writes zeros to the whole block (ASL AArch64.DataMemZero).
            let zeros = vec![0u8; machine::DCZ_BLOCK as usize];
            let end = va + machine::DCZ_BLOCK;
            let same_region = idx.is_some_and(|i| {
                let r = &self.case.memory[i];
                end <= r.ipa + r.size
            });
            if same_region {
                self.cpu.write_mem(va, &zeros);
                if let Some(i) = idx {
                    self.dirty.insert(i);
                }
                if self.in_code(va) || self.in_code(va + machine::DCZ_BLOCK - 1) {
                    self.risky_code = true;
                }
            }
        }
        self.cpu.set_pc(pc + size);
        Flow::At(pc + size)
    }

    fn cmo_s1_fault(&mut self, pc: u64, size: u64, kind: CmoKind, regval: u64, fsc: Fsc) -> Flow {
        let (cm, wnr) = cmo::fault_cm_wnr(kind);
        let n = self.events.len();
        let flow = self.data_abort_s1(pc, size, regval, fsc, cm, wnr, true);
        if kind.is_zero() && n < self.events.len() {
            self.unknown.push(Unknown {
                path: format!("events[{n}].far"),
                mask: machine::DCZ_BLOCK - 1,
                why: "FAR for a DC ZVA fault may be any address in the block (Arm ARM D24.2.50 FAR_EL1)".into(),
            });
        }
        flow
    }

    // ---- final state ---------------------------------------------------------------------

    fn final_state(&mut self) -> FinalState {
        let mut state = FinalState::default();
        for reg in &self.case.observe.regs {
            let v: u128 = match *reg {
                Reg::X(n) => u128::from(self.cpu.gpr(n)),
                Reg::Sp => u128::from(self.cpu.gpr(31)),
                Reg::R(n) => u128::from(self.cpu.gpr(n) & 0xffff_ffff),
                Reg::Q(n) if self.isa == Isa::A64 => self.cpu.vreg(n),
                Reg::Q(n) => u128::from(self.cpu.dreg(2 * n)) | (u128::from(self.cpu.dreg(2 * n + 1)) << 64),
                Reg::D(n) if self.isa == Isa::A64 => self.cpu.vreg(n) & u128::from(u64::MAX),
                Reg::D(n) => u128::from(self.cpu.dreg(n)),
            };
            state.regs.insert(*reg, RegValue(v));
        }
        if self.case.observe.fp {
            let (fpscr, fpsr) = self.cpu.fp_control();
            state.fp = Some(if self.aarch32() {
                FpState { fpexc: Some(self.fpexc), fpscr, fpsr: 0, cpacr: self.cpacr }
            } else {
                FpState { fpexc: None, fpscr, fpsr, cpacr: self.cpacr }
            });
        }
        for (i, r) in self.case.memory.iter().enumerate() {
            let Some(key) = &self.keys[i] else { continue };
            let windows: Vec<&trapdiff_arch::case::MemWindow> = self.case.observe.mem.iter().filter(|w| w.region == r.name).collect();
            let dirty = self.dirty.contains(&i);
            // An unwritten region still holds its initial bytes, whose digest is cached.
            let cached = if dirty { None } else { self.digests.get(key).copied() };
            let bytes: Option<Vec<u8>> = if cached.is_none() || !windows.is_empty() {
                Some(if dirty { self.cpu.read_mem(r.ipa, r.size as usize) } else { self.case.initial_bytes(r) })
            } else {
                None
            };
            let digest = match (cached, &bytes) {
                (Some(d), _) => d,
                (None, Some(b)) => {
                    let d = fnv1a64(b);
                    if !dirty {
                        if self.digests.len() > 4096 {
                            self.digests.clear();
                        }
                        self.digests.insert(key.clone(), d);
                    }
                    d
                }
                (None, None) => 0,
            };
            let windows = match &bytes {
                Some(b) => {
                    windows.iter().map(|w| Window { offset: w.offset, bytes: b[w.offset as usize..(w.offset + u64::from(w.len)) as usize].to_vec() }).collect()
                }
                None => Vec::new(),
            };
            state.memory.push(RegionState { region: r.name.clone(), digest, windows });
        }
        state
    }

    fn mark_state_unknowns(&mut self, state: Option<&FinalState>) {
        let Some(state) = state else { return };
        for (reg, mask, why) in std::mem::take(&mut self.impdef_regs) {
            if state.regs.contains_key(&reg) {
                self.unknown.push(Unknown { path: format!("state.regs.{reg}"), mask, why: why.into() });
            }
        }
        if self.aarch32() && state.fp.is_some() {
            self.unknown.push(Unknown {
                path: "state.fp.fpexc".into(),
                mask: u64::from(fpsimd::FPEXC_IMPDEF),
                why: "FPEXC bits other than EN are IMPLEMENTATION DEFINED on Armv8 without trapped FP exceptions (Arm ARM G8.2.56)".into(),
            });
        }
        let mut regions: Vec<usize> = self.unknown_regions.iter().copied().collect();
        regions.sort_unstable();
        for i in regions {
            let name = &self.case.memory[i].name;
            if let Some(k) = state.memory.iter().position(|m| &m.region == name) {
                self.unknown.push(Unknown {
                    path: format!("state.memory[{k}].digest"),
                    mask: u64::MAX,
                    why: "a multi-access store aborted part-way: the locations it wrote first are UNKNOWN (Arm ARM B2.2.4)".into(),
                });
            }
        }
    }
}
