//! Guards concurrent use: writers on many threads (sharing fsyncs through
//! group commit), readers and saves running alongside, and every
//! acknowledged write present after reopening.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::TestResult;
use redru::{Db, Durability, Options, json};

#[test]
fn writers_on_many_threads_are_all_recovered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    const THREADS: usize = 8;
    const EACH: usize = 150;
    std::thread::scope(|s| -> redru::Result<()> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let db = &db;
                s.spawn(move || -> redru::Result<()> {
                    for i in 0..EACH {
                        db.set(format!("t{t}:{i}"), json!({"t": t, "i": i}))?;
                        // A write is visible to its writer once acknowledged.
                        assert_eq!(db.get_value(&format!("t{t}:{i}")).as_ref(), Some(&json!({"t": t, "i": i})));
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        }
        Ok(())
    })?;
    let stats = db.stats();
    assert_eq!(stats.keys, THREADS * EACH);
    assert_eq!(stats.last_seq, (THREADS * EACH) as u64);
    assert_eq!(stats.durable_seq, stats.last_seq, "every acknowledged write is durable");
    assert!(stats.wal_syncs <= stats.last_seq, "{stats:?}");
    drop(db);
    let db = Db::open(dir.path())?;
    for t in 0..THREADS {
        for i in 0..EACH {
            assert_eq!(db.get_value(&format!("t{t}:{i}")).as_ref(), Some(&json!({"t": t, "i": i})));
        }
    }
    Ok(())
}

#[test]
fn saves_and_reads_run_alongside_writers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Never).open(dir.path())?;
    for i in 0..2000 {
        db.set(format!("base{i}"), json!(i))?;
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| -> redru::Result<()> {
        let writer = s.spawn(|| -> redru::Result<()> {
            for i in 0..3000 {
                db.set(format!("w{i}"), json!(i))?;
                if i % 3 == 0 {
                    db.delete(&format!("base{i}"))?;
                }
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        });
        let reader = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                // Keys of the base set that are never deleted stay readable.
                assert_eq!(db.get_value("base1").as_ref(), Some(&json!(1)));
            }
        });
        // At least one save, however the threads are scheduled (a writer that
        // finished first made `saves > 0` fail now and then on a loaded machine).
        let mut saves = 0;
        loop {
            db.save()?;
            saves += 1;
            if done.load(Ordering::SeqCst) {
                break;
            }
        }
        writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        assert!(saves > 0);
        Ok(())
    })?;
    let expected = crate::util::dump(&db);
    assert_eq!(expected.len(), 2000 - 667 + 3000);
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(crate::util::dump(&db), expected);
    Ok(())
}

/// A full-scan query runs on a frozen copy of the map: writers go on while
/// it runs. A count, not a time: with the read lock held for the whole scan,
/// as before, only writes slipping in around the lock counted (about 1,200
/// in three scans here); on the frozen copy the writer completed about
/// 150,000. The stall itself is measured in the bench harness.
#[test]
fn writers_go_on_during_a_long_scan() -> Result<(), redru::Error> {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let dir =
        tempfile::tempdir().map_err(|source| redru::Error::Io { action: "creating", path: "tmp".into(), source })?;
    let db = Options::new().durability(Durability::Never).open(dir.path())?;
    let mut batch = redru::Batch::new();
    for i in 0..200_000 {
        batch.push_set(format!("k{i}"), json!({"n": i, "pad": "xxxxxxxxxxxxxxxx"}));
    }
    db.batch(batch)?;
    let scanning = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let during = AtomicU64::new(0);
    let query = redru::Query::parse("n < 0")?;
    std::thread::scope(|s| -> Result<(), redru::Error> {
        let writer = s.spawn(|| -> Result<(), redru::Error> {
            let mut i = 0u64;
            while !done.load(Ordering::SeqCst) {
                let started_during = scanning.load(Ordering::SeqCst);
                db.set(format!("w{}", i % 1000), json!(i))?;
                if started_during && scanning.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
            Ok(())
        });
        for _ in 0..3 {
            scanning.store(true, Ordering::SeqCst);
            let result = db.query(&query)?;
            scanning.store(false, Ordering::SeqCst);
            assert!(result.entries.is_empty() && matches!(result.plan, redru::Plan::Scan { .. }));
        }
        done.store(true, Ordering::SeqCst);
        writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(())
    })?;
    let during = during.load(Ordering::SeqCst);
    assert!(during >= 20_000, "only {during} writes completed while full scans ran: writers waited for the scans");
    Ok(())
}

/// A lock held for an instant (as by a child process between fork and exec,
/// which shares the open lock file) does not make `open` fail: it tries
/// again for a moment. A real holder is still refused (the other tests).
#[test]
fn open_waits_out_a_lock_held_for_an_instant() -> Result<(), redru::Error> {
    let dir =
        tempfile::tempdir().map_err(|source| redru::Error::Io { action: "creating", path: "tmp".into(), source })?;
    let first = Db::open(dir.path())?;
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(10));
        first.close()
    });
    // Asked while `first` still holds the directory.
    let second = Db::open(dir.path());
    closer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    assert!(second.is_ok(), "refused although the holder let go 10 ms later: {:?}", second.err());
    Ok(())
}

/// A file system whose log fsyncs wait while a gate is closed (bounded: a
/// closed gate lets a sync through after 20 s, so a broken test cannot hang).
#[derive(Debug, Default)]
struct Gate {
    closed: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    syncs_waiting: std::sync::atomic::AtomicUsize,
    /// Writes (`append`, and `write_at` through it) to log segments.
    log_writes: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = closed;
        self.changed.notify_all();
    }
    fn pass(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        self.syncs_waiting.fetch_add(1, Ordering::SeqCst);
        while *closed && std::time::Instant::now() < deadline {
            closed = self
                .changed
                .wait_timeout(closed, std::time::Duration::from_millis(50))
                .map_or_else(|p| p.into_inner().0, |r| r.0);
        }
        self.syncs_waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct GatedFs(std::sync::Arc<Gate>);

struct GatedFile(Box<dyn redru::vfs::VFile>, std::sync::Arc<Gate>, bool);

impl redru::vfs::VFile for GatedFile {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        if self.2 {
            self.1.log_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.0.append(buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        if self.2 {
            self.1.pass();
        }
        self.0.sync()
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.0.truncate(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
}

impl GatedFs {
    fn wrap(&self, path: &std::path::Path, file: Box<dyn redru::vfs::VFile>) -> Box<dyn redru::vfs::VFile> {
        let log = path.extension().is_some_and(|e| e == "wal");
        Box::new(GatedFile(file, std::sync::Arc::clone(&self.0), log))
    }
}

impl redru::vfs::Vfs for GatedFs {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        redru::vfs::StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        redru::vfs::StdFs.list(dir)
    }
    fn exists(&self, path: &std::path::Path) -> std::io::Result<bool> {
        redru::vfs::StdFs.exists(path)
    }
    fn open_append(&self, path: &std::path::Path) -> std::io::Result<Box<dyn redru::vfs::VFile>> {
        Ok(self.wrap(path, redru::vfs::StdFs.open_append(path)?))
    }
    fn create_new(&self, path: &std::path::Path) -> std::io::Result<Box<dyn redru::vfs::VFile>> {
        Ok(self.wrap(path, redru::vfs::StdFs.create_new(path)?))
    }
    fn read(&self, path: &std::path::Path) -> std::io::Result<redru::vfs::FileBytes> {
        redru::vfs::StdFs.read(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        redru::vfs::StdFs.rename(from, to)
    }
    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        redru::vfs::StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        redru::vfs::StdFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &std::path::Path) -> std::io::Result<redru::vfs::LockOutcome> {
        redru::vfs::StdFs.try_lock(path)
    }
}

/// Waits until `written` reaches `all` or has not moved for 15 s, 2 min at
/// most, and returns where it stands. Why so long: each set writes 1 MiB
/// into the page cache, and on a loaded machine with a busy disk the
/// kernel's dirty-page throttling can hold such a write for seconds (with
/// 5 s the test failed twice at load 11-14, which phase not recorded).
fn until_done_or_stuck(written: &std::sync::atomic::AtomicUsize, all: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (mut last, mut moved) = (0, std::time::Instant::now());
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = written.load(Ordering::SeqCst);
        if now == all || moved.elapsed() > std::time::Duration::from_secs(15) {
            break;
        }
        if now != last {
            (last, moved) = (now, std::time::Instant::now());
        }
    }
    written.load(Ordering::SeqCst)
}

/// In the relaxed modes the undos of writes not yet durable are bounded by a
/// sync once they hold 64 MiB: that sync must not hold the writer who crosses
/// the limit (it stalled workload 10's writer 40-140 ms every ~400,000
/// overwrites), and a writer must still wait once twice as much is waiting
/// (the bound).
#[test]
fn a_relaxed_writer_never_waits_for_the_undo_limits_sync_until_twice_the_limit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let gate = std::sync::Arc::new(Gate::default());
    let options = Options::new()
        .vfs(std::sync::Arc::new(GatedFs(std::sync::Arc::clone(&gate))))
        .durability(Durability::Never)
        .auto_compact(false)
        .sweep_interval(None);
    let db = options.open(dir.path())?;
    // Overwrites of one key with 1 MiB values: each undo holds the old value.
    let big = |i: usize| json!({"i": i, "pad": "x".repeat(1 << 20)});
    db.set("k", big(0))?;
    gate.set(true);
    let done = AtomicBool::new(false);
    let written = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> TestResult {
        let writer = s.spawn(|| -> redru::Result<()> {
            for i in 1..=100 {
                db.set("k", big(i))?;
                written.store(i, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        });
        // 64 writes cross the limit; a sync is waiting at the gate by then,
        // and the writer goes on past it while the gate stays closed.
        let passed = until_done_or_stuck(&written, 100);
        // The sync runs on a thread of its own, which a loaded machine may
        // start after the writer is done: give it time to reach the gate.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while gate.syncs_waiting.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let waiting = gate.syncs_waiting.load(Ordering::SeqCst);
        gate.set(false);
        writer.join().map_err(|_| "writer panicked")??;
        assert!(waiting >= 1, "no sync was started past the limit");
        assert_eq!(passed, 100, "the writer waited for the sync at the limit ({passed} of 100 writes done)");
        Ok(())
    })?;
    assert!(done.load(Ordering::SeqCst));

    // Twice the limit: with the gate closed again and 130 more writes, the
    // writer stops until the sync passes.
    gate.set(true);
    let written = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> TestResult {
        let writer = s.spawn(|| -> redru::Result<()> {
            for i in 1..=140 {
                db.set("k", big(i))?;
                written.store(i, Ordering::SeqCst);
            }
            Ok(())
        });
        let stopped_at = until_done_or_stuck(&written, 140);
        gate.set(false);
        writer.join().map_err(|_| "writer panicked")??;
        assert!(stopped_at < 140, "the writer never waited: the undos are unbounded");
        Ok(())
    })?;
    assert_eq!(db.get_value("k").and_then(|v| v.get("i").cloned()), Some(json!(140)));
    Ok(())
}

/// With `Durability::Always`, the records of writers who append while an
/// fsync runs wait in memory for the next leader, whose one write hands them
/// all to the OS (before: a write each, under the writer lock, issue 18);
/// each is acknowledged only after that write and its fsync.
#[test]
fn durable_writers_behind_an_fsync_share_one_write() -> TestResult {
    const OTHERS: u64 = 6;
    let dir = tempfile::tempdir()?;
    let gate = std::sync::Arc::new(Gate::default());
    let options = Options::new()
        .vfs(std::sync::Arc::new(GatedFs(std::sync::Arc::clone(&gate))))
        .durability(Durability::Always)
        .auto_compact(false)
        .sweep_interval(None);
    let db = options.open(dir.path())?;
    db.set("first", json!(0))?;
    let first = db.stats().last_seq;
    gate.set(true);
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    let (before, during) = std::thread::scope(|s| -> Result<(usize, usize), Box<dyn std::error::Error>> {
        let write = |k: u64| {
            let acknowledged = &acknowledged;
            let db = &db;
            move || -> redru::Result<()> {
                db.set(format!("k{k}"), json!(k))?;
                acknowledged.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        let leader = s.spawn(write(0));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while gate.syncs_waiting.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let before = gate.log_writes.load(Ordering::SeqCst);
        let others: Vec<_> = (1..=OTHERS).map(|k| s.spawn(write(k))).collect();
        // Every other writer has appended (and none is acknowledged: the gate holds the fsync).
        while db.stats().last_seq < first + 1 + OTHERS && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let during = gate.log_writes.load(Ordering::SeqCst);
        assert_eq!(acknowledged.load(Ordering::SeqCst), 0, "a write was acknowledged before its fsync");
        gate.set(false);
        for h in std::iter::once(leader).chain(others) {
            h.join().map_err(|_| "writer panicked")??;
        }
        Ok((before, during))
    })?;
    assert_eq!(db.stats().last_seq, first + 1 + OTHERS);
    assert_eq!(during, before, "the writers behind the fsync wrote their records themselves");
    let after = gate.log_writes.load(Ordering::SeqCst);
    assert_eq!(after - before, 1, "the {OTHERS} records went out in {} writes", after - before);
    drop(db);
    let db = Db::open(dir.path())?;
    for k in 0..=OTHERS {
        assert_eq!(db.get_value(&format!("k{k}")), Some(json!(k)));
    }
    Ok(())
}
