//! `verify_dir` / `verify_file`: every kind of damage is found, classified
//! and located at its exact line and byte offset; a clean directory is clean;
//! a torn tail is recoverable, corruption is not; nothing is changed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use redru::internal::record::{self, Record, Seq};
use redru::{Error, IndexKind, Options, ProblemKind, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn opts() -> Options {
    Options::new().auto_compact(false)
}

/// `n` sets (records 1..=n) in one segment, then the database is closed.
fn fill(dir: &Path, n: usize) -> redru::Result<()> {
    let db = opts().open(dir)?;
    for i in 1..=n {
        db.set(format!("k{i}"), json!({"n": i, "name": format!("user{i}")}))?;
    }
    db.close()
}

fn first_segment(dir: &Path) -> PathBuf {
    dir.join(redru::internal::log::segment_name(Seq(1)))
}

/// Byte offsets where each line starts.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect()
}

fn encode(first: u64, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        record::encode(Seq(first + i as u64), r, &mut out);
    }
    out
}

fn set(k: &str, v: redru::Value) -> Record {
    Record::Set(k.into(), redru::Doc::from(v))
}

#[test]
fn clean_directory_is_clean_and_counted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    for i in 1..=10 {
        db.set(format!("k{i}"), json!({"name": format!("n{}", i % 3), "email": format!("e{i}")}))?;
    }
    db.create_index("name")?;
    db.create_unique_index("email")?;
    db.save()?;
    for i in 5..=14 {
        db.set(format!("k{i}"), json!({"name": "late", "email": format!("x{i}")}))?;
    }
    db.delete("k1")?;
    db.close()?;
    let before = crate::util::dir_contents(dir.path());
    let report = redru::verify_dir(dir.path())?;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.snapshot.as_ref().and_then(|s| s.seq), Some(12));
    assert_eq!(report.snapshot.as_ref().and_then(|s| s.keys), Some(10));
    assert_eq!(report.replayed, 11);
    assert_eq!(report.skipped, 0);
    assert_eq!(report.records, 11);
    assert_eq!(report.last_seq, 23);
    assert_eq!(report.keys, 13);
    assert_eq!(report.indexes, ["email", "name"]);
    assert_eq!(report.files, 2);
    assert!(report.to_string().ends_with("clean"), "{report}");
    // Reading changed nothing (the lock file keeps its content: same pid).
    assert_eq!(crate::util::dir_contents(dir.path()).len(), before.len());
    for ((name, a), (_, b)) in crate::util::dir_contents(dir.path()).iter().zip(&before) {
        if name != redru::LOCK_NAME {
            assert_eq!(a, b, "{name} changed");
        }
    }
    Ok(())
}

#[test]
fn a_directory_never_opened_gets_no_lock_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let report = redru::verify_dir(dir.path())?;
    assert!(report.is_clean());
    assert_eq!(report.files, 0);
    assert!(!dir.path().join(redru::LOCK_NAME).exists());
    // A missing directory cannot be verified: an error, not a clean report.
    assert!(matches!(redru::verify_dir(&dir.path().join("missing")), Err(Error::Io { .. })));
    Ok(())
}

#[test]
fn an_open_database_is_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = redru::Db::open(dir.path())?;
    db.set("a", json!(1))?;
    assert!(matches!(redru::verify_dir(dir.path()), Err(Error::Locked { .. })));
    drop(db);
    assert!(redru::verify_dir(dir.path())?.is_clean());
    // The lock was released: the database opens again.
    drop(redru::Db::open(dir.path())?);
    Ok(())
}

#[test]
fn torn_tail_is_recoverable_and_located() -> TestResult {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), 5)?;
    let seg = first_segment(dir.path());
    let clean_len = std::fs::metadata(&seg)?.len();
    // Half of a sixth record, as a crash mid-write leaves it.
    let next = encode(6, &[set("k6", json!(6))]);
    let mut bytes = std::fs::read(&seg)?;
    bytes.extend_from_slice(&next[..next.len() / 2]);
    std::fs::write(&seg, &bytes)?;

    let report = redru::verify_dir(dir.path())?;
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::TornTail);
    assert!(p.recoverable);
    // Line 1 is the segment's header.
    assert_eq!((p.line, p.offset, p.after_seq), (Some(7), Some(clean_len), Some(5)));
    assert_eq!(p.file, seg);
    assert!(report.only_recoverable() && !report.is_clean());
    assert_eq!(report.records, 5);
    assert_eq!(report.keys, 5);
    // Opening cuts it; afterwards the directory is clean.
    let db = opts().open(dir.path())?;
    assert_eq!(db.recovery().torn_tail.as_ref().map(|t| t.offset), Some(clean_len));
    drop(db);
    let after = redru::verify_dir(dir.path())?;
    assert!(after.is_clean(), "{after}");
    assert!(after.notes.iter().any(|n| n.contains(".torn-")), "{after}");
    Ok(())
}

#[test]
fn flipped_byte_in_the_middle_is_corruption_at_its_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), 5)?;
    let seg = first_segment(dir.path());
    let mut bytes = std::fs::read(&seg)?;
    let starts = line_starts(&bytes);
    // Record 3 (line 1 is the segment's header).
    bytes[starts[3] + 30] ^= 0x01;
    std::fs::write(&seg, &bytes)?;

    let report = redru::verify_dir(dir.path())?;
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::BadChecksum);
    assert!(!p.recoverable && !report.only_recoverable());
    assert_eq!((p.line, p.offset, p.after_seq), (Some(4), Some(starts[3] as u64), Some(2)));
    // Verify went on past it: records 4 and 5 were read, but replay stopped at the damage.
    assert_eq!(report.records, 4);
    assert_eq!((report.last_seq, report.keys), (2, 2));
    // Open refuses at the same place.
    match opts().open(dir.path()) {
        Err(Error::Corrupt { line, offset, .. }) => assert_eq!((line, offset), (4, starts[3] as u64)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The JSON form names the kind for machines.
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["problems"][0]["kind"], json!("bad_checksum"));
    assert_eq!(json["problems"][0]["offset"], json!(starts[3]));
    Ok(())
}

#[test]
fn every_damaged_line_is_reported() -> TestResult {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), 8)?;
    let seg = first_segment(dir.path());
    let mut bytes = std::fs::read(&seg)?;
    let starts = line_starts(&bytes);
    bytes[starts[1] + 25] ^= 0x02; // line 2: checksum
    bytes[starts[5]..starts[5] + 8].copy_from_slice(b"XXXXXXXX"); // line 6: not a record line
    std::fs::write(&seg, &bytes)?;
    let report = redru::verify_dir(dir.path())?;
    let found: Vec<_> = report.problems.iter().map(|p| (p.kind, p.line, p.offset)).collect();
    assert_eq!(
        found,
        [
            (ProblemKind::BadChecksum, Some(2), Some(starts[1] as u64)),
            (ProblemKind::BadRecord, Some(6), Some(starts[5] as u64)),
        ],
        "{report}"
    );
    assert_eq!(report.records, 6);
    Ok(())
}

#[test]
fn sequence_gap_inside_a_segment() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = first_segment(dir.path());
    let mut bytes = encode(1, &[set("a", json!(1)), set("b", json!(2))]);
    let gap_at = bytes.len() as u64;
    bytes.extend(encode(4, &[set("d", json!(4)), set("e", json!(5))]));
    std::fs::write(&seg, &bytes)?;
    let report = redru::verify_dir(dir.path())?;
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::SequenceGap);
    assert_eq!((p.line, p.offset, p.after_seq), (Some(3), Some(gap_at), Some(2)));
    assert!(p.message.contains("expected 3, found 4"), "{}", p.message);
    // Records after the gap are still checked (4 valid in all).
    assert_eq!(report.records, 4);
    assert_eq!(report.keys, 2);

    // A repeated sequence number steps back.
    let mut back = encode(1, &[set("a", json!(1)), set("b", json!(2))]);
    let back_at = back.len() as u64;
    back.extend(encode(2, &[set("b", json!(3))]));
    std::fs::write(&seg, &back)?;
    let report = redru::verify_dir(dir.path())?;
    let found: Vec<_> = report.problems.iter().map(|p| (p.kind, p.offset)).collect();
    assert_eq!(found, [(ProblemKind::SequenceStepBack, Some(back_at))], "{report}");
    Ok(())
}

#[test]
fn sequence_gap_between_segments_and_after_the_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(first_segment(dir.path()), encode(1, &[set("a", json!(1)), set("b", json!(2))]))?;
    let later = dir.path().join(redru::internal::log::segment_name(Seq(5)));
    std::fs::write(&later, encode(5, &[set("e", json!(5))]))?;
    let report = redru::verify_dir(dir.path())?;
    let found: Vec<_> = report.problems.iter().map(|p| (p.kind, p.file.clone(), p.line, p.offset)).collect();
    assert_eq!(found, [(ProblemKind::SequenceGap, later.clone(), Some(1), Some(0))], "{report}");
    assert!(report.problems[0].message.contains("records 3..4 are missing"), "{report}");

    // The snapshot ends at 2, the log resumes at 5.
    std::fs::remove_file(first_segment(dir.path()))?;
    let db = opts().open(dir.path().join("other"))?;
    db.set("a", json!(1))?;
    db.set("b", json!(2))?;
    db.save()?;
    drop(db);
    let other = dir.path().join("other");
    for entry in std::fs::read_dir(&other)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wal") {
            std::fs::remove_file(path)?;
        }
    }
    std::fs::write(other.join(redru::internal::log::segment_name(Seq(5))), encode(5, &[set("e", json!(5))]))?;
    let report = redru::verify_dir(&other)?;
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].kind, ProblemKind::SequenceGap);
    assert_eq!(report.problems[0].offset, Some(0));
    assert!(report.problems[0].message.contains("the snapshot ends at record 2"), "{report}");
    Ok(())
}

#[test]
fn bad_snapshot_digest_is_located_at_the_trailer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    for i in 0..20 {
        db.set(format!("k{i}"), json!({"v": i}))?;
    }
    db.save()?;
    db.close()?;
    let snap = dir.path().join(redru::internal::snapshot::FILE_NAME);
    let mut bytes = std::fs::read(&snap)?;
    let len = bytes.len();
    // A flipped bit inside a value: still valid JSON, but the digest no longer matches.
    let at = bytes.windows(7).position(|w| w == b"{\"v\":13").unwrap() + 6;
    bytes[at] ^= 0x01; // "13" -> "12"
    std::fs::write(&snap, &bytes)?;

    for report in [redru::verify_dir(dir.path())?, redru::verify_file(&snap)?] {
        let found: Vec<_> = report.problems.iter().map(|p| (p.kind, p.line, p.offset)).collect();
        assert_eq!(
            found,
            [(ProblemKind::SnapshotDigest, Some(1), Some((len - redru::internal::snapshot::TRAILER_LEN) as u64))],
            "{report}"
        );
        assert!(report.problems[0].message.contains("SHA-256 mismatch"), "{report}");
    }
    assert!(matches!(opts().open(dir.path()), Err(Error::BadSnapshot { .. })));

    // Cut short: no trailer at all.
    std::fs::write(&snap, &bytes[..len / 2])?;
    let report = redru::verify_dir(dir.path())?;
    assert_eq!(report.problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [ProblemKind::SnapshotTruncated]);
    Ok(())
}

#[test]
fn records_the_engine_would_refuse_are_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Valid checksums, but the second key breaks the unique index.
    let records = [
        Record::CreateIndex { field: "email".into(), unique: true, kind: IndexKind::Hash },
        set("a", json!({"email": "x"})),
        set("b", json!({"email": "x"})),
    ];
    let bytes = encode(1, &records);
    let third = line_starts(&bytes)[2] as u64;
    std::fs::write(first_segment(dir.path()), &bytes)?;
    let report = redru::verify_dir(dir.path())?;
    let found: Vec<_> = report.problems.iter().map(|p| (p.kind, p.line, p.offset)).collect();
    assert_eq!(found, [(ProblemKind::ReplayRefused, Some(3), Some(third))], "{report}");

    // A record of an unknown kind with a correct checksum.
    let payload = br#"{"seq":2,"op":"frobnicate","key":"z"}"#;
    let mut bytes = encode(1, &[set("a", json!(1))]);
    let second = bytes.len() as u64;
    bytes.extend(format!("{:08x} {}\n", crc32fast::hash(payload), String::from_utf8_lossy(payload)).as_bytes());
    bytes.extend(encode(3, &[set("c", json!(3))]));
    std::fs::write(first_segment(dir.path()), &bytes)?;
    let report = redru::verify_dir(dir.path())?;
    let found: Vec<_> = report.problems.iter().map(|p| (p.kind, p.offset)).collect();
    assert_eq!(found, [(ProblemKind::BadRecord, Some(second))], "{report}");
    assert!(report.problems[0].message.contains("frobnicate"), "{report}");
    Ok(())
}

#[test]
fn verify_file_checks_a_backup_and_its_sha256() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    db.set("a", json!({"email": "x"}))?;
    db.create_unique_index("email")?;
    let info = db.backup()?;
    drop(db);
    let report = redru::verify_file(&info.path)?;
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.keys, report.last_seq, report.files), (1, 2, 2));
    assert_eq!(report.indexes, ["email"]);
    // The .sha256 file disagrees: reported, with the internal digest still fine.
    let sidecar = PathBuf::from(format!("{}.sha256", info.path.display()));
    std::fs::write(&sidecar, format!("{}  {}\n", "0".repeat(64), info.name))?;
    let report = redru::verify_file(&info.path)?;
    assert_eq!(report.problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [ProblemKind::BackupChecksum]);
    Ok(())
}

#[test]
fn leftovers_are_notes_not_problems() -> TestResult {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), 3)?;
    std::fs::write(dir.path().join(redru::internal::snapshot::TMP_NAME), b"{\"partial")?;
    let report = redru::verify_dir(dir.path())?;
    assert!(report.is_clean(), "{report}");
    assert!(report.notes.iter().any(|n| n.contains("interrupted save")), "{report}");
    Ok(())
}

#[test]
fn a_log_starting_inside_the_snapshot_is_fine() -> TestResult {
    // An interrupted save can leave the first live segment starting before the
    // snapshot's end: its first records are skipped, not a step back.
    let dir = tempfile::tempdir()?;
    let db = opts().open(dir.path())?;
    for k in ["a", "b", "c", "d", "e"] {
        db.set(k, json!(k))?;
    }
    db.save()?;
    drop(db);
    std::fs::remove_file(dir.path().join(redru::internal::log::segment_name(Seq(6))))?;
    let records: Vec<Record> = ["c", "d", "e", "f", "g", "h"].iter().map(|k| set(k, json!(k))).collect();
    std::fs::write(dir.path().join(redru::internal::log::segment_name(Seq(3))), encode(3, &records))?;
    let report = redru::verify_dir(dir.path())?;
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.skipped, report.replayed, report.last_seq, report.keys), (3, 3, 8, 8));
    let db = opts().open(dir.path())?;
    assert_eq!(db.len(), 8);
    Ok(())
}
