//! Guards that every kind of record survives a reopen, from the log alone and
//! from a snapshot, in every durability mode, and that a second open of one
//! directory is refused with the holder's pid.

use std::time::Duration;

use crate::util::{TestResult, dump, segments};
use redru::{Batch, Db, Durability, Error, Options, json};

fn write_every_kind(db: &Db) -> redru::Result<()> {
    db.set("a", json!({"name": "Alice", "age": 30}))?;
    db.set("b", json!({"name": "Bob"}))?;
    db.set("c", json!(null))?;
    db.set("with space\nand newline", json!("x"))?;
    assert!(db.delete("c")?);
    assert!(!db.delete("c")?);
    db.batch(Batch::new().set("d", json!([1, 2.5, "three"])).delete("b").set("e", json!({"name": "Eve"})))?;
    db.create_index("name")?;
    db.create_unique_index("age")?;
    db.drop_index("age")?;
    Ok(())
}

fn expected() -> Vec<(String, serde_json::Value)> {
    vec![
        ("a".into(), json!({"name": "Alice", "age": 30})),
        ("d".into(), json!([1, 2.5, "three"])),
        ("e".into(), json!({"name": "Eve"})),
        ("with space\nand newline".into(), json!("x")),
    ]
}

fn check(db: &Db) -> redru::Result<()> {
    assert_eq!(dump(db), expected());
    let indexes = db.indexes();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert_eq!(indexes[0].field, "name");
    assert_eq!(indexes[0].entries, 2);
    assert_eq!(db.find("name", &json!("Eve"))?, ["e"]);
    Ok(())
}

#[test]
fn every_record_kind_survives_reopen_from_the_log() -> TestResult {
    let modes =
        [Durability::Always, Durability::Periodic(Duration::from_millis(5)), Durability::Never, Durability::Buffered];
    for durability in modes {
        let dir = tempfile::tempdir()?;
        let db = Options::new().durability(durability).open(dir.path())?;
        write_every_kind(&db)?;
        check(&db)?;
        db.close()?;
        let db = Db::open(dir.path())?;
        check(&db)?;
        assert_eq!(db.recovery().records_replayed, 9, "{durability}");
        assert!(db.recovery().torn_tail.is_none());
    }
    Ok(())
}

#[test]
fn buffered_writes_survive_sync_and_drop() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Buffered).buffer_flush_interval(None).open(dir.path())?;
    write_every_kind(&db)?;
    db.sync()?;
    assert_eq!(db.stats().durable_seq, 9);
    db.set("after-sync", json!(1))?;
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.recovery().records_replayed, 10);
    assert_eq!(db.get_value("after-sync").as_ref(), Some(&json!(1)), "dropping the handle flushes the buffer");
    db.delete("after-sync")?;
    check(&db)?;
    Ok(())
}

/// The log's byte count, the log itself and the segments a save leaves are the
/// same whether records were buffered or written one by one.
#[test]
fn buffered_and_unbuffered_logs_are_the_same_bytes() -> TestResult {
    let mut seen = Vec::new();
    for durability in [Durability::Never, Durability::Buffered] {
        let dir = tempfile::tempdir()?;
        let db = Options::new().durability(durability).buffer_bytes(200).open(dir.path())?;
        write_every_kind(&db)?;
        let counted = db.stats().wal_bytes;
        db.sync()?;
        assert_eq!(db.stats().wal_bytes, counted, "{durability}");
        let log: Vec<u8> =
            segments(dir.path()).iter().map(|p| crate::util::read_segment(p)).collect::<Result<Vec<_>, _>>()?.concat();
        assert_eq!(log.len() as u64, counted, "{durability}");
        db.save()?;
        db.set("z", json!(1))?;
        let stats = db.stats();
        db.close()?;
        seen.push((durability, log, stats.wal_bytes, stats.wal_segments, stats.durability));
    }
    assert_eq!(seen[0].1, seen[1].1, "the same log lines");
    assert_eq!((seen[0].2, seen[0].3), (seen[1].2, seen[1].3));
    assert_eq!((seen[0].4.as_str(), seen[1].4.as_str()), ("never", "buffered"));
    Ok(())
}

#[test]
fn the_buffer_flush_thread_writes_the_buffer_by_itself() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new()
        .durability(Durability::Buffered)
        .buffer_flush_interval(Some(Duration::from_millis(10)))
        .open(dir.path())?;
    db.set("k", json!(1))?;
    let counted = db.stats().wal_bytes;
    let in_files = || -> u64 {
        segments(dir.path()).iter().filter_map(|p| crate::util::read_segment(p).ok()).map(|d| d.len() as u64).sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while in_files() < counted {
        assert!(std::time::Instant::now() < deadline, "the buffer was never written: {:?}", db.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(in_files(), counted);
    assert_eq!(db.stats().wal_syncs, 0, "written, not synced");
    Ok(())
}

#[test]
fn clear_survives_reopen_and_keeps_index_definitions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    write_every_kind(&db)?;
    assert_eq!(db.clear()?, 4);
    db.set("z", json!({"name": "Zed"}))?;
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(dump(&db), vec![("z".to_string(), json!({"name": "Zed"}))]);
    assert_eq!(db.find("name", &json!("Zed"))?, ["z"]);
    assert_eq!(db.indexes()[0].entries, 1);
    Ok(())
}

#[test]
fn save_moves_everything_into_the_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    write_every_kind(&db)?;
    let report = db.save()?;
    assert!(!report.unchanged);
    assert_eq!(report.keys, 4);
    assert_eq!(report.seq, 9);
    assert_eq!(report.segments_removed, 1);
    assert!(db.save()?.unchanged, "nothing changed since the last save");
    // The snapshot is plain JSON.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("database.json"))?)?;
    assert_eq!(doc["data"]["a"]["name"], json!("Alice"));
    assert_eq!(doc["indexes"], json!([{"field": "name", "unique": false}]));
    // One segment remains, holding only its header, ready for the next record.
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1);
    assert_eq!(crate::util::record_bytes(&segs[0]), 0);
    drop(db);
    let db = Db::open(dir.path())?;
    check(&db)?;
    assert_eq!(db.recovery().records_replayed, 0);
    assert_eq!(db.recovery().snapshot_seq, 9);
    // Writes after the snapshot continue the sequence.
    db.set("f", json!(1))?;
    assert_eq!(db.stats().last_seq, 10);
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.get_value("f").as_ref(), Some(&json!(1)));
    assert_eq!(db.recovery().records_replayed, 1);
    Ok(())
}

#[test]
fn automatic_compaction_keeps_everything() -> TestResult {
    for durability in [Durability::Never, Durability::Buffered] {
        automatic_compaction_keeps_everything_in(durability)?;
    }
    Ok(())
}

fn automatic_compaction_keeps_everything_in(durability: Durability) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db =
        Options::new().durability(durability).auto_compact_min_bytes(4096).auto_compact_ratio(1.0).open(dir.path())?;
    for i in 0..3000 {
        db.set(format!("k{i:05}"), json!({"i": i, "pad": "xxxxxxxxxxxxxxxxxxxxxxxx"}))?;
        if i % 7 == 0 {
            db.delete(&format!("k{:05}", i / 2))?;
        }
    }
    let model = dump(&db);
    db.close()?;
    let db = Db::open(dir.path())?;
    assert_eq!(dump(&db), model);
    let recovery = db.recovery();
    assert!(recovery.snapshot_seq > 0, "a compaction ran: {recovery:?}");
    // How much the log still holds depends on when the last background
    // compaction ran (timing); that it holds only what came after the
    // snapshot does not.
    let last = db.stats().last_seq;
    assert_eq!(recovery.snapshot_seq + recovery.records_replayed, last, "{recovery:?}");
    assert!(recovery.records_replayed < last, "the log was trimmed: {recovery:?}");
    Ok(())
}

#[test]
fn a_second_open_is_refused_with_the_pid() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    match Db::open(dir.path()) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = Db::open(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("locked") && message.contains(&std::process::id().to_string()), "{message}");
    db.close()?;
    let db = Db::open(dir.path())?;
    drop(db);
    Ok(())
}

#[cfg(unix)]
#[test]
fn files_are_private() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("new");
    let db = Db::open(&dir)?;
    db.set("k", json!(1))?;
    db.save()?;
    db.set("k2", json!(2))?;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&dir)?, 0o700);
    assert_eq!(mode(&dir.join("database.json"))?, 0o600);
    for seg in segments(&dir) {
        assert_eq!(mode(&seg)?, 0o600);
    }
    Ok(())
}

#[test]
fn unique_violations_change_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_unique_index("email")?;
    db.set("u1", json!({"email": "a@x"}))?;
    let wal_before = db.stats().wal_bytes;
    let err = db.set("u2", json!({"email": "a@x"}));
    assert!(matches!(err, Err(Error::UniqueViolation { ref existing, .. }) if existing == "u1"), "{err:?}");
    let err = db.batch(Batch::new().set("u3", json!({"email": "b@x"})).set("u4", json!({"email": "b@x"})));
    assert!(matches!(err, Err(Error::UniqueViolation { .. })), "{err:?}");
    assert_eq!(db.stats().wal_bytes, wal_before, "nothing was logged");
    assert_eq!(db.len(), 1);
    assert!(db.get("u3").is_none());
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.keys(), ["u1"]);
    Ok(())
}

#[test]
fn the_periodic_flusher_makes_writes_durable_by_itself() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Periodic(Duration::from_millis(20))).open(dir.path())?;
    for i in 0..10 {
        db.set(format!("k{i}"), json!(i))?;
    }
    // Writes return before any fsync; the background flusher catches up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db.stats().durable_seq < 10 {
        assert!(std::time::Instant::now() < deadline, "the flusher never synced: {:?}", db.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(db.stats().wal_syncs >= 1);
    Ok(())
}

/// A value serde_json could not read back from the log is refused before it
/// is logged; the deepest readable one survives a reopen.
#[test]
fn values_too_deep_to_read_back_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let nested = |depth: usize| -> serde_json::Value {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        serde_json::from_str(&text).unwrap_or_default()
    };
    let deepest = nested(redru::MAX_DEPTH);
    db.set("ok", &deepest)?;
    let too_deep = serde_json::Value::Array(vec![deepest.clone()]);
    assert!(matches!(db.set("deep", &too_deep), Err(Error::InvalidValue { .. })));
    assert!(matches!(db.batch(Batch::new().set("deep", &too_deep)), Err(Error::InvalidValue { .. })));
    let seq = db.stats().last_seq;
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.stats().last_seq, seq, "nothing refused was logged");
    assert_eq!(db.get_value("ok"), Some(deepest));
    assert!(db.get("deep").is_none());
    Ok(())
}

/// A value written as text that spans lines is stored compact: a raw line
/// break would split its log record's line and the next open would refuse
/// the log as corrupt.
#[test]
fn values_given_as_text_spanning_lines_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.set("pretty", redru::Doc::parse("{\n  \"a\": [1,\r\n 2]\n}")?)?;
    assert!(redru::Doc::parse("{\"x\": 1e400}").is_err(), "a number f64 cannot hold is refused");
    assert!(redru::Doc::parse("\"\\ud888\"").is_err(), "an unpaired surrogate is refused");
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.get("pretty").map(|d| d.as_str().to_owned()).as_deref(), Some(r#"{"a":[1,2]}"#));
    Ok(())
}

/// serde_json (built with `raw_value`) reads an object whose first member is
/// `$serde_json::private::RawValue` as a wrapper: such a value would not
/// read back as written (the next open refused the log), so `set` refuses it
/// and logs nothing; the same name as plain data is kept.
#[test]
fn serde_json_reserved_member_names_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_index("a")?;
    for bad in [
        json!({"$serde_json::private::RawValue": "a\"b"}),
        json!({"a": [{"$serde_json::private::RawValue": "1"}]}),
        json!({"a": {"$serde_json::private::Number": "1"}}),
    ] {
        assert!(matches!(db.set("k", &bad), Err(Error::InvalidValue { .. })), "{bad} was accepted");
        assert!(matches!(db.batch(Batch::new().set("k", &bad)), Err(Error::InvalidValue { .. })), "{bad} in a batch");
    }
    let fine = json!({"a": "$serde_json::private::RawValue", "b$serde_json::private::": 1});
    db.set("fine", &fine)?;
    let seq = db.stats().last_seq;
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.stats().last_seq, seq, "nothing refused was logged");
    assert_eq!(db.get_value("fine"), Some(fine));
    assert!(db.get("k").is_none());
    Ok(())
}
