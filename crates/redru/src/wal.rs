//! The write-ahead log: segment files, appending with group commit, and
//! scanning with the torn-tail policy.
//!
//! Invariants: sequence numbers are strictly increasing by one across all
//! segments; every segment but the last was fsynced before the next was
//! created, so damage there is always corruption; only the last segment can
//! have a torn tail, and only bytes after its last valid record count as one.
//! A record is acknowledged (in `Durability::Always`) only once an fsync that
//! started after its append has returned. In `Durability::Buffered` records
//! wait in the writer's buffer and reach the file as one append of whole
//! lines; every sync, rotation and freeze writes the buffer out first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

use crate::error::{Error, Result};
use crate::record::{self, DecodeError, Record, Seq};
use crate::vfs::{VFile, Vfs};

/// The name of the segment whose first record has sequence number `first`.
///
/// The naming scheme, in one place: `wal-` + 20-digit zero-padded first
/// sequence number + `.wal`, so names sort in log order. The torn-tail side
/// file of a segment is the segment's name + `.torn-<offset>`; `repair`'s
/// quarantine file is the segment's name + `.quarantine-<offset>`.
pub fn segment_name(first: Seq) -> String {
    format!("wal-{:020}.wal", first.0)
}

/// Parses a segment name made by [`segment_name`].
pub fn parse_segment_name(name: &str) -> Option<Seq> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Seq)
}

/// One segment file of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// The sequence number its first record has (or will have).
    pub first: Seq,
}

/// The log's segments in `dir`, in order.
pub fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<Segment>> {
    let names = vfs.list(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut segments: Vec<Segment> =
        names.iter().filter_map(|n| parse_segment_name(n).map(|first| Segment { path: dir.join(n), first })).collect();
    segments.sort_by_key(|s| s.first);
    Ok(segments)
}

/// A record found by [`scan`], with where it was found.
pub struct Found {
    /// Its sequence number.
    pub seq: Seq,
    /// The record.
    pub record: Record,
    /// 1-based line number in the segment.
    pub line: u64,
    /// Byte offset of the start of its line.
    pub offset: u64,
}

/// How a scanned segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a valid record.
    Clean,
    /// From `offset` on, the bytes are a torn write (an incomplete line, or
    /// damaged lines with no valid record after them).
    Torn {
        /// Where the torn bytes start (the end of the last valid record).
        offset: u64,
        /// 1-based line number where they start.
        line: u64,
        /// Why the first torn line is not a record.
        reason: String,
    },
}

/// Damage found by [`scan`] that is not a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the start of the line.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The sequence number of the last valid record before the damage, if any.
    pub after: Option<Seq>,
}

/// What [`scan`] found: how the segment ends and the next expected sequence number, or damage.
pub type ScanOutcome = std::result::Result<(Tail, Seq), Damage>;

/// Scans the bytes of one segment, calling `each` for every valid record in order.
///
/// `expected` is the sequence number the first record must carry. With
/// `last` (the log's last segment), damage with no valid record after it is
/// a torn tail; anywhere else, and whenever a valid record follows, it is
/// [`Damage`]. A valid record out of sequence is always damage.
pub fn scan(
    bytes: &[u8],
    mut expected: Seq,
    last: bool,
    mut each: impl FnMut(Found) -> Result<()>,
) -> Result<ScanOutcome> {
    let mut offset = 0usize;
    let mut line = 0u64;
    let mut previous: Option<Seq> = None;
    // Checksums and JSON parsing are most of a replay: on a large segment
    // they run on every core first; the checks below stay in log order.
    let mut predecoded = (bytes.len() >= PARALLEL_DECODE_BYTES).then(|| decode_lines(bytes).into_iter());
    while offset < bytes.len() {
        line += 1;
        let rest = &bytes[offset..];
        let (text, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], true),
            None => (rest, false),
        };
        let decoded = if complete {
            match predecoded.as_mut().and_then(Iterator::next) {
                Some(decoded) => decoded,
                None => record::decode(text),
            }
        } else {
            Err(DecodeError::Malformed(format!("incomplete last line ({} bytes, no newline)", text.len())))
        };
        match decoded {
            Ok((seq, record)) => {
                if seq != expected {
                    let reason = if seq > expected {
                        format!("sequence gap: expected {expected}, found {seq} (records are missing)")
                    } else {
                        format!("sequence steps back: expected {expected}, found {seq}")
                    };
                    return Ok(Err(Damage { line, offset: offset as u64, reason, after: previous }));
                }
                each(Found { seq, record, line, offset: offset as u64 })?;
                previous = Some(seq);
                expected = seq.next();
                offset += text.len() + 1;
            }
            Err(why) => {
                if last && !any_valid_record(&rest[text.len().min(rest.len())..]) {
                    let tail = Tail::Torn { offset: offset as u64, line, reason: why.to_string() };
                    return Ok(Ok((tail, expected)));
                }
                let reason = if last {
                    format!("{why}, and valid records follow it, so it is not a torn tail")
                } else {
                    format!("{why} (in a segment that was complete and synced)")
                };
                return Ok(Err(Damage { line, offset: offset as u64, reason, after: previous }));
            }
        }
    }
    Ok(Ok((Tail::Clean, expected)))
}

/// Segments at least this large are decoded on several threads.
const PARALLEL_DECODE_BYTES: usize = 1 << 20;

type Decoded = std::result::Result<(Seq, Record), DecodeError>;

/// Decodes every complete line of `bytes`, in order, splitting the lines
/// between the machine's cores.
fn decode_lines(bytes: &[u8]) -> Vec<Decoded> {
    let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
    let lines: Vec<&[u8]> = bytes[..last_nl].split(|&b| b == b'\n').collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per = lines.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(|l| record::decode(l)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(lines.len());
        for (handle, chunk) in handles.into_iter().zip(lines.chunks(per)) {
            // A decoder thread cannot panic on input (the fuzzers hold this);
            // should one die anyway, decode its lines here.
            match handle.join() {
                Ok(decoded) => out.extend(decoded),
                Err(_) => out.extend(chunk.iter().map(|l| record::decode(l))),
            }
        }
        out
    })
}

/// Whether any complete line after the first newline of `bytes` decodes as a valid record.
fn any_valid_record(bytes: &[u8]) -> bool {
    let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else { return false };
    bytes[..last_nl].split(|&b| b == b'\n').skip(1).any(|line| record::decode(line).is_ok())
}

/// A torn tail found at the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornFound {
    /// The segment (always the last one).
    pub segment: Segment,
    /// Where the torn bytes start.
    pub offset: u64,
    /// 1-based line number where they start.
    pub line: u64,
    /// Why the first torn line is not a record.
    pub reason: String,
    /// The torn bytes themselves.
    pub bytes: Vec<u8>,
    /// The last valid record before them.
    pub after: Seq,
}

/// What [`read_log`] found.
#[derive(Debug, Default)]
pub struct LogScan {
    /// Segments whose records are all in the snapshot (not read).
    pub covered: Vec<Segment>,
    /// Segments read, with the length of their valid part.
    pub live: Vec<(Segment, u64)>,
    /// The torn tail of the last segment, if any.
    pub torn: Option<TornFound>,
    /// The last sequence number in the log (or the snapshot's, if later).
    pub last: Seq,
    /// The sequence number the last segment's next record would carry.
    pub log_next: Option<Seq>,
    /// Records applied (sequence number after the snapshot's).
    pub replayed: u64,
    /// Valid records skipped because the snapshot has them.
    pub skipped: u64,
    /// Bytes of valid records read.
    pub bytes: u64,
}

/// Reads the whole log in `dir` without changing anything: checks every
/// record and the sequence, and calls `apply` for each record after
/// `snapshot_seq`, in order. Damage that is not a torn tail is
/// [`Error::Corrupt`], naming the file, line and offset.
pub fn read_log(vfs: &dyn Vfs, dir: &Path, snapshot_seq: Seq, mut apply: impl FnMut(Seq, Record)) -> Result<LogScan> {
    let segments = list_segments(vfs, dir)?;
    let mut out = LogScan { last: snapshot_seq, ..LogScan::default() };
    // Segments wholly before the snapshot's end need not even be read.
    let first_live = segments
        .iter()
        .enumerate()
        .position(|(i, _)| segments.get(i + 1).is_none_or(|next| next.first > snapshot_seq.next()));
    let first_live = first_live.unwrap_or(segments.len());
    out.covered = segments[..first_live].to_vec();
    let live = &segments[first_live..];
    let corrupt = |segment: &Segment, line: u64, offset: u64, reason: String| Error::Corrupt {
        path: segment.path.clone(),
        line,
        offset,
        reason,
    };
    if let Some(first) = live.first()
        && first.first > snapshot_seq.next()
    {
        return Err(corrupt(
            first,
            1,
            0,
            format!(
                "the snapshot ends at record {snapshot_seq} but the log resumes at {}: records {}..{} are missing",
                first.first,
                snapshot_seq.next(),
                first.first.0 - 1
            ),
        ));
    }
    let mut expected: Option<Seq> = None;
    for (i, segment) in live.iter().enumerate() {
        if let Some(expected) = expected
            && segment.first != expected
        {
            return Err(corrupt(
                segment,
                1,
                0,
                format!(
                    "segment starts at record {} but the previous one ends before record {expected}",
                    segment.first
                ),
            ));
        }
        let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
        let last = i + 1 == live.len();
        let outcome = scan(&bytes, segment.first, last, |found| {
            if found.seq > snapshot_seq {
                out.replayed += 1;
                apply(found.seq, found.record);
            } else {
                out.skipped += 1;
            }
            Ok(())
        })?;
        let valid_end = match outcome {
            Err(damage) => return Err(corrupt(segment, damage.line, damage.offset, damage.reason)),
            Ok((tail, next)) => {
                let valid_end = if let Tail::Torn { offset, line, reason } = tail {
                    out.torn = Some(TornFound {
                        segment: segment.clone(),
                        offset,
                        line,
                        reason,
                        bytes: bytes[offset as usize..].to_vec(),
                        after: Seq(next.0 - 1),
                    });
                    offset
                } else {
                    bytes.len() as u64
                };
                expected = Some(next);
                out.log_next = Some(next);
                out.last = out.last.max(Seq(next.0 - 1));
                valid_end
            }
        };
        out.bytes += valid_end;
        out.live.push((segment.clone(), valid_end));
    }
    Ok(out)
}

/// Sets a torn tail aside: copies the torn bytes to a side file next to the
/// segment (synced, directory synced), then cuts the segment at the torn
/// offset and syncs it. Nothing is destroyed; a crash in between only means
/// the next open does it again (with a new side-file name).
pub fn cut_torn_tail(vfs: &dyn Vfs, dir: &Path, torn: &TornFound) -> Result<PathBuf> {
    let side = set_aside(vfs, dir, &torn.segment, "torn", torn.offset, &torn.bytes)?;
    let file = vfs.open_append(&torn.segment.path).map_err(|e| Error::io("opening", &torn.segment.path, e))?;
    file.truncate(torn.offset).map_err(|e| Error::io("truncating", &torn.segment.path, e))?;
    file.sync().map_err(|e| Error::io("syncing", &torn.segment.path, e))?;
    Ok(side)
}

/// Writes `bytes` to a new durable file named after `segment`, `what` and `offset`.
pub fn set_aside(
    vfs: &dyn Vfs,
    dir: &Path,
    segment: &Segment,
    what: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<PathBuf> {
    let base = format!("{}.{what}-{offset}", segment_name(segment.first));
    let mut path = dir.join(&base);
    let mut n = 1;
    while vfs.exists(&path).map_err(|e| Error::io("checking", &path, e))? {
        path = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    let file = vfs.create_new(&path).map_err(|e| Error::io("creating", &path, e))?;
    file.append(bytes).map_err(|e| Error::io("writing", &path, e))?;
    file.sync().map_err(|e| Error::io("syncing", &path, e))?;
    vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))?;
    Ok(path)
}

/// The appending side of the log: the open segment and what has been written to it.
pub struct Writer {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    file: Arc<dyn VFile>,
    segment: Segment,
    /// Segments before the open one, oldest first, with their sizes.
    older: Vec<(Segment, u64)>,
    segment_bytes: u64,
    /// How many bytes of the open segment are known durable (fsynced).
    synced_bytes: u64,
    /// The last sequence number appended (to the page cache or the buffer, maybe not synced).
    written: Seq,
    /// Encoded records not yet handed to the OS: at most one between appends,
    /// unless buffering (`Durability::Buffered`) lets it grow to `buffer_limit`.
    buf: Vec<u8>,
    /// `buf` is written to the file once it holds this many bytes (0: at every append).
    buffer_limit: usize,
    /// Test-only fault: acknowledge without syncing (negative controls).
    pub(crate) skip_sync: bool,
}

impl Writer {
    /// Opens `segment` (already scanned and cut to its valid records) for
    /// appending; `written` is the last sequence number in the log or snapshot.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        segment: Segment,
        older: Vec<(Segment, u64)>,
        written: Seq,
    ) -> Result<Writer> {
        let file: Arc<dyn VFile> =
            Arc::from(vfs.open_append(&segment.path).map_err(|e| Error::io("opening", &segment.path, e))?);
        let segment_bytes = file.len().map_err(|e| Error::io("reading the size of", &segment.path, e))?;
        Ok(Writer {
            vfs,
            dir: dir.to_owned(),
            file,
            segment,
            older,
            segment_bytes,
            synced_bytes: segment_bytes,
            written,
            buf: Vec::with_capacity(4096),
            buffer_limit: 0,
            skip_sync: false,
        })
    }

    /// Keeps appended records in memory until they fill `bytes` (or until
    /// [`Writer::flush`]), instead of writing each at once.
    pub fn buffered(mut self, bytes: usize) -> Writer {
        self.buffer_limit = bytes;
        self.buf.reserve(bytes.saturating_add(4096).min(16 << 20));
        self
    }

    /// The last sequence number appended.
    pub fn written(&self) -> Seq {
        self.written
    }

    /// Bytes in all segments, counting records still in the buffer (the
    /// log's size once they are written).
    pub fn total_bytes(&self) -> u64 {
        self.segment_bytes + self.buf.len() as u64 + self.older.iter().map(|(_, b)| b).sum::<u64>()
    }

    /// Number of segment files.
    pub fn segments(&self) -> usize {
        self.older.len() + 1
    }

    /// Appends `record` as the next sequence number: to the file, or to the
    /// buffer if buffering and it is not full. On error nothing may be
    /// assumed about the file's tail, and buffered records are lost: the
    /// caller must poison the log.
    pub fn append(&mut self, record: &Record) -> Result<Seq> {
        let seq = self.written.next();
        record::encode(seq, record, &mut self.buf);
        if self.buf.len() >= self.buffer_limit {
            self.flush()?;
        }
        self.written = seq;
        Ok(seq)
    }

    /// Hands the buffered records to the OS in one append of whole lines (a
    /// crash during it leaves a torn tail, like any append). On error the
    /// caller must poison the log.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.file.append(&self.buf);
        let len = self.buf.len() as u64;
        self.buf.clear();
        if let Err(e) = written {
            // Best effort: leave no partial line behind (the caller poisons the log).
            let _ = self.file.truncate(self.segment_bytes);
            return Err(Error::io("appending to", &self.segment.path, e));
        }
        self.segment_bytes += len;
        Ok(())
    }

    /// Syncs the open segment and starts a new one at the next sequence
    /// number, so that everything up to [`Writer::written`] lies in older
    /// segments. Does nothing if the open segment is empty.
    pub fn rotate(&mut self) -> Result<()> {
        self.flush()?;
        if self.segment_bytes == 0 {
            return Ok(());
        }
        if !self.skip_sync
            && let Err(e) = self.file.sync()
        {
            self.cut_unsynced();
            return Err(Error::io("syncing", &self.segment.path, e));
        }
        let next = Segment { path: self.dir.join(segment_name(self.written.next())), first: self.written.next() };
        let file: Arc<dyn VFile> =
            Arc::from(self.vfs.create_new(&next.path).map_err(|e| Error::io("creating", &next.path, e))?);
        self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("syncing directory", &self.dir, e))?;
        let old = std::mem::replace(&mut self.segment, next);
        self.older.push((old, self.segment_bytes));
        self.file = file;
        self.segment_bytes = 0;
        self.synced_bytes = 0;
        Ok(())
    }

    /// After a failed fsync: cuts the open segment back to its last durable
    /// byte. The kernel may already have dropped the unsynced pages (marking
    /// them clean), so bytes past that point could read back now and vanish at
    /// the next power loss, leaving a hole before records appended after a
    /// reopen. Cutting them makes what a reopen reads what the disk holds.
    /// Best effort: the log is poisoned either way.
    fn cut_unsynced(&mut self) {
        self.buf.clear();
        if self.file.truncate(self.synced_bytes).is_ok() {
            self.segment_bytes = self.synced_bytes;
            let _ = self.file.sync();
        }
    }

    /// Removes the older segments whose records all have sequence numbers
    /// up to `upto` (they are in a durable snapshot). Returns how many.
    pub fn drop_older(&mut self, upto: Seq) -> Result<usize> {
        let taken = self.take_older(upto);
        remove_segments(&*self.vfs, &self.dir, &taken)
    }

    /// Takes the older segments whose records all have sequence numbers up
    /// to `upto` out of the log, for [`remove_segments`] to delete without
    /// the writer lock (unlinking a large segment takes tens of milliseconds).
    pub fn take_older(&mut self, upto: Seq) -> Vec<Segment> {
        let mut taken = Vec::new();
        // A segment is covered when the next one starts at or before upto + 1.
        while !self.older.is_empty() {
            let next_first = self.older.get(1).map(|(s, _)| s.first).unwrap_or(self.segment.first);
            if next_first > upto.next() {
                break;
            }
            taken.push(self.older.remove(0).0);
        }
        taken
    }
}

/// Deletes segments taken out of the log by [`Writer::take_older`] and syncs
/// the directory. A crash in between leaves covered segments, which the next
/// open removes. Returns how many.
pub fn remove_segments(vfs: &dyn Vfs, dir: &Path, segments: &[Segment]) -> Result<usize> {
    for segment in segments {
        vfs.remove(&segment.path).map_err(|e| Error::io("removing", &segment.path, e))?;
    }
    if !segments.is_empty() {
        vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))?;
    }
    Ok(segments.len())
}

struct SyncState {
    synced: Seq,
    /// Some thread is syncing (or has been handed the role and is about to).
    leader: bool,
    poisoned: Option<String>,
    syncs: u64,
    /// Writers parked until an fsync covers their record, oldest first.
    waiters: Vec<Waiter>,
}

impl SyncState {
    /// Takes out the waiters whose records are durable now.
    fn take_covered(&mut self) -> Vec<Arc<Parked>> {
        let synced = self.synced;
        let mut covered = Vec::new();
        self.waiters.retain(|w| {
            let keep = w.seq > synced;
            if !keep {
                covered.push(Arc::clone(&w.parked));
            }
            keep
        });
        covered
    }
}

/// A writer parked in [`Wal::wait_durable`]: the record it waits for, and how to wake it.
struct Waiter {
    seq: Seq,
    parked: Arc<Parked>,
}

/// Wakes one parked writer with what it needs to know, so that it need not
/// take the sync lock again: each fsync wakes only the writers it covered,
/// and they do not queue on a lock on their way out.
struct Parked {
    thread: Thread,
    outcome: AtomicU8,
}

/// Still waiting.
const WAITING: u8 = 0;
/// An fsync covered the record: it is durable.
const COVERED: u8 = 1;
/// The leader handed its role on: sync on behalf of the waiters.
const LEAD: u8 = 2;
/// Something else changed (the log was poisoned): look again under the lock.
const RECHECK: u8 = 3;

impl Parked {
    fn new() -> Arc<Parked> {
        Arc::new(Parked { thread: std::thread::current(), outcome: AtomicU8::new(WAITING) })
    }

    /// Parks until woken, then says why.
    fn wait(&self) -> u8 {
        loop {
            match self.outcome.load(Ordering::Acquire) {
                WAITING => std::thread::park(),
                outcome => return outcome,
            }
        }
    }

    /// Called with the waiter already out of the list, so it is woken once.
    fn wake(&self, outcome: u8) {
        self.outcome.store(outcome, Ordering::Release);
        self.thread.unpark();
    }
}

/// The log: the writer behind a mutex, and the group-commit state.
pub struct Wal {
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    /// Set (under the sync lock) when `poisoned` is, so that writes check it without that lock.
    poisoned: AtomicBool,
}

impl Wal {
    /// Wraps a writer whose records up to `synced` are already durable.
    pub fn new(writer: Writer, synced: Seq) -> Wal {
        Wal {
            writer: Mutex::new(writer),
            sync: Mutex::new(SyncState { synced, leader: false, poisoned: None, syncs: 0, waiters: Vec::new() }),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Locks the writer. Writers hold it while they check, append and apply,
    /// which is what keeps log order and apply order the same.
    pub fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses with [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn check_poisoned(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.sync_state().poisoned {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the log unusable after a failed write or sync, and wakes every
    /// waiting writer to report it.
    pub fn poison(&self, error: &Error) {
        let mut state = self.sync_state();
        if state.poisoned.is_none() {
            state.poisoned = Some(error.to_string());
            self.poisoned.store(true, Ordering::Release);
        }
        let waiters = std::mem::take(&mut state.waiters);
        drop(state);
        for w in waiters {
            w.parked.wake(RECHECK);
        }
    }

    /// Number of fsyncs of the log so far (group commit makes it smaller than
    /// the number of writes).
    pub fn syncs(&self) -> u64 {
        self.sync_state().syncs
    }

    /// The last durable sequence number.
    pub fn synced(&self) -> Seq {
        self.sync_state().synced
    }

    /// Returns once every record up to `seq` is durable (group commit: one
    /// thread at a time syncs, on behalf of every record appended before its
    /// sync started; the others park until an fsync covers their record).
    pub fn wait_durable(&self, seq: Seq) -> Result<()> {
        let mut state = self.sync_state();
        loop {
            if let Some(cause) = &state.poisoned {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if state.synced >= seq {
                return Ok(());
            }
            if state.leader {
                let parked = Parked::new();
                state.waiters.push(Waiter { seq, parked: Arc::clone(&parked) });
                drop(state);
                match parked.wait() {
                    COVERED => return Ok(()),
                    LEAD => {}
                    _ => {
                        state = self.sync_state();
                        continue;
                    }
                }
            } else {
                state.leader = true;
                drop(state);
            }
            self.lead()?;
            state = self.sync_state();
        }
    }

    /// Syncs on behalf of every record appended so far, as the leader, then
    /// wakes the waiters the fsync covered and hands the role to the oldest
    /// one it did not (if any). Fails only if the log was already poisoned
    /// or the buffer could not be written.
    fn lead(&self) -> Result<()> {
        // Let writers that are ready append first, so that this fsync covers
        // them too (16 threads: ~8 -> ~14 records per fsync, benches/engine.rs).
        std::thread::yield_now();
        let prepared = {
            let mut w = self.lock();
            // Never write records to the file once the log is poisoned.
            match self.check_poisoned().and_then(|()| w.flush()) {
                Ok(()) => Ok((
                    Arc::clone(&w.file),
                    w.segment.path.clone(),
                    w.written,
                    w.segment_bytes,
                    w.segment.first,
                    w.skip_sync,
                )),
                Err(e) => {
                    // Under the writer lock: nothing is appended after the lost records.
                    self.poison(&e);
                    Err(e)
                }
            }
        };
        let (file, path, target, target_bytes, first, skip) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                self.sync_state().leader = false;
                return Err(e);
            }
        };
        let result = if skip { Ok(()) } else { file.sync().map_err(|e| Error::io("syncing", path, e)) };
        {
            let mut w = self.lock();
            let same_segment = w.segment.first == first;
            match &result {
                Ok(()) if same_segment => w.synced_bytes = w.synced_bytes.max(target_bytes),
                Ok(()) => {}
                Err(e) => {
                    // Poison under the writer lock, so no record is appended
                    // between the cut and the refusal.
                    self.poison(e);
                    if same_segment {
                        w.cut_unsynced();
                    }
                }
            }
        }
        let mut state = self.sync_state();
        state.leader = false;
        state.syncs += 1;
        if result.is_ok() {
            state.synced = state.synced.max(target);
        }
        let covered = state.take_covered();
        let next = if state.poisoned.is_none() && !state.waiters.is_empty() {
            state.leader = true;
            Some(state.waiters.remove(0).parked)
        } else {
            None
        };
        drop(state);
        if let Some(next) = next {
            next.wake(LEAD);
        }
        for parked in covered {
            parked.wake(COVERED);
        }
        Ok(())
    }

    /// Hands buffered records to the OS without syncing them; a failure
    /// poisons the log.
    pub fn flush(&self) -> Result<()> {
        let mut w = self.lock();
        self.check_poisoned()?;
        w.flush().inspect_err(|e| self.poison(e))
    }

    /// Makes everything appended so far durable.
    pub fn sync_all(&self) -> Result<()> {
        let target = self.lock().written;
        self.wait_durable(target)
    }

    /// Records that everything up to `seq` is durable (after a rotation synced it).
    pub fn mark_synced(&self, seq: Seq) {
        let mut state = self.sync_state();
        state.synced = state.synced.max(seq);
        let covered = state.take_covered();
        drop(state);
        for parked in covered {
            parked.wake(COVERED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(records: &[Record], first: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            record::encode(Seq(first + i as u64), r, &mut out);
        }
        out
    }

    fn sets(n: usize) -> Vec<Record> {
        (0..n).map(|i| Record::Set(format!("k{i}"), crate::Doc::from(json!(i)))).collect()
    }

    fn run(bytes: &[u8], first: u64, last: bool) -> Result<(Vec<u64>, ScanOutcome)> {
        let mut seen = Vec::new();
        let out = scan(bytes, Seq(first), last, |f| {
            seen.push(f.seq.0);
            Ok(())
        })?;
        Ok((seen, out))
    }

    #[test]
    fn names_sort_in_log_order() {
        assert_eq!(segment_name(Seq(42)), "wal-00000000000000000042.wal");
        assert_eq!(parse_segment_name(&segment_name(Seq(u64::MAX))), Some(Seq(u64::MAX)));
        assert_eq!(parse_segment_name("wal-42.wal"), None);
        assert_eq!(parse_segment_name("wal-00000000000000000042.wal.torn-7"), None);
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() -> Result<()> {
        let bytes = log(&sets(3), 1);
        let second_end = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).map(|(i, _)| i + 1).unwrap_or(0);
        for cut in second_end..bytes.len() {
            let (seen, out) = run(&bytes[..cut], 1, true)?;
            assert_eq!(seen, [1, 2], "cut at {cut}");
            if cut == second_end {
                assert_eq!(out, Ok((Tail::Clean, Seq(3))));
            } else {
                assert!(matches!(out, Ok((Tail::Torn { offset, line: 3, .. }, _)) if offset == second_end as u64));
            }
        }
        Ok(())
    }

    #[test]
    fn zeros_and_garbage_after_the_end_are_torn() -> Result<()> {
        let mut bytes = log(&sets(2), 1);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 4096]);
        let (_, out) = run(&bytes, 1, true)?;
        assert!(matches!(out, Ok((Tail::Torn { offset, .. }, _)) if offset == end));
        bytes.extend_from_slice(b"\ngarbage\n\x07\x07\n");
        let (_, out) = run(&bytes, 1, true)?;
        assert!(matches!(out, Ok((Tail::Torn { offset, .. }, _)) if offset == end));
        Ok(())
    }

    #[test]
    fn damage_followed_by_valid_records_is_corruption() -> Result<()> {
        let bytes = log(&sets(5), 1);
        let starts: Vec<usize> = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
            .collect();
        let mut damaged = bytes.clone();
        damaged[starts[2] + 20] ^= 0x10;
        let (seen, out) = run(&damaged, 1, true)?;
        assert_eq!(seen, [1, 2]);
        let damage = out.err();
        assert_eq!(damage.as_ref().map(|d| (d.line, d.offset, d.after)), Some((3, starts[2] as u64, Some(Seq(2)))));
        // In an older segment even a damaged last line is corruption.
        let mut tail_damaged = bytes.clone();
        let n = tail_damaged.len();
        tail_damaged[n - 3] ^= 0x10;
        assert!(run(&tail_damaged, 1, false)?.1.is_err());
        assert!(matches!(run(&tail_damaged, 1, true)?.1, Ok((Tail::Torn { line: 5, .. }, _))));
        Ok(())
    }

    #[test]
    fn a_large_segment_decoded_in_parallel_scans_the_same() -> Result<()> {
        let records: Vec<Record> = (0..20_000)
            .map(|i| Record::Set(format!("key{i}"), crate::Doc::from(json!({"i": i, "pad": "x".repeat(40)}))))
            .collect();
        let bytes = log(&records, 1);
        assert!(bytes.len() >= PARALLEL_DECODE_BYTES);
        let (seen, out) = run(&bytes, 1, true)?;
        assert_eq!(seen.len(), 20_000);
        assert_eq!(out, Ok((Tail::Clean, Seq(20_001))));
        let starts: Vec<usize> = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
            .collect();
        // Damage in the middle: refused at its line, with the records before it seen.
        let mut damaged = bytes.clone();
        damaged[starts[12_345] + 30] ^= 0x08;
        let (seen, out) = run(&damaged, 1, true)?;
        assert_eq!(seen.len(), 12_345);
        assert_eq!(out.err().map(|d| (d.line, d.offset)), Some((12_346, starts[12_345] as u64)));
        // A torn last record and zeros after it: a torn tail.
        let mut torn = bytes[..bytes.len() - 10].to_vec();
        torn.extend_from_slice(&[0u8; 5000]);
        let (seen, out) = run(&torn, 1, true)?;
        assert_eq!(seen.len(), 19_999);
        assert!(matches!(out, Ok((Tail::Torn { line: 20_000, .. }, _))));
        Ok(())
    }

    #[test]
    fn gaps_and_steps_back_are_corruption() -> Result<()> {
        let mut bytes = log(&sets(2), 1);
        bytes.extend(log(&sets(1), 4));
        let damage = run(&bytes, 1, true)?.1.err();
        assert!(damage.is_some_and(|d| d.line == 3 && d.reason.contains("gap")));
        let mut back = log(&sets(2), 1);
        back.extend(log(&sets(1), 2));
        let damage = run(&back, 1, true)?.1.err();
        assert!(damage.is_some_and(|d| d.line == 3 && d.reason.contains("back")));
        // The first record must carry the expected number too.
        assert!(run(&log(&sets(1), 5), 1, true)?.1.is_err());
        Ok(())
    }

    /// A file whose fsyncs block until the test releases them, each with the outcome it is given.
    #[derive(Debug, Default)]
    struct Gate {
        state: Mutex<GateState>,
        changed: std::sync::Condvar,
    }

    #[derive(Debug, Default)]
    struct GateState {
        data: Vec<u8>,
        /// fsyncs entered so far.
        entered: usize,
        /// Outcomes released so far, one per fsync in order (true: success).
        released: Vec<bool>,
    }

    impl Gate {
        fn state(&self) -> MutexGuard<'_, GateState> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }
        fn wait_until(&self, done: impl Fn(&GateState) -> bool) {
            let mut state = self.state();
            while !done(&state) {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
        fn release(&self, ok: bool) {
            self.state().released.push(ok);
            self.changed.notify_all();
        }
    }

    struct GateFile(Arc<Gate>);

    impl VFile for GateFile {
        fn append(&self, buf: &[u8]) -> std::io::Result<()> {
            self.0.state().data.extend_from_slice(buf);
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            let mut state = self.0.state();
            let me = state.entered;
            state.entered += 1;
            self.0.changed.notify_all();
            // The sync of the cut after a failure is not gated.
            while state.released.len() <= me && !state.released.contains(&false) {
                state = self.0.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.released.get(me) == Some(&false) {
                Err(std::io::Error::other("injected fsync failure"))
            } else {
                Ok(())
            }
        }
        fn truncate(&self, len: u64) -> std::io::Result<()> {
            self.0.state().data.truncate(len as usize);
            Ok(())
        }
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.0.state().data.len() as u64)
        }
    }

    #[derive(Debug)]
    struct GateFs(Arc<Gate>);

    impl Vfs for GateFs {
        fn create_dir_all(&self, _: &Path) -> std::io::Result<()> {
            Err(std::io::Error::other("unused"))
        }
        fn list(&self, _: &Path) -> std::io::Result<Vec<String>> {
            Err(std::io::Error::other("unused"))
        }
        fn exists(&self, _: &Path) -> std::io::Result<bool> {
            Err(std::io::Error::other("unused"))
        }
        fn open_append(&self, _: &Path) -> std::io::Result<Box<dyn VFile>> {
            Ok(Box::new(GateFile(Arc::clone(&self.0))))
        }
        fn create_new(&self, _: &Path) -> std::io::Result<Box<dyn VFile>> {
            Err(std::io::Error::other("unused"))
        }
        fn read(&self, _: &Path) -> std::io::Result<crate::vfs::FileBytes> {
            Err(std::io::Error::other("unused"))
        }
        fn rename(&self, _: &Path, _: &Path) -> std::io::Result<()> {
            Err(std::io::Error::other("unused"))
        }
        fn remove(&self, _: &Path) -> std::io::Result<()> {
            Err(std::io::Error::other("unused"))
        }
        fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
            Err(std::io::Error::other("unused"))
        }
        fn try_lock(&self, _: &Path) -> std::io::Result<crate::vfs::LockOutcome> {
            Err(std::io::Error::other("unused"))
        }
    }

    /// Group commit with a gated fsync: a leader appends record 1 and blocks in its
    /// fsync; `waiters` more writers append records 2.. and park behind it; then
    /// the fsyncs are released with `outcomes`. Returns each writer's result (the
    /// leader's first), the fsync count and the file's final length.
    fn gated_group(waiters: usize, outcomes: &[bool]) -> (Vec<Result<()>>, u64, usize) {
        let gate = Arc::new(Gate::default());
        let vfs: Arc<dyn Vfs> = Arc::new(GateFs(Arc::clone(&gate)));
        let segment = Segment { path: PathBuf::from("wal-test"), first: Seq(1) };
        let writer = match Writer::open(vfs, Path::new("."), segment, Vec::new(), Seq(0)) {
            Ok(writer) => writer,
            Err(e) => return (vec![Err(e)], 0, 0),
        };
        let wal = Wal::new(writer, Seq(0));
        let write = |wal: &Wal| -> Result<()> {
            let seq = wal.lock().append(&Record::Set("k".into(), crate::Doc::from(json!(1))))?;
            wal.wait_durable(seq)
        };
        let results = std::thread::scope(|s| {
            let leader = s.spawn(|| write(&wal));
            gate.wait_until(|g| g.entered == 1);
            let others: Vec<_> = (0..waiters).map(|_| s.spawn(|| write(&wal))).collect();
            // Every writer is parked behind the leader's fsync before it returns.
            while wal.sync_state().waiters.len() < waiters {
                std::thread::yield_now();
            }
            for &ok in outcomes {
                gate.release(ok);
            }
            std::iter::once(leader)
                .chain(others)
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::InvalidInput("writer panicked".into()))))
                .collect()
        });
        let len = gate.state().data.len();
        (results, wal.syncs(), len)
    }

    #[test]
    fn writers_parked_behind_a_failed_fsync_all_get_the_error() {
        let (results, syncs, len) = gated_group(6, &[false]);
        assert_eq!(results.len(), 7);
        for r in &results {
            assert!(matches!(r, Err(Error::Poisoned { cause }) if cause.contains("injected")), "{r:?}");
        }
        assert_eq!(syncs, 1);
        assert_eq!(len, 0, "the unsynced records are cut");
    }

    #[test]
    fn the_fsync_after_the_leaders_covers_the_writers_parked_behind_it() {
        // The first fsync covers only the leader's record; the role passes to one
        // parked writer, whose single fsync covers all the others.
        let (results, syncs, len) = gated_group(6, &[true, true]);
        assert_eq!(results.len(), 7);
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(syncs, 2);
        assert!(len > 0);
        // And if that second fsync fails, all six get the error, the leader none.
        let (results, syncs, _) = gated_group(6, &[true, false]);
        assert!(results[0].is_ok());
        assert!(results[1..].iter().all(|r| matches!(r, Err(Error::Poisoned { .. }))), "{results:?}");
        assert_eq!(syncs, 2);
    }
}
