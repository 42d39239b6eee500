//! Reading one segment: every complete line decoded (on several threads for
//! large segments) and checked for its checksum and sequence number, and the
//! torn-tail rule: only damage at the end of the last segment with no valid
//! record after it is a torn tail; anything else is damage.

use crate::error::Result;
use crate::storage::record::{self, DecodeError, Record, Seq};

/// A record found by [`scan`], with where it was found.
pub struct Found {
    /// Its sequence number.
    pub seq: Seq,
    /// The record.
    pub record: Record,
    /// 1-based line number in the segment.
    pub line: u64,
    /// Byte offset of the start of its line.
    pub offset: u64,
}

/// How a scanned segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a valid record.
    Clean,
    /// From `offset` on, the bytes are a torn write (an incomplete line, or
    /// damaged lines with no valid record after them).
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

/// What [`scan`] found: how the segment ends and the next expected sequence number, or damage.
pub type ScanOutcome = std::result::Result<(Tail, Seq), Damage>;

/// Scans the bytes of one segment, calling `each` for every valid record in order.
///
/// `expected` is the sequence number the first record must carry. With
/// `last` (the log's last segment), damage with no valid record after it is
/// a torn tail; anywhere else, and whenever a valid record follows, it is
/// [`Damage`]. A valid record out of sequence is always damage.
pub fn scan(
    bytes: &[u8],
    mut expected: Seq,
    last: bool,
    mut each: impl FnMut(Found) -> Result<()>,
) -> Result<ScanOutcome> {
    let mut offset = 0usize;
    let mut line = 0u64;
    let mut previous: Option<Seq> = None;
    // Checksums and JSON parsing are most of a replay: on a large segment
    // they run on every core first; the checks below stay in log order.
    let mut predecoded = (bytes.len() >= PARALLEL_DECODE_BYTES).then(|| decode_lines(bytes).into_iter());
    while offset < bytes.len() {
        line += 1;
        let rest = &bytes[offset..];
        let (text, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], true),
            None => (rest, false),
        };
        let decoded = if complete {
            match predecoded.as_mut().and_then(Iterator::next) {
                Some(decoded) => decoded,
                None => record::decode(text),
            }
        } else {
            Err(DecodeError::Malformed(format!("incomplete last line ({} bytes, no newline)", text.len())))
        };
        match decoded {
            Ok((seq, record)) => {
                if seq != expected {
                    let reason = if seq > expected {
                        format!("sequence gap: expected {expected}, found {seq} (records are missing)")
                    } else {
                        format!("sequence steps back: expected {expected}, found {seq}")
                    };
                    return Ok(Err(Damage { line, offset: offset as u64, reason, after: previous }));
                }
                each(Found { seq, record, line, offset: offset as u64 })?;
                previous = Some(seq);
                expected = seq.next();
                offset += text.len() + 1;
            }
            Err(why) => {
                if last && !any_valid_record(&rest[text.len().min(rest.len())..]) {
                    let tail = Tail::Torn { offset: offset as u64, line, reason: why.to_string() };
                    return Ok(Ok((tail, expected)));
                }
                let reason = if last {
                    format!("{why}, and valid records follow it, so it is not a torn tail")
                } else {
                    format!("{why} (in a segment that was complete and synced)")
                };
                return Ok(Err(Damage { line, offset: offset as u64, reason, after: previous }));
            }
        }
    }
    Ok(Ok((Tail::Clean, expected)))
}

/// Segments at least this large are decoded on several threads.
pub(super) const PARALLEL_DECODE_BYTES: usize = 1 << 20;

type Decoded = std::result::Result<(Seq, Record), DecodeError>;

/// Decodes every complete line of `bytes`, in order, splitting the lines
/// between the machine's cores.
fn decode_lines(bytes: &[u8]) -> Vec<Decoded> {
    let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
    let lines: Vec<&[u8]> = bytes[..last_nl].split(|&b| b == b'\n').collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per = lines.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(|l| record::decode(l)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(lines.len());
        for (handle, chunk) in handles.into_iter().zip(lines.chunks(per)) {
            // A decoder thread cannot panic on input (the fuzzers hold this);
            // should one die anyway, decode its lines here.
            match handle.join() {
                Ok(decoded) => out.extend(decoded),
                Err(_) => out.extend(chunk.iter().map(|l| record::decode(l))),
            }
        }
        out
    })
}

/// Whether any complete line after the first newline of `bytes` decodes as a valid record.
fn any_valid_record(bytes: &[u8]) -> bool {
    let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else { return false };
    bytes[..last_nl].split(|&b| b == b'\n').skip(1).any(|line| record::decode(line).is_ok())
}
