//! What the database reports: the recovery at open, a save, its counters.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::state::index::IndexInfo;
use crate::storage::log::{self};

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

/// What [`Db::save`](crate::Db::save) did.
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

/// Counters and sizes, as [`Db::stats`](crate::Db::stats) reports them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// The data directory.
    pub dir: PathBuf,
    /// Number of keys.
    pub keys: usize,
    /// Of them, how many have a deadline (will expire).
    pub expiring: usize,
    /// The last sequence number written.
    pub last_seq: u64,
    /// The last sequence number known durable.
    pub durable_seq: u64,
    /// The last sequence number in the snapshot.
    pub snapshot_seq: u64,
    /// Size of `database.json` (0 if none).
    pub snapshot_bytes: u64,
    /// Size of all log segments (with [`Durability::Buffered`](crate::Durability::Buffered), counting
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
    /// [`Options::auto_compact_min_bytes`](crate::Options::auto_compact_min_bytes) (or a `save` succeeds).
    pub failed_compactions: u64,
    /// The error of the last automatic compaction, if it failed (cleared
    /// when one succeeds).
    pub last_compaction_error: Option<String>,
    /// Why writes are refused, if they are.
    pub poisoned: Option<String>,
    /// The indexes.
    pub indexes: Vec<IndexInfo>,
}
