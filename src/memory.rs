//! The allocator the binary and the benchmarks use: mimalloc, allowed to use transparent huge
//! pages; and the prefetch with which the hot paths ask for memory before they read it.
//!
//! Why not the system allocator: a partition's state is millions of small heap blocks (user and
//! feature sets, logs) next to one large slot array. Measured on a restore of 1,000,000
//! customers, glibc's malloc spent most of the time in page faults on 4 KiB pages and in its
//! free-list upkeep; mimalloc with 2 MiB pages restores in ~0.65× the time and holds ~10 % less
//! resident memory per customer (see docs/performance.md, What the figures say).

/// The global allocator type; each binary declares `#[global_allocator] static A: Allocator`.
pub use mimalloc::MiMalloc as Allocator;

/// Lets mimalloc ask the kernel for transparent huge pages (`madvise(MADV_HUGEPAGE)`) on the
/// memory it maps. Call first thing in `main`, before the state grows; a hint the kernel may
/// decline (then nothing changes).
pub fn allow_huge_pages() {
    // SAFETY: sets a global option flag; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set_enabled(libmimalloc_sys::mi_option_large_os_pages, true) }
}

/// Prefetches every cache line that the `len` bytes at `ptr` touch (no-op off x86_64).
#[inline]
pub fn prefetch_bytes(ptr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // From the start of the first line, so an unaligned range's last line is not missed.
        let lead = ptr as usize % 64;
        let mut off = 0;
        while off < lead + len.max(1) {
            // SAFETY: prefetch never faults and reads nothing; any address is allowed.
            unsafe { _mm_prefetch(ptr.wrapping_sub(lead).wrapping_add(off) as *const i8, _MM_HINT_T0) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
}
