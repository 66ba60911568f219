//! Unicorn, used for instruction semantics only: it computes register and memory results and
//! reports every data access through hooks. It never decides a trap: the rules do, and the
//! model rolls Unicorn back when they say an instruction faulted.

use trapdiff_arch::Isa;
use unicorn_engine::unicorn_const::{uc_ctl, uc_error, Arch, ControlType, HookType, MemType, Mode, Prot};
use unicorn_engine::{RegisterARM, RegisterARM64, Unicorn};

/// Where the engine keeps its own code: inside the guest runtime's reserved range.
const SCRATCH: u64 = trapdiff_arch::abi::RESERVED_BASE;

/// Each engine's translation buffer.
const TCG_BUFFER_BYTES: u32 = 4 << 20;

/// The `until` of a step that needs none: in the scratch page, past its CLREX.
const NO_EXIT: u64 = SCRATCH + 0x800;

/// One data access Unicorn performed (or tried: `mapped == false` stopped the instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub addr: u64,
    pub size: u8,
    pub write: bool,
    /// The value written (stores).
    pub value: u64,
    pub mapped: bool,
}

/// What the hooks record while one instruction runs.
#[derive(Debug, Default)]
pub struct Log {
    pub accesses: Vec<Access>,
    /// Bytes each store overwrote, to undo the instruction.
    pub undo: Vec<(u64, [u8; 16], u8)>,
}

/// Why Unicorn stopped short of completing an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepError {
    /// An access to unmapped memory (the hooks recorded it).
    Unmapped,
    /// Unicorn does not know the instruction.
    InvalidInstruction,
    /// Any other CPU exception inside Unicorn (an alignment check, for example).
    Exception,
}

/// Unicorn could not be set up.
#[derive(Debug)]
pub struct EngineError(pub String);

/// One Unicorn instance for one architecture, reused case after case.
pub struct Cpu {
    uc: Unicorn<'static, Log>,
    aarch64: bool,
    mapped: Vec<(u64, u64)>,
    /// What each mapped region holds, when it still equals a case's initial content.
    contents: Vec<Option<ContentKey>>,
    /// An instruction that may arm Unicorn's exclusive monitor ran since it was last cleared:
    /// only then does a reset pay for running a CLREX.
    monitor_maybe_armed: bool,
}

/// What determines a region's initial bytes (case::Case::initial_bytes): its size, fill,
/// init blocks and the code placed in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContentKey {
    pub size: u64,
    pub fill: u8,
    pub init: Vec<(u64, Vec<u8>)>,
    pub code: Option<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu").field("aarch64", &self.aarch64).field("mapped", &self.mapped).finish()
    }
}

fn err(what: &str, e: unicorn_engine::unicorn_const::uc_error) -> EngineError {
    EngineError(format!("unicorn: {what}: {e:?}"))
}

impl Cpu {
    pub fn new(aarch64: bool) -> Result<Cpu, EngineError> {
        let (arch, mode) = if aarch64 { (Arch::ARM64, Mode::ARM) } else { (Arch::ARM, Mode::ARM) };
        let mut uc = Unicorn::new_with_data(arch, mode, Log::default()).map_err(|e| err("open", e))?;
        // The translation buffer defaults to 1 GiB (QEMU's DEFAULT_CODE_GEN_BUFFER_SIZE in
        // accel/tcg/translate-all.c), filled before anything is reclaimed: over a fuzzing
        // campaign's new words each engine's RSS grew towards it. A full buffer is flushed
        // and refilled; a case needs a few KiB. Set before Unicorn initialises (uc.c,
        // UC_CTL_TCG_BUFFER_SIZE); the binding has no wrapper for it.
        let set = ControlType(ControlType::TCG_BUFFER_SIZE.0 | ControlType::IO_WRITE.0);
        // SAFETY: a valid handle, and the control's one argument is a uint32_t (unicorn.h).
        let r = unsafe { uc_ctl(uc.get_handle(), set, TCG_BUFFER_BYTES) };
        if r != uc_error::OK {
            return Err(err("translation buffer size", r));
        }
        if aarch64 {
            // Arm64CpuModel::MAX
            uc.ctl_set_cpu_model(3).map_err(|e| err("cpu model", e))?;
        } else {
            // ArmCpuModel::MAX: the Armv8 AArch32 feature set (LDA/STL, VFPv4, Advanced SIMD).
            uc.ctl_set_cpu_model(33).map_err(|e| err("cpu model", e))?;
        }
        uc.add_mem_hook(HookType::MEM_READ | HookType::MEM_WRITE, 1, 0, |uc, ty, addr, size, value| {
            let write = ty == MemType::WRITE;
            if write {
                let mut old = [0u8; 16];
                let n = size.min(16);
                // The hook runs before the store: these are the bytes it will overwrite.
                if uc.mem_read(addr, &mut old[..n]).is_ok() {
                    uc.get_data_mut().undo.push((addr, old, n as u8));
                }
            }
            uc.get_data_mut().accesses.push(Access { addr, size: size as u8, write, value: value as u64, mapped: true });
            true
        })
        .map_err(|e| err("memory hook", e))?;
        uc.add_mem_hook(HookType::MEM_READ_UNMAPPED | HookType::MEM_WRITE_UNMAPPED, 1, 0, |uc, ty, addr, size, value| {
            let write = ty == MemType::WRITE_UNMAPPED;
            uc.get_data_mut().accesses.push(Access { addr, size: size as u8, write, value: value as u64, mapped: false });
            false
        })
        .map_err(|e| err("unmapped hook", e))?;
        // A page of the runtime's reserved range (no case region may overlap it) holding a
        // CLREX, run at every reset so no exclusive monitor state leaks between cases.
        uc.mem_map(SCRATCH, 0x1000, Prot::ALL).map_err(|e| err("scratch page", e))?;
        let clrex: u32 = if aarch64 { 0xd503_305f } else { 0xf57f_f01f };
        uc.mem_write(SCRATCH, &clrex.to_le_bytes()).map_err(|e| err("scratch page", e))?;
        Ok(Cpu { uc, aarch64, mapped: Vec::new(), contents: Vec::new(), monitor_maybe_armed: true })
    }

    /// Whether the regions mapped now are exactly `layout` (base, size), in order.
    pub fn has_layout(&self, layout: &[(u64, u64)]) -> bool {
        self.mapped == layout
    }

    /// The next step may arm the exclusive monitor (an exclusive or unclassified access).
    pub fn note_exclusive(&mut self) {
        self.monitor_maybe_armed = true;
    }

    /// Give Unicorn this case's regions with memory and their initial bytes. A layout equal to
    /// the previous case's is kept, and a region whose initial content (`key`) equals what
    /// Unicorn still holds from the previous case (not written since) is not rewritten:
    /// remapping and rewriting cost more than the rest of a small case.
    pub fn map(&mut self, regions: &[(u64, u64, ContentKey)], bytes: impl Fn(usize) -> Vec<u8>) -> Result<(), EngineError> {
        let same = self.mapped.len() == regions.len() && self.mapped.iter().zip(regions).all(|((b, s), (rb, rs, _))| b == rb && s == rs);
        if !same {
            for (base, size) in self.mapped.drain(..) {
                self.uc.mem_unmap(base, size).map_err(|e| err("unmap", e))?;
            }
            for (base, size, _) in regions {
                self.uc.mem_map(*base, *size, Prot::ALL).map_err(|e| err(&format!("map {base:#x}"), e))?;
                self.mapped.push((*base, *size));
            }
            self.contents = vec![None; regions.len()];
        }
        for (i, (base, size, key)) in regions.iter().enumerate() {
            if same && self.contents[i].as_ref() == Some(key) {
                continue;
            }
            self.uc.mem_write(*base, &bytes(i)).map_err(|e| err("write", e))?;
            if same {
                self.uc.ctl_remove_cache(*base, *base + *size).map_err(|e| err("drop translations", e))?;
            }
            self.contents[i] = Some(key.clone());
        }
        if !same {
            self.uc.ctl_flush_tb().map_err(|e| err("flush", e))?;
        }
        Ok(())
    }

    /// Region `i` (in `map` order) was written: its content no longer matches its key.
    pub fn dirty(&mut self, i: usize) {
        if let Some(c) = self.contents.get_mut(i) {
            *c = None;
        }
    }

    fn read_half(&self, addr: u64) -> u16 {
        let mut b = [0u8; 2];
        let _ = self.uc.mem_read(addr, &mut b);
        u16::from_le_bytes(b)
    }

    /// Four bytes at `addr` as a little-endian word (0 where unmapped).
    pub fn read_u32(&self, addr: u64) -> u32 {
        let mut b = [0u8; 4];
        let _ = self.uc.mem_read(addr, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        self.uc.mem_read_as_vec(addr, len).unwrap_or_else(|_| vec![0; len])
    }

    pub fn write_mem(&mut self, addr: u64, bytes: &[u8]) -> bool {
        self.uc.mem_write(addr, bytes).is_ok()
    }

    /// General-purpose register n (A64: X0..X30, 31 = SP; AArch32: R0..R15).
    pub fn gpr(&self, n: u8) -> u64 {
        self.uc.reg_read(gpr_id(self.aarch64, n)).unwrap_or(0)
    }
    pub fn set_gpr(&mut self, n: u8, v: u64) {
        let _ = self.uc.reg_write(gpr_id(self.aarch64, n), v);
    }
    /// V/Q register n as 128 bits.
    pub fn vreg(&self, n: u8) -> u128 {
        let id = if self.aarch64 { RegisterARM64::Q0 as i32 + i32::from(n) } else { RegisterARM::Q0 as i32 + i32::from(n) };
        match self.uc.reg_read_long(id) {
            Ok(b) if b.len() >= 16 => u128::from_le_bytes(b[..16].try_into().unwrap_or([0; 16])),
            _ => 0,
        }
    }
    pub fn set_vreg(&mut self, n: u8, v: u128) {
        let id = if self.aarch64 { RegisterARM64::Q0 as i32 + i32::from(n) } else { RegisterARM::Q0 as i32 + i32::from(n) };
        let _ = self.uc.reg_write_long(id, &v.to_le_bytes());
    }
    /// AArch32 D register n (D0..D31).
    pub fn dreg(&self, n: u8) -> u64 {
        self.uc.reg_read(RegisterARM::D0 as i32 + i32::from(n)).unwrap_or(0)
    }
    pub fn set_dreg(&mut self, n: u8, v: u64) {
        let _ = self.uc.reg_write(RegisterARM::D0 as i32 + i32::from(n), v);
    }
    pub fn pc(&self) -> u64 {
        self.uc.pc_read().unwrap_or(0)
    }
    pub fn fp_control(&self) -> (u32, u32) {
        if self.aarch64 {
            (self.uc.reg_read(RegisterARM64::FPCR).unwrap_or(0) as u32, self.uc.reg_read(RegisterARM64::FPSR).unwrap_or(0) as u32)
        } else {
            (self.uc.reg_read(RegisterARM::FPSCR).unwrap_or(0) as u32, 0)
        }
    }

    /// Put the CPU into a case's initial state: every register zero, then `set` applies the
    /// case's values. FP/SIMD stays enabled inside Unicorn: the rules decide traps.
    pub fn reset(&mut self, fpscr: u32, el0: bool) {
        if self.aarch64 {
            for n in 0..=31 {
                self.set_gpr(n, 0);
                self.set_vreg(n, 0);
            }
            let _ = self.uc.reg_write(RegisterARM64::NZCV, 0);
            let _ = self.uc.reg_write(RegisterARM64::CPACR_EL1, 3 << 20);
            let _ = self.uc.reg_write(RegisterARM64::FPCR, u64::from(fpscr));
            let _ = self.uc.reg_write(RegisterARM64::FPSR, 0);
        } else {
            for n in 0..=14 {
                self.set_gpr(n, 0);
            }
            for n in 0..32 {
                self.set_dreg(n, 0);
            }
            // SYS mode (0x1f), ARM state, A/I/F masked.
            let _ = self.uc.reg_write(RegisterARM::CPSR, 0x1df);
            let _ = self.uc.reg_write(RegisterARM::C1_C0_2, 0xf << 20);
            let _ = self.uc.reg_write(RegisterARM::FPEXC, 1 << 30);
            let _ = self.uc.reg_write(RegisterARM::FPSCR, u64::from(fpscr));
        }
        // The runtime's ERET into the case clears the local exclusive monitor (Arm ARM D1.11
        // "Exception return": ClearExclusiveLocal).
        if self.monitor_maybe_armed {
            self.clear_exclusive();
        }
        if !self.aarch64 {
            // The runtime enters AArch32 cases in SYS mode (EL1) or USR mode (EL0), A/I/F masked
            // (guest-payloads lower.rs "Entry").
            let _ = self.uc.reg_write(RegisterARM::CPSR, if el0 { 0x1d0 } else { 0x1df });
        }
        let log = self.uc.get_data_mut();
        log.accesses.clear();
        log.undo.clear();
    }

    /// Execute exactly one instruction at `pc` (T32: `thumb`). The hooks' log starts empty.
    pub fn step(&mut self, pc: u64, thumb: bool, single: bool) -> Result<(), StepError> {
        {
            let log = self.uc.get_data_mut();
            log.accesses.clear();
            log.undo.clear();
        }
        let begin = if thumb { pc | 1 } else { pc };
        // `single`: `until` right after this instruction makes Unicorn end its translation
        // block there, so it never decodes the next word (its TCG front end aborts the process
        // on some unallocated encodings). It costs a translation per step, so the caller asks
        // for it only where such a word may follow.
        //
        // Otherwise `until` is a mapped address nothing executes: after every emu_start Unicorn
        // invalidates the translation at `until - 1` (softmmu/cpus.c resume_all_vcpus,
        // uc_exit_invalidate_iter), and for u64::MAX that means a failed page walk and a
        // longjmp per step — a quarter of the model's time.
        let until = if single { pc + if thumb && !trapdiff_arch::case::t32_is_32bit(self.read_half(pc)) { 2 } else { 4 } } else { NO_EXIT };
        match self.uc.emu_start(begin, until, 0, 1) {
            Ok(()) => Ok(()),
            Err(e) => {
                use unicorn_engine::unicorn_const::uc_error as E;
                Err(match e {
                    E::READ_UNMAPPED | E::WRITE_UNMAPPED | E::FETCH_UNMAPPED => StepError::Unmapped,
                    E::INSN_INVALID => StepError::InvalidInstruction,
                    _ => StepError::Exception,
                })
            }
        }
    }

    /// Clear the local exclusive monitor (what an exception return does).
    pub fn clear_exclusive(&mut self) {
        self.monitor_maybe_armed = false;
        let saved_pc = self.pc();
        let cpsr = (!self.aarch64).then(|| self.uc.reg_read(RegisterARM::CPSR).unwrap_or(0x1df));
        if let Some(c) = cpsr {
            let _ = self.uc.reg_write(RegisterARM::CPSR, c & !(1 << 5));
        }
        let _ = self.uc.emu_start(SCRATCH, NO_EXIT, 0, 1);
        if let Some(c) = cpsr {
            let _ = self.uc.reg_write(RegisterARM::CPSR, c);
        }
        let _ = self.uc.set_pc(saved_pc);
        let log = self.uc.get_data_mut();
        log.accesses.clear();
        log.undo.clear();
    }

    pub fn log(&self) -> &Log {
        self.uc.get_data()
    }

    /// The general-purpose registers, SP and flags (A64: X0..X30, SP, NZCV; AArch32: R0..R14,
    /// CPSR): enough to undo an instruction that transfers only general-purpose registers,
    /// and much cheaper than a whole-CPU context.
    pub fn save_gprs(&self, out: &mut Vec<u64>) {
        let mut ids = self.gpr_ids();
        let n = ids.len() as i32;
        out.clear();
        if let Ok(v) = self.uc.reg_read_batch(&mut ids, n) {
            out.extend_from_slice(&v);
        }
    }
    pub fn restore_gprs(&mut self, saved: &[u64]) {
        let ids = self.gpr_ids();
        if saved.len() == ids.len() {
            let _ = self.uc.reg_write_batch(&ids, saved, ids.len() as i32);
        }
        let undo: Vec<_> = self.uc.get_data_mut().undo.drain(..).collect();
        for (addr, old, n) in undo.into_iter().rev() {
            let _ = self.uc.mem_write(addr, &old[..usize::from(n)]);
        }
    }
    fn gpr_ids(&self) -> Vec<i32> {
        if self.aarch64 {
            let mut v: Vec<i32> = (0..=31).map(|n| gpr_id(true, n)).collect();
            v.push(RegisterARM64::NZCV as i32);
            v
        } else {
            let mut v: Vec<i32> = (0..=14).map(|n| gpr_id(false, n)).collect();
            v.push(RegisterARM::CPSR as i32);
            v
        }
    }

    /// Save registers before an instruction that may fault.
    pub fn save(&self, ctx: &mut unicorn_engine::Context) {
        let _ = self.uc.context_save(ctx);
    }
    /// Undo the last step: registers from `ctx`, memory from the store log.
    pub fn rollback(&mut self, ctx: &unicorn_engine::Context) {
        let _ = self.uc.context_restore(ctx);
        let undo: Vec<_> = self.uc.get_data_mut().undo.drain(..).collect();
        for (addr, old, n) in undo.into_iter().rev() {
            let _ = self.uc.mem_write(addr, &old[..usize::from(n)]);
        }
    }
    pub fn context(&self) -> Result<unicorn_engine::Context, EngineError> {
        self.uc.context_alloc().map_err(|e| err("context", e))
    }
    pub fn set_pc(&mut self, pc: u64) {
        let _ = self.uc.set_pc(pc);
    }
}

fn gpr_id(aarch64: bool, n: u8) -> i32 {
    if aarch64 {
        match n {
            0..=28 => RegisterARM64::X0 as i32 + i32::from(n),
            29 => RegisterARM64::X29 as i32,
            30 => RegisterARM64::X30 as i32,
            _ => RegisterARM64::SP as i32,
        }
    } else {
        match n {
            0..=12 => RegisterARM::R0 as i32 + i32::from(n),
            13 => RegisterARM::SP as i32,
            14 => RegisterARM::LR as i32,
            _ => RegisterARM::PC as i32,
        }
    }
}

/// The instruction set a Cpu runs.
pub fn is_aarch64(isa: Isa) -> bool {
    isa == Isa::A64
}
