//! Guards the on-disk format across versions: data directories written by
//! format version 1 are checked in under tests/fixtures/ and must open to
//! exactly the same content (and damaged copies must fail the same way) in
//! every later build. `v1-one-line` was written by the first build, whose
//! snapshot was a single line; `v1` by the current layout (one entry per
//! line). `v2` (format version 2: deadlines, `"exp"` in the log and
//! `"expires"` in the snapshot) is read with a fake clock at its write time.
//! `chain` holds the same history in the chained log format (every segment
//! opens with a header naming the one before it; a rotated one ends with a
//! seal naming its successor): a sealed `wal-…1` and `wal-…5`, no snapshot
//! (a save that stopped after its rotation). Older fixtures' segments have
//! no header or seal and still read the same. `v3` is `v1`'s history as
//! this build writes it: the snapshot at version 3 names the segment its
//! log continues in (`"continues":5`), and that segment starts with its
//! header.
//! Regenerate a fixture only on a deliberate format change:
//! `cargo test -p redru --test tests -- --ignored --exact format_fixtures::regenerate_v2`.

use std::path::{Path, PathBuf};

use crate::util::{TestResult, dump};
use redru::{Batch, Db, Error, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Copies a fixture into a temporary directory (opening may cut a torn tail).
fn copy(name: &str) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(fixture(name))? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.path().join(entry.file_name()))?;
    }
    Ok(dir)
}

/// What the v1 fixture holds.
fn expected() -> Vec<(String, serde_json::Value)> {
    vec![
        ("a b".into(), json!("text with spaces")),
        ("city:1".into(), json!({"name": "Oslo", "n": 1.5})),
        ("user:1".into(), json!({"name": "Alice", "age": 30, "tags": ["a", "b"]})),
        ("user:3".into(), json!({"name": "Cy", "age": 41})),
    ]
}

/// The history the v1 fixture was written from: every record kind.
fn write_history(dir: &Path) -> redru::Result<()> {
    let db = Db::open(dir)?;
    db.set("user:1", json!({"name": "Alice", "age": 30, "tags": ["a", "b"]}))?;
    db.set("user:2", json!({"name": "Bob"}))?;
    db.set("gone", json!(null))?;
    db.create_index("name")?;
    db.save()?; // the snapshot holds records 1-4
    db.delete("gone")?;
    db.clear()?;
    db.batch(
        Batch::new()
            .set("x", json!(1))
            .clear()
            .set("user:1", json!({"name": "Alice", "age": 30, "tags": ["a", "b"]}))
            .set("user:3", json!({"name": "Cy", "age": 41}))
            .delete("user:2"),
    )?;
    db.create_unique_index("age")?;
    db.set("city:1", json!({"name": "Oslo", "n": 1.5}))?;
    db.set("a b", json!("text with spaces"))?;
    db.drop_index("name")?;
    db.close()
}

#[test]
#[ignore = "writes tests/fixtures; run only on a deliberate format change"]
fn regenerate() -> TestResult {
    let dir = fixture("v1");
    let _ = std::fs::remove_dir_all(&dir);
    write_history(&dir)?;
    std::fs::remove_file(dir.join(redru::LOCK_NAME))?;
    Ok(())
}

#[test]
#[ignore = "writes tests/fixtures; run only on a deliberate format change"]
fn regenerate_v3() -> TestResult {
    let dir = fixture("v3");
    let _ = std::fs::remove_dir_all(&dir);
    write_history(&dir)?;
    std::fs::remove_file(dir.join(redru::LOCK_NAME))?;
    Ok(())
}

/// A version 3 snapshot's bytes before the trailer as version `older`
/// wrote them: the version number, and no `continues` member.
fn as_older(v3: &[u8], older: u64) -> String {
    let text = String::from_utf8_lossy(&v3[..v3.len() - redru::internal::snapshot::TRAILER_LEN]);
    text.replacen("\"version\":3,", &format!("\"version\":{older},"), 1).replacen("\"continues\":5,", "", 1)
}

fn without_trailer(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len() - redru::internal::snapshot::TRAILER_LEN]).into_owned()
}

/// The first four records of [`write_history`], alone in a segment.
fn write_history_start(dir: &Path) -> redru::Result<()> {
    let db = Db::open(dir)?;
    db.set("user:1", json!({"name": "Alice", "age": 30, "tags": ["a", "b"]}))?;
    db.set("user:2", json!({"name": "Bob"}))?;
    db.set("gone", json!(null))?;
    db.create_index("name")?;
    db.close()
}

#[test]
#[ignore = "writes tests/fixtures; run only on a deliberate format change"]
fn regenerate_chain() -> TestResult {
    let dir = fixture("chain");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // wal-…1 as a rotation leaves it (records 1-4, then the seal naming
    // wal-…5), and wal-…5 as the save after that rotation wrote it.
    let start = tempfile::tempdir()?;
    write_history_start(start.path())?;
    let mut first = std::fs::read(start.path().join("wal-00000000000000000001.wal"))?;
    first.extend_from_slice(&seal(5));
    std::fs::write(dir.join("wal-00000000000000000001.wal"), first)?;
    let whole = tempfile::tempdir()?;
    write_history(whole.path())?;
    std::fs::copy(whole.path().join("wal-00000000000000000005.wal"), dir.join("wal-00000000000000000005.wal"))?;
    Ok(())
}

fn name_5() -> &'static str {
    "wal-00000000000000000005.wal"
}

fn header(first: u64, prev: Option<u64>) -> Vec<u8> {
    let marker = redru::internal::record::Marker::Header { first: redru::Seq(first), prev: prev.map(redru::Seq) };
    redru::internal::record::marker_line(marker)
}

fn seal(next: u64) -> Vec<u8> {
    redru::internal::record::marker_line(redru::internal::record::Marker::Seal { next: redru::Seq(next) })
}

const FIXTURES: [&str; 4] = ["v1", "v1-one-line", "chain", "v3"];

#[test]
fn a_version_1_directory_opens_to_the_same_content() -> TestResult {
    for name in FIXTURES {
        opens_to_the_same_content(name)?;
    }
    Ok(())
}

fn opens_to_the_same_content(name: &str) -> TestResult {
    let dir = copy(name)?;
    let db = Db::open(dir.path())?;
    assert_eq!(dump(&db), expected());
    // `chain` has no snapshot: its first segment holds records 1-4.
    let (snapshot, replayed) = if name == "chain" { (0, 11) } else { (4, 7) };
    assert_eq!(db.recovery().snapshot_seq, snapshot);
    assert_eq!(db.recovery().records_replayed, replayed);
    assert!(db.recovery().torn_tail.is_none());
    let indexes = db.indexes();
    assert_eq!(indexes.len(), 1);
    assert_eq!((indexes[0].field.as_str(), indexes[0].unique, indexes[0].entries), ("age", true, 2));
    assert!(db.set("x", json!({"age": 30})).is_err(), "the unique index is back");
    Ok(())
}

#[test]
fn a_version_1_directory_verifies_clean() -> TestResult {
    for name in FIXTURES {
        let dir = copy(name)?;
        let report = redru::verify_dir(dir.path())?;
        assert!(report.is_clean(), "{name}: {report}");
    }
    Ok(())
}

#[test]
fn todays_build_writes_the_same_bytes() -> TestResult {
    // The same history written today gives byte-identical files: neither the
    // log line format nor the snapshot layout has drifted. Its segment is
    // the v1 one behind the header the chained format added.
    let fresh = tempfile::tempdir()?;
    write_history(fresh.path())?;
    let v3 = std::fs::read(fixture("v3").join("database.json"))?;
    let new = std::fs::read(fresh.path().join("database.json"))?;
    assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&v3), "database.json");
    // Version 3 is version 1 plus `continues`, nothing else drifted.
    assert!(
        without_trailer(&new).starts_with(r#"{"format":"redru-snapshot","version":3,"seq":4,"keys":3,"continues":5,"#)
    );
    let v1 = std::fs::read(fixture("v1").join("database.json"))?;
    assert_eq!(as_older(&new, 1), without_trailer(&v1), "database.json as version 1");
    assert_eq!(std::fs::read(fixture("v3").join(name_5()))?, std::fs::read(fixture("chain").join(name_5()))?);
    let name = "wal-00000000000000000005.wal";
    let new = std::fs::read(fresh.path().join(name))?;
    assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&std::fs::read(fixture("chain").join(name))?));
    let mut v1 = header(5, Some(1));
    v1.extend_from_slice(&std::fs::read(fixture("v1").join(name))?);
    assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&v1), "{name}");
    // And the sealed first segment: a fresh one's records, then the seal.
    let start = tempfile::tempdir()?;
    write_history_start(start.path())?;
    let mut first = std::fs::read(start.path().join("wal-00000000000000000001.wal"))?;
    assert!(first.starts_with(&header(1, None)));
    first.extend_from_slice(&seal(5));
    assert_eq!(first, std::fs::read(fixture("chain").join("wal-00000000000000000001.wal"))?);
    Ok(())
}

/// The chained fixture's bytes, as docs/design.md draws them.
#[test]
fn the_chain_fixture_has_the_documented_markers() -> TestResult {
    let first = std::fs::read_to_string(fixture("chain").join("wal-00000000000000000001.wal"))?;
    assert!(first.starts_with("8a8124e2 {\"op\":\"segment\",\"first\":1}\n"), "{first}");
    assert!(first.ends_with("\"seq\":4,\"op\":\"create_index\",\"field\":\"name\",\"unique\":false}\n797e5f78 {\"op\":\"sealed\",\"next\":5}\n"), "{first}");
    let second = std::fs::read_to_string(fixture("chain").join("wal-00000000000000000005.wal"))?;
    assert!(second.starts_with("6695e592 {\"op\":\"segment\",\"first\":5,\"prev\":1}\n"), "{second}");
    Ok(())
}

#[test]
fn a_damaged_version_1_log_is_refused_at_the_same_place() -> TestResult {
    let dir = copy("v1")?;
    let segment = crate::util::segments(dir.path()).pop().ok_or("no segment")?;
    let mut bytes = std::fs::read(&segment)?;
    let starts = crate::util::line_starts(&bytes);
    bytes[starts[1] + 12] ^= 0x01; // inside the second record
    std::fs::write(&segment, &bytes)?;
    match Db::open(dir.path()) {
        Err(Error::Corrupt { line, offset, .. }) => assert_eq!((line, offset), (2, starts[1] as u64)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_torn_version_1_log_is_recovered() -> TestResult {
    let dir = copy("v1")?;
    let segment = crate::util::segments(dir.path()).pop().ok_or("no segment")?;
    let bytes = std::fs::read(&segment)?;
    let starts = crate::util::line_starts(&bytes);
    let last = starts[starts.len() - 2];
    std::fs::write(&segment, &bytes[..last + 7])?;
    let db = Db::open(dir.path())?;
    let torn = db.recovery().torn_tail.clone().ok_or("no torn tail")?;
    assert_eq!((torn.offset, torn.bytes, torn.after_seq), (last as u64, 7, 10));
    let fields: Vec<String> = db.indexes().into_iter().map(|i| i.field).collect();
    assert_eq!(fields, ["age", "name"], "the last record (drop index) was cut");
    Ok(())
}

/// The fixture time of format version 2: 2025-12-01T00:00:00Z. The
/// fixture's deadlines are absolute, so its tests read it with a fake clock.
const V2_T0: u64 = 1_764_547_200_000;

fn v2_options(clock: &std::sync::Arc<redru::ManualClock>) -> redru::Options {
    redru::Options::new().clock(clock.clone()).sweep_interval(None)
}

/// The history the v2 fixture was written from: every expiry record kind,
/// in the snapshot (version 2, with `expires`) and in the log after it.
fn write_history_v2(dir: &Path) -> redru::Result<()> {
    use std::time::Duration;
    let clock = std::sync::Arc::new(redru::ManualClock::new(V2_T0));
    let db = v2_options(&clock).open(dir)?;
    db.set_with_ttl("session:1", json!({"user": 1}), Duration::from_secs(3600))?;
    db.set("plain", json!([1, 2]))?;
    db.set_with_ttl("gone", json!("soon"), Duration::from_millis(5))?;
    db.create_index("user")?;
    db.save()?; // the snapshot holds records 1-4: two deadlines
    db.set_with_ttl("session:2", json!({"user": 2}), Duration::from_secs(60))?;
    db.expire("plain", Duration::from_secs(7200))?;
    db.persist("plain")?;
    db.expire("plain", Duration::from_secs(600))?;
    db.batch(
        Batch::new()
            .set_with_ttl("b:1", json!(1), Duration::from_secs(30))
            .set("b:2", json!(2))
            .expire("b:2", Duration::from_secs(90))
            .persist("session:1"),
    )?;
    clock.set(V2_T0 + 5);
    db.sweep_expired()?; // logs the deletion of `gone`
    db.close()
}

#[test]
#[ignore = "writes tests/fixtures; run only on a deliberate format change"]
fn regenerate_v2() -> TestResult {
    let dir = fixture("v2");
    let _ = std::fs::remove_dir_all(&dir);
    write_history_v2(&dir)?;
    std::fs::remove_file(dir.join(redru::LOCK_NAME))?;
    Ok(())
}

#[test]
fn a_version_2_directory_opens_with_its_deadlines() -> TestResult {
    use redru::Ttl;
    use std::time::Duration;
    let dir = copy("v2")?;
    let clock = std::sync::Arc::new(redru::ManualClock::new(V2_T0 + 5));
    let db = v2_options(&clock).open(dir.path())?;
    assert_eq!(db.recovery().snapshot_seq, 4);
    assert_eq!(db.recovery().records_replayed, 6);
    assert_eq!(db.keys(), ["b:1", "b:2", "plain", "session:1", "session:2"]);
    let left = |k: &str| db.ttl(k).left().map(|d| d.as_millis());
    assert_eq!(left("b:1"), Some(29_995));
    assert_eq!(left("b:2"), Some(89_995));
    assert_eq!(left("plain"), Some(599_995));
    assert_eq!(left("session:2"), Some(59_995));
    assert_eq!(db.ttl("session:1"), Ttl::Persistent);
    assert_eq!(db.find("user", &json!(2))?, ["session:2"]);
    clock.advance(Duration::from_millis(59_995));
    assert_eq!(db.keys(), ["b:2", "plain", "session:1"]);
    assert_eq!(db.find("user", &json!(2))?, Vec::<String>::new());
    drop(db);
    let report = redru::verify_dir(dir.path())?;
    assert!(report.is_clean(), "{report}");
    Ok(())
}

#[test]
fn todays_build_writes_the_same_version_2_bytes() -> TestResult {
    let fresh = tempfile::tempdir()?;
    write_history_v2(fresh.path())?;
    let names: Vec<String> = std::fs::read_dir(fixture("v2"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(names.len() >= 2, "{names:?}");
    for name in names {
        let mut old = std::fs::read(fixture("v2").join(&name))?;
        if name.ends_with(".wal") {
            // The chained format's header, then the same records.
            old.splice(0..0, header(5, Some(1)));
        }
        let mut new = std::fs::read(fresh.path().join(&name))?;
        if name.ends_with(".wal") {
            // The open segment's preallocated zeros are not its bytes.
            new = crate::util::log_data(&new).to_vec();
        }
        if name == "database.json" {
            // Version 3 now (it names the segment its log continues in),
            // with the same deadlines and entries.
            assert_eq!(as_older(&new, 2), without_trailer(&old), "{name} as version 2");
            continue;
        }
        assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old), "{name}");
    }
    let snapshot = std::fs::read_to_string(fixture("v2").join("database.json"))?;
    assert!(snapshot.starts_with(r#"{"format":"redru-snapshot","version":2,"#), "{snapshot}");
    Ok(())
}
