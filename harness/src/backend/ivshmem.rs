//! The ivshmem device of the kvm backend's QEMU machine: a shared file that backs the BAR the
//! agent maps for Device-nGnRE slots and, at its end, the mailbox the harness writes jobs
//! into (a doorbell line on the serial link points the agent at them).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::kvm::KvmError;
use super::live::Mailbox;
use crate::paths;

/// Size of the ivshmem BAR (a power of two, as for every PCI BAR): its last
/// [`MAILBOX_BYTES`] are the mailbox, the rest backs Device-nGnRE slots (all of one job's
/// device slots together must fit).
pub const SHARED_MEMORY_BYTES: u64 = 32 << 20;
/// The mailbox at the end of the BAR (the agent's `ivshmem::MAILBOX_SIZE`).
pub const MAILBOX_BYTES: u64 = 2 << 20;
/// The doorbell line that points the agent at a message in the mailbox (the agent's
/// `console::MAILBOX_MARKER`): `@TDM <offset> <len> <crc32>`, hex.
pub use trapdiff_arch::wire::MAILBOX_MARKER;
/// Messages shorter than this go over the serial link as they are.
const MAILBOX_THRESHOLD: usize = 256;

/// The file behind QEMU's ivshmem memory: the harness writes mailbox messages into it.
#[derive(Debug)]
pub struct SharedMemory {
    pub path: PathBuf,
    file: File,
    /// Byte offset of the mailbox in the file.
    mailbox: u64,
    /// Which half of the mailbox the next message goes to (a message is never overwritten
    /// while the agent may still be reading it).
    half: u64,
}

impl SharedMemory {
    pub fn create() -> Result<SharedMemory, KvmError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = paths::build_dir().join("kvm");
        std::fs::create_dir_all(&dir).map_err(|e| KvmError::Io(dir.clone(), e))?;
        remove_stale(&dir);
        let path = dir.join(format!("shm-{}-{}.mem", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).map_err(|e| KvmError::Io(path.clone(), e))?;
        let mailbox = SHARED_MEMORY_BYTES - MAILBOX_BYTES;
        file.set_len(SHARED_MEMORY_BYTES).map_err(|e| KvmError::Io(path.clone(), e))?;
        Ok(SharedMemory { path, file, mailbox, half: 0 })
    }

    /// Put `payload` in the mailbox; returns the doorbell line.
    fn post(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let offset = self.half * (MAILBOX_BYTES / 2);
        self.half ^= 1;
        self.file.write_all_at(payload, self.mailbox + offset)?;
        let crc = trapdiff_arch::crc32::crc32(payload);
        Ok(trapdiff_arch::wire::doorbell(offset, payload.len(), crc))
    }
}

/// Remove shared-memory files of harness processes that are gone (killed before Drop ran).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("shm-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Mailbox for SharedMemory {
    fn takes(&self, len: usize) -> bool {
        len >= MAILBOX_THRESHOLD && (len as u64) <= MAILBOX_BYTES / 2
    }
    fn post(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        SharedMemory::post(self, payload)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
