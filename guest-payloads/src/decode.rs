//! Decoding: a backend's raw [`Report`] for a lowered [`Job`] becomes the case's [`Outcome`].
//!
//! The backend reports every VMM-visible exit in order, the runtime's harness-page stores
//! included. A store to `HARNESS_MMIO + EVENT` is the runtime announcing exception record N:
//! it becomes that record's `Event::Exception`, in place. The store to `HARNESS_MMIO + DONE`
//! ends the stream; its value is the runtime's status. Every other MMIO exit is an
//! `Event::Mmio`, every NISV exit an `Event::Nisv`. A report that contradicts itself (a
//! missing or corrupt report page, records out of order, a status that disagrees with the
//! page) ends in `End::BackendError` saying what was wrong: decoding never panics on what a
//! guest or a backend sent.

use std::collections::BTreeMap;

use trapdiff_arch::abi::{self, report as rp};
use trapdiff_arch::case::{Case, Isa, Reg, RegValue};
use trapdiff_arch::esr::{DataAbortIss, Ec, Esr};
use trapdiff_arch::outcome::{End, Event, FinalState, FpState, Outcome, RegionState, Vector, Window};
use trapdiff_arch::wire::{Exit, Job, Report, ReportEnd};

/// One exception record from the report page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub vector: u32,
    pub flags: u32,
    pub syndrome: u64,
    pub far: u64,
    pub pc: u64,
    pub spsr: u64,
}

/// The report page, checked: magic right, record count in range.
#[derive(Clone, Debug)]
pub struct ReportPage<'a> {
    bytes: &'a [u8],
}

impl<'a> ReportPage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<ReportPage<'a>, String> {
        if (bytes.len() as u64) < rp::USED {
            return Err(format!(
                "the report page readback is {} bytes, expected {} (the backend must return the job's first readback range)",
                bytes.len(),
                rp::USED
            ));
        }
        let page = ReportPage { bytes };
        let magic = page.u32(rp::OFF_MAGIC);
        if magic != rp::MAGIC {
            return Err(format!(
                "the report page has magic {magic:#010x}, not {:#010x}: the guest runtime never started (check the runtime \
                 segments, the job's entry and that the runtime slot is mapped)",
                rp::MAGIC
            ));
        }
        let n = page.n_exceptions();
        if n as usize > abi::MAX_EXCEPTIONS {
            return Err(format!("the report page claims {n} exception records; it holds at most {}", abi::MAX_EXCEPTIONS));
        }
        Ok(page)
    }
    fn u32(&self, off: u64) -> u32 {
        let o = off as usize;
        u32::from_le_bytes([self.bytes[o], self.bytes[o + 1], self.bytes[o + 2], self.bytes[o + 3]])
    }
    fn u64(&self, off: u64) -> u64 {
        u64::from(self.u32(off)) | (u64::from(self.u32(off + 4)) << 32)
    }
    fn u128(&self, off: u64) -> u128 {
        u128::from(self.u64(off)) | (u128::from(self.u64(off + 8)) << 64)
    }
    pub fn n_exceptions(&self) -> u32 {
        self.u32(rp::OFF_N_EXCEPTIONS)
    }
    pub fn status(&self) -> u32 {
        self.u32(rp::OFF_STATUS)
    }
    pub fn record(&self, i: u32) -> Option<Record> {
        if i >= self.n_exceptions() {
            return None;
        }
        let b = rp::OFF_EXCEPTIONS + u64::from(i) * rp::EXCEPTION_SIZE;
        Some(Record {
            vector: self.u32(b + rp::REC_VECTOR),
            flags: self.u32(b + rp::REC_FLAGS),
            syndrome: self.u64(b + rp::REC_SYNDROME),
            far: self.u64(b + rp::REC_FAR),
            pc: self.u64(b + rp::REC_PC),
            spsr: self.u64(b + rp::REC_SPSR),
        })
    }
    /// Final general-purpose register slot `i` (x0..x30, sp / r0..r14, 15: CPSR).
    pub fn gpr(&self, i: usize) -> u64 {
        self.u64(rp::OFF_GPRS + 8 * i as u64)
    }
    /// The 16 bytes of V area slot `i` (A64 V<i>; AArch32 D<2i+1>:D<2i>).
    pub fn vreg(&self, i: usize) -> u128 {
        self.u128(rp::OFF_VREGS + 16 * i as u64)
    }
    /// AArch32 D<n> (8 bytes at 8n of the V area).
    pub fn dreg_a32(&self, n: usize) -> u64 {
        self.u64(rp::OFF_VREGS + 8 * n as u64)
    }
    pub fn fp(&self, isa: Isa) -> FpState {
        let a = self.u64(rp::OFF_FPCR_OR_FPSCR) as u32;
        let b = self.u64(rp::OFF_FPSR_OR_FPEXC) as u32;
        let cpacr = self.u64(rp::OFF_CPACR);
        if isa.is_aarch32() {
            FpState { fpexc: Some(b), fpscr: a, fpsr: 0, cpacr }
        } else {
            FpState { fpexc: None, fpscr: a, fpsr: b, cpacr }
        }
    }
}

/// Whether the exception's fault address register holds a valid address.
///
/// A64: FAR_EL1 is written for Instruction and Data Aborts, PC alignment faults and
/// Watchpoints (Arm ARM D24.2.50 FAR_EL1), and is UNKNOWN for an abort with ESR.ISS.FnV = 1
/// (D24.2.41, ISS bit 10). AArch32 (LPAE DFSR/IFSR): DFAR/IFAR are written for synchronous
/// aborts; an asynchronous SError (STATUS 0b010001) leaves DFAR UNKNOWN (G8.2.50 DFSR), and
/// on debug events (STATUS 0b100010) the address is not reported: breakpoints leave IFAR
/// UNKNOWN (DDI 0406C, "Effects of debug exceptions on CP15 registers").
pub fn far_valid(isa: Isa, vector: Vector, syndrome: u64) -> bool {
    if isa.is_aarch32() {
        let status = syndrome & 0x3f;
        return match vector {
            Vector::DataAbort => status != 0b01_0001 && status != 0b10_0010,
            Vector::PrefetchAbort => status != 0b10_0010,
            _ => false,
        };
    }
    if vector != Vector::Sync {
        return false;
    }
    let esr = Esr(syndrome);
    let ec = esr.ec();
    if ec.is_data_abort() || ec.is_instruction_abort() {
        // FnV sits at bit 10 in both the data- and instruction-abort ISS.
        return esr.iss() & DataAbortIss::FNV == 0;
    }
    matches!(ec, Ec::PC_ALIGN | Ec::WATCHPT_LOW | Ec::WATCHPT_CUR)
}

fn backend_error(message: String) -> End {
    End::BackendError { message }
}

/// Turn `report` (for `job`, lowered from `case`) into the case's outcome.
pub fn decode(case: &Case, job: &Job, report: &Report) -> Outcome {
    let mut out = Outcome { meta: trapdiff_arch::outcome::Meta { elapsed_us: Some(report.elapsed_us), ..Default::default() }, ..Default::default() };
    match decode_inner(case, job, report, &mut out.events) {
        Ok((end, state)) => {
            out.end = end;
            out.state = state;
        }
        Err(message) => out.end = backend_error(message),
    }
    out
}

fn decode_inner(case: &Case, job: &Job, report: &Report, events: &mut Vec<Event>) -> Result<(End, Option<FinalState>), String> {
    let isa = case.state.isa;
    if report.seq != job.seq {
        return Err(format!("the report is for job {} but job {} was sent", report.seq, job.seq));
    }
    let page_bytes = match (job.readback.first(), report.readback.first()) {
        (Some(&(abi::REPORT_BASE, _)), Some(b)) => Some(b.as_slice()),
        (Some(&(abi::REPORT_BASE, _)), None) => None,
        _ => return Err("the job does not read back the report page first; lower it with guest_payloads::lower::lower".into()),
    };
    let page = || -> Result<ReportPage, String> {
        ReportPage::parse(page_bytes.ok_or("the backend returned no report page readback")?)
    };

    let mut done_status = None;
    let mut runtime_fault = None;
    for exit in &report.exits {
        match *exit {
            Exit::Mmio { ipa, len, write, data } if (abi::HARNESS_MMIO..abi::HARNESS_MMIO + 4096).contains(&ipa) => {
                let off = ipa - abi::HARNESS_MMIO;
                if !write || len != 4 || (off != abi::EVENT && off != abi::DONE) {
                    return Err(format!(
                        "unexpected {}-byte {} at harness page offset {off:#x}: the runtime only stores 4 bytes to EVENT and DONE",
                        len,
                        if write { "write" } else { "read" }
                    ));
                }
                if off == abi::DONE {
                    done_status = Some(data as u32);
                    break;
                }
                let page = page()?;
                let seen = events.iter().filter(|e| matches!(e, Event::Exception { .. })).count() as u64 + u64::from(runtime_fault.is_some());
                if data != seen {
                    return Err(format!("the runtime announced exception record {data} but {seen} records came before it"));
                }
                let Some(rec) = page.record(data as u32) else {
                    return Err(format!(
                        "the runtime announced exception record {data} but the report page holds {} records",
                        page.n_exceptions()
                    ));
                };
                if rec.flags & rp::FLAG_RUNTIME != 0 {
                    runtime_fault = Some(rec);
                    continue;
                }
                let Some(vector) = Vector::from_abi(rec.vector) else {
                    return Err(format!("exception record {data} has vector id {:#x}, which the ABI does not define", rec.vector));
                };
                events.push(Event::Exception {
                    vector,
                    from_el0: rec.flags & rp::FLAG_FROM_EL0 != 0,
                    syndrome: rec.syndrome,
                    far: far_valid(isa, vector, rec.syndrome).then_some(rec.far),
                    pc: rec.pc,
                });
            }
            Exit::Mmio { ipa, len, write, data } => events.push(Event::Mmio { ipa, len, write, data }),
            Exit::Nisv { esr_iss, ipa } => events.push(Event::Nisv { esr_iss, ipa }),
        }
    }

    // How the case ended, and whether the runtime reported the final registers.
    let (end, runtime_reported) = match &report.end {
        ReportEnd::Done => {
            if done_status == Some(abi::DONE_BAD_PARAMS) {
                return Err("the guest runtime rejected its parameter block (bad magic): the job's segment at PARAMS_BASE \
                            did not arrive"
                    .into());
            }
            let page = page()?;
            let status = done_status.unwrap_or_else(|| page.status());
            if page.status() != status {
                return Err(format!("the runtime stored status {status} to DONE but the report page says {}", page.status()));
            }
            let records = events.iter().filter(|e| matches!(e, Event::Exception { .. })).count() + usize::from(runtime_fault.is_some());
            if page.n_exceptions() as usize != records {
                return Err(format!(
                    "the report page holds {} exception records but the backend reported {records} EVENT stores",
                    page.n_exceptions()
                ));
            }
            match status {
                abi::DONE_OK => (End::Done, true),
                abi::DONE_EXCEPTION_LIMIT => (End::ExceptionLimit, true),
                abi::DONE_END_ON_EXCEPTION => (End::EndOnException, true),
                abi::DONE_RUNTIME_FAULT => {
                    let what = match runtime_fault {
                        Some(r) => format!(
                            "vector {:#x}, syndrome {:#x}, far {:#x}, pc {:#x}, spsr {:#x}",
                            r.vector, r.syndrome, r.far, r.pc, r.spsr
                        ),
                        None => "the unused AArch32 vector".into(),
                    };
                    return Err(format!("the guest runtime itself took an exception ({what}): a runtime or backend bug"));
                }
                other => return Err(format!("the runtime stored an unknown status {other} to DONE")),
            }
        }
        ReportEnd::Timeout => (End::Timeout, false),
        ReportEnd::ExitLimit => (End::ExitLimit, false),
        ReportEnd::RunError { errno } => (End::RunError { errno: *errno }, false),
        ReportEnd::Stopped { reason } => (End::Stopped { reason: reason.clone() }, false),
        ReportEnd::Skipped { reason } => return Ok((End::Skipped { reason: reason.clone() }, None)),
        ReportEnd::Failed { message } => return Ok((End::BackendError { message: message.clone() }, None)),
    };
    if let Some(r) = runtime_fault {
        return Err(format!("the guest runtime itself took an exception (vector {:#x}, syndrome {:#x}, pc {:#x})", r.vector, r.syndrome, r.pc));
    }
    if done_status.is_some() && !matches!(report.end, ReportEnd::Done) {
        return Err(format!("the runtime stored to DONE but the backend ended the job with {:?}", report.end));
    }

    let mut state = FinalState::default();
    if runtime_reported {
        let page = page()?;
        state.regs = observed_regs(case, &page);
        if case.observe.fp {
            state.fp = Some(page.fp(isa));
        }
    }
    state.memory = memory(case, job, report)?;
    Ok((end, Some(state)))
}

fn observed_regs(case: &Case, page: &ReportPage) -> BTreeMap<Reg, RegValue> {
    let a32 = case.state.isa.is_aarch32();
    case.observe
        .regs
        .iter()
        .map(|&reg| {
            let v = match reg {
                Reg::X(n) => u128::from(page.gpr(usize::from(n))),
                Reg::Sp => u128::from(page.gpr(31)),
                Reg::R(n) => u128::from(page.gpr(usize::from(n)) & 0xffff_ffff),
                Reg::Q(n) => page.vreg(usize::from(n)),
                Reg::D(n) if a32 => u128::from(page.dreg_a32(usize::from(n))),
                Reg::D(n) => page.vreg(usize::from(n)) & u128::from(u64::MAX),
            };
            (reg, RegValue(v))
        })
        .collect()
}

fn memory(case: &Case, job: &Job, report: &Report) -> Result<Vec<RegionState>, String> {
    let regions: Vec<_> = case.memory.iter().filter(|r| r.kind.has_memory()).collect();
    if report.digests.len() != regions.len() || job.digests.len() != regions.len() {
        return Err(format!(
            "the backend returned {} region digests; the case has {} regions with memory",
            report.digests.len(),
            regions.len()
        ));
    }
    if report.readback.len() != job.readback.len() {
        return Err(format!("the backend returned {} readback ranges; the job asked for {}", report.readback.len(), job.readback.len()));
    }
    let mut out: Vec<RegionState> =
        regions.iter().zip(&report.digests).map(|(r, &digest)| RegionState { region: r.name.clone(), digest, windows: Vec::new() }).collect();
    // Windows follow the report page in the readback, in case order.
    for (k, w) in case.observe.mem.iter().enumerate() {
        let bytes = &report.readback[k + 1];
        if bytes.len() != w.len as usize {
            return Err(format!("readback of observe.mem[{k}] is {} bytes, expected {}", bytes.len(), w.len));
        }
        let Some(rs) = out.iter_mut().find(|rs| rs.region == w.region) else {
            return Err(format!("observe.mem[{k}] names region `{}`, which has no memory", w.region));
        };
        rs.windows.push(Window { offset: w.offset, bytes: bytes.clone() });
    }
    Ok(out)
}
