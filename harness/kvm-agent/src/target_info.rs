//! What the agent tells the harness about itself (`TargetMsg::Hello`): kernel release, the
//! CPU's MIDR and the KVM capabilities that decide skips.

use kvm_bindings::{KVM_CAP_ARM_INJECT_EXT_DABT, KVM_CAP_ARM_NISV_TO_USER};
use kvm_ioctls::{Cap, Kvm};
use trapdiff_arch::wire::{TargetInfo, PROTOCOL_VERSION};

/// KVM capabilities probed once at start-up (api.rst section 8 "Other capabilities" and
/// section 7 for the enable-able ones).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// KVM_CAP_ARM_EL1_32BIT: AArch32 EL1 vCPUs (KVM_ARM_VCPU_EL1_32BIT).
    pub el1_32bit: bool,
    /// KVM_CAP_ARM_NISV_TO_USER: KVM_EXIT_ARM_NISV instead of -ENOSYS.
    pub nisv_to_user: bool,
    /// KVM_CAP_ARM_INJECT_EXT_DABT: KVM_SET_VCPU_EVENTS ext_dabt_pending.
    pub inject_ext_dabt: bool,
    /// KVM_CAP_READONLY_MEM: KVM_MEM_READONLY memslots.
    pub readonly_mem: bool,
    /// KVM_CAP_IMMEDIATE_EXIT: the watchdog's way out of KVM_RUN.
    pub immediate_exit: bool,
    pub vcpu_events: bool,
    /// Device-nGnRE slots can be backed by a device BAR (ivshmem.rs); not a KVM cap.
    pub device_ngnre: bool,
    /// The ivshmem mailbox carries requests and replies (`trapdiff_arch::mailbox`).
    pub mailbox: bool,
}

impl Caps {
    pub fn probe(kvm: &Kvm) -> Caps {
        Caps {
            el1_32bit: kvm.check_extension(Cap::ArmEl132bit),
            nisv_to_user: kvm.check_extension_raw(KVM_CAP_ARM_NISV_TO_USER.into()) > 0,
            inject_ext_dabt: kvm.check_extension_raw(KVM_CAP_ARM_INJECT_EXT_DABT.into()) > 0,
            readonly_mem: kvm.check_extension(Cap::ReadonlyMem),
            immediate_exit: kvm.check_extension(Cap::ImmediateExit),
            vcpu_events: kvm.check_extension(Cap::VcpuEvents),
            device_ngnre: false,
            mailbox: false,
        }
    }

    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.el1_32bit, "el1_32bit"),
            (self.nisv_to_user, "nisv_to_user"),
            (self.inject_ext_dabt, "inject_ext_dabt"),
            (self.readonly_mem, "readonly_mem"),
            (self.immediate_exit, "immediate_exit"),
            (self.vcpu_events, "vcpu_events"),
            (self.device_ngnre, "device_ngnre"),
            (self.mailbox, trapdiff_arch::mailbox::CAP),
        ] {
            if on {
                v.push(name.to_string());
            }
        }
        v
    }
}

pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// MIDR_EL1 of CPU 0, from sysfs (Documentation/arch/arm64/cpu-feature-registers.rst).
pub fn midr() -> u64 {
    std::fs::read_to_string("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

pub fn hello(caps: &Caps, kvm_error: Option<&str>) -> TargetInfo {
    let mut names = caps.names();
    if let Some(e) = kvm_error {
        names.push(format!("no_kvm: {e}"));
    }
    TargetInfo { protocol: PROTOCOL_VERSION, backend: "kvm".into(), version: kernel_release(), midr: midr(), caps: names }
}
