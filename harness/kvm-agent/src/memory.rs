//! Guest memory: host mappings registered as KVM memslots (KVM_SET_USER_MEMORY_REGION,
//! api.rst 4.35). RAM slots are fresh anonymous mappings per job; device slots are windows
//! of the ivshmem BAR, zeroed per job. So no byte of one case is visible to the next.

use std::borrow::Cow;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;

use crate::ivshmem::{DeviceWindow, Ivshmem};

/// One anonymous host mapping.
#[derive(Debug)]
pub struct HostMem {
    ptr: *mut u8,
    len: usize,
}

impl HostMem {
    pub fn new(len: usize) -> std::io::Result<HostMem> {
        // SAFETY: anonymous private mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(HostMem { ptr: p.cast(), len })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is a live mapping owned by self. The guest may write it
        // only while a vCPU runs, and the agent's single thread never runs a vCPU while it
        // holds this slice.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

// SAFETY: HostMem owns its mapping exclusively (no aliases leave it except borrows tied to
// &self/&mut self), so moving it to another thread (the VM factory, which drops it) is sound.
unsafe impl Send for HostMem {}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: ptr/len is the mapping created in new and not yet unmapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[derive(Debug)]
enum Backing {
    Ram(HostMem),
    Device(DeviceWindow),
}

/// A memslot: guest IPA range backed by host memory.
#[derive(Debug)]
pub struct Memslot {
    pub ipa: u64,
    pub size: u64,
    pub readonly: bool,
    backing: Backing,
}

impl Memslot {
    pub fn contains(&self, ipa: u64, len: u64) -> bool {
        ipa >= self.ipa && ipa.checked_add(len).is_some_and(|end| end <= self.ipa + self.size)
    }
    pub fn overlaps(&self, ipa: u64, size: u64) -> bool {
        ipa < self.ipa + self.size && self.ipa < ipa.saturating_add(size)
    }
    fn host_addr(&self) -> u64 {
        match &self.backing {
            Backing::Ram(m) => m.ptr as u64,
            Backing::Device(w) => w.addr(),
        }
    }
}

/// The memslots of one VM.
#[derive(Debug, Default)]
pub struct GuestMemory {
    pub slots: Vec<Memslot>,
    /// Bytes of the device BAR handed out so far in this job.
    device_used: usize,
}

impl GuestMemory {
    fn check(&self, ipa: u64, size: u64) -> Result<usize, String> {
        if ipa % 4096 != 0 || size % 4096 != 0 || size == 0 {
            return Err(format!("slot {ipa:#x}+{size:#x} is not page-aligned (4 KiB)"));
        }
        if let Some(s) = self.slots.iter().find(|s| s.overlaps(ipa, size)) {
            return Err(format!("slot {ipa:#x}+{size:#x} overlaps slot {:#x}+{:#x}", s.ipa, s.size));
        }
        usize::try_from(size).map_err(|_| format!("slot size {size:#x} too large"))
    }

    /// Add a RAM slot (not yet registered with KVM).
    pub fn add(&mut self, ipa: u64, size: u64, readonly: bool) -> Result<(), String> {
        let len = self.check(ipa, size)?;
        let mem = HostMem::new(len).map_err(|e| format!("cannot allocate {size:#x} bytes for slot {ipa:#x}: {e}"))?;
        self.slots.push(Memslot { ipa, size, readonly, backing: Backing::Ram(mem) });
        Ok(())
    }

    /// Add a slot backed by the next free, zeroed window of the device BAR.
    pub fn add_device(&mut self, dev: &Ivshmem, ipa: u64, size: u64) -> Result<(), String> {
        let len = self.check(ipa, size)?;
        let Some(w) = dev.window(self.device_used, len) else {
            return Err(format!("device slot {ipa:#x}+{size:#x} does not fit the {:#x}-byte device memory ({:#x} used)", dev.device_len(), self.device_used));
        };
        w.zero();
        self.device_used += len;
        self.slots.push(Memslot { ipa, size, readonly: false, backing: Backing::Device(w) });
        Ok(())
    }

    /// Register every slot with the VM.
    pub fn register(&self, vm: &VmFd) -> Result<(), String> {
        for (i, s) in self.slots.iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: i as u32,
                flags: if s.readonly { KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: s.ipa,
                memory_size: s.size,
                userspace_addr: s.host_addr(),
            };
            // SAFETY: the host range is a live mapping of memory_size bytes that outlives the
            // VM (job::Spent drops the VM before the GuestMemory).
            unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("KVM_SET_USER_MEMORY_REGION slot {i} at {:#x}+{:#x}: {e}", s.ipa, s.size))?;
        }
        Ok(())
    }

    /// Host-side write (initial contents; a read-only slot is writable from the host).
    pub fn write(&mut self, ipa: u64, bytes: &[u8]) -> Result<(), String> {
        let len = bytes.len() as u64;
        let Some(s) = self.slots.iter_mut().find(|s| s.contains(ipa, len)) else {
            return Err(format!("segment {ipa:#x}+{len:#x} is not inside one memslot"));
        };
        let off = (ipa - s.ipa) as usize;
        match &mut s.backing {
            Backing::Ram(m) => m.as_mut_slice()[off..off + bytes.len()].copy_from_slice(bytes),
            Backing::Device(w) => w.write(off, bytes),
        }
        Ok(())
    }

    pub fn read(&self, ipa: u64, len: u64) -> Result<Cow<'_, [u8]>, String> {
        let Some(s) = self.slots.iter().find(|s| s.contains(ipa, len)) else {
            return Err(format!("range {ipa:#x}+{len:#x} is not inside one memslot (MMIO regions have no memory to read)"));
        };
        let off = (ipa - s.ipa) as usize;
        Ok(match &s.backing {
            Backing::Ram(m) => Cow::Borrowed(&m.as_slice()[off..off + len as usize]),
            Backing::Device(w) => Cow::Owned(w.read(off, len as usize)),
        })
    }
}
