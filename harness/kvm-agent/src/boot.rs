//! What the agent does as `/init`: mount the pseudo-filesystems it needs, read its options
//! from the kernel command line, and end the system (power off, or the test-only crash).

use std::ffi::CString;

/// Options from /proc/cmdline (see main.rs for the list).
#[derive(Debug, Clone)]
pub struct Cmdline {
    pub console: String,
    pub panic_after: Option<u64>,
    pub warn_at: Option<u64>,
    /// `trapdiff.profile=1`: a `Log` line per job with where its time went (profile.rs).
    pub profile: bool,
    /// `trapdiff.reuse=0`: a fresh VM for every job (job.rs), to measure what reuse saves.
    pub reuse: bool,
}

impl Cmdline {
    pub fn read() -> Cmdline {
        let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        Cmdline::parse(&text)
    }

    pub fn parse(text: &str) -> Cmdline {
        let mut c = Cmdline { console: "ttyAMA0".into(), panic_after: None, warn_at: None, profile: false, reuse: true };
        for word in text.split_whitespace() {
            if let Some(v) = word.strip_prefix("trapdiff.console=") {
                // A device name, never a path: the agent opens /dev/<name>.
                if !v.is_empty() && !v.contains('/') {
                    c.console = v.to_string();
                }
            } else if let Some(v) = word.strip_prefix("trapdiff.panic_after=") {
                c.panic_after = v.parse().ok();
            } else if let Some(v) = word.strip_prefix("trapdiff.warn_at=") {
                c.warn_at = v.parse().ok();
            } else if let Some(v) = word.strip_prefix("trapdiff.profile=") {
                c.profile = v == "1";
            } else if let Some(v) = word.strip_prefix("trapdiff.reuse=") {
                c.reuse = v != "0";
            }
        }
        c
    }
}

/// Mount devtmpfs (for /dev/kvm and the console), proc and sysfs. The initramfs holds the
/// mount points; failures are reported on stderr (the console) and the agent goes on, so
/// the harness sees the reason in `Hello`/`Failed` rather than a silent hang.
pub fn init_system() {
    for (src, target, fstype) in [("devtmpfs", "/dev", "devtmpfs"), ("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs")] {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(src, target, fstype) {
            // EBUSY: the kernel already mounted it (CONFIG_DEVTMPFS_MOUNT).
            if e.raw_os_error() != Some(libc::EBUSY) {
                eprintln!("trapdiff-agent: mount {fstype} on {target}: {e}");
            }
        }
    }
}

fn mount(src: &str, target: &str, fstype: &str) -> std::io::Result<()> {
    let (Ok(s), Ok(t), Ok(f)) = (CString::new(src), CString::new(target), CString::new(fstype)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: all three are valid NUL-terminated strings that outlive the call; no data.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// TEST ONLY (`trapdiff.panic_after=`): panic the kernel the way a real KVM bug would look
/// on the console ("Kernel panic - not syncing: sysrq triggered crash"). The write goes to
/// /proc/sysrq-trigger, which is not subject to the kernel.sysrq mask (Documentation/
/// admin-guide/sysrq.rst, "How do I use the magic SysRq key?").
pub fn crash_kernel() {
    eprintln!("trapdiff-agent: trapdiff.panic_after reached: crashing the kernel on purpose (sysrq c)");
    if let Err(e) = std::fs::write("/proc/sysrq-trigger", b"c") {
        eprintln!("trapdiff-agent: cannot write /proc/sysrq-trigger: {e} (CONFIG_MAGIC_SYSRQ?)");
    }
}

/// TEST ONLY (`trapdiff.warn_at=`): put a WARN-shaped splat into the kernel log through
/// /dev/kmsg (Documentation/ABI/testing/dev-kmsg: a write is one record, "<4>" its level), so
/// the harness's kernel-finding plumbing can be proven through the real console channel. The
/// text says it is a test, so it can never pass for a real kernel warning.
pub fn write_test_warning(seq: u32) {
    let lines = [
        format!("<4>WARNING: CPU: 0 PID: 1 at harness/kvm-agent/src/boot.rs:0 trapdiff_test_warning (trapdiff.warn_at test mode, job seq {seq})"),
        "<4>Call trace:".to_string(),
        "<4> trapdiff_test_warning+0x0/0x4".to_string(),
        "<4>---[ end trace 0000000000000000 ]---".to_string(),
    ];
    for l in lines {
        if let Err(e) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").and_then(|mut f| std::io::Write::write_all(&mut f, l.as_bytes())) {
            eprintln!("trapdiff-agent: cannot write /dev/kmsg: {e}");
            return;
        }
    }
}

/// End the agent. As init, returning would panic the kernel ("Attempted to kill init"), so
/// power the machine off instead (QEMU exits).
pub fn halt(is_init: bool) {
    if !is_init {
        return;
    }
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) with RB_POWER_OFF as pid 1; on failure the process just goes on.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    loop {
        // SAFETY: pause(2) has no preconditions.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cmdline_options() {
        let c = Cmdline::parse("console=ttyAMA0 quiet trapdiff.panic_after=3 trapdiff.console=ttyS0");
        assert_eq!(c.panic_after, Some(3));
        assert_eq!(c.console, "ttyS0");
        let d = Cmdline::parse("console=ttyAMA0 trapdiff.console=../x");
        assert_eq!(d.panic_after, None);
        assert_eq!(d.console, "ttyAMA0");
    }
}
