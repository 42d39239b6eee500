//! Every file name the cluster uses on disk, made here (the scheme is in
//! docs/cluster.md, "Files"), and the atomic replace every small state file
//! goes through: temporary file, fsync, rename, directory fsync.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The Raft log's directory inside a node's directory.
pub(crate) const LOG_DIR: &str = "raft-log";
/// The state machine's redru database inside a node's directory.
pub(crate) const DB_DIR: &str = "db";
/// Snapshots inside a node's directory.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
/// The vote, the committed log id and the last purged log id (one line).
pub(crate) const LOG_STATE_NAME: &str = "raft-state";
/// Held (an OS file lock) while a process has the Raft log open; it holds
/// that process's id, for the error another process gets.
pub(crate) const LOG_LOCK_NAME: &str = "LOCK";
/// Which snapshot is current (one line), in the snapshot directory.
pub(crate) const CURRENT_SNAPSHOT_NAME: &str = "current";

/// A log segment: named by the index of its first entry, zero-padded so that
/// names sort as numbers: `00000000000000000001.seg`.
pub(crate) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The first index a segment's file name carries, if it is a segment's name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where the bytes cut off a torn segment tail are kept: `<segment>.torn-<offset>`.
pub(crate) fn torn_path(segment: &Path, offset: u64) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(format!(".torn-{offset}"));
    PathBuf::from(name)
}

/// A snapshot file: `snapshot-<term>-<index>-<n>.json`, a redru snapshot
/// (database.json format) with its `.sha256` beside it.
pub(crate) fn snapshot_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("snapshot-{id}.json"))
}

/// Whether `name` is a snapshot file's name (see [`snapshot_path`]).
pub(crate) fn is_snapshot_name(name: &str) -> bool {
    name.strip_prefix("snapshot-").and_then(|rest| rest.strip_suffix(".json")).is_some_and(|id| !id.is_empty())
}

/// A snapshot being received: `receiving-<n>.tmp`, written chunk by chunk,
/// renamed to its [`snapshot_path`] once installed; one left by a crash is
/// removed at the next start.
pub(crate) fn receiving_snapshot_path(dir: &Path, n: &str) -> PathBuf {
    dir.join(format!("receiving-{n}.tmp"))
}

/// Whether `name` is the name of a snapshot being received.
pub(crate) fn is_receiving_snapshot_name(name: &str) -> bool {
    name.starts_with("receiving-") && name.ends_with(".tmp")
}

/// An I/O error that names what was being done, and to which file.
pub(crate) fn io_err(doing: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Makes `dir` exist; if it was created, its parent's entry is synced too.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| io_err("creating directory", dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Syncs a directory, making the entries created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    // A relative path's parent may be "": the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("syncing directory", dir, e))
}

/// Replaces `path` with `bytes` atomically: either the old content or the
/// new one survives a crash, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| io_err("creating", &tmp, e))?;
    file.write_all(bytes).map_err(|e| io_err("writing", &tmp, e))?;
    file.sync_all().map_err(|e| io_err("syncing", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| io_err("renaming into place", path, e))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Writes `bytes` to a new file and syncs it (the caller syncs the directory).
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path).map_err(|e| io_err("creating", path, e))?;
    file.write_all(bytes).map_err(|e| io_err("writing", path, e))?;
    file.sync_all().map_err(|e| io_err("syncing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        let p = segment_path(Path::new("d"), 42);
        assert_eq!(p, Path::new("d/00000000000000000042.seg"));
        assert_eq!(parse_segment_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.seg.torn-7"), None);
    }
}
