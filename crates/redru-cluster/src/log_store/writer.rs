//! The log's writer thread: it takes every append queued, writes the lines
//! to their segments and fsyncs once, then reports those appends flushed.
//! Invariant: no append's callback runs before the fsync that covers it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

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

/// The writer thread: takes everything queued, writes it and fsyncs once,
/// then reports those appends flushed. Appends queued during an fsync go
/// together in the next round: they share one fsync.
pub(super) fn write_loop(shared: &Shared, woken: &Receiver<()>) {
    loop {
        let closed = woken.recv().is_err();
        while woken.try_recv().is_ok() {}
        write_round(shared);
        if closed {
            return;
        }
    }
}

fn write_round(shared: &Shared) {
    let (dir, chunks, callbacks) = {
        let mut inner = shared.lock();
        if inner.queue.is_empty() {
            return;
        }
        inner.in_flight = true;
        (inner.dir.clone(), std::mem::take(&mut inner.queue), std::mem::take(&mut inner.waiting))
    };
    let result = write_chunks(&dir, &chunks);
    let mut failed_later = Vec::new();
    {
        let mut inner = shared.lock();
        inner.in_flight = false;
        inner.rounds += 1;
        if result.is_err() {
            inner.poisoned = true;
            inner.queue.clear();
            failed_later = std::mem::take(&mut inner.waiting);
        }
        shared.idle.notify_all();
    }
    let message = result.as_ref().err().map(|e| e.to_string());
    for callback in callbacks.into_iter().chain(failed_later) {
        callback.log_io_completed(match &message {
            None => Ok(()),
            Some(m) => Err(io::Error::other(m.clone())),
        });
    }
}

/// Writes the chunks in order; a segment is synced before the next one is
/// created, and the last one at the end.
fn write_chunks(dir: &Path, chunks: &[Chunk]) -> Result<(), Error> {
    let mut current: Option<(PathBuf, File)> = None;
    for chunk in chunks {
        let path = files::segment_path(dir, chunk.first);
        if current.as_ref().is_none_or(|(p, _)| *p != path) {
            if let Some((p, file)) = current.take() {
                file.sync_data().map_err(|e| io_err("syncing", &p, e))?;
            }
            let file = if chunk.create {
                let file = File::create(&path).map_err(|e| io_err("creating", &path, e))?;
                files::sync_dir(dir)?;
                file
            } else {
                OpenOptions::new().append(true).open(&path).map_err(|e| io_err("opening", &path, e))?
            };
            current = Some((path, file));
        }
        if let Some((p, file)) = &mut current {
            file.write_all(&chunk.bytes).map_err(|e| io_err("appending to", p, e))?;
        }
    }
    if let Some((p, file)) = current {
        file.sync_data().map_err(|e| io_err("syncing", &p, e))?;
    }
    Ok(())
}
