//! Background writeback of a relaxed log's open segment: every MiB the
//! writer appends (`Vfs::writeback_every`), a thread of its own asks the
//! kernel to start writing those pages out (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, as RocksDB's
//! `wal_bytes_per_sync`), without waiting for the disk and without the
//! file's inode lock. A relaxed writer then never meets a pile of dirty
//! pages at once (the kernel's writeback throttling, or the next fsync
//! writing them all), and it gets this without preallocated zeros, whose
//! writes hold the inode lock beside the writer (docs/design.md,
//! "Preallocated segments"; issue 17).
//!
//! A hint only: it acknowledges nothing and waits for nothing, so a failure
//! is ignored here; an I/O error in the writeback it started is reported to
//! the log's next fsync of the file, as any other writeback error is.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::storage::vfs::VFile;

/// Only whole pages behind the writer are handed to writeback: the page the
/// writer is still filling would otherwise be written out again and again.
const PAGE: u64 = 4096;

/// Starts writeback of the open segment's pages behind the writer.
pub(super) struct Writeback {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// Bytes appended between two writebacks.
    every: u64,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    file: Arc<dyn VFile>,
    /// Bytes `0..started` were handed to writeback (or need none).
    started: u64,
    /// Bytes `0..written` were appended.
    written: u64,
    stop: bool,
}

impl Writeback {
    /// Starts the thread for `file`, whose data ends at `end`; `None` if no
    /// thread could be started (the log works without it).
    pub fn start(file: Arc<dyn VFile>, end: u64, every: u64) -> Option<Writeback> {
        let shared = Arc::new(Shared {
            every: every.max(PAGE),
            state: Mutex::new(State { file, started: end, written: end, stop: false }),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("redru-writeback".into()).spawn(move || worker.run()).ok()?;
        Some(Writeback { shared, thread: Some(thread) })
    }

    /// The writer appended up to `end`: wakes the thread once `every` bytes
    /// wait (a lock and a comparison otherwise).
    pub fn appended(&self, end: u64) {
        let mut state = self.shared.lock();
        state.written = end;
        if end.saturating_sub(state.started) >= self.shared.every {
            drop(state);
            self.shared.changed.notify_one();
        }
    }

    /// The writer appends to `file` from `end` on (a rotation): the old
    /// segment was synced, so nothing of it is left to write back.
    pub fn switch(&self, file: Arc<dyn VFile>, end: u64) {
        let mut state = self.shared.lock();
        state.file = file;
        state.started = end;
        state.written = end;
    }

    /// Pages handed to writeback so far (the tests' view).
    #[cfg(test)]
    fn started(&self) -> u64 {
        self.shared.lock().started
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.stop {
                return;
            }
            let upto = state.written / PAGE * PAGE;
            if upto > state.started && state.written - state.started >= self.every {
                let (file, from) = (Arc::clone(&state.file), state.started);
                state.started = upto;
                drop(state);
                // A hint (see the module's doc): a failure loses nothing.
                let _ = file.start_writeback(from, upto - from);
                state = self.lock();
            } else {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::vfs::{StdFs, Vfs};

    /// The hand-declared system call is the right one: it accepts the
    /// range and the flag (a wrong symbol or flag fails with EINVAL, which
    /// the thread would ignore).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_real_file_system_starts_writeback_of_a_range() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = StdFs.open_append(&dir.path().join("segment"))?;
        file.append(&[b'x'; 3 * 4096])?;
        file.start_writeback(0, 2 * 4096)?;
        file.start_writeback(4096, 4096)?;
        // A range whose end overflows is the kernel's EINVAL: the call
        // reaches it, and its answer comes back.
        let refused = file.start_writeback(i64::MAX as u64, 2).expect_err("an overflowing range");
        assert_eq!(refused.raw_os_error(), Some(22), "{refused}");
        Ok(())
    }

    #[test]
    fn whole_pages_behind_the_writer_are_handed_to_writeback_every_so_many_bytes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("segment");
        std::fs::write(&path, b"")?;
        let file: Arc<dyn VFile> = Arc::from(StdFs.open_append(&path)?);
        let writeback = Writeback::start(Arc::clone(&file), 0, 64 << 10).expect("a thread");
        let settle = |want: u64| {
            for _ in 0..2000 {
                if writeback.started() == want {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        };
        file.append(&vec![b'x'; 10_000])?;
        writeback.appended(10_000);
        assert_eq!(writeback.started(), 0, "10,000 bytes are fewer than 64 KiB");
        file.append(&vec![b'x'; 70_000])?;
        writeback.appended(80_000);
        assert!(settle(80_000 / PAGE * PAGE), "the whole pages of 80,000 bytes");
        writeback.switch(Arc::clone(&file), 5);
        assert_eq!(writeback.started(), 5);
        Ok(())
    }
}
