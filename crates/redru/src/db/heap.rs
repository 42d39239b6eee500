//! Giving the pages of a dropped state back to the operating system.
//!
//! glibc's allocator keeps freed small blocks in its free lists, resident,
//! unless they sit at the top of a heap: after a restore or a replace import
//! drops the old state (hundreds of MB for a million keys, allocated before
//! the new one and so below it), the process stayed 1.67 x as large as after
//! a reopen of the same data (docs/benchmarks.md); an open's parse threads leave
//! their arenas holding the load's freed buffers. `malloc_trim` returns the
//! free pages inside the heaps too. And growing the heaps in large steps while
//! an open builds its state ([`LargeSteps`]). Elsewhere this does nothing.

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

/// While one is alive, glibc grows its heaps 32 MiB at a time instead of
/// 128 KiB: a log replay's threads allocate ~50 MB of values and tables in
/// their own arenas, which glibc grew with about 7,000 `mprotect` calls per
/// open of 200,000 keys; with the larger steps the open took 0.91 x the
/// time (docs/benchmarks.md, round three). Resident memory does not grow:
/// the step is address space, and the open's `trim` returns what is unused.
/// glibc's own default (128 KiB) is back once the last guard is dropped; a
/// process that chose its own (`MALLOC_TOP_PAD_`, `GLIBC_TUNABLES`) is left
/// alone.
pub(crate) struct LargeSteps(());

/// Guards alive: the first sets the large step, the last restores the default.
static LARGE_STEPS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// glibc's `M_TOP_PAD` default (mallopt(3)).
const DEFAULT_TOP_PAD: i32 = 128 * 1024;
const LARGE_TOP_PAD: i32 = 32 << 20;

impl LargeSteps {
    pub(crate) fn new() -> LargeSteps {
        if !chosen_by_the_process() {
            let mut alive = LARGE_STEPS.lock().unwrap_or_else(|p| p.into_inner());
            if *alive == 0 {
                set_top_pad(LARGE_TOP_PAD);
            }
            *alive += 1;
        }
        LargeSteps(())
    }
}

impl Drop for LargeSteps {
    fn drop(&mut self) {
        if !chosen_by_the_process() {
            let mut alive = LARGE_STEPS.lock().unwrap_or_else(|p| p.into_inner());
            *alive = alive.saturating_sub(1);
            if *alive == 0 {
                set_top_pad(DEFAULT_TOP_PAD);
            }
        }
    }
}

/// Whether the process set glibc's step itself (its environment at start).
fn chosen_by_the_process() -> bool {
    std::env::var_os("MALLOC_TOP_PAD_").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("top_pad"))
}

fn set_top_pad(bytes: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc, `<malloc.h>`.
        const M_TOP_PAD: std::ffi::c_int = -2;
        // SAFETY: `mallopt` is glibc's; M_TOP_PAD only sets how much more
        // than asked a heap grows by, under the allocator's own lock.
        #[allow(unsafe_code)]
        unsafe {
            mallopt(M_TOP_PAD, bytes);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
unsafe extern "C" {
    /// glibc, `<malloc.h>`: `int malloc_trim(size_t pad)`.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
    /// glibc, `<malloc.h>`: `int mallopt(int param, int value)`.
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}
