//! The harness's side of the shared-memory mailbox (`trapdiff_arch::mailbox`): a file that
//! backs memory of the target's QEMU machine — the refhyp's whole RAM, or the KVM agent's
//! ivshmem BAR — with the mailbox at a fixed offset. The harness writes requests into it and
//! reads replies out of it with plain file I/O; QEMU maps the same file `share=on`, so both
//! see the same page-cache pages. One file per backend instance, on tmpfs (`/dev/shm`) when
//! there is one, removed when the backend goes (and, for harnesses killed before that, by the
//! next harness that starts).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use trapdiff_arch::mailbox::{envelope, Dir, Doorbell, Halves};

use super::live::Mailbox;

/// A file QEMU maps as guest memory, holding the mailbox at `offset`.
#[derive(Debug)]
pub struct SharedFile {
    pub path: PathBuf,
    file: File,
    size: u64,
    /// Byte offset of the mailbox in the file.
    offset: u64,
    requests: Halves,
}

/// Where the files go: tmpfs if there is one (guest RAM on a disk file would be written back
/// to the disk), else the temporary directory.
fn dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

impl SharedFile {
    /// A zeroed file of `size` bytes named after `what`, with the mailbox at `offset`.
    pub fn create(what: &str, size: u64, offset: u64) -> std::io::Result<SharedFile> {
        static N: AtomicU32 = AtomicU32::new(0);
        assert!(offset + trapdiff_arch::mailbox::SIZE as u64 <= size, "the mailbox lies outside the shared file");
        let dir = dir();
        remove_stale(&dir);
        let path = dir.join(format!("trapdiff-{}-{}-{what}.mem", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).map_err(|e| with_path(&path, e))?;
        file.set_len(size).map_err(|e| with_path(&path, e))?;
        Ok(SharedFile { path, file, size, offset, requests: Halves::new(Dir::ToTarget) })
    }
}

fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Remove shared files of harness processes that are gone (killed before Drop ran).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("trapdiff-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if name.ends_with(".mem") && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Mailbox for SharedFile {
    fn post(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let off = self.requests.place(payload.len()).ok_or_else(|| std::io::Error::other("message larger than a mailbox half"))?;
        self.file.write_all_at(&envelope(payload), self.offset + off as u64)?;
        Ok(Doorbell { dir: Dir::ToTarget, offset: off }.line())
    }

    fn fetch(&self, range: std::ops::Range<usize>) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; range.len()];
        self.file.read_exact_at(&mut buf, self.offset + range.start as u64)?;
        Ok(buf)
    }

    /// Zero the file: a new boot starts from fresh memory (for the refhyp this is its RAM).
    fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.set_len(self.size)?;
        self.requests = Halves::new(Dir::ToTarget);
        Ok(())
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trapdiff_arch::mailbox;

    #[test]
    fn posts_alternate_halves_and_fetch_reads_what_the_target_wrote() {
        let mut f = SharedFile::create("test", 4 << 20, 1 << 20).expect("create");
        let path = f.path.clone();
        let a = f.post(&[1u8; 300]).expect("post");
        let b = f.post(&[2u8; 300]).expect("post");
        assert_eq!((a.as_slice(), b.as_slice()), (&b"@TDM 0\n"[..], &b"@TDM 80000\n"[..]));
        let on_disk = std::fs::read(&path).expect("read");
        assert_eq!(on_disk[(1 << 20) + 0x80000 + mailbox::HEADER], 2);
        // The target's reply, written into the reply area of the file.
        let reply = [9u8; 500];
        let d = Doorbell { dir: Dir::ToHost, offset: mailbox::AREA };
        f.file.write_all_at(&envelope(&reply), (1 << 20) + mailbox::AREA as u64).expect("write");
        assert_eq!(d.read_with(|r| f.fetch(r).ok()), Ok(reply.to_vec()));
        f.reset().expect("reset");
        assert_eq!(d.read_with(|r| f.fetch(r).ok()), Err("mailbox message shorter than any sent through the mailbox"));
        drop(f);
        assert!(!path.exists(), "the file goes with the backend");
    }
}
