//! Native mode: the agent runs directly on an arm64 Linux host with /dev/kvm, frames over
//! pipes. Elsewhere the backend must refuse with the reason (and this test says so).

mod kvm_support;

use trapdiff::backend::kvm::{self, KvmError, KvmOptions};
use trapdiff::backend::qemu::Target;
use trapdiff_arch::wire::{ReportEnd, TargetMsg};

#[test]
fn native_mode_runs_or_says_why_not() {
    match kvm::native_available() {
        Err(KvmError::NativeUnavailable(why)) => {
            assert!(!cfg!(target_arch = "aarch64") || !std::path::Path::new("/dev/kvm").exists());
            let e = kvm::target_config(&KvmOptions { native: true, ..KvmOptions::default() }, None);
            if trapdiff::paths::agent_binary().is_file() {
                assert!(matches!(e, Err(KvmError::NativeUnavailable(_))), "{e:?}");
            }
            eprintln!("skipped: native mode unavailable here: {why}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(()) => {
            if !trapdiff::paths::agent_binary().is_file() {
                guest_payloads::skip::live("agent not built (bash ci/setup.sh)");
                return;
            }
            let (cfg, platform) = kvm::target_config(&KvmOptions { native: true, ..KvmOptions::default() }, None).expect("native config");
            assert_eq!(platform, "native");
            let mut t = Target::spawn(&cfg).expect("start the agent");
            loop {
                if let TargetMsg::Hello(_) = t.recv(cfg.boot_timeout).expect("hello") {
                    break;
                }
            }
            kvm_support::set_empty_runtime(&mut t);
            let r = kvm_support::run(&mut t, &kvm_support::job(1, &kvm_support::program(&[])));
            assert_eq!(r.end, ReportEnd::Done);
        }
    }
}
