//! Reading one segment: every complete line decoded (for large segments in
//! batches on other threads, ahead of the checks: `lookahead`) and checked for its checksum and sequence number, and the
//! torn-tail rule: only damage at the end of the last segment with no valid
//! record after it is a torn tail; anything else is damage. A segment may
//! open with a header and end with a seal (markers, no sequence number). In
//! the last segment a zero byte where a line would start ends the data
//! (preallocated zeros); what follows it is not read.

use super::lookahead::{self, Item, Lookahead, Prepare, with_lookahead};
use crate::error::Result;
use crate::storage::record::{self, DecodeError, Marker, Record, Seq};
use crate::storage::zero_tail;

/// A record found by [`scan`], with where it was found.
pub struct Found<R = Record> {
    /// Its sequence number.
    pub seq: Seq,
    /// The record (as [`scan_prepared`]'s `prepare` made it).
    pub record: R,
    /// 1-based line number in the segment.
    pub line: u64,
    /// Byte offset of the start of its line.
    pub offset: u64,
}

/// How a scanned segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Every byte up to [`Scanned::end`] belongs to a valid record (or the
    /// header), and the segment is not sealed. In the last segment the data
    /// may end before the file does: at a zero byte where a line would start
    /// (preallocated zeros; whatever follows them is not the log's).
    Clean,
    /// The last line is a seal naming the segment the log continues in
    /// (which starts at the scan's next sequence number).
    Sealed {
        /// Where the seal line starts.
        offset: u64,
    },
    /// Only in a segment followed by another: from `offset` on, the bytes are
    /// an incomplete seal for that successor (a crash while a rotation
    /// appended it, after the successor was durable). Nothing is lost; open
    /// completes the seal.
    TornSeal {
        /// Where the incomplete seal starts (the end of the last record).
        offset: u64,
    },
    /// Only in the last segment: from `offset` on, the bytes are a torn write
    /// (an incomplete line, or damaged lines with no valid line after them).
    Torn {
        /// Where the torn bytes start (the end of the last valid record).
        offset: u64,
        /// 1-based line number where they start.
        line: u64,
        /// Why the first torn line is not a record.
        reason: String,
    },
}

/// Damage found by [`scan`] that is not a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the start of the line.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The sequence number of the last valid record before the damage, if any.
    pub after: Option<Seq>,
}

/// What a clean [`scan`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// How the segment ends.
    pub tail: Tail,
    /// The sequence number the next record (or segment) must carry.
    pub next: Seq,
    /// The segment's header, if it starts with one (every segment this build
    /// creates does; older builds wrote none): the previous segment's first
    /// sequence number, if it named one.
    pub header: Option<Option<Seq>>,
    /// Where the data ends: the end of the last valid line (the seal's, if
    /// sealed), or where the torn bytes or the torn seal start.
    pub end: u64,
}

/// What [`scan`] found: how the segment ends, or damage.
pub type ScanOutcome = std::result::Result<Scanned, Damage>;

/// Scans the bytes of one segment, calling `each` for every valid record in order.
///
/// `expected` is the sequence number the first record must carry (and the
/// first a header must name). `successor` is the first sequence number of
/// the segment after this one, `None` for the log's last segment: there,
/// damage with no valid line after it is a torn tail; elsewhere only an
/// incomplete seal for that successor is tolerated, and any other damage,
/// or damage with a valid line after it, is [`Damage`]. A valid record out
/// of sequence, a header anywhere but on the first line, a seal naming
/// another successor and any byte after a seal are always damage.
pub fn scan(
    bytes: &[u8],
    expected: Seq,
    successor: Option<Seq>,
    each: impl FnMut(Found) -> Result<()>,
) -> Result<ScanOutcome> {
    scan_prepared(bytes, expected, successor, &|_, record| record, each)
}

/// [`scan`], with each record passed through `prepare` before `each` gets
/// it: on the threads that decode a large segment, where work on a record
/// that needs no order (a key's hash, its inline copy) runs in parallel.
/// `prepare` may see records that `each` then never gets (after damage).
pub fn scan_prepared<P: Send>(
    bytes: &[u8],
    expected: Seq,
    successor: Option<Seq>,
    prepare: &Prepare<'_, P>,
    each: impl FnMut(Found<P>) -> Result<()>,
) -> Result<ScanOutcome> {
    // Checksums and JSON parsing are most of a replay: on a large segment
    // other threads decode batches of lines ahead while this one checks
    // them in log order and hands the records over, so that the caller
    // applies one batch while the next decode. Only the data: the open
    // segment's preallocated zeros hold no line.
    let data = memchr::memmem::find(bytes, b"\n\0").map_or(bytes, |nl| &bytes[..=nl]);
    // One core is left to this thread and the caller's applying; the
    // others decode. Each side takes the other's work when it would wait:
    // this thread decodes a batch no one has started, and the caller's
    // appliers ([`crate::state::map::Map::apply_writes`]) share out shards.
    let threads = if data.len() >= PARALLEL_DECODE_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) - 1
    } else {
        0
    };
    with_lookahead(data, threads, prepare, |ahead| check(bytes, expected, successor, ahead, prepare, each))
}

/// [`scan`]'s in-order loop: takes each line's decoding from `ahead` where
/// it has one, decodes it here otherwise.
fn check<P>(
    bytes: &[u8],
    mut expected: Seq,
    successor: Option<Seq>,
    ahead: &mut Lookahead<'_, P>,
    prepare: &Prepare<'_, P>,
    mut each: impl FnMut(Found<P>) -> Result<()>,
) -> Result<ScanOutcome> {
    let last = successor.is_none();
    let mut offset = 0usize;
    let mut line = 0u64;
    let mut previous: Option<Seq> = None;
    let mut header = None;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if last && line > 0 && zero_tail::zeros_end_data(rest) {
            // Preallocated zeros (or a record's bytes not yet on disk): the
            // data ends here. A line never starts with a zero byte, and a
            // segment never with zeros (its header, or an old build's first
            // record): zeros there are damage, read below.
            return Ok(Ok(Scanned { tail: Tail::Clean, next: expected, header, end: offset as u64 }));
        }
        line += 1;
        let (len, decoded) = match ahead.next_at(offset) {
            Some(found) => (found.end - offset, found.decoded),
            None => match memchr::memchr(b'\n', rest) {
                Some(nl) => (nl, lookahead::decode(&rest[..nl], prepare)),
                None => {
                    let why = format!("incomplete last line ({} bytes, no newline)", rest.len());
                    (rest.len(), Err(DecodeError::Malformed(why)))
                }
            },
        };
        let damage = |reason: String| Ok(Err(Damage { line, offset: offset as u64, reason, after: previous }));
        match decoded {
            Ok(Item::Record(seq, record)) => {
                if seq != expected {
                    let reason = if seq > expected {
                        format!("sequence gap: expected {expected}, found {seq} (records are missing)")
                    } else {
                        format!("sequence steps back: expected {expected}, found {seq}")
                    };
                    return damage(reason);
                }
                each(Found { seq, record, line, offset: offset as u64 })?;
                previous = Some(seq);
                expected = seq.next();
                offset += len + 1;
            }
            Ok(Item::Marker(Marker::Header { first, prev })) if line == 1 => {
                if first != expected {
                    return damage(format!(
                        "the segment header names a segment starting at record {first}, but this one starts at {expected}"
                    ));
                }
                header = Some(prev);
                offset += len + 1;
            }
            Ok(Item::Marker(Marker::Header { .. })) => {
                return damage("a segment header after the first line".into());
            }
            Ok(Item::Marker(Marker::Seal { next })) => {
                if next != expected {
                    return damage(format!(
                        "the seal says the log continues at record {next}, but the segment ends before record {expected}"
                    ));
                }
                let end = offset + len + 1;
                if bytes[end..].iter().any(|&b| b != 0) {
                    // Nothing is ever written to a sealed segment; the zeros
                    // after a seal are what its preallocation left.
                    return damage(format!(
                        "{} bytes after the seal (nothing is written to a segment once sealed)",
                        bytes.len() - end
                    ));
                }
                let end = end as u64;
                return Ok(Ok(Scanned { tail: Tail::Sealed { offset: offset as u64 }, next: expected, header, end }));
            }
            Err(why) => {
                if last && !any_valid_line(&rest[len..]) {
                    let tail = Tail::Torn { offset: offset as u64, line, reason: why.to_string() };
                    return Ok(Ok(Scanned { tail, next: expected, header, end: offset as u64 }));
                }
                if successor == Some(expected) && is_torn_seal(rest, expected) {
                    let tail = Tail::TornSeal { offset: offset as u64 };
                    return Ok(Ok(Scanned { tail, next: expected, header, end: offset as u64 }));
                }
                let reason = if last {
                    format!("{why}, and valid lines follow it, so it is not a torn tail")
                } else {
                    format!("{why} (in a segment that was complete and synced)")
                };
                return damage(reason);
            }
        }
    }
    Ok(Ok(Scanned { tail: Tail::Clean, next: expected, header, end: bytes.len() as u64 }))
}

/// Whether `rest` (everything after a segment's last record, which is not a
/// valid line) is what a crash can leave of the seal naming `next`: at most
/// that seal's length of bytes, then only zeros. Its bytes may be a prefix
/// of it, zeros or garbage (a power loss can leave any of them in a write
/// that was not synced); the zeros after are the segment's preallocated
/// ones, which a rotation cuts before it writes the seal. Only the seal can
/// be unsynced there: the records were synced before the successor was
/// created, and the successor continuing at `next` proves that no record is
/// missing.
pub fn is_torn_seal(rest: &[u8], next: Seq) -> bool {
    let seal = record::marker_line(Marker::Seal { next }).len();
    rest.get(seal..).is_none_or(|after| after.iter().all(|&b| b == 0))
}

/// Segments at least this large are decoded on several threads (ahead of the checks).
pub(super) const PARALLEL_DECODE_BYTES: usize = 1 << 20;

/// Whether any complete line after the first newline of `bytes` decodes as
/// a valid record or marker (either proves the damage is not at the end).
pub fn any_valid_line(bytes: &[u8]) -> bool {
    zero_tail::any_valid_line(bytes, |line| record::decode_line(line).is_ok())
}
