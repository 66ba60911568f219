//! One job: a VM with the runtime slot and the job's slots, one vCPU, the run loop that
//! plays the VMM (MMIO device model, NISV handling, abort injection), the watchdog, and the
//! report (exits in order, how it ended, digests and readback of guest memory).
//!
//! VMs are reused: a VM that ended its job cleanly is kept (`Pool`) for the next job with
//! the same `VmKey`, because under nested TCG a new VM costs far more than a reset (see
//! docs/DESIGN.md "Execution"). The job still sees what a fresh VM gives it: stage 2 empty and
//! memory as lowered (memory.rs `GuestMemory::layout`), the vCPU reset by KVM_ARM_VCPU_INIT
//! plus what that leaves (vcpu.rs `clear_reset_residue`). Only what a VM fixes for its life
//! goes in the key; anything else unusual ends the VM's reuse (`clean` in `execute`).

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_enable_cap, KVM_CAP_ARM_NISV_TO_USER, KVM_EXIT_ARM_NISV};
use kvm_ioctls::{Kvm, VcpuExit};
use trapdiff_arch::abi;
use trapdiff_arch::case::{MmioAction, NisvAction};
use trapdiff_arch::crc32::fnv1a64;
use trapdiff_arch::memattr::S2Attr;
use trapdiff_arch::wire::{Exit, Job, Report, ReportEnd, Segment, SlotKind};

use kvm_ioctls::{VcpuFd, VmFd};

use crate::ivshmem::Ivshmem;
use crate::memory::{GuestMemory, SlotSpec};
use crate::profile::{Phase, Profile};
use crate::target_info::Caps;
use crate::{vcpu, watchdog};

/// Watchdog when the job does not set one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn failed(job: &Job, message: String) -> Report {
    Report { seq: job.seq, end: ReportEnd::Failed { message }, ..Report::default() }
}

/// A VM with vCPU 0. Fresh ones (vCPU created, not initialised) are made ahead of the job
/// that uses them: creating (and destroying) a VM costs milliseconds under nested TCG, so the
/// factory does it while the harness is busy with the previous result.
#[derive(Debug)]
pub struct Prepared {
    // Field order is drop order: the vCPU before its VM.
    vcpu: VcpuFd,
    vm: VmFd,
}

impl Prepared {
    pub fn new(kvm: &Kvm) -> Result<Prepared, String> {
        // Type 0: the default 40-bit IPA space (api.rst 4.2 KVM_CREATE_VM, "ARM64").
        let vm = kvm.create_vm_with_type(0).map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
        let vcpu = vm.create_vcpu(0).map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
        Ok(Prepared { vcpu, vm })
    }
}

/// Makes VMs ahead of the jobs and tears down spent ones on its own thread, so neither is on
/// the path from a job's arrival to its result (under nested TCG each costs milliseconds): it
/// runs while the main thread waits for the harness.
#[derive(Debug)]
pub struct VmFactory {
    /// A spent VM to tear down (if any), and whether to make a new one.
    to_factory: std::sync::mpsc::Sender<(Option<Spent>, bool)>,
    from_factory: std::sync::mpsc::Receiver<(Result<Prepared, String>, FactoryCost)>,
    pending: usize,
}

impl VmFactory {
    /// Start the factory; it makes the first VM at once.
    pub fn start() -> Result<VmFactory, String> {
        let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm for the VM factory: {e}"))?;
        let (to_factory, requests) = std::sync::mpsc::channel::<(Option<Spent>, bool)>();
        let (made, from_factory) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("vm-factory".into())
            .spawn(move || {
                for (spent, make) in requests {
                    let t0 = Instant::now();
                    drop(spent);
                    if !make {
                        continue;
                    }
                    let t1 = Instant::now();
                    let vm = Prepared::new(&kvm);
                    let cost = FactoryCost { teardown_us: (t1 - t0).as_micros() as u64, create_us: t1.elapsed().as_micros() as u64 };
                    if made.send((vm, cost)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the VM factory thread: {e}"))?;
        to_factory.send((None, true)).map_err(|_| "VM factory gone".to_string())?;
        Ok(VmFactory { to_factory, from_factory, pending: 1 })
    }

    /// The next VM (waits for the factory if it is still making it); None if it failed.
    pub fn take(&mut self, prof: &mut Profile) -> Option<Prepared> {
        if self.pending == 0 {
            return None;
        }
        self.pending -= 1;
        let (vm, cost) = self.from_factory.recv().ok()?;
        prof.factory = Some(cost);
        vm.ok()
    }

    /// Hand a spent VM and memory over for teardown, and order a new VM if `make` (the last
    /// job took the factory's).
    pub fn recycle(&mut self, spent: Option<Spent>, make: bool) {
        if spent.is_none() && !make {
            return;
        }
        if self.to_factory.send((spent, make)).is_ok() && make {
            self.pending += 1;
        }
    }
}

/// What a VM fixes at its first use and a later job cannot change: the register width of
/// its vCPUs (KVM_ARM_VCPU_INIT must repeat the same features on a vCPU, arm.c
/// kvm_vcpu_set_target: -EINVAL otherwise; and every vCPU of a VM has the same width,
/// reset.c kvm_set_vm_width), and KVM_CAP_ARM_NISV_TO_USER, which can be enabled but never
/// disabled (api.rst 7.19; arm.c kvm_vm_ioctl_enable_cap sets a VM flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmKey {
    pub aarch32: bool,
    pub nisv_to_user: bool,
}

impl VmKey {
    pub fn of(job: &Job) -> VmKey {
        VmKey { aarch32: job.aarch32, nisv_to_user: job.nisv_to_user }
    }
}

/// A VM that ran a job cleanly, its memslots still registered, waiting for the next job
/// with its key.
#[derive(Debug)]
pub struct Kept {
    // Field order is drop order: the VM before the memory it maps.
    vm: Prepared,
    memory: GuestMemory,
    key: VmKey,
}

/// VMs kept for reuse, the most recently used last. More than one per key, so that jobs
/// that alternate between a few memory layouts (a family's cases do) find a VM whose memslots
/// already fit: deleting and creating a memslot costs about a millisecond each under nested
/// TCG (the memslot update waits for SRCU readers, virt/kvm/kvm_main.c
/// kvm_swap_active_memslots), keeping one costs a madvise.
#[derive(Debug, Default)]
pub struct Pool {
    kept: Vec<Kept>,
}

/// Kept VMs at most; an idle one holds no guest pages (scrubbed), only KVM's structures.
pub const POOL_SIZE: usize = 8;

impl Kept {
    /// Get the VM ready for its next job while the harness works (`GuestMemory::scrub`).
    pub fn scrub(&mut self) -> Result<(), String> {
        self.memory.scrub()
    }
}

impl Pool {
    /// The kept VM for `job`'s key whose memslots need the fewest changes (slots to delete
    /// plus slots to create), the most recent of equals. While the pool has room, a VM that
    /// would need changes stays for the layout it has and the job takes a fresh VM instead
    /// (None), so the pool comes to hold one VM per layout in use.
    pub fn take(&mut self, job: &Job, dev: Option<&Ivshmem>) -> Option<Kept> {
        let key = VmKey::of(job);
        let wanted = wanted_slots(job, dev).ok()?;
        let (i, changes) = self
            .kept
            .iter()
            .enumerate()
            .filter(|(_, k)| k.key == key)
            .map(|(i, k)| (i, k.memory.changes_for(&wanted)))
            .min_by_key(|&(i, changes)| (changes, std::cmp::Reverse(i)))?;
        if changes > 0 && self.kept.len() < POOL_SIZE {
            return None;
        }
        Some(self.kept.remove(i))
    }

    /// Keep `k`; the least recently used VM it pushes out, if the pool was full.
    pub fn put(&mut self, k: Kept) -> Option<Kept> {
        self.kept.push(k);
        (self.kept.len() > POOL_SIZE).then(|| self.kept.remove(0))
    }
}

/// Where a job's VM comes from.
#[derive(Debug)]
pub enum Source {
    Kept(Kept),
    Fresh(Prepared),
    /// Made on the job path (no factory).
    Inline,
}

/// What a job leaves: a VM to keep for the next job of its key, or one to tear down.
#[derive(Debug, Default)]
pub struct Leftover {
    pub keep: Option<Kept>,
    pub spent: Option<Spent>,
}

/// What the factory spent on the VM it hands over: tearing down the last job's VM and memory,
/// and making this one (on its own thread, off the job path unless the job waited for it).
#[derive(Debug, Clone, Copy)]
pub struct FactoryCost {
    pub teardown_us: u64,
    pub create_us: u64,
}

/// A VM to tear down, with the memory it mapped, dropped after the result is sent.
#[derive(Debug)]
pub struct Spent {
    // Field order is drop order: vCPU, VM, then the memory the VM mapped.
    _vm: Option<Prepared>,
    _memory: GuestMemory,
}

impl From<Kept> for Spent {
    fn from(k: Kept) -> Spent {
        Spent { _vm: Some(k.vm), _memory: k.memory }
    }
}

/// Run a job on the VM from `source`; never panics (a panic in the agent becomes `Failed`).
pub fn run(kvm: &Kvm, caps: &Caps, dev: Option<&Ivshmem>, runtime: &[Segment], job: &Job, source: Source, prof: &mut Profile) -> (Report, Leftover) {
    let start = Instant::now();
    prof.lap(Phase::TakeVm);
    let mut report = Report { seq: job.seq, ..Report::default() };
    let mut left = Leftover::default();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| execute(kvm, caps, dev, runtime, job, source, &mut report, &mut left, prof)));
    report.end = match r {
        Ok(Ok(end)) => end,
        Ok(Err(message)) => ReportEnd::Failed { message },
        Err(_) => ReportEnd::Failed { message: "the agent panicked running this job (a bug in the agent; see the console)".into() },
    };
    report.elapsed_us = start.elapsed().as_micros() as u64;
    (report, left)
}

/// Why this host cannot run the job as asked, if it cannot.
fn skip_reason(caps: &Caps, dev: Option<&Ivshmem>, job: &Job) -> Option<String> {
    if job.aarch32 && !caps.el1_32bit {
        return Some("KVM_CAP_ARM_EL1_32BIT is 0: this CPU/kernel has no AArch32 EL1 vCPUs (api.rst KVM_ARM_VCPU_INIT, KVM_ARM_VCPU_EL1_32BIT)".into());
    }
    if job.nisv_to_user && !caps.nisv_to_user {
        return Some("KVM_CAP_ARM_NISV_TO_USER is not offered by this kernel (api.rst 7.19, Linux >= 5.5)".into());
    }
    for s in &job.slots {
        match s.kind {
            SlotKind::RoRam if !caps.readonly_mem => {
                return Some("KVM_CAP_READONLY_MEM is 0: no read-only memslots on this kernel".into());
            }
            // A VMM gets stage-2 Device-nGnRE for VM_PFNMAP mappings of non-RAM (a PCI BAR:
            // the ivshmem device, see ivshmem.rs), and Normal-NC only for
            // VM_ALLOW_ANY_UNCACHED mappings (vfio-pci BARs, Linux >= 6.8: commit 8c47ce3e1d2c
            // "KVM: arm64: Set io memory s2 pte as normalnc for vfio pci device"), which needs
            // a vfio-pci device this machine does not have.
            SlotKind::Device(S2Attr::DeviceNGnRE) if dev.is_none() => {
                return Some(format!(
                    "stage-2 Device-nGnRE memory needs a device BAR to map (VM_PFNMAP of non-RAM); no ivshmem device on this machine (kernel {})",
                    crate::target_info::kernel_release()
                ));
            }
            SlotKind::Device(S2Attr::NormalNc) => {
                return Some(format!(
                    "stage-2 Normal-NC memory needs a VM_ALLOW_ANY_UNCACHED mapping (a vfio-pci BAR, Linux >= 6.8); this agent has no vfio-pci device (kernel {})",
                    crate::target_info::kernel_release()
                ));
            }
            _ => {}
        }
    }
    None
}

/// The memslots `job` wants: the runtime's, then the job's in order.
fn wanted_slots(job: &Job, dev: Option<&Ivshmem>) -> Result<Vec<SlotSpec>, String> {
    let mut v = vec![SlotSpec { ipa: abi::RUNTIME_SLOT_BASE, size: abi::RUNTIME_SLOT_SIZE, readonly: false, device: false }];
    for s in &job.slots {
        if s.ipa < abi::RESERVED_END && abi::RESERVED_BASE < s.ipa.saturating_add(s.size) {
            return Err(format!("job slot {:#x}+{:#x} overlaps the runtime's reserved range", s.ipa, s.size));
        }
        // Device(Normal) is ordinary RAM at stage 2; Device-nGnRE needs the BAR (skip_reason).
        let device = s.kind == SlotKind::Device(S2Attr::DeviceNGnRE) && dev.is_some();
        v.push(SlotSpec { ipa: s.ipa, size: s.size, readonly: s.kind == SlotKind::RoRam, device });
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn execute(
    kvm: &Kvm,
    caps: &Caps,
    dev: Option<&Ivshmem>,
    runtime: &[Segment],
    job: &Job,
    source: Source,
    report: &mut Report,
    left: &mut Leftover,
    prof: &mut Profile,
) -> Result<ReportEnd, String> {
    if let Some(reason) = skip_reason(caps, dev, job) {
        // The VM is untouched: a kept one stays kept, a fresh one goes back for teardown.
        match source {
            Source::Kept(k) => left.keep = Some(k),
            Source::Fresh(p) => left.spent = Some(Spent { _vm: Some(p), _memory: GuestMemory::default() }),
            Source::Inline => {}
        }
        return Ok(ReportEnd::Skipped { reason });
    }
    let wanted = wanted_slots(job, dev)?;
    let key = VmKey::of(job);
    let (mut vm, mut memory, reused) = match source {
        Source::Kept(k) => {
            prof.vm = "reused";
            (k.vm, k.memory, true)
        }
        Source::Fresh(p) => {
            prof.vm = "fresh";
            (p, GuestMemory::default(), false)
        }
        Source::Inline => {
            prof.vm = "inline";
            (Prepared::new(kvm)?, GuestMemory::default(), false)
        }
    };
    // From here on the VM and the memory are handed back together, even on an error, so
    // the VM is always dropped before the memory it maps.
    let out = prepare_and_run(caps, dev, runtime, job, &wanted, reused, &mut vm, &mut memory, report, prof);
    match out {
        Ok((end, true)) => {
            left.keep = Some(Kept { vm, memory, key });
            Ok(end)
        }
        other => {
            left.spent = Some(Spent { _vm: Some(vm), _memory: memory });
            other.map(|(end, _)| end)
        }
    }
}

/// Memory and vCPU for the job, then the run; the end and whether the VM may be reused.
#[allow(clippy::too_many_arguments)]
fn prepare_and_run(
    caps: &Caps,
    dev: Option<&Ivshmem>,
    runtime: &[Segment],
    job: &Job,
    wanted: &[SlotSpec],
    reused: bool,
    vm: &mut Prepared,
    memory: &mut GuestMemory,
    report: &mut Report,
    prof: &mut Profile,
) -> Result<(ReportEnd, bool), String> {
    prof.kept_slots = memory.layout(&vm.vm, dev, wanted, &mut prof.layout_us)?;
    prof.lap(Phase::Memslots);
    for seg in runtime.iter().chain(job.segments.iter()) {
        memory.write(seg.ipa, &seg.bytes)?;
    }
    prof.lap(Phase::Copy);
    run_vm(caps, job, vm, memory, reused, report, prof)
}

/// The vCPU from reset to the job's end; the end and whether the VM may be reused: only
/// after an end the VMM chose (DONE, the exit limit, a NISV stop), never after a timeout, a
/// KVM error, a system event or an agent error, whose vCPU state the reset may not cover.
fn run_vm(
    caps: &Caps,
    job: &Job,
    prepared: &mut Prepared,
    memory: &GuestMemory,
    reused: bool,
    report: &mut Report,
    prof: &mut Profile,
) -> Result<(ReportEnd, bool), String> {
    let Prepared { vcpu, vm } = prepared;
    if job.nisv_to_user && !reused {
        let cap = kvm_enable_cap { cap: KVM_CAP_ARM_NISV_TO_USER, ..Default::default() };
        vm.enable_cap(&cap).map_err(|e| format!("KVM_ENABLE_CAP KVM_CAP_ARM_NISV_TO_USER: {e}"))?;
    }
    prof.lap(Phase::Cap);
    vcpu::init(vm, vcpu, job.aarch32, job.entry)?;
    if reused {
        vcpu::clear_reset_residue(vcpu)?;
    }
    prof.lap(Phase::VcpuInit);

    let stats = if prof.enabled { crate::profile::ExitStats::open(vcpu).ok() } else { None };
    let before = stats.as_ref().map(|s| s.read()).unwrap_or_default();
    let timeout = if job.timeout_ms == 0 { DEFAULT_TIMEOUT } else { Duration::from_millis(job.timeout_ms.into()) };
    let mut reads = job.mmio_reads.iter().copied();
    let mut vmm_exits = 0u32;
    let mut nisv_stop = false;

    let end = {
        let run_ptr: *mut kvm_bindings::kvm_run = vcpu.get_kvm_run();
        // SAFETY: the kvm_run mapping lives as long as `vcpu`, which outlives `wd` (dropped at
        // the end of this block).
        let wd = unsafe { watchdog::Watchdog::arm(run_ptr, timeout) };
        loop {
            if wd.fired() {
                break ReportEnd::Timeout;
            }
            // What the VMM does after recording the exit.
            enum Next {
                Resume,
                Inject,
                End(ReportEnd),
            }
            prof.lap(Phase::Exits);
            let ran = vcpu.run();
            prof.lap(Phase::Run);
            prof.runs += 1;
            let next = match ran {
                // `max_exits` counts exits for case regions only (harness-page stores never
                // count), and exit number max_exits + 1 ends the job unrecorded: the contract
                // in guest-payloads/src/lower.rs that the refhyp (runner.rs) and the model keep.
                Ok(VcpuExit::MmioWrite(ipa, _) | VcpuExit::MmioRead(ipa, _)) if !is_harness(ipa) && vmm_exits >= job.max_exits => {
                    Next::End(ReportEnd::ExitLimit)
                }
                Ok(VcpuExit::Unsupported(KVM_EXIT_ARM_NISV)) if vmm_exits >= job.max_exits => Next::End(ReportEnd::ExitLimit),
                Ok(VcpuExit::MmioWrite(ipa, data)) => {
                    let value = le_value(data);
                    report.exits.push(Exit::Mmio { ipa, len: data.len() as u8, write: true, data: value });
                    if is_harness(ipa) {
                        if ipa == abi::HARNESS_MMIO + abi::DONE {
                            Next::End(ReportEnd::Done)
                        } else {
                            Next::Resume
                        }
                    } else {
                        vmm_exits += 1;
                        if job.on_mmio == MmioAction::InjectAbort {
                            Next::Inject
                        } else {
                            Next::Resume
                        }
                    }
                }
                Ok(VcpuExit::MmioRead(ipa, data)) => {
                    let value = if is_harness(ipa) { 0 } else { reads.next().unwrap_or(job.mmio_read_default) };
                    let bytes = value.to_le_bytes();
                    let n = data.len().min(8);
                    data[..n].copy_from_slice(&bytes[..n]);
                    report.exits.push(Exit::Mmio { ipa, len: data.len() as u8, write: false, data: le_value(&data[..n]) });
                    if is_harness(ipa) {
                        Next::Resume
                    } else {
                        vmm_exits += 1;
                        if job.on_mmio == MmioAction::InjectAbort {
                            Next::Inject
                        } else {
                            Next::Resume
                        }
                    }
                }
                Ok(VcpuExit::Unsupported(KVM_EXIT_ARM_NISV)) => {
                    // SAFETY: exit_reason is KVM_EXIT_ARM_NISV, so arm_nisv is the live union
                    // member (api.rst 5 "kvm_run", KVM_EXIT_ARM_NISV).
                    let nisv = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.arm_nisv };
                    report.exits.push(Exit::Nisv { esr_iss: nisv.esr_iss, ipa: nisv.fault_ipa });
                    vmm_exits += 1;
                    match job.on_nisv {
                        NisvAction::InjectAbort => Next::Inject,
                        NisvAction::Stop => {
                            nisv_stop = true;
                            Next::End(ReportEnd::Stopped { reason: "KVM_EXIT_ARM_NISV: the VMM stops (on_nisv: stop)".into() })
                        }
                    }
                }
                Ok(VcpuExit::Intr) => Next::Resume,
                Ok(VcpuExit::SystemEvent(kind, data)) => {
                    Next::End(ReportEnd::Stopped { reason: format!("KVM_EXIT_SYSTEM_EVENT type {kind} ({}) data {data:x?}", system_event_name(kind)) })
                }
                Ok(VcpuExit::InternalError) => Next::End(ReportEnd::Stopped { reason: "KVM_EXIT_INTERNAL_ERROR".into() }),
                Ok(VcpuExit::FailEntry(reason, cpu)) => Next::End(ReportEnd::Stopped { reason: format!("KVM_EXIT_FAIL_ENTRY reason {reason:#x} cpu {cpu}") }),
                Ok(other) => Next::End(ReportEnd::Stopped { reason: format!("unexpected exit {other:?}") }),
                Err(e) if e.errno() == libc::EINTR => {
                    if wd.fired() {
                        Next::End(ReportEnd::Timeout)
                    } else {
                        vcpu.set_kvm_immediate_exit(0);
                        Next::Resume
                    }
                }
                Err(e) => Next::End(ReportEnd::RunError { errno: e.errno() }),
            };
            match next {
                Next::End(end) => break end,
                Next::Resume => {}
                Next::Inject => {
                    if !caps.inject_ext_dabt {
                        break ReportEnd::Stopped { reason: "cannot inject an external abort: KVM_CAP_ARM_INJECT_EXT_DABT is 0".into() };
                    }
                    vcpu::inject_ext_dabt(vcpu)?;
                }
            }
        }
    };

    prof.lap(Phase::Exits);
    if let Some(s) = &stats {
        prof.exits = s.read().iter().zip(&before).map(|(&(name, now), &(_, was))| (name, now - was)).collect();
    }
    for &(ipa, len) in &job.digests {
        report.digests.push(fnv1a64(&memory.read(ipa, len)?));
    }
    for &(ipa, len) in &job.readback {
        report.readback.push(memory.read(ipa, len.into())?.to_vec());
    }
    prof.lap(Phase::Readback);
    let clean = matches!(end, ReportEnd::Done | ReportEnd::ExitLimit) || nisv_stop;
    Ok((end, clean))
}

fn is_harness(ipa: u64) -> bool {
    (abi::HARNESS_MMIO..abi::HARNESS_MMIO + 0x1000).contains(&ipa)
}

fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// KVM_SYSTEM_EVENT_* (api.rst 5 "kvm_run", KVM_EXIT_SYSTEM_EVENT).
fn system_event_name(kind: u32) -> &'static str {
    match kind {
        1 => "SHUTDOWN",
        2 => "RESET",
        3 => "CRASH",
        4 => "WAKEUP",
        5 => "SUSPEND",
        6 => "SEV_TERM",
        _ => "unknown",
    }
}
