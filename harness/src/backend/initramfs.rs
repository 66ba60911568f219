//! A newc cpio archive writer (the format the kernel unpacks as an initramfs:
//! Documentation/driver-api/early-userspace/buffer-format.rst), uncompressed, pure Rust.
//!
//! The KVM backend's initramfs is tiny: mount points, a /dev/console node (so the kernel
//! can give /init its stdin/stdout/stderr before devtmpfs is mounted), /dev/null (Rust's
//! runtime opens it for stdin/stdout/stderr when the kernel could not open a console, and
//! aborts if it cannot) and the agent as /init.

/// Builder for a newc archive in memory.
#[derive(Debug, Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

/// S_IFDIR, S_IFREG, S_IFCHR (include/uapi/linux/stat.h).
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    pub fn new() -> Cpio {
        Cpio::default()
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> &mut Self {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[])
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> &mut Self {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check (newc: unused)
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Finish with the trailer and return the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }
}

/// The KVM agent's initramfs: /dev, /proc, /sys, /dev/console (5:1), /dev/null (1:3) and the
/// agent as /init.
pub fn agent_initramfs(agent: &[u8]) -> Vec<u8> {
    let mut c = Cpio::new();
    c.dir("dev", 0o755)
        .char_dev("dev/console", 0o600, 5, 1)
        .char_dev("dev/null", 0o666, 1, 3)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("tmp", 0o1777)
        .file("init", 0o755, agent);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut c = Cpio::new();
        c.file("init", 0o755, b"abcde");
        let a = c.finish();
        // header (110) + "init\0" (5) padded to 116, data 5 padded to 124, then the trailer.
        assert_eq!(&a[..6], b"070701");
        assert_eq!(&a[6..14], b"00000001"); // ino
        assert_eq!(&a[14..22], b"000081ed"); // S_IFREG | 0755
        assert_eq!(&a[54..62], b"00000005"); // filesize
        assert_eq!(&a[94..102], b"00000005"); // namesize incl. NUL
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"abcde");
        assert_eq!(&a[124..130], b"070701");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn gnu_cpio_reads_it() {
        // The archive must list with the system's cpio when it is installed (ci/setup.sh
        // installs it); otherwise the layout test above is the check.
        let Ok(mut child) =
            std::process::Command::new("cpio").args(["-t", "--quiet"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn()
        else {
            eprintln!("skipped: no cpio binary");
            return;
        };
        let a = agent_initramfs(b"\x7fELF-not-really");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(&a).expect("write to cpio");
        }
        let out = child.wait_with_output().expect("cpio runs");
        assert!(out.status.success());
        let names = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = names.lines().collect();
        assert_eq!(names, ["dev", "dev/console", "dev/null", "proc", "sys", "tmp", "init"]);
    }
}
