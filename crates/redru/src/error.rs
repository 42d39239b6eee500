//! The library's one error type.
//!
//! Every variant carries what a person needs to act on it: the path, the line
//! and byte offset, what was expected, and for damage the command that repairs
//! it. `Display` is written for people; nothing reuses `{:?}` as a message.

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
             run `redru repair --dir {dir}` to keep the records before it and set the rest aside",
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
        "{path}: snapshot is damaged: {reason}; restore a backup (`redru backups` lists them, `redru restore NAME` restores one)"
    )]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
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

    /// An index operation named a field that has no index, or one that exists.
    #[error("{0}")]
    Index(String),

    /// A caller passed something redru cannot accept (a bad field path, a bad query...).
    #[error("{0}")]
    InvalidInput(String),

    /// A backup could not be found, or its name was refused.
    #[error("{0}")]
    Backup(String),
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}
