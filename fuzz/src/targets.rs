//! One function per fuzz target: each takes raw bytes, must never panic on
//! bad input, and asserts the properties that hold on good input.
//! Used by fuzz/fuzz_targets/*.rs and, through `#[path]`, by tests/fuzz_corpus.rs.
#![allow(dead_code, clippy::panic)]

use std::path::Path;

use redru::record::{self, Seq};
use redru::vfs::Vfs;
use redru::{Durability, Options};

#[path = "../../tests/sim/mod.rs"]
pub mod sim;

#[allow(dead_code, clippy::all)]
#[path = "../../src/bin/redru/shell/parser.rs"]
mod parser;

use sim::model::{Config, Run};
use sim::{Rng, SimFs};

/// One WAL line from raw bytes: decodes or says why not; a decoded record re-encodes to a line that decodes the same.
pub fn record_decode(data: &[u8]) {
    if let Ok((seq, rec)) = record::decode(data) {
        roundtrip(seq, &rec);
    }
}

fn roundtrip(seq: Seq, rec: &record::Record) {
    let mut line = Vec::new();
    record::encode(seq, rec, &mut line);
    assert_eq!(line.last(), Some(&b'\n'));
    let again = record::decode(&line[..line.len() - 1]);
    assert!(
        matches!(&again, Ok((s, r)) if *s == seq && r == rec),
        "re-encoded record does not decode the same: {again:?}"
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
    let _ = redru::wal::scan(data, Seq(1), true, |_| Ok(()));
    let fs = disk_with(&redru::wal::segment_name(Seq(1)), data);
    let Ok(db) = options(&fs).open(DIR) else { return };
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

/// Snapshot bytes: as they are, and with a correct SHA-256 trailer appended
/// (so the fuzzer gets past the digest). Load either succeeds or refuses.
pub fn snapshot_load(data: &[u8]) {
    let path = Path::new("/db/database.json");
    let _ = redru::snapshot::parse(path, data);
    use sha2::Digest;
    let body = data.strip_suffix(b"}\n").unwrap_or(data);
    let mut fixed = body.to_vec();
    let digest = sha2::Sha256::digest(&fixed);
    fixed.extend_from_slice(format!(",\"sha256\":\"{}\"}}\n", redru::snapshot::hex(&digest)).as_bytes());
    if let Ok((state, info)) = redru::snapshot::parse(path, &fixed) {
        assert_eq!(info.keys, state.map.len());
        assert_eq!(info.bytes, fixed.len() as u64);
    }
}

/// The shell's command parser: any line parses or errors, never panics.
pub fn shell_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parser::is_incomplete(text);
    for line in text.lines() {
        let _ = parser::parse(line);
    }
}

/// The model: operations decoded from the bytes run on the simulated file
/// system; at crash points chosen by the bytes, every crash image reopens to a
/// state of the model between "acknowledged" and "started".
pub fn model(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let seed = u64::from_le_bytes([data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7]]);
    let config = match data[8] % 4 {
        0 => Config { durability: Durability::Always, auto_compact: None, skip_sync: false },
        1 => Config { durability: Durability::Always, auto_compact: Some(600), skip_sync: false },
        2 => Config { durability: Durability::Never, auto_compact: None, skip_sync: false },
        _ => Config { durability: Durability::Never, auto_compact: Some(600), skip_sync: false },
    };
    // Each further byte picks one step (the workload generator, driven by it).
    let ops: Vec<_> = data[9..]
        .iter()
        .take(40)
        .enumerate()
        .flat_map(|(i, &b)| sim::model::workload(&mut Rng::new(seed ^ ((i as u64) << 32) ^ u64::from(b)), 1))
        .collect();
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    fs.record(true);
    let mut run = Run::start(fs.clone(), fs.vfs(), config);
    run.run_all(&ops);
    run.close();
    fs.record(false);
    let mut points = fs.take_history();
    points.push(std::sync::Arc::new(fs.state()));
    let mut rng = Rng::new(seed);
    for _ in 0..4 {
        let n = rng.below_usize(points.len());
        let image = SimFs::from_state(points[n].crash_image(&mut rng));
        let (lo, hi) = run.bounds(n as u64);
        let recover = Config { durability: Durability::Always, auto_compact: None, skip_sync: false };
        let db = match recover.options(image.vfs()).open(DIR) {
            Ok(db) => db,
            Err(e) => panic!("crash before mutation {n}: reopen failed: {e}"),
        };
        if let Err(why) = run.check_recovered(&db, lo, hi) {
            panic!("crash before mutation {n}: {why}");
        }
    }
}
