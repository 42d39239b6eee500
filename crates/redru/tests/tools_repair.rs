//! `repair` and `compact`: a log that open refuses is cut at its first damage,
//! everything after it lands byte for byte in quarantine files (nothing
//! deleted), the database opens and verifies clean; a dry run changes
//! nothing; a damaged snapshot is refused. `compact` shrinks the log offline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use redru::internal::record::{self, Record, Seq};
use redru::{Error, Options, ProblemKind, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn opts() -> Options {
    Options::new().auto_compact(false)
}

fn segment(dir: &Path, first: u64) -> PathBuf {
    dir.join(redru::internal::log::segment_name(Seq(first)))
}

fn line_starts(bytes: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect()
}

fn sets(first: u64, keys: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        record::encode(Seq(first + i as u64), &Record::Set((*k).into(), redru::Doc::from(json!({"k": k}))), &mut out);
    }
    out
}

#[test]
fn repair_cuts_at_the_damage_and_keeps_the_rest_in_quarantine() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = segment(dir.path(), 1);
    let original = sets(1, &["a", "b", "c", "d", "e"]);
    let starts = line_starts(&original);
    let mut damaged = original.clone();
    // Flip a byte inside the value of record 3 (key "c"): its payload still parses.
    let at = starts[2] + damaged[starts[2]..].windows(5).position(|w| w == b"{\"k\":").unwrap() + 6;
    damaged[at] ^= 0x01;
    std::fs::write(&seg, &damaged)?;
    assert!(matches!(opts().open(dir.path()), Err(Error::Corrupt { .. })));

    // Dry run: says what it would do, changes nothing.
    let before = crate::util::dir_contents(dir.path());
    let plan = redru::repair(dir.path(), true)?;
    assert_eq!(crate::util::dir_contents(dir.path()), before);
    assert!(plan.dry_run && plan.after.is_none() && !plan.is_repaired());
    let damage = plan.damage.as_ref().unwrap();
    assert_eq!((damage.kind, damage.offset), (ProblemKind::BadChecksum, Some(starts[2] as u64)));
    assert_eq!(plan.kept_upto, 2);
    assert_eq!(plan.set_aside.len(), 1);
    let aside = &plan.set_aside[0];
    assert_eq!((aside.offset, aside.bytes), (starts[2] as u64, (original.len() - starts[2]) as u64));
    assert_eq!((aside.records, aside.first_seq, aside.last_seq, aside.damaged_lines), (2, Some(4), Some(5), 1));
    assert_eq!(aside.keys, ["d", "e"]);
    assert_eq!(aside.unverified_keys, ["c"]);
    let quarantine =
        dir.path().join(format!("{}.quarantine-{}", redru::internal::log::segment_name(Seq(1)), starts[2]));
    assert_eq!(aside.quarantine, quarantine);
    assert!(plan.to_string().contains("would move"), "{plan}");

    // The real thing.
    let report = redru::repair(dir.path(), false)?;
    assert!(report.is_repaired(), "{report}");
    assert_eq!(report.set_aside, plan.set_aside);
    assert_eq!(std::fs::read(&quarantine)?, &damaged[starts[2]..]);
    assert_eq!(std::fs::read(&seg)?, &original[..starts[2]]);
    let verify = redru::verify_dir(dir.path())?;
    assert!(verify.is_clean(), "{verify}");
    let db = opts().open(dir.path())?;
    assert_eq!(db.keys(), ["a", "b"]);
    assert!(db.recovery().torn_tail.is_none());
    // The log goes on from record 3.
    db.set("f", json!(1))?;
    drop(db);
    assert!(redru::verify_dir(dir.path())?.is_clean());
    // A second repair has nothing to do.
    let again = redru::repair(dir.path(), false)?;
    assert!(again.damage.is_none() && again.set_aside.is_empty(), "{again}");
    Ok(())
}

#[test]
fn later_segments_are_renamed_whole() -> TestResult {
    let dir = tempfile::tempdir()?;
    let first = sets(1, &["a", "b", "c"]);
    let second = sets(4, &["d", "e"]);
    let third = sets(6, &["f"]);
    let mut damaged = first.clone();
    let cut = line_starts(&first)[1];
    damaged[cut + 3] = b'!'; // line 2's checksum digits: not a record line
    std::fs::write(segment(dir.path(), 1), &damaged)?;
    std::fs::write(segment(dir.path(), 4), &second)?;
    std::fs::write(segment(dir.path(), 6), &third)?;

    let report = redru::repair(dir.path(), false)?;
    assert!(report.is_repaired(), "{report}");
    assert_eq!(report.kept_upto, 1);
    let moved: Vec<_> = report.set_aside.iter().map(|s| (s.whole_segment, s.offset, s.bytes)).collect();
    assert_eq!(
        moved,
        [
            (false, cut as u64, (first.len() - cut) as u64),
            (true, 0, second.len() as u64),
            (true, 0, third.len() as u64)
        ]
    );
    let q = |first: u64, off: usize| {
        dir.path().join(format!("{}.quarantine-{off}", redru::internal::log::segment_name(Seq(first))))
    };
    assert_eq!(std::fs::read(q(1, cut))?, &damaged[cut..]);
    assert_eq!(std::fs::read(q(4, 0))?, second);
    assert_eq!(std::fs::read(q(6, 0))?, third);
    assert!(!segment(dir.path(), 4).exists() && !segment(dir.path(), 6).exists());
    assert_eq!(report.set_aside[1].keys, ["d", "e"]);
    let db = opts().open(dir.path())?;
    assert_eq!(db.keys(), ["a"]);
    Ok(())
}

#[test]
fn a_gap_after_the_snapshot_sets_the_whole_log_aside() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!(1))?;
    db.save()?;
    drop(db);
    std::fs::remove_file(segment(dir.path(), 2))?;
    std::fs::write(segment(dir.path(), 4), sets(4, &["x"]))?;
    let report = redru::repair(dir.path(), false)?;
    assert!(report.is_repaired(), "{report}");
    assert_eq!(report.damage.as_ref().map(|d| d.kind), Some(ProblemKind::SequenceGap));
    assert_eq!(report.kept_upto, 1);
    assert!(report.set_aside[0].whole_segment);
    let db = opts().open(dir.path())?;
    assert_eq!(db.keys(), ["a"]);
    db.set("b", json!(2))?;
    drop(db);
    assert!(redru::verify_dir(dir.path())?.is_clean());
    Ok(())
}

#[test]
fn a_torn_tail_is_repaired_too() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut bytes = sets(1, &["a", "b"]);
    let end = bytes.len();
    bytes.extend_from_slice(b"0123abcd {\"seq\":3,\"op");
    std::fs::write(segment(dir.path(), 1), &bytes)?;
    let report = redru::repair(dir.path(), false)?;
    assert_eq!(report.damage.as_ref().map(|d| d.kind), Some(ProblemKind::TornTail));
    assert!(report.is_repaired(), "{report}");
    let q = dir.path().join(format!("{}.quarantine-{end}", redru::internal::log::segment_name(Seq(1))));
    assert_eq!(std::fs::read(q)?, &bytes[end..]);
    Ok(())
}

#[test]
fn repair_refuses_a_damaged_snapshot_and_an_open_database() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!(1))?;
    assert!(matches!(redru::repair(dir.path(), false), Err(Error::Locked { .. })));
    db.save()?;
    drop(db);
    let snap = dir.path().join(redru::internal::snapshot::FILE_NAME);
    let mut bytes = std::fs::read(&snap)?;
    bytes[20] ^= 0x01;
    std::fs::write(&snap, &bytes)?;
    let before = crate::util::dir_contents(dir.path());
    match redru::repair(dir.path(), false) {
        Err(Error::BadSnapshot { reason, .. }) => assert!(reason.contains("nothing was changed"), "{reason}"),
        other => panic!("expected BadSnapshot, got {other:?}"),
    }
    let after = crate::util::dir_contents(dir.path());
    assert_eq!(after.len(), before.len());
    assert!(after.iter().zip(&before).all(|(a, b)| a.0 == b.0 && (a.1 == b.1 || a.0 == redru::LOCK_NAME)));
    Ok(())
}

#[test]
fn an_intact_log_needs_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!(1))?;
    drop(db);
    let before = crate::util::dir_contents(dir.path());
    let report = redru::repair(dir.path(), false)?;
    assert!(report.damage.is_none(), "{report}");
    assert_eq!(report.kept_upto, 1);
    assert!(report.to_string().contains("nothing to repair"));
    assert_eq!(crate::util::dir_contents(dir.path()).len(), before.len());
    Ok(())
}

#[test]
fn compact_shrinks_the_log_and_keeps_the_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    for round in 0..20 {
        for i in 0..50 {
            db.set(format!("k{i}"), json!({"round": round, "pad": "x".repeat(50)}))?;
        }
    }
    db.create_index("round")?;
    drop(db);
    let report = redru::compact(dir.path())?;
    assert_eq!((report.keys, report.seq), (50, 1001));
    assert!(!report.unchanged);
    assert_eq!(report.before.snapshot_bytes, 0);
    assert!(report.before.wal_bytes > 50_000, "{report}");
    // Only the new segment's header: `{"op":"segment","first":1002,"prev":1}`.
    let header = redru::internal::record::Marker::Header { first: Seq(1002), prev: Some(Seq(1)) };
    assert_eq!(report.after.wal_bytes, redru::internal::record::marker_line(header).len() as u64);
    assert!(report.after.total() * 5 < report.before.total(), "{report}");
    assert!(report.to_string().contains("before:"), "{report}");
    assert!(redru::verify_dir(dir.path())?.is_clean());
    let db = opts().open(dir.path())?;
    assert_eq!(db.len(), 50);
    assert_eq!(db.find("round", &json!(19))?.len(), 50);
    drop(db);
    // Again: nothing to do.
    assert!(redru::compact(dir.path())?.unchanged);
    // Not on a missing directory, and not while open.
    assert!(matches!(redru::compact(&dir.path().join("nope")), Err(Error::Io { .. })));
    let db = opts().open(dir.path())?;
    assert!(matches!(redru::compact(dir.path()), Err(Error::Locked { .. })));
    drop(db);
    Ok(())
}
