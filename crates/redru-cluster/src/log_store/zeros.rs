//! Zeros written ahead of the appends in the log's last segment
//! (preallocation), as the engine's log does (docs/cluster.md, "Preallocated
//! zeros"): an append that overwrites zeros already on disk changes neither
//! the file's size nor its extents, so the fdatasync after it writes the
//! data alone, not the inode too.
//!
//! Invariant: an extension writes only at or past `ready`, and the writer
//! never writes past `ready` while one is in flight, so zeros never land on
//! an entry. Extensions run on a thread of their own through a handle of
//! their own; a failed fsync there is kept ([`Zeros::sync_failure`]) so that
//! no later round of the writer counts as durable.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Bytes of zeros each extension writes (and fsyncs). Smaller than the
/// engine's 8 MiB: a segment is only 8 MiB, and a writer's fdatasync that
/// runs beside an extension also waits for the extension's pages.
pub const ZERO_CHUNK: u64 = 1 << 20;

/// Zeros go out in writes of this size (the engine's too).
const PIECE: usize = 64 << 10;

/// The zeros ahead of the writer in one segment, and the thread writing them.
pub(super) struct Zeros {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    chunk: u64,
    /// No zeros are written at or past this offset: the segment is full there
    /// and the next append starts a new one.
    limit: u64,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// The segment through a handle of its own; `None` once an extension
    /// failed (a full disk, most likely) or the file could not be opened:
    /// appends grow the file from then on.
    file: Option<File>,
    /// Bytes `0..ready` are entries, or zeros already written and synced (or
    /// what a crash left after the zeros, overwritten like them); an
    /// extension in flight writes `ready..ready + next`.
    ready: u64,
    /// The next extension's length: one chunk, but the first tops the zeros
    /// up to two chunks ahead of the data, so that the first append does not
    /// at once ask for another.
    next: u64,
    /// An extension is asked for or in flight.
    busy: bool,
    stop: bool,
    /// The first failed fsync of an extension, sticky.
    sync_failed: Option<String>,
}

impl Zeros {
    /// Starts preallocating the segment at `path`, whose entries end at
    /// `end`, followed by zeros (or bytes to overwrite) up to `zeroed`; no
    /// zeros at or past `limit`.
    pub(super) fn start(path: &Path, end: u64, zeroed: u64, chunk: u64, limit: u64) -> Zeros {
        let ready = zeroed.max(end);
        let file = OpenOptions::new().write(true).open(path).ok();
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            chunk,
            limit,
            state: Mutex::new(State {
                file,
                ready,
                next: (end + 2 * chunk).saturating_sub(ready).max(chunk),
                busy: false,
                stop: false,
                sync_failed: None,
            }),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("redru-raft-zeros".into()).spawn(move || worker.run()).ok();
        if thread.is_none() {
            // No thread, no preallocation: appends grow the file as before.
            shared.lock().file = None;
        }
        let zeros = Zeros { shared, thread };
        zeros.reserve(end);
        zeros
    }

    /// Called before the writer writes up to `end`: waits while an extension
    /// writes where the write would go, counts the write's bytes as taken,
    /// and asks for the next chunk once less than one is left ahead, so that
    /// the writer has a whole chunk to fill while the extension runs.
    pub(super) fn reserve(&self, end: u64) {
        let mut state = self.shared.lock();
        while state.busy && end > state.ready {
            state = self.shared.wait(state);
        }
        state.ready = state.ready.max(end);
        if state.busy
            || state.file.is_none()
            || state.ready >= self.shared.limit
            || state.ready - end >= self.shared.chunk
        {
            return;
        }
        state.busy = true;
        self.shared.changed.notify_all();
    }

    /// Why an extension's fsync failed, if one did: the writer's entries in
    /// the page cache may not have reached the disk either.
    pub(super) fn sync_failure(&self) -> Option<String> {
        self.shared.lock().sync_failed.clone()
    }

    /// Waits until no extension is asked for or in flight (tests).
    #[cfg(test)]
    pub(super) fn settle(&self) {
        let mut state = self.shared.lock();
        while state.busy {
            state = self.shared.wait(state);
        }
    }
}

impl std::fmt::Debug for Zeros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Zeros").field("path", &self.shared.path).field("ready", &state.ready).finish()
    }
}

impl Drop for Zeros {
    /// Joins the thread: nothing may write zeros into a segment once the
    /// writer has moved on from it (a truncate or a rollover cuts it next).
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

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// The thread: one extension per request until stopped.
    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.stop {
                // A request left unserved must not hold a writer waiting.
                state.busy = false;
                self.changed.notify_all();
                return;
            }
            if state.busy {
                drop(state);
                self.extend();
                state = self.lock();
            } else {
                state = self.wait(state);
            }
        }
    }

    /// Writes and syncs the next extension (`busy` was set by the asker). A
    /// failed write stops preallocation in this segment (the zeros written
    /// are cut again, giving their room back); a failed fsync is also kept.
    fn extend(&self) {
        let (file, start, len) = {
            let mut state = self.lock();
            let len = state.next.min(self.limit.saturating_sub(state.ready));
            (state.file.take(), state.ready, len)
        };
        let Some(mut file) = file else {
            self.finish(None, start, 0, None);
            return;
        };
        let outcome = write_zeros(&mut file, start, len);
        if let Err((false, _)) = &outcome {
            let _ = file.set_len(start);
        }
        let keep = outcome.is_ok().then_some(file);
        let failed_sync = match outcome {
            Err((true, e)) => Some(format!("preallocating {}: {e}", self.path.display())),
            _ => None,
        };
        self.finish(keep, start, len, failed_sync);
    }

    fn finish(&self, file: Option<File>, start: u64, len: u64, failed_sync: Option<String>) {
        let mut state = self.lock();
        if file.is_some() {
            state.ready = state.ready.max(start + len);
            state.next = self.chunk;
        }
        state.file = file;
        if let Some(why) = failed_sync {
            state.sync_failed.get_or_insert(why);
        }
        state.busy = false;
        drop(state);
        self.changed.notify_all();
    }
}

/// Writes `len` zero bytes at `start`, 64 KiB per write(2), and syncs them;
/// on error, whether it was the sync that failed. Real zeros, not
/// `fallocate`: on ext4 an unwritten extent still changes metadata when it
/// is first written, which is the fdatasync cost this is here to avoid.
fn write_zeros(file: &mut File, start: u64, len: u64) -> Result<(), (bool, std::io::Error)> {
    let zeros = [0u8; PIECE];
    file.seek(SeekFrom::Start(start)).map_err(|e| (false, e))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(PIECE as u64) as usize;
        file.write_all(&zeros[..n]).map_err(|e| (false, e))?;
        left -= n as u64;
    }
    file.sync_data().map_err(|e| (true, e))
}
