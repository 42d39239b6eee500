//! `compact`: offline compaction of a closed data directory.
//!
//! Opens the database (recovery as usual), saves a fresh snapshot through
//! `Db::save` (same crash safety: temp file, fsync, rename, fsync of the
//! directory, then the covered log segments go) and closes it, measuring the
//! disk use before and after.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::storage::log;
use crate::storage::snapshot;
use crate::storage::vfs::Vfs;

/// Disk use of a data directory (the snapshot and the log; side files not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Size of `database.json` (0 if none).
    pub snapshot_bytes: u64,
    /// Size of all log segments.
    pub wal_bytes: u64,
    /// Number of log segments.
    pub wal_segments: usize,
}

impl DiskUsage {
    /// Snapshot plus log.
    pub fn total(&self) -> u64 {
        self.snapshot_bytes + self.wal_bytes
    }

    /// Measures `dir`.
    pub fn of(vfs: &dyn Vfs, dir: &Path) -> Result<DiskUsage> {
        let mut usage = DiskUsage::default();
        let snap = dir.join(snapshot::FILE_NAME);
        if vfs.exists(&snap).map_err(|e| Error::io("checking", &snap, e))? {
            usage.snapshot_bytes = vfs.read(&snap).map_err(|e| Error::io("reading", &snap, e))?.len() as u64;
        }
        for segment in log::list_segments(vfs, dir)? {
            usage.wal_bytes +=
                vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?.len() as u64;
            usage.wal_segments += 1;
        }
        Ok(usage)
    }
}

/// What [`compact`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// The data directory.
    pub dir: PathBuf,
    /// Disk use before.
    pub before: DiskUsage,
    /// Disk use after.
    pub after: DiskUsage,
    /// Keys in the new snapshot.
    pub keys: usize,
    /// The last record in the new snapshot.
    pub seq: u64,
    /// Whether the snapshot was already up to date (nothing written).
    pub unchanged: bool,
    /// What opening recovered (a torn tail cut), if anything.
    pub recovery: Option<String>,
    /// Total time, open to close.
    #[serde(serialize_with = "crate::tools::verify::millis")]
    pub duration: Duration,
}

impl fmt::Display for CompactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(recovery) = &self.recovery {
            writeln!(f, "{recovery}")?;
        }
        let (b, a) = (self.before, self.after);
        write!(
            f,
            "compacted {} in {} ms: {} keys up to record {}{}\n  before: {} bytes (snapshot {}, log {} in {} segment(s))\n  after:  {} bytes (snapshot {}, log {} in {} segment(s))",
            self.dir.display(),
            self.duration.as_millis(),
            self.keys,
            self.seq,
            if self.unchanged { " (the snapshot was already up to date)" } else { "" },
            b.total(),
            b.snapshot_bytes,
            b.wal_bytes,
            b.wal_segments,
            a.total(),
            a.snapshot_bytes,
            a.wal_bytes,
            a.wal_segments
        )
    }
}

/// Compacts the database in `dir` on the real file system; see [`compact_with`].
pub fn compact(dir: &Path) -> Result<CompactReport> {
    compact_with(dir, Options::default())
}

/// Opens the database in `dir` (which must exist; it is locked for the
/// duration, [`Error::Locked`] if a `Db` has it open), writes a fresh
/// snapshot, drops the compacted log and closes it.
pub fn compact_with(dir: &Path, options: Options) -> Result<CompactReport> {
    let started = Instant::now();
    let vfs = std::sync::Arc::clone(&options.vfs);
    if !vfs.exists(dir).map_err(|e| Error::io("checking", dir, e))? {
        return Err(Error::io("opening", dir, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let before = DiskUsage::of(&*vfs, dir)?;
    let db = Db::open_with(dir, options.auto_compact(false))?;
    let recovery = db.recovery().warning();
    let saved = db.save()?;
    db.close()?;
    let after = DiskUsage::of(&*vfs, dir)?;
    Ok(CompactReport {
        dir: dir.to_owned(),
        before,
        after,
        keys: saved.keys,
        seq: saved.seq,
        unchanged: saved.unchanged,
        recovery,
        duration: started.elapsed(),
    })
}
