//! The segment files: one JSON line per entry (index and term in front), a
//! file named by its first index; the last one may end in preallocated zeros.
//! Loading follows the engine's rule (`redru::zero_tail`): in the last
//! segment zeros where a line would start end the data, and a torn last line
//! or valid lines after those zeros are cut and kept aside; damage anywhere
//! else is refused. Appending, truncating and purging keep the in-memory
//! entries and the files in step.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

use redru::zero_tail;
use serde::{Deserialize, Serialize};

use super::Inner;
use super::state_file::LogStateFile;
use super::writer::Chunk;
use crate::codec;
use crate::error::Error;
use crate::files::{self, io_err};
use crate::types::{Entry, LogId};

/// One line of a segment: the entry with its index and term in front, so
/// that `grep`/`jq` and the opener see them without decoding the entry.
#[derive(Serialize)]
pub(super) struct LineRef<'a> {
    pub(super) index: u64,
    pub(super) term: u64,
    pub(super) entry: &'a Entry,
}

#[derive(Deserialize)]
struct Line {
    index: u64,
    term: u64,
    entry: Entry,
}

#[derive(Debug)]
pub(super) struct Segment {
    /// Bytes of valid lines in the file.
    pub(super) len: u64,
    /// Index of its last entry (`None` while it is empty).
    pub(super) last: Option<u64>,
}

pub(super) fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut firsts = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let item = item.map_err(|e| io_err("listing", dir, e))?;
        if let Some(first) = item.file_name().to_str().and_then(files::parse_segment_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Checks one decoded line against the index the segment expects next.
fn check_line(line: &Line, expected: u64) -> Result<(), String> {
    let id = &line.entry.log_id;
    if line.index != expected {
        return Err(format!("expected index {expected}, found {}", line.index));
    }
    if id.index != line.index || id.leader_id.term != line.term {
        return Err(format!(
            "the line says index {} term {} but its entry is {}-{}",
            line.index, line.term, id.leader_id.term, id.index
        ));
    }
    Ok(())
}

pub(super) fn load_segment(inner: &mut Inner, first: u64, is_last: bool) -> Result<(), Error> {
    let path = files::segment_path(&inner.dir, first);
    let bytes = fs::read(&path).map_err(|e| io_err("reading", &path, e))?;
    let mut expected = first;
    let mut len = 0u64;
    for (offset, raw) in codec::lines(&bytes) {
        let rest = &bytes[offset as usize..];
        if is_last && zero_tail::zeros_end_data(rest) {
            // Preallocated zeros, kept for the writer to overwrite; valid
            // lines after them were never acknowledged (an fsync covering
            // them covers the bytes before), so they are cut and kept aside
            // before an append could put them back in line.
            if zero_tail::valid_line_after_zeros(rest, is_valid_line) {
                cut_torn_tail(&path, zero_tail::without_zero_tail(rest), offset)?;
            }
            break;
        }
        let decoded = codec::decode::<Line>(raw).and_then(|line| check_line(&line, expected).map(|()| line));
        match decoded {
            Ok(line) => {
                inner.places.insert(line.index, (first, offset));
                inner.entries.insert(line.index, line.entry);
                expected += 1;
                len = offset + raw.len() as u64;
            }
            Err(reason) => {
                if is_last && !zero_tail::any_valid_line(rest, is_valid_line) {
                    cut_torn_tail(&path, zero_tail::without_zero_tail(rest), offset)?;
                    break;
                }
                return Err(Error::Corrupt { file: path, offset, reason });
            }
        }
    }
    if expected == first {
        // No entry: a segment created just before a crash. Nothing to keep.
        fs::remove_file(&path).map_err(|e| io_err("removing empty segment", &path, e))?;
        return Ok(());
    }
    inner.segments.insert(first, Segment { len, last: Some(expected - 1) });
    Ok(())
}

/// Whether `line` (without its newline) is a valid line: the proof, for the
/// zero-tail rule, that the bytes before it are not a torn end.
fn is_valid_line(line: &[u8]) -> bool {
    let mut whole = Vec::with_capacity(line.len() + 1);
    whole.extend_from_slice(line);
    whole.push(b'\n');
    codec::decode::<Line>(&whole).is_ok()
}

/// Keeps the torn bytes aside, then cuts them off the segment.
fn cut_torn_tail(path: &Path, torn: &[u8], offset: u64) -> Result<(), Error> {
    let aside = files::torn_path(path, offset);
    files::write_synced(&aside, torn)?;
    let file = OpenOptions::new().write(true).open(path).map_err(|e| io_err("opening", path, e))?;
    file.set_len(offset).map_err(|e| io_err("cutting the torn tail of", path, e))?;
    file.sync_all().map_err(|e| io_err("syncing", path, e))?;
    if let Some(dir) = path.parent() {
        files::sync_dir(dir)?;
    }
    Ok(())
}

impl Inner {
    pub(super) fn drop_purged(&mut self) {
        if let Some(purged) = &self.state.last_purged {
            let keep = purged.index + 1;
            self.entries = self.entries.split_off(&keep);
            self.places = self.places.split_off(&keep);
        }
    }

    /// The entries above the last purged id must follow each other.
    pub(super) fn check_contiguous(&self) -> Result<(), Error> {
        let mut previous: Option<u64> = None;
        for (&index, &(segment, offset)) in &self.places {
            if let Some(p) = previous
                && p + 1 != index
            {
                return Err(Error::Corrupt {
                    file: files::segment_path(&self.dir, segment),
                    offset,
                    reason: format!("entry {index} follows entry {p}: entries are missing"),
                });
            }
            previous = Some(index);
        }
        Ok(())
    }

    /// The segment an entry with `index` goes to: the last one if it ends
    /// right before `index` and has room, else a new one named `index`
    /// (`true`: the write round creates it, after syncing the previous one).
    pub(super) fn segment_for(&mut self, index: u64) -> (u64, bool) {
        if let Some((&first, seg)) = self.segments.last_key_value()
            && seg.last.map_or(first == index, |l| l + 1 == index)
            && seg.len < self.segment_bytes
        {
            return (first, false);
        }
        self.segments.insert(index, Segment { len: 0, last: None });
        (index, true)
    }

    /// Queues the entries' lines for the next write round; they are readable at once.
    pub(super) fn append(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        for entry in entries {
            let index = entry.log_id.index;
            if let Some(last) = self.entries.last_key_value().map(|(&i, _)| i)
                && index != last + 1
            {
                return Err(Error::Io(io::Error::other(format!(
                    "append of entry {index} after entry {last}: raft log entries must follow each other"
                ))));
            }
            let line = codec::encode(&LineRef { index, term: entry.log_id.leader_id.term, entry: &entry })
                .map_err(io::Error::other)?;
            let (first, create) = self.segment_for(index);
            let previous = self.segments.range(..first).next_back().map(|(&f, s)| (f, s.len));
            let seg = self.segments.get_mut(&first).ok_or_else(|| io::Error::other("segment vanished"))?;
            let offset = seg.len;
            seg.len += line.len() as u64;
            seg.last = Some(index);
            match self.queue.last_mut() {
                Some(chunk) if chunk.first == first => chunk.bytes.extend_from_slice(&line),
                _ => {
                    let previous = previous.filter(|_| create);
                    self.queue.push(Chunk { first, offset, create, previous, bytes: line });
                }
            }
            self.places.insert(index, (first, offset));
            self.entries.insert(index, entry);
        }
        Ok(())
    }

    /// Removes the entries from `index` on: later segments go, the one
    /// holding `index` is cut at that entry's line.
    pub(super) fn truncate(&mut self, index: u64) -> Result<(), Error> {
        self.file_generation += 1;
        let doomed: Vec<u64> = self.segments.range(index..).map(|(&f, _)| f).collect();
        for first in doomed.into_iter().rev() {
            let path = files::segment_path(&self.dir, first);
            fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
            self.segments.remove(&first);
        }
        if let Some(&(first, offset)) = self.places.get(&index)
            && first < index
        {
            let path = files::segment_path(&self.dir, first);
            let file = OpenOptions::new().write(true).open(&path).map_err(|e| io_err("opening", &path, e))?;
            file.set_len(offset).map_err(|e| io_err("truncating", &path, e))?;
            file.sync_all().map_err(|e| io_err("syncing", &path, e))?;
            if let Some(seg) = self.segments.get_mut(&first) {
                seg.len = offset;
                seg.last = Some(index - 1);
            }
        }
        files::sync_dir(&self.dir)?;
        self.entries.split_off(&index);
        self.places.split_off(&index);
        Ok(())
    }

    /// Forgets the entries up to `log_id`: the state file first (so a crash
    /// never resurrects them), then whole segments that hold nothing newer.
    pub(super) fn purge(&mut self, log_id: LogId) -> Result<(), Error> {
        self.file_generation += 1;
        let state = LogStateFile { last_purged: Some(log_id), ..self.state.clone() };
        self.save_state(state)?;
        self.drop_purged();
        let doomed: Vec<u64> =
            self.segments.iter().filter(|(_, s)| s.last.is_none_or(|l| l <= log_id.index)).map(|(&f, _)| f).collect();
        for first in &doomed {
            let path = files::segment_path(&self.dir, *first);
            fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
            self.segments.remove(first);
        }
        if !doomed.is_empty() {
            files::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}
