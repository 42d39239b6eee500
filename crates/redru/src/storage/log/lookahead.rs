//! Decoding a segment's lines ahead of the reader's in-order checks: the
//! bytes are cut into batches of whole lines, other threads decode them
//! (checksums, JSON), and the reader takes them in order, so that its caller
//! applies one batch while the next ones decode.
//!
//! Invariant: [`Lookahead::next_at`] hands over the lines in file order,
//! each the exact newline-ended line starting where the reader asks, with
//! what [`decode`] returns for it; anything else (a line that starts with a
//! zero byte, a batch a thread could not decode) is left to the reader,
//! which decodes it itself.

use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::storage::record::{self, DecodeError, Line, Marker, Record, Seq};

/// What the reader's caller makes of each record, on the thread that
/// decoded it (so that work the caller would do in order runs in parallel).
pub(super) type Prepare<'p, P> = dyn Fn(Seq, Record) -> P + Sync + 'p;

/// A decoded line: a record, prepared, or a marker.
pub(super) enum Item<P> {
    Record(Seq, P),
    Marker(Marker),
}

/// A line's decoding, as the reader would compute it.
pub(super) type Decoded<P> = std::result::Result<Item<P>, DecodeError>;

/// Decodes one line (without its newline) and prepares its record.
pub(super) fn decode<P>(line: &[u8], prepare: &Prepare<'_, P>) -> Decoded<P> {
    match record::decode_line(line)? {
        Line::Record(seq, record) => Ok(Item::Record(seq, prepare(seq, record))),
        Line::Marker(marker) => Ok(Item::Marker(marker)),
    }
}

/// Bytes per batch (cut at the next newline): about 1,700 records of the
/// benchmark's 150 bytes, about a millisecond of decoding; small enough that
/// the first records reach the caller early and that the reader, decoding a
/// later batch while it waits, is not held up long, large enough that the
/// hand-over (a lock and a wake-up) is noise.
pub(super) const BATCH_BYTES: usize = 1 << 18;

/// Batches decoded but not yet taken, at most: bounds the records held ahead
/// of the caller (a few MiB of them) when decoding outruns applying.
const AHEAD: usize = 32;

/// One decoded line.
pub(super) struct DecodedLine<P> {
    /// Where the line starts.
    pub start: usize,
    /// Where its newline is.
    pub end: usize,
    /// What [`decode`] returned for it.
    pub decoded: Decoded<P>,
}

/// A batch's lines, and whether they cover its whole range (a line starting
/// with a zero byte stops a batch: the reader ends the data there or refuses it).
struct Batch<P> {
    lines: Vec<DecodedLine<P>>,
    whole: bool,
}

/// What the decoding threads and the reader share.
struct Shared<P> {
    progress: Mutex<Progress<P>>,
    changed: Condvar,
}

struct Progress<P> {
    /// Batches claimed by a thread (or the reader) so far.
    claimed: usize,
    /// Batches the reader has taken so far.
    taken: usize,
    /// The reader is done: decode nothing more.
    stop: bool,
    slots: Vec<Slot<P>>,
}

enum Slot<P> {
    /// Not decoded yet (or already taken).
    Waiting,
    Ready(Batch<P>),
    /// The thread decoding it panicked: the reader decodes it itself.
    Failed,
}

impl<P> Shared<P> {
    fn lock(&self) -> MutexGuard<'_, Progress<P>> {
        // A panic is caught before it can poison the lock while held; should
        // one poison it anyway, the counters in it are still consistent.
        self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait<'a>(&self, progress: MutexGuard<'a, Progress<P>>) -> MutexGuard<'a, Progress<P>> {
        self.changed.wait(progress).unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The reader's side: decoded lines, in order.
pub(super) struct Lookahead<'a, P> {
    data: &'a [u8],
    ranges: Vec<Range<usize>>,
    prepare: &'a Prepare<'a, P>,
    /// `None`: no other thread; the reader decodes each batch when it needs it.
    shared: Option<&'a Shared<P>>,
    /// The next batch to take.
    next: usize,
    current: std::vec::IntoIter<DecodedLine<P>>,
    /// The current batch stopped before its range's end, or a line came out
    /// of place: nothing more is handed over.
    ended: bool,
}

/// Runs `read` with the lines of `data` decoded (and their records
/// prepared) ahead of it, on `threads` threads besides the caller's (none:
/// decoded as `read` asks for them). The threads stop once `read` returns.
pub(super) fn with_lookahead<P: Send, R>(
    data: &[u8],
    threads: usize,
    prepare: &Prepare<'_, P>,
    read: impl FnOnce(&mut Lookahead<'_, P>) -> R,
) -> R {
    let ranges = batches(data);
    if threads == 0 || ranges.len() < 2 {
        return read(&mut Lookahead::new(data, ranges, prepare, None));
    }
    let shared = Shared {
        progress: Mutex::new(Progress {
            claimed: 0,
            taken: 0,
            stop: false,
            slots: ranges.iter().map(|_| Slot::Waiting).collect(),
        }),
        changed: Condvar::new(),
    };
    std::thread::scope(|s| {
        for _ in 0..threads.min(ranges.len()) {
            // A thread that cannot be started only means less help.
            let _ = std::thread::Builder::new().spawn_scoped(s, || decode_ahead(&shared, data, &ranges, prepare));
        }
        // Also if `read` panics: threads waiting for room ahead would
        // otherwise wait forever, and the scope with them.
        let _stop = StopOnDrop(&shared);
        read(&mut Lookahead::new(data, ranges.clone(), prepare, Some(&shared)))
    })
}

/// Tells the decoding threads to stop when dropped.
struct StopOnDrop<'a, P>(&'a Shared<P>);

impl<P> Drop for StopOnDrop<'_, P> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// Cuts `data` into ranges of about [`BATCH_BYTES`], each ending after a
/// newline (the last one at the end of `data`).
fn batches(data: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::with_capacity(data.len() / BATCH_BYTES + 1);
    let mut start = 0;
    while start < data.len() {
        let from = (start + BATCH_BYTES).min(data.len());
        let end = memchr::memchr(b'\n', &data[from..]).map_or(data.len(), |nl| from + nl + 1);
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// A decoding thread: claims the next batch while fewer than [`AHEAD`] wait
/// decoded, decodes it, hands it over; until every batch is claimed or the
/// reader stops.
fn decode_ahead<P>(shared: &Shared<P>, data: &[u8], ranges: &[Range<usize>], prepare: &Prepare<'_, P>) {
    loop {
        let mut progress = shared.lock();
        let index = loop {
            if progress.stop || progress.claimed >= ranges.len() {
                return;
            }
            if progress.claimed < progress.taken + AHEAD {
                progress.claimed += 1;
                break progress.claimed - 1;
            }
            progress = shared.wait(progress);
        };
        drop(progress);
        // Decoding cannot panic on input (the fuzzers hold this); should it
        // anyway, the reader decodes the batch itself, on its own thread
        // (nothing of the failed attempt is kept: unwind-safe).
        let decode = std::panic::AssertUnwindSafe(|| decode_batch(data, ranges[index].clone(), prepare));
        let batch = std::panic::catch_unwind(decode);
        shared.lock().slots[index] = batch.map_or(Slot::Failed, Slot::Ready);
        shared.changed.notify_all();
    }
}

/// Decodes the lines of `data[range]`, their ends found with `memchr`; stops
/// at a line that starts with a zero byte.
fn decode_batch<P>(data: &[u8], range: Range<usize>, prepare: &Prepare<'_, P>) -> Batch<P> {
    let mut lines = Vec::with_capacity(range.len() / 128);
    let mut start = range.start;
    for nl in memchr::memchr_iter(b'\n', &data[range.clone()]) {
        let end = range.start + nl;
        if data[start..end].first() == Some(&0) {
            return Batch { lines, whole: false };
        }
        lines.push(DecodedLine { start, end, decoded: decode(&data[start..end], prepare) });
        start = end + 1;
    }
    Batch { lines, whole: start == range.end }
}

impl<'a, P> Lookahead<'a, P> {
    fn new(
        data: &'a [u8],
        ranges: Vec<Range<usize>>,
        prepare: &'a Prepare<'a, P>,
        shared: Option<&'a Shared<P>>,
    ) -> Lookahead<'a, P> {
        Lookahead { data, ranges, prepare, shared, next: 0, current: Vec::new().into_iter(), ended: false }
    }

    /// The decoded line starting at `offset`, if it is the next one decoded
    /// ahead; `None` once the lines decoded ahead are used up (the reader
    /// decodes what follows itself).
    pub(super) fn next_at(&mut self, offset: usize) -> Option<DecodedLine<P>> {
        let line = self.next_line()?;
        if line.start != offset {
            // Never, as the reader steps from line to line; should it
            // happen, what was decoded ahead is simply not used.
            self.ended = true;
            return None;
        }
        Some(line)
    }

    fn next_line(&mut self) -> Option<DecodedLine<P>> {
        loop {
            if let Some(line) = self.current.next() {
                return Some(line);
            }
            if self.ended || self.next >= self.ranges.len() {
                return None;
            }
            let batch = self.take(self.next);
            self.next += 1;
            self.ended = !batch.whole;
            self.current = batch.lines.into_iter();
        }
    }

    /// Batch `index`: decoded by a thread (waiting for it), or here if no
    /// thread has claimed it yet or the one decoding it failed.
    fn take(&mut self, index: usize) -> Batch<P> {
        let range = self.ranges[index].clone();
        let Some(shared) = self.shared else { return decode_batch(self.data, range, self.prepare) };
        let mut progress = shared.lock();
        loop {
            match std::mem::replace(&mut progress.slots[index], Slot::Waiting) {
                Slot::Ready(batch) => {
                    progress.taken = index + 1;
                    drop(progress);
                    shared.changed.notify_all();
                    return batch;
                }
                Slot::Failed => break,
                Slot::Waiting if progress.claimed == index => {
                    progress.claimed += 1;
                    break;
                }
                // While a thread decodes the batch wanted, decode one
                // after it rather than wait: the reader has nothing to apply.
                Slot::Waiting if progress.claimed < self.ranges.len() => {
                    let later = progress.claimed;
                    progress.claimed += 1;
                    drop(progress);
                    let batch = decode_batch(self.data, self.ranges[later].clone(), self.prepare);
                    progress = shared.lock();
                    progress.slots[later] = Slot::Ready(batch);
                }
                Slot::Waiting => progress = shared.wait(progress),
            }
        }
        progress.taken = index + 1;
        drop(progress);
        shared.changed.notify_all();
        decode_batch(self.data, range, self.prepare)
    }
}
