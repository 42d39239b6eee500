//! Recovery at open: the whole log read in order through the reader, damage
//! that is not a torn tail refused with file, line and offset, a torn tail
//! set aside in a side file (synced) before the segment is cut, and the
//! chain of segments checked: a sealed segment's successor must exist and
//! start with its header, and a header names the segment before it.

use std::path::{Path, PathBuf};

use super::lookahead::Prepare;
use super::reader::{Tail, scan, scan_prepared};
use super::segment::{Segment, is_segment_temp, list_segments, segment_name};
use crate::error::{Error, Result};
use crate::progress::{Meter, Observer, Stage};
use crate::storage::record::{self, Marker, Record, Seq};
use crate::storage::vfs::Vfs;
use crate::storage::zero_tail;

/// A torn tail found at the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornFound {
    /// The segment (always the last one).
    pub segment: Segment,
    /// Where the torn bytes start.
    pub offset: u64,
    /// 1-based line number where they start.
    pub line: u64,
    /// Why the first torn line is not a record.
    pub reason: String,
    /// The torn bytes themselves.
    pub bytes: Vec<u8>,
    /// The last valid record before them.
    pub after: Seq,
}

/// What [`read_log`] found.
#[derive(Debug, Default)]
pub struct LogScan {
    /// Segments whose records are all in the snapshot (not read).
    pub covered: Vec<Segment>,
    /// Segments read, with the length of their valid part.
    pub live: Vec<(Segment, u64)>,
    /// The torn tail of the last segment, if any.
    pub torn: Option<TornFound>,
    /// Segments whose seal a crash left incomplete (the segment, where the
    /// seal starts, the successor it names): open completes them.
    pub torn_seals: Vec<(Segment, u64, Seq)>,
    /// `wal-….wal.tmp` files: a segment's header left by a crash before its
    /// rename (open removes them; they hold no record).
    pub temps: Vec<PathBuf>,
    /// The last sequence number in the log (or the snapshot's, if later).
    pub last: Seq,
    /// The sequence number the last segment's next record would carry.
    pub log_next: Option<Seq>,
    /// Records applied (sequence number after the snapshot's).
    pub replayed: u64,
    /// Valid records skipped because the snapshot has them.
    pub skipped: u64,
    /// Bytes of valid records read.
    pub bytes: u64,
}

/// Reads the whole log in `dir` without changing anything: checks every
/// record and the sequence, and calls `apply` for each record after
/// `snapshot_seq`, in order. Damage that is not a torn tail is
/// [`Error::Corrupt`], naming the file, line and offset.
pub fn read_log(
    vfs: &dyn Vfs,
    dir: &Path,
    snapshot_seq: Seq,
    observer: Option<&Observer>,
    apply: impl FnMut(Seq, Record),
) -> Result<LogScan> {
    read_log_prepared(vfs, dir, snapshot_seq, observer, &|_, record| record, apply)
}

/// [`read_log`], with each record passed through `prepare` first, on the
/// threads that decode the log ([`scan_prepared`]).
pub fn read_log_prepared<P: Send>(
    vfs: &dyn Vfs,
    dir: &Path,
    snapshot_seq: Seq,
    observer: Option<&Observer>,
    prepare: &Prepare<'_, P>,
    mut apply: impl FnMut(Seq, P),
) -> Result<LogScan> {
    let segments = list_segments(vfs, dir)?;
    let mut out = LogScan { last: snapshot_seq, ..LogScan::default() };
    out.temps = vfs
        .list(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .into_iter()
        .filter(|n| is_segment_temp(n))
        .map(|n| dir.join(n))
        .collect();
    // Segments wholly before the snapshot's end need not even be read.
    let first_live = segments
        .iter()
        .enumerate()
        .position(|(i, _)| segments.get(i + 1).is_none_or(|next| next.first > snapshot_seq.next()));
    let first_live = first_live.unwrap_or(segments.len());
    out.covered = segments[..first_live].to_vec();
    let live = &segments[first_live..];
    let corrupt = |segment: &Segment, line: u64, offset: u64, reason: String| Error::Corrupt {
        path: segment.path.clone(),
        line,
        offset,
        reason,
    };
    if let Some(first) = live.first()
        && first.first > snapshot_seq.next()
    {
        return Err(corrupt(
            first,
            1,
            0,
            format!(
                "the snapshot ends at record {snapshot_seq} but the log resumes at {}: records {}..{} are missing",
                first.first,
                snapshot_seq.next(),
                first.first.0 - 1
            ),
        ));
    }
    // Mapped, not copied: knowing every size first gives progress a total.
    let files = live
        .iter()
        .map(|segment| vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e)))
        .collect::<Result<Vec<_>>>()?;
    let meter = Meter::start(observer, Stage::ReplayLog, files.iter().map(|f| f.len() as u64).sum());
    let mut expected: Option<Seq> = None;
    let mut sealed_before = false;
    for (i, (segment, bytes)) in live.iter().zip(&files).enumerate() {
        if let Some(expected) = expected
            && segment.first != expected
        {
            return Err(corrupt(
                segment,
                1,
                0,
                format!(
                    "segment starts at record {} but the previous one ends before record {expected}",
                    segment.first
                ),
            ));
        }
        let successor = live.get(i + 1).map(|s| s.first);
        let mut counted = 0;
        let outcome = scan_prepared(bytes, segment.first, successor, prepare, |found| {
            meter.advance(found.offset - counted);
            counted = found.offset;
            if found.seq > snapshot_seq {
                out.replayed += 1;
                apply(found.seq, found.record);
            } else {
                out.skipped += 1;
            }
            Ok(())
        })?;
        let scanned = match outcome {
            Err(damage) => return Err(corrupt(segment, damage.line, damage.offset, damage.reason)),
            Ok(scanned) => scanned,
        };
        // A seal is appended only once its successor, header first, is
        // durable: a successor without its header was emptied.
        if sealed_before && scanned.header.is_none() {
            return Err(Error::MissingSuccessor {
                path: segment.path.clone(),
                sealed: live[i - 1].path.clone(),
                emptied: true,
            });
        }
        if let (Some(Some(prev)), Some(before)) = (scanned.header, i.checked_sub(1).map(|p| &live[p]))
            && prev != before.first
        {
            return Err(corrupt(
                segment,
                1,
                0,
                format!(
                    "its header names the segment starting at record {prev} as the one before it, but the log's \
                     previous segment starts at record {}",
                    before.first
                ),
            ));
        }
        let next = scanned.next;
        let sealed = matches!(scanned.tail, Tail::Sealed { .. } | Tail::TornSeal { .. });
        let valid_end = match scanned.tail {
            Tail::Torn { offset, line, reason } => {
                out.torn = Some(TornFound {
                    segment: segment.clone(),
                    offset,
                    line,
                    reason,
                    bytes: torn_bytes(&bytes[offset as usize..]).to_vec(),
                    after: Seq(next.0 - 1),
                });
                offset
            }
            Tail::TornSeal { offset } => {
                out.torn_seals.push((segment.clone(), offset, next));
                offset
            }
            Tail::Sealed { .. } if successor.is_none() => {
                return Err(Error::MissingSuccessor {
                    path: segment.path.with_file_name(segment_name(next)),
                    sealed: segment.path.clone(),
                    emptied: false,
                });
            }
            Tail::Sealed { .. } | Tail::Clean => scanned.end,
        };
        sealed_before = sealed;
        expected = Some(next);
        out.log_next = Some(next);
        out.last = out.last.max(Seq(next.0 - 1));
        meter.advance(bytes.len() as u64 - counted);
        out.bytes += valid_end;
        out.live.push((segment.clone(), valid_end));
    }
    meter.finish();
    Ok(out)
}

/// What a writing open must set aside before it appends to `segment`, whose
/// data ends at `end` after record `after`: valid lines after the zeros that
/// end the data. Never acknowledged if the disk wrote its pages in order (an
/// fsync covering one covers everything before it), so written out of order
/// by a crash, or damage: not replayed (a read-only open ignores them), but
/// kept aside and cut like a torn tail, so that appending at the data's end
/// never puts them back in line.
pub fn stale_after_data(vfs: &dyn Vfs, segment: &Segment, end: u64, after: Seq) -> Result<Option<TornFound>> {
    let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
    let Some(rest) = bytes.get(end as usize..).filter(|rest| after_zeros(rest)) else { return Ok(None) };
    Ok(Some(TornFound {
        segment: segment.clone(),
        offset: end,
        line: memchr::memchr_iter(b'\n', &bytes[..end as usize]).count() as u64 + 1,
        reason: "valid lines after the zeros that end the data (written out of order, or damage)".into(),
        bytes: torn_bytes(rest).to_vec(),
        after,
    }))
}

/// Whether the bytes after the zeros that end the last segment's data hold
/// a complete valid line (a record, or a marker).
pub fn after_zeros(rest: &[u8]) -> bool {
    zero_tail::valid_line_after_zeros(rest, |line| record::decode_line(line).is_ok())
}

/// The bytes of a torn tail worth keeping aside: without the zeros that
/// end them (preallocated, or never written), which are no one's data.
pub fn torn_bytes(rest: &[u8]) -> &[u8] {
    zero_tail::without_zero_tail(rest)
}

/// Completes a seal a crash cut short: cuts the segment at `offset` (what
/// is there is a prefix of the seal, or zeros, maybe then the segment's
/// preallocated zeros) and appends the whole seal naming `next`, synced. Nothing is lost: the records before are kept and
/// the bytes replaced hold none.
pub fn complete_seal(vfs: &dyn Vfs, segment: &Segment, offset: u64, next: Seq) -> Result<()> {
    let file = vfs.open_append(&segment.path).map_err(|e| Error::io("opening", &segment.path, e))?;
    // Synced before the seal is written: a seal followed by the zeros the
    // cut drops would read as bytes after a seal.
    file.truncate(offset).and_then(|()| file.sync()).map_err(|e| Error::io("truncating", &segment.path, e))?;
    file.append(&record::marker_line(Marker::Seal { next })).map_err(|e| Error::io("sealing", &segment.path, e))?;
    file.sync().map_err(|e| Error::io("syncing", &segment.path, e))
}

/// Checks a segment the snapshot covers before it is removed: `None` if it
/// holds only valid records in sequence from its first (what an interrupted
/// save leaves), otherwise its bytes, to be set aside rather than deleted
/// (a stray file named like a segment).
///
/// `successor` is the first sequence number of the segment after it.
pub fn stray_bytes(vfs: &dyn Vfs, segment: &Segment, successor: Seq) -> Result<Option<Vec<u8>>> {
    let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
    let outcome = scan(&bytes, segment.first, Some(successor), |_| Ok(()))?;
    Ok(match outcome {
        Ok(scanned) if !matches!(scanned.tail, Tail::Torn { .. }) => None,
        _ => Some(bytes.to_vec()),
    })
}

/// The segment the log must continue in after a snapshot at `snapshot_seq`,
/// if there is no segment at all: every save creates `wal-<snapshot_seq + 1>`
/// (and syncs the directory) before its snapshot exists, and nothing redru
/// does removes the last segment, so in a directory redru has opened before
/// a snapshot without any segment means the newest one was deleted. (A
/// directory holding only a snapshot copied in, never opened, is a restore,
/// not a loss; a log that resumes later is a sequence gap, reported as such.)
pub fn missing_successor(segments: &[Segment], dir: &Path, snapshot_seq: Seq) -> Option<PathBuf> {
    segments.is_empty().then(|| dir.join(segment_name(snapshot_seq.next())))
}

/// Checks the segment a version 3 snapshot names as the one its log
/// continues in (`continues`). A save creates it, header first and durable,
/// before its snapshot exists; an import right after its snapshot's rename,
/// while the old log (all covered by the snapshot) is still there. So:
/// present, it must start with its header ([`Error::MissingContinuation`]
/// with `emptied` otherwise: emptied, or cut inside its header); absent, some
/// other segment must remain (only covered ones: the import's crash window,
/// open creates it; later ones: `read_log` reports the gap), when the
/// directory was `opened_before` (holds `redru.lock`): a snapshot copied
/// alone into a new directory is a restore, not a loss. `snapshot` names the
/// snapshot in the error.
pub fn check_continuation(
    vfs: &dyn Vfs,
    dir: &Path,
    segments: &[Segment],
    snapshot: &Path,
    snapshot_seq: Seq,
    continues: Seq,
    opened_before: bool,
) -> Result<()> {
    let missing = |emptied| Error::MissingContinuation {
        path: dir.join(segment_name(continues)),
        snapshot: snapshot.to_owned(),
        snapshot_seq: snapshot_seq.0,
        emptied,
    };
    let Some(segment) = segments.iter().find(|s| s.first == continues) else {
        return if segments.is_empty() && opened_before { Err(missing(false)) } else { Ok(()) };
    };
    let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
    if starts_with_header(&bytes, continues) { Ok(()) } else { Err(missing(true)) }
}

/// Whether `bytes` start with a complete header line naming `first`.
pub fn starts_with_header(bytes: &[u8], first: Seq) -> bool {
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else { return false };
    matches!(
        record::decode_line(&bytes[..end]),
        Ok(record::Line::Marker(Marker::Header { first: named, .. })) if named == first
    )
}

/// Sets a torn tail aside: copies the torn bytes to a side file next to the
/// segment (synced, directory synced), then cuts the segment at the torn
/// offset and syncs it. Nothing is destroyed; a crash in between only means
/// the next open does it again (with a new side-file name).
pub fn cut_torn_tail(vfs: &dyn Vfs, dir: &Path, torn: &TornFound) -> Result<PathBuf> {
    let side = set_aside(vfs, dir, &torn.segment, "torn", torn.offset, &torn.bytes)?;
    let file = vfs.open_append(&torn.segment.path).map_err(|e| Error::io("opening", &torn.segment.path, e))?;
    file.truncate(torn.offset).map_err(|e| Error::io("truncating", &torn.segment.path, e))?;
    file.sync().map_err(|e| Error::io("syncing", &torn.segment.path, e))?;
    Ok(side)
}

/// Writes `bytes` to a new durable file named after `segment`, `what` and `offset`.
pub fn set_aside(
    vfs: &dyn Vfs,
    dir: &Path,
    segment: &Segment,
    what: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<PathBuf> {
    let base = format!("{}.{what}-{offset}", segment_name(segment.first));
    let mut path = dir.join(&base);
    let mut n = 1;
    while vfs.exists(&path).map_err(|e| Error::io("checking", &path, e))? {
        path = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    let file = vfs.create_new(&path).map_err(|e| Error::io("creating", &path, e))?;
    let written = file
        .append(bytes)
        .map_err(|e| Error::io("writing", &path, e))
        .and_then(|()| file.sync().map_err(|e| Error::io("syncing", &path, e)))
        .and_then(|()| vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e)));
    drop(file);
    if let Err(e) = written {
        // The bytes are still in the segment (it is cut only after this
        // returns): a partial or empty copy would only pile up, one more at
        // each retried open on a full disk.
        let _ = vfs.remove(&path);
        return Err(e);
    }
    Ok(path)
}
