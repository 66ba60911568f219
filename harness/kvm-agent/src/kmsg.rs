//! The kernel log (/dev/kmsg): warnings and oopses a job provoked are forwarded to the
//! harness as `TargetMsg::Log`, so they land in that case's findings even when the console
//! log level hides them. Record format: Documentation/ABI/testing/dev-kmsg
//! ("<prio>,<seq>,<ts>,<flags>;<message>").

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Forward records at this syslog level or more severe: after boot, errors (3)...
pub const BOOT_LEVEL: u8 = 3;
/// ...after a job, warnings (4) too (WARN_ON splats are KERN_WARNING).
pub const JOB_LEVEL: u8 = 4;

/// Longest text forwarded per drain; the rest is summarised.
const MAX_TEXT: usize = 16 * 1024;

#[derive(Debug)]
pub struct Kmsg {
    file: Option<File>,
}

impl Kmsg {
    pub fn open() -> Kmsg {
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok();
        Kmsg { file }
    }

    /// Read every new record; return those at `level` or more severe as text lines.
    pub fn drain(&mut self, level: u8) -> Option<String> {
        let file = self.file.as_mut()?;
        let mut out = String::new();
        let mut dropped = 0usize;
        let mut buf = vec![0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    if let Some((prio, text)) = parse_record(&rec) {
                        if prio & 7 <= level {
                            if out.len() + text.len() < MAX_TEXT {
                                out.push_str(text.trim_end());
                                out.push('\n');
                            } else {
                                dropped += 1;
                            }
                        }
                    }
                }
                // EPIPE: records were overwritten before we read them; go on with the rest.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break, // EAGAIN: nothing more
            }
        }
        if dropped > 0 {
            out.push_str(&format!("({dropped} more kernel records not forwarded)\n"));
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Split one record into its priority and the message (continuation lines dropped: they
/// hold the key=value dictionary, not text).
fn parse_record(rec: &str) -> Option<(u8, &str)> {
    let (header, rest) = rec.split_once(';')?;
    let prio: u32 = header.split(',').next()?.parse().ok()?;
    let msg = rest.split('\n').next().unwrap_or("");
    Some(((prio & 0xff) as u8, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn records_parse() {
        assert_eq!(parse_record("4,120,5000,-;WARNING: CPU: 0 PID: 1 at x\n SUBSYSTEM=cpu\n"), Some((4, "WARNING: CPU: 0 PID: 1 at x")));
        assert_eq!(parse_record("6,1,0,-,caller=T1;hello\n"), Some((6, "hello")));
        assert_eq!(parse_record("garbage"), None);
    }
}
