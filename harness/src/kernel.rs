//! `trapdiff kernel build SRC [--out DIR]`: cross-build an arm64 kernel Image from a source
//! tree with `make O=DIR ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-`, configured from
//! `ci/kernel.config` on top of allnoconfig (KVM, PCI for the ivshmem BAR, PL011 console,
//! devtmpfs, initramfs; everything else off), so a cold build takes minutes on 2 cores.
//!
//! Rebuilds are incremental: the configuration step runs again only when the fragment, the
//! tree's Kconfig files or the source path changed (a stamp in DIR says which were used);
//! make does the rest. The build's output goes to `DIR/build.log`; on failure its tail is
//! printed. The Image is `DIR/arch/arm64/boot/Image`, with `DIR/.config` at the build root,
//! where the kvm backend's config check looks (`backend::kernel_config::check_kernel`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::paths;

pub const ARCH: &str = "arm64";
pub const CROSS_COMPILE: &str = "aarch64-linux-gnu-";
/// Written into DIR after a configuration step: what it was made from.
const STAMP: &str = ".trapdiff-config-stamp";
pub const LOG: &str = "build.log";

/// The repository's config fragment.
pub fn fragment_path() -> PathBuf {
    paths::root().join("ci").join("kernel.config")
}

/// Default output directory: build/kernels/<name of SRC>.
pub fn default_out(src: &Path) -> PathBuf {
    let name = src.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "kernel".into());
    paths::build_dir().join("kernels").join(name)
}

/// The Image a build in `out` produces.
pub fn image_path(out: &Path) -> PathBuf {
    out.join("arch").join(ARCH).join("boot").join("Image")
}

/// One option of a fragment: `CONFIG_X=value`, or `# CONFIG_X is not set` (value "n").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigOption {
    pub name: String,
    pub value: String,
}

/// The options of a config fragment (or of a whole .config), in order.
pub fn parse_config(text: &str) -> Vec<ConfigOption> {
    let mut v = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ").and_then(|r| r.strip_suffix(" is not set")) {
            if rest.starts_with("CONFIG_") {
                v.push(ConfigOption { name: rest.to_string(), value: "n".into() });
            }
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") && !line.starts_with('#') {
                v.push(ConfigOption { name: name.trim().to_string(), value: value.trim().to_string() });
            }
        }
    }
    v
}

/// The fragment's options a resolved .config does not have as asked, each as
/// `CONFIG_X=want (got: ...)`. An option absent from .config counts as "n".
pub fn unmet_options(fragment: &str, config: &str) -> Vec<String> {
    let got: std::collections::BTreeMap<String, String> = parse_config(config).into_iter().map(|o| (o.name, o.value)).collect();
    parse_config(fragment)
        .into_iter()
        .filter_map(|want| {
            let have = got.get(&want.name).map(String::as_str).unwrap_or("n");
            (have != want.value).then(|| {
                format!(
                    "{}={} (got: {})",
                    want.name,
                    want.value,
                    if got.contains_key(&want.name) { have.to_string() } else { "not present: a dependency is missing, or no such option in this tree".into() }
                )
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} is not a kernel source tree (no Makefile and arch/arm64/)")]
    NotATree(PathBuf),
    #[error("`{tool}` is not installed (package {package}): run `bash ci/setup.sh kernel-tools`")]
    MissingTool { tool: String, package: String },
    #[error("cannot read the config fragment {0}: {1}")]
    Fragment(PathBuf, std::io::Error),
    #[error("the kernel configuration lacks options of {fragment} (unmet dependencies, or options this tree does not have):\n  {}", .unmet.join("\n  "))]
    Unmet { fragment: PathBuf, unmet: Vec<String> },
    #[error("`make {step}` failed (exit {status}); the last lines of {log}:\n{tail}")]
    Make { step: String, status: String, log: PathBuf, tail: String },
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl BuildError {
    /// One line, without the log's tail (for step logs).
    pub fn summary(&self) -> String {
        match self {
            BuildError::Make { step, status, log, .. } => format!("`make {step}` failed (exit {status}), log {}", log.display()),
            other => other.to_string().lines().next().unwrap_or_default().to_string(),
        }
    }
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct Built {
    pub image: PathBuf,
    /// `include/config/kernel.release`.
    pub release: String,
    /// Whether the configuration step ran (false: the stamp matched).
    pub configured: bool,
    pub seconds: f64,
}

/// Tools the build calls, with the Debian package that has each.
const TOOLS: &[(&str, &str)] =
    &[("make", "make"), ("gcc", "gcc"), ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"), ("flex", "flex"), ("bison", "bison"), ("bc", "bc")];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The first missing build tool, if any.
pub fn check_tools() -> Result<(), BuildError> {
    for (tool, package) in TOOLS {
        if !on_path(tool) {
            return Err(BuildError::MissingTool { tool: tool.to_string(), package: package.to_string() });
        }
    }
    Ok(())
}

/// FNV-1a over the fragment, the source path and every Kconfig file of the tree (sorted by
/// path), so a changed option or dependency anywhere reconfigures.
fn config_stamp(src: &Path, fragment: &str) -> Result<String, BuildError> {
    let mut files = Vec::new();
    kconfig_files(src, &mut files).map_err(|e| BuildError::Io(src.to_path_buf(), e))?;
    files.sort();
    let mut h = Fnv::new();
    h.add(fragment.as_bytes());
    h.add(src.as_os_str().as_encoded_bytes());
    for f in &files {
        h.add(f.as_os_str().as_encoded_bytes());
        h.add(&std::fs::read(f).map_err(|e| BuildError::Io(f.clone(), e))?);
    }
    Ok(format!("{:016x} {} Kconfig files", h.0, files.len()))
}

struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

fn kconfig_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ty = e.file_type()?;
        if ty.is_dir() {
            if !name.starts_with('.') {
                kconfig_files(&e.path(), out)?;
            }
        } else if ty.is_file() && name.starts_with("Kconfig") {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run `make O=out ARCH=arm64 CROSS_COMPILE=... args` in `src`, appending to the log.
fn make(src: &Path, out: &Path, log: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<(), BuildError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| BuildError::Io(log.to_path_buf(), e))?;
    let _ = writeln!(f, "### make {}", args.join(" "));
    let err = f.try_clone().map_err(|e| BuildError::Io(log.to_path_buf(), e))?;
    let mut cmd = Command::new("make");
    cmd.current_dir(src)
        .arg(format!("O={}", out.display()))
        .arg(format!("ARCH={ARCH}"))
        .arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().map_err(|e| BuildError::Io(PathBuf::from("make"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Make {
            step: args.join(" "),
            status: status.code().map(|c| c.to_string()).unwrap_or_else(|| status.to_string()),
            log: log.to_path_buf(),
            tail: tail(log, 40),
        })
    }
}

/// Build `src` into `out` with `jobs` parallel jobs. Progress goes to stderr.
pub fn build(src: &Path, out: &Path, jobs: usize) -> Result<Built, BuildError> {
    let started = Instant::now();
    let src = src.canonicalize().map_err(|e| BuildError::Io(src.to_path_buf(), e))?;
    if !src.join("Makefile").is_file() || !src.join("arch").join(ARCH).is_dir() {
        return Err(BuildError::NotATree(src));
    }
    check_tools()?;
    let frag_path = fragment_path();
    let fragment = std::fs::read_to_string(&frag_path).map_err(|e| BuildError::Fragment(frag_path.clone(), e))?;
    std::fs::create_dir_all(out).map_err(|e| BuildError::Io(out.to_path_buf(), e))?;
    let out = out.canonicalize().map_err(|e| BuildError::Io(out.to_path_buf(), e))?;
    let log = out.join(LOG);
    std::fs::write(&log, "").map_err(|e| BuildError::Io(log.clone(), e))?;
    let stamp = config_stamp(&src, &fragment)?;
    let stamp_path = out.join(STAMP);
    let config = out.join(".config");
    let configured = !(config.is_file() && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim() == stamp));
    if configured {
        eprintln!("kernel: configuring {} (allnoconfig + {})", out.display(), frag_path.display());
        let _ = std::fs::remove_file(&stamp_path);
        make(&src, &out, &log, &["allnoconfig"], &[("KCONFIG_ALLCONFIG", &frag_path)])?;
        make(&src, &out, &log, &["olddefconfig"], &[])?;
        let resolved = std::fs::read_to_string(&config).map_err(|e| BuildError::Io(config.clone(), e))?;
        let unmet = unmet_options(&fragment, &resolved);
        if !unmet.is_empty() {
            return Err(BuildError::Unmet { fragment: frag_path, unmet });
        }
        std::fs::write(&stamp_path, format!("{stamp}\n")).map_err(|e| BuildError::Io(stamp_path.clone(), e))?;
    }
    eprintln!("kernel: building {} -> {} (make -j{jobs}, log {})", src.display(), out.display(), log.display());
    make(&src, &out, &log, &[&format!("-j{jobs}"), "Image"], &[])?;
    let image = image_path(&out);
    if !image.is_file() {
        return Err(BuildError::Io(image, std::io::Error::new(std::io::ErrorKind::NotFound, "make succeeded but left no Image")));
    }
    let rel = out.join("include").join("config").join("kernel.release");
    let release = std::fs::read_to_string(&rel).map(|s| s.trim().to_string()).unwrap_or_default();
    Ok(Built { image, release, configured, seconds: started.elapsed().as_secs_f64() })
}

/// Default parallelism: every core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lines_parse() {
        let o = parse_config("# comment\nCONFIG_KVM=y\n# CONFIG_DEBUG_INFO is not set\nCONFIG_CMDLINE=\"x=1\"\n\nCONFIG_HZ=250\n#CONFIG_FOO=y\n");
        let names: Vec<(&str, &str)> = o.iter().map(|o| (o.name.as_str(), o.value.as_str())).collect();
        assert_eq!(names, [("CONFIG_KVM", "y"), ("CONFIG_DEBUG_INFO", "n"), ("CONFIG_CMDLINE", "\"x=1\""), ("CONFIG_HZ", "250")]);
    }

    #[test]
    fn unmet_options_are_named() {
        let frag = "CONFIG_KVM=y\nCONFIG_PCI=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=250\nCONFIG_NOPE=y\n";
        let cfg = "CONFIG_KVM=y\nCONFIG_PCI=m\nCONFIG_HZ=100\n# CONFIG_MODULES is not set\n";
        let u = unmet_options(frag, cfg);
        assert_eq!(u.len(), 3, "{u:?}");
        assert!(u[0].starts_with("CONFIG_PCI=y (got: m)"), "{u:?}");
        assert!(u[1].starts_with("CONFIG_HZ=250 (got: 100)"), "{u:?}");
        assert!(u[2].starts_with("CONFIG_NOPE=y (got: not present"), "{u:?}");
        // "=n" is met by an absent option too.
        assert!(unmet_options("# CONFIG_X is not set\n", "").is_empty());
        assert_eq!(unmet_options("# CONFIG_X is not set\n", "CONFIG_X=y\n").len(), 1);
    }

    #[test]
    fn the_fragment_asks_for_what_the_agent_needs() {
        let text = std::fs::read_to_string(fragment_path()).expect("ci/kernel.config");
        let frag = parse_config(&text);
        let set = |n: &str| frag.iter().any(|o| o.name == n && o.value == "y");
        // CONFIG_ARM64 comes from ARCH=arm64, not from the fragment.
        let needed = crate::backend::kernel_config::REQUIRED_CONFIG
            .iter()
            .chain(crate::backend::kernel_config::OPTIONAL_CONFIG)
            .map(|(o, _)| *o)
            .filter(|o| *o != "CONFIG_ARM64");
        let missing: Vec<&str> = needed.filter(|o| !set(o)).collect();
        assert!(missing.is_empty(), "ci/kernel.config lacks {missing:?}");
    }

    #[test]
    fn stamp_changes_with_kconfig_and_fragment() {
        let d = std::env::temp_dir().join(format!("trapdiff-kstamp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("arch/arm64")).expect("mkdir");
        std::fs::write(d.join("Kconfig"), "source \"arch/arm64/Kconfig\"\n").expect("write");
        std::fs::write(d.join("arch/arm64/Kconfig"), "config ARM64\n\tdef_bool y\n").expect("write");
        std::fs::write(d.join("arch/arm64/x.c"), "int x;\n").expect("write");
        let a = config_stamp(&d, "CONFIG_KVM=y\n").expect("stamp");
        assert!(a.ends_with(" 2 Kconfig files"), "{a}");
        std::fs::write(d.join("arch/arm64/x.c"), "int y;\n").expect("write");
        assert_eq!(config_stamp(&d, "CONFIG_KVM=y\n").expect("stamp"), a, "a C file is make's business");
        assert_ne!(config_stamp(&d, "CONFIG_PCI=y\n").expect("stamp"), a);
        std::fs::write(d.join("arch/arm64/Kconfig"), "config ARM64\n\tdef_bool n\n").expect("write");
        assert_ne!(config_stamp(&d, "CONFIG_KVM=y\n").expect("stamp"), a);
        let _ = std::fs::remove_dir_all(&d);
    }
}
