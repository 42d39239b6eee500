//! The snapshot data openraft moves around ([`SnapshotFile`]): an open file,
//! never the snapshot's bytes in memory. The leader sends from its own handle
//! on the snapshot file, 1 MiB at a time; the receiver writes each chunk into
//! a temporary file in `snapshots/` that only an install keeps: dropped
//! otherwise (a transfer abandoned or refused), it is removed, and one left
//! by a crash is removed at the next start ([`remove_leftovers`]). A
//! receiving handle refuses to seek past what it received, so a crafted
//! chunk offset cannot leave a gap, and to grow the file past its size limit
//! ([`DEFAULT_MAX_SNAPSHOT_BYTES`] unless the node is told otherwise).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::files::{self, io_err};

/// The largest snapshot a node receives unless configured otherwise
/// (`NodeConfig::max_snapshot_bytes`, `redru serve --cluster-max-snapshot`):
/// 64 GiB, generous (a million small keys make about 58 MB) but finite, so
/// that a peer cannot fill the disk with one transfer.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

/// A snapshot's data as openraft holds it (`TypeConfig::SnapshotData`): an
/// open file that openraft's chunked transfer reads from (the sender) or
/// writes into (the receiver), with seeks, never loading it whole.
///
/// Each handle the state machine gives out is its own open of the file, at
/// offset 0. A sender's handle stays valid when a newer snapshot replaces
/// the file it reads: the state machine deletes the replaced file, and on
/// Unix an unlinked file's data lives on until its last handle is closed, so
/// a transfer under way finishes sending the snapshot it started with.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    /// Set on a handle from `begin_receiving_snapshot`: the temporary file it writes.
    temp: Option<TempFile>,
    /// Where the next write lands, and the end of what was written (for a
    /// handle that receives): a seek past that end is refused, see `start_seek`.
    pos: u64,
    written: u64,
    /// For a handle that receives: the size the file may not grow past.
    limit: u64,
}

/// A temporary file being received, removed when dropped unless [`TempFile::keep`] says otherwise.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl TempFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed into place: dropping this no longer removes anything.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // A single unlink, fast enough for the async task that may drop this;
        // a failure leaves the file to the next start's clean-up.
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl SnapshotFile {
    /// A new handle on the snapshot file at `path`, at offset 0, for sending.
    pub(crate) fn open(path: &Path) -> io::Result<SnapshotFile> {
        let file = fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
        Ok(SnapshotFile { file: tokio::fs::File::from_std(file), temp: None, pos: 0, written: 0, limit: u64::MAX })
    }

    /// A new, empty temporary file in `dir` for a snapshot being received,
    /// which refuses any write that would make it larger than `limit` bytes.
    pub(crate) async fn receive_into(dir: &Path, limit: u64) -> io::Result<SnapshotFile> {
        let dir = dir.to_owned();
        let (file, temp) = tokio::task::spawn_blocking(move || create_temp(&dir)).await.map_err(io::Error::other)??;
        Ok(SnapshotFile { file: tokio::fs::File::from_std(file), temp: Some(temp), pos: 0, written: 0, limit })
    }

    /// The file, once every write handed to it has reached the OS (an error
    /// of one is reported here), and its temporary file if it is one.
    pub(crate) async fn into_parts(mut self) -> io::Result<(fs::File, Option<TempFile>)> {
        self.file.flush().await?;
        let temp = self.temp.take();
        Ok((self.file.into_std().await, temp))
    }
}

/// Creates a new temporary file in `dir` for a snapshot being received, open
/// for reading and writing.
pub(crate) fn create_temp(dir: &Path) -> io::Result<(fs::File, TempFile)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    loop {
        let path = files::receiving_snapshot_path(dir, &format!("{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        match fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, TempFile { path, kept: false })),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &path, e)),
        }
    }
}

/// Removes what an interrupted transfer or install left in the snapshot
/// directory `dir`: temporary files being received, and snapshot files (with
/// their `.sha256`) that `current`, the file named by the current snapshot,
/// is not. Returns how many were removed.
pub(crate) fn remove_leftovers(dir: &Path, current: Option<&str>) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let snapshot = name.strip_suffix(".sha256").unwrap_or(&name);
        let leftover = files::is_receiving_snapshot_name(&name)
            || (files::is_snapshot_name(snapshot) && current.is_none_or(|c| c != snapshot));
        if leftover {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        files::sync_dir(dir)?;
    }
    Ok(removed)
}

impl AsyncRead for SnapshotFile {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.temp.is_some() && me.pos.saturating_add(buf.len() as u64) > me.limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the snapshot being received would pass this node's limit of {} bytes at offset {} \
                     (redru serve --cluster-max-snapshot raises it)",
                    me.limit, me.pos
                ),
            )));
        }
        let written = Pin::new(&mut me.file).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            me.pos += n as u64;
            me.written = me.written.max(me.pos);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    /// On a handle that receives, a seek past the end of what was written is
    /// refused: openraft seeks only back to a chunk it re-sends, so a chunk
    /// further on is crafted, and it would leave a hole (a sparse file of
    /// any apparent size, which the install would try to read whole).
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let me = self.get_mut();
        // Nothing past `written` exists in the file, so its end is `written`.
        let offset = match position {
            io::SeekFrom::Start(offset) => Some(offset),
            io::SeekFrom::Current(delta) => me.pos.checked_add_signed(delta),
            io::SeekFrom::End(delta) => me.written.checked_add_signed(delta),
        };
        if me.temp.is_some()
            && let Some(offset) = offset
            && offset > me.written
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a snapshot chunk at offset {offset} leaves a gap: {} bytes were received", me.written),
            ));
        }
        Pin::new(&mut me.file).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let me = self.get_mut();
        let done = Pin::new(&mut me.file).poll_complete(cx);
        if let Poll::Ready(Ok(pos)) = done {
            me.pos = pos;
        }
        done
    }
}
