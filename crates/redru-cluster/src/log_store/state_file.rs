//! The log's state file (the vote, the committed log id and the last purged
//! log id, one checksummed line replaced atomically) and the directory lock
//! taken before anything in the directory is read or repaired.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Inner;
use crate::codec;
use crate::error::Error;
use crate::files::{self, io_err};
use crate::types::{LogId, Vote};

/// The state file's one line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct LogStateFile {
    pub(super) vote: Option<Vote>,
    pub(super) committed: Option<LogId>,
    pub(super) last_purged: Option<LogId>,
}

/// Takes the log directory's lock before anything is read or repaired.
pub(super) fn lock_dir(dir: &Path) -> Result<File, Error> {
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
pub(super) fn write_state(dir: &Path, state: &LogStateFile) -> Result<(), Error> {
    let line = codec::encode(state).map_err(io::Error::other)?;
    files::write_atomic(&dir.join(files::LOG_STATE_NAME), &line)?;
    Ok(())
}

pub(super) fn read_state(dir: &Path) -> Result<LogStateFile, Error> {
    let path = dir.join(files::LOG_STATE_NAME);
    match fs::read(&path) {
        Ok(bytes) => codec::decode(&bytes).map_err(|reason| Error::Corrupt { file: path, offset: 0, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LogStateFile::default()),
        Err(e) => Err(io_err("reading", &path, e).into()),
    }
}

impl Inner {
    pub(super) fn save_state(&mut self, state: LogStateFile) -> Result<(), Error> {
        write_state(&self.dir, &state)?;
        self.state = state;
        Ok(())
    }
}
