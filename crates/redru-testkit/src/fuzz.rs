//! One function per fuzz target: each takes raw bytes, must never panic on
//! bad input, and asserts the properties that hold on good input.
//! Used by fuzz/fuzz_targets/*.rs and by the engine's tests (fuzz_corpus),
//! which replay the checked-in corpus through the same functions. The shell
//! parser's target lives in redru-cli (`redru_cli::shell::fuzz_parse`).
#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use redru::internal::record::{self, BatchOp, Record, Seq};
use redru::internal::snapshot::Frozen;
use redru::vfs::Vfs;
use redru::{Doc, Value};
use redru::{Durability, Options};

use crate::sim;
use crate::sim::explore::{Tally, check_image, check_run};
use crate::sim::model::{Config, Run};
use crate::sim::{Rng, SimFs};

/// One WAL line from raw bytes: decodes or says why not. A decoded record
/// re-encodes to a line that decodes to the same record and re-encodes to the
/// very same bytes; its values are the payload's (by an independent parse)
/// and every one reads back (see `check_doc`). A decoded segment marker is
/// exactly the bytes it encodes to. The decoder's fast path for plain
/// records agrees with its full decoder on every payload.
pub fn record_decode(data: &[u8]) {
    // The fast path for plain records reads exactly what the full decoder does.
    if let Some(payload) = data.get(record::PREFIX_LEN..) {
        assert_eq!(record::decode_payload(payload), record::decode_payload_full(payload), "the fast path disagrees");
    }
    if let Ok((seq, rec)) = record::decode(data) {
        for doc in docs_of(&rec) {
            check_doc(doc);
        }
        same_values_as_payload(&data[record::PREFIX_LEN..], &rec);
        roundtrip(seq, &rec);
    }
    // A segment marker decodes only from the exact bytes it encodes to.
    if let Ok(record::Line::Marker(marker)) = record::decode_line(data) {
        let again = record::marker_line(marker);
        assert_eq!(&again[..again.len() - 1], data, "a marker decoded from bytes it does not encode to");
    }
}

fn docs_of(rec: &Record) -> Vec<&Doc> {
    match rec {
        Record::Set(_, doc) | Record::SetExpiring(_, doc, _) => vec![doc],
        Record::Batch(ops) => ops
            .iter()
            .filter_map(|op| match op {
                BatchOp::Set(_, doc) | BatchOp::SetExpiring(_, doc, _) => Some(doc),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Every value redru holds must read back: valid JSON that serde_json parses
/// (so within its nesting limit, numbers within f64 range), and free of raw
/// newlines (a value is written inside one WAL line and one snapshot line).
fn check_doc(doc: &Doc) {
    if let Err(e) = serde_json::from_str::<Value>(doc.as_str()) {
        panic!("a loaded value does not parse back ({e}): {:.200}", doc.as_str());
    }
    assert!(doc.depth() <= redru::MAX_DEPTH, "a loaded value nests {} deep", doc.depth());
    assert!(
        !doc.as_str().contains('\n'),
        "a loaded value holds a raw newline (it would split its WAL line): {:.200}",
        doc.as_str()
    );
}

/// When serde_json can parse the whole payload (the payload nests one level
/// deeper than a set's value, two for a batch's), the record's values equal
/// the ones it finds.
fn same_values_as_payload(payload: &[u8], rec: &Record) {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else { return };
    match rec {
        Record::Set(_, doc) | Record::SetExpiring(_, doc, _) => {
            assert!(*doc == v["value"], "set value differs from the payload's: {doc:?}")
        }
        Record::Batch(ops) => {
            let Some(raw_ops) = v["ops"].as_array() else { panic!("a batch without an ops array decoded") };
            assert_eq!(raw_ops.len(), ops.len());
            for (op, raw) in ops.iter().zip(raw_ops) {
                if let BatchOp::Set(_, doc) | BatchOp::SetExpiring(_, doc, _) = op {
                    assert!(*doc == raw["value"], "batch value differs from the payload's: {doc:?}");
                }
            }
        }
        _ => {}
    }
}

fn roundtrip(seq: Seq, rec: &Record) {
    let mut line = Vec::new();
    record::encode(seq, rec, &mut line);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(
        line.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one record, one line: {:?}",
        String::from_utf8_lossy(&line)
    );
    let again = record::decode(&line[..line.len() - 1]);
    let Ok((s, r)) = &again else { panic!("re-encoded record does not decode: {again:?}") };
    assert!(*s == seq && r == rec, "re-encoded record does not decode the same: {again:?}");
    // Value for value and text for text: the encoder copies a value's text.
    let texts = |rec: &Record| docs_of(rec).iter().map(|d| d.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(texts(r), texts(rec));
    let mut line2 = Vec::new();
    record::encode(*s, r, &mut line2);
    assert!(
        line2 == line,
        "decode then encode changed the line: {:?} vs {:?}",
        String::from_utf8_lossy(&line),
        String::from_utf8_lossy(&line2)
    );
}

/// One WAL line whose checksum is fixed up first, so the fuzzer explores the payload decoder.
pub fn record_fixed_crc(data: &[u8]) {
    let payload: Vec<u8> = data.iter().copied().filter(|&b| b != b'\n').collect();
    let mut line = format!("{:08x} ", crc32fast::hash(&payload)).into_bytes();
    line.extend_from_slice(&payload);
    record_decode(&line);
}

const DIR: &str = "/db";

fn disk_with(name: &str, bytes: &[u8]) -> SimFs {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new(DIR));
    let path = Path::new(DIR).join(name);
    if let Ok(file) = fs.create_new(&path) {
        let _ = file.append(bytes);
        let _ = file.sync();
    }
    let _ = fs.sync_dir(Path::new(DIR));
    fs
}

fn options(fs: &SimFs) -> Options {
    Options::new().vfs(fs.vfs()).durability(Durability::Always).auto_compact(false)
}

/// A whole WAL file: opening either recovers (and a second open finds the same
/// state, with nothing left to cut) or refuses; it never panics.
pub fn wal_replay(data: &[u8]) {
    let _ = redru::internal::log::scan(data, Seq(1), None, |_| Ok(()));
    let fs = disk_with(&redru::internal::log::segment_name(Seq(1)), data);
    let Ok(db) = options(&fs).open(DIR) else { return };
    // Against an independent reading of the lines (the format as documented):
    // what opened is exactly the records before the first bad line, and a cut
    // torn tail starts there.
    let (expected, first_bad) = independent_replay(data);
    let got: BTreeMap<String, Value> = db.keys().into_iter().filter_map(|k| db.get_value(&k).map(|v| (k, v))).collect();
    assert!(got == expected, "opened {got:?}, the lines before the first bad one hold {expected:?}");
    match (&db.recovery().torn_tail, first_bad) {
        (Some(torn), Some(at)) => assert_eq!(torn.offset, at as u64, "the torn tail was not cut at the first bad line"),
        (Some(torn), None) => panic!("a torn tail was cut at {} in a log whose every line is good", torn.offset),
        (None, Some(at)) => panic!("the bad line at byte {at} was neither cut nor refused"),
        (None, None) => {}
    }
    let (keys, last) = (db.keys(), db.stats().last_seq);
    let values: Vec<_> = keys.iter().map(|k| db.get(k)).collect();
    // The recovered log takes a new write.
    let wrote = db.set("fuzz:after", serde_json::json!(1)).is_ok();
    drop(db);
    let db = options(&fs).open(DIR);
    let db = match db {
        Ok(db) => db,
        Err(e) => panic!("a recovered log was refused on the next open: {e}"),
    };
    assert!(db.recovery().torn_tail.is_none(), "a second open cut again: {:?}", db.recovery().torn_tail);
    if wrote {
        assert_eq!(db.stats().last_seq, last + 1);
        assert!(db.get("fuzz:after").is_some());
    } else {
        assert_eq!(db.keys(), keys);
        let again: Vec<_> = keys.iter().map(|k| db.get(k)).collect();
        assert_eq!(again, values);
    }
}

/// Replays log lines as docs/design.md describes them, without the engine's
/// code: `CCCCCCCC {payload}\n`, the crc32 of the payload in 8 lowercase hex
/// digits, sequence numbers 1, 2, 3...; stops at the first line that is not
/// such a record. The map after the good lines, and where the first bad line
/// starts (None when every line is good, and no bytes follow the last one).
fn independent_replay(data: &[u8]) -> (BTreeMap<String, Value>, Option<usize>) {
    let mut map = BTreeMap::new();
    let mut at = 0;
    let mut seq = 1u64;
    // The chained format's header of segment 1 (design.md: "Segment headers
    // and seals"), spelled out here rather than taken from redru's codec.
    let payload = br#"{"op":"segment","first":1}"#;
    let header = [format!("{:08x} ", crc32fast::hash(payload)).as_bytes(), payload, b"\n"].concat();
    if data.starts_with(&header) {
        at = header.len();
    }
    while at < data.len() {
        let Some(len) = data[at..].iter().position(|&b| b == b'\n') else { return (map, Some(at)) };
        let line = &data[at..at + len];
        let Some(ops) = good_line(line, seq) else { return (map, Some(at)) };
        for op in ops {
            apply_op(&mut map, op);
        }
        seq += 1;
        at += len + 1;
    }
    (map, None)
}

/// One operation of a good line.
enum Op {
    Set(String, Value),
    Delete(String),
    Clear,
    Other,
}

fn good_line(line: &[u8], seq: u64) -> Option<Vec<Op>> {
    let (crc, payload) = (line.get(..8)?, line.get(9..)?);
    if line.get(8) != Some(&b' ') || !crc.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    if format!("{:08x}", crc32fast::hash(payload)).as_bytes() != crc {
        return None;
    }
    // Members kept as raw text: a value may nest as deep as redru allows,
    // one level more than serde_json parses inside the record around it.
    type Raw = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;
    let record: Raw = serde_json::from_slice(payload).ok()?;
    let parse = |r: &Raw, name: &str| -> Option<Value> { serde_json::from_str(r.get(name)?.get()).ok() };
    if parse(&record, "seq")?.as_u64()? != seq {
        return None;
    }
    let op = |r: &Raw| -> Option<Op> {
        let key = || parse(r, "key").and_then(|k| k.as_str().map(str::to_owned));
        Some(match parse(r, "op")?.as_str()? {
            "set" => Op::Set(key()?, parse(r, "value")?),
            "del" => Op::Delete(key()?),
            "clear" => Op::Clear,
            "create_index" | "drop_index" => Op::Other,
            _ => return None,
        })
    };
    match parse(&record, "op")?.as_str()? {
        "batch" => {
            let ops: Vec<Raw> = serde_json::from_str(record.get("ops")?.get()).ok()?;
            ops.iter().map(op).collect()
        }
        _ => op(&record).map(|o| vec![o]),
    }
}

fn apply_op(map: &mut BTreeMap<String, Value>, op: Op) {
    match op {
        Op::Set(k, v) => {
            map.insert(k, v);
        }
        Op::Delete(k) => {
            map.remove(&k);
        }
        Op::Clear => map.clear(),
        Op::Other => {}
    }
}

/// Snapshot bytes: as they are, and with a correct SHA-256 trailer appended
/// (so the fuzzer gets past the digest). Load either succeeds or refuses; a
/// load is checked by `check_snapshot`.
pub fn snapshot_load(data: &[u8]) {
    let path = Path::new("/db/database.json");
    if let Ok((state, info)) = redru::internal::snapshot::parse(path, data, None) {
        check_snapshot(data, info.keys, info.continues, &Frozen::of(&state, 0));
    }
    use sha2::Digest;
    let body = data.strip_suffix(b"}\n").unwrap_or(data);
    let mut fixed = body.to_vec();
    let digest = sha2::Sha256::digest(&fixed);
    fixed.extend_from_slice(format!(",\"sha256\":\"{}\"}}\n", redru::internal::snapshot::hex(&digest)).as_bytes());
    if let Ok((state, info)) = redru::internal::snapshot::parse(path, &fixed, None) {
        assert_eq!(info.bytes, fixed.len() as u64);
        check_snapshot(&fixed, info.keys, info.continues, &Frozen::of(&state, 0));
    }
}

/// A loaded snapshot: its key count is right, every value reads back
/// ([`check_doc`]); when serde_json parses the whole file, the loaded entries
/// are exactly its `data` members, value for value; written back out it loads
/// to the same entries, text for text, and writing that again gives the same bytes.
fn check_snapshot(bytes: &[u8], keys: usize, continues: Option<redru::Seq>, frozen: &Frozen) {
    let loaded = entries(frozen);
    assert_eq!(keys, loaded.len());
    for (_, doc) in &loaded {
        check_doc(doc);
    }
    if let Ok(file) = serde_json::from_slice::<Value>(bytes) {
        // The header as the file has it: format, version, sequence number, index definitions.
        assert_eq!(file["format"], "redru-snapshot", "a snapshot of another format loaded");
        assert!(matches!(file["version"].as_u64(), Some(1..=3)), "a snapshot of another version loaded");
        // Version 3: the log's continuation, exactly the record after `seq`.
        assert_eq!(file["continues"].as_u64(), continues.map(|c| c.0), "the loaded continuation is not the file's");
        assert_eq!(
            file["version"].as_u64() == Some(3),
            continues.is_some(),
            "`continues` without version 3, or the reverse"
        );
        assert!(
            continues.is_none_or(|c| Some(c.0) == file["seq"].as_u64().map(|s| s + 1)),
            "a continuation not after `seq`"
        );
        // Deadlines (version 2) as the file has them.
        let file_deadlines: BTreeMap<String, u64> = file["expires"]
            .as_object()
            .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
            .unwrap_or_default();
        let loaded_deadlines: BTreeMap<String, u64> =
            frozen.map.iter_expiring(0).filter(|(_, _, e)| *e != 0).map(|(k, _, e)| (k.to_string(), e)).collect();
        assert_eq!(file_deadlines, loaded_deadlines, "the loaded deadlines are not the file's");
        assert_eq!(file["seq"].as_u64(), Some(frozen.seq.0), "the loaded sequence number is not the file's");
        let defs: Option<Vec<(String, bool)>> = file["indexes"].as_array().map(|list| {
            list.iter().filter_map(|d| Some((d["field"].as_str()?.to_owned(), d["unique"].as_bool()?))).collect()
        });
        let loaded_defs: Vec<(String, bool)> = frozen.defs.iter().map(|d| (d.field.clone(), d.unique)).collect();
        assert_eq!(defs.as_ref(), Some(&loaded_defs), "the loaded index definitions are not the file's");
        let Some(data) = file["data"].as_object() else { panic!("a snapshot without a data object loaded") };
        assert_eq!(data.len(), loaded.len(), "loaded entries differ from the file's data members");
        for (key, doc) in &loaded {
            let Some(v) = data.get(key.as_str()) else { panic!("loaded key {key:?} is not in the file") };
            assert!(*doc == *v, "key {key:?}: loaded {doc:?}, file has {v}");
        }
    }
    let written = write_snapshot(frozen);
    let Ok((again, info)) = redru::internal::snapshot::parse(Path::new("/db/again.json"), &written, None) else {
        panic!("a loaded snapshot, written back, does not load: {:.400}", String::from_utf8_lossy(&written))
    };
    assert_eq!(info.keys, keys);
    let texts = |e: Vec<(String, Doc)>| e.into_iter().map(|(k, d)| (k, d.as_str().to_owned())).collect::<Vec<_>>();
    assert_eq!(texts(entries(&Frozen::of(&again, 0))), texts(loaded));
    assert!(write_snapshot(&Frozen::of(&again, 0)) == written, "a rewritten snapshot changed");
}

/// A snapshot's entries, sorted by key.
fn entries(frozen: &Frozen) -> Vec<(String, Doc)> {
    frozen.map.sorted(0).into_iter().map(|(k, d)| (k.to_string(), d.clone())).collect()
}

fn write_snapshot(frozen: &Frozen) -> Vec<u8> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new(DIR));
    let path = Path::new(DIR).join("out.json");
    if let Err(e) = redru::internal::snapshot::write_file(&*fs.vfs(), &path, frozen, None) {
        panic!("writing a loaded snapshot back failed: {e}");
    }
    match fs.contents(&path) {
        Ok(bytes) => bytes,
        Err(e) => panic!("reading the written snapshot: {e}"),
    }
}

/// The model: operations spelled by the bytes (each choice one byte: see
/// `sim::model::workload_from_bytes`) run on the simulated file system, then
/// the run is judged as the power-loss suite judges it (`sim::explore`): no
/// ordering rule broken, no operation failed on a healthy disk, nothing
/// acknowledged lost; crash images taken before mutations the bytes choose
/// reopen to a state of the model between "acknowledged" and "started", with
/// acknowledged backups intact, some crashing again during recovery.
///
/// Layout: 8 bytes of seed (crash images), 1 byte of configuration, then the
/// operations.
pub fn model(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let seed = u64::from_le_bytes([data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7]]);
    let durability = match data[8] % 3 {
        0 => Durability::Always,
        1 => Durability::Never,
        _ => Durability::Buffered,
    };
    let auto_compact = (data[8] / 3 % 2 == 1).then_some(600);
    // The negative control: writes acknowledged before their fsync.
    let skip_sync = redru::internal::planted::on(redru::internal::planted::ACK_BEFORE_SYNC);
    let config = Config { durability, auto_compact, skip_sync };
    let ops = sim::model::workload_from_bytes(&data[9..], 40);
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    fs.record(true);
    let mut run = Run::start(fs.clone(), fs.vfs(), config);
    run.run_all(&ops);
    run.close();
    fs.record(false);
    let mut tally = Tally::default();
    check_run(&run, &fs, "the run", &mut tally);
    let mut points = fs.take_history();
    points.push(std::sync::Arc::new(fs.state()));
    let mut rng = Rng::new(seed);
    for _ in 0..4 {
        let n = rng.below_usize(points.len());
        let image = points[n].crash_image(&mut rng);
        if let Err(why) = check_image(&run, n as u64, image, &mut rng, &mut tally) {
            tally.failures.push(format!("crash before mutation {n}: {why}"));
        }
    }
    let found: Vec<&String> = tally.rule_breaches.iter().chain(&tally.failures).collect();
    assert!(found.is_empty(), "{config:?}, {} ops: {found:#?}", ops.len());
}
