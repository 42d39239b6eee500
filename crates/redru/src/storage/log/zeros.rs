//! Zeros written ahead of the open segment's appends (preallocation): an
//! append that overwrites zeros already on disk changes neither the file's
//! size nor its extents, so the fdatasync after it writes the data alone
//! (no journal commit), and a relaxed writer's `write(2)` never waits for
//! one (docs/design.md, "Preallocated segments").
//!
//! Invariant: the extension writes only at or past `ready`, and the writer
//! never writes past `ready` while an extension is in flight, so zeros never
//! land on a record. Extensions use a file handle of their own, so a failed
//! fsync there is still reported to the writer's handle; it is also kept
//! here ([`Zeros::sync_failure`]) so that no later sync of the writer counts
//! as durable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::storage::vfs::{Preallocation, VFile, Vfs};

/// The zeros ahead of the writer in the open segment, and who writes them.
pub(super) struct Zeros {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    vfs: Arc<dyn Vfs>,
    chunk: u64,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// The open segment, through a handle of its own; `None` once a failed
    /// extension (a full disk) or a failed open stopped preallocation in
    /// this segment: appends grow the file from then on.
    file: Option<(PathBuf, Arc<dyn VFile>)>,
    /// Bytes `0..ready` are the segment's data or zeros an extension wrote
    /// and synced; an extension in flight writes `ready..ready + next`.
    ready: u64,
    /// The length of the next extension: a chunk, but the first one in a
    /// segment tops the zeros up to two chunks ahead of the data, so that
    /// the first append does not at once ask for another chunk, whose
    /// writeback the writer's next fdatasync would wait for (ext4 flushes
    /// the whole file; 5-10 ms on the first durable set after an open).
    next: u64,
    /// An extension is in flight (or asked for).
    busy: bool,
    /// A rotation is about to cut the segment: no extension may start.
    paused: bool,
    stop: bool,
    /// The first failed fsync of an extension, sticky.
    sync_failed: Option<String>,
    /// An extension failed (a full disk, most likely): none is tried again
    /// until the log is reopened, in this segment or the next, so that
    /// zeros never take the room a snapshot or a record needs.
    given_up: bool,
}

impl Zeros {
    /// Starts preallocating the segment at `path`, whose data ends at
    /// `end`, followed by zeros up to `zeroed`; `None` when the file system
    /// preallocates nothing.
    pub fn start(vfs: &Arc<dyn Vfs>, path: &Path, end: u64, zeroed: u64) -> Option<Zeros> {
        let Preallocation { chunk, background } = vfs.preallocation();
        if chunk == 0 {
            return None;
        }
        let shared = Arc::new(Shared {
            vfs: Arc::clone(vfs),
            chunk,
            state: Mutex::new(State {
                file: None,
                ready: end,
                next: chunk,
                busy: false,
                paused: true,
                stop: false,
                sync_failed: None,
                given_up: false,
            }),
            changed: Condvar::new(),
        });
        let thread = if background {
            let worker = Arc::clone(&shared);
            std::thread::Builder::new().name("redru-zeros".into()).spawn(move || worker.run()).ok()
        } else {
            None
        };
        let zeros = Zeros { shared, thread };
        // A failed fsync here is kept (sticky): the writer's first sync fails.
        let _ = zeros.switch(path, end, zeroed.max(end));
        Some(zeros)
    }

    /// Called before the writer writes up to `end`: waits while an
    /// extension writes where the write would go, counts the write's bytes
    /// as taken, and asks for the next chunk once less than one is left, so
    /// that a writer has a whole chunk to fill while an extension runs
    /// before it could catch up with it (8 MiB of zeros and their fsync took
    /// 75-190 ms on the benchmarks' disk). Extending inline (no thread), it
    /// extends before the write and returns why the extension's fsync
    /// failed, if it did: the write must then fail, before it is made.
    #[must_use]
    pub fn reserve(&self, end: u64) -> Option<String> {
        let mut state = self.shared.lock();
        while state.busy && end > state.ready && self.thread.is_some() {
            state = self.shared.wait(state);
        }
        state.ready = state.ready.max(end);
        if state.busy || state.paused || state.file.is_none() || state.ready - end >= self.shared.chunk {
            return None;
        }
        state.busy = true;
        if self.thread.is_some() {
            self.shared.changed.notify_all();
            None
        } else {
            drop(state);
            self.shared.extend()
        }
    }

    /// Waits for an extension in flight and lets no other start: the
    /// segment is about to be cut to its data and sealed.
    pub fn pause(&self) {
        let mut state = self.shared.lock();
        state.paused = true;
        while state.busy {
            state = self.shared.wait(state);
        }
    }

    /// Preallocates the segment at `path` from now on (a rotation, or the
    /// start), whose data ends at `end`, followed by zeros up to `zeroed`,
    /// and asks for a chunk if few are left (extending inline: why its
    /// fsync failed, as [`Zeros::reserve`]).
    #[must_use]
    pub fn switch(&self, path: &Path, end: u64, zeroed: u64) -> Option<String> {
        self.pause();
        let file = self.shared.vfs.open_append(path).ok().map(|f| (path.to_owned(), Arc::from(f)));
        {
            let mut state = self.shared.lock();
            state.file = if state.given_up { None } else { file };
            state.ready = zeroed;
            state.next = (end + 2 * self.shared.chunk).saturating_sub(zeroed).max(self.shared.chunk);
            state.paused = false;
        }
        self.reserve(end)
    }

    /// Why an extension's fsync failed, if one did: the writer's records in
    /// the page cache may not have reached the disk either.
    pub fn sync_failure(&self) -> Option<String> {
        self.shared.lock().sync_failed.clone()
    }

    /// A handle for [`Zeros::sync_failure`] that the group commit's leader
    /// can check outside the writer lock.
    pub fn watcher(&self) -> ZerosWatch {
        ZerosWatch(Arc::clone(&self.shared))
    }
}

/// See [`Zeros::watcher`].
#[derive(Clone)]
pub(super) struct ZerosWatch(Arc<Shared>);

impl ZerosWatch {
    /// See [`Zeros::sync_failure`].
    pub fn sync_failure(&self) -> Option<String> {
        self.0.lock().sync_failed.clone()
    }
}

impl Drop for Zeros {
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

    /// The background thread: one extension per request until stopped.
    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.stop {
                // A request left unserved must not hold a pause or a write.
                state.busy = false;
                self.changed.notify_all();
                return;
            }
            if state.busy {
                drop(state);
                // A failed fsync is kept (sticky) for the writer's next sync.
                let _ = self.extend();
                state = self.lock();
            } else {
                state = self.wait(state);
            }
        }
    }

    /// Writes and syncs the next chunk of zeros (`busy` is set by the
    /// caller); returns why the fsync failed, if it did. A failed write
    /// stops preallocation: the zeros written are cut again (their room is
    /// given back; past the data they were harmless) and the writer grows
    /// the file itself from then on.
    fn extend(&self) -> Option<String> {
        let (file, start, len) = {
            let state = self.lock();
            (state.file.clone(), state.ready, state.next)
        };
        let outcome = file.as_ref().map(|(path, file)| {
            write_zeros(&**file, start, len).map_err(|(synced, e)| {
                if !synced {
                    let _ = file.trim(start);
                }
                (synced, format!("preallocating {}: {e}", path.display()))
            })
        });
        let mut state = self.lock();
        let mut failed_sync = None;
        match outcome {
            Some(Ok(())) => {
                state.ready = state.ready.max(start + len);
                state.next = self.chunk;
            }
            Some(Err((sync, why))) => {
                if sync {
                    state.sync_failed.get_or_insert_with(|| why.clone());
                    failed_sync = Some(why);
                }
                state.file = None;
                state.given_up = true;
            }
            None => {}
        }
        state.busy = false;
        drop(state);
        self.changed.notify_all();
        failed_sync
    }
}

/// Writes `len` zero bytes at `start` and syncs them; on error, whether it
/// was the sync that failed.
fn write_zeros(file: &dyn VFile, start: u64, len: u64) -> Result<(), (bool, std::io::Error)> {
    file.zero(start, len).map_err(|e| (false, e))?;
    file.sync().map_err(|e| (true, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::vfs::{STD_PREALLOCATION, StdFs};

    /// The open's extension tops the zeros up to two chunks ahead: with one,
    /// the first append asked at once for a second chunk, whose writeback
    /// the writer's next fdatasync waited for (issue 18).
    #[test]
    fn the_first_extension_tops_up_two_chunks_so_the_first_append_asks_for_none() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("segment");
        std::fs::write(&path, b"header\n")?;
        let vfs: Arc<dyn Vfs> = Arc::new(StdFs);
        let zeros = Zeros::start(&vfs, &path, 7, 7).expect("StdFs preallocates");
        let settled = || {
            while zeros.shared.lock().busy {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        settled();
        assert_eq!(std::fs::metadata(&path)?.len(), 7 + 2 * STD_PREALLOCATION);
        assert!(zeros.reserve(7 + 200).is_none());
        assert!(!zeros.shared.lock().busy, "the first append asked for another extension");
        // Once less than a chunk is left, the next one is one chunk long.
        assert!(zeros.reserve(7 + STD_PREALLOCATION + 1).is_none());
        settled();
        assert_eq!(std::fs::metadata(&path)?.len(), 7 + 3 * STD_PREALLOCATION);
        Ok(())
    }
}
