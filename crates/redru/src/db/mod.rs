//! `Db`: the handle that ties the log, the snapshot and the in-memory state together.
//!
//! Write path: under the log's writer lock a record is checked against the
//! state, appended, and applied, so log order is apply order; then, outside
//! the lock, the writer waits for a group-commit fsync before returning.
//! Reads take a shared lock on the state and return shared handles to values.
//!
//! The handle, its open and close are here; the reports it returns in
//! `reports`, `Batch` in `batch`, the read and write methods in `read` and
//! `write`, expiry (its methods and the sweeper) in `expiry`, the commit
//! path, rollback and compaction (`Inner`) in `inner`, the undos kept until
//! the log is synced in `pending`, installing a whole
//! state as a snapshot (import, restore) in `install`, and returning the
//! dropped state's pages to the OS in `heap`.

mod batch;
mod expiry;
mod feed;
mod heap;
mod inner;
mod install;
mod pending;
mod read;
mod reports;
mod write;

pub use batch::{Batch, Update};
pub use expiry::Ttl;
use expiry::spawn_sweeper;
use feed::Hub;
pub use feed::{Change, Subscription};
use inner::spawn_flusher;
use pending::Pending;
pub use reports::{RecoveryReport, SaveReport, Stats, TornTail};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::{Durability, Options};
use crate::progress::Observer;
use crate::state::replay::Replay;
use crate::state::store::State;
use crate::storage::files::{BACKUP_DIR, LOCK_NAME, is_backup_temp};
use crate::storage::log::{self, Wal, Writer};
use crate::storage::record::Seq;
use crate::storage::snapshot::{self, Frozen};
use crate::storage::vfs::{LockGuard, LockOutcome, ReadOnlyFs, Vfs};

/// An open database. `Send + Sync`: share it between threads by reference or `Arc`.
///
/// Dropping it syncs the log and releases the directory; [`Db::close`] does
/// the same and reports errors.
pub struct Db {
    inner: Arc<Inner>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    sweeper: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

struct SnapMeta {
    seq: Seq,
    bytes: u64,
    exists: bool,
}

/// In the relaxed modes, the log is synced when the undos of the records
/// waiting to be known durable hold this much (about 1.1M writes of new small keys), so
/// that what a rollback needs stays bounded. The sync runs on a thread of its
/// own, so that no writer waits for it (an fsync of 64 MiB of log took 40 to
/// 140 ms on the benchmark machine, every ~400,000 overwrites: workload 10's
/// stalls); only a writer that finds twice this much still waiting (the disk
/// slower than the writers) waits for a sync itself.
const PENDING_BYTES: usize = 64 << 20;
/// A writer drops at most this many chunks of durable undos per write
/// (bounded work under the writer lock); the thread that synced drops the rest.
const PENDING_TRIM_CHUNKS: usize = 2;

/// With [`Durability::Always`]: records waiting for the group commit's
/// leader are written by the appender itself once they hold this many bytes
/// (a batch of 16 sets of the benchmark's values is ~4 KiB; a larger record
/// goes out at once, as before).
const GROUP_BUFFER_BYTES: usize = 64 << 10;

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
    /// The sync started when the undos waiting passed [`PENDING_BYTES`].
    relief: Mutex<Option<JoinHandle<()>>>,
    compactions: AtomicU64,
    failed_compactions: AtomicU64,
    /// After a failed automatic compaction: the log size (bytes) the next
    /// attempt waits for; 0 when none failed since the last save.
    compaction_retry_at: AtomicU64,
    last_compaction_error: Mutex<Option<String>>,
    recovery: RecoveryReport,
    /// The change feed's subscriptions and their ring of recent records.
    feed: Arc<Hub>,
    /// The latest clock reading any operation used (ms since the epoch):
    /// time never runs backwards for the keys, whatever the clock does.
    clock_high: AtomicU64,
    /// Held by the listing that builds deferred key orders
    /// ([`Inner::frozen_in_order`]): one at a time.
    order_build: Mutex<()>,
    _lock: Box<dyn LockGuard>,
}

/// What loading the files gave an open: the state, where the snapshot
/// stands, what recovery did.
struct Loaded {
    state: State,
    snap_meta: SnapMeta,
    report: RecoveryReport,
}

impl Inner {
    /// A handle's shared part, as both opens (writing and read-only) build it.
    fn new(
        dir: PathBuf,
        vfs: Arc<dyn Vfs>,
        writer: Writer,
        loaded: Loaded,
        lock: Box<dyn LockGuard>,
        options: Options,
    ) -> Inner {
        let last = loaded.state.seq;
        Inner {
            dir,
            vfs,
            wal: Wal::new(writer, last),
            state: RwLock::new(loaded.state),
            pending: Mutex::new(Pending::default()),
            save_lock: Mutex::new(()),
            snap: Mutex::new(loaded.snap_meta),
            compactor: Mutex::new(None),
            relief: Mutex::new(None),
            compactions: AtomicU64::new(0),
            failed_compactions: AtomicU64::new(0),
            compaction_retry_at: AtomicU64::new(0),
            last_compaction_error: Mutex::new(None),
            recovery: loaded.report,
            feed: Arc::new(Hub::new(options.feed_buffer)),
            clock_high: AtomicU64::new(0),
            order_build: Mutex::new(()),
            _lock: lock,
            options,
        }
    }

    /// The time expiry is judged at (ms since the epoch): the clock, or the
    /// latest reading if the clock went back since.
    pub(super) fn now(&self) -> u64 {
        let t = self.options.clock.now_ms();
        // A plain load first: within the same millisecond `fetch_max` would
        // still write the line (a locked compare-exchange), which readers on
        // other cores then miss on.
        let high = self.clock_high.load(Ordering::Relaxed);
        if t <= high {
            return high;
        }
        self.clock_high.fetch_max(t, Ordering::Relaxed).max(t)
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

        let (mut state, snap_meta, scan) = load(&*vfs, &dir, opened_before, options.observer(), &mut report)?;

        // Finish what an interrupted save started: these are in the snapshot.
        // Only what holds exactly such records is deleted: anything else
        // named like a segment is copied aside first, and reported.
        for temp in &scan.temps {
            // A new segment's header, left by a crash before its rename: no record.
            vfs.remove(temp).map_err(|e| Error::io("removing", temp, e))?;
            report.removed_files.push(temp.clone());
        }
        for (i, segment) in scan.covered.iter().enumerate() {
            let successor =
                scan.covered.get(i + 1).or(scan.live.first().map(|(s, _)| s)).map_or(segment.first, |s| s.first);
            if let Some(bytes) = log::stray_bytes(&*vfs, segment, successor)? {
                report.set_aside.push(log::set_aside(&*vfs, &dir, segment, "quarantine", 0, &bytes)?);
            } else {
                report.removed_files.push(segment.path.clone());
            }
            vfs.remove(&segment.path).map_err(|e| Error::io("removing", &segment.path, e))?;
        }
        for (segment, offset, next) in &scan.torn_seals {
            log::complete_seal(&*vfs, segment, *offset, *next)?;
        }
        // Records a crash left after the zeros that end the data: set aside
        // like a torn tail before anything is appended (a view ignores them).
        let stale = match (&scan.torn, scan.live.last(), scan.log_next) {
            (None, Some((segment, end)), Some(next)) => log::stale_after_data(&*vfs, segment, *end, Seq(next.0 - 1))?,
            _ => None,
        };
        if let Some(torn) = scan.torn.as_ref().or(stale.as_ref()) {
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
        let current = if scan.log_next == Some(last.next()) { live.pop() } else { None };
        let (current, data_end) = match current {
            Some((segment, end)) => (segment, Some(end)),
            None => {
                let first = last.next();
                let segment = log::Segment { path: dir.join(log::segment_name(first)), first };
                if !vfs.exists(&segment.path).map_err(|e| Error::io("checking", &segment.path, e))? {
                    let prev = live.last().map(|(s, _)| s.first);
                    log::create_segment(&*vfs, &dir, first, prev)?;
                }
                // Where its data ends, if it was read (else it was just made).
                let end = live.iter().find(|(s, _)| s.first == first).map(|(_, end)| *end);
                (segment, end)
            }
        };
        // Always, not only after creating or removing: the segment we append to
        // may come from a run whose directory sync failed, so its entry may be
        // only in the cache; nothing may be acknowledged in it before this.
        vfs.sync_dir(&dir).map_err(|e| Error::io("syncing directory", &dir, e))?;
        // Zeros ahead of the appends where the log fsyncs on its own; a
        // relaxed log hands its pages to writeback instead where the file
        // system can (Options::preallocate_log), and keeps the zeros where not.
        let fsyncs = matches!(options.durability, Durability::Always | Durability::Periodic(_));
        let writes_back = !fsyncs && vfs.writeback_every() > 0;
        let preallocate = options.preallocate_log.unwrap_or(!writes_back);
        let mut writer = Writer::open(Arc::clone(&vfs), &dir, current, data_end, live, last, preallocate)?;
        if writes_back {
            writer = writer.with_writeback(vfs.writeback_every());
        }
        match options.durability {
            Durability::Buffered => writer = writer.buffered(options.buffer_bytes),
            // Group commit: a durable record waits in the buffer for the
            // fsync's leader, whose one write(2) hands the whole batch to
            // the OS, rather than a write per set under the writer lock
            // (docs/benchmarks.md, issue 18). Nobody is acknowledged before
            // that write and its fsync, so the buffer loses nothing promised.
            Durability::Always => writer = writer.buffered(GROUP_BUFFER_BYTES),
            Durability::Periodic(_) | Durability::Never => {}
        }
        state.seq = last;
        report.millis = started.elapsed().as_millis() as u64;

        let loaded = Loaded { state, snap_meta, report };
        let inner = Arc::new(Inner::new(dir, vfs, writer, loaded, lock, options));
        let flusher = match (inner.options.durability, inner.options.buffer_flush_interval) {
            (Durability::Periodic(every), _) => Some(spawn_flusher(Arc::downgrade(&inner), every, Wal::sync_all)?),
            (Durability::Buffered, Some(every)) => Some(spawn_flusher(Arc::downgrade(&inner), every, Wal::flush)?),
            _ => None,
        };
        let sweeper = match inner.options.sweep_interval {
            Some(every) => Some(spawn_sweeper(Arc::downgrade(&inner), every)?),
            None => None,
        };
        Ok(Db { inner, flusher, sweeper })
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
            match load_view(&*vfs, &dir, options.observer()) {
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
        let writer = Writer::open(Arc::clone(&vfs), &dir, next, None, Vec::new(), last, false)?;
        state.seq = last;
        report.millis = started.elapsed().as_millis() as u64;
        // Nothing is written, so nothing is flushed, synced or compacted.
        options.durability = Durability::Never;
        options.auto_compact = false;
        let loaded = Loaded { state, snap_meta, report };
        let inner = Arc::new(Inner::new(dir, vfs, writer, loaded, ReadOnlyFs::no_lock(), options));
        Ok(Db { inner, flusher: None, sweeper: None })
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
}

impl Db {
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
        // The sweeper first: its deletions are writes the final sync must cover.
        if let Some((stop, handle)) = self.sweeper.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.flusher.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        inner::join_slot(&self.inner.compactor);
        inner::join_slot(&self.inner.relief);
        // A poisoned log cannot be synced: say so rather than report a clean close.
        let synced = self.inner.wal.check_poisoned().and_then(|()| self.inner.wal.sync_all());
        // Subscriptions deliver what is durable now, then stop.
        self.inner.wal.watch().end("the database was closed");
        synced
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
        // `now` taken under the writer lock: every later decision reads a
        // time at least this, so a key left out as expired stays gone.
        Ok(Frozen::of(&self.inner.read_state(), self.inner.now()))
    }

    /// Refuses with [`Error::Poisoned`] after a failed log write or sync: the
    /// in-memory state may then hold records the disk never got, and nothing
    /// derived from it (a backup) may be presented as durable.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        self.inner.wal.check_poisoned()
    }

    /// The time the handle judges deadlines at, in milliseconds since the
    /// Unix epoch: its clock ([`Options::clock`]), never earlier than a
    /// reading it already used. For callers that compute deadlines
    /// themselves (the server's EXPIREAT), so they agree with the handle.
    pub fn now_ms(&self) -> u64 {
        self.inner.now()
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
        inner::join_slot(&self.inner.compactor);
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
fn load_view(vfs: &dyn Vfs, dir: &Path, observer: Option<&Observer>) -> Result<(State, SnapMeta, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let (mut state, meta, scan) = load(vfs, dir, false, observer, &mut report)?;
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
    observer: Option<&Observer>,
    report: &mut RecoveryReport,
) -> Result<(State, SnapMeta, log::LogScan)> {
    let snap_path = dir.join(snapshot::FILE_NAME);
    let (mut state, meta) = if vfs.exists(&snap_path).map_err(|e| Error::io("checking", &snap_path, e))? {
        let (state, info) = snapshot::load(vfs, &snap_path, observer)?;
        let segments = log::list_segments(vfs, dir)?;
        if let Some(continues) = info.continues {
            log::check_continuation(vfs, dir, &segments, &snap_path, info.seq, continues, check_successor)?;
        } else if check_successor && let Some(path) = log::missing_successor(&segments, dir, info.seq) {
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
    // No key order is kept through the replay, nor after it: the first
    // listing builds them all at once (`Inner::frozen_in_order`), on a frozen
    // copy outside the locks. An open then sorts no keys and holds no orders
    // (issue 18: 13 % of a log open's instructions at 200,000 keys, about
    // 10 bytes a key resident), and inserting each new key into its shard's
    // order one by one was a fifth of a relaxed bulk load's instructions;
    // one sort packs the chunks full.
    state.map.defer_orders();
    // The records' writes are applied per shard on every core (`Replay`);
    // the log is still read and checked in order on this thread.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut replay = Replay::new(&mut state, threads);
    let mut failed = false;
    let scan = log::read_log_prepared(vfs, dir, snapshot_seq, observer, &Replay::prepare, |seq, record| {
        failed |= !failed && replay.push_prepared(seq, record).is_err();
    })?;
    if failed || replay.finish().is_err() {
        let why = std::io::Error::other("a thread replaying the log stopped (panicked); nothing was changed");
        return Err(Error::io("replaying the log in", dir, why));
    }
    // The parse threads' arenas keep the freed buffers of the load resident
    // (about 5 MiB of 48 at 200,000 keys): give them back once, here.
    heap::trim();
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
