//! Guest memory: anonymous host mappings registered as KVM memslots
//! (KVM_SET_USER_MEMORY_REGION, api.rst 4.35). Every job gets fresh zeroed mappings, so no
//! byte of one case is visible to the next.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;

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
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(HostMem { ptr: p.cast(), len })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is a live mapping owned by self. The guest may write it
        // concurrently only while a vCPU runs, and the agent's single thread never runs a
        // vCPU while it holds this slice.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: ptr/len is the mapping created in new and not yet unmapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A memslot: guest IPA range backed by host memory.
#[derive(Debug)]
pub struct Memslot {
    pub ipa: u64,
    pub readonly: bool,
    pub mem: HostMem,
}

impl Memslot {
    pub fn size(&self) -> u64 {
        self.mem.len as u64
    }
    pub fn contains(&self, ipa: u64, len: u64) -> bool {
        ipa >= self.ipa && ipa.checked_add(len).is_some_and(|end| end <= self.ipa + self.size())
    }
    pub fn overlaps(&self, ipa: u64, size: u64) -> bool {
        ipa < self.ipa + self.size() && self.ipa < ipa.saturating_add(size)
    }
}

/// The memslots of one VM.
#[derive(Debug, Default)]
pub struct GuestMemory {
    pub slots: Vec<Memslot>,
}

impl GuestMemory {
    /// Add a slot (not yet registered with KVM).
    pub fn add(&mut self, ipa: u64, size: u64, readonly: bool) -> Result<(), String> {
        if ipa % 4096 != 0 || size % 4096 != 0 || size == 0 {
            return Err(format!("slot {ipa:#x}+{size:#x} is not page-aligned (4 KiB)"));
        }
        if let Some(s) = self.slots.iter().find(|s| s.overlaps(ipa, size)) {
            return Err(format!("slot {ipa:#x}+{size:#x} overlaps slot {:#x}+{:#x}", s.ipa, s.size()));
        }
        let len = usize::try_from(size).map_err(|_| format!("slot size {size:#x} too large"))?;
        let mem = HostMem::new(len).map_err(|e| format!("cannot allocate {size:#x} bytes for slot {ipa:#x}: {e}"))?;
        self.slots.push(Memslot { ipa, readonly, mem });
        Ok(())
    }

    /// Register every slot with the VM.
    pub fn register(&self, vm: &VmFd) -> Result<(), String> {
        for (i, s) in self.slots.iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: i as u32,
                flags: if s.readonly { KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: s.ipa,
                memory_size: s.size(),
                userspace_addr: s.mem.addr(),
            };
            // SAFETY: the host range is a live mapping of memory_size bytes that outlives the
            // VM (GuestMemory is dropped after the VmFd in job::run).
            unsafe { vm.set_user_memory_region(region) }
                .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION slot {i} at {:#x}+{:#x}: {e}", s.ipa, s.size()))?;
        }
        Ok(())
    }

    fn find(&self, ipa: u64, len: u64) -> Option<&Memslot> {
        self.slots.iter().find(|s| s.contains(ipa, len))
    }

    /// Host-side write (initial contents; a read-only slot is writable from the host).
    pub fn write(&mut self, ipa: u64, bytes: &[u8]) -> Result<(), String> {
        let len = bytes.len() as u64;
        let Some(s) = self.slots.iter_mut().find(|s| s.contains(ipa, len)) else {
            return Err(format!("segment {ipa:#x}+{len:#x} is not inside one memslot"));
        };
        let off = (ipa - s.ipa) as usize;
        s.mem.as_mut_slice()[off..off + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    pub fn read(&self, ipa: u64, len: u64) -> Result<&[u8], String> {
        let Some(s) = self.find(ipa, len) else {
            return Err(format!("range {ipa:#x}+{len:#x} is not inside one memslot (MMIO regions have no memory to read)"));
        };
        let off = (ipa - s.ipa) as usize;
        Ok(&s.mem.as_slice()[off..off + len as usize])
    }
}
