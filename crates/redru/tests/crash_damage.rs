//! Exhaustive damage: every truncation point and every single-bit flip of a
//! WAL of 120 records and of a small snapshot, and zeroed or garbage 4 KiB
//! blocks. Each case must either recover exactly (a torn tail: the state after
//! the last intact record, the cut reported at the right offset) or be refused
//! with a precise error (the file, line and byte offset of the first damaged
//! line); never a silent change of state, never a panic. Negative control: a
//! lenient replayer that skips bad lines is caught by the same classifier.

use redru_testkit::sim;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redru::vfs::Vfs;
use redru::{Batch, Db, Durability, Error, Options, Value, json};
use sim::{Rng, SimFs};

type Data = BTreeMap<String, Value>;

const DIR: &str = "/db";

fn options(fs: &SimFs) -> Options {
    Options::new().vfs(fs.vfs()).durability(Durability::Never).auto_compact(false)
}

fn data_of(db: &Db) -> Data {
    db.keys().into_iter().filter_map(|k| db.get_value(&k).map(|v| (k, v))).collect()
}

/// A log of `n` records written through the engine, and the data after each record.
fn make_log(n: u64) -> Result<(Vec<u8>, Vec<Data>), Error> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new(DIR));
    let db = options(&fs).open(DIR)?;
    let mut rng = Rng::new(7);
    let mut states = vec![Data::new()];
    for i in 0..n {
        let key = format!("k{}", rng.below(20));
        match rng.below(10) {
            0 if db.contains(&key) => {
                db.delete(&key)?;
            }
            1 => db.batch(Batch::new().set(key.clone(), json!(i)).set(format!("b{i}"), json!({"i": i})))?,
            _ => db.set(key, json!({"i": i, "s": "v".repeat(rng.below_usize(12))}))?,
        }
        assert_eq!(db.stats().last_seq, states.len() as u64, "one record per write");
        states.push(data_of(&db));
    }
    db.close()?;
    let segment = PathBuf::from(DIR).join(redru::internal::log::segment_name(redru::Seq(1)));
    let mut log =
        fs.contents(&segment).map_err(|source| Error::Io { action: "reading", path: segment.clone(), source })?;
    // Without its header: line i is record i + 1, as the classifier counts
    // (a header-less segment, as older builds wrote, reads the same; the
    // chained format's markers have their own cases below).
    let header = log.iter().position(|&b| b == b'\n').map_or(0, |n| n + 1);
    assert!(redru::internal::record::is_marker(&log[..header]), "the segment starts with its header");
    log.drain(..header);
    Ok((log, states))
}

/// A fresh disk holding `files` (name, bytes) durably in `/db`.
fn disk(files: &[(String, &[u8])]) -> SimFs {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new(DIR));
    for (name, bytes) in files {
        let path = Path::new(DIR).join(name);
        if let Ok(file) = fs.create_new(&path) {
            let _ = file.append(bytes);
            let _ = file.sync();
        }
    }
    let _ = fs.sync_dir(Path::new(DIR));
    fs
}

/// What opening damaged files did, reduced to what the classifier judges.
#[derive(Debug)]
enum Outcome {
    Recovered { data: Data, last: u64, torn_at: Option<u64> },
    Corrupt { path: PathBuf, line: u64, offset: u64 },
    BadSnapshot { path: PathBuf },
    Other(#[allow(dead_code)] String),
}

fn open_outcome(fs: &SimFs) -> Outcome {
    match options(fs).open(DIR) {
        Ok(db) => Outcome::Recovered {
            data: data_of(&db),
            last: db.stats().last_seq,
            torn_at: db.recovery().torn_tail.as_ref().map(|t| t.offset),
        },
        Err(Error::Corrupt { path, line, offset, .. }) => Outcome::Corrupt { path, line, offset },
        Err(Error::BadSnapshot { path, .. }) => Outcome::BadSnapshot { path },
        Err(e) => Outcome::Other(e.to_string()),
    }
}

/// What a log segment with its first damaged byte at `first_bad` (and intact
/// again from `intact_from`) must give. `lines` are the line starts of the
/// original, plus its length. `last_segment`: whether it is the log's last.
#[derive(Debug, PartialEq)]
enum Expect {
    Torn { records: u64, at: u64 },
    Clean { records: u64 },
    Corrupt { line: u64, offset: u64 },
}

fn expect(lines: &[u64], first_bad: u64, intact_from: u64, last_segment: bool) -> Expect {
    let len = *lines.last().unwrap_or(&0);
    if first_bad >= len {
        return Expect::Clean { records: lines.len() as u64 - 1 };
    }
    // The damaged line: the last one starting at or before the first bad byte.
    let j = lines.iter().rposition(|&s| s <= first_bad).unwrap_or(0);
    // A valid record follows if an original line starts at or after the end of the damage.
    let valid_after = lines[..lines.len() - 1].iter().any(|&s| s >= intact_from && s > lines[j]);
    if last_segment && !valid_after {
        Expect::Torn { records: j as u64, at: lines[j] }
    } else {
        Expect::Corrupt { line: j as u64 + 1, offset: lines[j] }
    }
}

/// Judges an outcome: `None` when it is exact, else why not.
fn judge(outcome: &Outcome, want: &Expect, states: &[Data], first_record: u64, segment: &Path) -> Option<String> {
    match (outcome, want) {
        (Outcome::Recovered { data, last, torn_at }, Expect::Torn { records, at }) => {
            let k = first_record - 1 + records;
            if *last != k || data != &states[k as usize] || *torn_at != Some(*at) {
                return Some(format!(
                    "silent change: recovered up to {last} (torn at {torn_at:?}), expected {k} torn at {at}"
                ));
            }
            None
        }
        (Outcome::Recovered { data, last, torn_at }, Expect::Clean { records }) => {
            let k = first_record - 1 + records;
            if *last != k || data != &states[k as usize] || torn_at.is_some() {
                return Some(format!(
                    "silent change: recovered up to {last} (torn at {torn_at:?}), expected {k} clean"
                ));
            }
            None
        }
        (Outcome::Corrupt { path, line, offset }, Expect::Corrupt { line: l, offset: o }) => {
            if path != segment || line != l || offset != o {
                return Some(format!(
                    "imprecise error: {} line {line} offset {offset}, expected line {l} offset {o}",
                    path.display()
                ));
            }
            None
        }
        (got, want) => Some(format!("{got:?}, expected {want:?}")),
    }
}

fn line_starts(bytes: &[u8]) -> Vec<u64> {
    let mut starts = vec![0];
    starts.extend(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i as u64 + 1));
    if starts.last() != Some(&(bytes.len() as u64)) {
        starts.push(bytes.len() as u64);
    }
    starts
}

struct Cases {
    count: u64,
    failures: Vec<String>,
}

impl Cases {
    fn new() -> Cases {
        Cases { count: 0, failures: Vec::new() }
    }
    fn check(&mut self, what: String, failure: Option<String>) {
        self.count += 1;
        if let Some(f) = failure {
            self.failures.push(format!("{what}: {f}"));
        }
    }
    fn assert_clean(&self, name: &str) {
        eprintln!("crash_damage {name}: {} cases", self.count);
        assert!(
            self.failures.is_empty(),
            "{} of {} cases wrong, first ones:\n{}",
            self.failures.len(),
            self.count,
            self.failures[..self.failures.len().min(10)].join("\n")
        );
    }
}

/// The header line a save's new segment starting at `first` begins with
/// (the segment before it is `wal-…1`).
fn header(first: u64) -> Vec<u8> {
    use redru::internal::record::{Marker, marker_line};
    marker_line(Marker::Header { first: redru::Seq(first), prev: Some(redru::Seq(1)) })
}

fn seg_name(first: u64) -> String {
    redru::internal::log::segment_name(redru::Seq(first))
}

/// Runs `f` over `0..n` on two threads, merging the cases.
fn split(n: usize, f: impl Fn(usize, &mut Cases) + Sync) -> Cases {
    let mut all = Cases::new();
    let parts: Vec<Cases> = std::thread::scope(|s| {
        let f = &f;
        let hs: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Cases::new();
                    for i in (t..n).step_by(2) {
                        f(i, &mut c);
                    }
                    c
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for p in parts {
        all.count += p.count;
        all.failures.extend(p.failures);
    }
    all
}

#[test]
fn every_truncation_and_bit_flip_of_the_log_is_recovered_exactly_or_refused() -> Result<(), Error> {
    let (log, states) = make_log(120)?;
    let lines = line_starts(&log);
    let name = seg_name(1);
    let segment = Path::new(DIR).join(&name);
    assert!(lines.len() > 100, "a log of 100+ records");
    let judge_bytes = |bytes: &[u8], first_bad: u64, intact_from: u64| {
        let outcome = open_outcome(&disk(&[(name.clone(), bytes)]));
        judge(&outcome, &expect(&lines, first_bad, intact_from, true), &states, 1, &segment)
    };
    let mut cases = split(log.len() + 1, |cut, c| {
        let what = format!("log cut at {cut}");
        match lines.iter().position(|&s| s == cut as u64) {
            // A cut at a line boundary leaves a clean, shorter log.
            Some(records) => {
                let outcome = open_outcome(&disk(&[(name.clone(), &log[..cut])]));
                c.check(what, judge(&outcome, &Expect::Clean { records: records as u64 }, &states, 1, &segment));
            }
            None => c.check(what, judge_bytes(&log[..cut], cut as u64, u64::MAX)),
        }
    });
    let flips = split(log.len() * 8, |bit, c| {
        let (i, b) = (bit / 8, bit % 8);
        let mut damaged = log.clone();
        damaged[i] ^= 1 << b;
        // A flipped newline joins its line with the next: the damage extends to the next line's end.
        let intact_from = if log[i] == b'\n' {
            lines.iter().find(|&&s| s > i as u64 + 1).copied().unwrap_or(u64::MAX)
        } else {
            i as u64 + 1
        };
        c.check(format!("log byte {i} bit {b} flipped"), judge_bytes(&damaged, i as u64, intact_from));
    });
    cases.count += flips.count;
    cases.failures.extend(flips.failures);
    let mut rng = Rng::new(42);
    for block in 0..log.len().div_ceil(4096) {
        let (start, end) = (block * 4096, ((block + 1) * 4096).min(log.len()));
        for garbage in [false, true] {
            let mut damaged = log.clone();
            if garbage {
                rng.fill(&mut damaged[start..end]);
            } else {
                damaged[start..end].fill(0);
            }
            let what = format!("log block {block} {}", if garbage { "garbage" } else { "zeroed" });
            cases.check(what, judge_bytes(&damaged, start as u64, end as u64));
        }
    }
    cases.assert_clean("log (every cut, every bit flip, 4 KiB blocks)");
    Ok(())
}

#[test]
fn damage_in_an_older_segment_is_always_refused() -> Result<(), Error> {
    let (log, states) = make_log(120)?;
    let lines = line_starts(&log);
    // Split the same records into two segments: 1..=60 and 61..=120.
    let split_at = lines[60] as usize;
    let (first, second) = log.split_at(split_at);
    let first_lines = line_starts(first);
    let (n1, n2) = (seg_name(1), seg_name(61));
    let segment = Path::new(DIR).join(&n1);
    let mut cases = Cases::new();
    let intact = open_outcome(&disk(&[(n1.clone(), first), (n2.clone(), second)]));
    cases.check("two intact segments".into(), judge(&intact, &Expect::Clean { records: 120 }, &states, 1, &segment));
    // Every 5th bit: the exhaustive sweep is the last segment's; here the rule is the same everywhere.
    let flips = split(first.len() * 8 / 5, |n, c| {
        let bit = n * 5;
        let (i, b) = (bit / 8, bit % 8);
        let mut damaged = first.to_vec();
        damaged[i] ^= 1 << b;
        let want = expect(&first_lines, i as u64, i as u64 + 1, false);
        let outcome = open_outcome(&disk(&[(n1.clone(), &damaged), (n2.clone(), second)]));
        c.check(format!("older segment byte {i} bit {b}"), judge(&outcome, &want, &states, 1, &segment));
    });
    cases.count += flips.count;
    cases.failures.extend(flips.failures);
    // A cut older segment leaves a gap before the next one: refused, naming the next segment.
    for cut in 0..first.len() {
        let outcome = open_outcome(&disk(&[(n1.clone(), &first[..cut]), (n2.clone(), second)]));
        let refused = match &outcome {
            Outcome::Corrupt { path, .. } => path == &segment || path == &Path::new(DIR).join(&n2),
            _ => false,
        };
        cases.check(
            format!("older segment cut at {cut}"),
            (!refused).then(|| format!("{outcome:?}, expected a refusal")),
        );
    }
    cases.assert_clean("older segment");
    Ok(())
}

/// A snapshot written by the engine: `keys` keys, an index, values padded to `pad` bytes.
fn make_snapshot(keys: u64, pad: usize) -> Result<(Vec<u8>, Data), Error> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new(DIR));
    let db = options(&fs).open(DIR)?;
    for i in 0..keys {
        db.set(format!("user:{i}"), json!({"name": format!("n{}", i % 3), "pad": "p".repeat(pad)}))?;
    }
    db.create_index("name")?;
    db.save()?;
    let data = data_of(&db);
    db.close()?;
    let bytes = fs
        .contents(&Path::new(DIR).join(redru::internal::snapshot::FILE_NAME))
        .map_err(|source| Error::Io { action: "reading", path: redru::internal::snapshot::FILE_NAME.into(), source })?;
    Ok((bytes, data))
}

#[test]
fn every_truncation_and_bit_flip_of_a_snapshot_is_refused() -> Result<(), Error> {
    let (snap, data) = make_snapshot(12, 8)?;
    let file = redru::internal::snapshot::FILE_NAME.to_owned();
    let path = Path::new(DIR).join(&file);
    // The log after a save is a segment that starts after the snapshot,
    // holding only its header (the snapshot names it: version 3).
    let (log_name, empty) = (seg_name(14), header(14));
    let judge_snapshot = |bytes: &[u8]| match open_outcome(&disk(&[(file.clone(), bytes), (log_name.clone(), &empty)]))
    {
        Outcome::BadSnapshot { path: p } if p == path => None,
        Outcome::Recovered { data: d, .. } if bytes == snap.as_slice() && d == data => None,
        other => Some(format!("{other:?}, expected a refusal naming {}", path.display())),
    };
    let mut cases = Cases::new();
    cases.check("intact snapshot".into(), judge_snapshot(&snap));
    let cuts = split(snap.len(), |cut, c| c.check(format!("snapshot cut at {cut}"), judge_snapshot(&snap[..cut])));
    let flips = split(snap.len() * 8, |bit, c| {
        let mut damaged = snap.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        c.check(format!("snapshot byte {} bit {} flipped", bit / 8, bit % 8), judge_snapshot(&damaged));
    });
    for part in [cuts, flips] {
        cases.count += part.count;
        cases.failures.extend(part.failures);
    }
    // A bigger snapshot for whole 4 KiB blocks.
    let (big, _) = make_snapshot(40, 300)?;
    let mut rng = Rng::new(9);
    for block in 0..big.len().div_ceil(4096) {
        for garbage in [false, true] {
            let mut damaged = big.clone();
            let range = block * 4096..((block + 1) * 4096).min(big.len());
            if garbage {
                rng.fill(&mut damaged[range]);
            } else {
                damaged[range].fill(0);
            }
            let outcome = open_outcome(&disk(&[(file.clone(), &damaged), (seg_name(42), &header(42))]));
            let ok = matches!(&outcome, Outcome::BadSnapshot { path: p } if p == &path);
            cases.check(format!("snapshot block {block} garbage={garbage}"), (!ok).then(|| format!("{outcome:?}")));
        }
    }
    cases.assert_clean("snapshot (every cut, every bit flip, 4 KiB blocks)");
    Ok(())
}

/// The classifier must be able to fail: a lenient replayer that ignores
/// checksums and skips lines it cannot parse changes state silently.
#[test]
fn negative_control_a_lenient_replayer_is_caught() -> Result<(), Error> {
    let (log, states) = make_log(120)?;
    let lines = line_starts(&log);
    let segment = Path::new(DIR).join(seg_name(1));
    let lenient = |bytes: &[u8]| {
        let mut data = Data::new();
        let mut last = 0;
        for line in bytes.split(|&b| b == b'\n') {
            let Some(payload) = line.get(redru::internal::record::PREFIX_LEN..) else { continue };
            let Ok((seq, record)) = redru::internal::record::decode_payload(payload) else { continue };
            last = seq.0;
            apply(&mut data, &record);
        }
        Outcome::Recovered { data, last, torn_at: None }
    };
    let mut caught = 0;
    for i in (0..log.len()).step_by(97) {
        let mut damaged = log.clone();
        damaged[i] ^= 0x01;
        let want = expect(&lines, i as u64, i as u64 + 1, true);
        if judge(&lenient(&damaged), &want, &states, 1, &segment).is_some() {
            caught += 1;
        }
    }
    eprintln!("negative control (lenient replay): caught in {caught} of {} flips", log.len().div_ceil(97));
    assert!(caught > 0, "the damage classifier never noticed a lenient replayer");
    Ok(())
}

fn apply(data: &mut Data, record: &redru::internal::record::Record) {
    use redru::internal::record::{BatchOp, Record};
    match record {
        Record::Set(k, v) => {
            data.insert(k.clone(), v.to_value());
        }
        Record::Delete(k) => {
            data.remove(k);
        }
        Record::Batch(ops) => {
            for op in ops {
                match op {
                    BatchOp::Set(k, v) => {
                        data.insert(k.clone(), v.to_value());
                    }
                    BatchOp::Delete(k) => {
                        data.remove(k);
                    }
                    BatchOp::Clear => data.clear(),
                    // This model has no clock: expiry is tested in `expiry`.
                    BatchOp::SetExpiring(k, v, _) => {
                        data.insert(k.clone(), v.to_value());
                    }
                    BatchOp::Expire(..) => {}
                }
            }
        }
        Record::Clear => data.clear(),
        _ => {}
    }
}
