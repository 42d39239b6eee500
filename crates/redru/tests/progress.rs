//! Guards `Options::progress`: every long operation reports its stages, each
//! starting at 0 and ending at its total, with totals that match the work
//! (keys written, bytes of the snapshot and of the log).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redru::progress::{Progress, Stage};
use redru::{Db, Options, json};

use crate::util::TestResult;

/// Collects reports; `stages()` gives, per stage, the totals and whether
/// each run of it started at 0 and ended at its total.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Progress>>>);

impl Seen {
    fn options(&self) -> Options {
        let sink = self.0.clone();
        Options::new().progress(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(*p))
    }

    fn take(&self) -> Vec<Progress> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The stages reported, in order of first report, with their total.
    fn stages(&self) -> Vec<(Stage, u64)> {
        let reports = self.take();
        let mut out: Vec<(Stage, u64)> = Vec::new();
        let mut max: BTreeMap<usize, u64> = BTreeMap::new();
        for p in &reports {
            assert!(p.done <= p.total, "{p:?} is past its total");
            match out.iter().position(|&(s, t)| s == p.stage && t == p.total) {
                Some(i) => {
                    max.insert(i, max[&i].max(p.done));
                }
                None => {
                    assert_eq!(p.done, 0, "{p:?}: a stage starts at 0");
                    out.push((p.stage, p.total));
                    max.insert(out.len() - 1, 0);
                }
            }
        }
        for (i, (stage, total)) in out.iter().enumerate() {
            assert_eq!(max[&i], *total, "{stage:?} ended at {} of {total}", max[&i]);
        }
        out
    }
}

fn fill(db: &Db, n: usize) -> redru::Result<()> {
    let mut batch = redru::Batch::new();
    for i in 0..n {
        batch.push_set(format!("key:{i:05}"), json!({"n": i, "pad": "x".repeat(40)}));
    }
    db.batch(batch)
}

#[test]
fn open_save_backup_restore_and_verify_report_their_stages() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seen = Seen::default();
    let db = seen.options().open(dir.path())?;
    fill(&db, 30_000)?;
    seen.take();

    let report = db.save()?;
    assert_eq!(seen.stages(), [(Stage::WriteSnapshot, 30_000)]);
    db.set("after", json!(1))?;
    let backup = db.backup()?;
    assert_eq!(seen.stages(), [(Stage::WriteSnapshot, 30_001)]);
    drop(db);

    let db = seen.options().open(dir.path())?;
    let stages = seen.stages();
    let kinds: Vec<Stage> = stages.iter().map(|s| s.0).collect();
    assert_eq!(kinds, [Stage::CheckSnapshot, Stage::LoadSnapshot, Stage::ReplayLog]);
    assert_eq!(stages[1].1, report.bytes, "the snapshot's bytes");
    assert!(stages[2].1 > 0, "the log after the snapshot holds `after`");

    db.restore_file(&backup.path)?;
    // A restore hashes the file as it parses it, in one pass: one stage.
    let stages = seen.stages();
    assert_eq!(stages[0], (Stage::LoadSnapshot, std::fs::metadata(&backup.path)?.len()), "{stages:?}");
    drop(db);

    redru::verify_dir_with(dir.path(), &seen.options())?;
    let kinds: Vec<Stage> = seen.stages().iter().map(|s| s.0).collect();
    assert!(kinds.contains(&Stage::LoadSnapshot) && kinds.contains(&Stage::CheckLog), "{kinds:?}");
    Ok(())
}

#[test]
fn nothing_is_reported_without_an_observer_or_for_an_empty_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seen = Seen::default();
    let db = seen.options().open(dir.path())?;
    // A fresh directory: no snapshot; an empty log still reports its stage.
    let stages = seen.stages();
    assert!(stages.iter().all(|&(s, t)| s == Stage::ReplayLog && t == 0), "{stages:?}");
    db.set("k", json!(1))?;
    drop(db);
    // Without an observer the same work runs silently (and must not panic).
    let db = Db::open(dir.path())?;
    db.save()?;
    assert!(seen.take().is_empty());
    Ok(())
}
