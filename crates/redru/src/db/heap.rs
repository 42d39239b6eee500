//! Giving the pages of a dropped state back to the operating system.
//!
//! glibc's allocator keeps freed small blocks in its free lists, resident,
//! unless they sit at the top of a heap: after a restore or a replace import
//! drops the old state (hundreds of MB for a million keys, allocated before
//! the new one and so below it), the process stayed 1.67 x as large as after
//! a reopen of the same data (docs/benchmarks.md); an open's parse threads leave
//! their arenas holding the load's freed buffers. `malloc_trim` returns the
//! free pages inside the heaps too. Elsewhere this does nothing.

/// Returns free heap pages to the OS (glibc); a no-op on other platforms.
/// Costs a walk of the allocator's free lists: call it after a large drop,
/// not on a hot path.
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` is glibc's, takes a byte count to keep and
        // only releases pages of free blocks; it touches no live memory.
        #[allow(unsafe_code)]
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
unsafe extern "C" {
    /// glibc, `<malloc.h>`: `int malloc_trim(size_t pad)`.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}
