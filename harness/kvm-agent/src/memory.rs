//! Guest memory: host mappings registered as KVM memslots (KVM_SET_USER_MEMORY_REGION,
//! api.rst 4.35). RAM slots are anonymous mappings; device slots are windows of the ivshmem
//! BAR, zeroed per job. No byte of one case is visible to the next, and every job starts with
//! stage 2 empty, whether its VM is fresh or reused (`GuestMemory::layout`):
//! - a RAM slot the job wants exactly as the last job had it (same IPA, size, flags) stays
//!   registered and its host pages are dropped with MADV_DONTNEED: the next touch reads zeros
//!   (madvise(2)), and the kernel's MMU notifier unmaps the range at stage 2 first
//!   (virt/kvm/kvm_main.c kvm_mmu_notifier_invalidate_range_start -> kvm_unmap_gfn_range ->
//!   arch/arm64/kvm/mmu.c __unmap_stage2_range, Linux 6.1), so the guest faults it in again
//!   lazily, exactly as on a new memslot;
//! - any other slot is deleted (memory_size 0, api.rst 4.35), which unmaps it at stage 2
//!   (kvm_arch_flush_shadow_memslot -> unmap_stage2_range), and its mapping freed; the new
//!   ones are created and registered. Device slots are never kept (MADV_DONTNEED does not
//!   apply to a VM_PFNMAP BAR mapping).
//!
//! The stage-2 unmap walker frees table pages left empty (arch/arm64/kvm/hyp/pgtable.c
//! stage2_unmap_walker), so a reused VM's stage 2 holds no tables from earlier jobs either.

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

    /// Drop every page: the next access reads zeros (anonymous private mapping, madvise(2)
    /// MADV_DONTNEED), and KVM unmaps the range at stage 2 through its MMU notifier.
    pub fn discard(&mut self) -> std::io::Result<()> {
        // SAFETY: ptr/len is this live mapping; no Rust reference into it outlives the call
        // (&mut self).
        if unsafe { libc::madvise(self.ptr.cast(), self.len, libc::MADV_DONTNEED) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
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

/// One slot a job wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSpec {
    pub ipa: u64,
    pub size: u64,
    pub readonly: bool,
    /// Backed by the device BAR (stage-2 Device-nGnRE) instead of anonymous RAM.
    pub device: bool,
}

/// A memslot: guest IPA range backed by host memory.
#[derive(Debug)]
pub struct Memslot {
    /// KVM memslot id.
    id: u32,
    pub ipa: u64,
    pub size: u64,
    pub readonly: bool,
    backing: Backing,
    /// A job may have written it or had it mapped at stage 2 since it was last discarded.
    used: bool,
}

impl Memslot {
    pub fn contains(&self, ipa: u64, len: u64) -> bool {
        ipa >= self.ipa && ipa.checked_add(len).is_some_and(|end| end <= self.ipa + self.size)
    }
    pub fn overlaps(&self, ipa: u64, size: u64) -> bool {
        ipa < self.ipa + self.size && self.ipa < ipa.saturating_add(size)
    }
    /// Zero a RAM slot's contents and empty it at stage 2 (HostMem::discard).
    fn discard(&mut self) -> Result<(), String> {
        if let Backing::Ram(m) = &mut self.backing {
            m.discard().map_err(|e| format!("madvise(MADV_DONTNEED) on slot {:#x}+{:#x}: {e}", self.ipa, self.size))?;
            self.used = false;
        }
        Ok(())
    }

    fn spec(&self) -> SlotSpec {
        SlotSpec { ipa: self.ipa, size: self.size, readonly: self.readonly, device: matches!(self.backing, Backing::Device(_)) }
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

    /// Make the VM's memslots exactly `wanted` (in that order of ids on a fresh VM), every
    /// byte zero and stage 2 empty (see the module comment). Returns how many slots were
    /// kept (registered already; their pages discarded).
    pub fn layout(&mut self, vm: &VmFd, dev: Option<&Ivshmem>, wanted: &[SlotSpec], t: &mut [u64; 3]) -> Result<usize, String> {
        let t0 = std::time::Instant::now();
        // On an error a slot not yet deleted stays in `slots`, so it is never unmapped while
        // the VM still has it.
        let mut i = 0;
        while i < self.slots.len() {
            let s = &mut self.slots[i];
            if !s.spec().device && wanted.contains(&s.spec()) {
                if s.used {
                    let d0 = std::time::Instant::now();
                    let r = s.discard();
                    t[1] += d0.elapsed().as_micros() as u64;
                    r?;
                }
                s.used = true;
                i += 1;
            } else {
                // Deleted before its mapping goes (api.rst 4.35: memory_size 0 deletes).
                let region = kvm_userspace_memory_region { slot: s.id, flags: 0, guest_phys_addr: s.ipa, memory_size: 0, userspace_addr: 0 };
                // SAFETY: deleting a slot maps nothing.
                unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("KVM_SET_USER_MEMORY_REGION deleting slot {} at {:#x}: {e}", s.id, s.ipa))?;
                self.slots.remove(i);
            }
        }
        // No device slot is kept, so the whole BAR is free again.
        self.device_used = 0;
        let n_kept = self.slots.len();
        let t1 = std::time::Instant::now();
        for w in wanted {
            if self.slots.iter().any(|s| s.spec() == *w) {
                continue;
            }
            if w.device {
                let dev = dev.ok_or("a device slot but no ivshmem device")?;
                self.add_device(dev, w.ipa, w.size)?;
            } else {
                self.add(w.ipa, w.size, w.readonly)?;
            }
            let s = self.slots.last().ok_or("slot not added")?;
            let region = kvm_userspace_memory_region {
                slot: s.id,
                flags: if s.readonly { KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: s.ipa,
                memory_size: s.size,
                userspace_addr: s.host_addr(),
            };
            // SAFETY: the host range is a live mapping of memory_size bytes that outlives the
            // slot: it is deleted from the VM before the mapping is dropped (above), and a
            // spent VM is dropped before its GuestMemory (job::Spent, job::Kept).
            unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("KVM_SET_USER_MEMORY_REGION slot {} at {:#x}+{:#x}: {e}", s.id, s.ipa, s.size))?;
        }
        t[0] += (t1 - t0).as_micros() as u64;
        t[2] += t1.elapsed().as_micros() as u64;
        Ok(n_kept)
    }

    /// How many memslots `layout` would delete or create to give `wanted`.
    pub fn changes_for(&self, wanted: &[SlotSpec]) -> usize {
        let kept = self.slots.iter().filter(|s| !s.spec().device && wanted.contains(&s.spec())).count();
        (self.slots.len() - kept) + (wanted.len() - kept)
    }

    /// Discard the RAM slots' pages now, so that the next job on this VM need not, if it keeps
    /// them: done after a job's result is sent, off the job path.
    pub fn scrub(&mut self) -> Result<(), String> {
        self.slots.iter_mut().filter(|s| s.used).try_for_each(Memslot::discard)
    }

    /// The lowest memslot id no slot uses.
    fn free_id(&self) -> u32 {
        (0..).find(|i| !self.slots.iter().any(|s| s.id == *i)).unwrap_or(0)
    }

    /// Add a RAM slot (not yet registered with KVM).
    fn add(&mut self, ipa: u64, size: u64, readonly: bool) -> Result<(), String> {
        let len = self.check(ipa, size)?;
        let mem = HostMem::new(len).map_err(|e| format!("cannot allocate {size:#x} bytes for slot {ipa:#x}: {e}"))?;
        let id = self.free_id();
        self.slots.push(Memslot { id, ipa, size, readonly, backing: Backing::Ram(mem), used: true });
        Ok(())
    }

    /// Add a slot backed by the next free, zeroed window of the device BAR.
    fn add_device(&mut self, dev: &Ivshmem, ipa: u64, size: u64) -> Result<(), String> {
        let len = self.check(ipa, size)?;
        let Some(w) = dev.window(self.device_used, len) else {
            return Err(format!("device slot {ipa:#x}+{size:#x} does not fit the {:#x}-byte device memory ({:#x} used)", dev.device_len(), self.device_used));
        };
        w.zero();
        self.device_used += len;
        let id = self.free_id();
        self.slots.push(Memslot { id, ipa, size, readonly: false, backing: Backing::Device(w), used: true });
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
