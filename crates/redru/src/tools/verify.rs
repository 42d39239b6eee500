//! `verify`: read a data directory (or one snapshot/backup file) and check
//! everything, changing nothing: snapshot digest and structure, every log
//! record's checksum and kind, sequence continuity from the snapshot, replay,
//! and every index rebuilt from scratch against the incrementally kept one.
//! Each problem names its file, line and byte offset; a torn tail is reported
//! as recoverable, distinct from corruption. `repair` cuts where this finds
//! the first damage, so that after a repair this reports clean.
//!
//! One file, past 800 lines: every check feeds the one report in the order
//! the files are read, and the report's types are its vocabulary.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::progress::{Meter, Observer, Stage};
use crate::state::index::{FieldPath, ValueDigest};
use crate::state::store::{State, build_index};
use crate::storage::files::{self, LOCK_NAME};
use crate::storage::log::{self, Found, Segment, Tail};
use crate::storage::record::{self, DecodeError, Seq};
use crate::storage::snapshot::{self, IndexDef, SnapshotInfo};
use crate::storage::vfs::{LockGuard, LockOutcome, Vfs};

/// What kind of problem [`verify_dir`] or [`verify_file`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Incomplete or damaged bytes after the last valid record of the last
    /// log segment: what a crash mid-write leaves. Recoverable: opening cuts
    /// them (keeping the bytes in a side file).
    TornTail,
    /// A log line whose CRC does not match its payload.
    BadChecksum,
    /// A log line that is not a record: malformed, incomplete, or a payload
    /// of an unknown kind or shape.
    BadRecord,
    /// A sequence number skips ahead: records are missing (within a segment,
    /// between segments, or between the snapshot and the log).
    SequenceGap,
    /// A sequence number goes back or repeats.
    SequenceStepBack,
    /// The snapshot's SHA-256 trailer does not match its content.
    SnapshotDigest,
    /// The snapshot has no SHA-256 trailer: truncated, or not a redru snapshot.
    SnapshotTruncated,
    /// The digest matches but the snapshot is not a valid redru snapshot
    /// (bad JSON, format, version, or key count).
    SnapshotInvalid,
    /// An index definition is invalid (bad field path, defined twice).
    IndexDefinition,
    /// A valid record that the engine would have refused against the state
    /// before it (a unique violation, a duplicate or missing index).
    ReplayRefused,
    /// An index kept up to date by replay differs from a rebuild from scratch.
    IndexMismatch,
    /// A unique index holds two keys with the same value.
    UniqueViolation,
    /// A backup's `.sha256` file does not match the backup.
    BackupChecksum,
    /// There is no snapshot but the log starts after record 1: the snapshot
    /// was deleted. Restore a backup; `repair` cannot help.
    MissingSnapshot,
    /// The snapshot ends at record S but there is no log segment at all, in
    /// a directory redru opened before: the newest segment was deleted.
    MissingSegment,
    /// A file named like a segment that does not continue the log, while a
    /// later segment does: a stray, not part of the chain. `repair` sets it
    /// aside alone.
    StraySegment,
    /// A sealed segment names the segment its log continues in, but that
    /// segment is missing or does not start with its header: the newest
    /// segment was deleted or emptied. `repair` sets the seal (and the
    /// emptied file) aside, accepting the loss.
    MissingSuccessor,
    /// The snapshot (version 3) names the segment its log continues in, but
    /// that segment is missing while no other segment remains, or does not
    /// start with its header: the newest segment was deleted or emptied.
    /// `repair` sets what is left of it aside and starts it again with its
    /// header, accepting the loss.
    MissingContinuation,
}

impl ProblemKind {
    /// Whether opening the database fixes it by itself, losing nothing acknowledged.
    pub fn is_recoverable(self) -> bool {
        self == ProblemKind::TornTail
    }

    /// Whether the problem lies in the log (and `repair` can cut there).
    pub(crate) fn is_log_damage(self) -> bool {
        matches!(
            self,
            ProblemKind::TornTail
                | ProblemKind::BadChecksum
                | ProblemKind::BadRecord
                | ProblemKind::SequenceGap
                | ProblemKind::SequenceStepBack
                | ProblemKind::ReplayRefused
                | ProblemKind::StraySegment
                | ProblemKind::MissingSuccessor
                | ProblemKind::MissingContinuation
        )
    }

    fn text(self) -> &'static str {
        match self {
            ProblemKind::TornTail => "torn tail (recoverable)",
            ProblemKind::BadChecksum => "bad checksum",
            ProblemKind::BadRecord => "bad record",
            ProblemKind::SequenceGap => "sequence gap",
            ProblemKind::SequenceStepBack => "sequence steps back",
            ProblemKind::SnapshotDigest => "bad snapshot digest",
            ProblemKind::SnapshotTruncated => "truncated snapshot",
            ProblemKind::SnapshotInvalid => "invalid snapshot",
            ProblemKind::IndexDefinition => "invalid index definition",
            ProblemKind::ReplayRefused => "record the engine would refuse",
            ProblemKind::IndexMismatch => "index mismatch",
            ProblemKind::UniqueViolation => "unique index violated",
            ProblemKind::BackupChecksum => "backup checksum mismatch",
            ProblemKind::MissingSnapshot => "missing snapshot",
            ProblemKind::StraySegment => "stray segment",
            ProblemKind::MissingSegment => "missing segment",
            ProblemKind::MissingSuccessor => "missing successor",
            ProblemKind::MissingContinuation => "missing continuation",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// One problem, located as precisely as the check allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The file it is in (the data directory for problems of the replayed state).
    pub file: PathBuf,
    /// 1-based line number, when the problem is at a line.
    pub line: Option<u64>,
    /// Byte offset of the start of the damaged line or region, when known.
    pub offset: Option<u64>,
    /// The last valid log record before the problem, when it is in the log.
    pub after_seq: Option<u64>,
    /// Whether opening recovers from it by itself (only torn tails).
    pub recoverable: bool,
    /// What exactly was found.
    pub message: String,
}

impl Problem {
    fn new(kind: ProblemKind, file: &Path, line: Option<u64>, offset: Option<u64>, message: String) -> Problem {
        Problem {
            kind,
            file: file.to_owned(),
            line,
            offset,
            after_seq: None,
            recoverable: kind.is_recoverable(),
            message,
        }
    }

    fn after(mut self, seq: Option<Seq>) -> Problem {
        self.after_seq = seq.map(|s| s.0);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if let Some(offset) = self.offset {
            write!(f, ", byte offset {offset}")?;
        }
        write!(f, ": {}: {}", self.kind, self.message)
    }
}

/// The snapshot (or backup) file that was checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotChecked {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The last record it holds, when readable.
    pub seq: Option<u64>,
    /// Its number of keys, when it parsed.
    pub keys: Option<usize>,
    /// Its SHA-256 digest (of the bytes before the trailer), when it matched.
    pub sha256: Option<String>,
    /// The segment its log continues in (version 3), when it parsed.
    pub continues: Option<u64>,
}

/// One log segment that was checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentChecked {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Valid records read from it.
    pub records: u64,
    /// The sequence number its name says it starts at.
    pub first_seq: u64,
}

/// What [`verify_dir`] or [`verify_file`] checked and found.
///
/// Outcomes: [`VerifyReport::is_clean`] (no problem at all);
/// [`VerifyReport::only_recoverable`] (only a torn tail, which the next open
/// cuts by itself); otherwise corruption, each [`Problem`] naming its file,
/// line and byte offset, which `repair` (log damage) or `restore` (snapshot
/// damage) deals with. An I/O error or a locked directory is an `Err`, not a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The directory or file checked.
    pub path: PathBuf,
    /// The snapshot, if there is one.
    pub snapshot: Option<SnapshotChecked>,
    /// The log segments read, in order.
    pub segments: Vec<SegmentChecked>,
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Valid log records read.
    pub records: u64,
    /// Log records applied on top of the snapshot.
    pub replayed: u64,
    /// Valid log records skipped because the snapshot holds them.
    pub skipped: u64,
    /// The last record of the replayed state (replay stops at the first damage).
    pub last_seq: u64,
    /// Keys in the replayed state.
    pub keys: usize,
    /// Whether a state was loaded and replayed (false when the snapshot is
    /// damaged: then `keys`, `last_seq` and `indexes` say nothing).
    pub replay_checked: bool,
    /// The indexes rebuilt from scratch and compared, by field.
    pub indexes: Vec<String>,
    /// Things worth knowing that are not problems (leftovers of an interrupted
    /// save, side files of earlier recoveries).
    pub notes: Vec<String>,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    /// How long the check took.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

/// Serializes a duration as whole milliseconds (every report's JSON form).
pub(crate) fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl VerifyReport {
    fn new(path: &Path) -> VerifyReport {
        VerifyReport {
            path: path.to_owned(),
            snapshot: None,
            segments: Vec::new(),
            files: 0,
            bytes: 0,
            records: 0,
            replayed: 0,
            skipped: 0,
            last_seq: 0,
            keys: 0,
            replay_checked: false,
            indexes: Vec::new(),
            notes: Vec::new(),
            problems: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    /// Whether nothing at all is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether every problem is one that opening recovers from by itself (a torn tail).
    pub fn only_recoverable(&self) -> bool {
        self.problems.iter().all(|p| p.recoverable)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} ({} files, {} bytes, {} ms)",
            self.path.display(),
            self.files,
            self.bytes,
            self.duration.as_millis()
        )?;
        if let Some(s) = &self.snapshot {
            write!(f, "  snapshot {}: {} bytes", s.path.display(), s.bytes)?;
            if let Some(seq) = s.seq {
                write!(f, ", up to record {seq}")?;
            }
            if let Some(keys) = s.keys {
                write!(f, ", {keys} keys")?;
            }
            match &s.sha256 {
                Some(d) => writeln!(f, ", sha256 {} ok", &d[..d.len().min(16)])?,
                None => writeln!(f, ", sha256 NOT ok")?,
            }
        }
        if !self.segments.is_empty() || self.snapshot.is_none() {
            writeln!(
                f,
                "  log: {} segment(s), {} valid records ({} replayed, {} already in the snapshot)",
                self.segments.len(),
                self.records,
                self.replayed,
                self.skipped
            )?;
        }
        if !self.replay_checked {
            writeln!(f, "  state: not replayed (no intact snapshot to start from)")?;
        } else {
            writeln!(
                f,
                "  state: {} keys up to record {}; {} index(es) rebuilt and compared{}",
                self.keys,
                self.last_seq,
                self.indexes.len(),
                if self.indexes.is_empty() { String::new() } else { format!(" ({})", self.indexes.join(", ")) }
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        if self.is_clean() {
            return write!(f, "clean");
        }
        let n = self.problems.len();
        let what = if self.only_recoverable() { " (recoverable: opening the database fixes it)" } else { "" };
        writeln!(f, "{n} problem{}{what}:", if n == 1 { "" } else { "s" })?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Checks the data directory `dir` on the real file system; see [`verify_dir_with`].
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    verify_dir_with(dir, &Options::default())
}

/// Checks the data directory `dir` through `options`' file system, changing nothing.
///
/// Takes the directory lock first, so on a directory a `Db` has open it
/// returns [`Error::Locked`] rather than reading half-written state; the lock
/// is released before returning. Taking the lock writes this process's pid
/// into `redru.lock` (the only write); a directory without a lock file has
/// never been opened by redru and is read without one (no file is created).
pub fn verify_dir_with(dir: &Path, options: &Options) -> Result<VerifyReport> {
    let vfs = &*options.vfs;
    let lock = lock_dir(vfs, dir, false)?;
    Ok(analyze(vfs, dir, lock.is_some(), options.observer())?.report)
}

/// Checks one snapshot or backup file on the real file system; see [`verify_file_with`].
pub fn verify_file(path: &Path) -> Result<VerifyReport> {
    verify_file_with(path, &Options::default())
}

/// Checks one snapshot or backup file: digest, structure, index definitions,
/// unique indexes, and the `<file>.sha256` beside it when there is one.
pub fn verify_file_with(path: &Path, options: &Options) -> Result<VerifyReport> {
    let started = Instant::now();
    let vfs = &*options.vfs;
    let mut report = VerifyReport::new(path);
    let bytes = vfs.read(path).map_err(|e| Error::io("reading", path, e))?;
    report.files = 1;
    report.bytes = bytes.len() as u64;
    let (checked, state) = check_snapshot(path, &bytes, &mut report.problems, options.observer());
    report.snapshot = Some(checked);
    if let Some(state) = state {
        report.replay_checked = true;
        report.last_seq = state.seq.0;
        report.keys = state.map.len();
        report.indexes = state.indexes.keys().cloned().collect();
    }
    let sidecar = sidecar_path(path);
    if vfs.exists(&sidecar).map_err(|e| Error::io("checking", &sidecar, e))? {
        let text = vfs.read(&sidecar).map_err(|e| Error::io("reading", &sidecar, e))?;
        report.files += 1;
        report.bytes += text.len() as u64;
        if let Some(problem) = check_sidecar(path, &bytes, &text) {
            report.problems.push(problem);
        }
    } else {
        report.notes.push(format!("no {} beside it: only the internal digest was checked", sidecar.display()));
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// `<file>.sha256`: the whole file's SHA-256 in `sha256sum` format.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Lowercase hex SHA-256 of all of `bytes` (what `sha256sum` prints).
pub(crate) fn file_sha256(bytes: &[u8]) -> String {
    snapshot::hex(&Sha256::digest(bytes))
}

/// Compares a `.sha256` file's digest (its first word) with the file's bytes.
pub(crate) fn check_sidecar(path: &Path, bytes: &[u8], sidecar: &[u8]) -> Option<Problem> {
    check_sidecar_digest(path, bytes.len() as u64, &file_sha256(bytes), sidecar)
}

/// [`check_sidecar`] for a file of `len` bytes already hashed to `actual`.
pub(crate) fn check_sidecar_digest(path: &Path, len: u64, actual: &str, sidecar: &[u8]) -> Option<Problem> {
    let text = String::from_utf8_lossy(sidecar);
    let stored = text.split_whitespace().next().unwrap_or("");
    if stored.eq_ignore_ascii_case(actual) {
        return None;
    }
    Some(Problem::new(
        ProblemKind::BackupChecksum,
        path,
        None,
        None,
        format!("its .sha256 file says {stored:?}, the file's {len} bytes hash to {actual}"),
    ))
}

/// Takes the directory lock. With `create` false, a missing lock file means
/// no `Db` ever opened the directory: nothing is locked and nothing created.
pub(crate) fn lock_dir(vfs: &dyn Vfs, dir: &Path, create: bool) -> Result<Option<Box<dyn LockGuard>>> {
    if !vfs.exists(dir).map_err(|e| Error::io("checking", dir, e))? {
        return Err(Error::io("opening", dir, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let lock_path = dir.join(LOCK_NAME);
    if !create && !vfs.exists(&lock_path).map_err(|e| Error::io("checking", &lock_path, e))? {
        return Ok(None);
    }
    match crate::storage::vfs::lock(vfs, &lock_path).map_err(|e| Error::io("locking", &lock_path, e))? {
        LockOutcome::Acquired(guard) => Ok(Some(guard)),
        LockOutcome::Held(pid) => Err(Error::Locked { dir: dir.to_owned(), pid }),
    }
}

/// Where the log stops being usable: the first log problem, in log order.
#[derive(Clone, Debug)]
pub(crate) struct Cut {
    /// Position of the segment in [`Analysis::live`].
    pub segment: usize,
    /// Byte offset in that segment (0: the whole segment).
    pub offset: u64,
    /// The problem found there.
    pub problem: Problem,
}

/// What `verify` found, with what `repair` needs to act on it.
pub(crate) struct Analysis {
    pub report: VerifyReport,
    /// The live log segments (those `open` reads), in order, strays included.
    pub live: Vec<Segment>,
    /// Segments that do not continue the log while a later one does.
    pub strays: Vec<Segment>,
    /// The first log damage.
    pub cut: Option<Cut>,
    /// Whether the snapshot (if any) is intact.
    pub snapshot_ok: bool,
    /// The last record before the cut (what a repair keeps).
    pub kept_upto: Seq,
    /// The snapshot's last record.
    pub snapshot_seq: Seq,
}

/// Checks a data directory; the caller holds the lock. `opened_before`:
/// whether it held a lock file before this check (redru opened it).
pub(crate) fn analyze(vfs: &dyn Vfs, dir: &Path, opened_before: bool, observer: Option<&Observer>) -> Result<Analysis> {
    let started = Instant::now();
    let mut report = VerifyReport::new(dir);
    let names = vfs.list(dir).map_err(|e| Error::io("listing", dir, e))?;
    let backups = dir.join(files::BACKUP_DIR);
    if names.iter().any(|n| n == files::BACKUP_DIR) {
        // Backups are checked by `verify_backups`; here only the leftovers.
        for name in vfs.list(&backups).unwrap_or_default() {
            if files::is_backup_temp(&name) {
                report.notes.push(format!(
                    "{}/{name} is left over from a backup that failed or was killed; opening removes it",
                    files::BACKUP_DIR
                ));
            }
        }
    }
    for name in &names {
        if name == snapshot::TMP_NAME {
            report.notes.push(format!(
                "{name} is left over from an interrupted save (the rename never happened); opening removes it"
            ));
        } else if files::is_segment_temp(name) {
            report.notes.push(format!(
                "{name} is the header of a segment a crash interrupted before its rename (no record); opening removes it"
            ));
        } else if name.starts_with("wal-") && (name.contains(".torn-") || name.contains(".quarantine-")) {
            report
                .notes
                .push(format!("{name} holds bytes set aside by an earlier recovery or repair (never read by redru)"));
        }
    }

    // The snapshot: the base of the replay.
    let snap_path = dir.join(snapshot::FILE_NAME);
    let mut snapshot_ok = true;
    let (base, snapshot_seq) = if names.iter().any(|n| n == snapshot::FILE_NAME) {
        let bytes = vfs.read(&snap_path).map_err(|e| Error::io("reading", &snap_path, e))?;
        report.files += 1;
        report.bytes += bytes.len() as u64;
        let before = report.problems.len();
        let (checked, state) = check_snapshot(&snap_path, &bytes, &mut report.problems, observer);
        snapshot_ok = report.problems.len() == before;
        let seq = checked.seq.map(Seq);
        report.snapshot = Some(checked);
        (state, seq)
    } else {
        (Some(State::default()), Some(Seq(0)))
    };
    if !snapshot_ok {
        report.notes.push(match snapshot_seq {
            Some(seq) => format!(
                "the snapshot is damaged: the log was checked against its stated end (record {seq}) but not replayed"
            ),
            None => "the snapshot is damaged and its end is unreadable: log records were checked one by one".into(),
        });
    }

    // The log: segments wholly inside the snapshot are leftovers of an
    // interrupted save (open removes them unread), as in `log::read_log`.
    let segments = log::list_segments(vfs, dir)?;
    let covered = match snapshot_seq {
        Some(s) => segments
            .iter()
            .enumerate()
            .position(|(i, _)| segments.get(i + 1).is_none_or(|next| next.first > s.next()))
            .unwrap_or(segments.len()),
        None => 0,
    };
    if covered > 0 {
        report.notes.push(format!(
            "{covered} log segment(s) hold only records already in the snapshot (an interrupted save); opening removes them"
        ));
    }
    let live: Vec<Segment> = segments[covered..].to_vec();
    // A version 3 snapshot names the segment its log continues in (see
    // `log::check_continuation` for why it must be there, header first).
    let continues = report.snapshot.as_ref().and_then(|s| s.continues).filter(|_| snapshot_ok).map(Seq);
    if let (Some(c), Some(seq), true) = (continues, snapshot_seq, segments.is_empty() && opened_before) {
        let path = dir.join(log::segment_name(c));
        report.problems.push(Problem::new(
            ProblemKind::MissingContinuation,
            &path,
            None,
            None,
            format!(
                "the snapshot says its log continues after record {seq} in {}, which is missing, and no other log \
                 segment remains: that segment is created before the snapshot names it, so the newest segment was \
                 deleted (with every write after the snapshot); put it back, or let `repair` start it again to \
                 accept the loss",
                path.display()
            ),
        ));
    } else if let (None, true, true, Some(seq)) = (continues, opened_before, snapshot_ok, snapshot_seq)
        && report.snapshot.is_some()
        && let Some(path) = log::missing_successor(&segments, dir, seq)
    {
        report.problems.push(Problem::new(
            ProblemKind::MissingSegment,
            &path,
            None,
            None,
            format!(
                "the snapshot ends at record {seq} but there is no log segment, not even {}: every save creates \
                 it before its snapshot exists, so the newest segment was deleted (with every write after the \
                 snapshot); put it back, or create it empty to accept the loss",
                path.display()
            ),
        ));
    }
    let mut log = LogCheck {
        state: base,
        snapshot_seq: snapshot_seq.unwrap_or(Seq(0)),
        replaying: snapshot_ok,
        replayed: 0,
        skipped: 0,
        records: 0,
        problems: Vec::new(),
        cut: None,
        segment: 0,
        last_good: snapshot_seq.unwrap_or(Seq(0)),
        seal_before: None,
    };
    let mut expected: Option<Seq> = snapshot_seq.map(Seq::next);
    let mut strays = Vec::new();
    // The last segment read (its first record), and where it was sealed.
    let mut previous: Option<Seq> = None;
    let mut sealed_before: Option<(usize, u64)> = None;
    // Mapped, not copied: knowing every size first gives progress a total.
    let files = live
        .iter()
        .map(|segment| vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e)))
        .collect::<Result<Vec<_>>>()?;
    let meter = Meter::start(observer, Stage::CheckLog, files.iter().map(|f| f.len() as u64).sum());
    for (i, (segment, bytes)) in live.iter().zip(files).enumerate() {
        log.segment = i;
        meter.advance(bytes.len() as u64);
        report.files += 1;
        report.bytes += bytes.len() as u64;
        // The first live segment may start inside the snapshot (its first
        // records are skipped); after that, each segment continues the last.
        if i == 0 && report.snapshot.is_none() && segment.first > Seq(1) {
            let last = segment.first.0 - 1;
            let message = format!(
                "there is no snapshot, but the log starts at record {}: records 1..{last} were only in a snapshot \
                 that is gone; restore the newest backup (copy it to {}) — `repair` would set every record aside",
                segment.first,
                dir.join(snapshot::FILE_NAME).display()
            );
            log.problem(Problem::new(ProblemKind::MissingSnapshot, &segment.path, Some(1), Some(0), message), 0);
            // What follows cannot be replayed without the records before it.
            log.state = None;
            log.replaying = false;
        } else if let Some(want) = expected
            && segment.first != want
            && (i > 0 || segment.first > want)
            && live[i + 1..].iter().any(|later| later.first == want)
        {
            // A later segment continues the log: this one is not part of it.
            let message = format!(
                "a file named as a segment starting at record {} lies in the log, which continues at record {want} in {}: \
                 it is not part of the log",
                segment.first,
                live[i + 1..]
                    .iter()
                    .find(|later| later.first == want)
                    .map_or(String::new(), |l| l.path.display().to_string())
            );
            log.problems.push(Problem::new(ProblemKind::StraySegment, &segment.path, Some(1), Some(0), message));
            strays.push(segment.clone());
            continue;
        } else if let Some(want) = expected
            && (segment.first > want || (i > 0 && segment.first != want))
        {
            let message = if i == 0 && report.snapshot.is_none() {
                format!(
                    "there is no snapshot, so the log must start at record 1, but it starts at {}: records 1..{} are missing",
                    segment.first,
                    segment.first.0.saturating_sub(1)
                )
            } else if i == 0 {
                format!(
                    "the snapshot ends at record {} but the log resumes at {}: records {}..{} are missing",
                    want.0 - 1,
                    segment.first,
                    want,
                    segment.first.0.saturating_sub(1)
                )
            } else if segment.first > want {
                format!(
                    "the segment starts at record {} but the previous one ends before record {want}: records {want}..{} are missing",
                    segment.first,
                    segment.first.0 - 1
                )
            } else {
                format!(
                    "the segment starts at record {} but the previous one already reached record {}",
                    segment.first,
                    want.0 - 1
                )
            };
            let kind = if segment.first > want { ProblemKind::SequenceGap } else { ProblemKind::SequenceStepBack };
            log.problem(Problem::new(kind, &segment.path, Some(1), Some(0), message).after(Some(Seq(want.0 - 1))), 0);
        }
        // The chain: a sealed segment's successor starts with its header, and
        // a header names the segment before it.
        let header = first_header(&bytes);
        log.seal_before = sealed_before;
        if continues == Some(segment.first) && !log::starts_with_header(&bytes, segment.first) {
            let message = format!(
                "the snapshot says its log continues after record {} in this segment, which it names only once the \
                 segment exists with its header, but it does not start with its header ({}): the writes after the \
                 snapshot are gone; `repair` sets this file aside and starts the segment again",
                segment.first.0 - 1,
                if bytes.is_empty() {
                    "emptied to 0 bytes".to_owned()
                } else {
                    format!("{} bytes, cut or overwritten", bytes.len())
                }
            );
            let problem = Problem::new(ProblemKind::MissingContinuation, &segment.path, Some(1), Some(0), message)
                .after(Some(Seq(segment.first.0 - 1)));
            log.problem(problem, 0);
        }
        if let Some((sealed_at, _)) = sealed_before
            && header.is_none()
        {
            let message = format!(
                "{} was sealed naming this segment as the one the log continues in, but it does not start with its \
                 header (emptied, or cut inside it): its writes are gone; `repair` sets the seal and this file aside",
                live[sealed_at].path.display()
            );
            let problem = Problem::new(ProblemKind::MissingSuccessor, &segment.path, Some(1), Some(0), message)
                .after(Some(Seq(segment.first.0 - 1)));
            log.problem(problem, 0);
        }
        if let (Some(Some(prev)), Some(before)) = (header, previous)
            && prev != before
        {
            let message = format!(
                "its header names the segment starting at record {prev} as the one before it, but the log's \
                 previous segment starts at record {before}"
            );
            log.problem(Problem::new(ProblemKind::BadRecord, &segment.path, Some(1), Some(0), message), 0);
        }
        let successor = live.get(i + 1).map(|s| s.first);
        let before = log.records;
        let end = check_segment(&mut log, segment, &bytes, successor)?;
        let next = end.next;
        sealed_before = end.sealed.map(|offset| (i, offset));
        previous = Some(segment.first);
        if let (Some(offset), None) = (end.sealed, successor) {
            let missing = segment.path.with_file_name(log::segment_name(next));
            let message = format!(
                "the segment is sealed: its last line says the log continues in {}, which is missing (a segment is \
                 sealed only once its successor is durable): the newest segment was deleted, with its writes; put \
                 it back, or let `repair` set the seal aside to accept the loss",
                missing.display()
            );
            let line = bytes[..offset as usize].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let problem = Problem::new(ProblemKind::MissingSuccessor, &segment.path, Some(line), Some(offset), message)
                .after(Some(Seq(next.0 - 1)));
            log.problem(problem, offset);
        }
        if let Some(offset) = end.torn_seal {
            report.notes.push(format!(
                "{}: a crash interrupted the seal a rotation was appending (its successor is there); opening completes it",
                segment.path.display()
            ));
            sealed_before = Some((i, offset));
        }
        report.segments.push(SegmentChecked {
            path: segment.path.clone(),
            bytes: bytes.len() as u64,
            records: log.records - before,
            first_seq: segment.first.0,
        });
        expected = Some(next);
    }
    report.records = log.records;
    report.replayed = log.replayed;
    report.skipped = log.skipped;
    report.problems.append(&mut log.problems);

    // Every index kept up to date by replay must equal a rebuild from scratch.
    if let Some(state) = &log.state {
        report.replay_checked = true;
        report.last_seq = state.seq.0.max(log.snapshot_seq.0);
        report.keys = state.map.len();
        for (field, index) in &state.indexes {
            report.indexes.push(field.clone());
            let rebuilt = build_index(&state.map, index.path().clone(), index.unique(), index.kind());
            if !index.same_entries(&rebuilt) {
                let (kept, fresh) = (index.info(), rebuilt.info());
                report.problems.push(Problem::new(
                    ProblemKind::IndexMismatch,
                    dir,
                    None,
                    None,
                    format!(
                        "the index on `{field}` after replay to record {} has {} entries over {} values; rebuilt from the data it has {} over {}",
                        state.seq, kept.entries, kept.distinct_values, fresh.entries, fresh.distinct_values
                    ),
                ));
            }
        }
    }
    report.duration = started.elapsed();
    Ok(Analysis {
        report,
        live,
        strays,
        cut: log.cut,
        snapshot_ok,
        kept_upto: log.last_good,
        snapshot_seq: snapshot_seq.unwrap_or(Seq(0)),
    })
}

/// Replay and problem collection across the log.
struct LogCheck {
    /// The replayed state (`None` when the snapshot could not be loaded).
    state: Option<State>,
    snapshot_seq: Seq,
    /// Replay stops at the first log problem: the state is what a repair keeps.
    replaying: bool,
    replayed: u64,
    skipped: u64,
    records: u64,
    problems: Vec<Problem>,
    cut: Option<Cut>,
    /// Position of the segment being read.
    segment: usize,
    /// The last record before the first problem.
    last_good: Seq,
    /// The segment before the one being read and where its seal starts, if
    /// it is sealed.
    seal_before: Option<(usize, u64)>,
}

impl LogCheck {
    fn problem(&mut self, problem: Problem, offset: u64) {
        if self.cut.is_none() && problem.kind.is_log_damage() {
            // A cut at the very start of a segment whose predecessor is sealed
            // moves to the seal: kept alone, it would name a successor that
            // repair has set aside.
            let (segment, offset) = match self.seal_before {
                Some((sealed, seal_offset)) if offset == 0 && sealed + 1 == self.segment => (sealed, seal_offset),
                _ => (self.segment, offset),
            };
            self.cut = Some(Cut { segment, offset, problem: problem.clone() });
            self.replaying = false;
        }
        self.problems.push(problem);
    }

    fn record(&mut self, path: &Path, found: Found) {
        self.records += 1;
        if self.cut.is_some() {
            return;
        }
        if found.seq <= self.snapshot_seq {
            self.skipped += 1;
            return;
        }
        if self.replaying
            && let Some(state) = &mut self.state
        {
            // The engine checked every record against the state before logging it.
            if let Err(e) = state.check(&found.record) {
                let problem = Problem::new(
                    ProblemKind::ReplayRefused,
                    path,
                    Some(found.line),
                    Some(found.offset),
                    format!("record {}: {e}", found.seq),
                )
                .after(Some(self.last_good));
                self.problem(problem, found.offset);
                return;
            }
            state.apply(found.seq, &found.record);
            self.replayed += 1;
        }
        self.last_good = found.seq;
    }
}

/// How [`check_segment`] found a segment to end.
struct SegmentEnd {
    /// The sequence number the next segment should start at.
    next: Seq,
    /// Where its seal starts, if it is sealed.
    sealed: Option<u64>,
    /// Where an incomplete seal starts, if it ends in one (open completes it).
    torn_seal: Option<u64>,
}

/// Scans one segment, going on past damage to report every damaged line.
/// `successor`: the first sequence number of the segment after it, if any.
fn check_segment(log: &mut LogCheck, segment: &Segment, bytes: &[u8], successor: Option<Seq>) -> Result<SegmentEnd> {
    let path = segment.path.as_path();
    let mut pos = 0usize;
    let mut line_base = 0u64;
    let mut expected = segment.first;
    let end = |next, sealed, torn_seal| Ok(SegmentEnd { next, sealed, torn_seal });
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let outcome = log::scan(rest, expected, successor, |mut found| {
            found.line += line_base;
            found.offset += pos as u64;
            log.record(path, found);
            Ok(())
        })?;
        let damage = match outcome {
            Ok(scanned) => {
                let next = scanned.next;
                return match scanned.tail {
                    Tail::Clean if successor.is_none() && log::after_zeros(&rest[scanned.end as usize..]) => {
                        // What open sets aside: records after the zeros that
                        // end the data (written out of order, or damage).
                        let at = pos as u64 + scanned.end;
                        let after = Seq(next.0 - 1);
                        let message = format!(
                            "valid records after the zeros that end the data at offset {at} (after record {after}): never \
                             acknowledged if the disk wrote its pages in order; opening keeps them in {} and cuts them",
                            log::segment_name(segment.first) + &format!(".torn-{at}")
                        );
                        let line =
                            line_base + 1 + rest[..scanned.end as usize].iter().filter(|&&b| b == b'\n').count() as u64;
                        let problem =
                            Problem::new(ProblemKind::TornTail, path, Some(line), Some(at), message).after(Some(after));
                        log.problem(problem, at);
                        end(next, None, None)
                    }
                    Tail::Clean => end(next, None, None),
                    Tail::Sealed { offset } => end(next, Some(pos as u64 + offset), None),
                    Tail::TornSeal { offset } => end(next, None, Some(pos as u64 + offset)),
                    Tail::Torn { offset, line, reason } => {
                        let at = pos as u64 + offset;
                        let after = Seq(next.0 - 1);
                        let message = format!(
                            "{} bytes after record {after} are not a complete record ({reason}); opening cuts them and keeps them in {}",
                            log::torn_bytes(&bytes[at as usize..]).len(),
                            log::segment_name(segment.first) + &format!(".torn-{at}")
                        );
                        let problem =
                            Problem::new(ProblemKind::TornTail, path, Some(line_base + line), Some(at), message)
                                .after(Some(after));
                        log.problem(problem, at);
                        end(next, None, None)
                    }
                };
            }
            Err(damage) => damage,
        };
        let at = pos + damage.offset as usize;
        let line = line_base + damage.line;
        let expected_there = damage.after.map(Seq::next).unwrap_or(expected);
        let newline = bytes[at..].iter().position(|&b| b == b'\n').map(|n| at + n);
        let text = &bytes[at..newline.unwrap_or(bytes.len())];
        let decoded = if newline.is_some() { record::decode(text) } else { Err(DecodeError::Malformed(String::new())) };
        let after = damage.after.or(if expected_there.0 > 1 { Some(Seq(expected_there.0 - 1)) } else { None });
        match decoded {
            Ok((seq, _)) => {
                // A valid record out of order: report it, then follow the log from it.
                let kind = if seq > expected_there { ProblemKind::SequenceGap } else { ProblemKind::SequenceStepBack };
                log.problem(
                    Problem::new(kind, path, Some(line), Some(at as u64), damage.reason).after(after),
                    at as u64,
                );
                pos = at;
                line_base = line - 1;
                expected = seq;
            }
            Err(why) => {
                let kind = if matches!(why, DecodeError::Checksum { .. }) {
                    ProblemKind::BadChecksum
                } else {
                    ProblemKind::BadRecord
                };
                log.problem(
                    Problem::new(kind, path, Some(line), Some(at as u64), damage.reason).after(after),
                    at as u64,
                );
                pos = newline.map_or(bytes.len(), |n| n + 1);
                line_base = line;
                // Follow the log again from the next readable record.
                expected = next_readable(&bytes[pos..]).unwrap_or(expected_there.next());
            }
        }
    }
    end(expected, None, None)
}

/// The header a segment starts with, if it does: `Some(prev)`.
fn first_header(bytes: &[u8]) -> Option<Option<Seq>> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    match record::decode_line(&bytes[..end]) {
        Ok(record::Line::Marker(record::Marker::Header { prev, .. })) => Some(prev),
        _ => None,
    }
}

/// The sequence number of the first complete line of `bytes` that decodes.
fn next_readable(bytes: &[u8]) -> Option<Seq> {
    let end = bytes.iter().rposition(|&b| b == b'\n')?;
    bytes[..end].split(|&b| b == b'\n').find_map(|line| record::decode(line).ok().map(|(seq, _)| seq))
}

/// Checks snapshot bytes, pushing every problem found; returns what it
/// learned and, when the snapshot is intact, its state with indexes built.
fn check_snapshot(
    path: &Path,
    bytes: &[u8],
    problems: &mut Vec<Problem>,
    observer: Option<&Observer>,
) -> (SnapshotChecked, Option<State>) {
    let mut checked = SnapshotChecked {
        path: path.to_owned(),
        bytes: bytes.len() as u64,
        seq: None,
        keys: None,
        sha256: None,
        continues: None,
    };
    let len = bytes.len();
    // The digest first, alone, for the precise problem when it fails;
    // `parse` below checks it again (progress reports both passes).
    if let Err(e) = snapshot::check_digest(path, bytes, observer) {
        checked.seq = head_seq(bytes);
        let reason = match e {
            Error::BadSnapshot { reason, .. } => reason,
            other => other.to_string(),
        };
        let trailer_at = len.saturating_sub(snapshot::TRAILER_LEN) as u64;
        let has_trailer = len >= snapshot::TRAILER_LEN + 2
            && bytes[len - snapshot::TRAILER_LEN..].starts_with(snapshot::TRAILER_HEAD);
        let hint = json_error_offset(bytes)
            .map(|(at, e)| format!("; the JSON itself breaks at byte offset {at} ({e}), likely near the damage"))
            .unwrap_or_default();
        let (kind, message) = if has_trailer {
            (ProblemKind::SnapshotDigest, format!("{reason} (the digest is stored at byte offset {trailer_at}){hint}"))
        } else {
            (ProblemKind::SnapshotTruncated, format!("{reason}{hint}"))
        };
        problems.push(Problem::new(kind, path, Some(1), Some(trailer_at), message));
        return (checked, None);
    }
    // The digest matches: check the index definitions, then everything else.
    let before = problems.len();
    if let Ok(head) = serde_json::from_slice::<Head>(bytes) {
        checked.seq = Some(head.seq);
        let at = find(bytes, b"\"indexes\":").map(|i| i as u64);
        let mut seen = HashMap::new();
        for def in &head.indexes {
            match FieldPath::parse(&def.field) {
                Err(e) => problems.push(Problem::new(
                    ProblemKind::IndexDefinition,
                    path,
                    Some(1),
                    at,
                    format!("index on {:?}: {e}", def.field),
                )),
                Ok(p) => {
                    if seen.insert(p.as_str().to_owned(), ()).is_some() {
                        problems.push(Problem::new(
                            ProblemKind::IndexDefinition,
                            path,
                            Some(1),
                            at,
                            format!("index on `{p}` is defined twice"),
                        ));
                    }
                }
            }
        }
    }
    match snapshot::parse(path, bytes, observer) {
        Ok((state, info)) => {
            let SnapshotInfo { seq, keys, sha256, continues, .. } = info;
            checked.seq = Some(seq.0);
            checked.continues = continues.map(|c| c.0);
            checked.keys = Some(keys);
            checked.sha256 = Some(sha256);
            problems.extend(unique_duplicates(&state, path));
            (checked, Some(state))
        }
        Err(e) => {
            if problems.len() == before {
                let reason = match e {
                    Error::BadSnapshot { reason, .. } => reason,
                    other => other.to_string(),
                };
                let at = json_error_offset(bytes).map(|(at, _)| at);
                problems.push(Problem::new(ProblemKind::SnapshotInvalid, path, Some(1), at, reason));
            }
            (checked, None)
        }
    }
}

/// The snapshot's members other than `data`, which is skipped unread.
#[derive(Deserialize)]
struct Head {
    seq: u64,
    #[serde(default)]
    indexes: Vec<IndexDef>,
}

/// Pairs of keys sharing a value in a unique index (one problem per index).
pub(crate) fn unique_duplicates(state: &State, path: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    for (field, index) in state.indexes.iter().filter(|(_, i)| i.unique()) {
        let mut seen: BTreeMap<ValueDigest, &str> = BTreeMap::new();
        let wanted = crate::state::index::Wanted::of([index.path()]);
        let mut pairs = Vec::new();
        for (key, value) in state.map.sorted(0) {
            if let Some(d) = index.digest(&wanted.extract(value.as_str()))
                && let Some(other) = seen.insert(d, key)
            {
                pairs.push(format!("`{other}` and `{key}`"));
            }
        }
        if !pairs.is_empty() {
            let shown: Vec<&str> = pairs.iter().take(5).map(String::as_str).collect();
            out.push(Problem::new(
                ProblemKind::UniqueViolation,
                path,
                None,
                None,
                format!(
                    "the unique index on `{field}` has {} duplicate value(s): {}{}",
                    pairs.len(),
                    shown.join(", "),
                    if pairs.len() > 5 { ", ..." } else { "" }
                ),
            ));
        }
    }
    out
}

/// The `seq` member near the start of a snapshot whose digest failed.
fn head_seq(bytes: &[u8]) -> Option<u64> {
    let head = &bytes[..bytes.len().min(256)];
    let at = find(head, b"\"seq\":")? + 6;
    let digits: String = head[at..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
    digits.parse().ok()
}

/// Where (byte offset) and why the bytes stop being valid JSON, if they do.
fn json_error_offset(bytes: &[u8]) -> Option<(u64, String)> {
    let e = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err()?;
    let (line, column) = (e.line(), e.column());
    let mut start = 0usize;
    for _ in 1..line {
        start += bytes[start..].iter().position(|&b| b == b'\n')? + 1;
    }
    Some(((start + column.saturating_sub(1)) as u64, e.to_string()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
