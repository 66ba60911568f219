//! A kernel's config as the kvm backend needs it: the options the agent cannot run without
//! ([`REQUIRED_CONFIG`]), those only some tests need ([`OPTIONAL_CONFIG`]), and where a
//! user kernel's config is found — `config`/`.config` beside the Image, `.config` at the root
//! of a kernel tree (`arch/arm64/boot/Image`), or the Image's embedded IKCONFIG.

use std::io::Read;
use std::path::Path;

use super::kvm::KvmError;

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

/// What the config check found.
#[derive(Clone, Debug, Default)]
pub struct KernelCheck {
    /// Where the config came from, or None when there was none to read.
    pub config_source: Option<String>,
    /// Optional options that are not set, with what they are for.
    pub notes: Vec<String>,
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

/// Decompress a gzip stream (a Debian vmlinuz, the IKCONFIG blob); trailing bytes after the
/// stream (the IKCFG_ED marker's neighbours) are ignored.
fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, cfg.as_bytes()).expect("compress");
        let packed = gz.finish().expect("compress");
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
        let k = crate::backend::kvm::default_kernel();
        if !k.is_file() {
            guest_payloads::skip::live(&format!("{} not installed (bash ci/setup.sh)", k.display()));
            return;
        }
        let check = check_kernel(&k).expect("the pinned Debian kernel has every required option");
        assert!(check.config_source.is_some());
    }
}
