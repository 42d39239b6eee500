//! The log's segment files: which exist in a directory, creating one (its
//! header written under a temporary name and renamed, so a segment never
//! exists without it), and removing those a snapshot covers. Their names are
//! made in `storage::files`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::record::{self, Marker, Seq};
use crate::storage::vfs::{VFile, Vfs};

pub use crate::storage::files::{is_segment_temp, parse_segment_name, segment_name, segment_tmp_name};

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

/// Creates the segment starting at `first`, whose header names `prev` (the
/// segment before it, if any), and returns it open for appending with the
/// length of its header. The header is written to `wal-….wal.tmp`, synced,
/// renamed into place and the directory synced: when this returns the
/// segment is durable, and at no instant does it exist without its header.
/// Refuses (`AlreadyExists`) if the segment exists.
pub fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    first: Seq,
    prev: Option<Seq>,
) -> Result<(Segment, Box<dyn VFile>, u64)> {
    let prepared = prepare_segment(vfs, dir, first, prev)?;
    install_segment(vfs, dir, prepared)
}

/// A new segment's header, written and synced under its temporary name.
pub struct Prepared {
    segment: Segment,
    tmp: PathBuf,
    header: u64,
}

/// The first half of [`create_segment`]: nothing the log reads has changed
/// when it fails (the temporary file is removed again).
pub fn prepare_segment(vfs: &dyn Vfs, dir: &Path, first: Seq, prev: Option<Seq>) -> Result<Prepared> {
    let segment = Segment { path: dir.join(segment_name(first)), first };
    if vfs.exists(&segment.path).map_err(|e| Error::io("checking", &segment.path, e))? {
        let exists = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the segment exists already");
        return Err(Error::io("creating", &segment.path, exists));
    }
    let tmp = dir.join(segment_tmp_name(first));
    // A leftover of a crash or a failed rotation holds only a header.
    if vfs.exists(&tmp).map_err(|e| Error::io("checking", &tmp, e))? {
        vfs.remove(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
    }
    let header = record::marker_line(Marker::Header { first, prev });
    let written = vfs.create_new(&tmp).map_err(|e| Error::io("creating", &tmp, e)).and_then(|file| {
        file.append(&header).map_err(|e| Error::io("writing", &tmp, e))?;
        file.sync().map_err(|e| Error::io("syncing", &tmp, e))
    });
    if let Err(e) = written {
        let _ = vfs.remove(&tmp);
        return Err(e);
    }
    Ok(Prepared { segment, tmp, header: header.len() as u64 })
}

/// The second half of [`create_segment`]: the rename into place and the
/// directory sync. Once it starts, the segment may exist.
pub fn install_segment(vfs: &dyn Vfs, dir: &Path, prepared: Prepared) -> Result<(Segment, Box<dyn VFile>, u64)> {
    let Prepared { segment, tmp, header } = prepared;
    vfs.rename(&tmp, &segment.path).map_err(|e| Error::io("renaming", &tmp, e))?;
    vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))?;
    let file = vfs.open_append(&segment.path).map_err(|e| Error::io("opening", &segment.path, e))?;
    Ok((segment, file, header))
}
