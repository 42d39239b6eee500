//! The log's writes: a round takes every append queued, writes the lines to
//! their segments and fsyncs once, then reports those appends flushed. It runs
//! on the thread that appended (openraft's core task), not on a thread of its
//! own. Invariants: no append's callback runs before the fsync that covers
//! it; rounds never overlap (one lock), so lines reach a segment in order.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Shared;
use crate::error::Error;
use crate::files::{self, io_err};

/// Bytes for one segment; `create` when the segment is new.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) first: u64,
    pub(super) create: bool,
    pub(super) bytes: Vec<u8>,
}

/// The segment the last round wrote to, kept open for the next one (one
/// open per segment rather than per round), with the log's file generation
/// it was opened in: after a truncate or a purge (which may cut or remove
/// that file) it is opened again. A failed round forgets it.
#[derive(Debug, Default)]
pub(super) struct OpenSegment(Option<(PathBuf, File, u64)>);

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
    let (dir, generation, chunks, callbacks) = {
        let mut inner = shared.lock();
        if inner.queue.is_empty() {
            return;
        }
        let generation = inner.file_generation;
        (inner.dir.clone(), generation, std::mem::take(&mut inner.queue), std::mem::take(&mut inner.waiting))
    };
    let result = write_chunks(&dir, generation, &chunks, open);
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

/// Writes the chunks in order; a segment written in this round is synced
/// before the next one is created, and the last one at the end.
fn write_chunks(dir: &Path, generation: u64, chunks: &[Chunk], open: &mut OpenSegment) -> Result<(), Error> {
    let mut dirty = false;
    for chunk in chunks {
        let path = files::segment_path(dir, chunk.first);
        if chunk.create || open.0.as_ref().is_none_or(|(p, _, g)| *p != path || *g != generation) {
            if let Some((p, file, _)) = open.0.take()
                && dirty
            {
                file.sync_data().map_err(|e| io_err("syncing", &p, e))?;
            }
            let file = if chunk.create {
                let file = File::create(&path).map_err(|e| io_err("creating", &path, e))?;
                files::sync_dir(dir)?;
                file
            } else {
                OpenOptions::new().append(true).open(&path).map_err(|e| io_err("opening", &path, e))?
            };
            open.0 = Some((path, file, generation));
        }
        if let Some((p, file, _)) = &mut open.0 {
            file.write_all(&chunk.bytes).map_err(|e| io_err("appending to", p, e))?;
            dirty = true;
        }
    }
    if let Some((p, file, _)) = &open.0
        && dirty
    {
        file.sync_data().map_err(|e| io_err("syncing", p, e))?;
    }
    Ok(())
}
