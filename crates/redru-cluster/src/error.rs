//! The crate's one error type, for opening a node's storage. Inside openraft's
//! traits every failure becomes an openraft `StorageError` whose message is
//! this type's `Display`: the file, the byte offset, what was expected.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the cluster's storage could not be opened or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read, written or synced (the message names it).
    Io(io::Error),
    /// A Raft log file is damaged somewhere other than its torn last line.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset of the first bad line.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The state machine's redru database refused an operation.
    Engine {
        /// What was being done.
        doing: String,
        /// The engine's error (boxed: it is large, and this error is returned everywhere).
        source: Box<redru::Error>,
    },
    /// An earlier write or fsync failed: the log refuses writes until it is reopened.
    Poisoned,
    /// Another handle (in this process or another) has the Raft log open.
    Locked {
        /// The log's directory.
        dir: PathBuf,
        /// The holder's process id, when its lock file says.
        pid: Option<u32>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Corrupt { file, offset, reason } => write!(
                f,
                "raft log {} is damaged at byte {offset}: {reason} (not a torn last line: \
                 refusing to open; restore this node from its peers by wiping its directory and re-adding it)",
                file.display()
            ),
            Error::Engine { doing, source } => write!(f, "{doing}: {source}"),
            Error::Poisoned => write!(f, "an earlier write or fsync of the raft log failed: reopen the node"),
            Error::Locked { dir, pid: Some(pid) } => {
                write!(f, "the raft log in {} is open in another handle (process {pid})", dir.display())
            }
            Error::Locked { dir, pid: None } => {
                write!(f, "the raft log in {} is open in another handle", dir.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Engine { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}
