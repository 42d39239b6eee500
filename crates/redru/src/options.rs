//! How a database is opened: durability mode, automatic compaction, file
//! system, the clock expiry reads and how often expired keys are swept.
//!
//! Every setter documents its default and what it trades. docs/durability.md
//! says in plain words what each [`Durability`] can lose.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::progress::{Observed, Progress};
use crate::storage::vfs::{StdFs, Vfs};

/// When a write's log record is forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// A write returns only after its record is fsynced (fdatasync). Writers
    /// in other threads share fsyncs (group commit). Loses nothing
    /// acknowledged. The default.
    #[default]
    Always,
    /// A background thread fsyncs the log every interval, like Redis's
    /// `appendfsync everysec`. A power loss or OS crash can lose the writes
    /// of the last interval (plus one fsync's duration); a crash of the
    /// process alone loses nothing that reached `write(2)`.
    Periodic(Duration),
    /// The log is fsynced only by `sync`, `save` and a clean close; the OS
    /// decides the rest. A power loss can lose any write since the last of
    /// those; a crash of the process alone loses nothing.
    Never,
    /// Log records collect in an in-process buffer that is handed to the OS
    /// (one `write(2)`) when it holds [`Options::buffer_bytes`] (64 KiB by
    /// default), every [`Options::buffer_flush_interval`] (100 ms) from a
    /// background thread, and by `sync`, `save`, `backup` and a clean close;
    /// the log is fsynced only by `sync`, `save` and a clean close. A crash
    /// of the process loses the writes still in the buffer (at most its size,
    /// and at most about one interval old); a power loss or OS crash loses any
    /// write since the last `sync`, `save` or clean close. What survives is
    /// always a prefix of the writes, in order. The fastest mode for bulk loads.
    Buffered,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Periodic(d) => write!(f, "periodic({}ms)", d.as_millis()),
            Durability::Never => f.write_str("never"),
            Durability::Buffered => f.write_str("buffered"),
        }
    }
}

/// Options for [`Db::open_with`](crate::Db::open_with): a builder.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use redru::{Durability, Options};
/// use std::time::Duration;
/// let db = Options::new()
///     .durability(Durability::Periodic(Duration::from_secs(1)))
///     .auto_compact_min_bytes(64 << 20)
///     .open(dir.path())?;
/// # drop(db);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) auto_compact: bool,
    pub(crate) auto_compact_min_bytes: u64,
    pub(crate) auto_compact_ratio: f64,
    pub(crate) buffer_bytes: usize,
    pub(crate) buffer_flush_interval: Option<Duration>,
    /// `None`: by the durability (see [`Options::preallocate_log`]).
    pub(crate) preallocate_log: Option<bool>,
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) read_only: bool,
    pub(crate) progress: Option<Observed>,
    pub(crate) feed_buffer: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sweep_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Always,
            auto_compact: true,
            auto_compact_min_bytes: 16 << 20,
            auto_compact_ratio: 1.0,
            buffer_bytes: 64 << 10,
            buffer_flush_interval: Some(Duration::from_millis(100)),
            preallocate_log: None,
            vfs: Arc::new(StdFs),
            read_only: false,
            progress: None,
            feed_buffer: 65_536,
            clock: Arc::new(SystemClock),
            sweep_interval: Some(Duration::from_millis(100)),
        }
    }
}

impl Options {
    /// The defaults: [`Durability::Always`], automatic compaction when the log
    /// exceeds both 16 MiB and the snapshot's size, the real file system.
    pub fn new() -> Options {
        Options::default()
    }

    /// When writes are fsynced. Default [`Durability::Always`]: safest,
    /// and with many writer threads group commit recovers most of the speed.
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// Whether a background save starts by itself when the log grows past
    /// the thresholds below. Default `true`. Without it the log grows until
    /// [`Db::save`](crate::Db::save), and opening replays all of it.
    pub fn auto_compact(mut self, on: bool) -> Options {
        self.auto_compact = on;
        self
    }

    /// The log must be larger than this many bytes before it is compacted
    /// automatically. Default 16 MiB: small logs replay in well under a
    /// second, and compacting them often would rewrite the snapshot often.
    pub fn auto_compact_min_bytes(mut self, bytes: u64) -> Options {
        self.auto_compact_min_bytes = bytes;
        self
    }

    /// The log must also be larger than this multiple of the snapshot's size.
    /// Default 1.0: the log never holds more bytes than the snapshot, so disk
    /// use stays under about twice the data, and each save's cost (writing the
    /// whole snapshot) is paid for by as many bytes of log.
    pub fn auto_compact_ratio(mut self, ratio: f64) -> Options {
        self.auto_compact_ratio = if ratio.is_finite() && ratio > 0.0 { ratio } else { 1.0 };
        self
    }

    /// With [`Durability::Buffered`]: the buffer is handed to the OS once it
    /// holds this many bytes. Default 64 KiB: a bulk load of 200,000 small
    /// sets is within a few percent of its fastest there (docs/benchmarks.md),
    /// and a crash of the process loses at most that many bytes of writes.
    /// Larger buys little; 0 writes every record at once, like
    /// [`Durability::Never`].
    pub fn buffer_bytes(mut self, bytes: usize) -> Options {
        self.buffer_bytes = bytes;
        self
    }

    /// With [`Durability::Buffered`]: how often a background thread hands
    /// what the buffer holds to the OS, so that writes do not wait in memory
    /// for the buffer to fill. Default 100 ms (like fjall's and sled's flush
    /// threads); its cost is one wake-up per interval. `None`: no thread, the
    /// buffer is written only when full or by `sync`, `save`, `backup` and close.
    pub fn buffer_flush_interval(mut self, every: Option<Duration>) -> Options {
        self.buffer_flush_interval = every;
        self
    }

    /// Whether the log's open segment is written over zeros written (and
    /// fdatasynced) ahead of it by a thread of its own, so that an append
    /// changes neither the file's size nor its extents and the fdatasync
    /// after it writes the data alone (docs/design.md, "Preallocated
    /// segments"). Default: with the zeros in the modes that fsync on their
    /// own ([`Durability::Always`], [`Durability::Periodic`]); without them
    /// in [`Durability::Buffered`] and [`Durability::Never`] where the file
    /// system can write the log back in the background instead (Linux: a
    /// thread of its own calls `sync_file_range` every MiB appended, as
    /// RocksDB's `wal_bytes_per_sync`), with them elsewhere.
    ///
    /// Why the relaxed modes go without (docs/benchmarks.md, "Writeback
    /// instead of zeros in the relaxed modes"): the zeros' 64 KiB writes
    /// hold the file's inode lock beside the writer, so a relaxed writer's
    /// longest set during a full-scan query was usually one 4 ms scheduler
    /// tick with them and under 1 ms without, and during a `save` of 200,000
    /// keys longer too; the writeback keeps what the zeros' fsyncs gave a
    /// relaxed writer (a bulk load as fast, and no wait for the kernel's
    /// writeback after an unsynced load of 1,000,000 keys). `true` asks for
    /// the zeros in any mode, `false` for none (and, relaxed, the
    /// writeback). Only the real file system preallocates and writes back.
    pub fn preallocate_log(mut self, on: bool) -> Options {
        self.preallocate_log = Some(on);
        self
    }

    /// Opens the directory read-only. Default: false.
    ///
    /// A read-only handle takes no lock, so it opens a directory another
    /// process (an application, `redru serve`) has open; it creates, changes
    /// and removes no file, so it works on read-only media too. It sees the
    /// state as of the last complete log record when it opened: a snapshot and
    /// the records after it, never a mix of two states (a save or compaction
    /// that moves files while it reads makes it start again), and it stops
    /// before a torn last line instead of cutting it. It does not follow later
    /// writes: open it again to see them. Every write, `save` and backup is
    /// refused with [`Error::ReadOnly`](crate::Error::ReadOnly).
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// How many of the latest records the change feed keeps in memory for
    /// its subscriptions ([`Db::subscribe`](crate::Db::subscribe)), at most;
    /// it also stops at 32 MiB of keys and values. Default 65,536. Kept only
    /// while a subscription is open. A subscription further behind reads the
    /// log files instead (slower, and impossible for records compaction
    /// removed); writers never wait either way. Larger lets subscribers lag
    /// longer without touching the disk, for the memory.
    pub fn feed_buffer(mut self, records: usize) -> Options {
        self.feed_buffer = records.max(1);
        self
    }

    /// The clock that decides when keys expire. Default: the system's wall
    /// clock ([`SystemClock`]). Tests put a [`ManualClock`](crate::ManualClock)
    /// here to step over deadlines exactly.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Options {
        self.clock = clock;
        self
    }

    /// How often a background thread removes expired keys (by logging their
    /// deletion, at most 256 keys per record, so writers wait at most a few
    /// milliseconds at a time). Default 100 ms (Redis samples ten times a
    /// second); the cost when no key is due is one wake-up and a look at the
    /// earliest deadline. Expired keys are invisible to every read at once
    /// whatever this is; it only decides how long they take memory and
    /// disk. `None`: no thread; [`Db::sweep_expired`](crate::Db::sweep_expired)
    /// removes them on demand. A read-only handle never sweeps.
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Options {
        self.sweep_interval = every;
        self
    }

    /// The file system to use. Default: the real one. Tests put a simulated
    /// one here to check what survives a power loss.
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Options {
        self.vfs = vfs;
        self
    }

    /// Tells `observer` how far the long operations have got: loading the
    /// snapshot and replaying the log at open, writing a snapshot (`save`,
    /// compaction, backups), checking files (`verify`, `repair`), restoring.
    /// Default: nobody is told. See [`Progress`] for what a report holds.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// use redru::{Options, progress::Stage};
    /// let db = Options::new()
    ///     .progress(|p| if p.stage == Stage::WriteSnapshot { eprintln!("{} of {} keys", p.done, p.total) })
    ///     .open(dir.path())?;
    /// db.set("k", redru::json!(1))?;
    /// db.save()?; // prints "0 of 1 keys", then "1 of 1 keys"
    /// # Ok(())
    /// # }
    /// ```
    pub fn progress(mut self, observer: impl Fn(&Progress) + Send + Sync + 'static) -> Options {
        self.progress = Some(Observed(Arc::new(observer)));
        self
    }

    /// The progress observer, if one was set.
    pub(crate) fn observer(&self) -> Option<&crate::progress::Observer> {
        self.progress.as_ref().map(|o| &o.0)
    }
}
