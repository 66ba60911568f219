//! The refhyp backend: `oracles/refhyp` booted at EL2 by
//! `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max` (TCG), one boot per
//! instance; `live` lowers, sends and decodes. The channel is the PL011 on QEMU's stdio plus
//! a mailbox in guest RAM: QEMU's RAM is a file the harness shares
//! (`-object memory-backend-file,...,share=on`, `mailbox::SharedFile`), the refhyp keeps
//! `trapdiff_arch::mailbox::REFHYP_PA` free for it, and jobs and results go through it with
//! only doorbell lines on the PL011 (which QEMU feeds about a byte per main-loop turn).
//!
//! Boot: QEMU loads the ELF (`-kernel`) and enters it at EL2; the refhyp sends `Hello`
//! (caps: el1_32bit, nisv_to_user, inject_ext_dabt, mailbox, and s2fwb when the CPU has
//! FEAT_S2FWB), takes `SetRuntime` (answers with a `Log`), then `Run` jobs. See
//! oracles/refhyp/README.md.

use std::path::PathBuf;
use std::time::Duration;

use trapdiff_arch::quirk::Quirks;

use super::live::LiveBackend;
use super::mailbox::SharedFile;
use super::qemu::{qemu_base_args, qemu_version, TargetConfig};
use crate::paths;

#[derive(Debug, thiserror::Error)]
pub enum RefhypError {
    #[error("the refhyp image {0} is missing: run `bash ci/setup.sh` to build it")]
    NoImage(PathBuf),
    #[error("qemu-system-aarch64 is not installed: run `bash ci/setup.sh packages`")]
    NoQemu,
    #[error("cannot make the file behind the refhyp's RAM: {0}")]
    Shared(std::io::Error),
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
    /// Historical KVM bugs to re-introduce (`trapdiff_arch::quirk`); none by default.
    pub quirks: Quirks,
}

impl Default for RefhypOptions {
    fn default() -> RefhypOptions {
        RefhypOptions { image: None, memory_mib: 1024, boot_timeout: Duration::from_secs(30), quirks: Quirks::NONE }
    }
}

/// The refhyp ELF `ci/setup.sh` builds (soft-float target: EL2 code never touches the FP
/// registers, which hold the guest's state).
pub fn image_path() -> PathBuf {
    paths::refhyp_image()
}

/// The QEMU command line for `image`. `ram_file`: the file to back guest RAM with, shared
/// with the harness (the mailbox lives in it); without one RAM is private and only frames
/// travel.
pub fn qemu_args(image: &std::path::Path, memory_mib: u32, ram_file: Option<&std::path::Path>) -> Vec<String> {
    let mut args = qemu_base_args(memory_mib);
    if let Some(path) = ram_file {
        if let Some(machine) = args.iter().position(|a| a == "-M").map(|i| i + 1) {
            args[machine].push_str(",memory-backend=tdram");
        }
        args.extend(["-object".to_string(), format!("memory-backend-file,id=tdram,size={memory_mib}M,mem-path={},share=on", path.display())]);
    }
    args.extend(["-kernel".to_string(), image.display().to_string()]);
    args
}

/// The target to start and the platform string for outcome metadata (`ram_file`: see
/// [`qemu_args`]).
pub fn target_config(opts: &RefhypOptions, ram_file: Option<&std::path::Path>) -> Result<(TargetConfig, String), RefhypError> {
    let image = opts.image.clone().unwrap_or_else(image_path);
    if !image.is_file() {
        return Err(RefhypError::NoImage(image));
    }
    let qemu = qemu_version().ok_or(RefhypError::NoQemu)?;
    let cfg = TargetConfig { program: super::qemu::qemu_program(), args: qemu_args(&image, memory_mib(opts), ram_file), boot_timeout: opts.boot_timeout };
    Ok((cfg, format!("qemu {qemu}")))
}

/// The refhyp's memory map needs 1 GiB (oracles/refhyp/src/el2/mod.rs).
fn memory_mib(opts: &RefhypOptions) -> u32 {
    opts.memory_mib.max(1024)
}

/// Build the refhyp backend (boots lazily on the first case), with its RAM file and mailbox.
pub fn backend(opts: &RefhypOptions) -> Result<LiveBackend, RefhypError> {
    let ram = SharedFile::create("refhyp-ram", u64::from(memory_mib(opts)) << 20, trapdiff_arch::mailbox::REFHYP_FILE_OFFSET).map_err(RefhypError::Shared)?;
    let (config, platform) = target_config(opts, Some(&ram.path))?;
    let mut b = LiveBackend::new("refhyp", config, Some(platform)).with_mailbox(Box::new(ram));
    b.quirks = opts.quirks;
    Ok(b)
}
