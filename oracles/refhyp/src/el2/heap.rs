//! The global allocator: a first-fit free list over a fixed RAM range.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};

use linked_list_allocator::Heap;

struct El2Heap(UnsafeCell<Heap>);

// SAFETY: the refhyp runs on one CPU and never allocates from an exception handler (guest
// exits return to the main loop before any handling), so accesses never overlap.
unsafe impl Sync for El2Heap {}

#[global_allocator]
static HEAP: El2Heap = El2Heap(UnsafeCell::new(Heap::empty()));

// SAFETY: `alloc`/`dealloc` forward to the free list, which returns blocks of at least the
// requested layout and takes back only blocks it handed out.
unsafe impl GlobalAlloc for El2Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: exclusive access, see `Sync` above.
        let heap = unsafe { &mut *self.0.get() };
        heap.allocate_first_fit(layout).map_or(null_mut(), |p| p.as_ptr())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: exclusive access; `ptr` came from `alloc` with `layout` (GlobalAlloc contract).
        unsafe { (*self.0.get()).deallocate(NonNull::new_unchecked(ptr), layout) }
    }
}

/// # Safety
/// `[base, base + size)` must be unused RAM, and this must be called once before any
/// allocation.
pub unsafe fn init(base: usize, size: usize) {
    // SAFETY: per this function's contract.
    unsafe { (*HEAP.0.get()).init(base as *mut u8, size) }
}
