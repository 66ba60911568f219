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
    let page = || -> Result<ReportPage, String> { ReportPage::parse(page_bytes.ok_or("the backend returned no report page readback")?) };

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
                    return Err(format!("the runtime announced exception record {data} but the report page holds {} records", page.n_exceptions()));
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
                    bad_spsr: (rec.flags & rp::FLAG_BAD_SPSR != 0).then_some(rec.spsr),
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
                return Err(format!("the report page holds {} exception records but the backend reported {records} EVENT stores", page.n_exceptions()));
            }
            match status {
                abi::DONE_OK => (End::Done, true),
                abi::DONE_EXCEPTION_LIMIT => (End::ExceptionLimit, true),
                abi::DONE_END_ON_EXCEPTION => (End::EndOnException, true),
                abi::DONE_RUNTIME_FAULT => {
                    let what = match runtime_fault {
                        Some(r) => format!(
                            "vector {:#x}, syndrome {:#x}, far {:#x}, pc {:#x} ({}), spsr {:#x}",
                            r.vector,
                            r.syndrome,
                            r.far,
                            r.pc,
                            crate::runtime::symbolize(r.pc).unwrap_or_else(|| "outside the runtime".into()),
                            r.spsr
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

    // A final state exists only when the runtime's epilogue ran (DONE): after a timeout, an
    // exit limit, a KVM_RUN error or a VMM stop the guest was cut off mid-case, so neither its
    // registers nor its memory are a result (the model oracle reports none either).
    if !runtime_reported {
        return Ok((end, None));
    }
    let page = page()?;
    let mut state = FinalState { regs: observed_regs(case, &page), ..FinalState::default() };
    if case.observe.fp {
        state.fp = Some(page.fp(isa));
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
        return Err(format!("the backend returned {} region digests; the case has {} regions with memory", report.digests.len(), regions.len()));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;
    use crate::lower::{lower, testcase};
    use trapdiff_arch::esr::Fsc;

    /// A report page as the runtime writes it.
    struct PageBuilder {
        b: Vec<u8>,
    }
    impl PageBuilder {
        fn new() -> PageBuilder {
            let mut p = PageBuilder { b: vec![0; rp::USED as usize] };
            p.put32(rp::OFF_MAGIC, rp::MAGIC);
            p
        }
        fn put32(&mut self, off: u64, v: u32) {
            self.b[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn put64(&mut self, off: u64, v: u64) {
            self.b[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn record(&mut self, vector: u32, flags: u32, syndrome: u64, far: u64, pc: u64) -> u64 {
            let i = u64::from(u32::from_le_bytes(self.b[8..12].try_into().unwrap()));
            let base = rp::OFF_EXCEPTIONS + i * rp::EXCEPTION_SIZE;
            self.put32(base + rp::REC_VECTOR, vector);
            self.put32(base + rp::REC_FLAGS, flags);
            self.put64(base + rp::REC_SYNDROME, syndrome);
            self.put64(base + rp::REC_FAR, far);
            self.put64(base + rp::REC_PC, pc);
            self.put64(base + rp::REC_SPSR, 0x3c4);
            self.put32(rp::OFF_N_EXCEPTIONS, i as u32 + 1);
            i
        }
        fn done(mut self, status: u32) -> Vec<u8> {
            self.put32(rp::OFF_STATUS, status);
            self.b
        }
    }

    fn event(i: u64) -> Exit {
        Exit::Mmio { ipa: abi::HARNESS_MMIO + abi::EVENT, len: 4, write: true, data: i }
    }
    fn done(status: u32) -> Exit {
        Exit::Mmio { ipa: abi::HARNESS_MMIO + abi::DONE, len: 4, write: true, data: u64::from(status) }
    }
    /// A report for `job` with the given page, exits and end, and plausible digests/windows.
    fn report(job: &Job, page: Vec<u8>, exits: Vec<Exit>, end: ReportEnd) -> Report {
        let mut readback = vec![page];
        readback.extend(job.readback[1..].iter().map(|&(_, len)| vec![0x5a; len as usize]));
        Report { seq: job.seq, exits, end, digests: (0..job.digests.len() as u64).collect(), readback, elapsed_us: 77 }
    }
    fn dabt_esr(fnv: bool) -> u64 {
        let mut iss = DataAbortIss::with_syndrome(2, false, 0, false, false, false, Fsc(0x07)).0;
        if fnv {
            iss |= DataAbortIss::FNV;
        }
        Esr::new(Ec::DABT_CUR, true, iss).0
    }

    #[test]
    fn a64_exits_and_records_interleave_in_order() {
        let case = testcase::a64(testcase::EL1);
        let job = lower(&case, 3).unwrap();
        let mut page = PageBuilder::new();
        let r0 = page.record(abi::vector::A64_SYNC, 0, dabt_esr(false), 0x6000_0008, 0x4000_0000);
        let r1 = page.record(abi::vector::A64_SYNC, 0, Esr::new(Ec::SVC64, true, 0).0, 0xdead, 0x4000_0004);
        page.put64(rp::OFF_GPRS, 0x1122); // x0
        page.put64(rp::OFF_GPRS + 30 * 8, 0x1e);
        page.put64(rp::OFF_GPRS + 31 * 8, 0x4000_0ff0);
        page.put64(rp::OFF_VREGS + 48, 0x8899_aabb_ccdd_eeff);
        page.put64(rp::OFF_VREGS + 56, 0x0011_2233_4455_6677);
        page.put64(rp::OFF_VREGS + 64, 0x4444);
        page.put64(rp::OFF_VREGS + 72, 0x9999); // V4's high half: not part of D4
        page.put64(rp::OFF_FPCR_OR_FPSCR, 0x300_0000);
        page.put64(rp::OFF_FPSR_OR_FPEXC, 0x10);
        page.put64(rp::OFF_CPACR, 0x30_0000);
        let mmio = Exit::Mmio { ipa: 0x5800_0010, len: 4, write: false, data: 0x1234 };
        let nisv = Exit::Nisv { esr_iss: 0x93, ipa: 0x5800_0020 };
        let exits = vec![mmio.clone(), event(r0), nisv, event(r1), done(abi::DONE_OK)];
        let out = decode(&case, &job, &report(&job, page.done(abi::DONE_OK), exits, ReportEnd::Done));
        assert_eq!(out.end, End::Done, "{out:?}");
        assert_eq!(
            out.events,
            vec![
                Event::Mmio { ipa: 0x5800_0010, len: 4, write: false, data: 0x1234 },
                Event::Exception { vector: Vector::Sync, from_el0: false, syndrome: dabt_esr(false), far: Some(0x6000_0008), pc: 0x4000_0000, bad_spsr: None },
                Event::Nisv { esr_iss: 0x93, ipa: 0x5800_0020 },
                // SVC: FAR is not defined for it, so it is not reported.
                Event::Exception {
                    vector: Vector::Sync,
                    from_el0: false,
                    syndrome: Esr::new(Ec::SVC64, true, 0).0,
                    far: None,
                    pc: 0x4000_0004,
                    bad_spsr: None
                },
            ]
        );
        let st = out.state.expect("final state");
        let reg = |r: &str| st.regs[&r.parse::<Reg>().unwrap()].0;
        assert_eq!(reg("x0"), 0x1122);
        assert_eq!(reg("x30"), 0x1e);
        assert_eq!(reg("sp"), 0x4000_0ff0);
        assert_eq!(reg("q3"), 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        assert_eq!(reg("d4"), 0x4444);
        assert_eq!(st.fp, Some(FpState { fpexc: None, fpscr: 0x300_0000, fpsr: 0x10, cpacr: 0x30_0000 }));
        let names: Vec<_> = st.memory.iter().map(|m| m.region.as_str()).collect();
        assert_eq!(names, ["code", "data", "dev", "hole", "far"]);
        assert_eq!(st.memory[4].digest, 4);
        assert_eq!(st.memory[1].windows, vec![Window { offset: 0x10, bytes: vec![0x5a; 4] }]);
        assert_eq!(st.memory[4].windows, vec![Window { offset: 0, bytes: vec![0x5a; 8] }]);
        assert_eq!(out.meta.elapsed_us, Some(77));
    }

    #[test]
    fn far_is_reported_only_where_the_architecture_defines_it() {
        assert!(far_valid(Isa::A64, Vector::Sync, dabt_esr(false)));
        assert!(!far_valid(Isa::A64, Vector::Sync, dabt_esr(true)), "FnV set: FAR UNKNOWN");
        assert!(far_valid(Isa::A64, Vector::Sync, Esr::new(Ec::IABT_LOW, true, 0x0f).0));
        assert!(far_valid(Isa::A64, Vector::Sync, Esr::new(Ec::PC_ALIGN, true, 0).0));
        assert!(far_valid(Isa::A64, Vector::Sync, Esr::new(Ec::WATCHPT_CUR, true, 0).0));
        assert!(!far_valid(Isa::A64, Vector::Sync, Esr::new(Ec::FP_ASIMD, true, 0).0));
        assert!(!far_valid(Isa::A64, Vector::Sync, Esr::new(Ec::UNKNOWN, true, 0).0));
        assert!(!far_valid(Isa::A64, Vector::Serror, Esr::new(Ec::SERROR, true, 0).0));
        // AArch32 LPAE DFSR: level-1 translation fault (0b000101), async SError (0b010001).
        assert!(far_valid(Isa::A32, Vector::DataAbort, (1 << 9) | 0b00_0101));
        assert!(!far_valid(Isa::A32, Vector::DataAbort, (1 << 9) | 0b01_0001));
        assert!(far_valid(Isa::T32, Vector::PrefetchAbort, (1 << 9) | 0b00_1111));
        assert!(!far_valid(Isa::T32, Vector::PrefetchAbort, (1 << 9) | 0b10_0010));
        assert!(!far_valid(Isa::A32, Vector::Undef, 0));
        assert!(!far_valid(Isa::A32, Vector::Svc, 0));
    }

    #[test]
    fn aarch32_record_with_a_bad_spsr_reports_the_value_read() {
        let case = testcase::a32(testcase::EL0);
        let job = lower(&case, 1).unwrap();
        let mut page = PageBuilder::new();
        let r = page.record(abi::vector::A32_DABT, rp::FLAG_FROM_EL0 | rp::FLAG_BAD_SPSR, 0x210, 0x5000_0104, 0x4000_0000);
        let spsr = rp::OFF_EXCEPTIONS + r * rp::EXCEPTION_SIZE + rp::REC_SPSR;
        page.put64(spsr, 0);
        let exits = vec![event(r), done(abi::DONE_OK)];
        let out = decode(&case, &job, &report(&job, page.done(abi::DONE_OK), exits, ReportEnd::Done));
        assert_eq!(out.end, End::Done, "{out:?}");
        let Event::Exception { bad_spsr, from_el0, .. } = out.events[0] else { panic!("{out:?}") };
        assert_eq!((bad_spsr, from_el0), (Some(0), true));
        // Without the flag the SPSR is not part of the outcome.
        let mut page = PageBuilder::new();
        let r = page.record(abi::vector::A32_DABT, rp::FLAG_FROM_EL0, 0x210, 0x5000_0104, 0x4000_0000);
        let out = decode(&case, &job, &report(&job, page.done(abi::DONE_OK), vec![event(r), done(abi::DONE_OK)], ReportEnd::Done));
        assert!(matches!(out.events[0], Event::Exception { bad_spsr: None, .. }), "{out:?}");
    }

    #[test]
    fn aarch32_end_on_exception_reports_fp_and_d_registers() {
        let case = testcase::a32(testcase::EL0);
        let job = lower(&case, 1).unwrap();
        let mut page = PageBuilder::new();
        let r = page.record(abi::vector::A32_UNDEF, rp::FLAG_FROM_EL0, 0, 0, 0x4000_0012);
        page.put64(rp::OFF_GPRS, 0xffff_ffff_0000_0007); // only the low word is r0
        page.put64(rp::OFF_GPRS + 13 * 8, 0x4000_0800);
        page.put64(rp::OFF_VREGS + 16, 0x2222); // D2
        page.put64(rp::OFF_VREGS + 24, 0x3333); // D3
        page.put64(rp::OFF_FPCR_OR_FPSCR, 0x0300_0000);
        page.put64(rp::OFF_FPSR_OR_FPEXC, 0);
        page.put64(rp::OFF_CPACR, 0x50_0000);
        let exits = vec![event(r), done(abi::DONE_END_ON_EXCEPTION)];
        let out = decode(&case, &job, &report(&job, page.done(abi::DONE_END_ON_EXCEPTION), exits, ReportEnd::Done));
        assert_eq!(out.end, End::EndOnException, "{out:?}");
        assert_eq!(out.events, vec![Event::Exception { vector: Vector::Undef, from_el0: true, syndrome: 0, far: None, pc: 0x4000_0012, bad_spsr: None }]);
        let st = out.state.unwrap();
        let reg = |r: &str| st.regs[&r.parse::<Reg>().unwrap()].0;
        assert_eq!(reg("r0"), 7);
        assert_eq!(reg("r13"), 0x4000_0800);
        assert_eq!(reg("d2"), 0x2222);
        assert_eq!(reg("d3"), 0x3333);
        assert_eq!(reg("q1"), 0x3333_u128 << 64 | 0x2222);
        assert_eq!(st.fp, Some(FpState { fpexc: Some(0), fpscr: 0x0300_0000, fpsr: 0, cpacr: 0x50_0000 }));
    }

    #[test]
    fn cut_off_cases_keep_their_events_but_have_no_final_state() {
        let case = testcase::a64(testcase::EL1);
        let job = lower(&case, 2).unwrap();
        let mut page = PageBuilder::new();
        let r = page.record(abi::vector::A64_SYNC, 0, dabt_esr(false), 0x6000_0000, 0x4000_0000);
        let out = decode(&case, &job, &report(&job, page.done(0), vec![event(r)], ReportEnd::Timeout));
        assert_eq!(out.end, End::Timeout);
        assert_eq!(out.events.len(), 1);
        assert!(out.state.is_none());
        let out = decode(&case, &job, &report(&job, vec![], vec![], ReportEnd::RunError { errno: 38 }));
        assert_eq!((out.end, out.state), (End::RunError { errno: 38 }, None));
        // A timeout with no events needs no report page at all.
        let out = decode(&case, &job, &report(&job, vec![], vec![], ReportEnd::Timeout));
        assert_eq!(out.end, End::Timeout);
        // Backend failures carry their message and no state.
        let out = decode(&case, &job, &report(&job, vec![], vec![], ReportEnd::Failed { message: "qemu died".into() }));
        assert_eq!(out.end, End::BackendError { message: "qemu died".into() });
        assert!(out.state.is_none());
    }

    fn backend_error(out: &Outcome) -> &str {
        match &out.end {
            End::BackendError { message } => message,
            other => panic!("expected a backend error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_reports_are_backend_errors() {
        let case = testcase::a64(testcase::EL1);
        let job = lower(&case, 5).unwrap();
        let ok_page = || {
            let mut p = PageBuilder::new();
            p.record(abi::vector::A64_SYNC, 0, dabt_esr(false), 1, 2);
            p
        };
        let run = |page: Vec<u8>, exits: Vec<Exit>| decode(&case, &job, &report(&job, page, exits, ReportEnd::Done));

        let mut bad = ok_page();
        bad.put32(rp::OFF_MAGIC, 0);
        assert!(backend_error(&run(bad.done(0), vec![event(0), done(0)])).contains("never started"));
        let mut bad = ok_page();
        bad.put32(rp::OFF_N_EXCEPTIONS, 17);
        assert!(backend_error(&run(bad.done(0), vec![event(0), done(0)])).contains("at most 16"));
        let short = ok_page().done(0)[..100].to_vec();
        assert!(backend_error(&run(short, vec![event(0), done(0)])).contains("100 bytes"));
        // An EVENT for a record that is not there, or out of order.
        assert!(backend_error(&run(ok_page().done(0), vec![event(0), event(1), done(0)])).contains("holds 1 records"));
        assert!(backend_error(&run(ok_page().done(0), vec![event(0), event(0), done(0)])).contains("1 records came before"));
        // A dropped EVENT exit: the page has more records than the stream.
        assert!(backend_error(&run(ok_page().done(0), vec![done(0)])).contains("EVENT stores"));
        // DONE and the page disagree; unknown status; stray harness accesses.
        assert!(backend_error(&run(ok_page().done(2), vec![event(0), done(0)])).contains("report page says 2"));
        assert!(backend_error(&run(ok_page().done(9), vec![event(0), done(9)])).contains("unknown status 9"));
        let stray = Exit::Mmio { ipa: abi::HARNESS_MMIO + 0x10, len: 4, write: true, data: 0 };
        assert!(backend_error(&run(ok_page().done(0), vec![stray, done(0)])).contains("offset 0x10"));
        // The runtime's own fault and a rejected parameter block.
        let mut rt = PageBuilder::new();
        rt.record(abi::vector::A64_SYNC, rp::FLAG_RUNTIME, 0x9600_0045, 0x1002_0000, 0x1000_1100);
        let msg = run(rt.done(abi::DONE_RUNTIME_FAULT), vec![event(0), done(abi::DONE_RUNTIME_FAULT)]);
        assert!(backend_error(&msg).contains("pc 0x10001100"), "{msg:?}");
        assert!(backend_error(&run(vec![0; 8], vec![done(abi::DONE_BAD_PARAMS)])).contains("parameter block"));
        // A report for another job.
        let mut other = report(&job, ok_page().done(0), vec![event(0), done(0)], ReportEnd::Done);
        other.seq = 6;
        assert!(backend_error(&decode(&case, &job, &other)).contains("job 6"));
        // Wrong digest count.
        let mut r = report(&job, ok_page().done(0), vec![event(0), done(0)], ReportEnd::Done);
        r.digests.pop();
        assert!(backend_error(&decode(&case, &job, &r)).contains("digests"));
    }

    /// Whatever a broken guest leaves in the page, decoding returns an outcome.
    #[test]
    fn garbage_pages_never_panic() {
        let case = testcase::a32(testcase::EL1);
        let job = lower(&case, 0).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..500 {
            let mut page = PageBuilder::new().done(0);
            for b in page.iter_mut().take(0x40 + (round % 5) * 0x100) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if round % 2 == 0 {
                page[..4].copy_from_slice(&rp::MAGIC.to_le_bytes());
                page[8] %= 20;
            }
            let exits = vec![event(x % 4), event(1), done((x >> 8) as u32 % 5)];
            let _ = decode(&case, &job, &report(&job, page, exits, ReportEnd::Done));
        }
    }
}
