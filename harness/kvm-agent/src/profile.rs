//! Where the agent's time per job goes (`trapdiff.profile=1` on the kernel command line, or
//! `--profile` natively): each job's phases on CLOCK_MONOTONIC (`Instant`), sent to the
//! harness as a `Log` frame after the result. Off by default: the line costs channel time.

use std::fmt::Write as _;
use std::time::Instant;

/// The phases of one job, in the order they run (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the factory's VM (zero when it was ready).
    TakeVm,
    /// The memslots: deleting the last job's that do not fit, discarding the pages of those
    /// kept, mmap and KVM_SET_USER_MEMORY_REGION of the new ones.
    Memslots,
    /// Copying the runtime and the job's segments into guest memory.
    Copy,
    /// KVM_ENABLE_CAP NISV_TO_USER.
    Cap,
    /// KVM_ARM_PREFERRED_TARGET, KVM_ARM_VCPU_INIT, the entry registers.
    VcpuInit,
    /// Inside KVM_RUN (guest time, stage-2 faults, exits taken in the kernel).
    Run,
    /// Between KVM_RUNs: the VMM's exit handling and injections.
    Exits,
    /// Digests and readback of guest memory.
    Readback,
}

const PHASES: [(Phase, &str); 8] = [
    (Phase::TakeVm, "take_vm"),
    (Phase::Memslots, "memslots"),
    (Phase::Copy, "copy"),
    (Phase::Cap, "cap"),
    (Phase::VcpuInit, "vcpu_init"),
    (Phase::Run, "kvm_run"),
    (Phase::Exits, "exits"),
    (Phase::Readback, "readback"),
];

/// Accumulated time per phase for one job, plus the KVM_RUN count and how the VM was got.
#[derive(Debug)]
pub struct Profile {
    us: [u64; PHASES.len()],
    mark: Instant,
    pub runs: u32,
    /// "fresh" (made by the factory), "inline" (made on the job path) or "reused".
    pub vm: &'static str,
    /// Memslots kept registered from the VM's last job (their pages discarded).
    pub kept_slots: usize,
    /// Within Memslots: deleting and discarding the old slots, of which discarding, and making
    /// the new ones.
    pub layout_us: [u64; 3],
    /// Profiling is on: also read the vCPU's exit counters around the run.
    pub enabled: bool,
    /// The exit counters' increase over the job's run.
    pub exits: Vec<(&'static str, u64)>,
    /// The factory's teardown and creation times for this job's VM.
    pub factory: Option<crate::job::FactoryCost>,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            us: [0; PHASES.len()],
            mark: Instant::now(),
            runs: 0,
            vm: "none",
            kept_slots: 0,
            layout_us: [0; 3],
            enabled: false,
            exits: Vec::new(),
            factory: None,
        }
    }
}

impl Profile {
    pub fn new(enabled: bool) -> Profile {
        Profile { enabled, ..Profile::default() }
    }

    /// Charge the time since the last mark to `phase` and start a new mark.
    pub fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        self.us[phase as usize] += now.duration_since(self.mark).as_micros() as u64;
        self.mark = now;
    }

    /// One line: `vm=reused runs=3 take_vm=0 alloc=120 ...` (microseconds).
    pub fn line(&self, seq: u32, total_us: u64) -> String {
        let mut s = format!("agent profile seq {seq}: total={total_us}us vm={} kept_slots={} runs={}", self.vm, self.kept_slots, self.runs);
        for (i, (_, name)) in PHASES.iter().enumerate() {
            let _ = write!(s, " {name}={}", self.us[i]);
        }
        let [old, discard, new] = self.layout_us;
        let _ = write!(s, " slots_old={old} slots_discard={discard} slots_new={new}");
        for (name, n) in &self.exits {
            let _ = write!(s, " n_{name}={n}");
        }
        if let Some(c) = self.factory {
            let _ = write!(s, " factory_teardown={} factory_create={}", c.teardown_us, c.create_us);
        }
        s
    }
}

/// The vCPU's exit counters from KVM's binary statistics (api.rst 4.133 KVM_GET_STATS_FD,
/// Documentation/virt/kvm/api.rst "The binary statistics"; arm64's are arch/arm64/kvm/guest.c
/// kvm_vcpu_stats_desc: `exits` counts every exit from the guest, stage-2 faults included).
#[derive(Debug)]
pub struct ExitStats {
    fd: std::os::fd::OwnedFd,
    /// (name, byte offset in the file) of the counters read.
    counters: Vec<(&'static str, u64)>,
}

/// The counters read, in this order.
const COUNTERS: [&str; 5] = ["exits", "mmio_exit_kernel", "mmio_exit_user", "wfi_exit_stat", "hvc_exit_stat"];

impl ExitStats {
    pub fn open(vcpu: &kvm_ioctls::VcpuFd) -> Result<ExitStats, String> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // KVM_GET_STATS_FD = _IO(KVMIO, 0xce).
        // SAFETY: an ioctl with no argument on a vCPU fd; it returns a new fd or -1.
        let raw = unsafe { libc::ioctl(vcpu.as_raw_fd(), 0xaece as _) };
        if raw < 0 {
            return Err(format!("KVM_GET_STATS_FD: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: raw is a new fd owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mut head = [0u8; 24];
        pread(&fd, &mut head, 0)?;
        let word = |i: usize| u32::from_le_bytes([head[i * 4], head[i * 4 + 1], head[i * 4 + 2], head[i * 4 + 3]]) as u64;
        let (name_size, num_desc, desc_offset, data_offset) = (word(1), word(2), word(4), word(5));
        let desc_len = 16 + name_size;
        let mut descs = vec![0u8; (desc_len * num_desc) as usize];
        pread(&fd, &mut descs, desc_offset)?;
        let mut counters = Vec::new();
        for want in COUNTERS {
            for d in descs.chunks_exact(desc_len as usize) {
                let name = d[16..].split(|&b| b == 0).next().unwrap_or_default();
                if name == want.as_bytes() {
                    let offset = u32::from_le_bytes([d[8], d[9], d[10], d[11]]) as u64;
                    counters.push((want, data_offset + offset));
                }
            }
        }
        Ok(ExitStats { fd, counters })
    }

    /// The counters now.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        self.counters
            .iter()
            .map(|&(name, at)| {
                let mut b = [0u8; 8];
                (name, if pread(&self.fd, &mut b, at).is_ok() { u64::from_le_bytes(b) } else { 0 })
            })
            .collect()
    }
}

fn pread(fd: &std::os::fd::OwnedFd, buf: &mut [u8], at: u64) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), at as libc::off_t) };
    if n != buf.len() as isize {
        return Err(format!("reading KVM statistics: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
