//! The channel to the harness: the serial console (PL011 ttyAMA0 under QEMU) in raw mode,
//! or stdin/stdout in native mode. Kernel messages share the console; the framing
//! (`trapdiff_arch::wire`) tolerates them.

use std::ffi::CString;

use std::io;
use std::os::fd::RawFd;

#[derive(Debug)]
pub struct Channel {
    rfd: RawFd,
    wfd: RawFd,
}

impl Channel {
    pub fn stdio() -> Channel {
        Channel { rfd: 0, wfd: 1 }
    }

    /// Open /dev/<name> read-write and put it in raw mode: no echo (the harness would read
    /// its own frames back), no CR/LF translation, byte-at-a-time reads.
    pub fn serial(name: &str) -> io::Result<Channel> {
        let path = CString::new(format!("/dev/{name}")).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: path is a valid NUL-terminated string; the fd is owned by the Channel.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open; t is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut t) } == 0 {
            // SAFETY: t came from tcgetattr.
            unsafe { libc::cfmakeraw(&mut t) };
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            // SAFETY: fd is open; t is a valid termios.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        }
        Ok(Channel { rfd: fd, wfd: fd })
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes of writes.
        let n = unsafe { libc::read(self.rfd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write a whole frame. Errors are reported on stderr and dropped: the harness notices
    /// the missing reply and asks for a resend or restarts the target.
    pub fn write_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: bytes is valid for bytes.len() bytes of reads.
            let n = unsafe { libc::write(self.wfd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("trapdiff-agent: channel write failed: {e}");
                return;
            }
            bytes = &bytes[n as usize..];
        }
    }
}
