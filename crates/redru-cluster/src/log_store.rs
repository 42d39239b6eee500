//! The Raft log on disk: checksummed JSON lines (`codec`) in segment files
//! named by their first index, plus one state file (vote, committed id, last
//! purged id) replaced atomically. Invariants: the entries in memory are
//! those on disk above the last purged id plus those queued for the writer
//! thread, contiguous; an append is reported flushed only after the writer's
//! fsync, which appends queued meanwhile share; after a failed write the log
//! refuses writes until reopened. docs/cluster.md draws the format.
//!
//! One file, past 800 lines: the segment files, the writer thread and the
//! state file share one lock and one poisoning rule.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::files::{self, io_err};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// A segment grows to about this size before the next append starts a new one
/// (purge deletes whole segments, so smaller segments free space sooner).
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// One line of a segment: the entry with its index and term in front, so
/// that `grep`/`jq` and the opener see them without decoding the entry.
#[derive(Serialize)]
struct LineRef<'a> {
    index: u64,
    term: u64,
    entry: &'a Entry,
}

#[derive(Deserialize)]
struct Line {
    index: u64,
    term: u64,
    entry: Entry,
}

/// The state file's one line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct LogStateFile {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

#[derive(Debug)]
struct Segment {
    /// Bytes of valid lines in the file.
    len: u64,
    /// Index of its last entry (`None` while it is empty).
    last: Option<u64>,
}

/// Bytes for one segment; `create` when the segment is new.
#[derive(Debug)]
struct Chunk {
    first: u64,
    create: bool,
    bytes: Vec<u8>,
}

struct Inner {
    dir: PathBuf,
    state: LogStateFile,
    entries: BTreeMap<u64, Entry>,
    /// Where each entry's line starts: (segment's first index, byte offset).
    places: BTreeMap<u64, (u64, u64)>,
    segments: BTreeMap<u64, Segment>,
    /// Lines appended but not yet written, in order, for the writer thread.
    queue: Vec<Chunk>,
    /// The callbacks of the queued appends, called after their fsync.
    waiting: Vec<LogFlushed<TypeConfig>>,
    /// Whether the writer is writing a batch it took from the queue.
    in_flight: bool,
    /// How many write-and-fsync rounds the writer has done.
    rounds: u64,
    poisoned: bool,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
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
    /// Signalled whenever the writer finishes a batch.
    idle: Condvar,
    /// Serializes the read-modify-write of the state file, which happens
    /// outside `inner`'s lock (taken before `inner`, never after).
    state_io: Mutex<()>,
    /// The log directory's lock, released when the last handle and the writer are gone.
    _lock: File,
}

/// The writer thread: woken through `wake`; dropping the last handle closes
/// the channel, and the thread writes what is left, then ends (joined here).
#[derive(Debug)]
struct Writer {
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The Raft log storage of one node (cheap to clone: clones share the log,
/// and serve as its reader).
#[derive(Clone, Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: Arc<Writer>,
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
            in_flight: false,
            rounds: 0,
            poisoned: false,
            segment_bytes: SEGMENT_BYTES,
        };
        let firsts = list_segments(dir)?;
        for (i, &first) in firsts.iter().enumerate() {
            load_segment(&mut inner, first, i + 1 == firsts.len())?;
        }
        inner.drop_purged();
        inner.check_contiguous()?;
        let shared =
            Arc::new(Shared { inner: Mutex::new(inner), idle: Condvar::new(), state_io: Mutex::new(()), _lock: lock });
        let (wake, woken) = mpsc::channel();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("redru-raft-log".to_owned())
            .spawn(move || write_loop(&for_thread, &woken))
            .map_err(|e| io_err("starting the raft log writer for", dir, e))?;
        Ok(LogStore { shared, writer: Arc::new(Writer { wake: Some(wake), thread: Some(thread) }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn wake_writer(&self) {
        if let Some(wake) = &self.writer.wake {
            // The thread ends only once every handle is gone: it is there.
            let _ = wake.send(());
        }
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _state_io = store.shared.state_io.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store.shared.wait_idle())
        })
        .await
        .map_err(|e| Error::Io(io::Error::other(format!("a raft log task failed: {e}"))))?
    }

    /// Changes the state file (vote, committed id) without holding the log's
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
                Ok(()) => inner.state = state,
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

    /// The lock, once every queued append is written: truncate, purge and the
    /// state file work on files the writer no longer touches.
    fn wait_idle(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        while inner.in_flight || !inner.queue.is_empty() {
            inner = self.idle.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        inner
    }
}

/// The writer thread: takes everything queued, writes it and fsyncs once,
/// then reports those appends flushed. Appends queued during an fsync go
/// together in the next round: they share one fsync.
fn write_loop(shared: &Shared, woken: &Receiver<()>) {
    loop {
        let closed = woken.recv().is_err();
        while woken.try_recv().is_ok() {}
        write_round(shared);
        if closed {
            return;
        }
    }
}

fn write_round(shared: &Shared) {
    let (dir, chunks, callbacks) = {
        let mut inner = shared.lock();
        if inner.queue.is_empty() {
            return;
        }
        inner.in_flight = true;
        (inner.dir.clone(), std::mem::take(&mut inner.queue), std::mem::take(&mut inner.waiting))
    };
    let result = write_chunks(&dir, &chunks);
    let mut failed_later = Vec::new();
    {
        let mut inner = shared.lock();
        inner.in_flight = false;
        inner.rounds += 1;
        if result.is_err() {
            inner.poisoned = true;
            inner.queue.clear();
            failed_later = std::mem::take(&mut inner.waiting);
        }
        shared.idle.notify_all();
    }
    let message = result.as_ref().err().map(|e| e.to_string());
    for callback in callbacks.into_iter().chain(failed_later) {
        callback.log_io_completed(match &message {
            None => Ok(()),
            Some(m) => Err(io::Error::other(m.clone())),
        });
    }
}

/// Writes the chunks in order; a segment is synced before the next one is
/// created, and the last one at the end.
fn write_chunks(dir: &Path, chunks: &[Chunk]) -> Result<(), Error> {
    let mut current: Option<(PathBuf, File)> = None;
    for chunk in chunks {
        let path = files::segment_path(dir, chunk.first);
        if current.as_ref().is_none_or(|(p, _)| *p != path) {
            if let Some((p, file)) = current.take() {
                file.sync_data().map_err(|e| io_err("syncing", &p, e))?;
            }
            let file = if chunk.create {
                let file = File::create(&path).map_err(|e| io_err("creating", &path, e))?;
                files::sync_dir(dir)?;
                file
            } else {
                OpenOptions::new().append(true).open(&path).map_err(|e| io_err("opening", &path, e))?
            };
            current = Some((path, file));
        }
        if let Some((p, file)) = &mut current {
            file.write_all(&chunk.bytes).map_err(|e| io_err("appending to", p, e))?;
        }
    }
    if let Some((p, file)) = current {
        file.sync_data().map_err(|e| io_err("syncing", &p, e))?;
    }
    Ok(())
}

fn storage_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e.into())
}

/// Takes the log directory's lock before anything is read or repaired.
fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join(files::LOG_LOCK_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err("opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(|e| io_err("writing", &path, e))?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(|e| io_err("writing", &path, e))?;
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let pid = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok());
            Err(Error::Locked { dir: dir.to_owned(), pid })
        }
        Err(fs::TryLockError::Error(e)) => Err(io_err("locking", &path, e).into()),
    }
}

/// Replaces the state file atomically.
fn write_state(dir: &Path, state: &LogStateFile) -> Result<(), Error> {
    let line = codec::encode(state).map_err(io::Error::other)?;
    files::write_atomic(&dir.join(files::LOG_STATE_NAME), &line)?;
    Ok(())
}

fn read_state(dir: &Path) -> Result<LogStateFile, Error> {
    let path = dir.join(files::LOG_STATE_NAME);
    match fs::read(&path) {
        Ok(bytes) => codec::decode(&bytes).map_err(|reason| Error::Corrupt { file: path, offset: 0, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LogStateFile::default()),
        Err(e) => Err(io_err("reading", &path, e).into()),
    }
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut firsts = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let item = item.map_err(|e| io_err("listing", dir, e))?;
        if let Some(first) = item.file_name().to_str().and_then(files::parse_segment_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Checks one decoded line against the index the segment expects next.
fn check_line(line: &Line, expected: u64) -> Result<(), String> {
    let id = &line.entry.log_id;
    if line.index != expected {
        return Err(format!("expected index {expected}, found {}", line.index));
    }
    if id.index != line.index || id.leader_id.term != line.term {
        return Err(format!(
            "the line says index {} term {} but its entry is {}-{}",
            line.index, line.term, id.leader_id.term, id.index
        ));
    }
    Ok(())
}

fn load_segment(inner: &mut Inner, first: u64, is_last: bool) -> Result<(), Error> {
    let path = files::segment_path(&inner.dir, first);
    let bytes = fs::read(&path).map_err(|e| io_err("reading", &path, e))?;
    let mut expected = first;
    let mut len = 0u64;
    for (offset, raw) in codec::lines(&bytes) {
        let decoded = codec::decode::<Line>(raw).and_then(|line| check_line(&line, expected).map(|()| line));
        match decoded {
            Ok(line) => {
                inner.places.insert(line.index, (first, offset));
                inner.entries.insert(line.index, line.entry);
                expected += 1;
                len = offset + raw.len() as u64;
            }
            Err(reason) => {
                let rest = &bytes[offset as usize..];
                if is_last && !codec::lines(rest).skip(1).any(|(_, l)| codec::decode::<Line>(l).is_ok()) {
                    cut_torn_tail(&path, rest, offset)?;
                    break;
                }
                return Err(Error::Corrupt { file: path, offset, reason });
            }
        }
    }
    if expected == first {
        // No entry: a segment created just before a crash. Nothing to keep.
        fs::remove_file(&path).map_err(|e| io_err("removing empty segment", &path, e))?;
        return Ok(());
    }
    inner.segments.insert(first, Segment { len, last: Some(expected - 1) });
    Ok(())
}

/// Keeps the torn bytes aside, then cuts them off the segment.
fn cut_torn_tail(path: &Path, torn: &[u8], offset: u64) -> Result<(), Error> {
    let aside = files::torn_path(path, offset);
    files::write_synced(&aside, torn)?;
    let file = OpenOptions::new().write(true).open(path).map_err(|e| io_err("opening", path, e))?;
    file.set_len(offset).map_err(|e| io_err("cutting the torn tail of", path, e))?;
    file.sync_all().map_err(|e| io_err("syncing", path, e))?;
    if let Some(dir) = path.parent() {
        files::sync_dir(dir)?;
    }
    Ok(())
}

impl Inner {
    fn drop_purged(&mut self) {
        if let Some(purged) = &self.state.last_purged {
            let keep = purged.index + 1;
            self.entries = self.entries.split_off(&keep);
            self.places = self.places.split_off(&keep);
        }
    }

    /// The entries above the last purged id must follow each other.
    fn check_contiguous(&self) -> Result<(), Error> {
        let mut previous: Option<u64> = None;
        for (&index, &(segment, offset)) in &self.places {
            if let Some(p) = previous
                && p + 1 != index
            {
                return Err(Error::Corrupt {
                    file: files::segment_path(&self.dir, segment),
                    offset,
                    reason: format!("entry {index} follows entry {p}: entries are missing"),
                });
            }
            previous = Some(index);
        }
        Ok(())
    }

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

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.last_key_value().map(|(_, e)| e.log_id).or(self.state.last_purged)
    }

    fn save_state(&mut self, state: LogStateFile) -> Result<(), Error> {
        write_state(&self.dir, &state)?;
        self.state = state;
        Ok(())
    }

    /// The segment an entry with `index` goes to: the last one if it ends
    /// right before `index` and has room, else a new one named `index`
    /// (`true`: the writer creates it, after syncing the previous one).
    fn segment_for(&mut self, index: u64) -> (u64, bool) {
        if let Some((&first, seg)) = self.segments.last_key_value()
            && seg.last.map_or(first == index, |l| l + 1 == index)
            && seg.len < self.segment_bytes
        {
            return (first, false);
        }
        self.segments.insert(index, Segment { len: 0, last: None });
        (index, true)
    }

    /// Queues the entries' lines for the writer; they are readable at once.
    fn append(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        for entry in entries {
            let index = entry.log_id.index;
            if let Some(last) = self.entries.last_key_value().map(|(&i, _)| i)
                && index != last + 1
            {
                return Err(Error::Io(io::Error::other(format!(
                    "append of entry {index} after entry {last}: raft log entries must follow each other"
                ))));
            }
            let line = codec::encode(&LineRef { index, term: entry.log_id.leader_id.term, entry: &entry })
                .map_err(io::Error::other)?;
            let (first, create) = self.segment_for(index);
            let seg = self.segments.get_mut(&first).ok_or_else(|| io::Error::other("segment vanished"))?;
            let offset = seg.len;
            seg.len += line.len() as u64;
            seg.last = Some(index);
            match self.queue.last_mut() {
                Some(chunk) if chunk.first == first => chunk.bytes.extend_from_slice(&line),
                _ => self.queue.push(Chunk { first, create, bytes: line }),
            }
            self.places.insert(index, (first, offset));
            self.entries.insert(index, entry);
        }
        Ok(())
    }

    /// Removes the entries from `index` on: later segments go, the one
    /// holding `index` is cut at that entry's line.
    fn truncate(&mut self, index: u64) -> Result<(), Error> {
        let doomed: Vec<u64> = self.segments.range(index..).map(|(&f, _)| f).collect();
        for first in doomed.into_iter().rev() {
            let path = files::segment_path(&self.dir, first);
            fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
            self.segments.remove(&first);
        }
        if let Some(&(first, offset)) = self.places.get(&index)
            && first < index
        {
            let path = files::segment_path(&self.dir, first);
            let file = OpenOptions::new().write(true).open(&path).map_err(|e| io_err("opening", &path, e))?;
            file.set_len(offset).map_err(|e| io_err("truncating", &path, e))?;
            file.sync_all().map_err(|e| io_err("syncing", &path, e))?;
            if let Some(seg) = self.segments.get_mut(&first) {
                seg.len = offset;
                seg.last = Some(index - 1);
            }
        }
        files::sync_dir(&self.dir)?;
        self.entries.split_off(&index);
        self.places.split_off(&index);
        Ok(())
    }

    /// Forgets the entries up to `log_id`: the state file first (so a crash
    /// never resurrects them), then whole segments that hold nothing newer.
    fn purge(&mut self, log_id: LogId) -> Result<(), Error> {
        let state = LogStateFile { last_purged: Some(log_id), ..self.state.clone() };
        self.save_state(state)?;
        self.drop_purged();
        let doomed: Vec<u64> =
            self.segments.iter().filter(|(_, s)| s.last.is_none_or(|l| l <= log_id.index)).map(|(&f, _)| f).collect();
        for first in &doomed {
            let path = files::segment_path(&self.dir, *first);
            fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
            self.segments.remove(first);
        }
        if !doomed.is_empty() {
            files::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        Ok(LogState { last_purged_log_id: inner.state.last_purged, last_log_id: inner.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.change_state(move |state| state.vote = Some(vote))
            .await
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.change_state(move |state| state.committed = committed)
            .await
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().state.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let result = inner.guarded(|i| i.append(entries.into_iter().collect()));
        match result {
            Ok(()) => {
                inner.waiting.push(callback);
                drop(inner);
                self.wake_writer();
                Ok(())
            }
            Err(e) => {
                drop(inner);
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(storage_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.guarded(|i| i.truncate(log_id.index)))
            .await
            .map_err(|e| storage_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.guarded(|i| i.purge(log_id)))
            .await
            .map_err(|e| storage_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::Request;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn entry_at(term: u64, index: u64, request: Request) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Normal(request) }
    }

    fn entry(term: u64, index: u64) -> Entry {
        entry_at(term, index, Request::set(format!("k{index}"), format!("{index}")))
    }

    impl LogStore {
        /// Appends and waits for the writer's fsync.
        fn append_now(&self, entries: Vec<Entry>) -> Result<(), Error> {
            self.lock().guarded(|i| i.append(entries))?;
            self.wake_writer();
            let inner = self.shared.wait_idle();
            if inner.poisoned { Err(Error::Poisoned) } else { Ok(()) }
        }
    }

    fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        range.map(|i| entry(term, i)).collect()
    }

    fn indexes(log: &LogStore) -> Vec<u64> {
        log.lock().entries.keys().copied().collect()
    }

    fn segment_files(dir: &Path) -> Result<Vec<u64>, Error> {
        list_segments(dir)
    }

    /// The documented line (docs/cluster.md, "One line per entry"), byte for byte.
    #[test]
    fn the_line_format_is_stable() -> TestResult {
        let line = codec::encode(&LineRef { index: 7, term: 2, entry: &entry_at(2, 7, Request::set("a", "1")) })?;
        let expected = concat!(
            r#"853e320c {"index":7,"term":2,"entry":{"log_id":{"leader_id":{"term":2,"node_id":1},"index":7},"#,
            r#""payload":{"Normal":{"ops":[{"op":"set","key":"a","value":"1"}]}}}}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(line)?, expected);
        Ok(())
    }

    #[test]
    fn entries_survive_a_reopen_across_segments() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.lock().segment_bytes = 300;
        log.append_now(entries(1, 1..=10))?;
        log.append_now(entries(2, 11..=12))?;
        assert!(segment_files(dir.path())?.len() > 1, "small segments roll over");
        let first = log.lock().entries.clone();
        drop(log);
        let log = LogStore::open(dir.path())?;
        assert_eq!(log.lock().entries, first);
        log.append_now(entries(2, 13..=13))?;
        assert_eq!(indexes(&log), (1..=13).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn appends_queued_during_a_round_share_one_fsync() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        {
            let mut inner = log.lock();
            inner.append(entries(1, 1..=2))?;
            log.wake_writer();
            inner.append(entries(1, 3..=5))?;
            log.wake_writer();
        }
        let rounds = log.shared.wait_idle().rounds;
        assert_eq!(rounds, 1, "two appends queued together are written in one round");
        drop(log);
        assert_eq!(indexes(&LogStore::open(dir.path())?), vec![1, 2, 3, 4, 5]);
        Ok(())
    }

    #[test]
    fn a_second_handle_is_refused_until_the_first_is_gone() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        let reader = log.clone();
        drop(log);
        match LogStore::open(dir.path()) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => return Err(format!("expected Locked, got {other:?}").into()),
        }
        drop(reader);
        LogStore::open(dir.path())?;
        Ok(())
    }

    #[test]
    fn a_gap_or_a_step_back_is_refused_on_append() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.append_now(entries(1, 1..=3))?;
        assert!(log.append_now(entries(1, 5..=5)).is_err());
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_cut_and_kept_aside() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.append_now(entries(1, 1..=3))?;
        drop(log);
        let seg = files::segment_path(dir.path(), 1);
        let good_len = fs::metadata(&seg)?.len();
        let mut half = codec::encode(&LineRef { index: 4, term: 1, entry: &entry(1, 4) })?;
        half.truncate(half.len() / 2);
        OpenOptions::new().append(true).open(&seg)?.write_all(&half)?;
        let log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log), vec![1, 2, 3]);
        assert_eq!(fs::metadata(&seg)?.len(), good_len);
        assert_eq!(fs::read(files::torn_path(&seg, good_len))?, half);
        log.append_now(entries(1, 4..=4))?;
        drop(log);
        assert_eq!(indexes(&LogStore::open(dir.path())?), vec![1, 2, 3, 4]);
        Ok(())
    }

    #[test]
    fn damage_before_a_valid_line_is_refused_with_file_and_offset() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.append_now(entries(1, 1..=3))?;
        let second = log.lock().places[&2].1;
        drop(log);
        let seg = files::segment_path(dir.path(), 1);
        let mut bytes = fs::read(&seg)?;
        bytes[second as usize + 20] ^= 0x01;
        fs::write(&seg, &bytes)?;
        match LogStore::open(dir.path()) {
            Err(e @ Error::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(matches!(&e, Error::Corrupt { file, offset, .. } if *file == seg && *offset == second));
                assert!(message.contains(&seg.display().to_string()), "{message}");
                assert!(message.contains(&format!("at byte {second}")), "{message}");
                assert!(message.contains("checksum"), "{message}");
            }
            other => return Err(format!("expected corruption, got {other:?}").into()),
        }
        assert_eq!(fs::read(&seg)?, bytes, "nothing is changed");
        Ok(())
    }

    #[test]
    fn damage_in_an_older_segment_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.lock().segment_bytes = 300;
        log.append_now(entries(1, 1..=10))?;
        drop(log);
        let seg = files::segment_path(dir.path(), 1);
        let mut bytes = fs::read(&seg)?;
        bytes.truncate(bytes.len() - 5);
        fs::write(&seg, &bytes)?;
        assert!(matches!(LogStore::open(dir.path()), Err(Error::Corrupt { file, .. }) if file == seg));
        Ok(())
    }

    #[test]
    fn truncate_and_purge_survive_a_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.lock().segment_bytes = 300;
        log.append_now(entries(1, 1..=20))?;
        log.lock().truncate(15)?;
        log.lock().purge(LogId::new(CommittedLeaderId::new(1, 1), 7))?;
        assert_eq!(indexes(&log), (8..=14).collect::<Vec<_>>());
        assert!(segment_files(dir.path())?.iter().all(|&f| f <= 14));
        drop(log);
        let log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log), (8..=14).collect::<Vec<_>>());
        assert_eq!(log.lock().state.last_purged.map(|l| l.index), Some(7));
        log.append_now(entries(3, 15..=16))?;
        drop(log);
        let log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log), (8..=16).collect::<Vec<_>>());
        assert_eq!(log.lock().entries[&16].log_id.leader_id.term, 3);
        Ok(())
    }

    #[test]
    fn a_purge_past_the_end_leaves_an_empty_log_that_restarts_later() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.append_now(entries(1, 1..=3))?;
        log.lock().purge(LogId::new(CommittedLeaderId::new(2, 1), 50))?;
        assert!(segment_files(dir.path())?.is_empty());
        assert_eq!(log.lock().last_log_id().map(|l| l.index), Some(50));
        log.append_now(entries(2, 51..=52))?;
        drop(log);
        assert_eq!(indexes(&LogStore::open(dir.path())?), vec![51, 52]);
        Ok(())
    }

    #[test]
    fn vote_and_committed_survive_a_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        let vote = Vote::new(4, 2);
        let committed = Some(LogId::new(CommittedLeaderId::new(4, 2), 9));
        let state = LogStateFile { vote: Some(vote), committed, last_purged: None };
        log.lock().save_state(state)?;
        drop(log);
        let log = LogStore::open(dir.path())?;
        assert_eq!(log.lock().state.vote, Some(vote));
        assert_eq!(log.lock().state.committed, committed);
        assert!(!dir.path().join("raft-state.tmp").exists());
        Ok(())
    }

    /// A tiny deterministic generator: the model test needs no `rand`.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    /// Random appends, truncates, purges and reopens, checked after each step
    /// against a plain map: the log must hold exactly what the model holds.
    #[test]
    fn the_log_agrees_with_a_model_under_random_operations() -> TestResult {
        for seed in 1..=4u64 {
            let dir = tempfile::tempdir()?;
            let mut log = LogStore::open(dir.path())?;
            log.lock().segment_bytes = 400;
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // index -> term
            let mut purged: Option<LogId> = None;
            let mut term = 1;
            for step in 0..300 {
                let last = model.keys().next_back().copied().or(purged.map(|p| p.index)).unwrap_or(0);
                let floor = purged.map_or(0, |p| p.index);
                match rng.below(10) {
                    0..=4 => {
                        let n = 1 + rng.below(4);
                        let batch: Vec<Entry> = (last + 1..=last + n).map(|i| entry(term, i)).collect();
                        log.append_now(batch)?;
                        for i in last + 1..=last + n {
                            model.insert(i, term);
                        }
                    }
                    5 if last > floor => {
                        let at = floor + 1 + rng.below(last - floor);
                        log.lock().truncate(at)?;
                        model.split_off(&at);
                        term += 1;
                    }
                    6 if last > floor => {
                        let upto = floor + 1 + rng.below(last - floor + 2);
                        let id = LogId::new(CommittedLeaderId::new(model.get(&upto).copied().unwrap_or(term), 1), upto);
                        log.lock().purge(id)?;
                        model = model.split_off(&(upto + 1));
                        purged = Some(id);
                    }
                    7 => term += 1,
                    _ => {
                        let segment_bytes = log.lock().segment_bytes;
                        drop(log);
                        log = LogStore::open(dir.path())?;
                        log.lock().segment_bytes = segment_bytes;
                    }
                }
                let inner = log.lock();
                let got: BTreeMap<u64, u64> =
                    inner.entries.iter().map(|(&i, e)| (i, e.log_id.leader_id.term)).collect();
                assert_eq!(got, model, "seed {seed} step {step}");
                assert_eq!(inner.state.last_purged, purged, "seed {seed} step {step}");
            }
        }
        Ok(())
    }

    /// A crash can stop the last write at any byte: every such cut opens as
    /// the entries before it, with the cut bytes kept aside.
    #[test]
    fn a_last_line_cut_at_any_byte_opens_as_the_entries_before_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = LogStore::open(dir.path())?;
        log.append_now(entries(1, 1..=4))?;
        let start = log.lock().places[&4].1;
        drop(log);
        let seg = files::segment_path(dir.path(), 1);
        let whole = fs::read(&seg)?;
        for cut in start as usize..whole.len() {
            fs::write(&seg, &whole[..cut])?;
            let log = LogStore::open(dir.path())?;
            assert_eq!(indexes(&log), vec![1, 2, 3], "cut at byte {cut}");
            assert_eq!(fs::metadata(&seg)?.len(), start);
            if cut as u64 > start {
                assert_eq!(fs::read(files::torn_path(&seg, start))?, &whole[start as usize..cut]);
            }
        }
        Ok(())
    }
}
