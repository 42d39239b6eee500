//! The log's segment files: which exist in a directory, and removing those a
//! snapshot covers. Their names are made in `storage::files`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::record::Seq;
use crate::storage::vfs::Vfs;

pub use crate::storage::files::{parse_segment_name, segment_name};

/// One segment file of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// The sequence number its first record has (or will have).
    pub first: Seq,
}

/// The log's segments in `dir`, in order.
pub fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<Segment>> {
    let names = vfs.list(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut segments: Vec<Segment> =
        names.iter().filter_map(|n| parse_segment_name(n).map(|first| Segment { path: dir.join(n), first })).collect();
    segments.sort_by_key(|s| s.first);
    Ok(segments)
}

/// Deletes segments taken out of the log by [`Writer::take_older`](super::Writer::take_older) and syncs
/// the directory. A crash in between leaves covered segments, which the next
/// open removes. Returns how many.
pub fn remove_segments(vfs: &dyn Vfs, dir: &Path, segments: &[Segment]) -> Result<usize> {
    for segment in segments {
        vfs.remove(&segment.path).map_err(|e| Error::io("removing", &segment.path, e))?;
    }
    if !segments.is_empty() {
        vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))?;
    }
    Ok(segments.len())
}
