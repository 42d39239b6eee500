//! The Raft log on disk: checksummed JSON lines (`codec`) in segment files
//! named by their first index, plus one state file (vote, committed id, last
//! purged id) replaced atomically. Invariants: the entries in memory are
//! those on disk above the last purged id plus those queued for the next
//! write round, contiguous; an append is reported flushed only after the
//! round's fsync, which appends queued meanwhile share; after a failed write
//! the log refuses writes until reopened. docs/cluster.md draws the format.
//!
//! This module owns the handle, its one lock and the poisoning rule;
//! [`segments`] the segment files (load, append, truncate, purge),
//! [`writer`] the round that writes and fsyncs queued appends, [`zeros`]
//! the zeros preallocated ahead of them in the last segment,
//! [`state_file`] the vote/committed/purged file and the directory lock,
//! [`raft`] openraft's storage traits on top.

mod raft;
mod segments;
mod state_file;
#[cfg(test)]
mod tests;
mod writer;
mod zeros;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use openraft::{ErrorSubject, ErrorVerb};

use crate::error::Error;
use crate::files;
use crate::types::{Entry, LogId, StorageError, TypeConfig};
use segments::{Segment, list_segments, load_segment};
use state_file::{LogStateFile, lock_dir, read_state, write_state};
use writer::{Chunk, OpenSegment, Sizes};
use zeros::ZERO_CHUNK;

/// A segment grows to about this size before the next append starts a new one
/// (purge deletes whole segments, so smaller segments free space sooner).
pub const SEGMENT_BYTES: u64 = 8 << 20;

struct Inner {
    dir: PathBuf,
    state: LogStateFile,
    entries: BTreeMap<u64, Entry>,
    /// Where each entry's line starts: (segment's first index, byte offset).
    places: BTreeMap<u64, (u64, u64)>,
    segments: BTreeMap<u64, Segment>,
    /// Lines appended but not yet written, in order, for the next write round.
    queue: Vec<Chunk>,
    /// The callbacks of the queued appends, called after their fsync.
    waiting: Vec<LogFlushed<TypeConfig>>,
    /// How many write-and-fsync rounds have been done.
    rounds: u64,
    /// Bumped by every truncate and purge: a segment a write round holds
    /// open from before may have been cut or removed.
    file_generation: u64,
    poisoned: bool,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// [`ZERO_CHUNK`], smaller in tests.
    zero_chunk: u64,
}

impl Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("dir", &self.dir)
            .field("entries", &self.entries.len())
            .field("segments", &self.segments.len())
            .field("queued", &self.queue.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Serializes the read-modify-write of the state file, which happens
    /// outside `inner`'s lock (taken before `inner`, never after).
    state_io: Mutex<()>,
    /// Serializes write rounds, and truncate and purge with them; holds the
    /// segment being appended to (taken after `state_io`, before `inner`).
    write_io: Mutex<OpenSegment>,
    /// The log directory's lock, released when the last handle is gone.
    _lock: File,
}

/// The Raft log storage of one node (cheap to clone: clones share the log,
/// and serve as its reader).
#[derive(Clone, Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`: reads the state file and every
    /// segment, cuts a torn last line of the last segment (keeping the bytes
    /// in `<segment>.torn-<offset>`), and refuses damage anywhere else.
    ///
    /// # Errors
    /// [`Error::Locked`] if another handle has the log open (nothing is read
    /// or changed then), [`Error::Corrupt`] naming the file and byte offset,
    /// or [`Error::Io`].
    pub fn open(dir: &Path) -> Result<LogStore, Error> {
        files::ensure_dir(dir)?;
        let lock = lock_dir(dir)?;
        let state = read_state(dir)?;
        let mut inner = Inner {
            dir: dir.to_owned(),
            state,
            entries: BTreeMap::new(),
            places: BTreeMap::new(),
            segments: BTreeMap::new(),
            queue: Vec::new(),
            waiting: Vec::new(),
            rounds: 0,
            file_generation: 0,
            poisoned: false,
            segment_bytes: SEGMENT_BYTES,
            zero_chunk: ZERO_CHUNK,
        };
        let firsts = list_segments(dir)?;
        for (i, &first) in firsts.iter().enumerate() {
            load_segment(&mut inner, first, i + 1 == firsts.len())?;
        }
        inner.drop_purged();
        inner.check_contiguous()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            state_io: Mutex::new(()),
            write_io: Mutex::new(OpenSegment::default()),
            _lock: lock,
        });
        Ok(LogStore { shared })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// Writes and fsyncs what is queued, on this thread ([`writer::write_round`]).
    fn write_queued(&self) {
        writer::write_round(&self.shared);
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _state_io = store.shared.state_io.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = store.shared.write_io.lock().unwrap_or_else(|p| p.into_inner());
            // Truncate and purge work on whole files: every queued append is
            // written first. An append queued meanwhile waits for `write_io`,
            // so it is written here too.
            let mut inner = loop {
                writer::write_locked(&store.shared, &mut open);
                let inner = store.shared.lock();
                if inner.queue.is_empty() {
                    break inner;
                }
            };
            // No zeros may be written into a file being cut or removed.
            open.close();
            f(&mut inner)
        })
        .await
        .map_err(|e| Error::Io(io::Error::other(format!("a raft log task failed: {e}"))))?
    }

    /// Changes the state file (the vote) without holding the log's
    /// lock during the fsyncs: appends and reads go on meanwhile.
    async fn change_state<F>(&self, change: F) -> Result<(), Error>
    where
        F: FnOnce(&mut LogStateFile) + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let shared = &store.shared;
            let _state_io = shared.state_io.lock().unwrap_or_else(|p| p.into_inner());
            let (dir, mut state) = {
                let inner = shared.lock();
                inner.check_writable()?;
                (inner.dir.clone(), inner.state.clone())
            };
            change(&mut state);
            let result = write_state(&dir, &state);
            let mut inner = shared.lock();
            match result {
                // A commit noted meanwhile (in memory only) is kept.
                Ok(()) => inner.state = LogStateFile { committed: inner.state.committed.max(state.committed), ..state },
                Err(_) => inner.poisoned = true,
            }
            result
        })
        .await
        .map_err(|e| Error::Io(io::Error::other(format!("a raft log task failed: {e}"))))?
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the log half-updated in
        // a way later calls depend on: writes poison `Inner` explicitly first.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn storage_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e.into())
}

impl Inner {
    fn check_writable(&self) -> Result<(), Error> {
        if self.poisoned { Err(Error::Poisoned) } else { Ok(()) }
    }

    /// Runs a write; if it fails, the log refuses every later write.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Inner) -> Result<T, Error>) -> Result<T, Error> {
        self.check_writable()?;
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn zero_sizes(&self) -> Sizes {
        Sizes { chunk: self.zero_chunk, limit: self.segment_bytes.next_multiple_of(self.zero_chunk.max(1)) }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.last_key_value().map(|(_, e)| e.log_id).or(self.state.last_purged)
    }
}
