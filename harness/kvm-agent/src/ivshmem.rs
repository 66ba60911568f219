//! Device memory for `SlotKind::Device(DeviceNGnRE)` slots: QEMU's ivshmem-plain PCI device
//! (vendor 0x1af4, device 0x1110; BAR 2 is RAM shared with QEMU), mapped through sysfs
//! (`/sys/bus/pci/devices/*/resource2`). Such a mapping is VM_PFNMAP of a non-RAM pfn, so
//! KVM maps it at stage 2 as Device-nGnRE — exactly how a VMM passing a device BAR to its
//! guest gets device memory (arch/arm64/kvm/mmu.c user_mem_abort: `device = true` for
//! !pfn_is_map_memory pfns, KVM_PGTABLE_PROT_DEVICE).
//!
//! The host side maps it Device too, so the agent touches it only with aligned volatile
//! accesses (memcpy/memset could use unaligned accesses or DC ZVA, which fault on Device).

use std::os::fd::AsRawFd;

const VENDOR: &str = "0x1af4";
const DEVICE: &str = "0x1110";

#[derive(Debug)]
pub struct Ivshmem {
    ptr: *mut u8,
    len: usize,
}

impl Ivshmem {
    /// Find, enable and map the first ivshmem device; None if there is none.
    pub fn find() -> Result<Option<Ivshmem>, String> {
        let Ok(dir) = std::fs::read_dir("/sys/bus/pci/devices") else { return Ok(None) };
        for e in dir.flatten() {
            let p = e.path();
            let id = |f: &str| std::fs::read_to_string(p.join(f)).map(|s| s.trim().to_string()).unwrap_or_default();
            if id("vendor") != VENDOR || id("device") != DEVICE {
                continue;
            }
            // pci_enable_device: turns memory decoding on (no driver binds ivshmem here).
            let _ = std::fs::write(p.join("enable"), b"1");
            let res = p.join("resource2");
            let f = std::fs::OpenOptions::new().read(true).write(true).open(&res).map_err(|e| format!("{}: {e}", res.display()))?;
            let len = f.metadata().map_err(|e| format!("{}: {e}", res.display()))?.len() as usize;
            if len == 0 {
                return Err(format!("{} has size 0 (BAR not assigned?)", res.display()));
            }
            // SAFETY: shared mapping of the BAR through its sysfs file; owned by Ivshmem.
            let m = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0) };
            if m == libc::MAP_FAILED {
                return Err(format!("mmap {}: {}", res.display(), std::io::Error::last_os_error()));
            }
            return Ok(Some(Ivshmem { ptr: m.cast(), len }));
        }
        Ok(None)
    }

    /// Bytes of the BAR that back device slots: all but the mailbox at the end.
    pub fn device_len(&self) -> usize {
        self.len.saturating_sub(MAILBOX_SIZE)
    }

    /// A window [off, off+len) of the device part of the BAR, page-aligned.
    pub fn window(&self, off: usize, len: usize) -> Option<DeviceWindow> {
        (off % 4096 == 0 && len % 4096 == 0 && off.checked_add(len)? <= self.device_len())
            // SAFETY: off + len is inside the mapping (checked above).
            .then(|| DeviceWindow { ptr: unsafe { self.ptr.add(off) }, len })
    }
}

/// The mailbox (`trapdiff_arch::mailbox`): the last `mailbox::SIZE` bytes of the BAR, which
/// the harness reaches through the file behind QEMU's memory-backend-file.
pub const MAILBOX_SIZE: usize = trapdiff_arch::mailbox::SIZE;

impl Ivshmem {
    pub fn has_mailbox(&self) -> bool {
        self.len >= 2 * MAILBOX_SIZE
    }

    /// Copy the mailbox bytes `range` (offsets into the mailbox).
    pub fn read_mailbox(&self, range: std::ops::Range<usize>) -> Option<Vec<u8>> {
        if !self.has_mailbox() || range.end > MAILBOX_SIZE || range.start > range.end {
            return None;
        }
        let base = self.len - MAILBOX_SIZE;
        // SAFETY: base + range.end is inside the mapping (checked above); byte reads are aligned.
        Some(range.map(|i| unsafe { self.ptr.add(base + i).read_volatile() }).collect())
    }

    /// Write `bytes` at `offset` of the mailbox; false if they do not fit.
    pub fn write_mailbox(&self, offset: usize, bytes: &[u8]) -> bool {
        if !self.has_mailbox() || offset.checked_add(bytes.len()).is_none_or(|end| end > MAILBOX_SIZE) {
            return false;
        }
        let base = self.len - MAILBOX_SIZE + offset;
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: base + i is inside the mapping (checked above); byte writes are aligned.
            unsafe { self.ptr.add(base + i).write_volatile(b) };
        }
        // The message is in memory before the doorbell line is written (a syscall, which
        // orders it anyway; the fence says so).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        true
    }
}

/// Part of the device BAR backing one memslot.
#[derive(Debug)]
pub struct DeviceWindow {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a window is a plain range of the BAR mapping, which lives for the whole process
// (Ivshmem is never unmapped); the agent touches a window from one thread at a time.
unsafe impl Send for DeviceWindow {}

impl DeviceWindow {
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
    pub fn zero(&self) {
        let words = self.ptr.cast::<u64>();
        for i in 0..self.len / 8 {
            // SAFETY: i * 8 < len, 8-byte aligned (the window is page-aligned).
            unsafe { words.add(i).write_volatile(0) };
        }
    }

    pub fn write(&self, off: usize, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            if off + i < self.len {
                // SAFETY: inside the window; byte accesses are always aligned.
                unsafe { self.ptr.add(off + i).write_volatile(b) };
            }
        }
    }

    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        (off..(off + len).min(self.len))
            // SAFETY: inside the window; byte accesses are always aligned.
            .map(|i| unsafe { self.ptr.add(i).read_volatile() })
            .collect()
    }
}
