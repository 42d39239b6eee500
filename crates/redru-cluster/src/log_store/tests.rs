//! The log's unit tests: the line format, reopen across segments, shared
//! fsyncs, the lock, torn tails and damage, truncate/purge, the state file,
//! and a model test under random operations.

use std::fs::{self, OpenOptions};
use std::io::Write;

use openraft::{CommittedLeaderId, EntryPayload};

use super::segments::LineRef;
use super::*;
use crate::codec;
use crate::types::{Request, Vote};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn entry_at(term: u64, index: u64, request: Request) -> Entry {
    Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Normal(request) }
}

fn entry(term: u64, index: u64) -> Entry {
    entry_at(term, index, Request::set(format!("k{index}"), format!("{index}")))
}

impl LogStore {
    /// Appends, writes and fsyncs.
    fn append_now(&self, entries: Vec<Entry>) -> Result<(), Error> {
        self.lock().guarded(|i| i.append(entries))?;
        self.write_queued();
        let inner = self.lock();
        if inner.poisoned { Err(Error::Poisoned) } else { Ok(()) }
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn indexes(log: &LogStore) -> Vec<u64> {
    log.lock().entries.keys().copied().collect()
}

fn segment_files(dir: &Path) -> Result<Vec<u64>, Error> {
    list_segments(dir)
}

/// Where the entries of the segment starting at `first` end (the file may
/// go on with zeros).
fn data_len(log: &LogStore, first: u64) -> u64 {
    log.lock().segments.get(&first).map_or(0, |s| s.len)
}

/// Writes `bytes` at `offset` in `path`, as a write the crash interrupted.
fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// The documented line (docs/cluster.md, "One line per entry"), byte for byte.
#[test]
fn the_line_format_is_stable() -> TestResult {
    let line = codec::encode(&LineRef { index: 7, term: 2, entry: &entry_at(2, 7, Request::set("a", "1")) })?;
    let expected = concat!(
        r#"853e320c {"index":7,"term":2,"entry":{"log_id":{"leader_id":{"term":2,"node_id":1},"index":7},"#,
        r#""payload":{"Normal":{"ops":[{"op":"set","key":"a","value":"1"}]}}}}"#,
        "\n"
    );
    assert_eq!(String::from_utf8(line)?, expected);
    Ok(())
}

#[test]
fn entries_survive_a_reopen_across_segments() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.lock().segment_bytes = 300;
    log.append_now(entries(1, 1..=10))?;
    log.append_now(entries(2, 11..=12))?;
    assert!(segment_files(dir.path())?.len() > 1, "small segments roll over");
    let first = log.lock().entries.clone();
    drop(log);
    let log = LogStore::open(dir.path())?;
    assert_eq!(log.lock().entries, first);
    log.append_now(entries(2, 13..=13))?;
    assert_eq!(indexes(&log), (1..=13).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn appends_queued_during_a_round_share_one_fsync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    {
        let mut inner = log.lock();
        inner.append(entries(1, 1..=2))?;
        inner.append(entries(1, 3..=5))?;
    }
    log.write_queued();
    let rounds = log.lock().rounds;
    assert_eq!(rounds, 1, "two appends queued together are written in one round");
    drop(log);
    assert_eq!(indexes(&LogStore::open(dir.path())?), vec![1, 2, 3, 4, 5]);
    Ok(())
}

#[test]
fn a_second_handle_is_refused_until_the_first_is_gone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    let reader = log.clone();
    drop(log);
    match LogStore::open(dir.path()) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => return Err(format!("expected Locked, got {other:?}").into()),
    }
    drop(reader);
    LogStore::open(dir.path())?;
    Ok(())
}

#[test]
fn a_gap_or_a_step_back_is_refused_on_append() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.append_now(entries(1, 1..=3))?;
    assert!(log.append_now(entries(1, 5..=5)).is_err());
    Ok(())
}

#[test]
fn a_torn_last_line_is_cut_and_kept_aside() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.append_now(entries(1, 1..=3))?;
    let good_len = data_len(&log, 1);
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let mut half = codec::encode(&LineRef { index: 4, term: 1, entry: &entry(1, 4) })?;
    half.truncate(half.len() / 2);
    // Torn over the preallocated zeros, where the append went.
    write_at(&seg, good_len, &half)?;
    let log = LogStore::open(dir.path())?;
    assert_eq!(indexes(&log), vec![1, 2, 3]);
    assert_eq!(fs::metadata(&seg)?.len(), good_len);
    assert_eq!(fs::read(files::torn_path(&seg, good_len))?, half);
    log.append_now(entries(1, 4..=4))?;
    drop(log);
    assert_eq!(indexes(&LogStore::open(dir.path())?), vec![1, 2, 3, 4]);
    Ok(())
}

#[test]
fn damage_before_a_valid_line_is_refused_with_file_and_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.append_now(entries(1, 1..=3))?;
    let second = log.lock().places[&2].1;
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg)?;
    bytes[second as usize + 20] ^= 0x01;
    fs::write(&seg, &bytes)?;
    match LogStore::open(dir.path()) {
        Err(e @ Error::Corrupt { .. }) => {
            let message = e.to_string();
            assert!(matches!(&e, Error::Corrupt { file, offset, .. } if *file == seg && *offset == second));
            assert!(message.contains(&seg.display().to_string()), "{message}");
            assert!(message.contains(&format!("at byte {second}")), "{message}");
            assert!(message.contains("checksum"), "{message}");
        }
        other => return Err(format!("expected corruption, got {other:?}").into()),
    }
    assert_eq!(fs::read(&seg)?, bytes, "nothing is changed");
    Ok(())
}

#[test]
fn damage_in_an_older_segment_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.lock().segment_bytes = 300;
    log.append_now(entries(1, 1..=10))?;
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg)?;
    bytes.truncate(bytes.len() - 5);
    fs::write(&seg, &bytes)?;
    assert!(matches!(LogStore::open(dir.path()), Err(Error::Corrupt { file, .. }) if file == seg));
    Ok(())
}

#[test]
fn truncate_and_purge_survive_a_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.lock().segment_bytes = 300;
    log.append_now(entries(1, 1..=20))?;
    log.lock().truncate(15)?;
    log.lock().purge(LogId::new(CommittedLeaderId::new(1, 1), 7))?;
    assert_eq!(indexes(&log), (8..=14).collect::<Vec<_>>());
    assert!(segment_files(dir.path())?.iter().all(|&f| f <= 14));
    drop(log);
    let log = LogStore::open(dir.path())?;
    assert_eq!(indexes(&log), (8..=14).collect::<Vec<_>>());
    assert_eq!(log.lock().state.last_purged.map(|l| l.index), Some(7));
    log.append_now(entries(3, 15..=16))?;
    drop(log);
    let log = LogStore::open(dir.path())?;
    assert_eq!(indexes(&log), (8..=16).collect::<Vec<_>>());
    assert_eq!(log.lock().entries[&16].log_id.leader_id.term, 3);
    Ok(())
}

#[test]
fn a_purge_past_the_end_leaves_an_empty_log_that_restarts_later() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.append_now(entries(1, 1..=3))?;
    log.lock().purge(LogId::new(CommittedLeaderId::new(2, 1), 50))?;
    assert!(segment_files(dir.path())?.is_empty());
    assert_eq!(log.lock().last_log_id().map(|l| l.index), Some(50));
    log.append_now(entries(2, 51..=52))?;
    drop(log);
    assert_eq!(indexes(&LogStore::open(dir.path())?), vec![51, 52]);
    Ok(())
}

#[test]
fn vote_and_committed_survive_a_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    let vote = Vote::new(4, 2);
    let committed = Some(LogId::new(CommittedLeaderId::new(4, 2), 9));
    let state = LogStateFile { vote: Some(vote), committed, last_purged: None };
    log.lock().save_state(state)?;
    drop(log);
    let log = LogStore::open(dir.path())?;
    assert_eq!(log.lock().state.vote, Some(vote));
    assert_eq!(log.lock().state.committed, committed);
    assert!(!dir.path().join("raft-state.tmp").exists());
    Ok(())
}

/// A tiny deterministic generator: the model test needs no `rand`.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Random appends, truncates, purges and reopens, checked after each step
/// against a plain map: the log must hold exactly what the model holds, and
/// only the last segment may end in zeros.
#[test]
fn the_log_agrees_with_a_model_under_random_operations() -> TestResult {
    for seed in 1..=4u64 {
        let dir = tempfile::tempdir()?;
        // Zero extensions smaller than a segment: appends cross them,
        // truncates and purges cut through them.
        let mut log = open_small(dir.path(), 400, 128)?;
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // index -> term
        let mut purged: Option<LogId> = None;
        let mut term = 1;
        for step in 0..300 {
            let last = model.keys().next_back().copied().or(purged.map(|p| p.index)).unwrap_or(0);
            let floor = purged.map_or(0, |p| p.index);
            match rng.below(10) {
                0..=4 => {
                    let n = 1 + rng.below(4);
                    let batch: Vec<Entry> = (last + 1..=last + n).map(|i| entry(term, i)).collect();
                    log.append_now(batch)?;
                    for i in last + 1..=last + n {
                        model.insert(i, term);
                    }
                }
                5 if last > floor => {
                    let at = floor + 1 + rng.below(last - floor);
                    log.lock().truncate(at)?;
                    model.split_off(&at);
                    term += 1;
                }
                6 if last > floor => {
                    let upto = floor + 1 + rng.below(last - floor + 2);
                    let id = LogId::new(CommittedLeaderId::new(model.get(&upto).copied().unwrap_or(term), 1), upto);
                    log.lock().purge(id)?;
                    model = model.split_off(&(upto + 1));
                    purged = Some(id);
                }
                7 => term += 1,
                _ => {
                    drop(log);
                    log = open_small(dir.path(), 400, 128)?;
                }
            }
            let inner = log.lock();
            let got: BTreeMap<u64, u64> = inner.entries.iter().map(|(&i, e)| (i, e.log_id.leader_id.term)).collect();
            assert_eq!(got, model, "seed {seed} step {step}");
            assert_eq!(inner.state.last_purged, purged, "seed {seed} step {step}");
            let last = inner.segments.keys().next_back().copied();
            for (&first, seg) in inner.segments.iter().filter(|(f, _)| Some(**f) != last) {
                let len = fs::metadata(files::segment_path(dir.path(), first))?.len();
                assert_eq!(len, seg.len, "seed {seed} step {step}: segment {first} keeps zeros");
            }
        }
    }
    Ok(())
}

/// A crash can stop the last write at any byte: every such cut opens as
/// the entries before it, with the cut bytes kept aside.
#[test]
fn a_last_line_cut_at_any_byte_opens_as_the_entries_before_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = LogStore::open(dir.path())?;
    log.append_now(entries(1, 1..=4))?;
    let start = log.lock().places[&4].1;
    let end = data_len(&log, 1);
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let whole = fs::read(&seg)?[..end as usize].to_vec();
    for cut in start as usize..whole.len() {
        fs::write(&seg, &whole[..cut])?;
        let log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log), vec![1, 2, 3], "cut at byte {cut}");
        assert_eq!(fs::metadata(&seg)?.len(), start);
        if cut as u64 > start {
            assert_eq!(fs::read(files::torn_path(&seg, start))?, &whole[start as usize..cut]);
        }
    }
    Ok(())
}

/// Opens the log in `dir` with small segments and small zero extensions,
/// so that a test crosses both boundaries with a few entries.
fn open_small(dir: &Path, segment_bytes: u64, zero_chunk: u64) -> Result<LogStore, Error> {
    let log = LogStore::open(dir)?;
    {
        let mut inner = log.lock();
        inner.segment_bytes = segment_bytes;
        inner.zero_chunk = zero_chunk;
    }
    Ok(log)
}

/// Waits for the zeros being written ahead of the last segment's entries.
fn settle(log: &LogStore) {
    if let Some(zeros) = log.shared.write_io.lock().unwrap_or_else(|p| p.into_inner()).zeros() {
        zeros.settle();
    }
}

fn torn_files(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir)? {
        let name = item?.file_name().to_string_lossy().into_owned();
        if name.contains(".torn-") {
            names.push(name);
        }
    }
    Ok(names)
}

/// The zeros written ahead are kept at a reopen (not mistaken for a torn
/// tail), and appends overwrite them in place: the file does not grow.
#[test]
fn zeros_ahead_are_kept_at_reopen_and_overwritten_in_place() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open_small(dir.path(), 1 << 20, 4096)?;
    log.append_now(entries(1, 1..=3))?;
    settle(&log);
    let seg = files::segment_path(dir.path(), 1);
    let data = data_len(&log, 1);
    let zeroed = fs::metadata(&seg)?.len();
    assert!(zeroed >= data + 4096, "zeros are written ahead: {zeroed} bytes for {data} of entries");
    assert!(fs::read(&seg)?[data as usize..].iter().all(|&b| b == 0));
    drop(log);
    let log = open_small(dir.path(), 1 << 20, 4096)?;
    assert_eq!(indexes(&log), vec![1, 2, 3]);
    assert_eq!(fs::metadata(&seg)?.len(), zeroed, "the zeros are kept");
    assert!(torn_files(dir.path())?.is_empty(), "zeros are no torn tail");
    log.append_now(entries(1, 4..=5))?;
    drop(log);
    let log = LogStore::open(dir.path())?;
    assert_eq!(indexes(&log), vec![1, 2, 3, 4, 5]);
    assert_eq!(fs::metadata(&seg)?.len(), zeroed, "the entries went over the zeros");
    Ok(())
}

/// A crash while zeros were being written leaves any number of them (or a
/// hole, which reads as zeros): every such file opens as its entries, and
/// the log goes on from there.
#[test]
fn a_crash_mid_extension_opens_as_the_entries() -> TestResult {
    for extra in [0u64, 1, 777, 4095, 4096, 10_000] {
        let dir = tempfile::tempdir()?;
        let log = open_small(dir.path(), 1 << 20, 4096)?;
        log.append_now(entries(1, 1..=3))?;
        settle(&log);
        let data = data_len(&log, 1);
        drop(log);
        let seg = files::segment_path(dir.path(), 1);
        OpenOptions::new().write(true).open(&seg)?.set_len(data + extra)?;
        let log = open_small(dir.path(), 1 << 20, 4096)?;
        assert_eq!(indexes(&log), vec![1, 2, 3], "{extra} zeros");
        assert!(torn_files(dir.path())?.is_empty(), "{extra} zeros");
        log.append_now(entries(1, 4..=6))?;
        drop(log);
        assert_eq!(indexes(&LogStore::open(dir.path())?), (1..=6).collect::<Vec<_>>(), "{extra} zeros");
    }
    Ok(())
}

/// A write over the zeros cut at any byte (the rest still zeros) opens as
/// the entries before it, with the cut bytes, not the zeros, kept aside.
#[test]
fn a_line_torn_over_the_zeros_is_cut_and_kept_aside_without_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open_small(dir.path(), 1 << 20, 4096)?;
    log.append_now(entries(1, 1..=4))?;
    settle(&log);
    let start = log.lock().places[&4].1;
    let end = data_len(&log, 1);
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let whole = fs::read(&seg)?;
    for cut in start as usize..end as usize {
        let mut torn = whole.clone();
        torn[cut..end as usize].fill(0);
        fs::write(&seg, &torn)?;
        let log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log), vec![1, 2, 3], "cut at byte {cut}");
        if cut as u64 > start {
            assert_eq!(fs::metadata(&seg)?.len(), start, "cut at byte {cut}");
            assert_eq!(fs::read(files::torn_path(&seg, start))?, &whole[start as usize..cut], "cut at byte {cut}");
        } else {
            assert_eq!(fs::metadata(&seg)?.len(), whole.len() as u64, "zeros only: kept");
        }
    }
    Ok(())
}

/// Valid lines after the zeros that end the data (the disk wrote a later
/// page of an unsynced write, not the first): set aside and cut, and never
/// back in line after the next append.
#[test]
fn valid_lines_after_the_zeros_are_set_aside_and_never_come_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open_small(dir.path(), 1 << 20, 4096)?;
    log.append_now(entries(1, 1..=3))?;
    settle(&log);
    let data = data_len(&log, 1);
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let mut lost = Vec::new();
    for i in 4..=5 {
        lost.extend(codec::encode(&LineRef { index: i, term: 1, entry: &entry(1, i) })?);
    }
    lost[..10].fill(0);
    write_at(&seg, data, &lost)?;
    let log = LogStore::open(dir.path())?;
    assert_eq!(indexes(&log), vec![1, 2, 3]);
    assert_eq!(fs::metadata(&seg)?.len(), data, "cut at the data's end");
    assert_eq!(fs::read(files::torn_path(&seg, data))?, lost, "kept aside, without the zeros after them");
    log.append_now(vec![entry(2, 4)])?;
    drop(log);
    let log = LogStore::open(dir.path())?;
    assert_eq!(indexes(&log), vec![1, 2, 3, 4]);
    assert_eq!(log.lock().entries[&4].log_id.leader_id.term, 2);
    Ok(())
}

/// Only the last segment may end in zeros: a rollover cuts them off the
/// segment it leaves, and zeros at the end of an older one are damage.
#[test]
fn only_the_last_segment_ends_in_zeros() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open_small(dir.path(), 300, 128)?;
    for i in 1..=10 {
        log.append_now(entries(1, i..=i))?;
    }
    let firsts = segment_files(dir.path())?;
    assert!(firsts.len() > 2, "small segments roll over");
    for &first in &firsts[..firsts.len() - 1] {
        let len = fs::metadata(files::segment_path(dir.path(), first))?.len();
        assert_eq!(len, data_len(&log, first), "segment {first} keeps no zeros");
    }
    drop(log);
    let seg = files::segment_path(dir.path(), firsts[0]);
    let len = fs::metadata(&seg)?.len();
    OpenOptions::new().write(true).open(&seg)?.set_len(len + 100)?;
    assert!(
        matches!(LogStore::open(dir.path()), Err(Error::Corrupt { file, offset, .. }) if file == seg && offset == len)
    );
    Ok(())
}

/// Truncate cuts the entries and the zeros after them, and purge removes a
/// segment that ends in zeros: after either and a reopen, no truncated
/// entry comes back, and appends go on over fresh zeros.
#[test]
fn truncate_and_purge_work_across_a_zero_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open_small(dir.path(), 1 << 20, 4096)?;
    log.append_now(entries(1, 1..=20))?;
    settle(&log);
    log.lock().truncate(15)?;
    let seg = files::segment_path(dir.path(), 1);
    assert_eq!(fs::metadata(&seg)?.len(), data_len(&log, 1), "the zeros went with the cut");
    log.append_now(vec![entry(3, 15)])?;
    settle(&log);
    drop(log);
    let log = open_small(dir.path(), 1 << 20, 4096)?;
    assert_eq!(indexes(&log), (1..=15).collect::<Vec<_>>());
    assert_eq!(log.lock().entries[&15].log_id.leader_id.term, 3);
    let bytes = fs::read(&seg)?;
    assert!(!bytes.windows(12).any(|w| w == br#""index":16,"#), "a truncated entry is still on disk");
    log.append_now(entries(3, 16..=17))?;
    log.lock().purge(LogId::new(CommittedLeaderId::new(3, 1), 17))?;
    assert!(segment_files(dir.path())?.is_empty());
    log.append_now(entries(3, 18..=19))?;
    settle(&log);
    drop(log);
    assert_eq!(indexes(&LogStore::open(dir.path())?), vec![18, 19]);
    Ok(())
}

/// A crash after a rollover created the next segment and wrote its zeros,
/// before its first line was on disk: the segment holds zeros only (no
/// header in this log, so zeros at offset 0 end the data too) and is
/// removed at open, nothing set aside; the log goes on in a new one.
#[test]
fn a_new_segment_of_zeros_only_is_removed_at_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open_small(dir.path(), 300, 128)?;
    log.append_now(entries(1, 1..=10))?;
    let (last, end) = log.lock().segments.last_key_value().map(|(&f, s)| (f, s.len)).ok_or("no segment")?;
    drop(log);
    // What the rollover does first: the last segment's zeros are cut.
    OpenOptions::new().write(true).open(files::segment_path(dir.path(), last))?.set_len(end)?;
    let next = files::segment_path(dir.path(), 11);
    fs::write(&next, vec![0u8; 4096])?;
    let log = open_small(dir.path(), 300, 128)?;
    assert_eq!(indexes(&log), (1..=10).collect::<Vec<_>>());
    assert!(!next.exists(), "the segment of zeros is removed");
    assert!(torn_files(dir.path())?.is_empty(), "zeros are no one's data");
    log.append_now(entries(1, 11..=12))?;
    drop(log);
    assert_eq!(indexes(&LogStore::open(dir.path())?), (1..=12).collect::<Vec<_>>());
    Ok(())
}
