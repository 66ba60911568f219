//! The refhyp backend: `oracles/refhyp` booted at EL2 by
//! `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max` (TCG), one boot per
//! instance; `live` lowers, sends and decodes. The channel is a virtio console on QEMU's stdio.
//!
//! Boot: QEMU loads the ELF (`-kernel`) and enters it at EL2; the refhyp sends `Hello`
//! (caps: el1_32bit, nisv_to_user, inject_ext_dabt, and s2fwb when the CPU has FEAT_S2FWB),
//! takes `SetRuntime` (answers with a `Log`), then `Run` jobs. See oracles/refhyp/README.md.

use std::path::PathBuf;
use std::time::Duration;

use super::live::LiveBackend;
use super::qemu::{qemu_base_args, qemu_version, TargetConfig};
use crate::paths;

#[derive(Debug, thiserror::Error)]
pub enum RefhypError {
    #[error("the refhyp image {0} is missing: run `bash ci/setup.sh` to build it")]
    NoImage(PathBuf),
    #[error("qemu-system-aarch64 is not installed: run `bash ci/setup.sh packages`")]
    NoQemu,
}

/// How to start the refhyp backend.
#[derive(Clone, Debug)]
pub struct RefhypOptions {
    /// The refhyp ELF; `None`: the one `ci/setup.sh` builds ([`image_path`]).
    pub image: Option<PathBuf>,
    /// Guest RAM of the QEMU machine, MiB. The refhyp's memory map needs 1 GiB
    /// (oracles/refhyp/src/el2/mod.rs).
    pub memory_mib: u32,
    pub boot_timeout: Duration,
}

impl Default for RefhypOptions {
    fn default() -> RefhypOptions {
        RefhypOptions { image: None, memory_mib: 1024, boot_timeout: Duration::from_secs(30) }
    }
}

/// The refhyp ELF `ci/setup.sh` builds (soft-float target: EL2 code never touches the FP
/// registers, which hold the guest's state).
pub fn image_path() -> PathBuf {
    paths::refhyp_image()
}

/// The QEMU command line for `image`. The channel is a virtio console on QEMU's stdio
/// (whole buffers per transfer; the PL011 moves one byte per host syscall and is about ten
/// times slower); the refhyp falls back to the PL011 when it finds no virtio console.
pub fn qemu_args(image: &std::path::Path, memory_mib: u32) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut base = qemu_base_args(memory_mib).into_iter();
    while let Some(a) = base.next() {
        // Drop `-serial stdio`: stdio belongs to the virtio console.
        if a == "-serial" {
            base.next();
            continue;
        }
        args.push(a);
    }
    for a in ["-chardev", "stdio,id=td,signal=off", "-device", "virtio-serial-device", "-device", "virtconsole,chardev=td", "-kernel"] {
        args.push(a.to_string());
    }
    args.push(image.display().to_string());
    args
}

/// The target to start and the platform string for outcome metadata.
pub fn target_config(opts: &RefhypOptions) -> Result<(TargetConfig, String), RefhypError> {
    let image = opts.image.clone().unwrap_or_else(image_path);
    if !image.is_file() {
        return Err(RefhypError::NoImage(image));
    }
    let qemu = qemu_version().ok_or(RefhypError::NoQemu)?;
    let cfg = TargetConfig { program: "qemu-system-aarch64".into(), args: qemu_args(&image, opts.memory_mib.max(1024)), boot_timeout: opts.boot_timeout };
    Ok((cfg, format!("qemu {qemu}")))
}

/// Build the refhyp backend (boots lazily on the first case).
pub fn backend(opts: &RefhypOptions) -> Result<LiveBackend, RefhypError> {
    let (config, platform) = target_config(opts)?;
    Ok(LiveBackend::new("refhyp", config, Some(platform)))
}
