//! The real-KVM backend: the static agent (`harness/kvm-agent`) drives `/dev/kvm` in one of
//! three places, and `live` does the rest (lower, send, decode):
//!
//! - **default**: the Debian arm64 kernel `ci/setup.sh` pins (build/kernel/default) booted by
//!   `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max`, with the agent
//!   as /init of an initramfs generated here (`initramfs`); the channel is the serial console;
//! - **`--kernel PATH`**: the same with a user's arm64 `Image` (an upstream KVM tree). Its
//!   config is checked first for the options the agent needs (`kernel_config`); what is
//!   missing is named in the error;
//! - **native**: on an arm64 Linux host with `/dev/kvm` the agent runs directly
//!   (`kvm-agent --stdio`), frames over pipes. Elsewhere this mode reports why it cannot run.
//!
//! Device memory and the mailbox: QEMU gets an `ivshmem-plain` PCI device, backed by a file
//! the harness shares (`mailbox::SharedFile`), whose last `trapdiff_arch::mailbox::SIZE`
//! bytes are the mailbox for jobs and results; the agent maps the rest of the BAR for
//! `device` regions with stage-2 Device-nGnRE (a VM_PFNMAP mapping of non-RAM, which KVM maps
//! as a device at stage 2); Normal-NC needs a vfio-pci BAR (Linux >= 6.8) and is skipped.
//!
//! Kernel command line: `console=ttyAMA0 loglevel=1 panic=-1` (+ `-no-reboot`, so a
//! panicked kernel ends QEMU and the harness boots a fresh one). `loglevel=1` keeps all but
//! KERN_EMERG off the console so kernel messages cannot split a frame; the agent forwards
//! errors and warnings from /dev/kmsg as `Log` frames instead (scanned for findings like
//! console lines), and an oops or panic still reaches the console in full because die() and
//! panic() raise the console log level (console_verbose(), kernel/panic.c,
//! arch/arm64/kernel/traps.c). Test-only options the agent honours are in
//! `harness/kvm-agent/src/main.rs` (`trapdiff.panic_after=N`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::initramfs;
use super::kernel_config::check_kernel;
use super::live::LiveBackend;
use super::mailbox::SharedFile;
use super::qemu::{qemu_base_args, qemu_program, qemu_version, TargetConfig};
use crate::paths;

#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error("the KVM agent {0} is missing: run `bash ci/setup.sh` to build it")]
    NoAgent(PathBuf),
    #[error("the default kernel {0} is missing: run `bash ci/setup.sh` to download it")]
    NoDefaultKernel(PathBuf),
    #[error("kernel image {0} does not exist")]
    NoKernel(PathBuf),
    #[error("{0} is not an arm64 kernel Image (no \"ARM\\x64\" magic at offset 0x38); pass arch/arm64/boot/Image")]
    NotArm64Image(PathBuf),
    #[error("kernel {path} lacks options the KVM agent needs (config from {config_from}):\n{missing}\nrebuild with them set to y")]
    KernelConfig { path: PathBuf, config_from: String, missing: String },
    #[error("qemu-system-aarch64 is not installed: run `bash ci/setup.sh packages`")]
    NoQemu,
    #[error("native mode needs an arm64 Linux host with /dev/kvm: {0}")]
    NativeUnavailable(String),
    #[error("cannot read or write {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot make the ivshmem file: {0}")]
    Shared(std::io::Error),
}

/// Size of the ivshmem BAR (a power of two, as for every PCI BAR): its last
/// `trapdiff_arch::mailbox::SIZE` bytes are the mailbox, the rest backs Device-nGnRE slots
/// (all of one job's device slots together must fit).
pub const SHARED_MEMORY_BYTES: u64 = 32 << 20;

/// How to start the kvm backend.
#[derive(Clone, Debug)]
pub struct KvmOptions {
    /// A user kernel Image; `None`: the default kernel.
    pub kernel: Option<PathBuf>,
    /// Run the agent natively (arm64 host with /dev/kvm).
    pub native: bool,
    /// Guest RAM of the QEMU machine, MiB.
    pub memory_mib: u32,
    /// Extra kernel command-line words (tests: `trapdiff.panic_after=N`).
    pub extra_cmdline: Vec<String>,
    pub boot_timeout: Duration,
}

impl Default for KvmOptions {
    fn default() -> KvmOptions {
        KvmOptions { kernel: None, native: false, memory_mib: 512, extra_cmdline: Vec::new(), boot_timeout: Duration::from_secs(180) }
    }
}

pub fn default_kernel() -> PathBuf {
    paths::default_kernel_dir().join("Image")
}

/// Build the kvm backend (boots lazily on the first case): a [`LiveBackend`] like the
/// refhyp's, plus the ivshmem mailbox under QEMU (jobs and results go through shared memory
/// when the agent offers it; native mode has no ivshmem and keeps frames).
pub fn backend(opts: &KvmOptions) -> Result<LiveBackend, KvmError> {
    if opts.native {
        let (config, platform) = target_config(opts, None)?;
        return Ok(LiveBackend::new("kvm", config, Some(platform)));
    }
    let mailbox_at = SHARED_MEMORY_BYTES - trapdiff_arch::mailbox::SIZE as u64;
    let shm = SharedFile::create("kvm-ivshmem", SHARED_MEMORY_BYTES, mailbox_at).map_err(KvmError::Shared)?;
    let (config, platform) = target_config(opts, Some(&shm.path))?;
    Ok(LiveBackend::new("kvm", config, Some(platform)).with_mailbox(Box::new(shm)))
}

/// The target to start and the platform string for outcome metadata. `shared`: the file
/// behind the ivshmem BAR, whose end is the mailbox ([`backend`]);
/// without one the BAR is an anonymous memfd (Device-nGnRE slots work, no mailbox).
pub fn target_config(opts: &KvmOptions, shared: Option<&Path>) -> Result<(TargetConfig, String), KvmError> {
    let agent = paths::agent_binary();
    if !agent.is_file() {
        return Err(KvmError::NoAgent(agent));
    }
    if opts.native {
        native_available()?;
        let cfg = TargetConfig { program: agent, args: vec!["--stdio".into()], boot_timeout: opts.boot_timeout };
        return Ok((cfg, "native".into()));
    }
    let qemu = qemu_version().ok_or(KvmError::NoQemu)?;
    let kernel = match &opts.kernel {
        Some(k) => {
            check_kernel(k)?;
            k.clone()
        }
        None => {
            let k = default_kernel();
            if !k.is_file() {
                return Err(KvmError::NoDefaultKernel(k));
            }
            k
        }
    };
    let initrd = initramfs_for(&agent)?;
    let mut cmdline = String::from("console=ttyAMA0 loglevel=1 panic=-1");
    for w in &opts.extra_cmdline {
        cmdline.push(' ');
        cmdline.push_str(w);
    }
    let mut args = qemu_base_args(opts.memory_mib);
    // One vCPU: with two, the agent's VM factory thread would get its own, but MTTCG's extra
    // thread made the suite slower on a 2-core host (19 vs 23-28 cases/s, A/B runs).
    args.extend(["-smp".into(), "1".into()]);
    args.extend(["-kernel".into(), kernel.display().to_string(), "-initrd".into(), initrd.display().to_string(), "-append".into(), cmdline]);
    // Device memory for Device-nGnRE slots: an ivshmem BAR the agent maps through sysfs, so
    // KVM maps it at stage 2 as a device, the way a VMM passes a device BAR to its guest.
    let memdev = match shared {
        Some(path) => format!("memory-backend-file,id=tddev,mem-path={},size={SHARED_MEMORY_BYTES},share=on", path.display()),
        None => format!("memory-backend-memfd,id=tddev,size={SHARED_MEMORY_BYTES},share=on"),
    };
    args.extend(["-object".into(), memdev, "-device".into(), "ivshmem-plain,memdev=tddev".into()]);
    Ok((TargetConfig { program: qemu_program(), args, boot_timeout: opts.boot_timeout }, format!("qemu {qemu}")))
}

/// Native mode is possible here, or why not.
pub fn native_available() -> Result<(), KvmError> {
    if !cfg!(all(target_arch = "aarch64", target_os = "linux")) {
        return Err(KvmError::NativeUnavailable(format!("this host is {}-{}", std::env::consts::ARCH, std::env::consts::OS)));
    }
    if !Path::new("/dev/kvm").exists() {
        return Err(KvmError::NativeUnavailable("/dev/kvm does not exist (KVM not enabled, or the kernel did not boot at EL2)".into()));
    }
    Ok(())
}

/// The agent's initramfs, written once per content (named by a digest of the archive, so
/// parallel instances share it and a rebuilt agent or layout gets a new one).
fn initramfs_for(agent: &Path) -> Result<PathBuf, KvmError> {
    let bytes = std::fs::read(agent).map_err(|e| KvmError::Io(agent.to_path_buf(), e))?;
    let archive = initramfs::agent_initramfs(&bytes);
    let dir = paths::build_dir().join("kvm");
    std::fs::create_dir_all(&dir).map_err(|e| KvmError::Io(dir.clone(), e))?;
    let path = dir.join(format!("initramfs-{:016x}.cpio", trapdiff_arch::crc32::fnv1a64(&archive)));
    if !path.is_file() {
        // A temporary name unique per process and call: parallel instances (threads of one
        // harness, or several harnesses) may write the same archive at once.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".initramfs-{}-{n}.tmp", std::process::id()));
        std::fs::write(&tmp, &archive).map_err(|e| KvmError::Io(tmp.clone(), e))?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            if !path.is_file() {
                return Err(KvmError::Io(path.clone(), e));
            }
        }
        // Archives of earlier agent builds, unless a long-running harness may still boot one.
        let day = Duration::from_secs(24 * 3600);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let old = e.path();
            let is_archive = old.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("initramfs-") && n.ends_with(".cpio"));
            let stale = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > day);
            if is_archive && stale && old != path {
                let _ = std::fs::remove_file(old);
            }
        }
    }
    Ok(path)
}
