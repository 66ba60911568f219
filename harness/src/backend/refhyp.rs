//! The refhyp backend: `oracles/refhyp` booted at EL2 by
//! `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max` (TCG), one boot per
//! instance; `live` lowers, sends and decodes. The channel is the PL011 (default) or a virtio
//! console (`TRAPDIFF_REFHYP_CHANNEL=virtio`) on QEMU's stdio.
//!
//! Boot: QEMU loads the ELF (`-kernel`) and enters it at EL2; the refhyp sends `Hello`
//! (caps: el1_32bit, nisv_to_user, inject_ext_dabt, and s2fwb when the CPU has FEAT_S2FWB),
//! takes `SetRuntime` (answers with a `Log`), then `Run` jobs. See oracles/refhyp/README.md.

use std::path::PathBuf;
use std::time::Duration;

use trapdiff_arch::quirk::Quirks;

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
    pub channel: Channel,
    /// Historical KVM bugs to re-introduce (`trapdiff_arch::quirk`); none by default.
    pub quirks: Quirks,
}

/// Which QEMU device carries the harness channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The PL011 on stdio (the default): QEMU moves it one byte per host syscall, so a
    /// case costs a few milliseconds of channel time, but it has never stalled.
    Pl011,
    /// A virtio console on stdio: whole buffers per transfer, 5-10x the PL011's case rate,
    /// but QEMU stops delivering input to it about once per 500-1000 jobs (the harness
    /// recovers by restarting; see oracles/refhyp/README.md).
    Virtio,
}

impl Channel {
    /// `TRAPDIFF_REFHYP_CHANNEL=virtio` picks the virtio console; anything else the PL011.
    pub fn from_env() -> Channel {
        match std::env::var("TRAPDIFF_REFHYP_CHANNEL").as_deref() {
            Ok("virtio") => Channel::Virtio,
            _ => Channel::Pl011,
        }
    }
}

impl Default for RefhypOptions {
    fn default() -> RefhypOptions {
        RefhypOptions { image: None, memory_mib: 1024, boot_timeout: Duration::from_secs(30), channel: Channel::from_env(), quirks: Quirks::NONE }
    }
}

/// The refhyp ELF `ci/setup.sh` builds (soft-float target: EL2 code never touches the FP
/// registers, which hold the guest's state).
pub fn image_path() -> PathBuf {
    paths::refhyp_image()
}

/// The QEMU command line for `image` with `channel` on QEMU's stdio. The refhyp uses a
/// virtio console when it finds one and the PL011 otherwise.
pub fn qemu_args(image: &std::path::Path, memory_mib: u32, channel: Channel) -> Vec<String> {
    if channel == Channel::Pl011 {
        let mut args = qemu_base_args(memory_mib);
        args.extend(["-kernel".to_string(), image.display().to_string()]);
        return args;
    }
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
    let cfg = TargetConfig {
        program: super::qemu::qemu_program(),
        args: qemu_args(&image, opts.memory_mib.max(1024), opts.channel),
        boot_timeout: opts.boot_timeout,
    };
    Ok((cfg, format!("qemu {qemu}")))
}

/// Build the refhyp backend (boots lazily on the first case).
pub fn backend(opts: &RefhypOptions) -> Result<LiveBackend, RefhypError> {
    let (config, platform) = target_config(opts)?;
    let mut b = LiveBackend::new("refhyp", config, Some(platform));
    b.quirks = opts.quirks;
    Ok(b)
}
