//! Guards recovery on open: a torn tail at every byte offset is cut and kept
//! aside; a damaged middle record, a sequence gap and a bad snapshot are
//! refused with the file, line and offset; a crash between any two steps of
//! `save` recovers the exact state.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::util::{TestResult, dump, files_containing, line_starts, segments};
use redru::vfs::{FileBytes, LockOutcome, Preallocation, StdFs, VFile, Vfs};
use redru::{Db, Durability, Error, Options, json};

/// A database with `n` records in its log and nothing in a snapshot.
fn fill(dir: &Path, n: usize) -> redru::Result<Vec<(String, serde_json::Value)>> {
    let db = Db::open(dir)?;
    for i in 0..n {
        db.set(format!("key{i}"), json!({"i": i, "text": "some text to make the line longer"}))?;
    }
    let model = dump(&db);
    db.close()?;
    Ok(model)
}

#[test]
fn a_torn_tail_is_cut_at_every_offset_and_kept_aside() -> TestResult {
    let template = tempfile::tempdir()?;
    let full = fill(template.path(), 5)?;
    let seg = segments(template.path()).remove(0);
    let bytes = std::fs::read(&seg)?;
    let starts = line_starts(&bytes);
    let last_start = starts[starts.len() - 2];
    for cut in last_start + 1..bytes.len() {
        let dir = tempfile::tempdir()?;
        let name = seg.file_name().ok_or("no name")?;
        std::fs::write(dir.path().join(name), &bytes[..cut])?;
        let db = Db::open(dir.path())?;
        assert_eq!(dump(&db), full[..4].to_vec(), "cut at {cut}");
        let torn = db.recovery().torn_tail.clone().ok_or("no torn tail reported")?;
        assert_eq!(torn.offset, last_start as u64);
        assert_eq!(torn.bytes, (cut - last_start) as u64);
        assert_eq!(torn.after_seq, 4);
        // The cut bytes are kept, byte for byte.
        assert_eq!(std::fs::read(&torn.side_file)?, bytes[last_start..cut].to_vec());
        assert_eq!(crate::util::read_segment(&dir.path().join(name))?.len(), last_start);
        // Writing goes on from record 5, and the next open is clean.
        db.set("after", json!(true))?;
        drop(db);
        let db = Db::open(dir.path())?;
        assert!(db.recovery().torn_tail.is_none());
        assert_eq!(db.stats().last_seq, 5);
        assert_eq!(db.get_value("after").as_ref(), Some(&json!(true)));
    }
    Ok(())
}

/// Zeros after the last record are the open segment's preallocated zeros
/// (what a crash leaves of them): the data ends there, nothing is torn or
/// set aside, and writing goes on at the data's end. What lies after the
/// zeros is not the log's (here garbage): an open neither reads nor keeps it.
#[test]
fn zeros_after_the_last_record_end_the_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let model = fill(dir.path(), 3)?;
    let seg = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg)?;
    let end = bytes.len();
    bytes.extend_from_slice(&[0u8; 4096]);
    bytes.extend_from_slice(b"garbage\n");
    std::fs::write(&seg, &bytes)?;
    let db = Db::open(dir.path())?;
    assert_eq!(dump(&db), model);
    assert!(db.recovery().torn_tail.is_none());
    assert!(db.recovery().warning().is_none());
    db.set("after", json!(4))?;
    db.close()?;
    // A clean close leaves the segment without zeros: its data only.
    let after = std::fs::read(&seg)?;
    assert_eq!(after[..end], bytes[..end]);
    assert!(!after.contains(&0) && !after.ends_with(b"garbage\n"));
    let db = Db::open(dir.path())?;
    assert_eq!(db.stats().last_seq, 4);
    assert_eq!(db.get_value("after"), Some(json!(4)));
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_refused_with_line_and_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), 10)?;
    let seg = segments(dir.path()).remove(0);
    let original = std::fs::read(&seg)?;
    let starts = line_starts(&original);
    for line in [1usize, 4, 9] {
        let mut bytes = original.clone();
        bytes[starts[line - 1] + 30] ^= 0x20;
        std::fs::write(&seg, &bytes)?;
        let err = Db::open(dir.path()).err().ok_or("open accepted corruption")?;
        match &err {
            Error::Corrupt { path, line: l, offset, reason } => {
                assert_eq!(path, &seg);
                assert_eq!(*l, line as u64);
                assert_eq!(*offset, starts[line - 1] as u64);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("redru::repair"), "{message}");
        assert!(message.contains(&format!("line {line}")), "{message}");
        // Nothing was changed by the refused open.
        assert_eq!(std::fs::read(&seg)?, bytes);
        assert!(files_containing(dir.path(), ".torn-").is_empty());
    }
    Ok(())
}

#[test]
fn a_sequence_gap_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), 4)?;
    let seg = segments(dir.path()).remove(0);
    let bytes = std::fs::read(&seg)?;
    // Line 1 is the segment's header; record N is line N + 1.
    let starts = line_starts(&bytes);
    // Drop record 2: records 3 and 4 are valid but out of sequence.
    let mut gapped = bytes[..starts[2]].to_vec();
    gapped.extend_from_slice(&bytes[starts[3]..]);
    std::fs::write(&seg, &gapped)?;
    match Db::open(dir.path()) {
        Err(Error::Corrupt { line: 3, offset, reason, .. }) => {
            assert_eq!(offset, starts[2] as u64);
            assert!(reason.contains("gap") && reason.contains("expected 2, found 3"), "{reason}");
        }
        other => panic!("expected a sequence gap, got {other:?}"),
    }
    // A record repeated (a step back) is refused too.
    let mut repeated = bytes.clone();
    repeated.extend_from_slice(&bytes[starts[4]..]);
    std::fs::write(&seg, &repeated)?;
    assert!(matches!(Db::open(dir.path()), Err(Error::Corrupt { line: 6, .. })));
    Ok(())
}

#[test]
fn a_damaged_snapshot_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.set("k", json!("v"))?;
    db.save()?;
    drop(db);
    let path = dir.path().join("database.json");
    let mut bytes = std::fs::read(&path)?;
    let i = bytes.len() / 3;
    bytes[i] ^= 0x01;
    std::fs::write(&path, &bytes)?;
    match Db::open(dir.path()) {
        Err(e @ Error::BadSnapshot { .. }) => assert!(e.to_string().contains("SHA-256 mismatch"), "{e}"),
        other => panic!("expected BadSnapshot, got {other:?}"),
    }
    Ok(())
}

/// The states a crash can leave at each step of `save`, rebuilt by hand from
/// copies taken before and after: each must reopen to the same data.
#[test]
fn a_crash_between_any_two_steps_of_save_recovers() -> TestResult {
    let before = tempfile::tempdir()?;
    let model = fill(before.path(), 6)?;
    let after = tempfile::tempdir()?;
    for entry in std::fs::read_dir(before.path())? {
        let entry = entry?;
        std::fs::copy(entry.path(), after.path().join(entry.file_name()))?;
    }
    {
        let db = Db::open(after.path())?;
        db.save()?;
    }
    let old_seg = segments(before.path()).remove(0);
    let new_seg = segments(after.path()).remove(0);
    assert_ne!(old_seg.file_name(), new_seg.file_name());
    let snapshot = std::fs::read(after.path().join("database.json"))?;

    type Step = fn(&Path, &Path, &Path, &[u8]) -> std::io::Result<()>;
    let steps: [(&str, Step); 5] = [
        ("rotated: new segment created (its header only)", |d, _old, new, _| {
            std::fs::copy(new, d.join(new.file_name().unwrap_or_default())).map(drop)
        }),
        ("snapshot temp file half written", |d, _old, new, snap| {
            std::fs::copy(new, d.join(new.file_name().unwrap_or_default())).map(drop)?;
            std::fs::write(d.join("database.json.tmp"), &snap[..snap.len() / 2])
        }),
        ("snapshot temp file complete, not renamed", |d, _old, new, snap| {
            std::fs::copy(new, d.join(new.file_name().unwrap_or_default())).map(drop)?;
            std::fs::write(d.join("database.json.tmp"), snap)
        }),
        ("snapshot renamed, old segment not yet removed", |d, _old, new, snap| {
            std::fs::copy(new, d.join(new.file_name().unwrap_or_default())).map(drop)?;
            std::fs::write(d.join("database.json"), snap)
        }),
        ("old segment removed", |d, old, new, snap| {
            std::fs::copy(new, d.join(new.file_name().unwrap_or_default())).map(drop)?;
            std::fs::write(d.join("database.json"), snap)?;
            std::fs::remove_file(d.join(old.file_name().unwrap_or_default()))
        }),
    ];
    for (name, step) in steps {
        let dir = tempfile::tempdir()?;
        std::fs::copy(&old_seg, dir.path().join(old_seg.file_name().ok_or("name")?))?;
        step(dir.path(), &old_seg, &new_seg, &snapshot)?;
        let db = Db::open(dir.path())?;
        assert_eq!(dump(&db), model, "{name}");
        assert!(!dir.path().join("database.json.tmp").exists(), "{name}: temp file cleaned up");
        // Writing and reopening again works from every state.
        db.set("next", json!(name))?;
        assert_eq!(db.stats().last_seq, 7, "{name}");
        drop(db);
        let db = Db::open(dir.path())?;
        assert_eq!(db.len(), model.len() + 1, "{name}");
        assert_eq!(db.get_value("next").as_ref(), Some(&json!(name)));
    }
    Ok(())
}

#[test]
fn relaxed_modes_recover_everything_after_a_clean_close() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Never).open(dir.path())?;
    for i in 0..500 {
        db.set(format!("k{i}"), json!(i))?;
    }
    assert!(db.stats().durable_seq < 500, "nothing forced a sync yet");
    db.sync()?;
    assert_eq!(db.stats().durable_seq, 500);
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.len(), 500);
    Ok(())
}

/// The log is preallocated in the modes that fsync on their own (`Always`,
/// `Periodic`) and not in the relaxed ones, unless
/// `Options::preallocate_log` says otherwise: without zeros the segment
/// holds its data and nothing after it; either way it reopens whole.
#[test]
fn the_log_is_preallocated_where_it_fsyncs_unless_told_otherwise() -> TestResult {
    use std::time::{Duration, Instant};
    let periodic = Durability::Periodic(Duration::from_secs(1));
    for durability in [Durability::Always, periodic, Durability::Buffered, Durability::Never] {
        for preallocate in [None, Some(false), Some(true)] {
            let dir = tempfile::tempdir()?;
            let mut options = Options::new().durability(durability);
            if let Some(on) = preallocate {
                options = options.preallocate_log(on);
            }
            let db = options.open(dir.path())?;
            db.set("k", json!({"some": "value"}))?;
            db.sync()?;
            // The zeros are written by a thread of their own: wait for them
            // where they are due, and give them as long where they are not.
            let seg = segments(dir.path()).remove(0);
            let started = Instant::now();
            let trailing =
                || -> std::io::Result<usize> { Ok(std::fs::read(&seg)?.iter().rev().take_while(|&&b| b == 0).count()) };
            while trailing()? == 0 && started.elapsed() < Duration::from_millis(300) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let what = format!("{durability:?}, preallocate_log {preallocate:?}");
            // Relaxed logs go without zeros where the writeback replaces them (Linux).
            let fsyncs = matches!(durability, Durability::Always | Durability::Periodic(_));
            let zeros = preallocate.unwrap_or(fsyncs || !cfg!(target_os = "linux"));
            assert_eq!(trailing()? > 0, zeros, "{what}: {} zero bytes after the data", trailing()?);
            db.close()?;
            assert_eq!(Db::open(dir.path())?.get_value("k"), Some(json!({"some": "value"})), "{what}");
        }
    }
    Ok(())
}

/// A clean close cuts the zeros after the data even when this handle wrote
/// none (a relaxed log, which hands its pages to writeback instead): zeros
/// another run left, by a crash or in a mode that preallocates, do not stay
/// in a directory closed cleanly.
#[test]
fn a_clean_close_cuts_zeros_another_run_left() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Never).open(dir.path())?;
    db.set("a", json!(1))?;
    db.close()?;
    // What a crash of a preallocating run leaves: zeros after the data.
    let seg = segments(dir.path()).remove(0);
    let data = std::fs::metadata(&seg)?.len();
    let mut bytes = std::fs::read(&seg)?;
    bytes.extend(std::iter::repeat_n(0u8, 1 << 16));
    std::fs::write(&seg, bytes)?;
    let db = Options::new().durability(Durability::Never).preallocate_log(false).open(dir.path())?;
    db.set("b", json!(2))?;
    db.close()?;
    let after = std::fs::read(&seg)?;
    assert!(after.len() as u64 > data, "the second record is in the segment");
    assert_ne!(after.last(), Some(&0), "{} bytes, zeros left at the end", after.len());
    let db = Db::open(dir.path())?;
    assert_eq!((db.get_value("a"), db.get_value("b")), (Some(json!(1)), Some(json!(2))));
    Ok(())
}

/// The real file system, counting the ranges the log hands to writeback.
#[derive(Debug, Default)]
struct WritebackSpy(Arc<Mutex<Vec<(u64, u64)>>>);

struct SpiedFile(Box<dyn VFile>, Arc<Mutex<Vec<(u64, u64)>>>);

impl VFile for SpiedFile {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.0.append(buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, buf)
    }
    fn zero(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.zero(offset, len)
    }
    fn trim(&self, len: u64) -> std::io::Result<()> {
        self.0.trim(len)
    }
    fn start_writeback(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.1.lock().unwrap_or_else(|p| p.into_inner()).push((offset, len));
        self.0.start_writeback(offset, len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.0.sync()
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.0.truncate(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
}

impl Vfs for WritebackSpy {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        StdFs.exists(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn VFile>> {
        Ok(Box::new(SpiedFile(StdFs.open_append(path)?, Arc::clone(&self.0))))
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn VFile>> {
        Ok(Box::new(SpiedFile(StdFs.create_new(path)?, Arc::clone(&self.0))))
    }
    fn read(&self, path: &Path) -> std::io::Result<FileBytes> {
        StdFs.read(path)
    }
    fn read_copy(&self, path: &Path) -> std::io::Result<FileBytes> {
        StdFs.read_copy(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<LockOutcome> {
        StdFs.try_lock(path)
    }
    fn preallocation(&self) -> Preallocation {
        StdFs.preallocation()
    }
    fn writeback_every(&self) -> u64 {
        StdFs.writeback_every()
    }
}

/// A relaxed log without zeros hands the whole pages behind its writer to
/// the kernel's writeback every MiB, from the start of the data on, in
/// order; a log with zeros (their fsyncs write it out) or one that fsyncs
/// every write hands none.
#[test]
fn a_relaxed_log_without_zeros_hands_its_pages_to_writeback_as_it_grows() -> TestResult {
    use std::time::{Duration, Instant};
    let value = json!({"text": "x".repeat(1000)});
    for (durability, preallocate, expected) in [
        (Durability::Never, None, true),
        (Durability::Buffered, None, true),
        (Durability::Buffered, Some(false), true),
        (Durability::Buffered, Some(true), false),
        (Durability::Always, None, false),
        (Durability::Always, Some(false), false),
    ] {
        let what = format!("{durability:?}, preallocate_log {preallocate:?}");
        // Only Linux has the system call (`StdFs::writeback_every` is 0 elsewhere).
        let expected = expected && cfg!(target_os = "linux");
        let dir = tempfile::tempdir()?;
        let spy = WritebackSpy::default();
        let ranges = Arc::clone(&spy.0);
        let mut options = Options::new().durability(durability).auto_compact(false).vfs(Arc::new(spy));
        if let Some(on) = preallocate {
            options = options.preallocate_log(on);
        }
        let db = options.open(dir.path())?;
        let header = std::fs::metadata(segments(dir.path()).remove(0))?.len();
        // About 3 MiB of records, never synced (Always syncs each itself).
        let mut batch = redru::Batch::new();
        for n in 0..3000 {
            batch.push_set(format!("key{n:05}"), value.clone());
            if batch.len() == 100 {
                db.batch(std::mem::take(&mut batch))?;
            }
        }
        let taken = || ranges.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let handed = || taken().iter().map(|(_, len)| len).sum::<u64>();
        let started = Instant::now();
        while handed() < 2 << 20 && started.elapsed() < Duration::from_secs(if expected { 5 } else { 1 }) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ranges_taken = taken();
        if expected {
            assert!(handed() >= 2 << 20, "{what}: {} bytes handed to writeback", handed());
            // In order, each from where the one before stopped, whole pages.
            let mut at = header;
            for (offset, len) in &ranges_taken {
                assert_eq!(*offset, at, "{what}: {ranges_taken:?}");
                assert_eq!((offset + len) % 4096, 0, "{what}: {ranges_taken:?}");
                at = offset + len;
            }
        } else {
            assert!(ranges_taken.is_empty(), "{what}: {ranges_taken:?}");
        }
        db.close()?;
        assert_eq!(Db::open(dir.path())?.len(), 3000, "{what}");
    }
    Ok(())
}
