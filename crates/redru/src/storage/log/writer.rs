//! The appending side of the log: the open segment, the buffer of records not
//! yet written out, rotation to a new segment, and the older segments a
//! snapshot may cover. Records are written at the data's end, over the zeros
//! preallocated ahead of it (`zeros`), never past a byte not yet counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{Segment, create_segment, install_segment, prepare_segment};
use super::writeback::Writeback;
use super::zeros::{Zeros, ZerosWatch};
use crate::error::{Error, Result};
use crate::storage::record::{self, Marker, Record, Seq};
use crate::storage::vfs::{VFile, Vfs};

/// A failed [`Writer::rotate`].
#[derive(Debug)]
pub struct RotateFailed {
    /// What failed.
    pub error: Error,
    /// Whether the log is as it was before (nothing written: the caller need
    /// not poison it).
    pub intact: bool,
}

/// The appending side of the log: the open segment and what has been written to it.
pub struct Writer {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    pub(super) file: Arc<dyn VFile>,
    pub(super) segment: Segment,
    /// Segments before the open one, oldest first, with their sizes.
    older: Vec<(Segment, u64)>,
    pub(super) segment_bytes: u64,
    /// How many bytes of the open segment are known durable (fsynced).
    pub(super) synced_bytes: u64,
    /// The last sequence number appended (to the page cache or the buffer, maybe not synced).
    pub(super) written: Seq,
    /// Encoded records not yet handed to the OS: at most one between appends,
    /// unless buffering lets it grow to `buffer_limit` (`Durability::Buffered`;
    /// and `Always`, whose group-commit leader writes it before each fsync).
    buf: Vec<u8>,
    /// `buf` is written to the file once it holds this many bytes (0: at every append).
    buffer_limit: usize,
    /// Test-only fault: acknowledge without syncing (negative controls).
    pub(crate) skip_sync: bool,
    /// The zeros written ahead in the open segment (`None`: not asked for,
    /// the file system preallocates nothing, or the handle is read-only).
    zeros: Option<Zeros>,
    /// The relaxed modes' background writeback (`None`: not asked for, the
    /// log has zeros, whose fsyncs write it out, or no thread could start).
    writeback: Option<Writeback>,
}

impl Writer {
    /// Opens `segment` (already scanned and cut to its valid records) for
    /// appending; `written` is the last sequence number in the log or snapshot.
    /// `data_end` is where its data ends, as the scan found it (`None`: at
    /// the file's end, a segment just created). `preallocate`: write zeros
    /// ahead of the appends (`Options::preallocate_log`); without it, zeros
    /// a preallocating run left are overwritten in place all the same.
    ///
    /// Whatever lies after the data, unless it is only zeros (preallocated:
    /// kept), is cut, synced, before anything is appended: after a crash it
    /// may hold bytes of unacknowledged records that reached the disk before
    /// the zeros before them did, and appending at the data's end while such
    /// a stale record stays further on would let a later crash leave it
    /// right after new records, as a write that was never acknowledged.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        segment: Segment,
        data_end: Option<u64>,
        older: Vec<(Segment, u64)>,
        written: Seq,
        preallocate: bool,
    ) -> Result<Writer> {
        let file: Arc<dyn VFile> =
            Arc::from(vfs.open_append(&segment.path).map_err(|e| Error::io("opening", &segment.path, e))?);
        let len = file.len().map_err(|e| Error::io("reading the size of", &segment.path, e))?;
        let segment_bytes = data_end.map_or(len, |end| end.min(len));
        // Zeros only (what a preallocation left): kept, the writer goes on
        // over them. Anything else: cut, synced.
        let mut zeroed = len;
        if segment_bytes < len {
            let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
            let junk = bytes.get(segment_bytes as usize..).is_none_or(|after| after.iter().any(|&b| b != 0));
            drop(bytes);
            if junk {
                file.truncate(segment_bytes)
                    .and_then(|()| file.sync())
                    .map_err(|e| Error::io("cutting what follows the data of", &segment.path, e))?;
                zeroed = segment_bytes;
            }
        }
        let zeros = if preallocate { Zeros::start(&vfs, &segment.path, segment_bytes, zeroed) } else { None };
        if let Some(why) = zeros.as_ref().and_then(Zeros::sync_failure) {
            return Err(Error::io("syncing", &segment.path, std::io::Error::other(why)));
        }
        Ok(Writer {
            vfs,
            dir: dir.to_owned(),
            file,
            segment,
            older,
            segment_bytes,
            synced_bytes: segment_bytes,
            written,
            buf: Vec::with_capacity(4096),
            buffer_limit: 0,
            skip_sync: false,
            zeros,
            writeback: None,
        })
    }

    /// Hands the open segment's pages to the kernel's writeback in the
    /// background each time `every` more bytes were appended (see
    /// `writeback`): for a writer that syncs seldom. Not when the log has
    /// preallocated zeros: their fsyncs write it out already.
    pub fn with_writeback(mut self, every: u64) -> Writer {
        if self.zeros.is_none() {
            self.writeback = Writeback::start(Arc::clone(&self.file), self.segment_bytes, every);
        }
        self
    }

    /// Why a sync of the open segment cannot be trusted although it
    /// returned: an extension's fsync of the same file failed (its error
    /// may have been the one meant for these records' pages).
    pub(super) fn zeros_watch(&self) -> Option<ZerosWatch> {
        self.zeros.as_ref().map(Zeros::watcher)
    }

    /// Syncs the open segment; an extension's failed fsync fails it too.
    fn sync_file(&self) -> std::io::Result<()> {
        self.file.sync()?;
        match self.zeros.as_ref().and_then(Zeros::sync_failure) {
            Some(why) => Err(std::io::Error::other(why)),
            None => Ok(()),
        }
    }

    /// Keeps appended records in memory until they fill `bytes` (or until
    /// [`Writer::flush`]), instead of writing each at once.
    pub fn buffered(mut self, bytes: usize) -> Writer {
        self.buffer_limit = bytes;
        self.buf.reserve(bytes.saturating_add(4096).min(16 << 20));
        self
    }

    /// The last sequence number appended.
    pub fn written(&self) -> Seq {
        self.written
    }

    /// Bytes in all segments, counting records still in the buffer (the
    /// log's size once they are written).
    pub fn total_bytes(&self) -> u64 {
        self.segment_bytes + self.buf.len() as u64 + self.older.iter().map(|(_, b)| b).sum::<u64>()
    }

    /// Number of segment files.
    pub fn segments(&self) -> usize {
        self.older.len() + 1
    }

    /// Appends `record` as the next sequence number: to the file, or to the
    /// buffer if buffering and it is not full. On error nothing may be
    /// assumed about the file's tail, and buffered records are lost: the
    /// caller must poison the log.
    pub fn append(&mut self, record: &Record) -> Result<Seq> {
        let seq = self.written.next();
        record::encode(seq, record, &mut self.buf);
        if self.buf.len() >= self.buffer_limit {
            self.flush()?;
        }
        self.written = seq;
        Ok(seq)
    }

    /// Hands the buffered records to the OS in one append of whole lines (a
    /// crash during it leaves a torn tail, like any append). On error the
    /// caller must poison the log.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        let end = self.segment_bytes + len;
        if let Some(why) = self.zeros.as_ref().and_then(|zeros| zeros.reserve(end)) {
            // An inline extension's fsync failed on this file: a failed
            // fsync of the segment. Fail this write before it is made, and
            // cut the records written since the last good one (other
            // writers', waiting for their sync: they are refused with the
            // poisoning the caller does), as after any failed fsync.
            self.cut_unsynced();
            return Err(Error::io("syncing", &self.segment.path, std::io::Error::other(why)));
        }
        let written = self.file.write_at(self.segment_bytes, &self.buf);
        self.buf.clear();
        // One giant record (a large batch) must not keep its capacity for
        // the life of the handle: 4 MiB above the usual size is given back.
        let usual = self.buffer_limit.saturating_add(4096).min(16 << 20);
        if self.buf.capacity() > usual + (4 << 20) {
            self.buf.shrink_to(usual);
        }
        if let Err(e) = written {
            // Best effort: leave no partial line behind (the caller poisons the log).
            let _ = self.file.truncate(self.segment_bytes);
            return Err(Error::io("appending to", &self.segment.path, e));
        }
        self.segment_bytes = end;
        if let Some(writeback) = &self.writeback {
            writeback.appended(end);
        }
        Ok(())
    }

    /// Syncs the open segment and starts a new one at the next sequence
    /// number, so that everything up to [`Writer::written`] lies in older
    /// segments, then seals the old one. Does nothing if the open segment
    /// holds no record.
    ///
    /// The order is what keeps every crash instant clean: the old segment's
    /// records are synced; the new segment is created with its header
    /// (synced, renamed, directory synced); only then is the seal naming it
    /// appended to the old one and synced. A crash before the seal leaves an
    /// unsealed segment followed by its successor (a valid log); a crash
    /// during it, a prefix of the seal, which open completes; a seal is never
    /// durable before the segment it names.
    ///
    /// # Errors
    /// [`RotateFailed`], saying whether the log is intact (only the new
    /// segment could not be created: nothing was written, appending may go
    /// on, as when a full disk refuses its header) or must be poisoned.
    pub fn rotate(&mut self) -> std::result::Result<(), RotateFailed> {
        let broken = |error| RotateFailed { error, intact: false };
        self.flush().map_err(broken)?;
        if self.written < self.segment.first {
            return Ok(());
        }
        if !self.skip_sync
            && let Err(e) = self.sync_file()
        {
            self.cut_unsynced();
            return Err(broken(Error::io("syncing", &self.segment.path, e)));
        }
        self.synced_bytes = self.segment_bytes;
        let next = self.written.next();
        let prepared = prepare_segment(&*self.vfs, &self.dir, next, Some(self.segment.first))
            .map_err(|error| RotateFailed { error, intact: true })?;
        let created = install_segment(&*self.vfs, &self.dir, prepared).map_err(broken)?;
        self.continue_in(created, true).map_err(broken)
    }

    /// Appends to the segment just created (durable, header first) from now
    /// on; the open one joins the older ones, sealed if `seal` (the seal
    /// written in place at its data's end: the zeros after it stay, since
    /// a reader in another process may have the file mapped, and cutting
    /// mapped pages would fault it; see docs/design.md).
    fn continue_in(&mut self, created: (Segment, Box<dyn VFile>, u64), seal: bool) -> Result<()> {
        let (next, file, header) = created;
        let first = next.first;
        if let Some(zeros) = &self.zeros {
            // No extension may write past the data while the seal does.
            zeros.pause();
        }
        if seal {
            let line = record::marker_line(Marker::Seal { next: first });
            let sealed = self
                .file
                .write_at(self.segment_bytes, &line)
                .and_then(|()| if self.skip_sync { Ok(()) } else { self.file.sync() })
                .map_err(|e| Error::io("sealing", &self.segment.path, e));
            if let Err(e) = sealed {
                // Best effort: an unsealed segment before a durable successor
                // is a valid log; a partial seal, one that open completes.
                let _ = self.file.truncate(self.segment_bytes);
                return Err(e);
            }
            self.segment_bytes += line.len() as u64;
        }
        let old = std::mem::replace(&mut self.segment, next);
        self.older.push((old, self.segment_bytes));
        self.file = Arc::from(file);
        self.segment_bytes = header;
        self.synced_bytes = header;
        if let Some(writeback) = &self.writeback {
            writeback.switch(Arc::clone(&self.file), header);
        }
        if let Some(why) = self.zeros.as_ref().and_then(|zeros| zeros.switch(&self.segment.path, header, header)) {
            return Err(Error::io("syncing", &self.segment.path, std::io::Error::other(why)));
        }
        Ok(())
    }

    /// Makes everything appended so far durable: the buffer written out and
    /// the open segment fsynced. On error the caller must poison the log.
    pub fn sync_open(&mut self) -> Result<()> {
        self.flush()?;
        if !self.skip_sync
            && let Err(e) = self.sync_file()
        {
            self.cut_unsynced();
            return Err(Error::io("syncing", &self.segment.path, e));
        }
        self.synced_bytes = self.segment_bytes;
        Ok(())
    }

    /// Continues the log in a new segment at `seq + 1`, once a snapshot at
    /// `seq` holds everything (an import or restore written as a snapshot:
    /// `seq` is carried by no record). The open segment must be synced, and
    /// the snapshot already in place: a segment named past the log's end
    /// before it would read as a gap in the sequence.
    ///
    /// The old segment is not sealed: its records all lie in the snapshot
    /// and it is removed next (a seal would name a successor that does not
    /// continue its records).
    pub fn restart_after(&mut self, seq: Seq) -> Result<()> {
        let created = create_segment(&*self.vfs, &self.dir, seq.next(), Some(self.segment.first))?;
        self.continue_in(created, false)?;
        self.written = seq;
        Ok(())
    }

    /// After a failed fsync: cuts the open segment back to its last durable
    /// byte. The kernel may already have dropped the unsynced pages (marking
    /// them clean), so bytes past that point could read back now and vanish at
    /// the next power loss, leaving a hole before records appended after a
    /// reopen. Cutting them makes what a reopen reads what the disk holds.
    /// Best effort: the log is poisoned either way.
    pub(super) fn cut_unsynced(&mut self) {
        self.buf.clear();
        if self.file.truncate(self.synced_bytes).is_ok() {
            self.segment_bytes = self.synced_bytes;
            let _ = self.file.sync();
        }
    }

    /// Takes the older segments whose records all have sequence numbers up
    /// to `upto` out of the log, for [`remove_segments`](super::remove_segments) to delete without
    /// the writer lock (unlinking a large segment takes tens of milliseconds).
    pub fn take_older(&mut self, upto: Seq) -> Vec<Segment> {
        let mut taken = Vec::new();
        // A segment is covered when the next one starts at or before upto + 1.
        while !self.older.is_empty() {
            let next_first = self.older.get(1).map(|(s, _)| s.first).unwrap_or(self.segment.first);
            if next_first > upto.next() {
                break;
            }
            taken.push(self.older.remove(0).0);
        }
        taken
    }
}

impl Drop for Writer {
    /// Stops the extensions and cuts the open segment's zeros (best effort,
    /// not synced: zeros that come back after a power loss are harmless), so
    /// that a directory closed cleanly looks as it always did (to older
    /// builds, copies and tests). Safe beside readers: a read-only handle
    /// copies segments instead of mapping them, and the change feed reads
    /// nothing past the durable records.
    fn drop(&mut self) {
        // Joins the extension thread first: nothing may write zeros after
        // the cut. Without one, zeros another run left (a crash, or a mode
        // that preallocates) are cut all the same.
        drop(self.zeros.take());
        if self.file.len().is_ok_and(|len| len > self.segment_bytes) {
            let _ = self.file.trim(self.segment_bytes);
        }
    }
}
