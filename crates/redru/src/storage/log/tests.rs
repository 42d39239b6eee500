//! Unit tests of the log: scanning, the torn-tail rule, the writer and group commit.

use super::lookahead::BATCH_BYTES;
use super::reader::PARALLEL_DECODE_BYTES;
use super::*;
use crate::error::{Error, Result};
use crate::storage::record::{self, Record, Seq};
use crate::storage::vfs::{VFile, Vfs};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

fn log(records: &[Record], first: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        record::encode(Seq(first + i as u64), r, &mut out);
    }
    out
}

fn sets(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::Set(format!("k{i}"), crate::Doc::from(json!(i)))).collect()
}

/// Scans as the last segment (`last`) or as one followed by a segment no
/// seal names; returns the records seen and how the segment ends.
/// How a segment ends (as the tests before markers compared it), or damage.
type Ended = std::result::Result<(Tail, Seq), Damage>;

fn run(bytes: &[u8], first: u64, last: bool) -> Result<(Vec<u64>, Ended)> {
    let mut seen = Vec::new();
    let successor = (!last).then_some(Seq(u64::MAX));
    let out = scan(bytes, Seq(first), successor, |f| {
        seen.push(f.seq.0);
        Ok(())
    })?;
    Ok((seen, out.map(|s| (s.tail, s.next))))
}

#[test]
fn names_sort_in_log_order() {
    assert_eq!(segment_name(Seq(42)), "wal-00000000000000000042.wal");
    assert_eq!(parse_segment_name(&segment_name(Seq(u64::MAX))), Some(Seq(u64::MAX)));
    assert_eq!(parse_segment_name("wal-42.wal"), None);
    assert_eq!(parse_segment_name("wal-00000000000000000042.wal.torn-7"), None);
}

#[test]
fn every_cut_of_the_last_record_is_a_torn_tail() -> Result<()> {
    let bytes = log(&sets(3), 1);
    let second_end = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).map(|(i, _)| i + 1).unwrap_or(0);
    for cut in second_end..bytes.len() {
        let (seen, out) = run(&bytes[..cut], 1, true)?;
        assert_eq!(seen, [1, 2], "cut at {cut}");
        if cut == second_end {
            assert_eq!(out, Ok((Tail::Clean, Seq(3))));
        } else {
            assert!(matches!(out, Ok((Tail::Torn { offset, line: 3, .. }, _)) if offset == second_end as u64));
        }
    }
    Ok(())
}

/// In the last segment a zero byte where a line would start ends the data
/// (preallocated zeros): what follows is not read, even a valid record (one
/// that reached the disk before the zeros before it were overwritten: never
/// acknowledged). Garbage where a line starts is still a torn tail.
#[test]
fn zeros_at_a_line_start_end_the_data_and_garbage_is_torn() -> Result<()> {
    let mut bytes = log(&sets(2), 1);
    let end = bytes.len() as u64;
    let mut zeros = bytes.clone();
    zeros.extend_from_slice(&[0u8; 4096]);
    let (seen, out) = scanned(&zeros, 1, None)?;
    assert_eq!(seen, [1, 2]);
    assert!(matches!(out, Ok(Scanned { tail: Tail::Clean, end: e, next: Seq(3), .. }) if e == end));
    // A stale record after the zeros, and garbage: not read.
    zeros.extend_from_slice(&log(&sets(1), 3));
    zeros.extend_from_slice(b"\ngarbage\n\x07\x07\n");
    let (seen, out) = scanned(&zeros, 1, None)?;
    assert_eq!(seen, [1, 2]);
    assert!(matches!(out, Ok(Scanned { tail: Tail::Clean, end: e, next: Seq(3), .. }) if e == end));
    // Garbage where the next line starts: torn, as before.
    bytes.extend_from_slice(b"garbage\n\x07\x07\n");
    let (_, out) = run(&bytes, 1, true)?;
    assert!(matches!(out, Ok((Tail::Torn { offset, .. }, _)) if offset == end));
    // In an older segment, zeros after the records are what a crash leaves
    // when the rotation's cut of them was not durable: a torn seal, if the
    // successor continues the sequence; damage otherwise.
    let (_, out) = scanned(&zeros[..end as usize + 4096], 1, Some(3))?;
    assert!(matches!(out, Ok(Scanned { tail: Tail::TornSeal { offset }, .. }) if offset == end));
    assert!(scanned(&zeros[..end as usize + 4096], 1, Some(4))?.1.is_err());
    Ok(())
}

#[test]
fn damage_followed_by_valid_records_is_corruption() -> Result<()> {
    let bytes = log(&sets(5), 1);
    let starts: Vec<usize> =
        std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    let mut damaged = bytes.clone();
    damaged[starts[2] + 20] ^= 0x10;
    let (seen, out) = run(&damaged, 1, true)?;
    assert_eq!(seen, [1, 2]);
    let damage = out.err();
    assert_eq!(damage.as_ref().map(|d| (d.line, d.offset, d.after)), Some((3, starts[2] as u64, Some(Seq(2)))));
    // In an older segment even a damaged last line is corruption.
    let mut tail_damaged = bytes.clone();
    let n = tail_damaged.len();
    tail_damaged[n - 3] ^= 0x10;
    assert!(run(&tail_damaged, 1, false)?.1.is_err());
    assert!(matches!(run(&tail_damaged, 1, true)?.1, Ok((Tail::Torn { line: 5, .. }, _))));
    Ok(())
}

#[test]
fn a_large_segment_decoded_in_parallel_scans_the_same() -> Result<()> {
    let records: Vec<Record> = (0..20_000)
        .map(|i| Record::Set(format!("key{i}"), crate::Doc::from(json!({"i": i, "pad": "x".repeat(40)}))))
        .collect();
    let bytes = log(&records, 1);
    assert!(bytes.len() >= PARALLEL_DECODE_BYTES);
    let (seen, out) = run(&bytes, 1, true)?;
    assert_eq!(seen.len(), 20_000);
    assert_eq!(out, Ok((Tail::Clean, Seq(20_001))));
    let starts: Vec<usize> =
        std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    // Damage in the middle: refused at its line, with the records before it seen.
    let mut damaged = bytes.clone();
    damaged[starts[12_345] + 30] ^= 0x08;
    let (seen, out) = run(&damaged, 1, true)?;
    assert_eq!(seen.len(), 12_345);
    assert_eq!(out.err().map(|d| (d.line, d.offset)), Some((12_346, starts[12_345] as u64)));
    // A torn last record and zeros after it: a torn tail.
    let mut torn = bytes[..bytes.len() - 10].to_vec();
    torn.extend_from_slice(&[0u8; 5000]);
    let (seen, out) = run(&torn, 1, true)?;
    assert_eq!(seen.len(), 19_999);
    assert!(matches!(out, Ok((Tail::Torn { line: 20_000, .. }, _))));
    Ok(())
}

/// A segment large enough to be decoded ahead, in several batches: a
/// header, then `n` sets from record 1; the start of every line.
fn big_segment(n: usize) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = header(1, None);
    let records: Vec<Record> = (0..n)
        .map(|i| Record::Set(format!("key{i}"), crate::Doc::from(json!({"i": i, "pad": "x".repeat(40)}))))
        .collect();
    bytes.extend_from_slice(&log(&records, 1));
    let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', &bytes).map(|nl| nl + 1)).collect();
    (bytes, starts)
}

/// The index of the line where the `k`th batch after the first starts (the
/// line after the first newline at or past k batches' worth of bytes).
fn batch_start(starts: &[usize], k: usize) -> usize {
    starts.iter().position(|&s| s > k * BATCH_BYTES).unwrap_or(starts.len())
}

/// Damaged lines from a little before a batch boundary to the end: the
/// torn tail starts at the first of them, whichever batch decoded it.
#[test]
fn a_torn_tail_across_a_batch_boundary_is_cut_at_its_start() -> Result<()> {
    let (bytes, starts) = big_segment(20_000);
    assert!(bytes.len() >= PARALLEL_DECODE_BYTES && bytes.len() > 4 * BATCH_BYTES);
    let boundary = batch_start(&starts, 4);
    let first_torn = boundary - 3;
    let mut torn = bytes.clone();
    for &start in &starts[first_torn..starts.len() - 1] {
        torn[start + 20] ^= 0x08;
    }
    let (seen, out) = scanned(&torn, 1, None)?;
    // Line 1 is the header: line i + 1 holds record i.
    assert_eq!(seen.len(), first_torn - 1);
    let at = starts[first_torn] as u64;
    assert!(matches!(out, Ok(Scanned { tail: Tail::Torn { offset, line, .. }, end, .. })
        if offset == at && end == at && line == first_torn as u64 + 1));
    // The same lines in an older segment: damage at the first of them.
    let (seen, out) = scanned(&torn, 1, Some(20_001))?;
    assert_eq!(seen.len(), first_torn - 1);
    assert_eq!(out.err().map(|d| (d.line, d.offset)), Some((first_torn as u64 + 1, at)));
    Ok(())
}

/// A damaged line in the second batch of an older segment is refused at
/// its line and offset, after the records before it (the open then fails
/// and returns nothing, so none of them is ever seen by a reader).
#[test]
fn damage_in_a_later_batch_of_an_older_segment_is_refused_where_it_is() -> Result<()> {
    let (bytes, starts) = big_segment(20_000);
    for line in [batch_start(&starts, 1), batch_start(&starts, 1) + 1, batch_start(&starts, 2) - 1] {
        let mut damaged = bytes.clone();
        damaged[starts[line] + 30] ^= 0x08;
        let (seen, out) = scanned(&damaged, 1, Some(20_001))?;
        assert_eq!(seen.len(), line - 1, "line {}", line + 1);
        let damage = out.err();
        assert_eq!(damage.as_ref().map(|d| (d.line, d.offset)), Some((line as u64 + 1, starts[line] as u64)));
        assert!(damage.is_some_and(|d| d.reason.contains("checksum") && d.reason.contains("complete and synced")));
    }
    Ok(())
}

/// A segment whose data ends exactly where a batch does (the last batch
/// then ends at the file's end, or at the zeros after it): read whole,
/// sealed, clean, followed by preallocated zeros, or torn seal.
#[test]
fn a_batch_ending_exactly_at_the_segments_end_reads_whole() -> Result<()> {
    let (mut bytes, _) = big_segment(20_000);
    // One more record, padded so that the data ends at a multiple of the
    // batch size, at a newline: the last batch's cut is the file's end.
    let target = (bytes.len() + 100).next_multiple_of(BATCH_BYTES);
    let padded = |pad: usize| log(&[Record::Set("last".into(), crate::Doc::from(json!("y".repeat(pad))))], 20_001);
    // A string value's line grows by one byte per byte of padding.
    let last = padded(target - bytes.len() - padded(0).len());
    bytes.extend_from_slice(&last);
    assert_eq!(bytes.len() % BATCH_BYTES, 0, "the data ends at a batch's end");
    let records_end = bytes.len() as u64;
    let (seen, out) = scanned(&bytes, 1, None)?;
    assert_eq!((seen.len(), seen.last()), (20_001, Some(&20_001)));
    assert!(matches!(out, Ok(Scanned { tail: Tail::Clean, next: Seq(20_002), end, .. }) if end == records_end));
    let mut zeros = bytes.clone();
    zeros.extend_from_slice(&[0u8; 3 * BATCH_BYTES]);
    let (seen, out) = scanned(&zeros, 1, None)?;
    assert_eq!(seen.len(), 20_001);
    assert!(matches!(out, Ok(Scanned { tail: Tail::Clean, end, .. }) if end == records_end));
    let (seen, out) = scanned(&zeros, 1, Some(20_002))?;
    assert_eq!(seen.len(), 20_001);
    assert!(matches!(out, Ok(Scanned { tail: Tail::TornSeal { offset }, .. }) if offset == records_end));
    let mut sealed = bytes.clone();
    sealed.extend_from_slice(&seal(20_002));
    let (seen, out) = scanned(&sealed, 1, Some(20_002))?;
    assert_eq!(seen.len(), 20_001);
    assert!(matches!(out, Ok(Scanned { tail: Tail::Sealed { offset }, .. }) if offset == records_end));
    Ok(())
}

/// A panic in the caller's callback ends the scan (it unwinds, as it did
/// before batches) rather than leaving the decoding threads waiting for room
/// ahead, and the scope with them, forever.
#[test]
fn a_panic_in_the_callback_stops_the_decoding_threads() {
    // More batches than may wait decoded, so that the threads would wait.
    let (bytes, _) = big_segment(140_000);
    assert!(bytes.len() > 40 * BATCH_BYTES);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| {
            scan(&bytes, Seq(1), None, |found| {
                if found.seq.0 == 10 {
                    std::panic::resume_unwind(Box::new("the callback failed"));
                }
                Ok(())
            })
        });
        let _ = done.send(outcome.is_err());
    });
    assert_eq!(finished.recv_timeout(std::time::Duration::from_secs(120)), Ok(true));
}

/// A large segment that starts with zeros is damage at line 1 (valid lines
/// follow), not an end of data: the threads hand over nothing there and
/// the reader decides.
#[test]
fn a_large_segment_starting_with_zeros_is_damage_at_line_one() -> Result<()> {
    let (mut bytes, starts) = big_segment(20_000);
    bytes[..starts[1] - 1].fill(0);
    let (seen, out) = scanned(&bytes, 1, None)?;
    assert!(seen.is_empty());
    assert!(out.err().is_some_and(|d| d.line == 1 && d.offset == 0 && d.reason.contains("valid lines follow")));
    Ok(())
}

#[test]
fn gaps_and_steps_back_are_corruption() -> Result<()> {
    let mut bytes = log(&sets(2), 1);
    bytes.extend(log(&sets(1), 4));
    let damage = run(&bytes, 1, true)?.1.err();
    assert!(damage.is_some_and(|d| d.line == 3 && d.reason.contains("gap")));
    let mut back = log(&sets(2), 1);
    back.extend(log(&sets(1), 2));
    let damage = run(&back, 1, true)?.1.err();
    assert!(damage.is_some_and(|d| d.line == 3 && d.reason.contains("back")));
    // The first record must carry the expected number too.
    assert!(run(&log(&sets(1), 5), 1, true)?.1.is_err());
    Ok(())
}

/// A file whose fsyncs block until the test releases them, each with the outcome it is given.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    data: Vec<u8>,
    /// fsyncs entered so far.
    entered: usize,
    /// Outcomes released so far, one per fsync in order (true: success).
    released: Vec<bool>,
}

impl Gate {
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn wait_until(&self, done: impl Fn(&GateState) -> bool) {
        let mut state = self.state();
        while !done(&state) {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
    fn release(&self, ok: bool) {
        self.state().released.push(ok);
        self.changed.notify_all();
    }
}

struct GateFile(Arc<Gate>);

impl VFile for GateFile {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.0.state().data.extend_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> std::io::Result<()> {
        let mut state = self.0.state();
        let me = state.entered;
        state.entered += 1;
        self.0.changed.notify_all();
        // The sync of the cut after a failure is not gated.
        while state.released.len() <= me && !state.released.contains(&false) {
            state = self.0.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.released.get(me) == Some(&false) {
            Err(std::io::Error::other("injected fsync failure"))
        } else {
            Ok(())
        }
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.0.state().data.truncate(len as usize);
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.state().data.len() as u64)
    }
}

#[derive(Debug)]
struct GateFs(Arc<Gate>);

impl Vfs for GateFs {
    fn create_dir_all(&self, _: &Path) -> std::io::Result<()> {
        Err(std::io::Error::other("unused"))
    }
    fn list(&self, _: &Path) -> std::io::Result<Vec<String>> {
        Err(std::io::Error::other("unused"))
    }
    fn exists(&self, _: &Path) -> std::io::Result<bool> {
        Err(std::io::Error::other("unused"))
    }
    fn open_append(&self, _: &Path) -> std::io::Result<Box<dyn VFile>> {
        Ok(Box::new(GateFile(Arc::clone(&self.0))))
    }
    fn create_new(&self, _: &Path) -> std::io::Result<Box<dyn VFile>> {
        Err(std::io::Error::other("unused"))
    }
    fn read(&self, _: &Path) -> std::io::Result<crate::storage::vfs::FileBytes> {
        Err(std::io::Error::other("unused"))
    }
    fn rename(&self, _: &Path, _: &Path) -> std::io::Result<()> {
        Err(std::io::Error::other("unused"))
    }
    fn remove(&self, _: &Path) -> std::io::Result<()> {
        Err(std::io::Error::other("unused"))
    }
    fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
        Err(std::io::Error::other("unused"))
    }
    fn try_lock(&self, _: &Path) -> std::io::Result<crate::storage::vfs::LockOutcome> {
        Err(std::io::Error::other("unused"))
    }
}

/// Group commit with a gated fsync: a leader appends record 1 and blocks in its
/// fsync; `waiters` more writers append records 2.. and park behind it; then
/// the fsyncs are released with `outcomes`. Returns each writer's result (the
/// leader's first), the fsync count and the file's final length.
fn gated_group(waiters: usize, outcomes: &[bool]) -> (Vec<Result<()>>, u64, usize) {
    let gate = Arc::new(Gate::default());
    let vfs: Arc<dyn Vfs> = Arc::new(GateFs(Arc::clone(&gate)));
    let segment = Segment { path: PathBuf::from("wal-test"), first: Seq(1) };
    let writer = match Writer::open(vfs, Path::new("."), segment, None, Vec::new(), Seq(0), true) {
        Ok(writer) => writer,
        Err(e) => return (vec![Err(e)], 0, 0),
    };
    let wal = Wal::new(writer, Seq(0));
    let write = |wal: &Wal| -> Result<()> {
        let seq = wal.lock().append(&Record::Set("k".into(), crate::Doc::from(json!(1))))?;
        wal.wait_durable(seq, "this write")
    };
    let results = std::thread::scope(|s| {
        let leader = s.spawn(|| write(&wal));
        gate.wait_until(|g| g.entered == 1);
        let others: Vec<_> = (0..waiters).map(|_| s.spawn(|| write(&wal))).collect();
        // Every writer is parked behind the leader's fsync before it returns.
        while wal.sync_state().waiters.len() < waiters {
            std::thread::yield_now();
        }
        for &ok in outcomes {
            gate.release(ok);
        }
        std::iter::once(leader)
            .chain(others)
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let len = gate.state().data.len();
    (results, wal.syncs(), len)
}

#[test]
fn writers_parked_behind_a_failed_fsync_all_get_the_error() {
    let (results, syncs, len) = gated_group(6, &[false]);
    assert_eq!(results.len(), 7);
    for r in &results {
        assert!(
            matches!(r, Err(Error::WriteFailed { what: "this write", cause }) if cause.contains("injected")),
            "{r:?}"
        );
    }
    assert_eq!(syncs, 1);
    assert_eq!(len, 0, "the unsynced records are cut");
}

#[test]
fn the_fsync_after_the_leaders_covers_the_writers_parked_behind_it() {
    // The first fsync covers only the leader's record; the role passes to one
    // parked writer, whose single fsync covers all the others.
    let (results, syncs, len) = gated_group(6, &[true, true]);
    assert_eq!(results.len(), 7);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(syncs, 2);
    assert!(len > 0);
    // And if that second fsync fails, all six get the error, the leader none.
    let (results, syncs, _) = gated_group(6, &[true, false]);
    assert!(results[0].is_ok());
    assert!(results[1..].iter().all(|r| matches!(r, Err(Error::WriteFailed { .. }))), "{results:?}");
    assert_eq!(syncs, 2);
}

/// The change feed's follower: across a rotation, up to the durable point,
/// an incomplete last line is "not yet", a removed segment is truncation,
/// a damaged line among the records wanted is corruption.
#[test]
fn the_follower_reads_across_segments_and_tells_not_yet_from_gone_and_damaged() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "a temporary directory", e))?;
    let vfs = crate::storage::vfs::StdFs;
    let write = |name: String, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes);
    let io = |e| Error::io("writing", dir.path(), e);
    let records = sets(6);
    write(segment_name(Seq(1)), &log(&records[..3], 1)).map_err(io)?;
    let mut second = log(&records[3..5], 4);
    let sixth = log(&records[5..], 6);
    second.extend_from_slice(&sixth[..sixth.len() / 2]);
    write(segment_name(Seq(4)), &second).map_err(io)?;

    let mut seen = Vec::new();
    let mut follower = Follower::new(dir.path(), Seq(2));
    assert_eq!(follower.read(&vfs, Seq(5), 10, |s, _| seen.push(s.0))?, Followed::Records(4));
    assert_eq!(seen, [2, 3, 4, 5]);
    // Record 6 is half written: not yet, not damage.
    assert_eq!(follower.read(&vfs, Seq(6), 10, |s, _| seen.push(s.0))?, Followed::Records(0));
    second.extend_from_slice(&sixth[sixth.len() / 2..]);
    write(segment_name(Seq(4)), &second).map_err(io)?;
    assert_eq!(follower.read(&vfs, Seq(6), 10, |s, _| seen.push(s.0))?, Followed::Records(1));
    assert_eq!(seen, [2, 3, 4, 5, 6]);
    // At most `max`, and never past `upto`.
    let mut from_one = Follower::new(dir.path(), Seq(1));
    assert_eq!(from_one.read(&vfs, Seq(6), 2, |_, _| ())?, Followed::Records(2));
    assert_eq!(from_one.read(&vfs, Seq(3), 10, |_, _| ())?, Followed::Records(1));

    // Compaction removed the first segment: the first available record is named.
    std::fs::remove_file(dir.path().join(segment_name(Seq(1)))).map_err(io)?;
    assert_eq!(
        Follower::new(dir.path(), Seq(2)).read(&vfs, Seq(6), 10, |_, _| ())?,
        Followed::Truncated { first_available: Seq(4) }
    );
    // One that had read all of it goes on in the next segment.
    assert_eq!(from_one.read(&vfs, Seq(6), 10, |_, _| ())?, Followed::Records(3));

    // A damaged line among the records wanted.
    let mut damaged = second.clone();
    damaged[0] ^= 0x01;
    write(segment_name(Seq(4)), &damaged).map_err(io)?;
    let outcome = Follower::new(dir.path(), Seq(4)).read(&vfs, Seq(6), 10, |_, _| ());
    assert!(matches!(outcome, Err(Error::Corrupt { line: 1, offset: 0, .. })), "{outcome:?}");
    Ok(())
}

fn header(first: u64, prev: Option<u64>) -> Vec<u8> {
    record::marker_line(record::Marker::Header { first: Seq(first), prev: prev.map(Seq) })
}

fn seal(next: u64) -> Vec<u8> {
    record::marker_line(record::Marker::Seal { next: Seq(next) })
}

fn scanned(bytes: &[u8], first: u64, successor: Option<u64>) -> Result<(Vec<u64>, ScanOutcome)> {
    let mut seen = Vec::new();
    let out = scan(bytes, Seq(first), successor.map(Seq), |f| {
        seen.push(f.seq.0);
        Ok(())
    })?;
    Ok((seen, out))
}

/// Headers and seals frame a segment without taking a sequence number; a
/// seal must name the record after the last and end the file.
#[test]
fn headers_and_seals_frame_a_segment() -> Result<()> {
    let mut bytes = header(4, Some(1));
    bytes.extend_from_slice(&log(&sets(3), 4));
    let (seen, out) = scanned(&bytes, 4, None)?;
    assert_eq!(seen, [4, 5, 6]);
    let records_end = bytes.len() as u64;
    assert_eq!(out, Ok(Scanned { tail: Tail::Clean, next: Seq(7), header: Some(Some(Seq(1))), end: records_end }));
    bytes.extend_from_slice(&seal(7));
    let (_, out) = scanned(&bytes, 4, Some(7))?;
    assert_eq!(
        out,
        Ok(Scanned {
            tail: Tail::Sealed { offset: records_end },
            next: Seq(7),
            header: Some(Some(Seq(1))),
            end: bytes.len() as u64
        })
    );
    // A header naming another first record, a seal naming another successor,
    // a byte after the seal, a header in the middle: damage, even at the end.
    assert!(scanned(&bytes, 5, None)?.1.is_err());
    let mut wrong_seal = bytes[..records_end as usize].to_vec();
    wrong_seal.extend_from_slice(&seal(8));
    assert!(scanned(&wrong_seal, 4, None)?.1.is_err());
    let mut after_seal = bytes.clone();
    after_seal.push(b'x');
    assert!(scanned(&after_seal, 4, None)?.1.is_err());
    let mut middle = log(&sets(1), 4);
    middle.extend_from_slice(&header(5, Some(4)));
    middle.extend_from_slice(&log(&sets(1), 5));
    assert!(scanned(&middle, 4, None)?.1.is_err());
    // A record decoder refuses a marker (it is no record).
    assert!(record::decode(&seal(7)[..seal(7).len() - 1]).is_err());
    Ok(())
}

/// What a crash during the seal's append leaves, in a segment followed by its
/// successor: any bytes no longer than the seal (a prefix, zeros, garbage)
/// are a torn seal; longer ones, or a successor elsewhere, are damage.
#[test]
fn a_cut_seal_before_its_successor_is_a_torn_seal_and_nothing_else_is() -> Result<()> {
    let records = log(&sets(2), 1);
    let end = records.len() as u64;
    let line = seal(3);
    for cut in 1..line.len() {
        let mut bytes = records.clone();
        bytes.extend_from_slice(&line[..cut]);
        let (seen, out) = scanned(&bytes, 1, Some(3))?;
        assert_eq!(seen, [1, 2]);
        assert!(matches!(out, Ok(Scanned { tail: Tail::TornSeal { offset }, .. }) if offset == end), "cut {cut}");
        // The successor starting elsewhere: the bytes are damage.
        assert!(scanned(&bytes, 1, Some(4))?.1.is_err(), "cut {cut}");
    }
    let mut zeros = records.clone();
    zeros.extend_from_slice(&[0u8; 20]);
    assert!(matches!(scanned(&zeros, 1, Some(3))?.1, Ok(Scanned { tail: Tail::TornSeal { .. }, .. })));
    let mut garbage = records.clone();
    garbage.extend_from_slice(&[b'#'; 7]);
    assert!(matches!(scanned(&garbage, 1, Some(3))?.1, Ok(Scanned { tail: Tail::TornSeal { .. }, .. })));
    // Longer than a seal: not what a crash leaves of one.
    garbage.extend_from_slice(&[b'#'; 64]);
    assert!(scanned(&garbage, 1, Some(3))?.1.is_err());
    Ok(())
}

/// The follower steps over headers and leaves a sealed segment for the one
/// its seal names, counting lines as records only between them.
#[test]
fn the_follower_steps_over_headers_and_seals() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "a temporary directory", e))?;
    let vfs = crate::storage::vfs::StdFs;
    let io = |e| Error::io("writing", dir.path(), e);
    let records = sets(6);
    let mut first = header(1, None);
    first.extend_from_slice(&log(&records[..3], 1));
    first.extend_from_slice(&seal(4));
    let mut second = header(4, Some(1));
    second.extend_from_slice(&log(&records[3..], 4));
    std::fs::write(dir.path().join(segment_name(Seq(1))), &first).map_err(io)?;
    std::fs::write(dir.path().join(segment_name(Seq(4))), &second).map_err(io)?;
    for from in 1..=6u64 {
        let mut seen = Vec::new();
        let mut follower = Follower::new(dir.path(), Seq(from));
        // One record a call, so that it crosses the seal between calls too.
        while follower.read(&vfs, Seq(6), 1, |s, _| seen.push(s.0))? == Followed::Records(1) {}
        assert_eq!(seen, (from..=6).collect::<Vec<_>>(), "from {from}");
    }
    Ok(())
}
