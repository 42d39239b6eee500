//! Guards the on-disk format across versions: data directories written by
//! format version 1 are checked in under tests/fixtures/ and must open to
//! exactly the same content (and damaged copies must fail the same way) in
//! every later build. `v1-one-line` was written by the first build, whose
//! snapshot was a single line; `v1` by the current layout (one entry per
//! line). Regenerate `v1` only on a deliberate format change:
//! `cargo test --test format_fixtures -- --ignored regenerate`.

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

const FIXTURES: [&str; 2] = ["v1", "v1-one-line"];

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
    assert_eq!(db.recovery().snapshot_seq, 4);
    assert_eq!(db.recovery().records_replayed, 7);
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
    // log line format nor the snapshot layout has drifted.
    let fresh = tempfile::tempdir()?;
    write_history(fresh.path())?;
    for name in ["database.json", "wal-00000000000000000005.wal"] {
        let old = std::fs::read(fixture("v1").join(name))?;
        let new = std::fs::read(fresh.path().join(name))?;
        assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old), "{name}");
    }
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
