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
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let good_len = fs::metadata(&seg)?.len();
    let mut half = codec::encode(&LineRef { index: 4, term: 1, entry: &entry(1, 4) })?;
    half.truncate(half.len() / 2);
    OpenOptions::new().append(true).open(&seg)?.write_all(&half)?;
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
/// against a plain map: the log must hold exactly what the model holds.
#[test]
fn the_log_agrees_with_a_model_under_random_operations() -> TestResult {
    for seed in 1..=4u64 {
        let dir = tempfile::tempdir()?;
        let mut log = LogStore::open(dir.path())?;
        log.lock().segment_bytes = 400;
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
                    let segment_bytes = log.lock().segment_bytes;
                    drop(log);
                    log = LogStore::open(dir.path())?;
                    log.lock().segment_bytes = segment_bytes;
                }
            }
            let inner = log.lock();
            let got: BTreeMap<u64, u64> = inner.entries.iter().map(|(&i, e)| (i, e.log_id.leader_id.term)).collect();
            assert_eq!(got, model, "seed {seed} step {step}");
            assert_eq!(inner.state.last_purged, purged, "seed {seed} step {step}");
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
    drop(log);
    let seg = files::segment_path(dir.path(), 1);
    let whole = fs::read(&seg)?;
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
