//! Guards expiry: a key is visible until the millisecond before its
//! deadline and invisible to every read from the deadline on; deadlines
//! survive compaction (NeDB loses its TTL index there), reopen, backup,
//! restore, export and import; the sweeper removes expired keys by logging
//! their deletion; a read-only handle hides expired keys and changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{TestResult, dir_contents, dump};
use redru::{Batch, Clock, Db, ManualClock, Options, Query, Ttl, json};

/// 2025-12-01T00:00:00Z, a plausible "now" for the fake clock.
const T0: u64 = 1_764_547_200_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Options with a fake clock and no background sweeper (tests sweep on demand).
fn opts(clock: &Arc<ManualClock>) -> Options {
    Options::new().clock(clock.clone()).sweep_interval(None)
}

/// The NeDB defect (its TTL index is lost when the datafile is compacted):
/// a deadline set before an automatic compaction is still in force after
/// it, and after a reopen from the compacted files.
#[test]
fn expiry_survives_automatic_compaction_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let options = || opts(&clock).auto_compact_min_bytes(4096).auto_compact_ratio(0.5);
    let db = options().open(dir.path())?;
    db.set_with_ttl("session", json!({"user": 7}), Duration::from_secs(60))?;
    for i in 0..200 {
        db.set(format!("filler:{i}"), json!({"i": i, "pad": "x".repeat(40)}))?;
    }
    db.__test_wait_compaction();
    assert!(db.stats().compactions >= 1, "no automatic compaction ran");
    let snapshot = std::fs::read_to_string(dir.path().join("database.json"))?;
    assert!(snapshot.contains(&format!("\"expires\":{{\"session\":{}}}", T0 + 60_000)), "{snapshot:.300}");
    assert_eq!(db.ttl("session").left(), Some(Duration::from_secs(60)));
    db.close()?;

    let db = options().open(dir.path())?;
    assert_eq!(db.ttl("session"), Ttl::Expires { left: Duration::from_secs(60), at: at(T0 + 60_000) });
    clock.set(T0 + 59_999);
    assert_eq!(db.get_value("session"), Some(json!({"user": 7})));
    clock.set(T0 + 60_000);
    assert_eq!(db.get_value("session"), None);
    assert_eq!(db.ttl("session"), Ttl::Missing);
    assert_eq!(db.len(), 200);
    Ok(())
}

/// Every read at the boundary: the millisecond before the deadline the key
/// is there, at the deadline it is gone, before any sweep.
#[test]
fn every_read_hides_a_key_from_its_deadline_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.create_index("name")?;
    db.create_ordered_index("age")?;
    db.set_with_ttl("u:1", json!({"name": "Ann", "age": 30}), ms(1000))?;
    db.set("u:2", json!({"name": "Bob", "age": 40}))?;

    let seen = |db: &Db| -> Result<Vec<usize>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        let mut export = Vec::new();
        db.export(&mut export, true)?;
        out.push(db.get("u:1").is_some() as usize);
        out.push(db.get_value("u:1").is_some() as usize);
        out.push(db.get_as::<serde_json::Value>("u:1")?.is_some() as usize);
        out.push(db.get_with_seq("u:1").is_some() as usize);
        out.push(db.contains("u:1") as usize);
        out.push(db.len());
        out.push(db.stats().keys);
        out.push(db.keys().len());
        out.push(db.scan_prefix("u:").len());
        out.push(db.find("name", &json!("Ann"))?.len());
        out.push(db.find_entries("name", &json!("Ann"))?.len());
        out.push(db.query(&Query::parse("name = Ann")?)?.entries.len());
        out.push(db.query(&Query::parse("age >= 0 sort by age limit 5")?)?.entries.len());
        out.push(db.query(&Query::parse("prefix u:")?)?.entries.len());
        out.push(String::from_utf8(export)?.lines().count());
        Ok(out)
    };
    clock.set(T0 + 999);
    assert_eq!(seen(&db)?, [1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
    assert_eq!(db.ttl("u:1").left(), Some(ms(1)));
    clock.set(T0 + 1000);
    assert_eq!(seen(&db)?, [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1]);
    assert_eq!(db.ttl("u:1"), Ttl::Missing);
    // Writes treat it as absent too: a delete finds nothing, a condition sees it absent.
    assert!(!db.delete("u:1")?);
    db.batch(Batch::new().require_absent("u:1").set("x", json!(1)))?;
    assert!(!db.expire("u:1", Duration::from_secs(5))?, "an expired key came back");
    assert!(!db.persist("u:1")?);
    assert_eq!(db.get("u:1"), None);
    Ok(())
}

#[test]
fn deadlines_replay_from_the_log_and_load_from_the_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.set_with_ttl("a", json!(1), ms(100))?;
    db.set_expiring_at("b", json!(2), at(T0 + 200))?;
    db.set("c", json!(3))?;
    assert!(db.expire("c", ms(300))?);
    db.set_with_ttl("d", json!(4), ms(50))?;
    assert!(db.persist("d")?);
    db.close()?;
    // Reopened from the log, a moment later on the same clock.
    clock.set(T0 + 99);
    let db = opts(&clock).open(dir.path())?;
    let lefts: Vec<_> = ["a", "b", "c", "d"].iter().map(|k| db.ttl(k).left()).collect();
    assert_eq!(lefts, [Some(ms(1)), Some(ms(101)), Some(ms(201)), None]);
    assert_eq!(db.ttl("d"), Ttl::Persistent);
    db.save()?;
    db.close()?;
    // Reopened from the snapshot (the log is empty).
    clock.set(T0 + 100);
    let db = opts(&clock).open(dir.path())?;
    assert_eq!(db.recovery().records_replayed, 0);
    assert_eq!(db.keys(), ["b", "c", "d"]);
    clock.set(T0 + 300);
    assert_eq!(db.keys(), ["d"]);
    Ok(())
}

#[test]
fn writes_follow_redis_semantics_for_deadlines() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    assert!(!db.expire("missing", ms(10))?);
    assert!(!db.persist("missing")?);
    db.set("k", json!(1))?;
    assert!(!db.persist("k")?, "persist of a key without a deadline answers false");
    db.set_with_ttl("k", json!(1), ms(500))?;
    // set_keep_ttl and update keep the deadline; set clears it.
    db.set_keep_ttl("k", json!(2))?;
    assert_eq!(db.ttl("k").left(), Some(ms(500)));
    db.incr("k", 5)?;
    assert_eq!((db.get_value("k"), db.ttl("k").left()), (Some(json!(7)), Some(ms(500))));
    db.set("k", json!(3))?;
    assert_eq!(db.ttl("k"), Ttl::Persistent);
    // A zero ttl, or a deadline already past, deletes.
    assert!(db.expire("k", Duration::ZERO)?);
    assert!(!db.contains("k"));
    db.set("k", json!(1))?;
    assert!(db.expire_at("k", at(T0 - 1))?);
    assert!(!db.contains("k"));
    db.set_with_ttl("k", json!(1), Duration::ZERO)?;
    assert!(!db.contains("k"));
    // Sub-millisecond ttls round up: a key never expires early.
    db.set_with_ttl("k", json!(1), Duration::from_micros(1500))?;
    assert_eq!(db.ttl("k").left(), Some(ms(2)));
    Ok(())
}

#[test]
fn batches_carry_deadlines_and_never_revive_an_expired_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.set_with_ttl("old", json!(0), ms(10))?;
    db.set("p", json!(1))?;
    clock.set(T0 + 10);
    db.batch(
        Batch::new()
            .set_with_ttl("a", json!(1), ms(100))
            .set_expiring_at("b", json!(2), at(T0 + 50))
            .expire("p", ms(30))
            .persist("old")
            .expire("old", ms(1000))
            .set("c", json!(3))
            .expire("c", ms(5))
            .persist("c"),
    )?;
    assert_eq!(db.ttl("a").left(), Some(ms(100)));
    assert_eq!(db.ttl("b").left(), Some(ms(40)));
    assert_eq!(db.ttl("p").left(), Some(ms(30)));
    assert_eq!(db.ttl("c"), Ttl::Persistent);
    assert_eq!(db.ttl("old"), Ttl::Missing, "persist in a batch brought an expired key back");
    db.close()?;
    let db = opts(&clock).open(dir.path())?;
    assert_eq!(db.ttl("old"), Ttl::Missing, "replay brought an expired key back");
    assert_eq!(db.keys(), ["a", "b", "c", "p"]);
    Ok(())
}

#[test]
fn a_clock_stepped_back_does_not_bring_keys_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.set_with_ttl("k", json!(1), ms(10))?;
    clock.set(T0 + 10);
    assert!(!db.contains("k"));
    clock.set(T0);
    assert!(!db.contains("k"));
    Ok(())
}

#[test]
fn an_expired_holder_of_a_unique_value_blocks_nobody() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.create_unique_index("email")?;
    db.set_with_ttl("a", json!({"email": "x"}), ms(10))?;
    assert!(db.set("b", json!({"email": "x"})).is_err());
    clock.set(T0 + 10);
    db.set("b", json!({"email": "x"}))?;
    assert_eq!(db.find("email", &json!("x"))?, ["b"]);
    db.sweep_expired()?;
    db.close()?;
    let db = opts(&clock).open(dir.path())?;
    assert_eq!(db.find("email", &json!("x"))?, ["b"]);
    Ok(())
}

/// The sweeper's deletions are ordinary log records: after a sweep the log
/// holds them, and after a save the keys are in no file.
#[test]
fn the_sweeper_logs_deletions_and_saves_drop_the_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    for i in 0..600 {
        db.set_with_ttl(format!("s:{i:03}"), json!(i), ms(100 + i % 3))?;
    }
    db.set("keep", json!(true))?;
    db.save()?;
    clock.set(T0 + 100);
    assert_eq!(db.len(), 401);
    assert_eq!(db.sweep_expired()?, 200);
    assert_eq!(db.sweep_expired()?, 0);
    clock.set(T0 + 102);
    assert_eq!(db.sweep_expired()?, 400);
    let log: String = crate::util::segments(dir.path())
        .iter()
        .map(|p| crate::util::read_segment(p).map(|d| String::from_utf8_lossy(&d).into_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(log.matches("\"op\":\"del\"").count(), 600, "one delete per swept key in the log");
    assert!(log.lines().all(|l| l.len() < 12_000), "sweeps are logged in small records");
    db.save()?;
    let snapshot = std::fs::read_to_string(dir.path().join("database.json"))?;
    assert!(!snapshot.contains("s:"), "{snapshot:.300}");
    assert!(!snapshot.contains("\"expires\""), "no deadline left: the snapshot has no `expires` again");
    db.close()?;
    let db = Db::open(dir.path())?;
    assert_eq!(db.keys(), ["keep"]);
    Ok(())
}

/// The background thread sweeps by itself, with the real clock.
#[test]
fn the_background_sweeper_removes_expired_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().sweep_interval(Some(ms(5))).open(dir.path())?;
    db.set_with_ttl("k", json!(1), ms(20))?;
    let started = std::time::Instant::now();
    // The durable point, not `last_seq`: with `Durability::Always` a record
    // counts as written once it is in the log's buffer, before the group
    // commit's leader hands it to the file.
    while db.stats().durable_seq < 2 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(ms(5));
    }
    assert_eq!(db.stats().durable_seq, 2, "the sweeper logged no deletion");
    let log: String =
        crate::util::segments(dir.path()).iter().map(std::fs::read_to_string).collect::<Result<_, _>>()?;
    assert!(log.contains(r#""op":"del","key":"k""#), "{log}");
    Ok(())
}

#[test]
fn a_read_only_handle_hides_expired_keys_and_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.set_with_ttl("k", json!(1), ms(10))?;
    db.set("p", json!(2))?;
    db.close()?;
    let before = dir_contents(dir.path());
    clock.set(T0 + 10);
    let ro = opts(&clock).sweep_interval(Some(ms(1))).read_only(true).open(dir.path())?;
    std::thread::sleep(ms(20));
    assert_eq!(ro.keys(), ["p"]);
    assert_eq!(ro.len(), 1);
    assert!(ro.sweep_expired().is_err(), "a read-only handle cannot sweep");
    drop(ro);
    assert_eq!(dir_contents(dir.path()), before);
    Ok(())
}

#[test]
fn backup_restore_export_and_import_keep_deadlines() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(T0));
    let db = opts(&clock).open(dir.path())?;
    db.set_with_ttl("short", json!(1), ms(10))?;
    db.set_with_ttl("long", json!(2), ms(1000))?;
    db.set("plain", json!(3))?;
    let backup = db.backup()?;
    let mut lines = Vec::new();
    db.export(&mut lines, true)?;
    let lines = String::from_utf8(lines)?;
    assert_eq!(
        lines,
        format!(
            "{{\"key\":\"long\",\"value\":2,\"expires\":{}}}\n{{\"key\":\"plain\",\"value\":3}}\n{{\"key\":\"short\",\"value\":1,\"expires\":{}}}\n",
            T0 + 1000,
            T0 + 10
        )
    );
    db.clear()?;
    clock.set(T0 + 10);
    // Restore: deadlines as they were; `short` has expired since and is not restored.
    db.restore(&backup.name)?;
    assert_eq!(db.keys(), ["long", "plain"]);
    assert_eq!(db.ttl("long").left(), Some(ms(990)));
    // A backup taken now leaves expired keys out.
    assert_eq!(db.backup()?.keys, 2);
    // Import of the JSON lines: the same absolute deadlines.
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &lines)?;
    db.clear()?;
    assert_eq!(db.import(&file)?, 3);
    assert_eq!(db.keys(), ["long", "plain"]);
    assert_eq!(db.ttl("long").left(), Some(ms(990)));
    // The object shape holds values only.
    let mut object = Vec::new();
    db.export(&mut object, false)?;
    assert_eq!(String::from_utf8(object)?, "{\n\"long\":2,\n\"plain\":3\n}\n");
    assert_eq!(dump(&db).len(), 2);
    Ok(())
}

/// A clock that counts how often it is read.
#[derive(Debug)]
struct CountingClock {
    time: ManualClock,
    reads: AtomicU64,
}

impl Clock for CountingClock {
    fn now_ms(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.time.now_ms()
    }
}

/// Issue 18: reading the clock was a third of a get's instructions, so a
/// single-key read of a key without a deadline reads none; a key with one
/// still reads it and is hidden from its deadline on.
#[test]
fn a_get_reads_the_clock_only_for_a_key_with_a_deadline() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(CountingClock { time: ManualClock::new(T0), reads: AtomicU64::new(0) });
    let db = Options::new().clock(clock.clone()).sweep_interval(None).open(dir.path())?;
    db.set("plain", json!(1))?;
    db.set_with_ttl("session", json!(2), ms(10))?;
    let before = clock.reads.load(Ordering::SeqCst);
    for _ in 0..100 {
        assert_eq!(db.get("plain").map(|d| d.to_value()), Some(json!(1)));
        assert!(db.get_with_seq("plain").is_some());
        assert!(db.contains("plain"));
        assert!(db.get("absent").is_none());
    }
    assert_eq!(clock.reads.load(Ordering::SeqCst), before, "a read of a key without a deadline read the clock");

    clock.time.set(T0 + 9);
    assert_eq!(db.get_value("session"), Some(json!(2)));
    assert!(clock.reads.load(Ordering::SeqCst) > before, "a key with a deadline was judged without the clock");
    clock.time.set(T0 + 10);
    assert!(db.get("session").is_none());
    assert!(db.get_with_seq("session").is_none());
    assert!(!db.contains("session"));
    assert_eq!(db.get_value("plain"), Some(json!(1)));
    Ok(())
}
