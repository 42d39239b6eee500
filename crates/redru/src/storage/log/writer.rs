//! The appending side of the log: the open segment, the buffer of records not
//! yet written out, rotation to a new segment, and the older segments a
//! snapshot may cover.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{Segment, segment_name};
use crate::error::{Error, Result};
use crate::storage::record::{self, Record, Seq};
use crate::storage::vfs::{VFile, Vfs};

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
    /// unless buffering (`Durability::Buffered`) lets it grow to `buffer_limit`.
    buf: Vec<u8>,
    /// `buf` is written to the file once it holds this many bytes (0: at every append).
    buffer_limit: usize,
    /// Test-only fault: acknowledge without syncing (negative controls).
    pub(crate) skip_sync: bool,
}

impl Writer {
    /// Opens `segment` (already scanned and cut to its valid records) for
    /// appending; `written` is the last sequence number in the log or snapshot.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        segment: Segment,
        older: Vec<(Segment, u64)>,
        written: Seq,
    ) -> Result<Writer> {
        let file: Arc<dyn VFile> =
            Arc::from(vfs.open_append(&segment.path).map_err(|e| Error::io("opening", &segment.path, e))?);
        let segment_bytes = file.len().map_err(|e| Error::io("reading the size of", &segment.path, e))?;
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
        })
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
        let written = self.file.append(&self.buf);
        let len = self.buf.len() as u64;
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
        self.segment_bytes += len;
        Ok(())
    }

    /// Syncs the open segment and starts a new one at the next sequence
    /// number, so that everything up to [`Writer::written`] lies in older
    /// segments. Does nothing if the open segment is empty.
    pub fn rotate(&mut self) -> Result<()> {
        self.flush()?;
        if self.segment_bytes == 0 {
            return Ok(());
        }
        if !self.skip_sync
            && let Err(e) = self.file.sync()
        {
            self.cut_unsynced();
            return Err(Error::io("syncing", &self.segment.path, e));
        }
        self.start_segment(self.written.next())
    }

    /// Creates the segment whose first record is `first` (directory synced)
    /// and appends to it from now on; the open one joins the older ones.
    fn start_segment(&mut self, first: Seq) -> Result<()> {
        let next = Segment { path: self.dir.join(segment_name(first)), first };
        let file: Arc<dyn VFile> =
            Arc::from(self.vfs.create_new(&next.path).map_err(|e| Error::io("creating", &next.path, e))?);
        self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("syncing directory", &self.dir, e))?;
        let old = std::mem::replace(&mut self.segment, next);
        self.older.push((old, self.segment_bytes));
        self.file = file;
        self.segment_bytes = 0;
        self.synced_bytes = 0;
        Ok(())
    }

    /// Makes everything appended so far durable: the buffer written out and
    /// the open segment fsynced. On error the caller must poison the log.
    pub fn sync_open(&mut self) -> Result<()> {
        self.flush()?;
        if !self.skip_sync
            && let Err(e) = self.file.sync()
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
    pub fn restart_after(&mut self, seq: Seq) -> Result<()> {
        self.start_segment(seq.next())?;
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
