//! The log's writes: a round takes every append queued, writes the lines to
//! their segments and fsyncs once, then reports those appends flushed. It runs
//! on the thread that appended (openraft's core task), not on a thread of its
//! own. Lines are written in place over the zeros preallocated ahead of them
//! ([`super::zeros`]). Invariants: no append's callback runs before the fsync
//! that covers it; rounds never overlap (one lock), so lines reach a segment
//! in order; only the last segment ends in zeros.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Shared;
use super::zeros::Zeros;
use crate::error::Error;
use crate::files::{self, io_err};

/// Bytes for one segment, to be written at `offset`; `create` when the
/// segment is new, with `previous`, the segment that was last before it
/// (its first index and where its entries end), whose zeros are cut first.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) first: u64,
    pub(super) offset: u64,
    pub(super) create: bool,
    pub(super) previous: Option<(u64, u64)>,
    pub(super) bytes: Vec<u8>,
}

/// The segment the last round wrote to, kept open for the next one (one
/// open per segment rather than per round), with the log's file generation
/// it was opened in: after a truncate or a purge (which may cut or remove
/// that file) it is opened again. A failed round forgets it.
#[derive(Debug, Default)]
pub(super) struct OpenSegment(Option<Active>);

#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: File,
    generation: u64,
    /// The file's position: a round seeks only if it is not where the chunk goes.
    at: u64,
    zeros: Zeros,
}

impl OpenSegment {
    /// Closes the segment and stops its zeros (joining their thread), before
    /// a truncate or a purge works on the files.
    pub(super) fn close(&mut self) {
        self.0 = None;
    }

    /// The zeros of the open segment, if one is open (tests).
    #[cfg(test)]
    pub(super) fn zeros(&self) -> Option<&Zeros> {
        self.0.as_ref().map(|a| &a.zeros)
    }
}

/// How the zeros ahead of the appends are sized (from the log's `Inner`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    /// Bytes per extension ([`super::zeros::ZERO_CHUNK`]).
    pub(super) chunk: u64,
    /// No zeros past this offset (the segment size, rounded up to a chunk).
    pub(super) limit: u64,
}

/// Writes and fsyncs everything queued, then reports those appends flushed;
/// appends queued before it share its fsync. Waits for a round in progress.
///
/// Why here and not on a writer thread (as until issue 15's fifth round):
/// openraft 0.9's core awaits each append's flush before it takes its next
/// command, so a writer thread never had a second append to share the fsync
/// with; it only added two thread wake-ups per append on every node (the
/// thread's, then the core's), each a wait for a CPU on a loaded machine.
/// The fsync blocks the core's worker thread meanwhile; the core has nothing
/// else to do, and the runtime's other worker runs the other tasks.
pub(super) fn write_round(shared: &Shared) {
    let mut open = shared.write_io.lock().unwrap_or_else(|p| p.into_inner());
    write_locked(shared, &mut open);
}

/// [`write_round`], for a caller that holds `write_io` already.
pub(super) fn write_locked(shared: &Shared, open: &mut OpenSegment) {
    let (dir, generation, sizes, chunks, callbacks) = {
        let mut inner = shared.lock();
        if inner.queue.is_empty() {
            return;
        }
        let sizes = inner.zero_sizes();
        let generation = inner.file_generation;
        (inner.dir.clone(), generation, sizes, std::mem::take(&mut inner.queue), std::mem::take(&mut inner.waiting))
    };
    let result = write_chunks(&dir, generation, sizes, &chunks, open);
    let mut failed_later = Vec::new();
    {
        let mut inner = shared.lock();
        inner.rounds += 1;
        if result.is_err() {
            open.0 = None;
            inner.poisoned = true;
            inner.queue.clear();
            failed_later = std::mem::take(&mut inner.waiting);
        }
    }
    let message = result.as_ref().err().map(|e| e.to_string());
    for callback in callbacks.into_iter().chain(failed_later) {
        callback.log_io_completed(match &message {
            None => Ok(()),
            Some(m) => Err(io::Error::other(m.clone())),
        });
    }
}

/// Writes the chunks in order, each over the zeros ahead of it; a segment
/// written in this round is synced (and its zeros cut) before the next one
/// is created, and the last one at the end.
fn write_chunks(
    dir: &Path,
    generation: u64,
    sizes: Sizes,
    chunks: &[Chunk],
    open: &mut OpenSegment,
) -> Result<(), Error> {
    let mut dirty = false;
    for chunk in chunks {
        let path = files::segment_path(dir, chunk.first);
        if chunk.create || open.0.as_ref().is_none_or(|a| a.path != path || a.generation != generation) {
            if let Some(active) = open.0.take()
                && dirty
            {
                sync(&active)?;
            }
            let (file, zeroed) = if chunk.create {
                if let Some((previous, end)) = chunk.previous {
                    cut_zeros(&files::segment_path(dir, previous), end)?;
                }
                let file = File::create(&path).map_err(|e| io_err("creating", &path, e))?;
                files::sync_dir(dir)?;
                (file, 0)
            } else {
                let file = OpenOptions::new().write(true).open(&path).map_err(|e| io_err("opening", &path, e))?;
                let len = file.metadata().map_err(|e| io_err("reading the length of", &path, e))?.len();
                (file, len)
            };
            let zeros = Zeros::start(&path, chunk.offset, zeroed, sizes.chunk, sizes.limit);
            open.0 = Some(Active { path, file, generation, at: u64::MAX, zeros });
        }
        if let Some(active) = &mut open.0 {
            write_at(active, chunk.offset, &chunk.bytes)?;
            dirty = true;
        }
    }
    if let Some(active) = &open.0
        && dirty
    {
        sync(active)?;
    }
    Ok(())
}

/// Writes `bytes` at `offset`, once the zeros there are on disk.
fn write_at(active: &mut Active, offset: u64, bytes: &[u8]) -> io::Result<()> {
    active.zeros.reserve(offset + bytes.len() as u64);
    if active.at != offset {
        active.file.seek(SeekFrom::Start(offset)).map_err(|e| io_err("seeking in", &active.path, e))?;
    }
    // Unknown until the write succeeds: a partial write moved the position.
    active.at = u64::MAX;
    active.file.write_all(bytes).map_err(|e| io_err("appending to", &active.path, e))?;
    active.at = offset + bytes.len() as u64;
    Ok(())
}

/// Syncs the segment's data; a failed fsync of its zeros fails it too (the
/// entries in the page cache may be lost with them).
fn sync(active: &Active) -> io::Result<()> {
    active.file.sync_data().map_err(|e| io_err("syncing", &active.path, e))?;
    match active.zeros.sync_failure() {
        Some(why) => Err(io::Error::other(why)),
        None => Ok(()),
    }
}

/// Cuts the zeros after a segment's entries once it is no longer the last
/// one (synced, before its successor exists): only the last segment may end
/// in zeros, so zeros anywhere else are damage to the opener.
fn cut_zeros(path: &Path, end: u64) -> io::Result<()> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        // Removed by a purge: nothing to cut.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("opening", path, e)),
    };
    if file.metadata().map_err(|e| io_err("reading the length of", path, e))?.len() > end {
        file.set_len(end).map_err(|e| io_err("cutting the zeros of", path, e))?;
        file.sync_all().map_err(|e| io_err("syncing", path, e))?;
    }
    Ok(())
}
