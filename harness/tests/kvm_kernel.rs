//! `--kernel PATH`: a user's kernel Image is checked (config beside it, the tree's .config,
//! or IKCONFIG) and booted the same way as the default kernel.
//!
//! The second kernel is a Debian 6.12 one when it has been fetched
//! (`bash ci/setup.sh kernel-image newest`); otherwise the
//! default kernel copied elsewhere stands in for a user's build.

mod kvm_support;

use std::path::PathBuf;

use trapdiff::backend::kvm::{self, KvmError, KvmOptions};
use trapdiff::backend::Backend;
use trapdiff_arch::outcome::End;

fn second_kernel() -> Option<PathBuf> {
    let dir = trapdiff::paths::build_dir().join("kernel");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("linux-image-6.12")))
        .map(|p| p.join("Image"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

#[test]
fn user_kernel_boots_and_runs_cases() {
    require_kvm!();
    let image = match second_kernel() {
        Some(p) => p,
        None => {
            // The default kernel as a "user" Image in another directory, config beside it.
            let d = std::env::temp_dir().join(format!("trapdiff-userkernel-{}", std::process::id()));
            std::fs::create_dir_all(&d).expect("tmp");
            let src = trapdiff::paths::default_kernel_dir();
            std::fs::copy(src.join("Image"), d.join("Image")).expect("copy Image");
            std::fs::copy(src.join("config"), d.join("config")).expect("copy config");
            eprintln!("note: no second kernel fetched; using a copy of the default one");
            d.join("Image")
        }
    };
    let check = trapdiff::backend::kernel_config::check_kernel(&image).expect("config check passes");
    assert!(check.config_source.is_some(), "config found for {}", image.display());
    let mut b = kvm::backend(&KvmOptions { kernel: Some(image.clone()), ..KvmOptions::default() }).expect("backend");
    let cases = kvm_support::suite_cases("mmio", 3);
    for c in &cases {
        let o = b.run(c);
        eprintln!("{} on {} -> {:?}", c.name, o.meta.kernel.as_deref().unwrap_or("?"), o.end);
        assert!(!matches!(o.end, End::BackendError { .. }), "{:?}", o.end);
    }
    let release = std::fs::read_to_string(image.with_file_name("release")).ok();
    if let (Some(r), Some(info)) = (release, b.info()) {
        assert_eq!(info.version, r.trim(), "the agent reports the user kernel's release");
    }
}

#[test]
fn kernel_without_kvm_is_refused_with_the_reason() {
    let src = trapdiff::paths::default_kernel_dir();
    if !src.join("Image").is_file() {
        guest_payloads::skip::live("default kernel not installed (bash ci/setup.sh)");
        return;
    }
    let d = std::env::temp_dir().join(format!("trapdiff-nokvm-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    // A real Image with a config that builds KVM as a module and lacks devtmpfs.
    std::fs::copy(src.join("Image"), d.join("Image")).expect("copy Image");
    let config = std::fs::read_to_string(src.join("config")).expect("config");
    let config = config.replace("CONFIG_KVM=y", "CONFIG_KVM=m").replace("CONFIG_DEVTMPFS=y", "# CONFIG_DEVTMPFS is not set");
    std::fs::write(d.join("config"), config).expect("write config");
    match kvm::backend(&KvmOptions { kernel: Some(d.join("Image")), ..KvmOptions::default() }) {
        Err(KvmError::KernelConfig { missing, .. }) => {
            assert!(missing.contains("CONFIG_KVM=y") && missing.contains("=m"), "{missing}");
            assert!(missing.contains("CONFIG_DEVTMPFS=y"), "{missing}");
        }
        Err(KvmError::NoQemu) | Err(KvmError::NoAgent(_)) => guest_payloads::skip::live("QEMU or the agent is missing"),
        other => panic!("expected a config error, got {other:?}"),
    }
}
