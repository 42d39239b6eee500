//! Backups: a backup taken while another thread writes is one consistent
//! point in time; restore brings exactly it back (and is undoable); retention
//! keeps the right files and never the newest verified one; backup names
//! cannot escape the backups directory; scheduled backups run, keep their
//! errors, and never keep a dropped `Db` (and its lock) alive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redru::{Db, Error, Options, Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn opts() -> Options {
    Options::new().auto_compact(false)
}

/// The `data` object of a snapshot or backup file, and its `seq`.
fn read_backup(path: &Path) -> (u64, serde_json::Map<String, Value>) {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (doc["seq"].as_u64().unwrap(), doc["data"].as_object().unwrap().clone())
}

fn all(db: &Db) -> Vec<(String, Value)> {
    db.keys().into_iter().map(|k| (k.clone(), db.get_value(&k).unwrap())).collect()
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    // A condition, not a timing: the deadline only turns a hang into a failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn backup_while_writing_is_a_point_in_time_and_restores_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(opts().open(dir.path())?);
    for i in 0..100 {
        db.set(format!("base{i:03}"), json!({"i": i}))?;
    }
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, written, stop) = (Arc::clone(&db), Arc::clone(&written), Arc::clone(&stop));
        std::thread::spawn(move || -> redru::Result<u64> {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                db.set(format!("w{n:06}"), json!({"n": n}))?;
                n += 1;
                written.store(n, Ordering::Relaxed);
            }
            Ok(n)
        })
    };
    let mut backups = Vec::new();
    for round in 1..=3u64 {
        wait_until("the writer to make progress", || written.load(Ordering::Relaxed) >= round * 20);
        backups.push(db.backup()?);
    }
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().unwrap()?;

    for info in &backups {
        assert!(info.verified);
        assert!(redru::verify_file(&info.path)?.is_clean());
        let (seq, data) = read_backup(&info.path);
        assert_eq!(seq, info.seq);
        // One point in time: the writer's keys are exactly w0..w(k-1), and the
        // sequence number counts exactly the records that made them.
        let k = data.keys().filter(|key| key.starts_with('w')).count() as u64;
        assert!(k >= 20 && k <= total);
        for n in 0..k {
            assert_eq!(data.get(&format!("w{n:06}")), Some(&json!({"n": n})), "backup at seq {seq}");
        }
        assert_eq!(data.len() as u64, 100 + k);
        assert_eq!(seq, 100 + k);
        assert!(info.name.contains(&format!("-seq{:020}", seq)));
        assert!(info.path.starts_with(dir.path().join(redru::BACKUP_DIR)));
    }
    assert!(backups[0].seq < backups[2].seq);

    let before_restore = all(&db);
    assert_eq!(before_restore.len() as u64, 100 + total);
    let chosen = &backups[1];
    let report = db.restore(&chosen.name)?;
    let (_, data) = read_backup(&chosen.path);
    let restored = all(&db);
    assert_eq!(restored.len(), data.len());
    for (k, v) in &restored {
        assert_eq!(data.get(k), Some(v));
    }
    assert_eq!(report.keys, data.len());
    assert_eq!(report.backup_seq, chosen.seq);
    // The replaced state was backed up first: restoring it undoes the restore.
    assert_eq!(report.undo.keys as u64, 100 + total);
    db.restore(&report.undo.name)?;
    assert_eq!(all(&db), before_restore);
    // And it all survives a reopen.
    drop(db);
    let db = opts().open(dir.path())?;
    assert_eq!(all(&db), before_restore);
    assert!(redru::verify_dir(&dir.path().join("nope")).is_err());
    Ok(())
}

#[test]
fn restore_aligns_index_definitions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!({"email": "x", "age": 1}))?;
    db.set("b", json!({"email": "y", "age": 1}))?;
    db.create_unique_index("email")?;
    db.create_index("tag")?;
    let backup = db.backup()?;
    db.drop_index("email")?;
    db.drop_index("tag")?;
    db.create_unique_index("age").unwrap_err(); // duplicates: refused
    db.create_index("age")?;
    db.set("c", json!({"email": "x", "age": 2}))?;
    let report = db.restore(&backup.name)?;
    let defs: Vec<_> = db.indexes().into_iter().map(|i| (i.field, i.unique)).collect();
    assert_eq!(defs, [("email".to_owned(), true), ("tag".to_owned(), false)]);
    assert_eq!(report.indexes_dropped, ["age"]);
    assert_eq!(report.indexes_created, ["email", "tag"]);
    assert_eq!(db.keys(), ["a", "b"]);
    assert_eq!(db.find("email", &json!("x"))?, ["a"]);
    drop(db);
    assert!(redru::verify_dir(dir.path())?.is_clean());
    Ok(())
}

#[test]
fn restore_refuses_names_outside_the_backups_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!(1))?;
    let good = db.backup()?;
    // A file outside the backups directory that a traversal would reach.
    let outside = dir.path().join("outside.json");
    db.backup_to(&outside)?;
    db.set("a", json!(2))?;
    for name in ["..", "../outside.json", "../outside", "/etc/passwd", "a/b", "", ".hidden", "x\\y", "..\\outside.json"]
    {
        match db.restore(name) {
            Err(Error::BadBackupName { .. } | Error::BackupNotFound { .. }) => {}
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    assert!(matches!(db.restore("backup-none.json"), Err(Error::BackupNotFound { .. })));
    // Nothing was changed, and no undo backup was taken.
    assert_eq!(db.get_value("a").as_ref(), Some(&json!(2)));
    assert_eq!(db.backups()?.len(), 1);
    // An explicit path needs restore_file; the name without `.json` also resolves.
    db.restore_file(&outside)?;
    assert_eq!(db.get_value("a").as_ref(), Some(&json!(1)));
    db.set("a", json!(3))?;
    db.restore(good.name.trim_end_matches(".json"))?;
    assert_eq!(db.get_value("a").as_ref(), Some(&json!(1)));
    Ok(())
}

#[test]
fn restore_refuses_a_damaged_backup_and_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!("backed up"))?;
    let info = db.backup()?;
    db.set("a", json!("current"))?;
    let mut bytes = std::fs::read(&info.path)?;
    let at = bytes.windows(9).position(|w| w == b"backed up").unwrap();
    bytes[at] ^= 0x20; // 'b' -> 'B': still valid JSON
    std::fs::write(&info.path, &bytes)?;
    assert!(matches!(db.restore(&info.name), Err(Error::BadSnapshot { .. })));
    // Without the .sha256 beside it, the internal digest still catches it.
    std::fs::remove_file(format!("{}.sha256", info.path.display()))?;
    assert!(matches!(db.restore(&info.name), Err(Error::BadSnapshot { .. })));
    assert_eq!(db.get_value("a").as_ref(), Some(&json!("current")));
    let listed = db.backups()?;
    assert_eq!(listed.len(), 1, "no undo backup was taken");
    assert!(!listed[0].verified && listed[0].problem.is_some());
    Ok(())
}

/// The real file system, except that a backup may not be read whole (a
/// restore reads it in pieces, so that the file is never in memory beside
/// the state built from it).
#[derive(Debug)]
struct NoWholeRead;

impl redru::vfs::Vfs for NoWholeRead {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        redru::vfs::StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        redru::vfs::StdFs.list(dir)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        redru::vfs::StdFs.exists(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn redru::vfs::VFile>> {
        redru::vfs::StdFs.open_append(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn redru::vfs::VFile>> {
        redru::vfs::StdFs.create_new(path)
    }
    fn read(&self, path: &Path) -> std::io::Result<redru::vfs::FileBytes> {
        if path.extension().is_some_and(|e| e == "json") && path.parent().is_some_and(|p| p.ends_with("backups")) {
            return Err(std::io::Error::other("a backup read whole"));
        }
        redru::vfs::StdFs.read(path)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<(Box<dyn std::io::Read + Send>, u64)> {
        redru::vfs::StdFs.open_read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        redru::vfs::StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        redru::vfs::StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        redru::vfs::StdFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<redru::vfs::LockOutcome> {
        redru::vfs::StdFs.try_lock(path)
    }
}

/// A good backup is restored in one pass over the file, its `.sha256`
/// checked on the way; a `.sha256` that disagrees still refuses it.
#[test]
fn restore_reads_the_backup_in_pieces() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    let pairs: Vec<(String, redru::Doc)> = (0..30_000).map(|i| (format!("k{i}"), json!({"i": i}).into())).collect();
    db.import_pairs(pairs, false)?;
    let info = db.backup()?;
    db.set("k1", json!("changed"))?;
    drop(db);
    let db = opts().vfs(Arc::new(NoWholeRead)).open(dir.path())?;
    let report = db.restore(&info.name)?;
    assert_eq!(report.keys, 30_000);
    assert_eq!(db.get_value("k1"), Some(json!({"i": 1})));
    db.set("k1", json!("changed again"))?;
    corrupt_sidecar(&info.path);
    let refused = db.restore(&info.name);
    assert!(
        matches!(&refused, Err(Error::BadSnapshot { reason, .. }) if reason.contains(".sha256 file says")),
        "{refused:?}"
    );
    assert_eq!(db.get_value("k1"), Some(json!("changed again")));
    Ok(())
}

fn corrupt_sidecar(path: &Path) {
    std::fs::write(format!("{}.sha256", path.display()), format!("{}  x\n", "0".repeat(64))).unwrap();
}

#[test]
fn retention_keeps_the_newest_and_the_newest_verified() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    let mut made = Vec::new();
    for i in 0..5 {
        db.set("k", json!(i))?;
        made.push(db.backup()?);
    }
    let names = |list: &[redru::BackupInfo]| list.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
    let listed = db.backups()?;
    assert_eq!(names(&listed), names(&made));
    assert!(listed.iter().all(|b| b.verified && b.keys == 1));
    assert_eq!(listed.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);

    let removed = db.prune_backups(4)?;
    assert_eq!(removed, [made[0].path.clone()]);
    assert!(!PathBuf::from(format!("{}.sha256", made[0].path.display())).exists());

    // The two newest are damaged: keep 2 keeps them and the newest verified one.
    corrupt_sidecar(&made[3].path);
    corrupt_sidecar(&made[4].path);
    let removed = db.prune_backups(2)?;
    assert_eq!(removed, [made[1].path.clone()]);
    assert_eq!(names(&db.backups()?), names(&made[2..]));
    // keep 0 still never deletes the newest verified one.
    let removed = db.prune_backups(0)?;
    assert_eq!(removed, [made[3].path.clone(), made[4].path.clone()]);
    assert_eq!(names(&db.backups()?), names(&made[2..3]));
    drop(db);
    // Offline listing and pruning see the same.
    assert_eq!(names(&redru::list_backups(dir.path())?), names(&made[2..3]));
    assert!(redru::prune_backups(dir.path(), 0)?.is_empty());
    Ok(())
}

#[test]
fn backups_in_the_same_second_at_the_same_seq_get_distinct_names() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("k", json!(1))?;
    let made: Vec<_> = (0..3).map(|_| db.backup()).collect::<redru::Result<_>>()?;
    let listed = db.backups()?;
    assert_eq!(listed.len(), 3);
    // Listed in the order they were made, whatever the clock did.
    assert_eq!(listed.iter().map(|b| &b.name).collect::<Vec<_>>(), made.iter().map(|b| &b.name).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn backup_to_an_explicit_path_never_overwrites() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("k", json!(1))?;
    let path = dir.path().join("copy.json");
    let info = db.backup_to(&path)?;
    assert!(info.verified && path.exists());
    let sidecar = std::fs::read_to_string(dir.path().join("copy.json.sha256"))?;
    assert_eq!(sidecar, format!("{}  copy.json\n", info.sha256));
    assert!(matches!(db.backup_to(&path), Err(Error::BackupExists { .. })));
    assert!(redru::verify_file(&path)?.is_clean());
    Ok(())
}

#[test]
fn scheduled_backups_run_prune_and_stop() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(opts().open(dir.path())?);
    let schedule = db.start_backup_schedule(Duration::from_millis(5), 2);
    // A write before each wait: every interval has something new to back up.
    for i in 1..=4u64 {
        db.set("k", json!(i))?;
        let status = schedule.wait_for_runs(i, Duration::from_secs(120));
        assert!(status.runs >= i, "{status:?}");
    }
    // Nothing written since: once an interval is skipped, the last backup
    // holds the last write, and later intervals take no new backup.
    wait_until("a skipped interval", || schedule.status().skipped >= 1);
    let quiet = schedule.status();
    assert_eq!((quiet.errors, quiet.last_error.clone()), (0, None));
    assert!(quiet.last.as_ref().is_some_and(|b| b.verified && b.seq == 4), "{quiet:?}");
    wait_until("three more skipped intervals", || schedule.status().skipped >= quiet.skipped + 3);
    let status = schedule.stop();
    assert!(status.stopped);
    assert_eq!(status.runs, quiet.runs, "{status:?}");
    assert_eq!(db.backups()?.len(), 2);
    assert_eq!(status.pruned, status.runs - 2);
    Ok(())
}

#[test]
fn a_schedule_does_not_keep_a_dropped_db_alive() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(opts().open(dir.path())?);
    let schedule = db.start_backup_schedule(Duration::from_secs(3600), 3);
    drop(db);
    // The directory lock was released with the Db, although the schedule lives on.
    let again = opts().open(dir.path())?;
    drop(again);
    drop(schedule);

    // With a short interval the thread notices the Db is gone and ends.
    let db = Arc::new(opts().open(dir.path())?);
    let schedule = db.start_backup_schedule(Duration::from_millis(1), 3);
    drop(db);
    let status = schedule.wait_for_runs(u64::MAX, Duration::from_secs(120));
    assert!(status.stopped, "{status:?}");
    drop(opts().open(dir.path())?);
    Ok(())
}

#[test]
fn scheduled_errors_are_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(opts().open(dir.path())?);
    // A file where the backups directory should be: every backup fails.
    std::fs::write(dir.path().join(redru::BACKUP_DIR), b"not a directory")?;
    let schedule = db.start_backup_schedule(Duration::from_millis(1), 3);
    let status = schedule.wait_for_runs(2, Duration::from_secs(120));
    assert!(status.errors >= 2 && status.last.is_none(), "{status:?}");
    assert!(schedule.last_error().is_some_and(|e| e.contains("backups")), "{status:?}");
    Ok(())
}

/// Timings of every tool on one database (`REDRU_MEASURE_KEYS`, default 200k):
/// `cargo test --release --test tools_backup -- --ignored --nocapture measure_tools`.
#[test]
#[ignore]
fn measure_tools() -> TestResult {
    use std::time::Instant;
    let n: usize = std::env::var("REDRU_MEASURE_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let fast = || opts().durability(redru::Durability::Never);
    let db = fast().open(dir.path())?;
    let mut batch = redru::Batch::new();
    for i in 0..n {
        let value = json!({"name": format!("n{}", i % 1000), "email": format!("u{i}@x"), "pad": "x".repeat(60)});
        batch.push_set(format!("user:{i:08}"), value);
        if batch.len() == 1000 {
            db.batch(std::mem::take(&mut batch))?;
        }
    }
    db.batch(batch)?;
    db.create_index("name")?;
    db.save()?;
    for i in 0..n / 2 {
        db.set(format!("user:{i:08}"), json!({"name": "late", "email": format!("v{i}"), "pad": "y"}))?;
    }
    db.sync()?;
    let t = Instant::now();
    let info = db.backup()?;
    println!("backup: {:?}, {} bytes, {} keys", t.elapsed(), info.bytes, info.keys);
    let t = Instant::now();
    let listed = db.backups()?;
    println!("backups (digest + sha256 of each): {:?}, verified {}", t.elapsed(), listed[0].verified);
    for lines in [false, true] {
        let mut out = Vec::new();
        let t = Instant::now();
        db.export(&mut out, lines)?;
        println!("export (lines: {lines}): {:?}, {} bytes", t.elapsed(), out.len());
        let file = dir.path().join(format!("export-{lines}"));
        std::fs::write(&file, &out)?;
        let other = fast().open(dir.path().join(format!("import-{lines}")))?;
        let t = Instant::now();
        other.import(&file)?;
        println!("import (lines: {lines}): {:?}", t.elapsed());
    }
    let t = Instant::now();
    let report = db.restore(&info.name)?;
    println!("restore (with its undo backup): {:?}, {} keys", t.elapsed(), report.keys);
    drop(db);
    let t = Instant::now();
    let verified = redru::verify_dir(dir.path())?;
    println!(
        "verify_dir: {:?}, {} bytes, {} records, clean {}",
        t.elapsed(),
        verified.bytes,
        verified.records,
        verified.is_clean()
    );
    let t = Instant::now();
    let file = redru::verify_file(&info.path)?;
    println!("verify_file (backup): {:?}, clean {}", t.elapsed(), file.is_clean());
    let t = Instant::now();
    drop(opts().open(dir.path())?);
    println!("open (for comparison with verify_dir): {:?}", t.elapsed());
    let t = Instant::now();
    redru::verify_dir(dir.path())?;
    println!("verify_dir again: {:?}", t.elapsed());
    let compacted = redru::compact(dir.path())?;
    println!("{compacted}");
    Ok(())
}
