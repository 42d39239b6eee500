//! Following the log from a sequence number while it is being written: what
//! the change feed reads when a subscriber is behind its in-memory buffer, or
//! resumes after a restart.
//!
//! Tolerates the writer appending meanwhile (a line without its newline yet,
//! or the preallocated zeros after the data, is "not yet", never damage) and compaction removing segments (reported as
//! [`Followed::Truncated`], never as an I/O error). Callers read only up to
//! the durable point, so every byte read belongs to a synced record: a cut of
//! unsynced bytes after a failed fsync never touches what is read here.

use std::path::{Path, PathBuf};

use super::segment::{Segment, list_segments, segment_name};
use crate::error::{Error, Result};
use crate::storage::record::{self, Line, Marker, Record, Seq};
use crate::storage::vfs::Vfs;

/// Where a follower is: the next record it wants, and where it expects it.
#[derive(Clone, Debug)]
pub struct Follower {
    dir: PathBuf,
    next: Seq,
    /// The segment being read, the byte offset of a line in it, and the
    /// sequence number that line holds (at most `next`: lines before `next`
    /// are skipped by counting, not decoded).
    at: Option<(Segment, usize, Seq)>,
}

/// What [`Follower::read`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// This many records were passed on (0: none is in the files yet).
    Records(usize),
    /// The wanted record is no longer in the log: compaction folded it into
    /// the snapshot and removed its segment. The oldest record still in the
    /// log is `first_available`.
    Truncated {
        /// The first sequence number the log still holds.
        first_available: Seq,
    },
}

impl Follower {
    /// A follower of the log in `dir` that wants record `next` first.
    pub fn new(dir: &Path, next: Seq) -> Follower {
        Follower { dir: dir.to_owned(), next, at: None }
    }

    /// Moves on to `next` (records before it were read elsewhere: from the
    /// feed's memory). Where it was in the files stays useful: it skips
    /// forward from there.
    pub fn skip_to(&mut self, next: Seq) {
        self.next = self.next.max(next);
    }

    /// `Some(first available)` if the log no longer holds the next record.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be listed.
    pub fn missing(&self, vfs: &dyn Vfs) -> Result<Option<Seq>> {
        Ok(self.locate(vfs)?.err())
    }

    /// Passes records `next()..=upto` (at most `max` of them) to `each`, in
    /// order. `upto` must be durable: everything up to it is in the files.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a damaged line among the records read (with the
    /// file, line and offset), [`Error::Io`] if a segment cannot be read.
    pub fn read(
        &mut self,
        vfs: &dyn Vfs,
        upto: Seq,
        max: usize,
        mut each: impl FnMut(Seq, Record),
    ) -> Result<Followed> {
        let mut passed = 0;
        // Each round either passes records, moves to the next segment, or
        // returns; a segment that vanished sends it back to the listing once.
        let mut relisted = false;
        while self.next <= upto && passed < max {
            let (segment, mut offset, mut at_seq) = match self.at.take() {
                Some(at) => at,
                None => match self.locate(vfs)? {
                    Ok(segment) => {
                        let first = segment.first;
                        (segment, 0, first)
                    }
                    Err(first_available) => return Ok(Followed::Truncated { first_available }),
                },
            };
            let bytes = match vfs.read(&segment.path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !relisted => {
                    relisted = true;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let first_available = self.locate(vfs)?.err().unwrap_or(self.next);
                    return Ok(Followed::Truncated { first_available });
                }
                Err(e) => return Err(Error::io("reading", &segment.path, e)),
            };
            // Never look past `upto`'s line: bytes after it may be unsynced.
            let mut sealed = false;
            while self.next <= upto && passed < max && offset < bytes.len() {
                let rest = &bytes[offset..];
                // The preallocated zeros after the data: "not yet", and not
                // worth a search for a newline through megabytes of them.
                if rest[0] == 0 {
                    break;
                }
                let Some(len) = memchr::memchr(b'\n', rest) else { break };
                let corrupt = |reason: String| Error::Corrupt {
                    path: segment.path.clone(),
                    line: rest_line(&bytes, offset),
                    offset: offset as u64,
                    reason,
                };
                // Markers carry no sequence number: the header is stepped
                // over, the seal ends the segment (its successor is durable).
                if record::is_marker(&rest[..len]) {
                    match record::decode_line(&rest[..len]) {
                        Ok(Line::Marker(Marker::Header { first, .. })) if offset == 0 && first == segment.first => {
                            offset += len + 1;
                            continue;
                        }
                        Ok(Line::Marker(Marker::Seal { next })) if next == at_seq => {
                            sealed = true;
                            break;
                        }
                        Ok(_) => return Err(corrupt("a segment marker out of place".into())),
                        Err(why) => return Err(corrupt(why.to_string())),
                    }
                }
                if at_seq < self.next {
                    offset += len + 1;
                    at_seq = at_seq.next();
                    continue;
                }
                let (seq, record) = record::decode(&rest[..len]).map_err(|why| corrupt(why.to_string()))?;
                if seq != self.next {
                    return Err(corrupt(format!("expected record {}, found {seq}", self.next)));
                }
                each(seq, record);
                passed += 1;
                self.next = seq.next();
                at_seq = self.next;
                offset += len + 1;
            }
            if !sealed && (self.next > upto || passed >= max || offset < bytes.len()) {
                self.at = Some((segment, offset, at_seq));
                break;
            }
            // The segment ends before `next`: a rotation started the next one there.
            let successor = Segment { path: self.dir.join(segment_name(at_seq)), first: at_seq };
            if vfs.exists(&successor.path).map_err(|e| Error::io("checking", &successor.path, e))? {
                self.at = Some((successor, 0, at_seq));
            } else {
                // Not there (yet): look again at the next call.
                self.at = Some((segment, offset, at_seq));
                break;
            }
        }
        Ok(Followed::Records(passed))
    }

    /// The segment that holds `next` (the last one starting at or before
    /// it), or the first sequence number the log holds when that is later.
    fn locate(&self, vfs: &dyn Vfs) -> Result<std::result::Result<Segment, Seq>> {
        let segments = list_segments(vfs, &self.dir)?;
        match segments.iter().rev().find(|s| s.first <= self.next) {
            Some(segment) => Ok(Ok(segment.clone())),
            None => Ok(Err(segments.first().map_or(self.next, |s| s.first))),
        }
    }
}

/// The 1-based line number of the line starting at `offset` (for an error
/// message only: counting is cheaper than keeping it, since errors are rare).
fn rest_line(bytes: &[u8], offset: usize) -> u64 {
    memchr::memchr_iter(b'\n', &bytes[..offset]).count() as u64 + 1
}
