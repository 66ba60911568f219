//! The real-KVM backend: the static agent (`harness/kvm-agent`) drives `/dev/kvm` in one of
//! three places, and `live` does the rest (lower, send, decode):
//!
//! - **default**: the Debian arm64 kernel `ci/setup.sh` pins (build/kernel/default) booted by
//!   `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max`, with the agent
//!   as /init of an initramfs generated here (`initramfs`); the channel is the serial console;
//! - **`--kernel PATH`**: the same with a user's arm64 `Image` (an upstream KVM tree). Its
//!   config is checked first — from `config`/`.config` beside the Image, `.config` at the
//!   root of a kernel tree (`arch/arm64/boot/Image`), or the Image's embedded IKCONFIG — for
//!   the options in [`REQUIRED_CONFIG`]; what is missing is named in the error;
//! - **native**: on an arm64 Linux host with `/dev/kvm` the agent runs directly
//!   (`kvm-agent --stdio`), frames over pipes. Elsewhere this mode reports why it cannot run.
//!
//! Device memory: QEMU gets an `ivshmem-plain` PCI device whose BAR the agent maps for
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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::initramfs;
use super::live::{LiveBackend, Mailbox};
use super::qemu::{qemu_base_args, qemu_version, TargetConfig};
use super::Backend;
use crate::paths;

/// Kernel options the agent needs, with why. The kernel has no modules in our initramfs,
/// so everything must be built in (`=y`).
pub const REQUIRED_CONFIG: &[(&str, &str)] = &[
    ("CONFIG_ARM64", "an arm64 kernel"),
    ("CONFIG_VIRTUALIZATION", "the KVM menu"),
    ("CONFIG_KVM", "/dev/kvm (built in: the initramfs has no modules)"),
    ("CONFIG_BLK_DEV_INITRD", "the agent is /init of an initramfs"),
    ("CONFIG_BINFMT_ELF", "the agent is a static ELF"),
    ("CONFIG_DEVTMPFS", "the agent mounts devtmpfs to reach /dev/kvm and the console"),
    ("CONFIG_PROC_FS", "/proc/cmdline and /proc/sysrq-trigger"),
    ("CONFIG_SYSFS", "the MIDR from /sys"),
    ("CONFIG_SERIAL_AMBA_PL011", "the virt machine's UART carries the channel"),
    ("CONFIG_SERIAL_AMBA_PL011_CONSOLE", "console=ttyAMA0: panics reach the harness"),
];

/// Options that only some tests need; missing ones are reported, not fatal.
pub const OPTIONAL_CONFIG: &[(&str, &str)] = &[
    ("CONFIG_MAGIC_SYSRQ", "the panic-recovery test (trapdiff.panic_after)"),
    ("CONFIG_PRINTK", "kernel warnings forwarded from /dev/kmsg"),
    (
        "CONFIG_PCI_HOST_GENERIC",
        "the ivshmem device: Device-nGnRE slots and the job mailbox (without it, device cases are skipped and jobs crawl over the serial link)",
    ),
];

/// Size of the ivshmem BAR (a power of two, as for every PCI BAR): its last
/// [`MAILBOX_BYTES`] are the mailbox, the rest backs Device-nGnRE slots (all of one job's
/// device slots together must fit).
pub const SHARED_MEMORY_BYTES: u64 = 32 << 20;
/// The mailbox at the end of the BAR (the agent's `ivshmem::MAILBOX_SIZE`).
pub const MAILBOX_BYTES: u64 = 2 << 20;
/// The doorbell line that points the agent at a message in the mailbox (the agent's
/// `console::MAILBOX_MARKER`): `@TDM <offset> <len> <crc32>`, hex.
pub use trapdiff_arch::wire::MAILBOX_MARKER;
/// Messages shorter than this go over the serial link as they are.
const MAILBOX_THRESHOLD: usize = 256;

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
}

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

/// What the config check found.
#[derive(Clone, Debug, Default)]
pub struct KernelCheck {
    /// Where the config came from, or None when there was none to read.
    pub config_source: Option<String>,
    /// Optional options that are not set, with what they are for.
    pub notes: Vec<String>,
}

pub fn default_kernel() -> PathBuf {
    paths::default_kernel_dir().join("Image")
}

/// Build the kvm backend (boots lazily on the first case): a [`LiveBackend`] like the
/// refhyp's, plus the ivshmem mailbox under QEMU (jobs go through shared memory when the
/// agent offers it).
pub fn backend(opts: &KvmOptions) -> Result<LiveBackend, KvmError> {
    let (mut config, platform) = target_config(opts)?;
    if opts.native {
        return Ok(LiveBackend::new("kvm", config, Some(platform)));
    }
    let shm = SharedMemory::create()?;
    for a in config.args.iter_mut() {
        if a.starts_with("memory-backend-memfd,id=tddev,") {
            *a = format!("memory-backend-file,id=tddev,mem-path={},size={SHARED_MEMORY_BYTES},share=on", shm.path.display());
        }
    }
    Ok(LiveBackend::new("kvm", config, Some(platform)).with_mailbox(Box::new(shm)))
}

/// The `--backends kvm` entry for the runner: `instances` persistent targets side by side
/// (native mode: one). The configuration is checked now, so a kernel that lacks an option
/// fails the run up front with the list of what is missing.
pub fn spec(opts: KvmOptions, instances: usize) -> Result<crate::run::BackendSpec, String> {
    target_config(&opts).map_err(|e| e.to_string())?;
    let instances = if opts.native { 1 } else { instances.max(1) };
    Ok(crate::run::BackendSpec {
        name: "kvm".into(),
        make: Box::new(move || backend(&opts).map(|b| Box::new(b) as Box<dyn Backend>).map_err(|e| e.to_string())),
        instances,
    })
}

/// The file behind QEMU's ivshmem memory: the harness writes mailbox messages into it.
#[derive(Debug)]
struct SharedMemory {
    path: PathBuf,
    file: File,
    /// Byte offset of the mailbox in the file.
    mailbox: u64,
    /// Which half of the mailbox the next message goes to (a message is never overwritten
    /// while the agent may still be reading it).
    half: u64,
}

impl SharedMemory {
    fn create() -> Result<SharedMemory, KvmError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = paths::build_dir().join("kvm");
        std::fs::create_dir_all(&dir).map_err(|e| KvmError::Io(dir.clone(), e))?;
        remove_stale(&dir);
        let path = dir.join(format!("shm-{}-{}.mem", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).map_err(|e| KvmError::Io(path.clone(), e))?;
        let mailbox = SHARED_MEMORY_BYTES - MAILBOX_BYTES;
        file.set_len(SHARED_MEMORY_BYTES).map_err(|e| KvmError::Io(path.clone(), e))?;
        Ok(SharedMemory { path, file, mailbox, half: 0 })
    }

    /// Put `payload` in the mailbox; returns the doorbell line.
    fn post(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let offset = self.half * (MAILBOX_BYTES / 2);
        self.half ^= 1;
        self.file.write_all_at(payload, self.mailbox + offset)?;
        let crc = trapdiff_arch::crc32::crc32(payload);
        Ok(trapdiff_arch::wire::doorbell(offset, payload.len(), crc))
    }
}

/// Remove shared-memory files of harness processes that are gone (killed before Drop ran).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("shm-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Mailbox for SharedMemory {
    fn takes(&self, len: usize) -> bool {
        len >= MAILBOX_THRESHOLD && (len as u64) <= MAILBOX_BYTES / 2
    }
    fn post(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        SharedMemory::post(self, payload)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The target to start and the platform string for outcome metadata.
pub fn target_config(opts: &KvmOptions) -> Result<(TargetConfig, String), KvmError> {
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
    // (`backend()` backs it with a file instead, to write the mailbox at its end.)
    args.extend([
        "-object".into(),
        format!("memory-backend-memfd,id=tddev,size={SHARED_MEMORY_BYTES},share=on"),
        "-device".into(),
        "ivshmem-plain,memdev=tddev".into(),
    ]);
    Ok((TargetConfig { program: "qemu-system-aarch64".into(), args, boot_timeout: opts.boot_timeout }, format!("qemu {qemu}")))
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

/// Check a user kernel: an arm64 Image whose config has [`REQUIRED_CONFIG`].
pub fn check_kernel(image: &Path) -> Result<KernelCheck, KvmError> {
    if !image.is_file() {
        return Err(KvmError::NoKernel(image.to_path_buf()));
    }
    let raw = std::fs::read(image).map_err(|e| KvmError::Io(image.to_path_buf(), e))?;
    // QEMU also takes a gzip-compressed Image (a Debian vmlinuz); look inside for the checks.
    let data = if raw.starts_with(&[0x1f, 0x8b]) { gunzip(&raw).unwrap_or(raw) } else { raw };
    // Documentation/arch/arm64/booting.rst: magic "ARM\x64" at offset 56 of the Image header.
    if data.get(0x38..0x3c) != Some(b"ARM\x64".as_slice()) {
        return Err(KvmError::NotArm64Image(image.to_path_buf()));
    }
    let Some((source, config)) = find_config(image, &data) else {
        return Ok(KernelCheck {
            config_source: None,
            notes: vec![format!(
                "no config found for {} (looked for config/.config beside it, .config at the tree root, and an embedded IKCONFIG): options not checked",
                image.display()
            )],
        });
    };
    let set = |opt: &str| config.lines().any(|l| l.trim() == format!("{opt}=y"));
    let missing: Vec<String> = REQUIRED_CONFIG
        .iter()
        .filter(|(o, _)| !set(o))
        .map(|(o, why)| {
            let module = config.lines().any(|l| l.trim() == format!("{o}=m"));
            format!("  {o}=y ({why}){}", if module { " — it is =m, but the initramfs has no modules" } else { "" })
        })
        .collect();
    if !missing.is_empty() {
        return Err(KvmError::KernelConfig { path: image.to_path_buf(), config_from: source, missing: missing.join("\n") });
    }
    let notes = OPTIONAL_CONFIG.iter().filter(|(o, _)| !set(o)).map(|(o, why)| format!("{o} is not set: no {why}")).collect();
    Ok(KernelCheck { config_source: Some(source), notes })
}

/// The kernel config: a file beside the Image, the tree's .config, or IKCONFIG.
fn find_config(image: &Path, data: &[u8]) -> Option<(String, String)> {
    let dir = image.parent().unwrap_or(Path::new("."));
    let mut candidates = vec![dir.join("config"), dir.join(".config")];
    // arch/arm64/boot/Image -> the tree root is three levels up.
    if let Some(root) = dir.parent().and_then(Path::parent).and_then(Path::parent) {
        candidates.push(root.join(".config"));
    }
    for c in candidates {
        if let Ok(text) = std::fs::read_to_string(&c) {
            if text.contains("CONFIG_") {
                return Some((c.display().to_string(), text));
            }
        }
    }
    ikconfig(data).map(|t| ("the Image's embedded IKCONFIG".to_string(), t))
}

/// kernel/configs.c: with CONFIG_IKCONFIG the gzipped config sits between the markers
/// "IKCFG_ST" and "IKCFG_ED".
fn ikconfig(data: &[u8]) -> Option<String> {
    let start = find(data, b"IKCFG_ST")? + 8;
    let len = find(&data[start..], b"IKCFG_ED")?;
    let text = gunzip(&data[start..start + len])?;
    String::from_utf8(text).ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decompress with the system gzip (ci/setup.sh installs it; no inflate crate needed).
fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let input = data.to_vec();
    // Feed from a thread: gzip's output would otherwise fill its pipe while we still write.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().ok()?;
    let _ = feeder.join();
    // A trailing-garbage warning (exit 2) still decompressed the stream.
    (!out.stdout.is_empty()).then_some(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(dir: &Path, config: Option<&str>) -> PathBuf {
        let mut img = vec![0u8; 0x40];
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let p = dir.join("Image");
        std::fs::write(&p, img).expect("write image");
        if let Some(c) = config {
            std::fs::write(dir.join("config"), c).expect("write config");
        }
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trapdiff-kvm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp dir");
        d
    }

    #[test]
    fn missing_options_are_named() {
        let d = tmpdir("missing");
        let cfg: String = REQUIRED_CONFIG.iter().filter(|(o, _)| *o != "CONFIG_KVM" && *o != "CONFIG_DEVTMPFS").map(|(o, _)| format!("{o}=y\n")).collect();
        let img = fake_image(&d, Some(&(cfg + "CONFIG_KVM=m\n")));
        let err = check_kernel(&img).expect_err("must fail").to_string();
        assert!(err.contains("CONFIG_KVM=y") && err.contains("it is =m"), "{err}");
        assert!(err.contains("CONFIG_DEVTMPFS=y"), "{err}");
        assert!(!err.contains("CONFIG_SYSFS"), "{err}");
    }

    #[test]
    fn complete_config_passes_and_notes_optional() {
        let d = tmpdir("ok");
        let cfg: String = REQUIRED_CONFIG.iter().map(|(o, _)| format!("{o}=y\n")).collect();
        let img = fake_image(&d, Some(&cfg));
        let check = check_kernel(&img).expect("passes");
        assert!(check.notes.iter().any(|n| n.contains("CONFIG_MAGIC_SYSRQ")));
    }

    #[test]
    fn not_an_image_is_refused() {
        let d = tmpdir("notimg");
        let p = d.join("Image");
        std::fs::write(&p, b"#!/bin/sh\n").expect("write");
        assert!(matches!(check_kernel(&p), Err(KvmError::NotArm64Image(_))));
    }

    #[test]
    fn embedded_ikconfig_is_read() {
        let d = tmpdir("ikcfg");
        let cfg: String = REQUIRED_CONFIG.iter().map(|(o, _)| format!("{o}=y\n")).collect();
        let Ok(mut gz) = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() else {
            eprintln!("skipped: no gzip");
            return;
        };
        {
            use std::io::Write;
            let mut stdin = gz.stdin.take().expect("stdin");
            stdin.write_all(cfg.as_bytes()).expect("write");
        }
        let packed = gz.wait_with_output().expect("gzip").stdout;
        let mut img = vec![0u8; 0x40];
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        img.extend_from_slice(b"IKCFG_ST");
        img.extend_from_slice(&packed);
        img.extend_from_slice(b"IKCFG_ED");
        let p = d.join("Image");
        std::fs::write(&p, img).expect("write");
        let check = check_kernel(&p).expect("passes");
        assert_eq!(check.config_source.as_deref(), Some("the Image's embedded IKCONFIG"));
    }

    #[test]
    fn default_kernel_config_passes_when_installed() {
        let k = default_kernel();
        if !k.is_file() {
            eprintln!("skipped: {} not installed (bash ci/setup.sh)", k.display());
            return;
        }
        let check = check_kernel(&k).expect("the pinned Debian kernel has every required option");
        assert!(check.config_source.is_some());
    }
}
