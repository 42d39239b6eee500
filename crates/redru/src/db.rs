//! `Db`: the handle that ties the log, the snapshot and the in-memory state together.
//!
//! Write path: under the log's writer lock a record is checked against the
//! state, appended, and applied, so log order is apply order; then, outside
//! the lock, the writer waits for a group-commit fsync before returning.
//! Reads take a shared lock on the state and return shared handles to values.
//!
//! One file, past 800 lines: open, the write path, save and the rollback all
//! take `Inner`'s locks (the log's writer, the state, the pending undos), and
//! the order they take them in is easiest to check with the methods side by side.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::options::{Durability, Options};
use crate::state::doc::{Doc, IntoDoc};
use crate::state::index::{FieldPath, IndexInfo, IndexKind};
use crate::state::precondition::Precondition;
use crate::state::query::{Query, QueryResult};
use crate::state::store::{Applied, State, Undo};
use crate::storage::files::{BACKUP_DIR, LOCK_NAME, is_backup_temp};
use crate::storage::log::{self, Wal, Writer};
use crate::storage::record::{BatchOp, Record, Seq};
use crate::storage::snapshot::{self, Frozen, SnapshotInfo};
use crate::storage::vfs::{LockGuard, LockOutcome, ReadOnlyFs, Vfs};

/// An open database. `Send + Sync`: share it between threads by reference or `Arc`.
///
/// Dropping it syncs the log and releases the directory; [`Db::close`] does
/// the same and reports errors.
pub struct Db {
    inner: Arc<Inner>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

struct SnapMeta {
    seq: Seq,
    bytes: u64,
    exists: bool,
}

/// The records applied to the state but not yet known durable, with what
/// undoes each: after a failed log write or fsync they are taken back, so that
/// no read shows a write the disk may not have (docs/durability.md).
#[derive(Default)]
struct Pending {
    records: VecDeque<(Seq, Undo)>,
    /// Value bytes the undos keep alive.
    held: usize,
    rolled_back: bool,
}

/// In the relaxed modes, the log is synced when the undos of the records
/// waiting to be known durable hold this much (about 1.1M writes of new small keys), so
/// that what a rollback needs stays bounded.
const PENDING_BYTES: usize = 64 << 20;
/// Durable undos are dropped once this many are kept (not at every write: it
/// takes the group-commit lock).
const PENDING_TRIM: usize = 64;

struct Inner {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    options: Options,
    state: RwLock<State>,
    pending: Mutex<Pending>,
    wal: Wal,
    save_lock: Mutex<()>,
    snap: Mutex<SnapMeta>,
    compactor: Mutex<Option<JoinHandle<()>>>,
    compactions: AtomicU64,
    failed_compactions: AtomicU64,
    /// After a failed automatic compaction: the log size (bytes) the next
    /// attempt waits for; 0 when none failed since the last save.
    compaction_retry_at: AtomicU64,
    last_compaction_error: Mutex<Option<String>>,
    recovery: RecoveryReport,
    _lock: Box<dyn LockGuard>,
}

/// A torn tail cut off the log when the database was opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// The log segment it was cut from.
    pub segment: PathBuf,
    /// The byte offset where the torn bytes started (the new end of the segment).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// The last valid record before them.
    pub after_seq: u64,
    /// Where the cut bytes were kept.
    pub side_file: PathBuf,
    /// Why the first cut line was not a record.
    pub reason: String,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cut a torn tail of {} bytes from {} at byte offset {} (after record {}): {}; the bytes are kept in {}",
            self.bytes,
            self.segment.display(),
            self.offset,
            self.after_seq,
            self.reason,
            self.side_file.display()
        )
    }
}

/// What opening the database found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The snapshot's last record (0 without a snapshot).
    pub snapshot_seq: u64,
    /// Keys loaded from the snapshot.
    pub snapshot_keys: usize,
    /// Log records replayed on top of the snapshot.
    pub records_replayed: u64,
    /// Log records already in the snapshot (left over from an interrupted save).
    pub records_skipped: u64,
    /// The torn tail that was cut, if any.
    pub torn_tail: Option<TornTail>,
    /// Leftovers of an interrupted save (or a failed backup) that were removed.
    pub removed_files: Vec<PathBuf>,
    /// Files named like log segments below the snapshot's end that did not
    /// hold valid records: copied here (`.quarantine-0`) instead of deleted.
    pub set_aside: Vec<PathBuf>,
    /// Time taken to open, in milliseconds.
    pub millis: u64,
}

impl RecoveryReport {
    /// One line for people, or `None` when there is nothing worth saying.
    pub fn warning(&self) -> Option<String> {
        let mut said = Vec::new();
        if let Some(t) = &self.torn_tail {
            said.push(format!("recovered after a crash: {t}"));
        }
        let segments: Vec<String> = self
            .removed_files
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
            .filter(|n| log::parse_segment_name(n).is_some())
            .map(str::to_owned)
            .collect();
        if !segments.is_empty() {
            said.push(format!(
                "removed {} log segment(s) whose records are all in the snapshot (left by an interrupted save): {}",
                segments.len(),
                segments.join(", ")
            ));
        }
        if !self.set_aside.is_empty() {
            let names: Vec<String> = self.set_aside.iter().map(|p| p.display().to_string()).collect();
            said.push(format!(
                "set aside {} file(s) named like log segments that held something other than records already in the snapshot: {}",
                names.len(),
                names.join(", ")
            ));
        }
        (!said.is_empty()).then(|| said.join("; "))
    }
}

/// What [`Db::save`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SaveReport {
    /// The last record in the new snapshot.
    pub seq: u64,
    /// Keys written.
    pub keys: usize,
    /// Size of the new snapshot.
    pub bytes: u64,
    /// Log segments removed because the snapshot now holds them.
    pub segments_removed: usize,
    /// Whether nothing had changed since the last snapshot (nothing written).
    pub unchanged: bool,
    /// Total duration.
    pub duration: Duration,
    /// How long writers were held (freezing the state and rotating the log).
    pub writers_blocked: Duration,
}

/// Counters and sizes, as [`Db::stats`] reports them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// The data directory.
    pub dir: PathBuf,
    /// Number of keys.
    pub keys: usize,
    /// The last sequence number written.
    pub last_seq: u64,
    /// The last sequence number known durable.
    pub durable_seq: u64,
    /// The last sequence number in the snapshot.
    pub snapshot_seq: u64,
    /// Size of `database.json` (0 if none).
    pub snapshot_bytes: u64,
    /// Size of all log segments (with [`Durability::Buffered`], counting
    /// the records still in the buffer).
    pub wal_bytes: u64,
    /// Number of log segment files.
    pub wal_segments: usize,
    /// Log fsyncs since open (fewer than writes when group commit shares them).
    pub wal_syncs: u64,
    /// The durability mode.
    pub durability: String,
    /// Automatic compactions that completed since open.
    pub compactions: u64,
    /// Automatic compactions that failed since open. After a failure the
    /// next attempt waits until the log has grown by
    /// [`Options::auto_compact_min_bytes`] (or a `save` succeeds).
    pub failed_compactions: u64,
    /// The error of the last automatic compaction, if it failed (cleared
    /// when one succeeds).
    pub last_compaction_error: Option<String>,
    /// Why writes are refused, if they are.
    pub poisoned: Option<String>,
    /// The indexes.
    pub indexes: Vec<IndexInfo>,
}

/// An atomic group of sets and deletes: all are applied, or none. With
/// conditions (`require_*`), only if every condition holds just before it is
/// applied; otherwise nothing is written or logged and the error
/// ([`Error::ConditionFailed`]) names the first condition that failed.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = redru::Db::open(dir.path())?;
/// use serde_json::json;
/// db.batch(redru::Batch::new().set("a", json!(1)).set("b", json!(2)).delete("c"))?;
/// assert_eq!(db.len(), 2);
/// # Ok(())
/// # }
/// ```
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = redru::Db::open(dir.path())?;
/// use serde_json::json;
/// let seq = db.set_with_seq("stock", json!(3))?;
/// let order = redru::Batch::new().require_absent("order:1").require_unchanged("stock", seq);
/// db.batch(order.clone().set("order:1", json!({"qty": 1})).set("stock", json!(2)))?;
/// // The same batch again: `order:1` now exists, nothing is written.
/// assert!(matches!(db.batch(order.set("stock", json!(1))), Err(redru::Error::ConditionFailed { .. })));
/// assert_eq!(db.get_value("stock"), Some(json!(2)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<BatchOp>,
    conditions: Vec<Precondition>,
}

/// What [`Db::update`]'s closure decides for the key.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Write this value.
    Set(Doc),
    /// Remove the key (nothing is logged if it is absent).
    Delete,
    /// Leave the key as it is (nothing is logged).
    Keep,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }
    /// Adds a set.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<Doc>) -> Batch {
        self.ops.push(BatchOp::Set(key.into(), value.into()));
        self
    }
    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<String>) -> Batch {
        self.ops.push(BatchOp::Delete(key.into()));
        self
    }
    /// Removes every key; the operations after it apply to an empty map
    /// (`Batch::new().clear().set(..)` replaces the whole content atomically).
    pub fn clear(mut self) -> Batch {
        self.ops.push(BatchOp::Clear);
        self
    }
    /// Requires `key` to be absent when the batch is applied.
    pub fn require_absent(mut self, key: impl Into<String>) -> Batch {
        self.conditions.push(Precondition::Absent(key.into()));
        self
    }
    /// Requires `key` to exist and equal `value` (as JSON values: `1` and
    /// `1.0` differ, member order does not matter) when the batch is applied.
    pub fn require_equals(mut self, key: impl Into<String>, value: impl Into<Value>) -> Batch {
        self.conditions.push(Precondition::Equals(key.into(), value.into()));
        self
    }
    /// Requires `key` to exist and to have been written by no record after
    /// `seq` (as [`Db::get_with_seq`] reported it) when the batch is applied.
    pub fn require_unchanged(mut self, key: impl Into<String>, seq: Seq) -> Batch {
        self.conditions.push(Precondition::Unchanged(key.into(), seq));
        self
    }
    /// Adds a condition in place.
    pub fn push_condition(&mut self, condition: Precondition) {
        self.conditions.push(condition);
    }
    /// The conditions, in the order they were added.
    pub fn conditions(&self) -> &[Precondition] {
        &self.conditions
    }
    /// Adds a set in place.
    pub fn push_set(&mut self, key: impl Into<String>, value: impl Into<Doc>) {
        self.ops.push(BatchOp::Set(key.into(), value.into()));
    }
    /// Adds a delete in place.
    pub fn push_delete(&mut self, key: impl Into<String>) {
        self.ops.push(BatchOp::Delete(key.into()));
    }
    /// Number of operations (conditions not counted).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Options {
    /// Opens (or creates) the database in `dir` with these options: the same
    /// as [`Db::open_with`] (here so that the options module names no `Db`).
    ///
    /// # Errors
    /// As [`Db::open_with`].
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(dir, self)
    }
}

impl Db {
    /// Opens (or creates) the database in `dir` with the default [`Options`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let db = redru::Db::open(dir.path())?;
    /// db.set("greeting", redru::json!("hello"))?;
    /// db.close()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Db::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(dir, Options::default())
    }

    /// Opens (or creates) the database in `dir`: takes the directory lock,
    /// loads and verifies the snapshot, replays the log, cuts a torn tail
    /// (keeping the bytes in a side file) and refuses corruption.
    ///
    /// # Errors
    /// - [`Error::Locked`] if another `Db`, in this process or another, has the
    ///   directory open.
    /// - [`Error::Corrupt`] if a log record is damaged anywhere but in a torn
    ///   tail (the error names the file, line and byte offset; [`repair`](crate::repair)
    ///   keeps the records before it).
    /// - [`Error::BadSnapshot`] if `database.json` fails its SHA-256 or cannot
    ///   be read (restore a backup: [`list_backups`](crate::list_backups), [`Db::restore`]).
    /// - [`Error::Io`] if the directory cannot be created, read or locked.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let started = Instant::now();
        let dir = dir.as_ref().to_owned();
        if options.read_only {
            return Db::open_read_only(dir, options, started);
        }
        let vfs = Arc::clone(&options.vfs);
        if !vfs.exists(&dir).map_err(|e| Error::io("checking", &dir, e))? {
            // Each new directory's entry (the data directory's, and any parent
            // created with it) must be durable before anything in it is.
            let mut created = vec![dir.clone()];
            while let Some(up) = created.last().and_then(|d| d.parent()).filter(|p| !p.as_os_str().is_empty()) {
                if vfs.exists(up).map_err(|e| Error::io("checking", up, e))? {
                    break;
                }
                created.push(up.to_owned());
            }
            vfs.create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
            for new in created.iter().rev() {
                if let Some(parent) = new.parent().filter(|p| !p.as_os_str().is_empty()) {
                    vfs.sync_dir(parent).map_err(|e| Error::io("syncing directory", parent, e))?;
                }
            }
        }
        let lock_path = dir.join(LOCK_NAME);
        // Whether redru opened this directory before (the lock file stays).
        let opened_before = vfs.exists(&lock_path).map_err(|e| Error::io("checking", &lock_path, e))?;
        let lock =
            match crate::storage::vfs::lock(&*vfs, &lock_path).map_err(|e| Error::io("locking", &lock_path, e))? {
                LockOutcome::Acquired(guard) => guard,
                LockOutcome::Held(pid) => return Err(Error::Locked { dir, pid }),
            };
        let mut report = RecoveryReport::default();

        // An interrupted save leaves its temporary file: the rename never
        // happened, so the old snapshot and the log still hold everything.
        let tmp = dir.join(snapshot::TMP_NAME);
        if vfs.exists(&tmp).map_err(|e| Error::io("checking", &tmp, e))? {
            vfs.remove(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
            report.removed_files.push(tmp);
        }

        // Likewise a failed or killed backup's temporary files (a backup in
        // progress needs an open `Db`, so none is running now). Best effort:
        // they hold no data the database needs, so they never stop an open.
        let backups = dir.join(BACKUP_DIR);
        for name in vfs.list(&backups).unwrap_or_default() {
            let stale = backups.join(&name);
            if is_backup_temp(&name) && vfs.remove(&stale).is_ok() {
                report.removed_files.push(stale);
            }
        }

        let (mut state, snap_meta, scan) = load(&*vfs, &dir, opened_before, &mut report)?;

        // Finish what an interrupted save started: these are in the snapshot.
        // Only what holds exactly such records is deleted: anything else
        // named like a segment is copied aside first, and reported.
        for segment in &scan.covered {
            if let Some(bytes) = log::stray_bytes(&*vfs, segment)? {
                report.set_aside.push(log::set_aside(&*vfs, &dir, segment, "quarantine", 0, &bytes)?);
            } else {
                report.removed_files.push(segment.path.clone());
            }
            vfs.remove(&segment.path).map_err(|e| Error::io("removing", &segment.path, e))?;
        }
        if let Some(torn) = &scan.torn {
            let side_file = log::cut_torn_tail(&*vfs, &dir, torn)?;
            report.torn_tail = Some(TornTail {
                segment: torn.segment.path.clone(),
                offset: torn.offset,
                bytes: torn.bytes.len() as u64,
                after_seq: torn.after.0,
                side_file,
                reason: torn.reason.clone(),
            });
        }

        let last = scan.last.max(state.seq);
        let mut live = scan.live;
        // Append to the last segment if it continues at `last + 1`; otherwise
        // (no log yet, or a log that ends before the snapshot) start a new one.
        let current = if scan.log_next == Some(last.next()) { live.pop().map(|(s, _)| s) } else { None };
        let current = match current {
            Some(segment) => segment,
            None => {
                let first = last.next();
                let segment = log::Segment { path: dir.join(log::segment_name(first)), first };
                if !vfs.exists(&segment.path).map_err(|e| Error::io("checking", &segment.path, e))? {
                    vfs.create_new(&segment.path).map_err(|e| Error::io("creating", &segment.path, e))?;
                }
                segment
            }
        };
        // Always, not only after creating or removing: the segment we append to
        // may come from a run whose directory sync failed, so its entry may be
        // only in the cache; nothing may be acknowledged in it before this.
        vfs.sync_dir(&dir).map_err(|e| Error::io("syncing directory", &dir, e))?;
        let mut writer = Writer::open(Arc::clone(&vfs), &dir, current, live, last)?;
        if options.durability == Durability::Buffered {
            writer = writer.buffered(options.buffer_bytes);
        }
        state.seq = last;
        report.millis = started.elapsed().as_millis() as u64;

        let inner = Arc::new(Inner {
            dir,
            vfs,
            wal: Wal::new(writer, last),
            state: RwLock::new(state),
            pending: Mutex::new(Pending::default()),
            save_lock: Mutex::new(()),
            snap: Mutex::new(snap_meta),
            compactor: Mutex::new(None),
            compactions: AtomicU64::new(0),
            failed_compactions: AtomicU64::new(0),
            compaction_retry_at: AtomicU64::new(0),
            last_compaction_error: Mutex::new(None),
            recovery: report,
            _lock: lock,
            options,
        });
        let flusher = match (inner.options.durability, inner.options.buffer_flush_interval) {
            (Durability::Periodic(every), _) => Some(spawn_flusher(Arc::downgrade(&inner), every, Wal::sync_all)?),
            (Durability::Buffered, Some(every)) => Some(spawn_flusher(Arc::downgrade(&inner), every, Wal::flush)?),
            _ => None,
        };
        Ok(Db { inner, flusher })
    }

    /// [`Options::read_only`]: a view of the directory as of its last
    /// complete record, through a file system that refuses every change.
    fn open_read_only(dir: PathBuf, mut options: Options, started: Instant) -> Result<Db> {
        if !options.vfs.exists(&dir).map_err(|e| Error::io("checking", &dir, e))? {
            return Err(Error::NoDatabase { dir });
        }
        let vfs: Arc<dyn Vfs> = Arc::new(ReadOnlyFs(Arc::clone(&options.vfs)));
        // A writer's save renames the snapshot and removes the segments it
        // covers: reading in between finds a file gone, or a log that no
        // longer continues the snapshot read. Start again on the files as
        // they are then; what is still wrong after a while is real.
        let mut attempts = 0;
        let (mut state, snap_meta, mut report) = loop {
            match load_view(&*vfs, &dir) {
                Ok(view) => break view,
                Err(_) if attempts < READ_ONLY_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        let last = state.seq;
        let next = log::Segment { path: dir.join(log::segment_name(last.next())), first: last.next() };
        let writer = Writer::open(Arc::clone(&vfs), &dir, next, Vec::new(), last)?;
        state.seq = last;
        report.millis = started.elapsed().as_millis() as u64;
        // Nothing is written, so nothing is flushed, synced or compacted.
        options.durability = Durability::Never;
        options.auto_compact = false;
        let inner = Arc::new(Inner {
            dir,
            vfs,
            wal: Wal::new(writer, last),
            state: RwLock::new(state),
            pending: Mutex::new(Pending::default()),
            save_lock: Mutex::new(()),
            snap: Mutex::new(snap_meta),
            compactor: Mutex::new(None),
            compactions: AtomicU64::new(0),
            failed_compactions: AtomicU64::new(0),
            compaction_retry_at: AtomicU64::new(0),
            last_compaction_error: Mutex::new(None),
            recovery: report,
            _lock: ReadOnlyFs::no_lock(),
            options,
        });
        Ok(Db { inner, flusher: None })
    }

    /// Whether it was opened read-only ([`Options::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.inner.options.read_only
    }

    /// Refuses a change on a read-only handle.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.inner.check_writable()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The durability mode it was opened with.
    pub fn durability(&self) -> Durability {
        self.inner.options.durability
    }

    /// What opening found and did (a torn tail cut, leftovers removed, ...).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// The value of `key`: a shared handle to its JSON text, no copy and no
    /// parse. Read it with [`Doc::deserialize`] (into your own type) or
    /// [`Doc::to_value`]; [`Db::get_value`] and [`Db::get_as`] do both in one call.
    pub fn get(&self, key: &str) -> Option<Doc> {
        self.inner.read_state().map.get(key).cloned()
    }

    /// The value of `key` and the seq of the record that last wrote it, for
    /// an optimistic update: [`Batch::require_unchanged`] with that seq
    /// succeeds only if nothing wrote the key since. After a reopen, keys
    /// loaded from the snapshot report the snapshot's seq (the file keeps no
    /// per-key seq): never less than the true one.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use redru::{Batch, json};
    /// db.set("n", json!(1))?;
    /// let (doc, seq) = db.get_with_seq("n").ok_or("missing")?;
    /// let next = doc.deserialize::<i64>()? + 1;
    /// db.batch(Batch::new().require_unchanged("n", seq).set("n", json!(next)))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_with_seq(&self, key: &str) -> Option<(Doc, Seq)> {
        self.inner.read_state().map.get_with_seq(key).map(|(d, s)| (d.clone(), s))
    }

    /// The value of `key` parsed into a `serde_json::Value`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.get(key).map(|doc| doc.to_value())
    }

    /// The value of `key` deserialized into `T`; an error if it does not fit `T`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// #[derive(serde::Deserialize)]
    /// struct User { name: String }
    /// db.set("user:1", redru::json!({"name": "Alice", "age": 30}))?;
    /// let user: Option<User> = db.get_as("user:1")?;
    /// assert_eq!(user.map(|u| u.name).as_deref(), Some("Alice"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Deserialize`] (naming the key) if the stored value does not fit `T`.
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|doc| {
                doc.deserialize().map_err(|e| match e {
                    Error::Deserialize { reason, .. } => Error::Deserialize { key: Some(key.to_owned()), reason },
                    other => other,
                })
            })
            .transpose()
    }

    /// Whether `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        self.inner.read_state().map.get(key).is_some()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.inner.read_state().map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, sorted (byte order).
    pub fn keys(&self) -> Vec<String> {
        // On a frozen copy: writers do not wait for the listing.
        let map = self.inner.read_state().map.clone();
        let mut keys: Vec<String> = map.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// Every key starting with `prefix`, with its value, sorted by key.
    pub fn scan_prefix(&self, prefix: &str) -> Vec<(String, Doc)> {
        // On a frozen copy: writers do not wait for the scan.
        let map = self.inner.read_state().map.clone();
        let mut out: Vec<(String, Doc)> =
            map.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.to_string(), v.clone())).collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Inserts or replaces `key`. Returns once the write is durable (in
    /// [`Durability::Always`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.set("user:1", redru::json!({"name": "Alice"}))?;   // a Value
    /// db.set("n", redru::Doc::parse("12345678901234567890123")?)?; // JSON text, digits kept
    /// assert_eq!(db.get("n").map(|d| d.as_str().to_owned()).as_deref(), Some("12345678901234567890123"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidValue`] if a value could not be read back exactly once
    ///   stored (nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), or using
    ///   serde_json's reserved member names): nothing is written.
    /// - [`Error::UniqueViolation`] if a unique index would see two keys share a
    ///   value: nothing is written.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn set<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>) -> Result<()> {
        let (doc, parsed) = value.into_parts();
        self.inner.commit_with(Record::Set(key.into(), doc), parsed.as_deref()).map(|_| ())
    }

    /// [`Db::set`], returning the seq of the record written (what
    /// [`Db::get_with_seq`] reports for the key until it is written again).
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn set_with_seq<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>) -> Result<Seq> {
        let (doc, parsed) = value.into_parts();
        let record = Record::Set(key.into(), doc);
        let written = self.inner.commit_decided(parsed.as_deref(), |_| Ok(Some(record)))?;
        Ok(written.map_or(Seq(0), |(seq, _)| seq))
    }

    /// An atomic read-modify-write of `key`: `f` gets the current value (None
    /// if absent) and decides; no other write comes between the read and
    /// the write. Returns the seq of the record written, or None when
    /// nothing was (an [`Update::Keep`], or an [`Update::Delete`] of an absent key).
    ///
    /// `f` runs while every writer of this database waits: keep it quick (no
    /// I/O, no sleeping), and never write to this `Db` from it (that would
    /// deadlock). Reads from other threads are not held.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use redru::{Update, json};
    /// for _ in 0..3 {
    ///     db.update("visits", |cur| {
    ///         let n = cur.and_then(|d| d.deserialize::<i64>().ok()).unwrap_or(0);
    ///         Update::Set(json!(n + 1).into())
    ///     })?;
    /// }
    /// assert_eq!(db.get_value("visits"), Some(json!(3)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Db::set`] (or [`Db::delete`]) for what `f` decided.
    pub fn update(&self, key: &str, f: impl FnOnce(Option<&Doc>) -> Update) -> Result<Option<Seq>> {
        let written = self.inner.commit_decided(None, |inner| {
            // A copy of the handle, so `f` runs without the state's lock.
            let current = inner.read_state().map.get(key).cloned();
            Ok(match f(current.as_ref()) {
                Update::Set(doc) => Some(Record::Set(key.to_owned(), doc)),
                Update::Delete if current.is_some() => Some(Record::Delete(key.to_owned())),
                Update::Delete | Update::Keep => None,
            })
        })?;
        Ok(written.map(|(seq, _)| seq))
    }

    /// Writes `new` to `key` only if its current value equals `expected`
    /// (None: only if it is absent), atomically. Returns the seq of the record written.
    ///
    /// # Errors
    /// - [`Error::ConditionFailed`] if the key does not hold `expected`:
    ///   nothing is written; the error says what it holds.
    /// - Otherwise as [`Db::set`].
    pub fn compare_and_set<'a>(&self, key: &str, expected: Option<&Value>, new: impl IntoDoc<'a>) -> Result<Seq> {
        let condition = match expected {
            Some(v) => Precondition::Equals(key.to_owned(), v.clone()),
            None => Precondition::Absent(key.to_owned()),
        };
        let (doc, parsed) = new.into_parts();
        let record = Record::Set(key.to_owned(), doc);
        let written = self.inner.commit_decided(parsed.as_deref(), |inner| {
            condition.check(&inner.read_state().map, 0)?;
            Ok(Some(record))
        })?;
        Ok(written.map_or(Seq(0), |(seq, _)| seq))
    }

    /// Adds `by` to the integer at `key` (absent counts as 0), atomically;
    /// returns the new value.
    ///
    /// # Errors
    /// - [`Error::InvalidValue`] if the key holds anything but an integer
    ///   (within i64), or the sum overflows: nothing is written.
    /// - Otherwise as [`Db::set`].
    pub fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let mut outcome = Ok(0);
        self.update(key, |current| {
            let n = match current {
                None => Ok(0),
                Some(doc) => {
                    doc.as_str().parse::<i64>().map_err(|_| format!("it holds {}, not an integer", doc.as_str()))
                }
            };
            outcome = n.and_then(|n| n.checked_add(by).ok_or_else(|| format!("{n} + {by} overflows a 64-bit integer")));
            match &outcome {
                Ok(sum) => Update::Set(Doc::from(Value::from(*sum))),
                Err(_) => Update::Keep,
            }
        })?;
        outcome.map_err(|reason| Error::InvalidValue { key: Some(key.to_owned()), reason })
    }

    /// Removes `key`; returns whether it existed. A delete of a missing key
    /// is not logged.
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        if !self.contains(key) {
            // Still refuse on a poisoned handle, like any write.
            self.inner.wal.check_poisoned()?;
            return Ok(false);
        }
        self.inner.commit(Record::Delete(key.to_owned())).map(|a| a.existed)
    }

    /// Applies every operation of `batch` atomically: one log record, all or
    /// nothing; only if its conditions hold (checked against the state just
    /// before, under the writer lock).
    ///
    /// # Errors
    /// - [`Error::ConditionFailed`] naming the first condition that does not
    ///   hold: nothing is written or logged.
    /// - [`Error::InvalidValue`] if a value could not be read back exactly once
    ///   stored (nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), or using
    ///   serde_json's reserved member names): nothing is written.
    /// - [`Error::UniqueViolation`] if a unique index would see two keys share a
    ///   value: nothing is written.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn batch(&self, batch: Batch) -> Result<()> {
        let Batch { ops, conditions } = batch;
        self.inner
            .commit_decided(None, |inner| {
                let state = inner.read_state();
                for (i, condition) in conditions.iter().enumerate() {
                    condition.check(&state.map, i)?;
                }
                Ok(Some(Record::Batch(ops)))
            })
            .map(|_| ())
    }

    /// Removes every key (index definitions stay). Returns how many there were.
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn clear(&self) -> Result<usize> {
        let before = self.len();
        self.inner.commit(Record::Clear)?;
        Ok(before)
    }

    /// Creates a hash index on a field path (`name`, `address.city`, `tags.0`, `$`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.set("user:1", redru::json!({"address": {"city": "Oslo"}}))?;
    /// if !db.indexes().iter().any(|i| i.field == "address.city") {
    ///     db.create_index("address.city")?; // kept across reopen: create it once
    /// }
    /// assert_eq!(db.find("address.city", &redru::json!("Oslo"))?, ["user:1"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::IndexExists`] if `field` already has an index.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn create_index(&self, field: &str) -> Result<()> {
        self.create_index_of(field, false, IndexKind::Hash)
    }

    /// Creates an ordered index on a field path: equality lookups as a hash
    /// index, and besides them the field values in order, so that `<`, `<=`,
    /// `>`, `>=` and `between` on the field, and `sort by` it with a
    /// `limit`, examine only the keys they need. The order across types is
    /// docs/design.md's ("Ordered indexes"): numbers by value, strings by
    /// code point. Costs more per write and more memory than a hash index.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.create_ordered_index("age")?;
    /// db.set("user:1", redru::json!({"age": 31}))?;
    /// db.set("user:2", redru::json!({"age": 19.5}))?;
    /// let r = db.query(&redru::Query::parse("age between 18 and 30")?)?;
    /// assert_eq!(r.entries[0].0, "user:2");
    /// assert!(r.plan.to_string().starts_with("index range on `age`"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Db::create_index`].
    pub fn create_ordered_index(&self, field: &str) -> Result<()> {
        self.create_index_of(field, false, IndexKind::Ordered)
    }

    /// Creates an index of any kind (restore recreates a backup's as they were).
    pub(crate) fn create_index_of(&self, field: &str, unique: bool, kind: IndexKind) -> Result<()> {
        let path = FieldPath::parse(field)?;
        self.inner.commit(Record::CreateIndex { field: path.as_str().to_owned(), unique, kind }).map(|_| ())
    }

    /// Creates a unique hash index: refused if two keys already share a
    /// value, and afterwards every write that would make two keys share one
    /// is refused with [`Error::UniqueViolation`], changing nothing.
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::IndexExists`] if `field` already has an index.
    /// - [`Error::UniqueViolation`] if two keys already share a value of `field`.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn create_unique_index(&self, field: &str) -> Result<()> {
        self.create_index_of(field, true, IndexKind::Hash)
    }

    /// Removes the index on `field`.
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::NoIndex`] if `field` has no index.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn drop_index(&self, field: &str) -> Result<()> {
        let path = FieldPath::parse(field)?;
        self.inner.commit(Record::DropIndex(path.as_str().to_owned())).map(|_| ())
    }

    /// Every index with its statistics, by field.
    pub fn indexes(&self) -> Vec<IndexInfo> {
        self.inner.read_state().index_infos()
    }

    /// The keys (sorted) whose value's `field` equals `value`, through the
    /// index on `field`. Errors if there is no such index.
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::NoIndex`] if `field` has no index ([`Db::query`] scans instead).
    pub fn find(&self, field: &str, value: &Value) -> Result<Vec<String>> {
        let path = FieldPath::parse(field)?;
        let state = self.inner.read_state();
        let index = state.index(&path).ok_or_else(|| Error::NoIndex { field: path.to_string() })?;
        Ok(index.find(value).map(|k| k.to_string()).collect())
    }

    /// Like [`Db::find`], with each key's value.
    ///
    /// # Errors
    /// As [`Db::find`].
    pub fn find_entries(&self, field: &str, value: &Value) -> Result<Vec<(String, Doc)>> {
        let path = FieldPath::parse(field)?;
        let state = self.inner.read_state();
        let index = state.index(&path).ok_or_else(|| Error::NoIndex { field: path.to_string() })?;
        Ok(index.find(value).filter_map(|k| state.map.get(k).map(|v| (k.to_string(), v.clone()))).collect())
    }

    /// Runs a query: conditions joined by `and` (see [`Query::parse`]). An
    /// equality on an indexed field is answered through the index; otherwise
    /// the keys are scanned. The result says which plan ran.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use redru::{Query, json};
    /// db.set("u1", json!({"name": "Alice", "age": 30}))?;
    /// db.set("u2", json!({"name": "Alice", "age": 20}))?;
    /// db.create_index("name")?;
    /// let result = db.query(&Query::parse("name = Alice and age >= 25")?)?;
    /// assert_eq!(result.entries.len(), 1);
    /// assert!(result.plan.to_string().starts_with("index lookup on `name`"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// None today: a query is checked when it is parsed ([`Error::InvalidQuery`]
    /// from [`Query::parse`]); the `Result` leaves room for queries that can fail.
    pub fn query(&self, query: &Query) -> Result<QueryResult> {
        let state = self.inner.read_state();
        if let Some(result) = crate::state::query::run_indexed(&state, query) {
            return Ok(result);
        }
        // A scan runs on a frozen copy of the map (O(shards) to take), so
        // writers never wait for it however long it is; they copy a shard
        // on their first write to it while the copy is alive.
        let map = state.map.clone();
        drop(state);
        Ok(crate::state::query::scan(&map, query))
    }

    /// Writes a new snapshot and drops the log records it holds. Writers
    /// are held only while the state is frozen (a copy-on-write clone) and
    /// the log is rotated, not while the snapshot is written.
    ///
    /// # Errors
    /// - [`Error::Io`] if the snapshot cannot be written, synced or renamed into
    ///   place, or the log cannot be rotated: the previous snapshot and the log
    ///   stay as they were, nothing acknowledged is lost.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn save(&self) -> Result<SaveReport> {
        self.inner.save()
    }

    /// Makes every write so far durable (useful with the relaxed modes).
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn sync(&self) -> Result<()> {
        self.inner.wal.sync_all()
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let (last_seq, wal_bytes, wal_segments) = {
            let w = inner.wal.lock();
            (w.written(), w.total_bytes(), w.segments())
        };
        let (snapshot_seq, snapshot_bytes) = {
            let s = inner.snap();
            (s.seq.0, s.bytes)
        };
        let state = inner.read_state();
        Stats {
            dir: inner.dir.clone(),
            keys: state.map.len(),
            last_seq: last_seq.0,
            durable_seq: inner.wal.synced().0,
            snapshot_seq,
            snapshot_bytes,
            wal_bytes,
            wal_segments,
            wal_syncs: inner.wal.syncs(),
            durability: inner.options.durability.to_string(),
            compactions: inner.compactions.load(Ordering::Relaxed),
            failed_compactions: inner.failed_compactions.load(Ordering::Relaxed),
            last_compaction_error: inner.last_compaction_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            poisoned: inner.wal.check_poisoned().err().map(|e| e.to_string()),
            indexes: state.index_infos(),
        }
    }

    /// Syncs the log, waits for a running compaction, releases the directory.
    ///
    /// # Errors
    /// [`Error::Io`] if the final sync of the log fails (writes made in the
    /// relaxed modes since the last sync may then be lost), or a running
    /// compaction failed.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some((stop, handle)) = self.flusher.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        let compactor = self.inner.compactor.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = compactor {
            let _ = handle.join();
        }
        // A poisoned log cannot be synced: say so rather than report a clean close.
        self.inner.wal.check_poisoned()?;
        self.inner.wal.sync_all()
    }

    /// A consistent point-in-time copy of the data and index definitions.
    /// Writers are held only for the copy-on-write clone (O(shards)). Hands
    /// buffered log records to the OS first, so that a copy never holds a
    /// write the log could still lose to a crash of this process.
    #[allow(dead_code)]
    pub(crate) fn freeze(&self) -> Result<Frozen> {
        let mut writer = self.inner.wal.lock();
        // A poisoned log takes no more writes (callers that must refuse then, like backup, check first).
        if self.inner.wal.check_poisoned().is_ok() {
            writer.flush().inspect_err(|e| self.inner.wal.poison(e))?;
        }
        Ok(Frozen::of(&self.inner.read_state()))
    }

    /// Refuses with [`Error::Poisoned`] after a failed log write or sync: the
    /// in-memory state may then hold records the disk never got, and nothing
    /// derived from it (a backup) may be presented as durable.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        self.inner.wal.check_poisoned()
    }

    /// The options the database was opened with.
    #[allow(dead_code)]
    pub(crate) fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Test hook: waits for a running automatic compaction to finish, so that
    /// tests of its outcome are deterministic.
    #[doc(hidden)]
    pub fn __test_wait_compaction(&self) {
        let running = self.inner.compactor.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = running {
            let _ = handle.join();
        }
    }

    /// Test hook for negative controls: never roll back after a failed log
    /// write or sync (reads then show writes that were not durable).
    #[doc(hidden)]
    pub fn __test_skip_rollback(&self) {
        self.inner.pending().rolled_back = true;
    }

    /// Test hook for negative controls: acknowledge writes without syncing.
    /// Only with the `__internal_whitebox` feature (redru's own tests).
    #[cfg(feature = "__internal_whitebox")]
    #[doc(hidden)]
    pub fn __test_skip_sync(&self) {
        self.inner.wal.lock().skip_sync = true;
    }
}

/// How many times a read-only open starts again when files move underneath.
const READ_ONLY_ATTEMPTS: u32 = 20;

/// A snapshot and the log records after it, changing nothing: a torn last
/// line is left where it is, segments a snapshot covers stay (they are the
/// writer's to remove).
fn load_view(vfs: &dyn Vfs, dir: &Path) -> Result<(State, SnapMeta, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let (mut state, meta, scan) = load(vfs, dir, false, &mut report)?;
    state.seq = scan.last.max(state.seq);
    Ok((state, meta, report))
}

/// Loads the snapshot (if any) and replays the log after it into the state,
/// changing no file: what both a writing and a read-only open start with.
/// `check_successor`: a directory redru opened before must have the log
/// segment that continues its snapshot.
fn load(
    vfs: &dyn Vfs,
    dir: &Path,
    check_successor: bool,
    report: &mut RecoveryReport,
) -> Result<(State, SnapMeta, log::LogScan)> {
    let snap_path = dir.join(snapshot::FILE_NAME);
    let (mut state, meta) = if vfs.exists(&snap_path).map_err(|e| Error::io("checking", &snap_path, e))? {
        let (state, info) = snapshot::load(vfs, &snap_path)?;
        if check_successor && let Some(path) = log::missing_successor(&log::list_segments(vfs, dir)?, dir, info.seq) {
            return Err(Error::MissingSegment { path, snapshot_seq: info.seq.0 });
        }
        report.snapshot_seq = info.seq.0;
        report.snapshot_keys = info.keys;
        (state, SnapMeta { seq: info.seq, bytes: info.bytes, exists: true })
    } else {
        // Without a snapshot the log must start at record 1; if it starts
        // later the snapshot was lost, and the log alone would look like a
        // gap that `repair` resolves by setting everything aside.
        if let Some(first) = log::list_segments(vfs, dir)?.first().filter(|s| s.first > Seq(1)) {
            return Err(Error::MissingSnapshot { path: snap_path, first: first.first.0 });
        }
        (State::default(), SnapMeta { seq: Seq(0), bytes: 0, exists: false })
    };
    let snapshot_seq = state.seq;
    let scan = log::read_log(vfs, dir, snapshot_seq, |seq, record| {
        state.apply(seq, &record);
    })?;
    report.records_replayed = scan.replayed;
    report.records_skipped = scan.skipped;
    Ok((state, meta, scan))
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

impl Inner {
    /// The state for reading. Once the log has failed, first takes back
    /// every record not known durable (once), so no read shows one.
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        if self.wal.is_poisoned() {
            self.roll_back();
        }
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps how to undo record `seq` until it is known durable (called
    /// under the writer lock, so the log cannot fail between the apply and
    /// this). Returns whether so much is waiting that the log should be synced.
    fn remember(&self, seq: Seq, undo: Undo) -> bool {
        let mut pending = self.pending();
        if pending.records.len() >= PENDING_TRIM {
            let durable = self.wal.synced();
            while pending.records.front().is_some_and(|(s, _)| *s <= durable) {
                if let Some((_, done)) = pending.records.pop_front() {
                    pending.held = pending.held.saturating_sub(done.held_bytes());
                }
            }
        }
        pending.held += undo.held_bytes();
        pending.records.push_back((seq, undo));
        pending.held >= PENDING_BYTES
    }

    /// Takes back, newest first, every applied record after the last durable
    /// one. Runs once, on the first read after the log failed; the failure was
    /// set under the writer lock, after which nothing more is applied.
    fn roll_back(&self) {
        let mut pending = self.pending();
        if pending.rolled_back {
            return;
        }
        let durable = self.wal.synced();
        let mut state = self.write_state();
        while let Some((seq, undo)) = pending.records.pop_back() {
            if seq <= durable {
                break;
            }
            state.undo(undo);
        }
        pending.records.clear();
        pending.held = 0;
        pending.rolled_back = true;
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn snap(&self) -> MutexGuard<'_, SnapMeta> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(self: &Arc<Self>, record: Record) -> Result<Applied> {
        self.commit_with(record, None)
    }

    /// `parsed`: a `Set` record's value as the caller gave it, if it did.
    fn check_writable(&self) -> Result<()> {
        if self.options.read_only { Err(Error::ReadOnly { dir: self.dir.clone() }) } else { Ok(()) }
    }

    fn commit_with(self: &Arc<Self>, record: Record, parsed: Option<&Value>) -> Result<Applied> {
        let written = self.commit_decided(parsed, |_| Ok(Some(record)))?;
        Ok(written.map_or(Applied { existed: false }, |(_, applied)| applied))
    }

    /// Under the writer lock, `decide` sees the state after every record
    /// logged so far and returns the record to log (or None: nothing is
    /// logged), so that a conditional write's check and its record are one
    /// step. Returns the record's seq and what applying it found.
    fn commit_decided(
        self: &Arc<Self>,
        parsed: Option<&Value>,
        decide: impl FnOnce(&Inner) -> Result<Option<Record>>,
    ) -> Result<Option<(Seq, Applied)>> {
        self.check_writable()?;
        let (seq, applied, compact, crowded) = {
            let mut writer = self.wal.lock();
            self.wal.check_poisoned()?;
            // `decide` takes the state's read lock itself, for as long as
            // it needs it: `Db::update` must not hold it while the caller's
            // closure runs (a read from inside it could then deadlock
            // behind a rollback waiting to write).
            let Some(record) = decide(self)? else { return Ok(None) };
            self.read_state().check_with(&record, parsed)?;
            let seq = match writer.append(&record) {
                Ok(seq) => seq,
                Err(e) => {
                    // Part of the line may be in the file: nothing more may follow it.
                    self.wal.poison(&e);
                    return Err(e);
                }
            };
            let (applied, undo) = self.write_state().apply_undoable(seq, &record, parsed);
            let crowded = self.remember(seq, undo);
            (seq, applied, self.wants_compaction(&writer), crowded)
        };
        if compact {
            self.start_compaction();
        }
        if self.options.durability == Durability::Always || crowded {
            self.wal.wait_durable(seq, "this write")?;
        }
        Ok(Some((seq, applied)))
    }

    fn wants_compaction(&self, writer: &Writer) -> bool {
        if !self.options.auto_compact {
            return false;
        }
        let wal = writer.total_bytes();
        let snapshot = self.snap().bytes;
        // Backing off after a failure: retrying at every write would rotate
        // a new segment each time and fail again (a full disk).
        wal > self.options.auto_compact_min_bytes
            && wal as f64 > snapshot as f64 * self.options.auto_compact_ratio
            && wal >= self.compaction_retry_at.load(Ordering::Relaxed)
    }

    fn start_compaction(self: &Arc<Self>) {
        let mut slot = self.compactor.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(done) = slot.take() {
            let _ = done.join();
        }
        let inner = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("redru-compact".into()).spawn(move || {
            let outcome = inner.save();
            match &outcome {
                Ok(_) => inner.compactions.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    let grown = inner.wal.lock().total_bytes().saturating_add(inner.options.auto_compact_min_bytes);
                    inner.compaction_retry_at.store(grown.max(1), Ordering::Relaxed);
                    inner.failed_compactions.fetch_add(1, Ordering::Relaxed)
                }
            };
            *inner.last_compaction_error.lock().unwrap_or_else(|p| p.into_inner()) =
                outcome.err().map(|e| e.to_string());
        });
        if let Ok(handle) = spawned {
            *slot = Some(handle);
        }
    }

    fn save(&self) -> Result<SaveReport> {
        self.check_writable()?;
        let _one_at_a_time = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        // Sync the log before holding writers: the rotation's fsync below then
        // covers only what was appended in between (measured in benches/engine.rs).
        self.wal.sync_all()?;
        let held = Instant::now();
        let frozen = {
            let mut writer = self.wal.lock();
            self.wal.check_poisoned()?;
            let state = self.read_state();
            let snap = self.snap();
            if snap.exists && snap.seq == state.seq {
                return Ok(SaveReport {
                    seq: snap.seq.0,
                    keys: state.map.len(),
                    bytes: snap.bytes,
                    segments_removed: 0,
                    unchanged: true,
                    duration: started.elapsed(),
                    writers_blocked: started.elapsed(),
                });
            }
            drop(snap);
            let frozen = Frozen::of(&state);
            drop(state);
            // Everything up to frozen.seq goes to older, synced segments.
            if let Err(e) = writer.rotate() {
                self.wal.poison(&e);
                return Err(e);
            }
            self.wal.mark_synced(writer.written());
            frozen
        };
        let writers_blocked = held.elapsed();
        let info: SnapshotInfo = snapshot::write_atomic(&*self.vfs, &self.dir, &frozen)?;
        {
            let mut snap = self.snap();
            snap.seq = info.seq;
            snap.bytes = info.bytes;
            snap.exists = true;
        }
        // Unlinking happens without the writer lock: it is the slowest step writers would wait on.
        let covered = self.wal.lock().take_older(info.seq);
        let segments_removed = log::remove_segments(&*self.vfs, &self.dir, &covered)?;
        self.compaction_retry_at.store(0, Ordering::Relaxed);
        Ok(SaveReport {
            seq: info.seq.0,
            keys: info.keys,
            bytes: info.bytes,
            segments_removed,
            unchanged: false,
            duration: started.elapsed(),
            writers_blocked,
        })
    }
}

/// Runs `flush` (a sync, or handing the buffer to the OS) on the log every interval.
fn spawn_flusher(
    inner: Weak<Inner>,
    every: Duration,
    flush: fn(&Wal) -> Result<()>,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    // A zero interval would spin on the writer lock.
    let every = every.max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new().name("redru-flush".into()).spawn(move || {
        loop {
            match stopped.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => match inner.upgrade() {
                    // A failed sync or write poisons the log; the next write reports it.
                    Some(inner) => {
                        let _ = flush(&inner.wal);
                    }
                    None => return,
                },
                _ => return,
            }
        }
    });
    let handle =
        spawned.map_err(|e| Error::Io { action: "starting", path: "the log flush thread".into(), source: e })?;
    Ok((stop, handle))
}
