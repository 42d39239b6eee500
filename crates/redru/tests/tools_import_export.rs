//! Export and import: both shapes roundtrip every value exactly; an import is
//! one atomic step, so an invalid file (or one a unique index refuses)
//! changes nothing; merge is the default and replace is explicit; a replace
//! is a snapshot (no record for the next open to replay), all or nothing
//! across a power loss at every file-system operation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use redru::{Db, Error, ImportFormat, ImportOptions, Options, Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn opts() -> Options {
    Options::new().auto_compact(false)
}

fn all(db: &Db) -> Vec<(String, Value)> {
    db.keys().into_iter().map(|k| (k.clone(), db.get_value(&k).unwrap())).collect()
}

fn sample(db: &Db) -> redru::Result<()> {
    db.set("user:1", json!({"name": "Alice", "tags": ["a", "b"], "n": 1.5}))?;
    db.set("user:2", json!(null))?;
    db.set("weird \"key\"\nwith newline é", json!("value\nwith \"quotes\""))?;
    db.set("key", json!("looks like a JSON-lines member"))?;
    db.set("n", json!(12345678901234567890u64))?;
    Ok(())
}

#[test]
fn both_shapes_roundtrip_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path().join("a"))?;
    sample(&db)?;
    for lines in [false, true] {
        let mut out = Vec::new();
        assert_eq!(db.export(&mut out, lines)?, 5);
        let text = String::from_utf8(out.clone())?;
        if lines {
            assert_eq!(text.lines().count(), 5);
            for line in text.lines() {
                let v: Value = serde_json::from_str(line)?;
                assert_eq!(v.as_object().map(|o| o.len()), Some(2));
            }
        } else {
            let v: Value = serde_json::from_str(&text)?;
            assert_eq!(v.as_object().map(|o| o.len()), Some(5));
        }
        let file = dir.path().join(if lines { "x.jsonl" } else { "x.json" });
        std::fs::write(&file, &out)?;
        let other = opts().open(dir.path().join(format!("b{lines}")))?;
        assert_eq!(other.import(&file)?, 5);
        assert_eq!(all(&other), all(&db));
    }
    // An empty database exports an empty object, which imports as nothing.
    let empty = opts().open(dir.path().join("empty"))?;
    let mut out = Vec::new();
    assert_eq!(empty.export(&mut out, false)?, 0);
    assert_eq!(out, b"{}\n");
    let file = dir.path().join("empty.json");
    std::fs::write(&file, &out)?;
    assert_eq!(db.import(&file)?, 0);
    assert_eq!(db.len(), 5);
    Ok(())
}

fn unchanged_after(db: &Db, file: &Path, contents: &[u8]) -> Result<Error, Box<dyn std::error::Error>> {
    std::fs::write(file, contents)?;
    let before = (all(db), db.stats().last_seq);
    let err = db.import(file).expect_err("an invalid file must be refused");
    assert_eq!((all(db), db.stats().last_seq), before, "the database changed");
    Ok(err)
}

#[test]
fn an_invalid_file_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path().join("db"))?;
    sample(&db)?;
    let file = dir.path().join("in");
    // JSON lines with a bad third line: the first two are not applied either.
    let err = unchanged_after(
        &db,
        &file,
        b"{\"key\":\"new1\",\"value\":1}\n{\"key\":\"new2\",\"value\":2}\n{\"key\":\"new3\",\"value\":}\n",
    )?;
    let msg = err.to_string();
    assert!(msg.contains("line 3") && msg.contains("byte offset 50") && msg.contains("nothing was imported"), "{msg}");
    // A line without its value, or with an extra member.
    unchanged_after(&db, &file, b"{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\"}\n")?;
    unchanged_after(&db, &file, b"{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"value\":1,\"x\":2}\n")?;
    // An object cut short, an object with trailing garbage, not an object, empty.
    unchanged_after(&db, &file, b"{\n\"new1\": 1,\n\"new2\": {\"a\": \n")?;
    unchanged_after(&db, &file, b"{\"new1\": 1} {\"new2\": 2}")?;
    unchanged_after(&db, &file, b"[1, 2, 3]")?;
    unchanged_after(&db, &file, b"  \n\n")?;
    // A missing file.
    assert!(matches!(db.import(&dir.path().join("missing")), Err(Error::Io { .. })));
    Ok(())
}

#[test]
fn a_unique_violation_refuses_the_whole_import() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path().join("db"))?;
    db.set("a", json!({"email": "x"}))?;
    db.create_unique_index("email")?;
    let file = dir.path().join("in.json");
    let err = unchanged_after(&db, &file, br#"{"b": {"email": "y"}, "c": {"email": "x"}}"#)?;
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    Ok(())
}

#[test]
fn merge_by_default_replace_on_request() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path().join("db"))?;
    db.set("keep", json!(1))?;
    db.set("over", json!(1))?;
    let file = dir.path().join("in.json");
    std::fs::write(&file, br#"{"over": 2, "new": 3}"#)?;
    assert_eq!(db.import(&file)?, 2);
    assert_eq!(all(&db), [("keep".into(), json!(1)), ("new".into(), json!(3)), ("over".into(), json!(2))]);
    let seq = db.stats().last_seq;
    let mut calls = Vec::new();
    let n =
        db.import_with(&file, ImportOptions { replace: true, ..ImportOptions::default() }, &mut |done, total| {
            calls.push((done, total))
        })?;
    assert_eq!(n, 2);
    assert_eq!(all(&db), [("new".into(), json!(3)), ("over".into(), json!(2))]);
    // One batch: one record.
    assert_eq!(db.stats().last_seq, seq + 1);
    let total = std::fs::metadata(&file)?.len();
    assert_eq!(calls.last(), Some(&(total, total)));
    Ok(())
}

#[test]
fn the_shape_can_be_forced() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path().join("db"))?;
    let file = dir.path().join("in.json");
    // Ambiguous: detected as one JSON-lines pair...
    std::fs::write(&file, br#"{"key": "k", "value": 7}"#)?;
    assert_eq!(db.import(&file)?, 1);
    assert_eq!(all(&db), [("k".into(), json!(7))]);
    // ...or, forced, an object with the two keys `key` and `value`.
    let object = ImportOptions { format: ImportFormat::Object, replace: true };
    assert_eq!(db.import_with(&file, object, &mut |_, _| {})?, 2);
    assert_eq!(all(&db), [("key".into(), json!("k")), ("value".into(), json!(7))]);
    // Forcing lines on an object file is an error that changes nothing.
    std::fs::write(&file, b"{\n\"a\": 1\n}\n")?;
    let lines = ImportOptions { format: ImportFormat::Lines, replace: true };
    assert!(matches!(db.import_with(&file, lines, &mut |_, _| {}), Err(Error::Import { .. })));
    assert_eq!(db.len(), 2);
    Ok(())
}

#[test]
fn large_imports_report_progress() -> TestResult {
    let scale: usize = std::env::var("REDRU_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path().join("db"))?;
    let n = 30_000 * scale;
    for lines in [false, true] {
        let file = dir.path().join(format!("big{lines}"));
        let mut text = String::new();
        if lines {
            for i in 0..n {
                text.push_str(&format!("{{\"key\":\"k{i}\",\"value\":{{\"pad\":\"{}\"}}}}\n", "x".repeat(40)));
            }
        } else {
            text.push('{');
            for i in 0..n {
                text.push_str(&format!("{}\"k{i}\":{{\"pad\":\"{}\"}}", if i > 0 { "," } else { "" }, "x".repeat(40)));
            }
            text.push('}');
        }
        std::fs::write(&file, &text)?;
        let mut calls: Vec<(u64, u64)> = Vec::new();
        let opts = ImportOptions { replace: true, ..ImportOptions::default() };
        assert_eq!(db.import_with(&file, opts, &mut |d, t| calls.push((d, t)))?, n);
        assert_eq!(db.len(), n);
        let total = text.len() as u64;
        assert!(calls.len() >= 2, "{lines}: {calls:?}");
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "progress goes forward");
        assert_eq!(calls.last(), Some(&(total, total)));
    }
    Ok(())
}

#[test]
fn a_replace_is_a_snapshot_that_no_open_replays() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.create_unique_index("id")?;
    db.create_ordered_index("n")?;
    for i in 0..100 {
        db.set(format!("old{i}"), json!({"id": i}))?;
    }
    let before = db.stats().last_seq;
    let pairs: Vec<(String, redru::Doc)> =
        (0..3000).map(|i| (format!("k{i:05}"), redru::Doc::from(json!({"id": i, "n": i % 7})))).collect();
    assert_eq!(db.import_pairs(pairs.clone(), true)?, 3000);
    // One sequence number, no log record: the log is empty after it.
    assert_eq!(db.stats().last_seq, before + 1);
    let log_bytes: u64 = crate::util::segments(dir.path()).iter().map(|p| crate::util::record_bytes(p)).sum();
    assert_eq!(log_bytes, 0);
    assert_eq!(db.len(), 3000);
    assert_eq!(db.find("id", &json!(17))?, ["k00017"]);
    // A duplicate under the unique index refuses the whole import.
    let mut dup = pairs.clone();
    dup.push(("other".into(), redru::Doc::from(json!({"id": 5}))));
    assert!(matches!(db.import_pairs(dup, true), Err(Error::UniqueViolation { .. })));
    assert_eq!(db.stats().last_seq, before + 1);
    db.set("after", json!({"id": -1}))?;
    let expected = all(&db);
    db.close()?;
    let db = opts().open(dir.path())?;
    assert_eq!(db.recovery().records_replayed, 1, "only the write after the import");
    assert_eq!(all(&db), expected);
    assert_eq!(db.find("id", &json!(-1))?, ["after"]);
    assert_eq!(db.indexes().len(), 2);
    Ok(())
}

#[test]
fn a_replace_is_all_or_nothing_at_every_crash_point() -> TestResult {
    use redru_testkit::rng::Rng;
    use redru_testkit::sim::SimFs;
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let options = || opts().vfs(fs.vfs());
    let db = options().open(dir)?;
    for i in 0..20 {
        db.set(format!("old{i}"), json!(i))?;
    }
    db.save()?;
    db.set("old-after-save", json!(true))?;
    let old = all(&db);
    let pairs: Vec<(String, redru::Doc)> = (0..50).map(|i| (format!("new{i}"), redru::Doc::from(json!(i)))).collect();
    fs.record(true);
    db.import_pairs(pairs.clone(), true)?;
    fs.record(false);
    let new = all(&db);
    let history = fs.take_history();
    assert!(history.len() >= 5, "{} file-system operations", history.len());
    let mut rng = Rng::new(7);
    let (mut olds, mut news) = (0, 0);
    for (at, state) in history.iter().enumerate() {
        for _ in 0..4 {
            let image = SimFs::from_state(state.crash_image(&mut rng));
            let db = opts().vfs(image.vfs()).open(dir).map_err(|e| format!("crash before op {at}: {e}"))?;
            let got = all(&db);
            if got == old {
                olds += 1;
            } else if got == new {
                news += 1;
            } else {
                return Err(format!("crash before op {at}: neither the old nor the new data: {got:?}").into());
            }
        }
    }
    // The durable state after it returned is the new data.
    let db = opts().vfs(SimFs::from_state(fs.state().durable_image()).vfs()).open(dir)?;
    assert_eq!(all(&db), new);
    assert!(olds > 0 && news > 0, "old {olds}, new {news}");
    Ok(())
}
