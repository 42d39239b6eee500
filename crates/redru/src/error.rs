//! The library's one error type.
//!
//! Every variant carries what a person needs to act on it, as fields a caller
//! can match on: the path, the line and byte offset, the field, the key, and
//! for damage the function that repairs it. `Display` is written for people;
//! nothing reuses `{:?}` as a message. Messages name library calls, never
//! shell commands: the `redru` command line adds its own when it prints one.

use std::path::PathBuf;

/// `Result` with redru's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in redru.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed on a file redru owns.
    #[error("{action} {path}: {source}")]
    Io {
        /// What redru was doing, as a verb phrase ("writing", "syncing", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A directory stands where redru keeps one of its files (`database.json/`,
    /// `wal-….wal/`): redru never makes one there, and no repair can fix it.
    #[error(
        "{path} is a directory, where redru keeps a file ({action} it failed); move it out of the data directory \
         (redru never creates a directory there, and `redru::repair` cannot fix this)",
        path = .path.display()
    )]
    IsADirectory {
        /// What redru was doing ("reading", "opening", ...).
        action: &'static str,
        /// The directory.
        path: PathBuf,
    },

    /// Another `Db` (in this process or another) holds the directory.
    #[error("{dir} is locked by another redru process{}; close it first (only one Db may open a directory)",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The pid written in the lock file by the holder, when readable.
        pid: Option<u32>,
    },

    /// A file is damaged in a way that is not a torn tail: refused, never skipped.
    #[error("{path}: corrupt at line {line}, byte offset {offset}: {reason}; \
             `redru::repair` on {dir} keeps the records before it and sets the rest aside",
        dir = .path.parent().map(|p| p.display().to_string()).unwrap_or_else(|| ".".into()),
        path = .path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// 1-based line number (for the snapshot: 1).
        line: u64,
        /// Byte offset of the start of the damaged line or region.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// The snapshot `database.json` (or a backup) failed its integrity check.
    #[error(
        "{path}: snapshot is damaged: {reason}; restore a backup (`redru::list_backups` lists them, `Db::restore` restores one)"
    )]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// `database.json` is missing but the log no longer starts at record 1:
    /// the records before the log were only in the snapshot. Nothing was changed.
    #[error(
        "{path} is missing, but the log starts at record {first}: records 1 to {last} were only in the snapshot. \
         Restore the newest backup by copying it to {path} (a backup is a snapshot file; `redru::list_backups` \
         lists them with their last record), which restores everything if it holds record {last} or later; \
         `redru::repair` cannot rebuild a snapshot and is refused",
        path = .path.display(),
        last = .first.saturating_sub(1)
    )]
    MissingSnapshot {
        /// Where the snapshot should be.
        path: PathBuf,
        /// The first record the log holds.
        first: u64,
    },

    /// The snapshot ends at record `snapshot_seq` but there is no log
    /// segment, in a directory redru has opened before: every save creates the
    /// next segment before its snapshot exists, so the newest segment was
    /// deleted. Nothing was changed.
    #[error(
        "{path} is missing: the snapshot ends at record {snapshot_seq}, and every save starts the log's next segment \
         there before writing its snapshot, so the newest segment (every write after the snapshot) was deleted. \
         Put it back if you have a copy; to accept the loss, create it empty; `redru::repair` cannot bring it back",
        path = .path.display()
    )]
    MissingSegment {
        /// The segment that should be there.
        path: PathBuf,
        /// The snapshot's last record.
        snapshot_seq: u64,
    },

    /// A sealed segment names the segment its log continues in, but that
    /// segment is gone (`emptied` false) or does not start with its header
    /// (`emptied`: emptied or cut inside its header). A segment is sealed
    /// only once its successor, header first, is durable, so the newest
    /// segment was deleted or emptied. Nothing was changed.
    #[error(
        "{path} {what}: {sealed} was sealed naming it as the segment the log continues in, and a segment is sealed \
         only once its successor, header first, is durable, so the newest segment was {how} (with every write in it). \
         Put it back if you have a copy; to accept the loss, run `redru::repair`, which sets the seal{also} aside",
        path = .path.display(),
        sealed = .sealed.display(),
        what = if *.emptied { "does not start with its segment header" } else { "is missing" },
        how = if *.emptied { "emptied" } else { "deleted" },
        also = if *.emptied { " and what is left of that file" } else { "" }
    )]
    MissingSuccessor {
        /// The segment that should be there (or that was emptied).
        path: PathBuf,
        /// The sealed segment that names it.
        sealed: PathBuf,
        /// Whether the file is there but lacks its header.
        emptied: bool,
    },

    /// The snapshot (version 3) names the segment its log continues in,
    /// but that segment is gone while no other segment continues the log
    /// (`emptied` false), or it does not start with its header (`emptied`:
    /// emptied to 0 bytes or cut inside its header). Such a segment is
    /// created header first and durable before its snapshot is (a save), or
    /// right after it with the old log still there (an import), so the
    /// newest segment was deleted or emptied. Nothing was changed.
    #[error(
        "{path} {what}: {snapshot} says the log continues in it after record {snapshot_seq}, and that segment is \
         created with its header before the snapshot names it, so the newest segment was {how} (with every write \
         after the snapshot). Put it back if you have a copy; to accept the loss, run `redru::repair`, which \
         starts it again with its header{also}",
        path = .path.display(),
        snapshot = .snapshot.display(),
        what = if *.emptied { "does not start with its segment header" } else { "is missing" },
        how = if *.emptied { "emptied" } else { "deleted" },
        also = if *.emptied { " after setting aside what is left of it" } else { "" }
    )]
    MissingContinuation {
        /// The segment that should be there (or that was emptied).
        path: PathBuf,
        /// The snapshot that names it.
        snapshot: PathBuf,
        /// The snapshot's last record.
        snapshot_seq: u64,
        /// Whether the file is there but lacks its header.
        emptied: bool,
    },

    /// A previous write or fsync failed: the page cache can no longer be
    /// trusted, so the handle refuses writes until the database is reopened.
    #[error(
        "the database refuses writes after an earlier I/O failure ({cause}); reopen it to recover the durable state"
    )]
    Poisoned {
        /// The first failure's message.
        cause: String,
    },

    /// This write (or sync) reached the log but could not be made durable:
    /// its fsync, or handing it to the OS, failed. What it covered was taken
    /// back from the in-memory state (no read shows it), and the handle
    /// refuses writes until the database is reopened.
    #[error(
        "{what} failed ({cause}); the writes it covered were rolled back and the database refuses writes until it is reopened"
    )]
    WriteFailed {
        /// "this write" or "this sync".
        what: &'static str,
        /// The failure's message.
        cause: String,
    },

    /// A write would give two keys the same value of a unique indexed field.
    #[error(
        "unique index on `{field}`: key `{key}` would share value {value} with key `{existing}`; nothing was written"
    )]
    UniqueViolation {
        /// The indexed field.
        field: String,
        /// The key being written.
        key: String,
        /// The key that already holds the value.
        existing: String,
        /// The conflicting value (compact JSON, possibly shortened).
        value: String,
    },

    /// A condition of a conditional write ([`Db::update`](crate::Db::update)'s
    /// caller, [`Db::compare_and_set`](crate::Db::compare_and_set), a
    /// [`Batch`](crate::Batch)'s `require_*`) did not hold: nothing was written
    /// or logged.
    #[error("condition {position} failed: `{key}` {expected}, but {found}; nothing was written",
        position = .index + 1)]
    ConditionFailed {
        /// The key the condition is on.
        key: String,
        /// Which condition, counting from 0 in the order they were added
        /// (0 for `compare_and_set`).
        index: usize,
        /// What was required, as a phrase ("is absent", "equals 5",
        /// "is unchanged since record 7").
        expected: String,
        /// What was found, as a phrase ("it holds 6", "it is absent", "it was
        /// last written by record 9").
        found: String,
        /// The seq of the record that last wrote the key, if it exists (retry
        /// with it): see [`Db::get_with_seq`](crate::Db::get_with_seq).
        seq: Option<u64>,
    },

    /// A write (or save, backup, restore) on a handle opened read-only.
    #[error("{dir} is open read-only: writes, saves and backups are refused (open it without `read_only`)", dir = .dir.display())]
    ReadOnly {
        /// The data directory.
        dir: PathBuf,
    },

    /// A read-only open of a directory that does not exist.
    #[error("no such database: {dir} does not exist", dir = .dir.display())]
    NoDatabase {
        /// The directory asked for.
        dir: PathBuf,
    },

    /// A lookup or `drop_index` named a field that has no index.
    #[error("there is no index on `{field}`")]
    NoIndex {
        /// The field path, as given.
        field: String,
    },

    /// `create_index` named a field that already has an index.
    #[error("an index on `{field}` already exists")]
    IndexExists {
        /// The field path, as given.
        field: String,
    },

    /// A field path that cannot be read (`a..b`, an empty path).
    #[error("{reason}")]
    InvalidFieldPath {
        /// The path, as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A query that the query language cannot read.
    #[error("{reason}")]
    InvalidQuery {
        /// The query, as given.
        query: String,
        /// What is wrong, and where.
        reason: String,
    },

    /// A value that is not valid JSON, or that could not be read back exactly
    /// once stored (nested too deeply, serde_json's reserved member names).
    #[error("{}{reason}", .key.as_ref().map(|k| format!("value of `{k}`: ")).unwrap_or_default())]
    InvalidValue {
        /// The key being written, when known.
        key: Option<String>,
        /// What is wrong with the value.
        reason: String,
    },

    /// A stored value does not deserialize into the type asked for.
    #[error("cannot deserialize value{}: {reason}", .key.as_ref().map(|k| format!(" of `{k}`")).unwrap_or_default())]
    Deserialize {
        /// The key read, when known.
        key: Option<String>,
        /// serde's message.
        reason: String,
    },

    /// An import file that cannot be imported; nothing was.
    #[error("{path}: {reason}; nothing was imported")]
    Import {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// No backup of that name in the backups directory.
    #[error("there is no backup named {name:?} in {dir}", dir = .dir.display())]
    BackupNotFound {
        /// The name, as given.
        name: String,
        /// The backups directory.
        dir: PathBuf,
    },

    /// A backup name that could leave the backups directory, or is empty.
    #[error(
        "refusing backup name {name:?}: {reason}; give a name that `redru::list_backups` lists, or a path to `Db::restore_file`"
    )]
    BadBackupName {
        /// The name, as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },

    /// `backup_to` a path that exists: a backup never overwrites a file.
    #[error("{path} already exists; a backup never overwrites a file", path = .path.display())]
    BackupExists {
        /// The path.
        path: PathBuf,
    },

    /// A backup just written did not verify when read back; it was left for inspection.
    #[error("the backup read back from {path} does not verify ({reason}); it was left there for inspection", path = .path.display())]
    BackupUnverified {
        /// The temporary file left in place.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// A restore failed after it started changing the database; the state
    /// before it is in the backup named `undo`.
    #[error("restore of {path} failed midway ({source}); to undo, restore {undo}", path = .path.display())]
    RestoreFailed {
        /// The backup being restored.
        path: PathBuf,
        /// The backup of the state before the restore began.
        undo: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },

    /// The change feed cannot go on after record `from`: compaction folded
    /// the records after it into the snapshot and removed them from the log.
    #[error(
        "the change feed cannot resume after record {from}: compaction folded the records up to {} into the \
         snapshot and removed them from the log (the oldest it still holds is {first_available}); resync from \
         a snapshot (`Db::subscribe_with_state`) and follow the feed from there",
        .first_available.saturating_sub(1)
    )]
    FeedTruncated {
        /// The sequence number the subscription wanted to continue after.
        from: u64,
        /// The oldest record the log still holds.
        first_available: u64,
    },

    /// [`Db::subscribe`](crate::Db::subscribe) from a sequence number the log has not reached.
    #[error(
        "cannot follow the change feed after record {from}: this database's log ends at record {last} \
         (a sequence number from another database?)"
    )]
    FeedAhead {
        /// The sequence number asked for.
        from: u64,
        /// The last record written.
        last: u64,
    },

    /// The change feed ended: the database was closed, or a log write
    /// failed (what follows the last durable record was rolled back).
    #[error(
        "the change feed stopped after record {position} ({reason}); reopen the database and subscribe \
         again from {position}"
    )]
    FeedStopped {
        /// Every change up to this record was delivered: resume from it.
        position: u64,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Io`].
    /// A directory where a file should be gets its own variant, whatever
    /// the call: the OS's own words for it range from "Is a directory" to
    /// "No such device" (mmap).
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::IsADirectory {
            return Error::IsADirectory { action, path };
        }
        Error::Io { action, path, source }
    }
}
